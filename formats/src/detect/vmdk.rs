//! VMDK: a sparse extent (`KDMV` header, descriptor embedded at byte 0x200, optionally a footer
//! at the end for streamOptimized), or a descriptor file of plain text.
//!
//! The descriptor is what made CVE-2022-47951 possible: its extent lines name files that qemu
//! opens. Besides Glance's rules (allowed createType, line grammar, no `/` in extent lines, a
//! valid footer), this refuses, as plainly right:
//! - `parentFileNameHint` anywhere in the descriptor: qemu finds it with a substring search and
//!   opens the named file as a backing image;
//! - descriptor-only files: all their extents live in other files, which an upload cannot
//!   contain and which qemu would look for next to the staged file;
//! - the older `COWD` sparse format, which qemu probes as vmdk and oslo does not inspect.

use super::{Ended, Finding, HEAD_LEN, TAIL_LEN, past_end};
use crate::field::{le32, le64, quote};
use crate::format::Format;
use crate::region::Region;

const SPARSE_MAGIC: &[u8] = b"KDMV";
const COWD_MAGIC: &[u8] = b"COWD";
const SECTOR: u64 = 512;
/// qemu and oslo: the embedded descriptor starts at sector 1 and is shorter than 1 MiB.
const DESCRIPTOR_SECTOR: u64 = 1;
const DESCRIPTOR_MAX: usize = (1 << 20) - 1;
const GD_AT_END: u64 = u64::MAX;
const ALLOWED_TYPES: [&str; 2] = ["monolithicsparse", "streamoptimized"];
const EXTENT_ACCESS: [&str; 3] = ["rw", "rdonly", "noaccess"];
/// A createType value longer than this is not a type but an attack on the log.
const CREATE_TYPE_MAX: usize = 64;
const MARKER_FOOTER: u32 = 3;
const FOOTER_LEN: usize = TAIL_LEN;

pub(crate) struct Vmdk {
    state: State,
}

enum State {
    /// The first sector is not complete yet.
    Probing,
    NotVmdk,
    /// `KDMV` header; `None` when the header does not locate a descriptor (reported at the end).
    Sparse(Option<Region>),
    Cowd,
    /// Printable text from byte 0: a descriptor file, if it declares a createType.
    Text(Region),
}

#[derive(Clone, Copy)]
enum Kind {
    Sparse,
    Cowd,
    Text,
    Other,
}

fn classify(head: &[u8]) -> Kind {
    if head.starts_with(SPARSE_MAGIC) {
        Kind::Sparse
    } else if head.starts_with(COWD_MAGIC) {
        Kind::Cowd
    } else if head.iter().all(|byte| is_text(*byte)) {
        Kind::Text
    } else {
        Kind::Other
    }
}

/// What Python's `isprintable() or isspace()` accepts among ASCII bytes, as oslo tests it.
fn is_text(byte: u8) -> bool {
    matches!(byte, 0x20..=0x7e | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

impl Vmdk {
    pub(crate) fn new() -> Self {
        Self { state: State::Probing }
    }

    pub(crate) fn feed(&mut self, head: &[u8], chunk: &[u8], start: u64) {
        if matches!(self.state, State::Probing) {
            if head.len() < HEAD_LEN {
                return;
            }
            self.state = begin(classify(head), head);
        }
        match &mut self.state {
            State::Sparse(Some(region)) | State::Text(region) => region.capture(chunk, start),
            State::Probing | State::NotVmdk | State::Sparse(None) | State::Cowd => {}
        }
    }

    /// The next stream offset this inspector needs, once the first sector is in.
    pub(crate) fn wanted(&self, position: u64) -> Option<u64> {
        match &self.state {
            State::Probing => Some(position),
            State::Sparse(Some(region)) | State::Text(region) => region.wanted(position),
            State::NotVmdk | State::Sparse(None) | State::Cowd => None,
        }
    }

    pub(crate) fn finish(self, end: &Ended<'_>) -> Option<Finding> {
        let state = match self.state {
            State::Probing => begin(classify(end.head), end.head),
            state => state,
        };
        match state {
            State::Probing | State::NotVmdk => None,
            State::Cowd => {
                let mut finding = Finding::new(Format::Vmdk);
                finding.fail("header", "VMDK3 (COWD) sparse extents are not supported");
                Some(finding)
            }
            State::Text(region) => text_finding(region.data()),
            State::Sparse(descriptor) => Some(sparse_finding(descriptor, end)),
        }
    }
}

/// Decides, from the first sector, what to capture next.
fn begin(kind: Kind, head: &[u8]) -> State {
    match kind {
        Kind::Other => State::NotVmdk,
        Kind::Cowd => State::Cowd,
        Kind::Text => {
            let mut region = Region::new(0, DESCRIPTOR_MAX);
            region.capture(head, 0);
            State::Text(region)
        }
        Kind::Sparse => State::Sparse(SparseHeader::parse(head).and_then(|header| {
            let size = header.descriptor_bytes();
            (header.version_ok() && header.descriptor_sector == DESCRIPTOR_SECTOR && size > 0)
                .then(|| Region::new(DESCRIPTOR_SECTOR * SECTOR, size))
        })),
    }
}

/// The fields of a sparse extent header (little-endian) that the checks use.
struct SparseHeader {
    magic: u32,
    version: u32,
    capacity: u64,
    descriptor_sector: u64,
    descriptor_sectors: u64,
    gd_offset: u64,
}

impl SparseHeader {
    fn parse(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            magic: le32(bytes, 0)?,
            version: le32(bytes, 4)?,
            capacity: le64(bytes, 12)?,
            descriptor_sector: le64(bytes, 28)?,
            descriptor_sectors: le64(bytes, 36)?,
            gd_offset: le64(bytes, 56)?,
        })
    }

    fn version_ok(&self) -> bool {
        (1..=3).contains(&self.version)
    }

    fn descriptor_bytes(&self) -> usize {
        usize::try_from(self.descriptor_sectors.saturating_mul(SECTOR)).unwrap_or(usize::MAX).min(DESCRIPTOR_MAX)
    }
}

fn text_finding(captured: &[u8]) -> Option<Finding> {
    let text = until_nul(captured);
    if !contains_ignore_case(text, b"createtype=\"") {
        return None;
    }
    let mut finding = Finding::new(Format::Vmdk);
    check_descriptor(text, &mut finding);
    finding.fail("descriptor_only", "a descriptor file without data: its extents live in other files");
    Some(finding)
}

fn sparse_finding(descriptor: Option<Region>, end: &Ended<'_>) -> Finding {
    let mut finding = Finding::new(Format::Vmdk);
    finding.require_len("VMDK sparse header", end.total, HEAD_LEN as u64);
    let Some(header) = SparseHeader::parse(end.head) else {
        return finding;
    };
    if !header.version_ok() {
        finding.fail("header", format!("unsupported VMDK version {} (only 1 to 3)", header.version));
    }
    if header.descriptor_sector != DESCRIPTOR_SECTOR {
        finding.fail("header", format!("descriptor at sector {}, it must start at sector 1", header.descriptor_sector));
    }
    if header.gd_offset != GD_AT_END && header.gd_offset.checked_mul(SECTOR).is_none_or(|at| at >= end.total) {
        finding.fail(
            "header",
            format!(
                "grain directory at sector {} lies past the end of the stream ({} bytes)",
                header.gd_offset, end.total
            ),
        );
    }
    let create_type = match &descriptor {
        Some(region) if region.is_complete() => check_descriptor(until_nul(region.data()), &mut finding),
        Some(region) => {
            finding.fail("descriptor", past_end("descriptor", region.offset(), region.end(), end.total));
            None
        }
        None => {
            finding.fail("descriptor", "no descriptor found");
            None
        }
    };
    if create_type.is_some_and(|kind| ALLOWED_TYPES.contains(&kind.as_str())) {
        match header.capacity.checked_mul(SECTOR) {
            Some(size) => finding.virtual_size = Some(size),
            None => finding.fail("header", format!("capacity of {} sectors overflows", header.capacity)),
        }
    }
    if header.gd_offset == GD_AT_END {
        check_footer(&header, end, &mut finding);
    }
    finding
}

/// The descriptor text ends at the first NUL (the embedded one is NUL-padded).
fn until_nul(bytes: &[u8]) -> &[u8] {
    let len = bytes.iter().position(|byte| *byte == 0).unwrap_or(bytes.len());
    bytes.get(..len).unwrap_or_default()
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window.eq_ignore_ascii_case(needle))
}

/// Glance's `descriptor` check plus the `backing_file` one; returns the lower-cased createType.
fn check_descriptor(text: &[u8], finding: &mut Finding) -> Option<String> {
    let Some(text) = std::str::from_utf8(text).ok().filter(|text| text.is_ascii()) else {
        finding.fail("descriptor", "descriptor is not ASCII text");
        return None;
    };
    let text = text.to_ascii_lowercase();
    let create_type = text.find("createtype=\"").and_then(|at| {
        let value = text.get(at + "createtype=\"".len()..)?;
        let value = value.get(..value.find('"')?)?;
        (value.len() < CREATE_TYPE_MAX).then(|| value.to_owned())
    });
    match &create_type {
        Some(kind) if ALLOWED_TYPES.contains(&kind.as_str()) => {}
        Some(kind) => finding.fail(
            "descriptor",
            format!("createType {} is not allowed (only monolithicSparse and streamOptimized)", quote(kind.as_bytes())),
        ),
        None => finding.fail("descriptor", "descriptor has no createType"),
    }
    if text.contains("parentfilenamehint") {
        finding.fail("backing_file", "descriptor names a parent image (parentFileNameHint)");
    }

    let mut extents = 0usize;
    let mut bad_line = None;
    let mut bad_extent = None;
    for line in text.split('\n').map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with("ddb") {
            continue;
        }
        let is_field = line.split_once('=').is_some_and(|(key, _)| !key.contains(' '));
        if is_field {
            continue;
        }
        let access = line.split(' ').next().unwrap_or_default();
        if EXTENT_ACCESS.contains(&access) {
            extents += 1;
            if line.contains('/') {
                bad_extent.get_or_insert(line);
            }
        } else {
            bad_line.get_or_insert(line);
        }
    }
    if let Some(line) = bad_line {
        finding.fail("descriptor", format!("unsupported line {} in the descriptor", quote(line.as_bytes())));
    }
    if let Some(line) = bad_extent {
        finding.fail("descriptor", format!("extent line {} names a file path", quote(line.as_bytes())));
    }
    if extents == 0 {
        finding.fail("descriptor", "descriptor lists no extents");
    }
    create_type
}

/// A streamOptimized footer (Glance's `footer` check): marker, footer header, end-of-stream
/// marker. The footer header must also agree on the capacity, since qemu takes the size from it
/// while Glance (docs/glance-v2-api.md §7.1) reads the header's.
fn check_footer(header: &SparseHeader, end: &Ended<'_>, finding: &mut Finding) {
    let parts = (end.tail.len() == FOOTER_LEN)
        .then(|| end.tail.split_at_checked(512))
        .flatten()
        .and_then(|(marker, rest)| Some((marker, rest.split_at_checked(512)?)));
    let Some((marker, (footer, eos))) = parts else {
        finding.fail("footer", format!("stream of {} bytes is too short for a footer", end.total));
        return;
    };
    let Some(copy) = SparseHeader::parse(footer) else {
        finding.fail("footer", "footer header is unreadable");
        return;
    };
    if copy.magic != header.magic {
        finding.fail("footer", "footer signature differs from the header's");
    }
    if copy.version != header.version {
        finding.fail("footer", "footer version differs from the header's");
    }
    if (copy.descriptor_sector, copy.descriptor_sectors) != (header.descriptor_sector, header.descriptor_sectors) {
        finding.fail("footer", "footer locates a different descriptor than the header");
    }
    if copy.gd_offset == GD_AT_END {
        finding.fail("footer", "footer points to another footer");
    }
    if copy.capacity != header.capacity {
        finding.fail(
            "footer",
            format!("footer capacity {} sectors differs from the header's {}", copy.capacity, header.capacity),
        );
    }
    let zero_from = |bytes: &[u8], at: usize| bytes.get(at..).is_some_and(|rest| rest.iter().all(|byte| *byte == 0));
    if le32(marker, 8) != Some(0) || le32(marker, 12) != Some(MARKER_FOOTER) || !zero_from(marker, 16) {
        finding.fail("footer", "footer marker is invalid");
    }
    // An end-of-stream marker has every field zero: size, type and padding.
    if !zero_from(eos, 0) {
        finding.fail("footer", "end-of-stream marker is invalid");
    }
}

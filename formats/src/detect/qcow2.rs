//! qcow2 (v2, v3, and the obsolete v1 which shares the magic): virtual size, the checks of
//! docs/glance-v2-api.md §7 (backing file, external data file, unknown incompatible features, version) and,
//! stricter than Glance, a header layout check, because the qcow2 reader used for conversion
//! must only ever see a header whose tables are aligned, in range and apart.

use super::{Ended, Finding, HEAD_LEN};
use crate::field::{be32, be64, quote};
use crate::format::Format;
use crate::region::Region;

pub(crate) const MAGIC: &[u8] = b"QFI\xfb";
/// Incompatible feature bits qemu knows: dirty, corrupt, external data file, compression type.
/// Anything above (extended L2 is bit 4) changes how clusters are read.
const KNOWN_INCOMPATIBLE: u64 = 0b1111;
/// Byte 0x4F is the lowest byte of the big-endian incompatible-features field.
const DATA_FILE_BYTE: usize = 0x4F;
const DATA_FILE_MASK: u8 = 0x04;
/// qemu's cluster size range: 512 B to 2 MiB.
pub(crate) const CLUSTER_BITS: std::ops::RangeInclusive<u32> = 9..=21;
/// qemu's `QCOW_MAX_L1_SIZE`.
pub(crate) const MAX_L1_BYTES: u64 = 32 * 1024 * 1024;
/// qemu's `QCOW_MAX_SNAPSHOTS`.
const MAX_SNAPSHOTS: u32 = 65536;
/// v3 fixed header length; `header_length` may not be shorter.
pub(crate) const V3_MIN_HEADER: u32 = 104;
/// Refcount widths go up to 64 bits (order 6).
const MAX_REFCOUNT_ORDER: u32 = 6;
/// qemu's limit on the backing file name; only used to name it in the refusal.
const MAX_BACKING_NAME: u32 = 1023;

/// Captures the backing file name, which qemu writes after the header extensions, usually
/// beyond the first sector, so that the refusal can say which file the image wanted.
pub(crate) struct Qcow2 {
    backing_name: Option<Region>,
    decided: bool,
}

impl Qcow2 {
    pub(crate) fn new() -> Self {
        Self { backing_name: None, decided: false }
    }

    pub(crate) fn feed(&mut self, head: &[u8], chunk: &[u8], start: u64) {
        if !self.decided && head.len() >= HEAD_LEN {
            self.decided = true;
            if head.starts_with(MAGIC) {
                // v2 images keep the name inside the first sector, which has already gone by.
                self.backing_name = backing_name_region(head).map(|mut region| {
                    region.capture(head, 0);
                    region
                });
            }
        }
        if let Some(region) = &mut self.backing_name {
            region.capture(chunk, start);
        }
    }

    /// The next stream offset this inspector needs, once the first sector is in.
    pub(crate) fn wanted(&self, position: u64) -> Option<u64> {
        self.backing_name.as_ref().and_then(|region| region.wanted(position))
    }

    pub(crate) fn finish(self, end: &Ended<'_>) -> Option<Finding> {
        let head = end.head;
        if !head.starts_with(MAGIC) {
            return None;
        }
        let mut finding = Finding::new(Format::Qcow2);
        finding.virtual_size = be64(head, 24);
        finding.require_len("qcow2 header", end.total, HEAD_LEN as u64);
        check_backing_file(head, self.backing_name.as_ref(), &mut finding);
        check_version_and_features(head, &mut finding);
        check_data_file(head, &mut finding);
        if end.total >= HEAD_LEN as u64 {
            check_layout(head, end.total, &mut finding);
        }
        Some(finding)
    }
}

fn backing_name_region(head: &[u8]) -> Option<Region> {
    let offset = be64(head, 8).filter(|offset| *offset != 0)?;
    let size = be32(head, 16).filter(|size| (1..=MAX_BACKING_NAME).contains(size))?;
    Some(Region::new(offset, usize::try_from(size).ok()?))
}

fn check_backing_file(head: &[u8], name: Option<&Region>, finding: &mut Finding) {
    let Some(offset) = be64(head, 8).filter(|offset| *offset != 0) else {
        return;
    };
    let size = be32(head, 16).unwrap_or(0);
    match name.filter(|name| name.is_complete()) {
        Some(name) => finding.fail("backing_file", format!("image has a backing file {}", quote(name.data()))),
        None => finding
            .fail("backing_file", format!("image has a backing file (name of {size} bytes at offset {offset:#x})")),
    }
}

fn check_version_and_features(head: &[u8], finding: &mut Finding) {
    match be32(head, 4) {
        None | Some(2) => {}
        Some(3) => {
            let unknown = be64(head, 0x48).unwrap_or(0) & !KNOWN_INCOMPATIBLE;
            if unknown != 0 {
                let note = if unknown & 0x10 != 0 { " (bit 4 is extended L2)" } else { "" };
                finding
                    .fail("unknown_features", format!("unknown incompatible feature bits {unknown:#x} are set{note}"));
            }
        }
        Some(version) => {
            finding.fail("unknown_features", format!("unsupported qcow2 version {version} (only 2 and 3 are allowed)"))
        }
    }
}

/// As Glance does, whatever the version: in a v2 header the byte belongs to a header extension,
/// and a v2 image with such an extension already carries a backing file.
fn check_data_file(head: &[u8], finding: &mut Finding) {
    if head.get(DATA_FILE_BYTE).is_some_and(|byte| byte & DATA_FILE_MASK != 0) {
        finding.fail("data_file", "image has an external data file (incompatible feature bit 2 is set)");
    }
}

/// Tables must be cluster-aligned, clear of the header cluster and of each other, and inside
/// the stream, so that no reader is ever sent outside the image.
fn check_layout(head: &[u8], total: u64, finding: &mut Finding) {
    let field32 = |at| be32(head, at).unwrap_or(0);
    let field64 = |at| be64(head, at).unwrap_or(0);
    let cluster_bits = field32(20);
    if !CLUSTER_BITS.contains(&cluster_bits) {
        finding.fail("header", format!("cluster_bits {cluster_bits} is outside qemu's range 9..=21"));
        return;
    }
    let cluster = 1u64 << cluster_bits;
    let crypt_method = field32(32);
    if crypt_method > 2 {
        finding.fail("header", format!("unknown encryption method {crypt_method}"));
    }

    let l1 = Table::new("L1 table", field64(40), u64::from(field32(36)) * 8);
    if l1.len > MAX_L1_BYTES {
        finding.fail("header", format!("L1 table of {} bytes exceeds qemu's limit of {MAX_L1_BYTES}", l1.len));
    }
    let refcount_clusters = field32(56);
    if refcount_clusters == 0 {
        finding.fail("header", "image has no refcount table");
    }
    let refcount = Table::new("refcount table", field64(48), u64::from(refcount_clusters).saturating_mul(cluster));
    for table in [&l1, &refcount] {
        table.check(cluster, total, finding);
    }
    if l1.overlaps(&refcount) {
        finding.fail(
            "header",
            format!("L1 table at {:#x} overlaps the refcount table at {:#x}", l1.offset, refcount.offset),
        );
    }

    let snapshots = field32(60);
    if snapshots > MAX_SNAPSHOTS {
        finding.fail("header", format!("{snapshots} snapshots exceed qemu's limit of {MAX_SNAPSHOTS}"));
    }
    if snapshots > 0 {
        // Entries are variable-length: only the start can be checked without reading them.
        Table::new("snapshot table", field64(64), 1).check(cluster, total, finding);
    }

    if field32(4) == 3 {
        let header_length = field32(100);
        if header_length < V3_MIN_HEADER || u64::from(header_length) > cluster {
            finding.fail("header", format!("header_length {header_length} is outside {V3_MIN_HEADER}..={cluster}"));
        }
        let refcount_order = field32(96);
        if refcount_order > MAX_REFCOUNT_ORDER {
            finding.fail("header", format!("refcount_order {refcount_order} exceeds {MAX_REFCOUNT_ORDER}"));
        }
    }
}

/// A metadata table of the header: where it starts and how many bytes it spans.
struct Table {
    name: &'static str,
    offset: u64,
    len: u64,
}

impl Table {
    fn new(name: &'static str, offset: u64, len: u64) -> Self {
        Self { name, offset, len }
    }

    fn check(&self, cluster: u64, total: u64, finding: &mut Finding) {
        if self.len == 0 {
            return;
        }
        let Self { name, offset, len } = *self;
        if offset % cluster != 0 {
            finding.fail("header", format!("{name} offset {offset:#x} is not aligned to the cluster size {cluster}"));
        } else if offset < cluster {
            finding.fail("header", format!("{name} at offset {offset:#x} overlaps the header cluster"));
        }
        match offset.checked_add(len) {
            None => finding.fail("header", format!("{name} at offset {offset:#x} with {len} bytes overflows")),
            Some(end) if end > total => finding.fail(
                "header",
                format!("{name} at offset {offset:#x} ends at {end:#x}, past the end of the stream ({total} bytes)"),
            ),
            Some(_) => {}
        }
    }

    fn overlaps(&self, other: &Table) -> bool {
        self.len != 0
            && other.len != 0
            && self.offset < other.offset.saturating_add(other.len)
            && other.offset < self.offset.saturating_add(self.len)
    }
}

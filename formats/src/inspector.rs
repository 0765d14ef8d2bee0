//! The streaming inspector: every format's inspector runs over the same single pass, keeping
//! only bounded captures (first sector, last 1536 bytes, and the regions qcow2, VMDK, VHDX and
//! ISO declare), and the verdicts are combined at the end of the stream (docs/glance-v2-api.md §7.1).

use std::collections::BTreeMap;

use crate::detect::iso::Iso;
use crate::detect::qcow2::Qcow2;
use crate::detect::vhdx::Vhdx;
use crate::detect::vmdk::Vmdk;
use crate::detect::{Ended, Finding, HEAD_LEN, TAIL_LEN, gpt, luks, qed, vdi, vhd};
use crate::format::Format;
use crate::region::Tail;
use crate::report::Report;

/// Largest virtual size accepted by default: what a signed 64-bit column (Glance's
/// `virtual_size`, qemu's byte offsets) can hold. Anything larger is an attack, not a disk.
pub const DEFAULT_MAX_VIRTUAL_SIZE: u64 = i64::MAX as u64;

/// Inspects an image stream chunk by chunk, without ever seeking and in bounded memory.
///
/// ```
/// let mut inspector = glint_formats::Inspector::new();
/// inspector.feed(b"just some bytes");
/// let report = inspector.finish();
/// assert_eq!(report.format, Some(glint_formats::Format::Raw));
/// ```
pub struct Inspector {
    position: u64,
    head: Vec<u8>,
    tail: Tail,
    qcow2: Qcow2,
    vmdk: Vmdk,
    vhdx: Vhdx,
    iso: Iso,
    max_virtual_size: u64,
}

impl Default for Inspector {
    fn default() -> Self {
        Self::new()
    }
}

impl Inspector {
    /// An inspector at the start of a stream, with [`DEFAULT_MAX_VIRTUAL_SIZE`] as size cap.
    pub fn new() -> Self {
        Self {
            position: 0,
            head: Vec::with_capacity(HEAD_LEN),
            tail: Tail::new(TAIL_LEN),
            qcow2: Qcow2::new(),
            vmdk: Vmdk::new(),
            vhdx: Vhdx::new(),
            iso: Iso::new(),
            max_virtual_size: DEFAULT_MAX_VIRTUAL_SIZE,
        }
    }

    /// Refuses (check `virtual_size`) images whose virtual size exceeds `max` bytes.
    pub fn with_max_virtual_size(mut self, max: u64) -> Self {
        self.max_virtual_size = max;
        self
    }

    /// Presents the next chunk of the stream; chunks may have any size, including zero.
    pub fn feed(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        let start = self.position;
        let missing = HEAD_LEN.saturating_sub(self.head.len());
        self.head.extend(chunk.iter().take(missing));
        self.tail.push(chunk);
        self.qcow2.feed(&self.head, chunk, start);
        self.vmdk.feed(&self.head, chunk, start);
        self.vhdx.feed(&self.head, chunk, start);
        self.iso.feed(chunk, start);
        self.position = start.saturating_add(chunk.len() as u64);
    }

    /// The lowest stream offset, at or after the bytes presented so far, that some format's
    /// inspector still needs; `None` when only the stream's last bytes still matter (the
    /// tail and total length, which every stream ends with). A reader that can seek
    /// presents the bytes from there on, and skips the rest with [`Inspector::skip_to`].
    pub(crate) fn next_wanted(&self) -> Option<u64> {
        let position = self.position;
        if self.head.len() < HEAD_LEN {
            return Some(position);
        }
        [self.qcow2.wanted(position), self.vmdk.wanted(position), self.vhdx.wanted(position), self.iso.wanted(position)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Moves the stream to `offset` without presenting the bytes before it, which must not
    /// go past [`Inspector::next_wanted`]: no inspector would have kept those bytes, so the
    /// report is the one the whole stream gets, provided the caller presents at least the last
    /// `TAIL_LEN` bytes of the stream after the last skip.
    pub(crate) fn skip_to(&mut self, offset: u64) {
        let allowed = self.next_wanted().unwrap_or(u64::MAX);
        let to = offset.min(allowed);
        if to > self.position {
            self.tail.clear();
            self.position = to;
        }
    }

    /// Bytes presented so far.
    pub fn bytes_read(&self) -> u64 {
        self.position
    }

    /// Ends the stream and reports what it was.
    pub fn finish(self) -> Report {
        let Self { position, head, mut tail, qcow2, vmdk, vhdx, iso, max_virtual_size } = self;
        let end = Ended { head: &head, tail: tail.contents(), total: position };
        let found: Vec<Finding> = [
            qcow2.finish(&end),
            qed::inspect(&end),
            vhd::inspect(&end),
            vhdx.finish(&end),
            vmdk.finish(&end),
            vdi::inspect(&end),
            iso.finish(&end),
            gpt::inspect(&end),
            luks::inspect(&end),
        ]
        .into_iter()
        .flatten()
        .collect();
        let matched: Vec<Format> = found.iter().map(|finding| finding.format).collect();
        match decide(found, position) {
            Ok(mut finding) => {
                if let Some(size) = finding.virtual_size.filter(|size| *size > max_virtual_size) {
                    finding.fail(
                        "virtual_size",
                        format!("virtual size of {size} bytes exceeds the limit of {max_virtual_size}"),
                    );
                }
                Report {
                    format: Some(finding.format),
                    matched,
                    virtual_size: finding.virtual_size,
                    bytes_read: position,
                    failures: finding.failures,
                }
            }
            Err(formats) => Report {
                format: None,
                failures: BTreeMap::from([(
                    "format".to_owned(),
                    crate::FormatError::MultipleFormats { formats }.to_string(),
                )]),
                matched,
                virtual_size: None,
                bytes_read: position,
            },
        }
    }
}

/// One match wins; none is raw. Two matches are tolerated only when one explains the other: a
/// hybrid ISO carries an MBR (Glance's {iso, gpt} = iso), and a fixed VHD's guest disk may start
/// with one. Anything else may hide one header in another and is refused.
fn decide(mut found: Vec<Finding>, total: u64) -> Result<Finding, Vec<Format>> {
    if found.is_empty() {
        let mut raw = Finding::new(Format::Raw);
        raw.virtual_size = Some(total);
        return Ok(raw);
    }
    if found.len() == 2 && found.iter().any(|finding| finding.format == Format::Gpt) {
        let other = found.iter().position(|finding| finding.format == Format::Iso || finding.wraps_guest_disk);
        if let Some(index) = other {
            return Ok(found.swap_remove(index));
        }
    }
    if found.len() == 1
        && let Some(only) = found.pop()
    {
        return Ok(only);
    }
    Err(found.iter().map(|finding| finding.format).collect())
}

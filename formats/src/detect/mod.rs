//! One inspector per format of the detection table (docs/glance-v2-api.md §7.1). They all see the whole
//! stream; each keeps only the bounded regions it needs and, at the end, says whether the
//! stream is its format and what its safety checks found.
//!
//! A format matches as soon as its signature is present; a matching stream whose structure is
//! then truncated, out of range or overflowing is not waved through as raw but refused with a
//! failure naming what was wrong.

pub(crate) mod gpt;
pub(crate) mod iso;
pub(crate) mod luks;
pub(crate) mod qcow2;
pub(crate) mod qed;
pub(crate) mod vdi;
pub(crate) mod vhd;
pub(crate) mod vhdx;
pub(crate) mod vmdk;

use std::collections::BTreeMap;

use crate::format::Format;

/// What the stream looked like once it ended: its first bytes, its last bytes and its length.
pub(crate) struct Ended<'a> {
    /// The first [`HEAD_LEN`] bytes (fewer if the stream is shorter).
    pub(crate) head: &'a [u8],
    /// The last [`TAIL_LEN`] bytes (fewer if the stream is shorter).
    pub(crate) tail: &'a [u8],
    /// Bytes in the stream.
    pub(crate) total: u64,
}

/// Bytes captured from the start of every stream: the headers of the single-sector formats.
pub(crate) const HEAD_LEN: usize = 512;

/// Bytes kept from the end of every stream: a VMDK footer with its two markers (1536), which
/// also covers the 512-byte footer of a fixed VHD.
pub(crate) const TAIL_LEN: usize = 1536;

/// One format's verdict on a stream that carries its signature.
#[derive(Debug)]
pub(crate) struct Finding {
    pub(crate) format: Format,
    /// `None` when the format does not define a size or the header could not be read.
    pub(crate) virtual_size: Option<u64>,
    /// Failed check name → what was found; empty when the image is safe.
    pub(crate) failures: BTreeMap<String, String>,
    /// The format only trails guest data that starts at byte 0 (a fixed VHD), so a partition
    /// table found at the start belongs to the guest disk rather than competing with it.
    pub(crate) wraps_guest_disk: bool,
}

impl Finding {
    pub(crate) fn new(format: Format) -> Self {
        Self { format, virtual_size: None, failures: BTreeMap::new(), wraps_guest_disk: false }
    }

    /// Records that check `check` failed; several reasons for one check are kept, joined.
    pub(crate) fn fail(&mut self, check: &str, reason: impl Into<String>) {
        let reason = reason.into();
        self.failures
            .entry(check.to_owned())
            .and_modify(|existing| {
                existing.push_str("; ");
                existing.push_str(&reason);
            })
            .or_insert(reason);
    }

    /// Records a truncated header when the stream ended before `needed` bytes.
    pub(crate) fn require_len(&mut self, what: &str, total: u64, needed: u64) {
        if total < needed {
            self.fail(
                "header",
                format!("{what} is truncated: the stream ends after {total} bytes, the header needs {needed}"),
            );
        }
    }
}

/// Names a capture the stream ended inside of.
pub(crate) fn past_end(what: &str, offset: u64, end: u64, total: u64) -> String {
    format!("{what} at offset {offset:#x} ends at {end:#x}, past the end of the stream ({total} bytes)")
}

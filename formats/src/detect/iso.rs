//! ISO 9660 and UDF: the first volume descriptor follows a 32 KiB system area.

use super::{Ended, Finding};
use crate::field::{le16, le32};
use crate::format::Format;
use crate::region::Region;

const DESCRIPTOR_AT: u64 = 0x8000;
const DESCRIPTOR_LEN: usize = 2048;
const IDENTIFIERS: [&[u8]; 3] = [b"CD001", b"NSR02", b"NSR03"];
const PRIMARY: u8 = 1;
/// The fields read: volume space size at 80 and logical block size at 128.
const FIELDS_END: usize = 130;

pub(crate) struct Iso {
    descriptor: Region,
}

impl Iso {
    pub(crate) fn new() -> Self {
        Self { descriptor: Region::new(DESCRIPTOR_AT, DESCRIPTOR_LEN) }
    }

    pub(crate) fn feed(&mut self, chunk: &[u8], start: u64) {
        self.descriptor.capture(chunk, start);
    }

    /// The next stream offset this inspector needs.
    pub(crate) fn wanted(&self, position: u64) -> Option<u64> {
        self.descriptor.wanted(position)
    }

    pub(crate) fn finish(self, end: &Ended<'_>) -> Option<Finding> {
        let descriptor = self.descriptor.data();
        let identifier = descriptor.get(1..6)?;
        if !IDENTIFIERS.contains(&identifier) {
            return None;
        }
        let mut finding = Finding::new(Format::Iso);
        if !self.descriptor.is_complete() {
            finding.require_len("ISO volume descriptor", end.total, self.descriptor.end());
        }
        if descriptor.first() == Some(&PRIMARY) && descriptor.len() >= FIELDS_END {
            let blocks = le32(descriptor, 80).map(u64::from);
            let block_size = le16(descriptor, 128).map(u64::from);
            finding.virtual_size = blocks.zip(block_size).map(|(blocks, size)| blocks * size);
        }
        Some(finding)
    }
}

//! VirtualBox VDI: signature at 0x40, virtual size at 0x170, both in the first sector.

use super::{Ended, Finding, HEAD_LEN};
use crate::field::{le32, le64};
use crate::format::Format;

const SIGNATURE: u32 = 0xBEDA_107F;

pub(crate) fn inspect(end: &Ended<'_>) -> Option<Finding> {
    if le32(end.head, 0x40) != Some(SIGNATURE) {
        return None;
    }
    let mut finding = Finding::new(Format::Vdi);
    finding.virtual_size = le64(end.head, 0x170);
    finding.require_len("VDI header", end.total, HEAD_LEN as u64);
    Some(finding)
}

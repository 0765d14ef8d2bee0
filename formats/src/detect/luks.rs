//! LUKS v1 volumes: the payload follows a 592-byte header; only version 1 is allowed (Glance's
//! `version` check). No key material is read: Glint never decrypts.

use super::{Ended, Finding};
use crate::field::{be16, be32};
use crate::format::Format;

const MAGIC: &[u8] = b"LUKS\xba\xbe";
/// The LUKS1 `phdr` with its eight key slots.
const HEADER_LEN: u64 = 592;
const SECTOR: u64 = 512;

pub(crate) fn inspect(end: &Ended<'_>) -> Option<Finding> {
    let head = end.head;
    if !head.starts_with(MAGIC) {
        return None;
    }
    let mut finding = Finding::new(Format::Luks);
    finding.require_len("LUKS header", end.total, HEADER_LEN);
    match be16(head, 6) {
        Some(1) | None => {}
        Some(version) => finding.fail("version", format!("LUKS version {version} is not supported (only 1)")),
    }
    if let Some(payload_sectors) = be32(head, 104) {
        let payload = u64::from(payload_sectors) * SECTOR;
        match end.total.checked_sub(payload) {
            Some(size) => finding.virtual_size = Some(size),
            None => finding.fail(
                "header",
                format!("payload offset {payload:#x} lies past the end of the stream ({} bytes)", end.total),
            ),
        }
    }
    Some(finding)
}

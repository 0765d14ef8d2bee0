//! VHD (qemu's `vpc`): a 512-byte big-endian footer. Dynamic disks copy it to byte 0, where
//! docs/glance-v2-api.md §7.1 detects it; a fixed disk is raw data followed by the footer alone, so the footer is
//! also looked for in the last 512 bytes (qemu's own probe misses that case and calls it raw).
//!
//! Stricter than Glance: a differencing disk (type 4) names a parent file and is refused.

use super::{Ended, Finding, HEAD_LEN};
use crate::field::{be32, be64};
use crate::format::Format;

const COOKIE: &[u8] = b"conectix";
const FOOTER_LEN: usize = 512;
const FIXED: u32 = 2;
const DYNAMIC: u32 = 3;
const DIFFERENCING: u32 = 4;
const CHECKSUM_AT: usize = 64;
/// The dynamic-disk header that `data_offset` points at.
const DYNAMIC_HEADER_LEN: u64 = 1024;

pub(crate) fn inspect(end: &Ended<'_>) -> Option<Finding> {
    if end.head.starts_with(COOKIE) { Some(leading(end)) } else { trailing(end) }
}

fn leading(end: &Ended<'_>) -> Finding {
    let footer = end.head;
    let mut finding = Finding::new(Format::Vhd);
    finding.virtual_size = be64(footer, 40);
    finding.require_len("VHD footer", end.total, HEAD_LEN as u64);
    match be32(footer, 60) {
        None | Some(FIXED) => {}
        Some(DYNAMIC) => {
            let header = be64(footer, 16).unwrap_or(0);
            match header.checked_add(DYNAMIC_HEADER_LEN) {
                Some(header_end) if header >= FOOTER_LEN as u64 && header_end <= end.total => {}
                _ => finding.fail(
                    "header",
                    format!("dynamic disk header at offset {header:#x} lies outside the stream ({} bytes)", end.total),
                ),
            }
        }
        Some(kind) => fail_disk_type(kind, &mut finding),
    }
    finding
}

/// A fixed disk: only a footer whose checksum holds and whose type is fixed counts, so that raw
/// data which merely ends in the cookie is not mistaken for a VHD.
fn trailing(end: &Ended<'_>) -> Option<Finding> {
    let footer = end.tail.get(end.tail.len().checked_sub(FOOTER_LEN)?..)?;
    if !footer.starts_with(COOKIE) || be32(footer, 60) != Some(FIXED) || !checksum_holds(footer) {
        return None;
    }
    let mut finding = Finding::new(Format::Vhd);
    finding.wraps_guest_disk = true;
    finding.virtual_size = be64(footer, 40);
    let data = end.total.saturating_sub(FOOTER_LEN as u64);
    if let Some(size) = finding.virtual_size.filter(|size| *size > data) {
        finding.fail("header", format!("footer describes {size} bytes of disk, but only {data} bytes precede it"));
    }
    Some(finding)
}

fn fail_disk_type(kind: u32, finding: &mut Finding) {
    let reason = if kind == DIFFERENCING {
        "differencing disk (type 4): it reads from a parent file".to_owned()
    } else {
        format!("unknown disk type {kind} (only fixed 2 and dynamic 3)")
    };
    finding.fail("disk_type", reason);
}

/// One's complement of the byte sum of the footer with the checksum field taken as zero.
fn checksum_holds(footer: &[u8]) -> bool {
    let sum = footer
        .iter()
        .enumerate()
        .filter(|(at, _)| !(CHECKSUM_AT..CHECKSUM_AT + 4).contains(at))
        .fold(0u32, |sum, (_, byte)| sum.wrapping_add(u32::from(*byte)));
    be32(footer, CHECKSUM_AT) == Some(!sum)
}

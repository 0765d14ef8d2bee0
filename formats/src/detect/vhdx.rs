//! VHDX: the virtual size sits three hops into the file (region table at 192 KiB → metadata
//! table → Virtual Disk Size item), so each capture region is declared once the previous one is
//! parsed. Every offset must lie ahead of the stream; one that points back or past the end is
//! refused rather than followed.
//!
//! Stricter than Glance: a metadata table with a parent locator (a differencing disk, which
//! names a parent file) is refused.

use super::{Ended, Finding, past_end};
use crate::field::{le16, le32, le64};
use crate::format::Format;
use crate::region::Region;

const IDENT: &[u8] = b"vhdxfile";
const REGION_TABLE_AT: u64 = 192 * 1024;
const TABLE_LEN: usize = 64 * 1024;
const REGION_SIGNATURE: u32 = 0x6967_6572;
const METADATA_SIGNATURE: &[u8] = b"metadata";
const ENTRY_LEN: usize = 32;
/// Both tables hold fewer than 2048 entries (qemu's and oslo's bound).
const MAX_ENTRIES: usize = 2047;
const SIZE_FIELD: usize = 8;

const METADATA_REGION: [u8; 16] = guid(0x8B7C_A206, 0x4790, 0x4B9A, [0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E]);
const VIRTUAL_DISK_SIZE: [u8; 16] = guid(0x2FA5_4224, 0xCD1B, 0x4876, [0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8]);
const PARENT_LOCATOR: [u8; 16] = guid(0xA8D3_5F2D, 0xB30B, 0x454D, [0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C]);

/// A GUID as Microsoft stores it: the first three fields little-endian, the rest as written.
const fn guid(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) -> [u8; 16] {
    let a = data1.to_le_bytes();
    let b = data2.to_le_bytes();
    let c = data3.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], data4[0], data4[1], data4[2], data4[3], data4[4], data4[5],
        data4[6], data4[7],
    ]
}

pub(crate) struct Vhdx {
    stage: Stage,
}

enum Stage {
    /// Fewer than 8 bytes seen.
    Probing,
    NotVhdx,
    RegionTable(Region),
    MetadataTable(Region),
    DiskSize {
        item: Region,
        parent: bool,
    },
    Done {
        virtual_size: u64,
        parent: bool,
    },
    /// The structure is broken; the reason says how.
    Broken(String),
}

impl Vhdx {
    pub(crate) fn new() -> Self {
        Self { stage: Stage::Probing }
    }

    pub(crate) fn feed(&mut self, head: &[u8], chunk: &[u8], start: u64) {
        if matches!(self.stage, Stage::Probing) && head.len() >= IDENT.len() {
            self.stage = if head.starts_with(IDENT) {
                Stage::RegionTable(Region::new(REGION_TABLE_AT, TABLE_LEN))
            } else {
                Stage::NotVhdx
            };
        }
        // A completed region may declare the next one inside this very chunk: keep going until
        // a region is left waiting for more data.
        loop {
            let next = match &mut self.stage {
                Stage::RegionTable(table) => {
                    table.capture(chunk, start);
                    if !table.is_complete() {
                        return;
                    }
                    metadata_stage(table)
                }
                Stage::MetadataTable(table) => {
                    table.capture(chunk, start);
                    if !table.is_complete() {
                        return;
                    }
                    size_stage(table)
                }
                Stage::DiskSize { item, parent } => {
                    item.capture(chunk, start);
                    if !item.is_complete() {
                        return;
                    }
                    match le64(item.data(), 0) {
                        Some(virtual_size) => Stage::Done { virtual_size, parent: *parent },
                        None => Stage::Broken("Virtual Disk Size item is unreadable".to_owned()),
                    }
                }
                Stage::Probing | Stage::NotVhdx | Stage::Done { .. } | Stage::Broken(_) => return,
            };
            self.stage = next;
        }
    }

    /// The next stream offset this inspector needs.
    pub(crate) fn wanted(&self, position: u64) -> Option<u64> {
        match &self.stage {
            Stage::Probing => Some(position),
            Stage::RegionTable(region) | Stage::MetadataTable(region) | Stage::DiskSize { item: region, .. } => {
                region.wanted(position)
            }
            Stage::NotVhdx | Stage::Done { .. } | Stage::Broken(_) => None,
        }
    }

    pub(crate) fn finish(self, end: &Ended<'_>) -> Option<Finding> {
        let mut finding = Finding::new(Format::Vhdx);
        match self.stage {
            Stage::Probing | Stage::NotVhdx => return None,
            Stage::RegionTable(region) => {
                finding.fail("header", past_end("region table", region.offset(), region.end(), end.total));
            }
            Stage::MetadataTable(table) => {
                finding.fail("header", past_end("metadata table", table.offset(), table.end(), end.total));
            }
            Stage::DiskSize { item, .. } => {
                finding.fail("header", past_end("Virtual Disk Size item", item.offset(), item.end(), end.total));
            }
            Stage::Done { virtual_size, parent } => {
                finding.virtual_size = Some(virtual_size);
                if parent {
                    finding.fail("parent", "differencing disk: the metadata names a parent file");
                }
            }
            Stage::Broken(reason) => finding.fail("header", reason),
        }
        Some(finding)
    }
}

/// Parses the region table and declares the capture of the metadata table it points at.
fn metadata_stage(region: &Region) -> Stage {
    let table = region.data();
    if le32(table, 0) != Some(REGION_SIGNATURE) {
        return Stage::Broken(format!("region table signature missing at offset {REGION_TABLE_AT:#x}"));
    }
    let count = match entry_count(le32(table, 8).map(u64::from), "region table") {
        Ok(count) => count,
        Err(broken) => return broken,
    };
    let found = (0..count)
        .filter_map(|index| table.get(16 + index * ENTRY_LEN..16 + (index + 1) * ENTRY_LEN))
        .find(|entry| entry.get(..16) == Some(&METADATA_REGION[..]));
    let Some(offset) = found.and_then(|entry| le64(entry, 16)) else {
        return Stage::Broken("region table has no metadata region".to_owned());
    };
    match ahead("metadata table", offset, region.end()) {
        Ok(()) => Stage::MetadataTable(Region::new(offset, TABLE_LEN)),
        Err(broken) => broken,
    }
}

/// Parses the metadata table and finds the Virtual Disk Size item, reading it from the table's
/// own bytes when it lies inside them.
fn size_stage(table: &Region) -> Stage {
    let data = table.data();
    if !data.starts_with(METADATA_SIGNATURE) {
        return Stage::Broken(format!("metadata table signature missing at offset {:#x}", table.offset()));
    }
    let count = match entry_count(le16(data, 10).map(u64::from), "metadata table") {
        Ok(count) => count,
        Err(broken) => return broken,
    };
    let entries: Vec<&[u8]> =
        (0..count).filter_map(|index| data.get(32 + index * ENTRY_LEN..32 + (index + 1) * ENTRY_LEN)).collect();
    let parent = entries.iter().any(|entry| entry.get(..16) == Some(&PARENT_LOCATOR[..]));
    let Some(entry) = entries.iter().find(|entry| entry.get(..16) == Some(&VIRTUAL_DISK_SIZE[..])) else {
        return Stage::Broken("metadata table has no Virtual Disk Size item".to_owned());
    };
    let item_offset = le32(entry, 16).unwrap_or(0);
    let item_len = le32(entry, 20).unwrap_or(0);
    if (item_len as usize) < SIZE_FIELD {
        return Stage::Broken(format!("Virtual Disk Size item is {item_len} bytes, it needs {SIZE_FIELD}"));
    }
    let Some(offset) = table.offset().checked_add(u64::from(item_offset)) else {
        return Stage::Broken("Virtual Disk Size item offset overflows".to_owned());
    };
    let within = usize::try_from(item_offset).ok().and_then(|at| le64(data, at));
    if let Some(virtual_size) = within {
        return Stage::Done { virtual_size, parent };
    }
    match ahead("Virtual Disk Size item", offset, table.end()) {
        Ok(()) => Stage::DiskSize { item: Region::new(offset, SIZE_FIELD), parent },
        Err(broken) => broken,
    }
}

fn entry_count(count: Option<u64>, table: &str) -> Result<usize, Stage> {
    match count.and_then(|count| usize::try_from(count).ok()) {
        Some(count) if count <= MAX_ENTRIES => Ok(count),
        Some(count) => Err(Stage::Broken(format!("{table} has {count} entries (limit {MAX_ENTRIES})"))),
        None => Err(Stage::Broken(format!("{table} entry count is unreadable"))),
    }
}

/// A stream cannot go back: the next structure must start after the one that points at it.
/// Judging by the structure rather than by how far the chunks have gone keeps the verdict the
/// same whatever the chunk sizes.
fn ahead(what: &str, offset: u64, after: u64) -> Result<(), Stage> {
    if offset < after {
        Err(Stage::Broken(format!(
            "{what} at offset {offset:#x} points back before {after:#x}; a stream cannot go back"
        )))
    } else {
        Ok(())
    }
}

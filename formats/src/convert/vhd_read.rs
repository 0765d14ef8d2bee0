//! Reading VHD (qemu's `vpc`), fixed and dynamic.
//!
//! A fixed disk is its data followed by a 512-byte footer. A dynamic disk has a copy of the
//! footer at byte 0, a dynamic header, a block allocation table (BAT) of 32-bit sector offsets,
//! and blocks that each start with a sector bitmap: a set bit marks a sector stored in the
//! block, a clear one reads as zeros (qemu sets every bit when it allocates a block, so its
//! images read the same either way). The size is qemu's: the footer's CHS geometry for images
//! made by Virtual PC or old qemu, the current size otherwise. The header, the BAT and every
//! block must lie inside the file, blocks clear of the metadata and of each other.

use std::io::{Read, Seek};

use super::layout::Layout;
use super::pipeline::{Copier, Source};
use crate::error::FormatError;
use crate::field::{be32, be64};

const COOKIE: &[u8] = b"conectix";
const DYNAMIC_COOKIE: &[u8] = b"cxsparse";
const FOOTER_LEN: u64 = 512;
const DYNAMIC_HEADER_LEN: u64 = 1024;
const FIXED: u32 = 2;
const DYNAMIC: u32 = 3;
const SECTOR: u64 = 512;
const UNALLOCATED: u32 = u32::MAX;
/// qemu's limit: 2040 GiB.
const MAX_SECTORS: u64 = 0xff00_0000;
/// CHS geometry at its maximum cannot describe the disk: the current size counts then.
const MAX_GEOMETRY: u64 = 65535 * 16 * 255;
/// Block sizes read: tools write 2 MiB; smaller blocks would make the tables huge.
const MIN_BLOCK: u64 = 512 * 1024;
const MAX_BLOCK: u64 = 256 * 1024 * 1024;

/// The validated footer and, for a dynamic disk, header.
pub(crate) struct VhdReader {
    virtual_size: u64,
    dynamic: Option<Dynamic>,
}

struct Dynamic {
    header_offset: u64,
    bat_offset: u64,
    block: u64,
    bitmap: u64,
    /// BAT entries that cover the disk.
    entries: u64,
}

impl VhdReader {
    pub(crate) fn open<R: Read + Seek>(source: &mut Source<R>) -> Result<Self, FormatError> {
        let len = source.len();
        if len < FOOTER_LEN {
            return Err(source.malformed(format!("the file of {len} bytes is too short for a footer")));
        }
        let mut footer = vec![0u8; FOOTER_LEN as usize];
        source.read_at("footer", 0, &mut footer)?;
        let leading = footer.starts_with(COOKIE);
        if !leading {
            source.read_at("footer", len - FOOTER_LEN, &mut footer)?;
            if !footer.starts_with(COOKIE) {
                return Err(source.malformed("no footer (conectix) at the start or the end of the file".to_owned()));
            }
        }
        let kind = be32(&footer, 60).unwrap_or(0);
        let virtual_size = size(&footer);
        if virtual_size / SECTOR > MAX_SECTORS {
            return Err(source.unsupported(format!("a disk of {virtual_size} bytes exceeds qemu's 2040 GiB")));
        }
        match kind {
            FIXED => {
                // The data starts at byte 0, whichever copy of the footer was found.
                source.check("fixed disk data", 0, virtual_size)?;
                Ok(Self { virtual_size, dynamic: None })
            }
            DYNAMIC if leading => {
                let dynamic = open_dynamic(source, &footer, virtual_size)?;
                Ok(Self { virtual_size, dynamic: Some(dynamic) })
            }
            DYNAMIC => Err(source.malformed("a dynamic disk without the footer copy at byte 0".to_owned())),
            other => Err(source.unsupported(format!("disk type {other} (only fixed 2 and dynamic 3)"))),
        }
    }

    pub(crate) fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    pub(crate) fn walk<R: Read + Seek>(&self, source: &mut Source<R>, copier: &mut Copier) -> Result<(), FormatError> {
        let Some(dynamic) = &self.dynamic else {
            return copier.data(source, 0, 0, self.virtual_size);
        };
        let mut bat = vec![0u8; usize::try_from(dynamic.entries * 4).unwrap_or(0)];
        source.read_at("block allocation table", dynamic.bat_offset, &mut bat)?;
        let mut layout = Layout::default();
        layout.add(source, "footer copy", 0, FOOTER_LEN)?;
        layout.add(source, "dynamic header", dynamic.header_offset, DYNAMIC_HEADER_LEN)?;
        layout.add(source, "block allocation table", dynamic.bat_offset, dynamic.entries * 4)?;
        let allocated = || {
            bat.chunks_exact(4).enumerate().filter_map(|(index, raw)| {
                let entry = be32(raw, 0).unwrap_or(UNALLOCATED);
                (entry != UNALLOCATED).then_some((index as u64, u64::from(entry) * SECTOR))
            })
        };
        for (index, host) in allocated() {
            let visible = dynamic.block.min(self.virtual_size - index * dynamic.block);
            layout.add(source, "block", host, dynamic.bitmap + visible)?;
        }
        layout.seal(source)?;
        let mut bitmap = vec![0u8; usize::try_from(dynamic.bitmap).unwrap_or(0)];
        for (index, host) in allocated() {
            let guest = index * dynamic.block;
            let visible = dynamic.block.min(self.virtual_size - guest);
            source.read_at("sector bitmap", host, &mut bitmap)?;
            let data = host + dynamic.bitmap;
            let sectors = visible.div_ceil(SECTOR);
            let mut sector = 0;
            while sector < sectors {
                let present = bit(&bitmap, sector);
                let run = (sector..sectors).take_while(|at| bit(&bitmap, *at) == present).count() as u64;
                if present {
                    let start = sector * SECTOR;
                    let len = (run * SECTOR).min(visible - start);
                    copier.data(source, guest + start, data + start, len)?;
                }
                sector += run;
            }
        }
        Ok(())
    }
}

/// Sector `sector`'s bit, most significant bit first.
fn bit(bitmap: &[u8], sector: u64) -> bool {
    let byte = usize::try_from(sector / 8).ok().and_then(|at| bitmap.get(at)).copied().unwrap_or(0);
    byte & (0x80 >> (sector % 8)) != 0
}

/// The disk size as qemu computes it: Virtual PC and old qemu size disks by their CHS
/// geometry, every other creator by the current size, and a maximal geometry means the
/// current size too.
fn size(footer: &[u8]) -> u64 {
    let cylinders = u64::from(footer.get(56..58).map_or(0, |bytes| u16::from_be_bytes([bytes[0], bytes[1]])));
    let heads = u64::from(footer.get(58).copied().unwrap_or(0));
    let sectors = u64::from(footer.get(59).copied().unwrap_or(0));
    let chs = cylinders * heads * sectors;
    let creator = footer.get(28..32).unwrap_or_default();
    let use_chs = creator == b"vpc " || creator == b"qemu";
    if use_chs && chs != MAX_GEOMETRY { chs * SECTOR } else { be64(footer, 48).unwrap_or(0) / SECTOR * SECTOR }
}

fn open_dynamic<R: Read + Seek>(
    source: &mut Source<R>,
    footer: &[u8],
    virtual_size: u64,
) -> Result<Dynamic, FormatError> {
    let header_offset = be64(footer, 16).unwrap_or(0);
    if header_offset < FOOTER_LEN {
        return Err(source.malformed(format!("the dynamic header at offset {header_offset:#x} overlaps the footer")));
    }
    let mut header = vec![0u8; DYNAMIC_HEADER_LEN as usize];
    source.read_at("dynamic header", header_offset, &mut header)?;
    if !header.starts_with(DYNAMIC_COOKIE) {
        return Err(source.malformed(format!("no dynamic header (cxsparse) at offset {header_offset:#x}")));
    }
    let bat_offset = be64(&header, 16).unwrap_or(0);
    let max_entries = u64::from(be32(&header, 28).unwrap_or(0));
    let block = u64::from(be32(&header, 32).unwrap_or(0));
    if !block.is_power_of_two() || !(MIN_BLOCK..=MAX_BLOCK).contains(&block) {
        return Err(source.unsupported(format!("block size {block} (only powers of two from 512 KiB to 256 MiB)")));
    }
    let entries = virtual_size.div_ceil(block);
    if max_entries < entries {
        return Err(source.malformed(format!(
            "a block allocation table of {max_entries} entries cannot map a disk of {virtual_size} bytes"
        )));
    }
    let mut layout = Layout::default();
    layout.add(source, "footer copy", 0, FOOTER_LEN)?;
    layout.add(source, "dynamic header", header_offset, DYNAMIC_HEADER_LEN)?;
    layout.add(source, "block allocation table", bat_offset, entries * 4)?;
    layout.seal(source)?;
    let bitmap = (block / SECTOR / 8).next_multiple_of(SECTOR);
    Ok(Dynamic { header_offset, bat_offset, block, bitmap, entries })
}

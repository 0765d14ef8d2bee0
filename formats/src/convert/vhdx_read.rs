//! Reading VHDX: the current of the two headers (CRC-32C checked, highest sequence number),
//! the region table (BAT and metadata regions), the metadata items (block size, logical sector
//! size, virtual disk size) and the block allocation table, whose payload entries say whether
//! a block is stored (fully present) or reads as zeros, with one sector-bitmap entry after every
//! chunk of payload entries. A log with entries to replay is refused: its data would belong to
//! the disk, and qemu replays it only when it may write the file. So are differencing disks
//! (a parent, partially present blocks) and unknown required regions or items. Every structure
//! must lie inside the file and apart from the others.

use std::io::{Read, Seek};

use super::layout::Layout;
use super::pipeline::{Copier, Source};
use crate::error::FormatError;
use crate::field::{le16, le32, le64};

const IDENT: &[u8] = b"vhdxfile";
const HEADER_OFFSETS: [u64; 2] = [64 * 1024, 128 * 1024];
const HEADER_LEN: usize = 4096;
const HEADER_SIGNATURE: &[u8] = b"head";
const REGION_TABLE_AT: u64 = 192 * 1024;
const TABLE_LEN: usize = 64 * 1024;
const REGION_SIGNATURE: &[u8] = b"regi";
const METADATA_SIGNATURE: &[u8] = b"metadata";
const LOG_SIGNATURE: &[u8] = b"loge";
const MIB: u64 = 1024 * 1024;
/// The header section: file identifier, two headers, two region tables.
const HEADER_SECTION: u64 = MIB;
const MAX_ENTRIES: u64 = 2047;
const MAX_VIRTUAL_SIZE: u64 = 64 * 1024 * 1024 * MIB;
const MIN_BLOCK: u64 = MIB;
const MAX_BLOCK: u64 = 256 * MIB;
/// BAT entry states.
const STATE_MASK: u64 = 7;
const NOT_PRESENT: u64 = 0;
const UNDEFINED: u64 = 1;
const ZERO: u64 = 2;
const UNMAPPED: u64 = 3;
const FULLY_PRESENT: u64 = 6;
const PARTIALLY_PRESENT: u64 = 7;
const OFFSET_MASK: u64 = !(MIB - 1);
/// BAT entries read at a time.
const BAT_SLICE: u64 = 8 * 1024;

const BAT_REGION: [u8; 16] = guid(0x2DC2_7766, 0xF623, 0x4200, [0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08]);
const METADATA_REGION: [u8; 16] = guid(0x8B7C_A206, 0x4790, 0x4B9A, [0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E]);
const FILE_PARAMETERS: [u8; 16] = guid(0xCAA1_6737, 0xFA36, 0x4D43, [0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B]);
const VIRTUAL_DISK_SIZE: [u8; 16] = guid(0x2FA5_4224, 0xCD1B, 0x4876, [0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8]);
const LOGICAL_SECTOR_SIZE: [u8; 16] =
    guid(0x8141_BF1D, 0xA96F, 0x4709, [0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F]);
const PHYSICAL_SECTOR_SIZE: [u8; 16] =
    guid(0xCDA3_48C7, 0x445D, 0x4471, [0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56]);
const PAGE_83: [u8; 16] = guid(0xBECA_12AB, 0xB2E6, 0x4523, [0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46]);
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

/// The validated headers, regions and metadata of a VHDX image.
pub(crate) struct VhdxReader {
    virtual_size: u64,
    block: u64,
    chunk_ratio: u64,
    bat_offset: u64,
    /// BAT entries that cover the disk, sector-bitmap entries included.
    bat_entries: u64,
    /// Structures the blocks must keep off.
    fixed: Vec<(&'static str, u64, u64)>,
}

impl VhdxReader {
    pub(crate) fn open<R: Read + Seek>(source: &mut Source<R>) -> Result<Self, FormatError> {
        if source.len() < HEADER_SECTION {
            return Err(source.malformed(format!("the header section is truncated at {} bytes", source.len())));
        }
        let mut ident = [0u8; 8];
        source.read_at("file identifier", 0, &mut ident)?;
        if ident != IDENT {
            return Err(source.malformed("the vhdxfile identifier is missing".to_owned()));
        }
        let header = current_header(source)?;
        let mut fixed = vec![("header section", 0, HEADER_SECTION)];
        check_log(source, &header, &mut fixed)?;

        let mut table = vec![0u8; TABLE_LEN];
        source.read_at("region table", REGION_TABLE_AT, &mut table)?;
        if !table.starts_with(REGION_SIGNATURE) || !checksum_holds(&table) {
            return Err(source.malformed("the region table's signature or checksum is wrong".to_owned()));
        }
        let count = u64::from(le32(&table, 8).unwrap_or(0));
        if count > MAX_ENTRIES {
            return Err(source.malformed(format!("the region table has {count} entries (limit {MAX_ENTRIES})")));
        }
        let (mut bat, mut metadata) = (None, None);
        for entry in entries(&table, 16, count) {
            let id = entry.get(..16).unwrap_or_default();
            let offset = le64(entry, 16).unwrap_or(0);
            let len = u64::from(le32(entry, 24).unwrap_or(0));
            let required = le32(entry, 28).unwrap_or(0) & 1 != 0;
            let region = Some((offset, len));
            if !offset.is_multiple_of(MIB) || !len.is_multiple_of(MIB) || offset < HEADER_SECTION {
                return Err(source.malformed(format!(
                    "a region at offset {offset:#x} of {len} bytes is not 1 MiB-aligned past the header section"
                )));
            }
            if id == BAT_REGION {
                bat = region;
            } else if id == METADATA_REGION {
                metadata = region;
            } else if required {
                return Err(source.unsupported("the region table has an unknown required region".to_owned()));
            }
        }
        let ((bat_offset, bat_len), (metadata_offset, metadata_len)) = bat
            .zip(metadata)
            .ok_or_else(|| source.malformed("the region table lacks the BAT or metadata region".to_owned()))?;
        fixed.push(("block allocation table", bat_offset, bat_len));
        fixed.push(("metadata region", metadata_offset, metadata_len));

        let items = read_metadata(source, metadata_offset, metadata_len)?;
        let block = u64::from(items.block);
        if !block.is_power_of_two() || !(MIN_BLOCK..=MAX_BLOCK).contains(&block) {
            return Err(source.malformed(format!("block size {block} (powers of two from 1 MiB to 256 MiB)")));
        }
        let sector = u64::from(items.logical_sector);
        if sector != 512 && sector != 4096 {
            return Err(source.malformed(format!("logical sector size {sector} (512 or 4096)")));
        }
        let virtual_size = items.virtual_size;
        if virtual_size > MAX_VIRTUAL_SIZE || !virtual_size.is_multiple_of(sector) {
            return Err(
                source.malformed(format!("virtual size {virtual_size} is not a multiple of {sector} up to 64 TiB"))
            );
        }
        let chunk_ratio = (1u64 << 23) * sector / block;
        let data_blocks = virtual_size.div_ceil(block);
        let bat_entries = if data_blocks == 0 { 0 } else { data_blocks + (data_blocks - 1) / chunk_ratio };
        if bat_entries * 8 > bat_len {
            return Err(source.malformed(format!("a BAT region of {bat_len} bytes cannot hold {bat_entries} entries")));
        }
        let mut layout = Layout::default();
        for (what, offset, len) in &fixed {
            layout.add(source, what, *offset, *len)?;
        }
        layout.seal(source)?;
        Ok(Self { virtual_size, block, chunk_ratio, bat_offset, bat_entries, fixed })
    }

    pub(crate) fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    pub(crate) fn walk<R: Read + Seek>(&self, source: &mut Source<R>, copier: &mut Copier) -> Result<(), FormatError> {
        let mut layout = Layout::default();
        for (what, offset, len) in &self.fixed {
            layout.add(source, what, *offset, *len)?;
        }
        self.each_entry(source, |source, mapped| match mapped {
            Mapped::Payload { host, len, .. } => layout.add(source, "payload block", host, len),
            Mapped::Bitmap { host } => layout.add(source, "sector bitmap block", host, MIB),
        })?;
        layout.seal(source)?;
        self.each_entry(source, |source, mapped| match mapped {
            Mapped::Payload { guest, host, len } => copier.data(source, guest, host, len),
            Mapped::Bitmap { .. } => Ok(()),
        })
    }

    /// Calls `each` with every stored block the BAT names, in guest order.
    fn each_entry<R, F>(&self, source: &mut Source<R>, mut each: F) -> Result<(), FormatError>
    where
        R: Read + Seek,
        F: FnMut(&mut Source<R>, Mapped) -> Result<(), FormatError>,
    {
        let mut bat = Vec::new();
        let mut index = 0;
        while index < self.bat_entries {
            let count = BAT_SLICE.min(self.bat_entries - index);
            bat.resize(usize::try_from(count * 8).unwrap_or(0), 0);
            source.read_at("block allocation table", self.bat_offset + index * 8, &mut bat)?;
            for (at, raw) in bat.chunks_exact(8).enumerate() {
                let position = index + at as u64;
                let entry = le64(raw, 0).unwrap_or(0);
                let (state, host) = (entry & STATE_MASK, entry & OFFSET_MASK);
                // After every chunk_ratio payload entries comes one sector-bitmap entry.
                if (position + 1).is_multiple_of(self.chunk_ratio + 1) {
                    match state {
                        NOT_PRESENT => {}
                        FULLY_PRESENT => each(source, Mapped::Bitmap { host })?,
                        other => {
                            return Err(source.malformed(format!("sector bitmap entry {position} has state {other}")));
                        }
                    }
                    continue;
                }
                let block = position - position / (self.chunk_ratio + 1);
                let guest = block * self.block;
                match state {
                    NOT_PRESENT | UNDEFINED | ZERO | UNMAPPED => {}
                    FULLY_PRESENT => {
                        let len = self.block.min(self.virtual_size - guest);
                        each(source, Mapped::Payload { guest, host, len })?;
                    }
                    PARTIALLY_PRESENT => {
                        return Err(source.unsupported(format!(
                            "block {block} is partially present, which only differencing disks use"
                        )));
                    }
                    other => return Err(source.malformed(format!("BAT entry {position} has state {other}"))),
                }
            }
            index += count;
        }
        Ok(())
    }
}

/// A stored block named by the BAT.
enum Mapped {
    Payload { guest: u64, host: u64, len: u64 },
    Bitmap { host: u64 },
}

/// The fields of the current header that matter.
struct Header {
    log_guid: [u8; 16],
    log_offset: u64,
    log_len: u64,
}

/// The valid header with the higher sequence number.
fn current_header<R: Read + Seek>(source: &mut Source<R>) -> Result<Header, FormatError> {
    let mut best: Option<(u64, Header)> = None;
    for offset in HEADER_OFFSETS {
        let mut header = vec![0u8; HEADER_LEN];
        source.read_at("header", offset, &mut header)?;
        if !header.starts_with(HEADER_SIGNATURE) || !checksum_holds(&header) {
            continue;
        }
        let sequence = le64(&header, 8).unwrap_or(0);
        let version = le16(&header, 66).unwrap_or(0);
        if version != 1 {
            return Err(source.unsupported(format!("header version {version} (only 1)")));
        }
        let mut log_guid = [0u8; 16];
        log_guid.copy_from_slice(header.get(48..64).unwrap_or(&[0; 16]));
        let parsed = Header {
            log_guid,
            log_len: u64::from(le32(&header, 68).unwrap_or(0)),
            log_offset: le64(&header, 72).unwrap_or(0),
        };
        if best.as_ref().is_none_or(|(seen, _)| sequence > *seen) {
            best = Some((sequence, parsed));
        }
    }
    best.map(|(_, header)| header).ok_or_else(|| source.malformed("neither header is valid".to_owned()))
}

/// Refuses a log with entries to replay: a non-zero log GUID and an entry carrying it.
fn check_log<R: Read + Seek>(
    source: &mut Source<R>,
    header: &Header,
    fixed: &mut Vec<(&'static str, u64, u64)>,
) -> Result<(), FormatError> {
    if header.log_len == 0 {
        return Ok(());
    }
    if !header.log_offset.is_multiple_of(MIB) || !header.log_len.is_multiple_of(MIB) {
        return Err(source.malformed(format!("the log at {:#x} is not 1 MiB-aligned", header.log_offset)));
    }
    source.check("log", header.log_offset, header.log_len)?;
    fixed.push(("log", header.log_offset, header.log_len));
    if header.log_guid == [0; 16] {
        return Ok(());
    }
    let mut chunk = vec![0u8; MIB as usize];
    let mut done = 0;
    while done < header.log_len {
        source.read_at("log", header.log_offset + done, &mut chunk)?;
        let replayable = chunk
            .chunks_exact(HEADER_LEN)
            .any(|sector| sector.starts_with(LOG_SIGNATURE) && sector.get(32..48) == Some(&header.log_guid[..]));
        if replayable {
            return Err(source.unsupported(
                "the log has entries to replay (open and close the disk in Hyper-V or qemu first)".to_owned(),
            ));
        }
        done += MIB;
    }
    Ok(())
}

/// The metadata items the reader needs.
struct Items {
    block: u32,
    logical_sector: u32,
    virtual_size: u64,
}

fn read_metadata<R: Read + Seek>(source: &mut Source<R>, offset: u64, len: u64) -> Result<Items, FormatError> {
    let mut table = vec![0u8; TABLE_LEN];
    source.read_at("metadata table", offset, &mut table)?;
    if !table.starts_with(METADATA_SIGNATURE) {
        return Err(source.malformed(format!("the metadata table signature is missing at offset {offset:#x}")));
    }
    let count = u64::from(le16(&table, 10).unwrap_or(0));
    if count > MAX_ENTRIES {
        return Err(source.malformed(format!("the metadata table has {count} entries (limit {MAX_ENTRIES})")));
    }
    let (mut block, mut logical_sector, mut virtual_size) = (None, None, None);
    for entry in entries(&table, 32, count) {
        let id = entry.get(..16).unwrap_or_default();
        let item_offset = u64::from(le32(entry, 16).unwrap_or(0));
        let item_len = u64::from(le32(entry, 20).unwrap_or(0));
        let required = le32(entry, 24).unwrap_or(0) & 4 != 0;
        if id == PARENT_LOCATOR {
            return Err(source.unsupported("differencing disk: the metadata names a parent".to_owned()));
        }
        let read_item = |source: &mut Source<R>, size: usize| -> Result<Vec<u8>, FormatError> {
            if item_len < size as u64 || item_offset < TABLE_LEN as u64 || item_offset + item_len > len {
                return Err(source.malformed(format!(
                    "a metadata item at {item_offset:#x} of {item_len} bytes lies outside the metadata region"
                )));
            }
            let mut item = vec![0u8; size];
            source.read_at("metadata item", offset + item_offset, &mut item)?;
            Ok(item)
        };
        if id == FILE_PARAMETERS {
            let item = read_item(source, 8)?;
            if le32(&item, 4).unwrap_or(0) & 2 != 0 {
                return Err(source.unsupported("differencing disk: the file parameters name a parent".to_owned()));
            }
            block = le32(&item, 0);
        } else if id == VIRTUAL_DISK_SIZE {
            virtual_size = le64(&read_item(source, 8)?, 0);
        } else if id == LOGICAL_SECTOR_SIZE {
            logical_sector = le32(&read_item(source, 4)?, 0);
        } else if required && id != PHYSICAL_SECTOR_SIZE && id != PAGE_83 {
            return Err(source.unsupported("the metadata has an unknown required item".to_owned()));
        }
    }
    match (block, logical_sector, virtual_size) {
        (Some(block), Some(logical_sector), Some(virtual_size)) => Ok(Items { block, logical_sector, virtual_size }),
        _ => Err(source.malformed("the metadata lacks the file parameters, sector size or disk size".to_owned())),
    }
}

/// The `count` 32-byte entries of a table, from byte `first`.
fn entries(table: &[u8], first: usize, count: u64) -> impl Iterator<Item = &[u8]> {
    table.get(first..).unwrap_or_default().chunks_exact(32).take(usize::try_from(count).unwrap_or(0))
}

/// CRC-32C of `data` with its checksum field (bytes 4..8) taken as zero, against that field.
fn checksum_holds(data: &[u8]) -> bool {
    let mut crc = !0u32;
    for (at, byte) in data.iter().enumerate() {
        let byte = if (4..8).contains(&at) { 0 } else { *byte };
        crc = CRC32C[usize::from((crc as u8) ^ byte)] ^ (crc >> 8);
    }
    le32(data, 4) == Some(!crc)
}

/// The CRC-32C (Castagnoli, reflected 0x82F63B78) table.
static CRC32C: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut crc = index as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            bit += 1;
        }
        table[index] = crc;
        index += 1;
    }
    table
};

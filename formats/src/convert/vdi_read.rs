//! Reading VirtualBox VDI, static and dynamic: a header, a block map of 32-bit entries, and
//! 1 MiB blocks of data. An entry names the block's place in the data area; unallocated and
//! discarded blocks read as zeros. qemu's rules are kept (version 1.1, 512-byte sectors,
//! 1 MiB blocks, no parent or link, an odd disk size rounded down to whole sectors), and the
//! map, the data area and the blocks must lie inside the file, clear of the header and of each
//! other.

use std::io::{Read, Seek};

use super::layout::Layout;
use super::pipeline::{Copier, Source};
use crate::error::FormatError;
use crate::field::{le32, le64};

const SIGNATURE: u32 = 0xBEDA_107F;
const VERSION: u32 = 0x0001_0001;
const DYNAMIC: u32 = 1;
const STATIC: u32 = 2;
const SECTOR: u64 = 512;
/// The only block size qemu reads.
const BLOCK: u64 = 1 << 20;
/// Entries at or above this are unallocated (0xffffffff) or discarded (0xfffffffe): zeros.
const FIRST_FREE: u32 = 0xFFFF_FFFE;
/// The header as qemu reads it: up to the parent UUID.
const HEADER_LEN: usize = 0x1C8;
/// Block map entries read at a time.
const MAP_SLICE: u64 = 16 * 1024;

/// The validated header of a VDI image.
pub(crate) struct VdiReader {
    virtual_size: u64,
    map_offset: u64,
    data_offset: u64,
    /// Block map entries that cover the disk.
    blocks: u64,
}

impl VdiReader {
    pub(crate) fn open<R: Read + Seek>(source: &mut Source<R>) -> Result<Self, FormatError> {
        if source.len() < HEADER_LEN as u64 {
            return Err(source.malformed(format!("the header is truncated at {} bytes", source.len())));
        }
        let mut head = vec![0u8; HEADER_LEN];
        source.read_at("header", 0, &mut head)?;
        let field32 = |at| le32(&head, at).unwrap_or(0);
        if field32(0x40) != SIGNATURE {
            return Err(source.malformed("the VDI signature is missing".to_owned()));
        }
        let version = field32(0x44);
        if version != VERSION {
            return Err(source.unsupported(format!("version {}.{} (only 1.1)", version >> 16, version & 0xffff)));
        }
        let kind = field32(0x4C);
        if kind != DYNAMIC && kind != STATIC {
            return Err(source.unsupported(format!("image type {kind} (only dynamic 1 and static 2)")));
        }
        let (map_offset, data_offset) = (u64::from(field32(0x154)), u64::from(field32(0x158)));
        let sector_size = field32(0x168);
        let block_size = u64::from(field32(0x178));
        let block_extra = field32(0x17C);
        let blocks_in_image = u64::from(field32(0x180));
        if sector_size != SECTOR as u32 {
            return Err(source.unsupported(format!("sector size {sector_size} (only 512)")));
        }
        if block_size != BLOCK || block_extra != 0 {
            return Err(source
                .unsupported(format!("block size {block_size} with {block_extra} extra bytes (only 1 MiB blocks)")));
        }
        if head.get(0x1A8..0x1C8).is_some_and(|uuids| uuids.iter().any(|byte| *byte != 0)) {
            return Err(source.unsupported("the image names a parent or linked image".to_owned()));
        }
        if !map_offset.is_multiple_of(SECTOR) || !data_offset.is_multiple_of(SECTOR) {
            return Err(source.malformed(format!(
                "the block map ({map_offset:#x}) or the data ({data_offset:#x}) is not sector-aligned"
            )));
        }
        // qemu ignores the bytes of an odd size past the last whole sector.
        let virtual_size = le64(&head, 0x170).unwrap_or(0) / SECTOR * SECTOR;
        let blocks = virtual_size.div_ceil(BLOCK);
        if blocks > blocks_in_image {
            return Err(source.malformed(format!(
                "a block map of {blocks_in_image} entries cannot map a disk of {virtual_size} bytes"
            )));
        }
        let map_len = blocks_in_image * 4;
        source.check("block map", map_offset, map_len)?;
        if map_offset < HEADER_LEN as u64 {
            return Err(source.malformed(format!("the block map at offset {map_offset:#x} overlaps the header")));
        }
        if data_offset < map_offset.saturating_add(map_len) {
            return Err(
                source.malformed(format!("the data at offset {data_offset:#x} starts before the end of the block map"))
            );
        }
        Ok(Self { virtual_size, map_offset, data_offset, blocks })
    }

    pub(crate) fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    pub(crate) fn walk<R: Read + Seek>(&self, source: &mut Source<R>, copier: &mut Copier) -> Result<(), FormatError> {
        // First pass: every allocated block inside the file and used once.
        let mut layout = Layout::default();
        self.each_entry(source, |source, index, entry| {
            let host = self.data_offset + u64::from(entry) * BLOCK;
            layout.add(source, "block", host, BLOCK.min(self.virtual_size - index * BLOCK))
        })?;
        layout.seal(source)?;
        self.each_entry(source, |source, index, entry| {
            let host = self.data_offset + u64::from(entry) * BLOCK;
            let guest = index * BLOCK;
            copier.data(source, guest, host, BLOCK.min(self.virtual_size - guest))
        })
    }

    /// Calls `each` with every allocated entry of the block map, in guest order.
    fn each_entry<R, F>(&self, source: &mut Source<R>, mut each: F) -> Result<(), FormatError>
    where
        R: Read + Seek,
        F: FnMut(&mut Source<R>, u64, u32) -> Result<(), FormatError>,
    {
        let mut map = Vec::new();
        let mut index = 0;
        while index < self.blocks {
            let count = MAP_SLICE.min(self.blocks - index);
            map.resize(usize::try_from(count * 4).unwrap_or(0), 0);
            source.read_at("block map", self.map_offset + index * 4, &mut map)?;
            for (at, raw) in map.chunks_exact(4).enumerate() {
                let entry = le32(raw, 0).unwrap_or(u32::MAX);
                if entry < FIRST_FREE {
                    each(source, index + at as u64, entry)?;
                }
            }
            index += count;
        }
        Ok(())
    }
}

//! Reading a VMDK sparse extent: monolithicSparse, and streamOptimized (compressed grains
//! behind markers, the real header in a footer at the end of the file).
//!
//! The grain directory (GD) lists grain tables (GT), whose entries give each grain's sector in
//! the file: 0 is unallocated, 1 a zero grain when the header allows those, anything else data
//! (or, in a compressed extent, a marker and a zlib stream that inflates to the grain). Only
//! the one extent in this file is read: a descriptor naming extents in other files, flat or
//! sparse, is refused, as the inspector refuses it. Every grain table must lie inside the file,
//! clear of the header, descriptor, directory, footer and other tables (a directory that points
//! two entries at one table, or at itself, is refused), and no grain may overlap them.

use std::io::{Read, Seek};

use super::layout::Layout;
use super::pipeline::{Codec, Copier, Source};
use crate::error::FormatError;
use crate::field::{le16, le32, le64};

const MAGIC: &[u8] = b"KDMV";
const SECTOR: u64 = 512;
const GD_AT_END: u64 = u64::MAX;
const FLAG_ZERO_GRAIN: u32 = 1 << 2;
const FLAG_COMPRESSED: u32 = 1 << 16;
const FLAG_MARKERS: u32 = 1 << 17;
const DEFLATE: u16 = 1;
const MARKER_FOOTER: u32 = 3;
/// qemu's limit on grain table entries.
const MAX_GT_ENTRIES: u32 = 512;
/// Grains up to this size are read; qemu writes 64 KiB and VMware too.
const MAX_GRAIN: u64 = 16 * 1024 * 1024;
/// qemu's limit on the grain directory: 32 Mi entries.
const MAX_GD_ENTRIES: u64 = 32 * 1024 * 1024;
/// A grain marker: the grain's sector (u64) and the compressed size (u32).
const MARKER_LEN: u64 = 12;
const FOOTER_LEN: u64 = 1536;
/// Grain directory entries read at a time.
const GD_SLICE: u64 = 16 * 1024;

/// The validated header (the footer's, for streamOptimized) of a sparse extent.
pub(crate) struct VmdkReader {
    virtual_size: u64,
    grain: u64,
    gt_entries: u64,
    gd_offset: u64,
    gd_entries: u64,
    compressed: bool,
    markers: bool,
    zero_grains: bool,
    /// Metadata the walk must keep grains off: header, descriptor, directory, footer.
    fixed: Vec<(&'static str, u64, u64)>,
}

impl VmdkReader {
    pub(crate) fn open<R: Read + Seek>(source: &mut Source<R>) -> Result<Self, FormatError> {
        let len = source.len();
        if len < SECTOR {
            return Err(source.malformed(format!("the header is truncated at {len} bytes")));
        }
        let mut head = vec![0u8; SECTOR as usize];
        source.read_at("header", 0, &mut head)?;
        if !head.starts_with(MAGIC) {
            return Err(source.unsupported("only sparse extents (KDMV) are read".to_owned()));
        }
        let mut fixed = vec![("header", 0, SECTOR)];
        let (desc_offset, desc_sectors) = (le64(&head, 28).unwrap_or(0), le64(&head, 36).unwrap_or(0));
        if le64(&head, 12) == Some(0) && desc_offset != 0 {
            return Err(source.unsupported("the descriptor names extents in other files".to_owned()));
        }
        if desc_offset != 0 && desc_sectors != 0 {
            let at = desc_offset.saturating_mul(SECTOR);
            let size = desc_sectors.saturating_mul(SECTOR);
            fixed.push(("descriptor", at, size));
        }
        let mut header = head;
        if le64(&header, 56) == Some(GD_AT_END) {
            header = read_footer(source)?;
            fixed.push(("footer", len - FOOTER_LEN, FOOTER_LEN));
        }
        let field32 = |at| le32(&header, at).unwrap_or(0);
        let field64 = |at| le64(&header, at).unwrap_or(0);
        let version = field32(4);
        if version > 3 {
            return Err(source.unsupported(format!("version {version} (only 1 to 3)")));
        }
        let flags = field32(8);
        let capacity = field64(12);
        let grain_sectors = field64(20);
        let gt_entries = field32(44);
        let gd_sectors = field64(56);
        if gt_entries == 0 || gt_entries > MAX_GT_ENTRIES {
            return Err(source.malformed(format!("{gt_entries} entries per grain table (1 to {MAX_GT_ENTRIES})")));
        }
        let grain = grain_sectors.saturating_mul(SECTOR);
        if grain == 0 || grain > MAX_GRAIN {
            return Err(source.unsupported(format!("grains of {grain_sectors} sectors (1 to 32768)")));
        }
        let virtual_size = capacity
            .checked_mul(SECTOR)
            .filter(|size| *size <= i64::MAX as u64)
            .ok_or_else(|| source.malformed(format!("a capacity of {capacity} sectors overflows")))?;
        let gt_entries = u64::from(gt_entries);
        let gd_entries = virtual_size.div_ceil(grain * gt_entries);
        if gd_entries > MAX_GD_ENTRIES {
            return Err(source.malformed(format!("a grain directory of {gd_entries} entries exceeds qemu's limit")));
        }
        let gd_offset = gd_sectors.saturating_mul(SECTOR);
        if gd_entries > 0 {
            fixed.push(("grain directory", gd_offset, gd_entries * 4));
        }
        let compressed = le16(&header, 77) == Some(DEFLATE);
        if flags & FLAG_COMPRESSED != 0 && !compressed {
            return Err(source
                .unsupported(format!("compression algorithm {} (only deflate 1)", le16(&header, 77).unwrap_or(0))));
        }
        let mut layout = Layout::default();
        for (what, offset, len) in &fixed {
            layout.add(source, what, *offset, *len)?;
        }
        layout.seal(source)?;
        Ok(Self {
            virtual_size,
            grain,
            gt_entries,
            gd_offset,
            gd_entries,
            compressed,
            markers: flags & FLAG_MARKERS != 0,
            zero_grains: flags & FLAG_ZERO_GRAIN != 0,
            fixed,
        })
    }

    pub(crate) fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    pub(crate) fn walk<R: Read + Seek>(&self, source: &mut Source<R>, copier: &mut Copier) -> Result<(), FormatError> {
        let gt_len = self.gt_entries * 4;
        let mut layout = Layout::default();
        for (what, offset, len) in &self.fixed {
            layout.add(source, what, *offset, *len)?;
        }
        self.each_table(source, |source, _, table| layout.add(source, "grain table", table, gt_len))?;
        layout.seal(source)?;
        let mut gt = vec![0u8; usize::try_from(gt_len).unwrap_or(0)];
        let grain = usize::try_from(self.grain).unwrap_or(usize::MAX);
        self.each_table(source, |source, index, table| {
            source.read_at("grain table", table, &mut gt)?;
            for (at, raw) in gt.chunks_exact(4).enumerate() {
                let guest = (index * self.gt_entries + at as u64) * self.grain;
                if guest >= self.virtual_size {
                    break;
                }
                let visible = self.grain.min(self.virtual_size - guest);
                let entry = le32(raw, 0).unwrap_or(0);
                if entry == 0 || (self.zero_grains && entry == 1) {
                    continue;
                }
                let host = u64::from(entry) * SECTOR;
                let what = format!("grain for guest offset {guest:#x}");
                if !self.compressed {
                    layout.check(source, &what, host, visible)?;
                    copier.data(source, guest, host, visible)?;
                    continue;
                }
                let input = self.compressed_range(source, host, &what)?;
                layout.check(source, &what, host, input.end - host)?;
                copier.compressed(source, guest, visible, input, Codec::Zlib, grain)?;
            }
            Ok(())
        })
    }

    /// Where the compressed grain at `host` lies: behind its marker, with the size the marker
    /// gives, or (without markers) the two grains qemu reads, as far as the file goes.
    fn compressed_range<R: Read + Seek>(
        &self,
        source: &mut Source<R>,
        host: u64,
        what: &str,
    ) -> Result<std::ops::Range<u64>, FormatError> {
        if !self.markers {
            source.check(what, host, 1)?;
            return Ok(host..host.saturating_add(2 * self.grain).min(source.len()));
        }
        let mut marker = [0u8; MARKER_LEN as usize];
        source.read_at(what, host, &mut marker)?;
        let size = u64::from(le32(&marker, 8).unwrap_or(0));
        if size == 0 || size > 2 * self.grain {
            return Err(source.malformed(format!("{what} at offset {host:#x} has a compressed size of {size} bytes")));
        }
        let start = host + MARKER_LEN;
        source.check(what, start, size)?;
        Ok(start..start + size)
    }

    /// Calls `each` with every allocated grain table (its index and offset), in guest order.
    fn each_table<R, F>(&self, source: &mut Source<R>, mut each: F) -> Result<(), FormatError>
    where
        R: Read + Seek,
        F: FnMut(&mut Source<R>, u64, u64) -> Result<(), FormatError>,
    {
        let mut gd = Vec::new();
        let mut index = 0;
        while index < self.gd_entries {
            let count = GD_SLICE.min(self.gd_entries - index);
            gd.resize(usize::try_from(count * 4).unwrap_or(0), 0);
            source.read_at("grain directory", self.gd_offset + index * 4, &mut gd)?;
            for (at, raw) in gd.chunks_exact(4).enumerate() {
                let entry = le32(raw, 0).unwrap_or(0);
                if entry != 0 {
                    each(source, index + at as u64, u64::from(entry) * SECTOR)?;
                }
            }
            index += count;
        }
        Ok(())
    }
}

/// The footer of a streamOptimized extent: a footer marker, the header that counts, and an
/// end-of-stream marker, in the last three sectors. Returns the header sector.
fn read_footer<R: Read + Seek>(source: &mut Source<R>) -> Result<Vec<u8>, FormatError> {
    let len = source.len();
    if len < SECTOR + FOOTER_LEN {
        return Err(source.malformed(format!("the file of {len} bytes is too short for a footer")));
    }
    let mut footer = vec![0u8; FOOTER_LEN as usize];
    source.read_at("footer", len - FOOTER_LEN, &mut footer)?;
    let (marker, rest) = footer.split_at(SECTOR as usize);
    let (header, eos) = rest.split_at(SECTOR as usize);
    let marker_ok = le32(marker, 8) == Some(0) && le32(marker, 12) == Some(MARKER_FOOTER);
    let eos_ok = le64(eos, 0) == Some(0) && le32(eos, 8) == Some(0) && le32(eos, 12) == Some(0);
    if !marker_ok || !eos_ok || !header.starts_with(MAGIC) {
        return Err(source.malformed("the footer is invalid".to_owned()));
    }
    if le64(header, 56) == Some(GD_AT_END) {
        return Err(source.malformed("the footer points to another footer".to_owned()));
    }
    Ok(header.to_vec())
}

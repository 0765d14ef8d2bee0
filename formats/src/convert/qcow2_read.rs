//! Reading qcow2 (v2 and v3) into raw, with a reader of our own rather than qcow2-rs.
//!
//! qcow2-rs 0.1.6 reads images with clusters under 4 KiB as all zeros, cannot read zstd, brings
//! its own runtime and has panicked on malformed headers; what conversion needs is far smaller
//! than a qcow2 driver: walk the active L1 table once, front to back, and tell the
//! [`Copier`] what each L2 entry maps (data, zlib or zstd compressed, or zeros). So this
//! reader does only that, holding one slice of the L1 table and one L2 table, and every offset
//! taken from the image is checked against the file before it is read: a table or cluster
//! outside the file, over the header cluster or misaligned is a [`FormatError::Malformed`],
//! never a panic nor a read elsewhere. Refcounts, snapshots and bitmaps do not affect what the
//! guest sees and are not read.

use std::io::{Read, Seek};
use std::ops::Range;

use super::pipeline::{Codec, Copier, Source};
use crate::detect::qcow2::{CLUSTER_BITS, MAGIC, MAX_L1_BYTES, V3_MIN_HEADER};
use crate::error::FormatError;
use crate::field::{be32, be64};
use crate::format::Format;

/// Bits 9..=55 of L1 and standard L2 entries hold the host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COMPRESSED_FLAG: u64 = 1 << 62;
const ZERO_FLAG: u64 = 1;
/// Incompatible feature bits (v3).
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
/// Dirty, corrupt and compression type: a dirty or corrupt image only has stale refcounts,
/// which reading never uses (qemu opens both read-only).
const INCOMPAT_READABLE: u64 = 0b1011;
/// Compressed clusters are sized in 512-byte sectors.
const SECTOR: u64 = 512;
/// Bytes read per L1 slice: the L1 table may be 32 MiB, and only one slice is held at a time.
const L1_SLICE: u64 = 64 * 1024;
/// Bytes of the header the reader looks at: the v3 fields up to the compression type.
const HEADER_READ: usize = 112;

/// The validated header: everything the copy needs, all of it checked against the file.
pub(crate) struct Qcow2Reader {
    file_len: u64,
    cluster_bits: u32,
    cluster: u64,
    virtual_size: u64,
    l1_offset: u64,
    /// L1 entries that map the virtual size; the table may have more.
    l1_used: u64,
    codec: Codec,
}

fn malformed(reason: String) -> FormatError {
    FormatError::Malformed { format: Format::Qcow2, reason }
}

fn unsupported(reason: String) -> FormatError {
    FormatError::Unsupported { format: Format::Qcow2, reason }
}

impl Qcow2Reader {
    /// Reads and validates the header of the qcow2 image in `source`.
    pub(crate) fn open<R: Read + Seek>(source: &mut Source<R>) -> Result<Self, FormatError> {
        let file_len = source.len();
        let mut head = vec![0u8; HEADER_READ.min(usize::try_from(file_len).unwrap_or(usize::MAX))];
        source.read_at("header", 0, &mut head)?;
        if !head.starts_with(MAGIC) {
            return Err(malformed("the qcow2 magic is missing".to_owned()));
        }
        let field32 = |at| be32(&head, at);
        let field64 = |at| be64(&head, at);
        let truncated = || malformed(format!("the header is truncated at {file_len} bytes"));
        let version = field32(4).ok_or_else(truncated)?;
        if version != 2 && version != 3 {
            return Err(unsupported(format!("version {version} (only 2 and 3 are read)")));
        }
        let cluster_bits = field32(20).ok_or_else(truncated)?;
        if !CLUSTER_BITS.contains(&cluster_bits) {
            return Err(malformed(format!("cluster_bits {cluster_bits} is outside qemu's range 9..=21")));
        }
        let cluster = 1u64 << cluster_bits;
        if field64(8).ok_or_else(truncated)? != 0 {
            return Err(unsupported("the image has a backing file".to_owned()));
        }
        let crypt_method = field32(32).ok_or_else(truncated)?;
        if crypt_method != 0 {
            return Err(unsupported(format!("the image is encrypted (method {crypt_method})")));
        }
        let codec = if version == 3 { check_v3_features(&head, cluster, file_len)? } else { Codec::Deflate };
        let virtual_size = field64(24).ok_or_else(truncated)?;
        if virtual_size > i64::MAX as u64 {
            return Err(malformed(format!("virtual size {virtual_size} exceeds {}", i64::MAX)));
        }
        let l1_entries = u64::from(field32(36).ok_or_else(truncated)?);
        let l1_offset = field64(40).ok_or_else(truncated)?;
        let l2_coverage = cluster * (cluster / 8);
        let l1_used = virtual_size.div_ceil(l2_coverage);
        if l1_entries < l1_used {
            return Err(malformed(format!(
                "an L1 table of {l1_entries} entries cannot map a virtual size of {virtual_size} bytes"
            )));
        }
        if l1_entries * 8 > MAX_L1_BYTES {
            return Err(malformed(format!(
                "an L1 table of {} bytes exceeds qemu's limit of {MAX_L1_BYTES}",
                l1_entries * 8
            )));
        }
        let reader = Self { file_len, cluster_bits, cluster, virtual_size, l1_offset, l1_used, codec };
        if l1_used > 0 {
            reader.check_range("L1 table", l1_offset, l1_entries * 8, true)?;
        }
        Ok(reader)
    }

    /// The guest disk size in bytes.
    pub(crate) fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    /// Checks that `[offset, offset + len)` lies in the file, past the header cluster and, when
    /// `aligned`, on a cluster boundary.
    fn check_range(&self, what: &str, offset: u64, len: u64, aligned: bool) -> Result<(), FormatError> {
        if aligned && !offset.is_multiple_of(self.cluster) {
            return Err(malformed(format!(
                "{what} at offset {offset:#x} is not aligned to the cluster size {}",
                self.cluster
            )));
        }
        if offset < self.cluster {
            return Err(malformed(format!("{what} at offset {offset:#x} overlaps the header cluster")));
        }
        match offset.checked_add(len) {
            Some(end) if end <= self.file_len => Ok(()),
            _ => Err(malformed(format!(
                "{what} at offset {offset:#x} with {len} bytes lies past the end of the file ({} bytes)",
                self.file_len
            ))),
        }
    }

    /// Walks the L1 and L2 tables in guest order and tells `copier` what every cluster holds.
    pub(crate) fn walk<R: Read + Seek>(&self, source: &mut Source<R>, copier: &mut Copier) -> Result<(), FormatError> {
        let cluster = usize::try_from(self.cluster).unwrap_or(usize::MAX);
        let l2_entries = self.cluster / 8;
        let mut l1 = Vec::new();
        let mut l2 = vec![0u8; cluster];
        let entries_per_slice = L1_SLICE / 8;
        for l1_index in 0..self.l1_used {
            let in_slice = l1_index % entries_per_slice;
            if in_slice == 0 {
                let count = entries_per_slice.min(self.l1_used - l1_index);
                l1.resize(usize::try_from(count * 8).unwrap_or(0), 0);
                source.read_at("L1 table", self.l1_offset + l1_index * 8, &mut l1)?;
            }
            let entry = be64(&l1, usize::try_from(in_slice * 8).unwrap_or(usize::MAX)).unwrap_or(0);
            let l2_offset = entry & OFFSET_MASK;
            if l2_offset == 0 {
                continue;
            }
            let what = format!("L2 table {l1_index}");
            self.check_range(&what, l2_offset, self.cluster, true)?;
            source.read_at(&what, l2_offset, &mut l2)?;
            let guest_base = l1_index * l2_entries * self.cluster;
            for (index, raw) in l2.chunks_exact(8).enumerate() {
                let guest = guest_base + index as u64 * self.cluster;
                if guest >= self.virtual_size {
                    break;
                }
                let visible = self.cluster.min(self.virtual_size - guest);
                let entry = raw.try_into().map(u64::from_be_bytes).unwrap_or(0);
                self.map_cluster(source, copier, entry, guest, visible)?;
            }
        }
        Ok(())
    }

    /// Tells `copier` what the guest cluster of L2 entry `entry` holds.
    fn map_cluster<R: Read + Seek>(
        &self,
        source: &mut Source<R>,
        copier: &mut Copier,
        entry: u64,
        guest: u64,
        visible: u64,
    ) -> Result<(), FormatError> {
        if entry & COMPRESSED_FLAG != 0 {
            let compressed = self.compressed_range(entry, guest)?;
            let cluster = usize::try_from(self.cluster).unwrap_or(usize::MAX);
            return copier.compressed(source, guest, visible, compressed, self.codec, cluster);
        }
        let host = entry & OFFSET_MASK;
        if entry & ZERO_FLAG != 0 || host == 0 {
            return Ok(());
        }
        self.check_range(&format!("data cluster for guest offset {guest:#x}"), host, visible, true)?;
        copier.data(source, guest, host, visible)
    }

    /// The file range holding the compressed cluster of L2 entry `entry`. qemu sizes it in
    /// whole sectors from the start of the sector it begins in, so its end may pass the end of
    /// a file that ends mid-sector; only the bytes inside the file are read.
    fn compressed_range(&self, entry: u64, guest: u64) -> Result<Range<u64>, FormatError> {
        let size_shift = 62 - (self.cluster_bits - 8);
        let offset = entry & ((1u64 << size_shift) - 1);
        let sectors = ((entry >> size_shift) & ((1u64 << (self.cluster_bits - 8)) - 1)) + 1;
        let len = sectors * SECTOR - offset % SECTOR;
        let what = format!("compressed cluster for guest offset {guest:#x}");
        if offset < self.cluster {
            return Err(malformed(format!("{what} at offset {offset:#x} overlaps the header cluster")));
        }
        let end = offset.saturating_add(len);
        if offset >= self.file_len || end > self.file_len.next_multiple_of(SECTOR) {
            return Err(malformed(format!(
                "{what} at offset {offset:#x} with {len} bytes lies past the end of the file ({} bytes)",
                self.file_len
            )));
        }
        Ok(offset..end.min(self.file_len))
    }
}

/// The v3 header: a length that fits the header cluster, no feature that changes how
/// clusters are read, and zlib or zstd compression (returned).
fn check_v3_features(head: &[u8], cluster: u64, file_len: u64) -> Result<Codec, FormatError> {
    let truncated = || malformed(format!("the v3 header is truncated at {file_len} bytes"));
    let header_length = be32(head, 100).ok_or_else(truncated)?;
    if header_length < V3_MIN_HEADER || u64::from(header_length) > cluster {
        return Err(malformed(format!("header_length {header_length} is outside {V3_MIN_HEADER}..={cluster}")));
    }
    let incompatible = be64(head, 0x48).ok_or_else(truncated)?;
    if incompatible & INCOMPAT_DATA_FILE != 0 {
        return Err(unsupported("the image has an external data file".to_owned()));
    }
    let unknown = incompatible & !(INCOMPAT_READABLE | INCOMPAT_DATA_FILE);
    if unknown != 0 {
        return Err(unsupported(format!("unknown incompatible feature bits {unknown:#x} are set")));
    }
    let compression = if header_length > V3_MIN_HEADER { *head.get(104).ok_or_else(truncated)? } else { 0 };
    match (compression, incompatible & INCOMPAT_COMPRESSION != 0) {
        (0, false) => Ok(Codec::Deflate),
        (0, true) => Err(malformed("the compression type bit is set but the compression type is zlib".to_owned())),
        (_, false) => {
            Err(malformed(format!("compression type {compression} is set without its incompatible feature bit")))
        }
        (1, true) => Ok(Codec::Zstd),
        (other, true) => Err(unsupported(format!("unknown compression type {other}"))),
    }
}

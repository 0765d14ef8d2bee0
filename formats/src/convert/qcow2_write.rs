//! Writing raw into qcow2 v3 with 64 KiB clusters, in one sequential pass over the source.
//!
//! The layout is chosen so that nothing needs to be known in advance but the size: the header
//! cluster and the L1 table come first (written last, once the L2 offsets are known), then each
//! guest range's data clusters followed by its L2 table as soon as the range is done, then the
//! refcount blocks and table. Every cluster of the file is used exactly once, so every refcount
//! is 1 and every L1 and L2 entry carries the COPIED flag, which is what `qemu-img check`
//! expects. Clusters of zeros are left unallocated: without a backing file they read as zeros.

use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};

use super::sparse::is_zero;
use crate::detect::qcow2::{MAGIC, MAX_L1_BYTES};
use crate::error::FormatError;

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// 8-byte entries per L2 table.
const L2_ENTRIES: u64 = CLUSTER / 8;
/// 16-bit refcounts, qemu's default.
const REFCOUNT_ORDER: u32 = 4;
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER * 8 / (1 << REFCOUNT_ORDER);
const COPIED: u64 = 1 << 63;
/// The v3 header with its compression type byte, padded to 8 bytes, as qemu writes it.
const HEADER_LENGTH: u32 = 112;
/// qemu, like the raw format, sees disks in whole 512-byte sectors.
const SECTOR: u64 = 512;

/// Converts the first `len` bytes of `source` into a qcow2 image written to `out`, which must
/// start empty. Returns the virtual size: `len` rounded up to whole sectors, as qemu does.
pub(crate) fn write_qcow2<W: Write + Seek>(mut source: impl Read, len: u64, out: &mut W) -> Result<u64, FormatError> {
    let virtual_size = len.next_multiple_of(SECTOR);
    let l1_entries = virtual_size.div_ceil(CLUSTER * L2_ENTRIES);
    if l1_entries * 8 > MAX_L1_BYTES {
        return Err(FormatError::Unsupported {
            format: crate::format::Format::Raw,
            reason: format!("a disk of {len} bytes is too large for a qcow2 image"),
        });
    }
    let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER);
    let mut file = Output { out, position: None, next_free: 1 + l1_clusters };
    let mut l1 = vec![0u8; usize::try_from(l1_clusters * CLUSTER).unwrap_or(0)];
    let mut l2 = vec![0u8; CLUSTER as usize];
    let mut buffer = vec![0u8; CLUSTER as usize];
    let mut remaining = len;
    for l1_index in 0..l1_entries {
        let mut l2_used = false;
        for l2_index in 0..L2_ENTRIES {
            if remaining == 0 {
                break;
            }
            let take = remaining.min(CLUSTER);
            let data = buffer.get_mut(..usize::try_from(take).unwrap_or(0)).unwrap_or_default();
            read_full(&mut source, data)?;
            remaining -= take;
            if is_zero(data) {
                continue;
            }
            // The last cluster is padded: qcow2 data clusters are always whole.
            buffer.get_mut(usize::try_from(take).unwrap_or(0)..).unwrap_or_default().fill(0);
            let offset = file.append(&buffer)?;
            put_be64(&mut l2, l2_index * 8, offset | COPIED);
            l2_used = true;
        }
        if l2_used {
            let offset = file.append(&l2)?;
            put_be64(&mut l1, l1_index * 8, offset | COPIED);
            l2.fill(0);
        }
    }

    let used = file.next_free;
    let (blocks, table_clusters) = refcount_layout(used);
    let total = used + blocks + table_clusters;
    let mut table = vec![0u8; usize::try_from(table_clusters * CLUSTER).unwrap_or(0)];
    for block in 0..blocks {
        let mut refcounts = vec![0u8; CLUSTER as usize];
        let first = block * REFCOUNTS_PER_BLOCK;
        for (index, refcount) in refcounts.chunks_exact_mut(2).enumerate() {
            if first + (index as u64) < total {
                refcount.copy_from_slice(&1u16.to_be_bytes());
            }
        }
        let offset = file.append(&refcounts)?;
        put_be64(&mut table, block * 8, offset);
    }
    let table_offset = file.append(&table)?;

    let mut header = vec![0u8; CLUSTER as usize];
    header.get_mut(..4).unwrap_or_default().copy_from_slice(MAGIC);
    put_be32(&mut header, 4, 3);
    put_be32(&mut header, 20, CLUSTER_BITS);
    put_be64(&mut header, 24, virtual_size);
    put_be32(&mut header, 36, u32::try_from(l1_entries).unwrap_or(u32::MAX));
    put_be64(&mut header, 40, CLUSTER);
    put_be64(&mut header, 48, table_offset);
    put_be32(&mut header, 56, u32::try_from(table_clusters).unwrap_or(u32::MAX));
    put_be32(&mut header, 96, REFCOUNT_ORDER);
    put_be32(&mut header, 100, HEADER_LENGTH);
    file.write_at(0, &header)?;
    file.write_at(CLUSTER, &l1)?;
    file.out.flush().map_err(|source| FormatError::Write { source })?;
    Ok(virtual_size)
}

/// Refcount blocks and refcount-table clusters needed for `used` clusters plus themselves.
fn refcount_layout(used: u64) -> (u64, u64) {
    let (mut blocks, mut table) = (0, 0);
    loop {
        let total = used + blocks + table;
        let needed_blocks = total.div_ceil(REFCOUNTS_PER_BLOCK);
        let needed_table = (needed_blocks * 8).div_ceil(CLUSTER);
        if (needed_blocks, needed_table) == (blocks, table) {
            return (blocks, table);
        }
        (blocks, table) = (needed_blocks, needed_table);
    }
}

/// Fills `buf` from `source`, which must hold at least the announced length.
fn read_full(source: &mut impl Read, buf: &mut [u8]) -> Result<(), FormatError> {
    source.read_exact(buf).map_err(|source| {
        if source.kind() == ErrorKind::UnexpectedEof {
            FormatError::Read {
                source: std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the raw source is shorter than its announced length",
                ),
            }
        } else {
            FormatError::Read { source }
        }
    })
}

fn put_be64(buf: &mut [u8], at: u64, value: u64) {
    let at = usize::try_from(at).unwrap_or(usize::MAX);
    if let Some(field) = buf.get_mut(at..at.saturating_add(8)) {
        field.copy_from_slice(&value.to_be_bytes());
    }
}

fn put_be32(buf: &mut [u8], at: usize, value: u32) {
    if let Some(field) = buf.get_mut(at..at + 4) {
        field.copy_from_slice(&value.to_be_bytes());
    }
}

/// The qcow2 file being written: clusters are appended in order, the header and L1 table are
/// written in place at the end.
struct Output<'a, W> {
    out: &'a mut W,
    /// Where the output's cursor is, once known, so that appending needs no seek.
    position: Option<u64>,
    next_free: u64,
}

impl<W: Write + Seek> Output<'_, W> {
    /// Writes whole clusters at the end of the file; returns their offset.
    fn append(&mut self, clusters: &[u8]) -> Result<u64, FormatError> {
        let offset = self.next_free * CLUSTER;
        self.write_at(offset, clusters)?;
        self.next_free += (clusters.len() as u64).div_ceil(CLUSTER);
        Ok(offset)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FormatError> {
        let write = |source| FormatError::Write { source };
        if self.position != Some(offset) {
            self.out.seek(SeekFrom::Start(offset)).map_err(write)?;
        }
        self.out.write_all(data).map_err(write)?;
        self.position = Some(offset + data.len() as u64);
        Ok(())
    }
}

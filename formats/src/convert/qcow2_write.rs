//! Writing qcow2 v3 with 64 KiB clusters, in one pass over guest data that arrives in guest
//! order (a raw file read front to back, or any reader's copy).
//!
//! The layout is chosen so that nothing needs to be known in advance but the size: the header
//! cluster and the L1 table come first (written last, once the L2 offsets are known), then each
//! guest range's data clusters followed by its L2 table as soon as the range is done, then the
//! refcount blocks and table. Every cluster of the file is used exactly once, so every refcount
//! is 1 and every L1 and L2 entry carries the COPIED flag, which is what `qemu-img check`
//! expects. Clusters of zeros are left unallocated: without a backing file they read as zeros.

use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};

use super::pipeline::Sink;
use super::sparse::is_zero;
use crate::detect::qcow2::{MAGIC, MAX_L1_BYTES};
use crate::error::FormatError;
use crate::format::Format;

const CLUSTER_BITS: u32 = 16;
pub(super) const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// 8-byte entries per L2 table.
pub(super) const L2_ENTRIES: u64 = CLUSTER / 8;
/// 16-bit refcounts, qemu's default.
const REFCOUNT_ORDER: u32 = 4;
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER * 8 / (1 << REFCOUNT_ORDER);
pub(super) const COPIED: u64 = 1 << 63;
/// The v3 header with its compression type byte, padded to 8 bytes, as qemu writes it.
const HEADER_LENGTH: u32 = 112;
/// qemu, like the raw format, sees disks in whole 512-byte sectors.
const SECTOR: u64 = 512;

/// Converts the first `len` bytes of `source` into a qcow2 image written to `out`, which must
/// start empty. Returns the virtual size: `len` rounded up to whole sectors, as qemu does.
pub(crate) fn write_qcow2<W: Write + Seek + Send>(
    mut source: impl Read,
    len: u64,
    out: &mut W,
) -> Result<u64, FormatError> {
    let virtual_size = len.next_multiple_of(SECTOR);
    let mut sink = Qcow2Sink::new(out, virtual_size, Format::Raw)?;
    let mut buffer = vec![0u8; CLUSTER as usize];
    let mut done = 0;
    while done < len {
        let take = (len - done).min(CLUSTER);
        let data = buffer.get_mut(..usize::try_from(take).unwrap_or(0)).unwrap_or_default();
        read_full(&mut source, data)?;
        sink.write_at(done, data)?;
        done += take;
    }
    sink.finish(virtual_size)?;
    Ok(virtual_size)
}

/// A qcow2 image written from guest data that arrives in guest order: clusters are gathered
/// one at a time, appended when they hold anything but zeros, and each L2 table follows the
/// data it maps as soon as the writes move past its range.
pub(crate) struct Qcow2Sink<'a, W> {
    file: Output<'a, W>,
    virtual_size: u64,
    l1: Vec<u8>,
    l2: Vec<u8>,
    /// The L1 index `l2` maps, and whether it maps anything yet.
    l2_index: u64,
    l2_used: bool,
    /// The guest cluster being gathered, if any, and its bytes.
    cluster_index: Option<u64>,
    cluster: Vec<u8>,
}

impl<'a, W: Write + Seek> Qcow2Sink<'a, W> {
    /// A sink for a disk of `virtual_size` bytes (whole sectors) read from a `from` image.
    pub(crate) fn new(out: &'a mut W, virtual_size: u64, from: Format) -> Result<Self, FormatError> {
        let l1_clusters = check_size(virtual_size, from)?;
        Ok(Self {
            file: Output { out, position: None, next_free: 1 + l1_clusters },
            virtual_size,
            l1: vec![0u8; usize::try_from(l1_clusters * CLUSTER).unwrap_or(0)],
            l2: vec![0u8; CLUSTER as usize],
            l2_index: 0,
            l2_used: false,
            cluster_index: None,
            cluster: vec![0u8; CLUSTER as usize],
        })
    }

    /// Stores guest cluster `index` with `data` (a whole cluster, or the disk's last bytes),
    /// unless it is all zeros.
    fn store(&mut self, index: u64, data: &[u8]) -> Result<(), FormatError> {
        if is_zero(data) {
            return Ok(());
        }
        let l1_index = index / L2_ENTRIES;
        if l1_index != self.l2_index {
            self.store_l2()?;
            self.l2_index = l1_index;
        }
        let offset = if data.len() as u64 == CLUSTER {
            self.file.append(data)?
        } else {
            // The last cluster is padded: qcow2 data clusters are always whole.
            let mut padded = data.to_vec();
            padded.resize(CLUSTER as usize, 0);
            self.file.append(&padded)?
        };
        put_be64(&mut self.l2, (index % L2_ENTRIES) * 8, offset | COPIED);
        self.l2_used = true;
        Ok(())
    }

    fn store_gathered(&mut self) -> Result<(), FormatError> {
        if let Some(index) = self.cluster_index.take() {
            let cluster = std::mem::take(&mut self.cluster);
            let result = self.store(index, &cluster);
            self.cluster = cluster;
            self.cluster.fill(0);
            result?;
        }
        Ok(())
    }

    fn store_l2(&mut self) -> Result<(), FormatError> {
        if self.l2_used {
            let offset = self.file.append(&self.l2)?;
            put_be64(&mut self.l1, self.l2_index * 8, offset | COPIED);
            self.l2.fill(0);
            self.l2_used = false;
        }
        Ok(())
    }
}

impl<W: Write + Seek + Send> Sink for Qcow2Sink<'_, W> {
    type Output = ();

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FormatError> {
        let end = offset.saturating_add(data.len() as u64);
        if end > self.virtual_size {
            return Err(FormatError::Write {
                source: std::io::Error::other(format!(
                    "guest data up to {end:#x} lies past the disk size {}",
                    self.virtual_size
                )),
            });
        }
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let index = at / CLUSTER;
            let within = usize::try_from(at % CLUSTER).unwrap_or(0);
            let take = rest.len().min(CLUSTER as usize - within);
            let (piece, tail) = rest.split_at(take);
            if self.cluster_index.is_some_and(|current| current > index) {
                return Err(FormatError::Write {
                    source: std::io::Error::other(format!("guest data at {at:#x} arrived out of order")),
                });
            }
            if self.cluster_index != Some(index) {
                self.store_gathered()?;
            }
            let whole = within == 0 && (take as u64 == CLUSTER || at + take as u64 == self.virtual_size);
            if whole {
                self.store(index, piece)?;
            } else {
                self.cluster_index = Some(index);
                if let Some(target) = self.cluster.get_mut(within..within + take) {
                    target.copy_from_slice(piece);
                }
            }
            at += take as u64;
            rest = tail;
        }
        Ok(())
    }

    /// Writes the last data and L2 table, the refcounts, then the header and L1 table.
    fn finish(mut self, _len: u64) -> Result<(), FormatError> {
        self.store_gathered()?;
        self.store_l2()?;
        let Self { mut file, virtual_size, l1, .. } = self;
        let refcounts = Refcounts::after(file.next_free);
        for block in refcounts.blocks() {
            file.append(&block)?;
        }
        file.append(&refcounts.table())?;
        file.write_at(0, &header(virtual_size, &refcounts))?;
        file.write_at(CLUSTER, &l1)?;
        file.out.flush().map_err(|source| FormatError::Write { source })
    }
}

/// The refcount blocks and table of an image whose first `used` clusters are data, tables and
/// header, written right after them: blocks first, then the table. Every cluster of the file
/// has refcount 1.
pub(super) struct Refcounts {
    used: u64,
    blocks: u64,
    table_clusters: u64,
}

impl Refcounts {
    pub(super) fn after(used: u64) -> Self {
        let (blocks, table_clusters) = refcount_layout(used);
        Self { used, blocks, table_clusters }
    }

    /// Clusters in the whole file.
    pub(super) fn total(&self) -> u64 {
        self.used + self.blocks + self.table_clusters
    }

    fn table_offset(&self) -> u64 {
        (self.used + self.blocks) * CLUSTER
    }

    /// The refcount blocks, in file order.
    pub(super) fn blocks(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        let total = self.total();
        (0..self.blocks).map(move |block| {
            let mut refcounts = vec![0u8; CLUSTER as usize];
            let first = block * REFCOUNTS_PER_BLOCK;
            for (index, refcount) in refcounts.chunks_exact_mut(2).enumerate() {
                if first + (index as u64) < total {
                    refcount.copy_from_slice(&1u16.to_be_bytes());
                }
            }
            refcounts
        })
    }

    /// The refcount table, pointing at the blocks.
    pub(super) fn table(&self) -> Vec<u8> {
        let mut table = vec![0u8; usize::try_from(self.table_clusters * CLUSTER).unwrap_or(0)];
        for block in 0..self.blocks {
            put_be64(&mut table, block * 8, (self.used + block) * CLUSTER);
        }
        table
    }
}

/// The L1 entries of a disk of `virtual_size` bytes, and the clusters they take.
pub(super) fn l1_size(virtual_size: u64) -> (u64, u64) {
    let entries = virtual_size.div_ceil(CLUSTER * L2_ENTRIES);
    (entries, (entries * 8).div_ceil(CLUSTER))
}

/// The header cluster: a v3 image with its L1 table in cluster 1.
pub(super) fn header(virtual_size: u64, refcounts: &Refcounts) -> Vec<u8> {
    let (l1_entries, _) = l1_size(virtual_size);
    let mut header = vec![0u8; CLUSTER as usize];
    header.get_mut(..4).unwrap_or_default().copy_from_slice(MAGIC);
    put_be32(&mut header, 4, 3);
    put_be32(&mut header, 20, CLUSTER_BITS);
    put_be64(&mut header, 24, virtual_size);
    put_be32(&mut header, 36, u32::try_from(l1_entries).unwrap_or(u32::MAX));
    put_be64(&mut header, 40, CLUSTER);
    put_be64(&mut header, 48, refcounts.table_offset());
    put_be32(&mut header, 56, u32::try_from(refcounts.table_clusters).unwrap_or(u32::MAX));
    put_be32(&mut header, 96, REFCOUNT_ORDER);
    put_be32(&mut header, 100, HEADER_LENGTH);
    header
}

/// The clusters the L1 table of a disk of `virtual_size` bytes takes, if qemu can open it.
pub(super) fn check_size(virtual_size: u64, from: Format) -> Result<u64, FormatError> {
    let (l1_entries, l1_clusters) = l1_size(virtual_size);
    if l1_entries * 8 > MAX_L1_BYTES {
        return Err(FormatError::Unsupported {
            format: from,
            reason: format!("a disk of {virtual_size} bytes is too large for a qcow2 image"),
        });
    }
    Ok(l1_clusters)
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

pub(super) fn put_be64(buf: &mut [u8], at: u64, value: u64) {
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

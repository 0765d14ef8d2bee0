//! Reading qcow2 (v2 and v3) into raw, with a reader of our own rather than qcow2-rs.
//!
//! qcow2-rs 0.1.6 reads images with clusters under 4 KiB as all zeros, cannot read zstd, brings
//! its own runtime and has panicked on malformed headers; what conversion needs is far smaller
//! than a qcow2 driver: walk the active L1 table once, front to back, and copy what each L2
//! entry maps. So this reader does only that, in bounded memory (one slice of the L1 table, one
//! L2 table, one batch of compressed clusters, and four buffers of at most 4 MiB shared with
//! the thread that writes the output while the next range is read), and every offset taken
//! from the image is checked against the file before it is read: a table or cluster outside
//! the file, over the header cluster or misaligned is a [`FormatError::Malformed`], never a
//! panic nor a read elsewhere. Refcounts, snapshots and bitmaps do not affect what the guest
//! sees and are not read.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

use super::sparse::{SparseOutput, SparseWriter};
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
/// Host-contiguous clusters are read and written in runs of up to this many bytes.
const RUN_LIMIT: u64 = 1024 * 1024;
/// Compressed clusters are inflated in batches of up to this many output bytes, spread over
/// the available cores.
const BATCH_LIMIT: u64 = 4 * 1024 * 1024;
/// Bytes of the header the reader looks at: the v3 fields up to the compression type.
const HEADER_READ: usize = 112;
/// Filled buffers waiting for the writer thread, and buffers in all: one being filled, those
/// queued, one being written.
const QUEUED: usize = 2;
const BUFFERS: usize = QUEUED + 2;

/// The validated header: everything the copy needs, all of it checked against the file.
pub(crate) struct Qcow2Reader<R> {
    source: R,
    /// Where the source's cursor is, so that sequential reads need no seek.
    position: u64,
    file_len: u64,
    cluster_bits: u32,
    cluster: u64,
    virtual_size: u64,
    l1_offset: u64,
    /// L1 entries that map the virtual size; the table may have more.
    l1_used: u64,
}

fn malformed(reason: String) -> FormatError {
    FormatError::Malformed { format: Format::Qcow2, reason }
}

fn unsupported(reason: String) -> FormatError {
    FormatError::Unsupported { format: Format::Qcow2, reason }
}

impl<R: Read + Seek> Qcow2Reader<R> {
    /// Reads and validates the header of the qcow2 image in `source`.
    pub(crate) fn open(mut source: R) -> Result<Self, FormatError> {
        let read = |source| FormatError::Read { source };
        let file_len = source.seek(SeekFrom::End(0)).map_err(read)?;
        let mut head = vec![0u8; HEADER_READ.min(usize::try_from(file_len).unwrap_or(usize::MAX))];
        source.seek(SeekFrom::Start(0)).map_err(read)?;
        source.read_exact(&mut head).map_err(read)?;
        let position = head.len() as u64;
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
        if version == 3 {
            check_v3_features(&head, cluster, file_len)?;
        }
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
        let reader = Self { source, position, file_len, cluster_bits, cluster, virtual_size, l1_offset, l1_used };
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

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), FormatError> {
        let read = |source| FormatError::Read { source };
        if offset != self.position {
            self.source.seek(SeekFrom::Start(offset)).map_err(read)?;
        }
        self.source.read_exact(buf).map_err(read)?;
        self.position = offset + buf.len() as u64;
        Ok(())
    }

    /// Writes the guest disk to `out`, which must start empty: unallocated and zero clusters,
    /// and zero blocks inside data, are left as holes. Writing runs on a second thread, so
    /// that reading the image and writing the output overlap, as qemu-img's do.
    pub(crate) fn copy_to<W: SparseOutput + Send>(&mut self, out: &mut W) -> Result<(), FormatError> {
        let virtual_size = self.virtual_size;
        std::thread::scope(|scope| {
            let (pieces, received) = mpsc::sync_channel(QUEUED);
            let (recycle, recycled) = mpsc::channel();
            let writer = scope.spawn(move || write_pieces(out, &received, &recycle, virtual_size));
            let mut pipeline = Pipeline { pieces, recycled, unallocated: BUFFERS };
            let read = self.walk(&mut pipeline).and_then(|()| pipeline.finish());
            drop(pipeline);
            let written = writer.join().unwrap_or_else(|_| Err(malformed("the writer thread failed".to_owned())));
            // A writer that failed is why the reader stopped, if it did.
            written.and(read)
        })
    }

    /// Walks the L1 and L2 tables in guest order and hands every allocated range to `pipeline`.
    fn walk(&mut self, pipeline: &mut Pipeline) -> Result<(), FormatError> {
        let cluster = usize::try_from(self.cluster).unwrap_or(usize::MAX);
        let l2_entries = self.cluster / 8;
        let mut l1 = Vec::new();
        let mut l2 = vec![0u8; cluster];
        let mut copy = Copy { run: None, run_limit: RUN_LIMIT.max(self.cluster), batch: Batch::new(self.cluster) };
        let entries_per_slice = L1_SLICE / 8;
        for l1_index in 0..self.l1_used {
            let in_slice = l1_index % entries_per_slice;
            if in_slice == 0 {
                let count = entries_per_slice.min(self.l1_used - l1_index);
                l1.resize(usize::try_from(count * 8).unwrap_or(0), 0);
                self.read_at(self.l1_offset + l1_index * 8, &mut l1)?;
            }
            let entry = be64(&l1, usize::try_from(in_slice * 8).unwrap_or(usize::MAX)).unwrap_or(0);
            let l2_offset = entry & OFFSET_MASK;
            if l2_offset == 0 {
                continue;
            }
            self.check_range(&format!("L2 table {l1_index}"), l2_offset, self.cluster, true)?;
            self.read_at(l2_offset, &mut l2)?;
            let guest_base = l1_index * l2_entries * self.cluster;
            for (index, raw) in l2.chunks_exact(8).enumerate() {
                let guest = guest_base + index as u64 * self.cluster;
                if guest >= self.virtual_size {
                    break;
                }
                let visible = self.cluster.min(self.virtual_size - guest);
                let entry = raw.try_into().map(u64::from_be_bytes).unwrap_or(0);
                self.map_cluster(entry, guest, visible, &mut copy, pipeline)?;
            }
        }
        self.flush_run(&mut copy, pipeline)?;
        self.flush_batch(&mut copy.batch, pipeline)
    }

    /// Queues the copy of one guest cluster described by L2 entry `entry`.
    fn map_cluster(
        &mut self,
        entry: u64,
        guest: u64,
        visible: u64,
        copy: &mut Copy,
        pipeline: &mut Pipeline,
    ) -> Result<(), FormatError> {
        if entry & COMPRESSED_FLAG != 0 {
            let compressed = self.compressed_range(entry, guest)?;
            if !copy.batch.has_room(compressed.end - compressed.start) {
                self.flush_batch(&mut copy.batch, pipeline)?;
            }
            let input = usize::try_from(compressed.end - compressed.start).unwrap_or(0);
            let at = copy.batch.input.len();
            copy.batch.input.resize(at + input, 0);
            let buffer = copy.batch.input.get_mut(at..).unwrap_or_default();
            self.read_at(compressed.start, buffer)?;
            copy.batch.jobs.push(Job { guest, visible, input: at..at + input });
            return Ok(());
        }
        let host = entry & OFFSET_MASK;
        if entry & ZERO_FLAG != 0 || host == 0 {
            return Ok(());
        }
        self.check_range(&format!("data cluster for guest offset {guest:#x}"), host, visible, true)?;
        if let Some(run) = &mut copy.run
            && run.host + run.len == host
            && run.guest + run.len == guest
            && run.len + visible <= copy.run_limit
        {
            run.len += visible;
            return Ok(());
        }
        self.flush_run(copy, pipeline)?;
        copy.run = Some(Run { guest, host, len: visible });
        Ok(())
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

    fn flush_run(&mut self, copy: &mut Copy, pipeline: &mut Pipeline) -> Result<(), FormatError> {
        let Some(run) = copy.run.take() else {
            return Ok(());
        };
        let len = usize::try_from(run.len).unwrap_or(usize::MAX);
        let mut buffer = pipeline.buffer()?;
        buffer.resize(len, 0);
        self.read_at(run.host, &mut buffer)?;
        pipeline.send(buffer, vec![(run.guest, 0..len)])
    }

    fn flush_batch(&mut self, batch: &mut Batch, pipeline: &mut Pipeline) -> Result<(), FormatError> {
        if batch.jobs.is_empty() {
            return Ok(());
        }
        let cluster = usize::try_from(self.cluster).unwrap_or(usize::MAX);
        let mut output = pipeline.buffer()?;
        output.resize(batch.jobs.len() * cluster, 0);
        inflate_all(&batch.jobs, &batch.input, &mut output, cluster)?;
        let segments = batch
            .jobs
            .iter()
            .enumerate()
            .map(|(index, job)| {
                let start = index * cluster;
                let visible = usize::try_from(job.visible).unwrap_or(cluster);
                (job.guest, start..start + visible)
            })
            .collect();
        batch.jobs.clear();
        batch.input.clear();
        pipeline.send(output, segments)
    }
}

/// What the reader hands the writer thread: a buffer and where its byte ranges go in the
/// output, or the end of the copy.
enum Message {
    Piece(Vec<u8>, Vec<(u64, Range<usize>)>),
    Finish,
}

/// The reader's end of the channels to the writer thread, with a bounded pool of buffers that
/// the writer sends back once written.
struct Pipeline {
    pieces: SyncSender<Message>,
    recycled: Receiver<Vec<u8>>,
    /// Buffers that may still be allocated.
    unallocated: usize,
}

fn writer_stopped() -> FormatError {
    FormatError::Write { source: std::io::Error::other("the output writer stopped") }
}

impl Pipeline {
    /// A free buffer: a recycled one, a new one while the pool is not full, or the next one the
    /// writer is done with.
    fn buffer(&mut self) -> Result<Vec<u8>, FormatError> {
        if let Ok(buffer) = self.recycled.try_recv() {
            return Ok(buffer);
        }
        if self.unallocated > 0 {
            self.unallocated -= 1;
            return Ok(Vec::new());
        }
        self.recycled.recv().map_err(|_| writer_stopped())
    }

    fn send(&mut self, buffer: Vec<u8>, segments: Vec<(u64, Range<usize>)>) -> Result<(), FormatError> {
        self.pieces.send(Message::Piece(buffer, segments)).map_err(|_| writer_stopped())
    }

    fn finish(&mut self) -> Result<(), FormatError> {
        self.pieces.send(Message::Finish).map_err(|_| writer_stopped())
    }
}

/// The writer thread: writes every piece, returns its buffer, and sets the output's length once
/// the reader says it is done (not when the reader gave up: its error is what counts then).
fn write_pieces<W: SparseOutput>(
    out: &mut W,
    pieces: &Receiver<Message>,
    recycle: &Sender<Vec<u8>>,
    virtual_size: u64,
) -> Result<(), FormatError> {
    let mut writer = SparseWriter::new(out);
    while let Ok(message) = pieces.recv() {
        match message {
            Message::Piece(buffer, segments) => {
                for (guest, range) in segments {
                    writer.write_at(guest, buffer.get(range).unwrap_or_default())?;
                }
                // The reader may have stopped taking buffers back; nothing is lost then.
                let _ = recycle.send(buffer);
            }
            Message::Finish => return writer.finish(virtual_size),
        }
    }
    Ok(())
}

/// The v3 header: a length that fits the header cluster, no feature that changes how
/// clusters are read, and zlib compression.
fn check_v3_features(head: &[u8], cluster: u64, file_len: u64) -> Result<(), FormatError> {
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
        (0, false) => Ok(()),
        (0, true) => Err(malformed(
            "the compression type bit is set but the compression type is zlib".to_owned(),
        )),
        (_, false) => Err(malformed(format!(
            "compression type {compression} is set without its incompatible feature bit"
        ))),
        (1, true) => Err(unsupported(
            "zstd-compressed clusters (compression type 1) cannot be read; convert the image with compression_type=zlib".to_owned(),
        )),
        (other, true) => Err(unsupported(format!("unknown compression type {other}"))),
    }
}

/// Host-contiguous data clusters that map guest-contiguous bytes.
struct Run {
    guest: u64,
    host: u64,
    len: u64,
}

/// What the walk has gathered and not yet handed to the writer.
struct Copy {
    run: Option<Run>,
    /// Longest run read at once.
    run_limit: u64,
    batch: Batch,
}

/// Compressed clusters read and waiting to be inflated.
struct Batch {
    cluster: u64,
    jobs: Vec<Job>,
    input: Vec<u8>,
}

struct Job {
    guest: u64,
    visible: u64,
    input: Range<usize>,
}

impl Batch {
    fn new(cluster: u64) -> Self {
        Self { cluster, jobs: Vec::new(), input: Vec::new() }
    }

    /// Whether one more cluster, of `input` compressed bytes, fits the batch. A compressed
    /// cluster takes at most two clusters of input, so the batch stays within three times
    /// [`BATCH_LIMIT`] (or three clusters, when one cluster is larger).
    fn has_room(&self, input: u64) -> bool {
        let clusters = self.jobs.len() as u64;
        clusters == 0
            || ((clusters + 1) * self.cluster <= BATCH_LIMIT && self.input.len() as u64 + input <= 2 * BATCH_LIMIT)
    }
}

/// Inflates every job of a batch into its cluster of `output`, on as many threads as there are
/// cores (up to one per job): decompression is what compressed images spend their time on.
fn inflate_all(jobs: &[Job], input: &[u8], output: &mut [u8], cluster: usize) -> Result<(), FormatError> {
    let threads = std::thread::available_parallelism().map(|count| count.get()).unwrap_or(1).min(jobs.len());
    let per_thread = jobs.len().div_ceil(threads.max(1));
    if threads <= 1 {
        return inflate_jobs(jobs, input, output, cluster);
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = jobs
            .chunks(per_thread)
            .zip(output.chunks_mut(per_thread * cluster))
            .map(|(jobs, output)| scope.spawn(move || inflate_jobs(jobs, input, output, cluster)))
            .collect();
        // Every worker is joined, also after one has failed: the scope's own wait ends when a
        // thread's closure returns, not when the thread has exited, so an unjoined one could
        // outlive this call (the qcow2_reader fuzz target's leak check caught that).
        let outcomes: Vec<_> = workers
            .into_iter()
            .map(|worker| worker.join().unwrap_or_else(|_| Err(malformed("a decompression thread failed".to_owned()))))
            .collect();
        outcomes.into_iter().collect()
    })
}

fn inflate_jobs(jobs: &[Job], input: &[u8], output: &mut [u8], cluster: usize) -> Result<(), FormatError> {
    let mut state = Box::<DecompressorOxide>::default();
    for (job, out) in jobs.iter().zip(output.chunks_exact_mut(cluster)) {
        state.init();
        let compressed = input.get(job.input.clone()).unwrap_or_default();
        // qemu writes raw deflate (no zlib header) and, like qemu, a cluster is good once it
        // is full: the sector-sized input may carry bytes after the end of the stream.
        let (status, _, written) =
            decompress(&mut state, compressed, out, 0, inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF);
        let complete = written == out.len()
            && matches!(status, TINFLStatus::Done | TINFLStatus::NeedsMoreInput | TINFLStatus::HasMoreOutput);
        if !complete {
            return Err(malformed(format!(
                "the compressed cluster for guest offset {:#x} does not inflate to a full cluster ({written} of {} bytes, {status:?})",
                job.guest,
                out.len()
            )));
        }
    }
    Ok(())
}

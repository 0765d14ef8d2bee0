//! What every reader shares: the source image with its bounds checks, and the copy of the guest
//! ranges a reader maps into a [`Sink`] (sparse raw, or qcow2), with reading, decompressing and
//! writing overlapped.
//!
//! A reader walks its tables in guest order and tells a [`Copier`] where each guest range
//! lives: in the file as it is ([`Copier::data`]), compressed ([`Copier::compressed`]), or
//! nowhere (zeros: the reader says nothing). The copier gathers ranges into batches of at most
//! 4 MiB of output, reads host-contiguous data in one read straight into the batch, inflates
//! compressed clusters on every core, and hands the batch to a writer thread, so the file is
//! read while the previous batch is written, as qemu-img does. Batches leave in guest order
//! and their pieces are in guest order, which lets a sink write a qcow2 image front to back.
//! Memory stays bounded: four batch buffers, one input buffer, and whatever tables the reader
//! holds.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

use super::sparse::is_zero;
use crate::error::FormatError;
use crate::format::Format;

/// Host-contiguous data is read in runs of up to this many bytes.
const RUN_LIMIT: u64 = 1024 * 1024;
/// Output bytes gathered before a batch goes to the writer; a single cluster or grain larger
/// than this makes a batch of its own.
const BATCH_LIMIT: usize = 4 * 1024 * 1024;
/// Filled batches waiting for the writer thread, and buffers in all: one being filled, those
/// queued, one being written.
const QUEUED: usize = 2;
const BUFFERS: usize = QUEUED + 2;

/// The image being read: its length, and a cursor kept so that sequential reads need no seek.
pub(crate) struct Source<R> {
    inner: R,
    position: Option<u64>,
    len: u64,
    format: Format,
}

impl<R: Read + Seek> Source<R> {
    /// The image in `inner`, read as `format` (named in errors).
    pub(crate) fn new(mut inner: R, format: Format) -> Result<Self, FormatError> {
        let len = inner.seek(SeekFrom::End(0)).map_err(|source| FormatError::Read { source })?;
        Ok(Self { inner, position: None, len, format })
    }

    /// Bytes in the image file.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// A [`FormatError::Malformed`] of this source's format.
    pub(crate) fn malformed(&self, reason: String) -> FormatError {
        FormatError::Malformed { format: self.format, reason }
    }

    /// A [`FormatError::Unsupported`] of this source's format.
    pub(crate) fn unsupported(&self, reason: String) -> FormatError {
        FormatError::Unsupported { format: self.format, reason }
    }

    /// Checks that `[offset, offset + len)` lies inside the file.
    pub(crate) fn check(&self, what: &str, offset: u64, len: u64) -> Result<(), FormatError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(self.malformed(format!(
                "{what} at offset {offset:#x} with {len} bytes lies past the end of the file ({} bytes)",
                self.len
            ))),
        }
    }

    /// Reads `buf.len()` bytes at `offset`, which must lie inside the file (`what` names them).
    pub(crate) fn read_at(&mut self, what: &str, offset: u64, buf: &mut [u8]) -> Result<(), FormatError> {
        self.check(what, offset, buf.len() as u64)?;
        let read = |source| FormatError::Read { source };
        if self.position != Some(offset) {
            self.inner.seek(SeekFrom::Start(offset)).map_err(read)?;
        }
        self.position = None;
        self.inner.read_exact(buf).map_err(read)?;
        self.position = Some(offset + buf.len() as u64);
        Ok(())
    }
}

/// Where converted guest data goes: written at increasing offsets, then given its length.
pub(crate) trait Sink: Send {
    /// What the sink hands back once finished.
    type Output: Send;

    /// Writes `data` at guest offset `offset`; offsets only grow, and what is never written
    /// reads as zeros.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FormatError>;

    /// Ends the output at `len` guest bytes.
    fn finish(self, len: u64) -> Result<Self::Output, FormatError>;
}

/// How a compressed cluster or grain is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    /// Raw deflate, no header (qcow2's zlib type): good once the cluster is full, as qemu
    /// reads it, whatever follows in the sector-sized input.
    Deflate,
    /// A zlib stream (VMDK grains): must end, and may be shorter than the grain only past the
    /// end of the disk.
    Zlib,
    /// One or more zstd frames (qcow2's compression type 1), decoded until the cluster is full.
    Zstd,
}

/// A compressed cluster waiting in a batch.
struct Job {
    guest: u64,
    codec: Codec,
    input: Range<usize>,
    output: Range<usize>,
    /// Bytes of output the guest sees; the rest of the cluster lies past the disk's end.
    visible: usize,
}

/// Gathers the ranges a reader maps into batches and sends them to the writer thread.
pub(crate) struct Copier {
    pieces: SyncSender<Message>,
    recycled: Receiver<Vec<u8>>,
    /// Buffers that may still be allocated.
    unallocated: usize,
    output: Vec<u8>,
    segments: Vec<(u64, Range<usize>)>,
    jobs: Vec<Job>,
    input: Vec<u8>,
    /// Data mapped into `output` and not read yet: host offset and output range.
    pending: Option<(u64, Range<usize>)>,
    /// The guest offset the next range may start at: ranges come in guest order.
    next_guest: u64,
    /// Set when the walk only maps which clusters hold data ([`map_clusters`]).
    mapping: Option<Mapping>,
}

/// The guest clusters a walk puts data in: uncompressed ranges are read and count only where
/// they are not zeros; compressed ones count without being inflated (qemu never compresses a
/// cluster of zeros, and inflating every cluster twice would double the work).
struct Mapping {
    cluster: u64,
    /// Cluster indexes, merged and in guest order.
    clusters: Vec<Range<u64>>,
    scratch: Vec<u8>,
}

impl Mapping {
    fn mark(&mut self, guest: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = guest / self.cluster;
        let end = (guest + len - 1) / self.cluster + 1;
        match self.clusters.last_mut() {
            Some(last) if last.end >= first => last.end = last.end.max(end),
            _ => self.clusters.push(first..end),
        }
    }

    fn marked(&self, index: u64) -> bool {
        self.clusters.last().is_some_and(|last| last.start <= index && index < last.end)
    }

    /// Reads `[host, host + len)` in runs of up to [`RUN_LIMIT`] and marks the clusters of
    /// `[guest, guest + len)` whose bytes are not all zeros.
    fn data<R: Read + Seek>(
        &mut self,
        source: &mut Source<R>,
        guest: u64,
        host: u64,
        len: u64,
    ) -> Result<(), FormatError> {
        let mut done = 0;
        while done < len {
            let at = guest + done;
            // Runs end on a cluster boundary (or the range's end), so no cluster is split.
            let run_end = ((at + RUN_LIMIT) / self.cluster * self.cluster).max((at / self.cluster + 1) * self.cluster);
            let take = (run_end - at).min(len - done);
            self.scratch.resize(usize::try_from(take).unwrap_or(usize::MAX), 0);
            source.read_at("data", host + done, &mut self.scratch)?;
            let mut offset = 0;
            while offset < take {
                let piece_at = at + offset;
                let piece = ((piece_at / self.cluster + 1) * self.cluster - piece_at).min(take - offset);
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let bytes = self.scratch.get(start..start + usize::try_from(piece).unwrap_or(0)).unwrap_or_default();
                if !self.marked(piece_at / self.cluster) && !is_zero(bytes) {
                    self.mark(piece_at, piece);
                }
                offset += piece;
            }
            done += take;
        }
        Ok(())
    }
}

/// What the copier hands the writer thread: a batch and where its ranges go, or the end.
enum Message {
    Piece(Vec<u8>, Vec<(u64, Range<usize>)>),
    Finish,
}

fn writer_stopped() -> FormatError {
    FormatError::Write { source: std::io::Error::other("the output writer stopped") }
}

impl Copier {
    /// Guest bytes `[guest, guest + len)` are stored as they are at `host` in the source.
    pub(crate) fn data<R: Read + Seek>(
        &mut self,
        source: &mut Source<R>,
        guest: u64,
        host: u64,
        len: u64,
    ) -> Result<(), FormatError> {
        source.check(&format!("data for guest offset {guest:#x}"), host, len)?;
        self.in_order(source, guest, len)?;
        if let Some(mapping) = &mut self.mapping {
            return mapping.data(source, guest, host, len);
        }
        let mut done = 0;
        while done < len {
            let take = (len - done).min(RUN_LIMIT);
            let (guest, host) = (guest + done, host + done);
            let take_bytes = usize::try_from(take).unwrap_or(usize::MAX);
            if !self.output.is_empty() && self.output.len() + take_bytes > BATCH_LIMIT {
                self.flush(source)?;
            }
            if self.output.capacity() == 0 {
                self.output = self.buffer()?;
            }
            let start = self.output.len();
            let contiguous = self.pending.as_ref().is_some_and(|(at, range)| {
                at + (range.end - range.start) as u64 == host
                    && range.end == start
                    && (range.end - range.start) as u64 + take <= RUN_LIMIT
            });
            if !contiguous {
                self.read_pending(source)?;
            }
            self.output.resize(start + take_bytes, 0);
            match &mut self.pending {
                Some((_, range)) if contiguous => range.end = start + take_bytes,
                _ => self.pending = Some((host, start..start + take_bytes)),
            }
            self.segment(guest, start..start + take_bytes);
            done += take;
        }
        Ok(())
    }

    /// Guest bytes `[guest, guest + visible)` are the start of a cluster of `cluster` bytes
    /// compressed with `codec` in `host` of the source.
    pub(crate) fn compressed<R: Read + Seek>(
        &mut self,
        source: &mut Source<R>,
        guest: u64,
        visible: u64,
        host: Range<u64>,
        codec: Codec,
        cluster: usize,
    ) -> Result<(), FormatError> {
        self.in_order(source, guest, visible)?;
        if let Some(mapping) = &mut self.mapping {
            let input_len = host.end.saturating_sub(host.start);
            source.check(&format!("compressed data for guest offset {guest:#x}"), host.start, input_len)?;
            mapping.mark(guest, visible);
            return Ok(());
        }
        let input_len = usize::try_from(host.end.saturating_sub(host.start)).unwrap_or(usize::MAX);
        let room = self.output.len() + cluster <= BATCH_LIMIT && self.input.len() + input_len <= 2 * BATCH_LIMIT;
        if !self.output.is_empty() && !room {
            self.flush(source)?;
        }
        // Read what is pending first, so the file is read front to back.
        self.read_pending(source)?;
        if self.output.capacity() == 0 {
            self.output = self.buffer()?;
        }
        let at = self.input.len();
        self.input.resize(at + input_len, 0);
        let buffer = self.input.get_mut(at..).unwrap_or_default();
        source.read_at(&format!("compressed data for guest offset {guest:#x}"), host.start, buffer)?;
        let start = self.output.len();
        self.output.resize(start + cluster, 0);
        let visible = usize::try_from(visible).unwrap_or(cluster).min(cluster);
        self.jobs.push(Job { guest, codec, input: at..at + input_len, output: start..start + cluster, visible });
        self.segment(guest, start..start + visible);
        Ok(())
    }

    fn in_order<R>(&mut self, source: &Source<R>, guest: u64, len: u64) -> Result<(), FormatError> {
        if guest < self.next_guest {
            return Err(FormatError::Malformed {
                format: source.format,
                reason: format!("guest offset {guest:#x} is mapped twice"),
            });
        }
        self.next_guest = guest.saturating_add(len);
        Ok(())
    }

    /// Adds a guest range, merged with the previous one when both are contiguous.
    fn segment(&mut self, guest: u64, range: Range<usize>) {
        if let Some((last_guest, last)) = self.segments.last_mut()
            && *last_guest + (last.end - last.start) as u64 == guest
            && last.end == range.start
        {
            last.end = range.end;
            return;
        }
        self.segments.push((guest, range));
    }

    fn read_pending<R: Read + Seek>(&mut self, source: &mut Source<R>) -> Result<(), FormatError> {
        if let Some((host, range)) = self.pending.take() {
            let buffer = self.output.get_mut(range).unwrap_or_default();
            source.read_at("data", host, buffer)?;
        }
        Ok(())
    }

    /// A free buffer: a recycled one, a new one while the pool is not full, or the next one
    /// the writer is done with.
    fn buffer(&mut self) -> Result<Vec<u8>, FormatError> {
        if let Ok(mut buffer) = self.recycled.try_recv() {
            buffer.clear();
            return Ok(buffer);
        }
        if self.unallocated > 0 {
            self.unallocated -= 1;
            return Ok(Vec::with_capacity(BATCH_LIMIT));
        }
        let mut buffer = self.recycled.recv().map_err(|_| writer_stopped())?;
        buffer.clear();
        Ok(buffer)
    }

    /// Reads what is pending, decompresses the batch and sends it to the writer.
    fn flush<R: Read + Seek>(&mut self, source: &mut Source<R>) -> Result<(), FormatError> {
        self.read_pending(source)?;
        if self.segments.is_empty() {
            return Ok(());
        }
        decompress_all(&self.jobs, &self.input, &mut self.output, source.format)?;
        self.jobs.clear();
        self.input.clear();
        let output = std::mem::take(&mut self.output);
        let segments = std::mem::take(&mut self.segments);
        self.pieces.send(Message::Piece(output, segments)).map_err(|_| writer_stopped())
    }
}

/// The clusters of `cluster` bytes that the guest ranges `walk` maps from `source` put data in
/// (merged ranges of cluster indexes, in order): what a writer that must lay its output out
/// before the data arrives needs to know. Uncompressed data is read to find its zeros, on this
/// thread, in cluster-sized reads.
pub(crate) fn map_clusters<R, F>(source: &mut Source<R>, cluster: u64, walk: F) -> Result<Vec<Range<u64>>, FormatError>
where
    R: Read + Seek,
    F: FnOnce(&mut Source<R>, &mut Copier) -> Result<(), FormatError>,
{
    // Nothing is ever sent or recycled: mapping returns before any batch is made.
    let (pieces, _) = mpsc::sync_channel(0);
    let (_, recycled) = mpsc::channel();
    let mut copier = Copier {
        pieces,
        recycled,
        unallocated: 0,
        output: Vec::new(),
        segments: Vec::new(),
        jobs: Vec::new(),
        input: Vec::new(),
        pending: None,
        next_guest: 0,
        mapping: Some(Mapping { cluster, clusters: Vec::new(), scratch: Vec::new() }),
    };
    walk(source, &mut copier)?;
    Ok(copier.mapping.map(|mapping| mapping.clusters).unwrap_or_default())
}

/// Copies what `walk` maps from `source` into `sink`, which ends at `virtual_size` bytes.
/// Writing runs on a second thread so that reading and writing overlap.
pub(crate) fn copy<R, S, F>(
    source: &mut Source<R>,
    sink: S,
    virtual_size: u64,
    walk: F,
) -> Result<S::Output, FormatError>
where
    R: Read + Seek,
    S: Sink,
    F: FnOnce(&mut Source<R>, &mut Copier) -> Result<(), FormatError>,
{
    std::thread::scope(|scope| {
        let (pieces, received) = mpsc::sync_channel(QUEUED);
        let (recycle, recycled) = mpsc::channel();
        let writer = scope.spawn(move || write_pieces(sink, &received, &recycle, virtual_size));
        let mut copier = Copier {
            pieces,
            recycled,
            unallocated: BUFFERS,
            output: Vec::new(),
            segments: Vec::new(),
            jobs: Vec::new(),
            input: Vec::new(),
            pending: None,
            next_guest: 0,
            mapping: None,
        };
        let read = walk(source, &mut copier)
            .and_then(|()| copier.flush(source))
            .and_then(|()| copier.pieces.send(Message::Finish).map_err(|_| writer_stopped()));
        drop(copier);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(FormatError::Write { source: std::io::Error::other("the writer thread failed") }));
        // A writer that failed is why the reader stopped, if it did.
        match (written, read) {
            (Err(err), _) | (Ok(_), Err(err)) => Err(err),
            (Ok(Some(output)), Ok(())) => Ok(output),
            (Ok(None), Ok(())) => Err(writer_stopped()),
        }
    })
}

/// The writer thread: writes every piece, returns its buffer, and finishes the sink once the
/// reader says it is done (not when the reader gave up: its error is what counts then).
fn write_pieces<S: Sink>(
    mut sink: S,
    pieces: &Receiver<Message>,
    recycle: &Sender<Vec<u8>>,
    virtual_size: u64,
) -> Result<Option<S::Output>, FormatError> {
    while let Ok(message) = pieces.recv() {
        match message {
            Message::Piece(buffer, segments) => {
                for (guest, range) in segments {
                    sink.write_at(guest, buffer.get(range).unwrap_or_default())?;
                }
                // The reader may have stopped taking buffers back; nothing is lost then.
                let _ = recycle.send(buffer);
            }
            Message::Finish => return sink.finish(virtual_size).map(Some),
        }
    }
    Ok(None)
}

/// Decompresses every job of a batch into its range of `output`, on as many threads as there
/// are cores (up to one per job): decompression is what compressed images spend their time on.
fn decompress_all(jobs: &[Job], input: &[u8], output: &mut [u8], format: Format) -> Result<(), FormatError> {
    if jobs.is_empty() {
        return Ok(());
    }
    // Each job's output range, as its own slice: they are disjoint and in order.
    let mut slices = Vec::with_capacity(jobs.len());
    let mut rest = output;
    let mut consumed = 0;
    for job in jobs {
        let skip = job.output.start.saturating_sub(consumed).min(rest.len());
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(skip);
        let len = (job.output.end - job.output.start).min(tail.len());
        let (slice, tail) = tail.split_at_mut(len);
        slices.push((job, slice));
        rest = tail;
        consumed = job.output.end;
    }
    let threads = std::thread::available_parallelism().map(|count| count.get()).unwrap_or(1).min(jobs.len());
    if threads <= 1 {
        return decompress_group(slices, input, format);
    }
    let per_thread = slices.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut workers = Vec::new();
        while !slices.is_empty() {
            let group: Vec<_> = slices.drain(..per_thread.min(slices.len())).collect();
            workers.push(scope.spawn(move || decompress_group(group, input, format)));
        }
        // Every worker is joined, also after one has failed: the scope's own wait ends when a
        // thread's closure returns, not when the thread has exited, so an unjoined one could
        // outlive this call (the qcow2_reader fuzz target's leak check caught that).
        let outcomes: Vec<_> = workers
            .into_iter()
            .map(|worker| {
                worker.join().unwrap_or_else(|_| {
                    Err(FormatError::Malformed { format, reason: "a decompression thread failed".to_owned() })
                })
            })
            .collect();
        outcomes.into_iter().collect()
    })
}

/// Decompresses the jobs of one thread, with one inflate state for all of them.
fn decompress_group(group: Vec<(&Job, &mut [u8])>, input: &[u8], format: Format) -> Result<(), FormatError> {
    let mut state = Box::<DecompressorOxide>::default();
    group.into_iter().try_for_each(|(job, out)| decompress_job(job, input, out, &mut state, format))
}

fn decompress_job(
    job: &Job,
    input: &[u8],
    out: &mut [u8],
    state: &mut DecompressorOxide,
    format: Format,
) -> Result<(), FormatError> {
    let compressed = input.get(job.input.clone()).unwrap_or_default();
    let outcome = match job.codec {
        Codec::Deflate => {
            let (status, written) = inflate(state, compressed, out, false);
            let full = written == out.len()
                && matches!(status, TINFLStatus::Done | TINFLStatus::NeedsMoreInput | TINFLStatus::HasMoreOutput);
            if full { Ok(()) } else { Err(format!("{written} of {} bytes, {status:?}", out.len())) }
        }
        Codec::Zlib => {
            let (status, written) = inflate(state, compressed, out, true);
            if status != TINFLStatus::Done {
                Err(format!("{written} of {} bytes, {status:?}", out.len()))
            } else if written < job.visible {
                Err(format!("{written} bytes, {} needed", job.visible))
            } else {
                // A buffer is reused: what the stream did not fill reads as zeros.
                out.get_mut(written..).unwrap_or_default().fill(0);
                Ok(())
            }
        }
        Codec::Zstd => unzstd(compressed, out),
    };
    outcome.map_err(|detail| FormatError::Malformed {
        format,
        reason: format!(
            "the compressed cluster for guest offset {:#x} does not {} to a full cluster ({detail})",
            job.guest,
            if job.codec == Codec::Zstd { "decompress" } else { "inflate" }
        ),
    })
}

/// Inflates `compressed` into `out` in one call: raw deflate, or a zlib stream.
fn inflate(state: &mut DecompressorOxide, compressed: &[u8], out: &mut [u8], zlib: bool) -> (TINFLStatus, usize) {
    state.init();
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF
        | if zlib { inflate_flags::TINFL_FLAG_PARSE_ZLIB_HEADER } else { 0 };
    let (status, _, written) = decompress(state, compressed, out, 0, flags);
    (status, written)
}

/// Decodes zstd frames from `compressed` until `out` is full, as qemu does: bytes after the
/// last frame needed (the sector padding) are never looked at.
fn unzstd(compressed: &[u8], out: &mut [u8]) -> Result<(), String> {
    let mut input = compressed;
    let mut filled = 0;
    while filled < out.len() {
        if input.is_empty() {
            return Err(format!("{filled} of {} bytes", out.len()));
        }
        let mut decoder = ruzstd::decoding::StreamingDecoder::new(&mut input).map_err(|err| err.to_string())?;
        loop {
            let target = out.get_mut(filled..).unwrap_or_default();
            if target.is_empty() {
                break;
            }
            match decoder.read(target) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err.to_string()),
            }
        }
    }
    Ok(())
}

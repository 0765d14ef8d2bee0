//! Compressed import sources (`[import] decompress`): gzip, xz, zstd, bzip2 and single-file zip
//! archives, told by their magic bytes as Glance's `image_decompression` plugin does (it knows
//! gzip, zip and lha), are decompressed while they stream, so the inspector, the conversion,
//! the hashes and the store all see the image itself. Anything else passes through untouched.
//!
//! The decoders are synchronous: they run on a blocking thread between two bounded channels,
//! so memory stays at a few chunks whatever the sizes. The output is capped: a decompression
//! bomb stops at the cap with a message, and dropping the stream stops the thread and the
//! reading of the source.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use glint_core::store::ByteStream;
use tokio::sync::mpsc;

use super::verify::mismatch;

/// Chunks in flight on each side of the decoder thread.
const CHANNEL_DEPTH: usize = 4;
/// Size of the decompressed chunks handed on.
const CHUNK: usize = 1 << 20;
/// Enough leading bytes to tell every format apart.
const HEAD: usize = 8;
/// Most memory an xz block's dictionary may ask for (xz -9 uses 64 MiB): a header asking for
/// gigabytes is refused instead of allocated.
const XZ_MEMORY_LIMIT_KIB: u32 = 256 * 1024;

/// A compression Glint undoes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Compression {
    Gzip,
    Xz,
    Zstd,
    Bzip2,
    /// A zip archive holding exactly one file, stored or deflated.
    Zip,
}

impl Compression {
    /// The compression whose magic bytes `head` (the data's first bytes) starts with.
    pub(super) fn detect(head: &[u8]) -> Option<Compression> {
        let bzip2_level = head.get(3).is_some_and(|level| (b'1'..=b'9').contains(level));
        Some(match head {
            [0x1f, 0x8b, 0x08, ..] => Compression::Gzip,
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [b'B', b'Z', b'h', ..] if bzip2_level => Compression::Bzip2,
            [b'P', b'K', 0x03, 0x04, ..] => Compression::Zip,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
            Compression::Zip => "zip",
        }
    }
}

/// The compression of the file at `path`, from its first bytes; `None` for anything else or a
/// file too short to say.
pub(super) async fn sniff(path: &std::path::Path) -> io::Result<Option<Compression>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::with_capacity(HEAD);
    tokio::fs::File::open(path).await?.take(HEAD as u64).read_to_end(&mut head).await?;
    Ok(Compression::detect(&head))
}

/// `body` decompressed if it starts with the magic bytes of a [`Compression`], else `body`
/// as it is. More than `cap` decompressed bytes end the stream with an error that fails the
/// import; so does data that is not valid in its compression.
pub(super) fn decompressing(body: ByteStream, cap: u64) -> ByteStream {
    Box::pin(
        futures_util::stream::once(async move {
            let (head, rest) = match peek(body).await {
                Ok(peeked) => peeked,
                Err(err) => return Box::pin(futures_util::stream::once(async { Err(err) })) as ByteStream,
            };
            let first: Vec<u8> = head.iter().flat_map(|c| c.iter().copied()).take(HEAD).collect();
            let whole: ByteStream = Box::pin(futures_util::stream::iter(head.into_iter().map(Ok)).chain(rest));
            match Compression::detect(&first) {
                None => whole,
                Some(kind) => {
                    tracing::info!(compression = kind.name(), "decompressing the image data");
                    decoded(kind, whole, cap)
                }
            }
        })
        .flatten(),
    )
}

/// The chunks making up the first [`HEAD`] bytes of `body` (fewer if it is shorter), and the
/// rest of it.
async fn peek(mut body: ByteStream) -> io::Result<(Vec<Bytes>, ByteStream)> {
    let (mut head, mut seen) = (Vec::new(), 0);
    while seen < HEAD {
        match body.next().await {
            Some(chunk) => {
                let chunk = chunk?;
                seen += chunk.len();
                head.push(chunk);
            }
            None => break,
        }
    }
    Ok((head, body))
}

/// Aborts the task feeding the decoder when the output is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn decoded(kind: Compression, body: ByteStream, cap: u64) -> ByteStream {
    let (in_tx, in_rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_DEPTH);
    let (out_tx, out_rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_DEPTH);
    let feeding = tokio::spawn(async move {
        let mut body = body;
        while let Some(item) = body.next().await {
            let failed = item.is_err();
            if in_tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    tokio::task::spawn_blocking(move || {
        let source_error = Arc::new(Mutex::new(None));
        let reader = ChannelReader { rx: in_rx, current: Bytes::new(), source_error: source_error.clone() };
        let mut output = Output { tx: out_tx, total: 0, cap };
        if let Err(err) = decode(kind, reader, &mut output) {
            // The source's own failure (a broken download, a checksum mismatch) says more than
            // what the decoder made of the data cut short.
            let taken = source_error.lock().map(|mut e| e.take()).unwrap_or(None);
            let err = match taken {
                Some(source) => source,
                None if err.get_ref().is_some_and(|e| e.is::<crate::FlowError>()) => err,
                None => mismatch(format!("The image data is not valid {} data: {err}", kind.name())),
            };
            // A closed channel means nobody waits for the outcome any more.
            let _ = output.tx.blocking_send(Err(err));
        }
    });
    let state = (out_rx, AbortOnDrop(feeding));
    Box::pin(futures_util::stream::unfold(state, |(mut rx, feeding)| async move {
        rx.recv().await.map(|item| (item, (rx, feeding)))
    }))
}

/// The decompressed bytes on their way out, counted against the cap.
struct Output {
    tx: mpsc::Sender<io::Result<Bytes>>,
    total: u64,
    cap: u64,
}

impl Output {
    /// Hands on everything `decoder` yields; `Ok(false)` when nobody reads the output any more.
    fn drain(&mut self, decoder: &mut dyn Read) -> io::Result<bool> {
        loop {
            let mut chunk = BytesMut::zeroed(CHUNK);
            let mut filled = 0;
            while filled < CHUNK {
                match decoder.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err),
                }
            }
            if filled == 0 {
                return Ok(true);
            }
            self.total += filled as u64;
            if self.total > self.cap {
                return Err(mismatch(format!(
                    "The image data decompresses to more than {} bytes, the maximum image size \
                     (image_size_cap): the import was stopped",
                    self.cap
                )));
            }
            chunk.truncate(filled);
            if self.tx.blocking_send(Ok(chunk.freeze())).is_err() {
                return Ok(false);
            }
        }
    }
}

fn decode(kind: Compression, reader: ChannelReader, output: &mut Output) -> io::Result<()> {
    match kind {
        Compression::Gzip => output.drain(&mut flate2::read::MultiGzDecoder::new(reader)).map(drop),
        Compression::Bzip2 => output.drain(&mut bzip2::read::MultiBzDecoder::new(reader)).map(drop),
        Compression::Xz => {
            output.drain(&mut lzma_rust2::XzReader::new_mem_limit(reader, true, XZ_MEMORY_LIMIT_KIB)).map(drop)
        }
        Compression::Zstd => zstd_frames(BufReader::new(reader), output),
        Compression::Zip => zip_member(BufReader::new(reader), output),
    }
}

/// Every frame of a zstd stream, in order (`zstd` writes one, `pzstd` many, with skippable
/// frames between them).
fn zstd_frames(mut source: BufReader<ChannelReader>, output: &mut Output) -> io::Result<()> {
    use ruzstd::decoding::StreamingDecoder;
    use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
    while !source.fill_buf()?.is_empty() {
        match StreamingDecoder::new(&mut source) {
            Ok(mut frame) => {
                if !output.drain(&mut frame)? {
                    return Ok(());
                }
            }
            Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                io::copy(&mut (&mut source).take(u64::from(length)), &mut io::sink())?;
            }
            Err(err) => return Err(io::Error::new(io::ErrorKind::InvalidData, err.to_string())),
        }
    }
    Ok(())
}

/// The one file of a zip archive, read from its local header on: Glance's plugin refuses
/// archives of several files, and so does Glint.
fn zip_member(mut source: BufReader<ChannelReader>, output: &mut Output) -> io::Result<()> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut header = [0u8; 30];
    source.read_exact(&mut header)?;
    let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let (flags, method, packed) = (u16_at(6), u16_at(8), u32_at(18));
    if flags & 1 != 0 {
        return Err(invalid("the archive is encrypted".into()));
    }
    let described_after = flags & 0x08 != 0;
    io::copy(&mut (&mut source).take(u64::from(u16_at(26)) + u64::from(u16_at(28))), &mut io::sink())?;
    let more = match method {
        8 => output.drain(&mut flate2::bufread::DeflateDecoder::new(&mut source))?,
        0 if !described_after && packed != u32::MAX => output.drain(&mut (&mut source).take(u64::from(packed)))?,
        0 => return Err(invalid("a stored member of unknown size cannot be streamed".into())),
        other => {
            return Err(invalid(format!(
                "the member uses compression method {other}; Glint reads stored or deflated ones"
            )));
        }
    };
    if !more {
        return Ok(());
    }
    // After the data (and its descriptor: optional signature, crc, then 4- or 8-byte sizes)
    // comes the central directory, or another member.
    let mut after = Vec::with_capacity(28);
    (&mut source).take(28).read_to_end(&mut after)?;
    let candidates: &[usize] =
        if described_after { if after.starts_with(b"PK\x07\x08") { &[16, 24] } else { &[12, 20] } } else { &[0] };
    let signature_at = |at: usize| after.get(at..at + 4);
    if candidates.iter().any(|&at| signature_at(at) == Some(b"PK\x03\x04")) {
        return Err(invalid("the archive holds more than one file; Glint imports single-file archives".into()));
    }
    if !candidates.iter().any(|&at| signature_at(at) == Some(b"PK\x01\x02")) {
        return Err(invalid("no central directory follows the member".into()));
    }
    // Read the directory to its end, so the source is seen whole (and checked, if it has a checksum).
    io::copy(&mut source, &mut io::sink())?;
    Ok(())
}

/// The compressed bytes, read on the decoder's thread.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    /// The source's own error, kept aside: decoders wrap or replace the errors they read.
    source_error: Arc<Mutex<Option<io::Error>>>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(err)) => {
                    let message = err.to_string();
                    if let Ok(mut kept) = self.source_error.lock() {
                        *kept = Some(err);
                    }
                    return Err(io::Error::other(message));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::FlowError;

    fn sample() -> Vec<u8> {
        (0..3_000_000u32).map(|i| (i % 251) as u8 ^ (i / 4096) as u8).collect()
    }

    fn chunked(data: Vec<u8>) -> ByteStream {
        let chunks: Vec<io::Result<Bytes>> = data.chunks(7000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Box::pin(futures_util::stream::iter(chunks))
    }

    async fn collect(stream: ByteStream) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut stream = stream;
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    fn abort_message(err: io::Error) -> String {
        match err.into_inner().map(|e| e.downcast::<FlowError>()) {
            Some(Ok(flow)) => match *flow {
                FlowError::Abort(message) => message,
                FlowError::Retry(message) => panic!("a retry: {message}"),
            },
            _ => panic!("not a flow error"),
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).expect("gzip");
        encoder.finish().expect("gzip")
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut writer = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::default()).expect("xz");
        writer.write_all(data).expect("xz");
        writer.finish().expect("xz")
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn bzip2(data: &[u8]) -> Vec<u8> {
        let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        encoder.write_all(data).expect("bzip2");
        encoder.finish().expect("bzip2")
    }

    /// A zip archive of `files` (name, content), deflated, sizes in the local headers.
    fn zip(files: &[(&str, &[u8])]) -> Vec<u8> {
        let (mut out, mut directory) = (Vec::new(), Vec::new());
        for (name, content) in files {
            let mut deflater = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            deflater.write_all(content).expect("deflate");
            let packed = deflater.finish().expect("deflate");
            let crc = crc32fast::hash(content);
            let offset = out.len() as u32;
            let mut common = Vec::new();
            common.extend_from_slice(&[20, 0, 0, 0, 8, 0, 0, 0, 0, 0]);
            common.extend_from_slice(&crc.to_le_bytes());
            common.extend_from_slice(&(packed.len() as u32).to_le_bytes());
            common.extend_from_slice(&(content.len() as u32).to_le_bytes());
            common.extend_from_slice(&(name.len() as u16).to_le_bytes());
            common.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(b"PK\x03\x04");
            out.extend_from_slice(&common);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&packed);
            directory.extend_from_slice(b"PK\x01\x02\x14\x00");
            directory.extend_from_slice(&common);
            directory.extend_from_slice(&[0; 8]);
            directory.extend_from_slice(&[0; 4]);
            directory.extend_from_slice(&offset.to_le_bytes());
            directory.extend_from_slice(name.as_bytes());
        }
        let start = out.len() as u32;
        out.extend_from_slice(&directory);
        out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(directory.len() as u32).to_le_bytes());
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    #[test]
    fn magic_bytes_tell_the_compression() {
        let data = sample();
        assert_eq!(Compression::detect(&gzip(&data)), Some(Compression::Gzip));
        assert_eq!(Compression::detect(&xz(&data)), Some(Compression::Xz));
        assert_eq!(Compression::detect(&zstd(&data)), Some(Compression::Zstd));
        assert_eq!(Compression::detect(&bzip2(&data)), Some(Compression::Bzip2));
        assert_eq!(Compression::detect(&zip(&[("disk.img", &data)])), Some(Compression::Zip));
        assert_eq!(Compression::detect(b"QFI\xfb\0\0\0\x03"), None);
        assert_eq!(Compression::detect(b"BZh0"), None);
        assert_eq!(Compression::detect(&[0x1f]), None);
        assert_eq!(Compression::detect(&[]), None);
    }

    #[tokio::test]
    async fn every_compression_decompresses_to_the_original() {
        let data = sample();
        for packed in [gzip(&data), xz(&data), zstd(&data), bzip2(&data), zip(&[("disk.img", &data)])] {
            let out = collect(decompressing(chunked(packed), u64::MAX)).await.expect("decompressed");
            assert!(out == data, "{} bytes differ from the original", out.len());
        }
    }

    #[tokio::test]
    async fn concatenated_streams_decompress_whole() {
        let (a, b) = (b"first part ".repeat(1000), b"second part".repeat(1000));
        for pack in [gzip, xz, zstd, bzip2] {
            let out = collect(decompressing(chunked([pack(&a), pack(&b)].concat()), u64::MAX)).await.expect("ok");
            assert!(out == [a.clone(), b.clone()].concat());
        }
    }

    #[tokio::test]
    async fn uncompressed_data_passes_untouched() {
        for data in [sample(), b"QFI\xfb".to_vec(), Vec::new(), vec![0x1f]] {
            assert_eq!(collect(decompressing(chunked(data.clone()), 10)).await.expect("as is"), data);
        }
    }

    #[tokio::test]
    async fn a_bomb_stops_at_the_cap_with_a_message() {
        let zeros = vec![0u8; 8 << 20];
        for packed in [gzip(&zeros), xz(&zeros), zstd(&zeros), bzip2(&zeros)] {
            let mut stream = decompressing(chunked(packed), 2 << 20);
            let mut passed = 0;
            let err = loop {
                match stream.next().await.expect("fails before the end") {
                    Ok(chunk) => passed += chunk.len(),
                    Err(err) => break err,
                }
            };
            assert!(passed <= 2 << 20);
            assert!(abort_message(err).contains("decompresses to more than 2097152 bytes"));
        }
    }

    #[tokio::test]
    async fn corrupt_data_fails_the_import() {
        let mut packed = xz(&sample());
        let middle = packed.len() / 2;
        packed[middle] ^= 0x55;
        let err = collect(decompressing(chunked(packed), u64::MAX)).await.expect_err("corrupt");
        assert!(abort_message(err).contains("not valid xz data"));
        let truncated = gzip(&sample())[..1000].to_vec();
        let err = collect(decompressing(chunked(truncated), u64::MAX)).await.expect_err("truncated");
        assert!(abort_message(err).contains("not valid gzip data"));
    }

    #[tokio::test]
    async fn a_zip_of_several_files_is_refused() {
        let archive = zip(&[("a.img", b"aaaa"), ("b.img", b"bbbb")]);
        let err = collect(decompressing(chunked(archive), u64::MAX)).await.expect_err("two files");
        assert!(abort_message(err).contains("more than one file"));
    }

    #[tokio::test]
    async fn the_source_error_comes_through() {
        let packed = gzip(&sample());
        let broken: ByteStream = Box::pin(futures_util::stream::iter([
            Ok(Bytes::copy_from_slice(&packed[..5000])),
            Err(io::Error::new(io::ErrorKind::TimedOut, "the server went quiet")),
        ]));
        let err = collect(decompressing(broken, u64::MAX)).await.expect_err("broken");
        assert_eq!((err.kind(), err.to_string().as_str()), (io::ErrorKind::TimedOut, "the server went quiet"));
    }
}

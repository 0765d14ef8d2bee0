//! In-process conversion, for the import flow's `image_conversion` step (docs/glance-v2-api.md
//! §6.2): every readable format to raw or qcow2, from a staged file to a file, in bounded
//! memory and without qemu-img. [`convert`] inspects the source first and refuses what the inspector refuses, so
//! the converters only ever see vetted headers; they check every offset again all the same.

mod inspecting;
mod layout;
mod pipeline;
mod qcow2_read;
mod qcow2_stream;
mod qcow2_write;
mod sparse;
mod vdi_read;
mod vhd_read;
mod vhdx_read;
mod vmdk_read;

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

pub use sparse::SparseOutput;

use self::inspecting::Inspecting;
use self::pipeline::{Copier, Sink, Source, copy, map_clusters};
use self::qcow2_read::Qcow2Reader;
use self::qcow2_stream::Qcow2Stream;
use self::qcow2_write::{CLUSTER, Qcow2Sink};
use self::sparse::SparseWriter;
use self::vdi_read::VdiReader;
use self::vhd_read::VhdReader;
use self::vhdx_read::VhdxReader;
use self::vmdk_read::VmdkReader;
use crate::decision::check_declared;
use crate::error::FormatError;
use crate::format::Format;
use crate::inspect_file;
use crate::report::Report;

/// What a conversion produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvertReport {
    /// The format written (the requested output format).
    pub format: Format,
    /// Bytes in the output file (its apparent size: raw output is sparse and uses less).
    pub size: u64,
    /// The virtual size of the disk, in bytes.
    pub virtual_size: u64,
}

/// The formats [`convert`] reads.
pub const READABLE: [Format; 6] = [Format::Raw, Format::Qcow2, Format::Vmdk, Format::Vhd, Format::Vhdx, Format::Vdi];

/// The formats [`convert`] writes.
pub const WRITABLE: [Format; 2] = [Format::Raw, Format::Qcow2];

/// Whether [`convert`] converts `from` into `to`: any readable format into another, writable
/// one.
pub fn can_convert(from: Format, to: Format) -> bool {
    from != to && READABLE.contains(&from) && WRITABLE.contains(&to)
}

/// Converts the image at `src`, declared as `src_format`, into a new image at `dst` in
/// `dst_format`; `dst` is created or truncated, and removed again if the conversion fails.
///
/// The source is inspected first and refused as an upload of it would be (undecided format,
/// mismatch with `src_format`, failed safety checks; a "raw" source that is really another
/// format is converted as the bytes it is, like Glance does). The output is inspected too, as
/// it is written for raw, from its header and tables for qcow2 (never a second pass over the
/// data, see [`inspect_file`]), and must be detected as `dst_format` (a raw
/// disk that starts with a partition table may be detected as gpt, whose checks judge the
/// guest's table and are left to the store step).
///
/// Supported: every pair [`can_convert`] accepts (raw output is sparse; qcow2 output is v3
/// with 64 KiB clusters); anything else, including a format to itself, is
/// [`FormatError::UnsupportedConversion`].
pub fn convert(src: &Path, src_format: Format, dst: &Path, dst_format: Format) -> Result<ConvertReport, FormatError> {
    if !can_convert(src_format, dst_format) {
        return Err(FormatError::UnsupportedConversion { from: src_format, to: dst_format });
    }
    let source_report = inspect_file(src)?;
    check_declared(src_format.as_str(), &source_report)?;
    let result = write_and_check(src, src_format, dst, dst_format);
    if result.is_err() {
        // Best effort: the error that matters is the conversion's.
        let _ = std::fs::remove_file(dst);
    }
    result
}

fn write_and_check(
    src: &Path,
    src_format: Format,
    dst: &Path,
    dst_format: Format,
) -> Result<ConvertReport, FormatError> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FormatError::Io { path, source }
    };
    let with_paths = |err| match err {
        FormatError::Read { source } => at(src)(source),
        FormatError::Write { source } => at(dst)(source),
        other => other,
    };
    let input = File::open(src).map_err(at(src))?;
    let mut output = File::create(dst).map_err(at(dst))?;
    let mut source = Source::new(input, src_format).map_err(with_paths)?;
    let reader = Reader::open(src_format, &mut source).map_err(with_paths)?;
    let virtual_size = reader.virtual_size();
    let walk = |source: &mut Source<File>, copier: &mut Copier| reader.walk(source, copier);
    let report = if dst_format == Format::Qcow2 {
        let sink = Qcow2Sink::new(&mut output, virtual_size.next_multiple_of(SECTOR), src_format)?;
        copy(&mut source, sink, virtual_size, walk).map_err(with_paths)?;
        None
    } else {
        let sink = Inspecting::new(SparseWriter::new(&mut output));
        let ((), report) = copy(&mut source, sink, virtual_size, walk).map_err(with_paths)?;
        Some(report)
    };
    let size = output.metadata().map_err(at(dst))?.len();
    drop(output);

    let report = match report {
        Some(report) => report,
        None => inspect_file(dst)?,
    };
    check_output(&report, dst_format)?;
    Ok(ConvertReport { format: dst_format, size, virtual_size })
}

/// Where [`stream_raw`] and [`stream_qcow2`] send an image: its bytes front to back, runs of
/// zeros by length.
pub trait RawStream: Send {
    /// The next bytes of the image are `data`.
    fn data(&mut self, data: &[u8]) -> std::io::Result<()>;
    /// The next `len` bytes of the image are zeros.
    fn zeros(&mut self, len: u64) -> std::io::Result<()>;
}

/// The source at `src`, inspected and refused as by [`convert`], opened for a conversion to
/// `dst_format`.
fn open_vetted(src: &Path, src_format: Format, dst_format: Format) -> Result<(Source<File>, Reader), FormatError> {
    if !can_convert(src_format, dst_format) {
        return Err(FormatError::UnsupportedConversion { from: src_format, to: dst_format });
    }
    let source_report = inspect_file(src)?;
    check_declared(src_format.as_str(), &source_report)?;
    let input = File::open(src).map_err(|source| FormatError::Io { path: src.to_path_buf(), source })?;
    let mut source = Source::new(input, src_format).map_err(|err| reading(src, err))?;
    let reader = Reader::open(src_format, &mut source).map_err(|err| reading(src, err))?;
    Ok((source, reader))
}

/// A read error, named with the file it came from.
fn reading(src: &Path, err: FormatError) -> FormatError {
    match err {
        FormatError::Read { source } => FormatError::Io { path: src.to_path_buf(), source },
        other => other,
    }
}

/// Converts the image at `src`, declared as `src_format`, into a raw disk streamed front to
/// back into `out`, with no file written: what an import stores straight from a staged file.
/// The source is inspected and refused first, as by [`convert`]; the output is for the
/// caller to inspect (with [`check_converted`]). Returns the virtual size.
pub fn stream_raw(src: &Path, src_format: Format, out: &mut impl RawStream) -> Result<u64, FormatError> {
    let (mut source, reader) = open_vetted(src, src_format, Format::Raw)?;
    let virtual_size = reader.virtual_size();
    let sink = Streamed { out, position: 0 };
    copy(&mut source, sink, virtual_size, |source, copier| reader.walk(source, copier))
        .map_err(|err| reading(src, err))?;
    Ok(virtual_size)
}

/// Converts the image at `src`, declared as `src_format`, into a qcow2 v3 image (64 KiB
/// clusters) streamed front to back into `out`, with no file written: what an import stores
/// straight from a staged file. The source is read twice: once to find which clusters hold
/// data (its tables, and its uncompressed data for zeros; compressed clusters are not
/// inflated), which lays out the image, then to copy them. The source is inspected and refused
/// first, as by [`convert`]; the output is for the caller to inspect (with
/// [`check_converted`]). Returns the virtual size and the bytes sent.
pub fn stream_qcow2(src: &Path, src_format: Format, out: &mut impl RawStream) -> Result<(u64, u64), FormatError> {
    let (mut source, reader) = open_vetted(src, src_format, Format::Qcow2)?;
    let virtual_size = reader.virtual_size().next_multiple_of(SECTOR);
    let planned = map_clusters(&mut source, CLUSTER, |source, copier| reader.walk(source, copier))
        .map_err(|err| reading(src, err))?;
    let sink = Qcow2Stream::new(out, virtual_size, planned, src_format)?;
    let sent = copy(&mut source, sink, virtual_size, |source, copier| reader.walk(source, copier))
        .map_err(|err| reading(src, err))?;
    Ok((virtual_size, sent))
}

/// A sink that tells the gaps between writes as zeros.
struct Streamed<'a, S> {
    out: &'a mut S,
    position: u64,
}

impl<S: RawStream> Streamed<'_, S> {
    fn zeros_until(&mut self, to: u64) -> Result<(), FormatError> {
        if to > self.position {
            self.out.zeros(to - self.position).map_err(|source| FormatError::Write { source })?;
            self.position = to;
        }
        Ok(())
    }
}

impl<S: RawStream> Sink for Streamed<'_, S> {
    type Output = ();

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FormatError> {
        self.zeros_until(offset)?;
        self.out.data(data).map_err(|source| FormatError::Write { source })?;
        self.position = offset + data.len() as u64;
        Ok(())
    }

    fn finish(mut self, len: u64) -> Result<(), FormatError> {
        self.zeros_until(len)
    }
}

/// Refuses converted output (inspected as `report`) that is not a safe image of `dst_format`,
/// as [`convert`] does for what it writes.
pub fn check_converted(report: &Report, dst_format: Format) -> Result<(), FormatError> {
    check_output(report, dst_format)
}

/// The converted image must inspect as a safe image of the requested format.
fn check_output(report: &Report, dst_format: Format) -> Result<(), FormatError> {
    let detected = report.format;
    let as_expected = detected == Some(dst_format) || (dst_format == Format::Raw && detected == Some(Format::Gpt));
    if !as_expected || (detected == Some(dst_format) && !report.is_safe()) {
        return Err(FormatError::ConversionOutput {
            expected: dst_format,
            found: report.to_string().trim_end().replace('\n', ", "),
        });
    }
    Ok(())
}

/// qemu sees disks in whole 512-byte sectors.
const SECTOR: u64 = 512;

/// The reader of one source format, its header validated.
enum Reader {
    /// The bytes are the disk: this many of them.
    Raw(u64),
    Qcow2(Qcow2Reader),
    Vmdk(VmdkReader),
    Vhd(VhdReader),
    Vhdx(VhdxReader),
    Vdi(VdiReader),
}

impl Reader {
    fn open<R: Read + Seek>(format: Format, source: &mut Source<R>) -> Result<Self, FormatError> {
        match format {
            Format::Raw => Ok(Reader::Raw(source.len())),
            Format::Qcow2 => Qcow2Reader::open(source).map(Reader::Qcow2),
            Format::Vmdk => VmdkReader::open(source).map(Reader::Vmdk),
            Format::Vhd => VhdReader::open(source).map(Reader::Vhd),
            Format::Vhdx => VhdxReader::open(source).map(Reader::Vhdx),
            Format::Vdi => VdiReader::open(source).map(Reader::Vdi),
            other => Err(FormatError::UnsupportedConversion { from: other, to: Format::Raw }),
        }
    }

    /// The guest disk size: for raw, the file rounded up to whole sectors, as qemu sizes it.
    fn virtual_size(&self) -> u64 {
        match self {
            Reader::Raw(len) => len.next_multiple_of(SECTOR),
            Reader::Qcow2(reader) => reader.virtual_size(),
            Reader::Vmdk(reader) => reader.virtual_size(),
            Reader::Vhd(reader) => reader.virtual_size(),
            Reader::Vhdx(reader) => reader.virtual_size(),
            Reader::Vdi(reader) => reader.virtual_size(),
        }
    }

    fn walk<R: Read + Seek>(&self, source: &mut Source<R>, copier: &mut Copier) -> Result<(), FormatError> {
        match self {
            Reader::Raw(len) => copier.data(source, 0, 0, *len),
            Reader::Qcow2(reader) => reader.walk(source, copier),
            Reader::Vmdk(reader) => reader.walk(source, copier),
            Reader::Vhd(reader) => reader.walk(source, copier),
            Reader::Vhdx(reader) => reader.walk(source, copier),
            Reader::Vdi(reader) => reader.walk(source, copier),
        }
    }
}

/// Writes the guest disk of the `format` image in `source` to `out` as raw, sparse: unallocated
/// and zero ranges, and zero blocks of data, are seeked over, then the length is set. Returns
/// the virtual size.
///
/// `out` must start empty. The header is validated here again and every offset checked against
/// the source's length, so hostile input yields an error, never a panic or an outside read;
/// still, [`convert`] is the entry point for untrusted files, because it also runs the
/// inspector's safety checks.
pub fn to_raw<R: Read + Seek, W: SparseOutput + Send>(
    format: Format,
    source: R,
    out: &mut W,
) -> Result<u64, FormatError> {
    let mut source = Source::new(source, format)?;
    let reader = Reader::open(format, &mut source)?;
    let virtual_size = reader.virtual_size();
    copy(&mut source, SparseWriter::new(out), virtual_size, |source, copier| reader.walk(source, copier))?;
    Ok(virtual_size)
}

/// [`to_raw`] for a qcow2 image.
pub fn qcow2_to_raw<R: Read + Seek, W: SparseOutput + Send>(source: R, out: &mut W) -> Result<u64, FormatError> {
    to_raw(Format::Qcow2, source, out)
}

/// Writes the first `len` bytes of `source`, read once front to back, to `out` as a qcow2 v3
/// image with 64 KiB clusters, clusters of zeros left unallocated. Returns the virtual size:
/// `len` rounded up to whole 512-byte sectors, as qemu sizes a raw disk. `out` must start
/// empty.
pub fn raw_to_qcow2<R: Read, W: Write + Seek + Send>(source: R, len: u64, out: &mut W) -> Result<u64, FormatError> {
    qcow2_write::write_qcow2(source, len, out)
}

//! In-process conversion, for the import flow's `image_conversion` step (docs/glance-v2-api.md §6.2): qcow2
//! to raw and raw to qcow2, from a staged file to a file, in bounded memory and without
//! qemu-img. [`convert`] inspects the source first and refuses what the inspector refuses, so
//! the converters only ever see vetted headers; they check every offset again all the same.

mod qcow2_read;
mod qcow2_write;
mod sparse;

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

pub use sparse::SparseOutput;

use crate::decision::check_declared;
use crate::error::FormatError;
use crate::format::Format;
use crate::inspect_file;

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

/// Converts the image at `src`, declared as `src_format`, into a new image at `dst` in
/// `dst_format`; `dst` is created or truncated, and removed again if the conversion fails.
///
/// The source is inspected first and refused as an upload of it would be (undecided format,
/// mismatch with `src_format`, failed safety checks; a "raw" source that is really another
/// format is converted as the bytes it is, like Glance does). The output is inspected too and
/// must be detected as `dst_format` (a raw disk that starts with a partition table may be
/// detected as gpt, whose checks judge the guest's table and are left to the store step).
///
/// Supported: qcow2 to raw (sparse output) and raw to qcow2 (v3, 64 KiB clusters); anything
/// else, including a format to itself, is [`FormatError::UnsupportedConversion`].
pub fn convert(src: &Path, src_format: Format, dst: &Path, dst_format: Format) -> Result<ConvertReport, FormatError> {
    if !matches!((src_format, dst_format), (Format::Qcow2, Format::Raw) | (Format::Raw, Format::Qcow2)) {
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
    let mut input = File::open(src).map_err(at(src))?;
    let mut output = File::create(dst).map_err(at(dst))?;
    let virtual_size = if src_format == Format::Qcow2 {
        qcow2_to_raw(&mut input, &mut output)
    } else {
        let len = input.metadata().map_err(at(src))?.len();
        raw_to_qcow2(&mut input, len, &mut output)
    }
    .map_err(with_paths)?;
    let size = output.metadata().map_err(at(dst))?.len();
    drop(output);

    let report = inspect_file(dst)?;
    let detected = report.format;
    let as_expected = detected == Some(dst_format) || (dst_format == Format::Raw && detected == Some(Format::Gpt));
    if !as_expected || (detected == Some(dst_format) && !report.is_safe()) {
        return Err(FormatError::ConversionOutput {
            expected: dst_format,
            found: report.to_string().trim_end().replace('\n', ", "),
        });
    }
    Ok(ConvertReport { format: dst_format, size, virtual_size })
}

/// Writes the guest disk of the qcow2 image in `source` to `out` as raw, sparse: unallocated
/// and zero clusters, and zero blocks of data, are seeked over, then the length is set.
/// Returns the virtual size.
///
/// `out` must start empty. The header is validated here again and every offset checked against
/// the source's length, so hostile input yields an error, never a panic or an outside read;
/// still, [`convert`] is the entry point for untrusted files, because it also runs the
/// inspector's safety checks.
pub fn qcow2_to_raw<R: Read + Seek, W: SparseOutput + Send>(source: R, out: &mut W) -> Result<u64, FormatError> {
    let mut reader = qcow2_read::Qcow2Reader::open(source)?;
    reader.copy_to(out)?;
    Ok(reader.virtual_size())
}

/// Writes the first `len` bytes of `source`, read once front to back, to `out` as a qcow2 v3
/// image with 64 KiB clusters, clusters of zeros left unallocated. Returns the virtual size:
/// `len` rounded up to whole 512-byte sectors, as qemu sizes a raw disk. `out` must start
/// empty.
pub fn raw_to_qcow2<R: Read, W: Write + Seek>(source: R, len: u64, out: &mut W) -> Result<u64, FormatError> {
    qcow2_write::write_qcow2(source, len, out)
}

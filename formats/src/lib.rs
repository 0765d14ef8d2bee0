//! Disk-image format inspection for Glint: detection, virtual size and safety checks over a byte
//! stream that is seen once, front to back (docs/glance-v2-api.md §7, modelled on oslo.utils'
//! `format_inspector`).
//!
//! Feed an upload to an [`Inspector`] chunk by chunk, call [`Inspector::finish`] at the end of
//! the stream, then let [`check_declared`] decide whether the declared `disk_format` may be
//! stored and which `virtual_size` to record. [`inspect_file`] does the same for a file on disk
//! (staged imports, `glint inspect`). [`convert`] turns a vetted qcow2 file into raw and back
//! (docs/glance-v2-api.md §6.2). Nothing here touches a database, the network or `qemu-img`: image bytes are
//! hostile input, and this crate is what vets them before any other parser sees them.

mod convert;
mod decision;
mod detect;
mod error;
mod field;
mod format;
mod inspector;
mod region;
mod report;

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;

pub use convert::{
    ConvertReport, READABLE, RawStream, SparseOutput, WRITABLE, can_convert, check_converted, convert, qcow2_to_raw,
    raw_to_qcow2, stream_qcow2, stream_raw, to_raw,
};
pub use decision::{check_declared, check_declared_allowing, check_declared_allowing_mismatch};
pub use error::FormatError;
pub use format::Format;
pub use inspector::{DEFAULT_MAX_VIRTUAL_SIZE, Inspector};
pub use report::Report;

/// Chunk size for reading files: large enough to keep system calls rare, small enough that the
/// inspector's bounded regions stay the only memory that grows with the image.
const FILE_CHUNK: usize = 64 * 1024;

/// Inspects the file at `path` as a fresh [`Inspector`] would the same bytes streamed, reading
/// only what the format inspectors ask for: the first sector, the regions its headers declare
/// (a few KiB to a few MiB) and the last bytes. The data in between, which no inspector keeps,
/// is skipped, so a staged file or a conversion output is vetted without a second pass over it.
///
/// The report equals that of the whole file fed front to back in any chunking, so a staged
/// file and an in-flight upload of the same bytes get the same [`Report`].
pub fn inspect_file(path: &Path) -> Result<Report, FormatError> {
    let io_error = |source| FormatError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io_error)?;
    let len = file.metadata().map_err(io_error)?.len();
    // From here to the end every byte is presented, so the tail is the stream's own.
    let tail_from = len.saturating_sub(detect::TAIL_LEN as u64);
    let mut inspector = Inspector::new();
    let mut buffer = vec![0u8; FILE_CHUNK];
    loop {
        let position = inspector.bytes_read();
        let wanted = inspector.next_wanted().unwrap_or(u64::MAX).min(tail_from);
        if wanted > position {
            inspector.skip_to(wanted);
            file.seek(SeekFrom::Start(inspector.bytes_read())).map_err(io_error)?;
        }
        match file.read(&mut buffer) {
            Ok(0) if inspector.bytes_read() < len => {
                return Err(io_error(std::io::Error::new(ErrorKind::UnexpectedEof, "the file shrank while inspected")));
            }
            Ok(0) => break,
            Ok(read) => inspector.feed(buffer.get(..read).unwrap_or_default()),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(io_error(err)),
        }
    }
    Ok(inspector.finish())
}

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
use std::io::{ErrorKind, Read};
use std::path::Path;

pub use convert::{
    ConvertReport, READABLE, RawStream, SparseOutput, WRITABLE, can_convert, check_converted, convert, qcow2_to_raw,
    raw_to_qcow2, stream_raw, to_raw,
};
pub use decision::{check_declared, check_declared_allowing, check_declared_allowing_mismatch};
pub use error::FormatError;
pub use format::Format;
pub use inspector::{DEFAULT_MAX_VIRTUAL_SIZE, Inspector};
pub use report::Report;

/// Chunk size for reading files: large enough to keep system calls rare, small enough that the
/// inspector's bounded regions stay the only memory that grows with the image.
const FILE_CHUNK: usize = 64 * 1024;

/// Streams the file at `path` through a fresh [`Inspector`] in 64 KiB chunks.
///
/// The file is read once, front to back, exactly like an upload, so a staged file and an
/// in-flight upload of the same bytes get the same [`Report`].
pub fn inspect_file(path: &Path) -> Result<Report, FormatError> {
    let io_error = |source| FormatError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io_error)?;
    let mut inspector = Inspector::new();
    let mut buffer = vec![0u8; FILE_CHUNK];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => inspector.feed(buffer.get(..read).unwrap_or_default()),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(io_error(err)),
        }
    }
    Ok(inspector.finish())
}

//! Sparse raw output: blocks of zeros are seeked over instead of written, so a mostly empty
//! disk costs neither writes nor space, and the length is set once at the end.

use std::fs::File;
use std::io::{self, Cursor, Seek, SeekFrom, Write};

use super::pipeline::Sink;
use crate::error::FormatError;

/// A destination for raw output that starts empty (all zeros) and can be extended without
/// writing, so that runs of zeros cost nothing.
pub trait SparseOutput: Write + Seek {
    /// Sets the length of the output, padding it with zeros (a hole, for a file).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

impl SparseOutput for File {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

impl SparseOutput for Cursor<Vec<u8>> {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        self.get_mut().resize(len, 0);
        Ok(())
    }
}

/// Granularity of hole detection: qemu-img's default (`-S 4k`) and the usual filesystem block.
const BLOCK: u64 = 4096;
static ZEROS: [u8; BLOCK as usize] = [0; BLOCK as usize];

/// Whether `data` is all zeros, compared a block at a time (a `memcmp`, much faster than a
/// byte loop).
pub(crate) fn is_zero(data: &[u8]) -> bool {
    data.chunks(ZEROS.len()).all(|chunk| ZEROS.get(..chunk.len()) == Some(chunk))
}

/// Writes data at given offsets of an output that starts empty, skipping zero blocks.
pub(crate) struct SparseWriter<'a, W: SparseOutput> {
    out: &'a mut W,
    /// Where the output's cursor is, once known, so that consecutive writes need no seek.
    position: Option<u64>,
}

impl<'a, W: SparseOutput> SparseWriter<'a, W> {
    pub(crate) fn new(out: &'a mut W) -> Self {
        Self { out, position: None }
    }

    fn write_run(&mut self, offset: u64, start: usize, run: &[u8]) -> Result<(), FormatError> {
        let at = offset + start as u64;
        let write = |source| FormatError::Write { source };
        if self.position != Some(at) {
            self.out.seek(SeekFrom::Start(at)).map_err(write)?;
        }
        self.out.write_all(run).map_err(write)?;
        self.position = Some(at + run.len() as u64);
        Ok(())
    }
}

impl<W: SparseOutput + Send> Sink for SparseWriter<'_, W> {
    type Output = ();

    /// Writes `data` at `offset`, leaving every all-zero block aligned to [`BLOCK`] unwritten.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FormatError> {
        let mut run_start: Option<usize> = None;
        let mut at = 0usize;
        while at < data.len() {
            let absolute = offset + at as u64;
            let block_end = (absolute / BLOCK + 1) * BLOCK;
            let len = usize::try_from(block_end - absolute).unwrap_or(usize::MAX).min(data.len() - at);
            let block = data.get(at..at + len).unwrap_or_default();
            let zero = is_zero(block);
            match (zero, run_start) {
                (true, Some(start)) => {
                    self.write_run(offset, start, data.get(start..at).unwrap_or_default())?;
                    run_start = None;
                }
                (false, None) => run_start = Some(at),
                _ => {}
            }
            at += len;
        }
        if let Some(start) = run_start {
            self.write_run(offset, start, data.get(start..).unwrap_or_default())?;
        }
        Ok(())
    }

    /// Gives the output its final length, which turns the zeros never written into a hole.
    fn finish(self, len: u64) -> Result<(), FormatError> {
        let write = |source| FormatError::Write { source };
        self.out.set_len(len).map_err(write)?;
        self.out.flush().map_err(write)
    }
}

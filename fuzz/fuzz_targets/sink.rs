//! The output the reader targets convert into: it keeps the cursor, the length and the end of
//! the furthest write, nothing else, so hostile virtual sizes cost nothing. The conversion
//! tests of the formats crate replay the fuzz corpus into the same sink.

use std::io::{self, Seek, SeekFrom, Write};

use glint_formats::SparseOutput;

pub struct Discard {
    /// Writes past this offset fail, which stops the copy (see the targets for why).
    limit: u64,
    position: u64,
    pub len: u64,
    pub written_end: u64,
}

impl Discard {
    pub fn up_to(limit: u64) -> Self {
        Discard { limit, position: 0, len: 0, written_end: 0 }
    }
}

impl Default for Discard {
    fn default() -> Self {
        Discard::up_to(u64::MAX)
    }
}

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.position += buf.len() as u64;
        if self.position > self.limit {
            return Err(io::Error::other("past the fuzzing limit"));
        }
        self.len = self.len.max(self.position);
        self.written_end = self.written_end.max(self.position);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Discard {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.position = match to {
            SeekFrom::Start(offset) => offset,
            SeekFrom::End(delta) => self.len.saturating_add_signed(delta),
            SeekFrom::Current(delta) => self.position.saturating_add_signed(delta),
        };
        Ok(self.position)
    }
}

impl SparseOutput for Discard {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.len = len;
        Ok(())
    }
}

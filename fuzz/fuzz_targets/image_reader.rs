//! The vmdk, vhd, vhdx, vdi and qcow2 readers over arbitrary bytes, written to a sink: they
//! must never panic, whatever the headers and tables say. The first byte picks the reader.

#![no_main]

use std::io::{self, Cursor, Seek, SeekFrom, Write};

use glint_formats::{Format, SparseOutput, to_raw};
use libfuzzer_sys::fuzz_target;

/// Guest data past this offset only measures copy speed: the sink refuses it, which stops the
/// copy, so the fuzzer keeps exploring.
const MAX_WRITTEN: u64 = 64 << 20;

const READERS: [Format; 5] = [Format::Vmdk, Format::Vhd, Format::Vhdx, Format::Vdi, Format::Qcow2];

/// Keeps the cursor, the length and the end of the furthest write, nothing else.
#[derive(Default)]
struct Discard {
    position: u64,
    len: u64,
    written_end: u64,
}

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.position += buf.len() as u64;
        if self.position > MAX_WRITTEN {
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

fuzz_target!(|input: &[u8]| {
    let Some((&selector, image)) = input.split_first() else {
        return;
    };
    let format = READERS[usize::from(selector) % READERS.len()];
    let mut out = Discard::default();
    if let Ok(size) = to_raw(format, Cursor::new(image), &mut out) {
        assert_eq!(out.len, size, "the output is not the virtual size");
        assert!(out.written_end <= size, "data was written past the virtual size");
    }
});

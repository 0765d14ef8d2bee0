//! The qcow2 reader over arbitrary bytes, written to a sink: it must never panic, whatever the
//! header and tables say.

#![no_main]

use std::io::{self, Cursor, Seek, SeekFrom, Write};

use glint_formats::{SparseOutput, qcow2_to_raw};
use libfuzzer_sys::fuzz_target;

/// Images may legitimately map a huge disk onto a few clusters; above this virtual size an
/// input only measures copy speed, so it is skipped to keep the fuzzer exploring.
const MAX_VIRTUAL_SIZE: u64 = 64 << 20;

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

fuzz_target!(|image: &[u8]| {
    let virtual_size = image.get(24..32).and_then(|field| field.try_into().ok()).map_or(0, u64::from_be_bytes);
    if virtual_size > MAX_VIRTUAL_SIZE {
        return;
    }
    let mut out = Discard::default();
    if let Ok(size) = qcow2_to_raw(Cursor::new(image), &mut out) {
        assert_eq!(out.len, size, "the output is not the virtual size");
        assert!(out.written_end <= size, "data was written past the virtual size");
    }
});

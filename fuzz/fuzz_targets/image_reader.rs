//! The vmdk, vhd, vhdx, vdi and qcow2 readers over arbitrary bytes, written to a sink: they
//! must never panic, whatever the headers and tables say. The first byte picks the reader.

#![no_main]

use std::io::Cursor;

use glint_formats::{Format, to_raw};
use libfuzzer_sys::fuzz_target;
use sink::Discard;

mod sink;

/// Guest data past this offset only measures copy speed: the sink refuses it, which stops the
/// copy, so the fuzzer keeps exploring.
const MAX_WRITTEN: u64 = 64 << 20;

const READERS: [Format; 5] = [Format::Vmdk, Format::Vhd, Format::Vhdx, Format::Vdi, Format::Qcow2];

fuzz_target!(|input: &[u8]| {
    let Some((&selector, image)) = input.split_first() else {
        return;
    };
    let format = READERS[usize::from(selector) % READERS.len()];
    let mut out = Discard::up_to(MAX_WRITTEN);
    if let Ok(size) = to_raw(format, Cursor::new(image), &mut out) {
        assert_eq!(out.len, size, "the output is not the virtual size");
        assert!(out.written_end <= size, "data was written past the virtual size");
    }
});

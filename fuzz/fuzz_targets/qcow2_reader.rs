//! The qcow2 reader over arbitrary bytes, written to a sink: it must never panic, whatever the
//! header and tables say.

#![no_main]

use std::io::Cursor;

use glint_formats::qcow2_to_raw;
use libfuzzer_sys::fuzz_target;
use sink::Discard;

mod sink;

/// Images may legitimately map a huge disk onto a few clusters; above this virtual size an
/// input only measures copy speed, so it is skipped to keep the fuzzer exploring.
const MAX_VIRTUAL_SIZE: u64 = 64 << 20;

fuzz_target!(|image: &[u8]| {
    let virtual_size = image.get(24..32).and_then(|field| field.try_into().ok()).map_or(0, u64::from_be_bytes);
    if virtual_size > MAX_VIRTUAL_SIZE {
        return;
    }
    let mut out = Discard::up_to(u64::MAX);
    if let Ok(size) = qcow2_to_raw(Cursor::new(image), &mut out) {
        assert_eq!(out.len, size, "the output is not the virtual size");
        assert!(out.written_end <= size, "data was written past the virtual size");
    }
});

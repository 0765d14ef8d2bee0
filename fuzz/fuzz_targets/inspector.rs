//! The inspector over arbitrary bytes cut into arbitrary chunks: it must never panic, and the
//! chunking must never change its report.

#![no_main]

use glint_formats::{Format, Inspector, check_declared};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // The first byte seeds the chunk sizes; the rest is the stream.
    let Some((&seed, stream)) = input.split_first() else {
        return;
    };
    let mut whole = Inspector::new();
    whole.feed(stream);
    let expected = whole.finish();

    let mut chunked = Inspector::new();
    let mut state = u32::from(seed) | 0x100;
    let mut rest = stream;
    while !rest.is_empty() {
        // xorshift: sizes from 0 to 4 KiB, with 0 and 1 common, so every boundary is hit.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let size = match state % 4 {
            0 => 0,
            1 => 1,
            2 => (state >> 8) as usize % 64,
            _ => (state >> 8) as usize % 4096,
        };
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        chunked.feed(chunk);
        rest = tail;
    }
    let report = chunked.finish();
    assert_eq!(report, expected, "chunking changed the report");

    for format in Format::ALL {
        let _ = check_declared(format.as_str(), &report);
    }
    let _ = report.to_json();
    let _ = report.to_string();
});

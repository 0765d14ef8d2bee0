//! Timing driver for `bench/convert.sh`: runs one conversion or one inspection pass and prints
//! `key=value` pairs (seconds, bytes) on one line.
//!
//! ```text
//! convert SRC SRC_FORMAT DST DST_FORMAT   glint_formats::convert (inspection included)
//! qcow2-raw SRC DST                       the qcow2 reader alone, no inspection
//! inspect-memory BYTES                    the inspector over BYTES of in-memory data fed in
//!                                         256 KiB chunks, against a loop that only touches them
//! inspect-file FILE                       the inspector over FILE read in 256 KiB chunks,
//!                                         against the same read loop without it
//! ```
//!
//! The inspection figures are the fastest of three alternating rounds.

use std::fs::File;
use std::hint::black_box;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use glint_formats::{Format, FormatError, Inspector, convert, qcow2_to_raw};

const CHUNK: usize = 256 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match words.as_slice() {
        ["convert", src, from, dst, to] => run_convert(src, from, dst, to),
        ["qcow2-raw", src, dst] => run_qcow2_raw(src, dst),
        ["inspect-memory", bytes] => {
            bytes.parse().map_err(|err| format!("bad byte count {bytes}: {err}")).map(inspect_memory)
        }
        ["inspect-file", path] => inspect_file(path),
        _ => Err("usage: convert SRC SRC_FORMAT DST DST_FORMAT | qcow2-raw SRC DST | \
                  inspect-memory BYTES | inspect-file FILE"
            .to_owned()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn format(name: &str) -> Result<Format, String> {
    Format::from_name(name).ok_or_else(|| format!("unknown format {name}"))
}

fn run_convert(src: &str, from: &str, dst: &str, to: &str) -> Result<(), String> {
    let (from, to) = (format(from)?, format(to)?);
    let start = Instant::now();
    let report = convert(Path::new(src), from, Path::new(dst), to).map_err(|err| err.to_string())?;
    println!("seconds={:.4} size={} virtual_size={}", start.elapsed().as_secs_f64(), report.size, report.virtual_size);
    Ok(())
}

fn run_qcow2_raw(src: &str, dst: &str) -> Result<(), String> {
    let start = Instant::now();
    let result = (|| -> Result<u64, FormatError> {
        let input = File::open(src).map_err(|source| FormatError::Read { source })?;
        let mut output = File::create(dst).map_err(|source| FormatError::Write { source })?;
        qcow2_to_raw(input, &mut output)
    })();
    let virtual_size = result.map_err(|err| err.to_string())?;
    println!("seconds={:.4} virtual_size={virtual_size}", start.elapsed().as_secs_f64());
    Ok(())
}

/// Runs of each side of an inspection comparison; the fastest is kept, since the only
/// thing that slows a run of this pure CPU and page-cache work is other load.
const ROUNDS: usize = 3;

fn inspect_memory(total: u64) {
    // Not all zeros, so that nothing can be skipped by looking at the value.
    let chunk: Vec<u8> = (0..CHUNK).map(|index| (index * 7 + 3) as u8).collect();
    let chunks = total.div_ceil(CHUNK as u64);
    let touch = || {
        let start = Instant::now();
        let mut sum = 0u64;
        for _ in 0..chunks {
            let chunk = black_box(chunk.as_slice());
            sum = sum.wrapping_add(u64::from(chunk.first().copied().unwrap_or(0)));
        }
        black_box(sum);
        start.elapsed().as_secs_f64()
    };
    let inspect = || {
        let start = Instant::now();
        let mut inspector = Inspector::new();
        for _ in 0..chunks {
            inspector.feed(black_box(chunk.as_slice()));
        }
        (inspector.finish(), start.elapsed().as_secs_f64())
    };
    let mut baseline = f64::MAX;
    let mut inspected = f64::MAX;
    let mut last = None;
    for _ in 0..ROUNDS {
        baseline = baseline.min(touch());
        let (report, seconds) = inspect();
        inspected = inspected.min(seconds);
        last = Some(report);
    }
    let report = last.unwrap_or_else(|| Inspector::new().finish());
    println!(
        "bytes={} format={} inspector_seconds={inspected:.6} baseline_seconds={baseline:.6}",
        report.bytes_read,
        report.format.map_or("undecided", Format::as_str)
    );
}

fn inspect_file(path: &str) -> Result<(), String> {
    let read_all = |mut inspector: Option<&mut Inspector>| -> Result<(u64, f64), String> {
        let mut file = File::open(path).map_err(|err| format!("{path}: {err}"))?;
        let mut buffer = vec![0u8; CHUNK];
        let mut total = 0u64;
        let start = Instant::now();
        loop {
            let read = file.read(&mut buffer).map_err(|err| format!("{path}: {err}"))?;
            if read == 0 {
                break;
            }
            total += read as u64;
            let chunk = buffer.get(..read).unwrap_or_default();
            match inspector.as_deref_mut() {
                Some(inspector) => inspector.feed(chunk),
                None => {
                    black_box(chunk);
                }
            }
        }
        Ok((total, start.elapsed().as_secs_f64()))
    };
    let mut baseline = f64::MAX;
    let mut inspected = f64::MAX;
    let mut last = None;
    for _ in 0..ROUNDS {
        baseline = baseline.min(read_all(None)?.1);
        let mut inspector = Inspector::new();
        let (total, seconds) = read_all(Some(&mut inspector))?;
        inspected = inspected.min(seconds);
        last = Some((total, inspector.finish()));
    }
    let (total, report) = last.unwrap_or_else(|| (0, Inspector::new().finish()));
    println!(
        "bytes={total} format={} inspector_seconds={inspected:.6} baseline_seconds={baseline:.6}",
        report.format.map_or("undecided", Format::as_str)
    );
    Ok(())
}

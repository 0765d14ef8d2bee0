//! Which SHA-512 should Glint use? Hashes 512 MiB held in memory, in 256 KiB chunks (the
//! store's read size), with the `sha2` crate (what `data.rs` uses), `ring`, `aws-lc-rs` (already
//! linked into Glint as the S3 store's TLS crypto) and `md-5` (the other digest of every
//! upload), and runs `openssl dgst -sha512` on the same bytes in a file as the same-invocation
//! reference. Rounds are interleaved (one of each per round) so a
//! burst of load on a shared machine hits every contender alike; each figure is the median.
//! Every digest is checked against the others and against a known answer before timing.
//! Besides wall-clock MB/s it reports on-CPU MB/s (bytes per second of CPU time the hashing
//! thread, or the openssl child, actually got): on a shared machine that figure is what a
//! preempted run would have done, so it separates the digests' speed from the neighbours' load.
//!
//! Run: `cargo bench -p glint-core --bench digest`
//! Knobs: `DIGEST_MIB` (default 512), `DIGEST_ROUNDS` (default 5), `DIGEST_OPENSSL` (binary).

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use md5::Md5;
use sha2::{Digest, Sha512};

const CHUNK: usize = 256 * 1024;
/// Index of the openssl reference in the contenders (sha2, ring, aws-lc-rs, md-5, openssl).
const OPENSSL: usize = 4;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

/// Deterministic incompressible-looking bytes (splitmix64); content does not change the cost.
fn data(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&z.to_le_bytes()[..take]);
    }
    out
}

fn sha2_sha512(data: &[u8]) -> String {
    let mut h = Sha512::new();
    for chunk in data.chunks(CHUNK) {
        h.update(chunk);
    }
    hex::encode(h.finalize())
}

fn ring_sha512(data: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
    for chunk in data.chunks(CHUNK) {
        ctx.update(chunk);
    }
    hex::encode(ctx.finish().as_ref())
}

fn aws_lc_sha512(data: &[u8]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA512);
    for chunk in data.chunks(CHUNK) {
        ctx.update(chunk);
    }
    hex::encode(ctx.finish().as_ref())
}

fn md5(data: &[u8]) -> String {
    let mut h = Md5::new();
    for chunk in data.chunks(CHUNK) {
        h.update(chunk);
    }
    hex::encode(h.finalize())
}

/// `openssl dgst -sha512 FILE`: the hex digest, or why not.
fn openssl_sha512(bin: &str, file: &std::path::Path) -> Result<String, String> {
    let out =
        Command::new(bin).args(["dgst", "-sha512", "-r"]).arg(file).output().map_err(|e| format!("{bin}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{bin} dgst: {} {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    // `-r` prints "<hex> *<file>", coreutils style, whatever the OpenSSL version.
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().next().map(str::to_owned).ok_or_else(|| format!("unexpected output: {text}"))
}

/// CPU time this thread has had, in ns (`/proc/thread-self/schedstat`, Linux); None elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

/// CPU time of the waited-for children (cutime + cstime of `/proc/self/stat`), in clock ticks.
fn children_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the ")" come fields 3.. of proc(5): cutime and cstime are fields 16 and 17.
    Some(fields.get(13)?.parse::<u64>().ok()? + fields.get(14)?.parse::<u64>().ok()?)
}

/// Clock ticks per second (`getconf CLK_TCK`; USER_HZ is 100 on every common Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

struct Contender {
    name: &'static str,
    note: String,
    mbps: Vec<f64>,
    /// MB per second of CPU time received.
    cpu_mbps: Vec<f64>,
    digest: String,
}

fn main() {
    // `cargo bench` passes `--bench`; `harness = false` leaves the arguments to us: ignore them.
    let mib = env_usize("DIGEST_MIB", 512);
    let rounds = env_usize("DIGEST_ROUNDS", 5);
    let openssl = std::env::var("DIGEST_OPENSSL").unwrap_or_else(|_| "openssl".to_owned());
    let len = mib * 1024 * 1024;
    let mb = len as f64 / 1e6;

    // Known answers first: a fast digest that is wrong is no candidate.
    const ABC_SHA512: &str = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
    assert_eq!(sha2_sha512(b"abc"), ABC_SHA512, "sha2 fails the FIPS 180-2 'abc' vector");
    assert_eq!(ring_sha512(b"abc"), ABC_SHA512, "ring fails the FIPS 180-2 'abc' vector");
    assert_eq!(aws_lc_sha512(b"abc"), ABC_SHA512, "aws-lc-rs fails the FIPS 180-2 'abc' vector");
    assert_eq!(md5(b"abc"), "900150983cd24fb0d6963f7d28e17f72", "md-5 fails the RFC 1321 'abc' vector");

    eprintln!("digest bench: {mib} MiB in memory, {} KiB chunks, {rounds} interleaved rounds", CHUNK / 1024);
    let bytes = data(len);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("data.bin");
    {
        let mut f = std::fs::File::create(&file).expect("create data file");
        f.write_all(&bytes).expect("write data file");
        f.sync_all().expect("sync data file");
    }
    // Warm the page cache for openssl (the file was just written, but make sure).
    let _ = std::fs::read(&file).map(|v| v.len());

    let mut contenders = vec![
        Contender {
            name: "sha2 Sha512 (Glint today)",
            note: "sha2 0.11, pure Rust, runtime AVX2".into(),
            mbps: vec![],
            cpu_mbps: vec![],
            digest: String::new(),
        },
        Contender {
            name: "ring SHA512",
            note: "ring 0.17, OpenSSL-derived assembly".into(),
            mbps: vec![],
            cpu_mbps: vec![],
            digest: String::new(),
        },
        Contender {
            name: "aws-lc-rs SHA512",
            note: "aws-lc-rs 1, AWS-LC (OpenSSL-derived) assembly".into(),
            mbps: vec![],
            cpu_mbps: vec![],
            digest: String::new(),
        },
        Contender {
            name: "md-5 Md5 (reference)",
            note: "the other digest of each upload".into(),
            mbps: vec![],
            cpu_mbps: vec![],
            digest: String::new(),
        },
        Contender {
            name: "openssl dgst -sha512 (file)",
            note: String::new(),
            mbps: vec![],
            cpu_mbps: vec![],
            digest: String::new(),
        },
    ];
    let openssl_version = Command::new(&openssl)
        .arg("version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().take(2).collect::<Vec<_>>().join(" "));
    let mut openssl_error = None;
    match &openssl_version {
        Some(v) => contenders[OPENSSL].note = format!("{v}; separate process, page cache warm"),
        None => openssl_error = Some(format!("{openssl} not runnable")),
    }

    let load_at_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let ticks = clock_ticks();
    for round in 1..=rounds {
        for (i, c) in contenders.iter_mut().enumerate() {
            if i == OPENSSL && openssl_error.is_some() {
                continue;
            }
            let (cpu0, child0) = (thread_cpu_ns(), children_cpu_ticks());
            let t = Instant::now();
            let digest = match i {
                0 => sha2_sha512(&bytes),
                1 => ring_sha512(&bytes),
                2 => aws_lc_sha512(&bytes),
                3 => md5(&bytes),
                _ => match openssl_sha512(&openssl, &file) {
                    Ok(d) => d,
                    Err(e) => {
                        openssl_error = Some(e);
                        continue;
                    }
                },
            };
            let secs = t.elapsed().as_secs_f64();
            let cpu_secs = if i == OPENSSL {
                children_cpu_ticks().zip(child0).map(|(b, a)| b.saturating_sub(a) as f64 / ticks)
            } else {
                thread_cpu_ns().zip(cpu0).map(|(b, a)| b.saturating_sub(a) as f64 / 1e9)
            };
            c.mbps.push(mb / secs);
            if let Some(cpu) = cpu_secs.filter(|s| *s > 0.0) {
                c.cpu_mbps.push(mb / cpu);
            }
            if c.digest.is_empty() {
                c.digest = digest;
            } else {
                assert_eq!(c.digest, digest, "{} gave a different digest in round {round}", c.name);
            }
            let on_cpu = cpu_secs.map_or("-".to_owned(), |cpu| format!("{:.0}%", 100.0 * cpu / secs));
            eprintln!("  round {round}: {:<28} {:>8.1} MB/s  (on CPU {on_cpu} of the time)", c.name, mb / secs);
        }
    }

    // Soundness: the three SHA-512s must agree on the 512 MiB.
    assert_eq!(contenders[0].digest, contenders[1].digest, "sha2 and ring disagree");
    assert_eq!(contenders[0].digest, contenders[2].digest, "sha2 and aws-lc-rs disagree");
    if !contenders[OPENSSL].digest.is_empty() {
        assert_eq!(contenders[0].digest, contenders[OPENSSL].digest, "sha2 and openssl disagree");
    }

    let reference = (!contenders[OPENSSL].mbps.is_empty()).then(|| median(contenders[OPENSSL].mbps.clone()));
    println!();
    println!(
        "SHA-512 micro-benchmark: {mib} MiB in memory, {} KiB chunks, median of {rounds} interleaved rounds, 1 thread; loadavg at start: {}",
        CHUNK / 1024,
        load_at_start.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!();
    println!(
        "| digest | MB/s (median) | min..max | vs openssl | vs sha2 | on-CPU MB/s (median) | on-CPU vs sha2 | note |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    let sha2_cpu = (!contenders[0].cpu_mbps.is_empty()).then(|| median(contenders[0].cpu_mbps.clone()));
    let sha2_median = median(contenders[0].mbps.clone());
    for c in &contenders {
        if c.mbps.is_empty() {
            continue;
        }
        let m = median(c.mbps.clone());
        let lo = c.mbps.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = c.mbps.iter().copied().fold(0.0, f64::max);
        let vs_openssl = reference.map_or("-".to_owned(), |r| format!("{:.2}", m / r));
        let cpu = (!c.cpu_mbps.is_empty()).then(|| median(c.cpu_mbps.clone()));
        let cpu_text = cpu.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let cpu_vs = cpu.zip(sha2_cpu).map_or("-".to_owned(), |(v, s)| format!("{:.2}", v / s));
        println!(
            "| {} | {m:.1} | {lo:.0}..{hi:.0} | {vs_openssl} | {:.2} | {cpu_text} | {cpu_vs} | {} |",
            c.name,
            m / sha2_median,
            c.note
        );
    }
    println!();
    println!(
        "All SHA-512 digests of the {mib} MiB agree ({}…); sha2, ring, aws-lc-rs and md-5 pass the 'abc' known answers.",
        &contenders[0].digest[..16]
    );
    println!(
        "On-CPU MB/s: bytes per second of CPU time the hashing thread got (schedstat), or the openssl \
         child (cutime+cstime, {ticks:.0} Hz ticks, so also its process start and file reads)."
    );
    if let Some(e) = openssl_error {
        println!("openssl reference skipped: {e}");
    }
}

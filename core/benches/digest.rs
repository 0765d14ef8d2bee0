//! Which SHA-512 and MD5 should Glint use? Hashes 512 MiB held in memory, in 1 MiB chunks (the
//! upload's chunk size), with every candidate crate: `sha2` and `md-5` (pure Rust), `md-5` 0.10
//! with its `asm` feature (`md5-asm`), `ring`, `aws-lc-rs` (already linked into Glint as the S3
//! store's TLS crypto) and the `openssl` crate (the system's libcrypto), and runs
//! `openssl dgst -sha512` and `md5sum` on the same bytes in a file as the same-run references.
//! Rounds are interleaved (one of each per round) so a burst of load on a shared machine hits
//! every contender alike; each figure is the median. Every digest is checked against the others,
//! against `md5sum`/`openssl dgst` and against a known answer before timing.
//! Besides wall-clock MB/s it reports on-CPU MB/s (bytes per second of CPU time the hashing
//! thread, or the child process, actually got): on a shared machine that figure is what a
//! preempted run would have done, so it separates the digests' speed from the neighbours' load.
//! (`sha2`'s own `asm` feature is gone in 0.11; in 0.10 it only replaced the fallback for CPUs
//! without AVX2, so there is nothing more to measure for SHA-512 in it.)
//!
//! Run: `cargo bench -p glint-core --bench digest`
//! Knobs: `DIGEST_MIB` (default 512), `DIGEST_ROUNDS` (default 5), `DIGEST_OPENSSL` (binary),
//! `DIGEST_ONLY` (run only the contenders whose name contains it, for `valgrind --tool=callgrind`).

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use md5::Md5;
use sha2::{Digest, Sha512};

const CHUNK: usize = 1 << 20;

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

fn rust_crypto<D: Digest>(data: &[u8]) -> String {
    let mut h = D::new();
    for chunk in data.chunks(CHUNK) {
        h.update(chunk);
    }
    hex::encode(h.finalize())
}

fn md5_asm(data: &[u8]) -> String {
    use md5_asm::Digest as _;
    let mut h = md5_asm::Md5::new();
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

fn openssl_crate(algo: openssl::hash::MessageDigest, data: &[u8]) -> String {
    let mut h = openssl::hash::Hasher::new(algo).expect("openssl hasher");
    for chunk in data.chunks(CHUNK) {
        h.update(chunk).expect("openssl update");
    }
    hex::encode(h.finish().expect("openssl finish"))
}

/// `CMD... FILE`: the hex digest it prints first (coreutils style), or why not.
fn run_tool(cmd: &[&str], file: &std::path::Path) -> Result<String, String> {
    let out = Command::new(cmd[0]).args(&cmd[1..]).arg(file).output().map_err(|e| format!("{}: {e}", cmd[0]))?;
    if !out.status.success() {
        return Err(format!("{}: {} {}", cmd.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
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

#[derive(Clone, Copy, PartialEq)]
enum Algo {
    Sha512,
    Md5,
}

enum Run {
    InProcess(fn(&[u8]) -> String),
    /// A command given the data file as its last argument; its digest comes first on stdout.
    Tool(Vec<String>),
}

struct Contender {
    name: String,
    algo: Algo,
    run: Run,
    mbps: Vec<f64>,
    /// MB per second of CPU time received.
    cpu_mbps: Vec<f64>,
    digest: String,
    error: Option<String>,
}

impl Contender {
    fn new(name: &str, algo: Algo, run: Run) -> Self {
        Contender { name: name.into(), algo, run, mbps: vec![], cpu_mbps: vec![], digest: String::new(), error: None }
    }

    fn cpu_median(&self) -> Option<f64> {
        (!self.cpu_mbps.is_empty()).then(|| median(self.cpu_mbps.clone()))
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `harness = false` leaves the arguments to us: ignore them.
    let mib = env_usize("DIGEST_MIB", 512);
    let rounds = env_usize("DIGEST_ROUNDS", 5);
    let openssl = std::env::var("DIGEST_OPENSSL").unwrap_or_else(|_| "openssl".to_owned());
    let only = std::env::var("DIGEST_ONLY").unwrap_or_default();
    let len = mib * 1024 * 1024;
    let mb = len as f64 / 1e6;

    // Known answers first: a fast digest that is wrong is no candidate.
    const ABC_SHA512: &str = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
    const ABC_MD5: &str = "900150983cd24fb0d6963f7d28e17f72";
    let tool = |args: &[&str]| Run::Tool(args.iter().map(|s| s.to_string()).collect());
    let mut contenders = vec![
        Contender::new("sha2 0.11 Sha512 (pure Rust, AVX2)", Algo::Sha512, Run::InProcess(rust_crypto::<Sha512>)),
        Contender::new("ring 0.17 SHA512", Algo::Sha512, Run::InProcess(ring_sha512)),
        Contender::new("aws-lc-rs 1 SHA512", Algo::Sha512, Run::InProcess(aws_lc_sha512)),
        Contender::new(
            "openssl crate SHA512 (libcrypto)",
            Algo::Sha512,
            Run::InProcess(|d| openssl_crate(openssl::hash::MessageDigest::sha512(), d)),
        ),
        Contender::new("`openssl dgst -sha512` (reference)", Algo::Sha512, tool(&[&openssl, "dgst", "-sha512", "-r"])),
        Contender::new("`sha512sum` (context)", Algo::Sha512, tool(&["sha512sum"])),
        Contender::new("md-5 0.11 Md5 (pure Rust)", Algo::Md5, Run::InProcess(rust_crypto::<Md5>)),
        Contender::new("md-5 0.10 Md5, `asm` (md5-asm)", Algo::Md5, Run::InProcess(md5_asm)),
        Contender::new(
            "openssl crate MD5 (libcrypto)",
            Algo::Md5,
            Run::InProcess(|d| openssl_crate(openssl::hash::MessageDigest::md5(), d)),
        ),
        Contender::new("`md5sum` (reference)", Algo::Md5, tool(&["md5sum"])),
        Contender::new("`openssl dgst -md5` (context)", Algo::Md5, tool(&[&openssl, "dgst", "-md5", "-r"])),
    ];
    contenders.retain(|c| c.name.contains(&only));
    for c in &contenders {
        if let Run::InProcess(f) = c.run {
            let want = if c.algo == Algo::Sha512 { ABC_SHA512 } else { ABC_MD5 };
            assert_eq!(f(b"abc"), want, "{} fails the 'abc' known answer", c.name);
        }
    }

    eprintln!("digest bench: {mib} MiB in memory, {} KiB chunks, {rounds} interleaved rounds", CHUNK / 1024);
    let bytes = data(len);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("data.bin");
    {
        let mut f = std::fs::File::create(&file).expect("create data file");
        f.write_all(&bytes).expect("write data file");
        f.sync_all().expect("sync data file");
    }
    // Warm the page cache for the tools (the file was just written, but make sure).
    let _ = std::fs::read(&file).map(|v| v.len());

    let load_at_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let ticks = clock_ticks();
    for round in 1..=rounds {
        for c in contenders.iter_mut().filter(|c| c.error.is_none()) {
            let (cpu0, child0) = (thread_cpu_ns(), children_cpu_ticks());
            let t = Instant::now();
            let digest = match &c.run {
                Run::InProcess(f) => f(&bytes),
                Run::Tool(cmd) => {
                    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
                    match run_tool(&cmd, &file) {
                        Ok(d) => d,
                        Err(e) => {
                            c.error = Some(e);
                            continue;
                        }
                    }
                }
            };
            let secs = t.elapsed().as_secs_f64();
            let cpu_secs = match c.run {
                Run::Tool(_) => children_cpu_ticks().zip(child0).map(|(b, a)| b.saturating_sub(a) as f64 / ticks),
                Run::InProcess(_) => thread_cpu_ns().zip(cpu0).map(|(b, a)| b.saturating_sub(a) as f64 / 1e9),
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
            eprintln!("  round {round}: {:<40} {:>8.1} MB/s  (on CPU {on_cpu} of the time)", c.name, mb / secs);
        }
    }

    // Soundness: every contender of an algorithm gives the same digest of the whole buffer.
    for algo in [Algo::Sha512, Algo::Md5] {
        let mut digests = contenders.iter().filter(|c| c.algo == algo && !c.digest.is_empty());
        if let Some(first) = digests.next() {
            for other in digests {
                assert_eq!(first.digest, other.digest, "{} and {} disagree", first.name, other.name);
            }
        }
    }

    println!();
    println!(
        "Digest micro-benchmark: {mib} MiB in memory, {} KiB chunks, median of {rounds} interleaved rounds, 1 thread; loadavg at start: {}",
        CHUNK / 1024,
        load_at_start.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!();
    println!("| digest | MB/s (median) | min..max | on-CPU MB/s (median) | on-CPU vs reference | CPU s per GB |");
    println!("|---|---:|---:|---:|---:|---:|");
    for algo in [Algo::Sha512, Algo::Md5] {
        let reference = contenders
            .iter()
            .find(|c| c.algo == algo && c.name.contains("(reference)"))
            .and_then(Contender::cpu_median);
        for c in contenders.iter().filter(|c| c.algo == algo && !c.mbps.is_empty()) {
            let m = median(c.mbps.clone());
            let lo = c.mbps.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = c.mbps.iter().copied().fold(0.0, f64::max);
            let cpu = c.cpu_median();
            let cpu_text = cpu.map_or("-".to_owned(), |v| format!("{v:.1}"));
            let vs = cpu.zip(reference).map_or("-".to_owned(), |(v, r)| format!("{:.2}", v / r));
            let per_gb = cpu.map_or("-".to_owned(), |v| format!("{:.2}", 1e3 / v));
            println!("| {} | {m:.1} | {lo:.0}..{hi:.0} | {cpu_text} | {vs} | {per_gb} |", c.name);
        }
    }
    println!();
    println!(
        "Every digest of the {mib} MiB agrees with the others of its algorithm; every in-process one passes the 'abc' known answer."
    );
    println!(
        "On-CPU MB/s: bytes per second of CPU time the hashing thread got (schedstat), or the child \
         (cutime+cstime, {ticks:.0} Hz ticks, so also its process start and file reads)."
    );
    for c in contenders.iter().filter(|c| c.error.is_some()) {
        println!("{} skipped: {}", c.name, c.error.as_deref().unwrap_or_default());
    }
}

//! Helpers shared by the conversion tests: qemu-img and qemu-io as the oracle, our converters
//! run on files, and comparisons that do not load whole disks into memory.

use std::fs::File;
use std::io::{Cursor, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use glint_formats::{FormatError, qcow2_to_raw};

pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|err| panic!("cannot run {program}: {err}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

pub fn utf8(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// `qemu-img create -f <format> -o <options> <path> <size>`; returns the path.
pub fn create(dir: &Path, name: &str, format: &str, options: &str, size: &str) -> PathBuf {
    let path = dir.join(name);
    let mut args = vec!["create", "-q", "-f", format];
    if !options.is_empty() {
        args.extend_from_slice(&["-o", options]);
    }
    args.extend_from_slice(&[utf8(&path), size]);
    run("qemu-img", &args);
    path
}

/// Runs qemu-io commands (`write -P 0x11 0 512`, `write -z ...`) on the image, in order.
pub fn qemu_io(path: &Path, format: &str, commands: &[String]) {
    let mut args = vec!["-f", format];
    for command in commands {
        args.extend_from_slice(&["-c", command]);
    }
    args.push(utf8(path));
    run("qemu-io", &args);
}

/// `qemu-img convert [extra] -f <from> -O <to> src dst`.
pub fn qemu_convert(src: &Path, from: &str, dst: &Path, to: &str, extra: &[&str]) {
    let mut args = vec!["convert"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-f", from, "-O", to, utf8(src), utf8(dst)]);
    run("qemu-img", &args);
}

/// Our qcow2 reader from file to file, without the inspector (the tests of `convert` cover it).
pub fn read_qcow2(src: &Path, dst: &Path) -> Result<u64, FormatError> {
    let input = File::open(src).expect("source opens");
    let mut output = File::create(dst).expect("destination is created");
    qcow2_to_raw(input, &mut output)
}

/// Our qcow2 reader over bytes in memory, into a sink that keeps nothing.
pub fn read_qcow2_bytes(image: &[u8]) -> Result<u64, FormatError> {
    qcow2_to_raw(Cursor::new(image), &mut Discard::default())
}

#[path = "../../../fuzz/fuzz_targets/sink.rs"]
mod sink;
pub use sink::Discard;

/// Asserts that two files have the same length and bytes, comparing a MiB at a time.
pub fn assert_same_file(ours: &Path, reference: &Path) {
    let (mut a, mut b) = (File::open(ours).expect("ours opens"), File::open(reference).expect("reference opens"));
    let (len_a, len_b) = (a.metadata().expect("metadata").len(), b.metadata().expect("metadata").len());
    assert_eq!(len_a, len_b, "{} and {} differ in length", ours.display(), reference.display());
    let (mut buf_a, mut buf_b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut offset = 0u64;
    while offset < len_a {
        let take = (len_a - offset).min(1 << 20) as usize;
        a.read_exact(&mut buf_a[..take]).expect("ours reads");
        b.read_exact(&mut buf_b[..take]).expect("reference reads");
        if buf_a[..take] != buf_b[..take] {
            let at = (0..take).find(|i| buf_a[*i] != buf_b[*i]).unwrap_or(0);
            panic!(
                "{} differs from {} at byte {}: {:#04x} != {:#04x}",
                ours.display(),
                reference.display(),
                offset + at as u64,
                buf_a[at],
                buf_b[at]
            );
        }
        offset += take as u64;
    }
}

/// Bytes the file occupies on disk.
pub fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").blocks() * 512
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("image is readable")
}

pub fn be64(image: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(image[at..at + 8].try_into().expect("8 bytes"))
}

pub fn put_be64(image: &mut [u8], at: usize, value: u64) {
    image[at..at + 8].copy_from_slice(&value.to_be_bytes());
}

pub fn put_be32(image: &mut [u8], at: usize, value: u32) {
    image[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

/// The first L2 entry, in file order, of a qcow2 image: (its byte position, its value), among
/// entries matching `wanted`.
pub fn find_l2_entry(image: &[u8], wanted: impl Fn(u64) -> bool) -> (usize, u64) {
    let cluster = 1usize << u32::from_be_bytes(image[20..24].try_into().expect("4 bytes"));
    let l1_offset = be64(image, 40) as usize;
    let l1_size = u32::from_be_bytes(image[36..40].try_into().expect("4 bytes")) as usize;
    for index in 0..l1_size {
        let l2 = (be64(image, l1_offset + index * 8) & 0x00ff_ffff_ffff_fe00) as usize;
        if l2 == 0 {
            continue;
        }
        for at in (l2..l2 + cluster).step_by(8) {
            let entry = be64(image, at);
            if entry != 0 && wanted(entry) {
                return (at, entry);
            }
        }
    }
    panic!("no matching L2 entry");
}

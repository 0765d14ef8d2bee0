//! Helpers shared by the tests: qemu-img as the oracle, images generated in a
//! temporary directory, and feeding bytes to the inspector in odd-sized chunks.

use std::path::{Path, PathBuf};
use std::process::Command;

use glint_formats::{Inspector, Report};
use serde_json::Value;

/// Chunk sizes that cut every structure at a different place.
const CHUNK_SIZES: [usize; 3] = [4096 + 3, 65536, 1 << 20];

/// Streams up to this size are also fed in 7-byte chunks, and up to [`BYTEWISE_LIMIT`] one
/// byte at a time: tiny chunks are slow in a debug build, and the suite must stay fast.
const SMALL_CHUNK_LIMIT: usize = 4 << 20;
const BYTEWISE_LIMIT: usize = 300 * 1024;

pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|err| panic!("cannot run {program}: {err}"));
    assert!(output.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `qemu-img create -f <format> [options] <path> <size>` in `dir`; returns the path.
pub fn create(dir: &Path, name: &str, format: &str, options: &[&str], size: &str) -> PathBuf {
    let path = dir.join(name);
    let path_str = path.to_str().expect("temporary paths are UTF-8");
    let mut args = vec!["create", "-q", "-f", format];
    args.extend_from_slice(options);
    args.extend_from_slice(&[path_str, size]);
    run("qemu-img", &args);
    path
}

/// Writes a 0xab pattern with qemu-io, through the image format.
pub fn write_pattern(path: &Path, format: &str, offset: u64, len: u64) {
    let command = format!("write -P 0xab {offset} {len}");
    run("qemu-io", &["-f", format, "-c", &command, path.to_str().expect("UTF-8 path")]);
}

/// What `qemu-img info --output=json` says: (format with vpc named vhd, virtual-size).
pub fn qemu_info(path: &Path, format: Option<&str>) -> (String, u64) {
    let path = path.to_str().expect("UTF-8 path");
    let mut args = vec!["info", "--output=json"];
    if let Some(format) = format {
        args.extend_from_slice(&["-f", format]);
    }
    args.push(path);
    let info: Value = serde_json::from_str(&run("qemu-img", &args)).expect("qemu-img prints JSON");
    let name = info["format"].as_str().expect("format field").to_owned();
    let name = if name == "vpc" { "vhd".to_owned() } else { name };
    let size = info["virtual-size"].as_u64().expect("virtual-size field");
    (name, size)
}

/// Feeds `bytes` in chunks of `size`.
pub fn inspect_chunked(bytes: &[u8], size: usize) -> Report {
    let mut inspector = Inspector::new();
    for chunk in bytes.chunks(size) {
        inspector.feed(chunk);
    }
    inspector.finish()
}

pub fn inspect_bytes(bytes: &[u8]) -> Report {
    inspect_chunked(bytes, 64 * 1024)
}

/// Inspects `bytes` with every chunk size (and byte by byte when small), asserts that all
/// reports agree, and returns it.
pub fn inspect_streaming(bytes: &[u8]) -> Report {
    let reference = inspect_chunked(bytes, bytes.len().max(1));
    let mut sizes = CHUNK_SIZES.to_vec();
    if bytes.len() <= SMALL_CHUNK_LIMIT {
        sizes.push(7);
    }
    if bytes.len() <= BYTEWISE_LIMIT {
        sizes.push(1);
    }
    for size in sizes {
        assert_eq!(inspect_chunked(bytes, size), reference, "chunks of {size} bytes changed the report");
    }
    // inspect_file skips what no inspector asks for: it must come to the same report.
    let dir = tempdir();
    let path = dir.path().join("image");
    std::fs::write(&path, bytes).expect("temporary file is writable");
    assert_eq!(glint_formats::inspect_file(&path).expect("readable"), reference, "inspect_file changed the report");
    reference
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("generated image is readable")
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// Overwrites `bytes` at `offset` of `image`.
pub fn patch(image: &mut [u8], offset: usize, bytes: &[u8]) {
    image.get_mut(offset..offset + bytes.len()).expect("patch lies inside the image").copy_from_slice(bytes);
}

/// Asserts that `check` failed and that its reason mentions `needle`.
pub fn assert_fails(report: &Report, check: &str, needle: &str) {
    let reason = report.failures.get(check).unwrap_or_else(|| panic!("check {check} did not fail: {report:?}"));
    assert!(
        reason.to_lowercase().contains(&needle.to_lowercase()),
        "reason for {check} is {reason:?}, expected it to mention {needle:?}"
    );
    assert!(!report.is_safe());
}

/// A hand-made ISO 9660 image: system area, primary volume descriptor, terminator.
pub fn iso_image(blocks: u32) -> Vec<u8> {
    let mut image = vec![0u8; 0x8000 + 2 * 2048];
    let pvd = 0x8000;
    image[pvd] = 1;
    patch(&mut image, pvd + 1, b"CD001");
    image[pvd + 6] = 1;
    patch(&mut image, pvd + 80, &blocks.to_le_bytes());
    patch(&mut image, pvd + 84, &blocks.to_be_bytes());
    patch(&mut image, pvd + 128, &2048u16.to_le_bytes());
    patch(&mut image, pvd + 130, &2048u16.to_be_bytes());
    let terminator = 0x8800;
    image[terminator] = 255;
    patch(&mut image, terminator + 1, b"CD001");
    image[terminator + 6] = 1;
    image.resize(blocks as usize * 2048, 0);
    image
}

/// An MBR with the given partition entries (boot flag, type, start LBA) and the 55 AA signature.
pub fn mbr(entries: &[(u8, u8, u32)]) -> [u8; 512] {
    let mut sector = [0u8; 512];
    for (index, (boot, kind, start)) in entries.iter().enumerate() {
        let entry = 446 + index * 16;
        sector[entry] = *boot;
        sector[entry + 1..entry + 4].copy_from_slice(&[0x00, 0x02, 0x00]);
        sector[entry + 4] = *kind;
        sector[entry + 8..entry + 12].copy_from_slice(&start.to_le_bytes());
        sector[entry + 12..entry + 16].copy_from_slice(&2048u32.to_le_bytes());
    }
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector
}

/// Offset of the metadata region of a qemu-made VHDX, read from its region table.
pub fn vhdx_metadata_offset(image: &[u8]) -> usize {
    let table = &image[0x30000..0x40000];
    let count = u32::from_le_bytes(table[8..12].try_into().expect("4 bytes")) as usize;
    let metadata_guid =
        [0x06, 0xA2, 0x7C, 0x8B, 0x90, 0x47, 0x9A, 0x4B, 0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E];
    (0..count)
        .map(|index| &table[16 + index * 32..48 + index * 32])
        .find(|entry| entry[..16] == metadata_guid)
        .map(|entry| u64::from_le_bytes(entry[16..24].try_into().expect("8 bytes")) as usize)
        .expect("qemu writes a metadata region")
}

/// End of the Virtual Disk Size item of a qemu-made VHDX: the last byte the inspector needs.
pub fn vhdx_disk_size_end(image: &[u8]) -> usize {
    let metadata = vhdx_metadata_offset(image);
    let count = u16::from_le_bytes(image[metadata + 10..metadata + 12].try_into().expect("2 bytes")) as usize;
    let size_guid = [0x24, 0x42, 0xA5, 0x2F, 0x1B, 0xCD, 0x76, 0x48, 0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8];
    (0..count)
        .map(|index| &image[metadata + 32 + index * 32..metadata + 64 + index * 32])
        .find(|entry| entry[..16] == size_guid)
        .map(|entry| metadata + u32::from_le_bytes(entry[16..20].try_into().expect("4 bytes")) as usize + 8)
        .expect("qemu writes a disk size item")
}

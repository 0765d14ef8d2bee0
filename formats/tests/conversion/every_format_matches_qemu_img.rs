//! vmdk (monolithicSparse, streamOptimized), vhd (dynamic, fixed), vhdx, vdi (dynamic, static):
//! converted by `convert` to raw they are byte-identical to `qemu-img convert -O raw` of the same
//! image (also when streamed by `stream_raw`), and converted to qcow2 (written by `convert`,
//! or streamed by `stream_qcow2`) they pass `qemu-img check` and `qemu-img compare`.

use std::path::{Path, PathBuf};

use glint_formats::{Format, RawStream, convert, stream_qcow2, stream_raw};

use crate::common::{allocated, assert_same_file, create, qemu_convert, qemu_io, read, run, tempdir, utf8};

/// A streamed raw disk, gathered in memory.
#[derive(Default)]
struct Gathered(Vec<u8>);

impl RawStream for Gathered {
    fn data(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn zeros(&mut self, len: u64) -> std::io::Result<()> {
        self.0.resize(self.0.len() + usize::try_from(len).expect("fits"), 0);
        Ok(())
    }
}

/// 10 MiB + 1.5 KiB: a whole number of sectors, of no block or grain size.
const SIZE: u64 = 10 * 1024 * 1024 + 1536;

/// Patterns straddling grains and blocks, a zero area over data, unallocated gaps, the last
/// bytes of the disk.
fn guest_writes() -> Vec<String> {
    vec![
        "write -P 0x11 0 1".to_owned(),
        "write -P 0x22 777 100000".to_owned(),
        format!("write -P 0x33 {} {}", 2 * 1024 * 1024 - 4096, 1024 * 1024 + 8192),
        format!("write -P 0x44 {} {}", 5 * 1024 * 1024 + 5, 3 * 1024 * 1024),
        format!("write -z {} {}", 6 * 1024 * 1024, 512 * 1024),
        format!("write -P 0x66 {} 1000", SIZE - 1000),
    ]
}

/// A qcow2 image holding [`guest_writes`], the source every format is made from.
fn base(dir: &Path) -> PathBuf {
    let image = create(dir, "base.qcow2", "qcow2", "", &SIZE.to_string());
    qemu_io(&image, "qcow2", &guest_writes());
    image
}

/// `image` in qemu's format `qemu_format` converts like qemu-img does, to raw and to qcow2.
fn assert_converts(image: &Path, qemu_format: &str, format: Format, label: &str) {
    let dir = image.parent().expect("image has a directory");
    let reference = dir.join(format!("{label}.reference.raw"));
    qemu_convert(image, qemu_format, &reference, "raw", &[]);
    let raw = dir.join(format!("{label}.raw"));
    let report = convert(image, format, &raw, Format::Raw).unwrap_or_else(|err| panic!("{label}: {err}"));
    assert_same_file(&raw, &reference);
    assert_eq!(report.virtual_size, std::fs::metadata(&reference).expect("metadata").len(), "{label}");
    assert!(allocated(&raw) < report.virtual_size, "{label}: the raw output is not sparse");
    let mut streamed = Gathered::default();
    let streamed_size = stream_raw(image, format, &mut streamed).unwrap_or_else(|err| panic!("{label}: {err}"));
    assert_eq!(streamed_size, report.virtual_size, "{label}");
    assert!(streamed.0 == read(&reference), "{label}: the streamed raw disk differs from qemu-img's");

    let qcow2 = dir.join(format!("{label}.qcow2"));
    convert(image, format, &qcow2, Format::Qcow2).unwrap_or_else(|err| panic!("{label}: {err}"));
    run("qemu-img", &["check", "-q", "-f", "qcow2", utf8(&qcow2)]);
    let compare = run("qemu-img", &["compare", "-f", qemu_format, "-F", "qcow2", utf8(image), utf8(&qcow2)]);
    assert!(compare.contains("Images are identical"), "{label}: {compare}");
    assert_streams_qcow2(image, qemu_format, format, label);
    println!("{label}: identical to qemu-img ({} bytes)", report.virtual_size);
}

/// `image` streamed as qcow2 by `stream_qcow2` is a clean qcow2 image of the same disk, no
/// larger than the one `convert` writes, whose zero clusters are left out.
fn assert_streams_qcow2(image: &Path, qemu_format: &str, format: Format, label: &str) {
    let dir = image.parent().expect("image has a directory");
    let mut streamed = Gathered::default();
    let (virtual_size, sent) =
        stream_qcow2(image, format, &mut streamed).unwrap_or_else(|err| panic!("{label}: {err}"));
    assert_eq!(sent, streamed.0.len() as u64, "{label}");
    let path = dir.join(format!("{label}.streamed.qcow2"));
    std::fs::write(&path, &streamed.0).expect("write");
    run("qemu-img", &["check", "-q", "-f", "qcow2", utf8(&path)]);
    let compare = run("qemu-img", &["compare", "-f", qemu_format, "-F", "qcow2", utf8(image), utf8(&path)]);
    assert!(compare.contains("Images are identical"), "{label}: {compare}");
    let written = dir.join(format!("{label}.qcow2"));
    let written_len = std::fs::metadata(&written).expect("metadata").len();
    assert!(sent <= written_len, "{label}: streamed {sent} bytes, convert wrote {written_len}");
    assert_eq!(virtual_size % 512, 0, "{label}");
}

/// Converts the base image with `qemu-img convert -O <qemu_format> -o <options>`, then checks it.
fn assert_converted_image_converts(qemu_format: &str, options: &str, format: Format) {
    let dir = tempdir();
    let source = base(dir.path());
    let label = format!("{qemu_format}-{}", options.replace(['=', ','], "_"));
    let image = dir.path().join(format!("{label}.img"));
    let extra: Vec<&str> = if options.is_empty() { vec![] } else { vec!["-o", options] };
    qemu_convert(&source, "qcow2", &image, qemu_format, &extra);
    assert_converts(&image, qemu_format, format, &label);
}

#[test]
fn vmdk_monolithic_sparse_matches_qemu_img() {
    assert_converted_image_converts("vmdk", "subformat=monolithicSparse", Format::Vmdk);
}

#[test]
fn vmdk_stream_optimized_matches_qemu_img() {
    assert_converted_image_converts("vmdk", "subformat=streamOptimized", Format::Vmdk);
}

#[test]
fn vmdk_with_zero_grains_written_by_qemu_io_matches_qemu_img() {
    let dir = tempdir();
    let image = create(dir.path(), "zeroed.vmdk", "vmdk", "zeroed_grain=on", &SIZE.to_string());
    let mut writes = guest_writes();
    writes.push("write -z 0 1M".to_owned());
    qemu_io(&image, "vmdk", &writes);
    assert_converts(&image, "vmdk", Format::Vmdk, "zeroed");
}

#[test]
fn vhd_dynamic_and_fixed_match_qemu_img() {
    assert_converted_image_converts("vpc", "subformat=dynamic", Format::Vhd);
    assert_converted_image_converts("vpc", "subformat=fixed", Format::Vhd);
    assert_converted_image_converts("vpc", "subformat=dynamic,force_size=on", Format::Vhd);
}

#[test]
fn vhd_written_by_qemu_io_matches_qemu_img() {
    let dir = tempdir();
    let image = create(dir.path(), "written.vhd", "vpc", "subformat=dynamic", "20M");
    qemu_io(&image, "vpc", &guest_writes());
    assert_converts(&image, "vpc", Format::Vhd, "written-vhd");
}

#[test]
fn vhdx_matches_qemu_img() {
    assert_converted_image_converts("vhdx", "", Format::Vhdx);
    assert_converted_image_converts("vhdx", "block_size=1M", Format::Vhdx);
    assert_converted_image_converts("vhdx", "block_size=64M,subformat=fixed", Format::Vhdx);
}

#[test]
fn vhdx_written_by_qemu_io_matches_qemu_img() {
    let dir = tempdir();
    let image = create(dir.path(), "written.vhdx", "vhdx", "block_size=2M,log_size=1M", &SIZE.to_string());
    qemu_io(&image, "vhdx", &guest_writes());
    assert_converts(&image, "vhdx", Format::Vhdx, "written-vhdx");
}

#[test]
fn vdi_dynamic_and_static_match_qemu_img() {
    assert_converted_image_converts("vdi", "", Format::Vdi);
    assert_converted_image_converts("vdi", "static=on", Format::Vdi);
}

#[test]
fn vdi_written_by_qemu_io_matches_qemu_img() {
    let dir = tempdir();
    let image = create(dir.path(), "written.vdi", "vdi", "", &SIZE.to_string());
    qemu_io(&image, "vdi", &guest_writes());
    assert_converts(&image, "vdi", Format::Vdi, "written-vdi");
}

#[test]
fn empty_images_of_every_format_convert() {
    let dir = tempdir();
    for (qemu_format, options, format) in [
        ("vmdk", "", Format::Vmdk),
        ("vmdk", "subformat=streamOptimized", Format::Vmdk),
        ("vpc", "", Format::Vhd),
        ("vhdx", "", Format::Vhdx),
        ("vdi", "", Format::Vdi),
    ] {
        let label = format!("empty-{qemu_format}-{}", options.replace('=', "_"));
        let image = create(dir.path(), &format!("{label}.img"), qemu_format, options, "3M");
        assert_converts(&image, qemu_format, format, &label);
    }
}

#[test]
fn vmdk_stream_optimized_with_a_footer_matches_qemu_img() {
    // VMware writes the grain directory's place in a footer and GD_AT_END in the header; qemu
    // writes it into the header. Make the footer form from qemu's: marker, header, end marker.
    let dir = tempdir();
    let source = base(dir.path());
    let plain = dir.path().join("plain.vmdk");
    qemu_convert(&source, "qcow2", &plain, "vmdk", &["-o", "subformat=streamOptimized"]);
    let mut image = std::fs::read(&plain).expect("read");
    assert_eq!(image.len() % 512, 0);
    let header = image[..512].to_vec();
    let mut marker = vec![0u8; 512];
    marker[12..16].copy_from_slice(&3u32.to_le_bytes());
    image.extend_from_slice(&marker);
    image.extend_from_slice(&header);
    image.extend_from_slice(&[0u8; 512]);
    image[56..64].copy_from_slice(&u64::MAX.to_le_bytes());
    let footed = dir.path().join("footed.vmdk");
    std::fs::write(&footed, image).expect("write");
    assert_converts(&footed, "vmdk", Format::Vmdk, "footed");
}

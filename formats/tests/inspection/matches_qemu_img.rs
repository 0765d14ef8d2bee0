//! Every format qemu-img can generate is detected with qemu-img's format name and virtual size,
//! whatever the chunk sizes of the stream.

use glint_formats::{Format, inspect_file};

use crate::common::{create, inspect_streaming, iso_image, mbr, patch, qemu_info, read, tempdir, write_pattern};

const SIZES: [&str; 3] = ["1M", "10486272", "1G"];

/// Generates `format` images of every size, writes data into them, and compares the inspector
/// with `qemu-img info` (run with `-f oracle_format` when qemu-img's probe cannot tell).
fn compare(format: &str, options: &[&str], sizes: &[&str], oracle_format: Option<&str>) {
    let dir = tempdir();
    for (index, size) in sizes.iter().enumerate() {
        let path = create(dir.path(), &format!("image{index}"), format, options, size);
        write_pattern(&path, format, 0, 1 << 20);
        let (expected_format, expected_size) = qemu_info(&path, oracle_format);
        let report = inspect_streaming(&read(&path));
        println!(
            "{format} {options:?} {size}: qemu-img {expected_format} {expected_size}, inspector {:?} {:?}",
            report.format, report.virtual_size
        );
        assert_eq!(report.format.map(Format::as_str), Some(expected_format.as_str()), "{format} {options:?} {size}");
        assert_eq!(report.virtual_size, Some(expected_size), "{format} {options:?} {size}");
        assert!(report.is_safe(), "{format} {options:?} {size}: {:?}", report.failures);
        let from_file = inspect_file(&path).expect("generated image is readable");
        assert_eq!(from_file, report, "inspect_file differs from the stream");
    }
}

#[test]
fn qcow2_v2_matches_qemu_img() {
    compare("qcow2", &["-o", "compat=0.10"], &SIZES, None);
}

#[test]
fn qcow2_v3_matches_qemu_img() {
    compare("qcow2", &["-o", "compat=1.1"], &SIZES, None);
}

#[test]
fn qcow2_with_small_and_large_clusters_matches_qemu_img() {
    compare("qcow2", &["-o", "cluster_size=512"], &["1M", "10486272"], None);
    compare("qcow2", &["-o", "cluster_size=2M"], &["1M", "10486272"], None);
}

#[test]
fn qcow2_with_preallocated_metadata_and_wide_refcounts_matches_qemu_img() {
    compare("qcow2", &["-o", "preallocation=metadata"], &["10486272"], None);
    compare("qcow2", &["-o", "refcount_bits=64"], &["10486272"], None);
}

#[test]
fn qcow2_with_internal_snapshots_matches_qemu_img() {
    let dir = tempdir();
    let path = create(dir.path(), "snapshots.qcow2", "qcow2", &[], "10M");
    write_pattern(&path, "qcow2", 0, 1 << 20);
    let path_str = path.to_str().expect("UTF-8 path");
    crate::common::run("qemu-img", &["snapshot", "-c", "first", path_str]);
    write_pattern(&path, "qcow2", 1 << 20, 1 << 20);
    crate::common::run("qemu-img", &["snapshot", "-c", "second", path_str]);
    let report = inspect_streaming(&read(&path));
    assert_eq!(report.virtual_size, Some(qemu_info(&path, None).1));
    assert!(report.is_safe(), "{:?}", report.failures);
}

#[test]
fn compressed_qcow2_matches_qemu_img() {
    let dir = tempdir();
    let raw = create(dir.path(), "source.raw", "raw", &[], "3M");
    write_pattern(&raw, "raw", 0, 1 << 20);
    let compressed = dir.path().join("compressed.qcow2");
    crate::common::run(
        "qemu-img",
        &["convert", "-c", "-O", "qcow2", raw.to_str().expect("UTF-8 path"), compressed.to_str().expect("UTF-8 path")],
    );
    let report = inspect_streaming(&read(&compressed));
    assert_eq!(report.format, Some(Format::Qcow2));
    assert_eq!(report.virtual_size, Some(qemu_info(&compressed, None).1));
    assert!(report.is_safe(), "{:?}", report.failures);
}

#[test]
fn vmdk_monolithic_sparse_matches_qemu_img() {
    compare("vmdk", &["-o", "subformat=monolithicSparse"], &SIZES, None);
}

#[test]
fn vmdk_stream_optimized_matches_qemu_img() {
    compare("vmdk", &["-o", "subformat=streamOptimized"], &SIZES, None);
}

#[test]
fn dynamic_vhd_matches_qemu_img() {
    compare("vpc", &[], &SIZES, None);
}

/// qemu-img's probe only looks at the start of a file, so it calls a fixed VHD raw; read as
/// vpc, it agrees with what the inspector finds in the trailing footer.
#[test]
fn fixed_vhd_is_found_by_its_trailing_footer() {
    compare("vpc", &["-o", "subformat=fixed"], &["1M", "10486272"], Some("vpc"));
    let dir = tempdir();
    let path = create(dir.path(), "fixed.vhd", "vpc", &["-o", "subformat=fixed"], "1M");
    assert_eq!(qemu_info(&path, None).0, "raw", "qemu-img's probe changed");
}

#[test]
fn fixed_vhd_holding_a_partitioned_disk_is_vhd() {
    let dir = tempdir();
    let path = create(dir.path(), "fixed.vhd", "vpc", &["-o", "subformat=fixed"], "1M");
    let mut image = read(&path);
    patch(&mut image, 0, &mbr(&[(0x80, 0x83, 2048)]));
    let report = inspect_streaming(&image);
    assert_eq!(report.format, Some(Format::Vhd));
    assert_eq!(report.matched, vec![Format::Vhd, Format::Gpt]);
    assert!(report.is_safe(), "{:?}", report.failures);
}

#[test]
fn vhdx_matches_qemu_img() {
    compare("vhdx", &[], &SIZES, None);
}

#[test]
fn vdi_matches_qemu_img() {
    compare("vdi", &[], &SIZES, None);
}

#[test]
fn raw_matches_qemu_img() {
    compare("raw", &[], &["1M", "10486272"], None);
}

#[test]
fn qed_is_recognised() {
    let dir = tempdir();
    let path = create(dir.path(), "image.qed", "qed", &[], "1M");
    assert_eq!(qemu_info(&path, None).0, "qed");
    let report = inspect_streaming(&read(&path));
    assert_eq!(report.format, Some(Format::Qed));
}

#[test]
fn luks_matches_qemu_img() {
    let dir = tempdir();
    let path = create(
        dir.path(),
        "image.luks",
        "luks",
        &["--object", "secret,id=sec0,data=secret", "-o", "key-secret=sec0,iter-time=10"],
        "1M",
    );
    let (format, size) = qemu_info(&path, None);
    let report = inspect_streaming(&read(&path));
    assert_eq!(format, "luks");
    assert_eq!(report.format, Some(Format::Luks));
    assert_eq!(report.virtual_size, Some(size));
    assert!(report.is_safe(), "{:?}", report.failures);
}

/// qemu-img reads an ISO as raw; Glance and the inspector know it as iso, sized by its primary
/// volume descriptor.
#[test]
fn iso_is_sized_by_its_volume_descriptor() {
    let image = iso_image(40);
    let report = inspect_streaming(&image);
    assert_eq!(report.format, Some(Format::Iso));
    assert_eq!(report.virtual_size, Some(40 * 2048));
    assert!(report.is_safe(), "{:?}", report.failures);
}

#[test]
fn hybrid_iso_with_an_mbr_is_iso() {
    let mut image = iso_image(40);
    patch(&mut image, 0, &mbr(&[(0x80, 0x17, 0)]));
    let report = inspect_streaming(&image);
    assert_eq!(report.format, Some(Format::Iso));
    assert_eq!(report.matched, vec![Format::Iso, Format::Gpt]);
}

#[test]
fn partitioned_raw_disk_is_gpt_sized_by_its_bytes() {
    let mut image = vec![0u8; 1 << 20];
    patch(&mut image, 0, &mbr(&[(0x00, 0xEE, 1)]));
    let report = inspect_streaming(&image);
    assert_eq!(report.format, Some(Format::Gpt));
    assert_eq!(report.virtual_size, Some(1 << 20));
    assert!(report.is_safe(), "{:?}", report.failures);
}

#[test]
fn fat_boot_sector_is_not_a_partition_table() {
    let mut image = vec![0u8; 4096];
    patch(&mut image, 0, &mbr(&[]));
    image[0x10] = 2;
    image[0x15] = 0xF8;
    let report = inspect_streaming(&image);
    assert_eq!(report.format, Some(Format::Raw));
}

#[test]
fn empty_stream_is_raw_of_size_zero() {
    let report = inspect_streaming(&[]);
    assert_eq!(report.format, Some(Format::Raw));
    assert_eq!(report.virtual_size, Some(0));
    assert_eq!(report.bytes_read, 0);
}

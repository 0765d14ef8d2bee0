//! Hostile and unsupported qcow2 images: each yields an error that says what was found, never
//! a panic nor a read outside the image (the reader only sees the bytes it is given).

use glint_formats::{Format, FormatError, convert};

use crate::common::{
    be64, create, find_l2_entry, put_be32, put_be64, qemu_convert, qemu_io, read, read_qcow2_bytes, tempdir,
};

const COMPRESSED: u64 = 1 << 62;

/// A 4 MiB qcow2 image with data in its first clusters (`options` for qemu-img create).
fn image_with_data(options: &str) -> Vec<u8> {
    let dir = tempdir();
    let image = create(dir.path(), "image.qcow2", "qcow2", options, "4M");
    qemu_io(&image, "qcow2", &["write -P 0x5a 0 300000".to_owned()]);
    read(&image)
}

fn compressed_image() -> Vec<u8> {
    let dir = tempdir();
    let image = create(dir.path(), "plain.qcow2", "qcow2", "", "4M");
    qemu_io(&image, "qcow2", &["write -P 0x5a 0 300000".to_owned()]);
    let compressed = dir.path().join("compressed.qcow2");
    qemu_convert(&image, "qcow2", &compressed, "qcow2", &["-c"]);
    read(&compressed)
}

fn assert_refused(image: &[u8], needle: &str) -> FormatError {
    let err = read_qcow2_bytes(image).expect_err("hostile image is refused");
    let message = err.to_string();
    assert!(message.to_lowercase().contains(&needle.to_lowercase()), "error {message:?} does not mention {needle:?}");
    println!("refused: {message}");
    err
}

/// Runs `convert` on `image` and asserts the refusal mentions `needle` and leaves no output.
fn assert_convert_refuses(image: &[u8], needle: &str) {
    let dir = tempdir();
    let src = dir.path().join("hostile.qcow2");
    std::fs::write(&src, image).expect("write image");
    let dst = dir.path().join("out.raw");
    let err = convert(&src, Format::Qcow2, &dst, Format::Raw).expect_err("refused");
    assert!(err.to_string().to_lowercase().contains(&needle.to_lowercase()), "error {err} does not mention {needle:?}");
    assert!(!dst.exists(), "a refused conversion leaves no output");
}

#[test]
fn l1_table_past_the_end_is_refused() {
    let mut image = image_with_data("");
    put_be64(&mut image, 40, 0x1000_0000);
    assert_refused(&image, "L1 table at offset 0x10000000");
    assert_convert_refuses(&image, "L1 table");
}

#[test]
fn l1_table_too_small_for_the_virtual_size_is_refused() {
    let mut image = image_with_data("");
    put_be64(&mut image, 24, 1 << 50);
    assert_refused(&image, "cannot map a virtual size");
    put_be64(&mut image, 24, u64::MAX);
    assert_refused(&image, "virtual size");
}

#[test]
fn l2_table_past_the_end_misaligned_or_in_the_header_is_refused() {
    let image = image_with_data("");
    let l1 = be64(&image, 40) as usize;
    for (entry, needle) in
        [(0x7fff_0000u64, "past the end"), (0x1_0200, "not aligned"), ((1 << 55) | 0x7fff_0000, "past the end")]
    {
        let mut image = image.clone();
        put_be64(&mut image, l1, entry | (1 << 63));
        assert_refused(&image, needle);
        assert_convert_refuses(&image, "L2 table");
    }
}

#[test]
fn data_cluster_past_the_end_or_misaligned_is_refused() {
    let image = image_with_data("");
    let (at, _) = find_l2_entry(&image, |entry| entry & COMPRESSED == 0);
    for (entry, needle) in
        [(0x7fff_0000u64, "past the end"), (0x3_0200, "not aligned"), (0x00ff_ffff_ffff_0000, "past the end")]
    {
        let mut image = image.clone();
        put_be64(&mut image, at, entry | (1 << 63));
        assert_refused(&image, needle);
        assert_convert_refuses(&image, "data cluster");
    }
}

#[test]
fn compressed_cluster_with_absurd_descriptor_is_refused() {
    let image = compressed_image();
    let (at, entry) = find_l2_entry(&image, |entry| entry & COMPRESSED != 0);
    // 64 KiB clusters: offset in bits 0..=53, additional sectors in bits 54..=61.
    let len = image.len() as u64;
    let sectors = 0xffu64 << 54;
    for (patched, needle) in [
        (COMPRESSED | sectors | (len - 10), "past the end"),
        (COMPRESSED | (len + 4096), "past the end"),
        (COMPRESSED | 100, "overlaps the header"),
        (entry | sectors, "past the end"),
    ] {
        let mut image = image.clone();
        put_be64(&mut image, at, patched);
        assert_refused(&image, needle);
        assert_convert_refuses(&image, "compressed cluster");
    }
}

#[test]
fn compressed_cluster_that_does_not_inflate_is_refused() {
    let mut image = compressed_image();
    let (_, entry) = find_l2_entry(&image, |entry| entry & COMPRESSED != 0);
    let offset = (entry & ((1 << 54) - 1)) as usize;
    image[offset..offset + 64].fill(0xff);
    assert_refused(&image, "does not inflate");
    assert_convert_refuses(&image, "does not inflate");
}

#[test]
fn cluster_bits_out_of_range_are_refused() {
    for bits in [0, 8, 22, 40, u32::MAX] {
        let mut image = image_with_data("");
        put_be32(&mut image, 20, bits);
        assert_refused(&image, "cluster_bits");
        assert_convert_refuses(&image, "cluster_bits");
    }
}

#[test]
fn encrypted_backed_and_featured_images_are_refused() {
    let mut encrypted = image_with_data("");
    put_be32(&mut encrypted, 32, 1);
    assert_refused(&encrypted, "encrypted");
    assert_convert_refuses(&encrypted, "encrypted");

    let mut backed = image_with_data("");
    put_be64(&mut backed, 8, 0x300);
    put_be32(&mut backed, 16, 8);
    assert_refused(&backed, "backing file");
    assert_convert_refuses(&backed, "backing file");

    let mut extended_l2 = image_with_data("compat=1.1");
    extended_l2[0x4F] |= 0x10;
    assert_refused(&extended_l2, "incompatible feature bits 0x10");

    let mut data_file = image_with_data("compat=1.1");
    data_file[0x4F] |= 0x04;
    assert_refused(&data_file, "external data file");

    let mut version = image_with_data("");
    put_be32(&mut version, 4, 4);
    assert_refused(&version, "version 4");
}

#[test]
fn zstd_cluster_that_does_not_decompress_is_refused() {
    let dir = tempdir();
    let plain = create(dir.path(), "plain.qcow2", "qcow2", "", "4M");
    qemu_io(&plain, "qcow2", &["write -P 0x5a 0 300000".to_owned()]);
    let zstd = dir.path().join("zstd.qcow2");
    qemu_convert(&plain, "qcow2", &zstd, "qcow2", &["-c", "-o", "compression_type=zstd"]);
    let mut image = read(&zstd);
    let (_, entry) = find_l2_entry(&image, |entry| entry & COMPRESSED != 0);
    let offset = (entry & ((1 << 54) - 1)) as usize;
    image[offset..offset + 16].fill(0xff);
    assert_refused(&image, "does not decompress");
    assert_convert_refuses(&image, "does not decompress");
}

#[test]
fn truncated_images_never_panic() {
    for image in [image_with_data("cluster_size=512"), compressed_image()] {
        let mut refused = 0;
        let step = (image.len() / 400).max(1);
        for len in (0..image.len()).step_by(step).chain([1, 71, 103, 104, 111, 511]) {
            if read_qcow2_bytes(&image[..len]).is_err() {
                refused += 1;
            }
        }
        assert!(refused > 0);
        for len in 0..512 {
            read_qcow2_bytes(&image[..len]).expect_err("no whole header");
        }
    }
}

#[test]
fn not_qcow2_is_refused() {
    assert_refused(&[0u8; 4096], "magic");
    assert_refused(b"QFI", "magic");
    assert_refused(b"QFI\xfb\0\0\0\x03", "truncated");
}

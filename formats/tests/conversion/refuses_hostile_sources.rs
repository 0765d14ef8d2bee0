//! Hostile vmdk, vhd, vhdx and vdi images: tables past the end of the file, tables or blocks
//! that overlap, grain directories that loop, huge sizes, a vhdx log to replay. Each is refused
//! by the reader with an error that says what was found, and by `convert` without output.

use glint_formats::{Format, convert, to_raw};

use crate::common::{Discard, create, qemu_convert, qemu_io, read, tempdir};

fn le32(image: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(image[at..at + 4].try_into().expect("4 bytes"))
}

fn le64(image: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(image[at..at + 8].try_into().expect("8 bytes"))
}

fn be32(image: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(image[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(image: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(image[at..at + 8].try_into().expect("8 bytes"))
}

/// An image in `qemu_format` with data in its first blocks (several grains, blocks, tables).
fn image(qemu_format: &str, options: &str) -> Vec<u8> {
    let dir = tempdir();
    let plain = create(dir.path(), "plain.qcow2", "qcow2", "", "64M");
    qemu_io(
        &plain,
        "qcow2",
        &["write -P 0x5a 0 5M".to_owned(), "write -P 0x6b 40M 1M".to_owned(), "write -P 0x7c 63M 1M".to_owned()],
    );
    let converted = dir.path().join("image");
    let extra: Vec<&str> = if options.is_empty() { vec![] } else { vec!["-o", options] };
    qemu_convert(&plain, "qcow2", &converted, qemu_format, &extra);
    read(&converted)
}

/// The reader and `convert` both refuse `image` with a message containing `needle`.
fn assert_refused(image: &[u8], format: Format, needle: &str) {
    let err = to_raw(format, std::io::Cursor::new(image), &mut Discard::default()).expect_err("refused");
    let message = err.to_string();
    assert!(message.to_lowercase().contains(&needle.to_lowercase()), "{format}: {message:?} lacks {needle:?}");
    println!("refused: {message}");
    let dir = tempdir();
    let src = dir.path().join("hostile");
    std::fs::write(&src, image).expect("write");
    let dst = dir.path().join("out.raw");
    convert(&src, format, &dst, Format::Raw).expect_err("convert refuses");
    assert!(!dst.exists(), "a refused conversion leaves no output");
}

#[test]
fn vmdk_grain_tables_past_the_end_looping_or_shared_are_refused() {
    let image = image("vmdk", "subformat=monolithicSparse");
    let gd = le64(&image, 56) as usize * 512;
    let first_gt = le32(&image, gd);

    let mut past = image.clone();
    past[gd..gd + 4].copy_from_slice(&0x0fff_ffffu32.to_le_bytes());
    assert_refused(&past, Format::Vmdk, "past the end");

    let mut looping = image.clone();
    looping[gd..gd + 4].copy_from_slice(&((gd / 512) as u32).to_le_bytes());
    assert_refused(&looping, Format::Vmdk, "overlaps");

    let mut shared = image.clone();
    shared[gd + 4..gd + 8].copy_from_slice(&first_gt.to_le_bytes());
    assert_refused(&shared, Format::Vmdk, "overlaps");

    let gt = first_gt as usize * 512;
    let mut grain_on_table = image.clone();
    grain_on_table[gt..gt + 4].copy_from_slice(&first_gt.to_le_bytes());
    assert_refused(&grain_on_table, Format::Vmdk, "overlaps the grain table");

    let mut grain_past = image.clone();
    grain_past[gt..gt + 4].copy_from_slice(&0x0fff_ffffu32.to_le_bytes());
    assert_refused(&grain_past, Format::Vmdk, "past the end");
}

#[test]
fn vmdk_huge_capacities_and_bad_compressed_grains_are_refused() {
    let mut huge = image("vmdk", "subformat=monolithicSparse");
    huge[12..20].copy_from_slice(&(1u64 << 62).to_le_bytes());
    assert_refused(&huge, Format::Vmdk, "capacity");

    // qemu writes the grain directory's place into the header at byte 0, with no footer.
    let stream = image("vmdk", "subformat=streamOptimized");
    let gd = le64(&stream, 56) as usize * 512;
    let gt = le32(&stream, gd) as usize * 512;
    let grain = le32(&stream, gt) as usize * 512;
    let mut bad_size = stream.clone();
    bad_size[grain + 8..grain + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_refused(&bad_size, Format::Vmdk, "compressed size");
    let mut corrupt = stream.clone();
    corrupt[grain + 12..grain + 40].fill(0xff);
    assert_refused(&corrupt, Format::Vmdk, "does not inflate");
    let mut no_footer = stream;
    no_footer[56..64].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_refused(&no_footer, Format::Vmdk, "footer");
}

#[test]
fn vhd_blocks_past_the_end_or_shared_are_refused() {
    let image = image("vpc", "subformat=dynamic");
    let header = be64(&image, 16) as usize;
    let bat = be64(&image, header + 16) as usize;
    let first = be32(&image, bat);

    let mut past = image.clone();
    past[bat..bat + 4].copy_from_slice(&0x7fff_fff0u32.to_be_bytes());
    assert_refused(&past, Format::Vhd, "past the end");

    let mut shared = image.clone();
    shared[bat + 4..bat + 8].copy_from_slice(&first.to_be_bytes());
    assert_refused(&shared, Format::Vhd, "overlaps");

    let mut on_header = image.clone();
    on_header[bat..bat + 4].copy_from_slice(&((header / 512) as u32).to_be_bytes());
    assert_refused(&on_header, Format::Vhd, "overlaps");

    let mut block_size = image;
    block_size[header + 32..header + 36].copy_from_slice(&3u32.to_be_bytes());
    assert_refused(&block_size, Format::Vhd, "block size");
}

/// CRC-32C, for patching VHDX headers.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// The VHDX BAT's file offset, from the region table.
fn vhdx_bat(image: &[u8]) -> usize {
    const BAT: [u8; 16] =
        [0x66, 0x77, 0xC2, 0x2D, 0x23, 0xF6, 0x00, 0x42, 0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08];
    let table = 192 * 1024;
    (0..le32(image, table + 8) as usize)
        .map(|index| table + 16 + index * 32)
        .find(|entry| image[*entry..*entry + 16] == BAT)
        .map(|entry| le64(image, entry + 16) as usize)
        .expect("a BAT region")
}

#[test]
fn vhdx_bat_entries_past_the_end_shared_or_partial_are_refused() {
    let image = image("vhdx", "block_size=1M");
    let bat = vhdx_bat(&image);
    let first = le64(&image, bat);

    let mut past = image.clone();
    past[bat..bat + 8].copy_from_slice(&((1u64 << 40) | 6).to_le_bytes());
    assert_refused(&past, Format::Vhdx, "past the end");

    let mut shared = image.clone();
    shared[bat + 8..bat + 16].copy_from_slice(&first.to_le_bytes());
    assert_refused(&shared, Format::Vhdx, "overlaps");

    let mut on_bat = image.clone();
    on_bat[bat..bat + 8].copy_from_slice(&(bat as u64 | 6).to_le_bytes());
    assert_refused(&on_bat, Format::Vhdx, "overlaps");

    let mut partial = image;
    partial[bat..bat + 8].copy_from_slice(&((first & !7) | 7).to_le_bytes());
    assert_refused(&partial, Format::Vhdx, "partially present");
}

#[test]
fn vhdx_with_log_entries_is_refused() {
    let mut image = image("vhdx", "");
    // Both headers name a log GUID, and the log's first sector is an entry carrying it.
    let guid = [0x42u8; 16];
    let mut log_offset = 0;
    for header in [64 * 1024, 128 * 1024] {
        image[header + 48..header + 64].copy_from_slice(&guid);
        image[header + 4..header + 8].fill(0);
        let crc = crc32c(&image[header..header + 4096]);
        image[header + 4..header + 8].copy_from_slice(&crc.to_le_bytes());
        log_offset = le64(&image, header + 72) as usize;
    }
    image[log_offset..log_offset + 4].copy_from_slice(b"loge");
    image[log_offset + 32..log_offset + 48].copy_from_slice(&guid);
    assert_refused(&image, Format::Vhdx, "log has entries to replay");
}

#[test]
fn vhdx_with_broken_headers_is_refused() {
    let mut image = image("vhdx", "");
    for header in [64 * 1024, 128 * 1024] {
        image[header + 100] ^= 0xff;
    }
    assert_refused(&image, Format::Vhdx, "neither header is valid");
}

#[test]
fn vdi_blocks_past_the_end_or_shared_and_huge_disks_are_refused() {
    let image = image("vdi", "");
    let map = le32(&image, 0x154) as usize;
    let first = le32(&image, map);

    let mut past = image.clone();
    past[map..map + 4].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    assert_refused(&past, Format::Vdi, "past the end");

    let mut shared = image.clone();
    shared[map + 4..map + 8].copy_from_slice(&first.to_le_bytes());
    assert_refused(&shared, Format::Vdi, "overlaps");

    let mut huge = image;
    huge[0x170..0x178].copy_from_slice(&(1u64 << 50).to_le_bytes());
    assert_refused(&huge, Format::Vdi, "cannot map");
}

#[test]
fn truncated_images_of_every_format_never_panic() {
    for (qemu_format, options, format) in [
        ("vmdk", "subformat=monolithicSparse", Format::Vmdk),
        ("vmdk", "subformat=streamOptimized", Format::Vmdk),
        ("vpc", "subformat=dynamic", Format::Vhd),
        ("vhdx", "", Format::Vhdx),
        ("vdi", "", Format::Vdi),
    ] {
        let image = image(qemu_format, options);
        let step = (image.len() / 150).max(1);
        for len in (0..image.len()).step_by(step) {
            let _ = to_raw(format, std::io::Cursor::new(&image[..len]), &mut Discard::default());
        }
    }
}

//! The hostile corpus: images that would make qemu-img read host files, or whose headers lie,
//! are refused with a failure that says what was found.

use glint_formats::{Format, Inspector, check_declared, check_declared_allowing_mismatch};

use crate::common::{
    assert_fails, create, inspect_bytes, inspect_streaming, iso_image, mbr, patch, qemu_info, read, run, tempdir,
    vhdx_metadata_offset, write_pattern,
};

fn qcow2_image(options: &[&str]) -> Vec<u8> {
    let dir = tempdir();
    read(&create(dir.path(), "image.qcow2", "qcow2", options, "10M"))
}

#[test]
fn qcow2_with_a_backing_file_is_refused_naming_it() {
    let dir = tempdir();
    let base = create(dir.path(), "base.qcow2", "qcow2", &[], "10M");
    let base = base.to_str().expect("UTF-8 path");
    for compat in ["compat=0.10", "compat=1.1"] {
        let child = create(dir.path(), "child.qcow2", "qcow2", &["-o", compat, "-b", base, "-F", "qcow2"], "10M");
        let report = inspect_streaming(&read(&child));
        assert_eq!(report.format, Some(Format::Qcow2));
        assert_fails(&report, "backing_file", "base.qcow2");
    }
}

#[test]
fn qcow2_with_an_external_data_file_is_refused() {
    let dir = tempdir();
    let data = dir.path().join("data.raw");
    let option = format!("compat=1.1,data_file={}", data.display());
    let image = create(dir.path(), "image.qcow2", "qcow2", &["-o", &option], "10M");
    let report = inspect_streaming(&read(&image));
    assert_fails(&report, "data_file", "external data file");
}

#[test]
fn qcow2_with_unknown_incompatible_features_is_refused() {
    for (byte, bit) in [(0x4F, 0x10), (0x48, 0x80)] {
        let mut image = qcow2_image(&["-o", "compat=1.1"]);
        image[byte] |= bit;
        let report = inspect_streaming(&image);
        assert_fails(&report, "unknown_features", "unknown incompatible feature bits");
    }
}

/// Extended L2 entries (incompatible bit 4) change how clusters are read: refused like Glance,
/// even when qemu-img itself made the image.
#[test]
fn qcow2_with_extended_l2_is_refused() {
    let report = inspect_streaming(&qcow2_image(&["-o", "extended_l2=on"]));
    assert_fails(&report, "unknown_features", "extended l2");
}

#[test]
fn qcow2_of_an_unknown_version_is_refused() {
    for version in [1u32, 4, u32::MAX] {
        let mut image = qcow2_image(&[]);
        patch(&mut image, 4, &version.to_be_bytes());
        let report = inspect_bytes(&image);
        assert_fails(&report, "unknown_features", &format!("version {version}"));
    }
}

#[test]
fn qcow2_whose_tables_point_outside_the_stream_is_refused() {
    let image = qcow2_image(&[]);
    let cases: [(usize, &[u8], &str); 6] = [
        (40, &0x7000_0000_0000u64.to_be_bytes(), "L1 table"),
        (40, &0x1_0001u64.to_be_bytes(), "not aligned"),
        (40, &0u64.to_be_bytes(), "overlaps the header"),
        (48, &u64::MAX.to_be_bytes(), "refcount table"),
        (40, &0x1_0000u64.to_be_bytes(), "overlaps the refcount table"),
        (20, &30u32.to_be_bytes(), "cluster_bits 30"),
    ];
    for (offset, bytes, needle) in cases {
        let mut hostile = image.clone();
        patch(&mut hostile, offset, bytes);
        assert_fails(&inspect_bytes(&hostile), "header", needle);
    }
}

#[test]
fn absurd_virtual_sizes_are_refused() {
    let mut image = qcow2_image(&[]);
    patch(&mut image, 24, &u64::MAX.to_be_bytes());
    let report = inspect_bytes(&image);
    assert_eq!(report.virtual_size, Some(u64::MAX));
    assert_fails(&report, "virtual_size", "exceeds the limit");

    let dir = tempdir();
    let mut vdi = read(&create(dir.path(), "image.vdi", "vdi", &[], "1M"));
    patch(&mut vdi, 0x170, &(1u64 << 63).to_le_bytes());
    assert_fails(&inspect_bytes(&vdi), "virtual_size", "exceeds the limit");

    let mut vmdk = read(&create(dir.path(), "image.vmdk", "vmdk", &[], "1M"));
    patch(&mut vmdk, 12, &(u64::MAX / 512 + 1).to_le_bytes());
    assert_fails(&inspect_bytes(&vmdk), "header", "overflows");
}

#[test]
fn virtual_size_cap_is_configurable() {
    let image = qcow2_image(&[]);
    let mut inspector = Inspector::new().with_max_virtual_size(1 << 20);
    inspector.feed(&image);
    assert_fails(&inspector.finish(), "virtual_size", "10485760 bytes exceeds the limit of 1048576");
}

#[test]
fn qcow2_declared_raw_is_accepted_only_when_safe() {
    let clean = inspect_bytes(&qcow2_image(&[]));
    assert_eq!(check_declared("raw", &clean).expect("a clean qcow2 is accepted as raw"), Some(clean.bytes_read));

    let dir = tempdir();
    let base = create(dir.path(), "base.qcow2", "qcow2", &[], "1M");
    let child =
        create(dir.path(), "child.qcow2", "qcow2", &["-b", base.to_str().expect("UTF-8 path"), "-F", "qcow2"], "1M");
    let hostile = inspect_bytes(&read(&child));
    let err = check_declared("raw", &hostile).expect_err("a backing file is refused even as raw");
    assert!(err.to_string().contains("backing file"), "{err}");
}

/// The CVE-2022-47951 class: a descriptor file whose flat extent is a host file.
#[test]
fn vmdk_descriptor_pointing_at_a_host_file_is_refused() {
    for create_type in ["monolithicFlat", "vmfs"] {
        let descriptor = format!(
            "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
             createType=\"{create_type}\"\n\n# Extent description\nRW 2048 FLAT \"/etc/passwd\" 0\n\n\
             ddb.virtualHWVersion = \"4\"\n"
        );
        let report = inspect_streaming(descriptor.as_bytes());
        assert_eq!(report.format, Some(Format::Vmdk));
        assert_fails(&report, "descriptor", &format!("createType \"{}\" is not allowed", create_type.to_lowercase()));
        assert_fails(&report, "descriptor", "\"rw 2048 flat \\\"/etc/passwd\\\" 0\" names a file path");
        assert_fails(&report, "descriptor_only", "other files");
        for declared in ["vmdk", "qcow2", "raw"] {
            let err =
                check_declared_allowing_mismatch(declared, &report).expect_err("refused whatever the declaration");
            assert!(err.to_string().starts_with("Image failed safety checks: vmdk"), "{declared}: {err}");
        }
    }
}

/// Even with an allowed createType and no path, a descriptor file's extents are other files
/// (another tenant's staged image sits in the same directory).
#[test]
fn vmdk_descriptor_file_without_data_is_refused() {
    let descriptor = "createType=\"monolithicSparse\"\nRW 2048 SPARSE \"other-image\"\n";
    let report = inspect_streaming(descriptor.as_bytes());
    assert_eq!(report.format, Some(Format::Vmdk));
    assert!(!report.failures.contains_key("descriptor"), "{:?}", report.failures);
    assert_fails(&report, "descriptor_only", "other files");
}

#[test]
fn text_that_is_not_a_descriptor_is_raw() {
    let report = inspect_streaming(b"#!/bin/sh\necho hello\n");
    assert_eq!(report.format, Some(Format::Raw));
    assert!(report.is_safe());
}

/// Rewrites the embedded descriptor (sector 1 onwards, NUL-padded) of a sparse VMDK.
fn with_descriptor(image: &mut [u8], descriptor: &str) {
    let sectors = u64::from_le_bytes(image[36..44].try_into().expect("8 bytes")) as usize;
    let area = &mut image[512..512 + sectors * 512];
    area.fill(0);
    area[..descriptor.len()].copy_from_slice(descriptor.as_bytes());
}

#[test]
fn sparse_vmdk_with_a_hostile_embedded_descriptor_is_refused() {
    let dir = tempdir();
    let image = read(&create(dir.path(), "image.vmdk", "vmdk", &[], "1M"));
    let cases = [
        ("createType=\"monolithicFlat\"\nRW 2048 FLAT \"/etc/passwd\" 0\n", "descriptor", "names a file path"),
        ("createType=\"monolithicSparse\"\nRW 2048 SPARSE \"../x.vmdk\"\n", "descriptor", "names a file path"),
        ("createType=\"monolithicSparse\"\n", "descriptor", "no extents"),
        ("version=1\nRW 2048 SPARSE \"x.vmdk\"\n", "descriptor", "no createType"),
        ("createType=\"monolithicSparse\"\nRW 2048 SPARSE \"x.vmdk\"\nrm -rf now\n", "descriptor", "unsupported line"),
        ("createType=\"monolithicSparse\"\nRW 2048 SPARSE \"x.vmdk\"\ncaf\u{e9}=1\n", "descriptor", "not ascii"),
    ];
    for (descriptor, check, needle) in cases {
        let mut hostile = image.clone();
        with_descriptor(&mut hostile, descriptor);
        let report = inspect_streaming(&hostile);
        assert_eq!(report.format, Some(Format::Vmdk));
        assert_fails(&report, check, needle);
    }
}

/// qemu opens `parentFileNameHint` as a backing image, wherever it appears in the descriptor.
#[test]
fn vmdk_with_a_parent_is_refused() {
    let dir = tempdir();
    let base = create(dir.path(), "base.vmdk", "vmdk", &[], "1M");
    let child =
        create(dir.path(), "child.vmdk", "vmdk", &["-b", base.to_str().expect("UTF-8 path"), "-F", "vmdk"], "1M");
    let report = inspect_streaming(&read(&child));
    assert_fails(&report, "backing_file", "parentfilenamehint");
}

#[test]
fn vmdk_with_a_misplaced_descriptor_or_unknown_version_is_refused() {
    let dir = tempdir();
    let image = read(&create(dir.path(), "image.vmdk", "vmdk", &[], "1M"));
    let mut moved = image.clone();
    patch(&mut moved, 28, &2u64.to_le_bytes());
    assert_fails(&inspect_streaming(&moved), "header", "sector 2");
    let mut version = image.clone();
    patch(&mut version, 4, &4u32.to_le_bytes());
    assert_fails(&inspect_streaming(&version), "header", "version 4");
    let mut cowd = image;
    patch(&mut cowd, 0, b"COWD");
    assert_fails(&inspect_streaming(&cowd), "header", "COWD");
}

/// A streamOptimized VMDK in the footer form VMware writes: the header's grain directory offset
/// says "at end", and the last 1536 bytes are footer marker, footer header, end-of-stream marker.
fn vmdk_with_footer() -> Vec<u8> {
    let dir = tempdir();
    let path = create(dir.path(), "image.vmdk", "vmdk", &["-o", "subformat=streamOptimized"], "4M");
    write_pattern(&path, "vmdk", 0, 1 << 20);
    let mut image = read(&path);
    let header = image[..512].to_vec();
    patch(&mut image, 56, &u64::MAX.to_le_bytes());
    let mut marker = [0u8; 512];
    marker[0..8].copy_from_slice(&1u64.to_le_bytes());
    marker[12..16].copy_from_slice(&3u32.to_le_bytes());
    image.extend_from_slice(&marker);
    image.extend_from_slice(&header);
    image.extend_from_slice(&[0u8; 512]);
    let written = dir.path().join("footer.vmdk");
    std::fs::write(&written, &image).expect("write the crafted image");
    assert_eq!(qemu_info(&written, None), ("vmdk".to_owned(), 4 << 20), "qemu-img reads the footer form");
    image
}

#[test]
fn stream_optimized_vmdk_with_a_valid_footer_is_accepted() {
    let report = inspect_streaming(&vmdk_with_footer());
    assert_eq!(report.format, Some(Format::Vmdk));
    assert_eq!(report.virtual_size, Some(4 << 20));
    assert!(report.is_safe(), "{:?}", report.failures);
}

#[test]
fn stream_optimized_vmdk_with_a_bad_footer_is_refused() {
    let image = vmdk_with_footer();
    let len = image.len();
    let cases: [(usize, &[u8], &str); 5] = [
        (len - 1024 + 56, &u64::MAX.to_le_bytes(), "another footer"),
        (len - 1024 + 12, &1u64.to_le_bytes(), "capacity"),
        (len - 1024 + 28, &5u64.to_le_bytes(), "different descriptor"),
        (len - 1536 + 12, &0u32.to_le_bytes(), "footer marker"),
        (len - 100, &[1], "end-of-stream marker"),
    ];
    for (offset, bytes, needle) in cases {
        let mut hostile = image.clone();
        patch(&mut hostile, offset, bytes);
        assert_fails(&inspect_streaming(&hostile), "footer", needle);
    }
    assert_fails(&inspect_bytes(&image[..1024]), "footer", "too short");
}

#[test]
fn malformed_partition_tables_fail_the_mbr_check() {
    type Entries = &'static [(u8, u8, u32)];
    let cases: [(Entries, &str); 4] = [
        (&[(0x12, 0x83, 2048)], "invalid boot flag 0x12"),
        (&[(0x00, 0xEE, 1), (0x00, 0x83, 4096)], "only partition"),
        (&[(0x00, 0xEE, 7)], "starts at lba 7"),
        (&[], "no partitions"),
    ];
    for (entries, needle) in cases {
        let mut image = vec![0u8; 1 << 16];
        patch(&mut image, 0, &mbr(entries));
        let report = inspect_streaming(&image);
        assert_eq!(report.format, Some(Format::Gpt));
        assert_fails(&report, "mbr", needle);
    }
}

#[test]
fn qed_is_banned() {
    let dir = tempdir();
    let report = inspect_streaming(&read(&create(dir.path(), "image.qed", "qed", &[], "1M")));
    assert_fails(&report, "banned", "not allowed");
}

#[test]
fn luks_version_2_is_refused() {
    let mut image = vec![0u8; 4096];
    patch(&mut image, 0, b"LUKS\xba\xbe\x00\x02");
    let report = inspect_streaming(&image);
    assert_eq!(report.format, Some(Format::Luks));
    assert_fails(&report, "version", "version 2");
}

#[test]
fn differencing_vhd_is_refused() {
    let dir = tempdir();
    let mut image = read(&create(dir.path(), "image.vhd", "vpc", &[], "1M"));
    patch(&mut image, 60, &4u32.to_be_bytes());
    assert_fails(&inspect_streaming(&image), "disk_type", "differencing");
}

#[test]
fn vhdx_pointing_backwards_or_past_the_end_is_refused() {
    let dir = tempdir();
    let image = read(&create(dir.path(), "image.vhdx", "vhdx", &[], "10M"));
    let metadata = vhdx_metadata_offset(&image);
    let entry = (0..)
        .map(|index| 0x30000 + 16 + index * 32)
        .find(|at| u64::from_le_bytes(image[at + 16..at + 24].try_into().expect("8 bytes")) as usize == metadata)
        .expect("metadata entry");

    let mut backwards = image.clone();
    patch(&mut backwards, entry + 16, &0x1000u64.to_le_bytes());
    assert_fails(&inspect_streaming(&backwards), "header", "points back");

    let mut past_end = image.clone();
    patch(&mut past_end, entry + 16, &(1u64 << 40).to_le_bytes());
    assert_fails(&inspect_streaming(&past_end), "header", "past the end of the stream");

    let mut signature = image.clone();
    patch(&mut signature, 0x30000, b"nope");
    assert_fails(&inspect_streaming(&signature), "header", "region table signature");

    let mut count = image;
    patch(&mut count, 0x30008, &5000u32.to_le_bytes());
    assert_fails(&inspect_streaming(&count), "header", "5000 entries");
}

#[test]
fn differencing_vhdx_is_refused() {
    let dir = tempdir();
    let mut image = read(&create(dir.path(), "image.vhdx", "vhdx", &[], "10M"));
    let metadata = vhdx_metadata_offset(&image);
    // Relabel the first metadata item as a parent locator.
    let parent_locator =
        [0x2D, 0x5F, 0xD3, 0xA8, 0x0B, 0xB3, 0x4D, 0x45, 0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C];
    let first_entry = metadata + 32;
    let vds_guid = [0x24, 0x42, 0xA5, 0x2F, 0x1B, 0xCD, 0x76, 0x48, 0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8];
    let entry = (0..5)
        .map(|index| first_entry + index * 32)
        .find(|at| image[*at..at + 16] != vds_guid)
        .expect("an item other than the disk size");
    patch(&mut image, entry, &parent_locator);
    assert_fails(&inspect_streaming(&image), "parent", "parent");
}

/// One header hidden in another: both would be read by someone.
#[test]
fn several_formats_at_once_are_refused() {
    let mut image = qcow2_image(&[]);
    image.resize(0x9000, 0);
    patch(&mut image, 0x8001, b"CD001");
    let report = inspect_bytes(&image);
    assert_eq!(report.format, None);
    assert_eq!(report.matched, vec![Format::Qcow2, Format::Iso]);
    assert_fails(&report, "format", "Multiple formats detected: qcow2, iso");
    let err = check_declared("qcow2", &report).expect_err("ambiguous data is refused");
    assert_eq!(err.to_string(), "Multiple formats detected: qcow2, iso");
    let err = check_declared_allowing_mismatch("qcow2", &report).expect_err("even when mismatches are allowed");
    assert_eq!(err.to_string(), "Multiple formats detected: qcow2, iso");

    let mut iso_in_vhd = iso_image(40);
    let dir = tempdir();
    let vhd = read(&create(dir.path(), "fixed.vhd", "vpc", &["-o", "subformat=fixed"], "1M"));
    iso_in_vhd.extend_from_slice(&vhd[vhd.len() - 512..]);
    assert_eq!(inspect_bytes(&iso_in_vhd).format, None);
}

#[test]
fn raw_data_ending_in_a_vhd_cookie_with_a_bad_checksum_stays_raw() {
    let dir = tempdir();
    let mut image = read(&create(dir.path(), "fixed.vhd", "vpc", &["-o", "subformat=fixed"], "1M"));
    let checksum = image.len() - 512 + 64;
    image[checksum] ^= 0xFF;
    assert_eq!(inspect_streaming(&image).format, Some(Format::Raw));
}

#[test]
fn truncated_iso_descriptor_is_refused() {
    let image = iso_image(40);
    assert_fails(&inspect_bytes(&image[..0x8100]), "header", "truncated");
}

#[test]
fn backing_file_names_are_escaped_in_messages() {
    let dir = tempdir();
    let base = dir.path().join("base\u{1b}[31m.qcow2");
    run("qemu-img", &["create", "-q", "-f", "qcow2", base.to_str().expect("UTF-8 path"), "1M"]);
    let child =
        create(dir.path(), "child.qcow2", "qcow2", &["-b", base.to_str().expect("UTF-8 path"), "-F", "qcow2"], "1M");
    let report = inspect_bytes(&read(&child));
    assert_fails(&report, "backing_file", "\\x1b[31m.qcow2");
}

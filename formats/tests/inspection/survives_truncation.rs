//! Truncated images, cut at every offset of their headers and at the boundaries of the
//! structures they point at: never a panic, never another format, and a cut through a header
//! is refused rather than taken for raw.

use glint_formats::{Format, Report};

use crate::common::{
    create, inspect_bytes, inspect_chunked, iso_image, read, tempdir, vhdx_disk_size_end, vhdx_metadata_offset,
};

/// Cut points: every offset of the first sectors, then both sides of each boundary.
fn cuts(len: usize, boundaries: &[usize]) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..=1100.min(len)).collect();
    for boundary in boundaries {
        for delta in [0usize, 1, 2, 7, 8, 511, 512, 513] {
            cuts.push(boundary.saturating_sub(delta));
            cuts.push(boundary + delta);
        }
    }
    cuts.retain(|cut| *cut <= len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// Inspects every cut of `image` (whole and in 7-byte chunks) and checks the verdicts.
/// `signature` is how many bytes the format needs to be recognised at all; `structure` is
/// where its headers end, so a cut before it must be refused.
fn check_cuts(image: &[u8], format: Format, signature: usize, structure: usize, boundaries: &[usize]) {
    for cut in cuts(image.len(), boundaries) {
        let prefix = &image[..cut];
        let report: Report = inspect_bytes(prefix);
        // Tiny chunks only where they stay cheap: the suite must stay fast.
        let chunk = if cut <= 1 << 16 { 7 } else { 4099 };
        assert_eq!(report, inspect_chunked(prefix, chunk), "{format} cut at {cut}: chunking matters");
        assert_eq!(report.bytes_read, cut as u64);
        if cut < signature {
            assert!(
                matches!(report.format, Some(Format::Raw)) || report.format == Some(format),
                "{format} cut at {cut} became {:?}",
                report.format
            );
        } else {
            assert_eq!(report.format, Some(format), "{format} cut at {cut}");
        }
        if cut >= signature && cut < structure {
            assert!(!report.is_safe(), "{format} cut at {cut} passed: {report:?}");
        }
    }
}

#[test]
fn truncated_qcow2_never_passes() {
    let dir = tempdir();
    for compat in ["compat=0.10", "compat=1.1"] {
        let image = read(&create(dir.path(), "image.qcow2", "qcow2", &["-o", compat], "10M"));
        // An empty qcow2 ends with its L1 table: every cut lands inside some structure.
        check_cuts(&image, Format::Qcow2, 4, image.len(), &[0x10000, 0x20000, 0x30000]);
    }
}

#[test]
fn truncated_vmdk_never_passes() {
    let dir = tempdir();
    for subformat in ["subformat=monolithicSparse", "subformat=streamOptimized"] {
        let image = read(&create(dir.path(), "image.vmdk", "vmdk", &["-o", subformat], "10M"));
        let descriptor_end = 512 + 20 * 512;
        check_cuts(&image, Format::Vmdk, 4, descriptor_end, &[descriptor_end]);
    }
}

#[test]
fn truncated_vhdx_never_passes() {
    let dir = tempdir();
    let image = read(&create(dir.path(), "image.vhdx", "vhdx", &[], "10M"));
    let metadata = vhdx_metadata_offset(&image);
    let size_end = vhdx_disk_size_end(&image);
    check_cuts(
        &image,
        Format::Vhdx,
        8,
        size_end,
        &[0x30000, 0x40000, metadata, metadata + 0x1_0000, size_end - 8, size_end],
    );
}

#[test]
fn truncated_vhd_vdi_and_luks_headers_never_pass() {
    let dir = tempdir();
    let vhd = read(&create(dir.path(), "image.vhd", "vpc", &[], "10M"));
    check_cuts(&vhd, Format::Vhd, 8, 512 + 1024, &[]);
    let vdi = read(&create(dir.path(), "image.vdi", "vdi", &[], "10M"));
    check_cuts(&vdi, Format::Vdi, 0x44, 512, &[]);
    let mut luks = vec![0u8; 4096];
    luks[..8].copy_from_slice(b"LUKS\xba\xbe\x00\x01");
    luks[104..108].copy_from_slice(&4u32.to_be_bytes());
    check_cuts(&luks, Format::Luks, 6, 592, &[]);
}

#[test]
fn truncated_iso_never_passes() {
    let image = iso_image(40);
    check_cuts(&image, Format::Iso, 0x8006, 0x8800, &[0x8000, 0x8006, 0x8800]);
}

/// A header from one format glued to garbage of every length must not panic either.
#[test]
fn garbage_after_every_signature_never_panics() {
    let signatures: [(usize, &[u8]); 9] = [
        (0, b"QFI\xfb"),
        (0, b"QED\0"),
        (0, b"conectix"),
        (0, b"vhdxfile"),
        (0, b"KDMV"),
        (0, b"COWD"),
        (0, b"LUKS\xba\xbe"),
        (0x40, &0xBEDA_107Fu32.to_le_bytes()),
        (0x8001, b"CD001"),
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for (at, signature) in signatures {
        for len in [at + signature.len(), 513, 4096, 0x8800, 0x50000] {
            let mut image: Vec<u8> = (0..len.max(at + signature.len()))
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            image[at..at + signature.len()].copy_from_slice(signature);
            let report = inspect_bytes(&image);
            assert!(report.format.is_none() || !report.matched.is_empty(), "{signature:?} {len}");
        }
    }
}

//! qcow2 to raw: byte-identical to `qemu-img convert -O raw` for v2 and v3 images, 512 B to
//! 2 MiB clusters, sizes that are not multiples of the cluster size, data at unaligned offsets,
//! zero clusters and compressed clusters; and sparse.

use std::path::Path;

use glint_formats::{Format, convert};

use crate::common::{allocated, assert_same_file, create, qemu_convert, qemu_io, read_qcow2, tempdir};

/// 10 MiB + 1.5 KiB: a multiple of 512 but of no cluster size from 4 KiB up.
const SIZE: u64 = 10 * 1024 * 1024 + 1536;

/// Several patterns at offsets that straddle clusters and L2 tables, overwrites, the last bytes
/// of the disk, and (in v3 images) zero clusters, both kept allocated and unmapped.
fn guest_writes() -> Vec<String> {
    vec![
        "write -P 0x11 0 1".to_owned(),
        "write -P 0x22 777 100000".to_owned(),
        "write -P 0x33 65535 70001".to_owned(),
        format!("write -P 0x44 {} {}", 3 * 1024 * 1024 + 5, 2 * 1024 * 1024 + 3),
        format!("write -P 0x55 {} 10", 3 * 1024 * 1024 + 100),
        format!("write -P 0x66 {} 1000", SIZE - 1000),
        format!("write -P 0x77 {} 4096", 8 * 1024 * 1024 - 2048),
        format!("write -z {} {}", 4 * 1024 * 1024, 256 * 1024),
        format!("write -z -u {} {}", 3 * 1024 * 1024 + 4096, 4096),
    ]
}

/// Our conversion of `image` must equal qemu-img's, through the reader and through `convert`.
fn assert_matches_qemu(image: &Path, label: &str) {
    let dir = image.parent().expect("image has a directory");
    let reference = dir.join(format!("{label}.reference.raw"));
    let ours = dir.join(format!("{label}.ours.raw"));
    qemu_convert(image, "qcow2", &reference, "raw", &[]);
    let virtual_size = read_qcow2(image, &ours).unwrap_or_else(|err| panic!("{label}: {err}"));
    assert_same_file(&ours, &reference);
    let converted = dir.join(format!("{label}.convert.raw"));
    let report = convert(image, Format::Qcow2, &converted, Format::Raw).unwrap_or_else(|err| panic!("{label}: {err}"));
    assert_eq!(report.virtual_size, virtual_size);
    assert_eq!(report.size, virtual_size);
    assert_eq!(report.format, Format::Raw);
    assert_same_file(&converted, &reference);
    println!("{label}: identical to qemu-img ({virtual_size} bytes)");
}

fn matrix(compat: &str) {
    let dir = tempdir();
    for cluster in ["512", "4096", "65536", "2M"] {
        let label = format!("compat{compat}-cluster{cluster}");
        let image = create(
            dir.path(),
            &format!("{label}.qcow2"),
            "qcow2",
            &format!("compat={compat},cluster_size={cluster}"),
            &SIZE.to_string(),
        );
        qemu_io(&image, "qcow2", &guest_writes());
        assert_matches_qemu(&image, &label);

        let compressed = dir.path().join(format!("{label}.compressed.qcow2"));
        qemu_convert(
            &image,
            "qcow2",
            &compressed,
            "qcow2",
            &["-c", "-o", &format!("compat={compat},cluster_size={cluster}")],
        );
        assert_matches_qemu(&compressed, &format!("{label}-compressed"));
    }
}

#[test]
fn qcow2_v2_matches_qemu_img() {
    matrix("0.10");
}

#[test]
fn qcow2_v3_matches_qemu_img() {
    matrix("1.1");
}

#[test]
fn partly_compressed_images_match_qemu_img() {
    // qemu-io can write single compressed clusters between ordinary ones.
    let dir = tempdir();
    let image = create(dir.path(), "mixed.qcow2", "qcow2", "cluster_size=4096", "8M");
    qemu_io(
        &image,
        "qcow2",
        &[
            "write -P 0x12 0 1M".to_owned(),
            "write -c -P 0x34 1M 4096".to_owned(),
            "write -c -P 0x56 2M 4096".to_owned(),
            "write -P 0x78 1028K 2K".to_owned(),
            "write -z 0 8192".to_owned(),
        ],
    );
    assert_matches_qemu(&image, "mixed");
}

#[test]
fn zstd_compressed_images_match_qemu_img() {
    let dir = tempdir();
    for cluster in ["4096", "65536", "2M"] {
        let label = format!("zstd-cluster{cluster}");
        let image = create(
            dir.path(),
            &format!("{label}.qcow2"),
            "qcow2",
            &format!("cluster_size={cluster}"),
            &SIZE.to_string(),
        );
        qemu_io(&image, "qcow2", &guest_writes());
        let compressed = dir.path().join(format!("{label}.compressed.qcow2"));
        qemu_convert(
            &image,
            "qcow2",
            &compressed,
            "qcow2",
            &["-c", "-o", &format!("compression_type=zstd,cluster_size={cluster}")],
        );
        assert_matches_qemu(&compressed, &label);
    }
}

#[test]
fn preallocated_images_match_qemu_img() {
    let dir = tempdir();
    for prealloc in ["metadata", "falloc"] {
        let image = create(
            dir.path(),
            &format!("{prealloc}.qcow2"),
            "qcow2",
            &format!("preallocation={prealloc},cluster_size=65536"),
            "6M",
        );
        qemu_io(&image, "qcow2", &["write -P 0x9a 100000 300000".to_owned()]);
        assert_matches_qemu(&image, prealloc);
    }
}

#[test]
fn empty_and_tiny_images_match_qemu_img() {
    let dir = tempdir();
    for size in ["0", "512", "1536"] {
        let image = create(dir.path(), &format!("tiny{size}.qcow2"), "qcow2", "", size);
        if size != "0" {
            qemu_io(&image, "qcow2", &["write -P 0xee 0 512".to_owned()]);
        }
        assert_matches_qemu(&image, &format!("tiny{size}"));
    }
}

#[test]
fn raw_output_is_sparse() {
    let dir = tempdir();
    let image = create(dir.path(), "big.qcow2", "qcow2", "", "1G");
    qemu_io(
        &image,
        "qcow2",
        &[
            "write -P 0x01 0 64K".to_owned(),
            "write -P 0x02 600M 100K".to_owned(),
            "write -P 0x00 700M 1M".to_owned(),
            "write -P 0x03 1073741312 512".to_owned(),
        ],
    );
    let ours = dir.path().join("big.raw");
    let virtual_size = read_qcow2(&image, &ours).expect("converts");
    assert_eq!(virtual_size, 1 << 30);
    let used = allocated(&ours);
    println!("1 GiB disk with ~1.2 MiB written: {used} bytes allocated");
    // The 1 MiB of written zeros must not be allocated either.
    assert!(used < 512 * 1024, "{used} bytes allocated");
    let reference = dir.path().join("big.reference.raw");
    qemu_convert(&image, "qcow2", &reference, "raw", &[]);
    assert_same_file(&ours, &reference);
}

//! The upload decision of docs/glance-v2-api.md §7.2: which declared disk_format may be stored, with which
//! virtual_size.

use glint_formats::{FormatError, check_declared, check_declared_allowing, check_declared_allowing_mismatch};

use crate::common::{create, inspect_bytes, iso_image, mbr, patch, read, tempdir};

fn qcow2() -> glint_formats::Report {
    let dir = tempdir();
    inspect_bytes(&read(&create(dir.path(), "image.qcow2", "qcow2", &[], "10M")))
}

#[test]
fn matching_format_records_the_inspected_virtual_size() {
    assert_eq!(check_declared("qcow2", &qcow2()).expect("qcow2 as qcow2"), Some(10 << 20));
    let raw = inspect_bytes(&[7u8; 5000]);
    assert_eq!(check_declared("raw", &raw).expect("raw as raw"), Some(5000));
    assert_eq!(check_declared("iso", &inspect_bytes(&iso_image(40))).expect("iso as iso"), Some(40 * 2048));
}

#[test]
fn uninspectable_formats_accept_unrecognised_data_without_a_size() {
    let raw = inspect_bytes(&[7u8; 5000]);
    for declared in ["ami", "ari", "aki", "ploop"] {
        assert_eq!(check_declared(declared, &raw).expect("raw data as {declared}"), None);
    }
    let err = check_declared("ami", &qcow2()).expect_err("a qcow2 is not an ami");
    assert_eq!(err.to_string(), "Image disk_format ami does not match stream data qcow2");
}

#[test]
fn data_declared_raw_is_accepted_with_its_byte_count() {
    let report = qcow2();
    assert_eq!(check_declared("raw", &report).expect("qcow2 declared raw"), Some(report.bytes_read));
    let mut disk = vec![0u8; 1 << 16];
    patch(&mut disk, 0, &mbr(&[(0x80, 0x83, 2048)]));
    assert_eq!(check_declared("raw", &inspect_bytes(&disk)).expect("partitioned disk as raw"), Some(1 << 16));
}

#[test]
fn mismatches_are_refused_with_glance_wording() {
    let raw = inspect_bytes(&[7u8; 5000]);
    let err = check_declared("qcow2", &raw).expect_err("raw data declared qcow2");
    assert!(matches!(err, FormatError::Mismatch { .. }));
    assert_eq!(err.to_string(), "Image disk_format qcow2 does not match stream data raw");
    let err = check_declared("vmdk", &qcow2()).expect_err("qcow2 declared vmdk");
    assert_eq!(err.to_string(), "Image disk_format vmdk does not match stream data qcow2");
    let err = check_declared("iso", &raw).expect_err("raw data declared iso");
    assert_eq!(err.to_string(), "Image disk_format iso does not match stream data raw");
}

#[test]
fn without_the_match_requirement_safe_mismatches_are_accepted_without_a_virtual_size() {
    let raw = inspect_bytes(&[7u8; 5000]);
    for declared in ["qcow2", "vmdk", "vhd", "iso"] {
        assert_eq!(check_declared_allowing_mismatch(declared, &raw).expect("raw data as {declared}"), None);
    }
    assert_eq!(check_declared_allowing_mismatch("vmdk", &qcow2()).expect("a clean qcow2 declared vmdk"), None);
    // What matches keeps its answer.
    assert_eq!(check_declared_allowing_mismatch("qcow2", &qcow2()).expect("qcow2 as qcow2"), Some(10 << 20));
    assert_eq!(check_declared_allowing_mismatch("raw", &raw).expect("raw as raw"), Some(5000));
}

#[test]
fn without_the_match_requirement_unsafe_data_is_still_refused_whatever_it_is_declared_as() {
    let dir = tempdir();
    let base = create(dir.path(), "base.qcow2", "qcow2", &[], "1M");
    let child =
        create(dir.path(), "child.qcow2", "qcow2", &["-b", base.to_str().expect("UTF-8 path"), "-F", "qcow2"], "1M");
    let hostile = inspect_bytes(&read(&child));
    for declared in ["qcow2", "vmdk", "raw", "ami"] {
        let err = check_declared_allowing_mismatch(declared, &hostile).expect_err("a backing file is refused");
        assert!(matches!(err, FormatError::Unsafe { .. }), "{declared}: {err}");
        assert!(err.to_string().contains("backing file"), "{declared}: {err}");
    }
    let mut disk = vec![0u8; 1 << 16];
    patch(&mut disk, 0, &mbr(&[(0x42, 0x83, 2048)]));
    let err = check_declared_allowing_mismatch("vhd", &inspect_bytes(&disk)).expect_err("a malformed MBR fails");
    assert!(matches!(err, FormatError::Unsafe { .. }), "{err}");
}

#[test]
fn safety_failures_are_fatal_unless_listed_for_gpt() {
    let mut disk = vec![0u8; 1 << 16];
    patch(&mut disk, 0, &mbr(&[(0x42, 0x83, 2048)]));
    let report = inspect_bytes(&disk);
    let err = check_declared("raw", &report).expect_err("a malformed MBR fails");
    assert!(matches!(err, FormatError::Unsafe { .. }));
    assert!(err.to_string().contains("mbr: partition entry 0 has invalid boot flag 0x42"), "{err}");
    assert_eq!(check_declared_allowing("raw", &report, &["mbr"]).expect("mbr listed as non-fatal"), Some(1 << 16));

    let dir = tempdir();
    let base = create(dir.path(), "base.qcow2", "qcow2", &[], "1M");
    let child =
        create(dir.path(), "child.qcow2", "qcow2", &["-b", base.to_str().expect("UTF-8 path"), "-F", "qcow2"], "1M");
    let report = inspect_bytes(&read(&child));
    let err =
        check_declared_allowing("qcow2", &report, &["backing_file"]).expect_err("only gpt checks can be non-fatal");
    assert!(matches!(err, FormatError::Unsafe { .. }));
}

#[test]
fn zero_virtual_size_is_not_recorded() {
    let dir = tempdir();
    let report = inspect_bytes(&read(&create(dir.path(), "empty.qcow2", "qcow2", &[], "0")));
    assert_eq!(report.virtual_size, Some(0));
    assert_eq!(check_declared("qcow2", &report).expect("an empty qcow2 is fine"), None);
}

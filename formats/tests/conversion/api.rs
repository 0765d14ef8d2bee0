//! `convert` as the import flow calls it: the source is inspected and refused as an upload
//! would be, the output is inspected again, and unsupported pairs say so.

use glint_formats::{Format, FormatError, convert};

use crate::common::{create, qemu_convert, qemu_io, run, tempdir, utf8};

#[test]
fn unsupported_pairs_are_refused_before_reading() {
    let dir = tempdir();
    let missing = dir.path().join("missing");
    let out = dir.path().join("out");
    for (from, to) in [
        (Format::Raw, Format::Raw),
        (Format::Qcow2, Format::Qcow2),
        (Format::Vmdk, Format::Vmdk),
        (Format::Raw, Format::Vhd),
        (Format::Vhdx, Format::Vdi),
        (Format::Luks, Format::Raw),
        (Format::Qed, Format::Qcow2),
        (Format::Iso, Format::Qcow2),
    ] {
        let err = convert(&missing, from, &out, to).expect_err("unsupported");
        assert!(matches!(err, FormatError::UnsupportedConversion { .. }), "{from} -> {to}: {err}");
        assert_eq!(err.to_string(), format!("Conversion from {from} to {to} is not supported"));
    }
}

#[test]
fn a_source_that_is_not_the_declared_format_is_refused() {
    let dir = tempdir();
    let raw = create(dir.path(), "disk.raw", "raw", "", "1M");
    let out = dir.path().join("out.raw");
    let err = convert(&raw, Format::Qcow2, &out, Format::Raw).expect_err("mismatch");
    assert!(matches!(err, FormatError::Mismatch { .. }), "{err}");
    assert!(!out.exists());
}

#[test]
fn an_unsafe_source_is_refused_before_conversion() {
    let dir = tempdir();
    let base = create(dir.path(), "base.qcow2", "qcow2", "", "1M");
    let child = dir.path().join("child.qcow2");
    run("qemu-img", &["create", "-q", "-f", "qcow2", "-b", utf8(&base), "-F", "qcow2", utf8(&child)]);
    let out = dir.path().join("out.raw");
    let err = convert(&child, Format::Qcow2, &out, Format::Raw).expect_err("backing file");
    assert!(matches!(err, FormatError::Unsafe { .. }), "{err}");
    assert!(err.to_string().contains("base.qcow2"), "{err}");
    assert!(!out.exists());
}

#[test]
fn a_raw_declared_qcow2_is_wrapped_as_the_bytes_it_is() {
    // Rule 3 of the upload decision: a "raw" image that is really qcow2 is kept as bytes, so
    // converting it to qcow2 wraps those bytes, exactly as `qemu-img convert -f raw` would.
    let dir = tempdir();
    let inner = create(dir.path(), "inner.qcow2", "qcow2", "", "1M");
    let out = dir.path().join("wrapped.qcow2");
    let report = convert(&inner, Format::Raw, &out, Format::Qcow2).expect("converts");
    assert_eq!(report.format, Format::Qcow2);
    let compare = run("qemu-img", &["compare", "-f", "raw", "-F", "qcow2", utf8(&inner), utf8(&out)]);
    assert!(compare.contains("Images are identical"), "{compare}");
}

#[test]
fn an_output_that_inspects_as_another_format_is_refused() {
    // A guest disk that starts with a qcow2 header would be handed to a hypervisor as qcow2.
    let dir = tempdir();
    let inner = create(dir.path(), "inner.qcow2", "qcow2", "", "1M");
    let outer = dir.path().join("outer.qcow2");
    qemu_convert(&inner, "raw", &outer, "qcow2", &[]);
    let out = dir.path().join("out.raw");
    let err = convert(&outer, Format::Qcow2, &out, Format::Raw).expect_err("refused");
    assert!(matches!(err, FormatError::ConversionOutput { .. }), "{err}");
    assert!(err.to_string().contains("qcow2"), "{err}");
    assert!(!out.exists());
}

#[test]
fn a_raw_output_with_a_partition_table_is_accepted() {
    let dir = tempdir();
    let image = create(dir.path(), "disk.qcow2", "qcow2", "", "2M");
    // A one-partition MBR: boot flag 0x80, type 0x83, start LBA 2048.
    qemu_io(
        &image,
        "qcow2",
        &[
            "write -P 0x80 446 1".to_owned(),
            "write -P 0x83 450 1".to_owned(),
            "write -P 0x08 455 1".to_owned(),
            "write -P 0x10 459 1".to_owned(),
            "write -P 0x55 510 1".to_owned(),
            "write -P 0xaa 511 1".to_owned(),
        ],
    );
    let out = dir.path().join("out.raw");
    let report = convert(&image, Format::Qcow2, &out, Format::Raw).expect("converts");
    assert_eq!(report.virtual_size, 2 * 1024 * 1024);
    let inspected = glint_formats::inspect_file(&out).expect("inspects");
    assert_eq!(inspected.format, Some(Format::Gpt));
}

#[test]
fn io_errors_name_the_file() {
    let dir = tempdir();
    let image = create(dir.path(), "disk.qcow2", "qcow2", "", "1M");
    let out = dir.path().join("no-such-dir").join("out.raw");
    let err = convert(&image, Format::Qcow2, &out, Format::Raw).expect_err("no directory");
    assert!(matches!(err, FormatError::Io { .. }), "{err}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

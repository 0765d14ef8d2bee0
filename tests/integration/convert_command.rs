//! `glint convert`: the real binary converts what an import would convert, byte-identical to
//! qemu-img, and refuses what an import would refuse, with its exit codes.

use std::path::Path;
use std::process::{Command, Output};

fn qemu(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().expect("qemu tools run");
    assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn glint_convert(args: &[&Path], extra: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_glint"));
    command.arg("convert").args(args).args(extra);
    command.output().expect("glint runs")
}

fn path(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

#[test]
fn convert_command_turns_a_vmdk_into_the_raw_and_qcow2_qemu_img_would_make() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vmdk = dir.path().join("disk.vmdk");
    qemu("qemu-img", &["create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", path(&vmdk), "4M"]);
    let plain = dir.path().join("plain.vmdk");
    qemu("qemu-img", &["create", "-q", "-f", "vmdk", path(&plain), "4M"]);
    qemu("qemu-io", &["-f", "vmdk", "-c", "write -P 0x5c 1000 300000", path(&plain)]);
    qemu(
        "qemu-img",
        &["convert", "-f", "vmdk", "-O", "vmdk", "-o", "subformat=streamOptimized", path(&plain), path(&vmdk)],
    );
    let reference = dir.path().join("reference.raw");
    qemu("qemu-img", &["convert", "-f", "vmdk", "-O", "raw", path(&vmdk), path(&reference)]);

    let raw = dir.path().join("disk.raw");
    let output = glint_convert(&[&vmdk, &raw], &["--output-format", "raw"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("(vmdk)"));
    assert_eq!(std::fs::read(&raw).expect("raw"), std::fs::read(&reference).expect("reference"));

    let qcow2 = dir.path().join("disk.qcow2");
    let output = glint_convert(&[&vmdk, &qcow2], &["--output-format", "qcow2"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    qemu("qemu-img", &["compare", "-q", "-f", "vmdk", "-F", "qcow2", path(&vmdk), path(&qcow2)]);

    let again = glint_convert(&[&vmdk, &qcow2], &["--output-format", "qcow2"]);
    assert_eq!(again.status.code(), Some(2), "an existing destination is kept");
}

#[test]
fn convert_command_refuses_what_an_import_would_refuse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("base.qcow2");
    qemu("qemu-img", &["create", "-q", "-f", "qcow2", path(&base), "1M"]);
    let child = dir.path().join("child.qcow2");
    qemu("qemu-img", &["create", "-q", "-f", "qcow2", "-b", path(&base), "-F", "qcow2", path(&child)]);
    let out = dir.path().join("out.raw");
    let refused = glint_convert(&[&child, &out], &["--output-format", "raw"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("backing file"), "{refused:?}");
    assert!(!out.exists());

    let mismatch = glint_convert(&[&base, &out], &["--output-format", "raw", "--source-format", "vmdk"]);
    assert_eq!(mismatch.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&mismatch.stderr).contains("does not match"), "{mismatch:?}");

    let iso_like = glint_convert(&[&base, &out], &["--output-format", "vhd"]);
    assert_eq!(iso_like.status.code(), Some(2), "clap refuses an output format Glint cannot write");
}

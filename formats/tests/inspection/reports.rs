//! What `glint inspect` and the logs show: the report as text and as JSON, and file access.

use std::path::Path;

use glint_formats::{FormatError, inspect_file};
use serde_json::json;

use crate::common::{create, inspect_bytes, tempdir};

#[test]
fn report_serialises_to_the_documented_json() {
    let dir = tempdir();
    let base = create(dir.path(), "base.qcow2", "qcow2", &[], "1M");
    let child =
        create(dir.path(), "child.qcow2", "qcow2", &["-b", base.to_str().expect("UTF-8 path"), "-F", "qcow2"], "1M");
    let report = inspect_file(&child).expect("readable");
    let value = serde_json::to_value(&report).expect("serialisable");
    assert_eq!(
        value,
        json!({
            "format": "qcow2",
            "virtual_size": 1048576,
            "bytes_read": report.bytes_read,
            "safe": false,
            "failures": {"backing_file": format!("image has a backing file {:?}", base.display().to_string())},
        })
    );
    assert_eq!(report.to_json(), value);
}

#[test]
fn report_prints_each_failed_check() {
    let mut image = vec![0u8; 4096];
    image[..8].copy_from_slice(b"LUKS\xba\xbe\x00\x02");
    let text = inspect_bytes(&image).to_string();
    assert!(text.contains("format:       luks\n"), "{text}");
    assert!(text.contains("bytes read:   4096\n"), "{text}");
    assert!(text.contains("safety:       FAILED\n  version: LUKS version 2 is not supported (only 1)\n"), "{text}");
    let clean = inspect_bytes(&[1u8; 10]).to_string();
    assert_eq!(clean, "format:       raw\nvirtual size: 10 bytes\nbytes read:   10\nsafety:       passed\n");
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = inspect_file(Path::new("/nonexistent/image.qcow2")).expect_err("no such file");
    assert!(matches!(err, FormatError::Io { .. }));
    assert!(err.to_string().starts_with("cannot read /nonexistent/image.qcow2: "), "{err}");
}

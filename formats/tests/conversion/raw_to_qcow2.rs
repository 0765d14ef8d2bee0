//! raw to qcow2: the output passes `qemu-img check`, `qemu-img compare` finds it identical to
//! the source, zero runs stay unallocated, and our reader reads it back. `stream_qcow2`, which
//! plans the layout before sending the first byte, sends the very bytes `convert` writes.

use std::fs::File;
use std::path::Path;

use glint_formats::{Format, RawStream, convert, raw_to_qcow2, stream_qcow2};
use serde_json::Value;

use crate::common::{assert_same_file, create, qemu_io, read_qcow2, run, tempdir, utf8};

/// A streamed image, gathered in memory.
#[derive(Default)]
struct Gathered(Vec<u8>);

impl RawStream for Gathered {
    fn data(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn zeros(&mut self, len: u64) -> std::io::Result<()> {
        self.0.resize(self.0.len() + usize::try_from(len).expect("fits"), 0);
        Ok(())
    }
}

/// Converts `raw` with `convert`, then checks the result with qemu-img and reads it back.
fn assert_accepted_by_qemu(raw: &Path, label: &str) -> Value {
    let dir = raw.parent().expect("raw has a directory");
    let qcow2 = dir.join(format!("{label}.qcow2"));
    let report = convert(raw, Format::Raw, &qcow2, Format::Qcow2).unwrap_or_else(|err| panic!("{label}: {err}"));
    let len = std::fs::metadata(raw).expect("metadata").len();
    assert_eq!(report.virtual_size, len.next_multiple_of(512), "{label}");
    assert_eq!(report.size, std::fs::metadata(&qcow2).expect("metadata").len());
    let check = run("qemu-img", &["check", "--output=json", "-f", "qcow2", utf8(&qcow2)]);
    let check: Value = serde_json::from_str(&check).expect("qemu-img check prints JSON");
    for field in ["corruptions", "leaks", "check-errors"] {
        assert!(check[field].as_u64().unwrap_or(0) == 0, "{label}: qemu-img check found {field}: {check}");
    }
    let compare = run("qemu-img", &["compare", "-f", "raw", "-F", "qcow2", utf8(raw), utf8(&qcow2)]);
    assert!(compare.contains("Images are identical"), "{label}: {compare}");

    // Our reader reads our writer back to the source, padded to whole sectors.
    let back = dir.join(format!("{label}.back.raw"));
    read_qcow2(&qcow2, &back).expect("our qcow2 reads back");
    let padded = dir.join(format!("{label}.padded.raw"));
    std::fs::copy(raw, &padded).expect("copy");
    File::options().write(true).open(&padded).and_then(|file| file.set_len(report.virtual_size)).expect("pad");
    assert_same_file(&back, &padded);

    let mut streamed = Gathered::default();
    let (virtual_size, sent) =
        stream_qcow2(raw, Format::Raw, &mut streamed).unwrap_or_else(|err| panic!("{label}: {err}"));
    assert_eq!((virtual_size, sent), (report.virtual_size, report.size), "{label}");
    assert!(streamed.0 == std::fs::read(&qcow2).expect("read"), "{label}: the streamed qcow2 differs from convert's");
    println!("{label}: accepted by qemu-img check and compare, {} bytes", report.size);
    check
}

#[test]
fn raw_with_patterns_converts_to_a_qcow2_qemu_accepts() {
    let dir = tempdir();
    let raw = create(dir.path(), "patterns.raw", "raw", "", "10487296");
    qemu_io(
        &raw,
        "raw",
        &[
            "write -P 0x11 0 1".to_owned(),
            "write -P 0x22 777 100000".to_owned(),
            "write -P 0x33 3145733 2097155".to_owned(),
            "write -P 0x44 10486272 1024".to_owned(),
        ],
    );
    let check = assert_accepted_by_qemu(&raw, "patterns");
    // Written: clusters 0-2 and 48-80 and the last one; the rest stays unallocated.
    let allocated = check["allocated-clusters"].as_u64().expect("allocated-clusters");
    assert!(allocated <= 40, "{allocated} clusters allocated: {check}");
}

#[test]
fn raw_of_odd_sizes_converts() {
    let dir = tempdir();
    for len in [0usize, 1, 1000, 65536, 70001] {
        let raw = dir.path().join(format!("odd{len}.raw"));
        let bytes: Vec<u8> = (0..len).map(|index| (index % 251) as u8 | 1).collect();
        std::fs::write(&raw, bytes).expect("write raw");
        assert_accepted_by_qemu(&raw, &format!("odd{len}"));
    }
}

#[test]
fn raw_spanning_several_l2_tables_converts() {
    // 1.2 GiB: three L1 entries of 512 MiB, the middle one left without an L2 table.
    let dir = tempdir();
    let raw = create(dir.path(), "large.raw", "raw", "", "1288490496");
    qemu_io(
        &raw,
        "raw",
        &[
            "write -P 0xa1 0 4096".to_owned(),
            "write -P 0xa2 536805376 65536".to_owned(),
            "write -P 0xa3 1288490000 496".to_owned(),
        ],
    );
    let check = assert_accepted_by_qemu(&raw, "large");
    assert_eq!(check["allocated-clusters"].as_u64(), Some(3), "{check}");
}

#[test]
fn raw_to_qcow2_refuses_a_short_source() {
    let mut out = std::io::Cursor::new(Vec::new());
    let err = raw_to_qcow2(&[1u8; 1000][..], 5000, &mut out).expect_err("source is short");
    assert!(err.to_string().contains("shorter"), "{err}");
}

//! Compressed import sources (`[import] decompress`) and web-download's `validation_data`
//! (Glint extensions of POST /v2/images/{id}/import), run by the in-process worker against a
//! local HTTP server; sources are compressed by the real gzip, xz, zstd, bzip2 and zip tools.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use glint_core::config::Config;
use serde_json::json;

use crate::image_data::{coreutils_digests, image_of, payload, qemu_image};
use crate::imports::{converting, finished_task, import, show, stage, staging_emptied, web_allowed};
use crate::support::web::{Reply, WebServer};
use crate::support::{TestApp, expect_error, on_every_database, store_listing};

on_every_database!(config = decompressing;
    web_download_of_each_compression_stores_the_decompressed_image,
    glance_direct_of_compressed_data_stores_the_decompressed_image,
);
on_every_database!(config = decompressing_and_converting; compressed_qcow2_sources_are_converted_to_raw);
on_every_database!(config = web_allowed;
    without_decompress_compressed_data_is_stored_as_it_is,
    web_download_with_wrong_validation_data_fails_and_requeues_and_right_data_succeeds,
);
on_every_database!(config = decompressing_with_a_small_cap; a_decompression_bomb_fails_the_import_and_leaves_nothing);

fn decompressing(config: &mut Config) {
    web_allowed(config);
    config.import.decompress = true;
}

fn decompressing_and_converting(config: &mut Config) {
    decompressing(config);
    converting(config);
}

fn decompressing_with_a_small_cap(config: &mut Config) {
    decompressing(config);
    config.images.image_size_cap = 16 << 20;
}

/// `data` through `tool` with `args` (stdin to stdout).
fn piped(tool: &str, args: &[&str], data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).expect("write"));
    let out = child.wait_with_output().expect("output");
    writer.join().expect("writer");
    assert!(out.status.success(), "{tool} {args:?}");
    out.stdout
}

/// `data` compressed by each tool, named by the file extension it would have.
fn compressed(data: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("gz", piped("gzip", &["-c"], data)),
        ("xz", piped("xz", &["-c", "-T1"], data)),
        ("zst", piped("zstd", &["-c", "-q"], data)),
        ("bz2", piped("bzip2", &["-c"], data)),
        // `zip - -`: the one member streamed, its sizes in a data descriptor after it.
        ("zip", piped("zip", &["-q", "-", "-"], data)),
    ]
}

async fn web_download_of_each_compression_stores_the_decompressed_image(app: TestApp) {
    let data = payload(3 << 20);
    let web = WebServer::start().await;
    for (extension, packed) in compressed(&data) {
        let url = web.route(&format!("/disk.raw.{extension}"), Reply::Bytes(packed));
        let id = image_of(&app, "raw", "bare").await;
        assert_eq!(import(&app, &id, json!({"method": {"name": "web-download", "uri": url}})).await.status(), 202);
        let task = finished_task(&app, &id).await;
        assert_eq!(task["status"], "success", "{extension}: {task}");
        let image = show(&app, &id).await;
        assert_eq!(image["size"].as_u64(), Some(data.len() as u64), "{extension}");
        let (md5, sha512) = coreutils_digests(&data);
        assert_eq!((image["checksum"].as_str(), image["os_hash_value"].as_str()), (Some(&*md5), Some(&*sha512)));
        let stored = app.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("body");
        assert!(stored.as_ref() == data.as_slice(), "{extension}: the stored bytes are the decompressed ones");
    }
    staging_emptied(&app).await;
}

async fn glance_direct_of_compressed_data_stores_the_decompressed_image(app: TestApp) {
    let data = qemu_image(&["-f", "qcow2"]);
    let id = image_of(&app, "qcow2", "bare").await;
    assert_eq!(stage(&app, &id, piped("xz", &["-c", "-T1"], &data)).await.status(), 204);
    assert_eq!(import(&app, &id, json!({"method": {"name": "glance-direct"}})).await.status(), 202);
    let task = finished_task(&app, &id).await;
    assert_eq!(task["status"], "success", "{task}");
    let image = show(&app, &id).await;
    assert_eq!(image["checksum"].as_str(), Some(coreutils_digests(&data).0.as_str()));
    assert_eq!((image["size"].as_u64(), image["virtual_size"].as_u64()), (Some(data.len() as u64), Some(10 << 20)));
    staging_emptied(&app).await;
}

async fn compressed_qcow2_sources_are_converted_to_raw(app: TestApp) {
    let qcow2 = qemu_image(&["-f", "qcow2"]);
    let raw_md5 = coreutils_digests(&vec![0u8; 10 << 20]).0;
    let web = WebServer::start().await;
    let url = web.route("/disk.qcow2.xz", Reply::Bytes(piped("xz", &["-c", "-T1"], &qcow2)));
    let by_web = image_of(&app, "qcow2", "bare").await;
    assert_eq!(import(&app, &by_web, json!({"method": {"name": "web-download", "uri": url}})).await.status(), 202);
    let by_stage = image_of(&app, "qcow2", "bare").await;
    assert_eq!(stage(&app, &by_stage, piped("gzip", &["-c"], &qcow2)).await.status(), 204);
    assert_eq!(import(&app, &by_stage, json!({"method": {"name": "glance-direct"}})).await.status(), 202);
    for id in [by_web, by_stage] {
        let task = finished_task(&app, &id).await;
        assert_eq!(task["status"], "success", "{task}");
        let image = show(&app, &id).await;
        assert_eq!(image["disk_format"], "raw", "{image}");
        assert_eq!(image["checksum"].as_str(), Some(raw_md5.as_str()));
        assert_eq!((image["size"].as_u64(), image["virtual_size"].as_u64()), (Some(10 << 20), Some(10 << 20)));
    }
    staging_emptied(&app).await;
}

async fn without_decompress_compressed_data_is_stored_as_it_is(app: TestApp) {
    let packed = piped("gzip", &["-c"], &payload(1 << 20));
    let web = WebServer::start().await;
    let url = web.route("/disk.raw.gz", Reply::Bytes(packed.clone()));
    let id = image_of(&app, "raw", "bare").await;
    assert_eq!(import(&app, &id, json!({"method": {"name": "web-download", "uri": url}})).await.status(), 202);
    assert_eq!(finished_task(&app, &id).await["status"], "success");
    let image = show(&app, &id).await;
    assert_eq!(image["size"].as_u64(), Some(packed.len() as u64));
    assert_eq!(image["checksum"].as_str(), Some(coreutils_digests(&packed).0.as_str()));
}

/// 1 GiB of zeros, xz-compressed (about 150 KiB), made once.
fn bomb() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| {
        let mut xz = Command::new("xz")
            .args(["-0", "-T1", "-c"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("xz");
        let mut stdin = xz.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || {
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..1024 {
                stdin.write_all(&zeros).expect("write");
            }
        });
        let out = xz.wait_with_output().expect("xz");
        writer.join().expect("writer");
        out.stdout
    })
}

async fn a_decompression_bomb_fails_the_import_and_leaves_nothing(app: TestApp) {
    let web = WebServer::start().await;
    let url = web.route("/bomb.raw.xz", Reply::Bytes(bomb().to_vec()));
    let id = image_of(&app, "raw", "bare").await;
    assert_eq!(import(&app, &id, json!({"method": {"name": "web-download", "uri": url}})).await.status(), 202);
    let task = finished_task(&app, &id).await;
    assert_eq!(task["status"], "failure");
    let message = task["message"].as_str().unwrap_or_default();
    assert!(message.contains("decompresses to more than 16777216 bytes"), "{message}");
    let image = show(&app, &id).await;
    assert_eq!(image["status"], "queued");
    assert!(image.get("os_glance_import_task").is_none());
    assert!(store_listing(&app).is_empty(), "{:?}", store_listing(&app));
    staging_emptied(&app).await;
    // Through the staging area (glance-direct of a compressed file): the same.
    let id = image_of(&app, "raw", "bare").await;
    assert_eq!(stage(&app, &id, bomb().to_vec()).await.status(), 204);
    assert_eq!(import(&app, &id, json!({"method": {"name": "glance-direct"}})).await.status(), 202);
    let task = finished_task(&app, &id).await;
    assert!(task["message"].as_str().unwrap_or_default().contains("decompresses to more than"), "{task}");
    assert_eq!(show(&app, &id).await["status"], "queued");
    assert!(store_listing(&app).is_empty());
    staging_emptied(&app).await;
}

fn sha256(data: &[u8]) -> String {
    let out = piped("sha256sum", &[], data);
    String::from_utf8(out).expect("utf-8").split_whitespace().next().expect("digest").to_owned()
}

async fn web_download_with_wrong_validation_data_fails_and_requeues_and_right_data_succeeds(app: TestApp) {
    let data = payload(2 << 20);
    let web = WebServer::start().await;
    let url = web.route("/disk.raw", Reply::Bytes(data.clone()));
    let id = image_of(&app, "raw", "bare").await;
    let with = |algo: &str, value: &str| {
        json!({"method": {"name": "web-download", "uri": url,
                          "validation_data": {"os_hash_algo": algo, "os_hash_value": value}}})
    };
    let message = expect_error(import(&app, &id, with("crc32", "00")).await, 400).await;
    assert!(message.contains("'crc32' is not one of"), "{message}");
    let message = expect_error(import(&app, &id, with("sha256", "xyz")).await, 400).await;
    assert!(message.contains("not a valid hexadecimal value"), "{message}");
    assert_eq!(show(&app, &id).await["status"], "queued");

    let wrong = "0".repeat(64);
    assert_eq!(import(&app, &id, with("sha256", &wrong)).await.status(), 202);
    let task = finished_task(&app, &id).await;
    assert_eq!(task["status"], "failure");
    let message = task["message"].as_str().unwrap_or_default();
    assert!(message.contains("does not match the validation_data") && message.contains(&wrong), "{message}");
    let image = show(&app, &id).await;
    assert_eq!(image["status"], "queued");
    assert!(image.get("os_glance_import_task").is_none());
    assert!(store_listing(&app).is_empty(), "{:?}", store_listing(&app));

    let (md5, sha512) = coreutils_digests(&data);
    for (algo, value) in [("sha256", sha256(&data)), ("sha512", sha512.to_uppercase()), ("md5", md5)] {
        let id = image_of(&app, "raw", "bare").await;
        assert_eq!(import(&app, &id, with(algo, &value)).await.status(), 202);
        let task = finished_task(&app, &id).await;
        assert_eq!(task["status"], "success", "{algo}: {task}");
        assert_eq!(show(&app, &id).await["status"], "active");
    }
}

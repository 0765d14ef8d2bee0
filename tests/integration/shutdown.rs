//! A SIGTERMed `glint serve`, the real binary: it stops accepting connections at once, answers
//! /healthcheck with 503 on the connections still open, lets the requests in flight finish until
//! `[server] shutdown_timeout`, and then cuts them, a cut upload's image going back to `queued`
//! with nothing kept. (A SIGTERMed worker handing its import over: `import_e2e`.)

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::server::Server;

const GIB: u64 = 1 << 30;

fn with_deadline(seconds: u64) -> Vec<(String, String)> {
    vec![("GLINT__SERVER__SHUTDOWN_TIMEOUT".to_owned(), seconds.to_string())]
}

/// Image `id`'s status in the database the stopped server left behind.
async fn status_in_database(server: &Server, id: &str) -> String {
    let url = format!("sqlite://{}?mode=ro", server.dir().join("glint.db").display());
    let db = Database::connect(url).await.expect("open the server's database");
    let sql = format!("SELECT status FROM images WHERE id = '{id}'");
    let rows = db.query_all_raw(Statement::from_string(DbBackend::Sqlite, sql)).await.expect("query");
    rows.first().map(|r| r.try_get::<String>("", "status").expect("status")).expect("the image row")
}

/// Waits (at most `within`) for the server to exit; how it did.
async fn exit_within(server: &mut Server, within: Duration) -> ExitStatus {
    let until = Instant::now() + within;
    loop {
        if let Some(status) = server.exit_status() {
            return status;
        }
        assert!(Instant::now() < until, "still running {within:?} after SIGTERM:\n{}", server.output());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The files in the server's filesystem store, partial ones included.
fn stored_files(server: &Server) -> Vec<(String, u64)> {
    let dir = server.dir().join("data/images");
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry"))
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map_or(0, |m| m.len())))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// One `GET path` on a kept-alive connection; the response, head and body.
async fn exchange(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: glint\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send the request");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let complete = |received: &[u8]| {
        let text = String::from_utf8_lossy(received);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let length = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        (body.len() >= length).then(|| text.clone().into_owned())
    };
    loop {
        if let Some(response) = complete(&received) {
            return response;
        }
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
        match read.expect("an answer within 5 s").expect("read") {
            0 => panic!("closed before a whole response: {:?}", String::from_utf8_lossy(&received)),
            n => received.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_1_gib_upload_cuts_it_at_the_deadline_and_leaves_the_image_queued_with_nothing_kept() {
    let mut server = Server::start_with(&with_deadline(2));
    let id = server.create_image().await;
    // 1 GiB announced and made up as it is sent, at about 25 MB/s: far from done at the deadline.
    const CHUNK: usize = 256 << 10;
    let body = futures_util::stream::unfold(0u64, |sent| async move {
        if sent >= GIB {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        Some((Ok::<_, std::io::Error>(vec![7u8; CHUNK]), sent + CHUNK as u64))
    });
    let upload = tokio::spawn(
        reqwest::Client::new()
            .put(format!("{}/v2/images/{id}/file", server.url()))
            .header("content-type", "application/octet-stream")
            .header("content-length", GIB)
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    let until = Instant::now() + Duration::from_secs(20);
    while !stored_files(&server).iter().any(|(name, len)| name.ends_with(".part") && *len >= 1 << 20) {
        assert!(
            Instant::now() < until,
            "the upload did not get going: {:?}\n{}",
            stored_files(&server),
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopped = Instant::now();
    server.terminate();
    let exit = exit_within(&mut server, Duration::from_secs(15)).await;
    let took = stopped.elapsed();
    assert!(exit.success(), "{exit}\n{}", server.output());
    // The upload had the whole deadline, and the clean-up (the image put back, its partial
    // file removed) took a moment more.
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(6), "exited {took:?} after SIGTERM");
    let answer = upload.await.expect("join");
    assert!(!matches!(&answer, Ok(r) if r.status().is_success()), "the cut upload was answered {answer:?}");
    assert_eq!(stored_files(&server), Vec::<(String, u64)>::new(), "partial data left behind");
    assert_eq!(status_in_database(&server, &id).await, "queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_server_refuses_new_connections_answers_503_to_healthchecks_and_finishes_requests_in_flight() {
    let mut server = Server::start_with(&with_deadline(30));
    let id = server.create_image().await;
    // An upload in flight whose body comes as the test sends it.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(1);
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
    let upload = tokio::spawn(
        reqwest::Client::new()
            .put(format!("{}/v2/images/{id}/file", server.url()))
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    tx.send(Ok(vec![1u8; 4096])).await.expect("send");
    let until = Instant::now() + Duration::from_secs(10);
    while server.image_status(&id).await != "saving" {
        assert!(Instant::now() < until, "the upload did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Opened before the signal and kept alive, as a load balancer's health checks do.
    let mut kept = TcpStream::connect(server.addr()).await.expect("connect");
    let before = exchange(&mut kept, "/healthcheck").await;
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");

    let stopped = Instant::now();
    server.terminate();
    while TcpStream::connect(server.addr()).await.is_ok() {
        assert!(stopped.elapsed() < Duration::from_secs(5), "new connections still accepted 5 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let draining = exchange(&mut kept, "/healthcheck").await;
    assert!(draining.starts_with("HTTP/1.1 503"), "{draining}");
    assert!(draining.ends_with("SHUTTING DOWN"), "{draining}");
    assert!(draining.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{draining}");

    // The request in flight runs to its end, after which the server has nothing to wait for.
    for _ in 0..3 {
        tx.send(Ok(vec![1u8; 4096])).await.expect("send");
    }
    drop(tx);
    let response = upload.await.expect("join").expect("the upload in flight is answered");
    assert_eq!(response.status(), 204);
    let exit = exit_within(&mut server, Duration::from_secs(10)).await;
    assert!(exit.success(), "{exit}\n{}", server.output());
    assert!(stopped.elapsed() < Duration::from_secs(10), "the 30 s deadline was waited out: {:?}", stopped.elapsed());
    assert_eq!(status_in_database(&server, &id).await, "active");
}

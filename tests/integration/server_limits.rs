//! The `[server]` limits of the real binary on loopback, each bounded in time: half-open
//! connections, oversized headers, idle keep-alive connections and upload bodies that stop.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::server::Server;

fn limits(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (format!("GLINT__SERVER__{}", k.to_uppercase()), (*v).to_owned())).collect()
}

/// Reads until the server closes the connection (or `within` passes); what it sent, if it did.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(received),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

async fn healthcheck_within(server: &Server, within: Duration) -> Duration {
    let started = Instant::now();
    let client = reqwest::Client::builder().timeout(within).build().expect("client");
    let response = client.get(format!("{}/healthcheck", server.url())).send().await.expect("healthcheck answered");
    assert_eq!(response.status(), 200);
    started.elapsed()
}

/// Opens `n` connections that send half a request line and then nothing.
async fn half_open(server: &Server, n: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        stream.write_all(b"GET /v2/ima").await.expect("half a request line");
        streams.push(stream);
    }
    streams
}

#[tokio::test]
async fn thousands_of_half_open_connections_do_not_stop_a_normal_client_and_are_closed() {
    let server = Server::start_with(&limits(&[("header_read_timeout", "3")]));
    let mut idle = half_open(&server, 2000).await;
    let waited = healthcheck_within(&server, Duration::from_secs(5)).await;
    assert!(waited < Duration::from_secs(2), "a normal client waited {waited:?}");
    let closing = idle.iter_mut().map(|stream| read_until_closed(stream, Duration::from_secs(10)));
    let still_open = futures_util::future::join_all(closing).await.iter().filter(|r| r.is_none()).count();
    assert_eq!(still_open, 0, "half-open connections outlived the header-read timeout");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let server = Server::start_with(&limits(&[("header_read_timeout", "1"), ("max_connections", "20")]));
    let _held = half_open(&server, 20).await;
    let waited = healthcheck_within(&server, Duration::from_secs(10)).await;
    assert!(waited >= Duration::from_millis(500), "served at once ({waited:?}) although every slot was taken");
}

async fn status_of_request_with_header(server: &Server, header_len: usize) -> String {
    let stream = TcpStream::connect(server.addr()).await.expect("connect");
    let (mut reading, mut writing) = stream.into_split();
    let request = format!("GET /healthcheck HTTP/1.1\r\nHost: glint\r\nX-Padding: {}\r\n\r\n", "a".repeat(header_len));
    // The server answers and closes before it has read everything: read while writing, or
    // the reset its close sends could discard the answer.
    let writer = tokio::spawn(async move {
        let _ = writing.write_all(request.as_bytes()).await;
        writing
    });
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), reading.read(&mut byte)).await {
            Ok(Ok(1)) => line.push(byte[0]),
            _ => break,
        }
    }
    drop(writer);
    String::from_utf8_lossy(&line).trim_end().to_owned()
}

#[tokio::test]
async fn an_oversized_header_gets_431_and_a_large_one_within_the_limit_is_served() {
    let server = Server::start_with(&[]);
    assert_eq!(
        status_of_request_with_header(&server, 100 * 1024).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    let within = status_of_request_with_header(&server, 12 * 1024).await;
    assert!(within.starts_with("HTTP/1.1 200"), "{within}");
}

#[tokio::test]
async fn an_idle_keepalive_connection_is_closed_after_the_keepalive_timeout() {
    let server = Server::start_with(&limits(&[("keepalive_timeout", "1")]));
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    stream.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: glint\r\n\r\n").await.expect("request");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.expect("response");
    assert_eq!(&head, b"HTTP/1.1 200");
    let started = Instant::now();
    assert!(read_until_closed(&mut stream, Duration::from_secs(5)).await.is_some(), "still open after 5 s");
    assert!(started.elapsed() >= Duration::from_millis(500), "closed at once, not after being idle");
}

fn files_in(server: &Server, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(server.dir().join(dir))
        .map(|entries| entries.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Sends the head of a 1 MiB `PUT {path}` and 64 KiB of its body, then nothing; returns the
/// status line of the answer.
async fn stalled_put(server: &Server, path: &str) -> String {
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: glint\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        1 << 20
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(&[5u8; 64 * 1024]).await.expect("the first part of the body");
    let response = read_until_closed(&mut stream, Duration::from_secs(10)).await.expect("an answer within 10 s");
    String::from_utf8_lossy(&response).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_upload_body_that_stops_sending_times_out_and_the_image_is_queued_with_nothing_kept() {
    let server = Server::start_with(&limits(&[("body_idle_timeout", "1")]));
    let id = server.create_image().await;
    assert_eq!(stalled_put(&server, &format!("/v2/images/{id}/file")).await, "HTTP/1.1 408 Request Timeout");
    assert_eq!(server.image_status(&id).await, "queued");
    assert_eq!(files_in(&server, "data/images"), Vec::<String>::new(), "partial data left behind");
}

#[tokio::test]
async fn a_stage_body_that_stops_sending_times_out_and_the_image_is_queued_with_nothing_staged() {
    let server = Server::start_with(&limits(&[("body_idle_timeout", "1")]));
    let id = server.create_image().await;
    assert_eq!(stalled_put(&server, &format!("/v2/images/{id}/stage")).await, "HTTP/1.1 408 Request Timeout");
    assert_eq!(server.image_status(&id).await, "queued");
    assert_eq!(files_in(&server, "data/staging"), Vec::<String>::new(), "partial data left behind");
}

#[tokio::test]
async fn an_upload_that_keeps_sending_slowly_is_never_cut() {
    let server = Server::start_with(&limits(&[("body_idle_timeout", "1"), ("keepalive_timeout", "1")]));
    let id = server.create_image().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(1);
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
    let upload = tokio::spawn(
        reqwest::Client::new()
            .put(format!("{}/v2/images/{id}/file", server.url()))
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    // 3 s in all, well past both timeouts, but never silent for long.
    for _ in 0..10 {
        tx.send(Ok(vec![9u8; 4096])).await.expect("send");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(tx);
    assert_eq!(upload.await.expect("join").expect("upload").status(), 204);
    assert_eq!(server.image_status(&id).await, "active");
}

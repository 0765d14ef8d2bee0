//! A loopback HTTP server with canned answers by path: the far end of web-download tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server answers for one path.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with these bytes and their Content-Length.
    Bytes(Vec<u8>),
    /// This status with a short body.
    Status(u16),
    /// 302 to this URL.
    Redirect(String),
    /// Headers announcing this many bytes, then silence.
    Stall(u64),
    /// Headers announcing this many bytes, then one byte every 200 ms.
    Trickle(u64),
}

/// The server; it stops with the test's runtime.
#[derive(Clone)]
pub struct WebServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    connections: Arc<AtomicUsize>,
}

impl WebServer {
    /// Starts serving on a free loopback port.
    pub async fn start() -> WebServer {
        Self::start_on("127.0.0.1").await
    }

    /// Starts serving on a free port of loopback address `ip` (127.0.0.2 is another host as
    /// far as a URL filter is concerned).
    pub async fn start_on(ip: &str) -> WebServer {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let shared = routes.clone();
        let connections: Arc<AtomicUsize> = Arc::default();
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer(socket, shared.clone()));
            }
        });
        WebServer { base, routes, connections }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port")
    }

    /// How many connections it has accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Answers `path` with `reply` from now on; returns the full URL.
    pub fn route(&self, path: &str, reply: Reply) -> String {
        self.routes.lock().expect("routes").insert(path.to_owned(), reply);
        format!("{}{path}", self.base)
    }
}

async fn answer(mut socket: TcpStream, routes: Arc<Mutex<HashMap<String, Reply>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let range = requested_range(&text);
    let reply = routes.lock().expect("routes").get(&path).cloned().unwrap_or(Reply::Status(404));
    let _ = match reply {
        Reply::Bytes(body) if let Some((start, end)) = range.filter(|(s, e)| s <= e && (*e as usize) < body.len()) => {
            let part = &body[start as usize..=end as usize];
            let header = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{}\r\nConnection: close\r\n\r\n",
                part.len(),
                body.len()
            );
            async {
                socket.write_all(header.as_bytes()).await?;
                socket.write_all(part).await
            }
            .await
        }
        Reply::Bytes(body) => {
            let header = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            async {
                socket.write_all(header.as_bytes()).await?;
                socket.write_all(&body).await
            }
            .await
        }
        Reply::Status(code) => {
            let response = format!("HTTP/1.1 {code} Canned\r\nContent-Length: 6\r\nConnection: close\r\n\r\ncanned");
            socket.write_all(response.as_bytes()).await
        }
        Reply::Redirect(to) => {
            let response =
                format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            socket.write_all(response.as_bytes()).await
        }
        Reply::Trickle(len) => {
            let header = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
            let mut sent = socket.write_all(header.as_bytes()).await;
            for _ in 0..len {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                sent = socket.write_all(b"x").await;
                if sent.is_err() {
                    break;
                }
            }
            sent
        }
        Reply::Stall(len) => {
            let header = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
            let _ = socket.write_all(header.as_bytes()).await;
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            Ok(())
        }
    };
    let _ = socket.shutdown().await;
}

/// The `Range: bytes=a-b` of a request head, if any.
fn requested_range(head: &str) -> Option<(u64, u64)> {
    let line = head.lines().find(|l| l.to_ascii_lowercase().starts_with("range:"))?;
    let (start, end) = line.split_once('=')?.1.trim().split_once('-')?;
    Some((start.parse().ok()?, end.parse().ok()?))
}

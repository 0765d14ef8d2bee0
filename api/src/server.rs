//! The HTTP/1.1 server under the API (Glance speaks nothing else): the `[server]` limits that
//! keep slow or hostile clients from tying it up, and a drain of open connections on shutdown.
//!
//! hyper enforces the header-read timeout (from the moment a connection waits for a request)
//! and the header size (its read buffer; 431 beyond it). A connection on which no byte has
//! moved for the keep-alive timeout is shut down gracefully: at once when it sits between
//! requests or in the middle of a request head, after its response when a handler is still
//! working. Connections beyond the limit wait in the listen backlog until one closes.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use glint_core::config::ServerConfig;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// The `[server]` limits, as the server applies them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    header_read_timeout: Duration,
    max_header_size: usize,
    keepalive_timeout: Duration,
    max_connections: u32,
}

impl Limits {
    pub(crate) fn from_config(server: &ServerConfig) -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(server.header_read_timeout),
            // hyper's smallest read buffer; the configuration refuses less anyway.
            max_header_size: server.max_header_size.max(8192),
            keepalive_timeout: Duration::from_secs(server.keepalive_timeout),
            max_connections: u32::try_from(server.max_connections).unwrap_or(u32::MAX).max(1),
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves; then stops accepting
/// and waits for the open connections to finish their requests.
pub(crate) async fn run<S>(
    app: S,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (drain, draining) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_size);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors or memory: give the open connections a moment
                    // to finish instead of spinning on accept.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // The peer decides whether its X-Forwarded-* headers count (`forwarded`).
        let service = app.clone().map_request(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            request
        });
        let connection = serve_connection(builder.clone(), stream, service, limits.keepalive_timeout, draining.clone());
        tokio::spawn(holding(slot, connection));
    }
    drop(listener);
    let _ = drain.send(true);
    // Every connection holds a slot until it ends: with all slots back, all have drained.
    let _ = slots.acquire_many(limits.max_connections).await;
    Ok(())
}

async fn holding(_slot: OwnedSemaphorePermit, connection: impl Future<Output = ()>) {
    connection.await;
}

async fn serve_connection<S>(
    builder: http1::Builder,
    stream: TcpStream,
    service: S,
    keepalive_timeout: Duration,
    mut draining: watch::Receiver<bool>,
) where
    S: tower::Service<hyper::Request<Incoming>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched { io: stream, activity: activity.clone() });
    let connection = builder.serve_connection(io, TowerToHyperService::new(service));
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(err) = ended {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                return;
            }
            () = activity.silent_for(keepalive_timeout), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = draining.wait_for(|d| *d), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// When a connection last moved a byte.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity { opened: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once no byte has moved for `limit`.
    async fn silent_for(&self, limit: Duration) {
        loop {
            let deadline = self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A socket that notes its reads and writes in its [`Activity`].
struct Watched {
    io: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

//! The HTTP/1.1 server under the API (Glance speaks nothing else): the `[server]` limits that
//! keep slow or hostile clients from tying it up, and the drain on shutdown.
//!
//! hyper enforces the header-read timeout (from the moment a connection waits for a request)
//! and the header size (431 beyond it). A connection on which no byte has
//! moved for the keep-alive timeout is shut down gracefully: at once when it sits between
//! requests or in the middle of a request head, after its response when a handler is still
//! working. Connections beyond the limit wait in the listen backlog until one closes.
//!
//! Shutdown: the listener is closed at once, so new clients are refused (what a proxy fails
//! over on). Connections already open stay open while requests are in flight; a request that
//! arrives on one is still answered, with `Connection: close`, and /healthcheck answers 503
//! there, so a load balancer polling over a kept-alive connection takes the node out. Once no
//! request is in flight, or at `shutdown_timeout`, every connection is cut: a handler still
//! running is dropped and its request body fails, so an upload puts its image back to `queued`
//! and removes its partial data, in a task of its own that the server waits for.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use glint_core::config::ServerConfig;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};
use tower::ServiceExt;

/// How long a stopping server waits, after cutting its connections, for the uploads they
/// carried to put their images back and remove their partial data.
const CLEANUP_GRACE: Duration = Duration::from_secs(10);

/// The `[server]` limits, as the server applies them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    header_read_timeout: Duration,
    max_header_size: usize,
    keepalive_timeout: Duration,
    max_connections: u32,
    shutdown_timeout: Duration,
}

impl Limits {
    pub(crate) fn from_config(server: &ServerConfig) -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(server.header_read_timeout),
            // The configuration refuses less anyway.
            max_header_size: server.max_header_size.max(8192),
            keepalive_timeout: Duration::from_secs(server.keepalive_timeout),
            max_connections: u32::try_from(server.max_connections).unwrap_or(u32::MAX).max(1),
            shutdown_timeout: Duration::from_secs(server.shutdown_timeout),
        }
    }
}

/// hyper's largest read buffer, so also its largest request body chunk: an upload read 16 KiB at
/// a time (the header limit, when that was the buffer's) cost a syscall and a hand-off between
/// the connection and the handler per 16 KiB. The buffer grows to this only while reads fill it.
const READ_BUFFER: usize = 1 << 20;

/// The API's shutdown as the handlers see it: whether the server is draining, and the work it
/// waits for before it returns (requests in flight, and what uploads do once cut).
#[derive(Clone, Default)]
pub(crate) struct Drain {
    draining: Arc<AtomicBool>,
    work: TaskTracker,
}

impl Drain {
    /// Whether the server has stopped accepting connections and is finishing its requests.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Runs `work` in a task of its own, which the server waits for before it returns.
    pub(crate) fn spawn<F>(&self, work: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.work.spawn(work)
    }

    fn begin(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.work.close();
    }

    /// `response` holding `request`'s place in the drain until its last byte is sent; the
    /// connection ends with it once draining.
    fn finishing(&self, response: Response, request: TaskTrackerToken) -> Response {
        let (mut parts, body) = response.into_parts();
        if self.is_draining() {
            parts.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Response::from_parts(parts, Body::new(Tracked { body, _request: request }))
    }
}

/// A response body that counts as its request in flight until it is sent or dropped.
struct Tracked {
    body: Body,
    _request: TaskTrackerToken,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves; then drains (see the
/// module documentation) and returns once the cut requests have cleaned up.
pub(crate) async fn run<S>(
    app: S,
    listener: TcpListener,
    limits: Limits,
    drain: Drain,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (cut, cutting) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_size)
        .max_buf_size(READ_BUFFER);
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
        let (app, drain) = (app.clone(), drain.clone());
        let service = tower::service_fn(move |request: hyper::Request<Incoming>| {
            // In flight from its head to the last byte of its response.
            let token = drain.work.token();
            let (app, drain) = (app.clone(), drain.clone());
            let mut request = request.map(Body::new);
            // The peer decides whether its X-Forwarded-* headers count (`forwarded`).
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            async move {
                let response = app.oneshot(request).await?;
                Ok::<_, Infallible>(drain.finishing(response, token))
            }
        });
        let connection = serve_connection(builder.clone(), stream, service, limits.keepalive_timeout, cutting.clone());
        tokio::spawn(holding(slot, connection));
    }
    // Draining before the listener closes: a client refused a connection can count on 503s
    // from /healthcheck on the connections still open.
    drain.begin();
    drop(listener);
    let in_flight = drain.work.len();
    if in_flight > 0 {
        tracing::info!(
            requests = in_flight,
            deadline_s = limits.shutdown_timeout.as_secs(),
            "finishing requests in flight"
        );
    }
    if tokio::time::timeout(limits.shutdown_timeout, drain.work.wait()).await.is_err() {
        tracing::warn!(requests = drain.work.len(), "requests still running at the shutdown deadline: cutting them");
    }
    let _ = cut.send(true);
    // Every connection holds a slot until it ends: with all slots back, all are gone.
    let _ = slots.acquire_many(limits.max_connections).await;
    if tokio::time::timeout(CLEANUP_GRACE, drain.work.wait()).await.is_err() {
        tracing::error!(tasks = drain.work.len(), "cut uploads did not finish cleaning up; stopping anyway");
    }
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
    mut cutting: watch::Receiver<bool>,
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
            // Dropping the connection drops a handler still running and fails its request body.
            _ = cutting.wait_for(|cut| *cut) => return,
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

//! Image data request bodies: counted as they arrive, and cut off once the client stops sending.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use bytes::Bytes;
use futures_util::Stream;
use glint_core::metrics::{self, DataFlow};
use glint_core::store::ByteStream;
use tokio::time::{Instant, Sleep};

/// `body` as image data of `flow`, failing with [`io::ErrorKind::TimedOut`] when no byte has
/// arrived for `idle`. Only silence counts: a body that keeps sending at any speed runs on.
pub(crate) fn image_data(body: Body, flow: DataFlow, idle: Duration) -> ByteStream {
    Box::pin(Watched {
        body: body.into_data_stream(),
        silence: Box::pin(tokio::time::sleep(idle)),
        idle,
        flow,
        ended: false,
    })
}

struct Watched {
    body: BodyDataStream,
    silence: Pin<Box<Sleep>>,
    idle: Duration,
    flow: DataFlow,
    ended: bool,
}

impl Stream for Watched {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.body).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                metrics::data_bytes(this.flow, chunk.len() as u64);
                this.silence.as_mut().reset(Instant::now() + this.idle);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.ended = true;
                Poll::Ready(Some(Err(io::Error::other(err))))
            }
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => match this.silence.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.ended = true;
                    let message = format!("no data received for {} s", this.idle.as_secs());
                    Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::TimedOut, message))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// `data` (a download), counted as it is sent.
pub(crate) fn counted_download(data: ByteStream) -> ByteStream {
    use futures_util::TryStreamExt;
    Box::pin(data.inspect_ok(|chunk| metrics::data_bytes(DataFlow::Downloaded, chunk.len() as u64)))
}

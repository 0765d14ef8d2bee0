//! Checks on downloaded bytes: a web-download's `validation_data` (a Glint extension) and a
//! glance-download's remote size and digests. The bytes are hashed as they pass, on a
//! blocking thread, and a mismatch fails the stream at its end, before the store or the
//! staging area keeps anything.

use bytes::Bytes;
use futures_util::StreamExt;
use glint_core::image::data::{Hasher, Observer};
use glint_core::image::location_import::Validation;
use glint_core::store::ByteStream;
use tokio::sync::mpsc;

use crate::FlowError;

/// Chunks waiting for the hashing thread.
const CHANNEL_DEPTH: usize = 4;

/// `body` as it is, ending in an error (a [`FlowError::Abort`] inside the `io::Error`) instead
/// of its end when its `expected.algo` digest is not `expected.value`, which came from
/// `vouched_by` (named in the message).
pub(super) fn verified(body: ByteStream, expected: Validation, vouched_by: &'static str) -> ByteStream {
    let Some(mut hasher) = Hasher::of(&expected.algo) else {
        // parse() admits only the algorithms Hasher knows.
        let refused = mismatch(format!("Unknown hash algorithm {}", expected.algo));
        return Box::pin(futures_util::stream::once(async move { Err(refused) }));
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let hashing = tokio::task::spawn_blocking(move || {
        while let Some(chunk) = rx.blocking_recv() {
            hasher.observe(&chunk);
        }
        hasher.finish()
    });
    let state = Some((body, tx, hashing, expected));
    Box::pin(futures_util::stream::unfold(state, move |state| async move {
        let (mut body, tx, hashing, expected) = state?;
        match body.next().await {
            Some(Ok(chunk)) => {
                if tx.send(chunk.clone()).await.is_err() {
                    return Some((Err(std::io::Error::other("the hashing thread stopped")), None));
                }
                Some((Ok(chunk), Some((body, tx, hashing, expected))))
            }
            Some(Err(err)) => Some((Err(err), None)),
            None => {
                drop(tx);
                let actual = match hashing.await {
                    Ok(actual) => actual,
                    Err(err) => return Some((Err(std::io::Error::other(err)), None)),
                };
                if actual == expected.value {
                    return None;
                }
                let message = format!(
                    "The downloaded data does not match {vouched_by}: its {} is {actual}, not {}",
                    expected.algo, expected.value
                );
                Some((Err(mismatch(message)), None))
            }
        }
    }))
}

/// `body` as it is, failing (an abort) as soon as it passes `expected` bytes, or at its end
/// if it has fewer: Glance's check of a glance-download against the remote image's size.
pub(super) fn sized(body: ByteStream, expected: u64) -> ByteStream {
    let wrong = move |seen: u64| {
        mismatch(format!("The downloaded data has {seen} bytes where the remote image has {expected}"))
    };
    Box::pin(futures_util::stream::unfold(Some((body, 0u64)), move |state| async move {
        let (mut body, seen) = state?;
        match body.next().await {
            Some(Ok(chunk)) => {
                let seen = seen + chunk.len() as u64;
                if seen > expected {
                    return Some((Err(wrong(seen)), None));
                }
                Some((Ok(chunk), Some((body, seen))))
            }
            Some(Err(err)) => Some((Err(err), None)),
            None if seen == expected => None,
            None => Some((Err(wrong(seen)), None)),
        }
    }))
}

/// A data error no retry can cure: the flow fails with `message`.
pub(super) fn mismatch(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, FlowError::Abort(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[&'static [u8]]) -> ByteStream {
        Box::pin(futures_util::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>()))
    }

    fn sha256_of_hello_world() -> Validation {
        Validation {
            algo: "sha256".into(),
            value: "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9".into(),
        }
    }

    #[tokio::test]
    async fn matching_data_passes_unchanged() {
        let out: Vec<_> = verified(body(&[b"hello ", b"world"]), sha256_of_hello_world(), "it").collect().await;
        let bytes: Vec<u8> = out.into_iter().flat_map(|c| c.expect("chunk").to_vec()).collect();
        assert_eq!(bytes, b"hello world");
    }

    #[tokio::test]
    async fn a_mismatch_ends_the_stream_with_an_abort() {
        let out: Vec<_> =
            verified(body(&[b"hello ", b"there"]), sha256_of_hello_world(), "the validation_data").collect().await;
        let err = out.into_iter().last().expect("items").expect_err("mismatch");
        assert!(abort_message(err).contains("does not match the validation_data"));
    }

    fn abort_message(err: std::io::Error) -> String {
        match *err.into_inner().expect("inner").downcast::<FlowError>().expect("a FlowError") {
            FlowError::Abort(message) => message,
            other => panic!("not an abort: {other}"),
        }
    }

    #[tokio::test]
    async fn a_body_of_another_size_than_expected_is_cut_with_an_abort() {
        let whole: Vec<_> = sized(body(&[b"hello ", b"world"]), 11).collect().await;
        assert!(whole.iter().all(Result::is_ok) && whole.len() == 2);
        let short = sized(body(&[b"hello "]), 11).collect::<Vec<_>>().await.pop().expect("items");
        assert_eq!(
            abort_message(short.expect_err("short")),
            "The downloaded data has 6 bytes where the remote image has 11"
        );
        let mut long: Vec<_> = sized(body(&[b"hello ", b"world", b"!"]), 6).collect().await;
        assert_eq!(long.len(), 2, "cut at the chunk that passes the size");
        assert!(abort_message(long.pop().expect("items").expect_err("long")).contains("has 11 bytes"));
    }
}

//! Bounded captures out of a stream that can never seek: a byte range at a known offset, and
//! the last bytes of the stream.

use std::collections::VecDeque;

/// The bytes `[offset, offset + len)` of the stream, filled in as chunks pass by.
///
/// A region declared after the stream has passed its start can never be filled: it stays
/// incomplete, and the inspector that needed it reports the offset as unreachable.
#[derive(Debug)]
pub(crate) struct Region {
    offset: u64,
    len: usize,
    data: Vec<u8>,
}

impl Region {
    pub(crate) fn new(offset: u64, len: usize) -> Self {
        Self { offset, len, data: Vec::new() }
    }

    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// One past the last byte of the region, saturated so a hostile offset cannot overflow.
    pub(crate) fn end(&self) -> u64 {
        self.offset.saturating_add(self.len as u64)
    }

    pub(crate) fn data(&self) -> &[u8] {
        &self.data
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.data.len() >= self.len
    }

    /// The stream offset of the next byte this region lacks, if it can still get it from a
    /// stream now at `position` (one that has gone past it never can).
    pub(crate) fn wanted(&self, position: u64) -> Option<u64> {
        if self.is_complete() {
            return None;
        }
        self.offset.checked_add(self.data.len() as u64).filter(|next| *next >= position)
    }

    /// Takes from `chunk`, which starts at stream offset `start`, the bytes this region still
    /// lacks.
    pub(crate) fn capture(&mut self, chunk: &[u8], start: u64) {
        let missing = self.len.saturating_sub(self.data.len());
        if missing == 0 {
            return;
        }
        let Some(next) = self.offset.checked_add(self.data.len() as u64) else {
            return;
        };
        let Some(skip) = next.checked_sub(start).and_then(|skip| usize::try_from(skip).ok()) else {
            return;
        };
        if let Some(available) = chunk.get(skip..) {
            self.data.extend(available.iter().take(missing));
        }
    }
}

/// The last `capacity` bytes of the stream (a ring buffer, so memory stays constant).
#[derive(Debug)]
pub(crate) struct Tail {
    capacity: usize,
    bytes: VecDeque<u8>,
}

impl Tail {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity, bytes: VecDeque::with_capacity(capacity) }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        let fresh = chunk.get(chunk.len().saturating_sub(self.capacity)..).unwrap_or_default();
        let overflow = (self.bytes.len() + fresh.len()).saturating_sub(self.capacity);
        self.bytes.drain(..overflow.min(self.bytes.len()));
        self.bytes.extend(fresh);
    }

    /// Forgets what was pushed: the stream skipped bytes, so these are no longer its last.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
    }

    pub(crate) fn contents(&mut self) -> &[u8] {
        self.bytes.make_contiguous()
    }
}

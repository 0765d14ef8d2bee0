//! Inspection of raw output as it is written, so that the converted disk is vetted without
//! being read back: the sink in front of the file feeds the inspector every byte of the disk
//! in order, the zeros it never writes included.

use super::pipeline::Sink;
use crate::error::FormatError;
use crate::inspector::Inspector;
use crate::report::Report;

/// Zeros fed for the ranges nothing was written to; the inspector only keeps bounded captures,
/// so a large hole costs a call per MiB.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// A sink that inspects the disk written through it.
pub(crate) struct Inspecting<S> {
    inner: S,
    inspector: Inspector,
}

impl<S: Sink> Inspecting<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner, inspector: Inspector::new() }
    }

    /// Feeds zeros up to guest offset `to`.
    fn zeros_until(&mut self, to: u64) {
        while self.inspector.bytes_read() < to {
            let missing = to - self.inspector.bytes_read();
            let take = usize::try_from(missing).unwrap_or(ZEROS.len()).min(ZEROS.len());
            self.inspector.feed(ZEROS.get(..take).unwrap_or_default());
        }
    }
}

impl<S: Sink> Sink for Inspecting<S> {
    type Output = (S::Output, Report);

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FormatError> {
        self.zeros_until(offset);
        self.inspector.feed(data);
        self.inner.write_at(offset, data)
    }

    fn finish(mut self, len: u64) -> Result<Self::Output, FormatError> {
        self.zeros_until(len);
        let output = self.inner.finish(len)?;
        Ok((output, self.inspector.finish()))
    }
}

//! Where an image's structures lie in its file, checked once for all readers: every header,
//! table and block a reader will use is recorded, and none may leave the file or share a
//! byte with another (a block over a table would let a guest write rewrite the image's own
//! structure; two table entries naming one block would expand a small file into a huge disk).

use std::io::{Read, Seek};

use super::pipeline::Source;
use crate::error::FormatError;

/// Named byte ranges of the file; [`Layout::seal`] refuses overlaps, then [`Layout::check`]
/// refuses data over any of them.
#[derive(Default)]
pub(crate) struct Layout {
    ranges: Vec<(u64, u64, &'static str)>,
    /// Bytes recorded so far: more than the file holds means two ranges overlap, which bounds
    /// the memory held whatever the tables say.
    claimed: u64,
}

impl Layout {
    /// Records `[offset, offset + len)`, named `what`, which must lie inside the file.
    pub(crate) fn add<R>(
        &mut self,
        source: &Source<R>,
        what: &'static str,
        offset: u64,
        len: u64,
    ) -> Result<(), FormatError>
    where
        R: Read + Seek,
    {
        source.check(what, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        self.claimed = self.claimed.saturating_add(len);
        if self.claimed > source.len() {
            return Err(source.malformed(format!(
                "the headers, tables and blocks claim more bytes than the file holds ({}): some overlap",
                source.len()
            )));
        }
        self.ranges.push((offset, offset + len, what));
        Ok(())
    }

    /// Sorts the ranges and refuses any two that overlap.
    pub(crate) fn seal<R>(&mut self, source: &Source<R>) -> Result<(), FormatError>
    where
        R: Read + Seek,
    {
        self.ranges.sort_unstable_by_key(|(start, _, _)| *start);
        for pair in self.ranges.windows(2) {
            if let [(first, first_end, first_name), (second, _, second_name)] = pair
                && first_end > second
            {
                return Err(source.malformed(format!(
                    "the {first_name} at offset {first:#x} overlaps the {second_name} at offset {second:#x}"
                )));
            }
        }
        Ok(())
    }

    /// Refuses `[offset, offset + len)` (named `what`) if it overlaps a recorded range; the
    /// layout must be sealed.
    pub(crate) fn check<R>(&self, source: &Source<R>, what: &str, offset: u64, len: u64) -> Result<(), FormatError>
    where
        R: Read + Seek,
    {
        if len == 0 {
            return Ok(());
        }
        let end = offset.saturating_add(len);
        // Sorted and disjoint: only the last range starting before `end` can overlap.
        let at = self.ranges.partition_point(|(start, _, _)| *start < end);
        if let Some((start, stop, name)) = at.checked_sub(1).and_then(|index| self.ranges.get(index))
            && *stop > offset
        {
            return Err(
                source.malformed(format!("{what} at offset {offset:#x} overlaps the {name} at offset {start:#x}"))
            );
        }
        Ok(())
    }
}

//! Writing qcow2 front to back, for a destination that cannot seek (an import's store).
//!
//! A qcow2 image starts with its header and L1 table, which point at everything after them,
//! so the whole layout is planned before the first byte goes out, from the clusters the source
//! puts data in ([`super::pipeline::map_clusters`]). The layout is the one [`super::qcow2_write`]
//! produces: header, L1 table, each guest range's data clusters followed by its L2 table,
//! then the refcount blocks and table, every cluster used once (refcount 1, COPIED flags).
//! A planned cluster whose data turns out to be zeros (a compressed cluster of zeros) is still
//! written, as zeros, since the tables before it already point at it.

use std::ops::Range;

use super::RawStream;
use super::pipeline::Sink;
use super::qcow2_write::{CLUSTER, COPIED, L2_ENTRIES, Refcounts, check_size, header, put_be64};
use super::sparse::is_zero;
use crate::error::FormatError;
use crate::format::Format;

/// The qcow2 image of a disk whose data lies in the planned guest clusters, sent to `out` as it
/// is written.
pub(crate) struct Qcow2Stream<'a, S> {
    out: &'a mut S,
    virtual_size: u64,
    /// Guest clusters that get a data cluster: merged ranges of indexes, in order.
    planned: Vec<Range<u64>>,
    /// The next planned cluster not sent yet: an index into `planned`, and the cluster.
    cursor: (usize, u64),
    /// Clusters of the file sent so far.
    sent: u64,
    /// Clusters the plan says the file has before its refcounts.
    used: u64,
    /// The L1 index whose L2 table is being filled, and the table.
    l2_index: Option<u64>,
    l2: Vec<u8>,
    /// The guest cluster being gathered, if any, and its bytes.
    gathering: Option<u64>,
    cluster: Vec<u8>,
}

impl<'a, S: RawStream> Qcow2Stream<'a, S> {
    /// Plans the image of a disk of `virtual_size` bytes (whole sectors) with data in the
    /// guest clusters `planned`, and sends its header and L1 table.
    pub(crate) fn new(
        out: &'a mut S,
        virtual_size: u64,
        planned: Vec<Range<u64>>,
        from: Format,
    ) -> Result<Self, FormatError> {
        let l1_clusters = check_size(virtual_size, from)?;
        let clusters = virtual_size.div_ceil(CLUSTER);
        if planned.last().is_some_and(|last| last.end > clusters) {
            return Err(write_error(format!("data is mapped past the disk size {virtual_size}")));
        }
        let mut l1 = vec![0u8; usize::try_from(l1_clusters * CLUSTER).unwrap_or(0)];
        let mut next_free = 1 + l1_clusters;
        for (l1_index, data_clusters) in per_l2_table(&planned) {
            next_free += data_clusters;
            put_be64(&mut l1, l1_index * 8, (next_free * CLUSTER) | COPIED);
            next_free += 1;
        }
        let used = next_free;
        let refcounts = Refcounts::after(used);
        let mut stream = Self {
            out,
            virtual_size,
            cursor: (0, planned.first().map_or(u64::MAX, |first| first.start)),
            planned,
            sent: 0,
            used,
            l2_index: None,
            l2: vec![0u8; CLUSTER as usize],
            gathering: None,
            cluster: vec![0u8; CLUSTER as usize],
        };
        stream.send(&header(virtual_size, &refcounts))?;
        stream.send(&l1)?;
        Ok(stream)
    }

    /// Whether guest cluster `index` is planned.
    fn planned(&self, index: u64) -> bool {
        let at = self.planned.partition_point(|range| range.end <= index);
        self.planned.get(at).is_some_and(|range| range.start <= index)
    }

    /// Sends whole clusters of data.
    fn send(&mut self, clusters: &[u8]) -> Result<(), FormatError> {
        let result = if is_zero(clusters) { self.out.zeros(clusters.len() as u64) } else { self.out.data(clusters) };
        result.map_err(|source| FormatError::Write { source })?;
        self.sent += (clusters.len() as u64).div_ceil(CLUSTER);
        Ok(())
    }

    /// Sends the data cluster of the next planned guest cluster, `index`, preceded by the L2
    /// table of the previous range when `index` starts another one.
    fn send_cluster(&mut self, index: u64, data: Option<&[u8]>) -> Result<(), FormatError> {
        let l1_index = index / L2_ENTRIES;
        if self.l2_index != Some(l1_index) {
            self.send_l2()?;
            self.l2_index = Some(l1_index);
        }
        put_be64(&mut self.l2, (index % L2_ENTRIES) * 8, (self.sent * CLUSTER) | COPIED);
        match data {
            Some(data) => self.send(data)?,
            None => {
                self.out.zeros(CLUSTER).map_err(|source| FormatError::Write { source })?;
                self.sent += 1;
            }
        }
        let (range, _) = self.cursor;
        self.cursor = match self.planned.get(range) {
            Some(current) if index + 1 < current.end => (range, index + 1),
            _ => (range + 1, self.planned.get(range + 1).map_or(u64::MAX, |next| next.start)),
        };
        Ok(())
    }

    fn send_l2(&mut self) -> Result<(), FormatError> {
        if self.l2_index.take().is_some() {
            let l2 = std::mem::replace(&mut self.l2, vec![0u8; CLUSTER as usize]);
            self.send(&l2)?;
        }
        Ok(())
    }

    /// Sends the planned clusters before guest cluster `index` that got no data, as zeros.
    fn zeros_before(&mut self, index: u64) -> Result<(), FormatError> {
        while self.cursor.1 < index {
            self.send_cluster(self.cursor.1, None)?;
        }
        Ok(())
    }

    fn send_gathered(&mut self) -> Result<(), FormatError> {
        if let Some(index) = self.gathering.take() {
            let cluster = std::mem::take(&mut self.cluster);
            let result = self.send_cluster(index, Some(&cluster));
            self.cluster = cluster;
            self.cluster.fill(0);
            result?;
        }
        Ok(())
    }
}

impl<S: RawStream> Sink for Qcow2Stream<'_, S> {
    type Output = u64;

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FormatError> {
        let end = offset.saturating_add(data.len() as u64);
        if end > self.virtual_size {
            return Err(write_error(format!(
                "guest data up to {end:#x} lies past the disk size {}",
                self.virtual_size
            )));
        }
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let index = at / CLUSTER;
            let within = usize::try_from(at % CLUSTER).unwrap_or(0);
            let take = rest.len().min(CLUSTER as usize - within);
            let (piece, tail) = rest.split_at(take);
            if self.gathering != Some(index) {
                self.send_gathered()?;
                if index < self.cursor.1 || !self.planned(index) {
                    // The plan came from the same walk: only zeros may fall outside it.
                    if !is_zero(piece) {
                        return Err(write_error(format!(
                            "guest data at {at:#x} was not planned (the source changed?)"
                        )));
                    }
                    at += take as u64;
                    rest = tail;
                    continue;
                }
                self.zeros_before(index)?;
                self.gathering = Some(index);
            }
            if let Some(target) = self.cluster.get_mut(within..within + take) {
                target.copy_from_slice(piece);
            }
            at += take as u64;
            rest = tail;
        }
        Ok(())
    }

    /// Sends the rest of the planned clusters, the last L2 table and the refcounts; returns
    /// the bytes sent.
    fn finish(mut self, _len: u64) -> Result<u64, FormatError> {
        self.send_gathered()?;
        self.zeros_before(u64::MAX)?;
        self.send_l2()?;
        if self.sent != self.used {
            return Err(write_error(format!("{} clusters sent, {} planned", self.sent, self.used)));
        }
        let refcounts = Refcounts::after(self.used);
        for block in refcounts.blocks() {
            self.send(&block)?;
        }
        self.send(&refcounts.table())?;
        Ok(refcounts.total() * CLUSTER)
    }
}

/// The L1 indexes with planned clusters, in order, and how many each one's range has.
fn per_l2_table(planned: &[Range<u64>]) -> Vec<(u64, u64)> {
    let mut tables: Vec<(u64, u64)> = Vec::new();
    for range in planned {
        let mut index = range.start;
        while index < range.end {
            let l1_index = index / L2_ENTRIES;
            let until = ((l1_index + 1) * L2_ENTRIES).min(range.end);
            match tables.last_mut() {
                Some((last, count)) if *last == l1_index => *count += until - index,
                _ => tables.push((l1_index, until - index)),
            }
            index = until;
        }
    }
    tables
}

fn write_error(message: String) -> FormatError {
    FormatError::Write { source: std::io::Error::other(message) }
}

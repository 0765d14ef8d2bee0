//! What the Swift cluster allows, from its `GET /info` (read once per store), and how an
//! upload sizes its segments to stay within it.
//!
//! A cluster's operator may lower `max_file_size` (the largest object, so the largest
//! segment) or the static large object middleware's `max_manifest_segments` and
//! `max_manifest_size` below Swift's defaults; an upload that ignored them would send every
//! segment and then see its manifest refused. So the store refuses a configuration that cannot
//! work at all (a segment or a single object over `max_file_size`), and each upload plans its
//! segments against the limits:
//!
//! * of a known size: segments of `large_object_chunk_size`, made larger (whole MiB) if that
//!   many would exceed the segment limit; an image over limit x `max_file_size` is refused
//!   before any byte is sent;
//! * of an unknown size: segments of `large_object_chunk_size` for the first half of the
//!   segment limit, then as large as they must be for the rest of the image size cap to fit in
//!   the remaining half (at most `max_file_size` each), so that an image of any size up to the
//!   cap fits whenever the cluster can hold it at all.

use std::io;

use serde::Deserialize;

use super::StoreError;

const MIB: u64 = 1024 * 1024;

/// The limits of one Swift cluster that bear on uploads, in bytes or counts.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Limits {
    /// The largest object, so also the largest segment (`swift.max_file_size`).
    pub(super) max_file_size: u64,
    /// Segments one manifest may name (`slo.max_manifest_segments`).
    pub(super) max_manifest_segments: u64,
    /// The largest manifest body, in bytes (`slo.max_manifest_size`).
    pub(super) max_manifest_size: u64,
    /// The smallest segment but the last (`slo.min_segment_size`, 1 since Swift 2.14).
    pub(super) min_segment_size: u64,
}

impl Default for Limits {
    /// Swift's defaults, for a cluster that does not publish its `/info`.
    fn default() -> Limits {
        Limits {
            max_file_size: 5 * 1024 * MIB + 2,
            max_manifest_segments: 1000,
            max_manifest_size: 8 * MIB,
            min_segment_size: 1,
        }
    }
}

#[derive(Deserialize)]
struct Info {
    #[serde(default)]
    swift: Option<SwiftInfo>,
    #[serde(default)]
    slo: Option<SloInfo>,
}

#[derive(Deserialize)]
struct SwiftInfo {
    max_file_size: Option<u64>,
}

#[derive(Deserialize)]
struct SloInfo {
    max_manifest_segments: Option<u64>,
    max_manifest_size: Option<u64>,
    min_segment_size: Option<u64>,
}

impl Limits {
    /// The limits an `/info` body publishes; Swift's default for any it leaves out. A cluster
    /// without the `slo` middleware cannot store large objects: `None`.
    pub(super) fn from_info(body: &[u8]) -> Result<Option<Limits>, String> {
        let info: Info = serde_json::from_slice(body).map_err(|e| format!("Swift's /info is unreadable: {e}"))?;
        let default = Limits::default();
        let Some(slo) = info.slo else { return Ok(None) };
        Ok(Some(Limits {
            max_file_size: info.swift.and_then(|s| s.max_file_size).unwrap_or(default.max_file_size),
            max_manifest_segments: slo.max_manifest_segments.unwrap_or(default.max_manifest_segments),
            max_manifest_size: slo.max_manifest_size.unwrap_or(default.max_manifest_size),
            min_segment_size: slo.min_segment_size.unwrap_or(default.min_segment_size),
        }))
    }

    /// Whether a store writing single objects up to `large_object_size` bytes and segments of
    /// `chunk_size` bytes can work on this cluster at all; otherwise what to change.
    pub(super) fn check(&self, large_object_size: u64, chunk_size: u64) -> Result<(), StoreError> {
        let limit = self.max_file_size;
        for (key, size) in [("large_object_size", large_object_size), ("large_object_chunk_size", chunk_size)] {
            if size > limit {
                return Err(misconfigured(format!(
                    "{key} = {} MiB is over this Swift cluster's largest object (max_file_size = {limit} bytes, {} MiB)",
                    size / MIB,
                    limit / MIB
                )));
            }
        }
        if chunk_size < self.min_segment_size {
            return Err(misconfigured(format!(
                "large_object_chunk_size = {} MiB is under this Swift cluster's smallest segment (min_segment_size = {} bytes)",
                chunk_size / MIB,
                self.min_segment_size
            )));
        }
        Ok(())
    }

    /// Segments one manifest may name, given the longest segment path it will hold: the
    /// count limit, or fewer if that many entries would make the manifest too large.
    pub(super) fn max_segments(&self, path_len: usize) -> u64 {
        // `{"path": "<path>", "etag": "<32 hex>", "size_bytes": <up to 20 digits>}, `
        let entry = path_len as u64 + 80;
        self.max_manifest_segments.min(self.max_manifest_size / entry).max(1)
    }
}

fn misconfigured(message: String) -> StoreError {
    StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, message))
}

/// How one upload sizes its segments (see the module's documentation).
#[derive(Clone, Debug)]
pub(super) struct Plan {
    /// `large_object_chunk_size`, or more for a known size that needs larger segments.
    chunk_size: u64,
    /// The most segments the manifest may name.
    max_segments: u64,
    /// The largest segment.
    max_segment: u64,
    /// The most bytes the upload may bring, when its size is not known.
    open_ended: Option<u64>,
}

impl Plan {
    /// The plan for an upload of `size` bytes (unknown: at most `cap`), segments of
    /// `chunk_size` bytes preferred; an image too large for this cluster is refused.
    pub(super) fn new(
        limits: &Limits,
        chunk_size: u64,
        max_segments: u64,
        size: Option<u64>,
        cap: u64,
    ) -> Result<Plan, StoreError> {
        let mut plan = Plan { chunk_size, max_segments, max_segment: limits.max_file_size, open_ended: None };
        match size {
            Some(size) => {
                if size.div_ceil(chunk_size) > max_segments {
                    plan.chunk_size = round_up_to_mib(size.div_ceil(max_segments)).min(limits.max_file_size);
                }
                if size.div_ceil(plan.chunk_size) > max_segments {
                    return Err(StoreError::TooLarge(plan.capacity()));
                }
            }
            None => plan.open_ended = Some(cap),
        }
        Ok(plan)
    }

    /// The most bytes the segments may hold: what an image over it is refused with.
    pub(super) fn capacity(&self) -> u64 {
        self.max_segments.saturating_mul(self.max_segment)
    }

    /// The size of segment number `count` (from 0), after `written` bytes; `None` when the
    /// manifest can name no more segments.
    pub(super) fn segment_size(&self, count: u64, written: u64) -> Option<u64> {
        if count >= self.max_segments {
            return None;
        }
        let Some(cap) = self.open_ended else { return Some(self.chunk_size) };
        if count < self.max_segments / 2 {
            return Some(self.chunk_size);
        }
        let needed = round_up_to_mib(cap.saturating_sub(written).div_ceil(self.max_segments - count));
        Some(needed.clamp(self.chunk_size, self.max_segment.max(self.chunk_size)))
    }
}

fn round_up_to_mib(bytes: u64) -> u64 {
    bytes.div_ceil(MIB).saturating_mul(MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * MIB;

    #[test]
    fn info_limits_and_defaults_for_what_it_leaves_out() {
        let body = br#"{"swift": {"max_file_size": 1073741824, "version": "2.30.1"},
                        "slo": {"max_manifest_segments": 50, "min_segment_size": 1}}"#;
        let limits = Limits::from_info(body).expect("readable").expect("slo");
        assert_eq!(
            limits,
            Limits { max_file_size: GIB, max_manifest_segments: 50, max_manifest_size: 8 * MIB, min_segment_size: 1 }
        );
        assert_eq!(Limits::from_info(br#"{"swift": {}}"#).expect("readable"), None, "no slo, no large objects");
        assert!(Limits::from_info(b"<html>").is_err());
    }

    #[test]
    fn a_segment_or_object_over_the_largest_object_is_refused_by_name() {
        let limits = Limits { max_file_size: GIB, ..Limits::default() };
        assert!(limits.check(GIB, 200 * MIB).is_ok());
        let err = limits.check(GIB, 2 * GIB).expect_err("too large a segment").to_string();
        assert!(err.contains("large_object_chunk_size = 2048 MiB") && err.contains("max_file_size"), "{err}");
        let err = limits.check(5 * GIB, MIB).expect_err("too large an object").to_string();
        assert!(err.contains("large_object_size = 5120 MiB"), "{err}");
    }

    #[test]
    fn the_manifest_size_bounds_the_segment_count_too() {
        let limits = Limits { max_manifest_size: 100 * 1000, ..Limits::default() };
        assert_eq!(limits.max_segments(20), 1000);
        assert_eq!(limits.max_segments(120), 500);
    }

    #[test]
    fn a_known_size_gets_larger_segments_when_the_preferred_ones_are_too_many() {
        let limits = Limits::default();
        let plan = Plan::new(&limits, 200 * MIB, 1000, Some(100 * GIB), u64::MAX).expect("fits");
        assert_eq!(plan.segment_size(0, 0), Some(200 * MIB));
        let plan = Plan::new(&limits, 200 * MIB, 1000, Some(400 * GIB), u64::MAX).expect("fits");
        // 400 GiB in at most 1000 segments: 410 MiB each (409.6 rounded up).
        assert_eq!(plan.segment_size(999, 0), Some(410 * MIB));
        assert_eq!(plan.segment_size(1000, 0), None);
        let small = Limits { max_file_size: GIB, max_manifest_segments: 10, ..Limits::default() };
        assert!(
            matches!(Plan::new(&small, MIB, 10, Some(10 * GIB + 1), u64::MAX), Err(StoreError::TooLarge(b)) if b == 10 * GIB)
        );
    }

    #[test]
    fn an_unknown_size_keeps_the_preferred_segments_for_half_the_count_then_grows_to_fit_the_cap() {
        let limits = Limits { max_manifest_segments: 4, ..Limits::default() };
        let plan = Plan::new(&limits, MIB, 4, None, 12 * MIB).expect("plan");
        assert_eq!(plan.segment_size(0, 0), Some(MIB));
        assert_eq!(plan.segment_size(1, MIB), Some(MIB));
        // 10 MiB of the cap left for 2 segments.
        assert_eq!(plan.segment_size(2, 2 * MIB), Some(5 * MIB));
        assert_eq!(plan.segment_size(3, 7 * MIB), Some(5 * MIB));
        assert_eq!(plan.segment_size(4, 12 * MIB), None);
        // Never under the preferred size, never over the largest object.
        let plan = Plan::new(&limits, 3 * MIB, 4, None, 4 * MIB).expect("plan");
        assert_eq!(plan.segment_size(2, 6 * MIB), Some(3 * MIB));
        let plan = Plan::new(&Limits { max_file_size: 2 * MIB, ..limits }, MIB, 4, None, 100 * MIB).expect("plan");
        assert_eq!(plan.segment_size(2, 2 * MIB), Some(2 * MIB));
    }
}

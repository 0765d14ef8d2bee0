//! QED: recognised only so that it can be refused (Glance's `banned` check); nothing uses it
//! and nothing here vets its structure.

use super::{Ended, Finding};
use crate::format::Format;

const MAGIC: &[u8] = b"QED\0";

pub(crate) fn inspect(end: &Ended<'_>) -> Option<Finding> {
    if !end.head.starts_with(MAGIC) {
        return None;
    }
    let mut finding = Finding::new(Format::Qed);
    finding.fail("banned", "QED images are not allowed");
    Some(finding)
}

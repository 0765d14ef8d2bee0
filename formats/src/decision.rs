//! The upload/import decision (docs/glance-v2-api.md §7.2): may bytes inspected as a [`Report`] be stored
//! under the declared `disk_format`, and which `virtual_size` is recorded.

use crate::error::FormatError;
use crate::format::Format;
use crate::report::Report;

/// Decides on data declared as `declared_disk_format` (for `container_format` `bare`), with no
/// gpt check treated as non-fatal. Returns the `virtual_size` to record, if any.
///
/// Errors come in Glance's order: undecided format, then mismatch, then safety. A deployment
/// running with `require_image_format_match = false` uses [`check_declared_allowing_mismatch`].
pub fn check_declared(declared_disk_format: &str, report: &Report) -> Result<Option<u64>, FormatError> {
    check_declared_allowing(declared_disk_format, report, &[])
}

/// [`check_declared`] for a deployment that lets content differ from the declared format
/// (Glance's `require_image_format_match = false`): a mismatch is accepted without a
/// `virtual_size`, as Glance records none either, provided the content passes the safety
/// checks of what it really is. Glance skips those checks on a mismatch; here a qcow2 with a
/// backing file is refused whatever it was declared as. Data of several formats at once stays
/// refused too: no single format's checks can vouch for it.
pub fn check_declared_allowing_mismatch(
    declared_disk_format: &str,
    report: &Report,
) -> Result<Option<u64>, FormatError> {
    match check_declared(declared_disk_format, report) {
        Err(FormatError::Mismatch { detected, .. }) if !report.is_safe() => {
            Err(FormatError::Unsafe { format: detected, failures: report.failures.clone() })
        }
        Err(FormatError::Mismatch { .. }) => Ok(None),
        decided => decided,
    }
}

/// [`check_declared`], with the gpt checks named in `gpt_nonfatal` (Glance's
/// `[image_format] gpt_safety_checks_nonfatal`) not refusing a gpt image.
pub fn check_declared_allowing(
    declared_disk_format: &str,
    report: &Report,
    gpt_nonfatal: &[&str],
) -> Result<Option<u64>, FormatError> {
    let Some(detected) = report.format else {
        return Err(FormatError::MultipleFormats { formats: report.matched.clone() });
    };
    let declared = Format::from_name(declared_disk_format);
    let virtual_size = if declared == Some(detected) {
        // Rule 1.
        report.virtual_size
    } else if detected == Format::Raw && declared.is_none() {
        // Rule 2: ami, ari, aki, ploop, ... cannot be inspected; nothing recognisable was found.
        None
    } else if declared == Some(Format::Raw) {
        // Rule 3: a "raw" upload that is really something else is kept as the bytes it is.
        Some(report.bytes_read)
    } else {
        // Rule 4.
        return Err(FormatError::Mismatch { declared: declared_disk_format.to_owned(), detected });
    };
    // Rule 5.
    let fatal = report.failures.keys().any(|check| detected != Format::Gpt || !gpt_nonfatal.contains(&check.as_str()));
    if fatal {
        return Err(FormatError::Unsafe { format: detected, failures: report.failures.clone() });
    }
    Ok(virtual_size.filter(|size| *size > 0))
}

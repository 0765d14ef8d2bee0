//! Bounds-checked readers for the fixed-width fields of on-disk headers: a field that lies
//! outside the captured bytes reads as `None`, never as a panic.

fn array<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

pub(crate) fn be16(buf: &[u8], at: usize) -> Option<u16> {
    array(buf, at).map(u16::from_be_bytes)
}

pub(crate) fn be32(buf: &[u8], at: usize) -> Option<u32> {
    array(buf, at).map(u32::from_be_bytes)
}

pub(crate) fn be64(buf: &[u8], at: usize) -> Option<u64> {
    array(buf, at).map(u64::from_be_bytes)
}

pub(crate) fn le16(buf: &[u8], at: usize) -> Option<u16> {
    array(buf, at).map(u16::from_le_bytes)
}

pub(crate) fn le32(buf: &[u8], at: usize) -> Option<u32> {
    array(buf, at).map(u32::from_le_bytes)
}

pub(crate) fn le64(buf: &[u8], at: usize) -> Option<u64> {
    array(buf, at).map(u64::from_le_bytes)
}

/// Longest excerpt of image bytes quoted in a message: enough to recognise a path, short enough
/// that a hostile image cannot flood logs or task messages.
const QUOTE_LIMIT: usize = 80;

/// `bytes` as a quoted, escaped string for an error message, shortened with `...`.
pub(crate) fn quote(bytes: &[u8]) -> String {
    let shown: String =
        bytes.iter().take(QUOTE_LIMIT).flat_map(|byte| std::ascii::escape_default(*byte)).map(char::from).collect();
    let ellipsis = if bytes.len() > QUOTE_LIMIT { "..." } else { "" };
    format!("\"{shown}{ellipsis}\"")
}

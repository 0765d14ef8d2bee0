//! The one error type of the formats crate: every refusal names what was found.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::format::Format;

/// Why image data was refused or could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The image file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The stream carries the signatures of several formats at once (one header hidden in
    /// another), so no single format can be trusted.
    #[error("Multiple formats detected: {}", join(formats))]
    MultipleFormats {
        /// Every format whose signature matched.
        formats: Vec<Format>,
    },
    /// The declared `disk_format` is not what the bytes are (docs/glance-v2-api.md §7.2 rule 4).
    #[error("Image disk_format {declared} does not match stream data {detected}")]
    Mismatch {
        /// The `disk_format` the client declared.
        declared: String,
        /// The format the bytes turned out to be.
        detected: Format,
    },
    /// The image is of a known format but fails one or more safety checks.
    #[error("Image failed safety checks: {format}: {}", describe(failures))]
    Unsafe {
        /// The detected format whose checks failed.
        format: Format,
        /// Failed check name → what was found.
        failures: BTreeMap<String, String>,
    },
    /// The image's structure is inconsistent: a table or cluster lies outside the file, overlaps
    /// the header, is misaligned, or its compressed data does not decode.
    #[error("Malformed {format} image: {reason}")]
    Malformed {
        /// The format being read.
        format: Format,
        /// What was found, and where.
        reason: String,
    },
    /// The image is well-formed but uses a feature the converter cannot read (zstd compression,
    /// encryption, a backing file).
    #[error("Unsupported {format} image: {reason}")]
    Unsupported {
        /// The format being read.
        format: Format,
        /// The feature, as found in the header.
        reason: String,
    },
    /// No converter exists from one format to the other.
    #[error("Conversion from {from} to {to} is not supported")]
    UnsupportedConversion {
        /// The source format.
        from: Format,
        /// The requested output format.
        to: Format,
    },
    /// The converted image did not inspect as a safe image of the requested format.
    #[error("Converted image is not a safe {expected}: {found}")]
    ConversionOutput {
        /// The format that was written.
        expected: Format,
        /// What the inspector found instead.
        found: String,
    },
    /// Reading the source image failed (the converters' generic readers have no path to name;
    /// [`crate::convert`] reports [`FormatError::Io`] with the path instead).
    #[error("cannot read the source image: {source}")]
    Read {
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// Writing the converted image failed ([`crate::convert`] reports [`FormatError::Io`] with the
    /// path instead).
    #[error("cannot write the converted image: {source}")]
    Write {
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

fn join(formats: &[Format]) -> String {
    formats.iter().map(|format| format.as_str()).collect::<Vec<_>>().join(", ")
}

fn describe(failures: &BTreeMap<String, String>) -> String {
    failures.iter().map(|(check, reason)| format!("{check}: {reason}")).collect::<Vec<_>>().join("; ")
}

//! What the inspector concluded about a stream, for the upload decision, for logs and for
//! `glint inspect` (text and JSON).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::format::Format;

/// The inspection result of one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The detected format: raw when nothing matched; `None` when several formats matched,
    /// which is itself a failure (check `format`).
    pub format: Option<Format>,
    /// Every non-raw format whose signature matched (empty for raw).
    pub matched: Vec<Format>,
    /// The virtual size the format declares (the byte count for raw and gpt); `None` when the
    /// format does not define one or the header could not be read.
    pub virtual_size: Option<u64>,
    /// Bytes in the stream.
    pub bytes_read: u64,
    /// Failed check name → what was found; empty when the image is safe.
    pub failures: BTreeMap<String, String>,
}

impl Report {
    /// Whether every safety check passed and the format was decided.
    pub fn is_safe(&self) -> bool {
        self.failures.is_empty()
    }

    /// The report as JSON: `format`, `virtual_size`, `bytes_read`, `safe`, `failures`.
    pub fn to_json(&self) -> Value {
        let failures: Map<String, Value> =
            self.failures.iter().map(|(check, reason)| (check.clone(), Value::from(reason.as_str()))).collect();
        let mut json = Map::new();
        json.insert("format".to_owned(), Value::from(self.format.map(Format::as_str)));
        json.insert("virtual_size".to_owned(), Value::from(self.virtual_size));
        json.insert("bytes_read".to_owned(), Value::from(self.bytes_read));
        json.insert("safe".to_owned(), Value::from(self.is_safe()));
        json.insert("failures".to_owned(), Value::Object(failures));
        Value::Object(json)
    }
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.format {
            Some(format) => writeln!(f, "format:       {format}")?,
            None => {
                let matched: Vec<&str> = self.matched.iter().map(|format| format.as_str()).collect();
                writeln!(f, "format:       undecided ({})", matched.join(", "))?;
            }
        }
        match self.virtual_size {
            Some(size) => writeln!(f, "virtual size: {size} bytes")?,
            None => writeln!(f, "virtual size: unknown")?,
        }
        writeln!(f, "bytes read:   {}", self.bytes_read)?;
        if self.is_safe() {
            writeln!(f, "safety:       passed")
        } else {
            writeln!(f, "safety:       FAILED")?;
            for (check, reason) in &self.failures {
                writeln!(f, "  {check}: {reason}")?;
            }
            Ok(())
        }
    }
}

//! The organiser's private application file: every application with the child's identity
//! and salt. It never leaves the organiser (and the notary who checks it with `--private`).
//!
//! ```text
//! {"applications":[{"app":..,"child_id":..,"child_name":..,"choices":[..],"group":..,"salt":..}, ...],
//!  "draw_id":"..","format":"gongkai-draw-private/1"}
//! ```

use serde::{Deserialize, Deserializer, Serialize};

use crate::check::{Check, CheckFailure};
use crate::ids::DrawId;
use crate::jcs::{ObjectWriter, WriteCanonical, write_string};
use crate::leaf::{Application, Leaf};

/// The `format` value of a private application file.
pub const PRIVATE_FORMAT: &str = "gongkai-draw-private/1";

/// The private application file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateFile {
    #[serde(
        serialize_with = "serialize_format",
        deserialize_with = "deserialize_format"
    )]
    pub format: (),
    pub draw_id: DrawId,
    pub applications: Vec<Application>,
}

fn serialize_format<S: serde::Serializer>(_: &(), serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(PRIVATE_FORMAT)
}

fn deserialize_format<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(), D::Error> {
    let text = crate::serde_util::deserialize_str(deserializer)?;
    if text == PRIVATE_FORMAT {
        Ok(())
    } else {
        Err(serde::de::Error::custom(format!(
            "unsupported format {text:?}, expected {PRIVATE_FORMAT:?}"
        )))
    }
}

impl PrivateFile {
    pub fn new(draw_id: DrawId, applications: Vec<Application>) -> PrivateFile {
        PrivateFile {
            format: (),
            draw_id,
            applications,
        }
    }

    /// Parses the file. Errors name the JSON path but never a child's data.
    pub fn parse(bytes: &[u8]) -> Result<PrivateFile, String> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|e| format!("at {}: {}", e.path(), redact(&e.inner().to_string())))
    }

    /// Canonical JSON and a newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.applications.len() * 260 + 100);
        self.write_canonical(&mut out);
        out.push(b'\n');
        out
    }
}

/// serde_json quotes an offending string value in some messages; cut the message there so
/// that no ID number or name reaches a terminal or a log.
fn redact(message: &str) -> String {
    match message.find('"') {
        Some(quote) => format!("{}<value withheld>", &message[..quote]),
        None => message.to_owned(),
    }
}

/// Checks the private records against the public leaves: one record per leaf, each with the
/// same choices and group, and an `idc` that recomputes from its salt, ID number and name.
/// Mismatches are named by application code only.
pub fn check_private_records(
    draw_id: &DrawId,
    leaves: &[Leaf],
    private: &PrivateFile,
) -> Result<(), CheckFailure> {
    let fail = |detail: String| CheckFailure::new(Check::PrivateRecords, detail);
    if &private.draw_id != draw_id {
        return Err(fail(format!(
            "the private file is for draw {}, the transcript for {draw_id}",
            private.draw_id
        )));
    }
    let mut records: Vec<&Application> = private.applications.iter().collect();
    records.sort_unstable_by_key(|record| record.app);
    if let Some(pair) = records.windows(2).find(|pair| pair[0].app == pair[1].app) {
        return Err(fail(format!(
            "application {} has two private records",
            pair[0].app
        )));
    }
    let mut records = records.into_iter().peekable();
    for leaf in leaves {
        // Both sides are ordered by app: walk them together.
        if let Some(record) = records.next_if(|record| record.app < leaf.app) {
            return Err(fail(format!("private record {} has no leaf", record.app)));
        }
        let Some(record) = records.next_if(|record| record.app == leaf.app) else {
            return Err(fail(format!("leaf {} has no private record", leaf.app)));
        };
        let expected = record.leaf();
        if expected.idc != leaf.idc {
            return Err(fail(format!(
                "the idc of leaf {} does not match its private record",
                leaf.app
            )));
        }
        if expected.choices != leaf.choices || expected.group != leaf.group {
            return Err(fail(format!(
                "the choices or group of leaf {} differ from its private record",
                leaf.app
            )));
        }
    }
    if let Some(record) = records.next() {
        return Err(fail(format!("private record {} has no leaf", record.app)));
    }
    Ok(())
}

impl WriteCanonical for Application {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("app", &self.app)
            .field("child_id", &self.child_id)
            .field("child_name", &self.child_name)
            .field("choices", &self.choices)
            .field("group", &self.group)
            .field("salt", &self.salt)
            .finish();
    }
}

impl WriteCanonical for PrivateFile {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        struct Format;
        impl WriteCanonical for Format {
            fn write_canonical(&self, out: &mut Vec<u8>) {
                write_string(out, PRIVATE_FORMAT);
            }
        }
        ObjectWriter::new(out)
            .field("applications", &self.applications)
            .field("draw_id", &self.draw_id)
            .field("format", &Format)
            .finish();
    }
}

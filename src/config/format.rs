//! A job's `format`: CSV (dialect, header, encoding), NDJSON, JSON
//! documents, XML and Parquet.

use super::*;

/// `format = { kind = "csv", … }`
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RawFormat {
    /// Delimited text.
    Csv(RawCsv),
    /// One JSON object per line.
    Ndjson(RawNdjson),
    /// A JSON document: an array of objects, at the top or under a path.
    Json(RawJson),
    /// XML: the elements at a path are the records.
    Xml(RawXml),
    /// Apache Parquet: each row is a record; nested fields by path.
    Parquet(RawParquet),
}

/// Parquet options (none yet).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParquet {}

/// XML options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawXml {
    /// Element path of the records from the root, by local name, e.g.
    /// `/export/events/event`.
    pub record_path: String,
}

/// NDJSON options (none yet).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNdjson {}

/// JSON document options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJson {
    /// Object members leading to the records array, e.g. `events` or
    /// `/data/events`; unset: the document itself is the array (or one
    /// record object).
    pub records_path: Option<String>,
}

impl Default for RawFormat {
    fn default() -> Self {
        RawFormat::Csv(RawCsv::default())
    }
}

/// CSV options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCsv {
    /// Field delimiter, one ASCII character.
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Quote character, one ASCII character.
    #[serde(default = "default_quote")]
    pub quote: String,
    /// The first record names the fields.
    #[serde(default = "default_true")]
    pub header: bool,
    /// Field names when `header = false`.
    #[serde(default)]
    pub field_names: Vec<String>,
    /// Escape character inside quoted fields (e.g. `\\`); unset: a quote
    /// is escaped by doubling it, as RFC 4180 says.
    pub escape: Option<String>,
    /// `utf-8`, `latin-1` (ISO-8859-1) or `windows-1252`.
    #[serde(default = "default_encoding")]
    pub encoding: String,
}

pub(super) fn default_encoding() -> String {
    "utf-8".into()
}

impl Default for RawCsv {
    fn default() -> Self {
        RawCsv {
            delimiter: default_delimiter(),
            quote: default_quote(),
            header: true,
            field_names: Vec::new(),
            escape: None,
            encoding: default_encoding(),
        }
    }
}

pub(super) fn default_delimiter() -> String {
    ",".into()
}

pub(super) fn default_quote() -> String {
    "\"".into()
}

/// Validates a job's `format` (`path` is the job's key path).
pub(super) fn validate_format(path: &str, raw: &RawFormat, p: &mut Problems) -> Option<Format> {
    match raw {
        RawFormat::Csv(c) => {
            let byte = |key: &str, s: &str, p: &mut Problems| -> Option<u8> {
                match s.as_bytes() {
                    [b] if b.is_ascii() => Some(*b),
                    _ => {
                        p.push(
                            format!("{path}.format.{key}"),
                            format!("{s:?} must be one ASCII character"),
                        );
                        None
                    }
                }
            };
            let delimiter = byte("delimiter", &c.delimiter, p);
            let quote = byte("quote", &c.quote, p);
            let escape = match &c.escape {
                Some(e) => byte("escape", e, p).map(Some),
                None => Some(None),
            };
            if !c.header && c.field_names.is_empty() {
                p.push(
                    format!("{path}.format.field_names"),
                    "a file without a header needs field_names",
                );
            }
            let encoding = p.choose(
                &format!("{path}.format.encoding"),
                canonical_encoding(&c.encoding),
                &[
                    ("utf-8", TextEncoding::Utf8),
                    ("latin-1", TextEncoding::Latin1),
                    ("windows-1252", TextEncoding::Windows1252),
                ],
            );
            Some(Format::Csv(CsvFormat {
                delimiter: delimiter?,
                quote: quote?,
                header: c.header,
                field_names: c.field_names.clone(),
                escape: escape?,
                encoding: encoding?,
            }))
        }
        RawFormat::Ndjson(_) => Some(Format::Ndjson),
        RawFormat::Xml(x) => {
            let parts: Vec<String> = x
                .record_path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            if parts.is_empty() {
                p.push(
                    format!("{path}.format.record_path"),
                    "name the record elements from the root, e.g. /export/events/event",
                );
                None
            } else {
                Some(Format::Xml { record_path: parts })
            }
        }
        RawFormat::Parquet(_) => Some(Format::Parquet),
        RawFormat::Json(r) => Some(Format::Json {
            records_path: r
                .records_path
                .as_deref()
                .unwrap_or("")
                .split(['/', '.'])
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        }),
    }
}

/// The name `encoding` is listed under, for the other spellings accepted
/// (`utf8`, `latin1`, `iso-8859-1`, `cp1252`, any case, `_` for `-`).
fn canonical_encoding(encoding: &str) -> &str {
    match encoding.to_ascii_lowercase().replace('_', "-").as_str() {
        "utf-8" | "utf8" => "utf-8",
        "latin-1" | "latin1" | "iso-8859-1" => "latin-1",
        "windows-1252" | "cp1252" => "windows-1252",
        _ => encoding,
    }
}

/// A text encoding of CSV input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// UTF-8 (a BOM is skipped).
    Utf8,
    /// ISO-8859-1.
    Latin1,
    /// Windows-1252.
    Windows1252,
}

/// CSV options.
#[derive(Debug, Clone)]
pub struct CsvFormat {
    /// The byte between fields (`,` unless `format.delimiter` says).
    pub delimiter: u8,
    /// The byte that quotes a field holding delimiters, quotes or newlines.
    pub quote: u8,
    /// The first record is a header.
    pub header: bool,
    /// Names when there is no header.
    pub field_names: Vec<String>,
    /// Escape byte inside quotes (None: doubled quotes).
    pub escape: Option<u8>,
    /// How the bytes are read: UTF-8, or Latin-1/Windows-1252 converted
    /// to UTF-8 first.
    pub encoding: TextEncoding,
}

/// Input format.
#[derive(Debug, Clone)]
pub enum Format {
    /// CSV.
    Csv(CsvFormat),
    /// Newline-delimited JSON.
    Ndjson,
    /// A JSON document; records at this member path (empty: the top).
    Json {
        /// Member names from the top down to the records array.
        records_path: Vec<String>,
    },
    /// XML; records are the elements at this path of local names.
    Xml {
        /// Element names from the root to the record element.
        record_path: Vec<String>,
    },
    /// Apache Parquet; rows are the records.
    Parquet,
}

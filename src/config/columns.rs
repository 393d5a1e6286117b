//! A job's `columns`: the raw column entries (validated into
//! [`crate::schema::Column`]).

use super::*;

/// One target column.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawColumn {
    /// Column name in the target table.
    pub name: String,
    /// Input field it comes from (defaults to `name`).
    pub source: Option<String>,
    /// Derived instead of read: `source_file`, `source_line` or `ingest_time`.
    pub derived: Option<String>,
    /// A constant value instead of an input field.
    pub constant: Option<String>,
    /// `varchar(n)`, `int`, `bigint`, `decimal(p,s)`, `boolean`, `date`,
    /// `timestamp`, `timestamptz` or `json`.
    #[serde(rename = "type")]
    pub column_type: String,
    /// A missing or empty value rejects the row.
    #[serde(default)]
    pub required: bool,
    /// Value used when the input is missing or empty.
    pub default: Option<String>,
    /// Strip leading and trailing white space before checking.
    #[serde(default = "default_true")]
    pub trim: bool,
    /// Timestamp formats tried before ISO-8601: strftime patterns such as
    /// `%d/%m/%Y %H:%M`, or `epoch` (seconds) and `epoch_ms`.
    #[serde(default)]
    pub formats: Vec<String>,
    /// Zone of timestamps written without an offset: `UTC`, `+02:00` or an
    /// IANA name such as `Europe/Berlin`.
    pub timezone: Option<String>,
    /// A varchar value longer than its byte limit: `reject` (the row) or
    /// `truncate` (at a character boundary).
    #[serde(default = "default_on_overflow")]
    pub on_overflow: String,
}

pub(super) fn default_on_overflow() -> String {
    "reject".into()
}

//! A job's `columns`: the raw column entries (validated into
//! [`crate::schema::Column`]).

use super::*;
use crate::schema::{Column, ColumnSource, ColumnType, Zone};
use crate::sql::Ident;
use std::collections::HashSet;

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

/// Validates a job's `columns` (`path` is the job's key path); a job
/// needs at least one, each named once.
pub(super) fn validate_columns(path: &str, raw: &[RawColumn], p: &mut Problems) -> Vec<Column> {
    if raw.is_empty() {
        p.push(format!("{path}.columns"), "a job needs at least one column");
    }
    let mut seen = HashSet::new();
    raw.iter()
        .enumerate()
        .filter_map(|(i, rc)| validate_column(&format!("{path}.columns[{i}]"), rc, &mut seen, p))
        .collect()
}

/// One column at `cpath`: its name (not in `seen` yet), type, where its
/// value comes from (one of source, derived, constant), a default and a
/// constant that fit the type, its time zone and formats.
fn validate_column(
    cpath: &str,
    rc: &RawColumn,
    seen: &mut HashSet<Ident>,
    p: &mut Problems,
) -> Option<Column> {
    let name = p.take(&format!("{cpath}.name"), Ident::parse(&rc.name))?;
    if !seen.insert(name.clone()) {
        p.push(
            format!("{cpath}.name"),
            format!("column {name} is listed twice"),
        );
    }
    let column_type = p.take(&format!("{cpath}.type"), ColumnType::parse(&rc.column_type));
    let source = match (&rc.source, &rc.derived, &rc.constant) {
        (Some(s), None, None) => Some(ColumnSource::Field(s.clone())),
        (None, None, None) => Some(ColumnSource::Field(rc.name.clone())),
        (None, Some(d), None) => p.choose(
            &format!("{cpath}.derived"),
            d,
            &[
                ("source_file", ColumnSource::SourceFile),
                ("source_line", ColumnSource::SourceLine),
                ("ingest_time", ColumnSource::IngestTime),
            ],
        ),
        (None, None, Some(c)) => Some(ColumnSource::Constant(c.clone())),
        _ => {
            p.push(
                format!("{cpath}.source"),
                "set only one of source, derived and constant",
            );
            None
        }
    };
    if let (Some(ty), Some(ColumnSource::Constant(c))) = (column_type, &source)
        && let Err(e) = crate::schema::coerce(c, ty)
    {
        p.push(format!("{cpath}.constant"), e.reason);
    }
    if let (Some(ty), Some(d)) = (column_type, &rc.default)
        && let Err(e) = crate::schema::coerce(d, ty)
    {
        p.push(format!("{cpath}.default"), e.reason);
    }
    let zone = match rc.timezone.as_deref() {
        None => Some(Zone::utc()),
        Some(tz) => p.take(&format!("{cpath}.timezone"), Zone::parse(tz)),
    };
    if !rc.formats.is_empty()
        && !matches!(
            column_type,
            Some(ColumnType::Timestamp | ColumnType::Timestamptz)
        )
    {
        p.push(
            format!("{cpath}.formats"),
            "formats apply to timestamp and timestamptz columns",
        );
    }
    let truncate = p
        .choose(
            &format!("{cpath}.on_overflow"),
            &rc.on_overflow,
            &[("reject", false), ("truncate", true)],
        )
        .unwrap_or(false);
    Some(Column {
        name,
        source: source?,
        column_type: column_type?,
        required: rc.required,
        default: rc.default.clone(),
        trim: rc.trim,
        formats: rc.formats.clone(),
        zone: zone?,
        truncate,
    })
}

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
    /// Computed from the record's fields instead: an expression such as
    /// `lower(trim(status))` or `hash(event_id, task_id)`
    /// (docs/transforms.md).
    pub expr: Option<String>,
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
    /// The only values allowed (compared in the column's canonical form).
    #[serde(default)]
    pub one_of: Vec<String>,
    /// A regular expression the whole value must match (text columns).
    pub pattern: Option<String>,
    /// The smallest value allowed (numbers, dates, timestamps).
    pub min: Option<String>,
    /// The largest value allowed (numbers, dates, timestamps).
    pub max: Option<String>,
    /// Reject an empty text (an empty string; a missing value stays NULL
    /// unless `required`). varchar columns only.
    #[serde(default)]
    pub not_empty: bool,
}

pub(super) fn default_on_overflow() -> String {
    "reject".into()
}

/// Validates a job's `columns` (`path` is the job's key path); a job
/// needs at least one, each named once.
pub(super) fn validate_columns(
    path: &str,
    job: &str,
    raw: &[RawColumn],
    lookups: &[Arc<crate::schema::expr::Lookup>],
    p: &mut Problems,
) -> Vec<Column> {
    if raw.is_empty() {
        p.push(format!("{path}.columns"), "a job needs at least one column");
    }
    let mut seen = HashSet::new();
    raw.iter()
        .enumerate()
        .filter_map(|(i, rc)| {
            validate_column(
                &format!("{path}.columns[{i}]"),
                job,
                rc,
                lookups,
                &mut seen,
                p,
            )
        })
        .collect()
}

/// One column at `cpath`: its name (not in `seen` yet), type, where its
/// value comes from (one of source, derived, constant), a default and a
/// constant that fit the type, its time zone and formats.
fn validate_column(
    cpath: &str,
    job: &str,
    rc: &RawColumn,
    lookups: &[Arc<crate::schema::expr::Lookup>],
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
    let source = match (&rc.source, &rc.derived, &rc.constant, &rc.expr) {
        (Some(s), None, None, None) => Some(ColumnSource::Field(s.clone())),
        (None, None, None, None) => Some(ColumnSource::Field(rc.name.clone())),
        (None, None, None, Some(e)) => match crate::schema::expr::compile(e, lookups) {
            Ok(e) => Some(ColumnSource::Expr(Box::new(e))),
            Err(e) => {
                p.push(
                    format!("{cpath}.expr"),
                    format!(
                        "job {job}, column {name}: {e}, in {:?}",
                        rc.expr.as_deref().unwrap_or("")
                    ),
                );
                None
            }
        },
        (None, Some(d), None, None) => p.choose(
            &format!("{cpath}.derived"),
            d,
            &[
                ("source_file", ColumnSource::SourceFile),
                ("source_line", ColumnSource::SourceLine),
                ("ingest_time", ColumnSource::IngestTime),
            ],
        ),
        (None, None, Some(c), None) => Some(ColumnSource::Constant(c.clone())),
        _ => {
            p.push(
                format!("{cpath}.source"),
                "set only one of source, derived, constant and expr",
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
    let rules = column_type.and_then(|ty| validate_rules(cpath, rc, ty, p));
    Some(Column {
        rules,
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

/// A column's value contracts at `cpath`, each value in the column's
/// canonical text; `None` when it has none (or they are invalid: reported).
fn validate_rules(
    cpath: &str,
    rc: &RawColumn,
    ty: ColumnType,
    p: &mut Problems,
) -> Option<Box<crate::schema::rules::Rules>> {
    use crate::schema::rules::{Rules, compare, ordered};
    let text = matches!(ty, ColumnType::Varchar(_) | ColumnType::Uuid);
    let canonical = |key: String, v: &str, p: &mut Problems| -> Option<String> {
        match crate::schema::coerce(v, ty) {
            Ok(c) => Some(c.into_owned()),
            Err(e) => {
                p.push(key, format!("{v:?} does not fit the column: {}", e.reason));
                None
            }
        }
    };
    let one_of: Vec<String> = rc
        .one_of
        .iter()
        .enumerate()
        .filter_map(|(i, v)| canonical(format!("{cpath}.one_of[{i}]"), v, p))
        .collect();
    let pattern = match &rc.pattern {
        Some(_) if !text => {
            p.push(
                format!("{cpath}.pattern"),
                "pattern applies to varchar and uuid columns",
            );
            None
        }
        // Anchored: the whole value must match.
        Some(re) => match regex::Regex::new(&format!("^(?:{re})$")) {
            Ok(r) => Some(r),
            Err(e) => {
                p.push(
                    format!("{cpath}.pattern"),
                    format!("{re:?} is not a regular expression: {e}"),
                );
                None
            }
        },
        None => None,
    };
    let bound = |key: &str, v: &Option<String>, p: &mut Problems| -> Option<String> {
        let v = v.as_ref()?;
        if !ordered(ty) {
            p.push(
                format!("{cpath}.{key}"),
                "min and max apply to int, bigint, decimal, date, timestamp and timestamptz columns",
            );
            return None;
        }
        canonical(format!("{cpath}.{key}"), v, p)
    };
    let (min, max) = (bound("min", &rc.min, p), bound("max", &rc.max, p));
    if let (Some(lo), Some(hi)) = (&min, &max)
        && compare(lo, hi, ty) == std::cmp::Ordering::Greater
    {
        p.push(format!("{cpath}.min"), format!("{lo} is above max = {hi}"));
    }
    if rc.not_empty && !matches!(ty, ColumnType::Varchar(_)) {
        p.push(
            format!("{cpath}.not_empty"),
            "not_empty applies to varchar columns (other types read an empty value as missing)",
        );
    }
    let rules = Rules {
        one_of,
        pattern,
        min,
        max,
        not_empty: rc.not_empty,
    };
    (!rules.is_empty()).then(|| Box::new(rules))
}

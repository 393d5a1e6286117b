//! The column schema of a job and the coercion of values to it: column
//! types (and their SQL names), where a value comes from, time zones, and
//! [`coerce`]. Both `config` (validating defaults and constants) and
//! `normalize` (every value of every row) depend on this module; it depends
//! only on [`crate::sql`].

mod coerce;
pub mod expr;
pub mod rules;

pub use coerce::{
    Canon, CoerceError, QUOTED_CHARS, coerce, coerce_column, coerce_column_into, quoted,
};

use crate::sql::Ident;

/// A column's type in the target table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `VARCHAR(n)`: at most n bytes, as Redshift counts.
    Varchar(u32),
    /// 32-bit integer.
    Int,
    /// 64-bit integer.
    Bigint,
    /// `DECIMAL(p,s)`.
    Decimal(u8, u8),
    /// Boolean.
    Boolean,
    /// Calendar date.
    Date,
    /// Timestamp without zone (taken as UTC).
    Timestamp,
    /// Timestamp with zone, written as UTC.
    Timestamptz,
    /// A JSON document, stored as text.
    Json,
    /// A UUID (`8-4-4-4-12` hex digits, braces or none), stored lower-case
    /// as `VARCHAR(36)` (Redshift has no UUID type).
    Uuid,
    /// A JSON document the warehouse can query: `SUPER` on Redshift (the
    /// staged text goes through `JSON_PARSE`), `jsonb` on PostgreSQL.
    Super,
}

impl ColumnType {
    /// The type's name in SQL (both dialects).
    pub fn sql(self) -> String {
        match self {
            ColumnType::Varchar(n) => format!("VARCHAR({n})"),
            ColumnType::Int => "INTEGER".into(),
            ColumnType::Bigint => "BIGINT".into(),
            ColumnType::Decimal(p, s) => format!("DECIMAL({p},{s})"),
            ColumnType::Boolean => "BOOLEAN".into(),
            ColumnType::Date => "DATE".into(),
            ColumnType::Timestamp => "TIMESTAMP".into(),
            ColumnType::Timestamptz => "TIMESTAMPTZ".into(),
            ColumnType::Json => "VARCHAR(65535)".into(),
            ColumnType::Uuid => "VARCHAR(36)".into(),
            // Staged as text; the target's type is `sql_in`'s.
            ColumnType::Super => "VARCHAR(65535)".into(),
        }
    }

    /// The type of a target column in `dialect`: [`sql`](Self::sql), but a
    /// [`Super`](ColumnType::Super) column is `SUPER` or `jsonb`.
    pub fn sql_in(self, dialect: crate::sql::Dialect) -> String {
        match (self, dialect) {
            (ColumnType::Super, crate::sql::Dialect::Redshift) => "SUPER".into(),
            (ColumnType::Super, crate::sql::Dialect::Postgres) => "JSONB".into(),
            (ty, _) => ty.sql(),
        }
    }

    /// Parses `varchar(64)`, `int`, `decimal(12,2)`, ….
    pub fn parse(text: &str) -> Result<ColumnType, String> {
        let t = text.trim().to_ascii_lowercase().replace(' ', "");
        let args = |prefix: &str| -> Option<Vec<u32>> {
            let inner = t
                .strip_prefix(prefix)?
                .strip_prefix('(')?
                .strip_suffix(')')?;
            inner.split(',').map(|n| n.parse().ok()).collect()
        };
        let ty = match t.as_str() {
            "int" | "integer" | "int4" => ColumnType::Int,
            "bigint" | "int8" => ColumnType::Bigint,
            "boolean" | "bool" => ColumnType::Boolean,
            "date" => ColumnType::Date,
            "timestamp" => ColumnType::Timestamp,
            "timestamptz" => ColumnType::Timestamptz,
            "json" => ColumnType::Json,
            "uuid" => ColumnType::Uuid,
            "super" | "jsonb" => ColumnType::Super,
            "varchar" => ColumnType::Varchar(256),
            _ => {
                if let Some(a) = args("varchar").filter(|a| a.len() == 1) {
                    if a[0] == 0 || a[0] > 65535 {
                        return Err(format!("{text}: varchar length must be 1 to 65535 bytes"));
                    }
                    ColumnType::Varchar(a[0])
                } else if let Some(a) = args("decimal").or_else(|| args("numeric")) {
                    let (p, s) = match a.as_slice() {
                        [p] => (*p, 0),
                        [p, s] => (*p, *s),
                        _ => return Err(format!("{text}: expected decimal(p,s)")),
                    };
                    if !(1..=38).contains(&p) || s > p {
                        return Err(format!(
                            "{text}: precision must be 1 to 38 and scale at most the precision"
                        ));
                    }
                    ColumnType::Decimal(p as u8, s as u8)
                } else {
                    return Err(format!(
                        "unknown type {text:?} (expected varchar(n), int, bigint, decimal(p,s), boolean, date, timestamp, timestamptz, json, super or uuid)"
                    ));
                }
            }
        };
        Ok(ty)
    }
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnSource {
    /// An input field by name.
    Field(String),
    /// The source file's path.
    SourceFile,
    /// The physical line number the record starts on.
    SourceLine,
    /// When ferry read the row (UTC).
    IngestTime,
    /// A constant.
    Constant(String),
    /// The record's fields the mapping does not have, as one JSON object
    /// (`contract.columns = "capture"`); NULL when it has none.
    Captured,
    /// Computed from the record's fields (`expr = "lower(status)"`).
    Expr(Box<expr::Expr>),
}

/// A target column.
#[derive(Debug, Clone)]
pub struct Column {
    /// Name in the target.
    pub name: Ident,
    /// Where the value comes from.
    pub source: ColumnSource,
    /// Type.
    pub column_type: ColumnType,
    /// A missing value rejects the row.
    pub required: bool,
    /// Value for a missing or empty input.
    pub default: Option<String>,
    /// Trim white space.
    pub trim: bool,
    /// Extra timestamp formats, tried first.
    pub formats: Vec<String>,
    /// Zone of timestamps written without an offset.
    pub zone: Zone,
    /// Truncate over-long varchar values instead of rejecting the row.
    pub truncate: bool,
    /// Value contracts checked after the type (`one_of`, `pattern`,
    /// `min`/`max`, `not_empty`); `None` when the column has none.
    pub rules: Option<Box<rules::Rules>>,
}

impl Column {
    /// The JSON column of `contract.columns = "capture"`.
    pub fn captured(name: Ident) -> Column {
        Column {
            name,
            source: ColumnSource::Captured,
            column_type: ColumnType::Super,
            required: false,
            default: None,
            trim: false,
            formats: Vec::new(),
            zone: Zone::utc(),
            truncate: false,
            rules: None,
        }
    }

    /// A column added by `contract.columns = "evolve"` for `field`.
    pub fn evolved(name: Ident, field: &str, column_type: ColumnType) -> Column {
        Column {
            source: ColumnSource::Field(field.to_string()),
            column_type,
            ..Column::captured(name)
        }
    }
}

/// The zone a timestamp without an offset is read in.
#[derive(Debug, Clone, PartialEq)]
pub enum Zone {
    /// A fixed offset (UTC is zero).
    Fixed(chrono::FixedOffset),
    /// A named IANA zone such as `Europe/Berlin`, with its daylight-saving
    /// rules.
    Named(jiff::tz::TimeZone),
}

impl Zone {
    /// UTC.
    pub fn utc() -> Zone {
        Zone::Fixed(chrono::FixedOffset::east_opt(0).expect("zero offset"))
    }

    /// Whether this is UTC, where naive timestamps need no conversion.
    pub fn is_utc(&self) -> bool {
        matches!(self, Zone::Fixed(o) if o.local_minus_utc() == 0)
    }

    /// Parses `UTC`, `Z`, an offset like `+02:00`, or an IANA name.
    pub fn parse(text: &str) -> Result<Zone, String> {
        let t = text.trim();
        if matches!(t, "UTC" | "utc" | "Z" | "Etc/UTC") {
            return Ok(Zone::utc());
        }
        if t.starts_with(['+', '-']) {
            return chrono::DateTime::parse_from_str(
                &format!("2000-01-01T00:00:00{t}"),
                "%Y-%m-%dT%H:%M:%S%:z",
            )
            .map(|d| Zone::Fixed(*d.offset()))
            .map_err(|_| format!("{t:?}: an offset is written like +02:00 or -05:30"));
        }
        jiff::tz::TimeZone::get(t).map(Zone::Named).map_err(|_| {
            format!(
                "{t:?} is not a known time zone: use UTC, an offset like +02:00, or an IANA name like Europe/Berlin"
            )
        })
    }

    /// The UTC instant of local time `t` in this zone. As PostgreSQL does
    /// it: a local time that happens twice (clocks going back) is the later
    /// instant, in standard time; one that never happens (clocks going
    /// forward) is read with the offset from before the gap.
    pub fn to_utc(&self, t: chrono::NaiveDateTime) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::{Datelike, TimeZone, Timelike};
        match self {
            Zone::Fixed(o) => o
                .from_local_datetime(&t)
                .single()
                .map(|t| t.with_timezone(&chrono::Utc)),
            Zone::Named(tz) => {
                let civil = jiff::civil::DateTime::new(
                    i16::try_from(t.year()).ok()?,
                    t.month() as i8,
                    t.day() as i8,
                    t.hour() as i8,
                    t.minute() as i8,
                    t.second().min(59) as i8,
                    t.nanosecond().min(999_999_999) as i32,
                )
                .ok()?;
                let ts = tz.to_ambiguous_timestamp(civil).later().ok()?;
                chrono::DateTime::from_timestamp(ts.as_second(), ts.subsec_nanosecond() as u32)
            }
        }
    }
}

//! Type checks and canonical text for each [`ColumnType`].
//!
//! The output text is what both warehouses' COPY parse the same way:
//! timestamps as `YYYY-MM-DD HH:MM:SS.ffffff` (UTC, with `+00` for
//! `timestamptz`), booleans as `true`/`false`, numbers without grouping.

use crate::config::ColumnType;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use std::borrow::Cow;

/// Why a value does not fit its column. `code` follows Redshift's load error
/// numbers where one exists (see `stl_load_errors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoerceError {
    /// Error code (Redshift-style 12xx).
    pub code: i32,
    /// What is wrong, for a person.
    pub reason: String,
}

fn err(code: i32, reason: String) -> CoerceError {
    CoerceError { code, reason }
}

const NAIVE_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
];

fn parse_timestamp(v: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(v, f) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for f in NAIVE_FORMATS {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// Checks `value` (already trimmed if the column trims) against `ty` and
/// returns its canonical text.
pub fn coerce(value: &str, ty: ColumnType) -> Result<Cow<'_, str>, CoerceError> {
    match ty {
        ColumnType::Varchar(n) => {
            if value.len() > n as usize {
                Err(err(
                    1204,
                    format!(
                        "value is {} bytes, longer than varchar({n}) allows",
                        value.len()
                    ),
                ))
            } else {
                Ok(Cow::Borrowed(value))
            }
        }
        ColumnType::Int => value
            .parse::<i32>()
            .map(|_| Cow::Borrowed(value.trim_start_matches('+')))
            .map_err(|_| err(1207, format!("{value:?} is not a 32-bit integer"))),
        ColumnType::Bigint => value
            .parse::<i64>()
            .map(|_| Cow::Borrowed(value.trim_start_matches('+')))
            .map_err(|_| err(1207, format!("{value:?} is not a 64-bit integer"))),
        ColumnType::Decimal(p, s) => check_decimal(value, p, s).map(|_| Cow::Borrowed(value)),
        ColumnType::Boolean => match value.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" | "y" => Ok(Cow::Borrowed("true")),
            "false" | "f" | "0" | "no" | "n" => Ok(Cow::Borrowed("false")),
            _ => Err(err(
                1207,
                format!("{value:?} is not a boolean (true/false, t/f, 1/0, yes/no)"),
            )),
        },
        ColumnType::Date => NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .map(|d| Cow::Owned(d.format("%Y-%m-%d").to_string()))
            .map_err(|_| err(1205, format!("{value:?} is not a date (YYYY-MM-DD)"))),
        ColumnType::Timestamp | ColumnType::Timestamptz => {
            let t = parse_timestamp(value).ok_or_else(|| {
                err(
                    1206,
                    format!("{value:?} is not a timestamp (ISO-8601 such as 2026-01-31T12:00:00Z, or YYYY-MM-DD HH:MM:SS)"),
                )
            })?;
            let text = t.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            Ok(Cow::Owned(if ty == ColumnType::Timestamptz {
                text + "+00"
            } else {
                text
            }))
        }
        ColumnType::Json => serde_json::from_str::<serde::de::IgnoredAny>(value)
            .map(|_| Cow::Borrowed(value))
            .map_err(|e| err(1224, format!("not valid JSON: {e}"))),
    }
}

fn check_decimal(value: &str, p: u8, s: u8) -> Result<(), CoerceError> {
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let ok = !(int.is_empty() && frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return Err(err(1207, format!("{value:?} is not a decimal number")));
    }
    let int_digits = int.trim_start_matches('0').len();
    if int_digits > (p - s) as usize {
        return Err(err(
            1216,
            format!(
                "{value:?} has {int_digits} integer digits; decimal({p},{s}) allows {}",
                p - s
            ),
        ));
    }
    if frac.len() > s as usize {
        return Err(err(
            1216,
            format!(
                "{value:?} has {} decimal places; decimal({p},{s}) allows {s}",
                frac.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_become_utc() {
        let got = coerce("2026-03-01T10:00:00+02:00", ColumnType::Timestamptz).unwrap();
        assert_eq!(got, "2026-03-01 08:00:00.000000+00");
        let got = coerce("2026-03-01 10:00:00", ColumnType::Timestamptz).unwrap();
        assert_eq!(got, "2026-03-01 10:00:00.000000+00");
        let got = coerce("2026-03-01T10:00:00.5Z", ColumnType::Timestamp).unwrap();
        assert_eq!(got, "2026-03-01 10:00:00.500000");
        assert_eq!(
            coerce("yesterday", ColumnType::Timestamp).unwrap_err().code,
            1206
        );
    }

    #[test]
    fn varchar_counts_bytes_like_redshift() {
        assert!(coerce("héllo", ColumnType::Varchar(6)).is_ok());
        let e = coerce("héllo", ColumnType::Varchar(5)).unwrap_err();
        assert!(e.reason.contains("6 bytes"), "{}", e.reason);
    }

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(coerce("42", ColumnType::Int).unwrap(), "42");
        assert!(coerce("4294967296", ColumnType::Int).is_err());
        assert!(coerce("4294967296", ColumnType::Bigint).is_ok());
        assert_eq!(coerce("Yes", ColumnType::Boolean).unwrap(), "true");
        assert!(coerce("12.345", ColumnType::Decimal(10, 2)).is_err());
        assert!(coerce("-12.34", ColumnType::Decimal(4, 2)).is_ok());
        assert!(coerce("123.4", ColumnType::Decimal(4, 2)).is_err());
        assert!(coerce("{\"a\":1}", ColumnType::Json).is_ok());
        assert!(coerce("{a:1}", ColumnType::Json).is_err());
    }
}

//! Value contracts of a column, checked after its type: `one_of`,
//! `pattern`, `min`/`max` and `not_empty`. Each failure is a rejected row
//! whose reason names the rule, with its own error code (ferry's, beyond
//! Redshift's 12xx load errors):
//!
//! | code | rule |
//! |---|---|
//! | 1230 | `one_of`: the value is not in the list |
//! | 1231 | `pattern`: the value does not match the whole pattern |
//! | 1232 | `min`/`max`: the value is below `min` or above `max` |
//! | 1233 | `not_empty`: the text is empty (an empty string, not a missing value) |
//!
//! The values compared are the canonical texts [`super::coerce`] writes, so
//! `one_of = ["1"]` on an `int` column accepts `+1`, and `min` on a
//! timestamp column compares instants written in one form.

use super::{CoerceError, ColumnType, quoted};
use std::cmp::Ordering;

/// A column's contracts, every value already in the column's canonical
/// text.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// The only values allowed (empty: any).
    pub one_of: Vec<String>,
    /// A pattern the whole value must match.
    pub pattern: Option<regex::Regex>,
    /// The smallest value allowed.
    pub min: Option<String>,
    /// The largest value allowed.
    pub max: Option<String>,
    /// An empty text is rejected (a missing value is NULL, as before).
    pub not_empty: bool,
}

fn fail(code: i32, reason: String) -> CoerceError {
    CoerceError { code, reason }
}

impl Rules {
    /// Whether there is anything to check.
    pub fn is_empty(&self) -> bool {
        self.one_of.is_empty()
            && self.pattern.is_none()
            && self.min.is_none()
            && self.max.is_none()
            && !self.not_empty
    }

    /// Checks `value` (canonical text of type `ty`) against every rule.
    pub fn check(&self, value: &str, ty: ColumnType) -> Result<(), CoerceError> {
        if self.not_empty && value.is_empty() {
            return Err(fail(1233, "the text is empty (not_empty)".into()));
        }
        if !self.one_of.is_empty() && !self.one_of.iter().any(|v| v == value) {
            return Err(fail(
                1230,
                format!("{} is not one of {:?} (one_of)", quoted(value), self.one_of),
            ));
        }
        if let Some(p) = &self.pattern
            && !p.is_match(value)
        {
            return Err(fail(
                1231,
                format!(
                    "{} does not match the pattern {:?}",
                    quoted(value),
                    p.as_str().trim_start_matches("^(?:").trim_end_matches(")$")
                ),
            ));
        }
        if let Some(min) = &self.min
            && compare(value, min, ty) == Ordering::Less
        {
            return Err(fail(
                1232,
                format!("{} is below min = {min}", quoted(value)),
            ));
        }
        if let Some(max) = &self.max
            && compare(value, max, ty) == Ordering::Greater
        {
            return Err(fail(
                1232,
                format!("{} is above max = {max}", quoted(value)),
            ));
        }
        Ok(())
    }
}

/// Whether `ty` has an order `min`/`max` can use.
pub fn ordered(ty: ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::Int
            | ColumnType::Bigint
            | ColumnType::Decimal(..)
            | ColumnType::Date
            | ColumnType::Timestamp
            | ColumnType::Timestamptz
    )
}

/// Orders two canonical values of `ty`: numbers by value (exactly, also
/// decimals), dates and timestamps by their fixed-width text.
pub fn compare(a: &str, b: &str, ty: ColumnType) -> Ordering {
    match ty {
        ColumnType::Int | ColumnType::Bigint | ColumnType::Decimal(..) => compare_numbers(a, b),
        _ => a.cmp(b),
    }
}

/// Orders two decimal numbers written as `[+-]digits[.digits]`, exactly.
fn compare_numbers(a: &str, b: &str) -> Ordering {
    let (na, ma) = magnitude(a);
    let (nb, mb) = magnitude(b);
    let zero = |m: &(&str, &str)| m.0.is_empty() && m.1.is_empty();
    let (na, nb) = (na && !zero(&ma), nb && !zero(&mb));
    match (na, nb) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => compare_magnitudes(ma, mb),
        (true, true) => compare_magnitudes(mb, ma),
    }
}

/// Sign and (integer digits without leading zeros, fraction digits
/// without trailing zeros).
fn magnitude(v: &str) -> (bool, (&str, &str)) {
    let (negative, digits) = match v.as_bytes().first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    (
        negative,
        (int.trim_start_matches('0'), frac.trim_end_matches('0')),
    )
}

fn compare_magnitudes(a: (&str, &str), b: (&str, &str)) -> Ordering {
    a.0.len()
        .cmp(&b.0.len())
        .then_with(|| a.0.cmp(b.0))
        .then_with(|| a.1.cmp(b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value_exactly() {
        use Ordering::*;
        let cases = [
            ("1", "2", Less),
            ("10", "9", Greater),
            ("-1", "0", Less),
            ("-10", "-9", Less),
            ("0.10", "0.1", Equal),
            ("-0", "0", Equal),
            ("+5", "5", Equal),
            ("007", "7", Equal),
            ("12345678901234567890.5", "12345678901234567890.49", Greater),
            ("-1.5", "-1.25", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(
                compare(a, b, ColumnType::Decimal(38, 4)),
                want,
                "{a} vs {b}"
            );
        }
        assert_eq!(
            compare("2026-03-01", "2026-02-28", ColumnType::Date),
            Greater
        );
    }

    #[test]
    fn each_rule_names_itself_and_has_its_code() {
        let r = Rules {
            one_of: vec!["open".into(), "done".into()],
            ..Rules::default()
        };
        let e = r.check("gone", ColumnType::Varchar(8)).unwrap_err();
        assert_eq!(e.code, 1230);
        assert!(
            e.reason
                .contains("\"gone\" is not one of [\"open\", \"done\"] (one_of)"),
            "{}",
            e.reason
        );
        let r = Rules {
            pattern: Some(regex::Regex::new("^(?:[A-Z]{3}-[0-9]+)$").unwrap()),
            ..Rules::default()
        };
        assert!(r.check("ABC-12", ColumnType::Varchar(8)).is_ok());
        let e = r.check("ABC-12x", ColumnType::Varchar(8)).unwrap_err();
        assert_eq!(e.code, 1231);
        assert!(
            e.reason.contains("pattern \"[A-Z]{3}-[0-9]+\""),
            "{}",
            e.reason
        );
        let r = Rules {
            min: Some("0".into()),
            max: Some("100".into()),
            ..Rules::default()
        };
        assert!(r.check("100", ColumnType::Int).is_ok());
        assert_eq!(r.check("101", ColumnType::Int).unwrap_err().code, 1232);
        assert!(
            r.check("-1", ColumnType::Int)
                .unwrap_err()
                .reason
                .contains("below min = 0")
        );
        let r = Rules {
            not_empty: true,
            ..Rules::default()
        };
        assert_eq!(r.check("", ColumnType::Varchar(8)).unwrap_err().code, 1233);
        assert!(r.check(" ", ColumnType::Varchar(8)).is_ok());
    }
}

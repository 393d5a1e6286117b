//! Type checks and canonical text for each [`ColumnType`].
//!
//! The output text is what both warehouses' COPY parse the same way:
//! timestamps as `YYYY-MM-DD HH:MM:SS.ffffff` (UTC, with `+00` for
//! `timestamptz`), booleans as `true`/`false`, numbers without grouping.

use super::{Column, ColumnType, Zone};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
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

/// Characters of a bad value that an error reason quotes; the whole value
/// is kept (capped) in the error row's `raw_field_value`.
pub const QUOTED_CHARS: usize = 64;

/// A value as an error reason quotes it: at most [`QUOTED_CHARS`]
/// characters, escaped, with its full length when it was cut — so a reason
/// stays short (it fits `ferry_load_errors.reason`) whatever the value.
pub fn quoted(value: &str) -> String {
    match value.char_indices().nth(QUOTED_CHARS) {
        None => format!("{value:?}"),
        Some((end, _)) => format!("{:?}… ({} bytes)", &value[..end], value.len()),
    }
}

const NAIVE_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
];

fn naive_in(t: NaiveDateTime, zone: &Zone) -> Option<DateTime<Utc>> {
    zone.to_utc(t)
}

/// Parses with one configured format: `epoch`, `epoch_ms`, or a strftime
/// pattern (with or without an offset; without one, `zone` applies).
fn parse_with(v: &str, format: &str, zone: &Zone) -> Option<DateTime<Utc>> {
    match format {
        "epoch" => {
            let secs: f64 = v.parse().ok()?;
            DateTime::from_timestamp(
                secs.trunc() as i64,
                (secs.fract().abs() * 1e9).round() as u32,
            )
        }
        "epoch_ms" => DateTime::from_timestamp_millis(v.parse().ok()?),
        f => DateTime::parse_from_str(v, f)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDateTime::parse_from_str(v, f)
                    .ok()
                    .and_then(|t| naive_in(t, zone))
            })
            .or_else(|| {
                NaiveDate::parse_from_str(v, f)
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .and_then(|t| naive_in(t, zone))
            }),
    }
}

/// A timestamp in any of the built-in forms, taken in UTC without an offset.
pub(super) fn parse_timestamp(v: &str) -> Option<DateTime<Utc>> {
    parse_timestamp_in(v, &Zone::utc())
}

/// The built-in formats: RFC 3339 / ISO-8601 with `Z` or an offset, and
/// `YYYY-MM-DD[ T]HH:MM[:SS[.f]]` or a bare date, taken in `zone`.
fn parse_timestamp_in(v: &str, zone: &Zone) -> Option<DateTime<Utc>> {
    if let Some(t) = fast_iso(v, zone) {
        return Some(t);
    }
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
            return naive_in(t, zone);
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| naive_in(t, zone))
}

/// Year, month, day, hour, minute and second of `YYYY-MM-DD[T ]HH:MM:SS…`
/// (the digits only; not checked as a date).
fn iso_fields(b: &[u8]) -> Option<[u32; 6]> {
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let two = |i: usize| two_of(b[i], b[i + 1]);
    Some([
        two(0)? * 100 + two(2)?,
        two(5)?,
        two(8)?,
        two(11)?,
        two(14)?,
        two(17)?,
    ])
}

/// The common shape, `YYYY-MM-DD[T ]HH:MM:SS[.f…][Z|±HH[:MM]|±HHMM]`, read
/// without chrono's general parser (the hottest step of a CSV load before
/// this). Anything else, including leap seconds, returns `None` and goes
/// the general way, so this decides nothing the general parsers would not.
fn fast_iso(v: &str, zone: &Zone) -> Option<DateTime<Utc>> {
    let b = v.as_bytes();
    let [year, month, day, hour, minute, second] = iso_fields(b)?;
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + (b[i] - b'0') as u32;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..9 {
            nanos *= 10;
        }
    }
    let offset_secs: Option<i64> = match &b[i..] {
        [] => None,
        [b'Z'] => Some(0),
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest {
                [h1, h2] => (two_of(*h1, *h2)?, 0),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => (two_of(*h1, *h2)?, two_of(*m1, *m2)?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let secs = (h * 3600 + m * 60) as i64;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => return None,
    };
    let naive = NaiveDate::from_ymd_opt(year as i32, month, day)?
        .and_time(NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?);
    match offset_secs {
        Some(off) => Some(
            naive
                .checked_sub_signed(chrono::TimeDelta::seconds(off))?
                .and_utc(),
        ),
        None => zone.to_utc(naive),
    }
}

fn two_of(a: u8, b: u8) -> Option<u32> {
    let (a, b) = (a.wrapping_sub(b'0'), b.wrapping_sub(b'0'));
    (a < 10 && b < 10).then_some((a * 10 + b) as u32)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (+ `+00` for timestamptz; the fraction
/// only when not zero), written by hand:
/// chrono's strftime re-parses its pattern on every call, which showed up
/// as the hottest path of a load.
pub(super) fn timestamp_text(t: DateTime<Utc>, ty: ColumnType) -> String {
    use chrono::{Datelike, Timelike};
    fn digits(out: &mut String, n: u32, width: u32) {
        for p in (0..width).rev() {
            out.push((b'0' + (n / 10u32.pow(p) % 10) as u8) as char);
        }
    }
    let mut out = String::with_capacity(29);
    let year = t.year();
    if !(0..=9999).contains(&year) {
        // Outside what the fixed layout holds: let chrono write it.
        out.push_str(&t.format("%Y-%m-%d %H:%M:%S%.6f").to_string());
        if out.ends_with(".000000") {
            out.truncate(out.len() - 7);
        }
    } else {
        digits(&mut out, year as u32, 4);
        out.push('-');
        digits(&mut out, t.month(), 2);
        out.push('-');
        digits(&mut out, t.day(), 2);
        out.push(' ');
        digits(&mut out, t.hour(), 2);
        out.push(':');
        digits(&mut out, t.minute(), 2);
        out.push(':');
        digits(&mut out, t.second(), 2);
        let micros = t.timestamp_subsec_micros().min(999_999);
        if micros > 0 {
            out.push('.');
            digits(&mut out, micros, 6);
        }
    }
    if ty == ColumnType::Timestamptz {
        out.push_str("+00");
    }
    out
}

/// The canonical text of a timestamp already in UTC (`Z`, `+00`, `+00:00`,
/// `+0000`, or no offset when naive times are UTC), written from its own
/// digits without a round trip through chrono's calendar: the date and
/// time are checked as chrono would, and anything else (another offset,
/// a leap second, another shape) returns `false` for the general path.
fn utc_text_into(v: &str, ty: ColumnType, naive_is_utc: bool, out: &mut String) -> bool {
    let b = v.as_bytes();
    let Some([year, month, day, hour, minute, second]) = iso_fields(b) else {
        return false;
    };
    if NaiveDate::from_ymd_opt(year as i32, month, day).is_none()
        || hour > 23
        || minute > 59
        || second > 59
    {
        return false;
    }
    let mut i = 19;
    let mut frac = &b[i..i];
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
        frac = &b[start..i];
    }
    let utc = match &b[i..] {
        [] => naive_is_utc,
        b"Z" | b"+00" | b"+00:00" | b"+0000" | b"-00" | b"-00:00" | b"-0000" => true,
        _ => false,
    };
    if !utc {
        return false;
    }
    out.clear();
    out.push_str(&v[..10]);
    out.push(' ');
    out.push_str(&v[11..19]);
    // Microseconds, cut (not rounded) as chrono's are; none when zero.
    let micros = &frac[..frac.len().min(6)];
    if micros.iter().any(|&d| d != b'0') {
        out.push('.');
        out.push_str(std::str::from_utf8(micros).unwrap_or_default());
        for _ in micros.len()..6 {
            out.push('0');
        }
    }
    if ty == ColumnType::Timestamptz {
        out.push_str("+00");
    }
    true
}

/// Whether `v` is `YYYY-MM-DD HH:MM:SS+00` with a real date and time,
/// the text [`timestamp_text`] writes for a whole second.
fn is_canonical_timestamptz(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() != 22 || &b[19..] != b"+00" {
        return false;
    }
    let shape = b.iter().take(19).enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        10 => *c == b' ',
        13 | 16 => *c == b':',
        _ => c.is_ascii_digit(),
    });
    if !shape {
        return false;
    }
    let n = |r: std::ops::Range<usize>| v[r].parse::<u32>().unwrap_or(u32::MAX);
    NaiveDate::from_ymd_opt(n(0..4) as i32, n(5..7), n(8..10)).is_some()
        && n(11..13) < 24
        && n(14..16) < 60
        && n(17..19) < 60
}

/// A UUID's canonical text: lower-case, hyphenated, without braces.
fn uuid_text(value: &str) -> Option<Cow<'_, str>> {
    let inner = value
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .unwrap_or(value);
    let b = inner.as_bytes();
    let shaped = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    if !shaped {
        return None;
    }
    Some(
        if inner.len() == value.len() && !b.iter().any(u8::is_ascii_uppercase) {
            Cow::Borrowed(value)
        } else {
            Cow::Owned(inner.to_ascii_lowercase())
        },
    )
}

/// Like [`coerce`], with the column's own options: timestamp `formats` and
/// `timezone`, and varchar `on_overflow = "truncate"`.
pub fn coerce_column<'v>(value: &'v str, col: &Column) -> Result<Cow<'v, str>, CoerceError> {
    match col.column_type {
        ColumnType::Varchar(n) if col.truncate && value.len() > n as usize => {
            let mut end = n as usize;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            Ok(Cow::Borrowed(&value[..end]))
        }
        ty @ (ColumnType::Timestamp | ColumnType::Timestamptz)
            if !col.formats.is_empty() || !col.zone.is_utc() =>
        {
            col.formats
                .iter()
                .find_map(|f| parse_with(value, f, &col.zone))
                .or_else(|| parse_timestamp_in(value, &col.zone))
                .map(|t| Cow::Owned(timestamp_text(t, ty)))
                .ok_or_else(|| {
                    err(
                        1206,
                        format!(
                            "{} matches none of the formats {:?} nor ISO-8601",
                            quoted(value),
                            col.formats
                        ),
                    )
                })
        }
        ty => coerce(value, ty),
    }
}

/// A canonical value as [`coerce_column_into`] gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canon {
    /// The value is canonical as it is.
    Same,
    /// The canonical text is in the caller's buffer.
    Written,
}

/// [`coerce_column`] without an allocation per value: a canonical text that
/// differs from `value` is written into `out` (a buffer the caller reuses
/// from row to row).
pub fn coerce_column_into(
    value: &str,
    col: &Column,
    out: &mut String,
) -> Result<Canon, CoerceError> {
    // The commonest case, at once: text that fits its VARCHAR.
    if let ColumnType::Varchar(n) = col.column_type
        && value.len() <= n as usize
    {
        return Ok(Canon::Same);
    }
    if let ty @ (ColumnType::Timestamp | ColumnType::Timestamptz) = col.column_type
        && col.formats.is_empty()
        && utc_text_into(value, ty, col.zone.is_utc(), out)
    {
        return Ok(if out.as_str() == value {
            Canon::Same
        } else {
            Canon::Written
        });
    }
    match coerce_column(value, col)? {
        Cow::Borrowed(b) if b.len() == value.len() => Ok(Canon::Same),
        Cow::Borrowed(b) => {
            out.clear();
            out.push_str(b);
            Ok(Canon::Written)
        }
        Cow::Owned(o) => {
            *out = o;
            Ok(Canon::Written)
        }
    }
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
            .map(|_| Cow::Borrowed(value.strip_prefix('+').unwrap_or(value)))
            .map_err(|_| err(1207, format!("{} is not a 32-bit integer", quoted(value)))),
        ColumnType::Bigint => value
            .parse::<i64>()
            .map(|_| Cow::Borrowed(value.strip_prefix('+').unwrap_or(value)))
            .map_err(|_| err(1207, format!("{} is not a 64-bit integer", quoted(value)))),
        ColumnType::Decimal(p, s) => check_decimal(value, p, s).map(|_| Cow::Borrowed(value)),
        ColumnType::Boolean => match value.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" | "y" => Ok(Cow::Borrowed("true")),
            "false" | "f" | "0" | "no" | "n" => Ok(Cow::Borrowed("false")),
            _ => Err(err(
                1207,
                format!(
                    "{} is not a boolean (true/false, t/f, 1/0, yes/no)",
                    quoted(value)
                ),
            )),
        },
        ColumnType::Date => NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .map(|d| Cow::Owned(d.format("%Y-%m-%d").to_string()))
            .map_err(|_| {
                err(
                    1205,
                    format!("{} is not a date (YYYY-MM-DD)", quoted(value)),
                )
            }),
        // Already in the canonical form (as a derived column writes it):
        // kept as it is.
        ColumnType::Timestamptz if is_canonical_timestamptz(value) => Ok(Cow::Borrowed(value)),
        ColumnType::Timestamp | ColumnType::Timestamptz => {
            let t = parse_timestamp(value).ok_or_else(|| {
                err(
                    1206,
                    format!("{} is not a timestamp (ISO-8601 such as 2026-01-31T12:00:00Z, or YYYY-MM-DD HH:MM:SS)", quoted(value)),
                )
            })?;
            Ok(Cow::Owned(timestamp_text(t, ty)))
        }
        ColumnType::Uuid => uuid_text(value).ok_or_else(|| {
            err(
                1234,
                format!("{} is not a UUID (8-4-4-4-12 hex digits)", quoted(value)),
            )
        }),
        ColumnType::Json | ColumnType::Super => {
            serde_json::from_str::<serde::de::IgnoredAny>(value)
                .map(|_| Cow::Borrowed(value))
                .map_err(|e| err(1224, format!("not valid JSON: {e}")))
        }
    }
}

fn check_decimal(value: &str, p: u8, s: u8) -> Result<(), CoerceError> {
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let ok = !(int.is_empty() && frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return Err(err(
            1207,
            format!("{} is not a decimal number", quoted(value)),
        ));
    }
    let int_digits = int.trim_start_matches('0').len();
    if int_digits > (p - s) as usize {
        return Err(err(
            1216,
            format!(
                "{} has {int_digits} integer digits; decimal({p},{s}) allows {}",
                quoted(value),
                p - s
            ),
        ));
    }
    if frac.len() > s as usize {
        return Err(err(
            1216,
            format!(
                "{} has {} decimal places; decimal({p},{s}) allows {s}",
                quoted(value),
                frac.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct UTC path writes what the general one does, for every
    /// shape and edge it takes, and leaves the rest to it.
    #[test]
    fn the_direct_utc_path_agrees_with_the_general_one() {
        let mut rng = crate::rng::XorShift(7);
        let offsets = [
            "", "Z", "+00", "+00:00", "+0000", "-00:00", "+02:00", "-0530", "z", "+0",
        ];
        let fracs = [
            "",
            ".0",
            ".000000",
            ".5",
            ".123456",
            ".1234567",
            ".000000001",
            ".",
            ".12a",
        ];
        let mut out = String::new();
        for _ in 0..20_000 {
            let pick = |rng: &mut crate::rng::XorShift, n: u64| rng.below(n) as u32;
            let v = format!(
                "{:04}-{:02}-{:02}{}{:02}:{:02}:{:02}{}{}",
                pick(&mut rng, 10_000),
                pick(&mut rng, 14),
                pick(&mut rng, 33),
                if rng.below(2) == 0 { 'T' } else { ' ' },
                pick(&mut rng, 26),
                pick(&mut rng, 62),
                pick(&mut rng, 62),
                fracs[rng.below(fracs.len() as u64) as usize],
                offsets[rng.below(offsets.len() as u64) as usize],
            );
            for ty in [ColumnType::Timestamp, ColumnType::Timestamptz] {
                let col = Column {
                    column_type: ty,
                    ..Column::evolved(crate::sql::Ident::parse("t").unwrap(), "t", ty)
                };
                let general = coerce_column(&v, &col).map(|c| c.into_owned()).ok();
                let direct = coerce_column_into(&v, &col, &mut out)
                    .ok()
                    .map(|c| match c {
                        Canon::Same => v.clone(),
                        Canon::Written => out.clone(),
                    });
                assert_eq!(direct, general, "{v} as {ty:?}");
            }
        }
    }

    #[test]
    fn timestamps_become_utc() {
        let got = coerce("2026-03-01T10:00:00+02:00", ColumnType::Timestamptz).unwrap();
        assert_eq!(got, "2026-03-01 08:00:00+00");
        let got = coerce("2026-03-01 10:00:00", ColumnType::Timestamptz).unwrap();
        assert_eq!(got, "2026-03-01 10:00:00+00");
        let got = coerce("2026-03-01T10:00:00.5Z", ColumnType::Timestamp).unwrap();
        assert_eq!(got, "2026-03-01 10:00:00.500000");
        assert_eq!(
            coerce("yesterday", ColumnType::Timestamp).unwrap_err().code,
            1206
        );
    }

    #[test]
    fn named_zones_follow_daylight_saving_like_postgresql() {
        let col = |zone: &str| Column {
            name: crate::sql::Ident::parse("t").unwrap(),
            source: crate::schema::ColumnSource::Field("t".into()),
            column_type: ColumnType::Timestamptz,
            required: false,
            default: None,
            trim: false,
            formats: vec![],
            zone: Zone::parse(zone).unwrap(),
            truncate: false,
            rules: None,
        };
        let berlin = col("Europe/Berlin");
        let cases = [
            ("2026-07-01 12:00:00", "2026-07-01 10:00:00+00"),
            ("2026-01-15 12:00:00", "2026-01-15 11:00:00+00"),
            // Happens twice: the later one, as PostgreSQL reads it.
            ("2026-10-25 02:30:00", "2026-10-25 01:30:00+00"),
            // Never happens: the offset from before the gap.
            ("2026-03-29 02:30:00", "2026-03-29 01:30:00+00"),
            // An explicit offset wins over the zone.
            ("2026-07-01T12:00:00Z", "2026-07-01 12:00:00+00"),
        ];
        for (input, want) in cases {
            assert_eq!(coerce_column(input, &berlin).unwrap(), want, "{input}");
        }
        let fixed = col("-05:30");
        assert_eq!(
            coerce_column("2026-07-01 12:00", &fixed).unwrap(),
            "2026-07-01 17:30:00+00"
        );
        assert!(Zone::parse("Mars/Olympus").unwrap_err().contains("IANA"));
        assert!(Zone::parse("+25:00").is_err());
    }

    #[test]
    fn the_fast_timestamp_path_agrees_with_chrono() {
        let utc = Zone::utc();
        let cases = [
            "2026-03-01T10:00:00Z",
            "2026-03-01 10:00:00",
            "2026-03-01T10:00:00.5Z",
            "2026-03-01T10:00:00.123456789+02:00",
            "2026-03-01T10:00:00.1234567891Z",
            "2026-03-01T00:30:00-05:30",
            "2026-03-01T10:00:00+0200",
            "2026-03-01T10:00:00+02",
            "2024-02-29T23:59:59Z",
            "2026-12-31T23:00:00-01:00",
        ];
        for v in cases {
            let fast = fast_iso(v, &utc).unwrap_or_else(|| panic!("{v} is the common shape"));
            let slow = DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .ok()
                .or_else(|| {
                    ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"]
                        .iter()
                        .find_map(|f| DateTime::parse_from_str(v, f).ok())
                        .map(|t| t.with_timezone(&Utc))
                })
                .or_else(|| {
                    NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S")
                        .ok()
                        .map(|t| t.and_utc())
                })
                .unwrap_or_else(|| panic!("chrono reads {v}"));
            assert_eq!(fast, slow, "{v}");
        }
        for v in [
            "2026-02-30T10:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T10:00:60Z",
            "2026-03-01T10:00:00+2400",
            "2026-03-01T10:00:00.Z",
            "2026-03-01T10:00:00 Z",
            "2026-03-01T10:00:0xZ",
        ] {
            assert_eq!(fast_iso(v, &utc), None, "{v}");
        }
        assert_eq!(
            timestamp_text(
                fast_iso("0999-01-02T03:04:05.000007Z", &utc).unwrap(),
                ColumnType::Timestamptz
            ),
            "0999-01-02 03:04:05.000007+00"
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
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(coerce(id, ColumnType::Uuid).unwrap(), id);
        assert_eq!(
            coerce("{0F8FAD5B-D9CB-469F-A165-70867728950E}", ColumnType::Uuid).unwrap(),
            id
        );
        for bad in [
            "0f8fad5bd9cb469fa16570867728950e",
            "0f8fad5b-d9cb-469f-a165-70867728950",
            "0f8fad5b-d9cb-469f-a165-70867728950g",
            "é",
            "",
        ] {
            assert_eq!(
                coerce(bad, ColumnType::Uuid).unwrap_err().code,
                1234,
                "{bad}"
            );
        }
        assert!(coerce("{a:1}", ColumnType::Json).is_err());
    }
}

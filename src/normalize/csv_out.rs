//! The staged CSV writer: RFC 4180 with an unquoted `\N` for NULL.

use std::io::{self, Write};

/// How NULL is written (unquoted). COPY is told `NULL AS '\N'`.
pub const NULL_MARKER: &str = "\\N";

/// Bytes that force quoting anywhere in a value.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b',' as usize] = true;
    t[b'"' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t
};

fn needs_quotes(v: &str) -> bool {
    let b = v.as_bytes();
    // Every byte that can force quotes (a comma, a quote, CR, LF, an
    // edge space) is at most b','; most values have none, which one
    // branch-free pass tells.
    if !b.is_empty() && b.iter().fold(true, |all, &c| all & (c > b',')) {
        return b.len() == 2 && v == NULL_MARKER;
    }
    match (b.first(), b.last()) {
        (None, _) | (Some(b' '), _) | (_, Some(b' ')) => true,
        _ => b.iter().any(|&c| SPECIAL[c as usize]) || v == NULL_MARKER,
    }
}

/// Appends one field to a line being built.
fn push_field(line: &mut Vec<u8>, field: Option<&str>, plain: bool) {
    match field {
        None => line.extend_from_slice(NULL_MARKER.as_bytes()),
        Some(v) if !plain && needs_quotes(v) => {
            line.push(b'"');
            let mut rest = v.as_bytes();
            while let Some(pos) = memchr::memchr(b'"', rest) {
                line.extend_from_slice(&rest[..=pos]);
                line.push(b'"');
                rest = &rest[pos + 1..];
            }
            line.extend_from_slice(rest);
            line.push(b'"');
        }
        Some(v) => line.extend_from_slice(v.as_bytes()),
    }
}

/// Appends one record and its line end to `line` (the staged rows' hot
/// path builds each line in a reused buffer; [`write_row`] writes one).
pub fn push_row<'a>(line: &mut Vec<u8>, fields: impl IntoIterator<Item = (Option<&'a str>, bool)>) {
    for (i, (field, plain)) in fields.into_iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        push_field(line, field, plain);
    }
    line.push(b'\n');
}

/// Writes one record and its line end (`\n`).
pub fn write_record<'a, W: Write>(
    out: &mut W,
    fields: impl IntoIterator<Item = Option<&'a str>>,
) -> io::Result<()> {
    write_row(out, fields.into_iter().map(|f| (f, false)))
}

/// Like [`write_record`], where a field marked plain is known to need no
/// quotes (canonical numbers, booleans, dates and timestamps: never empty,
/// no delimiter, quote, line break or edge space), so it is not scanned.
pub fn write_row<'a, W: Write>(
    out: &mut W,
    fields: impl IntoIterator<Item = (Option<&'a str>, bool)>,
) -> io::Result<()> {
    let mut line = Vec::with_capacity(256);
    push_row(&mut line, fields);
    out.write_all(&line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(fields: &[Option<&str>]) -> String {
        let mut v = Vec::new();
        write_record(&mut v, fields.iter().copied()).unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn null_and_empty_stay_distinct() {
        assert_eq!(
            line(&[None, Some(""), Some("\\N"), Some("x")]),
            "\\N,\"\",\"\\N\",x\n"
        );
    }

    #[test]
    fn push_row_writes_what_write_row_does() {
        let fields = [
            (None, false),
            (Some(""), false),
            (Some("\\N"), false),
            (Some(" x"), false),
            (Some("a\"b\"\"c"), false),
            (Some("l1\r\nl2"), false),
            (Some("c,d"), false),
            (Some("2026-01-01 00:00:00+00"), true),
        ];
        let mut written = Vec::new();
        write_row(&mut written, fields).unwrap();
        let mut pushed = Vec::new();
        push_row(&mut pushed, fields);
        assert_eq!(
            String::from_utf8(pushed).unwrap(),
            String::from_utf8(written).unwrap()
        );
    }

    #[test]
    fn quotes_and_newlines_are_quoted() {
        assert_eq!(
            line(&[Some("a\"b"), Some("l1\nl2"), Some("c,d")]),
            "\"a\"\"b\",\"l1\nl2\",\"c,d\"\n"
        );
    }
}

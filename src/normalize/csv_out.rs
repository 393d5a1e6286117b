//! The staged CSV writer: RFC 4180 with an unquoted `\N` for NULL.

use std::io::{self, Write};

/// How NULL is written (unquoted). COPY is told `NULL AS '\N'`.
pub const NULL_MARKER: &str = "\\N";

fn needs_quotes(v: &str) -> bool {
    v.is_empty()
        || v == NULL_MARKER
        || v.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
        || v.starts_with(' ')
        || v.ends_with(' ')
}

/// Writes one record and its line end (`\n`).
pub fn write_record<'a, W: Write>(
    out: &mut W,
    fields: impl IntoIterator<Item = Option<&'a str>>,
) -> io::Result<()> {
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        match field {
            None => out.write_all(NULL_MARKER.as_bytes())?,
            Some(v) if needs_quotes(v) => {
                out.write_all(b"\"")?;
                let mut rest = v;
                while let Some(pos) = rest.find('"') {
                    out.write_all(&rest.as_bytes()[..=pos])?;
                    out.write_all(b"\"")?;
                    rest = &rest[pos + 1..];
                }
                out.write_all(rest.as_bytes())?;
                out.write_all(b"\"")?;
            }
            Some(v) => out.write_all(v.as_bytes())?,
        }
    }
    out.write_all(b"\n")
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
    fn quotes_and_newlines_are_quoted() {
        assert_eq!(
            line(&[Some("a\"b"), Some("l1\nl2"), Some("c,d")]),
            "\"a\"\"b\",\"l1\nl2\",\"c,d\"\n"
        );
    }
}

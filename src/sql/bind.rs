//! The one place that reads placeholders in SQL text: PostgreSQL's `$n`
//! and the Data API's `:name`, found only in code — never inside a string
//! literal (`'…'`, `E'…'`), a quoted identifier (`"…"`), a dollar-quoted
//! string (`$tag$…$tag$`) or a comment (`--`, `/* … */`), and never inside
//! an unquoted identifier (`a$1` is a name). Nothing here panics: a
//! statement that uses a parameter nobody gave is an error to return.

use std::fmt;

/// A placeholder that cannot be bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindError {
    /// The placeholder as written, e.g. `$3`.
    pub placeholder: String,
    /// How many parameters there are.
    pub given: usize,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the statement uses {} but only {} parameter(s) are bound",
            self.placeholder, self.given
        )
    }
}

impl std::error::Error for BindError {}

/// One piece of SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Code: keywords, names, operators, placeholders.
    Code(&'a str),
    /// Kept as written: a literal, a quoted identifier or a comment.
    Verbatim(&'a str),
}

fn ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// The end of a dollar quote's opening tag at `i` (`$$` or `$tag$`), if
/// one starts there.
fn dollar_tag_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if b.get(j).is_some_and(|c| c.is_ascii_digit()) {
        return None; // `$1`: a parameter
    }
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        j += 1;
    }
    (b.get(j) == Some(&b'$')).then_some(j + 1)
}

/// Splits `sql` into code and verbatim pieces; together they are `sql`.
/// An unterminated literal or comment runs to the end (the warehouse
/// reports it).
pub fn pieces(sql: &str) -> Vec<Piece<'_>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let (mut code_from, mut i) = (0, 0);
    while i < b.len() {
        let prev_ident = i > 0 && ident_char(b[i - 1]);
        // E'…' takes backslash escapes; its E is part of the piece.
        let e_prefix = b[i] == b'\''
            && i > code_from
            && matches!(b[i - 1], b'E' | b'e')
            && !(i > 1 && ident_char(b[i - 2]));
        let end = match b[i] {
            b'\'' => {
                let escapes = e_prefix;
                let mut j = i + 1;
                loop {
                    match b.get(j) {
                        None => break b.len(),
                        Some(b'\\') if escapes => j += 2,
                        Some(b'\'') if b.get(j + 1) == Some(&b'\'') => j += 2,
                        Some(b'\'') => break j + 1,
                        Some(_) => j += 1,
                    }
                }
                .min(b.len())
            }
            b'"' => {
                let mut j = i + 1;
                loop {
                    match b.get(j) {
                        None => break b.len(),
                        Some(b'"') if b.get(j + 1) == Some(&b'"') => j += 2,
                        Some(b'"') => break j + 1,
                        Some(_) => j += 1,
                    }
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                memchr_from(b, i, b'\n').map_or(b.len(), |n| n + 1)
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                j
            }
            b'$' if !prev_ident => match dollar_tag_end(b, i) {
                Some(tag_end) => {
                    let tag = &sql[i..tag_end];
                    sql[tag_end..]
                        .find(tag)
                        .map_or(b.len(), |k| tag_end + k + tag.len())
                }
                None => {
                    i += 1;
                    continue;
                }
            },
            _ => {
                i += 1;
                continue;
            }
        };
        let start = if e_prefix { i - 1 } else { i };
        if start > code_from {
            out.push(Piece::Code(&sql[code_from..start]));
        }
        out.push(Piece::Verbatim(&sql[start..end]));
        code_from = end;
        i = end;
    }
    if code_from < b.len() {
        out.push(Piece::Code(&sql[code_from..]));
    }
    out
}

fn memchr_from(b: &[u8], from: usize, c: u8) -> Option<usize> {
    memchr::memchr(c, &b[from..]).map(|n| from + n)
}

/// `sql` with each code piece written by `on_code` (which appends to the
/// output) and every verbatim piece kept as it is.
fn map_code<E>(
    sql: &str,
    mut on_code: impl FnMut(&str, &mut String) -> Result<(), E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(sql.len());
    for piece in pieces(sql) {
        match piece {
            Piece::Verbatim(v) => out.push_str(v),
            Piece::Code(c) => on_code(c, &mut out)?,
        }
    }
    Ok(out)
}

/// Rewrites every `$n` in code with `with(n)` (1-based); `$` that is not
/// a parameter (in a name, a literal, a comment) stays as it is.
pub fn rewrite_positional(
    sql: &str,
    count: usize,
    mut with: impl FnMut(usize, &mut String),
) -> Result<String, BindError> {
    map_code(sql, |code, out| {
        let b = code.as_bytes();
        let mut from = 0;
        let mut i = 0;
        while i < b.len() {
            let starts = b[i] == b'$'
                && b.get(i + 1).is_some_and(u8::is_ascii_digit)
                && !(i > 0 && ident_char(b[i - 1]));
            if !starts {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let n: usize = code[i + 1..j].parse().unwrap_or(0);
            if n == 0 || n > count {
                return Err(BindError {
                    placeholder: code[i..j].to_string(),
                    given: count,
                });
            }
            out.push_str(&code[from..i]);
            with(n, out);
            from = j;
            i = j;
        }
        out.push_str(&code[from..]);
        Ok(())
    })
}

/// Rewrites every `:name` in code (not `::name`, a cast, nor a longer
/// name) for which `with` returns a replacement.
pub fn rewrite_named(sql: &str, mut with: impl FnMut(&str) -> Option<String>) -> String {
    let rewritten = map_code(sql, |code, out| {
        let b = code.as_bytes();
        let (mut from, mut i) = (0, 0);
        while i < b.len() {
            let starts = b[i] == b':'
                && b.get(i + 1)
                    .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
                && !(i > 0 && b[i - 1] == b':');
            if !starts {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if let Some(r) = with(&code[i + 1..j]) {
                out.push_str(&code[from..i]);
                out.push_str(&r);
                from = j;
            }
            i = j;
        }
        out.push_str(&code[from..]);
        Ok::<(), std::convert::Infallible>(())
    });
    match rewritten {
        Ok(s) => s,
        Err(never) => match never {},
    }
}

/// Replaces `from` with `to` in code only (function names such as
/// `now()`), never inside literals, quoted names or comments.
pub fn replace_in_code(sql: &str, from: &str, to: &str) -> String {
    pieces(sql)
        .into_iter()
        .map(|p| match p {
            Piece::Code(c) => c.replace(from, to),
            Piece::Verbatim(v) => v.to_string(),
        })
        .collect()
}

/// The first word of `words` (lower case) that `sql` uses as a keyword:
/// a whole word in code, outside literals, quoted names and comments.
pub fn first_keyword<'w>(sql: &str, words: &[&'w str]) -> Option<&'w str> {
    pieces(sql).into_iter().find_map(|p| match p {
        Piece::Code(c) => c
            .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '$'))
            .find_map(|w| words.iter().find(|k| w.eq_ignore_ascii_case(k)).copied()),
        Piece::Verbatim(_) => None,
    })
}

/// The `$n` placeholders used in code, as written.
pub fn positional_used(sql: &str) -> Vec<String> {
    let mut used = Vec::new();
    let _ = rewrite_positional(sql, usize::MAX, |n, _| used.push(format!("${n}")));
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_names(sql: &str, names: &[&str]) -> Result<String, BindError> {
        rewrite_positional(sql, names.len(), |n, out| {
            out.push(':');
            out.push_str(names[n - 1]);
        })
    }

    #[test]
    fn dollars_in_literals_names_and_comments_are_not_parameters() {
        let sql = r#"SELECT '$1', E'\'$2', "a$3", a$4, $$x$1$$, $t$ $2 $t$ -- $9
 /* $8 /* $7 */ */ FROM t WHERE x = $1 AND y LIKE '$%'"#;
        let got = to_names(sql, &["job"]).unwrap();
        assert!(got.ends_with("WHERE x = :job AND y LIKE '$%'"), "{got}");
        assert_eq!(got.matches(":job").count(), 1, "{got}");
        assert!(got.starts_with(r#"SELECT '$1', E'\'$2', "a$3", a$4, $$x$1$$"#));
    }

    /// Regression: `Dialect::adapt` panicked on a `$` not followed by a
    /// parameter number, so a check with `LIKE '$%'` crashed the daemon.
    #[test]
    fn an_unbound_parameter_is_an_error_not_a_panic() {
        let e = to_names("SELECT $2", &["a"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the statement uses $2 but only 1 parameter(s) are bound"
        );
        assert!(to_names("SELECT $0", &["a"]).is_err());
        assert_eq!(to_names("SELECT '$' || $", &[]).unwrap(), "SELECT '$' || $");
        assert_eq!(
            to_names("unterminated '$1", &[]).unwrap(),
            "unterminated '$1"
        );
    }

    #[test]
    fn named_parameters_skip_casts_longer_names_and_literals() {
        let got = rewrite_named("x::job, :job, :jobs, ':job', \":job\" -- :job\n", |n| {
            (n == "job").then(|| "$1".to_string())
        });
        assert_eq!(got, "x::job, $1, :jobs, ':job', \":job\" -- :job\n");
    }

    #[test]
    fn keywords_are_found_in_code_only() {
        let writes = ["delete", "insert"];
        assert_eq!(
            first_keyword("WITH d AS (DELETE FROM t RETURNING 1) SELECT 1", &writes),
            Some("delete")
        );
        assert_eq!(
            first_keyword(
                "SELECT 'delete', \"insert\", deleted_at FROM t -- delete",
                &writes
            ),
            None
        );
    }

    #[test]
    fn functions_are_replaced_in_code_only() {
        assert_eq!(
            replace_in_code("SELECT now(), 'now()'", "now()", "SYSDATE"),
            "SELECT SYSDATE, 'now()'"
        );
    }

    #[test]
    fn pieces_cover_the_text_and_never_panic() {
        use crate::rng::XorShift;
        let alphabet = [
            '$', '\'', '"', '-', '/', '*', 'E', '1', 'a', ' ', '\\', 'é', ':',
        ];
        let mut rng = XorShift(7);
        for _ in 0..5000 {
            let len = rng.below(30) as usize;
            let s: String = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect();
            let joined: String = pieces(&s)
                .iter()
                .map(|p| match p {
                    Piece::Code(c) | Piece::Verbatim(c) => *c,
                })
                .collect();
            assert_eq!(joined, s);
            let _ = to_names(&s, &["a"]);
            let _ = rewrite_named(&s, |_| Some("x".into()));
        }
    }
}

//! Redshift SQL to PostgreSQL: `:name` parameters bound as literals
//! (server side, as Redshift does) and the few spellings that differ.

use super::*;

/// Binds `:name` parameters as quoted literals, leaving `::type` casts and
/// text inside quotes alone.
pub(super) fn bind(sql: &str, params: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len());
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            out.push(c);
            i += 1;
            continue;
        }
        if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push_str("::");
            i += 2;
            continue;
        }
        if c == ':'
            && chars
                .get(i + 1)
                .is_some_and(|n| n.is_ascii_alphanumeric() || *n == '_')
        {
            let start = i + 1;
            let mut end = start;
            while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
                end += 1;
            }
            let name: String = chars[start..end].iter().collect();
            let value = params
                .get(&name)
                .ok_or_else(|| format!("no value for parameter :{name}"))?;
            out.push('\'');
            out.push_str(&value.replace('\'', "''"));
            out.push('\'');
            i = end;
            continue;
        }
        out.push(c);
        i += 1;
    }
    Ok(out)
}

/// Rewrites what Redshift has and PostgreSQL lacks: table attributes
/// (`DISTSTYLE x`, `[COMPOUND|INTERLEAVED] SORTKEY (…)`, `DISTKEY (…)`,
/// `ENCODE x`) are dropped, `SYSDATE` (the transaction's start) becomes
/// `now()` and `GETDATE()` (the statement's) `clock_timestamp()`. Quoted
/// text is left alone. COPY statements pass unchanged.
pub(super) fn to_postgres(sql: &str) -> String {
    if sql
        .trim_start()
        .get(..5)
        .is_some_and(|w| w.eq_ignore_ascii_case("COPY "))
    {
        return sql.to_string();
    }
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let word_at = |i: usize| -> String {
        chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
            .collect::<String>()
            .to_ascii_uppercase()
    };
    let skip_space = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let skip_group = |i: usize| {
        let mut j = skip_space(i);
        if chars.get(j) == Some(&'(') {
            while j < chars.len() && chars[j] != ')' {
                j += 1;
            }
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' {
            let end = chars[i + 1..]
                .iter()
                .position(|d| *d == c)
                .map(|p| i + 2 + p)
                .unwrap_or(chars.len());
            out.extend(&chars[i..end]);
            i = end;
            continue;
        }
        let starts_word = (c.is_ascii_alphabetic() || c == '_')
            && (i == 0 || !(chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_'));
        if !starts_word {
            out.push(c);
            i += 1;
            continue;
        }
        let word = word_at(i);
        let after = i + word.len();
        match word.as_str() {
            "DISTSTYLE" | "ENCODE" => {
                let j = skip_space(after);
                i = j + word_at(j).len();
            }
            "DISTKEY" | "SORTKEY" => i = skip_group(after),
            "COMPOUND" | "INTERLEAVED" if word_at(skip_space(after)) == "SORTKEY" => {
                i = skip_space(after);
            }
            "SUPER" => {
                out.push_str("JSONB");
                i = after;
            }
            // JSON_PARSE(x) parses text into a document: a cast to jsonb.
            "JSON_PARSE" if chars.get(skip_space(after)) == Some(&'(') => {
                let open = skip_space(after);
                let close = matching_paren(&chars, open);
                let inner = sql_slice(&chars, open + 1, close);
                out.push_str(&format!("CAST({} AS JSONB)", to_postgres(&inner)));
                i = (close + 1).min(chars.len());
            }
            "SYSDATE" => {
                out.push_str("now()");
                i = after;
            }
            "GETDATE" if chars[skip_space(after)..].starts_with(&['(', ')']) => {
                out.push_str("clock_timestamp()");
                i = skip_space(after) + 2;
            }
            _ => {
                out.push_str(&sql_slice(&chars, i, after));
                i = after;
            }
        }
    }
    out
}

/// The index of the `)` that closes the `(` at `open` (quotes skipped),
/// or the end of the text.
fn matching_paren(chars: &[char], open: usize) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            q @ ('\'' | '"') => {
                i += 1;
                while i < chars.len() && chars[i] != q {
                    i += 1;
                }
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

/// What Redshift refuses in the DDL ferry sends, with its error text:
/// `ALTER COLUMN … TYPE` inside a transaction block (any
/// BatchExecuteStatement), `ADD COLUMN IF NOT EXISTS` (Redshift has no
/// such clause) and more than one column per `ALTER TABLE … ADD`.
pub(super) fn refused_ddl(sql: &str, in_transaction: bool) -> Option<String> {
    let words: Vec<String> = sql
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase)
        .collect();
    if words.first().map(String::as_str) != Some("ALTER")
        || words.get(1).map(String::as_str) != Some("TABLE")
    {
        return None;
    }
    let has = |a: &str, b: &str| words.windows(2).any(|w| w[0] == a && w[1] == b);
    if in_transaction && has("ALTER", "COLUMN") && words.iter().any(|w| w == "TYPE") {
        return Some("ALTER TABLE ALTER COLUMN cannot run inside a transaction block".into());
    }
    if has("ADD", "COLUMN")
        && words
            .windows(3)
            .any(|w| w[0] == "COLUMN" && w[1] == "IF" && w[2] == "NOT")
    {
        return Some("syntax error at or near \"NOT\"".into());
    }
    if words.iter().filter(|w| *w == "ADD").count() > 1 {
        return Some(
            "syntax error at or near \"ADD\": ALTER TABLE adds one column per statement".into(),
        );
    }
    None
}

pub(super) fn sql_slice(chars: &[char], from: usize, to: usize) -> String {
    chars[from..to].iter().collect()
}

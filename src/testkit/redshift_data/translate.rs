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

pub(super) fn sql_slice(chars: &[char], from: usize, to: usize) -> String {
    chars[from..to].iter().collect()
}

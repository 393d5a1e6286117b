//! Constants bound into SQL text: `BatchExecuteStatement` takes no
//! parameters, so values are written as checked literals.

use super::*;

/// Replaces `:name` placeholders whose value is NULL or empty with the
/// constants `NULL` / `''`, and returns the parameters left to send.
pub(super) fn inline_constants(sql: &str, params: &[Param<'_>]) -> (String, Vec<SqlParameter>) {
    let mut text = sql.to_string();
    let mut send = Vec::new();
    // Longest names first, so `:e1` never eats the start of `:e10`.
    let mut order: Vec<&Param<'_>> = params.iter().collect();
    order.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    for (name, value) in order {
        let constant = match value.as_deref() {
            None => "NULL",
            Some("") => "''",
            Some(v) => {
                if text.contains(&format!(":{name}")) {
                    send.push(
                        SqlParameter::builder()
                            .name(*name)
                            .value(v)
                            .build()
                            .expect("name and value are set"),
                    );
                }
                continue;
            }
        };
        text = replace_placeholder(&text, name, constant);
    }
    (text, send)
}

/// Replaces `:name` (not `::type`, not a longer name, not inside quotes).
pub(super) fn replace_placeholder(sql: &str, name: &str, with: &str) -> String {
    crate::sql::bind::rewrite_named(sql, |n| (n == name).then(|| with.to_string()))
}

/// A COPY literal (S3 URL, IAM role) may hold no quote or backslash.
pub(super) fn literal(what: &str, value: &str) -> Result<String> {
    if value.contains(['\'', '\\']) || value.chars().any(char::is_control) {
        return Err(Error::config(format!(
            "{what} {value:?} holds a quote, backslash or control character, which ferry will not put in a COPY statement"
        )));
    }
    Ok(format!("'{value}'"))
}

/// A text field of a result row.
pub(super) fn text(f: &Field) -> Option<String> {
    match f {
        Field::StringValue(s) => Some(s.clone()),
        Field::LongValue(n) => Some(n.to_string()),
        Field::BooleanValue(b) => Some(b.to_string()),
        Field::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

pub(super) fn long(f: &Field) -> Option<i64> {
    match f {
        Field::LongValue(n) => Some(*n),
        Field::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

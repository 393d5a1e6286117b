//! A job's post-load `checks`: named read-only queries that return the
//! rows that are wrong.

use super::*;

/// A post-load check, e.g. `{ name = "no_null_task", sql = "SELECT
/// event_id FROM {target} WHERE ferry_load_id = :load_id AND task_id IS
/// NULL" }`. A failed check is logged, counted in the metrics and kept in
/// `ferry_checks`; the load stays committed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// Name in logs, metrics and `ferry_checks` (letters, digits, `_`).
    pub name: String,
    /// One SELECT. `{target}` is the job's target table and `{schema}`
    /// the warehouse schema (both quoted); `:load_id`, `:job` and `:rows`
    /// (the rows the load wrote) are text parameters: compare numbers as
    /// `CAST(:rows AS BIGINT)`.
    pub sql: String,
}

/// Validates a job's post-load `checks` (`path` is the job's key path).
pub(super) fn validate_checks(path: &str, raw: &[RawCheck], p: &mut Problems) -> Vec<Check> {
    let mut checks = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let check = validate_check(&format!("{path}.checks[{i}]"), c, &checks, p);
        checks.push(check);
    }
    checks
}

/// One check at `cpath`: a name not used by `checks` before it, and one
/// read-only SELECT with only `{target}`/`{schema}` and `:name` parameters.
pub(super) fn validate_check(
    cpath: &str,
    c: &RawCheck,
    checks: &[Check],
    p: &mut Problems,
) -> Check {
    let named = !c.name.is_empty()
        && c.name.len() <= 64
        && c.name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
    if !named {
        p.push(
            format!("{cpath}.name"),
            format!("{:?}: use 1-64 letters, digits or _", c.name),
        );
    } else if checks.iter().any(|k| k.name == c.name) {
        p.push(
            format!("{cpath}.name"),
            format!("{:?} is used twice", c.name),
        );
    }
    let sql = c.sql.trim().trim_end_matches(';').trim();
    if !sql.to_ascii_lowercase().starts_with("select")
        && !sql.to_ascii_lowercase().starts_with("with")
    {
        p.push(
            format!("{cpath}.sql"),
            "must be one SELECT (or WITH … SELECT) returning the rows that are wrong",
        );
    } else if sql.contains(';') {
        p.push(
            format!("{cpath}.sql"),
            "must be one statement (no `;` inside)",
        );
    }
    let unknown: Vec<&str> = sql
        .match_indices('{')
        .filter_map(|(at, _)| sql[at..].find('}').map(|end| &sql[at..at + end + 1]))
        .filter(|t| *t != "{target}" && *t != "{schema}")
        .collect();
    if let Some(t) = unknown.first() {
        p.push(
            format!("{cpath}.sql"),
            format!("{t} is not a placeholder; use {{target}} or {{schema}}"),
        );
    }
    const WRITES: &[&str] = &[
        "insert", "update", "delete", "merge", "truncate", "drop", "alter", "create", "grant",
        "revoke", "copy", "unload", "call", "vacuum", "analyze", "lock",
    ];
    if let Some(w) = crate::sql::bind::first_keyword(sql, WRITES) {
        p.push(
            format!("{cpath}.sql"),
            format!(
                "uses {}: a check only reads (it runs in a read-only transaction)",
                w.to_ascii_uppercase()
            ),
        );
    }
    if let Some(d) = crate::sql::bind::positional_used(sql).first() {
        p.push(
            format!("{cpath}.sql"),
            format!(
                "uses {d}; name the parameters :load_id, :job or :rows (a literal $ belongs in quotes)"
            ),
        );
    }
    Check {
        name: c.name.clone(),
        sql: sql.to_string(),
    }
}

/// A post-load check: a query that returns the rows that are wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Name in logs, metrics and `ferry_checks` (1-64 letters, digits, `_`).
    pub name: String,
    /// The query, with `{target}`/`{schema}` and `:load_id`/`:job`/`:rows`
    /// still to fill in.
    pub sql: String,
}

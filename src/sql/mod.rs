//! SQL basics every part of ferry shares: validated identifiers, the two
//! dialects' differences, and the placeholder binder ([`bind`]).
//!
//! Nothing here knows about jobs, files or the ledger; everything that
//! writes SQL depends on this module, and it depends on nothing of ferry's.

pub mod bind;

use std::fmt;

/// A validated SQL identifier: lowercase ASCII letters, digits, `_` and `$`,
/// starting with a letter or `_`, at most 127 bytes (Redshift's limit).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// Validates `name`.
    pub fn parse(name: &str) -> Result<Ident, String> {
        let ok_start = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        let ok_rest = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
        if !ok_start || !ok_rest || name.len() > 127 {
            return Err(format!(
                "{name:?} is not a valid identifier (use lowercase letters, digits and _, starting with a letter or _, at most 127 bytes)"
            ));
        }
        Ok(Ident(name.to_string()))
    }

    /// The bare name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name in double quotes, ready for SQL text.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SQL dialect differences that matter to ferry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `$n` parameters, `now()`.
    Postgres,
    /// Redshift: `:name` parameters (Data API), `SYSDATE`.
    Redshift,
}

impl Dialect {
    /// A parameter placeholder.
    pub fn param(self, n: usize, name: &str) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Redshift => format!(":{name}"),
        }
    }

    /// Adapts a statement written with PostgreSQL's `$n` parameters: on
    /// Redshift (the Data API) `$n` becomes `:names[n-1]`, `now()` the
    /// transaction's time (`SYSDATE`) and `clock_timestamp()` the
    /// statement's (`GETDATE()`) — in code only, never inside literals,
    /// quoted names or comments ([`bind`]). PostgreSQL gets the text
    /// unchanged.
    pub fn try_adapt(self, sql: &str, names: &[&str]) -> Result<String, bind::BindError> {
        if self == Dialect::Postgres {
            // Checked all the same, so a bad statement fails alike on both.
            bind::rewrite_positional(sql, names.len(), |_, _| {})?;
            return Ok(sql.to_string());
        }
        let sql = bind::replace_in_code(sql, "clock_timestamp()", "GETDATE()");
        let sql = bind::replace_in_code(&sql, "now()", "SYSDATE");
        bind::rewrite_positional(&sql, names.len(), |n, out| {
            out.push(':');
            out.push_str(names[n - 1]);
        })
    }

    /// [`try_adapt`](Self::try_adapt) for ferry's own statements, whose
    /// parameters are fixed: a mismatch (a bug) is logged and the text is
    /// sent as it is, for the warehouse to refuse with its own error —
    /// never a panic.
    pub fn adapt(self, sql: &str, names: &[&str]) -> String {
        match self.try_adapt(sql, names) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, sql, "a statement does not match its parameters");
                sql.to_string()
            }
        }
    }

    /// The transaction's start time.
    pub fn transaction_time(self) -> &'static str {
        match self {
            Dialect::Postgres => "now()",
            Dialect::Redshift => "SYSDATE",
        }
    }
}

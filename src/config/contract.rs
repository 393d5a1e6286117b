//! `[jobs.contract]`: what a job does when a file's schema drifts from
//! its mapping — fields the mapping does not have (`columns`), mapped
//! fields a file lacks, and values that do not fit a column's type or
//! length (`types`) — and whether ferry may create the target (`table`).
//!
//! Without a contract a job behaves as it always has: unmapped fields are
//! left out (and recorded), a CSV header without a mapped field fails the
//! file, a value that does not fit rejects its row.

use super::*;

/// `[jobs.contract]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContract {
    /// The target table: `evolve` (create it from the mapping when it is
    /// missing, as `auto_create = true`) or `freeze` (it must exist).
    pub table: Option<String>,
    /// Fields of a file the mapping does not have: `evolve` (add a column
    /// for each, typed from its values), `freeze` (fail the file),
    /// `discard_row` (reject the records that carry one), `discard_value`
    /// (leave them out) or `capture` (keep them in one JSON column).
    pub columns: Option<String>,
    /// Values that do not fit their column's type or length: `evolve`
    /// (widen the VARCHAR; other types reject the row), `freeze` (fail the
    /// file), `discard_row` (reject the row, the default) or
    /// `discard_value` (load NULL instead, counted).
    pub types: Option<String>,
    /// With `columns = "capture"`: the JSON column (`SUPER` on Redshift,
    /// `jsonb` on PostgreSQL) that holds each record's unmapped fields.
    #[serde(default = "default_capture_column")]
    pub capture_column: String,
}

fn default_capture_column() -> String {
    "ferry_extra".into()
}

/// What a job does about one kind of drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Change the target to fit (add a column, widen a VARCHAR).
    Evolve,
    /// Fail the file, saying what changed and how to accept it.
    Freeze,
    /// Reject the records concerned (each with its line and reason).
    DiscardRow,
    /// Leave the value out (NULL for a value that does not fit).
    DiscardValue,
    /// Keep unmapped fields as one JSON object per record.
    Capture,
}

impl Policy {
    /// The name as the configuration writes it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Evolve => "evolve",
            Policy::Freeze => "freeze",
            Policy::DiscardRow => "discard_row",
            Policy::DiscardValue => "discard_value",
            Policy::Capture => "capture",
        }
    }
}

/// A job's schema contract.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contract {
    /// New fields; `None`: left out, as without a contract.
    pub columns: Option<Policy>,
    /// Values that do not fit; `None`: the row is rejected.
    pub types: Option<Policy>,
    /// With `columns = capture`: the JSON column.
    pub capture_column: Option<Ident>,
}

impl Contract {
    /// Whether a file's drift may change the target (`evolve` anywhere).
    pub fn evolves(&self) -> bool {
        self.columns == Some(Policy::Evolve) || self.types == Some(Policy::Evolve)
    }

    /// Whether a mapped field a file lacks is loaded as NULL (or its
    /// default) instead of failing the file: any columns policy but
    /// `freeze`.
    pub fn tolerates_missing(&self) -> bool {
        self.columns.is_some_and(|p| p != Policy::Freeze)
    }
}

/// Validates `[jobs.contract]`; returns the contract and whether the
/// table may be created (`table = "evolve"`).
pub(super) fn validate_contract(
    path: &str,
    raw: Option<&RawContract>,
    column_names: &HashSet<&str>,
    auto_create: bool,
    p: &mut Problems,
) -> (Contract, bool) {
    let Some(raw) = raw else {
        return (Contract::default(), false);
    };
    let path = format!("{path}.contract");
    let all = [
        ("evolve", Policy::Evolve),
        ("freeze", Policy::Freeze),
        ("discard_row", Policy::DiscardRow),
        ("discard_value", Policy::DiscardValue),
        ("capture", Policy::Capture),
    ];
    let table = raw.table.as_deref().and_then(|t| {
        p.choose(
            &format!("{path}.table"),
            t,
            &[("evolve", Policy::Evolve), ("freeze", Policy::Freeze)],
        )
    });
    if table == Some(Policy::Freeze) && auto_create {
        p.push(
            format!("{path}.table"),
            "\"freeze\" says the target must exist, auto_create = true says ferry creates it: choose one",
        );
    }
    let columns = raw
        .columns
        .as_deref()
        .and_then(|c| p.choose(&format!("{path}.columns"), c, &all));
    let types = raw
        .types
        .as_deref()
        .and_then(|t| p.choose(&format!("{path}.types"), t, &all[..4]));
    let capture_column = (columns == Some(Policy::Capture))
        .then(|| {
            let key = format!("{path}.capture_column");
            let id = p.take(&key, Ident::parse(&raw.capture_column))?;
            let meta = [
                "ferry_file",
                "ferry_line",
                "ferry_load_id",
                "ferry_loaded_at",
            ];
            if column_names.contains(id.as_str()) || meta.contains(&id.as_str()) {
                p.push(
                    key,
                    format!(
                        "{id} is one of the job's columns or a ferry_ metadata column; name another"
                    ),
                );
                return None;
            }
            Some(id)
        })
        .flatten();
    (
        Contract {
            columns,
            types,
            capture_column,
        },
        table == Some(Policy::Evolve),
    )
}

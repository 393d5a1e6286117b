//! Schema changes: what each file version had that its mapping did not,
//! what the contract did about it, and the ALTER TABLEs `evolve` ran, in
//! `ferry_schema_changes`. Written once for both dialects on the
//! [`LedgerStore`] seam; every write is idempotent (a row per version,
//! change and field at most), so a retried file records nothing twice.

use super::reports::{Change, Report};
use super::store::LedgerStore;
use super::{FileVersion, LedgerSql, fit};
use crate::error::Result;
use std::sync::LazyLock;

/// One row of `ferry_schema_changes` for a file version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaChange {
    /// `new_fields`, `missing_fields`, `misfit`, `added_column` or
    /// `widened_column`.
    pub change: &'static str,
    /// The field (or fields, comma-separated; a column for a misfit).
    pub field: String,
    /// The target column concerned.
    pub column: Option<String>,
    /// Its type (SQL) after the change.
    pub column_type: Option<String>,
    /// What exactly was seen (counts, lines, a reason).
    pub detail: String,
    /// What ferry did.
    pub action: String,
}

/// Rows written per statement (ten parameters each).
pub const CHANGES_PER_STATEMENT: usize = 20;
const PER_ROW: usize = 10;

/// `c{row}_{k}`: the Redshift names of the parameters.
static PARAMS: LazyLock<Vec<String>> = LazyLock::new(|| {
    (0..CHANGES_PER_STATEMENT * PER_ROW)
        .map(|i| format!("c{}_{}", i / PER_ROW, i % PER_ROW))
        .collect()
});

/// Columns of [`LedgerSql::changes_report`].
pub const CHANGE_COLUMNS: &[&str] = &[
    "job", "path", "change", "field", "column", "type", "action", "detail", "at",
];

impl LedgerSql {
    /// Inserts `n` schema change rows (at most
    /// [`CHANGES_PER_STATEMENT`]), leaving out any the ledger has: ten text
    /// parameters per row, job, path, size, mtime, change, field, column,
    /// type, detail, action.
    pub fn insert_changes(&self, n: usize) -> String {
        assert!(n > 0 && n <= CHANGES_PER_STATEMENT);
        let rows: Vec<String> = (0..n)
            .map(|r| {
                let p = |k: usize| format!("${}", r * PER_ROW + k + 1);
                let big = |k: usize| format!("CAST(CAST({} AS VARCHAR(20)) AS BIGINT)", p(k));
                format!(
                    "SELECT CAST({} AS VARCHAR(64)) AS job, CAST({} AS VARCHAR(1024)) AS path, {} AS size, {} AS mtime, \
                     CAST({} AS VARCHAR(32)) AS change, CAST({} AS VARCHAR(1024)) AS field, CAST({} AS VARCHAR(128)) AS column_name, \
                     CAST({} AS VARCHAR(64)) AS column_type, CAST({} AS VARCHAR(4096)) AS detail, CAST({} AS VARCHAR(256)) AS action",
                    p(0),
                    p(1),
                    big(2),
                    big(3),
                    p(4),
                    p(5),
                    p(6),
                    p(7),
                    p(8),
                    p(9)
                )
            })
            .collect();
        let names: Vec<&str> = PARAMS[..n * PER_ROW].iter().map(String::as_str).collect();
        self.dialect.adapt(
            &format!(
                "INSERT INTO {t} (job, path, size, mtime, change, field, column_name, column_type, detail, action, recorded_at) \
                 SELECT c.job, c.path, c.size, c.mtime, c.change, c.field, c.column_name, c.column_type, c.detail, c.action, {now} \
                 FROM ({rows}) c WHERE NOT EXISTS (SELECT 1 FROM {t} o WHERE o.job = c.job AND o.path = c.path \
                 AND o.size = c.size AND o.mtime = c.mtime AND o.change = c.change AND o.field = c.field)",
                t = self.changes,
                now = self.dialect.transaction_time(),
                rows = rows.join(" UNION ALL "),
            ),
            &names,
        )
    }

    /// The columns `evolve` added and widened for `job`, oldest first:
    /// change, field, column, type. Param job.
    pub fn evolutions_report(&self, job: &str) -> Report {
        Report {
            sql: self.dialect.adapt(
                &format!(
                    "SELECT change, field, column_name, column_type FROM {} WHERE job = $1 \
                     AND change IN ('added_column', 'widened_column') ORDER BY recorded_at, change",
                    self.changes
                ),
                &["job"],
            ),
            params: vec![("job", job.to_string())],
            columns: &["change", "field", "column", "type"],
        }
    }

    /// The latest `limit` schema changes, of `job` or of every job, newest
    /// first ([`CHANGE_COLUMNS`]).
    pub fn changes_report(&self, job: Option<&str>, limit: usize) -> Report {
        let (filter, params, names): (&str, Vec<(&'static str, String)>, &[&str]) = match job {
            Some(j) => ("WHERE job = $1 ", vec![("job", j.to_string())], &["job"]),
            None => ("", vec![], &[]),
        };
        Report {
            sql: self.dialect.adapt(
                &format!(
                    "SELECT job, path, change, field, column_name, column_type, action, detail, CAST(recorded_at AS VARCHAR(40)) \
                     FROM {} t {filter}ORDER BY t.recorded_at DESC, t.path, t.change LIMIT {limit}",
                    self.changes
                ),
                names,
            ),
            params,
            columns: CHANGE_COLUMNS,
        }
    }
}

/// Records `changes` of `version`, idempotently (rows the ledger has are
/// left out), in as few statements as they need.
pub async fn record_changes(
    store: &dyn LedgerStore,
    version: &FileVersion,
    changes: &[SchemaChange],
) -> Result<()> {
    for chunk in changes.chunks(CHANGES_PER_STATEMENT) {
        let mut params: Vec<(&'static str, Option<String>)> = Vec::new();
        let names = &PARAMS[..chunk.len() * PER_ROW];
        for (r, c) in chunk.iter().enumerate() {
            let values = [
                Some(version.job.clone()),
                Some(version.path.clone()),
                Some(version.size.to_string()),
                Some(version.mtime.to_string()),
                Some(c.change.to_string()),
                Some(fit(&c.field, 1024).to_string()),
                c.column.clone(),
                c.column_type.clone(),
                Some(fit(&c.detail, 4096).to_string()),
                Some(fit(&c.action, 256).to_string()),
            ];
            for (k, v) in values.into_iter().enumerate() {
                // The Data API takes no empty values: an empty text is NULL.
                let name: &'static str = names[r * PER_ROW + k].as_str();
                params.push((name, v.filter(|v| !v.is_empty())));
            }
        }
        store
            .write_ledger(&Change {
                sqls: vec![store.ledger().insert_changes(chunk.len())],
                params,
                ..Change::default()
            })
            .await?;
    }
    Ok(())
}

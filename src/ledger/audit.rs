//! The reads behind `ferry audit` and `ferry replay`: every version of a
//! job the ledger has, its loads, the rows the target holds per load id,
//! whether the target keeps a load id at all, and the versions loaded in a
//! window. Text columns and bound values, like every report.

use super::LedgerSql;
use super::reports::Report;
use super::views::{instant, moment};
use crate::sql::Ident;
use chrono::{DateTime, Utc};

impl LedgerSql {
    /// Every version of `job` the ledger has: path, size, mtime, state.
    pub fn audit_versions_report(&self, job: &str) -> Report {
        Report {
            sql: self.dialect.adapt(
                &format!(
                    "SELECT path, CAST(size AS VARCHAR(20)), CAST(mtime AS VARCHAR(20)), state FROM {} WHERE job = $1",
                    self.files
                ),
                &["job"],
            ),
            params: vec![("job", job.to_string())],
            columns: &["path", "size", "mtime", "state"],
        }
    }

    /// `job`'s loads started since `since`: load id, rows, start.
    pub fn audit_loads_report(&self, job: &str, since: DateTime<Utc>) -> Report {
        Report {
            sql: self.dialect.adapt(
                &format!(
                    "SELECT load_id, CAST(rows_loaded AS VARCHAR(20)), CAST(started_at AS VARCHAR(40)) FROM {} t \
                     WHERE job = $1 AND started_at >= {} ORDER BY t.started_at",
                    self.loads,
                    moment("$2")
                ),
                &["job", "since"],
            ),
            params: vec![("job", job.to_string()), ("since", instant(since))],
            columns: &["load_id", "rows", "started_at"],
        }
    }

    /// Rows of `target` per load id, for `job`'s loads since `since`.
    pub fn target_rows_report(&self, target: &Ident, job: &str, since: DateTime<Utc>) -> Report {
        Report {
            sql: self.dialect.adapt(
                &format!(
                    "SELECT CAST(t.ferry_load_id AS VARCHAR(64)), CAST(COUNT(*) AS VARCHAR(20)) FROM {}.{} t \
                     WHERE t.ferry_load_id IN (SELECT load_id FROM {} WHERE job = $1 AND started_at >= {}) \
                     GROUP BY t.ferry_load_id",
                    self.schema.quoted(),
                    target.quoted(),
                    self.loads,
                    moment("$2")
                ),
                &["job", "since"],
            ),
            params: vec![("job", job.to_string()), ("since", instant(since))],
            columns: &["load_id", "rows"],
        }
    }

    /// `job`'s versions loaded in `[since, until)` that staged parts (an
    /// archive's own row has none): path, staged folder, rows, loaded at.
    pub fn loaded_between_report(
        &self,
        job: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Report {
        Report {
            sql: self.dialect.adapt(
                &format!(
                    "SELECT path, staged_key, CAST(rows_loaded AS VARCHAR(20)), CAST(loaded_at AS VARCHAR(40)) FROM {} t \
                     WHERE job = $1 AND state = 'loaded' AND staged_key IS NOT NULL \
                     AND loaded_at >= {} AND loaded_at < {} ORDER BY t.loaded_at, t.path",
                    self.files,
                    moment("$2"),
                    moment("$3")
                ),
                &["job", "since", "until"],
            ),
            params: vec![
                ("job", job.to_string()),
                ("since", instant(since)),
                ("until", instant(until)),
            ],
            columns: &["path", "staged_key", "rows", "loaded_at"],
        }
    }

    /// Whether `table` in the ledger's schema has `column` (one row if so).
    pub fn has_column_report(&self, table: &Ident, column: &str) -> Report {
        Report {
            sql: self.dialect.adapt(
                "SELECT CAST(column_name AS VARCHAR(128)) FROM information_schema.columns \
                 WHERE table_schema = $1 AND table_name = $2 AND column_name = $3",
                &["schema", "table", "column"],
            ),
            params: vec![
                ("schema", self.schema.as_str().to_string()),
                ("table", table.as_str().to_string()),
                ("column", column.to_string()),
            ],
            columns: &["column"],
        }
    }
}

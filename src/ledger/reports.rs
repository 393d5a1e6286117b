//! The ledger statements behind the operations commands (`ferry jobs`,
//! `files`, `errors`, `retry`, `reset`, `jobs pause|resume`): reports whose
//! every column is text, so both backends return them the same way, and
//! the few writes an operator may make.
//!
//! Parameters are text values bound by name (`$n` here, `:name` on
//! Redshift); a row limit is a number the command line parsed, written
//! into the text as digits.

use super::errors::ErrorRows;
use super::{LedgerSql, fit, width};

/// A read-only report: its SQL, parameters (name, value) in `$n` order,
/// and the column headers.
#[derive(Debug, Clone)]
pub struct Report {
    /// The query; every column is text (or NULL).
    pub sql: String,
    /// Parameters, in `$n` order.
    pub params: Vec<(&'static str, String)>,
    /// Column headers, one per selected column.
    pub columns: &'static [&'static str],
}

/// Ledger writes run in one transaction (after the ledger lock, with
/// `lock`).
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Statements; each uses the first parameters (`$1` to its highest
    /// `$n`).
    pub sqls: Vec<String>,
    /// Parameters, in `$n` order: text, or `None` for NULL.
    pub params: Vec<(&'static str, Option<String>)>,
    /// Take the ledger lock loads take first, so the change never
    /// interleaves with a load (operator writes); without, a write that
    /// touches only its own row (finalized, skipped, the jobs table) does
    /// not wait for loads.
    pub lock: bool,
    /// Error rows added after the statements, in the same transaction.
    pub errors: Option<ErrorRows>,
}

/// Text parameters, none of them NULL.
pub fn texts(params: Vec<(&'static str, String)>) -> Vec<(&'static str, Option<String>)> {
    params.into_iter().map(|(n, v)| (n, Some(v))).collect()
}

/// Columns of [`LedgerSql::jobs_report`].
pub const JOB_COLUMNS: &[&str] = &[
    "job",
    "state",
    "source",
    "path",
    "target",
    "loaded",
    "failed",
    "rows",
    "last_load",
    "schema_changes",
];

/// Columns of [`LedgerSql::files_report`].
pub const FILE_COLUMNS: &[&str] = &[
    "job",
    "path",
    "state",
    "size",
    "mtime",
    "rows",
    "rejected",
    "at",
    "error",
    "schema_changes",
];

/// Columns of [`LedgerSql::errors_report`].
pub const LOAD_ERROR_COLUMNS: &[&str] = &[
    "job",
    "path",
    "line",
    "column",
    "code",
    "reason",
    "raw_value",
    "raw_line",
    "at",
];

/// Filters of `ferry files` and `ferry errors`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this job.
    pub job: Option<String>,
    /// Only this path (errors) or state (files).
    pub detail: Option<String>,
    /// At most this many rows, newest first.
    pub limit: u32,
}

impl LedgerSql {
    /// Per job in `ferry_jobs`: pause state, source, path, target, files
    /// loaded and failed, rows loaded, the last load.
    pub fn jobs_report(&self) -> Report {
        Report {
            sql: format!(
                "SELECT j.job, CASE WHEN j.auto THEN 'active' ELSE 'paused' END, j.source, j.path, j.target, \
                 CAST(SUM(CASE WHEN f.state = 'loaded' THEN 1 ELSE 0 END) AS VARCHAR(20)), \
                 CAST(SUM(CASE WHEN f.state = 'failed' THEN 1 ELSE 0 END) AS VARCHAR(20)), \
                 CAST(SUM(CASE WHEN f.state = 'loaded' THEN f.rows_loaded ELSE 0 END) AS VARCHAR(20)), \
                 CAST(MAX(f.loaded_at) AS VARCHAR(40)), CAST(COALESCE(MAX(c.n), 0) AS VARCHAR(20)) \
                 FROM {jobs} j LEFT JOIN {files} f ON f.job = j.job \
                 LEFT JOIN (SELECT job, COUNT(*) AS n FROM {changes} GROUP BY job) c ON c.job = j.job \
                 GROUP BY j.job, j.auto, j.source, j.path, j.target ORDER BY j.job",
                jobs = self.jobs,
                files = self.files,
                changes = self.changes
            ),
            params: Vec::new(),
            columns: JOB_COLUMNS,
        }
    }

    /// File versions, newest first; `filter.detail` is a state. The
    /// newest are found first (an index scan on PostgreSQL), then their
    /// schema changes counted.
    pub fn files_report(&self, filter: &Filter) -> Report {
        let (cond, params) = conditions(filter, "state");
        Report {
            sql: self.dialect.adapt(
                &format!(
                    "SELECT f.job, f.path, f.state, CAST(f.size AS VARCHAR(20)), CAST(f.mtime AS VARCHAR(20)), \
                     CAST(f.rows_loaded AS VARCHAR(20)), CAST(f.rows_rejected AS VARCHAR(20)), \
                     CAST(f.at AS VARCHAR(40)), f.error, CAST(COALESCE(c.n, 0) AS VARCHAR(20)) \
                     FROM (SELECT job, path, state, size, mtime, rows_loaded, rows_rejected, error, \
                     COALESCE(loaded_at, first_seen_at) AS at FROM {files} \
                     WHERE {cond} ORDER BY COALESCE(loaded_at, first_seen_at) DESC, path LIMIT {limit}) f \
                     LEFT JOIN (SELECT job, path, size, mtime, COUNT(*) AS n FROM {changes} GROUP BY job, path, size, mtime) c \
                     ON c.job = f.job AND c.path = f.path AND c.size = f.size AND c.mtime = f.mtime \
                     ORDER BY f.at DESC, f.path",
                    files = self.files,
                    changes = self.changes,
                    limit = filter.limit
                ),
                &names(&params),
            ),
            params,
            columns: FILE_COLUMNS,
        }
    }

    /// Rejected records and COPY errors, newest first; `filter.detail` is
    /// a path.
    pub fn errors_report(&self, filter: &Filter) -> Report {
        let (cond, params) = conditions(filter, "path");
        Report {
            sql: self.dialect.adapt(
                &format!(
                    "SELECT job, path, CAST(line_number AS VARCHAR(20)), column_name, CAST(error_code AS VARCHAR(11)), \
                     reason, raw_field_value, raw_line, CAST(created_at AS VARCHAR(40)) \
                     FROM {} t WHERE {cond} ORDER BY t.created_at DESC, t.path, t.line_number LIMIT {}",
                    self.errors, filter.limit
                ),
                &names(&params),
            ),
            params,
            columns: LOAD_ERROR_COLUMNS,
        }
    }

    /// Pauses (`auto = false`) or resumes a job: param job.
    pub fn set_auto(&self, job: &str, auto: bool) -> Change {
        let value = if auto { "TRUE" } else { "FALSE" };
        Change {
            sqls: vec![self.dialect.adapt(
                &format!(
                    "UPDATE {} SET auto = {value}, updated_at = now() WHERE job = $1",
                    self.jobs
                ),
                &["job"],
            )],
            params: texts(vec![("job", job.to_string())]),
            lock: true,
            errors: None,
        }
    }

    /// Forgets the failures of a job (or of one path of it), so the next
    /// pass tries those versions again: their error rows from the failed
    /// attempts, then their `failed` rows (the count the second statement
    /// returns). Params job[, path].
    pub fn retry_failed(&self, job: &str, path: Option<&str>) -> Change {
        let mut params = vec![("job", job.to_string())];
        let only_path = match path {
            Some(p) => {
                params.push(("path", p.to_string()));
                // An archive's failed members go with it.
                " AND (path = $2 OR LEFT(path, CHAR_LENGTH($2) + 2) = $2 || '!/')"
            }
            None => "",
        };
        let names = names(&params);
        let errors = self.dialect.adapt(
            &format!(
                "DELETE FROM {errors} WHERE job = $1{only_path} AND load_id IS NULL AND EXISTS \
                 (SELECT 1 FROM {files} f WHERE f.job = {errors}.job AND f.path = {errors}.path \
                 AND f.size = {errors}.size AND f.mtime = {errors}.mtime AND f.state = 'failed')",
                errors = self.errors,
                files = self.files
            ),
            &names,
        );
        let files = self.dialect.adapt(
            &format!(
                "DELETE FROM {} WHERE job = $1{only_path} AND state = 'failed'",
                self.files
            ),
            &names,
        );
        Change {
            sqls: vec![errors, files],
            params: texts(params),
            lock: true,
            errors: None,
        }
    }

    /// Records a post-load check: params job, load_id, check_name,
    /// failing_rows (digits), detail.
    pub fn insert_check(
        &self,
        job: &str,
        load_id: &str,
        check: &str,
        passed: bool,
        failing_rows: u64,
        detail: &str,
    ) -> Change {
        let passed = if passed { "TRUE" } else { "FALSE" };
        Change {
            sqls: vec![self.dialect.adapt(
                &format!(
                    "INSERT INTO {} (job, load_id, check_name, passed, failing_rows, detail, checked_at) \
                     VALUES ($1, $2, $3, {passed}, CAST(CAST($4 AS VARCHAR(20)) AS BIGINT), $5, now())",
                    self.checks
                ),
                &["job", "load_id", "check_name", "failing_rows", "detail"],
            )],
            params: texts(vec![
                ("job", job.to_string()),
                ("load_id", load_id.to_string()),
                ("check_name", check.to_string()),
                ("failing_rows", failing_rows.to_string()),
                ("detail", fit(detail, width::DETAIL).to_string()),
            ]),
            lock: true,
            errors: None,
        }
    }

    /// Forgets everything the ledger knows of a job: its error rows, file
    /// versions and loads (the counts each statement returns, in that
    /// order). Rows already in the target stay. Param job.
    pub fn reset_job(&self, job: &str) -> Change {
        let sqls = [&self.errors, &self.files, &self.loads]
            .iter()
            .map(|t| {
                self.dialect
                    .adapt(&format!("DELETE FROM {t} WHERE job = $1"), &["job"])
            })
            .collect();
        Change {
            sqls,
            params: texts(vec![("job", job.to_string())]),
            lock: true,
            errors: None,
        }
    }
}

/// `WHERE` conditions for a filter on job and `detail_column`, with their
/// parameters.
fn conditions(filter: &Filter, detail_column: &str) -> (String, Vec<(&'static str, String)>) {
    let mut cond = vec!["1 = 1".to_string()];
    let mut params = Vec::new();
    if let Some(job) = &filter.job {
        params.push(("job", job.clone()));
        cond.push(format!("job = ${}", params.len()));
    }
    if let Some(d) = &filter.detail {
        params.push(("detail", d.clone()));
        cond.push(format!("{detail_column} = ${}", params.len()));
    }
    (cond.join(" AND "), params)
}

fn names(params: &[(&'static str, String)]) -> Vec<&'static str> {
    params.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Dialect;
    use crate::sql::Ident;

    #[test]
    fn filters_become_parameters_never_text() {
        let l = LedgerSql::with_dialect(&Ident::parse("s").unwrap(), Dialect::Redshift);
        let r = l.files_report(&Filter {
            job: Some("j'; DROP TABLE x; --".into()),
            detail: Some("failed".into()),
            limit: 20,
        });
        assert!(
            r.sql.contains("job = :job AND state = :detail"),
            "{}",
            r.sql
        );
        assert!(r.sql.contains("LIMIT 20) f"), "{}", r.sql);
        assert!(!r.sql.contains("DROP"));
        assert_eq!(r.params.len(), 2);
        let c = l.retry_failed("j", Some("/a.csv"));
        assert!(
            c.sqls
                .iter()
                .all(|s| s.contains(":job") && s.contains(":path"))
        );
    }
}

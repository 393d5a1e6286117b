//! The ledger reads behind the daemon's status page: every job at a
//! glance, loads per hour, recent loads, one file's versions and its
//! rejected records. Like [`reports`](super::reports), every column is
//! text and every value a parameter; times the page compares with are
//! computed by ferry and bound (Redshift runs `NOW()` on its leader node
//! only, so a query of a table cannot call it), and hours come back as
//! Unix seconds, so no backend's timestamp text needs parsing.

use super::LedgerSql;
use super::errors::bigint;
use super::reports::Report;
use chrono::{DateTime, Utc};

/// Columns of [`LedgerSql::overview_report`].
pub const OVERVIEW_COLUMNS: &[&str] = &[
    "job",
    "state",
    "source",
    "target",
    "failed",
    "last_load",
    "files_1h",
    "rows_1h",
    "files_24h",
    "rows_24h",
];

/// Columns of [`LedgerSql::hourly_report`].
pub const HOURLY_COLUMNS: &[&str] = &["hour", "files", "rows"];

/// Columns of [`LedgerSql::loads_report`].
pub const LOAD_COLUMNS: &[&str] = &[
    "load_id",
    "job",
    "files",
    "rows",
    "bytes",
    "started_at",
    "duration_ms",
];

/// Columns of [`LedgerSql::versions_detail_report`].
pub const VERSION_COLUMNS: &[&str] = &[
    "state",
    "size",
    "mtime",
    "sha256",
    "staged_key",
    "rejects_key",
    "rows",
    "rejected",
    "first_seen",
    "loaded_at",
    "load_id",
    "error",
    "finalized_at",
    "final_path",
];

/// Columns of [`LedgerSql::rejects_report`].
pub const REJECT_COLUMNS: &[&str] = &["line", "column", "code", "reason", "raw_value", "raw_line"];

/// The timestamp a text parameter holds, as a scalar subquery: computed
/// once per statement (a plain cast of a parameter is evaluated again for
/// every row it is compared with).
pub(super) fn moment(param: &str) -> String {
    format!("(SELECT CAST(CAST({param} AS VARCHAR(40)) AS TIMESTAMPTZ))")
}

/// `at` as text both backends cast to a timestamp with time zone.
pub(super) fn instant(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

impl LedgerSql {
    /// Per job in `ferry_jobs`: pause state, source, target, files failed
    /// (now), the last load, and files and rows loaded in the hour and the
    /// day before `now`. Read from the day's loads, each job's latest load
    /// and its failed versions (indexed on PostgreSQL), never the whole
    /// file ledger.
    pub fn overview_report(&self, now: DateTime<Utc>) -> Report {
        let hour = instant(now - chrono::Duration::hours(1));
        let day = instant(now - chrono::Duration::hours(24));
        let n = |e: &str| format!("CAST(COALESCE({e}, 0) AS VARCHAR(20))");
        let since = |p: usize| moment(&format!("${p}"));
        Report {
            sql: self.dialect.adapt(
                &format!(
                    "SELECT j.job, CASE WHEN j.auto THEN 'active' ELSE 'paused' END, j.source, j.target, \
                     CAST((SELECT COUNT(*) FROM {files} f WHERE f.job = j.job AND f.state = 'failed') AS VARCHAR(20)), \
                     CAST((SELECT MAX(finished_at) FROM {loads} m WHERE m.job = j.job) AS VARCHAR(40)), {}, {}, {}, {} \
                     FROM {jobs} j \
                     LEFT JOIN (SELECT job, \
                     SUM(CASE WHEN finished_at >= {hour} THEN files ELSE 0 END) AS files_1h, \
                     SUM(CASE WHEN finished_at >= {hour} THEN rows_loaded ELSE 0 END) AS rows_1h, \
                     SUM(files) AS files_24h, SUM(rows_loaded) AS rows_24h \
                     FROM {loads} WHERE finished_at >= {day} GROUP BY job) l ON l.job = j.job \
                     ORDER BY j.job",
                    n("l.files_1h"),
                    n("l.rows_1h"),
                    n("l.files_24h"),
                    n("l.rows_24h"),
                    hour = since(1),
                    day = since(2),
                    jobs = self.jobs,
                    files = self.files,
                    loads = self.loads,
                ),
                &["hour", "day"],
            ),
            params: vec![("hour", hour), ("day", day)],
            columns: OVERVIEW_COLUMNS,
        }
    }

    /// Files and rows loaded per hour (by the load's end; the hour's start
    /// as Unix seconds) since `since`, of every job or of `job`. Grouped by
    /// the hour alone (a timestamp), then the few groups turned to seconds.
    pub fn hourly_report(&self, job: Option<&str>, since: DateTime<Utc>) -> Report {
        let mut params = vec![("since", instant(since))];
        let only = match job {
            Some(j) => {
                params.push(("job", j.to_string()));
                " AND job = $2"
            }
            None => "",
        };
        let names: Vec<&str> = params.iter().map(|(n, _)| *n).collect();
        Report {
            sql: self.dialect.adapt(
                &format!(
                    "SELECT CAST(CAST(EXTRACT(EPOCH FROM hour) AS BIGINT) AS VARCHAR(20)), CAST(files AS VARCHAR(20)), CAST(r AS VARCHAR(20)) \
                     FROM (SELECT DATE_TRUNC('hour', finished_at) AS hour, SUM(files) AS files, SUM(rows_loaded) AS r \
                     FROM {} WHERE finished_at >= {}{only} \
                     GROUP BY DATE_TRUNC('hour', finished_at)) h ORDER BY h.hour",
                    self.loads,
                    moment("$1"),
                ),
                &names,
            ),
            params,
            columns: HOURLY_COLUMNS,
        }
    }

    /// The latest loads, newest first, of every job or of `job`.
    pub fn loads_report(&self, job: Option<&str>, limit: u32) -> Report {
        let (cond, params) = match job {
            Some(j) => ("WHERE job = $1 ", vec![("job", j.to_string())]),
            None => ("", Vec::new()),
        };
        let names: Vec<&str> = params.iter().map(|(n, _)| *n).collect();
        Report {
            sql: self.dialect.adapt(
                &format!(
                    "SELECT load_id, job, CAST(files AS VARCHAR(20)), CAST(rows_loaded AS VARCHAR(20)), \
                     CAST(bytes AS VARCHAR(20)), CAST(started_at AS VARCHAR(40)), CAST(duration_ms AS VARCHAR(20)) \
                     FROM {} t {cond}ORDER BY t.started_at DESC, t.load_id LIMIT {limit}",
                    self.loads
                ),
                &names,
            ),
            params,
            columns: LOAD_COLUMNS,
        }
    }

    /// Every version of `path` of `job` the ledger has, newest first.
    pub fn versions_detail_report(&self, job: &str, path: &str) -> Report {
        Report {
            sql: self.dialect.adapt(
                &format!(
                    "SELECT state, CAST(size AS VARCHAR(20)), CAST(mtime AS VARCHAR(20)), sha256, staged_key, rejects_key, \
                     CAST(rows_loaded AS VARCHAR(20)), CAST(rows_rejected AS VARCHAR(20)), CAST(first_seen_at AS VARCHAR(40)), \
                     CAST(loaded_at AS VARCHAR(40)), load_id, error, CAST(finalized_at AS VARCHAR(40)), final_path \
                     FROM {} t WHERE job = $1 AND path = $2 ORDER BY t.first_seen_at DESC, t.mtime DESC",
                    self.files
                ),
                &["job", "path"],
            ),
            params: vec![("job", job.to_string()), ("path", path.to_string())],
            columns: VERSION_COLUMNS,
        }
    }

    /// The rejected records and COPY errors the ledger keeps of one
    /// version (the first 1000; the rejects object has every one), by line.
    pub fn rejects_report(
        &self,
        job: &str,
        path: &str,
        size: &str,
        mtime: &str,
        limit: u32,
    ) -> Report {
        Report {
            sql: self.dialect.adapt(
                &format!(
                    "SELECT CAST(line_number AS VARCHAR(20)), column_name, CAST(error_code AS VARCHAR(11)), reason, \
                     raw_field_value, raw_line FROM {} t WHERE job = $1 AND path = $2 AND size = {} AND mtime = {} \
                     ORDER BY t.line_number, t.column_name LIMIT {limit}",
                    self.errors,
                    bigint(3),
                    bigint(4)
                ),
                &["job", "path", "size", "mtime"],
            ),
            params: vec![
                ("job", job.to_string()),
                ("path", path.to_string()),
                ("size", size.to_string()),
                ("mtime", mtime.to_string()),
            ],
            columns: REJECT_COLUMNS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Dialect, Ident};

    #[test]
    fn status_reads_bind_their_values_and_call_no_leader_only_function() {
        let l = LedgerSql::with_dialect(&Ident::parse("s").unwrap(), Dialect::Redshift);
        let now = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let reports = [
            l.overview_report(now),
            l.hourly_report(Some("j'x"), now),
            l.loads_report(Some("j"), 50),
            l.versions_detail_report("j", "/in/a.csv"),
            l.rejects_report("j", "/in/a.csv", "10", "20", 1000),
        ];
        for r in &reports {
            assert!(!r.sql.to_lowercase().contains("now()"), "{}", r.sql);
            assert!(!r.sql.contains("j'x"), "{}", r.sql);
            assert!(
                !r.sql.contains('$'),
                "Redshift names its parameters: {}",
                r.sql
            );
        }
        assert_eq!(reports[0].params[0].1, "2026-12-07 11:00:00.000000+00");
        assert_eq!(reports[0].params[1].1, "2026-12-06 12:00:00.000000+00");
        assert!(
            reports[1].sql.contains(
                "(SELECT CAST(CAST(:since AS VARCHAR(40)) AS TIMESTAMPTZ)) AND job = :job"
            ),
            "{}",
            reports[1].sql
        );
    }
}

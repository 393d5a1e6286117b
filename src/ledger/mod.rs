//! The ledger: one row per file version in `ferry_files`, one per committed
//! load in `ferry_loads`, one per rejected record in `ferry_load_errors`, one
//! per configured job in `ferry_jobs`, one per listed job in `ferry_leases`
//! when replicas share a work queue ([`take_lease`]).
//!
//! A *file version* is (job, path, size, mtime): a file that changes on the
//! server is a new version. States: `loaded` (committed with its rows),
//! `failed` (skipped until an operator retries it or the file changes).
//!
//! This module owns the ledger's SQL text; the warehouse backends run it
//! through the [`LedgerStore`] seam (a read-only report, a locked change).
//! What a version's rows mean and whether a job is paused are read here,
//! once for both dialects ([`lookup_many`], [`job_enabled`]). Values always
//! travel as parameters (`$n`), never spliced into the text.

pub mod audit;
pub mod changes;
pub mod errors;
mod leases;
mod migrations;
pub mod reports;
mod store;
pub mod views;

pub use changes::{SchemaChange, record_changes};
pub use errors::ErrorRows;
pub use leases::{Lease, LeaseTaken, leases, release_lease, take_lease};
pub use migrations::{migrate, verify_ledger};
pub use store::{
    FailedFile, LOOKUP_CHUNK, LedgerRows, LedgerStore, job_enabled, keep_copy_errors, lookup_many,
    mark_finalized, record_archive, record_failed, record_skipped, sync_jobs,
};

use crate::sql::Dialect;
use crate::sql::Ident;

/// The sizes of the ledger's text columns, in bytes, as `migrations/`
/// declares them. Redshift counts `VARCHAR(n)` in bytes and PostgreSQL in
/// characters, so a value cut to `n` bytes ([`fit`]) fits both.
pub mod width {
    /// `ferry_files.error` (and a skipped version's reason).
    pub const ERROR: usize = 4096;
    /// `ferry_load_errors.reason`.
    pub const REASON: usize = 1024;
    /// `ferry_load_errors.raw_line`.
    pub const RAW_LINE: usize = 1024;
    /// `ferry_load_errors.raw_field_value`.
    pub const RAW_VALUE: usize = 1024;
    /// `ferry_load_errors.column_name`.
    pub const COLUMN: usize = 127;
    /// `path`, `staged_key`, `rejects_key`, `final_path`.
    pub const PATH: usize = 1024;
    /// `ferry_checks.detail`.
    pub const DETAIL: usize = 4096;
}

/// `s` cut to at most `max_bytes` bytes, at a character boundary, so it
/// fits a ledger column of that width: a long reason or raw value is
/// shortened, never the reason a file cannot be recorded.
pub fn fit(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One version of one source file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileVersion {
    /// Job name.
    pub job: String,
    /// Path on the source.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: i64,
}

impl FileVersion {
    /// A short stable id of this version, for staging keys.
    pub fn short_id(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!(
            "{}\0{}\0{}\0{}",
            self.job, self.path, self.size, self.mtime
        ));
        hex::encode(&digest[..6])
    }
}

/// What the ledger knows of a file version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Loaded; `finalized` says whether the on-success action was done.
    Loaded {
        /// The on-success action was applied.
        finalized: bool,
    },
    /// Failed with this error; skipped until retried.
    Failed {
        /// The recorded reason.
        error: String,
    },
    /// Recorded as skipped (e.g. changed after load with `on_change =
    /// "ignore"`); never loaded.
    Skipped {
        /// Why.
        reason: String,
    },
    /// This version is new, but another version of the same path was
    /// loaded: the file changed after its load.
    ChangedAfterLoad {
        /// Size of the loaded version.
        size: i64,
        /// Mtime of the loaded version.
        mtime: i64,
    },
}

/// Ledger table names qualified with the warehouse schema.
#[derive(Debug, Clone)]
pub struct LedgerSql {
    schema: Ident,
    dialect: Dialect,
    files: String,
    loads: String,
    errors: String,
    jobs: String,
    checks: String,
    leases: String,
    changes: String,
}

impl LedgerSql {
    /// The ledger in `schema`, with PostgreSQL's `$n` parameters.
    pub fn new(schema: &Ident) -> Self {
        Self::with_dialect(schema, Dialect::Postgres)
    }

    /// The ledger in `schema`, rendered for `dialect` (Redshift: `:name`
    /// parameters, named as each method's documentation lists them).
    pub fn with_dialect(schema: &Ident, dialect: Dialect) -> Self {
        let q = |t: &str| format!("{}.\"{t}\"", schema.quoted());
        LedgerSql {
            schema: schema.clone(),
            dialect,
            files: q("ferry_files"),
            loads: q("ferry_loads"),
            errors: q("ferry_load_errors"),
            jobs: q("ferry_jobs"),
            checks: q("ferry_checks"),
            leases: q("ferry_leases"),
            changes: q("ferry_schema_changes"),
        }
    }

    /// The schema the ledger is in.
    pub fn schema(&self) -> &Ident {
        &self.schema
    }

    /// The dialect the statements are written in.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Serializes every ledger writer. Redshift and PostgreSQL both take
    /// `LOCK TABLE t` (ACCESS EXCLUSIVE) until the transaction ends.
    pub fn lock(&self) -> String {
        format!("LOCK TABLE {}", self.files)
    }

    /// PostgreSQL: after the ledger, the load's target tables (fact and
    /// dimensions, as [`target_tables`](crate::warehouse::sql::target_tables)
    /// orders them, so that two loads never wait on each other in a cycle). SHARE ROW EXCLUSIVE keeps out
    /// other writers but lets readers (dashboards) go on reading.
    pub fn lock_targets(&self, tables: &[String]) -> String {
        format!(
            "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
            tables.join(", ")
        )
    }

    /// Which versions of the job's paths are loaded (PostgreSQL only):
    /// params job, paths (text[]). Columns: path, size, mtime.
    pub fn loaded_among(&self) -> String {
        format!(
            "SELECT path, size, mtime FROM {} WHERE job = $1 AND state = 'loaded' AND path = ANY($2)",
            self.files
        )
    }

    /// Records a skipped version: params job, path, size, mtime, reason
    /// (all text).
    pub fn insert_skipped(&self) -> String {
        self.dialect.adapt(
            &format!(
            "INSERT INTO {} (job, path, size, mtime, state, rows_loaded, rows_rejected, first_seen_at, error) \
             VALUES ($1, $2, CAST(CAST($3 AS VARCHAR(20)) AS BIGINT), CAST(CAST($4 AS VARCHAR(20)) AS BIGINT), 'skipped', 0, 0, now(), $5)",
            self.files
        ),
            &["job", "path", "size", "mtime", "reason"],
        )
    }

    /// Removes rows of a version that are not `loaded` (a retried failure):
    /// params job, path, size, mtime.
    pub fn clear_unloaded(&self) -> String {
        self.dialect.adapt(
            &format!(
            "DELETE FROM {} WHERE job = $1 AND path = $2 AND size = $3 AND mtime = $4 AND state <> 'loaded'",
            self.files
        ),
            &["job", "path", "size", "mtime"],
        )
    }

    /// Records a loaded version: params job, path, size, mtime, sha256,
    /// staged_key (the parts' folder), rows_loaded, rows_rejected, load_id,
    /// rejects_key.
    pub fn insert_loaded(&self) -> String {
        self.dialect.adapt(
            &format!(
            "INSERT INTO {} (job, path, size, mtime, sha256, state, staged_key, rows_loaded, rows_rejected, first_seen_at, loaded_at, load_id, rejects_key) \
             VALUES ($1, $2, $3, $4, $5, 'loaded', $6, $7, $8, now(), now(), $9, $10)",
            self.files
        ),
            &["job", "path", "size", "mtime", "sha256", "staged_key", "rows_loaded", "rows_rejected", "load_id", "rejects_key"],
        )
    }

    /// Records a failed version, unless the ledger has it `loaded` (a
    /// replica loaded it meanwhile): removes its rows that are not
    /// `loaded`, then inserts the `failed` row. Params (all text) job,
    /// path, size, mtime, sha256, rows_rejected, error, rejects_key.
    pub fn record_failed(&self) -> Vec<String> {
        let names = [
            "job",
            "path",
            "size",
            "mtime",
            "sha256",
            "rows_rejected",
            "error",
            "rejects_key",
        ];
        let not_loaded = self.not_loaded(1, 2, 3, 4);
        vec![
            self.clear_not_loaded(&not_loaded),
            self.dialect.adapt(
                &format!(
                    "INSERT INTO {} (job, path, size, mtime, sha256, state, rows_loaded, rows_rejected, first_seen_at, error, rejects_key) \
                     SELECT CAST($1 AS VARCHAR(64)), CAST($2 AS VARCHAR(1024)), {}, {}, CAST($5 AS VARCHAR(64)), 'failed', 0, {}, now(), CAST($7 AS VARCHAR(4096)), CAST($8 AS VARCHAR(1024)) \
                     WHERE {not_loaded}",
                    self.files,
                    errors::bigint(3),
                    errors::bigint(4),
                    errors::bigint(6)
                ),
                &names,
            ),
        ]
    }

    /// Removes the rows of version (job, path, size, mtime: params 1-4)
    /// that are not `loaded`, while `not_loaded` (no `loaded` row) holds.
    fn clear_not_loaded(&self, not_loaded: &str) -> String {
        self.dialect.adapt(
            &format!(
                "DELETE FROM {} WHERE job = $1 AND path = $2 AND size = {} AND mtime = {} AND state <> 'loaded' AND {not_loaded}",
                self.files,
                errors::bigint(3),
                errors::bigint(4)
            ),
            &["job", "path", "size", "mtime"],
        )
    }

    /// Records an archive whose members have all loaded, unless the ledger
    /// has the version loaded already: removes its rows that are not
    /// `loaded` (an earlier failure that was retried), then inserts a
    /// `loaded` row with no rows of its own (its members carry them).
    /// Params (all text) job, path, size, mtime, sha256.
    pub fn record_archive(&self) -> Vec<String> {
        let names = ["job", "path", "size", "mtime", "sha256"];
        let not_loaded = self.not_loaded(1, 2, 3, 4);
        vec![
            self.clear_not_loaded(&not_loaded),
            self.dialect.adapt(
                &format!(
                    "INSERT INTO {} (job, path, size, mtime, sha256, state, rows_loaded, rows_rejected, first_seen_at, loaded_at) \
                     SELECT CAST($1 AS VARCHAR(64)), CAST($2 AS VARCHAR(1024)), {}, {}, CAST($5 AS VARCHAR(64)), 'loaded', 0, 0, now(), now() \
                     WHERE {not_loaded}",
                    self.files,
                    errors::bigint(3),
                    errors::bigint(4)
                ),
                &names,
            ),
        ]
    }

    /// Marks a loaded version finalized: params job, path, size, mtime,
    /// final_path (all text; a NULL final_path: the file was deleted).
    pub fn mark_finalized(&self) -> String {
        self.dialect.adapt(
            &format!(
            "UPDATE {} SET finalized_at = now(), final_path = CAST($5 AS VARCHAR(1024)) WHERE job = $1 AND path = $2 AND size = CAST(CAST($3 AS VARCHAR(20)) AS BIGINT) AND mtime = CAST(CAST($4 AS VARCHAR(20)) AS BIGINT) AND state = 'loaded'",
            self.files
        ),
            &["job", "path", "size", "mtime", "final_path"],
        )
    }

    /// Records a load: params load_id, job, files, rows, bytes, started_at
    /// (timestamptz), duration_ms.
    pub fn insert_load(&self) -> String {
        self.dialect.adapt(
            &format!(
            "INSERT INTO {} (load_id, job, files, rows_loaded, bytes, started_at, finished_at, duration_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp(), $7)",
            self.loads
        ),
            &["load_id", "job", "files", "rows_loaded", "bytes", "started_at", "duration_ms"],
        )
    }

    /// Keeps a job's row in step with the configuration without touching
    /// its `auto` (pause) flag: an update, then an insert if it is missing
    /// (Redshift has no upsert). Params job, source, path, pattern, target
    /// for both, and auto (`true`/`false`) for the insert; all text.
    pub fn sync_job(&self) -> (String, String) {
        let names = ["job", "source", "path", "pattern", "target", "auto"];
        (
            self.dialect.adapt(
                &format!(
                    "UPDATE {} SET source = $2, path = $3, pattern = $4, target = $5, updated_at = now() WHERE job = $1",
                    self.jobs
                ),
                &names[..5],
            ),
            self.dialect.adapt(&format!(
                "INSERT INTO {jobs} (job, source, path, pattern, target, auto, updated_at) \
                 SELECT CAST($1 AS VARCHAR(64)), CAST($2 AS VARCHAR(64)), CAST($3 AS VARCHAR(1024)), CAST($4 AS VARCHAR(256)), CAST($5 AS VARCHAR(127)), CAST(CAST($6 AS VARCHAR(5)) AS BOOLEAN), now() \
                 WHERE NOT EXISTS (SELECT 1 FROM {jobs} WHERE job = CAST($1 AS VARCHAR(64)))",
                jobs = self.jobs
            ), &names),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_schema_qualified_and_quoted() {
        let l = LedgerSql::new(&Ident::parse("ferry_test").unwrap());
        assert_eq!(l.lock(), "LOCK TABLE \"ferry_test\".\"ferry_files\"");
        assert!(l.record_failed()[1].contains("FROM \"ferry_test\".\"ferry_files\" l WHERE"));
    }

    #[test]
    fn fit_cuts_by_bytes_at_a_character_boundary() {
        assert_eq!(fit("abc", 3), "abc");
        assert_eq!(fit("abcd", 3), "abc");
        // "é" is two bytes: a cut in its middle moves before it.
        assert_eq!(fit("aé", 2), "a");
        let long = "ü".repeat(600); // 1,200 bytes
        assert!(fit(&long, width::REASON).len() <= width::REASON);
        assert!(fit(&long, width::REASON).chars().all(|c| c == 'ü'));
    }

    #[test]
    fn version_ids_differ_by_mtime() {
        let a = FileVersion {
            job: "j".into(),
            path: "/a".into(),
            size: 1,
            mtime: 1,
        };
        let b = FileVersion {
            mtime: 2,
            ..a.clone()
        };
        assert_ne!(a.short_id(), b.short_id());
        assert_eq!(a.short_id().len(), 12);
    }
}

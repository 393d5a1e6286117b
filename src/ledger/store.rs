//! The seam the ledger runs on, and the ledger reads written once for both
//! dialects on top of it.
//!
//! A [`LedgerStore`] (each warehouse backend is one) runs a read-only
//! [`Report`] (every column text, text parameters) and a [`Change`] (ledger
//! writes in one transaction after the ledger lock). What the rows mean —
//! a version's state, a job's pause flag — is decided here, once.

use super::errors::ErrorRows;
use super::reports::{Change, Report, texts};
use super::{FileState, FileVersion, LedgerSql, fit, width};
use crate::config::Job;
use crate::error::{Error, Result};
use crate::normalize::RowError;
use async_trait::async_trait;
use std::sync::LazyLock;

/// Rows of a ledger report: text or NULL per column.
pub type LedgerRows = Vec<Vec<Option<String>>>;

/// Where the ledger lives: what a warehouse backend gives the ledger.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// The ledger's SQL in this store's dialect and schema.
    fn ledger(&self) -> &LedgerSql;
    /// Which warehouse this is, for messages (`postgres host:5432/db`).
    fn describe(&self) -> String;
    /// Runs a read-only ledger report (every column text; parameters are
    /// text values in `$n` order, by name on Redshift) and returns its rows.
    async fn read_ledger(&self, report: &Report) -> Result<LedgerRows>;
    /// Runs ledger writes in one transaction (first taking the ledger lock
    /// loads take, with [`Change::lock`], so they never interleave with a
    /// load), the change's error rows last; returns the rows each
    /// statement changed (not counting the error rows).
    async fn write_ledger(&self, change: &Change) -> Result<Vec<u64>>;
}

/// Paths per lookup: a few hundred keep a statement far below the Data
/// API's 100 KB limit.
pub const LOOKUP_CHUNK: usize = 200;

/// `p0` … `p{LOOKUP_CHUNK-1}`: the names of a lookup's path parameters.
static PATH_PARAMS: LazyLock<Vec<String>> =
    LazyLock::new(|| (0..LOOKUP_CHUNK).map(|i| format!("p{i}")).collect());

impl LedgerSql {
    /// Whether `job` is enabled (`true`/`false`; no row: never paused).
    pub fn job_enabled_report(&self, job: &str) -> Report {
        Report {
            sql: self.dialect.adapt(
                &format!(
                    "SELECT CASE WHEN auto THEN 'true' ELSE 'false' END FROM {} WHERE job = $1",
                    self.jobs
                ),
                &["job"],
            ),
            params: vec![("job", job.to_string())],
            columns: &["enabled"],
        }
    }

    /// Every version of each of `paths` (at most [`LOOKUP_CHUNK`]) of
    /// `job`, newest load first; columns path, state, finalized
    /// (`true`/`false`), error, size, mtime.
    pub fn versions_report(&self, job: &str, paths: &[&str]) -> Report {
        assert!(
            paths.len() <= LOOKUP_CHUNK,
            "one lookup holds at most LOOKUP_CHUNK paths"
        );
        let places: Vec<String> = (2..paths.len() + 2).map(|n| format!("${n}")).collect();
        let mut names = vec!["job"];
        names.extend(PATH_PARAMS[..paths.len()].iter().map(String::as_str));
        let mut params = vec![("job", job.to_string())];
        params.extend(
            PATH_PARAMS[..paths.len()]
                .iter()
                .zip(paths)
                .map(|(n, p)| (n.as_str(), p.to_string())),
        );
        Report {
            sql: self.dialect.adapt(
                &format!(
                    "SELECT path, state, CASE WHEN finalized_at IS NULL THEN 'false' ELSE 'true' END, error, \
                     CAST(size AS VARCHAR(20)), CAST(mtime AS VARCHAR(20)) FROM {} \
                     WHERE job = $1 AND path IN ({}) ORDER BY loaded_at DESC",
                    self.files,
                    places.join(", ")
                ),
                &names,
            ),
            params,
            columns: &["path", "state", "finalized", "error", "size", "mtime"],
        }
    }
}

/// Whether the ledger has `job` enabled (not paused); a job it does not
/// list yet is enabled.
pub async fn job_enabled(store: &dyn LedgerStore, job: &str) -> Result<bool> {
    let rows = store
        .read_ledger(&store.ledger().job_enabled_report(job))
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
        .is_none_or(|v| v == "true"))
}

/// What the ledger knows of each of `versions` (all of one job), in one
/// read per [`LOOKUP_CHUNK`] paths.
pub async fn lookup_many(
    store: &dyn LedgerStore,
    versions: &[FileVersion],
) -> Result<Vec<Option<FileState>>> {
    let mut states = Vec::with_capacity(versions.len());
    for chunk in versions.chunks(LOOKUP_CHUNK) {
        let paths: Vec<&str> = chunk.iter().map(|v| v.path.as_str()).collect();
        let report = store.ledger().versions_report(&chunk[0].job, &paths);
        let rows = store.read_ledger(&report).await?;
        let rows = rows
            .into_iter()
            .map(version_row)
            .collect::<Result<Vec<_>>>()?;
        states.extend(states_of(rows, chunk));
    }
    Ok(states)
}

/// Records a version that will not be loaded (`on_change = "ignore"`),
/// with the reason (cut to its column).
pub async fn record_skipped(store: &dyn LedgerStore, v: &FileVersion, reason: &str) -> Result<()> {
    let mut params = version_params(v);
    params.push(("reason", Some(fit(reason, width::ERROR).to_string())));
    store
        .write_ledger(&Change {
            sqls: vec![store.ledger().insert_skipped()],
            params,
            ..Change::default()
        })
        .await
        .map(|_| ())
}

/// Records an archive whose members have all loaded (see
/// [`LedgerSql::record_archive`](super::LedgerSql::record_archive)).
pub async fn record_archive(store: &dyn LedgerStore, v: &FileVersion, sha256: &str) -> Result<()> {
    let mut params = version_params(v);
    params.push(("sha256", Some(sha256.to_string())));
    store
        .write_ledger(&Change {
            sqls: store.ledger().record_archive(),
            params,
            lock: true,
            ..Change::default()
        })
        .await
        .map(|_| ())
}

/// Records that the on-success action was applied: the file is now at
/// `final_path` (`None`: deleted).
pub async fn mark_finalized(
    store: &dyn LedgerStore,
    v: &FileVersion,
    final_path: Option<&str>,
) -> Result<()> {
    let mut params = version_params(v);
    params.push(("final_path", final_path.map(str::to_string)));
    store
        .write_ledger(&Change {
            sqls: vec![store.ledger().mark_finalized()],
            params,
            ..Change::default()
        })
        .await
        .map(|_| ())
}

/// Keeps `ferry_jobs` in step with the configured jobs (never touching a
/// job's pause flag once it has a row).
pub async fn sync_jobs(store: &dyn LedgerStore, jobs: &[std::sync::Arc<Job>]) -> Result<()> {
    let (update, insert) = store.ledger().sync_job();
    for j in jobs {
        store
            .write_ledger(&Change {
                sqls: vec![update.clone(), insert.clone()],
                params: texts(vec![
                    ("job", j.name.clone()),
                    ("source", j.source.name.clone()),
                    ("path", j.path.clone()),
                    ("pattern", j.pattern_text.clone()),
                    ("target", j.target.as_str().to_string()),
                    ("auto", j.enabled.to_string()),
                ]),
                ..Change::default()
            })
            .await?;
    }
    Ok(())
}

/// A file version that failed for good, as the ledger records it.
#[derive(Debug, Clone, Copy)]
pub struct FailedFile<'a> {
    /// Its version.
    pub version: &'a FileVersion,
    /// SHA-256 of the raw bytes, if they were read whole.
    pub sha256: Option<&'a str>,
    /// Records rejected.
    pub rejected: u64,
    /// Why it failed (the full error chain).
    pub reason: &'a str,
    /// The first rejected records.
    pub errors: &'a [RowError],
    /// Key of the rejects object, if one was written.
    pub rejects_key: Option<&'a str>,
}

/// Records a failed version with its reason (cut to its column) and error
/// rows, in one locked transaction that writes nothing when the ledger
/// has the version `loaded` (a replica loaded it meanwhile).
pub async fn record_failed(store: &dyn LedgerStore, f: &FailedFile<'_>) -> Result<()> {
    let mut params = version_params(f.version);
    params.extend([
        ("sha256", f.sha256.map(str::to_string)),
        ("rows_rejected", Some(f.rejected.to_string())),
        ("error", Some(fit(f.reason, width::ERROR).to_string())),
        (
            "rejects_key",
            f.rejects_key.map(|k| fit(k, width::PATH).to_string()),
        ),
    ]);
    let errors = (!f.errors.is_empty()).then(|| ErrorRows {
        unless_loaded: true,
        ..ErrorRows::of(f.version, None, f.errors)
    });
    store
        .write_ledger(&Change {
            sqls: store.ledger().record_failed(),
            params,
            lock: true,
            errors,
        })
        .await
        .map(|_| ())
}

/// Keeps the rows a failed COPY rejected (no load id; they outlive the
/// rolled-back load), when the load held `version` alone: in a batch, the
/// file-by-file retry that follows keeps each file's own. Best effort: a
/// failure is logged, the COPY's error stands.
pub async fn keep_copy_errors(
    store: &dyn LedgerStore,
    files_in_load: usize,
    version: &FileVersion,
    rows: &[RowError],
) {
    if files_in_load != 1 || rows.is_empty() {
        return;
    }
    let change = Change {
        errors: Some(ErrorRows::of(version, None, rows)),
        ..Change::default()
    };
    if let Err(e) = store.write_ledger(&change).await {
        tracing::warn!(job = %version.job, path = %version.path, error = %e.chain(), "cannot keep the COPY error rows");
    }
}

/// A version's key as text parameters: job, path, size, mtime.
fn version_params(v: &FileVersion) -> Vec<(&'static str, Option<String>)> {
    texts(vec![
        ("job", v.job.clone()),
        ("path", v.path.clone()),
        ("size", v.size.to_string()),
        ("mtime", v.mtime.to_string()),
    ])
}

/// One row of [`LedgerSql::versions_report`], typed.
fn version_row(r: Vec<Option<String>>) -> Result<(String, String, bool, Option<String>, i64, i64)> {
    let mut r = r.into_iter();
    let mut next = || r.next().flatten();
    let (path, state, finalized, error, size, mtime) =
        (next(), next(), next(), next(), next(), next());
    let number = |v: Option<String>| {
        v.as_deref()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .ok_or_else(|| {
                Error::permanent(format!(
                    "the ledger holds a size or mtime that is not a number: {v:?}"
                ))
            })
    };
    Ok((
        path.unwrap_or_default(),
        state.unwrap_or_default(),
        finalized.as_deref() == Some("true"),
        error,
        number(size)?,
        number(mtime)?,
    ))
}

/// What the ledger knows of `v`, from its path's rows of
/// [`LedgerSql::versions_report`]: (state, finalized, error, size, mtime),
/// newest first.
fn file_state(
    rows: impl Iterator<Item = (String, bool, Option<String>, i64, i64)>,
    v: &FileVersion,
) -> Option<FileState> {
    let (size, mtime) = (v.size as i64, v.mtime);
    let mut state = None;
    let mut other_loaded = None;
    for (s, finalized, error, row_size, row_mtime) in rows {
        if (row_size, row_mtime) != (size, mtime) {
            // Newest first: keep the first loaded other version.
            other_loaded.get_or_insert(FileState::ChangedAfterLoad {
                size: row_size,
                mtime: row_mtime,
            });
            continue;
        }
        if s == "loaded" {
            return Some(FileState::Loaded { finalized });
        }
        let text = error.unwrap_or_default();
        if s == "failed" {
            state = Some(FileState::Failed { error: text });
        } else if s == "skipped" && state.is_none() {
            state = Some(FileState::Skipped { reason: text });
        }
    }
    state.or(other_loaded)
}

/// Splits the rows of [`LedgerSql::versions_report`] (path, state,
/// finalized, error, size, mtime) by version: for each of `versions`,
/// what the ledger knows of it.
fn states_of(
    rows: Vec<(String, String, bool, Option<String>, i64, i64)>,
    versions: &[FileVersion],
) -> Vec<Option<FileState>> {
    versions
        .iter()
        .map(|v| {
            file_state(
                rows.iter()
                    .filter(|r| {
                        r.0 == v.path && ((r.4, r.5) == (v.size as i64, v.mtime) || r.1 == "loaded")
                    })
                    .map(|r| (r.1.clone(), r.2, r.3.clone(), r.4, r.5)),
                v,
            )
        })
        .collect()
}

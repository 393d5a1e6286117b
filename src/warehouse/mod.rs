//! The warehouse: the load transaction and the ledger, behind one trait.
//!
//! [`Warehouse::load`] is one transaction per batch, so a crash anywhere
//! leaves either everything or nothing: lock the ledger, skip versions
//! already loaded, create the staging table, COPY, merge dimensions, merge
//! the fact, record the ledger rows, commit. Backends: [`postgres`] (the
//! local stand-in, `COPY … FROM STDIN` streamed from S3) and [`redshift`]
//! (the Redshift Data API: one `BatchExecuteStatement` per load).

mod pg_tls;
pub mod postgres;
pub mod redshift;
pub mod sql;

use crate::config::{Config, Job, WarehouseSettings};
use crate::error::{Error, Result};
use crate::ledger::FileVersion;
use crate::normalize::RowError;
use crate::sql::Ident;
use crate::stage::Stager;
use async_trait::async_trait;

/// Checks the target's columns (`have`, as the catalog lists them) against
/// the job and returns which of [`sql::TARGET_META`] it has.
pub fn check_target(job: &Job, schema: &Ident, have: &[String]) -> Result<Vec<&'static str>> {
    if have.is_empty() {
        return Err(Error::permanent(format!(
            "job {}: target table {schema}.{} does not exist; create it (or run `ferry migrate` for the example schema)",
            job.name, job.target
        )));
    }
    let missing: Vec<&str> = job
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|c| !have.iter().any(|h| h == c))
        .collect();
    if !missing.is_empty() {
        return Err(Error::permanent(format!(
            "job {}: target table {schema}.{} has no column(s) {}; add them or fix the job's columns",
            job.name,
            job.target,
            missing.join(", ")
        )));
    }
    Ok(sql::TARGET_META
        .iter()
        .copied()
        .filter(|m| have.iter().any(|h| h == m))
        .collect())
}

/// Where a COPY failed, as PostgreSQL's context says it:
/// `COPY t, line 3, column duration_ms: "abc"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyErrorAt {
    /// Line of the COPY stream (1-based).
    pub line: u64,
    /// The column, when one value was at fault.
    pub column: Option<String>,
    /// The value, when the context quotes it.
    pub value: Option<String>,
}

/// Reads a [`CopyErrorAt`] from an error message, if it has one.
pub fn copy_error_at(message: &str) -> Option<CopyErrorAt> {
    let at = message.find(", line ")? + ", line ".len();
    let digits: String = message[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let line = digits.parse().ok()?;
    let rest = &message[at + digits.len()..];
    let column = rest.strip_prefix(", column ").map(|c| {
        c.chars()
            .take_while(|ch| *ch != ':' && *ch != ']')
            .collect::<String>()
    });
    let value = column.as_ref().and_then(|_| {
        let v = rest.find(": \"")? + 3;
        Some(rest[v..].trim_end_matches(['"', ']']).to_string())
    });
    Some(CopyErrorAt {
        line,
        column,
        value,
    })
}

/// Which of several objects, fed one after the other with `lines[i]` lines
/// each, holds `line` of the stream, and the line within it.
pub fn locate_line(line: u64, lines: &[u64]) -> (usize, u64) {
    let mut before = 0;
    for (i, n) in lines.iter().enumerate() {
        if line <= before + n {
            return (i, line - before);
        }
        before += n;
    }
    (lines.len().saturating_sub(1), line)
}

/// One outcome per file of `batch`: loaded by `load_id` where `loaded`
/// says so, else loaded before.
pub fn outcomes(
    batch: &[StagedFile],
    load_id: &str,
    loaded: impl Fn(&StagedFile) -> bool,
) -> Vec<LoadOutcome> {
    batch
        .iter()
        .map(|f| {
            if loaded(f) {
                LoadOutcome::Loaded {
                    load_id: load_id.to_string(),
                    rows: f.rows,
                }
            } else {
                LoadOutcome::AlreadyLoaded
            }
        })
        .collect()
}

/// One normalized, staged file ready to load.
#[derive(Debug, Clone)]
pub struct StagedFile {
    /// Its version.
    pub version: FileVersion,
    /// SHA-256 of the raw bytes.
    pub sha256: String,
    /// Folder of the staged parts (ends in `/`).
    pub staged_prefix: String,
    /// Keys of the staged gzip CSV parts, in order; empty when no row was
    /// written (an empty or header-only file, or every record rejected).
    pub parts: Vec<String>,
    /// Key of the rejects object, if any record was rejected.
    pub rejects_key: Option<String>,
    /// Rows in the staged file.
    pub rows: u64,
    /// Rejected records.
    pub rejected: u64,
    /// Kept error rows.
    pub errors: Vec<RowError>,
    /// Raw bytes read.
    pub input_bytes: u64,
}

pub use crate::ledger::LedgerRows;

pub use crate::ledger::FailedFile;

/// What a load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// Committed.
    Loaded {
        /// The load id in `ferry_loads` (shared by the batch).
        load_id: String,
        /// Rows copied from the staged file.
        rows: u64,
    },
    /// Another pass or replica had loaded this version already; nothing
    /// was written.
    AlreadyLoaded,
}

/// A warehouse backend.
///
/// What really differs between backends: the load transaction (whole or
/// streamed) and how connection health is probed. Everything else a
/// backend gives is the [`LedgerStore`](crate::ledger::LedgerStore) seam,
/// on which `crate::ledger` writes the ledger once for both.
///
/// Contract: `load` commits the rows and the ledger rows together or not
/// at all, and writes nothing for a version the ledger already has as
/// `loaded`.
#[async_trait]
pub trait Warehouse: crate::ledger::LedgerStore {
    /// Whether the warehouse answers, for `/readyz`; cheap, and never
    /// waits behind a running load.
    async fn ping(&self) -> Result<()>;
    /// Loads a batch of staged files of one job in one transaction and one
    /// COPY; returns one outcome per file, in the batch's order. A version
    /// the ledger already has as `loaded` is left out of the load (its
    /// outcome is [`LoadOutcome::AlreadyLoaded`]). The batch never holds
    /// two versions of one path.
    async fn load(&self, job: &Job, batch: &[StagedFile]) -> Result<Vec<LoadOutcome>>;
    /// Runs one DDL statement (`ALTER TABLE`) on its own, outside any
    /// transaction block: Redshift refuses `ALTER COLUMN … TYPE` inside
    /// one, and a lone statement commits at once, so its table lock is
    /// held no longer than the statement. Within the warehouse's deadlines.
    async fn alter(&self, sql: &str) -> Result<()> {
        self.write_ledger(&crate::ledger::reports::Change {
            sqls: vec![sql.to_string()],
            ..Default::default()
        })
        .await
        .map(|_| ())
    }
    /// Whether [`load_streaming`](Self::load_streaming) starts loading
    /// before the file is staged whole; the pipeline then streams each
    /// file of more than one part.
    fn streams(&self) -> bool {
        false
    }
    /// Loads one file of `version` while it is being staged, under the
    /// contract of [`load`](Self::load): `parts` yields the staged part
    /// keys in order as they are uploaded and closes after the last, and
    /// `file` then gives the whole staged file, or the reason staging
    /// failed (nothing is committed then). Not retried here: on an error
    /// the caller loads the staged file with `load`, or records the
    /// failure. The default waits for the whole file and calls `load`.
    async fn load_streaming(
        &self,
        job: &Job,
        version: &FileVersion,
        mut parts: tokio::sync::mpsc::Receiver<String>,
        file: tokio::sync::oneshot::Receiver<Result<StagedFile>>,
    ) -> Result<LoadOutcome> {
        while parts.recv().await.is_some() {}
        let file = file.await.map_err(|_| {
            crate::Error::transient(format!("staging of {} stopped", version.path))
        })??;
        let mut outcome = self.load(job, std::slice::from_ref(&file)).await?;
        Ok(outcome.pop().unwrap_or(LoadOutcome::AlreadyLoaded))
    }
}

/// Connects the configured warehouse. The stager gives backends that read
/// staged objects themselves (PostgreSQL) access to S3.
pub async fn connect(config: &Config, stager: &Stager) -> Result<Box<dyn Warehouse>> {
    match &config.warehouse {
        WarehouseSettings::Postgres(pg) => Ok(Box::new(
            postgres::PostgresWarehouse::connect(pg, stager.clone()).await?,
        )),
        WarehouseSettings::RedshiftData(rs) => Ok(Box::new(
            redshift::RedshiftDataWarehouse::connect(rs, stager.clone()).await?,
        )),
    }
}

#[cfg(test)]
mod copy_error_tests {
    use super::*;

    #[test]
    fn postgres_copy_context_is_read_and_located() {
        let m = "COPY from s3://b/k failed: invalid input syntax for type bigint: \"x\" (22P02) at COPY ferry_stage_1, line 5, column duration_ms: \"x\"";
        assert_eq!(
            copy_error_at(m),
            Some(CopyErrorAt {
                line: 5,
                column: Some("duration_ms".into()),
                value: Some("x".into())
            })
        );
        assert_eq!(copy_error_at("relation t does not exist"), None);
        assert_eq!(locate_line(5, &[3, 4]), (1, 2));
        assert_eq!(locate_line(3, &[3, 4]), (0, 3));
    }
}

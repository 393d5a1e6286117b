//! Batches: staged files of one job wait here until `max_files`,
//! `max_bytes` or `max_wait` says they load, together, in one transaction.
//!
//! A batch lives in memory only. If the daemon stops before it loads, its
//! files are not in the ledger and their sources are untouched, so the
//! next start fetches and stages them again: nothing is lost, and the
//! ledger still keeps a version from loading twice.

use super::{LoadedFile, PassReport, Runtime, finalize};
use crate::config::Job;
use crate::error::Error;
use crate::ledger::FileVersion;
use crate::source::Source;
use crate::telemetry;
use crate::warehouse::{FailedFile, LoadOutcome, StagedFile};
use std::sync::Arc;
use std::time::Instant;

/// One staged file, the mapping it was staged with, and when its fetch
/// began.
#[derive(Debug)]
pub struct Staged {
    /// The staged file.
    pub file: StagedFile,
    /// The job's mapping it was normalized with (`evolve` may have added
    /// columns since): it loads with this one.
    pub mapping: Arc<Job>,
    /// When its fetch began (for the per-file duration).
    pub started: Instant,
}

/// Staged files of one job that have not been loaded yet.
#[derive(Debug, Default)]
pub struct Pending {
    files: Vec<Staged>,
    bytes: u64,
    since: Option<Instant>,
}

impl Pending {
    /// Whether `v` is waiting here.
    pub fn holds(&self, v: &FileVersion) -> bool {
        self.files.iter().any(|s| s.file.version == *v)
    }

    /// Forgets an older version of `v`'s path that waits here: the file
    /// changed before its batch loaded, so only the new version loads.
    pub fn supersede(&mut self, v: &FileVersion) {
        let before = self.files.len();
        self.files.retain(|s| s.file.version.path != v.path);
        if self.files.len() != before {
            self.bytes = self.files.iter().map(|s| s.file.input_bytes).sum();
            tracing::info!(job = %v.job, path = %v.path, "the file changed while its staged version waited for its batch; the new version replaces it");
        }
    }

    /// Adds a staged file.
    pub fn push(&mut self, staged: Staged) {
        self.bytes += staged.file.input_bytes;
        self.since.get_or_insert(staged.started);
        self.files.push(staged);
    }

    /// How many files wait.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Whether the batch is full (`max_files` or `max_bytes`).
    pub fn full(&self, job: &Job) -> bool {
        self.files.len() >= job.batch.max_files || self.bytes >= job.batch.max_bytes
    }

    /// Whether the oldest file has waited `max_wait`.
    pub fn due(&self, job: &Job) -> bool {
        self.since
            .is_some_and(|t| t.elapsed() >= job.batch.max_wait)
    }

    /// Takes every waiting file out, as one batch.
    pub fn take(&mut self) -> Vec<Staged> {
        self.bytes = 0;
        self.since = None;
        std::mem::take(&mut self.files)
    }
}

/// Loads `batch`: files staged with one mapping load together (a batch
/// that spans an `evolve` change loads in one load per mapping).
pub async fn load(
    rt: &Runtime,
    src: &dyn Source,
    batch: Vec<Staged>,
    report: &mut PassReport,
) -> crate::error::Result<()> {
    let mut rest = batch;
    while !rest.is_empty() {
        let mapping = rest[0].mapping.clone();
        let split = rest
            .iter()
            .position(|s| !Arc::ptr_eq(&s.mapping, &mapping))
            .unwrap_or(rest.len());
        let tail = rest.split_off(split);
        load_alike(rt, &mapping, src, rest, report).await?;
        rest = tail;
    }
    Ok(())
}

/// Loads `batch` in one transaction; if that fails for good and the batch
/// has more than one file, loads each file alone, so a bad file fails by
/// itself and the others load.
async fn load_alike(
    rt: &Runtime,
    job: &Job,
    src: &dyn Source,
    batch: Vec<Staged>,
    report: &mut PassReport,
) -> crate::error::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let clock = Instant::now();
    let files: Vec<StagedFile> = batch.iter().map(|s| s.file.clone()).collect();
    let loaded = {
        let _slot = rt.load_slot().await;
        rt.warehouse.load(job, &files).await
    };
    match loaded {
        Ok(outcomes) => {
            telemetry::batch_loaded(&job.name, files.len(), clock.elapsed());
            super::checks::after_load(rt, job, &outcomes).await;
            for (staged, outcome) in batch.iter().zip(outcomes) {
                loaded_or_skipped(rt, job, src, staged, outcome, report).await;
            }
            Ok(())
        }
        Err(e) if files.len() > 1 && !e.is_transient() => {
            tracing::warn!(job = %job.name, files = files.len(), error = %e.chain(), "batch load failed; loading its files one by one to find the bad one");
            for staged in &batch {
                let alone = {
                    let _slot = rt.load_slot().await;
                    rt.warehouse
                        .load(job, std::slice::from_ref(&staged.file))
                        .await
                };
                match alone {
                    Ok(mut outcome) => {
                        super::checks::after_load(rt, job, &outcome).await;
                        let outcome = outcome.pop().unwrap_or(LoadOutcome::AlreadyLoaded);
                        loaded_or_skipped(rt, job, src, staged, outcome, report).await;
                    }
                    Err(e) => failed(rt, job, staged, &e, report).await?,
                }
            }
            Ok(())
        }
        Err(e) => {
            for staged in &batch {
                failed(rt, job, staged, &e, report).await?;
            }
            Ok(())
        }
    }
}

pub(super) async fn loaded_or_skipped(
    rt: &Runtime,
    job: &Job,
    src: &dyn Source,
    staged: &Staged,
    outcome: LoadOutcome,
    report: &mut PassReport,
) {
    let f = &staged.file;
    match outcome {
        LoadOutcome::Loaded { rows, .. } => {
            telemetry::file_loaded(
                &job.name,
                &f.version.path,
                rows,
                f.rejected,
                f.version.size,
                staged.started.elapsed(),
            );
            crate::alerts::file_loaded(&job.name, &f.version.path, rows, f.rejected);
            finalize(rt, job, src, &f.version).await;
            report.loaded.push(LoadedFile {
                job: job.name.clone(),
                path: f.version.path.clone(),
                rows,
                rejected: f.rejected,
            });
        }
        LoadOutcome::AlreadyLoaded => {
            telemetry::file_skipped(
                &job.name,
                &f.version.path,
                "loaded meanwhile by another pass",
            );
            report.skipped += 1;
        }
    }
}

/// Reports a file whose load failed; a permanent failure is recorded in
/// the ledger (a transient one is retried from the source next poll).
async fn failed(
    rt: &Runtime,
    job: &Job,
    staged: &Staged,
    error: &Error,
    report: &mut PassReport,
) -> crate::error::Result<()> {
    let f = &staged.file;
    let chain = error.chain();
    telemetry::file_failed(&f.version.job, &f.version.path, &chain);
    if !error.is_transient() {
        let recorded = super::record_failure(
            rt,
            &FailedFile {
                version: &f.version,
                sha256: Some(&f.sha256),
                rejected: f.rejected,
                reason: &chain,
                errors: &f.errors,
                rejects_key: f.rejects_key.as_deref(),
            },
        )
        .await;
        if recorded {
            super::quarantine(rt, job, &f.version.path).await;
        }
    }
    report
        .failed
        .push((f.version.job.clone(), f.version.path.clone(), chain));
    Ok(())
}

//! One pass over the jobs: for each job, list → settle → look up → fetch →
//! normalize → stage (`concurrency` files at a time, within the daemon's
//! staging and per-source transfer slots) → batch → load (within the load
//! slots) → post-load checks → finalize. A file larger than one part loads
//! alone, streamed where the warehouse can (`stream`).
//!
//! Each step has its file: `discover` (list, filter, what has not settled),
//! claim (`to_stage`, here: what the ledger already has), `file` (fetch,
//! normalize, stage one file), `batch` (load a batch, file by file when it
//! fails), `stream` (a large file's streamed load), `checks` (post-load
//! checks), `finish` (failures recorded, on_failure, finalize); `runtime`
//! holds what a pass runs on.
//!
//! The load-once rules live here and in the warehouse transaction:
//! - a version the ledger has as `loaded` is never fetched again (only its
//!   finalize is completed if a crash interrupted it);
//! - a version the ledger has as `failed` waits for an operator or a change;
//! - nothing is done to a source file before its load committed.

mod archives;
mod batch;
mod checks;
mod discover;
pub mod evolve;
mod file;
mod finish;
mod runtime;
mod shared;
mod stream;

use discover::*;
use finish::*;
pub use runtime::Runtime;
pub use shared::{receive_work, stop_sharing};

pub use batch::{Pending, Staged};
pub use discover::{Survey, survey};
pub use file::{FileFailure, stage_file};

use crate::config::{Config, Finalize, Job, OnChange};
use crate::error::{Error, Result};
use crate::ledger::{FileState, FileVersion};
use crate::retry::{RetryPolicy, retry};
use crate::source::settle::Stability;
use crate::source::{self, RemoteEntry, Source};
use crate::stage::Stager;
use crate::telemetry;
use crate::warehouse::{self, FailedFile, Warehouse};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// Which waiting batches a pass loads at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Only those whose oldest file has waited `batch.max_wait` (the daemon).
    Due,
    /// All of them (`ferry once`, tests).
    All,
}

/// One loaded file.
#[derive(Debug, Clone)]
pub struct LoadedFile {
    /// Job.
    pub job: String,
    /// Source path.
    pub path: String,
    /// Rows loaded.
    pub rows: u64,
    /// Records rejected.
    pub rejected: u64,
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    /// Files loaded.
    pub loaded: Vec<LoadedFile>,
    /// Files skipped (already loaded or failed before).
    pub skipped: usize,
    /// Files not settled yet.
    pub waiting: usize,
    /// Files that failed: (job, path, error).
    pub failed: Vec<(String, String, String)>,
    /// Jobs that could not run at all: (job, error).
    pub job_errors: Vec<(String, String)>,
}

impl PassReport {
    /// One line per loaded or failed file and failed job, then a summary
    /// line: what `ferry once` and the dev stack print.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.loaded {
            out.push(format!(
                "loaded  {} {}: {} rows, {} rejected",
                f.job, f.path, f.rows, f.rejected
            ));
        }
        for (j, p, e) in &self.failed {
            out.push(format!("failed  {j} {p}: {e}"));
        }
        for (j, e) in &self.job_errors {
            out.push(format!("failed  job {j}: {e}"));
        }
        out.push(format!(
            "{} loaded, {} skipped, {} waiting to settle, {} failed",
            self.loaded.len(),
            self.skipped,
            self.waiting,
            self.failed.len() + self.job_errors.len()
        ));
        out
    }

    /// Adds what `other` did.
    pub fn absorb(&mut self, other: PassReport) {
        self.loaded.extend(other.loaded);
        self.skipped += other.skipped;
        self.waiting += other.waiting;
        self.failed.extend(other.failed);
        self.job_errors.extend(other.job_errors);
    }

    /// Whether anything failed.
    pub fn has_failures(&self) -> bool {
        !self.failed.is_empty() || !self.job_errors.is_empty()
    }
}

/// Runs one pass over every enabled job (or only `only`) and loads every
/// batch it staged.
pub async fn run_pass(rt: &Runtime, only: Option<&str>) -> Result<PassReport> {
    run_pass_draining(rt, only, Drain::All).await
}

/// Runs one pass; at its end loads the batches `drain` says.
pub async fn run_pass_draining(
    rt: &Runtime,
    only: Option<&str>,
    drain: Drain,
) -> Result<PassReport> {
    let mut report = PassReport::default();
    if let Some(name) = only
        && !rt.config.jobs.iter().any(|j| j.name == name)
    {
        return Err(Error::config(format!(
            "no job named {name:?} in the configuration"
        )));
    }
    for job in &rt.config.jobs {
        if only.is_some_and(|n| n != job.name) {
            continue;
        }
        let explicit = only.is_some();
        job_pass(rt, job, drain, explicit, &mut report).await?;
    }
    // With a work queue: what the listers sent, until the queue has
    // nothing more for this replica.
    while rt.shares_work() {
        // Boxed, as the job passes are: the round's future is large.
        let (received, round) = Box::pin(receive_work(rt, drain)).await?;
        report.absorb(round);
        if received == 0 {
            break;
        }
    }
    Ok(report)
}

/// Polls one job once (unless it is disabled or paused), as the daemon
/// does on the job's own interval.
pub async fn run_job_pass(rt: &Runtime, job: &Arc<Job>, drain: Drain) -> Result<PassReport> {
    let mut report = PassReport::default();
    job_pass(rt, job, drain, false, &mut report).await?;
    Ok(report)
}

/// One pass of `job` into `report`; `explicit` (`--job NAME`) runs it
/// even when paused. A failure of the job is reported, not returned; only
/// a failure to read the pause flag is.
async fn job_pass(
    rt: &Runtime,
    job: &Arc<Job>,
    drain: Drain,
    explicit: bool,
    report: &mut PassReport,
) -> Result<()> {
    if !explicit && (!job.enabled || !crate::ledger::job_enabled(&*rt.warehouse, &job.name).await?)
    {
        tracing::debug!(job = %job.name, "job is paused; not polled");
        telemetry::jobs::paused(&job.name);
        return Ok(());
    }
    telemetry::liveness::pass_started(&job.name);
    telemetry::jobs::pass_started(&job.name);
    let (loaded, failed) = (report.loaded.len(), report.failed.len());
    let result = run_job(rt, job, drain, report).await;
    telemetry::liveness::pass_ended(&job.name);
    let error = result.as_ref().err().map(|e| e.chain());
    telemetry::jobs::pass_ended(
        &job.name,
        report.loaded.len() - loaded,
        report.failed.len() - failed,
        error.as_deref(),
    );
    if let Some(e) = error {
        tracing::error!(job = %job.name, error = %e, "job pass failed");
        report.job_errors.push((job.name.clone(), e));
    }
    Ok(())
}

async fn run_job(
    rt: &Runtime,
    job: &Arc<Job>,
    drain: Drain,
    report: &mut PassReport,
) -> Result<()> {
    // Boxed: the shared passes nest deep futures, and a caller's own
    // future (a binary's main) must stay within the compiler's limits.
    match shared::feed(rt, job) {
        shared::Feed::Lister(s) => Box::pin(shared::list_and_send(rt, s, job, report)).await,
        shared::Feed::Events(s, feed) => {
            Box::pin(shared::events_pass(rt, s, feed, job, drain, report)).await
        }
        shared::Feed::Listing => {
            let (lock, mut pending) = rt.take_pending(&job.name).await;
            let result = poll_job(rt, job, drain, &mut pending, report).await;
            rt.put_pending(&job.name, pending, lock).await;
            result
        }
    }
}

/// The file versions of a poll that need staging, after the ledger has
/// been asked about each.
async fn to_stage(
    rt: &Runtime,
    job: &Arc<Job>,
    src: &dyn Source,
    ready: Vec<RemoteEntry>,
    pending: &mut Pending,
    skipped: &mut usize,
    done: &mut std::collections::HashSet<String>,
) -> Result<Vec<RemoteEntry>> {
    let mut todo = Vec::new();
    let (entries, versions): (Vec<RemoteEntry>, Vec<FileVersion>) = ready
        .into_iter()
        // Archive members were chosen by `archive.members` as it opened.
        .filter(|e| source::archive::is_member(&e.path) || matches(job, e))
        .map(|entry| {
            let version = FileVersion {
                job: job.name.clone(),
                path: entry.path.clone(),
                size: entry.size,
                mtime: entry.mtime,
            };
            (entry, version)
        })
        // Staged files waiting for their batch are not looked at again.
        .filter(|(_, v)| !pending.holds(v))
        .unzip();
    let states = crate::ledger::lookup_many(&*rt.warehouse, &versions).await?;
    for ((entry, version), state) in entries.into_iter().zip(versions).zip(states) {
        match state {
            Some(FileState::Loaded { finalized }) => {
                if !finalized && job.on_success != Finalize::Keep {
                    finalize(rt, job, src, &version).await;
                }
                telemetry::file_skipped(&job.name, &entry.path, "already loaded");
                done.insert(entry.path.clone());
                *skipped += 1;
                continue;
            }
            Some(FileState::Failed { error }) => {
                telemetry::file_skipped(&job.name, &entry.path, &format!("failed before: {error}"));
                *skipped += 1;
                continue;
            }
            Some(FileState::Skipped { reason }) => {
                telemetry::file_skipped(&job.name, &entry.path, &reason);
                done.insert(entry.path.clone());
                *skipped += 1;
                continue;
            }
            Some(FileState::ChangedAfterLoad { size, mtime })
                if job.on_change == OnChange::Ignore =>
            {
                let reason = format!(
                    "changed after a version was loaded (loaded: {size} bytes, mtime {mtime}; now: {} bytes, mtime {}); on_change = \"ignore\"",
                    entry.size, entry.mtime
                );
                telemetry::file_skipped(&job.name, &entry.path, &reason);
                crate::ledger::record_skipped(&*rt.warehouse, &version, &reason).await?;
                done.insert(entry.path.clone());
                *skipped += 1;
                continue;
            }
            Some(FileState::ChangedAfterLoad { .. }) => {
                tracing::info!(job = %job.name, path = %entry.path, "the file changed after a version of it was loaded; loading the new version (on_change = \"reload\")");
            }
            None => {}
        }
        pending.supersede(&version);
        todo.push(entry);
    }
    Ok(todo)
}

/// Loads `entries` of `job`'s source as a pass would load them once
/// settled, without listing (what `ferry replay` hands it); every batch is
/// loaded before it returns.
pub async fn load_entries(
    rt: &Runtime,
    job: &Arc<Job>,
    entries: Vec<RemoteEntry>,
) -> Result<PassReport> {
    let mut report = PassReport::default();
    let src = rt.source(&job.source).await?;
    let (lock, mut pending) = rt.take_pending(&job.name).await;
    let result = Box::pin(work_on(
        rt,
        job,
        &src,
        entries,
        Drain::All,
        &mut pending,
        &mut report,
    ))
    .await;
    rt.put_pending(&job.name, pending, lock).await;
    result?;
    Ok(report)
}

/// One pass over `job`: discover (list and filter), settle, then
/// [`work_on`] what settled, then report the backlog.
async fn poll_job(
    rt: &Runtime,
    job: &Arc<Job>,
    drain: Drain,
    pending: &mut Pending,
    report: &mut PassReport,
) -> Result<()> {
    let clock = Instant::now();
    let (src, listing, now, ready, unsettled) = list_settled(rt, job, report).await?;
    let (loaded_before, failed_before, skipped_before) =
        (report.loaded.len(), report.failed.len(), report.skipped);
    let settled: Vec<(String, i64)> = ready.iter().map(|e| (e.path.clone(), e.mtime)).collect();
    let done = Box::pin(work_on(rt, job, &src, ready, drain, pending, report)).await?;
    let loaded_now: std::collections::HashSet<&str> = report.loaded[loaded_before..]
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    let not_loaded =
        |(p, _): &&(String, i64)| !done.contains(p) && !loaded_now.contains(p.as_str());
    let age = |oldest: Option<i64>| {
        std::time::Duration::from_secs(oldest.map_or(0, |m| (now - m).max(0) as u64))
    };
    let oldest = listing
        .files
        .iter()
        .filter(not_loaded)
        .map(|(_, m)| *m)
        .min();
    let lag = settled.iter().filter(not_loaded).map(|(_, m)| *m).min();
    telemetry::job_backlog(
        &job.name,
        listing.files.len(),
        unsettled,
        age(oldest),
        age(lag),
    );
    telemetry::pass_done(
        &job.name,
        listing.listed,
        report.loaded.len() - loaded_before,
        report.skipped - skipped_before,
        report.failed.len() - failed_before,
        clock.elapsed(),
    );
    Ok(())
}

/// A pass's listing: the source, what it listed (its candidates moved on
/// to settle), when, what of it has settled and how many of the job's
/// files have not.
async fn list_settled(
    rt: &Runtime,
    job: &Job,
    report: &mut PassReport,
) -> Result<(Arc<dyn Source>, Listing, i64, Vec<RemoteEntry>, usize)> {
    let listed = async {
        let src = rt.source(&job.source).await?;
        let listing = discover(&*src, job).await?;
        Ok::<_, crate::Error>((src, listing))
    }
    .await;
    match &listed {
        Ok(_) => telemetry::jobs::source_answered(&job.name, Ok(())),
        Err(e) => telemetry::jobs::source_answered(&job.name, Err(&e.chain())),
    }
    let (src, mut listing) = listed?;
    let now = chrono::Utc::now().timestamp();
    // Settle takes the candidates; the listing keeps its counts and files.
    let candidates = std::mem::take(&mut listing.candidates);
    let (ready, unsettled) = settled(rt, job, candidates, now, report);
    Ok((src, listing, now, ready, unsettled))
}

/// What of a listing has settled (with the job's memory of earlier
/// polls), and how many of the job's files have not (reported).
fn settled(
    rt: &Runtime,
    job: &Job,
    candidates: Vec<RemoteEntry>,
    now: i64,
    report: &mut PassReport,
) -> (Vec<RemoteEntry>, usize) {
    let (ready, waiting) = settle_split(rt, job, candidates, now);
    let unsettled = report_waiting(job, &waiting, report);
    (ready, unsettled)
}

/// Claims (skips what the ledger has), streams the large files, stages,
/// batches and loads the rest of `ready`; returns the paths the ledger
/// already had done (loaded or skipped).
async fn work_on(
    rt: &Runtime,
    job: &Arc<Job>,
    src: &Arc<dyn Source>,
    ready: Vec<RemoteEntry>,
    drain: Drain,
    pending: &mut Pending,
    report: &mut PassReport,
) -> Result<std::collections::HashSet<String>> {
    let mut skipped = 0;
    let mut done = std::collections::HashSet::new();
    let todo = to_stage(rt, job, &**src, ready, pending, &mut skipped, &mut done).await?;
    // Archives open into their members, which the ledger is asked about
    // in turn (members loaded before a crash are not loaded again).
    // Boxed (as the steps below): a pass nests deep futures, and each
    // step held inline would make this one larger still.
    let (mut todo, members, opened) = Box::pin(archives::open(rt, job, src, todo, report)).await?;
    if !members.is_empty() {
        let mut members_done = std::collections::HashSet::new();
        let step = to_stage(
            rt,
            job,
            &**src,
            members,
            pending,
            &mut skipped,
            &mut members_done,
        );
        todo.extend(Box::pin(step).await?);
    }
    report.skipped += skipped;
    let reader = archives::source_with(src, &opened);

    // A file of more than one part loads alone, its COPY overlapping its
    // staging where the warehouse can.
    let (large, todo): (Vec<RemoteEntry>, Vec<RemoteEntry>) =
        todo.into_iter().partition(|e| stream::streams(rt, job, e));
    for entry in &large {
        stream::stream_file(rt, job, &reader, entry, report)
            .instrument(file_span(job, entry))
            .await?;
    }
    Box::pin(stage_and_load(
        rt, job, &reader, todo, drain, pending, report,
    ))
    .await?;
    if !pending.is_empty() {
        tracing::debug!(job = %job.name, files = pending.len(), "staged files wait for their batch (batch.max_wait)");
    }
    if !opened.is_empty() {
        let step = archives::complete(rt, job, &**src, &opened, pending, report);
        done.extend(Box::pin(step).await?);
    }
    Ok(done)
}

/// Stages `todo` and loads it in batches: three stages at once, staging
/// (`concurrency` files at a time) → batching → loading (one batch at a
/// time), so files keep staging while a full batch loads; the queues
/// between them are short, so a slow warehouse slows staging down instead
/// of piling up files. Staged files that do not fill a batch wait in
/// `pending` unless `drain` says otherwise.
async fn stage_and_load(
    rt: &Runtime,
    job: &Arc<Job>,
    src: &Arc<dyn Source>,
    todo: Vec<RemoteEntry>,
    drain: Drain,
    pending: &mut Pending,
    report: &mut PassReport,
) -> Result<()> {
    let total = todo.len();
    let (staged_tx, mut staged_rx) = tokio::sync::mpsc::channel(job.concurrency);
    let (work_tx, mut work_rx) = tokio::sync::mpsc::channel::<Work>(1);
    let stage_all = {
        async move {
            let mut staging = futures::stream::iter(todo)
                .map(|entry| async move {
                    let slot = rt.staging_slot().await;
                    let started = Instant::now();
                    let span = file_span(job, &entry);
                    let r = stage_file(rt, job, src, &entry)
                        .instrument(span.clone())
                        .await;
                    drop(slot);
                    if let Ok((file, _)) = &r {
                        span.in_scope(|| {
                            telemetry::file_staged(
                                &job.name,
                                &file.version.path,
                                file.rows,
                                started.elapsed(),
                            )
                        });
                    }
                    (entry, started, r)
                })
                .buffer_unordered(job.concurrency);
            while let Some(done) = staging.next().await {
                if staged_tx.send(done).await.is_err() {
                    return;
                }
            }
        }
    };
    let waiting = &mut *pending;
    let batch_all = async move {
        let mut progress = telemetry::Progress::new(&job.name, total);
        while let Some((entry, started, r)) = staged_rx.recv().await {
            progress.one_done();
            let work = match r {
                Ok((file, mapping)) => {
                    waiting.push(Staged {
                        file,
                        mapping,
                        started,
                    });
                    if !waiting.full(job) {
                        continue;
                    }
                    Work::Load(waiting.take())
                }
                Err(f) => Work::Failed(Box::new((entry, f))),
            };
            if work_tx.send(work).await.is_err() {
                return;
            }
        }
        if !waiting.is_empty() && (drain == Drain::All || waiting.due(job)) {
            let _ = work_tx.send(Work::Load(waiting.take())).await;
        }
    };
    let load_all = async {
        while let Some(work) = work_rx.recv().await {
            match work {
                Work::Load(files) => {
                    let span = tracing::info_span!("batch", job = %job.name, files = files.len());
                    batch::load(rt, &**src, files, report)
                        .instrument(span)
                        .await?
                }
                Work::Failed(failed) => {
                    let (entry, f) = *failed;
                    failed_to_stage(rt, job, &entry, f, report)
                        .instrument(file_span(job, &entry))
                        .await?
                }
            }
        }
        Result::Ok(())
    };
    let ((), (), loaded) = futures::join!(stage_all, batch_all, load_all);
    loaded?;
    Ok(())
}

/// The span of one file's work: job, path and version (size, mtime, and
/// the version id its staging keys carry), so every event of the file
/// carries them (in JSON logs too).
fn file_span(job: &Job, entry: &RemoteEntry) -> tracing::Span {
    tracing::info_span!(
        "file",
        job = %job.name,
        path = %entry.path,
        size = entry.size,
        mtime = entry.mtime,
        version = %file::version_of(job, entry).short_id()
    )
}

/// What the batching stage hands to the loading stage.
enum Work {
    /// A batch to load.
    Load(Vec<Staged>),
    /// A file that failed before it was staged.
    Failed(Box<(RemoteEntry, FileFailure)>),
}

//! One pass over the jobs: for each job, list → settle → look up → fetch →
//! normalize → stage (`concurrency` files at a time, within the daemon's
//! staging and per-source transfer slots) → batch → load (within the load
//! slots) → post-load checks → finalize. A file larger than one part loads
//! alone, streamed where the warehouse can (`stream`).
//!
//! The load-once rules live here and in the warehouse transaction:
//! - a version the ledger has as `loaded` is never fetched again (only its
//!   finalize is completed if a crash interrupted it);
//! - a version the ledger has as `failed` waits for an operator or a change;
//! - nothing is done to a source file before its load committed.

mod batch;
mod checks;
mod file;
mod stream;

pub use batch::{Pending, Staged};
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

/// Everything a pass needs, connected once.
pub struct Runtime {
    /// The configuration.
    pub config: Arc<Config>,
    /// S3 staging.
    pub stager: Stager,
    /// The warehouse.
    pub warehouse: Arc<dyn Warehouse>,
    /// Per job: sizes and mtimes seen in earlier polls (settle.stable_polls).
    pub stability: std::sync::Mutex<HashMap<String, Stability>>,
    /// One connection per source, kept across passes (an SSH handshake
    /// costs the server half a second; sources reconnect by themselves
    /// when the connection drops).
    /// Connected on first use; each source on its own, so one that is
    /// unreachable (and retrying) never holds up the others.
    sources: HashMap<String, tokio::sync::OnceCell<Arc<dyn Source>>>,
    /// Per job: staged files waiting for their batch to load.
    pending: tokio::sync::Mutex<HashMap<String, Pending>>,
    /// Files staged at once across all jobs (`daemon.concurrency`).
    staging_slots: tokio::sync::Semaphore,
    /// Per source: files fetched from it at once (`max_transfers`).
    transfer_slots: HashMap<String, tokio::sync::Semaphore>,
    /// Loads in flight at once (`daemon.max_concurrent_loads`).
    load_slots: tokio::sync::Semaphore,
}

/// Which waiting batches a pass loads at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Only those whose oldest file has waited `batch.max_wait` (the daemon).
    Due,
    /// All of them (`ferry once`, tests).
    All,
}

impl Runtime {
    /// Connects S3 and the warehouse, and records the jobs in `ferry_jobs`.
    pub async fn start(config: Config) -> Result<Runtime> {
        let stager = Stager::new(&config.staging).await;
        let warehouse: Arc<dyn Warehouse> = Arc::from(warehouse::connect(&config, &stager).await?);
        warehouse.verify_ledger().await?;
        warehouse.sync_jobs(&config.jobs).await?;
        Ok(Runtime {
            stager,
            warehouse,
            stability: std::sync::Mutex::new(HashMap::new()),
            sources: config
                .sources
                .keys()
                .map(|name| (name.clone(), tokio::sync::OnceCell::new()))
                .collect(),
            pending: tokio::sync::Mutex::new(HashMap::new()),
            staging_slots: tokio::sync::Semaphore::new(config.daemon.concurrency),
            transfer_slots: config
                .sources
                .iter()
                .map(|(name, s)| (name.clone(), tokio::sync::Semaphore::new(s.max_transfers)))
                .collect(),
            load_slots: tokio::sync::Semaphore::new(config.daemon.max_concurrent_loads),
            config: Arc::new(config),
        })
    }

    /// A slot among the files staged at once across all jobs; held while
    /// a file is fetched, normalized and uploaded.
    pub(crate) async fn staging_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.staging_slots
            .acquire()
            .await
            .expect("the staging semaphore is never closed")
    }

    /// A slot among the files fetched from `source` at once (every job's
    /// source is configured, so it has its slots).
    pub(crate) async fn transfer_slot(&self, source: &str) -> tokio::sync::SemaphorePermit<'_> {
        self.transfer_slots
            .get(source)
            .expect("a job's source is configured")
            .acquire()
            .await
            .expect("never closed")
    }

    /// A slot among the loads in flight at once; held for one load
    /// transaction.
    pub(crate) async fn load_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.load_slots.acquire().await.expect("never closed")
    }

    /// The connected source for `settings`, connecting on first use.
    pub async fn source(
        &self,
        settings: &Arc<crate::config::SourceSettings>,
    ) -> Result<Arc<dyn Source>> {
        let Some(cell) = self.sources.get(&settings.name) else {
            return Err(Error::config(format!(
                "source {} is not configured",
                settings.name
            )));
        };
        cell.get_or_try_init(|| {
            retry(RetryPolicy::CONNECT, "connect", || {
                source::connect(settings)
            })
        })
        .await
        .cloned()
    }
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
    if !explicit && (!job.enabled || !rt.warehouse.job_enabled(&job.name).await?) {
        tracing::debug!(job = %job.name, "job is paused; not polled");
        return Ok(());
    }
    telemetry::liveness::pass_started(&job.name);
    let result = run_job(rt, job, drain, report).await;
    telemetry::liveness::pass_ended(&job.name);
    if let Err(e) = result {
        tracing::error!(job = %job.name, error = %e.chain(), "job pass failed");
        report.job_errors.push((job.name.clone(), e.chain()));
    }
    Ok(())
}

/// Lists the job's folder, or each dated folder of a templated path. A
/// dated folder that does not exist (yet) lists as empty; every other
/// failure is an error.
async fn list_folders(
    src: &dyn Source,
    job: &Job,
    policy: RetryPolicy,
) -> Result<Vec<RemoteEntry>> {
    let folders = job.folders(chrono::Utc::now().date_naive());
    let mut all = Vec::new();
    for folder in &folders {
        match retry(policy, "list", || src.list(folder, job.recursive)).await {
            Ok(mut entries) => all.append(&mut entries),
            Err(e) if job.path_is_templated() && !src.exists(folder).await.unwrap_or(true) => {
                tracing::debug!(job = %job.name, folder = %folder, error = %e.chain(), "dated folder does not exist yet");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(all)
}

/// Whether a listed file is one of the job's: it matches `pattern`, no
/// `exclude`, and neither it nor a folder on its way is a dot-file.
fn matches(job: &Job, e: &RemoteEntry) -> bool {
    !e.relative.split('/').any(|part| part.starts_with('.'))
        && job.pattern.is_match(&e.relative)
        && !job.exclude.is_match(&e.relative)
}

async fn run_job(
    rt: &Runtime,
    job: &Arc<Job>,
    drain: Drain,
    report: &mut PassReport,
) -> Result<()> {
    let mut pending = rt
        .pending
        .lock()
        .await
        .remove(&job.name)
        .unwrap_or_default();
    let result = poll_job(rt, job, drain, &mut pending, report).await;
    if !pending.is_empty() {
        rt.pending.lock().await.insert(job.name.clone(), pending);
    }
    result
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
        .filter(|e| matches(job, e))
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
    let states = rt.warehouse.lookup_many(&versions).await?;
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
                rt.warehouse.record_skipped(&version, &reason).await?;
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

/// One pass over `job`: discover (list and filter), settle, claim (skip
/// what the ledger has), stream the large files, stage, batch and load
/// the rest, then report the backlog.
async fn poll_job(
    rt: &Runtime,
    job: &Arc<Job>,
    drain: Drain,
    pending: &mut Pending,
    report: &mut PassReport,
) -> Result<()> {
    let clock = Instant::now();
    let src = rt.source(&job.source).await?;
    let listing = discover(&*src, job).await?;
    let now = chrono::Utc::now().timestamp();
    let (ready, waiting) = {
        let mut all = rt.stability.lock().expect("stability lock");
        let stability = all.entry(job.name.clone()).or_default();
        stability.observe(&listing.candidates);
        source::settle::split(listing.candidates, &job.settle, now, stability)
    };
    let unsettled = report_waiting(job, &waiting, report);
    let (loaded_before, failed_before) = (report.loaded.len(), report.failed.len());
    let mut skipped = 0;
    let mut done = std::collections::HashSet::new();
    let todo = to_stage(rt, job, &*src, ready, pending, &mut skipped, &mut done).await?;
    report.skipped += skipped;

    // A file of more than one part loads alone, its COPY overlapping its
    // staging where the warehouse can.
    let (large, todo): (Vec<RemoteEntry>, Vec<RemoteEntry>) =
        todo.into_iter().partition(|e| stream::streams(rt, job, e));
    for entry in &large {
        stream::stream_file(rt, job, &src, entry, report)
            .instrument(file_span(job, entry))
            .await?;
    }
    stage_and_load(rt, job, &src, todo, drain, pending, report).await?;
    if !pending.is_empty() {
        tracing::debug!(job = %job.name, files = pending.len(), "staged files wait for their batch (batch.max_wait)");
    }
    let loaded_now: std::collections::HashSet<&str> = report.loaded[loaded_before..]
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    let oldest = listing
        .files
        .iter()
        .filter(|(p, _)| !done.contains(p) && !loaded_now.contains(p.as_str()))
        .map(|(_, mtime)| *mtime)
        .min();
    let age = oldest.map_or(0, |m| (now - m).max(0) as u64);
    telemetry::job_backlog(
        &job.name,
        listing.files.len(),
        unsettled,
        std::time::Duration::from_secs(age),
    );
    telemetry::pass_done(
        &job.name,
        listing.listed,
        report.loaded.len() - loaded_before,
        skipped,
        report.failed.len() - failed_before,
        clock.elapsed(),
    );
    Ok(())
}

/// What a job's listing holds for this pass.
struct Listing {
    /// Entries the source listed.
    listed: usize,
    /// The job's files and the marker files that gate them (settle needs
    /// to see both).
    candidates: Vec<RemoteEntry>,
    /// The job's files alone (path, mtime): the backlog gauges.
    files: Vec<(String, i64)>,
}

/// Lists the job's folders and keeps its files and their markers, each
/// entry classified once.
async fn discover(src: &dyn Source, job: &Job) -> Result<Listing> {
    let entries = list_folders(src, job, RetryPolicy::LIST).await?;
    let listed = entries.len();
    let is_marker = |e: &RemoteEntry| {
        job.settle
            .marker_suffix
            .as_ref()
            .is_some_and(|m| e.relative.ends_with(m.as_str()))
            || job
                .settle
                .folder_marker
                .as_ref()
                .is_some_and(|m| source::file_name(&e.path) == m)
    };
    let mut candidates = Vec::new();
    let mut files = Vec::new();
    for e in entries {
        if matches(job, &e) {
            files.push((e.path.clone(), e.mtime));
            candidates.push(e);
        } else if is_marker(&e) {
            candidates.push(e);
        }
    }
    Ok(Listing {
        listed,
        candidates,
        files,
    })
}

/// Reports the job's files that are not settled yet (not their markers);
/// returns how many there are.
fn report_waiting(
    job: &Job,
    waiting: &[(RemoteEntry, source::settle::NotReady)],
    report: &mut PassReport,
) -> usize {
    let mut unsettled = 0;
    for (e, why) in waiting {
        if matches(job, e) {
            unsettled += 1;
            telemetry::file_waiting(&job.name, &e.path, &format!("{why:?}"));
        }
    }
    report.waiting += unsettled;
    unsettled
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
                    if let Ok(file) = &r {
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
                Ok(file) => {
                    waiting.push(Staged { file, started });
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
                    batch::load(rt, job, &**src, files, report)
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

/// Reports a file that could not be staged; a permanent failure (bad data,
/// too many rejects) is recorded in the ledger.
async fn failed_to_stage(
    rt: &Runtime,
    job: &Job,
    entry: &RemoteEntry,
    f: FileFailure,
    report: &mut PassReport,
) -> Result<()> {
    let chain = f.error.chain();
    telemetry::file_failed(&job.name, &entry.path, &chain);
    if !f.error.is_transient() {
        let (sha256, rejected, errors) = match &f.stats {
            Some(s) => (Some(s.sha256.as_str()), s.rejected, s.errors.as_slice()),
            None => (None, 0, &[][..]),
        };
        let version = FileVersion {
            job: job.name.clone(),
            path: entry.path.clone(),
            size: entry.size,
            mtime: entry.mtime,
        };
        let recorded = record_failure(
            rt,
            &FailedFile {
                version: &version,
                sha256,
                rejected,
                reason: &chain,
                errors,
                rejects_key: f.rejects_key.as_deref(),
            },
        )
        .await;
        if recorded {
            quarantine(rt, job, &entry.path).await;
        }
    }
    report
        .failed
        .push((job.name.clone(), entry.path.clone(), chain));
    Ok(())
}

/// Records a file that failed for good; returns whether it was recorded
/// as failed (not when another replica loaded it meanwhile).
/// A failure to record never stops the job's other files: if the error
/// rows cannot be written, the file is recorded without them (its reason
/// says so); if even that fails, it is logged and the file is tried again
/// next pass.
pub(crate) async fn record_failure(rt: &Runtime, failed: &FailedFile<'_>) -> bool {
    let path = &failed.version.path;
    let first = match rt.warehouse.record_failed(failed).await {
        Ok(()) => return !loaded_meanwhile(rt, failed.version).await,
        Err(e) => e,
    };
    tracing::error!(job = %failed.version.job, path = %path, error = %first.chain(), "cannot record the failed file with its error rows; recording it without them");
    let reason = format!(
        "{} (its {} error rows could not be recorded: {})",
        failed.reason,
        failed.errors.len(),
        first.chain()
    );
    let bare = FailedFile {
        reason: &reason,
        errors: &[],
        ..*failed
    };
    match rt.warehouse.record_failed(&bare).await {
        Ok(()) => !loaded_meanwhile(rt, failed.version).await,
        Err(e) => {
            tracing::error!(job = %failed.version.job, path = %path, error = %e.chain(), "cannot record the failed file; it will be tried again next pass");
            false
        }
    }
}

/// Whether another replica loaded `version` while this one failed it (the
/// ledger then keeps it loaded and records no failure): its file must not
/// be moved by `on_failure`. A ledger that cannot be read counts as yes,
/// so the file stays where it is.
async fn loaded_meanwhile(rt: &Runtime, version: &FileVersion) -> bool {
    match rt
        .warehouse
        .lookup_many(std::slice::from_ref(version))
        .await
    {
        Ok(states) => {
            let loaded = matches!(states.first(), Some(Some(FileState::Loaded { .. })));
            if loaded {
                tracing::info!(job = %version.job, path = %version.path, "loaded meanwhile by another replica; its failure here is not recorded and the file is left alone");
            }
            loaded
        }
        Err(e) => {
            tracing::warn!(job = %version.job, path = %version.path, error = %e.chain(), "cannot read the ledger after recording a failure; the file is left where it is");
            true
        }
    }
}

/// Applies `on_failure` to a file recorded as failed for good: moves it
/// (and its marker) to the job's error folder, or keeps it. A failure
/// here is logged; the ledger keeps the version failed either way.
pub(crate) async fn quarantine(rt: &Runtime, job: &Job, path: &str) {
    if job.on_failure == Finalize::Keep {
        return;
    }
    let src = match rt.source(&job.source).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(job = %job.name, path, error = %e.chain(), "cannot move the failed file to on_failure.to");
            return;
        }
    };
    match src.finalize(path, &job.on_failure).await {
        Ok(to) => {
            tracing::info!(job = %job.name, path, moved_to = to.as_deref().unwrap_or(""), "failed file moved out of the drop folder (on_failure)");
            if let Some(suffix) = &job.settle.marker_suffix {
                let marker = format!("{path}{suffix}");
                if let Err(e) = src.finalize(&marker, &job.on_failure).await {
                    tracing::warn!(job = %job.name, path = %marker, error = %e.chain(), "cannot move the failed file's marker");
                }
            }
        }
        Err(e) => {
            tracing::warn!(job = %job.name, path, error = %e.chain(), "cannot move the failed file to on_failure.to; it stays, recorded as failed");
        }
    }
}

/// Applies the on-success action to a committed file (and its marker) and
/// records it. A failure here is logged, not fatal: the next pass sees the
/// version loaded but not finalized and tries again.
pub(crate) async fn finalize(rt: &Runtime, job: &Job, src: &dyn Source, v: &FileVersion) {
    if job.on_success == Finalize::Keep {
        return;
    }
    match src.finalize(&v.path, &job.on_success).await {
        Ok(final_path) => {
            if let Some(suffix) = &job.settle.marker_suffix {
                let marker = format!("{}{suffix}", v.path);
                if let Err(e) = src.finalize(&marker, &job.on_success).await {
                    tracing::warn!(job = %job.name, path = %marker, error = %e.chain(), "cannot finalize the marker file");
                }
            }
            if let Err(e) = rt.warehouse.mark_finalized(v, final_path.as_deref()).await {
                tracing::warn!(job = %job.name, path = %v.path, error = %e.chain(), "cannot record finalize; the next pass will see the file gone or moved");
            }
        }
        Err(e) => {
            tracing::warn!(job = %job.name, path = %v.path, error = %e.chain(), "cannot finalize the source file; will retry next pass");
        }
    }
}

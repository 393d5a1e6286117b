//! Work shared through SQS ([`crate::queue`]).
//!
//! With a work queue, a job's pass lists only on the replica that holds
//! the job's lease ([`crate::ledger::take_lease`], renewed every poll):
//! it settles files as always and sends each version the ledger does not
//! have (and that it has not sent within `resend_after`) to the queue
//! instead of staging it. Every replica receives ([`receive_work`]) up to
//! its free staging slots, holds what it received in its [`Claims`]
//! (a heartbeat keeps it hidden from the others), and works on it the way
//! a listing's files are worked on — the ledger asked first, batches per
//! job. After each round the claims of versions the ledger has as done
//! (loaded, failed for good, skipped) are deleted; the others are let go,
//! to come back after the job's poll interval, on any replica.
//!
//! A job with `events` reads its S3 event queue instead of listing
//! ([`events_pass`]); a reconciling listing every `reconcile_every` catches
//! what no event announced.

use super::*;
use crate::ledger::{FileVersion, LeaseTaken};
use crate::queue::claims::{Claimed, Claims};
use crate::queue::events::{self, Notice};
use crate::queue::{SQS_BATCH, Sqs, WorkItem};
use std::collections::HashSet;
use std::time::Duration;

/// A receive round's cap: a pass that keeps receiving lets the job's
/// loop come round (health, pause flag) at least this often.
const ROUNDS_PER_PASS: usize = 100;

/// This replica's part in shared work.
pub struct Shared {
    /// What this replica received and holds.
    pub(super) claims: Claims,
    /// The work queue: URL and whether it is FIFO.
    pub(super) work: Option<(Arc<str>, bool)>,
    /// This replica's name in the lease table.
    pub(super) replica: String,
    /// How long a lease lasts unrenewed.
    pub(super) lease_period: Duration,
    /// When a version sent and still not loaded is sent again.
    pub(super) resend_after: Duration,
    /// Versions this replica's listers sent, and when.
    pub(super) sent: std::sync::Mutex<HashMap<FileVersion, Instant>>,
    /// Per job with events: when its prefix was last listed.
    pub(super) reconciled: std::sync::Mutex<HashMap<String, Instant>>,
    /// Jobs whose lease this replica holds (given up when it stops).
    pub(super) leased: std::sync::Mutex<HashSet<String>>,
}

impl Shared {
    /// The shared part for `config`, if it uses SQS at all.
    pub(super) async fn start(config: &Config) -> Option<Shared> {
        let q = config.queue.as_ref()?;
        let sqs = Sqs::connect(&q.sqs, q.visibility_timeout, q.wait_time).await;
        Some(Shared {
            claims: Claims::new(sqs),
            work: q.work.as_ref().map(|w| (Arc::from(w.url.as_str()), w.fifo)),
            replica: q.replica_id.clone(),
            lease_period: q.lease_period,
            resend_after: q.resend_after,
            sent: Default::default(),
            reconciled: Default::default(),
            leased: Default::default(),
        })
    }
}

/// How a job's pass finds its files.
pub(super) enum Feed<'a> {
    /// Lists and loads everything itself (no work queue, no events).
    Listing,
    /// Lists (when it holds the lease) and sends to the work queue.
    Lister(&'a Shared),
    /// Reads S3 events; lists to reconcile when due.
    Events(&'a Shared, &'a crate::config::EventFeed),
}

/// The feed of `job` on `rt`.
pub(super) fn feed<'a>(rt: &'a Runtime, job: &'a Job) -> Feed<'a> {
    match (&rt.shared, &job.events) {
        (Some(s), Some(e)) => Feed::Events(s, e),
        (Some(s), None) if s.work.is_some() => Feed::Lister(s),
        _ => Feed::Listing,
    }
}

/// The listing part of a pass with a work queue: lists (if this replica
/// holds the job's lease), settles, asks the ledger, and sends each
/// version it does not have to the queue.
pub(super) async fn list_and_send(
    rt: &Runtime,
    shared: &Shared,
    job: &Arc<Job>,
    report: &mut PassReport,
) -> Result<()> {
    let Some((url, fifo)) = &shared.work else {
        return Ok(());
    };
    let taken = crate::ledger::take_lease(
        &*rt.warehouse,
        &job.name,
        &shared.replica,
        shared.lease_period,
    )
    .await?;
    let holds = taken.held();
    {
        let mut leased = shared.leased.lock().expect("leases lock");
        if holds && leased.insert(job.name.clone()) {
            tracing::info!(job = %job.name, replica = %shared.replica, took_over = taken == LeaseTaken::Expired, "this replica lists the job now (it holds the job's lease)");
        } else if !holds && leased.remove(&job.name) {
            tracing::warn!(job = %job.name, replica = %shared.replica, "lost the job's lease; another replica lists it now");
        }
    }
    if !holds {
        tracing::debug!(job = %job.name, "another replica holds the job's lease and lists it");
        return Ok(());
    }
    // The lease is renewed while the listing works, so a long one (a
    // large folder, a slow queue) never lets it lapse; losing it stops
    // the listing.
    let keep = async {
        loop {
            tokio::time::sleep(shared.lease_period / 3).await;
            match crate::ledger::take_lease(
                &*rt.warehouse,
                &job.name,
                &shared.replica,
                shared.lease_period,
            )
            .await
            {
                Ok(t) if t.held() => {}
                Ok(_) => return "another replica took the lease".to_string(),
                Err(e) => {
                    tracing::warn!(job = %job.name, error = %e.chain(), "cannot renew the job's lease; trying again")
                }
            }
        }
    };
    tokio::select! {
        r = list_and_send_held(rt, shared, url, *fifo, job, taken, report) => r,
        why = keep => {
            shared.leased.lock().expect("leases lock").remove(&job.name);
            tracing::warn!(job = %job.name, why, "stopped listing mid-pass: the lease is lost");
            Ok(())
        }
    }
}

/// The listing once the lease is held.
async fn list_and_send_held(
    rt: &Runtime,
    shared: &Shared,
    url: &str,
    fifo: bool,
    job: &Arc<Job>,
    taken: LeaseTaken,
    report: &mut PassReport,
) -> Result<()> {
    let clock = Instant::now();
    let (src, listing, now, ready, unsettled) = list_settled(rt, job, report).await?;
    let mut skipped = 0;
    let mut done = HashSet::new();
    let mut none_waiting = Pending::default();
    let todo = to_stage(
        rt,
        job,
        &*src,
        ready,
        &mut none_waiting,
        &mut skipped,
        &mut done,
    )
    .await?;
    report.skipped += skipped;
    if taken == LeaseTaken::Expired {
        // What the last lister sent is likely still on the queue or in
        // flight: sent again only if it is still not loaded a visibility
        // timeout and a lease period from now.
        presume_sent(shared, job, &todo);
    }
    let sent = send_new(shared, url, fifo, job, &todo).await?;
    let oldest = listing
        .files
        .iter()
        .filter(|(p, _)| !done.contains(p))
        .map(|(_, mtime)| *mtime)
        .min();
    // What this lister sent waits on other replicas too: its oldest
    // version is the job's lag.
    let lag = todo.iter().map(|e| e.mtime).min();
    let age = |m: Option<i64>| Duration::from_secs(m.map_or(0, |m| (now - m).max(0) as u64));
    telemetry::job_backlog(
        &job.name,
        listing.files.len(),
        unsettled,
        age(oldest),
        age(lag),
    );
    tracing::info!(job = %job.name, listed = listing.listed, to_load = todo.len(), sent, took_ms = clock.elapsed().as_millis() as u64, "listed and sent new versions to the work queue");
    Ok(())
}

/// Counts `todo` as sent by an earlier lister: each is sent again only if
/// it is still to load after a visibility timeout and a lease period.
fn presume_sent(shared: &Shared, job: &Job, todo: &[RemoteEntry]) {
    let grace = shared.claims.sqs().visibility + shared.lease_period;
    let back = shared.resend_after.saturating_sub(grace);
    let when = Instant::now()
        .checked_sub(back)
        .unwrap_or_else(Instant::now);
    let mut sent = shared.sent.lock().expect("sent lock");
    for e in todo {
        sent.entry(file::version_of(job, e)).or_insert(when);
    }
    tracing::info!(job = %job.name, files = todo.len(), grace_s = grace.as_secs(), "took the lease over from a lister that stopped renewing it; what it sent is given time to load before it is sent again");
}

/// Sends the versions of `todo` not sent within `resend_after`; returns
/// how many it sent. Forgets sent versions that are no longer to load.
async fn send_new(
    shared: &Shared,
    url: &str,
    fifo: bool,
    job: &Job,
    todo: &[RemoteEntry],
) -> Result<usize> {
    let at = chrono::Utc::now().timestamp_millis();
    let listed: Vec<FileVersion> = todo.iter().map(|e| file::version_of(job, e)).collect();
    let (versions, messages): (Vec<FileVersion>, Vec<(String, String)>) = {
        let mut sent = shared.sent.lock().expect("sent lock");
        let wanted: HashSet<&FileVersion> = listed.iter().collect();
        sent.retain(|v, _| v.job != job.name || wanted.contains(v));
        todo.iter()
            .zip(&listed)
            .filter(|(_, v)| {
                sent.get(*v)
                    .is_none_or(|t| t.elapsed() >= shared.resend_after)
            })
            .map(|(e, v)| {
                let message = (WorkItem::new(&job.name, e).body(), dedup_id(v, at));
                (v.clone(), message)
            })
            .unzip()
    };
    shared.claims.sqs().send(url, fifo, &messages).await?;
    let now = Instant::now();
    let mut sent = shared.sent.lock().expect("sent lock");
    for v in versions {
        sent.insert(v, now);
    }
    Ok(messages.len())
}

/// A FIFO deduplication id for `v` sent by the listing of `at` (Unix
/// milliseconds): job, version id and that time, at most 128 characters
/// (SQS's limit). A send the SDK retries carries the same id, so SQS keeps
/// one message; a later send of the version (after `ferry retry` or
/// `reset` forgot it, or after `resend_after`) is a new message, never
/// dropped by SQS's five-minute deduplication window. (A dead lister's
/// sends are covered by [`presume_sent`].)
fn dedup_id(v: &FileVersion, at: i64) -> String {
    let mut id: String = v
        .job
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect();
    id.push('-');
    id.push_str(&v.short_id());
    id.push_str(&format!("-{at}"));
    id
}

/// One round of receiving from the work queue: up to the free staging
/// slots, each version held and worked on per job (batches as always),
/// then settled; returns how many messages came and what was done.
pub async fn receive_work(rt: &Runtime, drain: Drain) -> Result<(usize, PassReport)> {
    let mut report = PassReport::default();
    let Some(shared) = &rt.shared else {
        return Ok((0, report));
    };
    let Some((url, _)) = &shared.work else {
        return Ok((0, report));
    };
    let free = rt.staging_slots.available_permits().clamp(1, SQS_BATCH);
    let got = shared.claims.sqs().receive(url, free).await?;
    let received = got.len();
    let mut by_job: Vec<(Arc<Job>, Vec<RemoteEntry>)> = Vec::new();
    for m in got {
        let Some(item) = WorkItem::parse(&m.body) else {
            tracing::error!(queue = %url, body = %crate::ledger::fit(&m.body, 200), "a message on the work queue that is not ferry's; deleted (only ferry's listers may send to the work queue)");
            shared.claims.discard(url, &m.receipt).await;
            continue;
        };
        let Some(job) = rt.config.jobs.iter().find(|j| j.name == item.job) else {
            tracing::warn!(job = %item.job, path = %item.path, "a version of a job this replica does not have; left for a replica that has it");
            continue;
        };
        match shared.claims.claim(item.version(), url, &m.id, &m.receipt) {
            Claimed::New => {}
            Claimed::Again => {
                tracing::debug!(job = %job.name, path = %item.path, "a message this replica holds came back before its heartbeat; its new receipt is kept");
                continue;
            }
            Claimed::Duplicate => {
                tracing::debug!(job = %job.name, path = %item.path, "a second message for a version this replica holds; deleted");
                shared.claims.discard(url, &m.receipt).await;
                continue;
            }
        }
        match by_job.iter_mut().find(|(j, _)| j.name == job.name) {
            Some((_, entries)) => entries.push(item.entry()),
            None => by_job.push((job.clone(), vec![item.entry()])),
        }
    }
    // Jobs whose staged files wait for their batch load when it is due.
    for job in &rt.config.jobs {
        if !by_job.iter().any(|(j, _)| j.name == job.name) && rt.has_pending(&job.name).await {
            by_job.push((job.clone(), Vec::new()));
        }
    }
    for (job, entries) in by_job {
        let paused = !job.enabled || !crate::ledger::job_enabled(&*rt.warehouse, &job.name).await?;
        if paused {
            let held = shared.claims.of_job(&job.name);
            tracing::info!(job = %job.name, files = held.len(), "the job is paused; its versions go back to the queue");
            shared
                .claims
                .settle(&[], &held, shared.claims.sqs().visibility)
                .await;
            continue;
        }
        let span = tracing::info_span!("received", job = %job.name, files = entries.len());
        let worked = work_on_received(rt, &job, entries, drain, &mut report)
            .instrument(span)
            .await;
        settle_claims(rt, shared, &job).await;
        if let Err(e) = worked {
            tracing::error!(job = %job.name, error = %e.chain(), "received files failed; they go back to the queue");
            report.job_errors.push((job.name.clone(), e.chain()));
        }
    }
    Ok((received, report))
}

/// Works on received `entries` of `job` with the job's waiting batch.
async fn work_on_received(
    rt: &Runtime,
    job: &Arc<Job>,
    entries: Vec<RemoteEntry>,
    drain: Drain,
    report: &mut PassReport,
) -> Result<()> {
    let (lock, mut pending) = rt.take_pending(&job.name).await;
    let result = async {
        let src = rt.source(&job.source).await?;
        Box::pin(work_on(rt, job, &src, entries, drain, &mut pending, report)).await
    }
    .await;
    rt.put_pending(&job.name, pending, lock).await;
    result.map(|_| ())
}

/// Lets go of `job`'s claims that wait in no batch: deleted where the
/// ledger has the version done, released (visible again after the job's
/// poll interval) where it does not. A ledger that cannot be read
/// releases them all.
async fn settle_claims(rt: &Runtime, shared: &Shared, job: &Job) {
    let held: Vec<FileVersion> = {
        let pending = rt.pending.lock().await;
        let waiting = pending.get(&job.name);
        shared
            .claims
            .of_job(&job.name)
            .into_iter()
            .filter(|v| !waiting.is_some_and(|p| p.holds(v)))
            .collect()
    };
    if held.is_empty() {
        return;
    }
    let states = match crate::ledger::lookup_many(&*rt.warehouse, &held).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(job = %job.name, error = %e.chain(), "cannot read the ledger to settle received files; they go back to the queue");
            shared.claims.settle(&[], &held, job.poll_interval).await;
            return;
        }
    };
    let (mut done, mut again) = (Vec::new(), Vec::new());
    for (v, state) in held.into_iter().zip(states) {
        match state {
            Some(
                FileState::Loaded { .. } | FileState::Failed { .. } | FileState::Skipped { .. },
            ) => done.push(v),
            None | Some(FileState::ChangedAfterLoad { .. }) => again.push(v),
        }
    }
    if !again.is_empty() {
        tracing::info!(job = %job.name, files = again.len(), retry_in_s = job.poll_interval.as_secs(), "received files not loaded this round go back to the queue");
    }
    shared.claims.settle(&done, &again, job.poll_interval).await;
}

/// A pass of a job fed by S3 events: receives its event queue until it
/// is empty (or [`ROUNDS_PER_PASS`]), works on the objects they name, and
/// lists the prefix when `reconcile_every` has passed (to the work queue
/// when there is one).
pub(super) async fn events_pass(
    rt: &Runtime,
    shared: &Shared,
    feed: &crate::config::EventFeed,
    job: &Arc<Job>,
    drain: Drain,
    report: &mut PassReport,
) -> Result<()> {
    let url: Arc<str> = Arc::from(feed.queue_url.as_str());
    let src = rt.source(&job.source).await?;
    for _ in 0..ROUNDS_PER_PASS {
        let free = rt.staging_slots.available_permits().clamp(1, SQS_BATCH);
        let got = shared.claims.sqs().receive(&url, free).await?;
        if got.is_empty() {
            break;
        }
        let mut entries = Vec::new();
        for m in got {
            let mut claimed = false;
            match events::parse(&m.body) {
                Notice::Created(keys) => {
                    for key in keys {
                        let Some(entry) = object_of(job, &*src, &key).await? else {
                            continue;
                        };
                        let version = file::version_of(job, &entry);
                        match shared.claims.claim(version, &url, &m.id, &m.receipt) {
                            Claimed::New => {
                                entries.push(entry);
                                claimed = true;
                            }
                            // Its receipt is held: the message stays.
                            Claimed::Again => claimed = true,
                            Claimed::Duplicate => {}
                        }
                    }
                }
                Notice::Test => {
                    tracing::info!(job = %job.name, queue = %url, "S3's test event: the notification is set up")
                }
                Notice::Other(kind) => {
                    tracing::debug!(job = %job.name, kind, "an S3 event that is not an object creation; deleted")
                }
                Notice::Unknown => {
                    tracing::warn!(job = %job.name, queue = %url, body = %crate::ledger::fit(&m.body, 200), "a message that is not an S3 event notification; deleted")
                }
            }
            if !claimed {
                shared.claims.discard(&url, &m.receipt).await;
            }
        }
        let worked = work_on_received(rt, job, entries, drain, report).await;
        settle_claims(rt, shared, job).await;
        worked?;
    }
    let due = {
        let reconciled = shared.reconciled.lock().expect("reconcile lock");
        feed.reconcile_every.is_some_and(|every| {
            reconciled
                .get(&job.name)
                .is_none_or(|t| t.elapsed() >= every)
        })
    };
    if due {
        tracing::info!(job = %job.name, "listing the prefix to find objects whose event was lost (reconcile_every)");
        match &shared.work {
            Some(_) => list_and_send(rt, shared, job, report).await?,
            None => {
                let (lock, mut pending) = rt.take_pending(&job.name).await;
                let r = poll_job(rt, job, drain, &mut pending, report).await;
                rt.put_pending(&job.name, pending, lock).await;
                r?;
            }
        }
        shared
            .reconciled
            .lock()
            .expect("reconcile lock")
            .insert(job.name.clone(), Instant::now());
    }
    Ok(())
}

/// The object an event names, as a listing would list it (its size and
/// time asked of S3: events come late, twice and out of order), if it is
/// one of the job's and still there.
async fn object_of(
    job: &Job,
    src: &dyn Source,
    key: &events::CreatedKey,
) -> Result<Option<RemoteEntry>> {
    let prefix = crate::source::s3::prefix(&job.path);
    for k in [&key.key, &key.raw] {
        let Some(relative) = k.strip_prefix(prefix.as_str()) else {
            continue;
        };
        if relative.is_empty() || (!job.recursive && relative.contains('/')) {
            continue;
        }
        let Some((size, mtime)) = src.stat(k).await? else {
            continue;
        };
        let entry = RemoteEntry {
            path: k.clone(),
            relative: relative.to_string(),
            size,
            mtime: mtime.unwrap_or(0),
            etag: None,
        };
        if matches(job, &entry) {
            return Ok(Some(entry));
        }
        tracing::debug!(job = %job.name, key = %k, "an event for a key the job's pattern does not take; deleted");
        return Ok(None);
    }
    tracing::debug!(job = %job.name, key = %key.key, "an event for a key outside the job's folder, or an object gone since; deleted");
    Ok(None)
}

/// Gives up the leases and the messages this replica holds (it stops):
/// another replica lists those jobs and receives those files at once,
/// instead of after the lease period and the visibility timeout.
pub async fn stop_sharing(rt: &Runtime) {
    let Some(shared) = &rt.shared else { return };
    shared.claims.release_all().await;
    let jobs: Vec<String> = shared.leased.lock().expect("leases lock").drain().collect();
    for job in jobs {
        if let Err(e) = crate::ledger::release_lease(&*rt.warehouse, &job, &shared.replica).await {
            tracing::warn!(job, error = %e.chain(), "cannot give up the job's lease; it expires by itself");
        }
    }
}

//! Archives in a pass: open the archives the ledger has not seen (fetch,
//! extract: [`crate::source::archive`]), hand their members on as files of
//! their own, and once every member of an archive has loaded, record the
//! archive itself as loaded and finalize it on the source.
//!
//! The archive's own ledger row is what says "done": until it is written,
//! every pass opens the archive again (from the spool while this process
//! keeps it), and the ledger skips the members already loaded, so a crash
//! between members loses nothing and loads nothing twice. A member that
//! fails for good fails the archive (its row names the members and how to
//! try again); `ferry retry --path archive` resets the archive and its
//! failed members together.

use super::*;
use crate::source::archive::{self, ArchiveSource, Expanded};

/// The archives one job has open: kept across passes while members wait
/// for their batch or for another try.
#[derive(Default)]
pub struct OpenArchives {
    by_path: std::sync::Mutex<HashMap<(String, String), Arc<Expanded>>>,
}

impl OpenArchives {
    fn get(&self, job: &str, entry: &RemoteEntry) -> Option<Arc<Expanded>> {
        let all = self.by_path.lock().expect("archives lock");
        all.get(&(job.to_string(), entry.path.clone()))
            .filter(|x| x.is_version(entry))
            .cloned()
    }

    fn keep(&self, job: &str, x: Arc<Expanded>) {
        let mut all = self.by_path.lock().expect("archives lock");
        all.insert((job.to_string(), x.archive.path.clone()), x);
    }

    fn forget(&self, job: &str, path: &str) {
        let mut all = self.by_path.lock().expect("archives lock");
        all.remove(&(job.to_string(), path.to_string()));
    }
}

/// Splits the archives off `todo`, opens each (a failure is reported, and
/// recorded when it is for good), and returns the members to look up in
/// the ledger, the source that serves them, and the archives opened.
pub(super) async fn open(
    rt: &Runtime,
    job: &Arc<Job>,
    src: &Arc<dyn Source>,
    todo: Vec<RemoteEntry>,
    report: &mut PassReport,
) -> Result<(Vec<RemoteEntry>, Vec<RemoteEntry>, Vec<Arc<Expanded>>)> {
    let (archives, files): (Vec<RemoteEntry>, Vec<RemoteEntry>) = todo
        .into_iter()
        .partition(|e| archive::kind_of(&e.path).is_some());
    let mut opened = Vec::with_capacity(archives.len());
    let mut members = Vec::new();
    for entry in archives {
        let span = file_span(job, &entry);
        match open_one(rt, job, src, &entry)
            .instrument(span.clone())
            .await
        {
            Ok(x) => {
                members.extend(x.entries());
                opened.push(x);
            }
            Err(e) => {
                failed_to_stage(rt, job, &entry, e.into(), report)
                    .instrument(span)
                    .await?
            }
        }
    }
    Ok((files, members, opened))
}

/// The archive `entry`, from this process's spool or fetched and
/// extracted now.
async fn open_one(
    rt: &Runtime,
    job: &Arc<Job>,
    src: &Arc<dyn Source>,
    entry: &RemoteEntry,
) -> Result<Arc<Expanded>> {
    if let Some(x) = rt.archives.get(&job.name, entry) {
        return Ok(x);
    }
    let kind = archive::kind_of(&entry.path).expect("only archives are opened");
    let started = Instant::now();
    let transfer = rt.transfer_slot(&job.source.name).await;
    let x = retry(RetryPolicy::FETCH, "fetch and extract archive", || {
        archive::expand(src, entry, kind, &job.archive, &job.limits)
    })
    .await?;
    drop(transfer);
    let bytes: u64 = x.members.iter().map(|m| m.size).sum();
    tracing::info!(
        job = %job.name,
        path = %entry.path,
        members = x.members.len(),
        left_out = x.left_out,
        bytes,
        ms = started.elapsed().as_millis() as u64,
        "archive opened; each member loads as a file of its own"
    );
    let x = Arc::new(x);
    rt.archives.keep(&job.name, x.clone());
    Ok(x)
}

/// The source a pass with open archives reads through.
pub(super) fn source_with(src: &Arc<dyn Source>, opened: &[Arc<Expanded>]) -> Arc<dyn Source> {
    if opened.is_empty() {
        src.clone()
    } else {
        Arc::new(ArchiveSource::new(src.clone(), opened))
    }
}

/// After the pass's loads: each archive whose members are all settled in
/// the ledger is recorded (loaded, or failed naming its failed members)
/// and finalized or quarantined; one with members still waiting (in a
/// batch, or for another try after a transient failure) stays open.
/// Returns the paths of the archives recorded loaded.
pub(super) async fn complete(
    rt: &Runtime,
    job: &Job,
    src: &dyn Source,
    opened: &[Arc<Expanded>],
    pending: &Pending,
    report: &mut PassReport,
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for x in opened {
        let versions: Vec<FileVersion> = x
            .entries()
            .iter()
            .map(|e| file::version_of(job, e))
            .collect();
        if versions.iter().any(|v| pending.holds(v)) {
            continue;
        }
        let states = crate::ledger::lookup_many(&*rt.warehouse, &versions).await?;
        let mut failed = Vec::new();
        let mut unsettled = 0;
        for (v, s) in versions.iter().zip(&states) {
            match s {
                Some(FileState::Loaded { .. }) | Some(FileState::Skipped { .. }) => {}
                Some(FileState::Failed { error }) => failed.push((v, error.clone())),
                Some(FileState::ChangedAfterLoad { .. }) | None => unsettled += 1,
            }
        }
        if unsettled > 0 {
            tracing::info!(job = %job.name, path = %x.archive.path, members = unsettled, "archive stays open: members still to load");
            continue;
        }
        let version = file::version_of(job, &x.archive);
        if failed.is_empty() {
            crate::ledger::record_archive(&*rt.warehouse, &version, &x.sha256).await?;
            tracing::info!(job = %job.name, path = %x.archive.path, members = versions.len(), "archive loaded: every member is in the ledger");
            if x.members.is_empty() {
                tracing::warn!(job = %job.name, path = %x.archive.path, left_out = x.left_out, "the archive holds no member to load (see archive.members)");
            }
            finalize(rt, job, src, &version).await;
            done.push(x.archive.path.clone());
        } else {
            let reason = failed_reason(job, &x.archive.path, versions.len(), &failed);
            telemetry::file_failed(&job.name, &x.archive.path, &reason);
            let recorded = record_failure(
                rt,
                &FailedFile {
                    version: &version,
                    sha256: Some(&x.sha256),
                    rejected: 0,
                    reason: &reason,
                    errors: &[],
                    rejects_key: None,
                },
            )
            .await;
            if recorded {
                quarantine(rt, job, &x.archive.path).await;
            }
            report
                .failed
                .push((job.name.clone(), x.archive.path.clone(), reason));
        }
        rt.archives.forget(&job.name, &x.archive.path);
    }
    Ok(done)
}

/// Why an archive failed: which of its members, and how to try again.
fn failed_reason(
    job: &Job,
    archive: &str,
    members: usize,
    failed: &[(&FileVersion, String)],
) -> String {
    let first = &failed[0];
    let name = archive::split(&first.0.path).map_or(first.0.path.as_str(), |(_, m)| m);
    format!(
        "{} of its {members} members failed (first: {name}: {}); the others loaded. Fix the data, then `ferry retry --job {} --path {archive}` tries the failed members again",
        failed.len(),
        first.1,
        job.name
    )
}

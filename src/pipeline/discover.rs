//! Discover: list a job's folders (every listing retried, never taken as
//! empty on an error), keep its files and their markers, report what has
//! not settled.

use super::*;

/// Lists the job's folder, or each dated folder of a templated path. A
/// dated folder that does not exist (yet) lists as empty; every other
/// failure is an error.
pub(super) async fn list_folders(
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
pub(super) fn matches(job: &Job, e: &RemoteEntry) -> bool {
    taken(job, e) && !job.exclude.is_match(&e.relative)
}

/// Whether `pattern` takes a listed file (before `exclude`): it matches,
/// and neither it nor a folder on its way is a dot-file.
fn taken(job: &Job, e: &RemoteEntry) -> bool {
    !e.relative.split('/').any(|part| part.starts_with('.')) && job.pattern.is_match(&e.relative)
}

/// `candidates` settled or not, with (and into) the job's memory of
/// earlier polls.
pub(super) fn settle_split(
    rt: &Runtime,
    job: &Job,
    candidates: Vec<RemoteEntry>,
    now: i64,
) -> (
    Vec<RemoteEntry>,
    Vec<(RemoteEntry, source::settle::NotReady)>,
) {
    let mut all = rt.stability.lock().expect("stability lock");
    let stability = all.entry(job.name.clone()).or_default();
    stability.observe(&candidates);
    source::settle::split(candidates, &job.settle, now, stability)
}

/// What a job's listing holds for this pass.
pub(super) struct Listing {
    /// Entries the source listed.
    pub(super) listed: usize,
    /// The job's files and the marker files that gate them (settle needs
    /// to see both).
    pub(super) candidates: Vec<RemoteEntry>,
    /// The job's files alone (path, mtime): the backlog gauges.
    pub(super) files: Vec<(String, i64)>,
}

/// Lists the job's folders and keeps its files and their markers, each
/// entry classified once.
pub(super) async fn discover(src: &dyn Source, job: &Job) -> Result<Listing> {
    let entries = list_folders(src, job, RetryPolicy::LIST).await?;
    Ok(classify(job, entries))
}

/// The job's files and their markers among `entries`.
fn classify(job: &Job, entries: Vec<RemoteEntry>) -> Listing {
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
    Listing {
        listed,
        candidates,
        files,
    }
}

/// Reports the job's files that are not settled yet (not their markers);
/// returns how many there are.
pub(super) fn report_waiting(
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

/// What `ferry audit` sees of a job's source, listed as a pass would.
#[derive(Debug, Default)]
pub struct Survey {
    /// The job's files that have settled.
    pub ready: Vec<RemoteEntry>,
    /// The job's files that have not, and why.
    pub waiting: Vec<(RemoteEntry, source::settle::NotReady)>,
    /// Files the pattern takes that `exclude` leaves out.
    pub excluded: Vec<RemoteEntry>,
}

/// Lists and settles `job`'s folders as a pass would (with the settle
/// memory this process has), touching nothing.
pub async fn survey(rt: &Runtime, job: &Job) -> Result<Survey> {
    let src = rt.source(&job.source).await?;
    let entries = list_folders(&*src, job, RetryPolicy::LIST).await?;
    let excluded = entries
        .iter()
        .filter(|e| taken(job, e) && job.exclude.is_match(&e.relative))
        .cloned()
        .collect();
    let listing = classify(job, entries);
    let now = chrono::Utc::now().timestamp();
    let (ready, waiting) = settle_split(rt, job, listing.candidates, now);
    Ok(Survey {
        ready: ready.into_iter().filter(|e| matches(job, e)).collect(),
        waiting: waiting
            .into_iter()
            .filter(|(e, _)| matches(job, e))
            .collect(),
        excluded,
    })
}

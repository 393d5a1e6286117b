//! What each job is doing now and did in its last pass, kept in the
//! process for the status page and the alerts (the ledger knows what was
//! loaded; only the daemon knows that a pass is under way, how far behind
//! a job's folder is, or that its source stopped answering).
//!
//! One global table, like the metrics, filled by the named events in
//! [`telemetry`](super) and the pass hooks below; [`snapshot`] copies it.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// One job's live state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobNow {
    /// A pass under way since then.
    pub running_since: Option<DateTime<Utc>>,
    /// The last pass that ended.
    pub last_pass: Option<LastPass>,
    /// Files of the job in its last listing, and how many had not settled.
    pub listed: usize,
    /// Of those, not settled yet.
    pub unsettled: usize,
    /// Age of the oldest settled file not loaded, when last measured, and
    /// when that was.
    pub backlog: Option<(Duration, DateTime<Utc>)>,
    /// The source has not answered since then, with its last error.
    pub source_down: Option<(DateTime<Utc>, String)>,
    /// Passes in a row that failed (the job could not run, or a file
    /// failed for good).
    pub failed_passes: u32,
}

/// How a job's last pass went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastPass {
    /// When it ended.
    pub ended_at: DateTime<Utc>,
    /// How long it took.
    pub took: Duration,
    /// Files it loaded.
    pub loaded: usize,
    /// Files that failed in it.
    pub failed: usize,
    /// Why the job could not run, if it could not.
    pub error: Option<String>,
}

impl JobNow {
    /// The job's lag at `now`: the age of the oldest settled file it has
    /// not loaded (zero when it is caught up), grown by the time since it
    /// was measured.
    pub fn lag(&self, now: DateTime<Utc>) -> Duration {
        match self.backlog {
            Some((age, _)) if age.is_zero() => Duration::ZERO,
            Some((age, at)) => age + (now - at).to_std().unwrap_or_default(),
            None => Duration::ZERO,
        }
    }
}

fn table() -> &'static Mutex<BTreeMap<String, JobNow>> {
    static JOBS: OnceLock<Mutex<BTreeMap<String, JobNow>>> = OnceLock::new();
    JOBS.get_or_init(Default::default)
}

fn with<T>(job: &str, f: impl FnOnce(&mut JobNow) -> T) -> T {
    // A poisoned lock only means a panic elsewhere; the table stays usable.
    let mut all = table().lock().unwrap_or_else(|p| p.into_inner());
    f(all.entry(job.to_string()).or_default())
}

/// Every job seen so far, by name.
pub fn snapshot() -> BTreeMap<String, JobNow> {
    table().lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// One job, if it has run in this process.
pub fn of(job: &str) -> Option<JobNow> {
    table()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(job)
        .cloned()
}

/// A pass of `job` started.
pub fn pass_started(job: &str) {
    with(job, |j| j.running_since = Some(Utc::now()));
}

/// A pass of `job` ended: files loaded and failed in it, and why the job
/// could not run, if so.
pub fn pass_ended(job: &str, loaded: usize, failed: usize, error: Option<&str>) {
    with(job, |j| {
        let now = Utc::now();
        let took = j
            .running_since
            .take()
            .and_then(|s| (now - s).to_std().ok())
            .unwrap_or_default();
        if error.is_some() || failed > 0 {
            j.failed_passes += 1;
        } else {
            j.failed_passes = 0;
        }
        j.last_pass = Some(LastPass {
            ended_at: now,
            took,
            loaded,
            failed,
            error: error.map(str::to_string),
        });
    });
}

/// The daemon paused `job` for its failed passes: counting starts again.
pub fn reset_failures(job: &str) {
    with(job, |j| j.failed_passes = 0);
}

/// `job` is paused: it is not polled, so what its last polls saw (lag, a
/// source down) no longer holds.
pub fn paused(job: &str) {
    with(job, |j| {
        j.backlog = None;
        j.source_down = None;
    });
}

/// What a poll saw of the job's folder.
pub(super) fn backlog(job: &str, listed: usize, unsettled: usize, oldest: Duration) {
    with(job, |j| {
        j.listed = listed;
        j.unsettled = unsettled;
        j.backlog = Some((oldest, Utc::now()));
    });
}

/// The job's source answered its listing (`Ok`) or did not (the error).
pub fn source_answered(job: &str, answer: Result<(), &str>) {
    with(job, |j| match answer {
        Ok(()) => j.source_down = None,
        Err(e) => match &mut j.source_down {
            Some((_, last)) => *last = e.to_string(),
            None => j.source_down = Some((Utc::now(), e.to_string())),
        },
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_passes_count_in_a_row_and_reset_on_a_clean_pass() {
        let job = "jobs-test-a";
        pass_started(job);
        pass_ended(job, 0, 1, None);
        pass_ended(job, 0, 0, Some("listing failed"));
        assert_eq!(of(job).unwrap().failed_passes, 2);
        assert_eq!(
            of(job).unwrap().last_pass.unwrap().error.as_deref(),
            Some("listing failed")
        );
        pass_ended(job, 3, 0, None);
        assert_eq!(of(job).unwrap().failed_passes, 0);
        assert!(of(job).unwrap().running_since.is_none());
    }

    #[test]
    fn a_source_is_down_from_its_first_failure_until_it_answers() {
        let job = "jobs-test-b";
        source_answered(job, Err("refused"));
        let since = of(job).unwrap().source_down.unwrap().0;
        source_answered(job, Err("timed out"));
        let (again, last) = of(job).unwrap().source_down.unwrap();
        assert_eq!((again, last.as_str()), (since, "timed out"));
        source_answered(job, Ok(()));
        assert!(of(job).unwrap().source_down.is_none());
    }

    #[test]
    fn lag_grows_from_its_measure_and_is_zero_when_caught_up() {
        let at = Utc::now();
        let j = JobNow {
            backlog: Some((Duration::from_secs(60), at)),
            ..JobNow::default()
        };
        assert_eq!(
            j.lag(at + chrono::Duration::seconds(30)),
            Duration::from_secs(90)
        );
        let caught_up = JobNow {
            backlog: Some((Duration::ZERO, at)),
            ..JobNow::default()
        };
        assert_eq!(
            caught_up.lag(at + chrono::Duration::seconds(30)),
            Duration::ZERO
        );
    }
}

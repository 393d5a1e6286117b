//! Per-job liveness: whether each job's pass under way still makes
//! progress. A pass starts, reports each file it finishes, and ends; a
//! pass that has run for `daemon.stuck_after` without finishing a file is
//! stuck, and `/healthz` and the systemd watchdog say so, naming the job.
//! One global table, like the metrics (one daemon per process).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

fn passes() -> &'static Mutex<HashMap<String, Instant>> {
    static PASSES: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    PASSES.get_or_init(Default::default)
}

fn with<T>(f: impl FnOnce(&mut HashMap<String, Instant>) -> T) -> T {
    // A poisoned lock only means a panic elsewhere; the table stays usable.
    let mut guard = passes().lock().unwrap_or_else(|p| p.into_inner());
    f(&mut guard)
}

/// A pass of `job` started.
pub fn pass_started(job: &str) {
    with(|p| p.insert(job.to_string(), Instant::now()));
}

/// The pass of `job` finished a file (staged, loaded or failed it).
pub fn progressed(job: &str) {
    with(|p| {
        if let Some(at) = p.get_mut(job) {
            *at = Instant::now();
        }
    });
}

/// The pass of `job` ended.
pub fn pass_ended(job: &str) {
    with(|p| p.remove(job));
}

/// Jobs whose pass under way has made no progress for longer than
/// `limit`, with how long, longest first.
pub fn stalled(limit: Duration) -> Vec<(String, Duration)> {
    let mut out: Vec<(String, Duration)> = with(|p| {
        p.iter()
            .map(|(job, at)| (job.clone(), at.elapsed()))
            .filter(|(_, quiet)| *quiet > limit)
            .collect()
    });
    out.sort_by_key(|(_, quiet)| std::cmp::Reverse(*quiet));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_without_progress_is_stalled_until_it_progresses_or_ends() {
        pass_started("liveness-a");
        pass_started("liveness-b");
        std::thread::sleep(Duration::from_millis(30));
        progressed("liveness-b");
        let stuck: Vec<String> = stalled(Duration::from_millis(20))
            .into_iter()
            .map(|(j, _)| j)
            .filter(|j| j.starts_with("liveness-"))
            .collect();
        assert_eq!(stuck, ["liveness-a"]);
        pass_ended("liveness-a");
        assert!(
            stalled(Duration::from_millis(20))
                .iter()
                .all(|(j, _)| j != "liveness-a")
        );
    }
}

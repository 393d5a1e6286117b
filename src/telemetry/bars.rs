//! Progress bars for `ferry once` on a terminal (the indicatif crate): one
//! bar per job with the files of its pass done and to do, the bytes read,
//! the rows staged, the rate and the time left. Off a terminal nothing
//! here is switched on and the pass logs its plain lines as before.
//!
//! Fed by the named events in [`telemetry`](super); log lines written
//! while bars show go through [`suspended`], so a line never tears a bar.

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

struct JobBar {
    bar: ProgressBar,
    bytes: u64,
    rows: u64,
}

struct Bars {
    multi: MultiProgress,
    jobs: HashMap<String, JobBar>,
}

fn bars() -> &'static Mutex<Option<Bars>> {
    static BARS: OnceLock<Mutex<Option<Bars>>> = OnceLock::new();
    BARS.get_or_init(Default::default)
}

fn with<T>(f: impl FnOnce(&mut Bars) -> T) -> Option<T> {
    let mut guard = bars().lock().unwrap_or_else(|p| p.into_inner());
    guard.as_mut().map(f)
}

/// Shows bars on stderr from now on (call it only on a terminal).
pub fn enable() {
    enable_on(ProgressDrawTarget::stderr());
}

/// Shows bars on `target` (hidden in tests).
pub fn enable_on(target: ProgressDrawTarget) {
    *bars().lock().unwrap_or_else(|p| p.into_inner()) = Some(Bars {
        multi: MultiProgress::with_draw_target(target),
        jobs: HashMap::new(),
    });
}

/// Stops showing bars (what they last showed stays on the terminal, and
/// what is printed next starts on a line of its own).
pub fn disable() {
    let was = bars().lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(b) = was
        && !b.multi.is_hidden()
    {
        drop(b);
        eprintln!();
    }
}

/// Runs `write` with the bars out of the way (a log line), or plainly.
pub fn suspended<T>(write: impl FnOnce() -> T) -> T {
    let multi = with(|b| b.multi.clone());
    match multi {
        Some(m) => m.suspend(write),
        None => write(),
    }
}

fn message(j: &JobBar) -> String {
    format!("{} read, {} rows", HumanBytes(j.bytes), j.rows)
}

/// A pass of `job` has `files` files to stage.
pub(super) fn pass(job: &str, files: usize) {
    with(|b| {
        let bar = b.multi.add(ProgressBar::new(files as u64));
        let style = ProgressStyle::with_template(
            "{prefix:>16} [{bar:28}] {pos}/{len} files  {msg}  {elapsed} elapsed, ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(job.to_string());
        let j = JobBar {
            bar,
            bytes: 0,
            rows: 0,
        };
        j.bar.set_message(message(&j));
        if let Some(old) = b.jobs.insert(job.to_string(), j) {
            old.bar.finish();
        }
    });
}

/// One more file of `job`'s pass is done (staged or failed).
pub(super) fn file_done(job: &str) {
    with(|b| {
        if let Some(j) = b.jobs.get(job) {
            j.bar.inc(1);
        }
    });
}

/// `bytes` more were read, or `rows` more staged, for `job`.
pub(super) fn add(job: &str, bytes: u64, rows: u64) {
    with(|b| {
        if let Some(j) = b.jobs.get_mut(job) {
            j.bytes += bytes;
            j.rows += rows;
            j.bar.set_message(message(j));
        }
    });
}

/// `job`'s pass ended: its bar stops where it is, with its totals.
pub(super) fn pass_ended(job: &str) {
    with(|b| {
        if let Some(j) = b.jobs.remove(job) {
            j.bar.finish_with_message(format!("{}  done", message(&j)));
        }
    });
}

/// What `job`'s bar shows: (done, of, message), if it has one.
pub fn shown(job: &str) -> Option<(u64, u64, String)> {
    with(|b| {
        b.jobs.get(job).map(|j| {
            (
                j.bar.position(),
                j.bar.length().unwrap_or(0),
                j.bar.message(),
            )
        })
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_counts_files_bytes_and_rows_of_its_pass() {
        enable_on(ProgressDrawTarget::hidden());
        pass("bars-a", 3);
        file_done("bars-a");
        add("bars-a", 2048, 0);
        add("bars-a", 0, 10);
        file_done("bars-a");
        let (done, of, msg) = shown("bars-a").unwrap();
        assert_eq!((done, of), (2, 3));
        assert_eq!(msg, "2.00 KiB read, 10 rows");
        assert_eq!(suspended(|| 7), 7);
        pass_ended("bars-a");
        assert!(shown("bars-a").is_none());
        disable();
        // Without bars every event is a no-op.
        pass("bars-a", 1);
        assert!(shown("bars-a").is_none());
    }
}

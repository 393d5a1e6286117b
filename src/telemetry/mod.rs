//! Logging set-up and the named events the rest of ferry emits.
//!
//! Business code calls an event function (`file_loaded(…)`) instead of
//! formatting log lines itself, so that fields stay consistent; each event
//! also updates the [`metrics`] served on `/metrics`.

pub mod bars;
pub mod jobs;
pub mod liveness;
pub mod metrics;

use crate::config::LogFormat;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `RUST_LOG` (or `level`) filters, output
/// on stderr as text or JSON. Without `RUST_LOG`, chatty libraries (the
/// PostgreSQL driver's NOTICEs, the test FTP server) only log warnings.
///
/// Whatever `RUST_LOG` asks, suppaftp and russh log at most `info`: at
/// `debug`/`trace` they print the commands they send, FTP's `PASS` line
/// included, and secrets never reach the logs. Colours only on a terminal.
pub fn init(level: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let mut filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},tokio_postgres=warn,libunftp=warn")));
    for quiet in ["suppaftp=info", "russh=info", "russh_sftp=info"] {
        if let Ok(d) = quiet.parse() {
            filter = filter.add_directive(d);
        }
    }
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || Escaping {
            raw: terminal,
            out: std::io::stderr(),
        })
        .with_ansi(terminal)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// stderr for log lines. Off a terminal, control characters inside a line
/// (a file name with a newline or an ANSI escape) are written as `\xNN`,
/// so one event stays one line and cannot forge another or repaint a
/// terminal that later shows the log; each line's own end stays.
struct Escaping {
    raw: bool,
    out: std::io::Stderr,
}

impl std::io::Write for Escaping {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Progress bars (`ferry once` on a terminal) step aside for the line.
        bars::suspended(|| {
            if self.raw {
                return self.out.write(buf);
            }
            self.out.write_all(&escape_controls(buf))?;
            Ok(buf.len())
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// `buf` with every control byte but tab and a final newline as `\xNN`.
pub fn escape_controls(buf: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let last = buf.len().saturating_sub(1);
    let bad =
        |(i, &b): (usize, &u8)| (b < 0x20 && b != b'\t' && !(b == b'\n' && i == last)) || b == 0x7f;
    if !buf.iter().enumerate().any(bad) {
        return std::borrow::Cow::Borrowed(buf);
    }
    let mut out = Vec::with_capacity(buf.len() + 16);
    for (i, b) in buf.iter().enumerate() {
        if bad((i, b)) {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        } else {
            out.push(*b);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A duration in the largest unit that keeps it short: `300ms`, `42s`,
/// `3m 12s`, `5h 02m`, `2d 4h`.
pub fn ago(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 if !d.is_zero() => format!("{}ms", d.as_millis()),
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A file was loaded and committed.
pub fn file_loaded(job: &str, path: &str, rows: u64, rejected: u64, bytes: u64, took: Duration) {
    liveness::progressed(job);
    let l = [("job", job)];
    metrics::add("ferry_files_loaded_total", &l, 1.0);
    metrics::add("ferry_rows_loaded_total", &l, rows as f64);
    metrics::add("ferry_rows_rejected_total", &l, rejected as f64);
    metrics::add("ferry_bytes_loaded_total", &l, bytes as f64);
    metrics::set(
        "ferry_last_load_timestamp_seconds",
        &l,
        chrono::Utc::now().timestamp() as f64,
    );
    tracing::info!(
        job,
        path,
        rows,
        rejected,
        bytes,
        duration_ms = took.as_millis() as u64,
        mb_per_s = format!("{:.1}", bytes as f64 / 1e6 / took.as_secs_f64().max(1e-6)),
        "file loaded"
    );
}

/// Bytes read from a source for one of `job`'s files (one attempt).
pub fn bytes_fetched(job: &str, bytes: u64) {
    bars::add(job, bytes, 0);
    metrics::add("ferry_bytes_fetched_total", &[("job", job)], bytes as f64);
}

/// A file's drift from its mapping was recorded (or a column evolved).
pub fn schema_change(job: &str, change: &str, action: &str) {
    metrics::add(
        "ferry_schema_changes_total",
        &[("job", job), ("change", change), ("action", action)],
        1.0,
    );
}

/// A batch of staged files committed.
pub fn batch_loaded(job: &str, files: usize, took: Duration) {
    metrics::observe(
        "ferry_stage_duration_seconds",
        &[("job", job), ("stage", "load")],
        took.as_secs_f64(),
    );
    tracing::info!(
        job,
        files,
        duration_ms = took.as_millis() as u64,
        "batch loaded"
    );
}

/// A file failed as a whole.
pub fn file_failed(job: &str, path: &str, error: &str) {
    liveness::progressed(job);
    metrics::add("ferry_files_failed_total", &[("job", job)], 1.0);
    tracing::error!(job, path, error, "file failed");
}

/// A file version was already in the ledger.
pub fn file_skipped(job: &str, path: &str, why: &str) {
    metrics::add("ferry_files_skipped_total", &[("job", job)], 1.0);
    tracing::debug!(job, path, why, "file skipped");
}

/// A file is not ready yet.
pub fn file_waiting(job: &str, path: &str, why: &str) {
    tracing::debug!(job, path, why, "file not settled yet");
}

/// A file was fetched, normalized and staged (it waits for its load).
pub fn file_staged(job: &str, path: &str, rows: u64, took: Duration) {
    bars::add(job, 0, rows);
    metrics::add("ferry_files_settled_total", &[("job", job)], 1.0);
    metrics::observe(
        "ferry_stage_duration_seconds",
        &[("job", job), ("stage", "stage")],
        took.as_secs_f64(),
    );
    tracing::debug!(
        job,
        path,
        rows,
        duration_ms = took.as_millis() as u64,
        "file staged"
    );
}

/// An FTP source's connection pool changed: `open` connections now, at
/// most `limit`.
pub fn source_connections(source: &str, open: usize, limit: usize) {
    let l = [("source", source)];
    metrics::set("ferry_source_connections", &l, open as f64);
    metrics::set("ferry_source_connection_limit", &l, limit as f64);
}

/// What a poll saw of the job's folder: files listed (matching), not
/// settled yet, the age of the oldest file not loaded, and the job's lag
/// (the age of the oldest *settled* file not loaded).
pub fn job_backlog(
    job: &str,
    listed: usize,
    unsettled: usize,
    oldest_unloaded: Duration,
    lag: Duration,
) {
    jobs::backlog(job, listed, unsettled, lag);
    let l = [("job", job)];
    metrics::set("ferry_files_listed", &l, listed as f64);
    metrics::set("ferry_files_unsettled", &l, unsettled as f64);
    metrics::set(
        "ferry_oldest_unloaded_file_age_seconds",
        &l,
        oldest_unloaded.as_secs_f64(),
    );
}

/// A post-load check ran: passed, or failed with the rows it returned
/// (or the reason it could not run) in `detail`.
pub fn check_done(
    job: &str,
    check: &str,
    load_id: &str,
    passed: bool,
    failing_rows: u64,
    detail: Option<&str>,
) {
    let result = if passed { "passed" } else { "failed" };
    metrics::add(
        "ferry_checks_total",
        &[("job", job), ("check", check), ("result", result)],
        1.0,
    );
    if passed {
        tracing::debug!(job, check, load_id, "check passed");
    } else {
        tracing::warn!(
            job,
            check,
            load_id,
            failing_rows,
            detail = detail.unwrap_or(""),
            "post-load check failed (the load stays committed; see ferry_checks)"
        );
    }
}

/// A job pass ended.
pub fn pass_done(
    job: &str,
    listed: usize,
    loaded: usize,
    skipped: usize,
    failed: usize,
    took: Duration,
) {
    bars::pass_ended(job);
    metrics::observe(
        "ferry_stage_duration_seconds",
        &[("job", job), ("stage", "pass")],
        took.as_secs_f64(),
    );
    tracing::info!(
        job,
        listed,
        loaded,
        skipped,
        failed,
        duration_ms = took.as_millis() as u64,
        "job pass done"
    );
}

/// Progress of a long pass (a backfill): every 10 s while files are being
/// staged, one line with how many of the pass's files are done, the rate
/// and the time left. Passes of fewer than 100 files stay quiet.
#[derive(Debug)]
pub struct Progress<'j> {
    job: &'j str,
    total: usize,
    done: usize,
    started: std::time::Instant,
    last: std::time::Instant,
}

impl<'j> Progress<'j> {
    /// Every this often, a line.
    const EVERY: Duration = Duration::from_secs(10);

    /// A pass of `total` files of `job`.
    pub fn new(job: &'j str, total: usize) -> Self {
        if total > 0 {
            bars::pass(job, total);
        }
        let now = std::time::Instant::now();
        Progress {
            job,
            total,
            done: 0,
            started: now,
            last: now,
        }
    }

    /// One more file staged (or failed); says whether a line was logged.
    pub fn one_done(&mut self) -> bool {
        self.done += 1;
        liveness::progressed(self.job);
        bars::file_done(self.job);
        if self.total < 100 || self.last.elapsed() < Self::EVERY || self.done == self.total {
            return false;
        }
        self.last = std::time::Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.done as f64 / secs;
        let left = (self.total - self.done) as f64 / rate.max(1e-9);
        tracing::info!(
            job = self.job,
            done = self.done,
            total = self.total,
            percent = format!("{:.0}", 100.0 * self.done as f64 / self.total as f64),
            files_per_s = format!("{rate:.0}"),
            eta_s = left.round() as u64,
            "backfill progress"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_speaks_every_ten_seconds_of_a_long_pass_only() {
        let ago = std::time::Instant::now() - Duration::from_secs(11);
        let mut long = Progress::new("j", 200);
        (long.started, long.last) = (ago, ago);
        assert!(long.one_done(), "ten seconds passed");
        assert!(!long.one_done(), "not again right away");
        let mut short = Progress::new("j", 99);
        (short.started, short.last) = (ago, ago);
        assert!(!short.one_done(), "a short pass stays quiet");
    }

    /// Regression: a file name with a newline or an ANSI escape went raw
    /// into text logs (a forged second line, a repainted terminal).
    #[test]
    fn control_characters_inside_a_log_line_are_escaped() {
        let line = b"WARN file failed path=/in/a\nERROR forged \x1b[2Jb.csv\n";
        assert_eq!(
            &*escape_controls(line),
            &b"WARN file failed path=/in/a\\x0aERROR forged \\x1b[2Jb.csv\n"[..]
        );
        assert!(matches!(
            escape_controls(b"plain\tline\n"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}

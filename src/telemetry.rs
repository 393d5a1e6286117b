//! Logging set-up and the named events the rest of ferry emits.
//!
//! Business code calls an event function (`file_loaded(…)`) instead of
//! formatting log lines itself, so that fields stay consistent and metrics
//! can hang off the same calls.

use crate::config::LogFormat;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `RUST_LOG` (or `level`) filters, output
/// on stderr as text or JSON. Without `RUST_LOG`, chatty libraries (the
/// PostgreSQL driver's NOTICEs, the test FTP server) only log warnings.
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},tokio_postgres=warn,libunftp=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// A file was loaded and committed.
pub fn file_loaded(job: &str, path: &str, rows: u64, rejected: u64, bytes: u64, took: Duration) {
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

/// A batch of staged files committed.
pub fn batch_loaded(job: &str, files: usize, took: Duration) {
    tracing::info!(
        job,
        files,
        duration_ms = took.as_millis() as u64,
        "batch loaded"
    );
}

/// A file failed as a whole.
pub fn file_failed(job: &str, path: &str, error: &str) {
    tracing::error!(job, path, error, "file failed");
}

/// A file version was already in the ledger.
pub fn file_skipped(job: &str, path: &str, why: &str) {
    tracing::debug!(job, path, why, "file skipped");
}

/// A file is not ready yet.
pub fn file_waiting(job: &str, path: &str, why: &str) {
    tracing::debug!(job, path, why, "file not settled yet");
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

//! One file's fetch → normalize → stage → load.

use super::Runtime;
use crate::config::Job;
use crate::error::{Error, ErrorKind, Result};
use crate::ledger::FileVersion;
use crate::normalize::{self, FileContext, NormalizeStats};
use crate::retry::{RetryPolicy, retry};
use crate::source::resume::Resuming;
use crate::source::{RemoteEntry, Source};
use crate::warehouse::{LoadOutcome, StagedFile};
use std::io::Write;
use std::sync::Arc;

/// A file that went all the way through.
#[derive(Debug)]
pub struct Processed {
    /// The load's outcome.
    pub outcome: LoadOutcome,
    /// Records rejected (kept in `ferry_load_errors`).
    pub rejected: u64,
}

/// A file that did not; `stats` is set when normalize finished, so its
/// error rows can be recorded.
#[derive(Debug)]
pub struct FileFailure {
    /// Why.
    pub error: Error,
    /// What normalize produced, if it finished.
    pub stats: Option<NormalizeStats>,
}

impl From<Error> for FileFailure {
    fn from(error: Error) -> Self {
        FileFailure { error, stats: None }
    }
}

/// Streams `entry` from `src` through normalize into a gzip file on local
/// disk (bounded memory), uploads it, and loads it.
pub async fn process_file(
    rt: &Runtime,
    job: &Arc<Job>,
    src: &Arc<dyn Source>,
    entry: &RemoteEntry,
) -> std::result::Result<Processed, FileFailure> {
    let stats_and_file = retry(RetryPolicy::default(), "fetch and normalize", || {
        fetch_and_normalize(job, src, entry)
    })
    .await?;
    let (stats, staged) = stats_and_file;
    if job
        .max_errors
        .exceeded(stats.rejected, stats.rows + stats.rejected)
    {
        let first = stats
            .errors
            .first()
            .map(|e| {
                format!(
                    "; first: line {}{}: {}",
                    e.line,
                    e.column
                        .as_deref()
                        .map(|c| format!(" column {c}"))
                        .unwrap_or_default(),
                    e.reason
                )
            })
            .unwrap_or_default();
        let error = Error::permanent(format!(
            "{}: {} rejected records, more than max_errors = {}{first} (see `ferry_load_errors`)",
            entry.path, stats.rejected, job.max_errors
        ));
        return Err(FileFailure {
            error,
            stats: Some(stats),
        });
    }
    let version = FileVersion {
        job: job.name.clone(),
        path: entry.path.clone(),
        size: entry.size,
        mtime: entry.mtime,
    };
    let attempt = uuid::Uuid::new_v4().simple().to_string();
    let key = rt.stager.staged_key(
        &job.name,
        &entry.path,
        &version.short_id(),
        &attempt[..8],
        chrono::Utc::now(),
    );
    let with_stats = |error: Error| FileFailure {
        error,
        stats: Some(stats.clone()),
    };
    retry(RetryPolicy::default(), "upload", || {
        rt.stager.upload_file(staged.path(), &key)
    })
    .await
    .map_err(with_stats)?;
    drop(staged);
    let file = StagedFile {
        version,
        sha256: stats.sha256.clone(),
        staged_key: key,
        rows: stats.rows,
        rejected: stats.rejected,
        errors: stats.errors.clone(),
        input_bytes: stats.input_bytes,
    };
    let outcome = rt.warehouse.load(job, &file).await.map_err(with_stats)?;
    Ok(Processed {
        outcome,
        rejected: stats.rejected,
    })
}

async fn fetch_and_normalize(
    job: &Arc<Job>,
    src: &Arc<dyn Source>,
    entry: &RemoteEntry,
) -> Result<(NormalizeStats, tempfile::NamedTempFile)> {
    let stream = Resuming::open(src.clone(), &entry.path).await?;
    let reader = tokio_util::io::SyncIoBridge::new(stream);
    let staged = tempfile::Builder::new()
        .prefix("ferry-staged-")
        .suffix(".csv.gz")
        .tempfile()
        .map_err(|e| Error::transient("cannot create a local staging file").with_source(e))?;
    let out = staged
        .reopen()
        .map_err(|e| Error::transient("cannot open the local staging file").with_source(e))?;
    let ctx = FileContext {
        path: entry.path.clone(),
        ingest_time: chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string(),
    };
    let job = job.clone();
    let stats = tokio::task::spawn_blocking(move || -> Result<NormalizeStats> {
        // Parsing here, compression on a second thread: both cores work.
        let mut gz = normalize::gzip::ParallelGzip::new(
            std::io::BufWriter::with_capacity(256 * 1024, out),
            job.gzip_level,
        );
        let stats = normalize::normalize(&job, &ctx, reader, &mut gz).map_err(|e| match e {
            normalize::NormalizeError::Read { .. } => Error::transient(e.to_string()),
            normalize::NormalizeError::Write { .. } => Error::transient(e.to_string()),
            normalize::NormalizeError::MissingField { .. }
            | normalize::NormalizeError::Limit { .. }
            | normalize::NormalizeError::Format { .. } => Error::permanent(e.to_string()),
        })?;
        gz.finish()
            .and_then(|mut w| w.flush())
            .map_err(|e| Error::transient("cannot finish the local staging file").with_source(e))?;
        Ok(stats)
    })
    .await
    .map_err(|e| {
        Error::new(ErrorKind::Permanent, "normalize stopped unexpectedly").with_source(e)
    })??;
    Ok((stats, staged))
}

//! One file's fetch → normalize → stage; the load is the batch's.

use super::Runtime;
use crate::config::Job;
use crate::error::{Error, ErrorKind, Result};
use crate::ledger::FileVersion;
use crate::normalize::{self, Blob, FileContext, LocalStaged, NormalizeStats, StagedParts, Tee};
use crate::retry::{RetryPolicy, retry};
use crate::source::resume::Resuming;
use crate::source::{RemoteEntry, Source};
use crate::stage::StageKeys;
use crate::warehouse::StagedFile;
use std::sync::Arc;

/// A file that did not; `stats` is set when normalize finished, so its
/// error rows can be recorded.
#[derive(Debug)]
pub struct FileFailure {
    /// Why.
    pub error: Error,
    /// What normalize produced, if it finished.
    pub stats: Option<NormalizeStats>,
    /// The rejects object, if it was uploaded.
    pub rejects_key: Option<String>,
}

impl From<Error> for FileFailure {
    fn from(error: Error) -> Self {
        FileFailure {
            error,
            stats: None,
            rejects_key: None,
        }
    }
}

/// Streams `entry` from `src` through normalize into gzip parts (in
/// memory while small, on local disk beyond: bounded memory) and uploads
/// the raw copy, the rejects and the parts; the result waits in a batch
/// for its load.
///
/// The file is normalized with the job's current mapping; when its drift
/// needs the target changed (`evolve`), the target is altered and, for new
/// columns, the file normalized once more with the new mapping (see
/// [`super::evolve`]). Returns the staged file and the mapping it loads
/// with.
pub async fn stage_file(
    rt: &Runtime,
    job: &Arc<Job>,
    src: &Arc<dyn Source>,
    entry: &RemoteEntry,
) -> std::result::Result<(StagedFile, Arc<Job>), FileFailure> {
    let transfer = rt.transfer_slot(&job.source.name).await;
    let version = version_of(job, entry);
    let mut mapping = rt.schemas.current(job);
    let mut first_drift = None;
    let (stats, local) = loop {
        let m = mapping.clone();
        let (stats, local) = retry(RetryPolicy::FETCH, "fetch and normalize", || {
            fetch_and_normalize(&m, src, entry, None)
        })
        .await?;
        let evolution = super::evolve::plan(&mapping, &stats.drift);
        if evolution.is_empty() {
            break (stats, local);
        }
        if first_drift.is_some() {
            return Err(super::evolve::unsettled(&version, &stats.drift).into());
        }
        mapping = super::evolve::evolve(rt, job, &version, &stats.drift).await?;
        first_drift = Some(stats.drift.clone());
        if evolution.add.is_empty() {
            // Only wider VARCHARs: the values were kept whole, the staged
            // rows stand.
            break (stats, local);
        }
        tracing::info!(job = %job.name, path = %entry.path, "columns added for the file's new fields; normalizing it again with them");
        drop(local);
    };
    drop(transfer);
    let evolved = first_drift.is_some();
    let drift = first_drift.as_ref().unwrap_or(&stats.drift);
    super::evolve::record(rt, &mapping, &version, drift, evolved).await;
    let keys = staging_keys(rt, job, &version);
    let file = finish(rt, &mapping, &keys, version, stats, local, None).await?;
    Ok((file, mapping))
}

/// The version a listed entry is.
pub(super) fn version_of(job: &Job, entry: &RemoteEntry) -> FileVersion {
    FileVersion {
        job: job.name.clone(),
        path: entry.path.clone(),
        size: entry.size,
        mtime: entry.mtime,
    }
}

/// Fresh staging keys for one attempt at `version`.
pub(super) fn staging_keys(rt: &Runtime, job: &Job, version: &FileVersion) -> StageKeys {
    let attempt = uuid::Uuid::new_v4().simple().to_string();
    let mut keys = rt.stager.keys(
        &job.name,
        &version.path,
        &version.short_id(),
        &attempt[..8],
        chrono::Utc::now(),
    );
    keys.part_ext = job.stage_format.extension();
    keys
}

/// After normalize: uploads the raw copy and the rejects, fails a file
/// with too many rejects, and uploads the parts (unless they went up as
/// they were written: `uploaded`).
pub(super) async fn finish(
    rt: &Runtime,
    job: &Job,
    keys: &StageKeys,
    version: FileVersion,
    stats: NormalizeStats,
    local: LocalStaged,
    uploaded: Option<Vec<String>>,
) -> std::result::Result<StagedFile, FileFailure> {
    let fail = |error: Error, rejects_key: Option<String>| FileFailure {
        error,
        stats: Some(stats.clone()),
        rejects_key,
    };
    // The raw copy and the rejects first: a file that fails for too many
    // rejects still leaves its bytes and every rejected record where the
    // operator can read them.
    if let Some(path) = &local.raw {
        retry(RetryPolicy::UPLOAD, "archive raw", || {
            rt.stager.upload_raw_copy(path, &keys.raw)
        })
        .await
        .map_err(|e| fail(e, None))?;
    }
    let rejects_key = match &local.rejects {
        Some(path) => {
            retry(RetryPolicy::UPLOAD, "upload rejects", || {
                rt.stager.upload_staged(path, &keys.rejects)
            })
            .await
            .map_err(|e| fail(e, None))?;
            Some(keys.rejects.clone())
        }
        None => None,
    };
    if job
        .max_errors
        .exceeded(stats.rejected, stats.rows + stats.rejected)
    {
        let first = stats
            .errors
            .first()
            .map(|e| format!("; first: {}", e.describe()))
            .unwrap_or_default();
        let all = rejects_key
            .as_deref()
            .map(|k| format!(", all of them in {}", rt.stager.url(k)))
            .unwrap_or_default();
        let error = Error::permanent(format!(
            "{}: {} rejected records, more than max_errors = {}{first} (see `ferry_load_errors`{all})",
            version.path, stats.rejected, job.max_errors
        ));
        return Err(fail(error, rejects_key));
    }
    let parts = match uploaded {
        Some(parts) => parts,
        None => {
            let mut parts = Vec::with_capacity(local.parts.len());
            for (i, path) in local.parts.iter().enumerate() {
                let key = keys.part(i);
                retry(RetryPolicy::UPLOAD, "upload", || {
                    rt.stager.upload_staged(path, &key)
                })
                .await
                .map_err(|e| fail(e, rejects_key.clone()))?;
                parts.push(key);
            }
            parts
        }
    };
    drop(local);
    Ok(StagedFile {
        version,
        sha256: stats.sha256.clone(),
        staged_prefix: keys.staged.clone(),
        parts,
        rejects_key,
        rows: stats.rows,
        rejected: stats.rejected,
        errors: stats.errors.clone(),
        input_bytes: stats.input_bytes,
    })
}

/// The largest part of a file that loads while it is staged (CSV bytes).
pub const STREAMED_PART_BYTES: u64 = 32 << 20;

/// Fetches and normalizes `entry`; with `stream_to`, each finished part
/// is sent there as soon as it is written instead of waiting in the
/// returned [`LocalStaged`].
pub(super) async fn fetch_and_normalize(
    job: &Arc<Job>,
    src: &Arc<dyn Source>,
    entry: &RemoteEntry,
    stream_to: Option<tokio::sync::mpsc::Sender<Blob>>,
) -> Result<(NormalizeStats, LocalStaged)> {
    let stream = Resuming::open_version(src.clone(), entry).await?;
    let retry_later = stream.retry_later();
    let fetched = stream.bytes_read();
    let reader = tokio_util::io::SyncIoBridge::new(stream);
    let ctx = FileContext {
        path: entry.path.clone(),
        ingest_time: chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string(),
        size_hint: Some(entry.size),
    };
    let job_name = job.name.clone();
    let job = job.clone();
    let (path, size) = (entry.path.clone(), entry.size);
    let normalized = tokio::task::spawn_blocking(move || -> Result<(NormalizeStats, LocalStaged)> {
        // Parsing here, compression on a second thread: both cores work.
        let local_err =
            |e: std::io::Error| Error::transient("cannot write local staging files").with_source(e);
        // Streamed parts are kept small, so COPY starts soon and follows
        // normalize closely.
        let part_size = match stream_to {
            Some(_) => job.part_size.min(STREAMED_PART_BYTES),
            None => job.part_size,
        };
        let mut out = StagedParts::new(part_size, job.gzip_level).map_err(local_err)?;
        out.gzip_threads(job.gzip_threads);
        if job.stage_format == crate::config::StageFormat::Parquet {
            out.as_parquet(job.columns.iter().map(|c| (c.name.as_str(), c.column_type)));
        }
        if let Some(to) = stream_to {
            out.stream_parts(to);
        }
        // With archive_raw, every byte read is also copied to a local file
        // (normalize reads the input to its end, whatever it decodes).
        let raw_copy = if job.archive_raw {
            Some(out.raw_copy().map_err(local_err)?)
        } else {
            None
        };
        let result = match raw_copy {
            Some(copy) => {
                let mut tee = Tee::new(reader, copy);
                let r = normalize::normalize(&job, &ctx, &mut tee, &mut out);
                out.set_raw(tee.finish().map_err(local_err)?);
                r
            }
            None => normalize::normalize(&job, &ctx, reader, &mut out),
        };
        let stats = result.map_err(|e| match e {
            // The file changed under a resume (it is still being written),
            // or every resume was used up: a later pass tries again.
            normalize::NormalizeError::Read { .. }
                if retry_later.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                Error::transient(e.to_string()).later()
            }
            normalize::NormalizeError::Read { .. } => Error::transient(e.to_string()),
            normalize::NormalizeError::Write { .. } => Error::transient(e.to_string()),
            normalize::NormalizeError::MissingField { .. }
            | normalize::NormalizeError::Drift { .. }
            | normalize::NormalizeError::Limit { .. }
            | normalize::NormalizeError::Format { .. } => Error::permanent(e.to_string()),
        })?;
        // The version read must be the version listed: a file overwritten
        // or appended to while it was read is not loaded (half old, half
        // new); it goes back to settling and is read again once stable.
        if stats.input_bytes != size {
            return Err(Error::transient(format!(
                "{path} changed while it was read: listed with {size} bytes, {} bytes read; nothing of it is loaded, it is read again once it has settled",
                stats.input_bytes
            ))
            .later());
        }
        let local = out.finish().map_err(local_err)?;
        Ok((stats, local))
    })
    .await;
    crate::telemetry::bytes_fetched(
        &job_name,
        fetched.load(std::sync::atomic::Ordering::Relaxed),
    );
    let normalized = normalized.map_err(|e| {
        Error::new(ErrorKind::Permanent, "normalize stopped unexpectedly").with_source(e)
    })??;
    // Still the version listed, now that every byte is read: a file
    // rewritten in place with the same size is caught here, before its
    // rows can commit.
    crate::source::unchanged(&**src, entry).await?;
    Ok(normalized)
}

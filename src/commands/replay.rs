//! `ferry replay`: loads again, from the raw archive (`archive_raw =
//! true`), the versions of a job loaded in a window — after a fix to the
//! mapping, a transform or the target — without touching the source.
//!
//! Each raw copy loads as a new file version whose path is its raw key in
//! the staging bucket (so `ferry_file` of the replayed rows names the copy
//! they came from, and replaying the same copy twice loads it once).
//! Merge mode replaces rows by key; append mode adds every row again, so
//! it is refused unless asked for (`--append-again`). The raw copies are
//! read through an S3 source built from `[staging]` and never changed.

use crate::config::{Config, Finalize, Job, LoadMode, SourceKind, SourceSettings};
use crate::error::{Error, Result};
use crate::pipeline::{PassReport, Runtime};
use crate::source::RemoteEntry;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// The source name replays read raw copies through.
pub const RAW_SOURCE: &str = "ferry-replay-raw";

/// One version to load again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Its path on the source.
    pub path: String,
    /// When it was loaded, and the rows it loaded.
    pub loaded_at: String,
    /// Rows it loaded then.
    pub rows: String,
    /// Its raw copy's key.
    pub raw_key: Option<String>,
    /// The copy's size and last-modified time, or why it cannot be read.
    pub raw: std::result::Result<(u64, i64), String>,
}

/// What to replay.
#[derive(Debug, Clone)]
pub struct Window {
    /// The job.
    pub job: String,
    /// Versions loaded at or after this.
    pub since: DateTime<Utc>,
    /// Versions loaded before this.
    pub until: DateTime<Utc>,
    /// Only paths this glob matches (the whole path on the source).
    pub path: Option<globset::GlobMatcher>,
}

/// The versions `window` names, each with its raw copy (or why not).
pub async fn plan(rt: &Runtime, window: &Window) -> Result<Vec<Replayed>> {
    let l = rt.warehouse.ledger();
    let rows = rt
        .warehouse
        .read_ledger(&l.loaded_between_report(&window.job, window.since, window.until))
        .await?;
    let raw_prefix = rt.stager.kind_prefix("raw", &window.job);
    let mut out = Vec::new();
    for r in rows {
        let Some(Some(path)) = r.first() else {
            continue;
        };
        // A replayed version's path is a raw key: its copy is not kept.
        if path.starts_with(&raw_prefix) {
            continue;
        }
        if window.path.as_ref().is_some_and(|g| !g.is_match(path)) {
            continue;
        }
        let staged = r.get(1).cloned().flatten().unwrap_or_default();
        let raw_key = rt.stager.raw_key_of(&staged, path);
        let raw = match &raw_key {
            None => Err("its staged folder names no raw copy".to_string()),
            Some(k) => match rt.stager.object_meta(k).await {
                Ok((size, mtime)) => Ok((size.max(0) as u64, mtime)),
                Err(e) => Err(format!(
                    "no raw copy to read (was archive_raw on when it loaded?): {}",
                    e.chain()
                )),
            },
        };
        out.push(Replayed {
            path: path.clone(),
            loaded_at: r.get(3).cloned().flatten().unwrap_or_default(),
            rows: r.get(2).cloned().flatten().unwrap_or_default(),
            raw_key,
            raw,
        });
    }
    Ok(out)
}

/// `cfg` with the source replays read through: the staging bucket.
pub fn with_raw_source(mut cfg: Config) -> Config {
    let source = SourceSettings {
        name: RAW_SOURCE.into(),
        max_transfers: 4,
        kind: SourceKind::S3 {
            bucket: cfg.staging.bucket.clone(),
            s3: cfg.staging.s3.clone(),
        },
    };
    cfg.sources.insert(RAW_SOURCE.into(), Arc::new(source));
    cfg
}

/// `job` reading its raw copies: from the staging bucket, kept where they
/// are whatever happens, not copied again.
fn replay_job(rt: &Runtime, job: &Job) -> Result<Job> {
    let source = rt
        .config
        .sources
        .get(RAW_SOURCE)
        .cloned()
        .ok_or_else(|| Error::config("the runtime was not started with_raw_source"))?;
    let mut j = job.clone();
    j.source = source;
    j.on_success = Finalize::Keep;
    j.on_failure = Finalize::Keep;
    j.archive_raw = false;
    j.events = None;
    Ok(j)
}

/// Loads the plan's readable raw copies again; refuses append mode
/// unless `append_again`.
pub async fn replay(
    rt: &Runtime,
    job: &Job,
    plan: &[Replayed],
    append_again: bool,
) -> Result<PassReport> {
    if job.mode == LoadMode::Append && !append_again {
        return Err(Error::config(format!(
            "job {} appends: replaying adds every row of these files again; pass --append-again if that is what you want (merge mode replaces rows by key instead)",
            job.name
        )));
    }
    let job = Arc::new(replay_job(rt, job)?);
    let entries: Vec<RemoteEntry> = plan
        .iter()
        .filter_map(|p| {
            let (key, (size, mtime)) = (p.raw_key.as_ref()?, p.raw.as_ref().ok()?);
            Some(RemoteEntry {
                path: key.clone(),
                relative: crate::source::file_name(key).to_string(),
                size: *size,
                mtime: *mtime,
                etag: None,
            })
        })
        .collect();
    tracing::info!(job = %job.name, files = entries.len(), "replaying from the raw archive");
    crate::pipeline::load_entries(rt, &job, entries).await
}

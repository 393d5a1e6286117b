//! A large file loaded while it is still being staged.
//!
//! A file of more than one part (larger than the job's `part_size`) loads
//! in a load of its own, and, where the warehouse can
//! ([`Warehouse::streams`](crate::warehouse::Warehouse::streams):
//! PostgreSQL), its COPY starts with the first staged part while normalize
//! writes the next: the file's staging and its COPY overlap instead of
//! following each other. Each part is uploaded as soon as it is written.
//!
//! The load-once rules are those of any load: the transaction locks the
//! ledger, leaves the version out if it is loaded already, and commits
//! only after normalize has finished and the file passed `max_errors`
//! (else it rolls back). If the streamed load fails, staging still runs to
//! its end, so the file can be loaded again the ordinary way from its
//! staged parts (with the usual retries), or recorded as failed.

use super::batch::{self, Staged};
use super::file::{self, FileFailure};
use super::{PassReport, Runtime, failed_to_stage};
use crate::config::Job;
use crate::error::{Error, Result};
use crate::normalize::Blob;
use crate::retry::{RetryPolicy, retry};
use crate::source::{RemoteEntry, Source};
use crate::telemetry;
use crate::warehouse::{LoadOutcome, StagedFile};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Whether `entry` streams: the warehouse can, the file is larger than
/// one part, and the job's contract never alters the target (a file whose
/// drift needs a new column is normalized twice: see [`super::evolve`]).
pub fn streams(rt: &Runtime, job: &Job, entry: &RemoteEntry) -> bool {
    rt.warehouse.streams() && entry.size > job.part_size && !job.contract.evolves()
}

/// Stages and loads one large file with the two overlapping; reports it
/// as loaded, skipped or failed.
pub async fn stream_file(
    rt: &Runtime,
    job: &Arc<Job>,
    src: &Arc<dyn Source>,
    entry: &RemoteEntry,
    report: &mut PassReport,
) -> Result<()> {
    let _slot = rt.staging_slot().await;
    let _transfer = rt.transfer_slot(&job.source.name).await;
    let started = Instant::now();
    tracing::debug!(job = %job.name, path = %entry.path, bytes = entry.size, "loading a file of several parts while it is staged");
    let version = file::version_of(job, entry);
    let keys = file::staging_keys(rt, job, &version);
    let (parts_tx, mut parts_rx) = mpsc::channel::<Blob>(1);
    let (keys_tx, keys_rx) = mpsc::channel::<String>(4);
    let (file_tx, file_rx) = oneshot::channel::<Result<StagedFile>>();

    let seen = std::sync::Mutex::new(None);
    let stage = async {
        let normalized = file::fetch_and_normalize(job, src, entry, Some(parts_tx));
        // Each part goes up as soon as it is written and its key to the
        // COPY; if the load stops taking keys, the rest still go up, so
        // the file can be loaded again from its staged parts.
        let part_keys = keys.clone();
        let upload = async move {
            let mut uploaded = Vec::new();
            while let Some(part) = parts_rx.recv().await {
                let key = part_keys.part(uploaded.len());
                retry(RetryPolicy::UPLOAD, "upload", || {
                    rt.stager.upload_staged(&part, &key)
                })
                .await?;
                let _ = keys_tx.send(key.clone()).await;
                uploaded.push(key);
            }
            Ok::<_, Error>(uploaded)
        };
        let (normalized, uploaded) = futures::join!(normalized, upload);
        let (stats, local) = normalized?;
        let uploaded = uploaded?;
        // Recorded once the load is done: the streamed load holds the
        // warehouse connection until this file is staged.
        *seen.lock().expect("drift lock") = Some(stats.drift.clone());
        file::finish(
            rt,
            job,
            &keys,
            version.clone(),
            stats,
            local,
            Some(uploaded),
        )
        .await
    };
    let staged = async {
        let staged: std::result::Result<StagedFile, FileFailure> = stage.await;
        let _ = file_tx.send(match &staged {
            Ok(f) => Ok(f.clone()),
            Err(f) => Err(Error::new(f.error.kind(), f.error.chain())),
        });
        staged
    };
    let load = async {
        let _load = rt.load_slot().await;
        rt.warehouse
            .load_streaming(job, &version, keys_rx, file_rx)
            .await
    };
    tokio::pin!(staged, load);
    let (staged, loaded) = tokio::select! {
        loaded = &mut load => match loaded {
            // Another pass or replica loaded it: no need to stage it.
            Ok(LoadOutcome::AlreadyLoaded) => (None, Ok(LoadOutcome::AlreadyLoaded)),
            loaded => (Some((&mut staged).await), loaded),
        },
        staged = &mut staged => (Some(staged), load.await),
    };
    let drift = seen.lock().expect("drift lock").take();
    if let Some(drift) = drift {
        super::evolve::record(rt, job, &version, &drift, false).await;
    }
    match (staged, loaded) {
        (None, _) => {
            telemetry::file_skipped(&job.name, &entry.path, "loaded meanwhile by another pass");
            report.skipped += 1;
            Ok(())
        }
        (Some(Err(failure)), _) => failed_to_stage(rt, job, entry, failure, report).await,
        (Some(Ok(file)), Ok(outcome)) => {
            telemetry::file_staged(&job.name, &entry.path, file.rows, started.elapsed());
            super::checks::after_load(rt, job, std::slice::from_ref(&outcome)).await;
            let staged = Staged {
                file,
                mapping: job.clone(),
                started,
            };
            batch::loaded_or_skipped(rt, job, &**src, &staged, outcome, report).await;
            Ok(())
        }
        (Some(Ok(file)), Err(e)) => {
            telemetry::file_staged(&job.name, &entry.path, file.rows, started.elapsed());
            tracing::warn!(job = %job.name, path = %entry.path, error = %e.chain(), "the streamed load failed; loading the staged file again the ordinary way");
            let staged = Staged {
                file,
                mapping: job.clone(),
                started,
            };
            batch::load(rt, &**src, vec![staged], report).await
        }
    }
}

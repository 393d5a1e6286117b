//! After a file's load or failure: record a failure for good (unless
//! another replica loaded the version meanwhile), apply `on_failure`, and
//! after a commit apply `on_success` and mark the file finalized.

use super::*;

/// Reports a file that could not be staged; a permanent failure (bad data,
/// too many rejects) is recorded in the ledger.
pub(super) async fn failed_to_stage(
    rt: &Runtime,
    job: &Job,
    entry: &RemoteEntry,
    f: FileFailure,
    report: &mut PassReport,
) -> Result<()> {
    let chain = f.error.chain();
    telemetry::file_failed(&job.name, &entry.path, &chain);
    if !f.error.is_transient() {
        let (sha256, rejected, errors) = match &f.stats {
            Some(s) => (Some(s.sha256.as_str()), s.rejected, s.errors.as_slice()),
            None => (None, 0, &[][..]),
        };
        let version = FileVersion {
            job: job.name.clone(),
            path: entry.path.clone(),
            size: entry.size,
            mtime: entry.mtime,
        };
        let recorded = record_failure(
            rt,
            &FailedFile {
                version: &version,
                sha256,
                rejected,
                reason: &chain,
                errors,
                rejects_key: f.rejects_key.as_deref(),
            },
        )
        .await;
        if recorded {
            quarantine(rt, job, &entry.path).await;
        }
    }
    report
        .failed
        .push((job.name.clone(), entry.path.clone(), chain));
    Ok(())
}

/// Records a file that failed for good; returns whether it was recorded
/// as failed (not when another replica loaded it meanwhile).
/// A failure to record never stops the job's other files: if the error
/// rows cannot be written, the file is recorded without them (its reason
/// says so); if even that fails, it is logged and the file is tried again
/// next pass.
pub(crate) async fn record_failure(rt: &Runtime, failed: &FailedFile<'_>) -> bool {
    let recorded = record_failure_once(rt, failed).await;
    if recorded {
        crate::alerts::raise(crate::alerts::Event::new(
            crate::config::AlertKind::FileFailed,
            &failed.version.job,
            &failed.version.path,
            failed.reason,
        ));
    }
    recorded
}

/// [`record_failure`] without the alert.
async fn record_failure_once(rt: &Runtime, failed: &FailedFile<'_>) -> bool {
    let path = &failed.version.path;
    let first = match crate::ledger::record_failed(&*rt.warehouse, failed).await {
        Ok(()) => return !loaded_meanwhile(rt, failed.version).await,
        Err(e) => e,
    };
    tracing::error!(job = %failed.version.job, path = %path, error = %first.chain(), "cannot record the failed file with its error rows; recording it without them");
    let reason = format!(
        "{} (its {} error rows could not be recorded: {})",
        failed.reason,
        failed.errors.len(),
        first.chain()
    );
    let bare = FailedFile {
        reason: &reason,
        errors: &[],
        ..*failed
    };
    match crate::ledger::record_failed(&*rt.warehouse, &bare).await {
        Ok(()) => !loaded_meanwhile(rt, failed.version).await,
        Err(e) => {
            tracing::error!(job = %failed.version.job, path = %path, error = %e.chain(), "cannot record the failed file; it will be tried again next pass");
            false
        }
    }
}

/// Whether another replica loaded `version` while this one failed it (the
/// ledger then keeps it loaded and records no failure): its file must not
/// be moved by `on_failure`. A ledger that cannot be read counts as yes,
/// so the file stays where it is.
pub(super) async fn loaded_meanwhile(rt: &Runtime, version: &FileVersion) -> bool {
    match crate::ledger::lookup_many(&*rt.warehouse, std::slice::from_ref(version)).await {
        Ok(states) => {
            let loaded = matches!(states.first(), Some(Some(FileState::Loaded { .. })));
            if loaded {
                tracing::info!(job = %version.job, path = %version.path, "loaded meanwhile by another replica; its failure here is not recorded and the file is left alone");
            }
            loaded
        }
        Err(e) => {
            tracing::warn!(job = %version.job, path = %version.path, error = %e.chain(), "cannot read the ledger after recording a failure; the file is left where it is");
            true
        }
    }
}

/// Applies `on_failure` to a file recorded as failed for good: moves it
/// (and its marker) to the job's error folder, or keeps it. A failure
/// here is logged; the ledger keeps the version failed either way.
pub(crate) async fn quarantine(rt: &Runtime, job: &Job, path: &str) {
    // A member stays in its archive; the archive is quarantined when it
    // is recorded failed.
    if job.on_failure == Finalize::Keep || source::archive::is_member(path) {
        return;
    }
    let src = match rt.source(&job.source).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(job = %job.name, path, error = %e.chain(), "cannot move the failed file to on_failure.to");
            return;
        }
    };
    match src.finalize(path, &job.on_failure).await {
        Ok(to) => {
            tracing::info!(job = %job.name, path, moved_to = to.as_deref().unwrap_or(""), "failed file moved out of the drop folder (on_failure)");
            if let Some(suffix) = &job.settle.marker_suffix {
                let marker = format!("{path}{suffix}");
                if let Err(e) = src.finalize(&marker, &job.on_failure).await {
                    tracing::warn!(job = %job.name, path = %marker, error = %e.chain(), "cannot move the failed file's marker");
                }
            }
        }
        Err(e) => {
            tracing::warn!(job = %job.name, path, error = %e.chain(), "cannot move the failed file to on_failure.to; it stays, recorded as failed");
        }
    }
}

/// Applies the on-success action to a committed file (and its marker) and
/// records it. A failure here is logged, not fatal: the next pass sees the
/// version loaded but not finalized and tries again.
pub(crate) async fn finalize(rt: &Runtime, job: &Job, src: &dyn Source, v: &FileVersion) {
    // A member stays in its archive; the archive is finalized once every
    // member has loaded.
    if job.on_success == Finalize::Keep || source::archive::is_member(&v.path) {
        return;
    }
    match src.finalize(&v.path, &job.on_success).await {
        Ok(final_path) => {
            if let Some(suffix) = &job.settle.marker_suffix {
                let marker = format!("{}{suffix}", v.path);
                if let Err(e) = src.finalize(&marker, &job.on_success).await {
                    tracing::warn!(job = %job.name, path = %marker, error = %e.chain(), "cannot finalize the marker file");
                }
            }
            if let Err(e) =
                crate::ledger::mark_finalized(&*rt.warehouse, v, final_path.as_deref()).await
            {
                tracing::warn!(job = %job.name, path = %v.path, error = %e.chain(), "cannot record finalize; the next pass will see the file gone or moved");
            }
        }
        Err(e) => {
            tracing::warn!(job = %job.name, path = %v.path, error = %e.chain(), "cannot finalize the source file; will retry next pass");
        }
    }
}

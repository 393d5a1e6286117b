//! The long-running daemon: poll every job each `poll_interval`, stop
//! between files on SIGTERM or SIGINT.
//!
//! [`run`] takes its shutdown trigger as an argument, so tests can stop it
//! without signals. A pass in progress is never interrupted in the middle of
//! a load: shutdown waits for the pass to end, up to the grace period.

pub mod http;

use crate::error::Result;
use crate::pipeline::{Drain, Runtime, run_pass_draining};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Polls until `shutdown` is cancelled.
pub async fn run(rt: &Runtime, shutdown: CancellationToken) -> Result<()> {
    let interval = rt.config.daemon.poll_interval;
    let grace = rt.config.daemon.grace_period;
    let heartbeat = Arc::new(http::Heartbeat::default());
    heartbeat.beat();
    if let Some(addr) = rt.config.daemon.http_listen {
        let listener = http::bind(addr).await?;
        let (hb, stop) = (heartbeat.clone(), shutdown.clone());
        // A pass may take long; the health check allows three intervals
        // plus a generous hour for the longest load.
        let stale = interval * 3 + std::time::Duration::from_secs(3600);
        tokio::spawn(http::serve(listener, hb, stale, stop));
        tracing::info!(%addr, "health listener up (/healthz)");
    }
    tracing::info!(
        jobs = rt.config.jobs.len(),
        poll_interval_s = interval.as_secs(),
        "ferry daemon started"
    );
    loop {
        heartbeat.beat();
        let pass = run_pass_draining(rt, None, Drain::Due);
        tokio::pin!(pass);
        let report = tokio::select! {
            r = &mut pass => r,
            () = shutdown.cancelled() => {
                tracing::info!(grace_s = grace.as_secs(), "shutdown requested; letting the current pass finish");
                match tokio::time::timeout(grace, &mut pass).await {
                    Ok(r) => { r?; }
                    Err(_) => tracing::warn!("grace period over; stopping mid-pass (uncommitted work is rolled back and redone next start)"),
                }
                break;
            }
        };
        heartbeat.beat();
        match report {
            Ok(r) if r.has_failures() => tracing::warn!(
                loaded = r.loaded.len(),
                failed = r.failed.len(),
                job_errors = r.job_errors.len(),
                "pass finished with failures"
            ),
            Ok(r) => tracing::debug!(
                loaded = r.loaded.len(),
                skipped = r.skipped,
                waiting = r.waiting,
                "pass finished"
            ),
            Err(e) => tracing::error!(error = %e.chain(), "pass failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => break,
        }
    }
    tracing::info!("ferry daemon stopped");
    Ok(())
}

/// Resolves when the process receives SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

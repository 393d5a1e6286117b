//! The long-running daemon: poll every job each `poll_interval`, stop
//! between files on SIGTERM or SIGINT; the HTTP listener ([`http`]) and
//! systemd's notify protocol ([`systemd`]).
//!
//! [`run`] takes its shutdown trigger as an argument, so tests can stop it
//! without signals. A pass in progress is never interrupted in the middle of
//! a load: shutdown waits for the pass to end, up to the grace period.

pub mod http;
pub mod systemd;

use crate::error::Result;
use crate::pipeline::{Drain, Runtime, run_pass_draining};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Polls until `shutdown` is cancelled; serves `/healthz`, `/readyz` and
/// `/metrics` meanwhile, and tells systemd how it goes.
pub async fn run(rt: &Runtime, shutdown: CancellationToken) -> Result<()> {
    let interval = rt.config.daemon.poll_interval;
    // A pass may take long; the health check allows three intervals plus
    // a generous hour for the longest load.
    let stale = interval * 3 + Duration::from_secs(3600);
    let heartbeat = http::Heartbeat::default();
    heartbeat.beat();
    let listener = match rt.config.daemon.http_listen {
        Some(addr) => {
            let l = http::bind(addr).await?;
            tracing::info!(%addr, "HTTP listener up (/healthz, /readyz, /metrics)");
            Some(l)
        }
        None => None,
    };
    let systemd = systemd::Notifier::from_env();
    // The listener and the watchdog outlive the poll loop's drain: they
    // stop once it has stopped.
    let serving = CancellationToken::new();
    let serve = async {
        if let Some(l) = listener {
            http::serve(l, rt, &heartbeat, stale, serving.clone()).await;
        }
    };
    let watchdog = async {
        let Some(every) = systemd::watchdog_interval().filter(|_| systemd.enabled()) else {
            return;
        };
        loop {
            // Only a live poll loop keeps systemd from restarting ferry.
            if heartbeat.age_secs() <= stale.as_secs() as i64 {
                systemd.notify("WATCHDOG=1");
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = serving.cancelled() => return,
            }
        }
    };
    let poll = async {
        let result = poll_loop(rt, &heartbeat, &systemd, shutdown).await;
        serving.cancel();
        result
    };
    systemd.notify("READY=1");
    tracing::info!(
        jobs = rt.config.jobs.len(),
        poll_interval_s = interval.as_secs(),
        "ferry daemon started"
    );
    let ((), (), result) = futures::join!(serve, watchdog, poll);
    tracing::info!("ferry daemon stopped");
    result
}

async fn poll_loop(
    rt: &Runtime,
    heartbeat: &http::Heartbeat,
    systemd: &systemd::Notifier,
    shutdown: CancellationToken,
) -> Result<()> {
    let interval = rt.config.daemon.poll_interval;
    let grace = rt.config.daemon.grace_period;
    loop {
        heartbeat.beat();
        let pass = run_pass_draining(rt, None, Drain::Due);
        tokio::pin!(pass);
        let report = tokio::select! {
            r = &mut pass => r,
            () = shutdown.cancelled() => {
                systemd.notify("STOPPING=1");
                tracing::info!(grace_s = grace.as_secs(), "shutdown requested; letting the current pass finish");
                match tokio::time::timeout(grace, &mut pass).await {
                    Ok(r) => { r?; }
                    Err(_) => tracing::warn!("grace period over; stopping mid-pass (uncommitted work is rolled back and redone next start)"),
                }
                return Ok(());
            }
        };
        heartbeat.beat();
        match report {
            Ok(r) => {
                systemd.notify(&format!(
                    "STATUS=last pass: {} loaded, {} failed, {} waiting to settle",
                    r.loaded.len(),
                    r.failed.len() + r.job_errors.len(),
                    r.waiting
                ));
                if r.has_failures() {
                    tracing::warn!(
                        loaded = r.loaded.len(),
                        failed = r.failed.len(),
                        job_errors = r.job_errors.len(),
                        "pass finished with failures"
                    );
                } else {
                    tracing::debug!(
                        loaded = r.loaded.len(),
                        skipped = r.skipped,
                        waiting = r.waiting,
                        "pass finished"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e.chain(), "pass failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => {
                systemd.notify("STOPPING=1");
                return Ok(());
            }
        }
    }
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

//! The long-running daemon: every job polls on its own interval (jobs run
//! side by side; `daemon.concurrency` caps the files staged at once across
//! them), and stops between files on SIGTERM or SIGINT; the HTTP listener
//! ([`http`], with the [`status`] page), the alert dispatcher
//! ([`alerts`](crate::alerts)), a failing job paused after
//! `pause_after_failures`, and systemd's notify protocol ([`systemd`]).
//!
//! [`run`] takes its shutdown trigger as an argument, so tests can stop it
//! without signals. A pass in progress is never interrupted in the middle of
//! a load: shutdown waits for the pass to end, up to the grace period.

pub mod http;
pub mod request;
pub mod status;
pub mod systemd;

use crate::config::Job;
use crate::error::Result;
use crate::pipeline::{Drain, Runtime, run_job_pass};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Polls until `shutdown` is cancelled; serves `/healthz`, `/readyz` and
/// `/metrics` meanwhile, and tells systemd how it goes.
pub async fn run(rt: &Runtime, shutdown: CancellationToken) -> Result<()> {
    // The longest of the jobs' intervals (the daemon's without jobs).
    let interval = rt
        .config
        .jobs
        .iter()
        .map(|j| j.poll_interval)
        .max()
        .unwrap_or(rt.config.daemon.poll_interval);
    // A pass may take long; the health check allows three intervals plus
    // a generous hour for the longest load.
    let stale = interval * 3 + Duration::from_secs(3600);
    let heartbeat = http::Heartbeat::default();
    heartbeat.beat();
    let listener = match rt.config.daemon.http_listen {
        Some(addr) => {
            let l = http::bind(addr).await?;
            tracing::info!(%addr, "HTTP listener up: status page on /, probes on /healthz and /readyz, /metrics");
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
        let mut healthy = true;
        loop {
            // Only a live poll loop with no stuck job keeps systemd from
            // restarting ferry.
            match http::health(rt, &heartbeat, stale) {
                Ok(()) => {
                    systemd.notify("WATCHDOG=1");
                    healthy = true;
                }
                Err(why) if healthy => {
                    tracing::error!(why, "not alive: the systemd watchdog is no longer fed");
                    healthy = false;
                }
                Err(_) => {}
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = serving.cancelled() => return,
            }
        }
    };
    let alerting = crate::alerts::run(&rt.config, serving.clone());
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
    let ((), (), (), result) = futures::join!(serve, watchdog, alerting, poll);
    tracing::info!("ferry daemon stopped");
    result
}

/// Every job on its own schedule, at once; returns when all have stopped.
async fn poll_loop(
    rt: &Runtime,
    heartbeat: &http::Heartbeat,
    systemd: &systemd::Notifier,
    shutdown: CancellationToken,
) -> Result<()> {
    let stopping = async {
        shutdown.cancelled().await;
        systemd.notify("STOPPING=1");
        tracing::info!(
            grace_s = rt.config.daemon.grace_period.as_secs(),
            "shutdown requested; letting the passes under way finish"
        );
    };
    let jobs = futures::future::join_all(
        rt.config
            .jobs
            .iter()
            .map(|job| job_loop(rt, job, heartbeat, systemd, shutdown.clone())),
    );
    let receiving = receive_loop(rt, heartbeat, shutdown.clone());
    let (results, (), received) = futures::join!(jobs, stopping, receiving);
    crate::pipeline::stop_sharing(rt).await;
    results.into_iter().chain([received]).collect()
}

/// With a work queue: receives and works on what the listers sent, round
/// after round, until `shutdown`; a round under way then gets the grace
/// period. Without one: nothing.
async fn receive_loop(
    rt: &Runtime,
    heartbeat: &http::Heartbeat,
    shutdown: CancellationToken,
) -> Result<()> {
    if !rt.shares_work() {
        return Ok(());
    }
    let grace = rt.config.daemon.grace_period;
    let short_polls = rt
        .config
        .queue
        .as_ref()
        .is_some_and(|q| q.wait_time < Duration::from_secs(1));
    loop {
        heartbeat.beat();
        let round = Box::pin(crate::pipeline::receive_work(rt, Drain::Due));
        tokio::pin!(round);
        let result = tokio::select! {
            r = &mut round => r,
            () = shutdown.cancelled() => {
                if tokio::time::timeout(grace, &mut round).await.is_err() {
                    tracing::warn!("grace period over; stopping mid-round (received files go back to the queue)");
                }
                return Ok(());
            }
        };
        match result {
            Ok((_, report)) if report.has_failures() => tracing::warn!(
                loaded = report.loaded.len(),
                failed = report.failed.len(),
                "received files finished with failures"
            ),
            // Short polling (wait_time = 0s) pauses between empty rounds.
            Ok((0, _)) if short_polls => {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e.chain(), "cannot receive from the work queue; trying again shortly");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
            }
        }
    }
}

/// Polls one job every `job.poll_interval` until `shutdown`; a pass under
/// way then gets `daemon.grace_period` to finish. A failing job logs and
/// tries again next interval; it never stops the others.
async fn job_loop(
    rt: &Runtime,
    job: &Arc<Job>,
    heartbeat: &http::Heartbeat,
    systemd: &systemd::Notifier,
    shutdown: CancellationToken,
) -> Result<()> {
    let grace = rt.config.daemon.grace_period;
    loop {
        heartbeat.beat();
        let pass = run_job_pass(rt, job, Drain::Due);
        tokio::pin!(pass);
        let report = tokio::select! {
            r = &mut pass => r,
            () = shutdown.cancelled() => {
                match tokio::time::timeout(grace, &mut pass).await {
                    Ok(r) => { r?; }
                    Err(_) => tracing::warn!(job = %job.name, "grace period over; stopping mid-pass (uncommitted work is rolled back and redone next start)"),
                }
                return Ok(());
            }
        };
        heartbeat.beat();
        match report {
            Ok(r) => {
                systemd.notify(&format!(
                    "STATUS=job {}: {} loaded, {} failed, {} waiting to settle in its last pass",
                    job.name,
                    r.loaded.len(),
                    r.failed.len() + r.job_errors.len(),
                    r.waiting
                ));
                if r.has_failures() {
                    tracing::warn!(
                        job = %job.name,
                        loaded = r.loaded.len(),
                        failed = r.failed.len(),
                        job_errors = r.job_errors.len(),
                        "pass finished with failures"
                    );
                }
            }
            Err(e) => tracing::error!(job = %job.name, error = %e.chain(), "pass failed"),
        }
        pause_if_failing(rt, job).await;
        tokio::select! {
            () = tokio::time::sleep(job.poll_interval) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// With `pause_after_failures = N`: after N passes of `job` in a row that
/// failed, pauses it as `ferry jobs pause` would (every replica sees it)
/// and raises `job_paused` once; counting starts again after.
async fn pause_if_failing(rt: &Runtime, job: &Job) {
    let Some(limit) = job.pause_after_failures else {
        return;
    };
    let failed = crate::telemetry::jobs::of(&job.name).map_or(0, |j| j.failed_passes);
    if failed < limit {
        return;
    }
    crate::telemetry::jobs::reset_failures(&job.name);
    let why = crate::telemetry::jobs::of(&job.name)
        .and_then(|j| j.last_pass)
        .and_then(|p| p.error)
        .unwrap_or_else(|| "files failed in each of them".into());
    match crate::commands::ops::set_paused(&rt.config, &*rt.warehouse, &job.name, true).await {
        Ok(_) => {
            tracing::error!(job = %job.name, passes = failed, why, "job paused after failed passes in a row (pause_after_failures); resume with `ferry jobs resume`");
            crate::alerts::raise(crate::alerts::Event::new(
                crate::config::AlertKind::JobPaused,
                &job.name,
                "paused",
                &format!(
                    "paused after {failed} failed passes in a row (pause_after_failures = {limit}); last: {why}. Resume with `ferry jobs resume {}`",
                    job.name
                ),
            ));
        }
        Err(e) => {
            tracing::error!(job = %job.name, error = %e.chain(), "cannot pause the failing job; it keeps running")
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

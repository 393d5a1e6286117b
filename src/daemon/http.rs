//! The daemon's HTTP listener:
//! - `GET /healthz`: `200 ok` while the poll loop is alive (it beat within
//!   three poll intervals plus an hour for a long load) and no job's pass
//!   is stuck (no file finished for `daemon.stuck_after`), `503` naming
//!   what is wrong otherwise;
//! - `GET /readyz`: `200 ready` when the staging bucket and the warehouse
//!   answer (each within 5 s; the answer is kept for 5 s, and concurrent
//!   requests share one probe), `503` naming what does not;
//! - `GET /metrics`: every metric in Prometheus' text format;
//! - the status page ([`status`](super::status)): `/`, `/jobs/…`, `/loads`.
//!
//! Requests are served concurrently inside the daemon's own task (no
//! spawned task outlives it), at most [`MAX_CONNECTIONS`] at once (more
//! are closed at once); reading the request and writing the answer each
//! have a deadline, so a slow or stalled client cannot pile up.

use super::request::{Request, Response, Unreadable};
use crate::pipeline::Runtime;
use futures::StreamExt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// What the poll loop reports for liveness.
#[derive(Debug, Default)]
pub struct Heartbeat {
    last_beat_unix: AtomicI64,
}

impl Heartbeat {
    /// Records that the loop is alive now.
    pub fn beat(&self) {
        self.last_beat_unix
            .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
    }

    /// Seconds since the last beat.
    pub fn age_secs(&self) -> i64 {
        chrono::Utc::now().timestamp() - self.last_beat_unix.load(Ordering::Relaxed)
    }
}

/// How long one readiness probe may take, and how long its answer holds.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once; more are closed as they arrive.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The last readiness answer, so frequent probes do not hammer S3 and the
/// warehouse.
#[derive(Debug, Default)]
struct Readiness {
    last: Mutex<Option<(Instant, Result<(), String>)>>,
    /// Held while a probe runs: requests that come meanwhile wait for its
    /// answer instead of each starting its own (a Data API statement on
    /// Redshift).
    probing: tokio::sync::Mutex<()>,
}

impl Readiness {
    fn fresh(&self) -> Option<Result<(), String>> {
        match &*self.last.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((at, answer)) if at.elapsed() < PROBE_TIMEOUT => Some(answer.clone()),
            _ => None,
        }
    }

    async fn check(&self, rt: &Runtime) -> Result<(), String> {
        if let Some(answer) = self.fresh() {
            return answer;
        }
        let _probing = self.probing.lock().await;
        if let Some(answer) = self.fresh() {
            return answer; // another request's probe just answered
        }
        let s3 = tokio::time::timeout(PROBE_TIMEOUT, rt.stager.check());
        let wh = tokio::time::timeout(PROBE_TIMEOUT, rt.warehouse.ping());
        let (s3, wh) = futures::join!(s3, wh);
        let mut problems = Vec::new();
        match s3 {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!("staging: {}", e.chain())),
            Err(_) => problems.push(format!("staging: no answer within {PROBE_TIMEOUT:?}")),
        }
        match wh {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!("warehouse: {}", e.chain())),
            Err(_) => problems.push(format!("warehouse: no answer within {PROBE_TIMEOUT:?}")),
        }
        let answer = if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), answer.clone()));
        answer
    }
}

/// Serves the listener until `stop`.
pub async fn serve(
    listener: TcpListener,
    rt: &Runtime,
    heartbeat: &Heartbeat,
    stale_after: Duration,
    stop: CancellationToken,
) {
    let readiness = Readiness::default();
    let mut open = futures::stream::FuturesUnordered::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((socket, _)) = accepted {
                    if open.len() >= MAX_CONNECTIONS {
                        tracing::debug!("HTTP listener busy ({MAX_CONNECTIONS} connections); closing a new one");
                        drop(socket);
                        continue;
                    }
                    open.push(answer(socket, rt, heartbeat, stale_after, &readiness));
                }
            }
            Some(()) = open.next(), if !open.is_empty() => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn answer(
    mut socket: TcpStream,
    rt: &Runtime,
    heartbeat: &Heartbeat,
    stale_after: Duration,
    readiness: &Readiness,
) {
    let response = match Request::read(&mut socket, CLIENT_TIMEOUT).await {
        Ok(req) => respond(&req, rt, heartbeat, stale_after, readiness).await,
        Err(Unreadable::Gone) => return,
        Err(Unreadable::Bad(why)) => Response::text("400 Bad Request", format!("{why}\n")),
    };
    let _ = tokio::time::timeout(CLIENT_TIMEOUT, socket.write_all(&response.to_bytes())).await;
}

/// The answer to one request: the probes and metrics, else the status
/// page's paths, else `404`.
async fn respond(
    req: &Request,
    rt: &Runtime,
    heartbeat: &Heartbeat,
    stale_after: Duration,
    readiness: &Readiness,
) -> Response {
    let get = matches!(req.method.as_str(), "GET" | "HEAD");
    let mut response = match req.segments.as_slice() {
        [one] if get && one == "healthz" => match health(rt, heartbeat, stale_after) {
            Ok(()) => Response::text("200 OK", "ok\n"),
            Err(why) => Response::text("503 Service Unavailable", format!("{why}\n")),
        },
        [one] if get && one == "readyz" => match readiness.check(rt).await {
            Ok(()) => Response::text("200 OK", "ready\n"),
            Err(why) => Response::text("503 Service Unavailable", format!("not ready: {why}\n")),
        },
        [one] if get && one == "metrics" => Response {
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            ..Response::text("200 OK", crate::telemetry::metrics::render())
        },
        _ => match super::status::route(rt, req).await {
            Some(r) => r,
            None => Response::text(
                "404 Not Found",
                "not found (try /, /healthz, /readyz or /metrics)\n",
            ),
        },
    };
    if req.method == "HEAD" {
        response.head_only = true;
    }
    response
}

/// Whether the daemon is alive: the poll loop beats and no job's pass is
/// stuck; otherwise what is wrong, naming the jobs.
pub fn health(rt: &Runtime, heartbeat: &Heartbeat, stale_after: Duration) -> Result<(), String> {
    if heartbeat.age_secs() > stale_after.as_secs() as i64 {
        return Err(format!("poll loop silent for {}s", heartbeat.age_secs()));
    }
    let stuck = crate::telemetry::liveness::stalled(rt.config.daemon.stuck_after);
    if stuck.is_empty() {
        return Ok(());
    }
    let jobs: Vec<String> = stuck
        .iter()
        .map(|(job, quiet)| format!("job {job}: no file finished for {}s", quiet.as_secs()))
        .collect();
    Err(format!(
        "stuck: {} (daemon.stuck_after = {}s)",
        jobs.join("; "),
        rt.config.daemon.stuck_after.as_secs()
    ))
}

/// Binds the listener, naming the address on failure.
pub async fn bind(addr: SocketAddr) -> crate::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        crate::Error::config(format!(
            "cannot listen on daemon.http_listen = {addr} (in use? set another address, or \"\" to turn it off)"
        ))
        .with_source(e)
    })
}

//! The daemon's HTTP listener:
//! - `GET /healthz`: `200 ok` while the poll loop is alive (it beat within
//!   three poll intervals plus an hour for a long load), `503` otherwise;
//! - `GET /readyz`: `200 ready` when the staging bucket and the warehouse
//!   answer (each within 5 s; the answer is kept for 5 s), `503` naming
//!   what does not;
//! - `GET /metrics`: every metric in Prometheus' text format.
//!
//! Requests are served one connection at a time per accept loop turn but
//! concurrently with each other, inside the daemon's own task (no spawned
//! task outlives it).

use crate::pipeline::Runtime;
use futures::StreamExt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// The last readiness answer, so frequent probes do not hammer S3 and the
/// warehouse.
#[derive(Debug, Default)]
struct Readiness {
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Readiness {
    async fn check(&self, rt: &Runtime) -> Result<(), String> {
        if let Some((at, answer)) = &*self.last.lock().expect("readiness lock")
            && at.elapsed() < PROBE_TIMEOUT
        {
            return answer.clone();
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
        *self.last.lock().expect("readiness lock") = Some((Instant::now(), answer.clone()));
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
    let mut buf = [0u8; 1024];
    let n = match tokio::time::timeout(PROBE_TIMEOUT, socket.read(&mut buf)).await {
        Ok(Ok(n)) => n,
        _ => return,
    };
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let text = "text/plain; charset=utf-8";
    let (status, content_type, body) = match path {
        "/healthz" if heartbeat.age_secs() <= stale_after.as_secs() as i64 => {
            ("200 OK", text, "ok\n".to_string())
        }
        "/healthz" => (
            "503 Service Unavailable",
            text,
            format!("poll loop silent for {}s\n", heartbeat.age_secs()),
        ),
        "/readyz" => match readiness.check(rt).await {
            Ok(()) => ("200 OK", text, "ready\n".to_string()),
            Err(why) => (
                "503 Service Unavailable",
                text,
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            crate::telemetry::metrics::render(),
        ),
        _ => (
            "404 Not Found",
            text,
            "not found (try /healthz, /readyz or /metrics)\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
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

//! The health listener: `GET /healthz` answers `200 ok` while the daemon's
//! poll loop is alive (it beat within three poll intervals plus an hour for
//! a long load), `503` otherwise. `/readyz` and `/metrics` come with
//! the production issue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
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

/// Serves `/healthz` on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    heartbeat: Arc<Heartbeat>,
    stale_after: Duration,
    stop: CancellationToken,
) {
    loop {
        let (mut socket, _) = tokio::select! {
            r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
            () = stop.cancelled() => return,
        };
        let heartbeat = heartbeat.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/healthz" if heartbeat.age_secs() <= stale_after.as_secs() as i64 => {
                    ("200 OK", "ok\n".to_string())
                }
                "/healthz" => (
                    "503 Service Unavailable",
                    format!("poll loop silent for {}s\n", heartbeat.age_secs()),
                ),
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
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

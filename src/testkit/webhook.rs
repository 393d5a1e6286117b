//! A webhook receiver for alert tests: an HTTP/1.1 server on loopback that
//! keeps every POSTed JSON body and answers each with the next status of
//! a script (then `200`), so retries are exercised against a real socket.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running receiver; stops when dropped.
pub struct WebhookServer {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebhookServer {
    /// Starts a receiver answering `statuses` in turn (e.g. `[503]`: the
    /// first POST fails), then `200`.
    pub async fn start(statuses: &[u16]) -> std::io::Result<WebhookServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(
            statuses.iter().copied().collect::<VecDeque<u16>>(),
        ));
        let kept = bodies.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let kept = kept.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let Ok(Some(body)) =
                        tokio::time::timeout(Duration::from_secs(10), read_post(&mut s)).await
                    else {
                        return;
                    };
                    let status = script.lock().unwrap().pop_front().unwrap_or(200);
                    if status == 200
                        && let Ok(v) = serde_json::from_slice(&body)
                    {
                        kept.lock().unwrap().push(v);
                    }
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                    );
                    let _ = s.write_all(answer.as_bytes()).await;
                });
            }
        });
        Ok(WebhookServer { url, bodies, task })
    }

    /// The bodies accepted so far.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Waits up to `wait` until `pred` holds of the bodies; returns them.
    pub async fn wait_for(
        &self,
        wait: Duration,
        pred: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + wait;
        loop {
            let b = self.bodies();
            if pred(&b) || Instant::now() > deadline {
                return b;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One request's body (`None` for anything but a whole request).
async fn read_post(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            break at;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 65536 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())?;
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some(body)
}

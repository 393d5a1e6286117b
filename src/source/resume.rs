//! A download that survives dropped connections: on a read error it
//! reopens the file at the offset it reached (FTP `REST`, an SFTP offset
//! read, a seek) instead of starting over, a bounded number of times.
//!
//! Nothing waits forever: a stream that delivers no byte for the source's
//! `io_timeout` fails with a timeout (and is resumed like any dropped
//! connection), and so does a reopen that does not answer in time.
//!
//! Whether the bytes add up is checked by the caller, which compares the
//! byte count with the listed size and hashes the whole stream.

use super::{ByteStream, RemoteEntry, Source};
use crate::error::Result;
use crate::retry::RetryPolicy;
use futures::future::BoxFuture;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A stream that fails with [`std::io::ErrorKind::TimedOut`] when no byte
/// arrives for `idle` (a frozen server, a cut network that sends no
/// reset), naming the file.
pub struct IdleTimeout {
    inner: ByteStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    /// A read is pending: the deadline runs. It starts when a read starts,
    /// so a reader that paused (backpressure from staging) is not blamed
    /// on the server.
    waiting: bool,
    what: String,
}

impl IdleTimeout {
    /// Wraps `inner`, a download described by `what` (server and path).
    pub fn new(inner: ByteStream, idle: Duration, what: String) -> Self {
        IdleTimeout {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            waiting: false,
            what,
        }
    }
}

impl AsyncRead for IdleTimeout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.waiting {
            let next = Instant::now() + this.idle;
            this.deadline.as_mut().reset(next);
            this.waiting = true;
        }
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.waiting = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                ready!(this.deadline.as_mut().poll(cx));
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no bytes for {}s while downloading {} (io_timeout)",
                        this.idle.as_secs(),
                        this.what
                    ),
                )))
            }
        }
    }
}

/// Reopen attempts per download ([`RetryPolicy::RESUME`]).
pub const MAX_RESUMES: u32 = RetryPolicy::RESUME.attempts - 1;

enum State {
    Reading(ByteStream),
    Reopening(BoxFuture<'static, Result<ByteStream>>),
}

/// A resuming download of one file.
pub struct Resuming {
    src: Arc<dyn Source>,
    path: String,
    offset: u64,
    resumes_left: u32,
    state: State,
    /// The version listed: checked again before every resume, so a file
    /// rewritten meanwhile is never continued from the new bytes.
    version: Option<RemoteEntry>,
    /// Set when the read gave up for this pass (see [`Resuming::retry_later`]).
    give_up: Arc<AtomicBool>,
    /// Bytes read so far, across resumes (see [`Resuming::bytes_read`]).
    read: Arc<AtomicU64>,
}

impl Resuming {
    /// Opens `path` on `src` from its first byte.
    pub async fn open(src: Arc<dyn Source>, path: &str) -> Result<Resuming> {
        Self::start(src, path, None).await
    }

    /// Opens the listed `entry`; every resume first checks that the file
    /// is still that version (size and mtime), and every read is made
    /// conditional on it where the source can ([`Source::open_entry`]).
    pub async fn open_version(src: Arc<dyn Source>, entry: &RemoteEntry) -> Result<Resuming> {
        Self::start(src, &entry.path, Some(entry.clone())).await
    }

    async fn start(
        src: Arc<dyn Source>,
        path: &str,
        version: Option<RemoteEntry>,
    ) -> Result<Resuming> {
        let (first, etag) = open_within(src.clone(), path.to_string(), version.clone(), 0).await?;
        // Resumes are conditional on the entity tag of what was opened
        // first, where the listing did not give one.
        let version = version.map(|mut v| {
            v.etag = v.etag.or(etag);
            v
        });
        Ok(Resuming {
            src,
            path: path.to_string(),
            offset: 0,
            resumes_left: MAX_RESUMES,
            state: State::Reading(first),
            version,
            give_up: Arc::default(),
            read: Arc::default(),
        })
    }

    /// Bytes read from the source so far, across resumes: a counter the
    /// caller keeps after the stream moved into a reader.
    pub fn bytes_read(&self) -> Arc<AtomicU64> {
        self.read.clone()
    }

    /// Becomes true when the read failed in a way that another try in
    /// this pass would not mend: a resume found the file changed since it
    /// was listed (it is still being written), or every resume was used
    /// up. The caller then leaves the file for a later pass instead of
    /// reading it again now (so one file is not opened again and again).
    pub fn retry_later(&self) -> Arc<AtomicBool> {
        self.give_up.clone()
    }

    /// Bytes delivered so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn reopen(&mut self) {
        let attempt = MAX_RESUMES - self.resumes_left;
        self.resumes_left -= 1;
        let (src, path, offset) = (self.src.clone(), self.path.clone(), self.offset);
        let version = self.version.clone();
        self.state = State::Reopening(Box::pin(async move {
            tokio::time::sleep(RetryPolicy::RESUME.delay(attempt + 1)).await;
            if let Some(v) = &version {
                // A changed file is not resumed at all; the file as a
                // whole is read again once it has settled.
                if let Ok(Some(now)) = super::change(&*src, v).await {
                    return Err(super::changed_error(v, &now));
                }
            }
            Ok(open_within(src, path, version, offset).await?.0)
        }));
    }
}

/// Opens `path` (the listed `version` of it, if known) at `offset`, within
/// the source's `io_timeout`, as a stream that fails when it stalls for as
/// long; with the entity tag of what it opened, if the server tells one.
async fn open_within(
    src: Arc<dyn Source>,
    path: String,
    version: Option<RemoteEntry>,
    offset: u64,
) -> Result<(ByteStream, Option<String>)> {
    let open = async {
        match &version {
            Some(v) => src.open_entry(v, offset).await,
            None => Ok((src.open(&path, offset).await?, None)),
        }
    };
    let Some(idle) = src.io_timeout() else {
        return open.await;
    };
    let what = format!("{} from {}", path, src.describe());
    match tokio::time::timeout(idle, open).await {
        Ok(opened) => {
            let (stream, etag) = opened?;
            let stream: ByteStream = Box::new(IdleTimeout::new(stream, idle, what));
            Ok((stream, etag))
        }
        Err(_) => Err(crate::Error::transient(format!(
            "no answer within {}s opening {what} at byte {offset} (io_timeout)",
            idle.as_secs()
        ))),
    }
}

impl AsyncRead for Resuming {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Reading(s) => {
                    let before = buf.filled().len();
                    match ready!(Pin::new(s).poll_read(cx, buf)) {
                        Ok(()) => {
                            let n = (buf.filled().len() - before) as u64;
                            this.offset += n;
                            this.read.fetch_add(n, Ordering::Relaxed);
                            return Poll::Ready(Ok(()));
                        }
                        Err(e) if this.resumes_left > 0 => {
                            tracing::warn!(path = %this.path, offset = this.offset, error = %e, "download interrupted; resuming at the offset reached");
                            this.reopen();
                        }
                        Err(e) => {
                            this.give_up.store(true, Ordering::Relaxed);
                            return Poll::Ready(Err(e));
                        }
                    }
                }
                State::Reopening(f) => match ready!(f.as_mut().poll(cx)) {
                    Ok(s) => this.state = State::Reading(s),
                    Err(e) if e.is_transient() && !e.only_later() && this.resumes_left > 0 => {
                        this.reopen()
                    }
                    Err(e) => {
                        if e.only_later() || this.resumes_left == 0 {
                            this.give_up.store(true, Ordering::Relaxed);
                        }
                        return Poll::Ready(Err(std::io::Error::other(format!(
                            "cannot resume {} at byte {}: {}",
                            this.path,
                            this.offset,
                            e.chain()
                        ))));
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that never delivers times out after `idle`; one whose
    /// reader pauses longer than `idle` between reads does not.
    #[tokio::test(start_paused = true)]
    async fn only_a_pending_read_counts_against_the_idle_deadline() {
        use tokio::io::AsyncReadExt;
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut s = IdleTimeout::new(Box::new(rx), Duration::from_secs(5), "f from s".into());
        tokio::io::AsyncWriteExt::write_all(&mut tx, b"a")
            .await
            .unwrap();
        let mut buf = [0u8; 1];
        s.read_exact(&mut buf).await.unwrap();
        // The reader pauses for longer than the deadline, then waits 1 s
        // for the next byte: not a timeout.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tokio::io::AsyncWriteExt::write_all(&mut tx, b"b")
                .await
                .unwrap();
            tx
        });
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"b");
        let _tx = late.await.unwrap();
        let e = s.read_exact(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(
            e.to_string()
                .contains("no bytes for 5s while downloading f from s"),
            "{e}"
        );
    }
}

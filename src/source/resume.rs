//! A download that survives dropped connections: on a read error it
//! reopens the file at the offset it reached (FTP `REST`, an SFTP offset
//! read, a seek) instead of starting over, a bounded number of times.
//!
//! Whether the bytes add up is checked by the caller, which compares the
//! byte count with the listed size and hashes the whole stream.

use super::{ByteStream, Source};
use crate::error::Result;
use futures::future::BoxFuture;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};

/// Reopen attempts per download.
pub const MAX_RESUMES: u32 = 5;

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
}

impl Resuming {
    /// Opens `path` on `src` from its first byte.
    pub async fn open(src: Arc<dyn Source>, path: &str) -> Result<Resuming> {
        let first = src.open(path, 0).await?;
        Ok(Resuming {
            src,
            path: path.to_string(),
            offset: 0,
            resumes_left: MAX_RESUMES,
            state: State::Reading(first),
        })
    }

    /// Bytes delivered so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn reopen(&mut self) {
        let attempt = MAX_RESUMES - self.resumes_left;
        self.resumes_left -= 1;
        let (src, path, offset) = (self.src.clone(), self.path.clone(), self.offset);
        self.state = State::Reopening(Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt)).await;
            src.open(&path, offset).await
        }));
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
                            this.offset += (buf.filled().len() - before) as u64;
                            return Poll::Ready(Ok(()));
                        }
                        Err(e) if this.resumes_left > 0 => {
                            tracing::warn!(path = %this.path, offset = this.offset, error = %e, "download interrupted; resuming at the offset reached");
                            this.reopen();
                        }
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
                State::Reopening(f) => match ready!(f.as_mut().poll(cx)) {
                    Ok(s) => this.state = State::Reading(s),
                    Err(e) if e.is_transient() && this.resumes_left > 0 => this.reopen(),
                    Err(e) => {
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

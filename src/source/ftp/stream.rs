//! A download that reads the server's transfer reply at its end.
//!
//! FTP has no end-of-file marker: a data connection that closes early looks
//! like a short file. Only the control connection's reply (226 done, 426
//! aborted) tells them apart, so end-of-stream is reported only after
//! `finish()` has read a positive reply; anything else is an I/O error.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use suppaftp::tokio::{TokioTlsStream, TransferStream};
use tokio::io::{AsyncRead, ReadBuf};

type Finishing = Pin<Box<dyn Future<Output = suppaftp::FtpResult<()>> + Send>>;

enum State<T: TokioTlsStream + Send> {
    Reading(TransferStream<T>),
    Finishing(Finishing),
    Done,
}

/// Wraps a RETR stream.
pub struct FinishOnEof<T: TokioTlsStream + Send> {
    state: State<T>,
    path: String,
}

impl<T: TokioTlsStream + Send + 'static> FinishOnEof<T> {
    /// Wraps `stream`, a download of `path`.
    pub fn new(stream: TransferStream<T>, path: String) -> Self {
        FinishOnEof {
            state: State::Reading(stream),
            path,
        }
    }
}

impl<T: TokioTlsStream + Send + 'static> AsyncRead for FinishOnEof<T> {
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
                    ready!(Pin::new(&mut *s).poll_read(cx, buf))?;
                    if buf.filled().len() > before || buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let State::Reading(s) = std::mem::replace(&mut this.state, State::Done) else {
                        unreachable!("state was Reading")
                    };
                    this.state = State::Finishing(Box::pin(s.finish()));
                }
                State::Finishing(f) => {
                    let r = ready!(f.as_mut().poll(cx));
                    this.state = State::Done;
                    return Poll::Ready(r.map_err(|e| {
                        std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!(
                                "the server did not confirm the transfer of {}: {e}",
                                this.path
                            ),
                        )
                    }));
                }
                State::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

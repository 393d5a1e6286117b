//! The FTP source's control connections: a small pool, one connection per
//! command or download in flight.
//!
//! FTP runs one data transfer per control connection, and while a download
//! is open its control connection cannot serve anything else (another RETR
//! is refused, a SIZE or RNFR would wait behind the transfer or read its
//! reply). So downloads at the same time need a connection each. The pool
//! keeps at most the source's `max_transfers` connections: a [`Lease`]
//! takes an idle one (or leaves the caller to open one) and gives it back
//! when dropped; a download keeps its lease until the server confirmed the
//! transfer ([`Leased`]). A connection that saw an error or a transfer that
//! did not finish is closed, never reused.
//!
//! Servers often cap connections per client (vsftpd `max_per_ip`,
//! pure-ftpd `-c`, ProFTPD `MaxClientsPerHost`). When a new connection is
//! refused for that reason while others are open, the pool shrinks by one
//! ([`Pool::shrink`]) and the caller waits for a connection instead of
//! failing a file. A server's count can lag (a connection just closed may
//! still count for a moment), so a shrunk pool grows back by one a minute
//! later and tries again ([`REGROW_AFTER`]).

use super::Conn;
use crate::error::Error;
use crate::source::ByteStream;
use crate::telemetry;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a pool stays shrunk before it tries one connection more.
pub(super) const REGROW_AFTER: Duration = Duration::from_secs(60);

/// What leases and the pool share.
struct Shared {
    /// The source's name, for metrics.
    source: String,
    idle: Mutex<Vec<Conn>>,
    /// Connections open: idle plus leased.
    open: AtomicUsize,
    /// Connections the pool may keep now.
    limit: AtomicUsize,
}

impl Shared {
    /// Publishes the open count and the limit.
    fn report(&self) {
        telemetry::source_connections(
            &self.source,
            self.open.load(Ordering::SeqCst),
            self.limit.load(Ordering::SeqCst),
        );
    }
}

/// Up to `limit` control connections to one server.
pub(super) struct Pool {
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    max: usize,
    regrow_after: Duration,
    /// When the pool last shrank or grew back, while below `max`.
    changed: Mutex<Option<Instant>>,
}

impl Pool {
    /// An empty pool of at most `max` connections (at least one) to the
    /// source named `source`.
    pub(super) fn new(source: &str, max: usize) -> Pool {
        Self::regrowing_after(source, max, REGROW_AFTER)
    }

    fn regrowing_after(source: &str, max: usize, regrow_after: Duration) -> Pool {
        let max = max.max(1);
        Pool {
            shared: Arc::new(Shared {
                source: source.to_string(),
                idle: Mutex::new(Vec::new()),
                open: AtomicUsize::new(0),
                limit: AtomicUsize::new(max),
            }),
            slots: Arc::new(Semaphore::new(max)),
            max,
            regrow_after,
            changed: Mutex::new(None),
        }
    }

    /// Waits for a free slot; the lease carries the most recently used
    /// idle connection, or none (the caller opens one and [`Lease::put`]s
    /// it).
    pub(super) async fn lease(&self) -> Lease {
        self.regrow();
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let conn = self.shared.idle.lock().expect("pool lock").pop();
        Lease {
            conn,
            shared: self.shared.clone(),
            slot: Some(slot),
        }
    }

    /// Gives up `lease`'s slot for good, after the server refused one
    /// more connection: the pool then keeps one fewer. Refuses (false)
    /// when no other connection is open or one slot is all that is left,
    /// since then the refusal is not about a per-client limit.
    pub(super) fn shrink(&self, mut lease: Lease) -> bool {
        lease.discard();
        if self.shared.open.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let shrunk = self
            .shared
            .limit
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > 1).then(|| n - 1)
            })
            .is_ok();
        if shrunk && let Some(slot) = lease.slot.take() {
            slot.forget();
            *self.changed.lock().expect("pool lock") = Some(Instant::now());
            self.shared.report();
        }
        shrunk
    }

    /// One slot back, `regrow_after` since the pool last changed size.
    fn regrow(&self) {
        let mut changed = self.changed.lock().expect("pool lock");
        let Some(at) = *changed else { return };
        if at.elapsed() < self.regrow_after {
            return;
        }
        let limit = self.shared.limit.fetch_add(1, Ordering::SeqCst) + 1;
        self.slots.add_permits(1);
        *changed = (limit < self.max).then(Instant::now);
        self.shared.report();
        tracing::debug!(connections = limit, "FTP connection pool grows back by one");
    }

    /// Connections the pool may keep now.
    pub(super) fn limit(&self) -> usize {
        self.shared.limit.load(Ordering::SeqCst)
    }

    /// Connections open now (idle and leased).
    pub(super) fn open(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
}

/// One slot of the pool, with its connection once there is one.
pub(super) struct Lease {
    conn: Option<Conn>,
    shared: Arc<Shared>,
    slot: Option<OwnedSemaphorePermit>,
}

impl Lease {
    /// The connection, if the lease has one.
    pub(super) fn conn(&mut self) -> Option<&mut Conn> {
        self.conn.as_mut()
    }

    /// Hands the lease a newly opened connection.
    pub(super) fn put(&mut self, conn: Conn) {
        self.discard();
        self.shared.open.fetch_add(1, Ordering::SeqCst);
        self.conn = Some(conn);
        self.shared.report();
    }

    /// Closes the connection (after an error, or a transfer left unread).
    pub(super) fn discard(&mut self) {
        if self.conn.take().is_some() {
            self.shared.open.fetch_sub(1, Ordering::SeqCst);
            self.shared.report();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // A pool that shrank closes what it no longer keeps; otherwise the
        // connection goes back to the idle list before the slot frees
        // (fields drop after this body), so the next lease finds it.
        let open = self.shared.open.load(Ordering::SeqCst);
        if open > self.shared.limit.load(Ordering::SeqCst) {
            self.discard();
        } else if let Some(conn) = self.conn.take() {
            self.shared.idle.lock().expect("pool lock").push(conn);
        }
    }
}

/// Whether `err` (from opening a connection) is a server turning away
/// one connection more than it allows a client: vsftpd and pure-ftpd
/// answer 421 "too many connections", ProFTPD 530 "maximum number of
/// clients".
pub(super) fn is_connection_limit(err: &Error) -> bool {
    let text = err.chain().to_ascii_lowercase();
    (text.contains("replied 421") || text.contains("replied 530"))
        && (text.contains("too many") || text.contains("maximum"))
}

/// A download holding its connection's lease: the connection goes back to
/// the pool once the stream reached its end (after the server confirmed
/// the transfer) and is closed if the stream fails or is dropped before.
pub(super) struct Leased {
    inner: ByteStream,
    lease: Option<Lease>,
}

impl Leased {
    /// `inner`, a download running on `lease`'s connection.
    pub(super) fn new(inner: ByteStream, lease: Lease) -> Leased {
        Leased {
            inner,
            lease: Some(lease),
        }
    }
}

impl AsyncRead for Leased {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = ready!(Pin::new(&mut this.inner).poll_read(cx, buf));
        match &read {
            Ok(()) if buf.filled().len() == before && buf.remaining() > 0 => {
                // The end, confirmed: the connection is free again.
                this.lease = None;
            }
            Ok(()) => {}
            Err(_) => {
                if let Some(lease) = this.lease.as_mut() {
                    lease.discard();
                }
                this.lease = None;
            }
        }
        Poll::Ready(read)
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.as_mut() {
            lease.discard();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_per_client_limit_is_told_from_other_refusals() {
        let limit = [
            "source v: cannot connect to h:21: server replied 421 There are too many connections from your internet address.",
            "source v: cannot connect to h:21: server replied 421 Too many connections (2) from this IP",
            "source v: login as \"u\" on h:21 failed: server replied 530 Sorry, the maximum number of clients (2) from your host are already connected.",
        ];
        for text in limit {
            assert!(is_connection_limit(&Error::transient(text)), "{text}");
        }
        let other = [
            "source v: login as \"u\" on h:21 failed: server replied 530 Login incorrect.",
            "source v: cannot connect to h:21: server replied 421 Service not available",
            "source v: cannot connect to h:21: connection refused",
        ];
        for text in other {
            assert!(!is_connection_limit(&Error::transient(text)), "{text}");
        }
    }

    #[tokio::test]
    async fn a_pool_shrinks_only_while_another_connection_is_open() {
        let pool = Pool::new("test", 3);
        // No connection open: a refusal is not about a limit.
        let lease = pool.lease().await;
        assert!(!pool.shrink(lease));
        assert_eq!(pool.limit(), 3);
        // The slot came back: three leases still fit.
        let a = pool.lease().await;
        let b = pool.lease().await;
        let c = pool.lease().await;
        drop((a, b, c));
        pool.shared.open.store(1, Ordering::SeqCst);
        let lease = pool.lease().await;
        assert!(pool.shrink(lease));
        assert_eq!(pool.limit(), 2);
        assert_eq!(pool.slots.available_permits(), 2);
        let lease = pool.lease().await;
        assert!(pool.shrink(lease));
        let lease = pool.lease().await;
        assert!(!pool.shrink(lease), "never below one");
        assert_eq!(pool.limit(), 1);
        assert_eq!(pool.slots.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_shrunk_pool_grows_back_one_slot_at_a_time() {
        let pool = Pool::regrowing_after("test", 3, Duration::from_millis(50));
        pool.shared.open.store(1, Ordering::SeqCst);
        for _ in 0..2 {
            let lease = pool.lease().await;
            assert!(pool.shrink(lease));
        }
        assert_eq!(pool.limit(), 1);
        drop(pool.lease().await);
        assert_eq!(pool.limit(), 1, "not before regrow_after");
        tokio::time::sleep(Duration::from_millis(60)).await;
        drop(pool.lease().await);
        assert_eq!(pool.limit(), 2);
        drop(pool.lease().await);
        assert_eq!(pool.limit(), 2, "one slot per interval");
        tokio::time::sleep(Duration::from_millis(60)).await;
        drop(pool.lease().await);
        assert_eq!(pool.limit(), 3);
        tokio::time::sleep(Duration::from_millis(60)).await;
        drop(pool.lease().await);
        assert_eq!(pool.limit(), 3, "never past max");
        assert_eq!(pool.slots.available_permits(), 3);
    }
}

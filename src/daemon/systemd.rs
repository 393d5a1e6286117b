//! systemd's notify protocol, without libsystemd: a datagram per state
//! change to the socket in `$NOTIFY_SOCKET` (a path, or `@name` for the
//! abstract namespace). `READY=1` once the daemon serves, `WATCHDOG=1`
//! every half `$WATCHDOG_USEC` while the poll loop is alive, `STOPPING=1`
//! when a shutdown begins, `STATUS=…` after each pass. Outside systemd
//! (no `$NOTIFY_SOCKET`) every call does nothing.
//!
//! Sending never blocks: the socket is non-blocking, and a datagram that
//! does not fit the receiver's queue (systemd busy for a moment) is dropped
//! rather than waited for — the next watchdog ping follows soon, while a
//! blocked send would stall a runtime thread and with it SIGTERM handling.
//! After `STOPPING=1` only `WATCHDOG=1` (the drain is still alive) and
//! `EXTEND_TIMEOUT_USEC=` are sent, as the protocol allows; `READY=1` and
//! `STATUS=` are not.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Where notifications go, if anywhere.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// `STOPPING=1` was sent.
    stopping: AtomicBool,
    /// Datagrams dropped because the receiver's queue was full.
    dropped: AtomicU64,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a notifier that does nothing without it (or
    /// when the socket cannot be used, which is logged once).
    pub fn from_env() -> Notifier {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(path) if !path.is_empty() => Notifier::to(&path),
            _ => Notifier::off(),
        }
    }

    /// A notifier that sends nothing.
    pub fn off() -> Notifier {
        Notifier {
            target: None,
            stopping: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        }
    }

    /// To the socket at `path` (`@name`: abstract).
    pub fn to(path: &str) -> Notifier {
        let target = (|| -> std::io::Result<(UnixDatagram, SocketAddr)> {
            let addr = match path.strip_prefix('@') {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    SocketAddr::from_abstract_name(name.as_bytes())?
                }
                None => SocketAddr::from_pathname(path)?,
            };
            let socket = UnixDatagram::unbound()?;
            socket.set_nonblocking(true)?;
            Ok((socket, addr))
        })();
        match target {
            Ok(t) => Notifier {
                target: Some(t),
                ..Notifier::off()
            },
            Err(e) => {
                tracing::warn!(socket = %path, error = %e, "cannot use NOTIFY_SOCKET; systemd will not hear from ferry");
                Notifier::off()
            }
        }
    }

    /// Sends `state` (e.g. `READY=1`) without ever waiting: a full queue
    /// drops the datagram, other failures are logged, none is fatal. After
    /// `STOPPING=1`, states the protocol does not expect then are not sent.
    pub fn notify(&self, state: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        if state.starts_with("STOPPING=") {
            self.stopping.store(true, Ordering::SeqCst);
        } else if self.stopping.load(Ordering::SeqCst)
            && !(state == "WATCHDOG=1" || state.starts_with("EXTEND_TIMEOUT_USEC="))
        {
            tracing::debug!(state, "not sent to systemd after STOPPING=1");
            return;
        }
        match socket.send_to_addr(state.as_bytes(), addr) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::debug!(
                    state,
                    dropped = n,
                    "systemd's notify queue is full; datagram dropped"
                );
            }
            Err(e) => tracing::warn!(error = %e, state, "cannot notify systemd"),
        }
    }

    /// Datagrams dropped so far because the receiver did not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether notifications go anywhere.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when it is
/// set for this process (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim() != std::process::id().to_string()
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_arrive_as_datagrams_on_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(path.to_str().unwrap());
        assert!(n.enabled());
        n.notify("READY=1");
        n.notify("STATUS=2 files loaded");
        let mut buf = [0u8; 64];
        let got = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..got], b"READY=1");
        let got = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..got], b"STATUS=2 files loaded");
    }

    /// Regression: `ferry run` hung after STOPPING=1 when the receiver
    /// stopped reading — the blocking send waited for room forever.
    #[test]
    fn a_full_queue_drops_datagrams_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let _listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(path.to_str().unwrap());
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Far more than any receive queue holds; nobody reads.
            for _ in 0..100_000 {
                n.notify("WATCHDOG=1");
            }
            done_tx.send(n.dropped()).unwrap();
        });
        let dropped = done_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("notify never blocks");
        assert!(dropped > 0, "the queue filled and datagrams were dropped");
    }

    #[test]
    fn after_stopping_only_watchdog_pings_are_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let n = Notifier::to(path.to_str().unwrap());
        n.notify("STOPPING=1");
        n.notify("STATUS=job a: 1 loaded");
        n.notify("READY=1");
        n.notify("WATCHDOG=1");
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(len) = listener.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        assert_eq!(got, ["STOPPING=1", "WATCHDOG=1"]);
    }

    #[test]
    fn without_a_socket_nothing_is_sent() {
        let n = Notifier::off();
        assert!(!n.enabled());
        n.notify("READY=1");
    }
}

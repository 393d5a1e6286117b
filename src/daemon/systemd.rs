//! systemd's notify protocol, without libsystemd: a datagram per state
//! change to the socket in `$NOTIFY_SOCKET` (a path, or `@name` for the
//! abstract namespace). `READY=1` once the daemon serves, `WATCHDOG=1`
//! every half `$WATCHDOG_USEC` while the poll loop is alive, `STOPPING=1`
//! when a shutdown begins, `STATUS=…` after each pass. Outside systemd
//! (no `$NOTIFY_SOCKET`) every call does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go, if anywhere.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a notifier that does nothing without it (or
    /// when the socket cannot be used, which is logged once).
    pub fn from_env() -> Notifier {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(path) if !path.is_empty() => Notifier::to(&path),
            _ => Notifier { target: None },
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
            Ok((UnixDatagram::unbound()?, addr))
        })();
        match target {
            Ok(t) => Notifier { target: Some(t) },
            Err(e) => {
                tracing::warn!(socket = %path, error = %e, "cannot use NOTIFY_SOCKET; systemd will not hear from ferry");
                Notifier { target: None }
            }
        }
    }

    /// Sends `state` (e.g. `READY=1`); failures are logged, never fatal.
    pub fn notify(&self, state: &str) {
        if let Some((socket, addr)) = &self.target
            && let Err(e) = socket.send_to_addr(state.as_bytes(), addr)
        {
            tracing::warn!(error = %e, state, "cannot notify systemd");
        }
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

    #[test]
    fn without_a_socket_nothing_is_sent() {
        let n = Notifier { target: None };
        assert!(!n.enabled());
        n.notify("READY=1");
    }
}

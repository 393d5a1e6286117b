//! In-process stand-ins for the servers ferry talks to, for tests and for
//! `ferry-dev-stack`: an S3 server (s3s + s3s-fs), an SFTP server (russh +
//! russh-sftp, backed by a folder) and an FTP server (libunftp, backed by a
//! folder), and a Redshift Data API endpoint that executes on PostgreSQL.
//! Each binds `127.0.0.1:0` (or a fixed port for the dev stack)
//! and stops when dropped.
//!
//! Built only with the `testkit` feature; ferry itself never links them.

pub mod browser;
pub mod ftp;
pub mod moto;
pub mod proxy;
pub mod redshift_data;
pub mod s3;
pub mod sftp;
pub mod webhook;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How often a test server served each file, by file name (the last part
/// of the path the client asked for).
#[derive(Debug, Clone, Default)]
pub struct Fetches(Arc<Mutex<HashMap<String, u64>>>);

impl Fetches {
    /// Counts one fetch of `path`.
    pub fn record(&self, path: &str) {
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        *self
            .0
            .lock()
            .expect("fetches lock")
            .entry(name)
            .or_default() += 1;
    }

    /// How often the file named `name` was fetched.
    pub fn of(&self, name: &str) -> u64 {
        self.0
            .lock()
            .expect("fetches lock")
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// Every file name fetched, with its count.
    pub fn all(&self) -> HashMap<String, u64> {
        self.0.lock().expect("fetches lock").clone()
    }
}

/// Accepts connections on `listener` until `stop`, serving each (HTTP/1 or
/// 2) with a service from `make`; a stop also ends open connections.
pub(crate) fn serve_http<S, B>(
    listener: tokio::net::TcpListener,
    stop: tokio_util::sync::CancellationToken,
    make: impl Fn() -> S + Send + 'static,
) where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    tokio::spawn(async move {
        let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        loop {
            let socket = tokio::select! {
                r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                () = stop.cancelled() => break,
            };
            // Small requests and replies (S3 GETs of small parts, Data API
            // polls) must not wait out Nagle's algorithm against delayed ACKs.
            let _ = socket.set_nodelay(true);
            let conn = http
                .serve_connection(TokioIo::new(socket), make())
                .into_owned();
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = conn => {}
                    () = stop.cancelled() => {}
                }
            });
        }
    });
}

/// The repository's `testdata/` folder.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// A free TCP port on 127.0.0.1 (for servers that only take an address).
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

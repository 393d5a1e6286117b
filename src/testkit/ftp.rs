//! An FTP server on a local folder (libunftp + unftp-sbe-fs). Anonymous:
//! any user name and password log in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

/// A running FTP server; stops when dropped.
pub struct FtpServer {
    /// Listening address.
    pub addr: SocketAddr,
    /// Served folder.
    pub root: PathBuf,
    /// Every file downloaded whole (a RETR that finished), by file name.
    pub fetches: super::Fetches,
    stop: CancellationToken,
}

/// Counts finished downloads.
#[derive(Debug)]
struct Counted(super::Fetches);

#[async_trait::async_trait]
impl libunftp::notification::DataListener for Counted {
    async fn receive_data_event(
        &self,
        e: libunftp::notification::DataEvent,
        _m: libunftp::notification::EventMeta,
    ) {
        if let libunftp::notification::DataEvent::Got { path, .. } = e {
            self.0.record(&path);
        }
    }
}

impl FtpServer {
    /// Serves `root` on 127.0.0.1:`port` (0 picks a free port).
    pub async fn start(root: &Path, port: u16) -> std::io::Result<FtpServer> {
        Self::start_inner(root, port, None, 600).await
    }

    /// Like [`FtpServer::start`] on a free port, closing control
    /// connections idle for `idle_secs`.
    pub async fn start_with_idle_timeout(
        root: &Path,
        idle_secs: u64,
    ) -> std::io::Result<FtpServer> {
        Self::start_inner(root, 0, None, idle_secs).await
    }

    /// Like [`FtpServer::start`], with explicit FTPS (`AUTH TLS`) using the
    /// test certificate in `testdata/tls` (for `localhost` and 127.0.0.1).
    pub async fn start_tls(root: &Path, port: u16) -> std::io::Result<FtpServer> {
        let tls = super::testdata().join("tls");
        Self::start_inner(
            root,
            port,
            Some((tls.join("server.pem"), tls.join("server.key"))),
            600,
        )
        .await
    }

    async fn start_inner(
        root: &Path,
        port: u16,
        tls: Option<(PathBuf, PathBuf)>,
        idle_secs: u64,
    ) -> std::io::Result<FtpServer> {
        std::fs::create_dir_all(root)?;
        let port = if port == 0 { super::free_port()? } else { port };
        let addr: SocketAddr = format!("127.0.0.1:{port}")
            .parse()
            .expect("a valid address");
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let served = root.to_path_buf();
        let mut builder = libunftp::ServerBuilder::new(Box::new(move || {
            unftp_sbe_fs::Filesystem::new(served.clone()).expect("the served folder exists")
        }));
        if let Some((cert, key)) = tls {
            builder = builder.ftps(cert, key);
        }
        let fetches = super::Fetches::default();
        builder = builder.notify_data(Counted(fetches.clone()));
        let server = builder
            .greeting("ferry test FTP server")
            .idle_session_timeout(idle_secs)
            .passive_host(std::net::Ipv4Addr::LOCALHOST)
            .shutdown_indicator(async move {
                stopped.cancelled().await;
                libunftp::options::Shutdown::new()
                    .grace_period(std::time::Duration::from_millis(100))
            })
            .build()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = server.listen(addr.to_string()).await {
                tracing::warn!(error = %e, "test FTP server stopped");
            }
        });
        // Wait until it accepts connections.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(FtpServer {
                    addr,
                    root: root.to_path_buf(),
                    fetches,
                    stop,
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(std::io::Error::other(format!(
            "test FTP server did not start on {addr}"
        )))
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

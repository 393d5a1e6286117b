//! An S3 server on a local folder (s3s-fs), with static credentials.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Access key id of the test server.
pub const ACCESS_KEY: &str = "ferry-test-access";
/// Secret key of the test server.
pub const SECRET_KEY: &str = "ferry-test-secret";

/// A running S3 server; stops when dropped.
pub struct S3Server {
    /// Listening address.
    pub addr: SocketAddr,
    /// The folder holding buckets (one sub-folder each).
    pub root: PathBuf,
    stop: CancellationToken,
}

impl S3Server {
    /// Serves `root` on `bind` (use `127.0.0.1:0` for a free port) with the
    /// test credentials [`ACCESS_KEY`] and [`SECRET_KEY`].
    pub async fn start(root: &Path, bind: &str) -> std::io::Result<S3Server> {
        Self::start_with_credentials(root, bind, ACCESS_KEY, SECRET_KEY).await
    }

    /// Serves `root` on `bind`, accepting one access key and secret.
    pub async fn start_with_credentials(
        root: &Path,
        bind: &str,
        access_key: &str,
        secret_key: &str,
    ) -> std::io::Result<S3Server> {
        std::fs::create_dir_all(root)?;
        let fs =
            s3s_fs::FileSystem::new(root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(access_key, secret_key));
            b.build()
        };
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let socket = tokio::select! {
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                    () = stopped.cancelled() => break,
                };
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = conn => {}
                        () = stopped.cancelled() => {}
                    }
                });
            }
        });
        Ok(S3Server {
            addr,
            root: root.to_path_buf(),
            stop,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates a bucket (a folder).
    pub fn create_bucket(&self, name: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(self.root.join(name))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

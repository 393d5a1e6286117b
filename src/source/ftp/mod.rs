//! FTP and FTPS (explicit `AUTH TLS` or implicit) with suppaftp.
//!
//! - Always binary (`TYPE I`): some servers honour ASCII mode and would
//!   change line ends.
//! - Passive mode with EPSV; if the server refuses it, PASV with the NAT
//!   workaround (the data address is the control connection's peer).
//! - Listing with MLSD when the server offers it, else LIST (Unix and
//!   DOS/IIS styles), with MDTM for exact modification times (LIST has no
//!   seconds and changes its date format after six months, which would make
//!   an old file look like a new version). MDTM answers are cached by
//!   (path, size, LIST time) and asked on several connections at once.
//! - TLS with rustls: certificates verified against the system roots plus
//!   an optional CA file; TLS sessions resumed on data connections, as
//!   vsftpd's `require_ssl_reuse` demands.
//! - A download ends by reading the server's transfer reply, so a transfer
//!   the server aborted is an error, never a short file.
//! - Sessions are opened, leased and given deadlines in `session`.
//! - Up to `max_transfers` control connections at once (`pool`): one
//!   per download in flight, so downloads run side by side and listing or
//!   moving files never waits behind a transfer.

pub mod listing;
mod pool;
mod stream;

use super::{ByteStream, RemoteEntry, Source, free_name, join};
use crate::config::{Finalize, FtpDataMode, FtpSettings};
use crate::error::{Classify, Error, ErrorKind, Result, classified};
use async_trait::async_trait;
use listing::{Kind, Listed};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use suppaftp::tokio::{
    AsyncFtpStream, AsyncRustlsConnector, AsyncRustlsFtpStream, ImplAsyncFtpStream,
};
use suppaftp::types::{FileType, Mode};
use suppaftp::{FtpError, Status};
use tokio_rustls::rustls;

/// A control connection, plain or TLS.
enum Conn {
    Plain(AsyncFtpStream),
    Tls(AsyncRustlsFtpStream),
}

/// Runs `$body` with `$s` bound to the connection, whatever its kind.
macro_rules! on_conn {
    ($conn:expr, $s:ident => $body:expr) => {
        match $conn {
            Conn::Plain($s) => $body,
            Conn::Tls($s) => $body,
        }
    };
}

// After `on_conn!`, which the session code uses.
mod session;

/// A connected FTP or FTPS server.
pub struct FtpSource {
    name: String,
    settings: FtpSettings,
    tls: Option<Arc<rustls::ClientConfig>>,
    pool: pool::Pool,
    mlsd: std::sync::atomic::AtomicBool,
    /// MDTM results by (path, size, LIST time): steady-state polls of a
    /// LIST-only server cost one command per new or changed file.
    mdtm_cache: std::sync::Mutex<HashMap<(String, u64, i64), i64>>,
}

/// FTP replies that mean "try again": 421 (service closing), 425 (cannot
/// open the data connection), 426 (transfer aborted), 450 (file busy) and
/// 451 (local error). Any other reply (550 no such file or permission
/// denied, 530 not logged in, …) fails for good.
const TRY_AGAIN_REPLIES: [u32; 5] = [421, 425, 426, 450, 451];

/// A lost connection or a reply that cannot be read is transient; a reply
/// is transient if its code is one of `TRY_AGAIN_REPLIES`; the rest fail
/// for good.
impl Classify for FtpError {
    fn kind(&self) -> ErrorKind {
        match self {
            FtpError::UnexpectedResponse(r) if TRY_AGAIN_REPLIES.contains(&r.status.code()) => {
                ErrorKind::Transient
            }
            FtpError::ConnectionError(_)
            | FtpError::BadResponse
            | FtpError::DataConnectionAlreadyOpen => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        }
    }

    /// `server replied 550 No such file` (the reply's code said once).
    fn detail(&self) -> Option<String> {
        Some(match self {
            FtpError::UnexpectedResponse(r) => {
                let code = r.status.code().to_string();
                let body = String::from_utf8_lossy(&r.body);
                let text = body
                    .trim()
                    .strip_prefix(code.as_str())
                    .map_or(body.trim(), |t| t.trim_start_matches(['-', ' ']));
                format!("server replied {code} {text}")
            }
            other => other.to_string(),
        })
    }
}

/// What MDTM said of a listed file.
enum Mdtm {
    /// Modified at this second.
    At(i64),
    /// The server has no MDTM: the LIST time stands.
    Unsupported,
    /// Gone since the listing (moved or deleted meanwhile).
    Gone,
}

fn is_missing(e: &FtpError) -> bool {
    matches!(e, FtpError::UnexpectedResponse(r) if r.status == Status::FileUnavailable)
}

/// The rustls client configuration: system roots plus `ca_file`.
fn tls_config(ca_file: Option<&str>) -> Result<Arc<rustls::ClientConfig>> {
    crate::tls::client_config(ca_file)
}

impl FtpSource {
    /// Connects and logs in once (so bad credentials show at start-up);
    /// keeps up to `max_connections` control connections later, one per
    /// download or command in flight.
    pub async fn connect(
        name: &str,
        settings: &FtpSettings,
        max_connections: usize,
    ) -> Result<Self> {
        let tls = match &settings.tls {
            Some(t) => Some(tls_config(t.ca_file.as_deref())?),
            None => None,
        };
        let src = FtpSource {
            name: name.to_string(),
            settings: settings.clone(),
            tls,
            pool: pool::Pool::new(name, max_connections),
            mlsd: std::sync::atomic::AtomicBool::new(false),
            mdtm_cache: std::sync::Mutex::new(HashMap::new()),
        };
        let conn = src.open_conn().await?;
        src.pool.lease().await.put(conn);
        Ok(src)
    }

    /// Control connections the source keeps at most now: `max_connections`,
    /// or fewer once the server turned one away for a per-client limit.
    pub fn connection_limit(&self) -> usize {
        self.pool.limit()
    }

    /// Control connections open now.
    pub fn open_connections(&self) -> usize {
        self.pool.open()
    }

    fn addr_text(&self) -> String {
        format!("{}:{}", self.settings.host, self.settings.port)
    }

    fn what(&self, verb: &str, path: &str) -> String {
        let kind = if self.settings.tls.is_some() {
            "ftps"
        } else {
            "ftp"
        };
        format!(
            "source {}: cannot {verb} {path} on {kind} {}",
            self.name,
            self.addr_text()
        )
    }

    async fn list_dir(&self, dir: &str) -> Result<Vec<Listed>> {
        let use_mlsd = self.mlsd.load(std::sync::atomic::Ordering::Relaxed);
        let d = dir.to_string();
        let lines = self
            .with_conn(|c| {
                let d = d.clone();
                Box::pin(async move {
                    on_conn!(c, s => if use_mlsd { s.mlsd(Some(&d)).await } else { s.list(Some(&d)).await })
                })
            })
            .await
            .map_err(classified(self.what("list", dir)))?;
        let now = chrono::Utc::now().naive_utc();
        Ok(lines
            .iter()
            .filter_map(|l| {
                if use_mlsd {
                    listing::parse_mlsd(l)
                } else {
                    listing::parse_list(l, now)
                }
            })
            .collect())
    }

    /// The exact modification time of `path`.
    async fn mdtm(&self, path: &str) -> Result<Mdtm> {
        let p = path.to_string();
        match self
            .with_conn(|c| {
                let p = p.clone();
                Box::pin(async move { on_conn!(c, s => s.mdtm(&p).await) })
            })
            .await
        {
            Ok(t) => Ok(Mdtm::At(t.and_utc().timestamp())),
            Err(FtpError::UnexpectedResponse(r)) if matches!(r.status.code(), 500 | 502 | 504) => {
                Ok(Mdtm::Unsupported)
            }
            Err(e) if is_missing(&e) => Ok(Mdtm::Gone),
            Err(e) => Err(classified(self.what("read the time of", path))(e)),
        }
    }

    async fn file_exists(&self, path: &str) -> Result<bool> {
        let p = path.to_string();
        match self
            .with_conn(|c| {
                let p = p.clone();
                Box::pin(async move { on_conn!(c, s => s.size(&p).await) })
            })
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(classified(self.what("check", path))(e)),
        }
    }
}

#[async_trait]
impl Source for FtpSource {
    async fn stat(&self, path: &str) -> Result<Option<(u64, Option<i64>)>> {
        let p = path.to_string();
        let size = match self
            .with_conn(|c| {
                let p = p.clone();
                Box::pin(async move { on_conn!(c, s => s.size(&p).await) })
            })
            .await
        {
            Ok(n) => n as u64,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(classified(self.what("check", path))(e)),
        };
        let mtime = match self.mdtm(path).await? {
            Mdtm::At(t) => Some(t),
            Mdtm::Unsupported => None,
            Mdtm::Gone => return Ok(None),
        };
        Ok(Some((size, mtime)))
    }

    fn io_timeout(&self) -> Option<std::time::Duration> {
        Some(self.settings.io_timeout)
    }

    fn describe(&self) -> String {
        let kind = if self.settings.tls.is_some() {
            "ftps"
        } else {
            "ftp"
        };
        format!("source {} ({kind} {})", self.name, self.addr_text())
    }

    async fn list(&self, dir: &str, recursive: bool) -> Result<Vec<RemoteEntry>> {
        use futures::StreamExt;
        let mut out = Vec::new();
        let mut pending = vec![(dir.to_string(), String::new())];
        let mut seen = std::collections::HashSet::new();
        // Files whose LIST time is not exact and not cached: (index in
        // `out`, cache key), asked with MDTM below.
        let mut misses = Vec::new();
        while let Some((remote_dir, rel_prefix)) = pending.pop() {
            for l in self.list_dir(&remote_dir).await? {
                let relative = format!("{rel_prefix}{}", l.name);
                match l.kind {
                    Kind::Dir if recursive && !l.name.starts_with('.') => {
                        pending.push((join(&remote_dir, &l.name), format!("{relative}/")));
                    }
                    Kind::File => {
                        let path = join(&remote_dir, &l.name);
                        let mut mtime = l.mtime.unwrap_or(0);
                        if !l.precise {
                            let key = (path.clone(), l.size, mtime);
                            let cached = self
                                .mdtm_cache
                                .lock()
                                .expect("cache lock")
                                .get(&key)
                                .copied();
                            match cached {
                                Some(t) => mtime = t,
                                None => misses.push((out.len(), key.clone())),
                            }
                            seen.insert(key);
                        }
                        out.push(RemoteEntry {
                            path,
                            relative,
                            size: l.size,
                            mtime,
                            etag: None,
                        });
                    }
                    _ => {}
                }
            }
        }
        // One MDTM per new or changed file, on as many connections as the
        // pool allows: a first poll of a large LIST-only folder over a
        // long round trip would otherwise take a round trip per file.
        let mut asked = futures::stream::iter(misses)
            .map(|(i, key)| async move {
                let t = self.mdtm(&key.0).await;
                (i, key, t)
            })
            .buffer_unordered(self.pool.limit());
        let mut gone = std::collections::HashSet::new();
        while let Some((i, key, t)) = asked.next().await {
            let t = match t? {
                Mdtm::At(t) => t,
                Mdtm::Unsupported => key.2,
                Mdtm::Gone => {
                    gone.insert(i);
                    continue;
                }
            };
            out[i].mtime = t;
            self.mdtm_cache.lock().expect("cache lock").insert(key, t);
        }
        drop(asked);
        if !gone.is_empty() {
            tracing::debug!(source = %self.name, files = gone.len(), "files gone between LIST and MDTM; left out of this listing");
            let mut i = 0;
            out.retain(|_| {
                i += 1;
                !gone.contains(&(i - 1))
            });
        }
        if !seen.is_empty() {
            self.mdtm_cache
                .lock()
                .expect("cache lock")
                .retain(|k, _| seen.contains(k));
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn open(&self, path: &str, offset: u64) -> Result<ByteStream> {
        let p = path.to_string();
        let label = path.to_string();
        let what = || self.what("download", path);
        // The download keeps its connection until the server confirmed it.
        let mut lease = self.lease().await.map_err(classified(what()))?;
        let stream: ByteStream = self
            .run_on(&mut lease, |c| {
                let p = p.clone();
                let label = label.clone();
                Box::pin(async move {
                    on_conn!(c, s => {
                        if offset > 0 {
                            s.resume_transfer(offset as usize).await?;
                        }
                        let t = s.retr_as_stream(&p).await?;
                        Ok(Box::new(stream::FinishOnEof::new(t, label)) as ByteStream)
                    })
                })
            })
            .await
            .map_err(classified(what()))?;
        Ok(Box::new(pool::Leased::new(stream, lease)))
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        if self.file_exists(path).await? {
            return Ok(true);
        }
        // SIZE fails on folders: try to enter it (paths are absolute, so
        // the working folder does not matter).
        let p = path.to_string();
        match self
            .with_conn(|c| {
                let p = p.clone();
                Box::pin(async move { on_conn!(c, s => s.cwd(&p).await) })
            })
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(classified(self.what("check", path))(e)),
        }
    }

    async fn finalize(&self, path: &str, action: &Finalize) -> Result<Option<String>> {
        match action {
            Finalize::Keep => Ok(Some(path.to_string())),
            Finalize::Delete => {
                let p = path.to_string();
                self.with_conn(|c| {
                    let p = p.clone();
                    Box::pin(async move { on_conn!(c, s => s.rm(&p).await) })
                })
                .await
                .map_err(classified(self.what("delete", path)))?;
                Ok(None)
            }
            Finalize::Move(to) => {
                let dir = to.clone();
                // MKD fails when the folder exists; that is fine.
                let _ = self
                    .with_conn(|c| {
                        let d = dir.clone();
                        Box::pin(async move { on_conn!(c, s => s.mkdir(&d).await) })
                    })
                    .await;
                let base = super::file_name(path);
                let mut taken = std::collections::HashSet::new();
                let mut candidate = base.to_string();
                while self.file_exists(&join(to, &candidate)).await? {
                    taken.insert(candidate.clone());
                    candidate = free_name(base, |n| taken.contains(n));
                }
                let dest = join(to, &candidate);
                let (from, dest2) = (path.to_string(), dest.clone());
                self.with_conn(|c| {
                    let (f, d) = (from.clone(), dest2.clone());
                    Box::pin(async move { on_conn!(c, s => s.rename(&f, &d).await) })
                })
                .await
                .map_err(classified(self.what("move", path)))?;
                Ok(Some(dest))
            }
        }
    }
}

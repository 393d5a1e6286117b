//! SFTP over SSH (russh + russh-sftp).
//!
//! The server's host key is checked against a known_hosts file or a pinned
//! `SHA256:` fingerprint; an unknown or changed key is refused with the
//! fingerprint seen and how to trust it. Downloads keep `reads_in_flight`
//! read requests outstanding, as OpenSSH's client does, instead of waiting
//! for each reply.

use super::{ByteStream, RemoteEntry, Source, free_name, join};
use crate::config::{Finalize, HostKeyPolicy, SftpAuth, SftpSettings};
use crate::error::{Classified, Classify, Context, Error, ErrorKind, Result, classified};
use async_trait::async_trait;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use std::sync::{Arc, Mutex};

/// A connected SFTP server.
pub struct SftpSource {
    name: String,
    addr: String,
    settings: SftpSettings,
    conn: tokio::sync::Mutex<Option<Arc<SftpConn>>>,
}

/// One SSH connection with its SFTP session.
struct SftpConn {
    sftp: SftpSession,
    ssh: russh::client::Handle<HostKeyCheck>,
    /// A download on it failed or was abandoned mid-file: the connection
    /// may be wedged (a frozen server keeps TCP open), so the next call
    /// opens a new one instead of waiting on this one again.
    suspect: Arc<std::sync::atomic::AtomicBool>,
}

/// A download on one connection: an error, or a drop before the end,
/// marks the connection suspect.
struct Watched {
    inner: ByteStream,
    suspect: Arc<std::sync::atomic::AtomicBool>,
    done: bool,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        match &r {
            std::task::Poll::Ready(Ok(())) if buf.filled().len() == before => this.done = true,
            std::task::Poll::Ready(Err(_)) => this
                .suspect
                .store(true, std::sync::atomic::Ordering::SeqCst),
            _ => {}
        }
        r
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if !self.done {
            self.suspect
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// The russh client handler: checks the host key and remembers why it
/// refused one, so the error can say so.
pub struct HostKeyCheck {
    host: String,
    port: u16,
    policy: HostKeyPolicy,
    refusal: Arc<Mutex<Option<String>>>,
}

/// The OpenSSH-style fingerprint of a key: `SHA256:` + unpadded base64.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

impl HostKeyCheck {
    fn verdict(&self, key: &PublicKey) -> std::result::Result<(), String> {
        let seen = fingerprint(key);
        let algo = key.algorithm().to_string();
        let target = format!("{}:{}", self.host, self.port);
        match &self.policy {
            HostKeyPolicy::AcceptAny => {
                tracing::warn!(server = %target, fingerprint = %seen, "accepting the SFTP host key without checking it (accept_any_host_key = true); anyone in the network path can impersonate this server");
                Ok(())
            }
            HostKeyPolicy::Fingerprint(pinned) => {
                if *pinned == seen {
                    Ok(())
                } else {
                    Err(format!(
                        "host key of {target} is {algo} {seen}, but host_key_fingerprint pins {pinned}; if the server's key really changed, verify the new one out of band and update host_key_fingerprint"
                    ))
                }
            }
            HostKeyPolicy::KnownHosts(file) => {
                match russh::keys::check_known_hosts_path(&self.host, self.port, key, file) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(format!(
                        "host key of {target} ({algo} {seen}) is not in {file}; if you trust it, add it with `ssh-keyscan -p {} -t {algo} {} >> {file}` or set host_key_fingerprint = \"{seen}\"",
                        self.port, self.host
                    )),
                    Err(russh::keys::Error::KeyChanged { line }) => Err(format!(
                        "HOST KEY CHANGED: {target} now presents {algo} {seen}, which differs from line {line} of {file}; this can be an attack: refuse until the change is verified, then replace that line"
                    )),
                    Err(e) => Err(format!(
                        "cannot check host key of {target} against {file}: {e}"
                    )),
                }
            }
        }
    }
}

impl russh::client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => PublicKey::from(cert.public_key().clone()),
        };
        match self.verdict(&key) {
            Ok(()) => Ok(true),
            Err(reason) => {
                *self.refusal.lock().expect("refusal lock") = Some(reason);
                Ok(false)
            }
        }
    }
}

/// SSH transport errors: no algorithm in common, no usable authentication
/// method, or a server key that does not verify fail for good (retrying
/// cannot help; the server's or ferry's settings must change); anything
/// else (a lost connection, a timeout, a disconnect) is transient.
impl Classify for russh::Error {
    fn kind(&self) -> ErrorKind {
        match self {
            russh::Error::NoCommonAlgo { .. }
            | russh::Error::UnsupportedAuthMethod
            | russh::Error::NoAuthMethod
            | russh::Error::UnknownKey
            | russh::Error::WrongServerSig
            | russh::Error::KeyChanged { .. } => ErrorKind::Permanent,
            _ => ErrorKind::Transient,
        }
    }
}

/// The SFTP server's answers: no such file and permission denied fail
/// the file for good; anything else (a lost channel, a timeout, a failure
/// the server does not explain) is transient.
impl Classify for russh_sftp::client::error::Error {
    fn kind(&self) -> ErrorKind {
        use russh_sftp::protocol::StatusCode;
        match self {
            russh_sftp::client::error::Error::Status(s)
                if matches!(
                    s.status_code,
                    StatusCode::NoSuchFile | StatusCode::PermissionDenied
                ) =>
            {
                ErrorKind::Permanent
            }
            _ => ErrorKind::Transient,
        }
    }
}

impl SftpSource {
    /// Connects, checks the host key, authenticates and starts SFTP.
    pub async fn connect(name: &str, s: &SftpSettings) -> Result<Self> {
        let conn = Self::open_session(name, s).await?;
        Ok(SftpSource {
            name: name.to_string(),
            addr: format!("{}:{}", s.host, s.port),
            settings: s.clone(),
            conn: tokio::sync::Mutex::new(Some(Arc::new(conn))),
        })
    }

    /// The live session, reconnecting first if the connection was lost.
    async fn session(&self) -> Result<Arc<SftpConn>> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref()
            && !c.ssh.is_closed()
            && !c.suspect.load(std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(c.clone());
        }
        tracing::info!(source = %self.name, server = %self.addr, "SFTP connection lost or stalled; reconnecting");
        let c = Arc::new(Self::open_session(&self.name, &self.settings).await?);
        *guard = Some(c.clone());
        Ok(c)
    }

    /// A new SSH connection with its SFTP session, within the connect
    /// timeout plus `io_timeout` for authentication and the subsystem.
    async fn open_session(name: &str, s: &SftpSettings) -> Result<SftpConn> {
        let limit = s.connect_timeout + s.io_timeout;
        match tokio::time::timeout(limit, Self::start_session(name, s)).await {
            Ok(r) => r,
            Err(_) => Err(Error::transient(format!(
                "source {name}: sftp {}:{} did not finish logging in and starting SFTP within {limit:?}",
                s.host, s.port
            ))),
        }
    }

    async fn start_session(name: &str, s: &SftpSettings) -> Result<SftpConn> {
        let addr = format!("{}:{}", s.host, s.port);
        let refusal = Arc::new(Mutex::new(None));
        let handler = HostKeyCheck {
            host: s.host.clone(),
            port: s.port,
            policy: s.host_key.clone(),
            refusal: refusal.clone(),
        };
        let config = Arc::new(russh::client::Config {
            inactivity_timeout: Some(std::time::Duration::from_secs(300)),
            keepalive_interval: Some(std::time::Duration::from_secs(30)),
            nodelay: true,
            window_size: 16 * 1024 * 1024,
            // AES-GCM first: hardware-accelerated on both ends (aws-lc-rs
            // here, OpenSSL in sshd), where russh's default, ChaCha20, is
            // software and halves download throughput on small machines.
            preferred: russh::Preferred {
                cipher: std::borrow::Cow::Borrowed(&[
                    russh::cipher::AES_128_GCM,
                    russh::cipher::AES_256_GCM,
                    russh::cipher::CHACHA20_POLY1305,
                    russh::cipher::AES_256_CTR,
                    russh::cipher::AES_128_CTR,
                ]),
                ..Default::default()
            },
            maximum_packet_size: 65535,
            ..Default::default()
        });
        let connecting = russh::client::connect(config, (s.host.as_str(), s.port), handler);
        let mut ssh = match tokio::time::timeout(s.connect_timeout, connecting).await {
            Err(_) => {
                return Err(Error::transient(format!(
                    "source {name}: sftp {addr} did not complete the SSH handshake within {:?}",
                    s.connect_timeout
                )));
            }
            Ok(Err(e)) => {
                if let Some(reason) = refusal.lock().expect("refusal lock").take() {
                    return Err(Error::permanent(format!("source {name}: {reason}")));
                }
                return Err(classified(format!(
                    "source {name}: cannot connect to sftp {addr}"
                ))(e));
            }
            Ok(Ok(h)) => h,
        };

        let auth = match &s.auth {
            SftpAuth::Password(pw) => ssh.authenticate_password(&s.user, pw.expose()).await,
            SftpAuth::Key { file, passphrase } => {
                let key = russh::keys::load_secret_key(file, passphrase.as_ref().map(|p| p.expose()))
                    .context(ErrorKind::Config, || {
                        format!("source {name}: cannot load private key {file} (wrong passphrase, or not an OpenSSH/PEM key)")
                    })?;
                let hash = ssh.best_supported_rsa_hash().await.ok().flatten().flatten();
                ssh.authenticate_publickey(&s.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                    .await
            }
        }
        .classify(|| format!("source {name}: authentication with sftp {addr} failed"))?;
        if !auth.success() {
            return Err(Error::permanent(format!(
                "source {name}: sftp {addr} refused user {:?} with the configured {}",
                s.user,
                match s.auth {
                    SftpAuth::Password(_) => "password",
                    SftpAuth::Key { .. } => "private key",
                }
            )));
        }
        let channel = ssh
            .channel_open_session()
            .await
            .classify(|| format!("source {name}: cannot open an SSH channel on {addr}"))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .classify(|| format!("source {name}: {addr} refused the sftp subsystem"))?;
        let cfg = russh_sftp::client::Config {
            max_concurrent_reads: s.reads_in_flight,
            request_timeout_secs: s.io_timeout.as_secs().max(1),
            ..Default::default()
        };
        let sftp = SftpSession::new_with_config(channel.into_stream(), cfg)
            .await
            .map_err(classified(format!(
                "source {name}: sftp {addr} did not start the SFTP session"
            )))?;
        Ok(SftpConn {
            sftp,
            ssh,
            suspect: Arc::default(),
        })
    }

    fn what(&self, verb: &str, path: &str) -> String {
        format!(
            "source {}: cannot {verb} {path} on sftp {}",
            self.name, self.addr
        )
    }

    async fn path_exists(&self, path: &str) -> Result<bool> {
        self.session()
            .await?
            .sftp
            .try_exists(path)
            .await
            .map_err(classified(self.what("stat", path)))
    }
}

#[async_trait]
impl Source for SftpSource {
    async fn stat(&self, path: &str) -> Result<Option<(u64, Option<i64>)>> {
        match self.session().await?.sftp.metadata(path).await {
            Ok(meta) => Ok(Some((meta.size.unwrap_or(0), meta.mtime.map(i64::from)))),
            Err(russh_sftp::client::error::Error::Status(s))
                if s.status_code == russh_sftp::protocol::StatusCode::NoSuchFile =>
            {
                Ok(None)
            }
            Err(e) => Err(classified(self.what("stat", path))(e)),
        }
    }

    fn io_timeout(&self) -> Option<std::time::Duration> {
        Some(self.settings.io_timeout)
    }

    fn describe(&self) -> String {
        format!("source {} (sftp {})", self.name, self.addr)
    }

    async fn list(&self, dir: &str, recursive: bool) -> Result<Vec<RemoteEntry>> {
        let mut out = Vec::new();
        let mut pending = vec![(dir.to_string(), String::new())];
        let conn = self.session().await?;
        while let Some((remote_dir, rel_prefix)) = pending.pop() {
            let entries = conn
                .sftp
                .read_dir(remote_dir.clone())
                .await
                .map_err(classified(self.what("list", &remote_dir)))?;
            for entry in entries {
                let name = entry.file_name();
                if name == "." || name == ".." {
                    continue;
                }
                let meta = entry.metadata();
                let kind = meta.file_type();
                let relative = format!("{rel_prefix}{name}");
                if kind.is_dir() {
                    if recursive && !name.starts_with('.') {
                        pending.push((join(&remote_dir, &name), format!("{relative}/")));
                    }
                } else if kind.is_file() {
                    out.push(RemoteEntry {
                        path: join(&remote_dir, &name),
                        relative,
                        size: meta.size.unwrap_or(0),
                        mtime: meta.mtime.map_or(0, i64::from),
                        etag: None,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn open(&self, path: &str, offset: u64) -> Result<ByteStream> {
        use tokio::io::AsyncSeekExt;
        let conn = self.session().await?;
        let suspect = |e| {
            conn.suspect
                .store(true, std::sync::atomic::Ordering::SeqCst);
            e
        };
        let mut file = conn
            .sftp
            .open(path)
            .await
            .map_err(classified(self.what("open", path)))
            .map_err(|e| if e.is_transient() { suspect(e) } else { e })?;
        if offset > 0 {
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| {
                    suspect(Error::transient(self.what("seek in", path)).with_source(e))
                })?;
        }
        Ok(Box::new(Watched {
            inner: Box::new(file),
            suspect: conn.suspect.clone(),
            done: false,
        }))
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        self.path_exists(path).await
    }

    async fn finalize(&self, path: &str, action: &Finalize) -> Result<Option<String>> {
        match action {
            Finalize::Keep => Ok(Some(path.to_string())),
            Finalize::Delete => {
                self.session()
                    .await?
                    .sftp
                    .remove_file(path)
                    .await
                    .map_err(classified(self.what("delete", path)))?;
                Ok(None)
            }
            Finalize::Move(to) => {
                let conn = self.session().await?;
                if !self.path_exists(to).await? {
                    conn.sftp
                        .create_dir(to.clone())
                        .await
                        .map_err(classified(self.what("create folder", to)))?;
                }
                let base = super::file_name(path);
                let mut taken = std::collections::HashSet::new();
                let mut candidate = base.to_string();
                // Plain SSH_FXP_RENAME refuses to overwrite, so a lost race
                // fails instead of clobbering; look for a free name first.
                while self.path_exists(&join(to, &candidate)).await? {
                    taken.insert(candidate.clone());
                    candidate = free_name(base, |n| taken.contains(n));
                }
                let dest = join(to, &candidate);
                conn.sftp
                    .rename(path, dest.clone())
                    .await
                    .map_err(classified(self.what("move", path)))?;
                Ok(Some(dest))
            }
        }
    }
}

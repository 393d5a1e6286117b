//! An SFTP server on a local folder: russh for SSH, russh-sftp for the
//! protocol. One user, who may log in with a password or an authorized
//! public key. Paths are confined to the folder.

use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Who may log in.
#[derive(Clone)]
pub struct SftpUser {
    /// User name.
    pub name: String,
    /// Accepted password, if any.
    pub password: Option<String>,
    /// Accepted public key, if any.
    pub key: Option<PublicKey>,
}

/// A running SFTP server; stops when dropped.
pub struct SftpServer {
    /// Listening address.
    pub addr: SocketAddr,
    /// Served folder.
    pub root: PathBuf,
    /// The host key's public half.
    pub host_key: PublicKey,
    /// Every file opened for reading, by file name.
    pub fetches: super::Fetches,
    stop: CancellationToken,
}

impl SftpServer {
    /// Serves `root` on `bind` with `host_key` for `user`.
    pub async fn start(
        root: &Path,
        bind: &str,
        host_key: PrivateKey,
        user: SftpUser,
    ) -> std::io::Result<SftpServer> {
        std::fs::create_dir_all(root)?;
        let host_public = host_key.public_key().clone();
        let config = Arc::new(russh::server::Config {
            keys: vec![host_key],
            auth_rejection_time: std::time::Duration::from_millis(50),
            auth_rejection_time_initial: Some(std::time::Duration::ZERO),
            inactivity_timeout: Some(std::time::Duration::from_secs(600)),
            ..Default::default()
        });
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let root_owned = std::fs::canonicalize(root)?;
        let fetches = super::Fetches::default();
        let counted = fetches.clone();
        tokio::spawn(async move {
            loop {
                let socket = tokio::select! {
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                    () = stopped.cancelled() => break,
                };
                let _ = socket.set_nodelay(true);
                let handler = SshHandler {
                    user: user.clone(),
                    root: root_owned.clone(),
                    fetches: counted.clone(),
                    channels: HashMap::new(),
                };
                let config = config.clone();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    if let Ok(session) = russh::server::run_stream(config, socket, handler).await {
                        tokio::select! {
                            _ = session => {}
                            () = stopped.cancelled() => {}
                        }
                    }
                });
            }
        });
        Ok(SftpServer {
            addr,
            root: root.to_path_buf(),
            host_key: host_public,
            fetches,
            stop,
        })
    }

    /// The `SHA256:` fingerprint of the host key.
    pub fn fingerprint(&self) -> String {
        crate::source::sftp::fingerprint(&self.host_key)
    }

    /// A known_hosts line for this server.
    pub fn known_hosts_line(&self) -> String {
        format!(
            "[{}]:{} {}",
            self.addr.ip(),
            self.addr.port(),
            self.host_key.to_openssh().expect("an encodable key")
        )
    }
}

impl Drop for SftpServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Loads an OpenSSH private key file from `testdata/keys`.
pub fn test_key(name: &str) -> PrivateKey {
    russh::keys::load_secret_key(super::testdata().join("keys").join(name), None)
        .expect("test key loads")
}

struct SshHandler {
    user: SftpUser,
    root: PathBuf,
    fetches: super::Fetches,
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl russh::server::Handler for SshHandler {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if user == self.user.name && self.user.password.as_deref() == Some(password) {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let _ = offer;
        if user == self.user.name && self.user.key.is_some() {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let ok = user == self.user.name
            && self
                .user
                .key
                .as_ref()
                .is_some_and(|k| k.key_data() == key.public_key.key_data());
        Ok(if ok { Auth::Accept } else { Auth::reject() })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.close(channel)?;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match (name, self.channels.remove(&channel_id)) {
            ("sftp", Some(channel)) => {
                session.channel_success(channel_id)?;
                let fs = FsSftp {
                    root: self.root.clone(),
                    fetches: self.fetches.clone(),
                    handles: HashMap::new(),
                    next: 0,
                };
                tokio::spawn(russh_sftp::server::run(channel.into_stream(), fs));
            }
            _ => session.channel_failure(channel_id)?,
        }
        Ok(())
    }
}

enum OpenHandle {
    File(std::fs::File),
    Dir(Option<Vec<File>>),
}

struct FsSftp {
    root: PathBuf,
    fetches: super::Fetches,
    handles: HashMap<String, OpenHandle>,
    next: u64,
}

fn io_status(e: std::io::Error) -> StatusReply {
    let code = match e.kind() {
        std::io::ErrorKind::NotFound => StatusCode::NoSuchFile,
        std::io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    };
    code.with_message(e.to_string())
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    }
}

impl FsSftp {
    /// Maps a client path into the root; `..` cannot escape it.
    fn local(&self, path: &str) -> PathBuf {
        let mut out = self.root.clone();
        for c in Path::new(path).components() {
            match c {
                Component::Normal(p) => out.push(p),
                Component::ParentDir if out != self.root => {
                    out.pop();
                }
                _ => {}
            }
        }
        out
    }

    fn handle(&mut self, h: OpenHandle) -> String {
        self.next += 1;
        let name = format!("h{}", self.next);
        self.handles.insert(name.clone(), h);
        name
    }
}

impl russh_sftp::server::Handler for FsSftp {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.into()
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let local = self.local(&path);
        let rel = local.strip_prefix(&self.root).unwrap_or(Path::new(""));
        let shown = format!("/{}", rel.to_string_lossy());
        Ok(Name {
            id,
            files: vec![File::dummy(shown)],
        })
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let dir = self.local(&path);
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_status)? {
            let entry = entry.map_err(io_status)?;
            let meta = entry.metadata().map_err(io_status)?;
            files.push(File::new(
                entry.file_name().to_string_lossy(),
                FileAttributes::from(&meta),
            ));
        }
        let handle = self.handle(OpenHandle::Dir(Some(files)));
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        match self.handles.get_mut(&handle) {
            // At most 100 names per reply, as OpenSSH sends them: a large
            // folder in one reply would pass the SFTP packet limit.
            Some(OpenHandle::Dir(Some(files))) if !files.is_empty() => {
                let n = files.len().min(100);
                Ok(Name {
                    id,
                    files: files.drain(..n).collect(),
                })
            }
            Some(OpenHandle::Dir(_)) => Err(StatusCode::Eof.into()),
            _ => Err(StatusCode::Failure.with_message("not a directory handle")),
        }
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let path = self.local(&filename);
        let reading = pflags.contains(OpenFlags::READ) && !pflags.contains(OpenFlags::WRITE);
        let file = std::fs::OpenOptions::from(pflags)
            .open(&path)
            .map_err(io_status)?;
        if reading {
            self.fetches.record(&filename);
        }
        let handle = self.handle(OpenHandle::File(file));
        Ok(Handle { id, handle })
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let Some(OpenHandle::File(f)) = self.handles.get_mut(&handle) else {
            return Err(StatusCode::Failure.with_message("not a file handle"));
        };
        f.seek(SeekFrom::Start(offset)).map_err(io_status)?;
        let mut buf = vec![0u8; len.min(256 * 1024) as usize];
        let mut filled = 0;
        while filled < buf.len() {
            let n = f.read(&mut buf[filled..]).map_err(io_status)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Err(StatusCode::Eof.into());
        }
        buf.truncate(filled);
        Ok(Data { id, data: buf })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let Some(OpenHandle::File(f)) = self.handles.get_mut(&handle) else {
            return Err(StatusCode::Failure.with_message("not a file handle"));
        };
        f.seek(SeekFrom::Start(offset)).map_err(io_status)?;
        f.write_all(&data).map_err(io_status)?;
        Ok(ok(id))
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        self.handles.remove(&handle);
        Ok(ok(id))
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let meta = std::fs::metadata(self.local(&path)).map_err(io_status)?;
        Ok(Attrs {
            id,
            attrs: FileAttributes::from(&meta),
        })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let meta = std::fs::symlink_metadata(self.local(&path)).map_err(io_status)?;
        Ok(Attrs {
            id,
            attrs: FileAttributes::from(&meta),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let Some(OpenHandle::File(f)) = self.handles.get(&handle) else {
            return Err(StatusCode::Failure.with_message("not a file handle"));
        };
        let meta = f.metadata().map_err(io_status)?;
        Ok(Attrs {
            id,
            attrs: FileAttributes::from(&meta),
        })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        std::fs::remove_file(self.local(&filename)).map_err(io_status)?;
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        std::fs::create_dir(self.local(&path)).map_err(io_status)?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        std::fs::remove_dir(self.local(&path)).map_err(io_status)?;
        Ok(ok(id))
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        let to = self.local(&newpath);
        // Like OpenSSH's plain SSH_FXP_RENAME: never overwrite.
        if to.exists() {
            return Err(StatusCode::Failure.with_message("target exists"));
        }
        std::fs::rename(self.local(&oldpath), to).map_err(io_status)?;
        Ok(ok(id))
    }
}

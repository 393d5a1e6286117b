//! `[sources.NAME]`: SFTP, FTP/FTPS, S3 and local-folder sources.

use super::*;

/// `[sources.NAME]`, chosen by `kind`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RawSource {
    /// SSH file transfer.
    Sftp(RawSftp),
    /// Plain FTP.
    Ftp(RawFtp),
    /// FTP over TLS.
    Ftps(RawFtp),
    /// An S3 bucket prefix.
    S3(RawS3Source),
    /// A folder on this host (NFS drops, tests).
    Local(RawLocal),
}

/// `kind = "sftp"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSftp {
    /// Host name or address.
    pub host: String,
    /// Port.
    #[serde(default = "default_sftp_port")]
    pub port: u16,
    /// The login name.
    pub user: String,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// A file whose contents are the password (trailing newline dropped).
    pub password_file: Option<String>,
    /// Private key file (OpenSSH format; ed25519, ECDSA or RSA).
    pub private_key_file: Option<String>,
    /// Environment variable holding the private key's passphrase.
    pub private_key_passphrase_env: Option<String>,
    /// File holding the private key's passphrase.
    pub private_key_passphrase_file: Option<String>,
    /// known_hosts file to check the server's key against.
    pub known_hosts_file: Option<String>,
    /// Pinned host key fingerprint, `SHA256:…` as `ssh-keygen -lf` prints it.
    pub host_key_fingerprint: Option<String>,
    /// Accept any host key. Dangerous; logged loudly at every connect.
    #[serde(default)]
    pub accept_any_host_key: bool,
    /// How long to wait for the connection and the SSH handshake.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    /// Outstanding read requests per download (OpenSSH uses 64).
    #[serde(default = "default_reads_in_flight")]
    pub reads_in_flight: usize,
    /// Files fetched from this source at the same time, across all jobs
    /// (servers often cap sessions or transfers per user).
    #[serde(default = "default_max_transfers")]
    pub max_transfers: usize,
    /// The longest ferry waits for the server: one reply (an FTP command,
    /// an SFTP request, an S3 request) or the next bytes of a download.
    /// Past it the connection is dropped and the file retried.
    #[serde(default = "default_io_timeout")]
    pub io_timeout: String,
}

pub(super) fn default_sftp_port() -> u16 {
    22
}

pub(super) fn default_reads_in_flight() -> usize {
    64
}

/// `kind = "ftp"` or `kind = "ftps"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFtp {
    /// Host name or address.
    pub host: String,
    /// Port (21; 990 for implicit FTPS).
    pub port: Option<u16>,
    /// User name.
    #[serde(default = "default_ftp_user")]
    pub user: String,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// A file whose contents are the password (trailing newline dropped).
    pub password_file: Option<String>,
    /// FTPS only: TLS from the first byte (port 990) instead of `AUTH TLS`.
    #[serde(default)]
    pub implicit_tls: bool,
    /// FTPS only: PEM file with extra CA certificates to trust.
    pub ca_file: Option<String>,
    /// How long to wait for the connection and login.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    /// Data connections: `epsv` (extended passive, the default), `pasv`
    /// (passive, with the data address taken from the control connection
    /// when the server advertises a private one) or `active`.
    #[serde(default = "default_data_mode")]
    pub data_mode: String,
    /// Files fetched from this source at the same time, across all jobs
    /// (servers often cap sessions or transfers per user).
    #[serde(default = "default_max_transfers")]
    pub max_transfers: usize,
    /// The longest ferry waits for the server: one reply (an FTP command,
    /// an SFTP request, an S3 request) or the next bytes of a download.
    /// Past it the connection is dropped and the file retried.
    #[serde(default = "default_io_timeout")]
    pub io_timeout: String,
}

pub(super) fn default_data_mode() -> String {
    "epsv".into()
}

pub(super) fn default_ftp_user() -> String {
    "anonymous".into()
}

/// `kind = "s3"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawS3Source {
    /// Bucket to read from.
    pub bucket: String,
    /// AWS region of the bucket.
    #[serde(default = "default_region")]
    pub region: String,
    /// Custom endpoint; unset for AWS.
    pub endpoint: Option<String>,
    /// Path-style addressing.
    #[serde(default)]
    pub path_style: bool,
    /// Static access key id; unset uses the default AWS credential chain.
    pub access_key_id: Option<String>,
    /// Environment variable holding the secret access key.
    pub secret_access_key_env: Option<String>,
    /// A file whose contents are the secret access key.
    pub secret_access_key_file: Option<String>,
    /// Files fetched from this source at the same time, across all jobs
    /// (servers often cap sessions or transfers per user).
    #[serde(default = "default_max_transfers")]
    pub max_transfers: usize,
    /// The longest ferry waits for the server: one reply (an FTP command,
    /// an SFTP request, an S3 request) or the next bytes of a download.
    /// Past it the connection is dropped and the file retried.
    #[serde(default = "default_io_timeout")]
    pub io_timeout: String,
}

/// `kind = "local"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocal {
    /// The folder that job paths are relative to.
    pub root: String,
    /// Files fetched from this source at the same time, across all jobs
    /// (servers often cap sessions or transfers per user).
    #[serde(default = "default_max_transfers")]
    pub max_transfers: usize,
}

pub(super) fn validate_source(
    name: &str,
    s: &RawSource,
    p: &mut Problems,
) -> Option<SourceSettings> {
    let path = format!("sources.{name}");
    validate_name(&path, name, p);
    let kind = match s {
        RawSource::Sftp(r) => SourceKind::Sftp(validate_sftp(&path, r, p)?),
        RawSource::Ftp(r) => SourceKind::Ftp(validate_ftp(&path, r, false, p)?),
        RawSource::Ftps(r) => SourceKind::Ftp(validate_ftp(&path, r, true, p)?),
        RawSource::S3(r) => SourceKind::S3 {
            bucket: r.bucket.clone(),
            s3: s3_endpoint(
                &path,
                S3Keys {
                    region: &r.region,
                    endpoint: &r.endpoint,
                    path_style: r.path_style,
                    access_key_id: &r.access_key_id,
                    secret_env: &r.secret_access_key_env,
                    secret_file: &r.secret_access_key_file,
                    checksums: "auto",
                    io_timeout: &r.io_timeout,
                },
                p,
            )?,
        },
        RawSource::Local(r) => SourceKind::Local {
            root: r.root.clone(),
        },
    };
    let max_transfers = match s {
        RawSource::Sftp(r) => r.max_transfers,
        RawSource::Ftp(r) | RawSource::Ftps(r) => r.max_transfers,
        RawSource::S3(r) => r.max_transfers,
        RawSource::Local(r) => r.max_transfers,
    };
    if !(1..=64).contains(&max_transfers) {
        p.push(format!("{path}.max_transfers"), "must be 1 to 64");
    }
    Some(SourceSettings {
        name: name.to_string(),
        max_transfers: max_transfers.clamp(1, 64),
        kind,
    })
}

/// An SFTP source at `path`: how ferry logs in, how it checks the
/// server's key, its timeouts and pipelining.
fn validate_sftp(path: &str, r: &RawSftp, p: &mut Problems) -> Option<SftpSettings> {
    let auth = sftp_auth(path, r, p);
    let host_key = host_key_policy(path, r, p);
    let (auth, host_key) = (auth?, host_key?);
    if r.reads_in_flight == 0 || r.reads_in_flight > 256 {
        p.push(format!("{path}.reads_in_flight"), "must be 1 to 256");
    }
    Some(SftpSettings {
        host: r.host.clone(),
        port: r.port,
        user: r.user.clone(),
        auth,
        host_key,
        connect_timeout: p.take(
            &format!("{path}.connect_timeout"),
            parse_duration(&r.connect_timeout),
        )?,
        io_timeout: p.take(&format!("{path}.io_timeout"), timeout(&r.io_timeout))?,
        reads_in_flight: r.reads_in_flight.clamp(1, 256),
    })
}

/// A private key (with an optional passphrase) or a password, not both.
fn sftp_auth(path: &str, r: &RawSftp, p: &mut Problems) -> Option<SftpAuth> {
    let password = p.take_pathed(secret::resolve(
        &format!("{path}.password"),
        r.password_env.as_deref(),
        r.password_file.as_deref(),
    ))?;
    let passphrase = p.take_pathed(secret::resolve(
        &format!("{path}.private_key_passphrase"),
        r.private_key_passphrase_env.as_deref(),
        r.private_key_passphrase_file.as_deref(),
    ))?;
    match (&r.private_key_file, password) {
        (Some(file), None) => Some(SftpAuth::Key {
            file: file.clone(),
            passphrase,
        }),
        (None, Some(pw)) => Some(SftpAuth::Password(pw)),
        (Some(_), Some(_)) => {
            p.push(
                format!("{path}.private_key_file"),
                "set a private key or a password, not both",
            );
            None
        }
        (None, None) => {
            p.push(
                format!("{path}.private_key_file"),
                "set private_key_file or password_env/password_file",
            );
            None
        }
    }
}

/// One of known_hosts_file, host_key_fingerprint, accept_any_host_key.
fn host_key_policy(path: &str, r: &RawSftp, p: &mut Problems) -> Option<HostKeyPolicy> {
    match (
        &r.known_hosts_file,
        &r.host_key_fingerprint,
        r.accept_any_host_key,
    ) {
        (Some(f), None, false) => Some(HostKeyPolicy::KnownHosts(f.clone())),
        (None, Some(fp), false) => {
            if !fp.starts_with("SHA256:") {
                p.push(
                    format!("{path}.host_key_fingerprint"),
                    format!("{fp:?} must look like SHA256:… (ssh-keygen -lf KEY prints it)"),
                );
            }
            Some(HostKeyPolicy::Fingerprint(
                fp.trim_end_matches('=').to_string(),
            ))
        }
        (None, None, true) => Some(HostKeyPolicy::AcceptAny),
        (None, None, false) => {
            p.push(format!("{path}.known_hosts_file"), "set known_hosts_file or host_key_fingerprint so the server's key can be checked (accept_any_host_key = true turns the check off)");
            None
        }
        _ => {
            p.push(
                format!("{path}.known_hosts_file"),
                "set only one of known_hosts_file, host_key_fingerprint and accept_any_host_key",
            );
            None
        }
    }
}

/// An FTP (`tls`: FTPS) source at `path`.
fn validate_ftp(path: &str, r: &RawFtp, tls: bool, p: &mut Problems) -> Option<FtpSettings> {
    if !tls && (r.implicit_tls || r.ca_file.is_some()) {
        p.push(
            format!("{path}.implicit_tls"),
            "TLS options need kind = \"ftps\"",
        );
    }
    let password = p.take_pathed(secret::resolve(
        &format!("{path}.password"),
        r.password_env.as_deref(),
        r.password_file.as_deref(),
    ))?;
    let data_mode = p.choose(
        &format!("{path}.data_mode"),
        &r.data_mode,
        &[
            ("epsv", FtpDataMode::Epsv),
            ("pasv", FtpDataMode::Pasv),
            ("active", FtpDataMode::Active),
        ],
    )?;
    Some(FtpSettings {
        data_mode,
        host: r.host.clone(),
        port: r.port.unwrap_or(if r.implicit_tls { 990 } else { 21 }),
        user: r.user.clone(),
        password,
        tls: tls.then(|| FtpTls {
            implicit: r.implicit_tls,
            ca_file: r.ca_file.clone(),
        }),
        connect_timeout: p.take(
            &format!("{path}.connect_timeout"),
            parse_duration(&r.connect_timeout),
        )?,
        io_timeout: p.take(&format!("{path}.io_timeout"), timeout(&r.io_timeout))?,
    })
}

/// How to check an SFTP server's host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Look the key up in a known_hosts file.
    KnownHosts(String),
    /// Compare with a pinned `SHA256:` fingerprint.
    Fingerprint(String),
    /// Accept anything (explicitly configured; logged loudly).
    AcceptAny,
}

/// SFTP authentication.
#[derive(Debug, Clone)]
pub enum SftpAuth {
    /// Password.
    Password(Secret),
    /// Private key file with an optional passphrase.
    Key {
        /// Path of the key file.
        file: String,
        /// Passphrase.
        passphrase: Option<Secret>,
    },
}

/// An SFTP server.
#[derive(Debug, Clone)]
pub struct SftpSettings {
    /// Name or address of the server.
    pub host: String,
    /// TCP port (22 unless set).
    pub port: u16,
    /// The login name.
    pub user: String,
    /// Credentials.
    pub auth: SftpAuth,
    /// How the server's host key is checked before anything is sent.
    pub host_key: HostKeyPolicy,
    /// The longest a TCP connect plus the SSH handshake and login may take.
    pub connect_timeout: Duration,
    /// The longest wait for one SFTP reply or the next bytes of a download.
    pub io_timeout: Duration,
    /// Outstanding read requests per download.
    pub reads_in_flight: usize,
}

/// An FTP or FTPS server.
#[derive(Debug, Clone)]
pub struct FtpSettings {
    /// Name or address of the server.
    pub host: String,
    /// TCP port (21, or 990 for implicit TLS, unless set).
    pub port: u16,
    /// The login name (`anonymous` unless set).
    pub user: String,
    /// The login password; `None` sends `ferry@` (what anonymous FTP asks).
    pub password: Option<Secret>,
    /// `None` for plain FTP; explicit or implicit TLS otherwise.
    pub tls: Option<FtpTls>,
    /// The longest a TCP connect plus TLS and login may take.
    pub connect_timeout: Duration,
    /// The longest wait for one reply or the next bytes of a download.
    pub io_timeout: Duration,
    /// How data connections are made.
    pub data_mode: FtpDataMode,
}

/// How FTP data connections are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtpDataMode {
    /// Extended passive (EPSV): only a port comes back, so NAT cannot garble it.
    Epsv,
    /// Passive (PASV) with the NAT workaround.
    Pasv,
    /// Active (PORT/EPRT): the server connects back.
    Active,
}

/// FTPS settings.
#[derive(Debug, Clone)]
pub struct FtpTls {
    /// Implicit TLS (port 990) instead of `AUTH TLS`.
    pub implicit: bool,
    /// Extra CA certificates.
    pub ca_file: Option<String>,
}

/// A source server.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// SFTP.
    Sftp(SftpSettings),
    /// FTP or FTPS.
    Ftp(FtpSettings),
    /// An S3 bucket.
    S3 {
        /// Bucket.
        bucket: String,
        /// Endpoint and credentials.
        s3: S3Endpoint,
    },
    /// A local folder.
    Local {
        /// Root folder.
        root: String,
    },
}

/// `[sources.NAME]`
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// The name in the file.
    pub name: String,
    /// Files fetched from it at the same time, across all jobs.
    pub max_transfers: usize,
    /// What it is.
    pub kind: SourceKind,
}

impl SourceSettings {
    /// `kind host:port` for messages (never credentials).
    pub fn describe(&self) -> String {
        match &self.kind {
            SourceKind::Sftp(s) => format!("sftp {}:{}", s.host, s.port),
            SourceKind::Ftp(f) if f.tls.is_some() => format!("ftps {}:{}", f.host, f.port),
            SourceKind::Ftp(f) => format!("ftp {}:{}", f.host, f.port),
            SourceKind::S3 { bucket, .. } => format!("s3 bucket {bucket}"),
            SourceKind::Local { root } => format!("local folder {root}"),
        }
    }
}

//! Validated configuration: the domain types the rest of ferry reads.

use super::Secret;
use crate::schema::Column;
use crate::sql::Ident;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Process-wide settings.
    pub daemon: DaemonSettings,
    /// S3 staging.
    pub staging: StagingSettings,
    /// The warehouse.
    pub warehouse: WarehouseSettings,
    /// Named sources.
    pub sources: BTreeMap<String, Arc<SourceSettings>>,
    /// Jobs, in file order.
    pub jobs: Vec<Arc<Job>>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[daemon]`
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Interval between two listings of a job's source.
    pub poll_interval: Duration,
    /// Files staged at the same time across all jobs.
    pub concurrency: usize,
    /// Loads in flight at once against the warehouse.
    pub max_concurrent_loads: usize,
    /// Time in-flight work gets to finish on shutdown.
    pub grace_period: Duration,
    /// Health and metrics listener, if any.
    pub http_listen: Option<SocketAddr>,
    /// Log format.
    pub log_format: LogFormat,
    /// A pass without progress for this long is stuck (`/healthz`, watchdog).
    pub stuck_after: Duration,
}

/// Server-side encryption of staged objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// No header sent (the bucket default applies; SSE-S3 on AWS since 2023).
    None,
    /// SSE-S3.
    Aes256,
    /// SSE-KMS with an optional key id.
    Kms(Option<String>),
}

/// When the S3 client sends request checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksums {
    /// Whenever the operation supports them (AWS default).
    WhenSupported,
    /// Only when the operation requires them (S3-compatible servers).
    WhenRequired,
}

/// Connection settings for an S3 endpoint.
#[derive(Debug, Clone)]
pub struct S3Endpoint {
    /// Region.
    pub region: String,
    /// Custom endpoint URL.
    pub endpoint: Option<String>,
    /// Path-style addressing.
    pub path_style: bool,
    /// Static credentials; `None` uses the default chain.
    pub credentials: Option<(String, Secret)>,
    /// Checksum behaviour.
    pub checksums: Checksums,
    /// The longest one request attempt may take (an upload of a part
    /// included), and the longest a download may pause.
    pub io_timeout: Duration,
}

/// `[staging]`
#[derive(Debug, Clone)]
pub struct StagingSettings {
    /// Bucket.
    pub bucket: String,
    /// Key prefix without slashes at either end (may be empty).
    pub prefix: String,
    /// Endpoint and credentials.
    pub s3: S3Endpoint,
    /// Server-side encryption.
    pub sse: Sse,
    /// Multipart upload part size (and the size above which it is used).
    pub multipart_part_size: u64,
}

/// `[warehouse]`
#[derive(Debug, Clone)]
pub enum WarehouseSettings {
    /// PostgreSQL.
    Postgres(PostgresSettings),
    /// Redshift Data API.
    RedshiftData(RedshiftDataSettings),
}

impl WarehouseSettings {
    /// The schema holding the ledger and the targets.
    pub fn schema(&self) -> &Ident {
        match self {
            WarehouseSettings::Postgres(p) => &p.schema,
            WarehouseSettings::RedshiftData(r) => &r.schema,
        }
    }

    /// The SQL dialect its statements are rendered in.
    pub fn dialect(&self) -> crate::sql::Dialect {
        match self {
            WarehouseSettings::Postgres(_) => crate::sql::Dialect::Postgres,
            WarehouseSettings::RedshiftData(_) => crate::sql::Dialect::Redshift,
        }
    }
}

/// PostgreSQL connection.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Database.
    pub database: String,
    /// Password, if any.
    pub password: Option<Secret>,
    /// Schema.
    pub schema: Ident,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Server-side `statement_timeout`, and ferry's own deadline for one
    /// load or ledger call.
    pub statement_timeout: Duration,
    /// Server-side `lock_timeout`.
    pub lock_timeout: Duration,
    /// TLS.
    pub sslmode: PgSslMode,
    /// Extra CA certificates for `verify-full`.
    pub ca_file: Option<String>,
}

/// libpq's `sslmode`, as ferry supports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgSslMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, certificate not checked.
    Prefer,
    /// TLS, certificate not checked.
    Require,
    /// TLS, certificate and host name checked.
    VerifyFull,
}

/// Which Redshift the Data API talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedshiftTarget {
    /// Provisioned cluster with temporary credentials for a database user.
    ClusterDbUser {
        /// Cluster identifier.
        cluster: String,
        /// Database user.
        db_user: String,
    },
    /// Provisioned cluster with a Secrets Manager secret.
    ClusterSecret {
        /// Cluster identifier.
        cluster: String,
        /// Secret ARN.
        secret_arn: String,
    },
    /// Serverless workgroup, with an optional secret.
    Workgroup {
        /// Workgroup name.
        workgroup: String,
        /// Secret ARN, if not IAM.
        secret_arn: Option<String>,
    },
}

/// Redshift Data API connection.
#[derive(Debug, Clone)]
pub struct RedshiftDataSettings {
    /// Region.
    pub region: String,
    /// Cluster or workgroup and how to authenticate.
    pub target: RedshiftTarget,
    /// Database.
    pub database: String,
    /// IAM role for COPY.
    pub iam_role: String,
    /// Custom endpoint.
    pub endpoint: Option<String>,
    /// Schema.
    pub schema: Ident,
    /// Static credentials; `None` uses the default chain.
    pub credentials: Option<(String, Secret)>,
    /// Longest wait for one statement or batch.
    pub statement_timeout: Duration,
    /// The longest one Data API call attempt may take.
    pub io_timeout: Duration,
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
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Credentials.
    pub auth: SftpAuth,
    /// Host key check.
    pub host_key: HostKeyPolicy,
    /// Connect and handshake timeout.
    pub connect_timeout: Duration,
    /// The longest wait for one SFTP reply or the next bytes of a download.
    pub io_timeout: Duration,
    /// Outstanding read requests per download.
    pub reads_in_flight: usize,
}

/// An FTP or FTPS server.
#[derive(Debug, Clone)]
pub struct FtpSettings {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Password.
    pub password: Option<Secret>,
    /// `None` for plain FTP; explicit or implicit TLS otherwise.
    pub tls: Option<FtpTls>,
    /// Connect and login timeout.
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

/// A text encoding of CSV input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// UTF-8 (a BOM is skipped).
    Utf8,
    /// ISO-8859-1.
    Latin1,
    /// Windows-1252.
    Windows1252,
}

/// Safety limits on one input file.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest record in bytes.
    pub max_record_bytes: u64,
    /// Largest decompressed size of gzip input.
    pub max_decompressed_bytes: u64,
    /// Largest decompression ratio.
    pub max_compression_ratio: u64,
    /// Deepest XML nesting.
    pub max_xml_depth: usize,
}

/// When a file fails as a whole for its rejected records.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxErrors {
    /// More than this many rejected records.
    Count(u64),
    /// More than this percentage of the file's records.
    Percent(f64),
}

impl MaxErrors {
    /// Whether `rejected` of `total` records is too many.
    pub fn exceeded(self, rejected: u64, total: u64) -> bool {
        match self {
            MaxErrors::Count(n) => rejected > n,
            MaxErrors::Percent(p) => total > 0 && (rejected as f64) * 100.0 > p * total as f64,
        }
    }
}

impl std::fmt::Display for MaxErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxErrors::Count(n) => write!(f, "{n}"),
            MaxErrors::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// CSV options.
#[derive(Debug, Clone)]
pub struct CsvFormat {
    /// Delimiter byte.
    pub delimiter: u8,
    /// Quote byte.
    pub quote: u8,
    /// The first record is a header.
    pub header: bool,
    /// Names when there is no header.
    pub field_names: Vec<String>,
    /// Escape byte inside quotes (None: doubled quotes).
    pub escape: Option<u8>,
    /// Text encoding.
    pub encoding: TextEncoding,
}

/// Input format.
#[derive(Debug, Clone)]
pub enum Format {
    /// CSV.
    Csv(CsvFormat),
    /// Newline-delimited JSON.
    Ndjson,
    /// A JSON document; records at this member path (empty: the top).
    Json {
        /// Member names from the top down to the records array.
        records_path: Vec<String>,
    },
    /// XML; records are the elements at this path of local names.
    Xml {
        /// Element names from the root to the record element.
        record_path: Vec<String>,
    },
}

/// How the fact table is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Insert every row.
    Append,
    /// Replace rows with the same key (delete + insert).
    Merge,
}

/// A dimension maintained from the loaded rows.
#[derive(Debug, Clone)]
pub struct Dimension {
    /// Table.
    pub table: Ident,
    /// Key column (same name in the fact rows).
    pub key: Ident,
    /// `(dimension column, fact column)` pairs.
    pub columns: Vec<(Ident, Ident)>,
    /// SCD2 history columns, or `None` for SCD1 (update in place).
    pub scd2: Option<Scd2>,
}

/// The columns of an SCD2 dimension that track row versions.
#[derive(Debug, Clone)]
pub struct Scd2 {
    /// When the row version became current.
    pub valid_from: Ident,
    /// When it stopped being current (NULL while current).
    pub valid_to: Ident,
    /// Whether it is the current version of its key.
    pub is_current: Ident,
}

/// When a file is ready.
#[derive(Debug, Clone)]
pub struct Settle {
    /// Minimum age by modification time.
    pub min_age: Duration,
    /// Marker suffix, if required.
    pub marker_suffix: Option<String>,
    /// Folder marker file name, if required.
    pub folder_marker: Option<String>,
    /// Unchanged polls required (0: off).
    pub stable_polls: u32,
    /// Temporary-name globs.
    pub temp_patterns: globset::GlobSet,
    /// The same globs as written, for messages.
    pub temp_pattern_text: Vec<String>,
}

/// What to do with a file that changed after a version of it was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    /// Load the new version.
    Reload,
    /// Record it as skipped and load nothing.
    Ignore,
}

/// What to do with a source file after its load committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finalize {
    /// Leave it.
    Keep,
    /// Delete it.
    Delete,
    /// Move it into this folder.
    Move(String),
}

impl Job {
    /// Whether `path` holds a date template.
    pub fn path_is_templated(&self) -> bool {
        ["{yyyy}", "{mm}", "{dd}"]
            .iter()
            .any(|t| self.path.contains(t))
    }

    /// The folders to list on `today` (UTC): the path itself, or one per
    /// day from `lookback_days` ago to today for a templated path.
    pub fn folders(&self, today: chrono::NaiveDate) -> Vec<String> {
        if !self.path_is_templated() {
            return vec![self.path.clone()];
        }
        let mut out: Vec<String> = (0..=self.lookback_days as i64)
            .rev()
            .map(|back| {
                let d = today - chrono::Duration::days(back);
                self.path
                    .replace("{yyyy}", &d.format("%Y").to_string())
                    .replace("{mm}", &d.format("%m").to_string())
                    .replace("{dd}", &d.format("%d").to_string())
            })
            .collect();
        out.dedup();
        out
    }
}

/// A job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Name.
    pub name: String,
    /// Its source.
    pub source: Arc<SourceSettings>,
    /// Folder to list, possibly with `{yyyy}`, `{mm}`, `{dd}`.
    pub path: String,
    /// Days before today listed too when `path` has a date template.
    pub lookback_days: u32,
    /// Include glob.
    pub pattern: globset::GlobMatcher,
    /// Include glob as written.
    pub pattern_text: String,
    /// Exclude globs.
    pub exclude: globset::GlobSet,
    /// Recursive listing.
    pub recursive: bool,
    /// Polled at all.
    pub enabled: bool,
    /// How often the daemon polls this job.
    pub poll_interval: Duration,
    /// Input format.
    pub format: Format,
    /// Target table.
    pub target: Ident,
    /// Merge or append.
    pub mode: LoadMode,
    /// Key columns.
    pub key: Vec<Ident>,
    /// Order column for "latest wins".
    pub order_by: Option<Ident>,
    /// Columns in staged order.
    pub columns: Vec<Column>,
    /// Dimensions.
    pub dimensions: Vec<Dimension>,
    /// Settle rules.
    pub settle: Settle,
    /// After success.
    pub on_success: Finalize,
    /// After a permanent failure (`Keep` or `Move`).
    pub on_failure: Finalize,
    /// A file changed after a version of it was loaded.
    pub on_change: OnChange,
    /// Rejected records allowed per file.
    pub max_errors: MaxErrors,
    /// Safety limits.
    pub limits: Limits,
    /// Gzip level of the staged CSV.
    pub gzip_level: u32,
    /// Bytes of CSV (before compression) after which a part is cut.
    pub part_size: u64,
    /// Copy each source file's bytes under `raw/`.
    pub archive_raw: bool,
    /// Files staged at the same time.
    pub concurrency: usize,
    /// When staged files load together.
    pub batch: Batch,
    /// Post-load checks.
    pub checks: Vec<Check>,
}

/// A post-load check: a query that returns the rows that are wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Name (letters, digits, `_`).
    pub name: String,
    /// The query, with `{target}`/`{schema}` and `:load_id`/`:job`/`:rows`
    /// still to fill in.
    pub sql: String,
}

/// Batching limits of a job: staged files load together once one is hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Files per batch.
    pub max_files: usize,
    /// Source bytes per batch.
    pub max_bytes: u64,
    /// How long the oldest staged file may wait past the end of a poll.
    pub max_wait: std::time::Duration,
}

//! The configuration file as written: serde structs that reject unknown keys.
//!
//! Every field has a doc comment; `config/ferry.example.toml` shows each one.
//! [`super::validate`] turns these into the domain types of [`super::model`].

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Process-wide settings.
    #[serde(default)]
    pub daemon: RawDaemon,
    /// Where staged gzip CSV goes.
    pub staging: RawStaging,
    /// The warehouse that receives the rows and keeps the ledger.
    pub warehouse: RawWarehouse,
    /// Named servers that jobs read from.
    #[serde(default)]
    pub sources: BTreeMap<String, RawSource>,
    /// What to load: one entry per job.
    #[serde(default)]
    pub jobs: Vec<RawJob>,
}

/// `[daemon]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// How often each job lists its source, e.g. `30s`, `5m`.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: String,
    /// How many files are fetched, normalized and staged at the same time
    /// across all jobs (each job also has its own `concurrency`).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Loads (warehouse transactions) in flight at once across all jobs;
    /// loads take the ledger lock in turn anyway, so more only queue in
    /// the warehouse.
    #[serde(default = "default_max_loads")]
    pub max_concurrent_loads: usize,
    /// How long a shutdown waits for in-flight loads to finish.
    #[serde(default = "default_grace_period")]
    pub grace_period: String,
    /// Address of the health and metrics listener; empty turns it off.
    #[serde(default = "default_http_listen")]
    pub http_listen: String,
    /// `text` for people, `json` for CloudWatch and other collectors.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// A job's pass that finishes no file for this long is stuck:
    /// `/healthz` answers 503 naming it and the systemd watchdog stops, so
    /// systemd (or ECS) restarts ferry.
    #[serde(default = "default_stuck_after")]
    pub stuck_after: String,
}

/// 1 h: every network wait has its own, far shorter deadline, so a pass
/// this quiet is wedged in a way nothing else caught; a large file that
/// takes longer than this to fetch needs a larger value.
fn default_stuck_after() -> String {
    "1h".into()
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            poll_interval: default_poll_interval(),
            concurrency: default_concurrency(),
            max_concurrent_loads: default_max_loads(),
            grace_period: default_grace_period(),
            http_listen: default_http_listen(),
            log_format: default_log_format(),
            stuck_after: default_stuck_after(),
        }
    }
}

fn default_poll_interval() -> String {
    "30s".into()
}
fn default_concurrency() -> usize {
    16
}
fn default_max_loads() -> usize {
    2
}
fn default_grace_period() -> String {
    "60s".into()
}
fn default_http_listen() -> String {
    "127.0.0.1:9187".into()
}
fn default_log_format() -> String {
    "text".into()
}

/// `[staging]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStaging {
    /// The S3 bucket for staged, raw and rejected objects.
    pub bucket: String,
    /// Key prefix under which ferry writes; no leading or trailing `/`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// AWS region of the bucket.
    #[serde(default = "default_region")]
    pub region: String,
    /// Custom endpoint (MinIO, a local stand-in); unset for AWS.
    pub endpoint: Option<String>,
    /// Path-style addressing (`http://host/bucket/key`), needed by MinIO.
    #[serde(default)]
    pub path_style: bool,
    /// Server-side encryption: `none`, `aes256` (SSE-S3) or `aws:kms`.
    #[serde(default = "default_sse")]
    pub sse: String,
    /// KMS key for `sse = "aws:kms"`; unset uses the AWS-managed key.
    pub kms_key_id: Option<String>,
    /// Static access key id; unset uses the default AWS credential chain.
    pub access_key_id: Option<String>,
    /// Environment variable holding the secret access key.
    pub secret_access_key_env: Option<String>,
    /// File holding the secret access key.
    pub secret_access_key_file: Option<String>,
    /// `auto`, `when_supported` or `when_required`. `auto` sends request
    /// checksums only to AWS, since many S3-compatible servers reject them.
    #[serde(default = "default_checksums")]
    pub checksums: String,
    /// Objects larger than this go up as a multipart upload in parts of
    /// this size (at least 5MiB, S3's minimum), e.g. `"16MiB"`.
    #[serde(default = "default_multipart_part_size")]
    pub multipart_part_size: String,
    /// The longest one S3 request attempt may take, the upload of one
    /// part included (the SDK then retries it).
    #[serde(default = "default_staging_io_timeout")]
    pub io_timeout: String,
}

/// 120 s: a 16 MiB part at 150 KB/s still fits; a frozen endpoint costs
/// two minutes per attempt.
fn default_staging_io_timeout() -> String {
    "120s".into()
}

fn default_multipart_part_size() -> String {
    "16MiB".into()
}

fn default_prefix() -> String {
    "ferry".into()
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_sse() -> String {
    "none".into()
}
fn default_checksums() -> String {
    "auto".into()
}

/// `[warehouse]`, chosen by `kind`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RawWarehouse {
    /// PostgreSQL (the local stand-in for Redshift).
    Postgres(RawPostgres),
    /// Amazon Redshift through the Redshift Data API.
    RedshiftData(RawRedshiftData),
}

/// `[warehouse] kind = "postgres"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    /// Host name or address.
    #[serde(default = "default_pg_host")]
    pub host: String,
    /// Port.
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// Database user.
    #[serde(default = "default_pg_user")]
    pub user: String,
    /// Database name.
    #[serde(default = "default_pg_database")]
    pub database: String,
    /// Environment variable holding the password (unset: no password).
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<String>,
    /// Schema of the ledger and target tables.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// How long to wait for a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    /// The longest one statement may run on the server
    /// (`statement_timeout`), and the longest ferry waits for a whole
    /// load or ledger call before it drops the connection and retries.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout: String,
    /// The longest a statement waits for a lock (`lock_timeout`): another
    /// replica's load holds the ledger lock while it runs.
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout: String,
    /// TLS, as libpq's `sslmode`: `disable`, `prefer`, `require`
    /// (encrypted, certificate not checked) or `verify-full` (certificate
    /// checked against the system roots plus `ca_file`, and the host name).
    #[serde(default = "default_sslmode")]
    pub sslmode: String,
    /// PEM file with CA certificates to trust for `verify-full`.
    pub ca_file: Option<String>,
}

/// `disable`: the local stand-in runs next to ferry; over a network set
/// `require` or `verify-full`.
fn default_sslmode() -> String {
    "disable".into()
}

/// 10 min: longer than a normal load holds the ledger lock, so replicas
/// take turns; a lock held by a stuck session is given up on.
fn default_lock_timeout() -> String {
    "10m".into()
}

fn default_pg_host() -> String {
    "127.0.0.1".into()
}
fn default_pg_port() -> u16 {
    5432
}
fn default_pg_user() -> String {
    "postgres".into()
}
fn default_pg_database() -> String {
    "postgres".into()
}
fn default_schema() -> String {
    "public".into()
}
fn default_connect_timeout() -> String {
    "10s".into()
}

/// `[warehouse] kind = "redshift-data"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedshiftData {
    /// AWS region of the cluster or workgroup.
    #[serde(default = "default_region")]
    pub region: String,
    /// Provisioned cluster identifier (with `db_user` or `secret_arn`).
    pub cluster_identifier: Option<String>,
    /// Serverless workgroup name (instead of `cluster_identifier`).
    pub workgroup_name: Option<String>,
    /// Database name.
    pub database: String,
    /// Database user for temporary credentials (provisioned only).
    pub db_user: Option<String>,
    /// Secrets Manager ARN holding the database credentials.
    pub secret_arn: Option<String>,
    /// IAM role that COPY uses to read the staged objects.
    pub iam_role: String,
    /// Custom Data API endpoint (the local emulator); unset for AWS.
    pub endpoint: Option<String>,
    /// Schema of the ledger and target tables.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Static access key id for the Data API; unset uses the default AWS
    /// credential chain (instance profile, ECS task role, environment).
    pub access_key_id: Option<String>,
    /// Environment variable holding the secret access key.
    pub secret_access_key_env: Option<String>,
    /// File holding the secret access key.
    pub secret_access_key_file: Option<String>,
    /// How long ferry waits for one statement or load batch to finish
    /// before it cancels it and retries later.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout: String,
    /// The longest one Data API call attempt may take (submitting or
    /// describing a statement, not the statement's run).
    #[serde(default = "default_data_api_timeout")]
    pub io_timeout: String,
}

/// 30 s: Data API calls answer in milliseconds; a hung one is cut off and
/// retried by the SDK.
fn default_data_api_timeout() -> String {
    "30s".into()
}

fn default_statement_timeout() -> String {
    "1h".into()
}

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
    /// User name.
    pub user: String,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
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

fn default_max_transfers() -> usize {
    8
}

/// 60 s: far above any healthy reply or pause in a stream (a loaded SFTP
/// server answers within a second or two), short enough that a frozen
/// server costs a minute per attempt, not a pass.
fn default_io_timeout() -> String {
    "60s".into()
}

fn default_sftp_port() -> u16 {
    22
}
fn default_reads_in_flight() -> usize {
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
    /// File holding the password.
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

fn default_data_mode() -> String {
    "epsv".into()
}

fn default_ftp_user() -> String {
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
    /// File holding the secret access key.
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

/// `[[jobs]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    /// Unique name; used in the ledger, staging keys, logs and metrics.
    pub name: String,
    /// How often the daemon lists this job's source; default
    /// `daemon.poll_interval`.
    pub poll_interval: Option<String>,
    /// Name of a `[sources.NAME]` entry.
    pub source: String,
    /// Folder on the source to list; may hold date templates `{yyyy}`,
    /// `{mm}`, `{dd}` (UTC), e.g. `/export/{yyyy}/{mm}/{dd}`.
    pub path: String,
    /// With a date template: how many days before today are listed too.
    #[serde(default = "default_lookback_days")]
    pub lookback_days: u32,
    /// Glob the file name (or path below `path`, when recursive) must match.
    #[serde(default = "default_pattern")]
    pub pattern: String,
    /// Globs of names to leave alone.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// List sub-folders too.
    #[serde(default)]
    pub recursive: bool,
    /// A paused job (`false`) is listed by `ferry jobs` but never polled.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Input format and its options.
    #[serde(default)]
    pub format: RawFormat,
    /// Target table (in the warehouse schema).
    pub target: String,
    /// `merge` (replace rows with the same key) or `append`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Key columns: rows with the same key are one row in the target.
    #[serde(default)]
    pub key: Vec<String>,
    /// Among rows with the same key, the greatest `order_by` wins; ties go to
    /// the later file and line.
    pub order_by: Option<String>,
    /// Target columns, in the staged file's order.
    pub columns: Vec<RawColumn>,
    /// Dimension tables kept up to date from the loaded rows (SCD1).
    #[serde(default)]
    pub dimensions: Vec<RawDimension>,
    /// When a file counts as completely uploaded.
    #[serde(default)]
    pub settle: RawSettle,
    /// What happens to the source file after its load has committed.
    #[serde(default)]
    pub on_success: RawFinalize,
    /// What happens to the source file when it fails for good (bad data,
    /// too many rejects, a COPY or merge error): `keep` (the default) or
    /// `move` to a folder (`to`), so the drop folder holds only what is
    /// still to load. Never `delete`: a failed file is the operator's.
    #[serde(default)]
    pub on_failure: RawFinalize,
    /// A file that changes (new size or mtime) after a version of it was
    /// loaded: `reload` (load it as a new version; rows replace by key in
    /// merge mode) or `ignore` (record it as skipped, load nothing).
    #[serde(default = "default_on_change")]
    pub on_change: String,
    /// Rejected records a file may have before it fails as a whole: a
    /// count (`10`) or a share of its records (`"2%"`).
    #[serde(default)]
    pub max_errors: RawMaxErrors,
    /// Safety limits against runaway input.
    #[serde(default)]
    pub limits: RawLimits,
    /// Gzip level of the staged CSV, 1 (fast, the default) to 9 (small).
    #[serde(default = "default_gzip_level")]
    pub gzip_level: u32,
    /// Keep a byte-for-byte copy of each source file under `raw/` in the
    /// staging bucket (written before the load, whatever its outcome).
    #[serde(default)]
    pub archive_raw: bool,
    /// The staged CSV is cut into parts after the record that passes this
    /// many bytes (before compression), e.g. `"256MiB"`.
    #[serde(default = "default_part_size")]
    pub part_size: String,
    /// Files fetched, normalized and staged at the same time.
    #[serde(default = "default_job_concurrency")]
    pub concurrency: usize,
    /// When staged files are loaded together.
    #[serde(default)]
    pub batch: RawBatch,
    /// Queries run after each committed load of the job; each returns the
    /// rows that are wrong and passes when it returns none.
    #[serde(default)]
    pub checks: Vec<RawCheck>,
}

/// A post-load check, e.g. `{ name = "no_null_task", sql = "SELECT
/// event_id FROM {target} WHERE ferry_load_id = :load_id AND task_id IS
/// NULL" }`. A failed check is logged, counted in the metrics and kept in
/// `ferry_checks`; the load stays committed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// Name in logs, metrics and `ferry_checks` (letters, digits, `_`).
    pub name: String,
    /// One SELECT. `{target}` is the job's target table and `{schema}`
    /// the warehouse schema (both quoted); `:load_id`, `:job` and `:rows`
    /// (the rows the load wrote) are text parameters: compare numbers as
    /// `CAST(:rows AS BIGINT)`.
    pub sql: String,
}

fn default_job_concurrency() -> usize {
    4
}

/// `[jobs.batch]`: staged files wait and load together in one transaction
/// and one COPY once any limit is reached (the Firehose buffering hints).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    /// Load when this many files are staged.
    #[serde(default = "default_batch_files")]
    pub max_files: usize,
    /// Load when the staged files' source bytes reach this, e.g. `"1GiB"`.
    #[serde(default = "default_batch_bytes")]
    pub max_bytes: String,
    /// Load at the end of a poll once the oldest staged file has waited
    /// this long (`"0s"`: at the end of every poll).
    #[serde(default = "default_batch_wait")]
    pub max_wait: String,
}

impl Default for RawBatch {
    fn default() -> Self {
        RawBatch {
            max_files: default_batch_files(),
            max_bytes: default_batch_bytes(),
            max_wait: default_batch_wait(),
        }
    }
}

fn default_batch_files() -> usize {
    500
}
fn default_batch_bytes() -> String {
    "1GiB".into()
}
fn default_batch_wait() -> String {
    "0s".into()
}

fn default_on_change() -> String {
    "reload".into()
}

fn default_gzip_level() -> u32 {
    1
}

fn default_part_size() -> String {
    "256MiB".into()
}

/// `max_errors = 10` or `max_errors = "2%"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawMaxErrors {
    /// A count.
    Count(u64),
    /// A percentage like `"2.5%"`.
    Text(String),
}

impl Default for RawMaxErrors {
    fn default() -> Self {
        RawMaxErrors::Count(0)
    }
}

/// `limits = { … }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest record (a CSV record, a JSON line or array element).
    #[serde(default = "default_max_record")]
    pub max_record_bytes: String,
    /// Largest decompressed size of a gzip input.
    #[serde(default = "default_max_decompressed")]
    pub max_decompressed_bytes: String,
    /// Largest decompressed:compressed ratio of a gzip input.
    #[serde(default = "default_max_ratio")]
    pub max_compression_ratio: u64,
    /// Deepest XML element nesting.
    #[serde(default = "default_max_xml_depth")]
    pub max_xml_depth: usize,
}

fn default_max_xml_depth() -> usize {
    64
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_record_bytes: default_max_record(),
            max_decompressed_bytes: default_max_decompressed(),
            max_compression_ratio: default_max_ratio(),
            max_xml_depth: default_max_xml_depth(),
        }
    }
}

fn default_max_record() -> String {
    "4MiB".into()
}
fn default_max_decompressed() -> String {
    "100GiB".into()
}
fn default_max_ratio() -> u64 {
    200
}

fn default_lookback_days() -> u32 {
    1
}

fn default_pattern() -> String {
    "*".into()
}
fn default_true() -> bool {
    true
}
fn default_mode() -> String {
    "merge".into()
}

/// `format = { kind = "csv", … }`
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RawFormat {
    /// Delimited text.
    Csv(RawCsv),
    /// One JSON object per line.
    Ndjson(RawNdjson),
    /// A JSON document: an array of objects, at the top or under a path.
    Json(RawJson),
    /// XML: the elements at a path are the records.
    Xml(RawXml),
}

/// XML options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawXml {
    /// Element path of the records from the root, by local name, e.g.
    /// `/export/events/event`.
    pub record_path: String,
}

/// NDJSON options (none yet).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNdjson {}

/// JSON document options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJson {
    /// Object members leading to the records array, e.g. `events` or
    /// `/data/events`; unset: the document itself is the array (or one
    /// record object).
    pub records_path: Option<String>,
}

impl Default for RawFormat {
    fn default() -> Self {
        RawFormat::Csv(RawCsv::default())
    }
}

/// CSV options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCsv {
    /// Field delimiter, one ASCII character.
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Quote character, one ASCII character.
    #[serde(default = "default_quote")]
    pub quote: String,
    /// The first record names the fields.
    #[serde(default = "default_true")]
    pub header: bool,
    /// Field names when `header = false`.
    #[serde(default)]
    pub field_names: Vec<String>,
    /// Escape character inside quoted fields (e.g. `\\`); unset: a quote
    /// is escaped by doubling it, as RFC 4180 says.
    pub escape: Option<String>,
    /// `utf-8`, `latin-1` (ISO-8859-1) or `windows-1252`.
    #[serde(default = "default_encoding")]
    pub encoding: String,
}

fn default_encoding() -> String {
    "utf-8".into()
}

impl Default for RawCsv {
    fn default() -> Self {
        RawCsv {
            delimiter: default_delimiter(),
            quote: default_quote(),
            header: true,
            field_names: Vec::new(),
            escape: None,
            encoding: default_encoding(),
        }
    }
}

fn default_delimiter() -> String {
    ",".into()
}
fn default_quote() -> String {
    "\"".into()
}

/// One target column.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawColumn {
    /// Column name in the target table.
    pub name: String,
    /// Input field it comes from (defaults to `name`).
    pub source: Option<String>,
    /// Derived instead of read: `source_file`, `source_line` or `ingest_time`.
    pub derived: Option<String>,
    /// A constant value instead of an input field.
    pub constant: Option<String>,
    /// `varchar(n)`, `int`, `bigint`, `decimal(p,s)`, `boolean`, `date`,
    /// `timestamp`, `timestamptz` or `json`.
    #[serde(rename = "type")]
    pub column_type: String,
    /// A missing or empty value rejects the row.
    #[serde(default)]
    pub required: bool,
    /// Value used when the input is missing or empty.
    pub default: Option<String>,
    /// Strip leading and trailing white space before checking.
    #[serde(default = "default_true")]
    pub trim: bool,
    /// Timestamp formats tried before ISO-8601: strftime patterns such as
    /// `%d/%m/%Y %H:%M`, or `epoch` (seconds) and `epoch_ms`.
    #[serde(default)]
    pub formats: Vec<String>,
    /// Zone of timestamps written without an offset: `UTC`, `+02:00` or an
    /// IANA name such as `Europe/Berlin`.
    pub timezone: Option<String>,
    /// A varchar value longer than its byte limit: `reject` (the row) or
    /// `truncate` (at a character boundary).
    #[serde(default = "default_on_overflow")]
    pub on_overflow: String,
}

fn default_on_overflow() -> String {
    "reject".into()
}

/// One dimension table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDimension {
    /// Dimension table name.
    pub table: String,
    /// Key column of the dimension (also the name of the fact column).
    pub key: String,
    /// Attribute columns and the fact column each comes from.
    #[serde(default)]
    pub columns: Vec<RawDimensionColumn>,
    /// `scd1` (update attributes in place, the default) or `scd2` (close
    /// the current row and add a new one when an attribute changes).
    #[serde(default = "default_history")]
    pub history: String,
    /// SCD2: the column holding when a row version became current.
    #[serde(default = "default_valid_from")]
    pub valid_from: String,
    /// SCD2: the column holding when it stopped being current (NULL while
    /// current).
    #[serde(default = "default_valid_to")]
    pub valid_to: String,
    /// SCD2: the boolean column marking the current row of a key.
    #[serde(default = "default_is_current")]
    pub is_current: String,
}

fn default_history() -> String {
    "scd1".into()
}

fn default_valid_from() -> String {
    "valid_from".into()
}

fn default_valid_to() -> String {
    "valid_to".into()
}

fn default_is_current() -> String {
    "is_current".into()
}

/// One dimension attribute.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDimensionColumn {
    /// Column in the dimension table.
    pub name: String,
    /// Column of the fact rows it is taken from (defaults to `name`).
    pub from: Option<String>,
}

/// `settle = { … }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettle {
    /// A file younger than this (by its modification time) is not ready.
    #[serde(default = "default_min_age")]
    pub min_age: String,
    /// If set, a file is ready only when `name + marker_suffix` exists.
    pub marker_suffix: Option<String>,
    /// If set, a file is ready only when a file of this name (e.g.
    /// `_SUCCESS`) exists in the same folder.
    pub folder_marker: Option<String>,
    /// A file is ready only after its size and modification time stayed
    /// the same across this many further polls (0: off).
    #[serde(default)]
    pub stable_polls: u32,
    /// Globs of temporary names that are never ready.
    #[serde(default = "default_temp_patterns")]
    pub temp_patterns: Vec<String>,
}

impl Default for RawSettle {
    fn default() -> Self {
        RawSettle {
            min_age: default_min_age(),
            marker_suffix: None,
            folder_marker: None,
            stable_polls: 0,
            temp_patterns: default_temp_patterns(),
        }
    }
}

fn default_min_age() -> String {
    "30s".into()
}
fn default_temp_patterns() -> Vec<String> {
    ["*.part", "*.tmp", "*.filepart", "*.partial", ".*"]
        .map(String::from)
        .to_vec()
}

/// `on_success = { action = "…" }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFinalize {
    /// `keep`, `delete` or `move`.
    #[serde(default = "default_action")]
    pub action: String,
    /// Folder for `move`; created if missing.
    pub to: Option<String>,
}

impl Default for RawFinalize {
    fn default() -> Self {
        RawFinalize {
            action: default_action(),
            to: None,
        }
    }
}

fn default_action() -> String {
    "keep".into()
}

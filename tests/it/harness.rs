//! Shared test set-up: in-process servers, a private PostgreSQL schema per
//! test, and a config that points ferry at them.

use ferry::testkit::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use ferry::testkit::sftp::{SftpServer, SftpUser, test_key};
use std::path::{Path, PathBuf};
use tokio_postgres::{Client, NoTls};

/// The database tests use, from `FERRY_TEST_DATABASE_URL`.
pub fn database_url() -> String {
    std::env::var("FERRY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A schema of its own in the test database; dropped by [`TestDb::drop_schema`].
pub struct TestDb {
    pub client: Client,
    pub schema: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
}

impl TestDb {
    /// Connects and creates a fresh schema. Fails (never skips) when
    /// PostgreSQL is unreachable, saying how to start it.
    pub async fn new() -> TestDb {
        let url = database_url();
        let cfg: tokio_postgres::Config = url
            .parse()
            .expect("FERRY_TEST_DATABASE_URL is a postgres:// URL");
        let (client, conn) = cfg.connect(NoTls).await.unwrap_or_else(|e| {
            panic!(
                "cannot connect to PostgreSQL at {url}: {e}\n\
                 start it with `pg_ctlcluster --skip-systemctl-redirect 15 main start`, \
                 or point FERRY_TEST_DATABASE_URL at a running server"
            )
        });
        tokio::spawn(conn);
        let schema = format!(
            "ferry_test_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        client
            .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .expect("create test schema");
        let host = match &cfg.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[allow(unreachable_patterns)]
            _ => "127.0.0.1".into(),
        };
        TestDb {
            client,
            schema,
            host,
            port: cfg.get_ports().first().copied().unwrap_or(5432),
            user: cfg.get_user().unwrap_or("postgres").to_string(),
            dbname: cfg.get_dbname().unwrap_or("postgres").to_string(),
        }
    }

    /// Drops the schema now (it is also dropped when the value goes away,
    /// even if the test panicked).
    pub async fn drop_schema(self) {
        let _ = self
            .client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ))
            .await;
    }

    /// `"schema"."table"`.
    pub fn t(&self, table: &str) -> String {
        format!("\"{}\".\"{table}\"", self.schema)
    }

    /// Rows in `table` of this schema.
    /// The first column (text) of each row of `sql`.
    pub async fn texts(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<String> {
        self.client
            .query(sql, params)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Runs `sql` (test-written; behind ferry's back).
    pub async fn execute(&self, sql: &str) {
        self.client.batch_execute(sql).await.unwrap();
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.client
            .query_one(&format!("SELECT count(*) FROM {}", self.t(table)), &[])
            .await
            .unwrap()
            .get(0)
    }

    /// The sum of the integer `column` of `table` (0 when empty).
    pub async fn sum(&self, table: &str, column: &str) -> i64 {
        self.client
            .query_one(
                &format!(
                    "SELECT coalesce(sum({column}), 0)::bigint FROM {}",
                    self.t(table)
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Rows of `table` matching the SQL condition `cond` (test-written).
    pub async fn count_where(&self, table: &str, cond: &str) -> i64 {
        self.client
            .query_one(
                &format!("SELECT count(*) FROM {} WHERE {cond}", self.t(table)),
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// The `[warehouse]` section for this schema.
    pub fn warehouse_toml(&self) -> String {
        format!(
            "[warehouse]\nkind = \"postgres\"\nhost = \"{}\"\nport = {}\nuser = \"{}\"\ndatabase = \"{}\"\nschema = \"{}\"\n",
            self.host, self.port, self.user, self.dbname, self.schema
        )
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // A panicking test never reaches drop_schema: clean up from a thread
        // with its own runtime, since Drop cannot await.
        let (url, schema) = (database_url(), self.schema.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, NoTls).await.ok()?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// The in-process servers of one test and the files they serve.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub s3: S3Server,
    pub sftp: SftpServer,
    pub known_hosts: PathBuf,
    pub secret_file: PathBuf,
}

pub const BUCKET: &str = "ferry-test";

impl Stack {
    pub async fn start() -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        let s3 = S3Server::start(&dir.path().join("s3"), "127.0.0.1:0")
            .await
            .expect("s3 server");
        s3.create_bucket(BUCKET).expect("bucket");
        let client_key = test_key("client_ed25519");
        let sftp = SftpServer::start(
            &dir.path().join("sftp"),
            "127.0.0.1:0",
            test_key("host_ed25519"),
            SftpUser {
                name: "partner".into(),
                password: Some("partner-pw".into()),
                key: Some(client_key.public_key().clone()),
            },
        )
        .await
        .expect("sftp server");
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, format!("{}\n", sftp.known_hosts_line())).unwrap();
        let secret_file = dir.path().join("s3-secret");
        std::fs::write(&secret_file, SECRET_KEY).unwrap();
        Stack {
            dir,
            s3,
            sftp,
            known_hosts,
            secret_file,
        }
    }

    /// A whole config: this stack's sections, `db`'s warehouse and `job`.
    pub fn config_toml(&self, db: &TestDb, job: &str) -> String {
        format!("{}{}{job}", self.base_toml(), db.warehouse_toml())
    }

    /// A stager for this stack's S3, with extra `[staging]` settings.
    pub async fn stager(&self, staging_extra: &str) -> ferry::stage::Stager {
        let toml = format!(
            "{}[warehouse]\nkind = \"postgres\"\n{}",
            self.base_toml()
                .replace("[staging]\n", &format!("[staging]\n{staging_extra}\n")),
            task_events_job("")
        );
        let config = ferry::config::from_toml_str(&toml).expect("config is valid");
        ferry::stage::Stager::new(&config.staging).await
    }

    /// Writes `toml` as this stack's `ferry.toml` and returns its path.
    pub fn write_config(&self, toml: &str) -> PathBuf {
        let path = self.dir.path().join("ferry.toml");
        std::fs::write(&path, toml).unwrap();
        path
    }

    /// Writes a file on the SFTP server (parents created).
    pub fn put_sftp(&self, path: &str, content: &str) -> PathBuf {
        let p = self.sftp.root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    /// `[staging]` and `[sources.partner]` sections.
    pub fn base_toml(&self) -> String {
        format!(
            r#"
[daemon]
poll_interval = "1s"

[staging]
bucket = "{BUCKET}"
prefix = "ferry"
endpoint = "{endpoint}"
path_style = true
access_key_id = "{ACCESS_KEY}"
secret_access_key_file = "{secret}"

[sources.partner]
kind = "sftp"
host = "127.0.0.1"
port = {port}
user = "partner"
private_key_file = "{key}"
known_hosts_file = "{known_hosts}"
"#,
            endpoint = self.s3.endpoint(),
            secret = self.secret_file.display(),
            port = self.sftp.addr.port(),
            key = ferry::testkit::testdata()
                .join("keys/client_ed25519")
                .display(),
            known_hosts = self.known_hosts.display(),
        )
    }

    /// An object of the bucket, gunzipped, as text.
    #[allow(clippy::disallowed_methods)] // small test objects
    pub fn object_text(&self, key: &str) -> String {
        use std::io::Read;
        let file = std::fs::File::open(self.s3.root.join(BUCKET).join(key))
            .unwrap_or_else(|e| panic!("object {key}: {e}"));
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(file)
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    /// An object of the bucket, as stored.
    #[allow(clippy::disallowed_methods)] // small test objects
    pub fn object_bytes(&self, key: &str) -> Vec<u8> {
        std::fs::read(self.s3.root.join(BUCKET).join(key))
            .unwrap_or_else(|e| panic!("object {key}: {e}"))
    }

    /// Staged objects under the bucket, as paths relative to it.
    pub fn staged_objects(&self) -> Vec<String> {
        let root = self.s3.root.join(BUCKET);
        let mut out = Vec::new();
        walk(&root, &root, &mut out);
        out.retain(|p| p.ends_with(".csv.gz") || p.ends_with(".parquet"));
        out.sort();
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
}

/// `toml` (from [`Stack::config_toml`]) with the SFTP source reached on
/// `port` (a proxy in front of the stack's server): the host key pinned by
/// fingerprint, since known_hosts entries are per port.
pub fn sftp_via(stack: &Stack, toml: &str, port: u16) -> String {
    let fingerprint = ferry::source::sftp::fingerprint(
        ferry::testkit::sftp::test_key("host_ed25519").public_key(),
    );
    toml.replace(
        &format!("port = {}", stack.sftp.addr.port()),
        &format!("port = {port}"),
    )
    .replace(
        &format!("known_hosts_file = \"{}\"", stack.known_hosts.display()),
        &format!("host_key_fingerprint = \"{fingerprint}\""),
    )
}

/// The task-event job used by most tests.
pub fn task_events_job(extra: &str) -> String {
    format!(
        r#"
[[jobs]]
name = "task-events"
source = "partner"
path = "/outbox"
pattern = "*.csv"
target = "task_events"
key = ["event_id"]
order_by = "occurred_at"
max_errors = 10
settle = {{ min_age = "0s" }}
{extra}
columns = [
  {{ name = "event_id", type = "varchar(64)", required = true }},
  {{ name = "task_id", type = "varchar(64)", required = true }},
  {{ name = "event_type", type = "varchar(32)", required = true }},
  {{ name = "status", type = "varchar(32)" }},
  {{ name = "user_id", type = "varchar(64)" }},
  {{ name = "source_system", type = "varchar(64)", source = "system" }},
  {{ name = "occurred_at", type = "timestamptz", required = true }},
  {{ name = "duration_ms", type = "bigint" }},
  {{ name = "attempt", type = "int", default = "1" }},
  {{ name = "payload", type = "json" }},
]
dimensions = [
  {{ table = "dim_task", key = "task_id", columns = [
      {{ name = "last_status", from = "status" }},
      {{ name = "last_event_type", from = "event_type" }},
      {{ name = "last_event_at", from = "occurred_at" }} ] }},
  {{ table = "dim_user", key = "user_id" }},
  {{ table = "dim_source_system", key = "source_system" }},
]
"#
    )
}

/// [`task_events_job`] with one more dimension, `dim_task_history`, that
/// keeps the status of each task as SCD2 (the test creates the table).
pub fn task_events_job_with_scd2() -> String {
    task_events_job("").replace(
        "dimensions = [\n",
        "dimensions = [\n  { table = \"dim_task_history\", key = \"task_id\", history = \"scd2\", columns = [{ name = \"status\" }] },\n",
    )
}

/// Validates `toml`, applies the migrations and starts a runtime on it.
pub async fn migrated_runtime(toml: &str) -> ferry::pipeline::Runtime {
    let config = ferry::config::from_toml_str(toml).expect("config is valid");
    let stager = ferry::stage::Stager::new(&config.staging).await;
    let wh = ferry::warehouse::connect(&config, &stager).await.unwrap();
    ferry::ledger::migrate(&*wh).await.unwrap();
    ferry::pipeline::Runtime::start(config)
        .await
        .expect("runtime starts")
}

/// The SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// FTP settings for a test server: EPSV, a 10 s timeout.
pub fn ftp_settings(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    tls: Option<ferry::config::FtpTls>,
) -> ferry::config::FtpSettings {
    ferry::config::FtpSettings {
        host: host.into(),
        port,
        user: user.into(),
        password: Some(ferry::config::Secret::new(password)),
        tls,
        connect_timeout: std::time::Duration::from_secs(10),
        io_timeout: std::time::Duration::from_secs(60),
        data_mode: ferry::config::FtpDataMode::Epsv,
    }
}

/// Downloads `path` from `offset` whole (test files are small).
pub async fn read_all(src: &dyn ferry::source::Source, path: &str, offset: u64) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut s = src.open(path, offset).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    out
}

/// A warehouse backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `kind = "postgres"`, straight to the test database.
    Postgres,
    /// `kind = "redshift-data"`, through the local Data API endpoint that
    /// runs on the test database and reads COPY input from the stack's S3.
    RedshiftData,
}

/// A stack, a schema, and for Redshift the Data API endpoint in front of
/// it: everything one conformance case needs.
pub struct Env {
    pub stack: Stack,
    pub db: TestDb,
    pub endpoint: Option<ferry::testkit::redshift_data::RedshiftDataServer>,
}

impl Env {
    pub async fn start(backend: Backend) -> Env {
        let stack = Stack::start().await;
        let db = TestDb::new().await;
        let endpoint = match backend {
            Backend::Postgres => None,
            Backend::RedshiftData => Some(
                ferry::testkit::redshift_data::RedshiftDataServer::start_with_s3(
                    &database_url(),
                    Some(stack.stager("").await.client().clone()),
                )
                .await
                .expect("data api endpoint"),
            ),
        };
        Env {
            stack,
            db,
            endpoint,
        }
    }

    /// The `[warehouse]` section for this backend.
    pub fn warehouse_toml(&self) -> String {
        match &self.endpoint {
            None => self.db.warehouse_toml(),
            Some(e) => format!(
                "[warehouse]\nkind = \"redshift-data\"\nregion = \"eu-west-1\"\ncluster_identifier = \"local\"\n\
                 db_user = \"ferry\"\ndatabase = \"dev\"\niam_role = \"arn:aws:iam::123456789012:role/ferry-copy\"\n\
                 endpoint = \"{}\"\nschema = \"{}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key_file = \"{}\"\n",
                e.endpoint(),
                self.db.schema,
                self.stack.secret_file.display()
            ),
        }
    }

    /// A whole config with `job`.
    pub fn config_toml(&self, job: &str) -> String {
        format!("{}{}{job}", self.stack.base_toml(), self.warehouse_toml())
    }

    /// Migrates through this backend and starts a runtime with `job`.
    pub async fn runtime(&self, job: &str) -> ferry::pipeline::Runtime {
        migrated_runtime(&self.config_toml(job)).await
    }

    pub async fn finish(self) {
        if let Some(e) = &self.endpoint {
            assert!(e.calls() > 0, "the case never reached the Data API");
        }
        self.db.drop_schema().await;
    }
}

/// Makes a test per warehouse backend of each `async fn case(Backend)`:
/// `postgres::case` and `redshift_data::case`.
macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    super::$case(super::Backend::Postgres).await
                }
            )*
        }
        mod redshift_data {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    super::$case(super::Backend::RedshiftData).await
                }
            )*
        }
    };
}
pub(crate) use both_backends;

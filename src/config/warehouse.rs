//! `[warehouse]`: PostgreSQL (the local stand-in) or the Redshift Data
//! API, with their connection, timeout and TLS settings.

use super::*;

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
    /// A file whose contents are the password (trailing newline dropped).
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
pub(super) fn default_sslmode() -> String {
    "disable".into()
}

/// 10 min: longer than a normal load holds the ledger lock, so replicas
/// take turns; a lock held by a stuck session is given up on.
pub(super) fn default_lock_timeout() -> String {
    "10m".into()
}

pub(super) fn default_pg_host() -> String {
    "127.0.0.1".into()
}

pub(super) fn default_pg_port() -> u16 {
    5432
}

pub(super) fn default_pg_user() -> String {
    "postgres".into()
}

pub(super) fn default_pg_database() -> String {
    "postgres".into()
}

pub(super) fn default_schema() -> String {
    "public".into()
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
    /// The database ferry connects to.
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
    /// A file whose contents are the secret access key.
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
pub(super) fn default_data_api_timeout() -> String {
    "30s".into()
}

pub(super) fn validate_warehouse(w: &RawWarehouse, p: &mut Problems) -> Option<WarehouseSettings> {
    match w {
        RawWarehouse::Postgres(pg) => validate_postgres(pg, p).map(WarehouseSettings::Postgres),
        RawWarehouse::RedshiftData(r) => {
            validate_redshift_data(r, p).map(WarehouseSettings::RedshiftData)
        }
    }
}

/// `kind = "postgres"`: connection, timeouts and TLS.
fn validate_postgres(pg: &RawPostgres, p: &mut Problems) -> Option<PostgresSettings> {
    let password = p.take_pathed(secret::resolve(
        "warehouse.password",
        pg.password_env.as_deref(),
        pg.password_file.as_deref(),
    ));
    let schema = p.take("warehouse.schema", Ident::parse(&pg.schema));
    let connect_timeout = p.take(
        "warehouse.connect_timeout",
        parse_duration(&pg.connect_timeout),
    );
    let statement_timeout = p.take(
        "warehouse.statement_timeout",
        timeout(&pg.statement_timeout),
    );
    let lock_timeout = p.take("warehouse.lock_timeout", timeout(&pg.lock_timeout));
    let sslmode = p.choose(
        "warehouse.sslmode",
        &pg.sslmode,
        &[
            ("disable", PgSslMode::Disable),
            ("prefer", PgSslMode::Prefer),
            ("require", PgSslMode::Require),
            ("verify-full", PgSslMode::VerifyFull),
        ],
    );
    if pg.ca_file.is_some() && sslmode != Some(PgSslMode::VerifyFull) {
        p.push(
            "warehouse.ca_file",
            "is only used with sslmode = \"verify-full\"",
        );
    }
    Some(PostgresSettings {
        host: pg.host.clone(),
        port: pg.port,
        user: pg.user.clone(),
        database: pg.database.clone(),
        password: password?,
        schema: schema?,
        connect_timeout: connect_timeout?,
        statement_timeout: statement_timeout?,
        lock_timeout: lock_timeout?,
        sslmode: sslmode?,
        ca_file: pg.ca_file.clone(),
    })
}

/// `kind = "redshift-data"`: the cluster or workgroup, the COPY role, AWS
/// keys and endpoint, timeouts.
fn validate_redshift_data(r: &RawRedshiftData, p: &mut Problems) -> Option<RedshiftDataSettings> {
    let schema = p.take("warehouse.schema", Ident::parse(&r.schema));
    let target = redshift_target(r, p);
    if !r.iam_role.starts_with("arn:aws") && r.iam_role != "default" {
        p.push(
            "warehouse.iam_role",
            format!("{:?} must be an IAM role ARN or \"default\"", r.iam_role),
        );
    }
    // The same key rules as S3's; the Data API endpoint is checked
    // for its scheme there too.
    let keys = s3_endpoint(
        "warehouse",
        S3Keys {
            region: &r.region,
            endpoint: &r.endpoint,
            path_style: false,
            access_key_id: &r.access_key_id,
            secret_env: &r.secret_access_key_env,
            secret_file: &r.secret_access_key_file,
            checksums: "auto",
            io_timeout: &r.io_timeout,
        },
        p,
    );
    let statement_timeout = p.take(
        "warehouse.statement_timeout",
        parse_duration(&r.statement_timeout),
    );
    Some(RedshiftDataSettings {
        region: r.region.clone(),
        target: target?,
        database: r.database.clone(),
        iam_role: r.iam_role.clone(),
        endpoint: r.endpoint.clone(),
        schema: schema?,
        io_timeout: keys.as_ref().map(|k| k.io_timeout)?,
        credentials: keys?.credentials,
        statement_timeout: statement_timeout?,
    })
}

/// Which Redshift the Data API talks to, and as whom: a provisioned
/// cluster with db_user or secret_arn, or a serverless workgroup.
fn redshift_target(r: &RawRedshiftData, p: &mut Problems) -> Option<RedshiftTarget> {
    match (
        &r.cluster_identifier,
        &r.workgroup_name,
        &r.db_user,
        &r.secret_arn,
    ) {
        (Some(c), None, Some(u), None) => Some(RedshiftTarget::ClusterDbUser {
            cluster: c.clone(),
            db_user: u.clone(),
        }),
        (Some(c), None, None, Some(s)) => Some(RedshiftTarget::ClusterSecret {
            cluster: c.clone(),
            secret_arn: s.clone(),
        }),
        (None, Some(w), None, s) => Some(RedshiftTarget::Workgroup {
            workgroup: w.clone(),
            secret_arn: s.clone(),
        }),
        (Some(_), Some(_), _, _) => {
            p.push(
                "warehouse.workgroup_name",
                "set either cluster_identifier or workgroup_name, not both",
            );
            None
        }
        (None, None, _, _) => {
            p.push(
                "warehouse.cluster_identifier",
                "set cluster_identifier (provisioned) or workgroup_name (serverless)",
            );
            None
        }
        (Some(_), None, None, None) => {
            p.push(
                "warehouse.db_user",
                "a provisioned cluster needs db_user or secret_arn",
            );
            None
        }
        (Some(_), None, Some(_), Some(_)) => {
            p.push(
                "warehouse.secret_arn",
                "set db_user or secret_arn, not both",
            );
            None
        }
        (None, Some(_), Some(_), _) => {
            p.push(
                "warehouse.db_user",
                "serverless workgroups take secret_arn or IAM, not db_user",
            );
            None
        }
    }
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
    /// Name or address of the server.
    pub host: String,
    /// TCP port (5432 unless set).
    pub port: u16,
    /// The role ferry logs in as.
    pub user: String,
    /// The database ferry connects to.
    pub database: String,
    /// The login password; `None` relies on trust or peer authentication.
    pub password: Option<Secret>,
    /// The schema holding the ledger and the targets.
    pub schema: Ident,
    /// The longest a TCP connect plus TLS and login may take.
    pub connect_timeout: Duration,
    /// Server-side `statement_timeout`, and ferry's own deadline for one
    /// load or ledger call.
    pub statement_timeout: Duration,
    /// Server-side `lock_timeout`: how long a load waits for another's lock
    /// before it fails (transiently) and is retried.
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
    /// The AWS region of the cluster or workgroup.
    pub region: String,
    /// Cluster or workgroup and how to authenticate.
    pub target: RedshiftTarget,
    /// The database statements run in.
    pub database: String,
    /// The IAM role COPY assumes to read the staged objects (`default`: the
    /// cluster's default role).
    pub iam_role: String,
    /// A Data API endpoint other than AWS's (a local emulator); `None` for AWS.
    pub endpoint: Option<String>,
    /// The schema holding the ledger and the targets.
    pub schema: Ident,
    /// Static credentials; `None` uses the default chain.
    pub credentials: Option<(String, Secret)>,
    /// Longest wait for one statement or batch.
    pub statement_timeout: Duration,
    /// The longest one Data API call attempt may take.
    pub io_timeout: Duration,
}

//! The Redshift backend, through the Redshift Data API.
//!
//! Every call gets a fresh database session, and a batch
//! (`BatchExecuteStatement`) is one transaction that cannot branch on its
//! own results. So a load is one batch whose statements decide everything
//! in SQL: the batch's file versions are COPYed into a temp table
//! (`ferry_batch`) from a small CSV under `manifests/`; versions the ledger
//! already has as `loaded` are deleted from it (after `LOCK`, so two
//! replicas serialize); the staged parts are COPYed from a manifest and the
//! rows of dropped versions deleted; a row-count check divides by zero if
//! the stage does not hold exactly the rows normalize wrote; then the same
//! merge statements as PostgreSQL's, and the ledger rows from
//! `ferry_batch`. Afterwards `ferry_files WHERE load_id = …` says which
//! versions this load wrote. Values travel as Data API parameters or
//! inside the CSVs, never spliced into the SQL text (the S3 URLs and the
//! IAM role of a COPY are literals by COPY's grammar; they are checked).
//!
//! Statements are polled with `DescribeStatement` with backoff until
//! FINISHED, FAILED or ABORTED. A serializable-isolation conflict (error
//! 1023) or a throttled call is transient and the whole load retries; a
//! failed COPY fetches its rows from `sys_load_error_detail` so the reason
//! names the file, line and column.

use super::sql::LoadSql;
use super::{FailedFile, LedgerRows, LoadOutcome, StagedFile, Warehouse};
use crate::aws::sdk_error;
use crate::config::{Job, RedshiftDataSettings, RedshiftTarget};
use crate::error::{Error, ErrorKind, Result};
use crate::ledger::reports::{Change, Report};
use crate::ledger::{FileState, FileVersion, LedgerSql, fit, width};
use crate::migrate::{MIGRATIONS, VERSIONS_TABLE, render};
use crate::normalize::RowError;
use crate::normalize::write_record;
use crate::retry::{RetryPolicy, retry};
use crate::sql::Dialect;
use crate::sql::Ident;
use crate::stage::Stager;
use async_trait::async_trait;
use aws_sdk_redshiftdata::Client;
use aws_sdk_redshiftdata::operation::describe_statement::DescribeStatementOutput;
use aws_sdk_redshiftdata::types::{Field, SqlParameter, StatusString};
use std::sync::Arc;
use std::time::Instant;

/// A Redshift warehouse reached through the Data API.
pub struct RedshiftDataWarehouse {
    settings: RedshiftDataSettings,
    client: Client,
    ledger: LedgerSql,
    stager: Stager,
}

/// A parameter value: `None` is SQL NULL. The Data API can carry neither
/// NULL nor an empty string, so those become the constants `NULL` and `''`
/// in the text (constants, not values from outside).
type Param<'a> = (&'a str, Option<String>);

/// Most statements one batch may hold.
const MAX_BATCH: usize = 40;

/// Paths looked up per ledger query.
const LOOKUP_CHUNK: usize = 200;

/// A failed statement: which sub-statement of a batch, and the message.
#[derive(Debug)]
struct Failed {
    sub: Option<usize>,
    message: String,
}

/// Redshift messages (lower-cased fragments) that mean "try again", as
/// PostgreSQL's transient SQLSTATEs do on the local backend
/// ([`is_transient_state`](super::postgres)): the Data API gives no code,
/// only the text. Each with why.
const RETRYABLE: &[(&str, &str)] = &[
    (
        "1023",
        "serializable isolation violation (concurrent writers)",
    ),
    (
        "serializable isolation violation",
        "the same, without its number",
    ),
    (
        "could not serialize access",
        "PostgreSQL's 40001 behind the local endpoint",
    ),
    (
        "deadlock detected",
        "40P01: one of two waiting transactions is chosen",
    ),
    (
        "wlm",
        "a WLM rule or timeout cancelled the query: the queue was busy",
    ),
    (
        "cancelled on user's request",
        "a WLM timeout or an operator cancel",
    ),
    (
        "canceling statement due to",
        "statement or lock timeout, a cancel",
    ),
    (
        "cancelled:",
        "the statement was ABORTED by a cancel (ferry's own on its deadline or the service's)",
    ),
    (
        "terminating connection",
        "the session was ended (maintenance, a reboot)",
    ),
    ("server closed the connection", "the leader node restarted"),
    ("connection reset", "the connection was lost"),
    (
        "could not connect",
        "the cluster is not accepting connections yet",
    ),
    (
        "the database system is",
        "starting up or shutting down (57P03)",
    ),
    ("restart", "a cluster restart or maintenance window"),
    ("maintenance", "the cluster is in its maintenance window"),
    ("resiz", "the cluster is being resized"),
    ("out of memory", "resources: a later run gets its memory"),
    (
        "disk full",
        "resources: space is freed by vacuum or other loads",
    ),
    ("lock timeout", "a lock not granted in time"),
];

/// Whether a failed statement's message is one of [`RETRYABLE`]: a rerun
/// of the whole batch (one transaction) can succeed.
/// Quoted parts (values, names) are left out first, so a bad value that
/// happens to read "restart" stays a data error.
fn retryable(message: &str) -> bool {
    let mut m = String::with_capacity(message.len());
    let mut quote = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' && !m.ends_with(|p: char| p.is_alphanumeric()) => {
                quote = Some(c)
            }
            None => m.push(c.to_ascii_lowercase()),
        }
    }
    RETRYABLE.iter().any(|(needle, _)| m.contains(needle))
}

/// Replaces `:name` placeholders whose value is NULL or empty with the
/// constants `NULL` / `''`, and returns the parameters left to send.
fn inline_constants(sql: &str, params: &[Param<'_>]) -> (String, Vec<SqlParameter>) {
    let mut text = sql.to_string();
    let mut send = Vec::new();
    // Longest names first, so `:e1` never eats the start of `:e10`.
    let mut order: Vec<&Param<'_>> = params.iter().collect();
    order.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    for (name, value) in order {
        let constant = match value.as_deref() {
            None => "NULL",
            Some("") => "''",
            Some(v) => {
                if text.contains(&format!(":{name}")) {
                    send.push(
                        SqlParameter::builder()
                            .name(*name)
                            .value(v)
                            .build()
                            .expect("name and value are set"),
                    );
                }
                continue;
            }
        };
        text = replace_placeholder(&text, name, constant);
    }
    (text, send)
}

/// Replaces `:name` (not `::type`, not a longer name, not inside quotes).
fn replace_placeholder(sql: &str, name: &str, with: &str) -> String {
    crate::sql::bind::rewrite_named(sql, |n| (n == name).then(|| with.to_string()))
}

/// A COPY literal (S3 URL, IAM role) may hold no quote or backslash.
fn literal(what: &str, value: &str) -> Result<String> {
    if value.contains(['\'', '\\']) || value.chars().any(char::is_control) {
        return Err(Error::config(format!(
            "{what} {value:?} holds a quote, backslash or control character, which ferry will not put in a COPY statement"
        )));
    }
    Ok(format!("'{value}'"))
}

/// A text field of a result row.
fn text(f: &Field) -> Option<String> {
    match f {
        Field::StringValue(s) => Some(s.clone()),
        Field::LongValue(n) => Some(n.to_string()),
        Field::BooleanValue(b) => Some(b.to_string()),
        Field::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn long(f: &Field) -> Option<i64> {
    match f {
        Field::LongValue(n) => Some(*n),
        Field::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn boolean(f: &Field) -> Option<bool> {
    match f {
        Field::BooleanValue(b) => Some(*b),
        Field::StringValue(s) => Some(matches!(s.as_str(), "t" | "true" | "1")),
        _ => None,
    }
}

/// One gzip CSV in memory (small: batch lists and error rows).
fn gzip_csv<'a>(rows: impl Iterator<Item = Vec<Option<&'a str>>>) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for row in rows {
        write_record(&mut gz, row).expect("writing to memory");
    }
    gz.finish().expect("writing to memory")
}

/// The columns of `ferry_batch`, the batch's file list.
pub const BATCH_COLUMNS: &str = "path VARCHAR(1024), size BIGINT, mtime BIGINT, sha256 VARCHAR(64), staged_key VARCHAR(1024), rows_loaded BIGINT, rows_rejected BIGINT, rejects_key VARCHAR(1024), input_bytes BIGINT";

/// The columns of `ferry_batch_errors`, the batch's kept rejected records.
pub const BATCH_ERROR_COLUMNS: &str = "path VARCHAR(1024), size BIGINT, mtime BIGINT, line_number BIGINT, column_name VARCHAR(127), error_code INTEGER, reason VARCHAR(1024), raw_line VARCHAR(1024), raw_field_value VARCHAR(1024)";

/// Cuts a text to at most `max` bytes on a character boundary.
/// Where a load batch reads from: checked string literals of S3 URLs and
/// the IAM role (or `default`).
#[derive(Debug, Clone)]
pub struct BatchInputs {
    /// The batch's file list (gzip CSV of [`BATCH_COLUMNS`]).
    pub list: String,
    /// The COPY manifest of the staged parts; `None` when no part has rows.
    pub manifest: Option<String>,
    /// The kept rejected records (gzip CSV of [`BATCH_ERROR_COLUMNS`]), if any.
    pub errors: Option<String>,
    /// `IAM_ROLE` value.
    pub role: String,
}

/// The statements of one load batch, each with what it does.
#[derive(Debug, Clone)]
pub struct LoadBatch {
    /// Statements and their purpose, in order.
    pub statements: Vec<(String, &'static str)>,
    /// Index of the staged parts' COPY, if there is one.
    pub copy_at: Option<usize>,
    /// Index of the row-count check.
    pub check_at: usize,
}

/// Statements that insert the kept rejected records from `url` into
/// `ferry_load_errors` (params `:job`, `:load_id`); with `only_batch`, only
/// those of versions still in `ferry_batch`.
pub fn errors_sql(schema: &Ident, url: &str, role: &str, only_batch: bool) -> Vec<String> {
    let join = if only_batch {
        " JOIN ferry_batch b ON b.path = e.path AND b.size = e.size AND b.mtime = e.mtime"
    } else {
        ""
    };
    vec![
        format!("CREATE TEMP TABLE ferry_batch_errors ({BATCH_ERROR_COLUMNS})"),
        format!(
            "COPY ferry_batch_errors FROM {url} IAM_ROLE {role} GZIP CSV NULL AS '\\N' COMPUPDATE OFF STATUPDATE OFF"
        ),
        format!(
            "INSERT INTO {}.\"ferry_load_errors\" (job, path, size, mtime, load_id, line_number, column_name, error_code, reason, raw_line, raw_field_value, created_at) \
             SELECT :job, e.path, e.size, e.mtime, CAST(:load_id AS VARCHAR(64)), e.line_number, e.column_name, e.error_code, e.reason, e.raw_line, e.raw_field_value, SYSDATE \
             FROM ferry_batch_errors e{join}",
            schema.quoted()
        ),
    ]
}

/// Renders one load batch for `job` (params `:job`, `:load_id`,
/// `:started_at`). See the module documentation for the steps.
pub fn load_batch(
    schema: &Ident,
    job: &Job,
    stage: &Ident,
    target_meta: Vec<&'static str>,
    inputs: &BatchInputs,
) -> LoadBatch {
    let sql = LoadSql {
        dialect: Dialect::Redshift,
        schema,
        job,
        stage,
        target_meta,
    };
    let table = |t: &str| format!("{}.\"{t}\"", schema.quoted());
    let files = table("ferry_files");
    let role = &inputs.role;
    // Lock the ledger, then the target and its dimensions, always in this
    // order, at the start: replicas serialize instead of failing with
    // 1023, and never deadlock.
    let mut tables = vec![
        files.clone(),
        table("ferry_loads"),
        table("ferry_load_errors"),
    ];
    tables.extend(super::sql::target_tables(schema, job));
    let mut stmts: Vec<(String, &'static str)> = vec![
        (
            format!("LOCK TABLE {}", tables.join(", ")),
            "lock the ledger and the target tables",
        ),
        (
            format!("CREATE TEMP TABLE ferry_batch ({BATCH_COLUMNS})"),
            "create the batch list",
        ),
        (
            format!(
                "COPY ferry_batch FROM {} IAM_ROLE {role} GZIP CSV NULL AS '\\N' COMPUPDATE OFF STATUPDATE OFF",
                inputs.list
            ),
            "COPY the batch list",
        ),
        (
            format!(
                "DELETE FROM ferry_batch USING {files} f WHERE f.job = :job AND f.path = ferry_batch.path \
                 AND f.size = ferry_batch.size AND f.mtime = ferry_batch.mtime AND f.state = 'loaded'"
            ),
            "leave out versions already loaded",
        ),
        (sql.create_stage(), "create the staging table"),
    ];
    let mut copy_at = None;
    if let Some(manifest) = &inputs.manifest {
        copy_at = Some(stmts.len());
        stmts.push((
            sql.copy_stage_from_s3(manifest, role),
            "COPY the staged parts",
        ));
        stmts.push((
            format!(
                "DELETE FROM {} WHERE \"ferry_file\" NOT IN (SELECT path FROM ferry_batch)",
                stage.quoted()
            ),
            "drop staged rows of versions already loaded",
        ));
    }
    let check_at = stmts.len();
    stmts.push((
        format!(
            "SELECT 1 / (CASE WHEN (SELECT COUNT(*) FROM {}) = (SELECT COALESCE(SUM(rows_loaded), 0) FROM ferry_batch) THEN 1 ELSE 0 END) AS ferry_row_count_check",
            stage.quoted()
        ),
        "check the staged row count",
    ));
    if let Some(stale) = sql.drop_stale() {
        stmts.push((stale, "drop staged rows older than the target's"));
    }
    for d in &job.dimensions {
        for s in sql.merge_dimension(d) {
            stmts.push((s, "merge a dimension"));
        }
    }
    if let Some(delete) = sql.delete_replaced() {
        stmts.push((delete, "replace rows in the target"));
    }
    stmts.push((sql.insert_fact(), "insert into the target"));
    stmts.push((
        format!(
            "DELETE FROM {files} USING ferry_batch b WHERE {files}.job = :job AND {files}.path = b.path \
             AND {files}.size = b.size AND {files}.mtime = b.mtime AND {files}.state <> 'loaded'"
        ),
        "clear earlier failures of the batch's versions",
    ));
    stmts.push((
        format!(
            "INSERT INTO {files} (job, path, size, mtime, sha256, state, staged_key, rows_loaded, rows_rejected, first_seen_at, loaded_at, load_id, rejects_key) \
             SELECT :job, path, size, mtime, sha256, 'loaded', staged_key, rows_loaded, rows_rejected, SYSDATE, SYSDATE, CAST(:load_id AS VARCHAR(64)), rejects_key FROM ferry_batch"
        ),
        "record the files in the ledger",
    ));
    if let Some(url) = &inputs.errors {
        for s in errors_sql(schema, url, role, true) {
            stmts.push((s, "record the rejected records"));
        }
    }
    stmts.push((
        format!(
            "INSERT INTO {} (load_id, job, files, rows_loaded, bytes, started_at, finished_at, duration_ms) \
             SELECT CAST(:load_id AS VARCHAR(64)), :job, CAST(b.files AS INTEGER), b.rows_loaded, b.bytes, CAST(:started_at AS TIMESTAMPTZ), GETDATE(), 0 \
             FROM (SELECT COUNT(*) AS files, COALESCE(SUM(rows_loaded), 0) AS rows_loaded, COALESCE(SUM(input_bytes), 0) AS bytes FROM ferry_batch) b WHERE b.files > 0",
            table("ferry_loads")
        ),
        "record the load",
    ));
    LoadBatch {
        statements: stmts,
        copy_at,
        check_at,
    }
}

/// Sets the database and the cluster or workgroup and its credentials on
/// an ExecuteStatement or BatchExecuteStatement call (two builder types
/// with the same setters).
macro_rules! targeted {
    ($wh:expr, $call:expr) => {{
        let (cluster, db_user, secret, workgroup) = $wh.target();
        $call
            .database(&$wh.settings.database)
            .set_cluster_identifier(cluster)
            .set_db_user(db_user)
            .set_secret_arn(secret)
            .set_workgroup_name(workgroup)
    }};
}

/// The id of a submitted call.
fn statement_id(id: Option<&str>) -> Result<String> {
    id.map(str::to_string)
        .ok_or_else(|| Error::transient("the Data API accepted a statement but returned no id"))
}

impl RedshiftDataWarehouse {
    /// Builds the Data API client (no call is made until the first
    /// statement).
    pub async fn connect(settings: &RedshiftDataSettings, stager: Stager) -> Result<Self> {
        let sdk = crate::aws::aws_config(
            &settings.region,
            settings.credentials.as_ref(),
            settings.io_timeout,
        )
        .await;
        let mut b = aws_sdk_redshiftdata::config::Builder::from(&sdk);
        if let Some(url) = &settings.endpoint {
            b = b.endpoint_url(url.clone());
        }
        Ok(RedshiftDataWarehouse {
            settings: settings.clone(),
            client: Client::from_conf(b.build()),
            ledger: LedgerSql::with_dialect(&settings.schema, Dialect::Redshift),
            stager,
        })
    }

    fn describe(&self) -> String {
        match &self.settings.target {
            RedshiftTarget::ClusterDbUser { cluster, db_user } => format!(
                "redshift cluster {cluster} database {} as {db_user}",
                self.settings.database
            ),
            RedshiftTarget::ClusterSecret { cluster, .. } => format!(
                "redshift cluster {cluster} database {}",
                self.settings.database
            ),
            RedshiftTarget::Workgroup { workgroup, .. } => format!(
                "redshift serverless workgroup {workgroup} database {}",
                self.settings.database
            ),
        }
    }

    fn schema(&self) -> &Ident {
        &self.settings.schema
    }

    fn table(&self, name: &str) -> String {
        format!("{}.\"{name}\"", self.schema().quoted())
    }

    /// Submits one statement; returns its id.
    async fn submit(&self, sql: &str, params: &[Param<'_>]) -> Result<String> {
        let (sql, params) = inline_constants(sql, params);
        let call = targeted!(self, self.client.execute_statement().sql(sql));
        let out = call
            .set_parameters((!params.is_empty()).then_some(params))
            .send()
            .await
            .map_err(sdk_error(format!(
                "the Data API refused a statement for {}",
                self.describe()
            )))?;
        statement_id(out.id())
    }

    /// Submits a batch (one transaction); returns its id.
    async fn submit_batch(&self, sqls: &[String], params: &[Param<'_>]) -> Result<String> {
        assert!(
            sqls.len() <= MAX_BATCH,
            "a batch holds at most {MAX_BATCH} statements"
        );
        let mut texts = Vec::with_capacity(sqls.len());
        let mut send: Vec<SqlParameter> = Vec::new();
        for sql in sqls {
            let (text, used) = inline_constants(sql, params);
            texts.push(text);
            for p in used {
                if !send.iter().any(|s| s.name() == p.name()) {
                    send.push(p);
                }
            }
        }
        let call = targeted!(
            self,
            self.client.batch_execute_statement().set_sqls(Some(texts))
        );
        let out = call
            .set_parameters((!send.is_empty()).then_some(send))
            .send()
            .await
            .map_err(sdk_error(format!(
                "the Data API refused a batch for {}",
                self.describe()
            )))?;
        statement_id(out.id())
    }

    /// Cluster id, db user, secret ARN and workgroup, as the target says.
    fn target(
        &self,
    ) -> (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ) {
        match &self.settings.target {
            RedshiftTarget::ClusterDbUser { cluster, db_user } => {
                (Some(cluster.clone()), Some(db_user.clone()), None, None)
            }
            RedshiftTarget::ClusterSecret {
                cluster,
                secret_arn,
            } => (Some(cluster.clone()), None, Some(secret_arn.clone()), None),
            RedshiftTarget::Workgroup {
                workgroup,
                secret_arn,
            } => (None, None, secret_arn.clone(), Some(workgroup.clone())),
        }
    }

    /// Polls a statement with backoff ([`RetryPolicy::POLL`]) until it
    /// ends. FAILED and ABORTED come back as [`Failed`]; past the
    /// statement timeout the statement is cancelled and the wait fails
    /// transiently. An unknown status counts as still running.
    async fn wait(
        &self,
        id: &str,
        what: &str,
    ) -> Result<std::result::Result<DescribeStatementOutput, Failed>> {
        let started = Instant::now();
        let mut polls = 0;
        loop {
            let d = self
                .client
                .describe_statement()
                .id(id)
                .send()
                .await
                .map_err(sdk_error(format!("cannot follow {what} ({id})")))?;
            match d.status() {
                Some(StatusString::Finished) => return Ok(Ok(d)),
                Some(StatusString::Failed) | Some(StatusString::Aborted) => {
                    let sub = d
                        .sub_statements()
                        .iter()
                        .position(|s| s.error().is_some_and(|e| !e.is_empty()));
                    let message = d
                        .error()
                        .map(str::to_string)
                        .or_else(|| {
                            sub.and_then(|i| d.sub_statements()[i].error().map(str::to_string))
                        })
                        .unwrap_or_else(|| {
                            format!("{:?} without a message", d.status().expect("a status"))
                        });
                    let message = if d.status() == Some(&StatusString::Aborted) {
                        format!("cancelled: {message}")
                    } else {
                        message
                    };
                    return Ok(Err(Failed { sub, message }));
                }
                _ => {}
            }
            if started.elapsed() > self.settings.statement_timeout {
                let _ = self.client.cancel_statement().id(id).send().await;
                return Err(Error::transient(format!(
                    "{what} ({id}) ran longer than warehouse.statement_timeout ({:?}); cancelled, will retry",
                    self.settings.statement_timeout
                )));
            }
            polls += 1;
            tokio::time::sleep(RetryPolicy::POLL.delay(polls)).await;
        }
    }

    /// Turns a failed statement into an error: [`RETRYABLE`] messages (a
    /// conflict, a WLM abort, a cancel, a restart) are transient.
    fn failure(what: &str, f: &Failed) -> Error {
        let kind = if retryable(&f.message) {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        };
        Error::new(kind, format!("{what}: {}", f.message))
    }

    /// Runs one statement to its end.
    async fn run(
        &self,
        sql: &str,
        params: &[Param<'_>],
        what: &str,
    ) -> Result<DescribeStatementOutput> {
        let id = self.submit(sql, params).await?;
        self.wait(&id, what)
            .await?
            .map_err(|f| Self::failure(what, &f))
    }

    /// Runs one query and returns its rows (every page).
    async fn query(&self, sql: &str, params: &[Param<'_>], what: &str) -> Result<Vec<Vec<Field>>> {
        let done = self.run(sql, params, what).await?;
        let mut rows = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_statement_result()
                .id(done.id())
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(sdk_error(format!("cannot read the result of {what}")))?;
            rows.extend(page.records().iter().cloned());
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(rows),
            }
        }
    }

    /// Which of the target's metadata columns exist; errors if the table
    /// does not or lacks a job column.
    async fn target_columns(&self, job: &Job) -> Result<Vec<&'static str>> {
        let rows = self
            .query(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = :schema AND table_name = :table",
                &[
                    ("schema", Some(self.schema().as_str().to_string())),
                    ("table", Some(job.target.as_str().to_string())),
                ],
                "reading the target's columns",
            )
            .await?;
        let have: Vec<String> = rows
            .iter()
            .filter_map(|r| r.first().and_then(text))
            .collect();
        super::check_target(job, self.schema(), &have)
    }

    /// Uploads the kept rejected records of `files` as a gzip CSV under
    /// `folder`; returns its key, or `None` when there are none.
    async fn upload_errors(
        &self,
        folder: &str,
        files: &[(&FileVersion, &[RowError])],
    ) -> Result<Option<String>> {
        if files.iter().all(|(_, e)| e.is_empty()) {
            return Ok(None);
        }
        let mut rows: Vec<Vec<Option<String>>> = Vec::new();
        for (v, errors) in files {
            for e in errors.iter() {
                rows.push(vec![
                    Some(v.path.clone()),
                    Some(v.size.to_string()),
                    Some(v.mtime.to_string()),
                    Some(e.line.to_string()),
                    e.column
                        .as_deref()
                        .map(|c| fit(c, width::COLUMN).to_string()),
                    Some(e.code.to_string()),
                    Some(fit(&e.reason, width::REASON).to_string()),
                    Some(fit(&e.raw_line, width::RAW_LINE).to_string()),
                    e.raw_value
                        .as_deref()
                        .map(|r| fit(r, width::RAW_VALUE).to_string()),
                ]);
            }
        }
        let body = gzip_csv(
            rows.iter()
                .map(|r| r.iter().map(|f| f.as_deref()).collect()),
        );
        let key = format!("{folder}errors.csv.gz");
        self.stager.put_small(&key, body, "text/csv").await?;
        Ok(Some(key))
    }

    /// Inserts `errors` of `v` into `ferry_load_errors` (no load id).
    async fn keep_errors(&self, folder: &str, v: &FileVersion, errors: &[RowError]) -> Result<()> {
        let Some(key) = self.upload_errors(folder, &[(v, errors)]).await? else {
            return Ok(());
        };
        let sqls = errors_sql(
            self.schema(),
            &literal("S3 URL", &self.stager.url(&key))?,
            &self.iam_role()?,
            false,
        );
        let id = self
            .submit_batch(&sqls, &[("job", Some(v.job.clone())), ("load_id", None)])
            .await?;
        self.wait(&id, "keeping the COPY errors")
            .await?
            .map_err(|f| Self::failure("cannot keep the COPY errors", &f))?;
        Ok(())
    }

    fn iam_role(&self) -> Result<String> {
        if self.settings.iam_role == "default" {
            return Ok("default".into());
        }
        literal("warehouse.iam_role", &self.settings.iam_role)
    }

    /// Reads `sys_load_error_detail` for the COPY that failed: rows about
    /// the batch's parts since `since`. Best effort: a failure to read it
    /// is logged and yields nothing.
    async fn copy_errors(
        &self,
        batch: &[&StagedFile],
        since: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(usize, RowError)> {
        let prefix = format!(
            "{}%",
            self.stager
                .url(&self.stager.staged_root(&batch[0].version.job))
        );
        let rows = match self
            .query(
                "SELECT TRIM(file_name), line_number, TRIM(column_name), TRIM(error_message), TRIM(raw_line), TRIM(raw_field_value) \
                 FROM sys_load_error_detail WHERE start_time >= :since AND TRIM(file_name) LIKE :prefix ORDER BY start_time, line_number LIMIT 1000",
                &[
                    ("since", Some(since.format("%Y-%m-%d %H:%M:%S").to_string())),
                    ("prefix", Some(prefix)),
                ],
                "reading sys_load_error_detail",
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e.chain(), "cannot read sys_load_error_detail for the failed COPY");
                return Vec::new();
            }
        };
        rows.iter()
            .filter_map(|r| {
                let file = r.first().and_then(text)?;
                let i = batch
                    .iter()
                    .position(|f| f.parts.iter().any(|p| self.stager.url(p) == file))?;
                Some((
                    i,
                    RowError {
                        line: r.get(1).and_then(long).unwrap_or(0).max(0) as u64,
                        column: r.get(2).and_then(text).filter(|c| !c.is_empty()),
                        code: 1200,
                        reason: r.get(3).and_then(text).unwrap_or_default(),
                        raw_line: r.get(4).and_then(text).unwrap_or_default(),
                        raw_value: r.get(5).and_then(text),
                    },
                ))
            })
            .collect()
    }

    async fn load_once(&self, job: &Job, batch: &[StagedFile]) -> Result<Vec<LoadOutcome>> {
        let started = chrono::Utc::now();
        let clock = Instant::now();
        let target_meta = self.target_columns(job).await?;
        let load_id = uuid::Uuid::new_v4().simple().to_string();
        let folder = self.stager.manifest_folder(&job.name, &load_id, started);
        let role = self.iam_role()?;

        // The batch's file list, and the COPY manifest of its parts.
        // The numbers of each file, as text for the CSV.
        let sizes: Vec<[String; 5]> = batch
            .iter()
            .map(|f| {
                [
                    f.version.size.to_string(),
                    f.version.mtime.to_string(),
                    f.rows.to_string(),
                    f.rejected.to_string(),
                    f.input_bytes.to_string(),
                ]
            })
            .collect();
        let list = gzip_csv(batch.iter().zip(&sizes).map(|(f, n)| {
            vec![
                Some(f.version.path.as_str()),
                Some(n[0].as_str()),
                Some(n[1].as_str()),
                Some(f.sha256.as_str()),
                Some(f.staged_prefix.as_str()),
                Some(n[2].as_str()),
                Some(n[3].as_str()),
                f.rejects_key.as_deref(),
                Some(n[4].as_str()),
            ]
        }));
        let list_key = format!("{folder}files.csv.gz");
        self.stager.put_small(&list_key, list, "text/csv").await?;
        let parts: Vec<String> = batch.iter().flat_map(|f| f.parts.iter().cloned()).collect();
        let manifest_key = format!("{folder}parts.manifest");
        if !parts.is_empty() {
            let entries: Vec<serde_json::Value> = parts
                .iter()
                .map(|k| serde_json::json!({"url": self.stager.url(k), "mandatory": true}))
                .collect();
            let body = serde_json::to_vec_pretty(&serde_json::json!({ "entries": entries }))
                .expect("JSON");
            self.stager
                .put_small(&manifest_key, body, "application/json")
                .await?;
        }

        let errors: Vec<(&FileVersion, &[RowError])> = batch
            .iter()
            .map(|f| (&f.version, f.errors.as_slice()))
            .collect();
        let errors_key = self.upload_errors(&folder, &errors).await?;
        let url = |key: &str| literal("S3 URL", &self.stager.url(key));
        let inputs = BatchInputs {
            list: url(&list_key)?,
            manifest: if parts.is_empty() {
                None
            } else {
                Some(url(&manifest_key)?)
            },
            errors: errors_key.as_deref().map(url).transpose()?,
            role,
        };
        let stage =
            Ident::parse(&format!("ferry_stage_{}", &load_id[..12])).expect("a valid identifier");
        let LoadBatch {
            statements: stmts,
            copy_at,
            check_at,
        } = load_batch(self.schema(), job, &stage, target_meta, &inputs);
        let files = self.table("ferry_files");
        if stmts.len() > MAX_BATCH {
            return Err(Error::permanent(format!(
                "job {}: its load needs {} statements but a Data API batch holds at most {MAX_BATCH}; configure fewer dimensions",
                job.name,
                stmts.len()
            )));
        }
        let sqls: Vec<String> = stmts.iter().map(|(s, _)| s.clone()).collect();
        let params = [
            ("job", Some(job.name.clone())),
            ("load_id", Some(load_id.clone())),
            (
                "started_at",
                Some(started.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()),
            ),
        ];
        let id = self.submit_batch(&sqls, &params).await?;
        if let Err(f) = self.wait(&id, "the load batch").await? {
            let step = f
                .sub
                .and_then(|i| stmts.get(i))
                .map(|(_, w)| *w)
                .unwrap_or("load");
            if f.sub == Some(check_at) && !retryable(&f.message) {
                return Err(Error::permanent(format!(
                    "the staged rows under {} do not match the row counts normalize wrote for them (the load's row-count check failed); nothing was loaded",
                    self.stager.url(&folder)
                )));
            }
            if f.sub.is_some() && f.sub == copy_at && !retryable(&f.message) {
                let refs: Vec<&StagedFile> = batch.iter().collect();
                let details = self
                    .copy_errors(&refs, started - chrono::Duration::minutes(1))
                    .await;
                let first = details
                    .first()
                    .map(|(i, e)| format!("; first: {} {}", batch[*i].version.path, e.describe()));
                // Loaded alone, the file's COPY errors are kept with it in
                // ferry_load_errors (in a batch, the file-by-file retry
                // keeps them).
                if batch.len() == 1 && !details.is_empty() {
                    let rows: Vec<RowError> = details.iter().map(|(_, e)| e.clone()).collect();
                    if let Err(e) = self.keep_errors(&folder, &batch[0].version, &rows).await {
                        tracing::warn!(error = %e.chain(), "cannot keep the COPY error rows");
                    }
                }
                return Err(Error::permanent(format!(
                    "COPY of the staged parts (manifest {}) failed: {}{} (rows in sys_load_error_detail)",
                    self.stager.url(&manifest_key),
                    f.message,
                    first.unwrap_or_default()
                )));
            }
            return Err(Self::failure(&format!("cannot {step}"), &f));
        }

        // Which versions this load wrote (the others were loaded before).
        let rows = self
            .query(
                &format!(
                    "SELECT path, size, mtime FROM {files} WHERE job = :job AND load_id = :load_id"
                ),
                &[
                    ("job", Some(job.name.clone())),
                    ("load_id", Some(load_id.clone())),
                ],
                "reading the load's ledger rows",
            )
            .await?;
        let written: Vec<(String, i64, i64)> = rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.first().and_then(text)?,
                    r.get(1).and_then(long)?,
                    r.get(2).and_then(long)?,
                ))
            })
            .collect();
        let duration_ms = clock.elapsed().as_millis() as i64;
        if !written.is_empty()
            && let Err(e) = self
                .run(
                    &format!(
                        "UPDATE {} SET duration_ms = :duration_ms WHERE load_id = :load_id",
                        self.table("ferry_loads")
                    ),
                    &[
                        ("duration_ms", Some(duration_ms.to_string())),
                        ("load_id", Some(load_id.clone())),
                    ],
                    "recording the load's duration",
                )
                .await
        {
            tracing::warn!(error = %e.chain(), "cannot record the load's duration");
        }
        tracing::debug!(job = %job.name, files = written.len(), duration_ms, "load committed");
        Ok(super::outcomes(batch, &load_id, |f| {
            let v = &f.version;
            written
                .iter()
                .any(|(p, s, m)| *p == v.path && *s == v.size as i64 && *m == v.mtime)
        }))
    }

    /// The key parameters of a version.
    fn version_params(v: &FileVersion) -> Vec<Param<'static>> {
        vec![
            ("job", Some(v.job.clone())),
            ("path", Some(v.path.clone())),
            ("size", Some(v.size.to_string())),
            ("mtime", Some(v.mtime.to_string())),
        ]
    }
}

#[async_trait]
impl Warehouse for RedshiftDataWarehouse {
    async fn migrate(&self) -> Result<Vec<String>> {
        let schema = self.schema().quoted();
        let versions = format!("{schema}.\"{VERSIONS_TABLE}\"");
        self.run(
            &format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
            &[],
            "creating the schema",
        )
        .await?;
        self.run(
            &format!(
                "CREATE TABLE IF NOT EXISTS {versions} (version INTEGER NOT NULL, name VARCHAR(256) NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            ),
            &[],
            "creating the migrations table",
        )
        .await?;
        let applied: Vec<i64> = self
            .query(
                &format!("SELECT version FROM {versions}"),
                &[],
                "reading applied migrations",
            )
            .await?
            .iter()
            .filter_map(|r| r.first().and_then(long))
            .collect();
        let todo: Vec<_> = MIGRATIONS
            .iter()
            .filter(|m| !applied.contains(&(m.version as i64)))
            .collect();
        if todo.is_empty() {
            return Ok(Vec::new());
        }
        // One transaction: lock, re-check that no other migrator applied
        // these meanwhile (a division by zero aborts), apply, record.
        let listed: Vec<String> = todo.iter().map(|m| m.version.to_string()).collect();
        let mut sqls = vec![
            format!("LOCK TABLE {versions}"),
            format!(
                "SELECT 1 / (CASE WHEN (SELECT COUNT(*) FROM {versions} WHERE version IN ({})) = 0 THEN 1 ELSE 0 END) AS ferry_not_applied_meanwhile",
                listed.join(", ")
            ),
            format!("SET search_path TO {schema}"),
        ];
        for m in &todo {
            sqls.extend(render(m, Dialect::Redshift));
            sqls.push(format!(
                "INSERT INTO {versions} (version, name, applied_at) VALUES ({}, '{}', SYSDATE)",
                m.version, m.name
            ));
        }
        if sqls.len() > MAX_BATCH {
            return Err(Error::permanent(format!(
                "{} pending migration statements exceed a Data API batch ({MAX_BATCH}); run ferry migrate from an older release first",
                sqls.len()
            )));
        }
        let id = self.submit_batch(&sqls, &[]).await?;
        if let Err(f) = self.wait(&id, "the migrations").await? {
            return Err(Self::failure("migration failed", &f));
        }
        Ok(todo.iter().map(|m| m.name.to_string()).collect())
    }

    async fn verify_ledger(&self) -> Result<String> {
        let versions = format!("{}.\"{VERSIONS_TABLE}\"", self.schema().quoted());
        let applied = match self
            .query(
                &format!("SELECT COUNT(*) FROM {versions}"),
                &[],
                "reading applied migrations",
            )
            .await
        {
            Ok(rows) => rows
                .first()
                .and_then(|r| r.first())
                .and_then(long)
                .unwrap_or(0),
            Err(e) if e.chain().contains("does not exist") => 0,
            Err(e) => return Err(e),
        };
        super::migrations_summary(&self.describe(), self.schema(), applied)
    }

    async fn sync_jobs(&self, jobs: &[Arc<Job>]) -> Result<()> {
        let (update, insert) = self.ledger.sync_job();
        for j in jobs {
            let params: Vec<Param<'_>> = vec![
                ("job", Some(j.name.clone())),
                ("source", Some(j.source.name.clone())),
                ("path", Some(j.path.clone())),
                ("pattern", Some(j.pattern_text.clone())),
                ("target", Some(j.target.as_str().to_string())),
                ("auto", Some(j.enabled.to_string())),
            ];
            let id = self
                .submit_batch(&[update.clone(), insert.clone()], &params)
                .await?;
            if let Err(f) = self.wait(&id, "updating ferry_jobs").await? {
                return Err(Self::failure("cannot update ferry_jobs", &f));
            }
        }
        Ok(())
    }

    async fn job_enabled(&self, job: &str) -> Result<bool> {
        let rows = self
            .query(
                &self.ledger.job_auto(),
                &[("job", Some(job.to_string()))],
                "reading ferry_jobs",
            )
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.first())
            .and_then(boolean)
            .unwrap_or(true))
    }

    async fn lookup_many(&self, versions: &[FileVersion]) -> Result<Vec<Option<FileState>>> {
        let mut states = Vec::with_capacity(versions.len());
        // A few hundred paths per statement keeps it far below the Data
        // API's 100 KB statement limit.
        for chunk in versions.chunks(LOOKUP_CHUNK) {
            let mut params: Vec<(String, Option<String>)> =
                vec![("job".into(), Some(chunk[0].job.clone()))];
            params.extend(
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("p{i}"), Some(v.path.clone()))),
            );
            let params: Vec<Param<'_>> = params
                .iter()
                .map(|(n, v)| (n.as_str(), v.clone()))
                .collect();
            let rows = self
                .query(
                    &self.ledger.paths_states(chunk.len()),
                    &params,
                    "reading the ledger",
                )
                .await?;
            let rows = rows
                .iter()
                .map(|r| {
                    (
                        r.first().and_then(text).unwrap_or_default(),
                        r.get(1).and_then(text).unwrap_or_default(),
                        r.get(2).and_then(boolean).unwrap_or(false),
                        r.get(3).and_then(text),
                        r.get(4).and_then(long).unwrap_or(-1),
                        r.get(5).and_then(long).unwrap_or(-1),
                    )
                })
                .collect();
            states.extend(super::states_of(rows, chunk));
        }
        Ok(states)
    }

    async fn load(&self, job: &Job, batch: &[StagedFile]) -> Result<Vec<LoadOutcome>> {
        retry(RetryPolicy::LOAD, "load", || self.load_once(job, batch)).await
    }

    async fn read_ledger(&self, report: &Report) -> Result<LedgerRows> {
        let params: Vec<Param<'_>> = report
            .params
            .iter()
            .map(|(n, v)| (*n, Some(v.clone())))
            .collect();
        let rows = self
            .query(&report.sql, &params, "reading the ledger")
            .await?;
        Ok(rows.iter().map(|r| r.iter().map(text).collect()).collect())
    }

    async fn write_ledger(&self, change: &Change) -> Result<Vec<u64>> {
        let params: Vec<Param<'_>> = change
            .params
            .iter()
            .map(|(n, v)| (*n, Some(v.clone())))
            .collect();
        let mut sqls = vec![self.ledger.lock()];
        sqls.extend(change.sqls.iter().cloned());
        let id = self.submit_batch(&sqls, &params).await?;
        let done = self
            .wait(&id, "changing the ledger")
            .await?
            .map_err(|f| Self::failure("cannot change the ledger", &f))?;
        Ok(done
            .sub_statements()
            .iter()
            .skip(1)
            .map(|s| s.result_rows().max(0) as u64)
            .collect())
    }

    async fn record_failed(&self, f: &FailedFile<'_>) -> Result<()> {
        let v = f.version;
        let files = self.table("ferry_files");
        let folder = self.stager.manifest_folder(
            &v.job,
            &format!("failed-{}", uuid::Uuid::new_v4().simple()),
            chrono::Utc::now(),
        );
        let loaded = "SELECT 1 FROM {files} l WHERE l.job = :job AND l.path = :path AND l.size = CAST(:size AS BIGINT) AND l.mtime = CAST(:mtime AS BIGINT) AND l.state = 'loaded'"
            .replace("{files}", &files);
        let mut sqls = vec![
            format!("LOCK TABLE {files}, {}", self.table("ferry_load_errors")),
            self.ledger.clear_unloaded(),
            format!(
                "INSERT INTO {files} (job, path, size, mtime, sha256, state, rows_loaded, rows_rejected, first_seen_at, error, rejects_key) \
                 SELECT CAST(:job AS VARCHAR(64)), CAST(:path AS VARCHAR(1024)), CAST(:size AS BIGINT), CAST(:mtime AS BIGINT), CAST(:sha256 AS VARCHAR(64)), 'failed', 0, CAST(:rows_rejected AS BIGINT), SYSDATE, CAST(:error AS VARCHAR(4096)), CAST(:rejects_key AS VARCHAR(1024)) \
                 WHERE NOT EXISTS ({loaded})"
            ),
        ];
        // The kept rejected records, unless a replica loaded it meanwhile.
        let mut errors = match self.upload_errors(&folder, &[(v, f.errors)]).await? {
            Some(key) => errors_sql(
                self.schema(),
                &literal("S3 URL", &self.stager.url(&key))?,
                &self.iam_role()?,
                false,
            ),
            None => Vec::new(),
        };
        if let Some(last) = errors.last_mut() {
            last.push_str(&format!(" WHERE NOT EXISTS ({loaded})"));
        }
        sqls.extend(errors);
        let reason = fit(f.reason, width::ERROR).to_string();
        let mut params = Self::version_params(v);
        params.extend([
            ("sha256", f.sha256.map(str::to_string)),
            ("rows_rejected", Some(f.rejected.to_string())),
            ("error", Some(reason)),
            ("rejects_key", f.rejects_key.map(str::to_string)),
            ("load_id", None),
        ]);
        let id = self.submit_batch(&sqls, &params).await?;
        if let Err(e) = self.wait(&id, "recording the failure").await? {
            return Err(Self::failure("cannot record the failure", &e));
        }
        Ok(())
    }

    async fn record_skipped(&self, v: &FileVersion, reason: &str) -> Result<()> {
        let mut params = Self::version_params(v);
        params.push(("reason", Some(fit(reason, width::ERROR).to_string())));
        self.run(
            &self.ledger.insert_skipped(),
            &params,
            "recording the skipped file",
        )
        .await?;
        Ok(())
    }

    async fn mark_finalized(&self, v: &FileVersion, final_path: Option<&str>) -> Result<()> {
        let mut params = Self::version_params(v);
        params.push(("final_path", final_path.map(str::to_string)));
        self.run(
            &self.ledger.mark_finalized(),
            &params,
            "marking the file finalized",
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_and_empty_values_become_constants_and_names_never_overlap() {
        let (sql, sent) = inline_constants(
            "SELECT :e1, :e10, ':e1', :e1::int, :gone, :empty",
            &[
                ("e1", Some("a".into())),
                ("e10", Some("b".into())),
                ("gone", None),
                ("empty", Some(String::new())),
            ],
        );
        assert_eq!(sql, "SELECT :e1, :e10, ':e1', :e1::int, NULL, ''");
        let names: Vec<&str> = sent.iter().map(|p| p.name()).collect();
        assert_eq!(names, vec!["e10", "e1"]);
    }

    /// One table: each failure text the Data API can return, and whether
    /// a rerun is the answer.
    #[test]
    fn redshift_failures_that_mean_try_again_retry_and_data_errors_do_not() {
        let cases = [
            (
                "ERROR: 1023 DETAIL: Serializable isolation violation on table - 123",
                true,
            ),
            (
                "ERROR: could not serialize access due to concurrent update",
                true,
            ),
            ("ERROR: deadlock detected", true),
            (
                "ERROR: Query (500312) cancelled by WLM abort action of Query Monitoring Rule \"long\".",
                true,
            ),
            ("ERROR: Query (83) cancelled on user's request", true),
            ("cancelled: Query (83) was cancelled", true),
            ("ERROR: canceling statement due to statement timeout", true),
            (
                "FATAL: terminating connection due to administrator command",
                true,
            ),
            ("server closed the connection unexpectedly", true),
            (
                "ERROR: The cluster is being restarted for maintenance",
                true,
            ),
            ("ERROR: Disk Full", true),
            ("ERROR: out of memory", true),
            ("ERROR: relation \"x\" does not exist", false),
            ("ERROR: permission denied for relation task_events", false),
            (
                "ERROR: Load into table 't' failed.  Check 'sys_load_error_detail' system table for details.",
                false,
            ),
            (
                "ERROR: column \"note\" of relation \"t\" does not exist",
                false,
            ),
            ("ERROR: invalid input syntax for type bigint: \"x\"", false),
            ("ERROR: syntax error at or near \"$\"", false),
            (
                "ERROR: invalid input syntax for type bigint: \"restart in maintenance\"",
                false,
            ),
        ];
        for (message, want) in cases {
            assert_eq!(retryable(message), want, "{message}");
            let kind = RedshiftDataWarehouse::failure(
                "loading",
                &Failed {
                    sub: None,
                    message: message.into(),
                },
            )
            .kind();
            assert_eq!(kind == ErrorKind::Transient, want, "{message}");
        }
    }

    #[test]
    fn copy_literals_refuse_quotes() {
        assert!(literal("S3 URL", "s3://b/k'x").is_err());
        assert_eq!(literal("S3 URL", "s3://b/k").unwrap(), "'s3://b/k'");
    }
}

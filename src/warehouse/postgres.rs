//! The PostgreSQL backend: the local stand-in for Redshift.
//!
//! It runs the same load transaction as Redshift, except that COPY cannot
//! read S3: the staged object is streamed from S3, gunzipped on a blocking
//! thread and fed to `COPY … FROM STDIN`, a chunk at a time.

use super::sql::{LoadSql, target_tables};
use super::{FailedFile, LedgerRows, LoadOutcome, StagedFile, Warehouse};
use crate::aws::sdk_error;
use crate::config::{Job, PgSslMode, PostgresSettings};
use crate::error::{Error, ErrorKind, Result};
use crate::ledger::reports::{Change, Report};
use crate::ledger::{FileState, FileVersion, LedgerSql, fit, width};
use crate::migrate::{MIGRATIONS, VERSIONS_TABLE, render};
use crate::normalize::RowError;
use crate::retry::{RetryPolicy, retry};
use crate::sql::Dialect;
use crate::sql::Ident;
use crate::stage::Stager;
use async_trait::async_trait;
use bytes::Bytes;
use futures::SinkExt;
use std::io::Read;
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient, NoTls, Transaction};

/// A PostgreSQL warehouse.
pub struct PostgresWarehouse {
    settings: PostgresSettings,
    client: Mutex<Client>,
    /// A call ran past its deadline: the connection may be wedged, so the
    /// next call reconnects.
    abandoned: std::sync::atomic::AtomicBool,
    ledger: LedgerSql,
    stager: Stager,
}

fn describe(s: &PostgresSettings) -> String {
    format!("postgres {}:{}/{}", s.host, s.port, s.database)
}

/// Staged objects requested ahead of the one being fed to COPY.
const OBJECTS_AHEAD: usize = 8;
/// Staged objects up to this size are read whole and gunzipped on the
/// COPY task itself; larger ones stream through a blocking thread.
const INLINE_OBJECT: i64 = 256 * 1024;

/// What [`feed_copy`] sent to COPY: each object's key and line count, in
/// order (to say which object a COPY error's line number falls in).
#[derive(Debug, Default)]
pub struct Fed {
    /// Keys, in the order they were fed.
    pub keys: Vec<String>,
    /// Lines sent from each (`keys[i]` sent `lines[i]` lines).
    pub lines: Vec<u64>,
}

/// Feeds S3 objects, one after the other as `keys` yields them, into a
/// started `COPY … FROM STDIN`: a large one is streamed and (with `gzip`)
/// gunzipped on a blocking thread, so memory stays at a few chunks
/// whatever the size. Returns the rows COPY loaded and records in `fed`
/// what went in; with a `suffix` (`,a,b\n`) puts it in place of the line
/// end of every CSV record (not of line breaks inside quotes).
pub async fn feed_copy(
    sink: tokio_postgres::CopyInSink<Bytes>,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    keys: impl futures::Stream<Item = String> + Send,
    gzip: bool,
    fed: &mut Fed,
    suffix: Option<&[u8]>,
) -> Result<u64> {
    use futures::StreamExt;
    futures::pin_mut!(sink);
    // The next few objects are requested while one streams (only their
    // response heads wait; bodies stay in the sockets): many small parts
    // do not pay one round trip each.
    let request = |key: String| {
        let (s3, bucket) = (s3.clone(), bucket.to_string());
        async move {
            let url = format!("s3://{bucket}/{key}");
            let obj = s3
                .get_object()
                .bucket(bucket)
                .key(key.clone())
                .send()
                .await
                .map_err(sdk_error(format!("cannot read staged object {url}")));
            (key, url, obj)
        }
    };
    let objects = keys.map(request).buffered(OBJECTS_AHEAD);
    futures::pin_mut!(objects);
    let lines = &mut fed.lines;
    let mut buf = vec![0u8; 256 * 1024];
    while let Some((key, url, obj)) = objects.next().await {
        let obj = obj?;
        fed.keys.push(key);
        lines.push(0);
        let unreadable = |e: std::io::Error| {
            Error::transient(format!("cannot read staged object {url}")).with_source(e)
        };
        let mut ends = suffix.map(RecordEnds::new);
        if obj.content_length().is_some_and(|n| n <= INLINE_OBJECT) {
            // Small: read whole and gunzip here; a thread hop per 5 KB
            // object costs more than the work.
            let body = obj
                .body
                .collect()
                .await
                .map_err(|e| {
                    Error::transient(format!("cannot read staged object {url}")).with_source(e)
                })?
                .into_bytes();
            let mut input: Box<dyn Read + Send + '_> = if gzip {
                Box::new(flate2::read::MultiGzDecoder::new(&body[..]))
            } else {
                Box::new(&body[..])
            };
            loop {
                let n = input.read(&mut buf).map_err(unreadable)?;
                if n == 0 {
                    break;
                }
                let chunk = RecordEnds::chunk(&mut ends, &buf[..n]);
                send_chunk(&mut sink, lines, chunk, &url).await?;
            }
            continue;
        }
        let reader = tokio_util::io::SyncIoBridge::new(obj.body.into_async_read());
        let (chunks_tx, mut chunks_rx) =
            tokio::sync::mpsc::channel::<std::io::Result<(Bytes, u64)>>(4);
        let decoder = tokio::task::spawn_blocking(move || {
            let mut input: Box<dyn Read> = if gzip {
                Box::new(flate2::read::MultiGzDecoder::new(reader))
            } else {
                Box::new(reader)
            };
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match input.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        let chunk = RecordEnds::chunk(&mut ends, &buf[..n]);
                        if chunks_tx.blocking_send(Ok(chunk)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = chunks_tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        while let Some(chunk) = chunks_rx.recv().await {
            send_chunk(&mut sink, lines, chunk.map_err(unreadable)?, &url).await?;
        }
        decoder
            .await
            .map_err(|e| Error::transient("the gunzip thread of COPY stopped").with_source(e))?;
    }
    sink.as_mut()
        .finish()
        .await
        .map_err(pg_error("COPY into the staging table failed"))
}

/// Sends one chunk of a staged object to COPY, counting its lines.
async fn send_chunk(
    sink: &mut std::pin::Pin<&mut tokio_postgres::CopyInSink<Bytes>>,
    lines: &mut [u64],
    (chunk, breaks): (Bytes, u64),
    url: &str,
) -> Result<()> {
    if let Some(n) = lines.last_mut() {
        *n += breaks;
    }
    sink.send(chunk)
        .await
        .map_err(pg_error(format!("COPY from {url} failed")))
}

/// Replaces the line end of every CSV record with a suffix, tracking
/// quotes across chunks (a quote toggles; `""` toggles twice).
struct RecordEnds {
    suffix: Vec<u8>,
    quoted: bool,
}

impl RecordEnds {
    fn new(suffix: &[u8]) -> Self {
        RecordEnds {
            suffix: suffix.to_vec(),
            quoted: false,
        }
    }

    /// `data` as a chunk for COPY (completed by `ends` if there is one)
    /// and the number of line breaks in it.
    fn chunk(ends: &mut Option<RecordEnds>, data: &[u8]) -> (Bytes, u64) {
        let lines = memchr::memchr_iter(b'\n', data).count();
        let chunk = match ends {
            Some(e) => e.complete(data, lines),
            None => Bytes::copy_from_slice(data),
        };
        (chunk, lines as u64)
    }

    /// `chunk` with each record end replaced; `lines` (its line breaks)
    /// sizes the output once.
    fn complete(&mut self, chunk: &[u8], lines: usize) -> Bytes {
        let mut out = Vec::with_capacity(chunk.len() + lines * self.suffix.len());
        let mut start = 0;
        for i in memchr::memchr2_iter(b'"', b'\n', chunk) {
            if chunk[i] == b'"' {
                self.quoted = !self.quoted;
            } else if !self.quoted {
                out.extend_from_slice(&chunk[start..i]);
                out.extend_from_slice(&self.suffix);
                start = i + 1;
            }
        }
        out.extend_from_slice(&chunk[start..]);
        Bytes::from(out)
    }
}

/// Whether a PostgreSQL error state is worth retrying: serialization
/// failures and deadlocks (40001, 40P01), a lock not granted in time
/// (55P03), a statement cancelled or timed out (57014), the server
/// shutting down or not accepting connections yet (57P01-57P03), lost or
/// refused connections (class 08) and exhausted resources (class 53: too
/// many connections, out of memory, disk full).
fn is_transient_state(c: &SqlState) -> bool {
    let code = c.code();
    *c == SqlState::T_R_SERIALIZATION_FAILURE
        || *c == SqlState::T_R_DEADLOCK_DETECTED
        || *c == SqlState::LOCK_NOT_AVAILABLE
        || *c == SqlState::QUERY_CANCELED
        || code.starts_with("57P")
        || code.starts_with("08")
        || code.starts_with("53")
}

/// Maps a database error: the states of `is_transient_state` and I/O
/// errors are transient; the rest (missing table, bad type, permission
/// denied, …) fail the file.
pub fn pg_error(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let what = what.into();
    move |e| {
        let kind = match e.code() {
            Some(c) if is_transient_state(c) => ErrorKind::Transient,
            Some(_) => ErrorKind::Permanent,
            None => ErrorKind::Transient, // I/O, closed connection
        };
        let detail = match e.as_db_error() {
            // PostgreSQL's context says where, e.g. "COPY t, line 3,
            // column x: \"abc\"".
            Some(db) => match db.where_() {
                Some(w) => format!("{} ({}) at {w}", db.message(), db.code().code()),
                None => format!("{} ({})", db.message(), db.code().code()),
            },
            None => e.to_string(),
        };
        Error::new(kind, format!("{what}: {detail}"))
    }
}

async fn open(s: &PostgresSettings) -> Result<Client> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&s.host)
        .port(s.port)
        .user(&s.user)
        .dbname(&s.database)
        .connect_timeout(s.connect_timeout)
        // The server cuts a statement or lock wait off by itself; the
        // client notices a server or network that went silent: keepalive
        // probes after 30 s of silence, and unacknowledged data gives up
        // after the connect timeout (a frozen host whose kernel still
        // answers is caught by ferry's own deadline, `with_deadline`).
        // idle_in_transaction_session_timeout: a ferry that vanished mid-
        // load (a black-holed network keeps the server's socket open for
        // hours) does not keep the ledger lock longer than this.
        .options(format!(
            "-c statement_timeout={t} -c lock_timeout={} -c idle_in_transaction_session_timeout={t}",
            s.lock_timeout.as_millis(),
            t = s.statement_timeout.as_millis(),
        ))
        .keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(30))
        .keepalives_interval(std::time::Duration::from_secs(10))
        .keepalives_retries(3)
        .tcp_user_timeout(s.connect_timeout.max(std::time::Duration::from_secs(30)))
        .application_name("ferry");
    if let Some(pw) = &s.password {
        cfg.password(pw.expose());
    }
    let failed = |e: tokio_postgres::Error| {
        let hint = if s.sslmode == PgSslMode::Disable {
            "is PostgreSQL running? start it with `pg_ctlcluster 15 main start`"
        } else {
            "is PostgreSQL running, with TLS on? for verify-full, is its certificate signed by a CA in the system roots or warehouse.ca_file, for this host name?"
        };
        Error::transient(format!(
            "cannot connect to {} as {} ({hint})",
            describe(s),
            s.user
        ))
        .with_source(e)
    };
    let server = describe(s);
    let ended = move |e: tokio_postgres::Error| {
        let e = Error::transient(e.to_string()).with_source(e);
        tracing::warn!(server = %server, error = %e.chain(), "postgres connection ended");
    };
    match s.sslmode {
        PgSslMode::Disable => {
            let (client, connection) = cfg.connect(NoTls).await.map_err(failed)?;
            tokio::spawn(async move { connection.await.unwrap_or_else(ended) });
            Ok(client)
        }
        mode => {
            cfg.ssl_mode(if mode == PgSslMode::Prefer {
                tokio_postgres::config::SslMode::Prefer
            } else {
                tokio_postgres::config::SslMode::Require
            });
            let tls = super::pg_tls::RustlsConnect::new(mode, s.ca_file.as_deref())?;
            let (client, connection) = cfg.connect(tls).await.map_err(failed)?;
            tokio::spawn(async move { connection.await.unwrap_or_else(ended) });
            Ok(client)
        }
    }
}

impl PostgresWarehouse {
    /// Connects.
    pub async fn connect(settings: &PostgresSettings, stager: Stager) -> Result<Self> {
        let client = open(settings).await?;
        Ok(PostgresWarehouse {
            settings: settings.clone(),
            client: Mutex::new(client),
            abandoned: std::sync::atomic::AtomicBool::new(false),
            ledger: LedgerSql::new(&settings.schema),
            stager,
        })
    }

    /// The client, reconnected first if the connection was lost.
    async fn client(&self) -> Result<MutexGuard<'_, Client>> {
        let mut guard = self.client.lock().await;
        let abandoned = self
            .abandoned
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        if abandoned || guard.is_closed() {
            tracing::info!(warehouse = %describe(&self.settings), "reconnecting");
            *guard = open(&self.settings).await?;
        }
        Ok(guard)
    }

    fn schema(&self) -> &Ident {
        &self.settings.schema
    }

    /// Runs `work` within `statement_timeout` plus as much again (at most
    /// half a minute more): the
    /// server's own timeout ends a slow statement, this ends a wait on a
    /// server (or network) that stopped answering, which no server-side
    /// setting can. The connection is then abandoned (the next call opens
    /// a new one; the old transaction rolls back on the server) and the
    /// error is transient.
    async fn with_deadline<T>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let t = self.settings.statement_timeout;
        let limit = t + t.min(std::time::Duration::from_secs(30));
        match tokio::time::timeout(limit, work).await {
            Ok(r) => r,
            Err(_) => {
                self.abandoned
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                tracing::warn!(warehouse = %describe(&self.settings), what, timeout_s = limit.as_secs(), "no answer from PostgreSQL in time; dropping the connection");
                Err(Error::transient(format!(
                    "{what}: no answer from {} within {limit:?} (from warehouse.statement_timeout); the connection was dropped and the work is retried",
                    describe(&self.settings)
                )))
            }
        }
    }

    /// A transaction holding the ledger lock.
    async fn locked<'c>(&self, client: &'c mut Client) -> Result<Transaction<'c>> {
        let tx = client
            .transaction()
            .await
            .map_err(pg_error("cannot begin"))?;
        tx.batch_execute(&self.ledger.lock())
            .await
            .map_err(pg_error("cannot lock the ledger"))?;
        Ok(tx)
    }

    /// Which of the target's columns exist; errors if the table does not.
    async fn target_columns(&self, c: &impl GenericClient, job: &Job) -> Result<Vec<&'static str>> {
        let rows = c
            .query(
                "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
                &[&self.schema().as_str(), &job.target.as_str()],
            )
            .await
            .map_err(pg_error("cannot read the target's columns"))?;
        let have: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        super::check_target(job, self.schema(), &have)
    }

    /// Inserts `errors` of `v` into `ferry_load_errors`.
    async fn insert_errors(
        &self,
        c: &impl GenericClient,
        v: &FileVersion,
        load_id: Option<&str>,
        errors: &[RowError],
    ) -> Result<()> {
        let size = v.size as i64;
        for chunk in errors.chunks(100) {
            let sql = self.ledger.insert_errors(chunk.len());
            let fitted: Vec<Fitted<'_>> = chunk.iter().map(Fitted::of).collect();
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                Vec::with_capacity(chunk.len() * 11);
            for (e, f) in chunk.iter().zip(&fitted) {
                params.extend_from_slice(&[
                    &v.job,
                    &v.path,
                    &size,
                    &v.mtime,
                    &load_id,
                    &f.line,
                    &f.column,
                    &e.code,
                    &f.reason,
                    &f.raw_line,
                    &f.raw_value,
                ]);
            }
            c.execute(&sql, &params)
                .await
                .map_err(pg_error(format!("cannot record load errors of {}", v.path)))?;
        }
        Ok(())
    }

    /// Runs one ledger statement whose parameters are a version (job,
    /// path, size, mtime) and then `extra`.
    async fn version_statement(
        &self,
        sql: &str,
        v: &FileVersion,
        extra: &(dyn tokio_postgres::types::ToSql + Sync),
        what: &str,
    ) -> Result<()> {
        let guard = self.client().await?;
        let size = v.size as i64;
        guard
            .execute(sql, &[&v.job, &v.path, &size, &v.mtime, extra])
            .await
            .map_err(pg_error(what))?;
        Ok(())
    }

    /// Streams staged objects from S3, as `keys` yields them, into one
    /// `COPY … FROM STDIN`.
    async fn copy_from_s3(
        &self,
        tx: &Transaction<'_>,
        copy_sql: &str,
        keys: impl futures::Stream<Item = String> + Send,
        fed: &mut Fed,
        suffix: Option<&[u8]>,
    ) -> Result<u64> {
        let sink = tx
            .copy_in::<_, Bytes>(copy_sql)
            .await
            .map_err(pg_error("cannot start COPY into the staging table"))?;
        feed_copy(
            sink,
            self.stager.client(),
            self.stager.bucket(),
            keys,
            true,
            fed,
            suffix,
        )
        .await
    }

    /// Names the staged part, line and column of a failed COPY, and which
    /// of `files` (a version and its part keys) it belongs to, with the
    /// row error.
    fn copy_failure(
        &self,
        e: Error,
        files: &[(&FileVersion, &[String])],
        fed: &Fed,
    ) -> (Error, Option<(usize, RowError)>) {
        let chain = e.chain();
        let Some(at) = super::copy_error_at(&chain) else {
            return (e, None);
        };
        let (part, line) = super::locate_line(at.line, &fed.lines);
        let Some(key) = fed.keys.get(part) else {
            return (e, None);
        };
        let owner = files
            .iter()
            .position(|(_, parts)| parts.contains(key))
            .unwrap_or_default();
        let row = RowError {
            line,
            column: at.column,
            code: 1200,
            reason: chain.clone(),
            raw_line: String::new(),
            raw_value: at.value,
        };
        let error = Error::new(
            e.kind(),
            format!(
                "COPY of {} failed at staged part {} {}",
                files[owner].0.path,
                self.stager.url(key),
                row.describe()
            ),
        );
        (error, Some((owner, row)))
    }

    /// Which of `versions` (indices) the ledger does not have as `loaded`.
    async fn not_loaded(
        &self,
        tx: &Transaction<'_>,
        job: &Job,
        versions: &[&FileVersion],
    ) -> Result<Vec<usize>> {
        let paths: Vec<&str> = versions.iter().map(|v| v.path.as_str()).collect();
        let loaded: Vec<(String, i64, i64)> = tx
            .query(&self.ledger.loaded_among(), &[&job.name, &paths])
            .await
            .map_err(pg_error("cannot read the ledger"))?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        Ok((0..versions.len())
            .filter(|&i| {
                let v = versions[i];
                !loaded.iter().any(|(p, size, mtime)| {
                    *p == v.path && *size == v.size as i64 && *mtime == v.mtime
                })
            })
            .collect())
    }

    /// Records one loaded file in the ledger (pipelined with the others).
    async fn record_loaded(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        file: &StagedFile,
        load_id: &str,
    ) -> Result<()> {
        let v = &file.version;
        let size = v.size as i64;
        let (rows, rejected) = (file.rows as i64, file.rejected as i64);
        let (clear_sql, insert_sql) = (self.ledger.clear_unloaded(), self.ledger.insert_loaded());
        let key: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&v.job, &v.path, &size, &v.mtime];
        let loaded: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
            &v.job,
            &v.path,
            &size,
            &v.mtime,
            &file.sha256,
            &file.staged_prefix,
            &rows,
            &rejected,
            &load_id,
            &file.rejects_key,
        ];
        let clear = tx.execute(&clear_sql, &key);
        let insert = tx.execute(&insert_sql, &loaded);
        futures::try_join!(clear, insert)
            .map_err(pg_error(format!("cannot record {} in the ledger", v.path)))?;
        self.insert_errors(tx, v, Some(load_id), &file.errors).await
    }

    /// Drops stale staged rows, merges the dimensions, and replaces or
    /// appends the fact rows from the stage; returns the rows inserted.
    async fn merge(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        job: &Job,
        sql: &LoadSql<'_>,
        load_id: &str,
    ) -> Result<u64> {
        if let Some(stale) = sql.drop_stale() {
            tx.execute(&stale, &[])
                .await
                .map_err(pg_error("cannot drop staged rows older than the target's"))?;
        }
        for d in &job.dimensions {
            for stmt in sql.merge_dimension(d) {
                tx.execute(&stmt, &[])
                    .await
                    .map_err(pg_error(format!("cannot merge dimension {}", d.table)))?;
            }
        }
        if let Some(delete) = sql.delete_replaced() {
            tx.execute(&delete, &[])
                .await
                .map_err(pg_error(format!("cannot replace rows in {}", job.target)))?;
        }
        let insert = sql.insert_fact();
        if sql.target_meta.contains(&"ferry_load_id") {
            tx.execute(&insert, &[&load_id]).await
        } else {
            tx.execute(&insert, &[]).await
        }
        .map_err(pg_error(format!("cannot insert into {}", job.target)))
    }

    /// Begins the load of `versions`: locks the ledger, leaves out the
    /// versions already loaded (`None`, rolled back, when that is all of
    /// them), locks the targets, and prepares the COPY (a stage table, or
    /// the line suffix of a COPY straight into the target).
    async fn begin<'c>(
        &self,
        client: &'c mut Client,
        job: &Job,
        versions: &[&FileVersion],
    ) -> Result<Option<OpenLoad<'c>>> {
        let started = chrono::Utc::now();
        let clock = std::time::Instant::now();
        let tx = self.locked(client).await?;
        let todo = self.not_loaded(&tx, job, versions).await?;
        if todo.is_empty() {
            tx.rollback().await.map_err(pg_error("cannot roll back"))?;
            return Ok(None);
        }
        let target_meta = self.target_columns(&tx, job).await?;
        tx.batch_execute(&self.ledger.lock_targets(&target_tables(self.schema(), job)))
            .await
            .map_err(pg_error("cannot lock the target tables"))?;
        let load_id = uuid::Uuid::new_v4().simple().to_string();
        let stage =
            Ident::parse(&format!("ferry_stage_{}", &load_id[..12])).expect("a valid identifier");
        let mut open = OpenLoad {
            tx,
            load_id,
            stage,
            target_meta,
            todo,
            direct: false,
            copy_sql: String::new(),
            suffix: None,
            started,
            clock,
        };
        let sql = open.sql(self.schema(), job);
        // Appending without dimensions to a target that keeps ferry_file
        // and ferry_line needs no stage: COPY writes the target directly
        // (COPY inserts in bulk; INSERT … SELECT from a stage row by row
        // took longer than the COPY itself), each line completed with the
        // load id and time.
        let direct = sql.direct_append();
        let defaulted = if direct {
            self.defaulted_meta(&open.tx, job, &open.load_id).await?
        } else {
            Vec::new()
        };
        let copy_sql = if direct {
            sql.copy_target_from_stdin(&defaulted)
        } else {
            sql.copy_stage_from_stdin()
        };
        let suffix = if direct {
            let now: String = open
                .tx
                .query_one(
                    "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
                    &[],
                )
                .await
                .map_err(pg_error("cannot read the transaction time"))?
                .get(0);
            sql.direct_suffix(&open.load_id, &now, &defaulted)
        } else {
            open.tx
                .batch_execute(&sql.create_stage())
                .await
                .map_err(pg_error("cannot create the staging table"))?;
            None
        };
        (open.direct, open.copy_sql, open.suffix) = (direct, copy_sql, suffix);
        Ok(Some(open))
    }

    /// The load metadata columns the target fills itself, so a direct
    /// COPY need not send (and PostgreSQL need not parse) them on every
    /// row: `ferry_loaded_at DEFAULT now()` (the transaction's time, what
    /// ferry would write) and `ferry_load_id DEFAULT
    /// current_setting('ferry.load_id', true)`, which this sets, for this
    /// transaction only, to the load id.
    async fn defaulted_meta(
        &self,
        tx: &Transaction<'_>,
        job: &Job,
        load_id: &str,
    ) -> Result<Vec<&'static str>> {
        let rows = tx
            .query(
                "SELECT column_name::text, column_default::text FROM information_schema.columns \
                 WHERE table_schema = $1 AND table_name = $2 AND column_name IN ('ferry_load_id', 'ferry_loaded_at')",
                &[&self.schema().as_str(), &job.target.as_str()],
            )
            .await
            .map_err(pg_error("cannot read the target's column defaults"))?;
        let mut defaulted = Vec::new();
        for r in &rows {
            let (column, default): (String, Option<String>) = (r.get(0), r.get(1));
            let default = default.unwrap_or_default().to_ascii_lowercase();
            match column.as_str() {
                "ferry_loaded_at"
                    if matches!(
                        default.as_str(),
                        "now()" | "current_timestamp" | "transaction_timestamp()"
                    ) =>
                {
                    defaulted.push("ferry_loaded_at")
                }
                "ferry_load_id" if default.starts_with("current_setting('ferry.load_id'") => {
                    defaulted.push("ferry_load_id")
                }
                _ => {}
            }
        }
        if defaulted.contains(&"ferry_load_id") {
            tx.execute("SELECT set_config('ferry.load_id', $1, true)", &[&load_id])
                .await
                .map_err(pg_error("cannot set ferry.load_id for the load"))?;
        }
        Ok(defaulted)
    }

    /// COPYs what `keys` yields; a failed COPY names the file (one of
    /// `files`, which gets what was fed), staged part, line and column,
    /// and puts the row error in `keep` when the load holds one file (in
    /// a batch, the file-by-file retry keeps it).
    async fn copy<'c>(
        &self,
        open: OpenLoad<'c>,
        keys: impl futures::Stream<Item = String> + Send,
        files: impl FnOnce(&Fed) -> Vec<(FileVersion, Vec<String>)>,
        keep: &mut Option<(FileVersion, RowError)>,
    ) -> Result<(OpenLoad<'c>, u64)> {
        let mut fed = Fed::default();
        let copied = self
            .copy_from_s3(
                &open.tx,
                &open.copy_sql,
                keys,
                &mut fed,
                open.suffix.as_deref(),
            )
            .await;
        match copied {
            Ok(n) => Ok((open, n)),
            Err(e) => {
                let mut files = files(&fed);
                let refs: Vec<(&FileVersion, &[String])> =
                    files.iter().map(|(v, p)| (v, p.as_slice())).collect();
                let (error, row) = self.copy_failure(e, &refs, &fed);
                if let (1, Some((_, row))) = (files.len(), row) {
                    *keep = files.pop().map(|(v, _)| (v, row));
                }
                Err(error)
            }
        }
    }

    /// Runs `load` (which locks the client itself), then, if its COPY
    /// failed on a row of a file loaded alone, keeps that error row in
    /// the ledger (after the rollback).
    async fn keeping_copy_errors<T>(
        &self,
        load: impl AsyncFnOnce(&mut Option<(FileVersion, RowError)>) -> Result<T>,
    ) -> Result<T> {
        let mut keep = None;
        let result = load(&mut keep).await;
        if let Some((version, row)) = keep {
            let kept = match self.client().await {
                Ok(c) => self.insert_errors(&*c, &version, None, &[row]).await,
                Err(e) => Err(e),
            };
            if let Err(e) = kept {
                tracing::warn!(error = %e.chain(), "cannot keep the COPY error row");
            }
        }
        result
    }

    /// Checks COPY's count against normalize's, merges, records the files
    /// and the load, and commits; returns the load id.
    async fn commit(
        &self,
        open: OpenLoad<'_>,
        job: &Job,
        todo: &[&StagedFile],
        copied: u64,
    ) -> Result<String> {
        let expected: u64 = todo.iter().map(|f| f.rows).sum();
        if copied != expected {
            let prefixes: Vec<String> = todo
                .iter()
                .map(|f| self.stager.url(&f.staged_prefix))
                .collect();
            return Err(Error::permanent(format!(
                "COPY of {} loaded {copied} rows but normalize wrote {expected}; the staged parts do not match their files",
                prefixes.join(", ")
            )));
        }
        let t_copy = open.clock.elapsed();
        let sql = open.sql(self.schema(), job);
        let (tx, load_id) = (&open.tx, open.load_id.as_str());
        let inserted = if open.direct {
            copied
        } else {
            self.merge(tx, job, &sql, load_id).await?
        };
        let t_merge = open.clock.elapsed();
        futures::future::try_join_all(todo.iter().map(|f| self.record_loaded(tx, f, load_id)))
            .await?;
        let bytes: i64 = todo.iter().map(|f| f.input_bytes as i64).sum();
        let (files, rows) = (todo.len() as i32, expected as i64);
        let duration_ms = open.clock.elapsed().as_millis() as i64;
        tx.execute(
            &self.ledger.insert_load(),
            &[
                &load_id,
                &job.name,
                &files,
                &rows,
                &bytes,
                &open.started,
                &duration_ms,
            ],
        )
        .await
        .map_err(pg_error("cannot record the load"))?;
        if !open.direct {
            tx.batch_execute(&sql.drop_stage())
                .await
                .map_err(pg_error("cannot drop the staging table"))?;
        }
        drop(sql);
        open.tx
            .commit()
            .await
            .map_err(pg_error("cannot commit the load"))?;
        tracing::debug!(
            job = %job.name,
            files,
            copied,
            inserted,
            copy_ms = t_copy.as_millis() as u64,
            merge_ms = (t_merge - t_copy).as_millis() as u64,
            ledger_and_commit_ms = (open.clock.elapsed() - t_merge).as_millis() as u64,
            "load committed"
        );
        Ok(open.load_id)
    }

    async fn load_once(&self, job: &Job, batch: &[StagedFile]) -> Result<Vec<LoadOutcome>> {
        self.keeping_copy_errors(async |keep: &mut Option<(FileVersion, RowError)>| {
            let versions: Vec<&FileVersion> = batch.iter().map(|f| &f.version).collect();
            let mut guard = self.client().await?;
            let Some(open) = self.begin(&mut guard, job, &versions).await? else {
                return Ok(vec![LoadOutcome::AlreadyLoaded; batch.len()]);
            };
            let todo: Vec<&StagedFile> = open.todo.iter().map(|&i| &batch[i]).collect();
            let parts: Vec<String> = todo.iter().flat_map(|f| f.parts.iter().cloned()).collect();
            let (open, copied) = if parts.is_empty() {
                (open, 0)
            } else {
                let files = |_: &Fed| {
                    todo.iter()
                        .map(|f| (f.version.clone(), f.parts.clone()))
                        .collect()
                };
                self.copy(open, futures::stream::iter(parts), files, keep)
                    .await?
            };
            let load_id = self.commit(open, job, &todo, copied).await?;
            Ok(super::outcomes(batch, &load_id, |f| {
                todo.iter().any(|t| std::ptr::eq(*t, f))
            }))
        })
        .await
    }

    /// [`Warehouse::load_streaming`], once: the COPY starts with the first
    /// part and ends when `parts` closes; the commit waits for `file`.
    async fn load_streaming_once(
        &self,
        job: &Job,
        version: &FileVersion,
        parts: tokio::sync::mpsc::Receiver<String>,
        file: tokio::sync::oneshot::Receiver<Result<StagedFile>>,
    ) -> Result<LoadOutcome> {
        self.keeping_copy_errors(async |keep: &mut Option<(FileVersion, RowError)>| {
            let mut guard = self.client().await?;
            let Some(open) = self.begin(&mut guard, job, &[version]).await? else {
                return Ok(LoadOutcome::AlreadyLoaded);
            };
            let keys = futures::stream::unfold(parts, |mut rx| async move {
                rx.recv().await.map(|key| (key, rx))
            });
            let files = |fed: &Fed| vec![(version.clone(), fed.keys.clone())];
            let (open, copied) = self.copy(open, keys, files, keep).await?;
            let file = file
                .await
                .map_err(|_| Error::transient(format!("staging of {} stopped", version.path)))??;
            let load_id = self.commit(open, job, &[&file], copied).await?;
            Ok(LoadOutcome::Loaded {
                load_id,
                rows: file.rows,
            })
        })
        .await
    }
}

/// Named text parameters, bound in order.
fn text_params<'p>(
    params: &'p [(&'static str, String)],
) -> Vec<&'p (dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|(_, v)| v as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// A load transaction that holds the ledger and target locks.
struct OpenLoad<'c> {
    tx: Transaction<'c>,
    load_id: String,
    stage: Ident,
    target_meta: Vec<&'static str>,
    /// Which of the versions asked for are not loaded yet (indices).
    todo: Vec<usize>,
    /// COPY goes straight into the target (no stage).
    direct: bool,
    copy_sql: String,
    /// Put in place of each staged line's end (direct COPY only).
    suffix: Option<Vec<u8>>,
    started: chrono::DateTime<chrono::Utc>,
    clock: std::time::Instant,
}

impl OpenLoad<'_> {
    fn sql<'a>(&'a self, schema: &'a Ident, job: &'a Job) -> LoadSql<'a> {
        LoadSql {
            dialect: Dialect::Postgres,
            schema,
            job,
            stage: &self.stage,
            target_meta: self.target_meta.clone(),
        }
    }
}

#[async_trait]
impl Warehouse for PostgresWarehouse {
    async fn migrate(&self) -> Result<Vec<String>> {
        self.with_deadline("migrating the ledger", async {
            let mut guard = self.client().await?;
            let schema = self.schema().quoted();
            guard
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
                .map_err(pg_error(format!("cannot create schema {schema}")))?;
            let tx = guard
                .transaction()
                .await
                .map_err(pg_error("cannot begin migration"))?;
            let versions = format!("{schema}.\"{VERSIONS_TABLE}\"");
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {versions} (version INTEGER NOT NULL, name VARCHAR(256) NOT NULL, applied_at TIMESTAMPTZ NOT NULL); \
                 LOCK TABLE {versions}; SET LOCAL search_path TO {schema}"
            ))
            .await
            .map_err(pg_error("cannot prepare migrations"))?;
            let applied: Vec<i32> = tx
                .query(&format!("SELECT version FROM {versions}"), &[])
                .await
                .map_err(pg_error("cannot read applied migrations"))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut done = Vec::new();
            for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
                for stmt in render(m, Dialect::Postgres) {
                    tx.batch_execute(&stmt)
                        .await
                        .map_err(pg_error(format!("migration {} failed", m.name)))?;
                }
                tx.execute(
                    &format!(
                        "INSERT INTO {versions} (version, name, applied_at) VALUES ($1, $2, now())"
                    ),
                    &[&m.version, &m.name],
                )
                .await
                .map_err(pg_error("cannot record migration"))?;
                done.push(m.name.to_string());
            }
            tx.commit()
                .await
                .map_err(pg_error("cannot commit migrations"))?;
            Ok(done)
        })
        .await
    }

    async fn verify_ledger(&self) -> Result<String> {
        self.with_deadline("checking the warehouse", async {
            let guard = self.client().await?;
            let versions = format!("{}.\"{VERSIONS_TABLE}\"", self.schema().quoted());
            let applied: i64 = match guard
                .query_one(&format!("SELECT count(*) FROM {versions}"), &[])
                .await
            {
                Ok(row) => row.get(0),
                Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => 0,
                Err(e) => return Err(pg_error("cannot read applied migrations")(e)),
            };
            super::migrations_summary(&describe(&self.settings), self.schema(), applied)
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.with_deadline("answering a ping", async {
            // A connection busy with a load is alive: do not wait behind it.
            let Ok(client) = self.client.try_lock() else {
                return Ok(());
            };
            if client.is_closed() {
                drop(client);
                let _reconnected = self.client().await?;
                return Ok(());
            }
            client
                .simple_query("SELECT 1")
                .await
                .map_err(pg_error(format!(
                    "{} does not answer",
                    describe(&self.settings)
                )))?;
            Ok(())
        })
        .await
    }

    async fn sync_jobs(&self, jobs: &[Arc<Job>]) -> Result<()> {
        self.with_deadline("recording the jobs", async {
            let mut guard = self.client().await?;
            let tx = guard
                .transaction()
                .await
                .map_err(pg_error("cannot begin"))?;
            let (update, insert) = self.ledger.sync_job();
            for j in jobs {
                let source = j.source.name.as_str();
                let target = j.target.as_str();
                tx.execute(
                    &update,
                    &[&j.name, &source, &j.path, &j.pattern_text, &target],
                )
                .await
                .map_err(pg_error("cannot update ferry_jobs"))?;
                tx.execute(
                    &insert,
                    &[
                        &j.name,
                        &source,
                        &j.path,
                        &j.pattern_text,
                        &target,
                        &j.enabled,
                    ],
                )
                .await
                .map_err(pg_error("cannot insert into ferry_jobs"))?;
            }
            tx.commit()
                .await
                .map_err(pg_error("cannot commit ferry_jobs"))?;
            Ok(())
        })
        .await
    }

    async fn job_enabled(&self, job: &str) -> Result<bool> {
        self.with_deadline("reading the job's pause flag", async {
            let guard = self.client().await?;
            let row = guard
                .query_opt(&self.ledger.job_auto(), &[&job])
                .await
                .map_err(pg_error("cannot read ferry_jobs"))?;
            Ok(row.is_none_or(|r| r.get(0)))
        })
        .await
    }

    async fn lookup_many(&self, versions: &[FileVersion]) -> Result<Vec<Option<FileState>>> {
        self.with_deadline("reading the ledger", async {
            let Some(first) = versions.first() else {
                return Ok(Vec::new());
            };
            let guard = self.client().await?;
            let paths: Vec<&str> = versions.iter().map(|v| v.path.as_str()).collect();
            let rows = guard
                .query(
                    &self.ledger.paths_states(paths.len()),
                    &[&first.job, &paths],
                )
                .await
                .map_err(pg_error("cannot read the ledger"))?;
            Ok(super::states_of(
                rows.iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                    .collect(),
                versions,
            ))
        })
        .await
    }

    async fn record_skipped(&self, v: &FileVersion, reason: &str) -> Result<()> {
        self.with_deadline("recording a skipped file", async {
            self.version_statement(
                &self.ledger.insert_skipped(),
                v,
                &fit(reason, width::ERROR),
                "cannot record the skipped file",
            )
            .await
        })
        .await
    }

    async fn load(&self, job: &Job, batch: &[StagedFile]) -> Result<Vec<LoadOutcome>> {
        retry(RetryPolicy::LOAD, "load", || {
            self.with_deadline("a load", self.load_once(job, batch))
        })
        .await
    }

    fn streams(&self) -> bool {
        true
    }

    async fn load_streaming(
        &self,
        job: &Job,
        version: &FileVersion,
        parts: tokio::sync::mpsc::Receiver<String>,
        file: tokio::sync::oneshot::Receiver<Result<StagedFile>>,
    ) -> Result<LoadOutcome> {
        self.with_deadline("a streamed load", async {
            self.load_streaming_once(job, version, parts, file).await
        })
        .await
    }

    async fn read_ledger(&self, report: &Report) -> Result<LedgerRows> {
        self.with_deadline("reading the ledger", async {
            let mut guard = self.client().await?;
            let values = text_params(&report.params);
            // Reports and post-load checks only read: a READ ONLY transaction
            // refuses a check such as `WITH d AS (DELETE …) SELECT …`, or a
            // function that writes.
            let tx = guard
                .build_transaction()
                .read_only(true)
                .start()
                .await
                .map_err(pg_error("cannot begin a read-only transaction"))?;
            let rows = tx
                .query(&report.sql, &values)
                .await
                .map_err(pg_error("cannot read the ledger"))?;
            tx.commit()
                .await
                .map_err(pg_error("cannot end the read-only transaction"))?;
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| {
                            r.try_get::<_, Option<String>>(i).map_err(|e| {
                                Error::permanent(format!(
                                    "column {} of a ledger report is not text",
                                    i + 1
                                ))
                                .with_source(e)
                            })
                        })
                        .collect()
                })
                .collect()
        })
        .await
    }

    async fn write_ledger(&self, change: &Change) -> Result<Vec<u64>> {
        self.with_deadline("changing the ledger", async {
            let mut guard = self.client().await?;
            let tx = self.locked(&mut guard).await?;
            let values = text_params(&change.params);
            let mut changed = Vec::with_capacity(change.sqls.len());
            for sql in &change.sqls {
                changed.push(
                    tx.execute(sql, &values)
                        .await
                        .map_err(pg_error("cannot change the ledger"))?,
                );
            }
            tx.commit()
                .await
                .map_err(pg_error("cannot commit the ledger change"))?;
            Ok(changed)
        })
        .await
    }

    async fn record_failed(&self, f: &FailedFile<'_>) -> Result<()> {
        self.with_deadline("recording a failed file", async {
            let v = f.version;
            let mut guard = self.client().await?;
            let tx = self.locked(&mut guard).await?;
            let size = v.size as i64;
            let states = tx
                .query(&self.ledger.lookup(), &[&v.job, &v.path, &size, &v.mtime])
                .await
                .map_err(pg_error("cannot read the ledger"))?;
            if states.iter().any(|r| r.get::<_, String>(0) == "loaded") {
                return Ok(()); // loaded meanwhile (another replica): keep that
            }
            tx.execute(
                &self.ledger.clear_unloaded(),
                &[&v.job, &v.path, &size, &v.mtime],
            )
            .await
            .map_err(pg_error("cannot update the ledger"))?;
            let rejected = f.rejected as i64;
            let reason = fit(f.reason, width::ERROR);
            tx.execute(
                &self.ledger.insert_failed(),
                &[
                    &v.job,
                    &v.path,
                    &size,
                    &v.mtime,
                    &f.sha256,
                    &rejected,
                    &reason,
                    &f.rejects_key,
                ],
            )
            .await
            .map_err(pg_error("cannot record the failure"))?;
            self.insert_errors(&tx, v, None, f.errors).await?;
            tx.commit()
                .await
                .map_err(pg_error("cannot commit the failure"))?;
            Ok(())
        })
        .await
    }

    async fn mark_finalized(&self, v: &FileVersion, final_path: Option<&str>) -> Result<()> {
        self.with_deadline("recording a finalize", async {
            self.version_statement(
                &self.ledger.mark_finalized(),
                v,
                &final_path,
                "cannot mark the file finalized",
            )
            .await
        })
        .await
    }
}

/// An error row's text cut to its columns' widths: a long reason or
/// value must never keep a failure from being recorded.
struct Fitted<'a> {
    line: i64,
    column: Option<&'a str>,
    reason: &'a str,
    raw_line: &'a str,
    raw_value: Option<&'a str>,
}

impl<'a> Fitted<'a> {
    fn of(e: &'a RowError) -> Self {
        Fitted {
            line: e.line as i64,
            column: e.column.as_deref().map(|c| fit(c, width::COLUMN)),
            reason: fit(&e.reason, width::REASON),
            raw_line: fit(&e.raw_line, width::RAW_LINE),
            raw_value: e.raw_value.as_deref().map(|r| fit(r, width::RAW_VALUE)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{RecordEnds, is_transient_state};
    use tokio_postgres::error::SqlState;

    #[test]
    fn conflicts_timeouts_and_outages_retry_and_data_or_schema_errors_do_not() {
        for c in [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::QUERY_CANCELED,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::CONNECTION_FAILURE,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::OUT_OF_MEMORY,
            SqlState::DISK_FULL,
        ] {
            assert!(is_transient_state(&c), "{}", c.code());
        }
        for c in [
            SqlState::UNDEFINED_TABLE,
            SqlState::UNDEFINED_COLUMN,
            SqlState::INSUFFICIENT_PRIVILEGE,
            SqlState::INVALID_TEXT_REPRESENTATION,
            SqlState::UNIQUE_VIOLATION,
            SqlState::SYNTAX_ERROR,
            SqlState::DATATYPE_MISMATCH,
        ] {
            assert!(!is_transient_state(&c), "{}", c.code());
        }
    }

    /// Feeds `text` in chunks of `size` and joins what comes out.
    fn completed(text: &str, size: usize) -> (String, u64) {
        let mut ends = Some(RecordEnds::new(b",L,T\n"));
        let (mut out, mut lines) = (Vec::new(), 0);
        for piece in text.as_bytes().chunks(size) {
            let (chunk, n) = RecordEnds::chunk(&mut ends, piece);
            out.extend_from_slice(&chunk);
            lines += n;
        }
        (String::from_utf8(out).unwrap(), lines)
    }

    #[test]
    fn record_ends_get_the_suffix_but_line_breaks_inside_quotes_do_not() {
        let text = "a,1\n\"x\ny\",\"he said \"\"hi\"\"\n\"\nb,2\n";
        let want = "a,1,L,T\n\"x\ny\",\"he said \"\"hi\"\"\n\",L,T\nb,2,L,T\n";
        // Whatever the chunking, quotes are tracked across chunk ends.
        for size in [1, 2, 3, 5, 7, text.len()] {
            assert_eq!(
                completed(text, size),
                (want.to_string(), 5),
                "chunks of {size}"
            );
        }
    }
}

//! The PostgreSQL backend: the local stand-in for Redshift.
//!
//! It runs the same load transaction as Redshift, except that COPY cannot
//! read S3: the staged object is streamed from S3, gunzipped on a blocking
//! thread and fed to `COPY … FROM STDIN`, a chunk at a time.
//!
//! By role: `client` (sessions, their timeouts and TLS, what an error
//! means), `copy` (feeding COPY from S3, locating COPY errors), `load`
//! (the load transaction, whole or streamed), `ledger` (typed ledger
//! writes); this file holds the connection and the [`Warehouse`] methods.

use super::sql::{LoadSql, stage_table, target_columns_report, target_tables};
use super::{LedgerRows, LoadOutcome, StagedFile, Warehouse};

use crate::config::{Job, PgSslMode, PostgresSettings};
use crate::error::{Classify, Error, ErrorKind, Result, classified};
use crate::ledger::reports::{Change, Report};
use crate::ledger::{ErrorRows, FileVersion, LedgerSql};
use crate::normalize::RowError;
use crate::retry::{RetryPolicy, retry};
use crate::sql::Dialect;
use crate::sql::Ident;
use crate::stage::Stager;
use async_trait::async_trait;
use bytes::Bytes;
use futures::SinkExt;
use std::io::Read;
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient, NoTls, Transaction};

mod client;
mod copy;
mod ledger;
mod load;

use client::*;
use copy::KeptCopyError;
pub use copy::{Fed, feed_copy};
use load::*;

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
            .map_err(classified("cannot begin"))?;
        tx.batch_execute(&self.ledger.lock())
            .await
            .map_err(classified("cannot lock the ledger"))?;
        Ok(tx)
    }
}

#[async_trait]
impl Warehouse for PostgresWarehouse {
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
                .map_err(classified(format!(
                    "{} does not answer",
                    describe(&self.settings)
                )))?;
            Ok(())
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
}

#[async_trait]
impl crate::ledger::LedgerStore for PostgresWarehouse {
    fn ledger(&self) -> &LedgerSql {
        &self.ledger
    }

    fn describe(&self) -> String {
        describe(&self.settings)
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
                .map_err(classified("cannot begin a read-only transaction"))?;
            let rows = tx
                .query(&report.sql, &values)
                .await
                .map_err(classified("cannot read the ledger"))?;
            tx.commit()
                .await
                .map_err(classified("cannot end the read-only transaction"))?;
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
            let tx = if change.lock {
                self.locked(&mut guard).await?
            } else {
                guard
                    .transaction()
                    .await
                    .map_err(classified("cannot begin"))?
            };
            let values = text_params(&change.params);
            let mut changed = Vec::with_capacity(change.sqls.len());
            for sql in &change.sqls {
                // A statement binds the first parameters, up to its highest $n.
                let used = crate::sql::bind::positional_used(sql)
                    .iter()
                    .filter_map(|p| p[1..].parse::<usize>().ok())
                    .max()
                    .unwrap_or(0)
                    .min(values.len());
                changed.push(
                    tx.execute(sql, &values[..used])
                        .await
                        .map_err(classified("cannot change the ledger"))?,
                );
            }
            if let Some(rows) = &change.errors {
                self.insert_error_rows(&tx, rows).await?;
            }
            tx.commit()
                .await
                .map_err(classified("cannot commit the ledger change"))?;
            Ok(changed)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::copy::RecordEnds;
    use super::is_transient_state;
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

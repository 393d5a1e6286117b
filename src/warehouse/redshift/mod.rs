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
//!
//! By role: `client` (submitting and polling statements, what a failure
//! means), `constants` (values written into SQL text as checked literals),
//! `load` (the batch's statements and its COPY errors); this file holds
//! the connection and the [`Warehouse`] methods.

use super::sql::LoadSql;
use super::{FailedFile, LedgerRows, LoadOutcome, StagedFile, Warehouse};
use crate::aws::sdk_error;
use crate::config::{Job, RedshiftDataSettings, RedshiftTarget};
use crate::error::{Error, ErrorKind, Result};
use crate::ledger::reports::{Change, Report};
use crate::ledger::{FileVersion, LedgerSql, fit, width};
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
use std::time::Instant;

#[macro_use]
mod client;
mod constants;
mod load;

use client::*;
use constants::*;
use load::*;
pub use load::{
    BATCH_COLUMNS, BATCH_ERROR_COLUMNS, BatchInputs, LoadBatch, errors_sql, load_batch,
};

/// A Redshift warehouse reached through the Data API.
pub struct RedshiftDataWarehouse {
    settings: RedshiftDataSettings,
    client: Client,
    ledger: LedgerSql,
    stager: Stager,
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

    fn schema(&self) -> &Ident {
        &self.settings.schema
    }

    fn table(&self, name: &str) -> String {
        format!("{}.\"{name}\"", self.schema().quoted())
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

    async fn load(&self, job: &Job, batch: &[StagedFile]) -> Result<Vec<LoadOutcome>> {
        retry(RetryPolicy::LOAD, "load", || self.load_once(job, batch)).await
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
}

#[async_trait]
impl crate::ledger::LedgerStore for RedshiftDataWarehouse {
    fn ledger(&self) -> &LedgerSql {
        &self.ledger
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
        let mut sqls: Vec<String> = change
            .lock
            .then(|| self.ledger.lock())
            .into_iter()
            .collect();
        sqls.extend(change.sqls.iter().cloned());
        let id = self.submit_batch(&sqls, &params).await?;
        let done = self
            .wait(&id, "changing the ledger")
            .await?
            .map_err(|f| Self::failure("cannot change the ledger", &f))?;
        Ok(done
            .sub_statements()
            .iter()
            .skip(usize::from(change.lock))
            .map(|s| s.result_rows().max(0) as u64)
            .collect())
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

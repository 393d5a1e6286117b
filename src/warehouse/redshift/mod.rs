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

use super::sql::{LoadSql, stage_table, target_columns_report};
use super::{LedgerRows, LoadOutcome, StagedFile, Warehouse};

use crate::config::{Job, RedshiftDataSettings, RedshiftTarget};
use crate::error::{Error, ErrorKind, Result, classified};
use crate::ledger::errors::{CopiedErrors, copy_fields, fitted};
use crate::ledger::reports::{Change, Report};
use crate::ledger::{ErrorRows, FileVersion, LedgerSql};
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
pub use load::{BATCH_COLUMNS, BatchInputs, LoadBatch, load_batch};

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
}

#[async_trait]
impl Warehouse for RedshiftDataWarehouse {
    async fn alter(&self, sql: &str) -> Result<()> {
        // ExecuteStatement: one statement, committed on its own.
        self.run(sql, &[], "altering the target").await.map(|_| ())
    }

    async fn ping(&self) -> Result<()> {
        crate::ledger::verify_ledger(self).await.map(|_| ())
    }

    async fn load(&self, job: &Job, batch: &[StagedFile]) -> Result<Vec<LoadOutcome>> {
        retry(RetryPolicy::LOAD, "load", || self.load_once(job, batch)).await
    }
}

#[async_trait]
impl crate::ledger::LedgerStore for RedshiftDataWarehouse {
    fn ledger(&self) -> &LedgerSql {
        &self.ledger
    }

    fn describe(&self) -> String {
        RedshiftDataWarehouse::describe(self)
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
        let mut params: Vec<Param<'_>> = change.params.clone();
        let mut sqls: Vec<String> = change
            .lock
            .then(|| self.ledger.lock())
            .into_iter()
            .collect();
        sqls.extend(change.sqls.iter().cloned());
        if let Some(rows) = &change.errors {
            sqls.extend(self.copied_error_rows(rows, &mut params).await?);
        }
        if sqls.len() > MAX_BATCH {
            return Err(Error::permanent(format!(
                "a ledger change of {} statements exceeds a Data API batch ({MAX_BATCH}); this is a bug in ferry, please report it",
                sqls.len()
            )));
        }
        let id = self.submit_batch(&sqls, &params).await?;
        let done = self
            .wait(&id, "changing the ledger")
            .await?
            .map_err(|f| Self::failure("cannot change the ledger", &f))?;
        Ok(done
            .sub_statements()
            .iter()
            .skip(usize::from(change.lock))
            .take(change.sqls.len())
            .map(|s| s.result_rows().max(0) as u64)
            .collect())
    }
}

impl RedshiftDataWarehouse {
    /// Uploads `rows` as a gzip CSV for COPY and returns the statements
    /// that insert them, adding their parameters (job, load_id, and the
    /// version's path, size, mtime) to `params` where the change has not
    /// named them.
    async fn copied_error_rows(
        &self,
        rows: &ErrorRows,
        params: &mut Vec<Param<'_>>,
    ) -> Result<Vec<String>> {
        let v = &rows.version;
        let folder = self.stager.manifest_folder(
            &v.job,
            &format!("ledger-{}", uuid::Uuid::new_v4().simple()),
            chrono::Utc::now(),
        );
        let Some(key) = self.upload_errors(&folder, &[(v, &rows.rows)]).await? else {
            return Ok(Vec::new());
        };
        for (name, value) in [
            ("job", Some(v.job.clone())),
            ("path", Some(v.path.clone())),
            ("size", Some(v.size.to_string())),
            ("mtime", Some(v.mtime.to_string())),
            ("load_id", rows.load_id.clone()),
        ] {
            match params.iter().find(|(n, _)| *n == name) {
                Some((_, given)) => debug_assert_eq!(given, &value, "parameter {name}"),
                None => params.push((name, value)),
            }
        }
        Ok(self.ledger.errors_from_copy(
            &literal("S3 URL", &self.stager.url(&key))?,
            &self.iam_role()?,
            CopiedErrors::OfVersion {
                unless_loaded: rows.unless_loaded,
            },
        ))
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

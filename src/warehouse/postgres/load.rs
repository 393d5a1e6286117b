//! The load transaction: lock, leave out versions already loaded, stage
//! (or copy straight into the target), merge dimensions and the fact,
//! record the ledger rows, commit; and the streamed load of a large file.

use super::*;

/// A load transaction that holds the ledger and target locks.
pub(super) struct OpenLoad<'c> {
    pub(super) tx: Transaction<'c>,
    pub(super) load_id: String,
    pub(super) stage: Ident,
    pub(super) target_meta: Vec<&'static str>,
    /// Which of the versions asked for are not loaded yet (indices).
    pub(super) todo: Vec<usize>,
    /// COPY goes straight into the target (no stage).
    pub(super) direct: bool,
    pub(super) copy_sql: String,
    /// Put in place of each staged line's end (direct COPY only).
    pub(super) suffix: Option<Vec<u8>>,
    pub(super) started: chrono::DateTime<chrono::Utc>,
    pub(super) clock: std::time::Instant,
}

impl OpenLoad<'_> {
    pub(super) fn sql<'a>(&'a self, schema: &'a Ident, job: &'a Job) -> LoadSql<'a> {
        LoadSql {
            dialect: Dialect::Postgres,
            schema,
            job,
            stage: &self.stage,
            target_meta: self.target_meta.clone(),
        }
    }
}

impl PostgresWarehouse {
    /// Which of the target's columns exist; errors if the table does not.
    pub(super) async fn target_columns(
        &self,
        c: &impl GenericClient,
        job: &Job,
    ) -> Result<Vec<&'static str>> {
        let report = target_columns_report(Dialect::Postgres, self.schema(), job);
        let rows = c
            .query(&report.sql, &text_params(&report.params))
            .await
            .map_err(classified("cannot read the target's columns"))?;
        let have: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        crate::warehouse::check_target(job, self.schema(), &have)
    }

    /// Which of `versions` (indices) the ledger does not have as `loaded`.
    pub(super) async fn not_loaded(
        &self,
        tx: &Transaction<'_>,
        job: &Job,
        versions: &[&FileVersion],
    ) -> Result<Vec<usize>> {
        let paths: Vec<&str> = versions.iter().map(|v| v.path.as_str()).collect();
        let loaded: Vec<(String, i64, i64)> = tx
            .query(&self.ledger.loaded_among(), &[&job.name, &paths])
            .await
            .map_err(classified("cannot read the ledger"))?
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
    pub(super) async fn record_loaded(
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
        futures::try_join!(clear, insert).map_err(classified(format!(
            "cannot record {} in the ledger",
            v.path
        )))?;
        self.insert_error_rows(tx, &ErrorRows::of(v, Some(load_id), &file.errors))
            .await
    }

    /// Drops stale staged rows, merges the dimensions, and replaces or
    /// appends the fact rows from the stage; returns the rows inserted.
    pub(super) async fn merge(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        job: &Job,
        sql: &LoadSql<'_>,
        load_id: &str,
    ) -> Result<u64> {
        if let Some(stale) = sql.drop_stale() {
            tx.execute(&stale, &[]).await.map_err(classified(
                "cannot drop staged rows older than the target's",
            ))?;
        }
        for d in &job.dimensions {
            for stmt in sql.merge_dimension(d) {
                tx.execute(&stmt, &[])
                    .await
                    .map_err(classified(format!("cannot merge dimension {}", d.table)))?;
            }
        }
        if let Some(delete) = sql.delete_replaced() {
            tx.execute(&delete, &[])
                .await
                .map_err(classified(format!("cannot replace rows in {}", job.target)))?;
        }
        let insert = sql.insert_fact();
        if sql.target_meta.contains(&"ferry_load_id") {
            tx.execute(&insert, &[&load_id]).await
        } else {
            tx.execute(&insert, &[]).await
        }
        .map_err(classified(format!("cannot insert into {}", job.target)))
    }

    /// Begins the load of `versions`: locks the ledger, leaves out the
    /// versions already loaded (`None`, rolled back, when that is all of
    /// them), locks the targets, and prepares the COPY (a stage table, or
    /// the line suffix of a COPY straight into the target).
    pub(super) async fn begin<'c>(
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
            tx.rollback()
                .await
                .map_err(classified("cannot roll back"))?;
            return Ok(None);
        }
        let target_meta = self.target_columns(&tx, job).await?;
        tx.batch_execute(&self.ledger.lock_targets(&target_tables(self.schema(), job)))
            .await
            .map_err(classified("cannot lock the target tables"))?;
        let load_id = uuid::Uuid::new_v4().simple().to_string();
        let stage = stage_table(&load_id);
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
                .map_err(classified("cannot read the transaction time"))?
                .get(0);
            sql.direct_suffix(&open.load_id, &now, &defaulted)
        } else {
            open.tx
                .batch_execute(&sql.create_stage())
                .await
                .map_err(classified("cannot create the staging table"))?;
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
    pub(super) async fn defaulted_meta(
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
            .map_err(classified("cannot read the target's column defaults"))?;
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
                .map_err(classified("cannot set ferry.load_id for the load"))?;
        }
        Ok(defaulted)
    }

    /// Checks COPY's count against normalize's, merges, records the files
    /// and the load, and commits; returns the load id.
    pub(super) async fn commit(
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
        .map_err(classified("cannot record the load"))?;
        if !open.direct {
            tx.batch_execute(&sql.drop_stage())
                .await
                .map_err(classified("cannot drop the staging table"))?;
        }
        drop(sql);
        open.tx
            .commit()
            .await
            .map_err(classified("cannot commit the load"))?;
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

    pub(super) async fn load_once(
        &self,
        job: &Job,
        batch: &[StagedFile],
    ) -> Result<Vec<LoadOutcome>> {
        self.keeping_copy_errors(async |keep: &mut Option<KeptCopyError>| {
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
            Ok(crate::warehouse::outcomes(batch, &load_id, |f| {
                todo.iter().any(|t| std::ptr::eq(*t, f))
            }))
        })
        .await
    }

    /// [`Warehouse::load_streaming`], once: the COPY starts with the first
    /// part and ends when `parts` closes; the commit waits for `file`.
    pub(super) async fn load_streaming_once(
        &self,
        job: &Job,
        version: &FileVersion,
        parts: tokio::sync::mpsc::Receiver<String>,
        file: tokio::sync::oneshot::Receiver<Result<StagedFile>>,
    ) -> Result<LoadOutcome> {
        self.keeping_copy_errors(async |keep: &mut Option<KeptCopyError>| {
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

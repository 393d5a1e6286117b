//! The load: one `BatchExecuteStatement` per batch (lock, leave out
//! versions already loaded, COPY from a manifest, merge, ledger rows),
//! the kept error rows uploaded for COPY, and COPY errors read back from
//! `sys_load_error_detail`.

use super::*;

/// Most statements one batch may hold.
pub(super) const MAX_BATCH: usize = 40;

/// One gzip CSV in memory (small: batch lists and error rows).
pub(super) fn gzip_csv<'a>(rows: impl Iterator<Item = Vec<Option<&'a str>>>) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for row in rows {
        write_record(&mut gz, row).expect("writing to memory");
    }
    gz.finish().expect("writing to memory")
}

/// The columns of `ferry_batch`, the batch's file list.
pub const BATCH_COLUMNS: &str = "path VARCHAR(1024), size BIGINT, mtime BIGINT, sha256 VARCHAR(64), staged_key VARCHAR(1024), rows_loaded BIGINT, rows_rejected BIGINT, rejects_key VARCHAR(1024), input_bytes BIGINT";

/// Where a load batch reads from: checked string literals of S3 URLs and
/// the IAM role (or `default`).
#[derive(Debug, Clone)]
pub struct BatchInputs {
    /// The batch's file list (gzip CSV of [`BATCH_COLUMNS`]).
    pub list: String,
    /// The COPY manifest of the staged parts; `None` when no part has rows.
    pub manifest: Option<String>,
    /// The kept rejected records (gzip CSV of
    /// [`COPY_ERROR_COLUMNS`](crate::ledger::errors::COPY_ERROR_COLUMNS)),
    /// if any.
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
    tables.extend(crate::warehouse::sql::target_tables(schema, job));
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
        let ledger = LedgerSql::with_dialect(schema, Dialect::Redshift);
        for s in ledger.errors_from_copy(url, role, CopiedErrors::OfBatch) {
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

impl RedshiftDataWarehouse {
    /// Which of the target's metadata columns exist; errors if the table
    /// does not or lacks a job column.
    pub(super) async fn target_columns(&self, job: &Job) -> Result<Vec<&'static str>> {
        let report = target_columns_report(Dialect::Redshift, self.schema(), job);
        let have: Vec<String> = crate::ledger::LedgerStore::read_ledger(self, &report)
            .await
            .map_err(|e| e.wrap("cannot read the target's columns"))?
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect();
        crate::warehouse::check_target(job, self.schema(), &have)
    }

    /// Uploads the kept rejected records of `files` (cut to their columns
    /// by [`fitted`]) as a gzip CSV under `folder`; returns its key, or
    /// `None` when there are none.
    pub(super) async fn upload_errors(
        &self,
        folder: &str,
        files: &[(&FileVersion, &[RowError])],
    ) -> Result<Option<String>> {
        if files.iter().all(|(_, e)| e.is_empty()) {
            return Ok(None);
        }
        let rows: Vec<Vec<Option<String>>> = files
            .iter()
            .flat_map(|(v, errors)| errors.iter().map(|e| copy_fields(e, v)))
            .collect();
        let body = gzip_csv(
            rows.iter()
                .map(|r| r.iter().map(|f| f.as_deref()).collect()),
        );
        let key = format!("{folder}errors.csv.gz");
        self.stager.put_small(&key, body, "text/csv").await?;
        Ok(Some(key))
    }

    pub(super) fn iam_role(&self) -> Result<String> {
        if self.settings.iam_role == "default" {
            return Ok("default".into());
        }
        literal("warehouse.iam_role", &self.settings.iam_role)
    }

    /// Reads `sys_load_error_detail` for the COPY that failed: rows about
    /// the batch's parts since `since`. Best effort: a failure to read it
    /// is logged and yields nothing.
    pub(super) async fn copy_errors(
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

    pub(super) async fn load_once(
        &self,
        job: &Job,
        batch: &[StagedFile],
    ) -> Result<Vec<LoadOutcome>> {
        let started = chrono::Utc::now();
        let clock = Instant::now();
        let target_meta = self.target_columns(job).await?;
        let load_id = uuid::Uuid::new_v4().simple().to_string();
        let folder = self.stager.manifest_folder(&job.name, &load_id, started);
        let (inputs, manifest_key) = self.upload_inputs(batch, &folder).await?;
        let stage = stage_table(&load_id);
        let planned = load_batch(self.schema(), job, &stage, target_meta, &inputs);
        if planned.statements.len() > MAX_BATCH {
            return Err(Error::permanent(format!(
                "job {}: its load needs {} statements but a Data API batch holds at most {MAX_BATCH}; configure fewer dimensions",
                job.name,
                planned.statements.len()
            )));
        }
        let sqls: Vec<String> = planned.statements.iter().map(|(s, _)| s.clone()).collect();
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
            let at = FailedLoad {
                batch,
                folder: &folder,
                manifest_key: &manifest_key,
                started,
            };
            return Err(self.batch_failure(&planned, &at, &f).await);
        }
        let written = self.written_versions(job, &load_id).await?;
        let duration_ms = clock.elapsed().as_millis() as i64;
        if !written.is_empty() {
            self.record_duration(&load_id, duration_ms).await;
        }
        tracing::debug!(job = %job.name, files = written.len(), duration_ms, "load committed");
        Ok(crate::warehouse::outcomes(batch, &load_id, |f| {
            let v = &f.version;
            written
                .iter()
                .any(|(p, s, m)| *p == v.path && *s == v.size as i64 && *m == v.mtime)
        }))
    }

    /// Uploads what the batch's statements read besides the staged parts:
    /// the file list, the COPY manifest of the parts, the kept error rows;
    /// returns the statements' inputs and the manifest's key.
    pub(super) async fn upload_inputs(
        &self,
        batch: &[StagedFile],
        folder: &str,
    ) -> Result<(BatchInputs, String)> {
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
            let mut entries: Vec<serde_json::Value> = Vec::with_capacity(parts.len());
            for k in &parts {
                let mut entry = serde_json::json!({"url": self.stager.url(k), "mandatory": true});
                // COPY of Parquet needs each object's length in the manifest.
                if crate::stage::is_parquet_part(k) {
                    let bytes = self.stager.object_size(k).await?;
                    entry["meta"] = serde_json::json!({ "content_length": bytes });
                }
                entries.push(entry);
            }
            let body = serde_json::to_vec_pretty(&serde_json::json!({ "entries": entries }))
                .expect("JSON");
            self.stager
                .put_small(&manifest_key, body, "application/json")
                .await?;
        }

        let kept: Vec<Vec<RowError>> = batch
            .iter()
            .map(|f| f.errors.iter().map(fitted).collect())
            .collect();
        let errors: Vec<(&FileVersion, &[RowError])> = batch
            .iter()
            .zip(&kept)
            .map(|(f, e)| (&f.version, e.as_slice()))
            .collect();
        let errors_key = self.upload_errors(folder, &errors).await?;
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
        Ok((inputs, manifest_key))
    }

    /// The error for a failed load batch: a failed row-count check or
    /// COPY (with its rows from `sys_load_error_detail`, kept with a file
    /// loaded alone) is permanent; any other step fails as its message
    /// says ([`RETRYABLE`] or not).
    pub(super) async fn batch_failure(
        &self,
        planned: &LoadBatch,
        at: &FailedLoad<'_>,
        f: &Failed,
    ) -> Error {
        let LoadBatch {
            statements: stmts,
            copy_at,
            check_at,
        } = planned;
        let (copy_at, check_at) = (*copy_at, *check_at);
        let (batch, folder, manifest_key, started) =
            (at.batch, at.folder, at.manifest_key, at.started);
        let step = f
            .sub
            .and_then(|i| stmts.get(i))
            .map(|(_, w)| *w)
            .unwrap_or("load");
        if f.sub == Some(check_at) && !retryable(&f.message) {
            return Error::permanent(format!(
                "the staged rows under {} do not match the row counts normalize wrote for them (the load's row-count check failed); nothing was loaded",
                self.stager.url(folder)
            ));
        }
        if f.sub.is_some() && f.sub == copy_at && !retryable(&f.message) {
            let refs: Vec<&StagedFile> = batch.iter().collect();
            let details = self
                .copy_errors(&refs, started - chrono::Duration::minutes(1))
                .await;
            let first = details
                .first()
                .map(|(i, e)| format!("; first: {} {}", batch[*i].version.path, e.describe()));
            let rows: Vec<RowError> = details.iter().map(|(_, e)| e.clone()).collect();
            crate::ledger::keep_copy_errors(self, batch.len(), &batch[0].version, &rows).await;
            return Error::permanent(format!(
                "COPY of the staged parts (manifest {}) failed: {}{} (rows in sys_load_error_detail)",
                self.stager.url(manifest_key),
                f.message,
                first.unwrap_or_default()
            ));
        }
        Self::failure(&format!("cannot {step}"), f)
    }

    /// The versions the load `load_id` wrote (the others of its batch were
    /// loaded before).
    pub(super) async fn written_versions(
        &self,
        job: &Job,
        load_id: &str,
    ) -> Result<Vec<(String, i64, i64)>> {
        let files = self.table("ferry_files");
        let rows = self
            .query(
                &format!(
                    "SELECT path, size, mtime FROM {files} WHERE job = :job AND load_id = :load_id"
                ),
                &[
                    ("job", Some(job.name.clone())),
                    ("load_id", Some(load_id.to_string())),
                ],
                "reading the load's ledger rows",
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.first().and_then(text)?,
                    r.get(1).and_then(long)?,
                    r.get(2).and_then(long)?,
                ))
            })
            .collect())
    }

    /// Records how long the load took in `ferry_loads` (a failure is only
    /// logged: the load committed).
    pub(super) async fn record_duration(&self, load_id: &str, duration_ms: i64) {
        if let Err(e) = self
            .run(
                &format!(
                    "UPDATE {} SET duration_ms = :duration_ms WHERE load_id = :load_id",
                    self.table("ferry_loads")
                ),
                &[
                    ("duration_ms", Some(duration_ms.to_string())),
                    ("load_id", Some(load_id.to_string())),
                ],
                "recording the load's duration",
            )
            .await
        {
            tracing::warn!(error = %e.chain(), "cannot record the load's duration");
        }
    }
}

/// Where a failed load batch stood: what its error names.
pub(super) struct FailedLoad<'a> {
    pub(super) batch: &'a [StagedFile],
    pub(super) folder: &'a str,
    pub(super) manifest_key: &'a str,
    pub(super) started: chrono::DateTime<chrono::Utc>,
}

//! SQL for the load transaction, rendered from validated identifiers.
//!
//! Written to Redshift's subset: a temp staging table, `DELETE … USING` +
//! `INSERT … SELECT` instead of `MERGE` guards or `ON CONFLICT`, window
//! functions for "latest row wins". No value is ever spliced into the text.

use crate::config::{Dimension, Job, LoadMode, Scd2};
use crate::ledger::reports::Report;
use crate::schema::ColumnType;
use crate::sql::Dialect;
use crate::sql::Ident;

/// Extra columns every staged row carries after the job's columns.
pub const STAGE_EXTRA: [&str; 2] = ["ferry_file", "ferry_line"];

/// Load-metadata columns a target may have; filled when present.
pub const TARGET_META: [&str; 4] = [
    "ferry_file",
    "ferry_line",
    "ferry_load_id",
    "ferry_loaded_at",
];

/// The tables a load of `job` writes besides the ledger (the target and
/// its dimensions), qualified and quoted, in name order: the order both
/// backends lock them in.
pub fn target_tables(schema: &Ident, job: &Job) -> Vec<String> {
    let mut tables: Vec<String> = std::iter::once(&job.target)
        .chain(job.dimensions.iter().map(|d| &d.table))
        .map(|t| format!("{}.{}", schema.quoted(), t.quoted()))
        .collect();
    tables.sort();
    tables.dedup();
    tables
}

/// `CREATE TABLE IF NOT EXISTS` for `job`'s target and dimensions in
/// `schema`, from the mapping (`auto_create`): the job's columns (NOT NULL
/// where required) and the `ferry_*` load columns; each dimension's key,
/// its attributes (typed as the fact columns they come from) and, for
/// SCD2, its history columns. On Redshift the target gets the job's
/// DISTKEY/SORTKEY and a dimension its key as both; on PostgreSQL the
/// target fills its load id and time itself (as the example table does),
/// so appends COPY straight into it.
pub fn create_targets(schema: &Ident, job: &Job, dialect: Dialect) -> Vec<String> {
    let table = |t: &Ident| format!("{}.{}", schema.quoted(), t.quoted());
    let type_of = |name: &Ident| {
        job.columns.iter().find(|c| c.name == *name).map_or_else(
            || "VARCHAR(256)".to_string(),
            |c| c.column_type.sql_in(dialect),
        )
    };
    let layout = job.auto_create.clone().unwrap_or_default();
    let redshift = dialect == Dialect::Redshift;
    let mut cols: Vec<String> = job
        .columns
        .iter()
        .map(|c| {
            let not_null = if c.required { " NOT NULL" } else { "" };
            format!(
                "{} {}{not_null}",
                c.name.quoted(),
                c.column_type.sql_in(dialect)
            )
        })
        .collect();
    cols.extend([
        "\"ferry_file\" VARCHAR(1024)".to_string(),
        "\"ferry_line\" BIGINT".into(),
        "\"ferry_load_id\" VARCHAR(64)".into(),
        "\"ferry_loaded_at\" TIMESTAMPTZ".into(),
    ]);
    let mut attributes = String::new();
    if redshift {
        if let Some(d) = &layout.distkey {
            attributes.push_str(&format!(" DISTKEY ({})", d.quoted()));
        }
        if !layout.sortkey.is_empty() {
            let keys: Vec<String> = layout.sortkey.iter().map(Ident::quoted).collect();
            attributes.push_str(&format!(" SORTKEY ({})", keys.join(", ")));
        }
    }
    let mut out = vec![format!(
        "CREATE TABLE IF NOT EXISTS {} ({}){attributes}",
        table(&job.target),
        cols.join(", ")
    )];
    if !redshift {
        out.push(format!(
            "ALTER TABLE {} ALTER COLUMN \"ferry_loaded_at\" SET DEFAULT now(), ALTER COLUMN \"ferry_load_id\" SET DEFAULT current_setting('ferry.load_id', true)",
            table(&job.target)
        ));
    }
    for d in &job.dimensions {
        let mut cols = vec![format!("{} {} NOT NULL", d.key.quoted(), type_of(&d.key))];
        cols.extend(
            d.columns
                .iter()
                .map(|(dim, fact)| format!("{} {}", dim.quoted(), type_of(fact))),
        );
        if let Some(h) = &d.scd2 {
            cols.push(format!("{} TIMESTAMPTZ", h.valid_from.quoted()));
            cols.push(format!("{} TIMESTAMPTZ", h.valid_to.quoted()));
            cols.push(format!("{} BOOLEAN NOT NULL", h.is_current.quoted()));
        }
        let attributes = if redshift {
            format!(" DISTKEY ({k}) SORTKEY ({k})", k = d.key.quoted())
        } else {
            String::new()
        };
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {} ({}){attributes}",
            table(&d.table),
            cols.join(", ")
        ));
    }
    out
}

/// The temp staging table of load `load_id` (a uuid's simple form).
pub fn stage_table(load_id: &str) -> Ident {
    let short: String = load_id.chars().take(12).collect();
    Ident::parse(&format!("ferry_stage_{short}"))
        .expect("a uuid's hex digits make a valid identifier")
}

/// The catalog query [`check_target`](super::check_target) reads: the
/// column names of `job`'s target in `schema` (params schema, table).
pub fn target_columns_report(dialect: Dialect, schema: &Ident, job: &Job) -> Report {
    Report {
        sql: dialect.adapt(
            "SELECT CAST(column_name AS VARCHAR(128)) FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
            &["schema", "table"],
        ),
        params: vec![
            ("schema", schema.as_str().to_string()),
            ("table", job.target.as_str().to_string()),
        ],
        columns: &["column"],
    }
}

/// The target's columns with their VARCHAR lengths (NULL for other types),
/// for `evolve`: params schema, table. Columns column, length.
pub fn target_catalog_report(dialect: Dialect, schema: &Ident, table: &Ident) -> Report {
    Report {
        sql: dialect.adapt(
            "SELECT CAST(column_name AS VARCHAR(128)), CAST(character_maximum_length AS VARCHAR(20)) \
             FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
            &["schema", "table"],
        ),
        params: vec![
            ("schema", schema.as_str().to_string()),
            ("table", table.as_str().to_string()),
        ],
        columns: &["column", "length"],
    }
}

/// `ALTER TABLE … ADD COLUMN` of one column (Redshift adds one per
/// statement, and has no `IF NOT EXISTS` for it).
pub fn add_column(
    dialect: Dialect,
    schema: &Ident,
    table: &Ident,
    column: &Ident,
    ty: ColumnType,
) -> String {
    format!(
        "ALTER TABLE {}.{} ADD COLUMN {} {}",
        schema.quoted(),
        table.quoted(),
        column.quoted(),
        ty.sql_in(dialect)
    )
}

/// `ALTER TABLE … ALTER COLUMN … TYPE VARCHAR(n)`: the one type change
/// Redshift makes in place (a longer VARCHAR), outside a transaction block.
pub fn widen_column(schema: &Ident, table: &Ident, column: &Ident, length: u32) -> String {
    format!(
        "ALTER TABLE {}.{} ALTER COLUMN {} TYPE VARCHAR({length})",
        schema.quoted(),
        table.quoted(),
        column.quoted()
    )
}

/// Renders the statements of one load for one job.
pub struct LoadSql<'a> {
    /// Dialect.
    pub dialect: Dialect,
    /// Warehouse schema.
    pub schema: &'a Ident,
    /// The job.
    pub job: &'a Job,
    /// Temp staging table name.
    pub stage: &'a Ident,
    /// Which of [`TARGET_META`] the target has.
    pub target_meta: Vec<&'static str>,
}

impl LoadSql<'_> {
    fn table(&self, t: &Ident) -> String {
        format!("{}.{}", self.schema.quoted(), t.quoted())
    }

    fn columns(&self) -> Vec<String> {
        self.job.columns.iter().map(|c| c.name.quoted()).collect()
    }

    /// A staged value as the target column's: staged text becomes a
    /// document for a [`Super`](ColumnType::Super) column (`JSON_PARSE` on
    /// Redshift, a cast to `jsonb` on PostgreSQL), anything else is as
    /// staged.
    fn value_of(&self, expr: &str, ty: ColumnType) -> String {
        match (ty, self.dialect) {
            (ColumnType::Super, Dialect::Redshift) => format!("JSON_PARSE({expr})"),
            (ColumnType::Super, Dialect::Postgres) => format!("CAST({expr} AS JSONB)"),
            _ => expr.to_string(),
        }
    }

    /// `CREATE TEMP TABLE` for the staging rows.
    pub fn create_stage(&self) -> String {
        let mut cols: Vec<String> = self
            .job
            .columns
            .iter()
            .map(|c| format!("{} {}", c.name.quoted(), c.column_type.sql()))
            .collect();
        cols.push("\"ferry_file\" VARCHAR(1024)".into());
        cols.push("\"ferry_line\" BIGINT".into());
        format!(
            "CREATE TEMP TABLE {} ({})",
            self.stage.quoted(),
            cols.join(", ")
        )
    }

    /// PostgreSQL `COPY … FROM STDIN` of the staged CSV into the stage.
    pub fn copy_stage_from_stdin(&self) -> String {
        let mut cols = self.columns();
        cols.extend(STAGE_EXTRA.iter().map(|c| format!("\"{c}\"")));
        format!(
            "COPY {} ({}) FROM STDIN WITH (FORMAT csv, NULL '\\N')",
            self.stage.quoted(),
            cols.join(", ")
        )
    }

    /// Redshift `COPY` of the staged parts into the stage, from the
    /// manifest at `manifest` (a checked string literal) with `role` (a
    /// checked literal or `default`). The choices are explicit: CSV with
    /// `\N` for NULL and no EMPTYASNULL (so `""` stays an empty string),
    /// timestamps in any ISO form, no compression analysis or statistics
    /// update on the temp table.
    ///
    /// Parquet parts (`stage_format = "parquet"`) are read by position, so
    /// the statement names no columns: the stage's columns are the staged
    /// ones, in order ([`create_stage`](Self::create_stage)), and the types
    /// already match.
    pub fn copy_stage_from_s3(&self, manifest: &str, role: &str) -> String {
        if self.job.stage_format == crate::config::StageFormat::Parquet {
            return format!(
                "COPY {} FROM {manifest} IAM_ROLE {role} MANIFEST FORMAT AS PARQUET",
                self.stage.quoted()
            );
        }
        let mut cols = self.columns();
        cols.extend(STAGE_EXTRA.iter().map(|c| format!("\"{c}\"")));
        format!(
            "COPY {} ({}) FROM {manifest} IAM_ROLE {role} MANIFEST GZIP CSV NULL AS '\\N' TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF",
            self.stage.quoted(),
            cols.join(", ")
        )
    }

    /// Whether an append can COPY straight into the target (PostgreSQL):
    /// append mode, no dimensions to merge from a stage, and a target that
    /// keeps `ferry_file` and `ferry_line` (the staged CSV's last fields).
    pub fn direct_append(&self) -> bool {
        self.job.mode == LoadMode::Append
            && self.job.dimensions.is_empty()
            && STAGE_EXTRA.iter().all(|c| self.target_meta.contains(c))
    }

    /// PostgreSQL `COPY … FROM STDIN` of the staged CSV straight into the
    /// target, each line completed by [`direct_suffix`](Self::direct_suffix);
    /// the metadata columns in `defaulted` are left to the target's own
    /// defaults.
    pub fn copy_target_from_stdin(&self, defaulted: &[&str]) -> String {
        let mut cols = self.columns();
        cols.extend(STAGE_EXTRA.iter().map(|c| format!("\"{c}\"")));
        for m in ["ferry_load_id", "ferry_loaded_at"] {
            if self.target_meta.contains(&m) && !defaulted.contains(&m) {
                cols.push(format!("\"{m}\""));
            }
        }
        format!(
            "COPY {} ({}) FROM STDIN WITH (FORMAT csv, NULL '\\N')",
            self.table(&self.job.target),
            cols.join(", ")
        )
    }

    /// The fields appended to each staged line for a direct append: the
    /// load id and time, where the target has those columns and does not
    /// fill them itself (`defaulted`); `None` when nothing is appended.
    pub fn direct_suffix(
        &self,
        load_id: &str,
        loaded_at: &str,
        defaulted: &[&str],
    ) -> Option<Vec<u8>> {
        let mut out = String::new();
        for (m, value) in [("ferry_load_id", load_id), ("ferry_loaded_at", loaded_at)] {
            if self.target_meta.contains(&m) && !defaulted.contains(&m) {
                out.push(',');
                out.push_str(value);
            }
        }
        if out.is_empty() {
            return None;
        }
        out.push('\n');
        Some(out.into_bytes())
    }

    /// The stage's rows, one per key (the latest), or all rows in append
    /// mode without a key.
    fn latest_rows(&self, cols: &[String]) -> String {
        if self.job.key.is_empty() {
            return format!("SELECT {} FROM {}", cols.join(", "), self.stage.quoted());
        }
        format!(
            "SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {order}) AS ferry_rn FROM {stage}) ferry_latest WHERE ferry_rn = 1",
            cols = cols.join(", "),
            keys = self
                .job
                .key
                .iter()
                .map(Ident::quoted)
                .collect::<Vec<_>>()
                .join(", "),
            order = self.order(),
            stage = self.stage.quoted(),
        )
    }

    fn order(&self) -> String {
        let mut order = Vec::new();
        if let Some(o) = &self.job.order_by {
            order.push(format!("{} DESC NULLS LAST", o.quoted()));
        }
        order.push("\"ferry_file\" DESC".into());
        order.push("\"ferry_line\" DESC".into());
        order.join(", ")
    }

    /// In merge mode with an `order_by`: drop staged rows that are older
    /// than the target's row with the same key, so a file that arrives
    /// late never replaces newer data. A tie goes to the incoming row; a
    /// NULL on either side never drops it.
    pub fn drop_stale(&self) -> Option<String> {
        let order = self.job.order_by.as_ref()?;
        if self.job.mode != LoadMode::Merge || self.job.key.is_empty() {
            return None;
        }
        let t = self.table(&self.job.target);
        let s = self.stage.quoted();
        let mut on: Vec<String> = self
            .job
            .key
            .iter()
            .map(|k| format!("{s}.{k} = {t}.{k}", k = k.quoted()))
            .collect();
        on.push(format!("{t}.{o} > {s}.{o}", o = order.quoted()));
        Some(format!(
            "DELETE FROM {s} USING {t} WHERE {}",
            on.join(" AND ")
        ))
    }

    /// In merge mode: delete target rows whose key is in the stage.
    pub fn delete_replaced(&self) -> Option<String> {
        if self.job.mode != LoadMode::Merge {
            return None;
        }
        let t = self.table(&self.job.target);
        let on: Vec<String> = self
            .job
            .key
            .iter()
            .map(|k| format!("{t}.{k} = {s}.{k}", k = k.quoted(), s = self.stage.quoted()))
            .collect();
        Some(format!(
            "DELETE FROM {t} USING {} WHERE {}",
            self.stage.quoted(),
            on.join(" AND ")
        ))
    }

    /// Inserts the stage's rows into the fact table; `load_id` is
    /// parameter 1.
    pub fn insert_fact(&self) -> String {
        let mut target_cols = self.columns();
        let mut select_cols: Vec<String> = self
            .job
            .columns
            .iter()
            .map(|c| self.value_of(&c.name.quoted(), c.column_type))
            .collect();
        for m in &self.target_meta {
            target_cols.push(format!("\"{m}\""));
            select_cols.push(match *m {
                "ferry_load_id" => {
                    format!("CAST({} AS VARCHAR(64))", self.dialect.param(1, "load_id"))
                }
                "ferry_loaded_at" => self.dialect.transaction_time().to_string(),
                other => format!("\"{other}\""),
            });
        }
        let mut inner = self.columns();
        inner.extend(STAGE_EXTRA.iter().map(|c| format!("\"{c}\"")));
        let source = if self.job.mode == LoadMode::Merge {
            self.latest_rows(&inner)
        } else {
            format!("SELECT {} FROM {}", inner.join(", "), self.stage.quoted())
        };
        format!(
            "INSERT INTO {} ({}) SELECT {} FROM ({source}) ferry_rows",
            self.table(&self.job.target),
            target_cols.join(", "),
            select_cols.join(", "),
        )
    }

    /// SCD1 upkeep of one dimension: update attributes of existing keys
    /// from the latest staged row, then insert missing keys.
    pub fn merge_dimension(&self, d: &Dimension) -> Vec<String> {
        let t = self.table(&d.table);
        let key = d.key.quoted();
        let mut from_cols = vec![key.clone()];
        from_cols.extend(d.columns.iter().map(|(_, f)| f.quoted()));
        let mut inner = from_cols.clone();
        inner.extend(STAGE_EXTRA.iter().map(|c| format!("\"{c}\"")));
        if let Some(o) = &self.job.order_by
            && !inner.contains(&o.quoted())
        {
            inner.push(o.quoted());
        }
        // The latest row per key, and (ferry_at) when it happened.
        let mut out_cols = from_cols.clone();
        if let Some(o) = &self.job.order_by {
            out_cols.push(format!("{} AS ferry_at", o.quoted()));
        }
        let latest = format!(
            "SELECT {cols} FROM (SELECT {inner}, ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {order}) AS ferry_rn FROM {stage} WHERE {key} IS NOT NULL) ferry_d WHERE ferry_rn = 1",
            cols = out_cols.join(", "),
            inner = inner.join(", "),
            order = self.order(),
            stage = self.stage.quoted(),
        );
        if let Some(h) = &d.scd2 {
            return self.merge_scd2(d, h, &latest);
        }
        let mut out = Vec::new();
        if !d.columns.is_empty() {
            let sets: Vec<String> = d
                .columns
                .iter()
                .map(|(name, from)| format!("{} = ferry_src.{}", name.quoted(), from.quoted()))
                .collect();
            // A dimension column filled from the order column keeps the
            // newest: an older row arriving late does not overwrite it.
            let newer = self
                .job
                .order_by
                .as_ref()
                .and_then(|o| d.columns.iter().find(|(_, from)| from == o))
                .map(|(name, from)| {
                    format!(
                        " AND ({t}.{n} IS NULL OR ferry_src.{f} IS NULL OR ferry_src.{f} >= {t}.{n})",
                        n = name.quoted(),
                        f = from.quoted()
                    )
                })
                .unwrap_or_default();
            out.push(format!(
                "UPDATE {t} SET {} FROM ({latest}) ferry_src WHERE {t}.{key} = ferry_src.{key}{newer}",
                sets.join(", ")
            ));
        }
        let mut dim_cols = vec![key.clone()];
        dim_cols.extend(d.columns.iter().map(|(n, _)| n.quoted()));
        let src_cols: Vec<String> = from_cols.iter().map(|c| format!("ferry_src.{c}")).collect();
        out.push(format!(
            "INSERT INTO {t} ({}) SELECT {} FROM ({latest}) ferry_src WHERE NOT EXISTS (SELECT 1 FROM {t} ferry_dim WHERE ferry_dim.{key} = ferry_src.{key})",
            dim_cols.join(", "),
            src_cols.join(", "),
        ));
        out
    }

    /// SCD2 upkeep: a key whose attributes changed gets its current row
    /// closed (`valid_to`, not current) and a new current row; a new key
    /// gets its first row. The change time is the latest row's `order_by`
    /// value (the transaction's time without one). A row older than the
    /// current version's `valid_from` changes nothing: history is not
    /// rewritten by a late file.
    fn merge_scd2(&self, d: &Dimension, h: &Scd2, latest: &str) -> Vec<String> {
        let t = self.table(&d.table);
        let key = d.key.quoted();
        let (vf, vt, cur) = (
            h.valid_from.quoted(),
            h.valid_to.quoted(),
            h.is_current.quoted(),
        );
        let now = self.dialect.transaction_time();
        let at = match &self.job.order_by {
            Some(_) => format!("COALESCE(ferry_src.ferry_at, {now})"),
            None => now.to_string(),
        };
        let changed: Vec<String> = d
            .columns
            .iter()
            .map(|(name, from)| {
                let (dc, sc) = (
                    format!("{t}.{}", name.quoted()),
                    format!("ferry_src.{}", from.quoted()),
                );
                format!("NOT ({dc} = {sc} OR ({dc} IS NULL AND {sc} IS NULL))")
            })
            .collect();
        let close = format!(
            "UPDATE {t} SET {vt} = {at}, {cur} = FALSE FROM ({latest}) ferry_src \
             WHERE {t}.{key} = ferry_src.{key} AND {t}.{cur} = TRUE AND ({changed}) \
             AND ({t}.{vf} IS NULL OR {at} >= {t}.{vf})",
            changed = changed.join(" OR "),
        );
        let mut dim_cols = vec![key.clone()];
        dim_cols.extend(d.columns.iter().map(|(n, _)| n.quoted()));
        dim_cols.extend([vf.clone(), vt.clone(), cur.clone()]);
        let mut src_cols = vec![format!("ferry_src.{key}")];
        src_cols.extend(
            d.columns
                .iter()
                .map(|(_, f)| format!("ferry_src.{}", f.quoted())),
        );
        src_cols.extend([at.clone(), "NULL".into(), "TRUE".into()]);
        let open = format!(
            "INSERT INTO {t} ({}) SELECT {} FROM ({latest}) ferry_src \
             WHERE NOT EXISTS (SELECT 1 FROM {t} ferry_dim WHERE ferry_dim.{key} = ferry_src.{key} AND ferry_dim.{cur} = TRUE)",
            dim_cols.join(", "),
            src_cols.join(", "),
        );
        vec![close, open]
    }

    /// Drops the stage.
    pub fn drop_stage(&self) -> String {
        format!("DROP TABLE {}", self.stage.quoted())
    }
}

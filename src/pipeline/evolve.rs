//! Schema evolution and drift records: each job's current mapping (the
//! configured one plus the columns `evolve` added and widened), the DDL
//! that changes it, and the `ferry_schema_changes` rows of each file.
//!
//! The order keeps a crash harmless. A file whose drift needs DDL is
//! normalized once to learn it; then each ALTER runs on its own (outside
//! any transaction: Redshift runs `ALTER COLUMN … TYPE` in none, and
//! `ALTER TABLE` locks the table until its transaction ends), is recorded
//! as `added_column`/`widened_column`, and the file is normalized again
//! with the new mapping before its load. The ALTERs are idempotent — each
//! first reads the catalog, so a column that exists is not added again and
//! a VARCHAR at least as wide is not altered — and the file is not in the
//! ledger until its load commits. A crash after an ALTER and before the
//! commit leaves a column and no rows; the retry finds the column, loads
//! the file and records nothing twice. At start a job reads its evolved
//! columns back from `ferry_schema_changes`.

use super::Runtime;
use crate::config::{Job, Policy};
use crate::error::{Error, Result};
use crate::ledger::{FileVersion, SchemaChange, record_changes};
use crate::normalize::drift::{Drift, MisfitAction};
use crate::normalize::infer;
use crate::schema::{Column, ColumnType};
use crate::sql::Ident;
use crate::warehouse::sql::{add_column, target_catalog_report, widen_column};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Each job's current mapping.
pub struct Schemas {
    current: Mutex<HashMap<String, Arc<Job>>>,
    /// Held while a job's target is altered.
    evolving: tokio::sync::Mutex<()>,
    /// Per job without a contract: the drift last recorded, so a job that
    /// maps a subset of stable columns records it once, not every file.
    noted: Mutex<HashMap<String, String>>,
}

/// What a file's drift asks of its job's target under `evolve`.
#[derive(Debug, Default, PartialEq)]
pub struct Evolution {
    /// New columns: field, column name, type.
    pub add: Vec<(String, Ident, ColumnType)>,
    /// VARCHAR columns to widen: column, new length.
    pub widen: Vec<(Ident, u32)>,
}

impl Evolution {
    /// Whether nothing is to change.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.widen.is_empty()
    }
}

impl Schemas {
    /// The configured mappings of `jobs`, with what `evolve` recorded for
    /// them in `ferry_schema_changes`.
    pub async fn load(
        rt_jobs: &[Arc<Job>],
        store: &dyn crate::warehouse::Warehouse,
    ) -> Result<Schemas> {
        let mut current = HashMap::new();
        for job in rt_jobs {
            let job = if job.contract.evolves() {
                let rows = store
                    .read_ledger(&store.ledger().evolutions_report(&job.name))
                    .await?;
                let mut evolved = (**job).clone();
                for row in rows {
                    let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
                    let (change, field, column, ty) = (text(0), text(1), text(2), text(3));
                    let (Ok(column), Ok(ty)) = (Ident::parse(&column), ColumnType::parse(&ty))
                    else {
                        continue;
                    };
                    apply(&mut evolved, &change, &field, column, ty);
                }
                if evolved.columns.len() != job.columns.len() {
                    tracing::info!(job = %job.name, added = evolved.columns.len() - job.columns.len(), "columns added by contract.columns = \"evolve\" earlier are mapped");
                }
                Arc::new(evolved)
            } else {
                job.clone()
            };
            current.insert(job.name.clone(), job);
        }
        Ok(Schemas {
            current: Mutex::new(current),
            evolving: tokio::sync::Mutex::new(()),
            noted: Mutex::new(HashMap::new()),
        })
    }

    /// `job`'s mapping as it stands.
    pub fn current(&self, job: &Arc<Job>) -> Arc<Job> {
        self.current
            .lock()
            .expect("schemas lock")
            .get(&job.name)
            .cloned()
            .unwrap_or_else(|| job.clone())
    }
}

/// Adds or widens one column of `job` as a recorded change says.
fn apply(job: &mut Job, change: &str, field: &str, column: Ident, ty: ColumnType) {
    match change {
        "added_column" if !job.columns.iter().any(|c| c.name == column) => {
            let at = job
                .columns
                .iter()
                .position(|c| matches!(c.source, crate::schema::ColumnSource::Captured))
                .unwrap_or(job.columns.len());
            job.columns.insert(at, Column::evolved(column, field, ty));
        }
        "widened_column" => {
            if let Some(c) = job.columns.iter_mut().find(|c| c.name == column)
                && let (ColumnType::Varchar(old), ColumnType::Varchar(new)) = (c.column_type, ty)
                && new > old
            {
                c.column_type = ty;
            }
        }
        _ => {}
    }
}

/// What `drift` asks of `job` (its current mapping) under `evolve`.
pub fn plan(job: &Job, drift: &Drift) -> Evolution {
    let mut out = Evolution::default();
    if job.contract.columns == Some(Policy::Evolve) {
        for f in &drift.new_fields {
            let Some(guess) = &f.guess else { continue };
            let Some(name) = column_for(job, &f.name, &out) else {
                continue;
            };
            out.add.push((f.name.clone(), name, guess.column_type()));
        }
    }
    if job.contract.types == Some(Policy::Evolve) {
        for m in drift
            .misfits
            .iter()
            .filter(|m| m.action == MisfitAction::Widen)
        {
            if let (ColumnType::Varchar(old), Ok(col)) = (m.column_type, Ident::parse(&m.column)) {
                out.widen.push((col, widened(old, m.widest)));
            }
        }
    }
    out
}

/// The next VARCHAR length for values of up to `widest` bytes: at least
/// twice the old one, a power of two, at most 65535.
fn widened(old: u32, widest: usize) -> u32 {
    let need = (widest as u64).max(u64::from(old) * 2);
    need.next_power_of_two().min(65535) as u32
}

/// A free column name for `field`: its identifier form, with `_2`, `_3`
/// … when the job (or this plan) has the name; `None` when the field makes
/// no identifier.
fn column_for(job: &Job, field: &str, planned: &Evolution) -> Option<Ident> {
    let base = infer::ident(field);
    let taken = |n: &str| {
        job.columns.iter().any(|c| c.name.as_str() == n)
            || planned.add.iter().any(|(_, c, _)| c.as_str() == n)
            || n.starts_with("ferry_")
    };
    (1..100).find_map(|i| {
        let name = if i == 1 {
            base.clone()
        } else {
            format!("{base}_{i}")
        };
        (!taken(&name)).then(|| Ident::parse(&name).ok()).flatten()
    })
}

/// Alters `job`'s target for `evolution` (found in `version`), records
/// each change, and returns the job's new mapping. Serialized across the
/// runtime; a change another file already made is not made again.
pub async fn evolve(
    rt: &Runtime,
    job: &Arc<Job>,
    version: &FileVersion,
    drift: &Drift,
) -> Result<Arc<Job>> {
    let _one_at_a_time = rt.schemas.evolving.lock().await;
    let now = rt.schemas.current(job);
    let evolution = plan(&now, drift);
    if evolution.is_empty() {
        return Ok(now);
    }
    let schema = rt.config.warehouse.schema();
    let dialect = rt.warehouse.ledger().dialect();
    let catalog: HashMap<String, Option<u32>> = rt
        .warehouse
        .read_ledger(&target_catalog_report(dialect, schema, &job.target))
        .await?
        .into_iter()
        .filter_map(|r| {
            let name = r.first().cloned().flatten()?;
            let len = r.get(1).cloned().flatten().and_then(|l| l.parse().ok());
            Some((name, len))
        })
        .collect();
    let mut next = (*now).clone();
    let mut records = Vec::new();
    for (field, column, ty) in &evolution.add {
        let existed = catalog.contains_key(column.as_str());
        if !existed {
            rt.warehouse
                .alter(&add_column(dialect, schema, &job.target, column, *ty))
                .await
                .map_err(|e| {
                    e.wrap(format!(
                        "job {}: cannot add column {column} for field {field:?} to {}",
                        job.name, job.target
                    ))
                })?;
        }
        tracing::info!(job = %job.name, path = %version.path, field, column = %column, column_type = %ty.sql_in(dialect), existed, "contract.columns = \"evolve\": column added");
        records.push(SchemaChange {
            change: "added_column",
            field: field.clone(),
            column: Some(column.to_string()),
            column_type: Some(ty.sql()),
            detail: if existed {
                format!("the target had a column {column} already; it is mapped")
            } else {
                format!(
                    "ALTER TABLE {} ADD COLUMN {column} {}",
                    job.target,
                    ty.sql_in(dialect)
                )
            },
            action: "added column".into(),
        });
        apply(&mut next, "added_column", field, column.clone(), *ty);
    }
    for (column, length) in &evolution.widen {
        let has = catalog.get(column.as_str()).copied().flatten().unwrap_or(0);
        if has < *length {
            rt.warehouse
                .alter(&widen_column(schema, &job.target, column, *length))
                .await
                .map_err(|e| {
                    e.wrap(format!(
                        "job {}: cannot widen column {column} of {} to VARCHAR({length})",
                        job.name, job.target
                    ))
                })?;
        }
        tracing::info!(job = %job.name, path = %version.path, column = %column, length, "contract.types = \"evolve\": VARCHAR widened");
        records.push(SchemaChange {
            change: "widened_column",
            field: column.to_string(),
            column: Some(column.to_string()),
            column_type: Some(ColumnType::Varchar(*length).sql()),
            detail: format!(
                "ALTER TABLE {} ALTER COLUMN {column} TYPE VARCHAR({length})",
                job.target
            ),
            action: "widened column".into(),
        });
        apply(
            &mut next,
            "widened_column",
            column.as_str(),
            column.clone(),
            ColumnType::Varchar(*length),
        );
    }
    record_changes(&*rt.warehouse, version, &records).await?;
    for r in &records {
        crate::telemetry::schema_change(&job.name, r.change, "evolve");
    }
    let next = Arc::new(next);
    rt.schemas
        .current
        .lock()
        .expect("schemas lock")
        .insert(job.name.clone(), next.clone());
    Ok(next)
}

/// The `ferry_schema_changes` rows of a file's drift, saying what the
/// contract did (the columns `evolve` adds are recorded as they are made).
pub fn observed(job: &Job, drift: &Drift, evolved: bool) -> Vec<SchemaChange> {
    let mut out = Vec::new();
    let contract = &job.contract;
    if !drift.new_fields.is_empty() {
        let names: Vec<&str> = drift.new_fields.iter().map(|f| f.name.as_str()).collect();
        let counts: Vec<String> = drift
            .new_fields
            .iter()
            .map(|f| {
                format!(
                    "{} in {} records from line {}",
                    f.name, f.records, f.first_line
                )
            })
            .collect();
        let more = match drift.more_new_fields {
            0 => String::new(),
            n => format!("; and {n} more fields"),
        };
        out.push(SchemaChange {
            change: "new_fields",
            field: names.join(", "),
            column: contract.capture_column.as_ref().map(|c| c.to_string()),
            column_type: None,
            detail: format!("{}{more}", counts.join("; ")),
            action: match contract.columns {
                None | Some(Policy::DiscardValue) => "left out".into(),
                Some(Policy::Evolve) if evolved => "added columns".into(),
                Some(Policy::Evolve) => "mapped to columns added earlier".into(),
                Some(Policy::Freeze) => "failed the file".into(),
                Some(Policy::DiscardRow) => "rejected the records that have them".into(),
                Some(Policy::Capture) => format!("captured in {} records", drift.captured),
            },
        });
    }
    if !drift.missing.is_empty() {
        let names: Vec<&str> = drift.missing.iter().map(|m| m.field.as_str()).collect();
        let detail: Vec<String> = drift
            .missing
            .iter()
            .map(|m| format!("{} (column {})", m.field, m.column))
            .collect();
        out.push(SchemaChange {
            change: "missing_fields",
            field: names.join(", "),
            column: None,
            column_type: None,
            detail: detail.join("; "),
            action: match contract.columns {
                Some(Policy::Freeze) => "failed the file".into(),
                _ => "loaded as NULL or the column's default".into(),
            },
        });
    }
    for m in &drift.misfits {
        out.push(SchemaChange {
            change: "misfit",
            field: m.column.clone(),
            column: Some(m.column.clone()),
            column_type: Some(m.column_type.sql()),
            detail: format!(
                "{} values did not fit {}, the first on line {}: {}; the longest is {} bytes",
                m.count,
                m.column_type.sql(),
                m.first_line,
                m.reason,
                m.widest
            ),
            action: match m.action {
                MisfitAction::Rejected => "rejected the rows".into(),
                MisfitAction::Nulled => format!("loaded {} values as NULL", m.count),
                MisfitAction::Widen => "widened the column".into(),
            },
        });
    }
    out
}

/// Records a file's drift: always under a contract; without one, only
/// when it differs from what the job recorded last (a job that maps a
/// subset of a stable header records that once per process).
pub async fn record(rt: &Runtime, job: &Job, version: &FileVersion, drift: &Drift, evolved: bool) {
    if drift.is_empty() {
        return;
    }
    let rows = observed(job, drift, evolved);
    if job.contract == Default::default() {
        let summary = drift.summary();
        let mut noted = rt.schemas.noted.lock().expect("noted lock");
        if noted.get(&job.name) == Some(&summary) {
            return;
        }
        noted.insert(job.name.clone(), summary);
    }
    for r in &rows {
        let policy = match r.change {
            "misfit" => job.contract.types,
            _ => job.contract.columns,
        };
        crate::telemetry::schema_change(&job.name, r.change, policy.map_or("none", Policy::name));
    }
    tracing::info!(job = %job.name, path = %version.path, drift = %drift.summary(), "the file drifted from the mapping");
    let actions: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {}: {}", r.change, r.field, r.action))
        .collect();
    crate::alerts::raise(crate::alerts::Event::new(
        crate::config::AlertKind::SchemaChange,
        &job.name,
        &version.path,
        &format!(
            "{} ({}); see `ferry changes --job {}`",
            drift.summary(),
            actions.join("; "),
            job.name
        ),
    ));
    if let Err(e) = record_changes(&*rt.warehouse, version, &rows).await {
        // A record is worth a warning, not the file: its rows load.
        tracing::warn!(job = %job.name, path = %version.path, error = %e.chain(), "cannot record the file's schema changes in ferry_schema_changes");
    }
}

/// The error of a file whose drift `evolve` could not absorb in two
/// passes (the file changed between them, or a bug).
pub fn unsettled(version: &FileVersion, drift: &Drift) -> Error {
    Error::transient(format!(
        "{}: the mapping was evolved, yet the file still drifts ({}); it is read again on the next pass",
        version.path,
        drift.summary()
    ))
    .later()
}

//! The operations commands, for any warehouse (what Redshift's auto-copy
//! job commands and system views give, read from ferry's own ledger):
//! `ferry jobs` and `jobs pause|resume`, `files`, `errors`, `retry` and
//! `reset`. Each reads or changes the ledger through the warehouse and
//! returns a [`Table`] (aligned text for people, JSON with `--json`) or a
//! sentence saying what changed.
//!
//! Writes take the ledger lock that loads take, so an operator's change
//! never interleaves with a load of the same job.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ledger::LedgerSql;
use crate::ledger::reports::{Filter, JOB_COLUMNS};
use crate::warehouse::{LedgerRows, Warehouse};

/// Rows with named columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Column names.
    pub columns: Vec<&'static str>,
    /// Rows: text or NULL per column.
    pub rows: LedgerRows,
}

/// Widest a text cell is printed (JSON keeps everything).
const CELL_MAX: usize = 80;

impl Table {
    /// Aligned columns under a header; NULL prints as `-`, line breaks
    /// as `\n`, and a cell longer than 80 characters is cut with `…`.
    pub fn text(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|c| cell(c.as_deref())).collect())
            .collect();
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |row: Vec<String>| {
            let last = row.len().saturating_sub(1);
            let mut out = String::new();
            for (i, (c, w)) in row.into_iter().zip(&widths).enumerate() {
                if i == last {
                    out.push_str(&c);
                } else {
                    let pad = w - c.chars().count();
                    out.push_str(&c);
                    out.push_str(&" ".repeat(pad + 2));
                }
            }
            out.trim_end().to_string()
        };
        let mut out = line(self.columns.iter().map(|c| c.to_uppercase()).collect());
        out.push('\n');
        for row in cells {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }

    /// A JSON array with one object per row, keyed by column.
    pub fn json(&self) -> String {
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = self
            .rows
            .iter()
            .map(|r| {
                self.columns
                    .iter()
                    .zip(r)
                    .map(|(k, v)| {
                        let v = v
                            .clone()
                            .map_or(serde_json::Value::Null, serde_json::Value::String);
                        (k.to_string(), v)
                    })
                    .collect()
            })
            .collect();
        let mut out = serde_json::to_string_pretty(&rows).expect("strings serialize");
        out.push('\n');
        out
    }
}

fn cell(value: Option<&str>) -> String {
    let Some(v) = value else {
        return "-".to_string();
    };
    // One cell, one line: line breaks shown as \n, other control
    // characters (an ANSI escape in a file name) as \u{..}.
    let flat: String = v
        .chars()
        .map(|c| match c {
            '\r' => "\\r".to_string(),
            '\n' => "\\n".to_string(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect();
    if flat.chars().count() <= CELL_MAX {
        return flat;
    }
    let cut: String = flat.chars().take(CELL_MAX - 1).collect();
    format!("{cut}…")
}

/// The ledger's SQL for the configured warehouse.
fn ledger(cfg: &Config) -> LedgerSql {
    LedgerSql::with_dialect(cfg.warehouse.schema(), cfg.warehouse.dialect())
}

/// A configured job's name, or a configuration error listing them.
fn configured<'c>(cfg: &'c Config, name: &str) -> Result<&'c str> {
    match cfg.jobs.iter().find(|j| j.name == name) {
        Some(j) => Ok(&j.name),
        None => {
            let known: Vec<&str> = cfg.jobs.iter().map(|j| j.name.as_str()).collect();
            Err(Error::config(format!(
                "no job named {name:?} in the configuration (jobs: {})",
                known.join(", ")
            )))
        }
    }
}

/// Every job: `active` or `paused` in the ledger (`disabled` when the
/// configuration says `enabled = false`, `not configured` when only the
/// ledger knows it), source, path, target, files loaded and failed, rows
/// loaded, last load.
pub async fn jobs(cfg: &Config, wh: &dyn Warehouse) -> Result<Table> {
    crate::ledger::sync_jobs(wh, &cfg.jobs).await?;
    let mut rows = wh.read_ledger(&ledger(cfg).jobs_report()).await?;
    // With a work queue: the replica that lists each job now.
    let leases = crate::ledger::leases(wh).await?;
    for row in &mut rows {
        let lister = leases
            .iter()
            .find(|l| !l.expired && Some(l.job.as_str()) == row[0].as_deref())
            .map(|l| l.owner.clone());
        row.push(lister);
        let name = row[0].clone().unwrap_or_default();
        match cfg.jobs.iter().find(|j| j.name == name) {
            Some(j) if !j.enabled => row[1] = Some("disabled".into()),
            Some(_) => {}
            None => row[1] = Some("not configured".into()),
        }
        // A job with no files yet: counts of nothing are 0.
        for c in &mut row[5..8] {
            c.get_or_insert_with(|| "0".into());
        }
    }
    let mut columns = JOB_COLUMNS.to_vec();
    columns.push("lister");
    Ok(Table { columns, rows })
}

/// Pauses (`paused`) or resumes a job; persisted in `ferry_jobs`, so every
/// replica and every restart sees it.
pub async fn set_paused(
    cfg: &Config,
    wh: &dyn Warehouse,
    name: &str,
    paused: bool,
) -> Result<String> {
    let name = configured(cfg, name)?;
    crate::ledger::sync_jobs(wh, &cfg.jobs).await?;
    wh.write_ledger(&ledger(cfg).set_auto(name, !paused))
        .await?;
    Ok(if paused {
        format!(
            "job {name} paused: the daemon does not poll it until `ferry jobs resume {name}` (`ferry once --job {name}` still runs it)"
        )
    } else {
        format!("job {name} resumed: the daemon polls it again from its next pass")
    })
}

/// File versions in the ledger, newest first (`filter.detail`: a state).
pub async fn files(cfg: &Config, wh: &dyn Warehouse, filter: &Filter) -> Result<Table> {
    let report = ledger(cfg).files_report(filter);
    Ok(Table {
        columns: report.columns.to_vec(),
        rows: wh.read_ledger(&report).await?,
    })
}

/// Rejected records and COPY errors, newest first (`filter.detail`: a
/// file's path).
pub async fn errors(cfg: &Config, wh: &dyn Warehouse, filter: &Filter) -> Result<Table> {
    let report = ledger(cfg).errors_report(filter);
    Ok(Table {
        columns: report.columns.to_vec(),
        rows: wh.read_ledger(&report).await?,
    })
}

/// Schema drift and evolved columns, newest first.
pub async fn changes(
    cfg: &Config,
    wh: &dyn Warehouse,
    job: Option<&str>,
    limit: u32,
) -> Result<Table> {
    let report = ledger(cfg).changes_report(job, limit as usize);
    Ok(Table {
        columns: report.columns.to_vec(),
        rows: wh.read_ledger(&report).await?,
    })
}

/// Forgets the failures of a job (or one file of it) so the next pass
/// loads those files again, if they are still on the source.
pub async fn retry(
    cfg: &Config,
    wh: &dyn Warehouse,
    job: &str,
    path: Option<&str>,
) -> Result<String> {
    let job = configured(cfg, job)?;
    let changed = wh
        .write_ledger(&ledger(cfg).retry_failed(job, path))
        .await?;
    let files = changed.get(1).copied().unwrap_or(0);
    Ok(match (files, path) {
        (0, Some(p)) => format!("job {job} has no failed file {p}; nothing to retry"),
        (0, None) => format!("job {job} has no failed files; nothing to retry"),
        (n, _) => format!(
            "{n} failed file version(s) of job {job} forgotten; the next pass loads them again if they are still on the source"
        ),
    })
}

/// Forgets everything the ledger knows of a job. The rows it loaded stay
/// in the target; the next pass loads every file still on the source
/// again (replacing rows by key in merge mode, adding them again in append
/// mode).
pub async fn reset(cfg: &Config, wh: &dyn Warehouse, job: &str) -> Result<String> {
    let known = cfg.jobs.iter().any(|j| j.name == job);
    let changed = wh.write_ledger(&ledger(cfg).reset_job(job)).await?;
    let (errors, files, loads) = (
        changed.first().copied().unwrap_or(0),
        changed.get(1).copied().unwrap_or(0),
        changed.get(2).copied().unwrap_or(0),
    );
    let mut out = format!(
        "job {job} reset: forgot {files} file version(s), {loads} load(s) and {errors} error row(s); rows already in the target stay"
    );
    if !known {
        out.push_str(" (the job is not in the configuration)");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_tables_align_and_cut_long_cells() {
        let t = Table {
            columns: vec!["job", "error"],
            rows: vec![
                vec![Some("a".into()), None],
                vec![Some("longer-name".into()), Some("x\ny".repeat(40))],
            ],
        };
        let text = t.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "JOB          ERROR");
        assert_eq!(lines[1], "a            -");
        assert!(lines[2].starts_with("longer-name  x\\ny"), "{text}");
        assert!(lines[2].ends_with('…'), "{text}");
        let json: serde_json::Value = serde_json::from_str(&t.json()).unwrap();
        assert_eq!(json[0]["error"], serde_json::Value::Null);
        assert_eq!(json[1]["error"].as_str().unwrap().len(), 120);
    }

    /// Regression: a file name with an ANSI escape went raw into the
    /// `ferry files` table.
    #[test]
    fn control_characters_in_cells_are_shown_escaped() {
        assert_eq!(
            cell(Some("/in/\u{1b}[2Ja\r\n.csv")),
            "/in/\\u{1b}[2Ja\\r\\n.csv"
        );
    }
}

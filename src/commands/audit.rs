//! `ferry audit`: proves nothing is missing by reconciling three ways, per
//! job:
//!
//! 1. **source ↔ ledger** — the source listed as a pass would: a settled
//!    file the ledger does not have loaded is *off* (`not_loaded`,
//!    `failed`, `changed`); one not settled yet, excluded by `exclude`, or
//!    skipped on purpose is a *note*;
//! 2. **ledger ↔ target** — in append mode, where the target keeps
//!    `ferry_load_id`: each load's `rows_loaded` against the rows the
//!    target holds with its load id (`rows_mismatch`); merge mode replaces
//!    rows by key, so only a note says it is not counted;
//! 3. **staging bucket ↔ ledger** — staged parts, raw copies and rejects
//!    objects whose file version the ledger has no row for
//!    (`orphan_object`: an attempt that never reached the ledger, safe to
//!    delete once no pass is under way).
//!
//! `--since` limits each side to files modified, loads started and
//! objects written since then. Nothing is changed.

use super::ops::Table;
use crate::config::{Job, LoadMode};
use crate::error::Result;
use crate::ledger::{FileState, FileVersion, lookup_many};
use crate::pipeline::Runtime;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};

/// One thing the audit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The job.
    pub job: String,
    /// `not_loaded`, `failed`, `changed`, `rows_mismatch`,
    /// `orphan_object`; notes: `not_settled`, `excluded`, `skipped`,
    /// `not_counted`.
    pub kind: &'static str,
    /// A path, a load id, an object key.
    pub subject: String,
    /// What is off and what to do.
    pub detail: String,
    /// Something is missing or wrong (a note otherwise).
    pub off: bool,
}

impl Finding {
    fn new(job: &Job, kind: &'static str, subject: &str, detail: String, off: bool) -> Finding {
        Finding {
            job: job.name.clone(),
            kind,
            subject: subject.to_string(),
            detail,
            off,
        }
    }
}

/// Audits `only` (or every configured job) since `since`.
pub async fn audit(
    rt: &Runtime,
    only: Option<&str>,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<Finding>> {
    let since = since.unwrap_or(DateTime::UNIX_EPOCH);
    let mut out = Vec::new();
    for job in rt
        .config
        .jobs
        .iter()
        .filter(|j| only.is_none_or(|n| j.name == n))
    {
        out.extend(source_side(rt, job, since).await?);
        out.extend(target_side(rt, job, since).await?);
        out.extend(object_side(rt, job, since).await?);
    }
    Ok(out)
}

/// The findings as a table: job, finding, subject, detail, and `off` or
/// `note`; what is off first.
pub fn table(findings: &[Finding]) -> Table {
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| (!f.off, f.job.clone(), f.kind, f.subject.clone()));
    Table {
        columns: vec!["job", "severity", "finding", "subject", "detail"],
        rows: sorted
            .into_iter()
            .map(|f| {
                vec![
                    Some(f.job.clone()),
                    Some(if f.off { "off" } else { "note" }.to_string()),
                    Some(f.kind.to_string()),
                    Some(f.subject.clone()),
                    Some(f.detail.clone()),
                ]
            })
            .collect(),
    }
}

/// Source ↔ ledger: what the job would load that the ledger lacks.
async fn source_side(rt: &Runtime, job: &Job, since: DateTime<Utc>) -> Result<Vec<Finding>> {
    let survey = crate::pipeline::survey(rt, job).await?;
    let recent = |mtime: i64| mtime >= since.timestamp();
    let mut out = Vec::new();
    for e in survey.excluded.iter().filter(|e| recent(e.mtime)) {
        out.push(Finding::new(
            job,
            "excluded",
            &e.path,
            "left out by the job's exclude".into(),
            false,
        ));
    }
    for (e, why) in survey.waiting.iter().filter(|(e, _)| recent(e.mtime)) {
        out.push(Finding::new(
            job,
            "not_settled",
            &e.path,
            format!("not settled yet: {why:?}"),
            false,
        ));
    }
    let ready: Vec<_> = survey
        .ready
        .into_iter()
        .filter(|e| recent(e.mtime))
        .collect();
    let versions: Vec<FileVersion> = ready
        .iter()
        .map(|e| FileVersion {
            job: job.name.clone(),
            path: e.path.clone(),
            size: e.size,
            mtime: e.mtime,
        })
        .collect();
    let states = lookup_many(&*rt.warehouse, &versions).await?;
    for (v, state) in versions.iter().zip(states) {
        let finding = match state {
            Some(FileState::Loaded { .. }) => None,
            None => Some((
                "not_loaded",
                "settled on the source and not in the ledger: the next pass loads it (is the daemon running, the job paused?)".to_string(),
                true,
            )),
            Some(FileState::Failed { error }) => Some((
                "failed",
                format!("{error} (fix it, then `ferry retry --job {} {}`)", job.name, v.path),
                true,
            )),
            Some(FileState::Skipped { reason }) => Some(("skipped", reason, false)),
            Some(FileState::ChangedAfterLoad { size, mtime }) => Some((
                "changed",
                format!(
                    "changed after its load (loaded: {size} bytes, mtime {mtime}; now {} bytes, mtime {}); this version is not loaded",
                    v.size, v.mtime
                ),
                true,
            )),
        };
        if let Some((kind, detail, off)) = finding {
            out.push(Finding::new(job, kind, &v.path, detail, off));
        }
    }
    Ok(out)
}

/// Ledger ↔ target: rows per load, where they can be counted.
async fn target_side(rt: &Runtime, job: &Job, since: DateTime<Utc>) -> Result<Vec<Finding>> {
    let l = rt.warehouse.ledger();
    let target = job.target.as_str();
    if job.mode != LoadMode::Append {
        return Ok(vec![Finding::new(
            job,
            "not_counted",
            target,
            "merge mode replaces rows by key: rows per load are not reconciled".into(),
            false,
        )]);
    }
    let has = rt
        .warehouse
        .read_ledger(&l.has_column_report(&job.target, "ferry_load_id"))
        .await?;
    if has.is_empty() {
        return Ok(vec![Finding::new(
            job,
            "not_counted",
            target,
            format!("{target} has no ferry_load_id column: rows per load cannot be counted"),
            false,
        )]);
    }
    let loads = rt
        .warehouse
        .read_ledger(&l.audit_loads_report(&job.name, since))
        .await?;
    let held: HashMap<String, u64> = rt
        .warehouse
        .read_ledger(&l.target_rows_report(&job.target, &job.name, since))
        .await?
        .into_iter()
        .filter_map(|r| Some((r.first()?.clone()?, r.get(1)?.as_deref()?.parse().ok()?)))
        .collect();
    let mut out = Vec::new();
    for row in loads {
        let (Some(Some(id)), Some(Some(rows))) = (row.first(), row.get(1)) else {
            continue;
        };
        let want: u64 = rows.parse().unwrap_or(0);
        let have = held.get(id).copied().unwrap_or(0);
        if want != have {
            out.push(Finding::new(
                job,
                "rows_mismatch",
                id,
                format!(
                    "load {id} (started {}) recorded {want} rows; {target} holds {have} with its ferry_load_id ({} {}): rows were deleted or added behind ferry's back",
                    row.get(2).cloned().flatten().unwrap_or_default(),
                    if have < want { "missing" } else { "extra" },
                    want.abs_diff(have)
                ),
                true,
            ));
        }
    }
    Ok(out)
}

/// The version id an object names, from its key below its kind's folder
/// (`yyyy/mm/dd/{name}-{version}-{attempt}` then `/part…`, `/{name}` or
/// `.csv.gz`): the `{version}`.
fn version_of(rel: &str) -> Option<String> {
    let attempt = rel.split('/').nth(3)?;
    let attempt = attempt.strip_suffix(".csv.gz").unwrap_or(attempt);
    let mut parts = attempt.rsplitn(3, '-');
    let (_attempt, version) = (parts.next()?, parts.next()?);
    parts.next()?;
    (version.len() == 12 && version.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| version.to_string())
}

/// Staging bucket ↔ ledger: objects of versions the ledger has no row for.
async fn object_side(rt: &Runtime, job: &Job, since: DateTime<Utc>) -> Result<Vec<Finding>> {
    let rows = rt
        .warehouse
        .read_ledger(&rt.warehouse.ledger().audit_versions_report(&job.name))
        .await?;
    let known: HashSet<String> = rows
        .iter()
        .filter_map(|r| {
            Some(
                FileVersion {
                    job: job.name.clone(),
                    path: r.first()?.clone()?,
                    size: r.get(1)?.as_deref()?.parse().ok()?,
                    mtime: r.get(2)?.as_deref()?.parse().ok()?,
                }
                .short_id(),
            )
        })
        .collect();
    let mut out = Vec::new();
    for kind in ["staged", "raw", "rejects"] {
        let base = rt.stager.kind_prefix(kind, &job.name);
        let objects = rt.stager.list_kind(kind, &job.name).await?;
        // One finding per attempt, not per part.
        let mut seen = HashSet::new();
        for (key, modified) in objects {
            if modified < since.timestamp() {
                continue;
            }
            let Some(version) = key.strip_prefix(&base).and_then(version_of) else {
                continue;
            };
            if known.contains(&version) {
                continue;
            }
            let attempt = match kind {
                "rejects" => key.clone(),
                _ => key
                    .rsplit_once('/')
                    .map_or(key.clone(), |(folder, _)| format!("{folder}/")),
            };
            if seen.insert(attempt.clone()) {
                out.push(Finding::new(
                    job,
                    "orphan_object",
                    &format!("s3://{}/{attempt}", rt.stager.bucket()),
                    format!(
                        "{kind} object(s) of a file version (id {version}) the ledger has no row for: an attempt that never committed; safe to delete"
                    ),
                    true,
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_name_their_file_version() {
        assert_eq!(
            version_of("2026/12/07/a-b.csv-0123456789ab-deadbeef/part-00000.csv.gz").as_deref(),
            Some("0123456789ab")
        );
        assert_eq!(
            version_of("2026/12/07/a.csv-0123456789ab-deadbeef/a.csv").as_deref(),
            Some("0123456789ab")
        );
        assert_eq!(
            version_of("2026/12/07/a.csv-0123456789ab-deadbeef.csv.gz").as_deref(),
            Some("0123456789ab")
        );
        assert_eq!(version_of("2026/12/07/odd/part"), None);
        assert_eq!(version_of("2026/12/07/a-nothex00000-beef/p"), None);
    }
}

//! The status page's pages: each reads what it shows (ledger reports at
//! once, the daemon's live job table) and renders it with [`html`].

use super::html::{self, Col, ago, badge, cell, count, esc, href, link, when};
use super::{PAGE_TIMEOUT, Trouble, chart};
use crate::config::Job;
use crate::daemon::request::Request;
use crate::ledger::LedgerRows;
use crate::ledger::reports::{Filter, Report};
use crate::pipeline::Runtime;
use crate::telemetry::jobs::JobNow;
use chrono::Utc;
use std::fmt::Write;
use std::sync::Arc;

/// Hours a job's rows-per-hour chart covers, and the overview's (all
/// jobs' loads of a day).
const CHART_HOURS: usize = 48;
const OVERVIEW_HOURS: usize = 24;
/// Files on a job's page.
const JOB_FILES: u32 = 50;
/// Loads on the overview, on a job's page and on `/loads`.
const OVERVIEW_LOADS: u32 = 10;
const JOB_LOADS: u32 = 20;
const ALL_LOADS: u32 = 100;
/// Rejected records on a file's page (the ledger keeps 1000 per version).
const FILE_REJECTS: u32 = 1000;
/// The widest an error is shown in a table (the file's page has it all).
const ERROR_IN_TABLE: usize = 300;

/// Runs `reports` at once within the page deadline.
async fn read(rt: &Runtime, reports: Vec<Report>) -> Result<Vec<LedgerRows>, Trouble> {
    let reads = futures::future::try_join_all(reports.iter().map(|r| rt.warehouse.read_ledger(r)));
    match tokio::time::timeout(PAGE_TIMEOUT, reads).await {
        Ok(rows) => Ok(rows?),
        Err(_) => Err(Trouble::Slow),
    }
}

fn configured<'r>(rt: &'r Runtime, job: &str) -> Result<&'r Arc<Job>, Trouble> {
    rt.config
        .jobs
        .iter()
        .find(|j| j.name == job)
        .ok_or_else(|| {
            Trouble::NotFound(format!(
                "no job named {job:?} in this daemon's configuration"
            ))
        })
}

fn text(row: &[Option<String>], i: usize) -> Option<&str> {
    row.get(i).and_then(|v| v.as_deref())
}

/// (hour, rows) of an hourly report's rows.
fn hours(rows: &LedgerRows) -> Vec<(i64, u64)> {
    rows.iter()
        .filter_map(|r| Some((text(r, 0)?.parse().ok()?, text(r, 2)?.parse().ok()?)))
        .collect()
}

/// A job's state as the daemon sees it: the ledger's pause flag, the
/// configuration's `enabled`, a pass under way.
fn state(ledger_state: Option<&str>, job: Option<&Job>, now: Option<&JobNow>) -> String {
    let mut out = match job {
        None => badge("not configured"),
        Some(j) if !j.enabled => badge("disabled"),
        Some(_) => badge(ledger_state.unwrap_or("active")),
    };
    if now.is_some_and(|n| n.running_since.is_some()) {
        out.push(' ');
        out.push_str(&badge("running"));
    }
    out
}

/// The job's lag, badged against its SLO when it has one.
fn lag(now: Option<&JobNow>, job: Option<&Job>) -> String {
    let Some(n) = now.filter(|n| n.backlog.is_some()) else {
        return "<span class=\"muted\">not polled yet</span>".into();
    };
    let lag = n.lag(Utc::now());
    if lag.is_zero() {
        return badge("caught up");
    }
    let over = job.and_then(|j| j.max_lag).is_some_and(|max| lag > max);
    format!(
        "{} {}",
        badge(if over { "behind" } else { "waiting" }),
        ago(lag)
    )
}

/// The last pass and the source's health, in a few words.
fn last_pass(n: Option<&JobNow>) -> String {
    let Some(n) = n else {
        return "<span class=\"muted\">–</span>".into();
    };
    let mut out = match &n.last_pass {
        Some(p) => {
            let mut s = format!(
                "{} ago, {} loaded, {} failed, took {}",
                ago((Utc::now() - p.ended_at).to_std().unwrap_or_default()),
                p.loaded,
                p.failed,
                ago(p.took)
            );
            if let Some(e) = &p.error {
                let _ = write!(s, "<br><span class=\"error\">{}</span>", esc(e));
            }
            s
        }
        None => "<span class=\"muted\">first pass under way</span>".into(),
    };
    if let Some((since, why)) = &n.source_down {
        let _ = write!(
            out,
            "<br>{} for {}: <span class=\"error\">{}</span>",
            badge("down"),
            ago((Utc::now() - *since).to_std().unwrap_or_default()),
            esc(why)
        );
    }
    out
}

/// `/`: every job, rows per hour of all of them, the latest loads.
pub(super) async fn overview(rt: &Runtime) -> Result<String, Trouble> {
    let l = rt.warehouse.ledger();
    let now = Utc::now();
    let since = now - chrono::Duration::hours(OVERVIEW_HOURS as i64);
    let mut rows = read(
        rt,
        vec![
            l.overview_report(now),
            l.hourly_report(None, since),
            l.loads_report(None, OVERVIEW_LOADS),
        ],
    )
    .await?
    .into_iter();
    let (jobs, hourly, loads) = (
        rows.next().unwrap_or_default(),
        rows.next().unwrap_or_default(),
        rows.next().unwrap_or_default(),
    );
    let live = crate::telemetry::jobs::snapshot();
    let table_rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|r| {
            let name = text(r, 0).unwrap_or_default();
            let job = rt.config.jobs.iter().find(|j| j.name == name).map(|j| &**j);
            let n = live.get(name);
            let failed = text(r, 4).unwrap_or("0");
            vec![
                link(&href(&["jobs", name], &[]), name),
                state(text(r, 1), job, n),
                lag(n, job),
                when(text(r, 5)),
                count(text(r, 6)),
                count(text(r, 7)),
                count(text(r, 8)),
                count(text(r, 9)),
                if failed == "0" {
                    "0".into()
                } else {
                    format!(
                        "<a class=\"error\" href=\"{}\">{}</a>",
                        href(&["jobs", name], &[("state", "failed")]),
                        count(Some(failed))
                    )
                },
                format!("{} → {}", cell(text(r, 2)), cell(text(r, 3))),
                last_pass(n),
            ]
        })
        .collect();
    let cols: &[Col] = &[
        ("job", false),
        ("state", false),
        ("lag", false),
        ("last load", false),
        ("files 1h", true),
        ("rows 1h", true),
        ("files 24h", true),
        ("rows 24h", true),
        ("failed", true),
        ("source → target", false),
        ("last pass", false),
    ];
    let mut body = html::table("jobs", cols, &table_rows, "No jobs in the ledger yet.");
    let _ = write!(
        body,
        "<h2>Rows per hour, all jobs (last {OVERVIEW_HOURS} h)</h2>\n{}",
        chart::rows_per_hour(
            "rows loaded per hour, all jobs",
            &hours(&hourly),
            now.timestamp(),
            OVERVIEW_HOURS
        )
    );
    let _ = write!(
        body,
        "<h2>Latest loads</h2>\n{}<p>{}</p>",
        loads_table(&loads),
        link("/loads", "All recent loads")
    );
    Ok(html::page("Jobs", &body))
}

/// A table of loads-report rows.
fn loads_table(loads: &LedgerRows) -> String {
    let rows: Vec<Vec<String>> = loads
        .iter()
        .map(|r| {
            let job = text(r, 1).unwrap_or_default();
            vec![
                when(text(r, 5)),
                link(&href(&["jobs", job], &[]), job),
                format!("<span class=\"mono\">{}</span>", cell(text(r, 0))),
                count(text(r, 2)),
                count(text(r, 3)),
                count(text(r, 4)),
                text(r, 6)
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .map_or_else(|| "–".into(), |ms| format!("{:.2}s", ms as f64 / 1000.0)),
            ]
        })
        .collect();
    let cols: &[Col] = &[
        ("started", false),
        ("job", false),
        ("load id", false),
        ("files", true),
        ("rows", true),
        ("bytes", true),
        ("took", true),
    ];
    html::table("loads", cols, &rows, "No loads yet.")
}

/// `/loads`: recent loads, of one job with `?job=`.
pub(super) async fn loads(rt: &Runtime, job: Option<&str>) -> Result<String, Trouble> {
    let l = rt.warehouse.ledger();
    let rows = read(rt, vec![l.loads_report(job, ALL_LOADS)]).await?;
    let title = match job {
        Some(j) => format!("Loads of {j}"),
        None => "Loads".into(),
    };
    Ok(html::page(&title, &loads_table(&rows[0])))
}

/// `/jobs/{job}`: facts, chart, files, loads, schema changes, buttons.
pub(super) async fn job(rt: &Runtime, name: &str, req: &Request) -> Result<String, Trouble> {
    let job = configured(rt, name)?;
    let l = rt.warehouse.ledger();
    let now = Utc::now();
    let state_filter = req.param("state").map(str::to_string);
    let filter = Filter {
        job: Some(name.to_string()),
        detail: state_filter.clone(),
        limit: JOB_FILES,
    };
    let mut rows = read(
        rt,
        vec![
            l.files_report(&filter),
            l.hourly_report(
                Some(name),
                now - chrono::Duration::hours(CHART_HOURS as i64),
            ),
            l.loads_report(Some(name), JOB_LOADS),
            l.changes_report(Some(name), 20),
            l.job_enabled_report(name),
        ],
    )
    .await?
    .into_iter();
    let mut next = || rows.next().unwrap_or_default();
    let (files, hourly, loads, changes, enabled) = (next(), next(), next(), next(), next());
    let live = crate::telemetry::jobs::of(name);
    let paused = enabled
        .first()
        .and_then(|r| text(r, 0))
        .is_some_and(|v| v == "false");
    let mut body = String::new();
    if let Some(said) = req.param("said") {
        let _ = writeln!(body, "<p class=\"said\" id=\"said\">{}</p>", esc(said));
    }
    let fact = |k: &str, v: String| format!("<dt>{}</dt><dd>{v}</dd>", esc(k));
    let _ = writeln!(
        body,
        "<dl class=\"facts\">{}{}{}{}{}{}{}</dl>",
        fact(
            "state",
            state(
                Some(if paused { "paused" } else { "active" }),
                Some(job),
                live.as_ref()
            )
        ),
        fact("lag", lag(live.as_ref(), Some(job))),
        fact("last pass", last_pass(live.as_ref())),
        fact(
            "source",
            format!(
                "{} <code>{}</code> pattern <code>{}</code>",
                esc(&job.source.name),
                esc(&job.path),
                esc(&job.pattern_text)
            )
        ),
        fact(
            "target",
            format!(
                "<code>{}</code> ({})",
                esc(job.target.as_str()),
                match job.mode {
                    crate::config::LoadMode::Append => "append",
                    crate::config::LoadMode::Merge => "merge",
                }
            )
        ),
        fact("polls every", ago(job.poll_interval)),
        fact(
            "max lag",
            job.max_lag
                .map_or_else(|| "<span class=\"muted\">no SLO set</span>".into(), ago)
        ),
    );
    if rt.config.daemon.admin_token.is_some() {
        body.push_str(&admin_forms(name, paused));
    }
    let _ = write!(
        body,
        "<h2>Rows per hour (last {CHART_HOURS} h)</h2>\n{}",
        chart::rows_per_hour(
            &format!("rows loaded per hour by {name}"),
            &hours(&hourly),
            now.timestamp(),
            CHART_HOURS
        )
    );
    let _ = write!(body, "<h2>Recent files</h2>\n<p>Show: ");
    for (label, s) in [
        ("all", None),
        ("loaded", Some("loaded")),
        ("failed", Some("failed")),
        ("skipped", Some("skipped")),
    ] {
        let url = match s {
            Some(s) => href(&["jobs", name], &[("state", s)]),
            None => href(&["jobs", name], &[]),
        };
        if state_filter.as_deref() == s {
            let _ = write!(body, "<strong>{label}</strong> ");
        } else {
            let _ = write!(body, "{} ", link(&url, label));
        }
    }
    body.push_str("</p>\n");
    let file_rows: Vec<Vec<String>> = files
        .iter()
        .map(|r| {
            let path = text(r, 1).unwrap_or_default();
            let err = text(r, 8).map(|e| {
                let cut = crate::ledger::fit(e, ERROR_IN_TABLE);
                let more = if cut.len() < e.len() { "…" } else { "" };
                format!("<span class=\"error\">{}{more}</span>", esc(cut))
            });
            vec![
                link(
                    &href(
                        &["jobs", name, "file"],
                        &[
                            ("path", path),
                            ("size", text(r, 3).unwrap_or("")),
                            ("mtime", text(r, 4).unwrap_or("")),
                        ],
                    ),
                    path,
                ),
                badge(text(r, 2).unwrap_or("?")),
                count(text(r, 3)),
                count(text(r, 5)),
                count(text(r, 6)),
                when(text(r, 7)),
                err.unwrap_or_default(),
                count(text(r, 9)),
            ]
        })
        .collect();
    let cols: &[Col] = &[
        ("path", false),
        ("state", false),
        ("bytes", true),
        ("rows", true),
        ("rejected", true),
        ("at", false),
        ("error", false),
        ("schema changes", true),
    ];
    body.push_str(&html::table(
        "files",
        cols,
        &file_rows,
        "No files of this job in the ledger.",
    ));
    let _ = write!(body, "<h2>Loads</h2>\n{}", loads_table(&loads));
    let change_rows: Vec<Vec<String>> = changes
        .iter()
        .map(|r| {
            vec![
                when(text(r, 8)),
                cell(text(r, 1)),
                cell(text(r, 2)),
                cell(text(r, 3)),
                cell(text(r, 6)),
                cell(text(r, 7)),
            ]
        })
        .collect();
    let cols: &[Col] = &[
        ("at", false),
        ("file", false),
        ("change", false),
        ("field", false),
        ("action", false),
        ("detail", false),
    ];
    let _ = write!(
        body,
        "<h2>Schema changes</h2>\n{}",
        html::table("changes", cols, &change_rows, "No schema drift recorded.")
    );
    Ok(html::page(&format!("Job {name}"), &body))
}

/// The pause/resume and retry buttons, each asking for the token.
fn admin_forms(job: &str, paused: bool) -> String {
    let token = "<input type=\"password\" name=\"token\" placeholder=\"admin token\" autocomplete=\"current-password\" required>";
    let (action, label) = if paused {
        ("resume", "Resume")
    } else {
        ("pause", "Pause")
    };
    format!(
        "<h2>Actions</h2>\n<form class=\"admin\" id=\"{action}\" method=\"post\" action=\"{}\">{token}<button type=\"submit\">{label}</button></form>\
         <form class=\"admin\" id=\"retry\" method=\"post\" action=\"{}\">{token}<button type=\"submit\">Retry failed files</button></form>\n",
        href(&["jobs", job, action], &[]),
        href(&["jobs", job, "retry"], &[]),
    )
}

/// `/jobs/{job}/file?path=…[&size=…&mtime=…]`: every version of the file,
/// its objects, and the rejected records of the chosen version (the
/// newest without `size`/`mtime`).
pub(super) async fn file(rt: &Runtime, name: &str, req: &Request) -> Result<String, Trouble> {
    let job = configured(rt, name)?;
    let Some(path) = req.param("path") else {
        return Err(Trouble::NotFound(
            "no path given (…/file?path=/in/a.csv)".into(),
        ));
    };
    let l = rt.warehouse.ledger();
    let versions = read(rt, vec![l.versions_detail_report(name, path)])
        .await?
        .remove(0);
    if versions.is_empty() {
        return Err(Trouble::NotFound(format!(
            "job {name} has no file {path:?} in the ledger"
        )));
    }
    let chosen = versions
        .iter()
        .position(|v| text(v, 1) == req.param("size") && text(v, 2) == req.param("mtime"))
        .unwrap_or(0);
    let v = &versions[chosen];
    let (size, mtime) = (text(v, 1).unwrap_or("0"), text(v, 2).unwrap_or("0"));
    let rejects = read(
        rt,
        vec![l.rejects_report(name, path, size, mtime, FILE_REJECTS)],
    )
    .await?
    .remove(0);
    let bucket = rt.stager.bucket();
    let object = |key: Option<&str>| match key {
        Some(k) => format!("<code>s3://{}/{}</code>", esc(bucket), esc(k)),
        None => "<span class=\"muted\">none</span>".into(),
    };
    let raw = if !job.archive_raw {
        "<span class=\"muted\">not kept (archive_raw = false)</span>".to_string()
    } else {
        object(
            text(v, 4)
                .and_then(|s| rt.stager.raw_key_of(s, path))
                .as_deref(),
        )
    };
    let mtime_text = mtime
        .parse::<i64>()
        .ok()
        .and_then(|m| chrono::DateTime::from_timestamp(m, 0))
        .map_or_else(
            || esc(mtime),
            |t| format!("{} UTC ({})", t.format("%Y-%m-%d %H:%M:%S"), esc(mtime)),
        );
    let fact = |k: &str, v: String| format!("<dt>{}</dt><dd>{v}</dd>", esc(k));
    let mut body = format!(
        "<p>{}</p>\n<dl class=\"facts\" id=\"version\">{}{}{}{}{}{}{}{}{}{}{}{}{}{}</dl>\n",
        link(&href(&["jobs", name], &[]), &format!("← job {name}")),
        fact("state", badge(text(v, 0).unwrap_or("?"))),
        fact("size", format!("{} bytes", count(Some(size)))),
        fact("modified", mtime_text),
        fact("sha256", format!("<code>{}</code>", cell(text(v, 3)))),
        fact("rows loaded", count(text(v, 6))),
        fact("rows rejected", count(text(v, 7))),
        fact("first seen", when(text(v, 8))),
        fact("loaded at", when(text(v, 9))),
        fact("load id", format!("<code>{}</code>", cell(text(v, 10)))),
        fact(
            "error",
            text(v, 11).map_or_else(
                || "–".into(),
                |e| format!("<span class=\"error\">{}</span>", esc(e))
            )
        ),
        fact("staged parts", object(text(v, 4))),
        fact("rejects object", object(text(v, 5))),
        fact("raw copy", raw),
        fact(
            "finalized",
            match (text(v, 12), text(v, 13)) {
                (Some(at), Some(to)) => format!("{} → <code>{}</code>", when(Some(at)), esc(to)),
                (Some(at), None) => format!("{} (kept or deleted)", when(Some(at))),
                _ => "–".into(),
            }
        ),
    );
    if rt.config.daemon.admin_token.is_some() && text(v, 0) == Some("failed") {
        let _ = writeln!(
            body,
            "<form class=\"admin\" id=\"retry-file\" method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"path\" value=\"{}\">\
             <input type=\"password\" name=\"token\" placeholder=\"admin token\" required><button type=\"submit\">Retry this file</button></form>",
            href(&["jobs", name, "retry"], &[]),
            esc(path)
        );
    }
    if versions.len() > 1 {
        let rows: Vec<Vec<String>> = versions
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let label = if i == chosen {
                    "shown".to_string()
                } else {
                    link(
                        &href(
                            &["jobs", name, "file"],
                            &[
                                ("path", path),
                                ("size", text(r, 1).unwrap_or("")),
                                ("mtime", text(r, 2).unwrap_or("")),
                            ],
                        ),
                        "show",
                    )
                };
                vec![
                    label,
                    badge(text(r, 0).unwrap_or("?")),
                    count(text(r, 1)),
                    cell(text(r, 2)),
                    count(text(r, 6)),
                    when(text(r, 8)),
                ]
            })
            .collect();
        let cols: &[Col] = &[
            ("", false),
            ("state", false),
            ("size", true),
            ("mtime", true),
            ("rows", true),
            ("first seen", false),
        ];
        let _ = write!(
            body,
            "<h2>Versions</h2>\n{}",
            html::table("versions", cols, &rows, "")
        );
    }
    let reject_rows: Vec<Vec<String>> = rejects
        .iter()
        .map(|r| {
            vec![
                count(text(r, 0)),
                cell(text(r, 1)),
                cell(text(r, 2)),
                cell(text(r, 3)),
                format!("<code>{}</code>", cell(text(r, 4))),
                format!("<code>{}</code>", cell(text(r, 5))),
            ]
        })
        .collect();
    let cols: &[Col] = &[
        ("line", true),
        ("column", false),
        ("code", true),
        ("reason", false),
        ("raw value", false),
        ("raw line", false),
    ];
    let _ = write!(
        body,
        "<h2>Rejected records</h2>\n{}",
        html::table("rejects", cols, &reject_rows, "No rejected records.")
    );
    if rejects.len() as u32 == FILE_REJECTS {
        body.push_str("<p class=\"muted\">The ledger keeps the first 1000; the rejects object has every one.</p>\n");
    }
    Ok(html::page(path, &body))
}

//! Post-load checks: after each committed load, every query in the job's
//! `checks` runs against the warehouse; a query returns the rows that are
//! wrong, so a check passes when it returns none. The result goes to the
//! logs, the metrics (`ferry_checks_total{result}`) and the ledger
//! (`ferry_checks`). A failed check never undoes the load: it tells the
//! operator, who decides.

use super::Runtime;
use crate::config::{Check, Job};
use crate::ledger::LedgerSql;
use crate::ledger::reports::Report;
use crate::sql::{Dialect, Ident, bind};
use crate::telemetry;
use crate::warehouse::LoadOutcome;

/// The parameters a check may use, in this order.
const PARAMS: [&str; 3] = ["load_id", "job", "rows"];

/// A check as one query that counts its rows: `{target}` and `{schema}`
/// filled in with quoted identifiers, each parameter used bound as text
/// (`$n` on PostgreSQL, `:name` on Redshift). Returns the SQL and the
/// names of the parameters it binds, in order; a check that writes its
/// own `$n` placeholders is refused (config validation calls this too).
pub fn render(
    check: &Check,
    schema: &Ident,
    target: &Ident,
    dialect: Dialect,
) -> Result<(String, Vec<&'static str>), String> {
    let sql = check
        .sql
        .replace(
            "{target}",
            &format!("{}.{}", schema.quoted(), target.quoted()),
        )
        .replace("{schema}", &schema.quoted());
    if let Some(p) = bind::positional_used(&sql).first() {
        return Err(format!(
            "uses {p}; a check names its parameters :load_id, :job and :rows (a literal $ belongs in quotes)"
        ));
    }
    let mut used: Vec<&'static str> = Vec::new();
    let sql = bind::rewrite_named(&sql, |name| {
        let name = PARAMS.into_iter().find(|p| *p == name)?;
        let n = match used.iter().position(|u| *u == name) {
            Some(i) => i + 1,
            None => {
                used.push(name);
                used.len()
            }
        };
        Some(format!("CAST(${n} AS VARCHAR(64))"))
    });
    let counted = format!("SELECT CAST(COUNT(*) AS VARCHAR(20)) FROM ({sql}) ferry_check");
    let sql = dialect
        .try_adapt(&counted, &used)
        .map_err(|e| e.to_string())?;
    Ok((sql, used))
}

/// Runs the job's checks once per load among `outcomes` (a batch shares
/// one load); `rows` is what that load wrote.
pub async fn after_load(rt: &Runtime, job: &Job, outcomes: &[LoadOutcome]) {
    if job.checks.is_empty() {
        return;
    }
    let mut loads: Vec<(&str, u64)> = Vec::new();
    for o in outcomes {
        if let LoadOutcome::Loaded { load_id, rows } = o {
            match loads.iter_mut().find(|(id, _)| id == load_id) {
                Some((_, n)) => *n += rows,
                None => loads.push((load_id, *rows)),
            }
        }
    }
    for (load_id, rows) in loads {
        for check in &job.checks {
            run_one(rt, job, check, load_id, rows).await;
        }
    }
}

async fn run_one(rt: &Runtime, job: &Job, check: &Check, load_id: &str, rows: u64) {
    let settings = &rt.config.warehouse;
    let (sql, used) = match render(check, settings.schema(), &job.target, settings.dialect()) {
        Ok(r) => r,
        // Refused by `ferry check --offline` and at start-up already.
        Err(why) => {
            tracing::error!(job = %job.name, check = %check.name, why, "check cannot run");
            return;
        }
    };
    let params = used
        .iter()
        .map(|name| {
            let value = match *name {
                "load_id" => load_id.to_string(),
                "job" => job.name.clone(),
                _ => rows.to_string(),
            };
            (*name, value)
        })
        .collect();
    let report = Report {
        sql,
        params,
        columns: &[],
    };
    let result = rt.warehouse.read_ledger(&report).await;
    let (failing, detail) = match &result {
        Ok(rows) => {
            let n: u64 = rows
                .first()
                .and_then(|r| r.first())
                .and_then(|v| v.as_deref())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let detail = (n > 0).then(|| format!("returned {n} row(s): {}", check.sql));
            (n, detail)
        }
        // A check that cannot run is a failed check too.
        Err(e) => (0, Some(format!("could not run: {}", e.chain()))),
    };
    let passed = result.is_ok() && failing == 0;
    if !passed {
        crate::alerts::check_failed(&job.name, &check.name, load_id, failing, detail.as_deref());
    }
    telemetry::check_done(
        &job.name,
        &check.name,
        load_id,
        passed,
        failing,
        detail.as_deref(),
    );
    let ledger = LedgerSql::with_dialect(settings.schema(), settings.dialect());
    let change = ledger.insert_check(
        &job.name,
        load_id,
        &check.name,
        passed,
        failing,
        detail.as_deref().unwrap_or(""),
    );
    if let Err(e) = rt.warehouse.write_ledger(&change).await {
        tracing::warn!(job = %job.name, check = %check.name, error = %e.chain(), "cannot record the check in ferry_checks");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str) -> Check {
        Check {
            name: "c".into(),
            sql: sql.into(),
        }
    }

    #[test]
    fn placeholders_become_quoted_names_and_text_parameters() {
        let (s, t) = (Ident::parse("wh").unwrap(), Ident::parse("events").unwrap());
        let c = check(
            "SELECT 1 WHERE (SELECT count(*) FROM {target} WHERE ferry_load_id = :load_id) <> CAST(:rows AS BIGINT) AND x::rows_y IS NULL AND :load_id IS NOT NULL",
        );
        let (pg, used) = render(&c, &s, &t, Dialect::Postgres).unwrap();
        assert_eq!(used, ["load_id", "rows"]);
        assert!(
            pg.contains("FROM \"wh\".\"events\" WHERE ferry_load_id = CAST($1 AS VARCHAR(64))"),
            "{pg}"
        );
        assert!(
            pg.contains("CAST(CAST($2 AS VARCHAR(64)) AS BIGINT)"),
            "{pg}"
        );
        assert!(pg.contains("x::rows_y"), "a cast is not a parameter: {pg}");
        assert!(
            pg.starts_with("SELECT CAST(COUNT(*) AS VARCHAR(20)) FROM (SELECT 1"),
            "{pg}"
        );
        let (rs, _) = render(&c, &s, &t, Dialect::Redshift).unwrap();
        assert!(
            rs.contains("CAST(:load_id AS VARCHAR(64))") && !rs.contains('$'),
            "{rs}"
        );
    }

    /// Regression: a check with `LIKE '$%'` panicked the daemon after
    /// every commit on Redshift; `$` in literals and names now works, and
    /// a `$n` of the check's own is refused with a reason.
    #[test]
    fn dollars_in_a_check_work_or_are_refused() {
        let (s, t) = (
            Ident::parse("wh$1").unwrap(),
            Ident::parse("events").unwrap(),
        );
        let c = check("SELECT 1 FROM {target} WHERE note LIKE '$%' AND ferry_load_id = :load_id");
        for d in [Dialect::Postgres, Dialect::Redshift] {
            let (sql, used) = render(&c, &s, &t, d).unwrap();
            assert_eq!(used, ["load_id"]);
            assert!(
                sql.contains("\"wh$1\".\"events\" WHERE note LIKE '$%'"),
                "{sql}"
            );
        }
        let e = render(&check("SELECT 1 WHERE x = $1"), &s, &t, Dialect::Redshift).unwrap_err();
        assert!(e.contains("uses $1"), "{e}");
    }
}

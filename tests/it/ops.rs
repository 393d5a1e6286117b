//! The operations commands against both warehouse backends: jobs,
//! pause/resume, files, errors, retry and reset behave as documented.

use crate::harness::{Backend, Env, task_events_job};
use ferry::commands::ops;
use ferry::ledger::reports::Filter;
use ferry::pipeline::run_pass;

crate::harness::both_backends!(
    jobs_files_and_errors_report_what_the_ledger_holds,
    a_paused_job_is_not_polled_until_resumed,
    retry_loads_a_failed_file_again_without_doubling_its_errors,
    reset_forgets_a_job_and_the_next_pass_loads_its_files_again,
);

const HEADER: &str =
    "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";

/// `good` events, then `bad` ones whose duration is not a number.
fn events(prefix: &str, good: usize, bad: usize) -> String {
    let mut body = String::from(HEADER);
    for i in 0..good + bad {
        let duration = if i < good {
            i.to_string()
        } else {
            "soon".to_string()
        };
        body.push_str(&format!(
            "{prefix}-{i},t1,created,open,u1,jira,2026-03-01T10:00:00Z,{duration},1,\n"
        ));
    }
    body
}

fn column<'t>(t: &'t ops::Table, name: &str) -> Vec<Option<&'t str>> {
    let i = t.columns.iter().position(|c| *c == name).unwrap();
    t.rows.iter().map(|r| r[i].as_deref()).collect()
}

fn filter(job: Option<&str>, detail: Option<&str>) -> Filter {
    Filter {
        job: job.map(str::to_string),
        detail: detail.map(str::to_string),
        limit: 100,
    }
}

async fn jobs_files_and_errors_report_what_the_ledger_holds(backend: Backend) {
    let env = Env::start(backend).await;
    env.stack.put_sftp("/outbox/a.csv", &events("a", 3, 0));
    env.stack.put_sftp("/outbox/b.csv", &events("b", 1, 12));
    let rt = env.runtime(&task_events_job("")).await;
    let report = run_pass(&rt, None).await.unwrap();
    assert_eq!(
        (report.loaded.len(), report.failed.len()),
        (1, 1),
        "{report:?}"
    );
    let (cfg, wh) = (&rt.config, &*rt.warehouse);

    let jobs = ops::jobs(cfg, wh).await.unwrap();
    assert_eq!(jobs.rows.len(), 1, "{jobs:?}");
    assert_eq!(column(&jobs, "job"), [Some("task-events")]);
    assert_eq!(column(&jobs, "state"), [Some("active")]);
    assert_eq!(column(&jobs, "loaded"), [Some("1")]);
    assert_eq!(column(&jobs, "failed"), [Some("1")]);
    assert_eq!(column(&jobs, "rows"), [Some("3")]);
    assert!(column(&jobs, "last_load")[0].is_some_and(|t| t.starts_with("20")));
    assert_eq!(column(&jobs, "lister"), [None], "no work queue, no lister");

    let failed = ops::files(cfg, wh, &filter(Some("task-events"), Some("failed")))
        .await
        .unwrap();
    assert_eq!(column(&failed, "path"), [Some("/outbox/b.csv")]);
    assert!(
        column(&failed, "error")[0].is_some_and(|e| e.contains("max_errors = 10")),
        "{failed:?}"
    );
    let all = ops::files(cfg, wh, &filter(None, None)).await.unwrap();
    assert_eq!(all.rows.len(), 2);

    let errors = ops::errors(cfg, wh, &filter(None, Some("/outbox/b.csv")))
        .await
        .unwrap();
    assert_eq!(errors.rows.len(), 12, "{errors:?}");
    let lines: Vec<u32> = column(&errors, "line")
        .iter()
        .map(|l| l.unwrap().parse().unwrap())
        .collect();
    // By line as a number (a report's columns are text; it sorts by the
    // table's, so 10 comes after 9).
    assert_eq!(lines, (3..=14).collect::<Vec<u32>>());
    assert!(
        column(&errors, "column")
            .iter()
            .all(|c| *c == Some("duration_ms"))
    );
    assert!(
        column(&errors, "raw_value")
            .iter()
            .all(|v| *v == Some("soon"))
    );
    // The JSON form has the same rows, keyed by column.
    let json: serde_json::Value = serde_json::from_str(&errors.json()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 12);
    assert_eq!(json[0]["path"], "/outbox/b.csv");
    env.finish().await;
}

async fn a_paused_job_is_not_polled_until_resumed(backend: Backend) {
    let env = Env::start(backend).await;
    let rt = env.runtime(&task_events_job("")).await;
    let (cfg, wh) = (&rt.config, &*rt.warehouse);
    let said = ops::set_paused(cfg, wh, "task-events", true).await.unwrap();
    assert!(said.contains("paused"), "{said}");
    assert_eq!(
        column(&ops::jobs(cfg, wh).await.unwrap(), "state"),
        [Some("paused")]
    );
    env.stack.put_sftp("/outbox/a.csv", &events("a", 2, 0));
    // A pass over all jobs leaves it alone, in this runtime and in a new
    // one (the pause is in the ledger, not in memory).
    let report = run_pass(&rt, None).await.unwrap();
    assert!(
        report.loaded.is_empty() && report.skipped == 0,
        "{report:?}"
    );
    let other = env.runtime(&task_events_job("")).await;
    assert!(run_pass(&other, None).await.unwrap().loaded.is_empty());
    assert_eq!(env.db.count("task_events").await, 0);
    // Naming a job that does not exist is a configuration error.
    let e = ops::set_paused(cfg, wh, "nope", true).await.unwrap_err();
    assert!(e.chain().contains("no job named \"nope\""), "{}", e.chain());

    ops::set_paused(cfg, wh, "task-events", false)
        .await
        .unwrap();
    let report = run_pass(&rt, None).await.unwrap();
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(env.db.count("task_events").await, 2);
    env.finish().await;
}

async fn retry_loads_a_failed_file_again_without_doubling_its_errors(backend: Backend) {
    let env = Env::start(backend).await;
    env.stack.put_sftp("/outbox/b.csv", &events("b", 5, 12));
    let rt = env.runtime(&task_events_job("")).await;
    let (cfg, wh) = (&rt.config, &*rt.warehouse);
    assert_eq!(run_pass(&rt, None).await.unwrap().failed.len(), 1);
    assert_eq!(env.db.count("ferry_load_errors").await, 12);
    // Not retried by itself.
    let again = run_pass(&rt, None).await.unwrap();
    assert!(again.failed.is_empty() && again.skipped == 1, "{again:?}");

    // Retried, it fails again the same way: one failed row, the same 12
    // error rows (the first attempt's are replaced, not doubled).
    let said = ops::retry(cfg, wh, "task-events", None).await.unwrap();
    assert!(said.starts_with("1 failed file version(s)"), "{said}");
    assert_eq!(run_pass(&rt, None).await.unwrap().failed.len(), 1);
    assert_eq!(env.db.count("ferry_files").await, 1);
    assert_eq!(env.db.count("ferry_load_errors").await, 12);

    // The operator raises max_errors and retries that one file: it loads
    // with its rejects, once.
    let lenient = env
        .runtime(&task_events_job("").replace("max_errors = 10", "max_errors = 50"))
        .await;
    let said = ops::retry(
        &lenient.config,
        &*lenient.warehouse,
        "task-events",
        Some("/outbox/b.csv"),
    )
    .await
    .unwrap();
    assert!(said.starts_with("1 failed"), "{said}");
    let report = run_pass(&lenient, None).await.unwrap();
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(report.loaded[0].rejected, 12);
    assert_eq!(env.db.count("task_events").await, 5);
    assert_eq!(
        env.db.count_where("ferry_files", "state = 'loaded'").await,
        1
    );
    assert_eq!(
        env.db.count_where("ferry_files", "state = 'failed'").await,
        0
    );
    assert_eq!(env.db.count("ferry_load_errors").await, 12);
    let none = ops::retry(cfg, wh, "task-events", None).await.unwrap();
    assert!(none.contains("no failed files"), "{none}");
    env.finish().await;
}

async fn reset_forgets_a_job_and_the_next_pass_loads_its_files_again(backend: Backend) {
    let env = Env::start(backend).await;
    env.stack.put_sftp("/outbox/a.csv", &events("a", 4, 0));
    env.stack.put_sftp("/outbox/b.csv", &events("b", 0, 12));
    let rt = env.runtime(&task_events_job("")).await;
    let (cfg, wh) = (&rt.config, &*rt.warehouse);
    run_pass(&rt, None).await.unwrap();
    assert_eq!(env.db.count("ferry_files").await, 2);

    let said = ops::reset(cfg, wh, "task-events").await.unwrap();
    assert!(
        said.contains("forgot 2 file version(s), 1 load(s) and 12 error row(s)"),
        "{said}"
    );
    for table in ["ferry_files", "ferry_loads", "ferry_load_errors"] {
        assert_eq!(env.db.count(table).await, 0, "{table}");
    }
    assert_eq!(
        env.db.count("task_events").await,
        4,
        "rows stay in the target"
    );
    // Every file still on the source loads again (merge by key: no
    // duplicates), and the bad one fails again.
    let report = run_pass(&rt, None).await.unwrap();
    assert_eq!(
        (report.loaded.len(), report.failed.len()),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(env.db.count("task_events").await, 4);
    env.finish().await;
}

//! One suite of end-to-end load cases, run against every warehouse
//! backend: each case is written once as an `async fn(Backend)` and the
//! `both_backends!` macro (in the harness) makes a test per backend.

use crate::harness::{BUCKET, Backend, Env, task_events_job};
use ferry::pipeline::{Drain, run_pass, run_pass_draining};

const HEADER: &str =
    "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";

/// A file of `n` events `{prefix}-{i}` with durations `base + i`.
fn events(prefix: &str, n: usize, base: i64) -> String {
    let mut body = String::from(HEADER);
    for i in 0..n {
        body.push_str(&format!(
            "{prefix}-{i},t{},created,open,u{},jira,2026-03-01T10:{:02}:00Z,{},1,\n",
            i % 5,
            i % 3,
            i % 60,
            base + i as i64
        ));
    }
    body
}

/// Makes the first insert into the fact table fail as a concurrent writer
/// would make it fail, with `message` and SQLSTATE `code`; the sequence
/// `attempts` counts the inserts tried (it survives rollbacks).
async fn conflict_once(env: &Env, message: &str, code: &str) {
    let s = &env.db.schema;
    env.db
        .client
        .batch_execute(&format!(
            r#"CREATE SEQUENCE "{s}".attempts;
            CREATE FUNCTION "{s}".conflict_once() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF nextval('"{s}".attempts') = 1 THEN
                RAISE EXCEPTION '{message}' USING ERRCODE = '{code}';
              END IF;
              RETURN NULL;
            END $$;
            CREATE TRIGGER conflict_once AFTER INSERT ON "{s}".task_events
              FOR EACH STATEMENT EXECUTE FUNCTION "{s}".conflict_once();"#
        ))
        .await
        .unwrap();
}

/// `(event_id, column as text)` of the target, in key order.
async fn by_event(env: &Env, column: &str) -> Vec<(String, String)> {
    env.db
        .client
        .query(
            &format!(
                "SELECT event_id, {column}::text FROM {} ORDER BY event_id",
                env.db.t("task_events")
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

crate::harness::both_backends!(
    auto_create_makes_the_target_and_dimensions_from_the_mapping,
    a_value_contract_rejects_its_row_into_the_ledger_with_line_column_and_rule,
    a_job_has_one_lister_at_a_time_and_an_expired_lease_is_taken_over,
    files_of_a_poll_load_in_one_batch_and_one_transaction,
    a_full_batch_loads_and_the_rest_waits_for_max_wait,
    a_bad_file_fails_alone_and_the_rest_of_its_batch_loads,
    duplicates_within_and_across_files_end_up_once_latest_wins,
    a_second_pass_loads_nothing_twice,
    a_serialization_conflict_reruns_the_whole_load_and_loads_once,
    a_copy_error_names_the_file_line_and_column_and_is_kept,
    append_without_dimensions_keeps_every_row_and_its_load_metadata,
    a_changed_file_is_reloaded_or_ignored_as_on_change_says,
    a_file_of_many_parts_loads_once_with_two_replicas_at_it,
    a_file_of_many_parts_with_too_many_rejects_fails_whole,
    a_conflict_while_a_file_of_many_parts_loads_reruns_it_once,
    post_load_checks_are_kept_in_the_ledger_and_never_undo_the_load,
    a_target_missing_a_mapped_column_fails_the_file_naming_the_column,
    the_ledger_records_failures_and_error_rows_alike_and_never_over_a_load,
);

/// Job settings that cut a file of a few hundred events into many parts
/// (on PostgreSQL such a file streams: its COPY starts with part 0).
const MANY_PARTS: &str = "part_size = \"4KiB\"";

async fn files_of_a_poll_load_in_one_batch_and_one_transaction(backend: Backend) {
    let env = Env::start(backend).await;
    for f in 0..5 {
        env.stack.put_sftp(
            &format!("/outbox/f{f}.csv"),
            &events(&format!("f{f}"), 10, 0),
        );
    }
    let rt = env.runtime(&task_events_job("")).await;
    let report = run_pass(&rt, None).await.unwrap();
    assert!(!report.has_failures(), "{report:?}");
    assert_eq!(report.loaded.len(), 5, "{report:?}");
    assert_eq!(env.db.count("task_events").await, 50);
    let loads = env
        .db
        .client
        .query(
            &format!("SELECT files, rows_loaded FROM {}", env.db.t("ferry_loads")),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(loads.len(), 1, "one load for the whole batch");
    assert_eq!(loads[0].get::<_, i32>(0), 5);
    assert_eq!(loads[0].get::<_, i64>(1), 50);
    assert_eq!(
        env.db
            .count_where("ferry_files", "state = 'loaded' AND rows_loaded = 10")
            .await,
        5
    );
    let ids = env
        .db
        .client
        .query_one(
            &format!(
                "SELECT count(DISTINCT f.load_id), count(DISTINCT t.ferry_load_id) FROM {} f, {} t",
                env.db.t("ferry_files"),
                env.db.t("task_events")
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (ids.get::<_, i64>(0), ids.get::<_, i64>(1)),
        (1, 1),
        "files and rows carry the batch's one load id"
    );
    env.finish().await;
}

async fn a_full_batch_loads_and_the_rest_waits_for_max_wait(backend: Backend) {
    let env = Env::start(backend).await;
    for f in 0..5 {
        env.stack.put_sftp(
            &format!("/outbox/f{f}.csv"),
            &events(&format!("f{f}"), 3, 0),
        );
    }
    let rt = env
        .runtime(&task_events_job(
            "batch = { max_files = 2, max_wait = \"1h\" }\nconcurrency = 1",
        ))
        .await;
    // A daemon poll: two full batches load, the fifth file waits.
    let report = run_pass_draining(&rt, None, Drain::Due).await.unwrap();
    assert!(!report.has_failures(), "{report:?}");
    assert_eq!(report.loaded.len(), 4, "{report:?}");
    assert_eq!(env.db.count("ferry_loads").await, 2);
    assert_eq!(env.db.count("task_events").await, 12);
    let staged = env.stack.staged_objects().len();
    // The next poll does not stage the waiting file again.
    let report = run_pass_draining(&rt, None, Drain::Due).await.unwrap();
    assert!(report.loaded.is_empty(), "{report:?}");
    assert_eq!(env.stack.staged_objects().len(), staged);
    // `ferry once` (drain all) loads it.
    let report = run_pass(&rt, None).await.unwrap();
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(env.db.count("ferry_loads").await, 3);
    assert_eq!(env.db.count("task_events").await, 15);
    assert_eq!(
        env.db.count_where("ferry_files", "state = 'loaded'").await,
        5
    );
    env.finish().await;
}

async fn a_bad_file_fails_alone_and_the_rest_of_its_batch_loads(backend: Backend) {
    let env = Env::start(backend).await;
    for f in 0..4 {
        env.stack.put_sftp(
            &format!("/outbox/f{f}.csv"),
            &events(&format!("f{f}"), 5, 0),
        );
    }
    // Negative durations pass normalize but break a rule of the table.
    env.stack.put_sftp("/outbox/f9.csv", &events("f9", 5, -100));
    let rt = env.runtime(&task_events_job("")).await;
    env.db
        .client
        .batch_execute(&format!(
            "ALTER TABLE {} ADD CONSTRAINT duration_not_negative CHECK (duration_ms >= 0)",
            env.db.t("task_events")
        ))
        .await
        .unwrap();
    let report = run_pass(&rt, None).await.unwrap();
    assert_eq!(report.loaded.len(), 4, "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].1.ends_with("f9.csv"), "{report:?}");
    assert!(
        report.failed[0].2.contains("duration_not_negative"),
        "the reason names the broken rule: {}",
        report.failed[0].2
    );
    assert_eq!(env.db.count("task_events").await, 20);
    assert_eq!(
        env.db.count_where("ferry_files", "state = 'failed'").await,
        1
    );
    assert_eq!(
        env.db.count_where("ferry_files", "state = 'loaded'").await,
        4
    );
    env.finish().await;
}

async fn duplicates_within_and_across_files_end_up_once_latest_wins(backend: Backend) {
    let env = Env::start(backend).await;
    env.stack.put_sftp(
        "/outbox/a.csv",
        &format!(
            "{HEADER}e1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,1,1,\n\
             e2,t1,created,open,u1,jira,2026-03-01T10:00:00Z,2,1,\n\
             e1,t1,updated,doing,u1,jira,2026-03-01T11:00:00Z,3,1,\n"
        ),
    );
    env.stack.put_sftp(
        "/outbox/b.csv",
        &format!(
            "{HEADER}e2,t1,updated,done,u2,jira,2026-03-01T12:00:00Z,4,1,\n\
             e1,t1,created,open,u1,jira,2026-03-01T09:00:00Z,5,1,\n"
        ),
    );
    let rt = env.runtime(&task_events_job("")).await;
    let report = run_pass(&rt, None).await.unwrap();
    assert!(!report.has_failures(), "{report:?}");
    let got = by_event(&env, "duration_ms").await;
    assert_eq!(
        got,
        vec![("e1".into(), "3".into()), ("e2".into(), "4".into())]
    );
    let status: String = env
        .db
        .client
        .query_one(
            &format!(
                "SELECT last_status FROM {} WHERE task_id = 't1'",
                env.db.t("dim_task")
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "done");
    env.finish().await;
}

async fn a_second_pass_loads_nothing_twice(backend: Backend) {
    let env = Env::start(backend).await;
    env.stack.put_sftp("/outbox/a.csv", &events("a", 7, 0));
    let rt = env.runtime(&task_events_job("")).await;
    assert_eq!(run_pass(&rt, None).await.unwrap().loaded.len(), 1);
    let again = run_pass(&rt, None).await.unwrap();
    assert!(again.loaded.is_empty() && again.skipped == 1, "{again:?}");
    // A second runtime (another replica) does not load it either.
    let other = env.runtime(&task_events_job("")).await;
    let report = run_pass(&other, None).await.unwrap();
    assert!(report.loaded.is_empty(), "{report:?}");
    assert_eq!(env.db.count("task_events").await, 7);
    assert_eq!(env.db.count("ferry_files").await, 1);
    env.finish().await;
}

async fn a_serialization_conflict_reruns_the_whole_load_and_loads_once(backend: Backend) {
    let env = Env::start(backend).await;
    env.stack.put_sftp("/outbox/a.csv", &events("a", 2, 0));
    let rt = env.runtime(&task_events_job("")).await;
    // The first insert into the fact table fails as a concurrent writer
    // would make it fail: PostgreSQL's SQLSTATE 40001, or Redshift's error
    // 1023 (whose only mark is its text). A sequence counts the attempts,
    // since it survives rollbacks.
    let (message, code) = match backend {
        Backend::Postgres => (
            "could not serialize access due to concurrent update",
            "40001",
        ),
        Backend::RedshiftData => (
            "1023 DETAIL: Serializable isolation violation on table - 156362, transactions forming the cycle are: 1, 2",
            "XX000",
        ),
    };
    conflict_once(&env, message, code).await;
    let s = &env.db.schema;
    let report = run_pass(&rt, None).await.unwrap();
    assert!(!report.has_failures(), "{report:?}");
    assert_eq!(report.loaded.len(), 1);
    let attempts: i64 = env
        .db
        .client
        .query_one(&format!(r#"SELECT last_value FROM "{s}".attempts"#), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 2, "the whole transaction ran again once");
    assert_eq!(env.db.count("task_events").await, 2);
    assert_eq!(env.db.count("ferry_files").await, 1);
    assert_eq!(env.db.count("ferry_loads").await, 1);
    assert_eq!(
        env.db.count("dim_task").await,
        2,
        "dimensions rolled back and merged once"
    );
    env.finish().await;
}

async fn a_copy_error_names_the_file_line_and_column_and_is_kept(backend: Backend) {
    let env = Env::start(backend).await;
    env.stack.put_sftp("/outbox/a.csv", &events("a", 3, 0));
    let rt = env
        .runtime(&task_events_job("batch = { max_wait = \"1h\" }"))
        .await;
    // Staged, waiting for its batch: now break line 2 of the staged part
    // the way a bad writer would (a duration that is not a number).
    let report = run_pass_draining(&rt, None, Drain::Due).await.unwrap();
    assert!(report.loaded.is_empty(), "{report:?}");
    let part = env
        .stack
        .staged_objects()
        .into_iter()
        .find(|k| k.contains("/staged/") && k.ends_with("part-00000.csv.gz"))
        .expect("a staged part");
    let text = env.stack.object_text(&part);
    let broken: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let mut fields: Vec<&str> = line.split(',').collect();
            if i == 1 {
                fields[7] = "oops";
            }
            fields.join(",")
        })
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, format!("{}\n", broken.join("\n")).as_bytes()).unwrap();
    std::fs::write(
        env.stack.s3.root.join(BUCKET).join(&part),
        gz.finish().unwrap(),
    )
    .unwrap();

    let report = run_pass(&rt, None).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let reason = &report.failed[0].2;
    assert!(
        reason.contains("/outbox/a.csv") && reason.contains("line 2 column duration_ms"),
        "the reason names the file, line and column: {reason}"
    );
    assert_eq!(env.db.count("task_events").await, 0);
    assert_eq!(
        env.db.count_where("ferry_files", "state = 'failed'").await,
        1
    );
    assert_eq!(
        env.db
            .count_where(
                "ferry_load_errors",
                "line_number = 2 AND column_name = 'duration_ms' AND path = '/outbox/a.csv'"
            )
            .await,
        1,
        "the COPY error is kept in ferry_load_errors"
    );
    env.finish().await;
}

async fn append_without_dimensions_keeps_every_row_and_its_load_metadata(backend: Backend) {
    // On PostgreSQL the example table fills the load id and time from its
    // column defaults; a target without them gets both on every line.
    append_case(backend, true).await;
    if backend == Backend::Postgres {
        append_case(backend, false).await;
    }
}

async fn append_case(backend: Backend, with_defaults: bool) {
    let env = Env::start(backend).await;
    // Quoted line breaks, quotes and commas inside values, a duplicate
    // event (append keeps both), and small parts so the file has several.
    let mut body = String::from(HEADER);
    for i in 0..40 {
        body.push_str(&format!(
            "e{i},t1,created,\"a\nb \"\"c\"\", d\",u1,jira,2026-03-01T10:00:00Z,{i},1,\"{{\"\"n\"\": {i}}}\"\n"
        ));
    }
    body.push_str("e0,t1,updated,done,u1,jira,2026-03-01T11:00:00Z,99,1,\n");
    env.stack.put_sftp("/outbox/a.csv", &body);
    let job = task_events_job("mode = \"append\"\npart_size = \"1KiB\"");
    let job = &job[..job.find("dimensions = [").expect("the job has dimensions")];
    let rt = env.runtime(job).await;
    if !with_defaults {
        env.db
            .client
            .batch_execute(&format!(
                "ALTER TABLE {} ALTER COLUMN ferry_loaded_at DROP DEFAULT, ALTER COLUMN ferry_load_id DROP DEFAULT",
                env.db.t("task_events")
            ))
            .await
            .unwrap();
    }
    let report = run_pass(&rt, None).await.unwrap();
    assert!(!report.has_failures(), "{report:?}");
    assert_eq!(report.loaded[0].rows, 41);
    let parts = env
        .stack
        .staged_objects()
        .into_iter()
        .filter(|k| k.contains("/staged/"))
        .count();
    assert!(parts > 1, "several parts: {parts}");
    let rows = env
        .db
        .client
        .query(
            &format!(
                "SELECT event_id, duration_ms, status, ferry_file, ferry_line, ferry_load_id, ferry_loaded_at IS NOT NULL \
                 FROM {} ORDER BY ferry_line",
                env.db.t("task_events")
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 41, "append keeps every row, duplicates too");
    let load_id: String = env
        .db
        .client
        .query_one(
            &format!("SELECT load_id FROM {}", env.db.t("ferry_loads")),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for (i, r) in rows.iter().enumerate() {
        let status: Option<String> = r.get(2);
        if i < 40 {
            assert_eq!(r.get::<_, String>(0), format!("e{i}"));
            assert_eq!(status.as_deref(), Some("a\nb \"c\", d"), "row {i}");
        } else {
            assert_eq!(r.get::<_, i64>(1), 99);
            assert_eq!(status.as_deref(), Some("done"));
        }
        assert_eq!(r.get::<_, String>(3), "/outbox/a.csv");
        assert_eq!(
            r.get::<_, Option<String>>(5).as_deref(),
            Some(load_id.as_str())
        );
        assert!(r.get::<_, bool>(6), "ferry_loaded_at is set");
    }
    env.finish().await;
}

async fn a_changed_file_is_reloaded_or_ignored_as_on_change_says(backend: Backend) {
    for policy in ["reload", "ignore"] {
        let env = Env::start(backend).await;
        let path = env.stack.put_sftp(
            "/outbox/a.csv",
            &format!("{HEADER}e1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,1,1,\n"),
        );
        let rt = env
            .runtime(&task_events_job(&format!("on_change = \"{policy}\"")))
            .await;
        assert_eq!(run_pass(&rt, None).await.unwrap().loaded.len(), 1);
        // The file changes on the server: new bytes, new mtime.
        std::fs::write(
            &path,
            format!("{HEADER}e1,t1,closed,done,u1,jira,2026-03-02T10:00:00Z,2,1,\ne2,t1,created,open,u1,jira,2026-03-02T10:00:00Z,3,1,\n"),
        )
        .unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
            .unwrap();
        for _ in 0..2 {
            let report = run_pass(&rt, None).await.unwrap();
            assert!(!report.has_failures(), "{report:?}");
        }
        let got = by_event(&env, "event_type").await;
        if policy == "reload" {
            assert_eq!(
                got,
                vec![
                    ("e1".into(), "closed".into()),
                    ("e2".into(), "created".into())
                ],
                "the new version replaced e1 by key and added e2"
            );
            assert_eq!(
                env.db.count_where("ferry_files", "state = 'loaded'").await,
                2
            );
        } else {
            assert_eq!(got, vec![("e1".into(), "created".into())]);
            assert_eq!(
                env.db.count_where("ferry_files", "state = 'skipped'").await,
                1
            );
        }
        env.finish().await;
    }
}

async fn a_file_of_many_parts_loads_once_with_two_replicas_at_it(backend: Backend) {
    let env = Env::start(backend).await;
    env.stack.put_sftp("/outbox/big.csv", &events("b", 600, 0));
    let (one, two) = (
        env.runtime(&task_events_job(MANY_PARTS)).await,
        env.runtime(&task_events_job(MANY_PARTS)).await,
    );
    // Both replicas stage and load the same file at once; the ledger lock
    // lets one commit and the other leave it out.
    let (a, b) = futures::join!(run_pass(&one, None), run_pass(&two, None));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(!a.has_failures() && !b.has_failures(), "{a:?} {b:?}");
    assert_eq!(a.loaded.len() + b.loaded.len(), 1, "{a:?} {b:?}");
    assert_eq!(a.skipped + b.skipped, 1, "{a:?} {b:?}");
    let staged = env.stack.staged_objects();
    assert!(
        staged.iter().filter(|k| k.contains("/part-")).count() >= 5,
        "{staged:?}"
    );
    assert_eq!(env.db.count("task_events").await, 600);
    assert_eq!(
        env.db.count_where("ferry_files", "state = 'loaded'").await,
        1
    );
    assert_eq!(env.db.count("ferry_loads").await, 1);
    let durations = by_event(&env, "duration_ms").await;
    assert_eq!(
        durations
            .iter()
            .map(|(_, d)| d.parse::<i64>().unwrap())
            .sum::<i64>(),
        (0..600).sum::<i64>()
    );
    env.finish().await;
}

async fn a_file_of_many_parts_with_too_many_rejects_fails_whole(backend: Backend) {
    let env = Env::start(backend).await;
    // Good rows first (several parts go up and into COPY), bad ones at
    // the end: the load must not commit what came before.
    let mut body = events("b", 400, 0);
    for i in 0..20 {
        body.push_str(&format!(
            "bad-{i},t1,created,open,u1,jira,2026-03-01T10:00:00Z,not-a-number,1,\n"
        ));
    }
    env.stack.put_sftp("/outbox/big.csv", &body);
    let rt = env.runtime(&task_events_job(MANY_PARTS)).await;
    let report = run_pass(&rt, None).await.unwrap();
    assert!(report.loaded.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(
        report.failed[0]
            .2
            .contains("20 rejected records, more than max_errors = 10"),
        "{report:?}"
    );
    assert_eq!(env.db.count("task_events").await, 0, "nothing committed");
    assert_eq!(env.db.count("ferry_loads").await, 0);
    assert_eq!(
        env.db.count_where("ferry_files", "state = 'failed'").await,
        1
    );
    assert_eq!(env.db.count("ferry_load_errors").await, 20);
    // Failed files wait for an operator: the next pass loads nothing.
    let again = run_pass(&rt, None).await.unwrap();
    assert!(again.loaded.is_empty() && again.skipped == 1, "{again:?}");
    env.finish().await;
}

async fn a_conflict_while_a_file_of_many_parts_loads_reruns_it_once(backend: Backend) {
    let env = Env::start(backend).await;
    env.stack.put_sftp("/outbox/big.csv", &events("b", 500, 0));
    let rt = env.runtime(&task_events_job(MANY_PARTS)).await;
    // PostgreSQL's 40001 on both: the Data API stand-in runs on
    // PostgreSQL too.
    conflict_once(
        &env,
        "could not serialize access due to concurrent update",
        "40001",
    )
    .await;
    let report = run_pass(&rt, None).await.unwrap();
    assert!(!report.has_failures(), "{report:?}");
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(report.loaded[0].rows, 500);
    assert_eq!(env.db.count("task_events").await, 500);
    assert_eq!(env.db.count("ferry_files").await, 1);
    assert_eq!(env.db.count("ferry_loads").await, 1);
    env.finish().await;
}

async fn post_load_checks_are_kept_in_the_ledger_and_never_undo_the_load(backend: Backend) {
    let env = Env::start(backend).await;
    env.stack.put_sftp("/outbox/a.csv", &events("a", 6, 0));
    let checks = r#"checks = [
  { name = "no_null_task", sql = "SELECT event_id FROM {target} WHERE ferry_load_id = :load_id AND task_id IS NULL" },
  { name = "count_matches", sql = "SELECT 1 WHERE (SELECT count(*) FROM {target} WHERE ferry_load_id = :load_id) <> CAST(:rows AS BIGINT)" },
  { name = "short_events", sql = "SELECT event_id FROM {target} WHERE ferry_load_id = :load_id AND duration_ms >= 4" },
  { name = "broken", sql = "SELECT nope FROM {schema}.no_such_table" },
  { name = "dollar_literal", sql = "SELECT event_id FROM {target} WHERE event_id LIKE '$%' AND ferry_load_id = :load_id" },
]"#;
    let rt = env.runtime(&task_events_job(checks)).await;
    let report = run_pass(&rt, None).await.unwrap();
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(env.db.count("task_events").await, 6, "the load stays");
    let rows = env
        .db
        .client
        .query(
            &format!(
                "SELECT c.check_name, c.passed, c.failing_rows, coalesce(c.detail, '') FROM {} c \
                 JOIN {} l ON l.load_id = c.load_id ORDER BY c.check_name",
                env.db.t("ferry_checks"),
                env.db.t("ferry_loads")
            ),
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, bool, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            ("broken".to_string(), false, 0),
            ("count_matches".to_string(), true, 0),
            ("dollar_literal".to_string(), true, 0),
            ("no_null_task".to_string(), true, 0),
            ("short_events".to_string(), false, 2),
        ]
    );
    let broken: String = rows[0].get(3);
    assert!(broken.starts_with("could not run:"), "{broken}");
    let short: String = rows[4].get(3);
    assert!(short.starts_with("returned 2 row(s)"), "{short}");
    env.finish().await;
}

async fn a_target_missing_a_mapped_column_fails_the_file_naming_the_column(backend: Backend) {
    let env = Env::start(backend).await;
    env.stack.put_sftp("/outbox/a.csv", &events("a", 3, 0));
    let rt = env.runtime(&task_events_job("")).await;
    // Someone changed the table under the job: a mapped column is gone.
    env.db
        .client
        .batch_execute(&format!(
            "ALTER TABLE {} DROP COLUMN duration_ms",
            env.db.t("task_events")
        ))
        .await
        .unwrap();
    let report = run_pass(&rt, None).await.unwrap();
    assert!(report.loaded.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let (_, path, reason) = &report.failed[0];
    assert_eq!(path, "/outbox/a.csv");
    assert!(
        reason.contains("has no column(s) duration_ms") && reason.contains("add them"),
        "the reason names the column and what to do: {reason}"
    );
    // Recorded failed, with the reason: the next pass leaves it alone
    // until an operator retries it (after fixing the table).
    assert_eq!(
        env.db
            .count_where(
                "ferry_files",
                "state = 'failed' AND error LIKE '%duration_ms%'"
            )
            .await,
        1
    );
    let again = run_pass(&rt, None).await.unwrap();
    assert!(
        again.loaded.is_empty() && again.failed.is_empty(),
        "{again:?}"
    );
    assert_eq!(env.db.count("task_events").await, 0);
    env.finish().await;
}

/// The ledger's writes, run through each backend's seam: a failure is
/// never recorded over a version another replica loaded, its reason and
/// error rows are cut to their columns (NULL stays NULL), COPY error rows
/// are kept only for a file loaded alone, and migrations are idempotent.
async fn the_ledger_records_failures_and_error_rows_alike_and_never_over_a_load(backend: Backend) {
    use ferry::ledger::{FailedFile, FileVersion};
    use ferry::normalize::RowError;
    let env = Env::start(backend).await;
    let mut body = events("a", 3, 0);
    body.push_str("bad,t1,created,open,u1,jira,not-a-time,1,1,\n");
    env.stack.put_sftp("/outbox/a.csv", &body);
    let rt = env.runtime(&task_events_job("")).await;
    let report = run_pass(&rt, None).await.unwrap();
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    let loaded = {
        let r = env
            .db
            .client
            .query_one(
                &format!(
                    "SELECT job, path, size, mtime FROM {}",
                    env.db.t("ferry_files")
                ),
                &[],
            )
            .await
            .unwrap();
        FileVersion {
            job: r.get(0),
            path: r.get(1),
            size: r.get::<_, i64>(2) as u64,
            mtime: r.get(3),
        }
    };
    let mtime = loaded.mtime;
    let rows = [
        RowError {
            line: 2,
            column: None,
            code: 1214,
            reason: "ü".repeat(700),
            raw_line: "x".repeat(2000),
            raw_value: None,
        },
        RowError {
            line: 3,
            column: Some("duration_ms".into()),
            code: 1207,
            reason: "not a number".into(),
            raw_line: "b,2".into(),
            raw_value: Some(String::new()),
        },
    ];
    let reason = "é".repeat(3000);
    let failed = |version| FailedFile {
        version,
        sha256: None,
        rejected: 2,
        reason: &reason,
        errors: &rows,
        rejects_key: None,
    };
    // Another replica loaded this version: its failure writes nothing.
    ferry::ledger::record_failed(&*rt.warehouse, &failed(&loaded))
        .await
        .unwrap();
    assert_eq!(env.db.count("ferry_files").await, 1);
    assert_eq!(env.db.count("ferry_load_errors").await, 1, "the load's own");

    // A new version fails: recorded once, even when recorded twice.
    let changed = FileVersion {
        mtime: mtime + 60,
        ..loaded.clone()
    };
    for _ in 0..2 {
        ferry::ledger::record_failed(&*rt.warehouse, &failed(&changed))
            .await
            .unwrap();
    }
    let r = env
        .db
        .client
        .query_one(
            &format!(
                "SELECT octet_length(error), sha256 IS NULL, rows_rejected FROM {} WHERE state = 'failed'",
                env.db.t("ferry_files")
            ),
            &[],
        )
        .await
        .unwrap();
    let (bytes, no_sha, rejected): (i32, bool, i64) = (r.get(0), r.get(1), r.get(2));
    assert!(
        bytes <= 4096 && bytes > 4000,
        "cut at a char boundary: {bytes}"
    );
    assert!(no_sha && rejected == 2);
    let kept = env
        .db
        .client
        .query(
            &format!(
                "SELECT DISTINCT line_number, column_name IS NULL, raw_field_value IS NULL, octet_length(reason), octet_length(raw_line) \
                 FROM {} WHERE load_id IS NULL AND mtime = $1 ORDER BY line_number",
                env.db.t("ferry_load_errors")
            ),
            &[&changed.mtime],
        )
        .await
        .unwrap();
    let kept: Vec<(i64, bool, bool, i32, i32)> = kept
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(kept[0].0, 2);
    assert!(kept[0].1 && kept[0].2, "NULL stays NULL: {kept:?}");
    assert!(kept[0].3 <= 1024 && kept[0].4 == 1024, "{kept:?}");
    assert_eq!(
        (kept[1].0, kept[1].1, kept[1].2),
        (3, false, false),
        "an empty value is not NULL"
    );

    // COPY error rows: kept for a file loaded alone, not for a batch.
    let copy_version = FileVersion {
        path: "/outbox/copy.csv".into(),
        ..loaded.clone()
    };
    ferry::ledger::keep_copy_errors(&*rt.warehouse, 2, &copy_version, &rows).await;
    ferry::ledger::keep_copy_errors(&*rt.warehouse, 1, &copy_version, &rows[1..]).await;
    assert_eq!(
        env.db
            .count_where("ferry_load_errors", "path = '/outbox/copy.csv'")
            .await,
        1
    );

    assert!(
        ferry::ledger::migrate(&*rt.warehouse)
            .await
            .unwrap()
            .is_empty()
    );
    let summary = ferry::ledger::verify_ledger(&*rt.warehouse).await.unwrap();
    let n = ferry::migrate::MIGRATIONS.len();
    assert!(
        summary.ends_with(&format!("{n} of {n} migrations applied")),
        "{summary}"
    );
    env.finish().await;
}

/// Leases (one lister per job with a work queue), on the warehouse's
/// clock: taken when free, renewed by the holder, refused to another
/// replica until it expires, taken over then, given up on request.
async fn a_job_has_one_lister_at_a_time_and_an_expired_lease_is_taken_over(backend: Backend) {
    use ferry::ledger::{LeaseTaken, leases, release_lease, take_lease};
    use std::time::Duration;
    let env = Env::start(backend).await;
    let rt = env.runtime(&task_events_job("")).await;
    let wh = &*rt.warehouse;
    let long = Duration::from_secs(60);
    let take = |job: &'static str, owner: &'static str, period: Duration| async move {
        take_lease(wh, job, owner, period).await.unwrap()
    };
    assert_eq!(take("j", "a", long).await, LeaseTaken::Free);
    assert_eq!(take("j", "b", long).await, LeaseTaken::Elsewhere);
    assert_eq!(take("j", "a", long).await, LeaseTaken::Renewed);
    assert_eq!(
        take("k", "b", long).await,
        LeaseTaken::Free,
        "one lease per job"
    );
    // a renews for one second only and then stops renewing.
    assert_eq!(
        take("j", "a", Duration::from_secs(1)).await,
        LeaseTaken::Renewed
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(take("j", "b", long).await, LeaseTaken::Expired);
    assert_eq!(
        take("j", "a", long).await,
        LeaseTaken::Elsewhere,
        "a lost it"
    );
    let all = leases(wh).await.unwrap();
    let owners: Vec<(&str, &str, bool)> = all
        .iter()
        .map(|l| (l.job.as_str(), l.owner.as_str(), l.expired))
        .collect();
    assert_eq!(owners, [("j", "b", false), ("k", "b", false)]);
    release_lease(wh, "j", "a").await.unwrap();
    assert_eq!(
        take("j", "a", long).await,
        LeaseTaken::Elsewhere,
        "only the holder gives it up"
    );
    release_lease(wh, "j", "b").await.unwrap();
    assert_eq!(take("j", "a", long).await, LeaseTaken::Free);
    env.finish().await;
}

/// Value contracts end to end: a row whose status is not `one_of` the
/// list, or whose task id breaks its pattern, is rejected into
/// `ferry_load_errors` with its file, line, column, code and rule; the
/// other rows load.
async fn a_value_contract_rejects_its_row_into_the_ledger_with_line_column_and_rule(
    backend: Backend,
) {
    let env = Env::start(backend).await;
    let mut body = events("a", 3, 0);
    body.push_str("a-x,t1,created,lost,u1,jira,2026-03-01T10:00:00Z,1,1,\n");
    body.push_str("a-y,T1,created,open,u1,jira,2026-03-01T10:00:00Z,1,1,\n");
    env.stack.put_sftp("/outbox/a.csv", &body);
    let job = task_events_job("")
        .replace(
            r#"{ name = "status", type = "varchar(32)" }"#,
            r#"{ name = "status", type = "varchar(32)", one_of = ["open", "done"] }"#,
        )
        .replace(
            r#"{ name = "task_id", type = "varchar(64)", required = true }"#,
            r#"{ name = "task_id", type = "varchar(64)", required = true, pattern = "t[0-9]+" }"#,
        );
    let rt = env.runtime(&job).await;
    let report = run_pass(&rt, None).await.unwrap();
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!((report.loaded[0].rows, report.loaded[0].rejected), (3, 2));
    let rows = env
        .db
        .client
        .query(
            &format!(
                "SELECT path, line_number, column_name, error_code, reason, raw_field_value FROM {} ORDER BY line_number",
                env.db.t("ferry_load_errors")
            ),
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, i64, String, i32, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0].0.as_str(), got[0].1, got[0].2.as_str(), got[0].3),
        ("/outbox/a.csv", 5, "status", 1230)
    );
    assert!(
        got[0]
            .4
            .contains("\"lost\" is not one of [\"open\", \"done\"] (one_of)"),
        "{got:?}"
    );
    assert_eq!(
        (got[1].1, got[1].2.as_str(), got[1].3, got[1].5.as_str()),
        (6, "task_id", 1231, "T1")
    );
    assert!(
        got[1].4.contains("does not match the pattern \"t[0-9]+\""),
        "{got:?}"
    );
    env.finish().await;
}

/// `auto_create`: the target and its dimensions are created from the
/// mapping (with the load columns) at start, loaded into, and a second
/// start changes nothing.
async fn auto_create_makes_the_target_and_dimensions_from_the_mapping(backend: Backend) {
    let env = Env::start(backend).await;
    env.stack.put_sftp("/outbox/a.csv", &events("a", 3, 0));
    let job =
        task_events_job("auto_create = true\ndistkey = \"task_id\"\nsortkey = [\"occurred_at\"]")
            .replace("target = \"task_events\"", "target = \"auto_events\"")
            .replace("table = \"dim_task\"", "table = \"auto_dim_task\"")
            .replace("table = \"dim_user\"", "table = \"auto_dim_user\"")
            .replace(
                "table = \"dim_source_system\"",
                "table = \"auto_dim_source\"",
            );
    let rt = env.runtime(&job).await;
    let report = run_pass(&rt, None).await.unwrap();
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(env.db.count("auto_events").await, 3);
    assert_eq!(
        env.db
            .count_where("auto_events", "ferry_load_id IS NOT NULL AND ferry_loaded_at IS NOT NULL AND ferry_file = '/outbox/a.csv'")
            .await,
        3,
        "the load columns are filled"
    );
    assert_eq!(env.db.count("auto_dim_task").await, 3, "t0, t1, t2");
    assert_eq!(env.db.count("auto_dim_user").await, 3);
    let columns = env
        .db
        .client
        .query(
            "SELECT column_name::text, is_nullable::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = 'auto_events' ORDER BY ordinal_position",
            &[&env.db.schema],
        )
        .await
        .unwrap();
    let columns: Vec<(String, String)> = columns.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(columns.len(), 14, "{columns:?}");
    assert_eq!(
        columns[0],
        ("event_id".into(), "NO".into()),
        "required is NOT NULL"
    );
    assert_eq!(columns[3], ("status".into(), "YES".into()));
    assert_eq!(columns[13].0, "ferry_loaded_at");
    drop(rt);
    let rt = env.runtime(&job).await;
    let again = run_pass(&rt, None).await.unwrap();
    assert!(
        again.loaded.is_empty() && !again.has_failures(),
        "{again:?}"
    );
    env.finish().await;
}

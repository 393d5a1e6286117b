//! The first end-to-end path: SFTP → normalize → S3 → PostgreSQL, with the
//! ledger written in the same transaction, against real servers.

use crate::harness::{Stack, TestDb, migrated_runtime, sha256_file, task_events_job};
use ferry::pipeline::{Runtime, run_pass};

const FILE_1: &str = "\u{feff}event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload
e1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,,1,\"{\"\"prio\"\":\"\"high\"\"}\"
e2,t1,updated,in_progress,u2,jira,2026-03-01T11:30:00+02:00,1500,2,
e3,t2,created,,u1,asana,2026-03-01 12:00:00,,,\"{\"\"note\"\":\"\"a, b\"\",
\"\"n\"\":1}\"
e1,t1,created,open,u1,jira,2026-03-01T10:05:00Z,10,1,
e4,t3,created,open,u3,jira,not-a-time,,,
";

async fn pass(rt: &Runtime) -> ferry::pipeline::PassReport {
    run_pass(rt, None).await.expect("pass runs")
}

#[tokio::test]
async fn loads_a_csv_once_with_rows_dims_ledger_and_errors() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let src = stack.put_sftp("/outbox/tasks_1.csv", FILE_1);
    stack.put_sftp("/outbox/ignored.txt", "not a csv");
    stack.put_sftp("/outbox/tasks_2.csv.part", "still uploading");
    let toml = stack.config_toml(&db, &task_events_job(""));
    let config = ferry::config::from_toml_str(&toml).expect("config is valid");

    let stager = ferry::stage::Stager::new(&config.staging).await;
    let wh = ferry::warehouse::connect(&config, &stager).await.unwrap();
    assert_eq!(
        ferry::ledger::migrate(&*wh).await.unwrap(),
        vec![
            "0001_ledger.sql",
            "0002_task_events.sql",
            "0003_rejects_key.sql",
            "0004_postgres_indexes.sql",
            "0005_checks.sql",
            "0006_postgres_load_defaults.sql",
            "0007_leases.sql",
            "0008_schema_changes.sql",
            "0009_status_indexes.sql",
        ]
    );
    assert!(
        ferry::ledger::migrate(&*wh).await.unwrap().is_empty(),
        "migrate is idempotent"
    );

    let rt = Runtime::start(config).await.expect("runtime starts");
    let report = pass(&rt).await;
    assert!(!report.has_failures(), "{report:?}");
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(report.loaded[0].rows, 4, "{report:?}");
    assert_eq!(report.loaded[0].rejected, 1);

    // The fact rows, exactly: e1 twice in the file, the later occurrence wins.
    let rows = db
        .client
        .query(
            &format!(
                "SELECT event_id, task_id, event_type, status, user_id, source_system, \
                 to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), duration_ms, attempt, payload, \
                 ferry_file, ferry_line, ferry_load_id IS NOT NULL FROM {} ORDER BY event_id",
                db.t("task_events")
            ),
            &[],
        )
        .await
        .unwrap();
    type Row = (
        (
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        ),
        (
            String,
            Option<i64>,
            Option<i32>,
            Option<String>,
            String,
            i64,
            bool,
        ),
    );
    let got: Vec<Row> = rows
        .iter()
        .map(|r| {
            (
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)),
                (
                    r.get(6),
                    r.get(7),
                    r.get(8),
                    r.get(9),
                    r.get(10),
                    r.get(11),
                    r.get(12),
                ),
            )
        })
        .collect();
    let s = |v: &str| Some(v.to_string());
    let want: Vec<Row> = vec![
        (
            (
                "e1".into(),
                "t1".into(),
                "created".into(),
                s("open"),
                s("u1"),
                s("jira"),
            ),
            (
                "2026-03-01 10:05:00".into(),
                Some(10),
                Some(1),
                None,
                "/outbox/tasks_1.csv".into(),
                6,
                true,
            ),
        ),
        (
            (
                "e2".into(),
                "t1".into(),
                "updated".into(),
                s("in_progress"),
                s("u2"),
                s("jira"),
            ),
            (
                "2026-03-01 09:30:00".into(),
                Some(1500),
                Some(2),
                None,
                "/outbox/tasks_1.csv".into(),
                3,
                true,
            ),
        ),
        (
            (
                "e3".into(),
                "t2".into(),
                "created".into(),
                s(""),
                s("u1"),
                s("asana"),
            ),
            (
                "2026-03-01 12:00:00".into(),
                None,
                Some(1),
                s("{\"note\":\"a, b\",\n\"n\":1}"),
                "/outbox/tasks_1.csv".into(),
                4,
                true,
            ),
        ),
    ];
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(got, want);

    // Dimensions: the latest event per task wins.
    let tasks = db
        .client
        .query(
            &format!(
                "SELECT task_id, last_status, last_event_type FROM {} ORDER BY task_id",
                db.t("dim_task")
            ),
            &[],
        )
        .await
        .unwrap();
    let tasks: Vec<(String, Option<String>, Option<String>)> = tasks
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        tasks,
        vec![
            ("t1".into(), s("open"), s("created")), // e1 at 10:05Z is later than e2 at 09:30Z
            ("t2".into(), s(""), s("created")),
        ]
    );
    let users: Vec<String> = db
        .client
        .query(
            &format!("SELECT user_id FROM {} ORDER BY 1", db.t("dim_user")),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(users, vec!["u1", "u2"]);
    let systems: Vec<String> = db
        .client
        .query(
            &format!(
                "SELECT source_system FROM {} ORDER BY 1",
                db.t("dim_source_system")
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(systems, vec!["asana", "jira"]);

    // The ledger: one loaded version with the raw file's hash.
    let ledger = db
        .client
        .query(
            &format!("SELECT path, size, state, sha256, rows_loaded, rows_rejected, staged_key, load_id, rejects_key FROM {}", db.t("ferry_files")),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(ledger.len(), 1);
    let r = &ledger[0];
    assert_eq!(r.get::<_, String>(0), "/outbox/tasks_1.csv");
    assert_eq!(r.get::<_, i64>(1), FILE_1.len() as i64);
    assert_eq!(r.get::<_, String>(2), "loaded");
    assert_eq!(r.get::<_, String>(3), sha256_file(&src));
    assert_eq!((r.get::<_, i64>(4), r.get::<_, i64>(5)), (4, 1));
    let staged: String = r.get(6);
    assert!(
        staged.starts_with("ferry/staged/task-events/") && staged.ends_with('/'),
        "{staged}"
    );
    let rejects_key: String = r.get(8);
    assert!(
        rejects_key.starts_with("ferry/rejects/task-events/"),
        "{rejects_key}"
    );
    assert_eq!(
        stack.staged_objects(),
        vec![rejects_key.clone(), format!("{staged}part-00000.csv.gz")]
    );
    // The rejects object: a CSV with a header, every rejected record.
    let rejects = stack.object_text(&rejects_key);
    let mut lines = rejects.lines();
    assert_eq!(
        lines.next(),
        Some("line,column,code,reason,raw_value,raw_line")
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("7,occurred_at,1206,") && row.contains("not-a-time"),
        "{rejects}"
    );
    assert_eq!(lines.next(), None);
    let load_id: String = r.get(7);
    let loads = db
        .client
        .query_one(
            &format!(
                "SELECT job, files, rows_loaded FROM {} WHERE load_id = $1",
                db.t("ferry_loads")
            ),
            &[&load_id],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            loads.get::<_, String>(0),
            loads.get::<_, i32>(1),
            loads.get::<_, i64>(2)
        ),
        ("task-events".into(), 1, 4)
    );

    // The rejected record, with its physical line (the quoted newline in
    // e3 makes e4 line 7) and column.
    let errors = db
        .client
        .query(
            &format!("SELECT line_number, column_name, error_code, reason, raw_field_value, load_id FROM {}", db.t("ferry_load_errors")),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!(e.get::<_, i64>(0), 7);
    assert_eq!(e.get::<_, String>(1), "occurred_at");
    assert_eq!(e.get::<_, i32>(2), 1206);
    assert!(
        e.get::<_, String>(3).contains("not a timestamp"),
        "{}",
        e.get::<_, String>(3)
    );
    assert_eq!(e.get::<_, String>(4), "not-a-time");
    assert_eq!(e.get::<_, String>(5), load_id);

    // A second pass loads nothing twice.
    let again = pass(&rt).await;
    assert!(again.loaded.is_empty(), "{again:?}");
    assert_eq!(again.skipped, 1);
    assert_eq!(again.waiting, 0, "the .part file never matches *.csv");
    let count: i64 = db.count("task_events").await;
    assert_eq!(count, 3);
    let versions: i64 = db.count("ferry_files").await;
    assert_eq!(versions, 1);
    assert_eq!(stack.staged_objects().len(), 2, "nothing staged again");
    assert!(src.exists(), "on_success = keep leaves the file");
    db.drop_schema().await;
}

#[tokio::test]
async fn a_changed_file_is_a_new_version_and_replaces_rows_by_key() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let header = HEADER;
    let (path, rt) = load_a_first_version(&stack, &db, "").await;

    change_file(
        &path,
        &format!(
            "{header}e1,t1,closed,done,u1,jira,2026-03-02T10:00:00Z,,,\ne2,t1,note,done,u1,jira,2026-03-02T10:01:00Z,,,\n"
        ),
    );
    let report = pass(&rt).await;
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(
        event_types(&db).await,
        vec![("e1".into(), "closed".into()), ("e2".into(), "note".into())]
    );
    let versions = db.count_where("ferry_files", "state = 'loaded'").await;
    assert_eq!(versions, 2);
    db.drop_schema().await;
}

const HEADER: &str =
    "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";

/// Puts `/outbox/a.csv` (one event, e1) on the server, starts a runtime
/// for the task-events job (plus `extra`) and loads it.
async fn load_a_first_version(
    stack: &Stack,
    db: &TestDb,
    extra: &str,
) -> (std::path::PathBuf, Runtime) {
    let path = stack.put_sftp(
        "/outbox/a.csv",
        &format!("{HEADER}e1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,,,\n"),
    );
    let toml = stack.config_toml(db, &task_events_job(extra));
    let rt = migrated_runtime(&toml).await;
    assert_eq!(pass(&rt).await.loaded.len(), 1);
    (path, rt)
}

/// `(event_id, event_type)` of the target, in key order.
async fn event_types(db: &TestDb) -> Vec<(String, String)> {
    db.client
        .query(
            &format!(
                "SELECT event_id, event_type FROM {} ORDER BY 1",
                db.t("task_events")
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Rewrites a source file with new content and an mtime an hour ago.
fn change_file(path: &std::path::Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
}

#[tokio::test]
async fn a_late_file_with_older_events_never_replaces_newer_rows() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let header = "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";
    stack.put_sftp(
        "/outbox/a_new.csv",
        &format!("{header}e1,t1,closed,done,u1,jira,2026-03-02T10:00:00Z,,,\ne2,t2,created,open,u1,jira,2026-03-01T09:00:00Z,,,\n"),
    );
    let toml = stack.config_toml(&db, &task_events_job(""));
    let rt = migrated_runtime(&toml).await;
    assert_eq!(pass(&rt).await.loaded.len(), 1);
    // Arrives later, holds an older e1 (dropped: the target's is newer)
    // and a newer e2 (replaces the target's).
    stack.put_sftp(
        "/outbox/b_late.csv",
        &format!("{header}e1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,,,\ne2,t2,updated,in_progress,u1,jira,2026-03-01T12:00:00Z,,,\n"),
    );
    let report = pass(&rt).await;
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(
        event_types(&db).await,
        vec![
            ("e1".into(), "closed".into()),
            ("e2".into(), "updated".into())
        ]
    );
    // The dimension's order-fed column keeps the newest too.
    let t1: (String, String) = {
        let r = db
            .client
            .query_one(
                &format!(
                    "SELECT last_status, to_char(last_event_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM {} WHERE task_id = 't1'",
                    db.t("dim_task")
                ),
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(t1, ("done".into(), "2026-03-02 10:00".into()));
    db.drop_schema().await;
}

#[tokio::test]
async fn on_change_ignore_records_a_changed_file_as_skipped_and_loads_nothing() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let header = HEADER;
    let (path, rt) = load_a_first_version(&stack, &db, "on_change = \"ignore\"").await;
    change_file(
        &path,
        &format!("{header}e1,t1,closed,done,u1,jira,2026-03-02T10:00:00Z,,,\n"),
    );
    for _ in 0..2 {
        let report = pass(&rt).await;
        assert!(report.loaded.is_empty(), "{report:?}");
        assert_eq!(report.skipped, 1, "{report:?}");
    }
    assert_eq!(
        event_types(&db).await,
        vec![("e1".into(), "created".into())]
    );
    let reason: String = db
        .client
        .query_one(
            &format!(
                "SELECT error FROM {} WHERE state = 'skipped'",
                db.t("ferry_files")
            ),
            &[],
        )
        .await
        .expect("one skipped row, however many passes")
        .get(0);
    assert!(
        reason.contains("changed after a version was loaded") && reason.contains("on_change"),
        "{reason}"
    );
    db.drop_schema().await;
}

#[tokio::test]
async fn an_scd2_dimension_keeps_every_version_and_ignores_late_older_rows() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let toml = stack.config_toml(&db, &crate::harness::task_events_job_with_scd2());
    let rt = migrated_runtime(&toml).await;
    db.client
        .batch_execute(&format!(
            "CREATE TABLE {} (task_id VARCHAR(64) NOT NULL, status VARCHAR(32), valid_from TIMESTAMPTZ, valid_to TIMESTAMPTZ, is_current BOOLEAN NOT NULL)",
            db.t("dim_task_history")
        ))
        .await
        .unwrap();
    let files = [
        "e1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,,,\n",
        "e2,t1,closed,done,u1,jira,2026-03-01T11:00:00Z,,,\ne3,t2,created,open,u1,jira,2026-03-01T11:00:00Z,,,\n",
        // t1 unchanged (no new version); t2 older than its current version.
        "e4,t1,noted,done,u1,jira,2026-03-01T12:00:00Z,,,\ne5,t2,created,queued,u1,jira,2026-03-01T09:00:00Z,,,\n",
    ];
    for (i, body) in files.iter().enumerate() {
        stack.put_sftp(&format!("/outbox/f{i}.csv"), &format!("{HEADER}{body}"));
        let report = pass(&rt).await;
        assert_eq!(report.loaded.len(), 1, "{report:?}");
    }
    let history: Vec<(String, String, String, Option<String>, bool)> = db
        .client
        .query(
            &format!(
                "SELECT task_id, status, to_char(valid_from AT TIME ZONE 'UTC', 'HH24:MI'), \
                 to_char(valid_to AT TIME ZONE 'UTC', 'HH24:MI'), is_current FROM {} ORDER BY 1, 3",
                db.t("dim_task_history")
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let v = |t: &str, s: &str, from: &str, to: Option<&str>, cur| {
        (
            t.to_string(),
            s.to_string(),
            from.to_string(),
            to.map(str::to_string),
            cur,
        )
    };
    assert_eq!(
        history,
        vec![
            v("t1", "open", "10:00", Some("11:00"), false),
            v("t1", "done", "11:00", None, true),
            v("t2", "open", "11:00", None, true),
        ]
    );
    db.drop_schema().await;
}

#[tokio::test]
async fn move_after_load_never_overwrites_and_happens_only_after_commit() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let header = "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";
    stack.put_sftp(
        "/outbox/a.csv",
        &format!("{header}e1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,,,\n"),
    );
    let earlier = stack.put_sftp("/done/a.csv", "an earlier file with the same name");
    let toml = stack.config_toml(
        &db,
        &task_events_job("on_success = { action = \"move\", to = \"/done\" }"),
    );
    let rt = migrated_runtime(&toml).await;
    let report = pass(&rt).await;
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert!(!stack.sftp.root.join("outbox/a.csv").exists());
    assert_eq!(
        std::fs::read_to_string(&earlier).unwrap(),
        "an earlier file with the same name"
    );
    assert!(stack.sftp.root.join("done/a.1.csv").exists());
    let final_path: String = db
        .client
        .query_one(
            &format!(
                "SELECT final_path FROM {} WHERE finalized_at IS NOT NULL",
                db.t("ferry_files")
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(final_path, "/done/a.1.csv");
    db.drop_schema().await;
}

#[tokio::test]
async fn a_missing_target_fails_the_file_with_a_clear_reason_and_is_not_retried_blindly() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let header = "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";
    let src = stack.put_sftp(
        "/outbox/a.csv",
        &format!("{header}e1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,,,\n"),
    );
    let toml = stack.config_toml(
        &db,
        &task_events_job("on_success = { action = \"delete\" }")
            .replace("target = \"task_events\"", "target = \"no_such_table\""),
    );
    let rt = migrated_runtime(&toml).await;
    let report = pass(&rt).await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let reason = &report.failed[0].2;
    assert!(
        reason.contains("no_such_table") && reason.contains("does not exist"),
        "{reason}"
    );
    assert!(src.exists(), "a failed file is never finalized");
    let row = db
        .client
        .query_one(
            &format!("SELECT state, error FROM {}", db.t("ferry_files")),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert!(row.get::<_, String>(1).contains("no_such_table"));
    let again = pass(&rt).await;
    assert!(again.failed.is_empty() && again.skipped == 1, "{again:?}");
    db.drop_schema().await;
}

#[tokio::test]
async fn too_many_rejected_rows_fail_the_file_and_keep_every_error_row() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let header = "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";
    let body: String = (0..3)
        .map(|i| format!("e{i},t1,created,open,u1,jira,2026-03-01T10:00:00Z,{i}x,,\n"))
        .collect();
    let src = stack.put_sftp("/outbox/bad.csv", &format!("\u{feff}{header}{body}"));
    let toml = stack
        .config_toml(&db, &task_events_job("archive_raw = true"))
        .replace("max_errors = 10", "max_errors = 2");
    let rt = migrated_runtime(&toml).await;
    let report = pass(&rt).await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(
        report.failed[0]
            .2
            .contains("3 rejected records, more than max_errors = 2"),
        "{}",
        report.failed[0].2
    );
    assert!(
        report.failed[0].2.contains("line 2 column duration_ms"),
        "{}",
        report.failed[0].2
    );
    let lines: Vec<i64> = db
        .client
        .query(
            &format!(
                "SELECT line_number FROM {} ORDER BY 1",
                db.t("ferry_load_errors")
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(lines, vec![2, 3, 4]);
    let count: i64 = db.count("task_events").await;
    assert_eq!(count, 0, "a failed file loads nothing");
    // Every rejected record is in the rejects object, named in the ledger
    // and in the reason; nothing was staged for loading.
    let row = db
        .client
        .query_one(
            &format!(
                "SELECT state, rejects_key, staged_key FROM {}",
                db.t("ferry_files")
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    let rejects_key: String = row.get(1);
    assert!(report.failed[0].2.contains(&rejects_key), "{report:?}");
    assert_eq!(row.get::<_, Option<String>>(2), None);
    assert_eq!(stack.staged_objects(), vec![rejects_key.clone()]);
    let rejects = stack.object_text(&rejects_key);
    assert_eq!(rejects.lines().count(), 4, "{rejects}");
    // archive_raw: the file's bytes, exactly, beside the rejects.
    let raw_key = rejects_key
        .replace("/rejects/", "/raw/")
        .replace(".csv.gz", "/bad.csv");
    let raw = std::fs::read(stack.s3.root.join(crate::harness::BUCKET).join(&raw_key))
        .unwrap_or_else(|e| panic!("raw copy {raw_key}: {e}"));
    assert!(raw == std::fs::read(&src).unwrap(), "raw copy differs");
    db.drop_schema().await;
}

#[tokio::test]
async fn a_large_file_is_staged_in_parts_and_loaded_whole_in_one_copy() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let header = "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";
    let body: String = (0..2000)
        .map(|i| {
            format!(
                "e{i},t{},created,open,u1,jira,2026-03-01T10:00:00Z,{i},,\n",
                i % 7
            )
        })
        .collect();
    stack.put_sftp("/outbox/big.csv", &format!("{header}{body}"));
    let toml = stack.config_toml(&db, &task_events_job("part_size = \"16KiB\""));
    let rt = migrated_runtime(&toml).await;
    let report = pass(&rt).await;
    assert!(!report.has_failures(), "{report:?}");
    assert_eq!(report.loaded[0].rows, 2000);
    let objects = stack.staged_objects();
    assert!(objects.len() >= 5, "{objects:?}");
    // Parts are cut between records: each holds whole CSV lines, and
    // together they hold every row once, in order.
    let mut ids = Vec::new();
    for key in &objects {
        let text = stack.object_text(key);
        assert!(text.ends_with('\n'), "{key} ends mid-record");
        assert!(text.len() < 16 * 1024 + 200, "{key}: {} bytes", text.len());
        ids.extend(
            text.lines()
                .map(|l| l.split(',').next().unwrap().to_string()),
        );
    }
    let want: Vec<String> = (0..2000).map(|i| format!("e{i}")).collect();
    assert_eq!(ids, want);
    let count: i64 = db.count("task_events").await;
    assert_eq!(count, 2000);
    let sum = db.sum("task_events", "duration_ms").await;
    assert_eq!(sum, (0..2000).sum::<i64>());
    db.drop_schema().await;
}

/// A task-event CSV of `n` rows, `event-00000000` on, with each row's
/// duration as `duration` writes it.
fn numbered_events(n: i64, duration: impl Fn(i64) -> String) -> String {
    let mut out = String::from(
        "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n",
    );
    for i in 0..n {
        out.push_str(&format!(
            "event-{i:08},task-{},created,open,user-{},jira,2026-03-01T10:00:00Z,{},1,\n",
            i % 97,
            i % 13,
            duration(i)
        ));
    }
    out
}

#[tokio::test]
async fn a_part_compressed_on_several_threads_is_one_gzip_stream_that_loads_exactly() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    // About 4 MiB of staged CSV: four blocks, each compressed on its own
    // thread, in one part.
    let n = 60_000i64;
    stack.put_sftp("/outbox/big.csv", &numbered_events(n, |i| i.to_string()));
    let toml = stack.config_toml(&db, &task_events_job("gzip_threads = 3"));
    let rt = migrated_runtime(&toml).await;
    let report = pass(&rt).await;
    assert!(!report.has_failures(), "{report:?}");
    assert_eq!(report.loaded[0].rows, n as u64);
    let objects = stack.staged_objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    // One gzip member: a reader that stops after the first member (as
    // some do) still reads every row.
    let packed = stack.object_bytes(&objects[0]);
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(packed.as_slice()),
        &mut text,
    )
    .unwrap();
    assert_eq!(text.lines().count() as i64, n);
    let (count, sum) = (
        db.count("task_events").await,
        db.sum("task_events", "duration_ms").await,
    );
    assert_eq!((count, sum), (n, (0..n).sum::<i64>()));
    db.drop_schema().await;
}

/// Three row writers side by side (a 5 MB file, many batches) through a
/// real SFTP server into PostgreSQL: every good row once, the bad ones
/// rejected, as one writer would.
#[tokio::test]
async fn rows_written_by_several_writers_load_exactly_once() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let n = 60_000i64;
    // Five rows spread through the file have a duration that is not a
    // number.
    let bad = |i: i64| i % 12_001 == 7;
    let events = numbered_events(n, |i| if bad(i) { "x".into() } else { i.to_string() });
    stack.put_sftp("/outbox/big.csv", &events);
    let toml = stack.config_toml(&db, &task_events_job("row_threads = 3"));
    let rt = migrated_runtime(&toml).await;
    let report = pass(&rt).await;
    assert!(!report.has_failures(), "{report:?}");
    let bad_rows = (0..n).filter(|&i| bad(i)).count() as u64;
    assert_eq!(bad_rows, 5);
    assert_eq!(report.loaded[0].rows, n as u64 - bad_rows);
    assert_eq!(report.loaded[0].rejected, bad_rows);
    let good: i64 = (0..n).filter(|&i| !bad(i)).sum();
    assert_eq!(db.count("task_events").await, n - bad_rows as i64);
    assert_eq!(
        db.count_where("task_events", "ferry_line IS NOT NULL")
            .await,
        n - bad_rows as i64
    );
    assert_eq!(db.sum("task_events", "duration_ms").await, good);
    db.drop_schema().await;
}

#[tokio::test]
async fn on_failure_move_takes_a_failed_file_out_of_the_drop_folder() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let header = "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";
    let bad: String = (0..11)
        .map(|i| format!("b{i},t1,created,open,u1,jira,not-a-time,1,1,\n"))
        .collect();
    stack.put_sftp("/outbox/bad.csv", &format!("{header}{bad}"));
    stack.put_sftp(
        "/outbox/good.csv",
        &format!("{header}g1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,1,1,\n"),
    );
    let toml = stack.config_toml(
        &db,
        &task_events_job("on_failure = { action = \"move\", to = \"/failed\" }"),
    );
    let rt = migrated_runtime(&toml).await;
    let report = pass(&rt).await;
    assert_eq!(
        (report.loaded.len(), report.failed.len()),
        (1, 1),
        "{report:?}"
    );
    // The failed file left the drop folder; the loaded one stays (keep).
    assert!(!stack.sftp.root.join("outbox/bad.csv").exists());
    assert!(stack.sftp.root.join("failed/bad.csv").exists());
    assert!(stack.sftp.root.join("outbox/good.csv").exists());
    assert_eq!(db.count_where("ferry_files", "state = 'failed'").await, 1);
    assert_eq!(db.count("ferry_load_errors").await, 11);
    let again = pass(&rt).await;
    assert!(
        again.failed.is_empty() && again.loaded.is_empty(),
        "{again:?}"
    );
    // Deleting a failed file is refused at validation.
    let e = ferry::config::from_toml_str(&stack.config_toml(
        &db,
        &task_events_job("on_failure = { action = \"delete\" }"),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("jobs[0].on_failure.action: \"delete\": expected keep or move"),
        "{e}"
    );
    db.drop_schema().await;
}

/// Post-load checks run in a READ ONLY transaction: one that would write
/// through a function (here `setval`) cannot run, is recorded as failed,
/// and changes nothing.
#[tokio::test]
async fn a_check_that_writes_cannot_run_and_changes_nothing() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    stack.put_sftp("/outbox/tasks_1.csv", FILE_1);
    db.client
        .batch_execute(&format!("CREATE SEQUENCE {}", db.t("s")))
        .await
        .unwrap();
    let checks =
        r#"checks = [{ name = "writes", sql = "SELECT 1 WHERE setval('{schema}.s', 42) > 0" }]"#;
    let rt = migrated_runtime(&stack.config_toml(&db, &task_events_job(checks))).await;
    let report = pass(&rt).await;
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    let row = db
        .client
        .query_one(
            &format!("SELECT passed, detail FROM {}", db.t("ferry_checks")),
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0));
    let detail: String = row.get(1);
    assert!(detail.contains("read-only transaction"), "{detail}");
    let last: bool = db
        .client
        .query_one(&format!("SELECT is_called FROM {}", db.t("s")), &[])
        .await
        .unwrap()
        .get(0);
    assert!(!last, "the sequence was never set");
    db.drop_schema().await;
}

/// `sslmode`: `require` loads over TLS (the server shows the session as
/// encrypted); `verify-full` refuses a certificate that is not signed by
/// a trusted CA for the host (the local server's self-signed one), with a
/// message that says what to check.
#[tokio::test]
async fn postgres_over_tls_require_encrypts_and_verify_full_checks_the_certificate() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let ssl_on: String = db.client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    assert_eq!(
        ssl_on, "on",
        "the test PostgreSQL must have ssl = on (Debian's default, with its snakeoil certificate)"
    );
    stack.put_sftp("/outbox/tasks_1.csv", FILE_1);
    let base = stack.config_toml(&db, &task_events_job(""));
    let schema_line = format!("schema = \"{}\"\n", db.schema);
    let require = base.replace(
        &schema_line,
        &format!("{schema_line}sslmode = \"require\"\n"),
    );
    let rt = migrated_runtime(&require).await;
    let report = pass(&rt).await;
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    let encrypted: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'ferry' AND s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "ferry's session is encrypted");
    drop(rt);
    let verify = base.replace(
        &schema_line,
        &format!("{schema_line}sslmode = \"verify-full\"\n"),
    );
    let config = ferry::config::from_toml_str(&verify).unwrap();
    let err = match ferry::pipeline::Runtime::start(config).await {
        Ok(_) => panic!("a self-signed certificate for another host name is refused"),
        Err(e) => e.chain(),
    };
    assert!(err.contains("verify-full"), "{err}");
    db.drop_schema().await;
}

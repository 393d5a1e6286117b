//! Settle rules and every source kind through the whole pipeline.

use crate::harness::{BUCKET, Stack, TestDb, migrated_runtime, task_events_job};
use ferry::pipeline::{PassReport, Runtime, run_pass};
use ferry::testkit::ftp::FtpServer;

const HEADER: &str =
    "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";

fn row(id: &str) -> String {
    format!("{id},t1,created,open,u1,jira,2026-03-01T10:00:00Z,,,\n")
}

async fn runtime(toml: &str) -> Runtime {
    migrated_runtime(toml).await
}

async fn pass(rt: &Runtime) -> PassReport {
    run_pass(rt, None).await.unwrap()
}

async fn count(db: &TestDb, table: &str) -> i64 {
    db.count(table).await
}

#[tokio::test]
async fn a_growing_file_is_loaded_only_once_it_stops_changing() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let path = stack.put_sftp("/outbox/a.csv", &format!("{HEADER}{}", row("e1")));
    let toml = stack.config_toml(&db, &task_events_job("")).replace(
        "settle = { min_age = \"0s\" }",
        "settle = { min_age = \"0s\", stable_polls = 1 }",
    );
    let rt = runtime(&toml).await;
    let r = pass(&rt).await;
    assert_eq!(
        (r.loaded.len(), r.waiting),
        (0, 1),
        "first sight: not stable yet"
    );
    std::fs::write(&path, format!("{HEADER}{}{}", row("e1"), row("e2"))).unwrap();
    let r = pass(&rt).await;
    assert_eq!(
        (r.loaded.len(), r.waiting),
        (0, 1),
        "it grew: still waiting"
    );
    let r = pass(&rt).await;
    assert_eq!(r.loaded.len(), 1, "unchanged for one poll: loaded");
    assert_eq!(r.loaded[0].rows, 2, "the whole file, not the first half");
    assert_eq!(count(&db, "task_events").await, 2);
}

#[tokio::test]
async fn a_marker_gated_file_waits_for_its_marker_and_both_move_together() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    stack.put_sftp("/outbox/a.csv", &format!("{HEADER}{}", row("e1")));
    let toml = stack
        .config_toml(
            &db,
            &task_events_job("on_success = { action = \"move\", to = \"/done\" }"),
        )
        .replace(
            "settle = { min_age = \"0s\" }",
            "settle = { min_age = \"0s\", marker_suffix = \".done\" }",
        );
    let rt = runtime(&toml).await;
    let r = pass(&rt).await;
    assert_eq!((r.loaded.len(), r.waiting), (0, 1));
    assert_eq!(
        count(&db, "ferry_files").await,
        0,
        "nothing is marked while waiting"
    );
    stack.put_sftp("/outbox/a.csv.done", "");
    let r = pass(&rt).await;
    assert_eq!(r.loaded.len(), 1, "{r:?}");
    assert!(stack.sftp.root.join("done/a.csv").exists());
    assert!(
        stack.sftp.root.join("done/a.csv.done").exists(),
        "the marker goes with its file"
    );
    assert!(!stack.sftp.root.join("outbox/a.csv.done").exists());
}

#[tokio::test]
async fn a_listing_error_loads_nothing_and_marks_nothing() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let toml = stack
        .config_toml(&db, &task_events_job(""))
        .replace("path = \"/outbox\"", "path = \"/no-such-folder\"");
    let rt = runtime(&toml).await;
    let r = pass(&rt).await;
    assert_eq!(r.job_errors.len(), 1, "{r:?}");
    assert!(r.job_errors[0].1.contains("/no-such-folder"), "{r:?}");
    assert_eq!(count(&db, "ferry_files").await, 0);
    assert_eq!(count(&db, "task_events").await, 0);
}

#[tokio::test]
async fn dated_folders_are_listed_and_a_missing_day_is_not_an_error() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let today = chrono::Utc::now()
        .date_naive()
        .format("%Y/%m/%d")
        .to_string();
    stack.put_sftp(
        &format!("/export/{today}/a.csv"),
        &format!("{HEADER}{}", row("e1")),
    );
    let toml = stack
        .config_toml(&db, &task_events_job("lookback_days = 2"))
        .replace("path = \"/outbox\"", "path = \"/export/{yyyy}/{mm}/{dd}\"");
    let rt = runtime(&toml).await;
    let r = pass(&rt).await;
    assert!(r.job_errors.is_empty(), "{r:?}");
    assert_eq!(r.loaded.len(), 1, "{r:?}");
    assert_eq!(r.loaded[0].path, format!("/export/{today}/a.csv"));
}

#[tokio::test]
async fn an_ftp_source_loads_end_to_end() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let ftp_root = stack.dir.path().join("ftp");
    std::fs::create_dir_all(ftp_root.join("outbox")).unwrap();
    std::fs::write(
        ftp_root.join("outbox/a.csv"),
        format!("{HEADER}{}{}", row("e1"), row("e2")).replace('\n', "\r\n"),
    )
    .unwrap();
    let ftp = FtpServer::start(&ftp_root, 0).await.unwrap();
    let toml = format!(
        "{}[sources.vendor]\nkind = \"ftp\"\nhost = \"127.0.0.1\"\nport = {}\n{}{}",
        stack.base_toml(),
        ftp.addr.port(),
        db.warehouse_toml(),
        task_events_job("on_success = { action = \"delete\" }")
            .replace("source = \"partner\"", "source = \"vendor\"")
    );
    let rt = runtime(&toml).await;
    let r = pass(&rt).await;
    assert_eq!(r.loaded.len(), 1, "{r:?}");
    assert_eq!(r.loaded[0].rows, 2);
    assert!(
        !ftp_root.join("outbox/a.csv").exists(),
        "deleted after the load"
    );
    assert_eq!(count(&db, "task_events").await, 2);
    assert!(pass(&rt).await.loaded.is_empty());
}

#[tokio::test]
async fn an_s3_prefix_source_loads_end_to_end_and_moves_objects() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let landing = stack.s3.root.join(BUCKET).join("landing/events");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::write(landing.join("a.csv"), format!("{HEADER}{}", row("e1"))).unwrap();
    std::fs::write(landing.join("b.csv"), format!("{HEADER}{}", row("e2"))).unwrap();
    let toml = format!(
        "{}[sources.landing]\nkind = \"s3\"\nbucket = \"{BUCKET}\"\nendpoint = \"{}\"\npath_style = true\naccess_key_id = \"{}\"\nsecret_access_key_file = \"{}\"\n{}{}",
        stack.base_toml(),
        stack.s3.endpoint(),
        ferry::testkit::s3::ACCESS_KEY,
        stack.secret_file.display(),
        db.warehouse_toml(),
        task_events_job("on_success = { action = \"move\", to = \"landing/loaded\" }")
            .replace("source = \"partner\"", "source = \"landing\"")
            .replace("path = \"/outbox\"", "path = \"landing/events\"")
    );
    let rt = runtime(&toml).await;
    let r = pass(&rt).await;
    assert_eq!(r.loaded.len(), 2, "{r:?}");
    assert_eq!(count(&db, "task_events").await, 2);
    let loaded = stack.s3.root.join(BUCKET).join("landing/loaded");
    assert!(loaded.join("a.csv").exists() && loaded.join("b.csv").exists());
    assert!(!landing.join("a.csv").exists());
    let again = pass(&rt).await;
    assert!(
        again.loaded.is_empty() && again.job_errors.is_empty(),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_local_folder_source_loads_and_skips_dot_files() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let root = stack.dir.path().join("drop");
    std::fs::create_dir_all(root.join("outbox/.staging")).unwrap();
    std::fs::write(root.join("outbox/a.csv"), format!("{HEADER}{}", row("e1"))).unwrap();
    std::fs::write(root.join("outbox/.b.csv"), format!("{HEADER}{}", row("e2"))).unwrap();
    std::fs::write(
        root.join("outbox/.staging/c.csv"),
        format!("{HEADER}{}", row("e3")),
    )
    .unwrap();
    let toml = format!(
        "{}[sources.drop]\nkind = \"local\"\nroot = \"{}\"\n{}{}",
        stack.base_toml(),
        root.display(),
        db.warehouse_toml(),
        task_events_job("recursive = true\npattern = \"**/*.csv\"")
            .replace("source = \"partner\"", "source = \"drop\"")
            .replace("pattern = \"*.csv\"\n", "")
            .replace(
                "settle = { min_age = \"0s\" }",
                "settle = { min_age = \"0s\", temp_patterns = [] }"
            )
    );
    let rt = runtime(&toml).await;
    let r = pass(&rt).await;
    assert_eq!(
        r.loaded.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        vec!["/outbox/a.csv"],
        "{r:?}"
    );
    assert_eq!(count(&db, "task_events").await, 1);
}

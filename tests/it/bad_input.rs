//! Bad input never blocks a job: each case ends with a clear, recorded
//! outcome (rows loaded and records rejected, or the file failed for good
//! with a reason that names the file, line and what to set), and a later
//! pass neither retries bad bytes nor fails the job. Regression tests are
//! named after the bug they pin.

use crate::harness::{Stack, TestDb, migrated_runtime, task_events_job};
use ferry::pipeline::{PassReport, Runtime, run_pass};

const HEADER: &str =
    "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";

async fn pass(rt: &Runtime) -> PassReport {
    run_pass(rt, None).await.expect("pass runs")
}

fn good_rows(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("e{i},t1,created,open,u1,jira,2026-03-01T10:00:00Z,{i},1,\n"))
        .collect()
}

fn put_bytes(stack: &Stack, path: &str, bytes: &[u8]) {
    let p = stack.sftp.root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

async fn state_and_error(db: &TestDb) -> (String, Option<String>) {
    let row = db
        .client
        .query_one(
            &format!("SELECT state, error FROM {}", db.t("ferry_files")),
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Regression: a `bigint` value of 1,100 characters made a reason that did
/// not fit `ferry_load_errors.reason VARCHAR(1024)`; recording it failed
/// the whole job on every pass and the good rows never loaded.
#[tokio::test]
async fn a_1100_character_bad_bigint_is_recorded_and_the_good_rows_load() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let huge = "9".repeat(1100);
    let bad = format!("ebad,t1,created,open,u1,jira,2026-03-01T10:00:00Z,{huge}x,1,\n");
    stack.put_sftp(
        "/outbox/huge.csv",
        &format!("{HEADER}{}{bad}{}", good_rows(0, 2), good_rows(2, 2)),
    );
    let rt = migrated_runtime(&stack.config_toml(&db, &task_events_job(""))).await;
    let report = pass(&rt).await;
    assert!(report.job_errors.is_empty(), "{report:?}");
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(report.loaded[0].rows, 4);
    assert_eq!(report.loaded[0].rejected, 1);
    assert_eq!(db.count("task_events").await, 4);
    let row = db
        .client
        .query_one(
            &format!(
                "SELECT line_number, column_name, reason, raw_field_value FROM {}",
                db.t("ferry_load_errors")
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 4);
    assert_eq!(row.get::<_, String>(1), "duration_ms");
    let reason: String = row.get(2);
    assert!(reason.len() <= 1024, "{} bytes", reason.len());
    assert!(
        reason.contains("… (1101 bytes) is not a 64-bit integer"),
        "the reason quotes a prefix and says how long the value is: {reason}"
    );
    let raw: String = row.get(3);
    assert_eq!(raw.len(), 1024, "the raw value is kept, capped");
    // The next pass skips the loaded file; the job stays healthy.
    let again = pass(&rt).await;
    assert!(!again.has_failures(), "{again:?}");
    assert_eq!(again.skipped, 1);
    db.drop_schema().await;
}

/// Many huge bad values in a file that fails for `max_errors`: every
/// reason recorded fits its column, the failure is recorded once, and the
/// other file of the job loads in the same pass.
#[tokio::test]
async fn a_file_of_huge_bad_values_fails_alone_and_its_reasons_fit() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let bad: String = (0..50)
        .map(|i| {
            format!(
                "b{i},t1,created,open,u1,jira,{}Z,1,1,\n",
                "ü".repeat(700) // 1,400 bytes, no timestamp
            )
        })
        .collect();
    stack.put_sftp("/outbox/a_bad.csv", &format!("{HEADER}{bad}"));
    stack.put_sftp(
        "/outbox/b_good.csv",
        &format!("{HEADER}{}", good_rows(0, 3)),
    );
    let rt = migrated_runtime(&stack.config_toml(&db, &task_events_job(""))).await;
    let report = pass(&rt).await;
    assert!(report.job_errors.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].1.ends_with("a_bad.csv"));
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(db.count("task_events").await, 3);
    assert_eq!(db.count("ferry_load_errors").await, 50);
    let longest: i32 = db
        .client
        .query_one(
            &format!(
                "SELECT max(octet_length(reason)) FROM {}",
                db.t("ferry_load_errors")
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(longest <= 1024, "{longest}");
    let again = pass(&rt).await;
    assert!(
        !again.has_failures(),
        "a failed file is not retried: {again:?}"
    );
    db.drop_schema().await;
}

/// Regression: a CSV header that is not UTF-8 was transient (retried four
/// times every pass, forever) and its reason was a Rust debug dump.
#[tokio::test]
async fn a_header_that_is_not_utf8_fails_for_good_naming_line_field_and_setting() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let mut bytes = b"event_id,task_id,ev\xe9nt_type".to_vec();
    bytes.extend_from_slice(HEADER.split_once("event_type").unwrap().1.as_bytes());
    bytes.extend_from_slice(good_rows(0, 2).as_bytes());
    put_bytes(&stack, "/outbox/latin1.csv", &bytes);
    let rt = migrated_runtime(&stack.config_toml(&db, &task_events_job(""))).await;
    let report = pass(&rt).await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let why = &report.failed[0].2;
    assert!(
        why.contains("latin1.csv")
            && why.contains("line 1, field 3")
            && why.contains("set format.encoding"),
        "{why}"
    );
    assert!(!why.contains("Position"), "no debug dump: {why}");
    let (state, error) = state_and_error(&db).await;
    assert_eq!(state, "failed", "bad bytes fail for good");
    assert!(error.unwrap().contains("not valid UTF-8"));
    let again = pass(&rt).await;
    assert_eq!(again.skipped, 1, "not fetched again: {again:?}");
    assert!(again.failed.is_empty());
    db.drop_schema().await;
}

/// Regression: a truncated gzip was transient and retried every pass.
#[tokio::test]
async fn a_truncated_gzip_fails_for_good_with_a_reason() {
    use std::io::Write;
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(format!("{HEADER}{}", good_rows(0, 5000)).as_bytes())
        .unwrap();
    let whole = gz.finish().unwrap();
    put_bytes(&stack, "/outbox/cut.csv", &whole[..whole.len() / 2]);
    let rt = migrated_runtime(&stack.config_toml(&db, &task_events_job(""))).await;
    let report = pass(&rt).await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let why = &report.failed[0].2;
    assert!(
        why.contains("cut.csv") && why.contains("gzip data is truncated or corrupt"),
        "{why}"
    );
    assert_eq!(state_and_error(&db).await.0, "failed");
    assert_eq!(
        db.count("task_events").await,
        0,
        "nothing of a cut file loads"
    );
    let again = pass(&rt).await;
    assert_eq!(again.skipped, 1, "{again:?}");
    db.drop_schema().await;
}

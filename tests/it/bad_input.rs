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

/// A job from `task_events_job` reading `folder` as `format` (a TOML
/// value), files matching `pattern`.
fn job_for(name: &str, folder: &str, pattern: &str, format: &str) -> String {
    task_events_job(&format!(
        "format = {format}\nlimits = {{ max_record_bytes = \"64KiB\", max_compression_ratio = 50 }}"
    ))
    .replace("name = \"task-events\"", &format!("name = \"{name}\""))
    .replace("path = \"/outbox\"", &format!("path = \"{folder}\""))
    .replace("pattern = \"*.csv\"", &format!("pattern = \"{pattern}\""))
}

/// The bad-input corpus through one pass of three jobs: every file gets a
/// clear, recorded outcome (loaded with its good rows and its rejects, or
/// failed for good with a reason), no job fails, and the next pass
/// fetches nothing again.
#[tokio::test]
async fn every_bad_input_gets_a_recorded_outcome_and_the_good_rows_load() {
    use std::io::Write;
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let good = good_rows(0, 3);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("/csv/empty.csv", Vec::new()),
        ("/csv/header_only.csv", HEADER.as_bytes().to_vec()),
        (
            "/csv/ragged.csv",
            format!("{HEADER}{}r1,t1,created\n", good_rows(10, 2)).into_bytes(),
        ),
        (
            "/csv/bad_types.csv",
            format!(
                "{HEADER}{}b1,t1,created,open,u1,jira,yesterday,12x,one,\n",
                good_rows(20, 2)
            )
            .into_bytes(),
        ),
        ("/csv/body_not_utf8.csv", {
            let mut b = format!("{HEADER}{}", good_rows(30, 2)).into_bytes();
            b.extend_from_slice(b"u1,t1,cr\xe9ated,open,u1,jira,2026-03-01T10:00:00Z,1,1,\n");
            b
        }),
        ("/csv/bomb.csv", {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(HEADER.as_bytes()).unwrap();
            let row = good_rows(0, 1);
            for _ in 0..100_000 {
                gz.write_all(row.as_bytes()).unwrap();
            }
            gz.finish().unwrap()
        }),
        ("/csv/good.csv", format!("{HEADER}{good}").into_bytes()),
        (
            "/csv/huge_record.csv",
            format!(
                "{HEADER}{}h1,t1,created,\"{}\nmore\",u1,jira,2026-03-01T10:00:00Z,1,1,\n{}",
                good_rows(40, 1),
                "x".repeat(200_000),
                good_rows(41, 1)
            )
            .into_bytes(),
        ),
        (
            "/nd/huge_record.ndjson",
            format!(
                "{}\n{{\"event_id\":\"{}\"}}\n{}\n",
                r#"{"event_id":"n1","task_id":"t1","event_type":"created","occurred_at":"2026-03-01T10:00:00Z"}"#,
                "x".repeat(200_000),
                r#"{"event_id":"n2","task_id":"t1","event_type":"created","occurred_at":"2026-03-01T10:00:00Z"}"#
            )
            .into_bytes(),
        ),
        (
            "/xml/entity_bomb.xml",
            b"<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">]><events><e><event_id>&b;</event_id></e></events>".to_vec(),
        ),
        (
            "/xml/deep.xml",
            format!("<events><e>{}x{}</e></events>", "<d>".repeat(100), "</d>".repeat(100))
                .into_bytes(),
        ),
    ];
    for (path, bytes) in &files {
        put_bytes(&stack, path, bytes);
    }
    let jobs = format!(
        "{}{}{}",
        job_for("csv", "/csv", "*.csv", "{ kind = \"csv\" }"),
        job_for("nd", "/nd", "*.ndjson", "{ kind = \"ndjson\" }"),
        job_for(
            "xml",
            "/xml",
            "*.xml",
            "{ kind = \"xml\", record_path = \"/events/e\" }"
        ),
    );
    let rt = migrated_runtime(&stack.config_toml(&db, &jobs)).await;
    let report = pass(&rt).await;
    assert!(report.job_errors.is_empty(), "no job fails: {report:?}");
    let loaded: std::collections::HashMap<&str, (u64, u64)> = report
        .loaded
        .iter()
        .map(|f| (ferry::source::file_name(&f.path), (f.rows, f.rejected)))
        .collect();
    let failed: std::collections::HashMap<&str, &str> = report
        .failed
        .iter()
        .map(|(_, p, e)| (ferry::source::file_name(p), e.as_str()))
        .collect();
    assert_eq!(loaded.get("empty.csv"), Some(&(0, 0)), "{report:?}");
    assert_eq!(loaded.get("header_only.csv"), Some(&(0, 0)));
    assert_eq!(loaded.get("ragged.csv"), Some(&(2, 1)));
    assert_eq!(loaded.get("bad_types.csv"), Some(&(2, 1)));
    assert_eq!(loaded.get("body_not_utf8.csv"), Some(&(2, 1)));
    assert_eq!(loaded.get("good.csv"), Some(&(3, 0)));
    assert_eq!(loaded.get("huge_record.csv"), Some(&(2, 1)), "{report:?}");
    assert_eq!(
        loaded.get("huge_record.ndjson"),
        Some(&(2, 1)),
        "{report:?}"
    );
    assert!(
        failed["bomb.csv"].contains("max_compression_ratio"),
        "{failed:?}"
    );
    assert!(failed["entity_bomb.xml"].contains("DTD"), "{failed:?}");
    assert!(failed["deep.xml"].contains("max_xml_depth"), "{failed:?}");
    assert_eq!(report.failed.len(), 3, "{report:?}");
    assert_eq!(db.count("task_events").await, 2 + 2 + 2 + 3 + 2 + 2);
    // Every rejected record is kept with its line and a reason.
    assert_eq!(db.count("ferry_load_errors").await, 5);
    let reasons: Vec<String> = db
        .client
        .query(
            &format!(
                "SELECT reason FROM {} ORDER BY path",
                db.t("ferry_load_errors")
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("not valid UTF-8")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("max_record_bytes")),
        "{reasons:?}"
    );
    let again = pass(&rt).await;
    assert!(!again.has_failures(), "{again:?}");
    assert_eq!(
        again.skipped,
        files.len(),
        "nothing is fetched again: {again:?}"
    );
    db.drop_schema().await;
}

//! `ferry audit` on both backends: nothing on a clean run; then each kind
//! of discrepancy planted behind ferry's back is found and named — target
//! rows deleted (the load), a settled file not loaded, a failed file, an
//! orphan staged object, an excluded file — and `--since` in the future
//! sees none of it. The command exits 1 with its table.

use crate::harness::{BUCKET, Backend, Env, task_events_job};
use ferry::commands::audit::{Finding, audit};
use ferry::pipeline::run_pass;

crate::harness::both_backends!(the_audit_finds_what_was_planted_and_nothing_on_a_clean_run);

const HEADER: &str =
    "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";

fn rows(prefix: &str, n: usize) -> String {
    let mut s = String::from(HEADER);
    for i in 0..n {
        s.push_str(&format!(
            "{prefix}{i},t1,created,open,u1,jira,2026-03-01T10:00:00Z,{i},1,\n"
        ));
    }
    s
}

fn off(findings: &[Finding]) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = findings
        .iter()
        .filter(|f| f.off)
        .map(|f| (f.kind, f.subject.clone()))
        .collect();
    v.sort();
    v
}

async fn the_audit_finds_what_was_planted_and_nothing_on_a_clean_run(backend: Backend) {
    let env = Env::start(backend).await;
    env.stack.put_sftp("/outbox/a.csv", &rows("a", 3));
    env.stack.put_sftp("/outbox/b.csv", &rows("b", 2));
    let job = task_events_job("mode = \"append\"\narchive_raw = true\nexclude = [\"skip-*\"]");
    let rt = env.runtime(&job).await;
    let report = run_pass(&rt, None).await.unwrap();
    assert_eq!(report.loaded.len(), 2, "{report:?}");

    let clean = audit(&rt, None, None).await.unwrap();
    assert_eq!(off(&clean), [], "a clean run: {clean:#?}");

    // a.csv and b.csv loaded in one batch: one load of 5 rows.
    // Planted: a failed file (loaded through a pass), then behind ferry's
    // back a settled file, an excluded one, a deleted target row, an orphan.
    let bad: String = (0..12)
        .map(|i| format!("d{i},t9,created,open,u9,jira,never,1,1,\n"))
        .collect();
    env.stack
        .put_sftp("/outbox/d.csv", &format!("{HEADER}{bad}"));
    let report = run_pass(&rt, None).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    env.stack.put_sftp("/outbox/c.csv", &rows("c", 1));
    env.stack.put_sftp("/outbox/skip-1.csv", &rows("s", 1));
    let load_a = env
        .db
        .texts(
            &format!(
                "SELECT load_id FROM {} WHERE path = '/outbox/a.csv'",
                env.db.t("ferry_files")
            ),
            &[],
        )
        .await
        .remove(0);
    env.db
        .execute(&format!(
            "DELETE FROM {} WHERE event_id = 'a1'",
            env.db.t("task_events")
        ))
        .await;
    let orphan =
        "ferry/staged/task-events/2026/12/07/zzz.csv-0123456789ab-deadbeef/part-00000.csv.gz";
    let path = env.stack.s3.root.join(BUCKET).join(orphan);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"not really gzip").unwrap();

    let found = audit(&rt, None, None).await.unwrap();
    assert_eq!(
        off(&found),
        [
            ("failed", "/outbox/d.csv".to_string()),
            ("not_loaded", "/outbox/c.csv".to_string()),
            (
                "orphan_object",
                "s3://ferry-test/ferry/staged/task-events/2026/12/07/zzz.csv-0123456789ab-deadbeef/".to_string()
            ),
            ("rows_mismatch", load_a.clone()),
        ],
        "{found:#?}"
    );
    let mismatch = found.iter().find(|f| f.kind == "rows_mismatch").unwrap();
    assert!(
        mismatch
            .detail
            .contains("recorded 5 rows; task_events holds 4 with its ferry_load_id (missing 1)"),
        "{}",
        mismatch.detail
    );
    assert!(
        found
            .iter()
            .any(|f| f.kind == "excluded" && f.subject == "/outbox/skip-1.csv" && !f.off),
        "{found:#?}"
    );
    let failed = found.iter().find(|f| f.kind == "failed").unwrap();
    assert!(
        failed
            .detail
            .contains("ferry retry --job task-events /outbox/d.csv"),
        "{}",
        failed.detail
    );

    // Nothing happened after an hour from now.
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(off(&audit(&rt, None, Some(later)).await.unwrap()), []);

    // The command: the table and exit 1.
    let config = env.stack.write_config(&env.config_toml(&job));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "audit",
            "--job",
            "task-events",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("rows_mismatch") && stdout.contains(&load_a),
        "{stdout}"
    );
    assert!(stdout.contains("4 finding(s) off"), "{stdout}");
    let json = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "audit",
            "--json",
            "--since",
            "1h",
        ])
        .output()
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        parsed
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["finding"] == "not_loaded")
    );
    env.finish().await;
}

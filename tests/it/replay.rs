//! `ferry replay` on both backends: rows lost from a merge target come
//! back from the raw archive, as new versions named by their raw copies;
//! a second replay of the same copies loads nothing; a dry run loads
//! nothing; `--path` narrows the window; an append job is refused without
//! `--append-again`, and a version without a raw copy is named.

use crate::harness::{Backend, Env, task_events_job};
use ferry::commands::replay::{Window, plan, replay, with_raw_source};
use ferry::pipeline::run_pass;

crate::harness::both_backends!(replay_loads_again_from_the_raw_archive);

const HEADER: &str =
    "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";

fn window(path: Option<&str>) -> Window {
    Window {
        job: "task-events".into(),
        since: chrono::Utc::now() - chrono::Duration::hours(1),
        until: chrono::Utc::now() + chrono::Duration::hours(1),
        path: path.map(|p| globset::Glob::new(p).unwrap().compile_matcher()),
    }
}

async fn replay_loads_again_from_the_raw_archive(backend: Backend) {
    let env = Env::start(backend).await;
    env.stack.put_sftp(
        "/outbox/a.csv",
        &format!("{HEADER}a1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,1,1,\na2,t1,updated,done,u1,jira,2026-03-01T11:00:00Z,2,1,\n"),
    );
    env.stack.put_sftp(
        "/outbox/b.csv",
        &format!("{HEADER}b1,t2,created,open,u2,jira,2026-03-01T10:00:00Z,1,1,\n"),
    );
    let job = task_events_job("archive_raw = true");
    let toml = env.config_toml(&job);
    let first = env.runtime(&job).await;
    assert_eq!(run_pass(&first, None).await.unwrap().loaded.len(), 2);
    drop(first);
    // Rows lost behind ferry's back.
    env.db
        .execute(&format!("DELETE FROM {}", env.db.t("task_events")))
        .await;

    let cfg = with_raw_source(ferry::config::from_toml_str(&toml).unwrap());
    let rt = ferry::pipeline::Runtime::start(cfg).await.unwrap();
    let job = rt.config.jobs[0].clone();
    let all = plan(&rt, &window(None)).await.unwrap();
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all.iter().all(|p| p.raw.is_ok()), "{all:#?}");
    let only_a = plan(&rt, &window(Some("*/a.csv"))).await.unwrap();
    assert_eq!(only_a.len(), 1);
    assert_eq!(only_a[0].path, "/outbox/a.csv");

    let report = replay(&rt, &job, &all, false).await.unwrap();
    assert_eq!(
        (report.loaded.len(), report.failed.len()),
        (2, 0),
        "{report:?}"
    );
    assert_eq!(env.db.count("task_events").await, 3, "every row is back");
    let files = env
        .db
        .texts(
            &format!(
                "SELECT DISTINCT ferry_file FROM {} ORDER BY 1",
                env.db.t("task_events")
            ),
            &[],
        )
        .await;
    assert_eq!(files.len(), 2);
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("ferry/raw/task-events/")),
        "the rows name the raw copies they came from: {files:?}"
    );
    // The same copies again: already loaded, nothing doubles; and the
    // replayed versions are not planned again.
    let again = replay(&rt, &job, &all, false).await.unwrap();
    assert_eq!(again.loaded.len(), 0, "{again:?}");
    assert_eq!(env.db.count("task_events").await, 3);
    assert_eq!(plan(&rt, &window(None)).await.unwrap().len(), 2);

    // An append job is refused without --append-again.
    let mut append = (*job).clone();
    append.mode = ferry::config::LoadMode::Append;
    let refused = replay(&rt, &append, &all, false).await.unwrap_err();
    assert!(refused.to_string().contains("--append-again"), "{refused}");

    // The command's dry run lists the plan and loads nothing.
    let config = env.stack.write_config(&toml);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "replay",
            "--job",
            "task-events",
            "--since",
            "1h",
            "--dry-run",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("/outbox/a.csv")
            && stdout.contains("s3://ferry-test/ferry/raw/task-events/"),
        "{stdout}"
    );
    assert!(
        stdout.contains("dry run: 2 version(s) would load again"),
        "{stdout}"
    );
    assert_eq!(env.db.count("task_events").await, 3);
    env.finish().await;
}

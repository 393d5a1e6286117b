//! Crash safety: the `ferry run` binary is killed with SIGKILL at random
//! moments, over and over, while it downloads, stages, loads and moves
//! many files. After a final clean pass the target holds every expected
//! row exactly once, the ledger has every file loaded exactly once, and
//! every source file has been moved (finalize happens only after commit,
//! and a crash before it is finished on the next pass).

use crate::harness::{Stack, TestDb, task_events_job};
use ferry::rng::XorShift;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FILES: usize = 150;
const ROWS: usize = 200;
const KILLS: usize = 24;

/// The `ferry` binary on `config` with `args`, its output dropped.
pub(crate) fn ferry(config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_never_loses_or_doubles_a_row() {
    // Small batches, so kills land between and inside loads.
    kill_again_and_again("batch = { max_files = 2 }").await
}

/// The same with every file larger than one part: each loads alone, its
/// COPY running while it is still being normalized and uploaded (on
/// PostgreSQL), so kills land inside streamed loads.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_streamed_loads_never_loses_or_doubles_a_row() {
    kill_again_and_again("part_size = \"4KiB\"").await
}

/// Runs `ferry run` with `job_extra` in the job, SIGKILLs it at random
/// moments, finishes with clean passes and checks every row and file.
async fn kill_again_and_again(job_extra: &str) {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let seed = std::env::var("FERRY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    // Printed so that a failure can be replayed with FERRY_CRASH_SEED.
    eprintln!("crash test seed: FERRY_CRASH_SEED={seed}");
    let mut rng = XorShift(seed);

    // Each file: ROWS events of its own, the first one twice (the later
    // occurrence wins), a few with a JSON payload that needs quoting.
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for f in 0..FILES {
        let mut body = String::from(
            "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n",
        );
        for r in 0..ROWS {
            let id = format!("f{f:03}-e{r:03}");
            let duration = (f * 1000 + r) as i64;
            body.push_str(&format!(
                "{id},t{},created,open,u{},jira,2026-03-01T10:{:02}:00Z,{duration},1,\"{{\"\"n\"\": {r}}}\"\n",
                f % 10,
                r % 7,
                r % 60
            ));
            expected.insert(id, duration);
        }
        // The first event again, later and with another duration.
        let id = format!("f{f:03}-e000");
        body.push_str(&format!(
            "{id},t{},updated,done,u1,jira,2026-03-01T11:00:00Z,{},1,\n",
            f % 10,
            f * 1000 + 999
        ));
        expected.insert(id, (f * 1000 + 999) as i64);
        stack.put_sftp(&format!("/outbox/batch_{f:03}.csv"), &body);
    }

    let cfg = stack.write_config(
        &stack
            .config_toml(
                &db,
                &task_events_job(&format!(
                    "on_success = {{ action = \"move\", to = \"/outbox/loaded\" }}\n{job_extra}"
                )),
            )
            // No listener: other tests run daemons at the same time.
            .replace(
                "poll_interval = \"1s\"",
                "poll_interval = \"50ms\"\nhttp_listen = \"\"",
            ),
    );
    let run_to_end = |args: &'static [&'static str]| {
        let cfg = cfg.clone();
        async move {
            tokio::task::spawn_blocking(move || ferry(&cfg, args).status().unwrap())
                .await
                .unwrap()
        }
    };
    assert!(run_to_end(&["migrate"]).await.success(), "migrate");

    // Start, wait a random moment, SIGKILL; again and again: at least
    // KILLS times, and on until some files have loaded (a slow machine
    // may need more starts to get past connecting).
    let loaded_now = || db.count_where("ferry_files", "state = 'loaded'");
    let started = Instant::now();
    let mut kills = 0;
    while kills < KILLS || (loaded_now().await == 0 && kills < 4 * KILLS) {
        // The fewer files are left, the sooner the kill: a fast machine
        // must not finish every file before the kills are done.
        let left = FILES as u64 - (loaded_now().await as u64).min(FILES as u64);
        let mut child = ferry(&cfg, &["run"]).spawn().expect("ferry run starts");
        let wait = Duration::from_millis(40 + rng.below(20 + 580 * left / FILES as u64));
        tokio::time::sleep(wait).await;
        if let Some(status) = child.try_wait().unwrap() {
            panic!("ferry run exited by itself ({status}) before kill {kills}");
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        kills += 1;
    }
    let during = loaded_now().await;
    eprintln!(
        "{kills} kills in {:?}; {during} of {FILES} files loaded before the clean pass",
        started.elapsed()
    );
    assert!(
        during > 0 && (during as usize) < FILES,
        "the kills landed while files were loading ({during} of {FILES} loaded)"
    );

    // A clean finish: passes until a pass has nothing left to do.
    for _ in 0..5 {
        assert!(
            run_to_end(&["once"]).await.success(),
            "ferry once after the crashes"
        );
        if std::fs::read_dir(stack.sftp.root.join("outbox"))
            .unwrap()
            .flatten()
            .all(|e| e.path().is_dir())
        {
            break;
        }
    }

    // Every expected row exactly once, with the latest version.
    let rows = db
        .client
        .query(
            &format!(
                "SELECT event_id, duration_ms, count(*) OVER (PARTITION BY event_id) FROM {}",
                db.t("task_events")
            ),
            &[],
        )
        .await
        .unwrap();
    let doubled: Vec<String> = rows
        .iter()
        .filter(|r| r.get::<_, i64>(2) > 1)
        .map(|r| r.get(0))
        .collect();
    assert!(doubled.is_empty(), "rows loaded twice: {doubled:?}");
    let got: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect();
    let missing: Vec<&String> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(missing.is_empty(), "rows lost: {missing:?}");
    assert_eq!(got, expected);

    // Every file loaded exactly once in the ledger, none failed, each
    // moved off the inbox.
    let ledger = db
        .client
        .query(
            &format!(
                "SELECT path, state, count(*) FROM {} GROUP BY path, state",
                db.t("ferry_files")
            ),
            &[],
        )
        .await
        .unwrap();
    let failed: Vec<String> = ledger
        .iter()
        .filter(|r| r.get::<_, String>(1) != "loaded")
        .map(|r| format!("{} {}", r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(ledger.len(), FILES);
    assert!(
        ledger.iter().all(|r| r.get::<_, i64>(2) == 1),
        "a file loaded twice"
    );
    let moved = std::fs::read_dir(stack.sftp.root.join("outbox/loaded"))
        .unwrap()
        .count();
    assert_eq!(moved, FILES, "every file moved after its load");
    db.drop_schema().await;
}

//! Several replicas sharing work through SQS (`moto_server`, a real second
//! implementation of its API): every row exactly once, every file fetched
//! once across the fleet (counted by the test's own servers), a killed
//! replica's files loaded by the others, a killed lister replaced within
//! one lease period, and S3 event notifications with duplicated,
//! out-of-order and lost events.

use crate::harness::{Stack, TestDb, task_events_job};
use ferry::testkit::moto::{self, MotoServer};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const FILES: usize = 300;
const ROWS_PER_FILE: usize = 3;

/// A task-event CSV of [`ROWS_PER_FILE`] rows with ids unique to file `i`.
fn events_file(i: usize) -> String {
    let mut s = String::from(
        "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n",
    );
    for r in 0..ROWS_PER_FILE {
        s.push_str(&format!(
            "e{i}-{r},t{},created,open,u{r},jira,2026-03-01T10:{:02}:00Z,{r},1,\n",
            i % 17,
            r
        ));
    }
    s
}

/// The `[queue]` section for `url` on `moto`: short timings so a test
/// sees expiries in seconds.
fn queue_toml(moto: &MotoServer, url: &str, secret_file: &std::path::Path) -> String {
    format!(
        "\n[queue]\nkind = \"sqs\"\nurl = \"{url}\"\nregion = \"{}\"\nendpoint = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key_file = \"{}\"\nvisibility_timeout = \"20s\"\nlease_period = \"3s\"\nwait_time = \"1s\"\n",
        moto::REGION,
        moto.endpoint(),
        moto::ACCESS_KEY,
        secret_file.display()
    )
}

/// The job in append mode, so a version loaded twice shows as rows twice.
fn append_job(source: &str) -> String {
    task_events_job("mode = \"append\"\nbatch = { max_files = 20, max_wait = \"1s\" }")
        .replace("source = \"partner\"", &format!("source = \"{source}\""))
}

/// Waits until the ledger has `n` versions loaded (at most `limit`).
async fn wait_loaded(db: &TestDb, n: i64, limit: Duration) -> i64 {
    let deadline = Instant::now() + limit;
    loop {
        let loaded = db.count_where("ferry_files", "state = 'loaded'").await;
        if loaded >= n || Instant::now() > deadline {
            return loaded;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every row once: as many rows as written, each id once.
async fn assert_rows_exact(db: &TestDb, files: usize) {
    let rows = db.count("task_events").await;
    let ids: i64 = db
        .client
        .query_one(
            &format!(
                "SELECT count(DISTINCT event_id) FROM {}",
                db.t("task_events")
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, (files * ROWS_PER_FILE) as i64, "rows in the target");
    assert_eq!(ids, rows, "no row loaded twice");
    assert_eq!(
        db.count_where("ferry_files", "state = 'loaded'").await,
        files as i64,
        "one loaded version per file"
    );
}

/// With `FERRY_TEST_LOG` set (an env filter such as `ferry=debug`), the
/// in-process replicas log to stderr (`--no-capture` shows it).
fn test_log() {
    if let Ok(filter) = std::env::var("FERRY_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// Runs three in-process replicas (daemons with their own runtimes and
/// replica ids) on `toml` until the ledger has `FILES` loaded.
async fn three_daemons(toml: &str, db: &TestDb, moto: &MotoServer, url: &str) {
    test_log();
    let config = ferry::config::from_toml_str(toml).expect("config is valid");
    let stager = ferry::stage::Stager::new(&config.staging).await;
    let wh = ferry::warehouse::connect(&config, &stager).await.unwrap();
    ferry::ledger::migrate(&*wh).await.unwrap();
    let stop = CancellationToken::new();
    let mut runtimes = Vec::new();
    for r in 0..3 {
        let toml = toml.replace(
            "[queue]\n",
            &format!("[queue]\nreplica_id = \"replica-{r}\"\n"),
        );
        let config = ferry::config::from_toml_str(&toml).unwrap();
        runtimes.push(
            ferry::pipeline::Runtime::start(config)
                .await
                .expect("runtime starts"),
        );
    }
    let daemons = futures::future::join_all(
        runtimes
            .iter()
            .map(|rt| ferry::daemon::run(rt, stop.clone())),
    );
    let watch = async {
        let loaded = wait_loaded(db, FILES as i64, Duration::from_secs(150)).await;
        // Until the queue is empty: a duplicate left over (a standard
        // queue) is received, found loaded and deleted.
        let deadline = Instant::now() + Duration::from_secs(30);
        while moto.depth(url).await.unwrap() != (0, 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        stop.cancel();
        loaded
    };
    let (results, loaded) = tokio::time::timeout(Duration::from_secs(200), async {
        futures::join!(daemons, watch)
    })
    .await
    .expect("the replicas stop within 200 s");
    for r in results {
        r.expect("a replica ran cleanly");
    }
    assert_eq!(loaded, FILES as i64, "every file loaded within 150 s");
}

fn assert_each_fetched_once(fetches: &ferry::testkit::Fetches) {
    let all = fetches.all();
    for i in 0..FILES {
        let name = format!("tasks_{i:03}.csv");
        assert_eq!(
            all.get(&name).copied(),
            Some(1),
            "{name} fetched once across the replicas: {all:?}"
        );
    }
}

/// The servers of an SFTP fleet test: `files` files on SFTP, moto with
/// queue `queue`, and the config (no HTTP listener; the queue's messages
/// hidden for `visibility`).
async fn sftp_fleet(
    queue: &str,
    visibility: &str,
    files: usize,
) -> (Stack, TestDb, MotoServer, String, String) {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let moto = MotoServer::start().await.expect("moto_server");
    let url = moto.create_queue(queue).await.unwrap();
    for i in 0..files {
        stack.put_sftp(&format!("/outbox/tasks_{i:03}.csv"), &events_file(i));
    }
    let toml = format!(
        "{}{}{}{}",
        stack
            .base_toml()
            .replace("[daemon]\n", "[daemon]\nhttp_listen = \"\"\n"),
        db.warehouse_toml(),
        queue_toml(&moto, &url, &stack.secret_file).replace(
            "visibility_timeout = \"20s\"",
            &format!("visibility_timeout = \"{visibility}\"")
        ),
        append_job("partner")
    );
    (stack, db, moto, url, toml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_300_sftp_files_and_fetch_each_once() {
    let (stack, db, moto, url, toml) = sftp_fleet("ferry-work.fifo", "20s", FILES).await;
    three_daemons(&toml, &db, &moto, &url).await;
    assert_rows_exact(&db, FILES).await;
    assert_each_fetched_once(&stack.sftp.fetches);
    assert_eq!(
        moto.depth(&url).await.unwrap(),
        (0, 0),
        "every message deleted"
    );
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_300_ftp_files_on_a_standard_queue_and_fetch_each_once() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let moto = MotoServer::start().await.expect("moto_server");
    let url = moto.create_queue("ferry-work").await.unwrap();
    let ftp_root = stack.dir.path().join("ftp");
    let ftp = ferry::testkit::ftp::FtpServer::start(&ftp_root, 0)
        .await
        .unwrap();
    std::fs::create_dir_all(ftp_root.join("outbox")).unwrap();
    for i in 0..FILES {
        std::fs::write(
            ftp_root.join(format!("outbox/tasks_{i:03}.csv")),
            events_file(i),
        )
        .unwrap();
    }
    let toml = format!(
        "{}{}{}{}\n[sources.vendor]\nkind = \"ftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"anonymous\"\n",
        stack
            .base_toml()
            .replace("[daemon]\n", "[daemon]\nhttp_listen = \"\"\n"),
        db.warehouse_toml(),
        queue_toml(&moto, &url, &stack.secret_file),
        append_job("vendor"),
        ftp.addr.port()
    );
    three_daemons(&toml, &db, &moto, &url).await;
    assert_rows_exact(&db, FILES).await;
    assert_each_fetched_once(&ftp.fetches);
    assert_eq!(
        moto.depth(&url).await.unwrap(),
        (0, 0),
        "every message deleted"
    );
    db.drop_schema().await;
}

/// An S3 → SQS notification for `key` as S3 writes it (URL-encoded).
fn s3_event(name: &str, key: &str) -> String {
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-03-01T10:00:00.000Z", "eventName": name,
        "s3": {"bucket": {"name": crate::harness::BUCKET}, "object": {"key": key, "size": 1, "sequencer": "0A"}}
    }]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_events_load_each_object_once_and_the_reconciling_listing_finds_a_lost_one() {
    use crate::harness::BUCKET;
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let moto = MotoServer::start().await.expect("moto_server");
    let events = moto.create_queue("landing-events").await.unwrap();
    let landing = stack.s3.root.join(BUCKET).join("landing/events");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::create_dir_all(stack.s3.root.join(BUCKET).join("landing/other")).unwrap();
    std::fs::write(landing.join("a.csv"), events_file(1)).unwrap();
    std::fs::write(landing.join("b c.csv"), events_file(2)).unwrap();
    // c.csv is replaced after its first event: both events name the
    // version there now.
    std::fs::write(
        landing.join("c.csv"),
        events_file(3)
            .lines()
            .take(2)
            .collect::<Vec<_>>()
            .join("\n")
            + "\n",
    )
    .unwrap();
    std::fs::write(landing.join("d.csv"), events_file(4)).unwrap();
    std::fs::write(landing.join("readme.txt"), "not data").unwrap();
    std::fs::write(
        stack.s3.root.join(BUCKET).join("landing/other/x.csv"),
        events_file(5),
    )
    .unwrap();
    let sends = [
        s3_event("ObjectCreated:Put", "landing/events/a.csv"),
        s3_event("ObjectCreated:Put", "landing/events/a.csv"),
        s3_event("ObjectCreated:Put", "landing/events/b+c.csv"),
        serde_json::json!({"version": "0", "detail-type": "Object Created", "source": "aws.s3",
            "detail": {"bucket": {"name": BUCKET}, "object": {"key": "landing/events/b c.csv", "size": 1}}})
        .to_string(),
        s3_event("ObjectCreated:Put", "landing/events/c.csv"),
        serde_json::json!({"Type": "Notification", "Message": s3_event("ObjectCreated:CompleteMultipartUpload", "landing/events/c.csv")}).to_string(),
        s3_event("ObjectCreated:Put", "landing/other/x.csv"),
        s3_event("ObjectCreated:Put", "landing/events/readme.txt"),
        s3_event("ObjectRemoved:Delete", "landing/events/gone.csv"),
        serde_json::json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}).to_string(),
    ];
    for body in &sends[..5] {
        moto.send_raw(&events, body).await.unwrap();
    }
    // c.csv grows to its second version before its second event.
    std::fs::write(landing.join("c.csv"), events_file(3)).unwrap();
    for body in &sends[5..] {
        moto.send_raw(&events, body).await.unwrap();
    }
    let toml = |reconcile: &str| {
        format!(
            "{}[sources.landing]\nkind = \"s3\"\nbucket = \"{BUCKET}\"\nendpoint = \"{}\"\npath_style = true\naccess_key_id = \"{}\"\nsecret_access_key_file = \"{}\"\n{}\n[queue]\nkind = \"sqs\"\nregion = \"{}\"\nendpoint = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key_file = \"{}\"\nwait_time = \"1s\"\n{}\n[jobs.events]\nqueue_url = \"{events}\"\nreconcile_every = \"{reconcile}\"\n",
            stack.base_toml(),
            stack.s3.endpoint(),
            ferry::testkit::s3::ACCESS_KEY,
            stack.secret_file.display(),
            db.warehouse_toml(),
            moto::REGION,
            moto.endpoint(),
            moto::ACCESS_KEY,
            stack.secret_file.display(),
            append_job("landing").replace("path = \"/outbox\"", "path = \"landing/events\""),
        )
    };
    // Events alone (no reconciling listing): a, "b c" and the second
    // version of c, each once; d's event was lost.
    let rt = crate::harness::migrated_runtime(&toml("0s")).await;
    let report = ferry::pipeline::run_pass(&rt, None).await.unwrap();
    assert!(!report.has_failures(), "{report:?}");
    let mut loaded: Vec<&str> = report.loaded.iter().map(|f| f.path.as_str()).collect();
    loaded.sort();
    assert_eq!(
        loaded,
        [
            "landing/events/a.csv",
            "landing/events/b c.csv",
            "landing/events/c.csv"
        ],
        "{report:?}"
    );
    assert_eq!(
        db.count("task_events").await,
        3 * ROWS_PER_FILE as i64,
        "a, b c and c's second version"
    );
    assert_eq!(
        moto.depth(&events).await.unwrap(),
        (0, 0),
        "every event deleted, the ignored ones too"
    );
    drop(rt);

    // The reconciling listing finds d and nothing else.
    let rt = crate::harness::migrated_runtime(&toml("1s")).await;
    let report = ferry::pipeline::run_pass(&rt, None).await.unwrap();
    assert!(!report.has_failures(), "{report:?}");
    let loaded: Vec<&str> = report.loaded.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(loaded, ["landing/events/d.csv"], "{report:?}");
    assert_rows_exact(&db, 4).await;
    db.drop_schema().await;
}

/// The lease holder of `job`, from the ledger.
async fn lister(db: &TestDb) -> Option<String> {
    db.client
        .query_opt(
            &format!(
                "SELECT owner FROM {} WHERE job = 'task-events'",
                db.t("ferry_leases")
            ),
            &[],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

/// Kills every child still running when dropped (a failed assertion
/// must not leave replicas behind).
struct Replicas(Vec<std::process::Child>);

impl Drop for Replicas {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_the_lister_mid_flight_loses_and_doubles_nothing_and_another_lists() {
    let (stack, db, moto, url, toml) = sftp_fleet("ferry-work", "6s", FILES).await;
    let cfg = stack.write_config(&toml);
    {
        let config = ferry::config::from_toml_str(&toml).unwrap();
        let stager = ferry::stage::Stager::new(&config.staging).await;
        let wh = ferry::warehouse::connect(&config, &stager).await.unwrap();
        ferry::ledger::migrate(&*wh).await.unwrap();
    }
    let spawn = |r: usize| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("--config")
            .arg(&cfg)
            .arg("run")
            .env("FERRY__QUEUE__REPLICA_ID", format!("replica-{r}"))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ferry run starts")
    };
    let mut replicas = Replicas((0..3).map(spawn).collect());

    let before = wait_loaded(&db, 60, Duration::from_secs(120)).await;
    assert!(
        before >= 60 && before < FILES as i64,
        "the kill lands mid-flight ({before} loaded)"
    );
    let killed = lister(&db).await.expect("a replica holds the lease");
    let k: usize = killed.trim_start_matches("replica-").parse().unwrap();
    replicas.0[k].kill().expect("SIGKILL");
    replicas.0[k].wait().unwrap();
    let (_, in_flight) = moto.depth(&url).await.unwrap();
    eprintln!(
        "killed the lister {killed} with {before} of {FILES} loaded, {in_flight} messages in flight"
    );

    // New files only a new lister can find.
    for i in FILES..FILES + 20 {
        stack.put_sftp(&format!("/outbox/tasks_{i:03}.csv"), &events_file(i));
    }
    let loaded = wait_loaded(&db, (FILES + 20) as i64, Duration::from_secs(150)).await;
    assert_eq!(
        loaded,
        (FILES + 20) as i64,
        "every file loaded after the kill"
    );
    let now = lister(&db).await.expect("a replica holds the lease");
    assert_ne!(now, killed, "another replica took the lease over");
    // `ferry jobs` names it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--config")
        .arg(&cfg)
        .args(["jobs", "--json"])
        .output()
        .unwrap();
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(jobs[0]["lister"], now.as_str(), "{jobs}");
    assert_rows_exact(&db, FILES + 20).await;
    drop(replicas);
    db.drop_schema().await;
}

/// One pass of `rt` (boxed: the debug build's pass future is large, and
/// a test's own future lives on the test thread's stack).
async fn pass(rt: &ferry::pipeline::Runtime) -> ferry::pipeline::PassReport {
    Box::pin(ferry::pipeline::run_pass(rt, None)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_resume_and_retry_work_unchanged_with_two_replicas_on_a_fifo_queue() {
    use ferry::commands::ops;
    let (stack, db, moto, url, toml) = sftp_fleet("ferry-ops.fifo", "20s", 0).await;
    stack.put_sftp("/outbox/good.csv", &events_file(1));
    // No task_id column: a file that fails for good.
    stack.put_sftp(
        "/outbox/bad.csv",
        "event_id,event_type,occurred_at\nx1,created,2026-03-01T10:00:00Z\n",
    );
    let toml = |replica: &str| {
        toml.replace(
            "[queue]\n",
            &format!("[queue]\nreplica_id = \"{replica}\"\n"),
        )
    };
    let a = crate::harness::migrated_runtime(&toml("a")).await;
    let b = crate::harness::migrated_runtime(&toml("b")).await;

    // Paused: no replica lists or loads it.
    ops::set_paused(&a.config, &*a.warehouse, "task-events", true)
        .await
        .unwrap();
    let (ra, rb) = (pass(&a).await, pass(&b).await);
    assert!(
        ra.loaded.is_empty() && rb.loaded.is_empty() && ra.failed.is_empty(),
        "{ra:?} {rb:?}"
    );
    assert_eq!(
        moto.depth(&url).await.unwrap(),
        (0, 0),
        "nothing sent while paused"
    );

    // Resumed: a lists and sends; whichever replica receives loads.
    ops::set_paused(&b.config, &*b.warehouse, "task-events", false)
        .await
        .unwrap();
    let (mut ra, rb) = (pass(&a).await, pass(&b).await);
    ra.absorb(rb);
    assert_eq!(ra.loaded.len(), 1, "{ra:?}");
    assert_eq!(ra.failed.len(), 1, "{ra:?}");
    assert_eq!(db.count_where("ferry_files", "state = 'failed'").await, 1);

    // The lister's next poll sees the failure (a daemon polls every
    // poll_interval). Retried then (from either replica): sent again at
    // once, even on a FIFO queue, and tried again; it fails again,
    // recorded once.
    let idle = pass(&a).await;
    assert!(idle.loaded.is_empty() && idle.failed.is_empty(), "{idle:?}");
    let said = ops::retry(
        &b.config,
        &*b.warehouse,
        "task-events",
        Some("/outbox/bad.csv"),
    )
    .await
    .unwrap();
    assert!(said.starts_with("1 failed file version"), "{said}");
    assert_eq!(db.count_where("ferry_files", "state = 'failed'").await, 0);
    let (mut ra, rb) = (pass(&a).await, pass(&b).await);
    ra.absorb(rb);
    assert_eq!(
        ra.failed.len(),
        1,
        "the retried version was worked on again: {ra:?}"
    );
    assert!(ra.loaded.is_empty(), "{ra:?}");
    assert_eq!(db.count_where("ferry_files", "state = 'failed'").await, 1);
    assert_eq!(moto.depth(&url).await.unwrap(), (0, 0));
    assert_rows_exact(&db, 1).await;
    db.drop_schema().await;
}

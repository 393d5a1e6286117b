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

/// Runs three in-process replicas (daemons with their own runtimes and
/// replica ids) on `toml` until the ledger has `FILES` loaded.
async fn three_daemons(toml: &str, db: &TestDb, moto: &MotoServer, url: &str) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_300_sftp_files_and_fetch_each_once() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let moto = MotoServer::start().await.expect("moto_server");
    let url = moto.create_queue("ferry-work.fifo").await.unwrap();
    for i in 0..FILES {
        stack.put_sftp(&format!("/outbox/tasks_{i:03}.csv"), &events_file(i));
    }
    let toml = format!(
        "{}{}{}{}",
        stack
            .base_toml()
            .replace("[daemon]\n", "[daemon]\nhttp_listen = \"\"\n"),
        db.warehouse_toml(),
        queue_toml(&moto, &url, &stack.secret_file),
        append_job("partner")
    );
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

//! The daemon loop: files dropped while it runs are loaded, `/healthz`,
//! `/readyz` and `/metrics` answer, a shutdown request stops it cleanly,
//! and under systemd it says READY, STATUS and STOPPING.

use crate::harness::{Stack, TestDb, migrated_runtime, sftp_via, task_events_job};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

async fn get(addr: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Runs the daemon on `rt` in a task until the returned token is cancelled.
fn start_daemon(
    rt: ferry::pipeline::Runtime,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<ferry::Result<()>>,
) {
    let stop = CancellationToken::new();
    let daemon = tokio::spawn({
        let stop = stop.clone();
        async move { ferry::daemon::run(&rt, stop).await }
    });
    (stop, daemon)
}

/// Waits (up to 2.5 s) until something listens on `addr`.
async fn wait_listening(addr: &str) {
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Files dropped on SFTP and FTP while the daemon runs are loaded, and
/// `/readyz` and `/metrics` say so.
#[tokio::test(flavor = "multi_thread")]
async fn loads_files_dropped_while_running_and_stops_on_request() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let port = ferry::testkit::free_port().unwrap();
    // A second job reads an FTP server into the same table.
    let ftp_root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ftp_root.path().join("drop")).unwrap();
    let ftp = ferry::testkit::ftp::FtpServer::start(ftp_root.path(), 0)
        .await
        .unwrap();
    let ftp_job = task_events_job("")
        .replace("name = \"task-events\"", "name = \"vendor-events\"")
        .replace("source = \"partner\"", "source = \"vendor\"")
        .replace("path = \"/outbox\"", "path = \"/drop\"");
    let toml = format!(
        "{}{ftp_job}\n[sources.vendor]\nkind = \"ftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"anonymous\"\n",
        stack.config_toml(&db, &task_events_job("")),
        ftp.addr.port()
    )
    .replace(
        "poll_interval = \"1s\"",
        &format!("poll_interval = \"200ms\"\nhttp_listen = \"127.0.0.1:{port}\""),
    );
    let rt = migrated_runtime(&toml).await;
    let (stop, daemon) = start_daemon(rt);

    let addr = format!("127.0.0.1:{port}");
    wait_listening(&addr).await;
    let health = get(&addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200 OK"), "{health}");
    assert!(get(&addr, "/nope").await.starts_with("HTTP/1.1 404"));

    stack.put_sftp(
        "/outbox/late.csv",
        "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n\
         e9,t9,created,open,u9,jira,2026-03-01T10:00:00Z,,,\n",
    );
    std::fs::write(
        ftp_root.path().join("drop/late.csv"),
        "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n\
         f1,t9,created,open,u9,jira,2026-03-01T10:00:00Z,,,\n\
         f2,t9,created,open,u9,jira,2026-03-01T10:00:00Z,,,\n",
    )
    .unwrap();
    let mut loaded = 0i64;
    for _ in 0..100 {
        loaded = db.count("task_events").await;
        if loaded == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        loaded, 3,
        "the files dropped on SFTP and FTP are loaded by the running daemon"
    );

    let ready = get(&addr, "/readyz").await;
    assert!(
        ready.starts_with("HTTP/1.1 200 OK") && ready.ends_with("ready\n"),
        "{ready}"
    );
    // Loaded means committed; the metrics follow right after.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = get(&addr, "/metrics").await;
    assert!(
        metrics.contains("content-type: text/plain; version=0.0.4"),
        "{metrics}"
    );
    for line in [
        "ferry_files_loaded_total{job=\"task-events\"} 1\n",
        "ferry_rows_loaded_total{job=\"task-events\"} 1\n",
        "ferry_files_settled_total{job=\"task-events\"} 1\n",
        "ferry_files_listed{job=\"task-events\"} 1\n",
        "ferry_oldest_unloaded_file_age_seconds{job=\"task-events\"} 0\n",
        "# TYPE ferry_stage_duration_seconds histogram\n",
        "ferry_stage_duration_seconds_count{job=\"task-events\",stage=\"load\"} 1\n",
        "ferry_files_loaded_total{job=\"vendor-events\"} 1\n",
        "ferry_rows_loaded_total{job=\"vendor-events\"} 2\n",
        "ferry_source_connection_limit{source=\"vendor\"} 8\n",
        "ferry_source_connections{source=\"vendor\"} ",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    assert!(
        metrics.contains("ferry_last_load_timestamp_seconds{job=\"task-events\"} 1"),
        "{metrics}"
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .expect("the daemon stops within the timeout")
        .unwrap()
        .expect("the daemon stops cleanly");
    let files: i64 = db.count("ferry_files").await;
    assert_eq!(files, 2, "polled many times, each loaded once");
    db.drop_schema().await;
}

/// The `ferry run` binary under a systemd-like supervisor: it says
/// READY=1 once it serves, STATUS after passes, and on SIGTERM in the
/// middle of loading a large file it says STOPPING=1, lets the load
/// finish and exits 0; the next start loads nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn under_systemd_it_notifies_and_sigterm_mid_load_exits_cleanly() {
    use std::os::unix::net::UnixDatagram;
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let header = "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";
    let body: String = (0..20_000)
        .map(|i| {
            format!(
                "e{i},t{},created,open,u1,jira,2026-03-01T10:00:00Z,{i},1,\n",
                i % 9
            )
        })
        .collect();
    stack.put_sftp("/outbox/big.csv", &format!("{header}{body}"));
    let port = ferry::testkit::free_port().unwrap();
    let toml = stack
        .config_toml(&db, &task_events_job("part_size = \"64KiB\""))
        .replace(
            "poll_interval = \"1s\"",
            &format!("poll_interval = \"1s\"\nhttp_listen = \"127.0.0.1:{port}\""),
        );
    let cfg = stack.write_config(&toml);
    let socket_path = stack.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let ferry = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        c.arg("--config")
            .arg(&cfg)
            .args(args)
            .env("RUST_LOG", "warn");
        c
    };
    assert!(ferry(&["migrate"]).output().unwrap().status.success());
    let mut child = ferry(&["run"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let recv = |socket: &UnixDatagram| {
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).expect("a notification within 20 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(recv(&socket), "READY=1");
    // The first pass is loading the file (20,000 rows in many parts):
    // ask it to stop now.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut said = Vec::new();
    loop {
        let s = recv(&socket);
        let stopping = s == "STOPPING=1";
        said.push(s);
        if stopping {
            break;
        }
    }
    let before = &said[..said.len() - 1];
    assert!(
        before
            .iter()
            .all(|s| s == "WATCHDOG=1" || s.starts_with("STATUS=")),
        "{said:?}"
    );
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(
        status.success(),
        "ferry run exits 0 after SIGTERM: {status}"
    );
    // The pass under way when SIGTERM came was let finish: the file is
    // loaded, and the next start loads nothing twice.
    assert_eq!(db.count_where("ferry_files", "state = 'loaded'").await, 1);
    let out = ferry(&["once"]).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("0 loaded, 1 skipped"), "{printed}");
    assert_eq!(db.count("task_events").await, 20_000);
    assert_eq!(db.count_where("ferry_files", "state = 'loaded'").await, 1);
    assert_eq!(db.count("ferry_loads").await, 1);
    db.drop_schema().await;
}

/// Two jobs side by side on one source, one of them broken (its target
/// table does not exist), with one staging, transfer and load slot for
/// both: the broken job fails its file
/// with a clear reason and keeps polling, the other loads a small and a
/// large (streamed) file on its own, shorter interval.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_job_fails_its_files_while_another_keeps_loading() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let good = task_events_job("poll_interval = \"100ms\"\npart_size = \"8KiB\"");
    let broken = task_events_job("poll_interval = \"300ms\"")
        .replace("name = \"task-events\"", "name = \"broken\"")
        .replace("path = \"/outbox\"", "path = \"/broken\"")
        .replace("target = \"task_events\"", "target = \"no_such_table\"");
    // One slot of each kind: staging, transfers from the shared source,
    // loads; the two jobs must take turns without waiting on each other.
    let toml = format!("{}{broken}", stack.config_toml(&db, &good))
        .replace(
            "poll_interval = \"1s\"",
            "poll_interval = \"1s\"\nconcurrency = 1\nmax_concurrent_loads = 1\nhttp_listen = \"\"",
        )
        .replace(
            "[sources.partner]\n",
            "[sources.partner]\nmax_transfers = 1\n",
        );
    let rt = migrated_runtime(&toml).await;
    assert_eq!(rt.config.daemon.concurrency, 1);
    assert_eq!(rt.config.daemon.max_concurrent_loads, 1);
    assert_eq!(rt.config.sources["partner"].max_transfers, 1);
    let header = "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";
    let rows = |prefix: &str, n: usize| -> String {
        let body: String = (0..n)
            .map(|i| format!("{prefix}{i},t1,created,open,u1,jira,2026-03-01T10:00:00Z,{i},1,\n"))
            .collect();
        format!("{header}{body}")
    };
    stack.put_sftp("/broken/x.csv", &rows("x", 3));
    let (stop, daemon) = start_daemon(rt);
    // Files arrive while the broken job keeps failing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stack.put_sftp("/outbox/small.csv", &rows("s", 5));
    stack.put_sftp("/outbox/large.csv", &rows("l", 2000));
    let mut loaded = 0;
    for _ in 0..150 {
        loaded = db.count("task_events").await;
        if loaded == 2005 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        loaded, 2005,
        "the good job loads while the broken one fails"
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .expect("the daemon stops")
        .unwrap()
        .expect("cleanly");
    let failed = db
        .client
        .query(
            &format!(
                "SELECT job, path, error FROM {} WHERE state = 'failed'",
                db.t("ferry_files")
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(failed.len(), 1, "failed once, not again every poll");
    let (job, path, error): (String, String, String) =
        (failed[0].get(0), failed[0].get(1), failed[0].get(2));
    assert_eq!((job.as_str(), path.as_str()), ("broken", "/broken/x.csv"));
    assert!(error.contains("no_such_table"), "{error}");
    assert_eq!(
        db.count_where("ferry_files", "state = 'loaded' AND job = 'task-events'")
            .await,
        2
    );
    db.drop_schema().await;
}

/// With the staging bucket unreachable the daemon is alive but not ready:
/// `/healthz` answers 200, `/readyz` 503 naming the staging bucket.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_says_what_is_unreachable() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let port = ferry::testkit::free_port().unwrap();
    let dead = ferry::testkit::free_port().unwrap();
    let toml = stack
        .config_toml(&db, &task_events_job(""))
        .replace(&stack.s3.endpoint(), &format!("http://127.0.0.1:{dead}"))
        .replace(
            "poll_interval = \"1s\"",
            &format!("poll_interval = \"1h\"\nhttp_listen = \"127.0.0.1:{port}\""),
        );
    let rt = migrated_runtime(&toml).await;
    let (stop, daemon) = start_daemon(rt);
    let addr = format!("127.0.0.1:{port}");
    wait_listening(&addr).await;
    assert!(get(&addr, "/healthz").await.starts_with("HTTP/1.1 200 OK"));
    let ready = get(&addr, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(
        ready.contains("not ready: staging: staging bucket"),
        "{ready}"
    );
    assert!(
        !ready.contains("warehouse:"),
        "the warehouse answers: {ready}"
    );
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(70), daemon).await;
    db.drop_schema().await;
}

/// A job whose pass stalls (its SFTP connection goes silent mid-download
/// and the io_timeout is long) makes `/healthz` answer 503 naming the
/// job once `daemon.stuck_after` passes without a file finished — one
/// heartbeat for all jobs kept it green before.
#[tokio::test(flavor = "multi_thread")]
async fn a_stuck_job_turns_healthz_red_naming_it() {
    use ferry::testkit::proxy::{CuttingProxy, Fault};
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let body: String = (0..30_000)
        .map(|i| format!("e{i},t1,created,open,u1,jira,2026-03-01T10:00:00Z,{i},1,\n"))
        .collect();
    stack.put_sftp(
        "/outbox/big.csv",
        &format!("event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n{body}"),
    );
    let proxy = CuttingProxy::start_with(stack.sftp.addr, 300_000, 1, Fault::Freeze)
        .await
        .unwrap();
    let port = ferry::testkit::free_port().unwrap();
    let via = proxy.addr.port();
    let toml = sftp_via(&stack, &stack.config_toml(&db, &task_events_job("")), via)
        .replace(
            &format!("port = {via}"),
            &format!("port = {via}\nio_timeout = \"60s\""),
        )
        .replace(
            "poll_interval = \"1s\"",
            &format!(
                "poll_interval = \"1h\"\nstuck_after = \"1s\"\ngrace_period = \"1s\"\nhttp_listen = \"127.0.0.1:{port}\""
            ),
        );
    let rt = migrated_runtime(&toml).await;
    let (stop, daemon) = start_daemon(rt);
    let addr = format!("127.0.0.1:{port}");
    wait_listening(&addr).await;
    let mut health = String::new();
    for _ in 0..100 {
        health = get(&addr, "/healthz").await;
        if health.starts_with("HTTP/1.1 503") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(
        health.contains("stuck: job task-events: no file finished for")
            && health.contains("daemon.stuck_after = 1s"),
        "{health}"
    );
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), daemon).await;
    db.drop_schema().await;
}

/// The listener serves at most a fixed number of connections at once: the
/// ones past it are closed at once, and clients that never send a request
/// are cut off after a few seconds, so the health check keeps answering.
#[tokio::test(flavor = "multi_thread")]
async fn idle_http_clients_cannot_exhaust_the_listener() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let port = ferry::testkit::free_port().unwrap();
    let toml = stack.config_toml(&db, &task_events_job("")).replace(
        "poll_interval = \"1s\"",
        &format!("poll_interval = \"1h\"\nhttp_listen = \"127.0.0.1:{port}\""),
    );
    let rt = migrated_runtime(&toml).await;
    let (stop, daemon) = start_daemon(rt);
    let addr = format!("127.0.0.1:{port}");
    wait_listening(&addr).await;
    let max = ferry::daemon::http::MAX_CONNECTIONS;
    let mut idle = Vec::new();
    for _ in 0..max + 5 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // One past the cap is closed by the daemon straight away.
    let mut extra = idle.pop().unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), extra.read(&mut buf))
        .await
        .expect("closed, not left hanging")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    // The idle ones are cut off after the client timeout; then it answers.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let health = tokio::time::timeout(Duration::from_secs(5), get(&addr, "/healthz"))
        .await
        .expect("an answer");
    assert!(health.starts_with("HTTP/1.1 200 OK"), "{health}");
    drop(idle);
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), daemon).await;
    db.drop_schema().await;
}

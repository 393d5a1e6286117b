//! Fault injection against real servers: a peer frozen mid-transfer
//! (SIGSTOP of the server's session processes, or a proxy that stops
//! forwarding), a connection cut (a session killed, a proxy that closes,
//! `pg_terminate_backend`) and a server restarted must make ferry log
//! what happened, retry within the configured deadline, and end with
//! every row exactly once — never a hang. A file rewritten while it is
//! read never commits mixed, on every source kind. Every wait here is
//! bounded.

use crate::harness::{Stack, TestDb, sftp_via, task_events_job};
use crate::real_servers::{Tls, vsftpd_with};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HEADER: &str =
    "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";

fn rows(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "e{i:06},t{},created,open,u1,jira,2026-03-01T10:00:00Z,{i},1,\n",
                i % 50
            )
        })
        .collect()
}

/// The file of `n` rows loaded exactly once: every row, one loaded
/// version in the ledger; then the schema goes.
async fn loaded_once(db: TestDb, n: usize) {
    assert_eq!(db.count("task_events").await, n as i64);
    assert_eq!(db.count_where("ferry_files", "state = 'loaded'").await, 1);
    db.drop_schema().await;
}

/// Every process below `pid`, children first found first.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let children =
            std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

fn signal(pids: &[u32], sig: &str) {
    for p in pids {
        let _ = Command::new("kill")
            .args([sig, &p.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// Waits for `child` at most `limit`; kills it and fails past that.
fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("ferry did not finish within {limit:?}: a wait without a deadline");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What one run of ferry printed.
struct Ran {
    status: std::process::ExitStatus,
    out: String,
    err: String,
}

/// Starts `ferry --config cfg ARGS` with `RUST_LOG=rust_log`, its stderr
/// kept in `log`; the handle resolves once it exited (at most 90 s).
fn start_ferry(
    cfg: &std::path::Path,
    args: &[&str],
    rust_log: &str,
    log: std::path::PathBuf,
) -> tokio::task::JoinHandle<Ran> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let status = wait_bounded(&mut child, Duration::from_secs(90));
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let err = std::fs::read_to_string(&log).unwrap();
        Ran { status, out, err }
    })
}

/// `ferry migrate` on `cfg`.
fn migrate(cfg: &std::path::Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--config")
        .arg(cfg)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
}

/// The task-event job reading vsftpd on `port` as source `vendor`, with a
/// 2 s io_timeout; written as the stack's config.
fn ftp_config(stack: &Stack, db: &TestDb, port: u16) -> std::path::PathBuf {
    let vendor = format!(
        "\n[sources.vendor]\nkind = \"ftp\"\nhost = \"127.0.0.1\"\nport = {port}\nio_timeout = \"2s\"\n"
    );
    let job = task_events_job("").replace("source = \"partner\"", "source = \"vendor\"");
    stack.write_config(&format!("{}{vendor}", stack.config_toml(db, &job)))
}

/// Rewrites `path` with `body`: another size, and an mtime two minutes
/// back, so the new version is settled.
fn rewrite(path: &std::path::Path, body: &str) {
    rewrite_at(
        path,
        body,
        std::time::SystemTime::now() - Duration::from_secs(120),
    );
}

/// Writes `body` to `path` with the modification time `mtime`.
fn rewrite_at(path: &std::path::Path, body: &str, mtime: std::time::SystemTime) {
    std::fs::write(path, body).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

/// An FTP download whose vsftpd session is SIGSTOPped mid-transfer: the
/// read stalls, ferry's io_timeout (2 s here) cuts it, logs it, resumes
/// on a new connection (a new, running session) and loads every row once.
/// Before: ferry waited 100+ s with no log line until the server resumed.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_ftp_session_mid_download_times_out_resumes_and_loads_once() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let n = 24_000; // ~1.5 MB at 400 KB/s: the transfer takes ~4 s
    let body = format!("{HEADER}{}", rows(n));
    let ftp = vsftpd_with(
        &[("/outbox/big.csv", body.as_bytes())],
        Tls::Off,
        "anon_max_rate=400000\n",
    );
    let cfg = ftp_config(&stack, &db, ftp.port);
    migrate(&cfg);
    let run = start_ferry(&cfg, &["once"], "warn", stack.dir.path().join("ferry.err"));
    // Freeze every session once the download is under way (the listener
    // stays up, so a new connection gets a new, running session).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let frozen = descendants(ftp.child.id());
    assert!(!frozen.is_empty(), "vsftpd has a session to freeze");
    signal(&frozen, "-STOP");
    let Ran { status, out, err } = run.await.unwrap();
    signal(&frozen, "-CONT");
    eprintln!("ferry said:\n{err}");
    assert!(status.success(), "{out}\n{err}");
    assert!(out.contains("1 loaded"), "{out}\n{err}");
    assert!(
        err.contains("io_timeout") && err.contains("big.csv"),
        "the log names the timeout and the file: {err}"
    );
    assert!(err.contains("resuming"), "the download resumed: {err}");
    loaded_once(db, n).await;
}

/// The stack's config with `job`, its SFTP source reached through a proxy
/// whose first connection goes silent after 400 KB, with `io_timeout`.
async fn freezing_sftp(
    stack: &Stack,
    db: &TestDb,
    job: &str,
    io_timeout: &str,
) -> (ferry::testkit::proxy::CuttingProxy, String) {
    use ferry::testkit::proxy::{CuttingProxy, Fault};
    let proxy = CuttingProxy::start_with(stack.sftp.addr, 400_000, 1, Fault::Freeze)
        .await
        .unwrap();
    let port = proxy.addr.port();
    let toml = sftp_via(stack, &stack.config_toml(db, job), port).replace(
        &format!("port = {port}"),
        &format!("port = {port}\nio_timeout = \"{io_timeout}\""),
    );
    (proxy, toml)
}

/// An SFTP connection that goes silent mid-download (a proxy stops
/// forwarding, both sockets stay open: what a frozen server or a
/// black-holed network looks like): the request times out after
/// io_timeout, the stalled connection is given up (not waited on again),
/// and the download resumes on a new one; every row loads once.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_sftp_connection_mid_download_is_abandoned_and_the_file_loads_once() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let n = 30_000;
    stack.put_sftp("/outbox/big.csv", &format!("{HEADER}{}", rows(n)));
    let (proxy, toml) = freezing_sftp(&stack, &db, &task_events_job(""), "2s").await;
    let cfg = stack.write_config(&toml);
    migrate(&cfg);
    let log = stack.dir.path().join("ferry.err");
    let Ran { status, out, err } = start_ferry(&cfg, &["once"], "warn,ferry=info", log)
        .await
        .unwrap();
    eprintln!("ferry said:\n{err}");
    assert!(status.success(), "{out}\n{err}");
    assert!(out.contains("1 loaded"), "{out}\n{err}");
    assert_eq!(
        proxy.cuts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the first connection froze"
    );
    assert!(
        proxy.connections.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "a new connection took over"
    );
    assert!(err.contains("big.csv") && err.contains("resuming"), "{err}");
    assert!(
        err.contains("reconnecting"),
        "the stalled connection was given up: {err}"
    );
    loaded_once(db, n).await;
}

/// The PostgreSQL connection goes silent in the middle of a pass (a proxy
/// stops forwarding; the server is fine): ferry's deadline
/// (statement_timeout, 2 s here, plus as much again) gives up on the
/// connection, logs it, reconnects and the file loads exactly once —
/// within this pass or, if the silence hit a step that is not retried
/// inside the pass, the next one. The server ends the abandoned session's
/// transaction (idle_in_transaction_session_timeout), so its locks go.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_postgres_connection_is_abandoned_and_the_file_loads_once() {
    use ferry::testkit::proxy::{CuttingProxy, Fault};
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let n = 5_000;
    stack.put_sftp("/outbox/a.csv", &format!("{HEADER}{}", rows(n)));
    let pg: std::net::SocketAddr = format!("{}:{}", db.host, db.port)
        .parse()
        .unwrap_or_else(|_| "127.0.0.1:5432".parse().unwrap());
    let direct = stack.config_toml(&db, &task_events_job(""));
    migrate(&stack.write_config(&direct));
    let proxy = CuttingProxy::start_with(pg, 1_200, 1, Fault::Freeze)
        .await
        .unwrap();
    let toml = direct.replace(
        &format!("port = {}\n", db.port),
        &format!(
            "port = {}\nstatement_timeout = \"2s\"\nlock_timeout = \"2s\"\n",
            proxy.addr.port()
        ),
    );
    let cfg = stack.dir.path().join("ferry-proxied.toml");
    std::fs::write(&cfg, toml).unwrap();
    let mut logs = String::new();
    let mut loaded = false;
    for run in 0..3 {
        let log = stack.dir.path().join(format!("ferry-{run}.err"));
        let Ran { out, err, .. } = start_ferry(&cfg, &["once"], "warn", log).await.unwrap();
        logs.push_str(&err);
        logs.push_str(&out);
        if out.contains("1 loaded") || out.contains("0 loaded, 1 skipped") {
            loaded = true;
            break;
        }
    }
    eprintln!("ferry said:\n{logs}");
    assert!(loaded, "{logs}");
    let conns = proxy.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        conns >= 2,
        "ferry went through the proxy and reconnected: {conns}"
    );
    assert_eq!(
        proxy.cuts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the connection froze"
    );
    assert!(logs.contains("no answer from postgres 127.0.0.1"), "{logs}");
    loaded_once(db, n).await;
}

/// `n` task-event rows whose ids start with `tag` (`old0`, `old1`, …).
fn tagged(tag: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{tag}{i},t1,created,open,u1,jira,2026-03-01T10:00:00Z,{i},1,\n"))
        .collect()
}

/// Rows of the version a file had before (`old…`) and after (`new…`) it
/// was overwritten.
fn versions() -> (String, String) {
    (
        format!("{HEADER}{}", tagged("old", 30_000)),
        format!("{HEADER}{}", tagged("new", 20_000)),
    )
}

/// Rewrites `path` with `new` (another size, an mtime two minutes back, so
/// it is settled) as soon as `cuts` shows the download was cut.
fn overwrite_on_cut(
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    path: std::path::PathBuf,
    new: String,
) -> std::thread::JoinHandle<()> {
    overwrite_on_cut_at(
        cuts,
        path,
        new,
        std::time::SystemTime::now() - Duration::from_secs(120),
    )
}

/// Like [`overwrite_on_cut`], giving the new version the modification
/// time `mtime`.
fn overwrite_on_cut_at(
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    path: std::path::PathBuf,
    new: String,
    mtime: std::time::SystemTime,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let started = Instant::now();
        while cuts.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(started.elapsed() < Duration::from_secs(30), "no cut");
            std::thread::sleep(Duration::from_millis(2));
        }
        rewrite_at(&path, &new, mtime);
    })
}

/// Two passes over a file that is overwritten during the first one's
/// download: nothing commits in the first, the new version loads whole in
/// the second, and no old row ever lands.
async fn changed_mid_download_commits_nothing_mixed(
    db: &TestDb,
    rt: &ferry::pipeline::Runtime,
    writer: std::thread::JoinHandle<()>,
    new_rows: i64,
) {
    let first = ferry::pipeline::run_pass(rt, None).await.unwrap();
    writer.join().unwrap();
    assert!(
        first.loaded.is_empty(),
        "nothing commits while the file changes: {first:?}"
    );
    assert_eq!(first.failed.len(), 1, "{first:?}");
    assert!(
        first.failed[0].2.contains("changed while it was read"),
        "{first:?}"
    );
    assert_eq!(db.count("task_events").await, 0);
    assert_eq!(
        db.count("ferry_files").await,
        0,
        "a change is not a failure to record"
    );
    let second = ferry::pipeline::run_pass(rt, None).await.unwrap();
    assert_eq!(second.loaded.len(), 1, "{second:?}");
    assert_eq!(db.count("task_events").await, new_rows);
    assert_eq!(
        db.count_where("task_events", "event_id LIKE 'old%'").await,
        0
    );
}

/// A runtime of the task-event job on the stack's SFTP server through a
/// proxy that cuts `cuts` connections once they carried `after` bytes.
async fn cutting_sftp(
    stack: &Stack,
    db: &TestDb,
    after: u64,
    cuts: usize,
) -> (
    ferry::testkit::proxy::CuttingProxy,
    ferry::pipeline::Runtime,
) {
    let proxy = ferry::testkit::proxy::CuttingProxy::start(stack.sftp.addr, after, cuts)
        .await
        .unwrap();
    let toml = sftp_via(
        stack,
        &stack.config_toml(db, &task_events_job("")),
        proxy.addr.port(),
    );
    (proxy, crate::harness::migrated_runtime(&toml).await)
}

/// Regression: a resumed read reopened at its offset without checking the
/// file again, so a file overwritten while it was read could commit half
/// old, half new. Here the SFTP connection is cut mid-download and the
/// file rewritten (new size and mtime) before the resume (which waits
/// 200 ms first): the resume sees the change.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_overwritten_during_its_download_never_commits_mixed() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let (old, new) = versions();
    let path = stack.put_sftp("/outbox/f.csv", &old);
    let (proxy, rt) = cutting_sftp(&stack, &db, 400_000, 1).await;
    let writer = overwrite_on_cut(proxy.cuts.clone(), path, new);
    changed_mid_download_commits_nothing_mixed(&db, &rt, writer, 20_000).await;
    db.drop_schema().await;
}

/// The task-event job on S3 bucket `landing/` reached through `via`
/// (a proxy in front of the stack's S3 server).
fn s3_config(stack: &Stack, db: &TestDb, via: std::net::SocketAddr) -> String {
    format!(
        "{}[sources.landing]\nkind = \"s3\"\nbucket = \"{}\"\nendpoint = \"http://{}\"\npath_style = true\naccess_key_id = \"{}\"\nsecret_access_key_file = \"{}\"\nio_timeout = \"2s\"\n{}{}",
        stack.base_toml(),
        crate::harness::BUCKET,
        via,
        ferry::testkit::s3::ACCESS_KEY,
        stack.secret_file.display(),
        db.warehouse_toml(),
        task_events_job("")
            .replace("source = \"partner\"", "source = \"landing\"")
            .replace("path = \"/outbox\"", "path = \"landing\"")
    )
}

/// The stack's S3 server address, and the object `landing/f.csv` on it
/// (written straight into the server's folder).
fn s3_object(stack: &Stack) -> (std::net::SocketAddr, std::path::PathBuf) {
    let landing = stack.s3.root.join(crate::harness::BUCKET).join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    (stack.s3.addr, landing.join("f.csv"))
}

/// The same on an S3 source: the GetObject stream is cut, the object
/// replaced before the resume; the resume's HeadObject sees the change.
#[tokio::test(flavor = "multi_thread")]
async fn an_s3_object_replaced_during_its_download_never_commits_mixed() {
    use ferry::testkit::proxy::CuttingProxy;
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let (old, new) = versions();
    let (target, path) = s3_object(&stack);
    std::fs::write(&path, old).unwrap();
    let proxy = CuttingProxy::start(target, 400_000, 1).await.unwrap();
    let rt = crate::harness::migrated_runtime(&s3_config(&stack, &db, proxy.addr)).await;
    let writer = overwrite_on_cut(proxy.cuts.clone(), path, new);
    changed_mid_download_commits_nothing_mixed(&db, &rt, writer, 20_000).await;
    db.drop_schema().await;
}

/// Regression: S3 resumed a cut download with a ranged GET and no
/// `If-Match`, so an object replaced by one of the same size within the
/// same second (size and mtime unchanged) was continued from the new
/// bytes and committed mixed. Every GET of a listed version now carries
/// its ETag; the resume gets 412 and nothing commits.
#[tokio::test(flavor = "multi_thread")]
async fn an_s3_object_replaced_with_the_same_size_and_mtime_is_caught_by_its_etag() {
    use ferry::testkit::proxy::CuttingProxy;
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let (old, new) = (
        format!("{HEADER}{}", tagged("old", 30_000)),
        format!("{HEADER}{}", tagged("new", 30_000)),
    );
    assert_eq!(old.len(), new.len());
    let (target, path) = s3_object(&stack);
    let mtime = std::time::SystemTime::now() - Duration::from_secs(120);
    rewrite_at(&path, &old, mtime);
    let proxy = CuttingProxy::start(target, 400_000, 1).await.unwrap();
    let rt = crate::harness::migrated_runtime(&s3_config(&stack, &db, proxy.addr)).await;
    let writer = overwrite_on_cut_at(proxy.cuts.clone(), path, new, mtime);
    changed_mid_download_commits_nothing_mixed(&db, &rt, writer, 30_000).await;
    db.drop_schema().await;
}

/// The same on FTP with a real vsftpd: its session is frozen mid-download
/// and the file rewritten meanwhile; after io_timeout the resume (on a new
/// session) sees the change, the pass commits nothing, and the next run
/// loads the new version whole.
#[tokio::test(flavor = "multi_thread")]
async fn an_ftp_file_rewritten_while_its_session_is_frozen_never_commits_mixed() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let (old, new) = versions();
    let ftp = vsftpd_with(
        &[("/outbox/f.csv", old.as_bytes())],
        Tls::Off,
        "anon_max_rate=400000\n",
    );
    let cfg = ftp_config(&stack, &db, ftp.port);
    migrate(&cfg);
    let first = start_ferry(&cfg, &["once"], "warn", stack.dir.path().join("first.err"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let frozen = descendants(ftp.child.id());
    signal(&frozen, "-STOP");
    rewrite(&ftp.root().join("outbox/f.csv"), &new);
    let Ran { status, out, err } = first.await.unwrap();
    signal(&frozen, "-CONT");
    assert!(
        !status.success(),
        "the changed file is reported: {out}\n{err}"
    );
    assert!(out.contains("changed while it was read"), "{out}\n{err}");
    assert_eq!(
        db.count("task_events").await,
        0,
        "nothing of either version"
    );
    let Ran { status, out, .. } =
        start_ferry(&cfg, &["once"], "warn", stack.dir.path().join("second.err"))
            .await
            .unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains("1 loaded"), "{out}");
    assert_eq!(db.count("task_events").await, 20_000);
    assert_eq!(
        db.count_where("task_events", "event_id LIKE 'old%'").await,
        0
    );
    db.drop_schema().await;
}

/// How far this process has read the open file `path` (`None` while it
/// is not open): the position of its descriptor, from `/proc/self/fdinfo`.
fn read_position(path: &std::path::Path) -> Option<u64> {
    for fd in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        if std::fs::read_link(fd.path()).ok().as_deref() != Some(path) {
            continue;
        }
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.file_name().to_str()?))
                .ok()?;
        let pos = info.lines().find_map(|l| l.strip_prefix("pos:"))?;
        return pos.trim().parse().ok();
    }
    None
}

/// The same on a local folder: the file is rewritten (another size) once
/// ferry has read part of it and before it read the rest; the byte count
/// and the check after the last byte see it, and nothing commits.
#[tokio::test(flavor = "multi_thread")]
async fn a_local_file_rewritten_during_its_read_never_commits_mixed() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let (old, new) = (
        format!("{HEADER}{}", tagged("old", 300_000)),
        format!("{HEADER}{}", tagged("new", 20_000)),
    );
    let root = stack.dir.path().join("drop");
    std::fs::create_dir_all(root.join("outbox")).unwrap();
    let path = root.join("outbox/f.csv");
    rewrite(&path, &old);
    let path = path.canonicalize().unwrap();
    let toml = format!(
        "{}[sources.drop]\nkind = \"local\"\nroot = \"{}\"\n{}{}",
        stack.base_toml(),
        root.display(),
        db.warehouse_toml(),
        task_events_job("").replace("source = \"partner\"", "source = \"drop\"")
    );
    let rt = crate::harness::migrated_runtime(&toml).await;
    let size = old.len() as u64;
    let writer = std::thread::spawn(move || {
        let started = Instant::now();
        loop {
            assert!(started.elapsed() < Duration::from_secs(60), "never read");
            if read_position(&path).is_some_and(|p| p > 0 && p < size) {
                rewrite(&path, &new);
                return;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    changed_mid_download_commits_nothing_mixed(&db, &rt, writer, 20_000).await;
    db.drop_schema().await;
}

/// vsftpd's sessions (`restart`: and its listener) are killed mid-download;
/// with `restart`, vsftpd starts again on its port a second later. The
/// download's connection is cut, the reconnects are refused until the
/// server is back, then the download resumes at its offset and every row
/// loads once.
async fn ftp_killed_mid_download_loads_once(restart: bool) {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let n = 24_000; // ~1.5 MB at 400 KB/s: the transfer takes ~4 s
    let body = format!("{HEADER}{}", rows(n));
    let mut ftp = vsftpd_with(
        &[("/outbox/big.csv", body.as_bytes())],
        Tls::Off,
        "anon_max_rate=400000\n",
    );
    let cfg = ftp_config(&stack, &db, ftp.port);
    migrate(&cfg);
    let run = start_ferry(&cfg, &["once"], "warn", stack.dir.path().join("ferry.err"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut doomed = descendants(ftp.child.id());
    assert!(!doomed.is_empty(), "vsftpd has a session to kill");
    if restart {
        doomed.push(ftp.child.id());
    }
    signal(&doomed, "-KILL");
    if restart {
        tokio::time::sleep(Duration::from_secs(1)).await;
        ftp.start_vsftpd_again();
    }
    let Ran { status, out, err } = run.await.unwrap();
    eprintln!("ferry said:\n{err}");
    assert!(status.success(), "{out}\n{err}");
    assert!(out.contains("1 loaded"), "{out}\n{err}");
    assert!(
        err.contains("big.csv") && err.contains("resuming"),
        "the log names the file and the resume: {err}"
    );
    loaded_once(db, n).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ftp_session_killed_mid_download_resumes_and_loads_once() {
    ftp_killed_mid_download_loads_once(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ftp_server_killed_and_restarted_mid_download_resumes_and_loads_once() {
    ftp_killed_mid_download_loads_once(true).await;
}

/// An S3 connection that goes silent mid-GetObject (a proxy stops
/// forwarding): io_timeout (2 s here) cuts the read, the log says so, the
/// download resumes with a ranged, conditional GET on a new connection and
/// every row loads once.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_s3_connection_mid_download_times_out_resumes_and_loads_once() {
    use ferry::testkit::proxy::{CuttingProxy, Fault};
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let n = 30_000;
    let (target, path) = s3_object(&stack);
    std::fs::write(&path, format!("{HEADER}{}", rows(n))).unwrap();
    let proxy = CuttingProxy::start_with(target, 400_000, 1, Fault::Freeze)
        .await
        .unwrap();
    let cfg = stack.write_config(&s3_config(&stack, &db, proxy.addr));
    migrate(&cfg);
    let Ran { status, out, err } =
        start_ferry(&cfg, &["once"], "warn", stack.dir.path().join("ferry.err"))
            .await
            .unwrap();
    eprintln!("ferry said:\n{err}");
    assert!(status.success(), "{out}\n{err}");
    assert!(out.contains("1 loaded"), "{out}\n{err}");
    assert_eq!(proxy.cuts.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(
        err.contains("io_timeout") && err.contains("f.csv") && err.contains("resuming"),
        "the log names the timeout, the file and the resume: {err}"
    );
    loaded_once(db, n).await;
}

/// The local TCP ports of `pid`'s sockets (from `/proc`), to find its
/// sessions in `pg_stat_activity.client_port`.
fn tcp_ports_of(pid: u32) -> Vec<i32> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let port = f.get(1)?.rsplit(':').next()?;
                    inodes
                        .iter()
                        .any(|i| Some(&i.as_str()) == f.get(9))
                        .then(|| i32::from_str_radix(port, 16).ok())?
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// PostgreSQL ends ferry's session in the middle of its COPY
/// (`pg_terminate_backend`: what a server restart or a failover does to a
/// client, 57P01): the load's transaction rolls back, the log names the
/// error, ferry reconnects, and the file loads exactly once — in this run
/// or the next.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_ending_the_session_mid_copy_loses_and_doubles_nothing() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let n = 150_000;
    stack.put_sftp("/outbox/a.csv", &format!("{HEADER}{}", rows(n)));
    let cfg = stack.write_config(&stack.config_toml(&db, &task_events_job("")));
    migrate(&cfg);
    let log = stack.dir.path().join("ferry-0.err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--config")
        .arg(&cfg)
        .arg("once")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut ended = 0;
    while ended == 0 && started.elapsed() < Duration::from_secs(60) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let ports = tcp_ports_of(child.id());
        ended = db
            .client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE client_port = ANY($1) AND state = 'active' AND query ILIKE 'COPY%'",
                &[&ports],
            )
            .await
            .unwrap()
            .len();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(ended, 1, "ferry's COPY was seen and its session ended");
    wait_bounded(&mut child, Duration::from_secs(90));
    let mut logs = std::fs::read_to_string(&log).unwrap();
    if db.count_where("ferry_files", "state = 'loaded'").await == 0 {
        let again = start_ferry(
            &cfg,
            &["once"],
            "warn",
            stack.dir.path().join("ferry-1.err"),
        )
        .await
        .unwrap();
        logs.push_str(&again.err);
        assert!(again.status.success(), "{logs}");
    }
    eprintln!("ferry said:\n{logs}");
    // The server's FATAL 57P01 may or may not be read before the socket
    // closes under a COPY in flight; the lost connection always is.
    assert!(
        logs.contains("postgres connection ended server=postgres"),
        "the log names the server and the lost session: {logs}"
    );
    loaded_once(db, n).await;
}

/// Two replicas on one ledger with different `max_errors` (a rolling
/// config change): B's download of a file freezes; meanwhile A loads it
/// (one bad row is within A's limit). When B's read resumes, B fails the
/// file for good (over its limit of 0) — and must neither record that
/// failure over A's load nor apply `on_failure` (move the file away).
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_fails_a_file_another_loaded_meanwhile_leaves_it_alone() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let n = 30_000;
    let bad = "x1,t1,created,open,u1,jira,not-a-time,1,1,\n";
    stack.put_sftp("/outbox/f.csv", &format!("{HEADER}{}{bad}", rows(n)));
    let job_b = task_events_job("on_failure = { action = \"move\", to = \"/failed\" }")
        .replace("max_errors = 10", "max_errors = 0");
    let (proxy, toml_b) = freezing_sftp(&stack, &db, &job_b, "5s").await;
    let rt_b = std::sync::Arc::new(crate::harness::migrated_runtime(&toml_b).await);
    let rt_a =
        crate::harness::migrated_runtime(&stack.config_toml(&db, &task_events_job(""))).await;
    let b = {
        let rt_b = rt_b.clone();
        tokio::spawn(async move { ferry::pipeline::run_pass(&rt_b, None).await.unwrap() })
    };
    let started = Instant::now();
    while proxy.cuts.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "B's download never froze"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let a = ferry::pipeline::run_pass(&rt_a, None).await.unwrap();
    assert_eq!((a.loaded.len(), a.loaded[0].rejected), (1, 1), "{a:?}");
    let b = tokio::time::timeout(Duration::from_secs(60), b)
        .await
        .expect("B's pass ends after its io_timeout")
        .unwrap();
    assert!(b.loaded.is_empty(), "{b:?}");
    assert_eq!(b.failed.len(), 1, "B reports its own failure: {b:?}");
    assert!(
        stack.sftp.root.join("outbox/f.csv").exists(),
        "the file A loaded stays where it was"
    );
    assert!(!stack.sftp.root.join("failed/f.csv").exists());
    assert_eq!(db.count_where("ferry_files", "state = 'loaded'").await, 1);
    assert_eq!(db.count_where("ferry_files", "state = 'failed'").await, 0);
    assert_eq!(
        db.count("ferry_load_errors").await,
        1,
        "only A's rejected row: B's error rows are not written over A's load"
    );
    assert_eq!(db.count("task_events").await, n as i64);
    db.drop_schema().await;
}

/// Regression: a download whose every resume was cut was read again from
/// the start by the fetch retry around it (up to 5 x 5 opens of one file
/// in a pass). Now, once the resumes (RetryPolicy::RESUME) are used up,
/// the file waits for the next pass: here the first six connections are
/// cut mid-file, the pass gives up after the sixth (the first read and
/// five resumes) without a seventh, and the next pass loads the file once.
#[tokio::test(flavor = "multi_thread")]
async fn a_download_whose_resumes_run_out_waits_for_the_next_pass() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let n = 30_000;
    stack.put_sftp("/outbox/f.csv", &format!("{HEADER}{}", rows(n)));
    let (proxy, rt) = cutting_sftp(&stack, &db, 200_000, 6).await;
    let first = ferry::pipeline::run_pass(&rt, None).await.unwrap();
    assert!(first.loaded.is_empty(), "{first:?}");
    assert_eq!(first.failed.len(), 1, "{first:?}");
    assert_eq!(
        proxy.cuts.load(std::sync::atomic::Ordering::SeqCst),
        6,
        "one read and five resumes, then no read again in this pass"
    );
    assert_eq!(db.count("ferry_files").await, 0, "nothing recorded");
    let second = ferry::pipeline::run_pass(&rt, None).await.unwrap();
    assert_eq!(second.loaded.len(), 1, "{second:?}");
    loaded_once(db, n).await;
}

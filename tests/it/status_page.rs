//! The status page of a running daemon, in a real headless Chromium
//! (Debian's chromium + chromium-driver, installed by `.ci/setup`): the
//! pages show the jobs, files, rejected records and loads the ledger has,
//! escape what comes from files, and the admin buttons pause, resume and
//! retry only with the token. A read-only daemon has no buttons and
//! refuses the actions.

use crate::harness::{BUCKET, Stack, TestDb, migrated_runtime, task_events_job};
use ferry::testkit::browser::Browser;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const HEADER: &str =
    "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";
const TOKEN: &str = "status-page-test-token-0123456789";

/// One raw request; the whole answer.
async fn http(addr: &str, request: &str) -> String {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .expect("the daemon answers within 15 s")
}

/// A daemon on `toml` with its listener on a free port: (address, stop,
/// the daemon's task).
async fn daemon(
    toml: &str,
) -> (
    String,
    CancellationToken,
    tokio::task::JoinHandle<ferry::Result<()>>,
) {
    let port = ferry::testkit::free_port().unwrap();
    let toml = toml.replace(
        "poll_interval = \"1s\"",
        &format!("poll_interval = \"300ms\"\nhttp_listen = \"127.0.0.1:{port}\""),
    );
    let rt = migrated_runtime(&toml).await;
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { ferry::daemon::run(&rt, stop).await }
    });
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (addr, stop, task)
}

/// Waits (up to 20 s) until `cond` holds of the ledger.
async fn until(db: &TestDb, cond: &str, n: i64) {
    for _ in 0..200 {
        if db.count_where("ferry_files", cond).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the ledger never had {n} rows where {cond}");
}

async fn stop(stop: CancellationToken, task: tokio::task::JoinHandle<ferry::Result<()>>) {
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the daemon stops")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_reads_the_pages_and_the_admin_buttons_need_the_token() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let token_file = stack.dir.path().join("admin-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    stack.put_sftp(
        "/outbox/good.csv",
        &format!(
            "{HEADER}e1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,5,1,\n\
             e2,t1,updated,done,u1,jira,2026-03-01T11:00:00Z,6,1,\n\
             e3,t2,created,open,u2,jira,not-a-time<script>alert(1)</script>,7,1,\n"
        ),
    );
    // A file name with markup in it, and more bad rows than max_errors.
    let bad_rows: String = (0..12)
        .map(|i| format!("b{i},t9,created,open,u9,jira,never,1,1,\n"))
        .collect();
    stack.put_sftp("/outbox/bad<i>x&amp;.csv", &format!("{HEADER}{bad_rows}"));
    let toml = stack
        .config_toml(
            &db,
            &task_events_job("archive_raw = true\nmax_lag = \"1h\""),
        )
        .replace(
            "[daemon]\n",
            &format!(
                "[daemon]\nhttp_admin = true\nhttp_admin_token_file = \"{}\"\n",
                token_file.display()
            ),
        );
    let (addr, stop_daemon, task) = daemon(&toml).await;
    until(&db, "state = 'loaded'", 1).await;
    until(&db, "state = 'failed'", 1).await;

    let shots = tempfile::tempdir().unwrap();
    let browser = Browser::start(1400, 1000)
        .await
        .expect("headless Chromium starts");
    let base = format!("http://{addr}");

    // The overview: the job, its counts, the chart, the latest load.
    browser.open(&format!("{base}/")).await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "Jobs · ferry");
    let jobs = browser.text("#jobs").await.unwrap();
    assert!(jobs.contains("task-events"), "{jobs}");
    assert!(jobs.contains("active"), "{jobs}");
    assert!(jobs.contains("partner → task_events"), "{jobs}");
    assert_eq!(browser.count("#jobs tbody tr").await.unwrap(), 1);
    assert_eq!(browser.count("svg.chart rect.bar").await.unwrap(), 24);
    assert!(
        browser
            .text("#loads")
            .await
            .unwrap()
            .contains("task-events")
    );
    browser
        .screenshot(&shots.path().join("overview.png"))
        .await
        .unwrap();

    // The job's page: both files, the failed one's error, the SLO.
    browser
        .open(&format!("{base}/jobs/task-events"))
        .await
        .unwrap();
    assert_eq!(browser.title().await.unwrap(), "Job task-events · ferry");
    let files = browser.text("#files").await.unwrap();
    assert!(files.contains("/outbox/good.csv"), "{files}");
    assert!(
        files.contains("/outbox/bad<i>x&amp;.csv"),
        "markup in a name is text: {files}"
    );
    assert!(
        files.contains("failed") && files.contains("loaded"),
        "{files}"
    );
    assert_eq!(
        browser.count("main i").await.unwrap(),
        0,
        "no element from a file name"
    );
    assert!(
        files.contains("x&amp;.csv"),
        "an entity in a name stays text: {files}"
    );
    let facts = browser.text("dl.facts").await.unwrap();
    assert!(facts.contains("1h 00m"), "the SLO shows: {facts}");
    browser
        .screenshot(&shots.path().join("job.png"))
        .await
        .unwrap();
    browser
        .open(&format!("{base}/jobs/task-events?state=failed"))
        .await
        .unwrap();
    assert_eq!(browser.count("#files tbody tr").await.unwrap(), 1);

    // The good file's page: its rejected record, escaped, and its objects.
    browser
        .open(&format!(
            "{base}/jobs/task-events/file?path=%2Foutbox%2Fgood.csv"
        ))
        .await
        .unwrap();
    let rejects = browser.text("#rejects").await.unwrap();
    assert!(rejects.contains("occurred_at"), "{rejects}");
    assert!(
        rejects.contains("not-a-time<script>alert(1)</script>"),
        "the raw value shows as text: {rejects}"
    );
    assert_eq!(browser.count("script").await.unwrap(), 0);
    let version = browser.text("#version").await.unwrap();
    assert!(
        version.contains("s3://ferry-test/ferry/staged/task-events/"),
        "{version}"
    );
    assert!(
        version.contains("s3://ferry-test/ferry/rejects/task-events/"),
        "{version}"
    );
    assert!(
        version.contains("s3://ferry-test/ferry/raw/task-events/") && version.contains("/good.csv"),
        "{version}"
    );
    let raw_key = version
        .lines()
        .find_map(|l| {
            l.split("s3://ferry-test/")
                .nth(1)
                .filter(|k| k.contains("/raw/"))
        })
        .unwrap()
        .trim()
        .to_string();
    assert!(
        stack.s3.root.join(BUCKET).join(&raw_key).exists(),
        "the raw copy the page names exists: {raw_key}"
    );
    browser
        .screenshot(&shots.path().join("file.png"))
        .await
        .unwrap();

    // A wrong token is refused; the job stays active.
    browser
        .open(&format!("{base}/jobs/task-events"))
        .await
        .unwrap();
    browser
        .type_into("#pause input[name=token]", "wrong-token-wrong-token")
        .await
        .unwrap();
    browser.click("#pause button").await.unwrap();
    browser
        .wait_for_text("body", "wrong or missing admin token")
        .await
        .expect("a wrong token is refused");
    assert_eq!(db.count_where("ferry_jobs", "auto").await, 1);
    // The right one pauses it, and the page says so.
    browser
        .open(&format!("{base}/jobs/task-events"))
        .await
        .unwrap();
    browser
        .type_into("#pause input[name=token]", TOKEN)
        .await
        .unwrap();
    browser.click("#pause button").await.unwrap();
    browser
        .wait_for_text("#said", "job task-events paused")
        .await
        .unwrap();
    assert_eq!(db.count_where("ferry_jobs", "NOT auto").await, 1);
    assert!(browser.text("dl.facts").await.unwrap().contains("paused"));
    browser
        .type_into("#resume input[name=token]", TOKEN)
        .await
        .unwrap();
    browser.click("#resume button").await.unwrap();
    browser.wait_for_text("#said", "resumed").await.unwrap();
    assert_eq!(db.count_where("ferry_jobs", "auto").await, 1);

    // The failed file's page offers a retry, which forgets the failure.
    browser
        .open(&format!(
            "{base}/jobs/task-events/file?path={}",
            ferry::daemon::request::encode("/outbox/bad<i>x&amp;.csv")
        ))
        .await
        .unwrap();
    assert!(
        browser
            .text("#version")
            .await
            .unwrap()
            .contains("max_errors")
    );
    browser
        .type_into("#retry-file input[name=token]", TOKEN)
        .await
        .unwrap();
    browser.click("#retry-file button").await.unwrap();
    browser
        .wait_for_text(
            "#said",
            "1 failed file version(s) of job task-events forgotten",
        )
        .await
        .unwrap();
    browser.quit().await;

    // The pages' HTML names no outside resource and sets its policy.
    let page = http(&addr, "GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(
        page.contains("content-security-policy: default-src 'none'"),
        "{page}"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing loads from elsewhere"
    );
    for shot in ["overview.png", "job.png", "file.png"] {
        let png = std::fs::read(shots.path().join(shot)).unwrap();
        assert!(
            png.len() > 10_000,
            "{shot} holds a rendered page ({} bytes)",
            png.len()
        );
    }
    if let Ok(dir) = std::env::var("FERRY_SCREENSHOT_DIR") {
        std::fs::copy(
            shots.path().join("overview.png"),
            format!("{dir}/status-overview.png"),
        )
        .unwrap();
        std::fs::copy(
            shots.path().join("job.png"),
            format!("{dir}/status-job.png"),
        )
        .unwrap();
    }
    stop(stop_daemon, task).await;
    db.drop_schema().await;
}

/// Without `http_admin` the pages have no buttons and the actions do not
/// exist; a bad request is a 400, a HEAD has no body, an unknown job 404.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_page_offers_and_takes_no_action() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    stack.put_sftp(
        "/outbox/a.csv",
        &format!("{HEADER}e1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,5,1,\n"),
    );
    let (addr, stop_daemon, task) = daemon(&stack.config_toml(&db, &task_events_job(""))).await;
    until(&db, "state = 'loaded'", 1).await;
    let job = http(&addr, "GET /jobs/task-events HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(job.starts_with("HTTP/1.1 200 OK"), "{job}");
    assert!(
        job.contains("/outbox/a.csv") && !job.contains("<form"),
        "{job}"
    );
    let body = format!("token={TOKEN}");
    let post = http(
        &addr,
        &format!(
            "POST /jobs/task-events/pause HTTP/1.1\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 404"), "{post}");
    assert_eq!(
        db.count_where("ferry_jobs", "auto").await,
        1,
        "still active"
    );
    let head = http(&addr, "HEAD / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(
        head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    let bad = http(&addr, "NONSENSE\r\n\r\n").await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let unknown = http(&addr, "GET /jobs/nope HTTP/1.1\r\n\r\n").await;
    assert!(
        unknown.starts_with("HTTP/1.1 404") && unknown.contains("no job named"),
        "{unknown}"
    );
    let loads = http(&addr, "GET /loads?job=task-events HTTP/1.1\r\n\r\n").await;
    assert!(
        loads.contains("Loads of task-events") && loads.contains("<table id=\"loads\""),
        "{loads}"
    );
    stop(stop_daemon, task).await;
    db.drop_schema().await;
}

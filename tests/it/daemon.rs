//! The daemon loop: files dropped while it runs are loaded, `/healthz`
//! answers, and a shutdown request stops it cleanly.

use crate::harness::{Stack, TestDb, migrated_runtime, task_events_job};
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

#[tokio::test(flavor = "multi_thread")]
async fn loads_files_dropped_while_running_and_stops_on_request() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let port = ferry::testkit::free_port().unwrap();
    let toml = stack.config_toml(&db, &task_events_job("")).replace(
        "poll_interval = \"1s\"",
        &format!("poll_interval = \"200ms\"\nhttp_listen = \"127.0.0.1:{port}\""),
    );
    let rt = migrated_runtime(&toml).await;
    let stop = CancellationToken::new();
    let daemon = tokio::spawn({
        let stop = stop.clone();
        async move { ferry::daemon::run(&rt, stop).await }
    });

    let addr = format!("127.0.0.1:{port}");
    let mut health = String::new();
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            health = get(&addr, "/healthz").await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(health.starts_with("HTTP/1.1 200 OK"), "{health}");
    assert!(get(&addr, "/nope").await.starts_with("HTTP/1.1 404"));

    stack.put_sftp(
        "/outbox/late.csv",
        "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n\
         e9,t9,created,open,u9,jira,2026-03-01T10:00:00Z,,,\n",
    );
    let mut loaded = 0i64;
    for _ in 0..100 {
        loaded = db.count("task_events").await;
        if loaded == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        loaded, 1,
        "the dropped file is loaded by the running daemon"
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .expect("the daemon stops within the timeout")
        .unwrap()
        .expect("the daemon stops cleanly");
    let files: i64 = db.count("ferry_files").await;
    assert_eq!(files, 1, "polled many times, loaded once");
    db.drop_schema().await;
}

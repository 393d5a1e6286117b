//! Alerts reach a real webhook receiver (a socket on loopback that fails
//! the first delivery, so the retry is exercised) for each kind, digested;
//! an SNS topic on moto_server carries them to an SQS inbox; and
//! `ferry alerts test` says which targets work.

use crate::harness::{Stack, TestDb, migrated_runtime, task_events_job};
use ferry::testkit::webhook::WebhookServer;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const HEADER: &str =
    "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload";

fn kinds(bodies: &[serde_json::Value]) -> Vec<String> {
    let mut k: Vec<String> = bodies
        .iter()
        .filter_map(|b| b["kind"].as_str().map(str::to_string))
        .collect();
    k.sort();
    k.dedup();
    k
}

/// One daemon, two jobs: `task-events` loads a file with a rejected
/// record, an unmapped field and an open status (which its check refuses),
/// and fails three files for good; `dead-events` reads a source that is
/// gone and is paused after eight failed passes. Every kind reaches the
/// webhook; the three failures come as one message and one digest of two.
#[tokio::test(flavor = "multi_thread")]
async fn every_kind_reaches_a_webhook_digested() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let hook = WebhookServer::start(&[503]).await.unwrap();
    stack.put_sftp(
        "/outbox/ok.csv",
        &format!(
            "{HEADER},extra\ne1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,5,1,,x\n\
             e2,t1,updated,done,u1,jira,2026-03-01T11:00:00Z,6,1,,x\n\
             e3,t2,created,done,u2,jira,never,7,1,,x\n"
        ),
    );
    let bad: String = (0..12)
        .map(|i| format!("b{i},t9,created,open,u9,jira,never,1,1,\n"))
        .collect();
    for name in ["bad1", "bad2", "bad3"] {
        stack.put_sftp(&format!("/outbox/{name}.csv"), &format!("{HEADER}\n{bad}"));
    }
    let check = r#"checks = [{ name = "nothing_open", sql = "SELECT event_id FROM {target} WHERE ferry_load_id = :load_id AND status = 'open'" }]"#;
    let dead_job = task_events_job("pause_after_failures = 8")
        .replace("name = \"task-events\"", "name = \"dead-events\"")
        .replace("source = \"partner\"", "source = \"gone\"")
        .replace("target = \"task_events\"", "target = \"dead_events\"");
    let gone = stack.dir.path().join("gone");
    let toml = format!(
        "{}{dead_job}\n[sources.gone]\nkind = \"local\"\nroot = \"{}\"\n\n\
         [[alerts]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\ndigest = \"3s\"\n\
         source_down_after = \"1s\"\nreject_rate = 0.1\nretries = 3\n",
        stack.config_toml(&db, &task_events_job(&format!("max_lag = \"1s\"\n{check}"))),
        gone.display(),
        hook.url,
    )
    .replace(
        "poll_interval = \"1s\"",
        "poll_interval = \"300ms\"\nhttp_listen = \"\"",
    );
    let rt = migrated_runtime(&toml).await;
    let stop = CancellationToken::new();
    let daemon = tokio::spawn({
        let stop = stop.clone();
        async move { ferry::daemon::run(&rt, stop).await }
    });

    let want = [
        "check_failed",
        "file_failed",
        "job_paused",
        "lag",
        "rejects",
        "schema_change",
        "source_down",
    ];
    let bodies = hook
        .wait_for(Duration::from_secs(60), |b| {
            kinds(b).len() == want.len()
                && b.iter()
                    .filter(|m| m["kind"] == "file_failed")
                    .map(|m| m["count"].as_u64().unwrap_or(0))
                    .sum::<u64>()
                    == 3
        })
        .await;
    assert_eq!(kinds(&bodies), want, "{bodies:#?}");
    // Three failures: one message at once, then one digest of two.
    let failed: Vec<&serde_json::Value> = bodies
        .iter()
        .filter(|m| m["kind"] == "file_failed")
        .collect();
    assert_eq!(failed.len(), 2, "{failed:#?}");
    assert_eq!(failed[0]["count"], 1);
    assert_eq!(failed[1]["count"], 2);
    assert_eq!(failed[1]["digest_window_s"], 3);
    assert!(
        failed[1]["text"]
            .as_str()
            .unwrap()
            .contains("2 more file_failed"),
        "{}",
        failed[1]["text"]
    );
    assert!(
        failed[0]["text"].as_str().unwrap().contains("max_errors"),
        "the reason is in the message"
    );
    for m in &bodies {
        assert_eq!(m["alert"], "hook");
        assert!(m["text"].as_str().unwrap().starts_with("ferry ["), "{m}");
        let job = m["job"].as_str().unwrap();
        let expected = match m["kind"].as_str().unwrap() {
            "source_down" | "job_paused" => "dead-events",
            _ => "task-events",
        };
        assert_eq!(job, expected, "{m}");
    }
    let rejects = bodies.iter().find(|m| m["kind"] == "rejects").unwrap();
    assert!(
        rejects["text"]
            .as_str()
            .unwrap()
            .contains("rejected 1 of 3 records"),
        "{rejects}"
    );
    let paused = bodies.iter().find(|m| m["kind"] == "job_paused").unwrap();
    assert!(
        paused["text"]
            .as_str()
            .unwrap()
            .contains("ferry jobs resume dead-events"),
        "{paused}"
    );
    assert_eq!(
        bodies.iter().filter(|m| m["kind"] == "job_paused").count(),
        1,
        "the pause alerts once"
    );
    assert_eq!(
        db.count_where("ferry_jobs", "job = 'dead-events' AND NOT auto")
            .await,
        1,
        "paused in the ledger"
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), daemon)
        .await
        .expect("the daemon stops")
        .unwrap()
        .unwrap();
    db.drop_schema().await;
}

/// `ferry alerts test` reaches an SNS topic (on moto_server, read back
/// from the SQS queue subscribed to it) and a webhook, and exits 1 naming
/// a webhook that refuses the message.
#[tokio::test(flavor = "multi_thread")]
async fn alerts_test_reaches_sns_and_names_a_refusing_webhook() {
    let moto = ferry::testkit::moto::MotoServer::start().await.unwrap();
    let (topic, inbox) = moto.topic_with_queue("ferry-alerts").await.unwrap();
    let good = WebhookServer::start(&[]).await.unwrap();
    let refusing = WebhookServer::start(&[404]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, ferry::testkit::moto::SECRET_KEY).unwrap();
    let toml = format!(
        "[staging]\nbucket = \"b\"\n[warehouse]\nkind = \"postgres\"\n\
         [[alerts]]\nname = \"topic\"\nkind = \"sns\"\ntopic_arn = \"{topic}\"\nregion = \"{}\"\nendpoint = \"{}\"\n\
         access_key_id = \"{}\"\nsecret_access_key_file = \"{}\"\n\
         [[alerts]]\nname = \"good\"\nkind = \"webhook\"\nurl = \"{}\"\n\
         [[alerts]]\nname = \"refusing\"\nkind = \"webhook\"\nurl = \"{}\"\n",
        ferry::testkit::moto::REGION,
        moto.endpoint(),
        ferry::testkit::moto::ACCESS_KEY,
        secret.display(),
        good.url,
        refusing.url,
    );
    let path = dir.path().join("ferry.toml");
    std::fs::write(&path, toml).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["--config", path.to_str().unwrap(), "alerts", "test"])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("ferry alerts test ends")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("OK    alert topic: test message delivered"),
        "{stdout}"
    );
    assert!(
        stdout.contains("OK    alert good: test message delivered"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL  alert refusing:") && stdout.contains("refused the message with 404"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&refusing.url),
        "the URL (a secret) is not printed: {stdout}"
    );
    let published = moto
        .take_messages(&inbox, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(published.len(), 1, "{published:?}");
    assert!(
        published[0].contains("alert topic reaches you"),
        "{}",
        published[0]
    );
    assert!(
        published[0].contains("\"alert\":\"topic\""),
        "the JSON follows the text: {}",
        published[0]
    );
    let got = good.bodies();
    assert_eq!(got.len(), 1);
    assert!(
        got[0]["text"]
            .as_str()
            .unwrap()
            .contains("alert good reaches you")
    );
}

//! Schema drift under each contract policy, on both backends: columns
//! that grow, shrink and widen under `evolve`, `freeze` failing the first
//! drifted file alone, `discard_row`, `discard_value`, `capture` into a
//! JSON column, and a SIGKILL between an `evolve` ALTER and the load's
//! commit (the load is held on the ledger lock by the test).

use crate::crash::ferry;
use crate::harness::{Backend, Env};
use ferry::pipeline::run_pass;
use std::time::{Duration, Instant};

crate::harness::both_backends!(
    evolve_follows_columns_that_grow_shrink_and_widen_and_every_row_is_exact,
    freeze_fails_the_first_drifted_file_naming_what_changed_and_nothing_else,
    discard_row_and_discard_value_reject_or_null_what_does_not_fit,
    capture_keeps_unmapped_fields_as_one_json_document,
    a_sigkill_between_the_alter_and_the_commit_loses_nothing_and_the_retry_loads,
);

/// A small merge job on `*.{ext}` into `drift_events`, created by ferry.
fn job(format: &str, ext: &str, contract: &str) -> String {
    format!(
        r#"
[[jobs]]
name = "drift"
source = "partner"
path = "/outbox"
pattern = "*.{ext}"
target = "drift_events"
key = ["id"]
max_errors = 100
auto_create = true
settle = {{ min_age = "0s" }}
format = {format}
contract = {contract}
columns = [
  {{ name = "id", type = "varchar(16)", required = true }},
  {{ name = "name", type = "varchar(8)" }},
]
"#
    )
}

fn csv_job(contract: &str) -> String {
    job("{ kind = \"csv\" }", "csv", contract)
}

/// The target's rows as text, `id|col|col…` in id order, NULL as `-`.
async fn rows(env: &Env, columns: &[&str]) -> Vec<String> {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| format!("coalesce({c}::text, '-')"))
        .collect();
    let sql = format!(
        "SELECT concat_ws('|', id, {}) FROM {} ORDER BY id",
        cols.join(", "),
        env.db.t("drift_events")
    );
    env.db.texts(&sql, &[]).await
}

/// `column: type` of the target's columns, in order (load columns left out).
async fn columns(env: &Env) -> Vec<String> {
    let sql = "SELECT column_name::text || ': ' || CASE WHEN character_maximum_length IS NULL THEN data_type::text \
         ELSE 'varchar(' || character_maximum_length || ')' END FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = 'drift_events' AND column_name NOT LIKE 'ferry\\_%' \
         ORDER BY ordinal_position";
    env.db.texts(sql, &[&env.db.schema]).await
}

/// `path change field action` of every recorded schema change.
async fn changes(env: &Env) -> Vec<String> {
    let sql = format!(
        "SELECT path || ' ' || change || ' ' || field || ' ' || action FROM {} ORDER BY path, change, field",
        env.db.t("ferry_schema_changes")
    );
    env.db.texts(&sql, &[]).await
}

async fn pass(rt: &ferry::pipeline::Runtime) -> ferry::pipeline::PassReport {
    run_pass(rt, None).await.unwrap()
}

async fn evolve_follows_columns_that_grow_shrink_and_widen_and_every_row_is_exact(
    backend: Backend,
) {
    let env = Env::start(backend).await;
    let job = csv_job("{ columns = \"evolve\", types = \"evolve\" }");
    let rt = env.runtime(&job).await;
    env.stack
        .put_sftp("/outbox/a.csv", "id,name\n1,ann\n2,bob\n");
    let r = pass(&rt).await;
    assert_eq!(r.loaded.len(), 1, "{r:?}");

    // Grow: two new fields, one numeric, one text.
    env.stack.put_sftp(
        "/outbox/b.csv",
        "id,name,score,city\n3,cy,10,Oslo\n4,dee,20,\n",
    );
    let r = pass(&rt).await;
    assert!(!r.has_failures(), "{r:?}");
    assert_eq!(r.loaded.len(), 1, "{r:?}");
    assert_eq!(
        columns(&env).await,
        [
            "id: varchar(16)",
            "name: varchar(8)",
            "score: integer",
            "city: varchar(16)"
        ]
    );

    // Shrink: mapped fields missing from the header load as NULL.
    env.stack.put_sftp("/outbox/c.csv", "id,city\n5,Bergen\n");
    // Widen: a name longer than VARCHAR(8).
    env.stack
        .put_sftp("/outbox/d.csv", "id,name\n6,averyverylongname\n");
    let r = pass(&rt).await;
    assert!(!r.has_failures(), "{r:?}");
    assert_eq!(r.loaded.len(), 2, "{r:?}");
    assert_eq!(
        columns(&env).await,
        [
            "id: varchar(16)",
            "name: varchar(32)",
            "score: integer",
            "city: varchar(16)"
        ]
    );
    assert_eq!(
        rows(&env, &["name", "score", "city"]).await,
        [
            "1|ann|-|-",
            "2|bob|-|-",
            "3|cy|10|Oslo",
            "4|dee|20|",
            "5|-|-|Bergen",
            "6|averyverylongname|-|-"
        ]
    );
    assert_eq!(env.db.count("ferry_load_errors").await, 0);

    // A new runtime knows the evolved columns from the ledger: no ALTER,
    // the fields map at once.
    drop(rt);
    let rt = env.runtime(&job).await;
    env.stack
        .put_sftp("/outbox/e.csv", "id,score,city,name\n7,70,Rome,eve\n");
    let r = pass(&rt).await;
    assert!(!r.has_failures(), "{r:?}");
    assert_eq!(r.loaded.len(), 1, "{r:?}");
    assert_eq!(
        rows(&env, &["name", "score", "city"]).await.last().unwrap(),
        "7|eve|70|Rome"
    );
    assert_eq!(
        changes(&env).await,
        [
            "/outbox/b.csv added_column city added column",
            "/outbox/b.csv added_column score added column",
            "/outbox/b.csv new_fields score, city added columns",
            "/outbox/c.csv missing_fields name, score loaded as NULL or the column's default",
            "/outbox/d.csv misfit name widened the column",
            "/outbox/d.csv missing_fields score, city loaded as NULL or the column's default",
            "/outbox/d.csv widened_column name widened column",
        ]
    );
    // `ferry files` and `ferry jobs` count each version's changes.
    let (cfg, wh) = (&rt.config, &*rt.warehouse);
    let files = ferry::commands::ops::files(
        cfg,
        wh,
        &ferry::ledger::reports::Filter {
            limit: 50,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let at = |name: &str| files.columns.iter().position(|c| *c == name).unwrap();
    let mut counts: Vec<String> = files
        .rows
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r[at("path")].as_deref().unwrap(),
                r[at("schema_changes")].as_deref().unwrap()
            )
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            "/outbox/a.csv 0",
            "/outbox/b.csv 3",
            "/outbox/c.csv 1",
            "/outbox/d.csv 3",
            "/outbox/e.csv 0"
        ]
    );
    let jobs = ferry::commands::ops::jobs(cfg, wh).await.unwrap();
    let i = jobs
        .columns
        .iter()
        .position(|c| *c == "schema_changes")
        .unwrap();
    assert_eq!(jobs.rows[0][i].as_deref(), Some("7"));
    drop(rt);
    env.finish().await;
}

async fn freeze_fails_the_first_drifted_file_naming_what_changed_and_nothing_else(
    backend: Backend,
) {
    let env = Env::start(backend).await;
    let rt = env
        .runtime(&csv_job("{ columns = \"freeze\", types = \"freeze\" }"))
        .await;
    env.stack.put_sftp("/outbox/a.csv", "id,name\n1,ann\n");
    env.stack
        .put_sftp("/outbox/b.csv", "id,name,score\n2,bob,10\n");
    env.stack
        .put_sftp("/outbox/c.csv", "id,name\n3,cy\n4,averyverylongname\n");
    env.stack.put_sftp("/outbox/d.csv", "name,id\ndee,5\n");
    let r = pass(&rt).await;
    assert_eq!(r.loaded.len(), 2, "{r:?}");
    assert_eq!(r.failed.len(), 2, "{r:?}");
    let error = |path: &str| {
        r.failed
            .iter()
            .find(|(_, p, _)| p == path)
            .map(|(_, _, e)| e.clone())
            .unwrap_or_default()
    };
    let b = error("/outbox/b.csv");
    assert!(
        b.contains("score") && b.contains("not in the mapping") && b.contains("contract.columns"),
        "{b}"
    );
    let c = error("/outbox/c.csv");
    assert!(
        c.contains("line 3 column name")
            && c.contains("varchar(8)")
            && c.contains("contract.types"),
        "{c}"
    );
    assert_eq!(rows(&env, &["name"]).await, ["1|ann", "5|dee"]);
    assert_eq!(
        env.db.count_where("ferry_files", "state = 'failed'").await,
        2
    );
    assert_eq!(
        columns(&env).await,
        ["id: varchar(16)", "name: varchar(8)"],
        "nothing altered"
    );
    drop(rt);
    env.finish().await;
}

async fn discard_row_and_discard_value_reject_or_null_what_does_not_fit(backend: Backend) {
    let env = Env::start(backend).await;
    let rt = env
        .runtime(&csv_job(
            "{ columns = \"discard_row\", types = \"discard_value\" }",
        ))
        .await;
    env.stack.put_sftp(
        "/outbox/a.csv",
        "id,name,note\n1,ann,\n2,bob,hello\n3,averyverylongname,\n",
    );
    let r = pass(&rt).await;
    assert!(!r.has_failures(), "{r:?}");
    assert_eq!(rows(&env, &["name"]).await, ["1|ann", "3|-"]);
    let errors = env
        .db
        .client
        .query(
            &format!(
                "SELECT line_number, error_code, reason FROM {}",
                env.db.t("ferry_load_errors")
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].get::<_, i64>(0), 3, "line 3 has a note");
    assert_eq!(errors[0].get::<_, i32>(1), 1240);
    assert!(errors[0].get::<_, String>(2).contains("note"));
    assert_eq!(
        changes(&env).await,
        [
            "/outbox/a.csv misfit name loaded 1 values as NULL",
            "/outbox/a.csv new_fields note rejected the records that have them",
        ]
    );
    drop(rt);
    env.finish().await;
}

async fn capture_keeps_unmapped_fields_as_one_json_document(backend: Backend) {
    let env = Env::start(backend).await;
    let rt = env
        .runtime(&job(
            "{ kind = \"ndjson\" }",
            "json",
            "{ columns = \"capture\" }",
        ))
        .await;
    env.stack.put_sftp(
        "/outbox/a.json",
        "{\"id\":\"1\",\"name\":\"ann\"}\n{\"id\":\"2\",\"name\":\"bob\",\"tags\":[1,2],\"city\":\"Oslo\"}\n",
    );
    let r = pass(&rt).await;
    assert!(!r.has_failures(), "{r:?}");
    let got = env
        .db
        .client
        .query(
            &format!(
                "SELECT id, ferry_extra::text, jsonb_typeof(ferry_extra) FROM {} ORDER BY id",
                env.db.t("drift_events")
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].get::<_, Option<String>>(1), None, "nothing to keep");
    let doc: serde_json::Value =
        serde_json::from_str(&got[1].get::<_, String>(1)).expect("a JSON document");
    assert_eq!(doc, serde_json::json!({"tags": [1, 2], "city": "Oslo"}));
    assert_eq!(
        got[1].get::<_, String>(2),
        "object",
        "a document, not a string"
    );
    assert_eq!(
        changes(&env).await,
        ["/outbox/a.json new_fields tags, city captured in 1 records"]
    );
    drop(rt);
    env.finish().await;
}

async fn a_sigkill_between_the_alter_and_the_commit_loses_nothing_and_the_retry_loads(
    backend: Backend,
) {
    let env = Env::start(backend).await;
    let cfg = env
        .stack
        .write_config(&env.config_toml(&csv_job("{ columns = \"evolve\", types = \"evolve\" }")));
    let run = |args: &'static [&'static str]| {
        let cfg = cfg.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(120),
                tokio::task::spawn_blocking(move || ferry(&cfg, args).status().unwrap()),
            )
            .await
            .expect("ferry finishes within 2 minutes")
            .unwrap()
        }
    };
    assert!(run(&["migrate"]).await.success());
    env.stack
        .put_sftp("/outbox/a.csv", "id,name,score\n1,ann,10\n2,bob,20\n");

    // The test holds the ledger lock's table in EXCLUSIVE mode: reads go
    // on, ferry's load (LOCK TABLE, ACCESS EXCLUSIVE) waits behind it.
    let (holder, conn) = tokio_postgres::connect(
        &format!(
            "host={} port={} user={} dbname={}",
            env.db.host, env.db.port, env.db.user, env.db.dbname
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    holder
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {} IN EXCLUSIVE MODE",
            env.db.t("ferry_files")
        ))
        .await
        .unwrap();
    let mut child = ferry(&cfg, &["once"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !columns(&env).await.iter().any(|c| c.starts_with("score")) {
        assert!(Instant::now() < deadline, "ferry added the column in time");
        assert!(child.try_wait().unwrap().is_none(), "ferry once still runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The ALTER has committed; the load waits on the lock. Kill it there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    holder.batch_execute("ROLLBACK").await.unwrap();
    let committed = env.db.count("drift_events").await;
    match backend {
        // The session died with the process: PostgreSQL rolled it back.
        Backend::Postgres => {
            assert_eq!(committed, 0, "nothing committed");
            assert_eq!(
                env.db.count_where("ferry_files", "state = 'loaded'").await,
                0
            );
        }
        // A submitted Data API batch runs on without its client, as on
        // Redshift: it may commit on its own once the lock is free.
        Backend::RedshiftData => assert!(committed == 0 || committed == 2, "{committed}"),
    }

    // The retry finds the column, loads the file, alters nothing again.
    assert!(run(&["once"]).await.success(), "ferry once after the kill");
    assert_eq!(
        rows(&env, &["name", "score"]).await,
        ["1|ann|10", "2|bob|20"]
    );
    assert_eq!(
        env.db.count_where("ferry_files", "state = 'loaded'").await,
        1
    );
    assert_eq!(
        env.db
            .count_where(
                "ferry_schema_changes",
                "change = 'added_column' AND field = 'score'"
            )
            .await,
        1,
        "the ALTER is recorded once"
    );
    env.finish().await;
}

//! Declarative transforms end to end, on both backends: derived columns
//! computed by expressions (text, numbers, dates, hash, lookups from a
//! local file and from S3) load exactly, a record an expression fails on
//! is rejected naming the column, and `ferry check --offline` names the
//! job, the column and the position of a bad expression.

use crate::harness::{BUCKET, Backend, Env};
use ferry::pipeline::run_pass;

crate::harness::both_backends!(derived_columns_load_exactly_and_a_failing_record_is_rejected);

async fn derived_columns_load_exactly_and_a_failing_record_is_rejected(backend: Backend) {
    let env = Env::start(backend).await;
    let teams = env.stack.dir.path().join("teams.csv");
    std::fs::write(&teams, "user,team\nu1,core\nu2,web\n").unwrap();
    let toml = env.config_toml(&format!(
        r#"
[[jobs]]
name = "derived"
source = "partner"
path = "/outbox"
pattern = "*.csv"
target = "derived_events"
key = ["id"]
max_errors = 10
auto_create = true
settle = {{ min_age = "0s" }}
lookups = {{ teams = "{teams}", regions = "s3://{BUCKET}/lookups/regions.csv" }}
columns = [
  {{ name = "id", type = "varchar(16)", required = true }},
  {{ name = "status", type = "varchar(16)", expr = "lower(trim(status))" }},
  {{ name = "row_key", type = "varchar(64)", expr = "hash(id, status)" }},
  {{ name = "seconds", type = "decimal(12,3)", expr = "ms / 1000" }},
  {{ name = "day", type = "timestamptz", expr = "date_trunc('day', at)" }},
  {{ name = "hour", type = "int", expr = "date_part('hour', at)" }},
  {{ name = "project", type = "varchar(8)", expr = "split_part(ticket, '-', 1)" }},
  {{ name = "number", type = "int", expr = "regex_extract(ticket, '-(\\d+)$', 1)" }},
  {{ name = "team", type = "varchar(16)", expr = "lookup('teams', user, 'unknown')" }},
  {{ name = "region", type = "varchar(16)", expr = "coalesce(lookup('regions', site), 'n/a')" }},
]
"#,
        teams = teams.display()
    ));
    let config = ferry::config::from_toml_str(&toml).unwrap();
    ferry::stage::Stager::new(&config.staging)
        .await
        .put_small(
            "lookups/regions.csv",
            b"site,region\nosl,north\nrom,south\n".to_vec(),
            "text/csv",
        )
        .await
        .unwrap();
    env.stack.put_sftp(
        "/outbox/a.csv",
        "id,status,ms,at,ticket,user,site\n\
         1,  Open ,1234,2026-03-01T10:42:17+02:00,CORE-12,u1,osl\n\
         2,DONE,50,2026-03-02 23:59:59,WEB-7,u9,\n\
         3,open,abc,2026-03-03T00:00:00Z,X-1,u2,rom\n",
    );
    let rt = crate::harness::migrated_runtime(&toml).await;
    let r = run_pass(&rt, None).await.unwrap();
    assert!(!r.has_failures(), "{r:?}");
    let rows = env
        .db
        .texts(
            &format!(
                "SELECT concat_ws('|', id, status, row_key, seconds, day AT TIME ZONE 'UTC', hour, project, number, team, region) \
                 FROM {} ORDER BY id",
                env.db.t("derived_events")
            ),
            &[],
        )
        .await;
    let key = |a: &str, b: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(format!("{a}\u{1f}{b}")))
    };
    assert_eq!(
        rows,
        [
            format!(
                "1|open|{}|1.234|2026-03-01 00:00:00|8|CORE|12|core|north",
                key("1", "  Open ")
            ),
            format!(
                "2|done|{}|0.050|2026-03-02 00:00:00|23|WEB|7|unknown|n/a",
                key("2", "DONE")
            ),
        ]
    );
    let errors = env
        .db
        .client
        .query(
            &format!(
                "SELECT line_number, column_name, error_code, reason FROM {}",
                env.db.t("ferry_load_errors")
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].get::<_, i64>(0), 4);
    assert_eq!(errors[0].get::<_, String>(1), "seconds");
    assert_eq!(errors[0].get::<_, i32>(2), 1250);
    let reason: String = errors[0].get(3);
    assert!(
        reason.contains("\"abc\" is not a number") && reason.contains("ms / 1000"),
        "{reason}"
    );
    drop(rt);
    env.finish().await;
}

#[test]
fn check_offline_names_the_job_the_column_and_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ferry.toml");
    std::fs::write(
        &cfg,
        r#"
[staging]
bucket = "b"
[warehouse]
kind = "postgres"
[sources.s]
kind = "local"
root = "/tmp"
[[jobs]]
name = "events"
source = "s"
path = "/"
target = "t"
mode = "append"
columns = [
  { name = "id", type = "varchar(8)" },
  { name = "key", type = "varchar(64)", expr = "hash(id, lowr(status))" },
]
"#,
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--config")
        .arg(&cfg)
        .args(["check", "--offline"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(78));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("jobs[0].columns[1].expr")
            && err.contains("job events, column key: at position 10: unknown function lowr()"),
        "{err}"
    );
}

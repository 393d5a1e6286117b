//! Config parsing and validation: every error names its key path.

use super::*;
use crate::schema::ColumnType;

/// The smallest valid configuration: one local source, one job.
static MINIMAL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    test_toml("key = [\"id\"]\ncolumns = [ { name = \"id\", type = \"bigint\" } ]\n")
});

fn err(text: &str) -> String {
    from_toml_str(text).unwrap_err().to_string()
}

#[test]
fn minimal_config_gets_sensible_defaults() {
    let c = from_toml_str(&MINIMAL).unwrap();
    assert_eq!(c.daemon.poll_interval, Duration::from_secs(30));
    assert_eq!(c.daemon.concurrency, 16);
    assert_eq!(c.staging.prefix, "ferry");
    assert_eq!(c.staging.s3.checksums, Checksums::WhenSupported);
    let j = &c.jobs[0];
    assert_eq!(j.mode, LoadMode::Merge);
    assert_eq!(j.on_success, Finalize::Keep);
    assert_eq!(j.settle.min_age, Duration::from_secs(30));
    assert!(j.settle.temp_patterns.is_match("x.csv.part"));
    assert!(j.settle.temp_patterns.is_match(".hidden.csv"));
    assert!(j.pattern.is_match("anything.csv"));
    assert_eq!(c.warehouse.schema().as_str(), "public");
}

#[test]
fn a_misspelled_key_is_rejected_with_its_name() {
    let e = err(&MINIMAL.replace("[staging]", "[daemon]\npol_interval = \"5s\"\n\n[staging]"));
    assert!(e.contains("pol_interval"), "{e}");
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn a_misspelled_key_in_a_job_is_rejected() {
    let e = err(&MINIMAL.replace("target = \"t\"", "target = \"t\"\ntargte = \"x\""));
    assert!(e.contains("targte"), "{e}");
}

#[test]
fn validation_names_the_key_path_and_collects_every_problem() {
    let text = MINIMAL
        .replace(
            "[staging]",
            "[daemon]\npoll_interval = \"soon\"\n\n[staging]",
        )
        .replace("type = \"bigint\"", "type = \"bigint(3)\"")
        .replace("key = [\"id\"]", "key = [\"idd\"]");
    let e = err(&text);
    assert!(
        e.contains("daemon.poll_interval: \"soon\" is not a duration"),
        "{e}"
    );
    assert!(
        e.contains("jobs[0].columns[0].type: unknown type \"bigint(3)\""),
        "{e}"
    );
    assert!(
        e.contains("jobs[0].key[0]: idd is not one of the job's columns"),
        "{e}"
    );
}

#[test]
fn a_missing_secret_env_var_is_named() {
    let text = MINIMAL.replace(
        "kind = \"postgres\"",
        "kind = \"postgres\"\npassword_env = \"FERRY_TEST_SURELY_UNSET_PG_PASSWORD\"",
    );
    let e = err(&text);
    assert!(e.contains("warehouse.password_env: environment variable FERRY_TEST_SURELY_UNSET_PG_PASSWORD is not set"), "{e}");
}

#[test]
fn unknown_source_and_bad_identifiers_are_reported() {
    let e = err(&MINIMAL
        .replace("source = \"s\"", "source = \"nope\"")
        .replace("target = \"t\"", "target = \"Bad-Name\""));
    assert!(
        e.contains("jobs[0].source: no source named \"nope\" (defined: s)"),
        "{e}"
    );
    assert!(
        e.contains("jobs[0].target: \"Bad-Name\" is not a valid identifier"),
        "{e}"
    );
}

#[test]
fn sftp_requires_a_host_key_check() {
    let text = MINIMAL.replace(
        "kind = \"local\"\nroot = \"/tmp\"",
        "kind = \"sftp\"\nhost = \"h\"\nuser = \"u\"\nprivate_key_file = \"/k\"",
    );
    let e = err(&text);
    assert!(
        e.contains("sources.s.known_hosts_file: set known_hosts_file or host_key_fingerprint"),
        "{e}"
    );
}

#[test]
fn merge_needs_a_key_and_move_needs_a_folder() {
    let text = MINIMAL.replace("key = [\"id\"]\n", "on_success = { action = \"move\" }\n");
    let e = err(&text);
    assert!(
        e.contains("jobs[0].key: mode = \"merge\" needs key columns"),
        "{e}"
    );
    assert!(
        e.contains("jobs[0].on_success.to: action = \"move\" needs a folder"),
        "{e}"
    );
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
    assert!(parse_duration("5 parsecs").is_err());
}

#[test]
fn column_types_parse() {
    assert_eq!(
        ColumnType::parse("VARCHAR(12)").unwrap(),
        ColumnType::Varchar(12)
    );
    assert_eq!(
        ColumnType::parse("decimal(12, 2)").unwrap(),
        ColumnType::Decimal(12, 2)
    );
    assert_eq!(ColumnType::parse("integer").unwrap(), ColumnType::Int);
    assert!(ColumnType::parse("varchar(70000)").is_err());
    assert!(ColumnType::parse("decimal(2,3)").is_err());
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pw");
    std::fs::write(&f, "very-secret-value").unwrap();
    let text = MINIMAL.replace(
        "kind = \"postgres\"",
        &format!("kind = \"postgres\"\npassword_file = \"{}\"", f.display()),
    );
    let c = from_toml_str(&text).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("very-secret-value"));
    assert!(shown.contains("***"));
}

#[test]
fn checks_must_be_named_selects_with_known_placeholders() {
    let text = MINIMAL.replace(
        "key = [\"id\"]\n",
        "key = [\"id\"]\nchecks = [\n  { name = \"ok\", sql = \"SELECT id FROM {target} WHERE ferry_load_id = :load_id;\" },\n  { name = \"bad name\", sql = \"SELECT 1\" },\n  { name = \"ok\", sql = \"DELETE FROM {target}\" },\n  { name = \"x\", sql = \"SELECT 1; DROP TABLE t\" },\n  { name = \"y\", sql = \"SELECT * FROM {tabel}\" },\n  { name = \"z\", sql = \"SELECT 1 FROM {target} WHERE a = $1\" },\n  { name = \"w\", sql = \"SELECT 1 FROM {target} WHERE note LIKE '$%' AND a$b = 1 AND c = 'delete'\" },\n  { name = \"v\", sql = \"WITH d AS (DELETE FROM {target} RETURNING 1) SELECT 1 FROM d\" },\n]\n",
    );
    let e = err(&text);
    for want in [
        "jobs[0].checks[1].name: \"bad name\": use 1-64 letters, digits or _",
        "jobs[0].checks[2].name: \"ok\" is used twice",
        "jobs[0].checks[2].sql: must be one SELECT",
        "jobs[0].checks[3].sql: must be one statement",
        "jobs[0].checks[4].sql: {tabel} is not a placeholder",
        "jobs[0].checks[5].sql: uses $1; name the parameters :load_id",
        "jobs[0].checks[7].sql: uses DELETE: a check only reads",
    ] {
        assert!(e.contains(want), "{want} missing from {e}");
    }
    assert!(!e.contains("checks[0]") && !e.contains("checks[6]"), "{e}");
    let fine = MINIMAL.replace(
        "key = [\"id\"]\n",
        "key = [\"id\"]\nchecks = [{ name = \"ok\", sql = \"WITH x AS (SELECT 1) SELECT * FROM x;\" }]\n",
    );
    let job = &from_toml_str(&fine).unwrap().jobs[0];
    assert_eq!(
        job.checks[0].sql, "WITH x AS (SELECT 1) SELECT * FROM x",
        "the trailing ; goes"
    );
}

#[test]
fn a_job_polls_on_its_own_interval_or_the_daemons() {
    let c = from_toml_str(&MINIMAL.replace(
        "[staging]",
        "[daemon]\npoll_interval = \"45s\"\n\n[staging]",
    ))
    .unwrap();
    assert_eq!(c.jobs[0].poll_interval, Duration::from_secs(45));
    assert_eq!(c.daemon.concurrency, 16);
    let own = MINIMAL.replace("name = \"j\"\n", "name = \"j\"\npoll_interval = \"5m\"\n");
    assert_eq!(
        from_toml_str(&own).unwrap().jobs[0].poll_interval,
        Duration::from_secs(300)
    );
    let bad = MINIMAL.replace(
        "name = \"j\"\n",
        "name = \"j\"\npoll_interval = \"often\"\n",
    );
    assert!(
        err(&bad).contains("jobs[0].poll_interval: \"often\" is not a duration"),
        "{}",
        err(&bad)
    );
}

#[test]
fn transfer_and_load_limits_default_and_are_checked() {
    let c = from_toml_str(&MINIMAL).unwrap();
    assert_eq!(c.daemon.max_concurrent_loads, 2);
    assert_eq!(c.sources["s"].max_transfers, 8);
    let bad = MINIMAL
        .replace(
            "[staging]",
            "[daemon]\nmax_concurrent_loads = 0\n\n[staging]",
        )
        .replace("root = \"/tmp\"\n", "root = \"/tmp\"\nmax_transfers = 0\n");
    let e = err(&bad);
    assert!(
        e.contains("daemon.max_concurrent_loads: must be at least 1"),
        "{e}"
    );
    assert!(
        e.contains("sources.s.max_transfers: must be 1 to 64"),
        "{e}"
    );
}

#[test]
fn no_queue_section_means_no_sqs_and_one_replica_as_before() {
    let c = from_toml_str(&MINIMAL).unwrap();
    assert!(c.queue.is_none());
}

#[test]
fn a_queue_gets_defaults_and_knows_a_fifo_queue_by_its_name() {
    let text = format!(
        "{}\n[queue]\nkind = \"sqs\"\nurl = \"https://sqs.eu-west-1.amazonaws.com/1/work.fifo\"\nreplica_id = \"a\"\n",
        *MINIMAL
    );
    let q = from_toml_str(&text).unwrap().queue.unwrap();
    let work = q.work.unwrap();
    assert!(work.fifo);
    assert_eq!(q.visibility_timeout, Duration::from_secs(300));
    assert_eq!(q.lease_period, Duration::from_secs(120));
    assert_eq!(q.wait_time, Duration::from_secs(10));
    assert_eq!(q.replica_id, "a");
}

#[test]
fn queue_settings_sqs_would_refuse_or_a_lease_shorter_than_two_polls_are_errors() {
    let text = format!("{}\n[queue]\nkind = \"rabbit\"\n", *MINIMAL);
    assert!(
        err(&text).contains("queue.kind: \"rabbit\": expected sqs"),
        "{}",
        err(&text)
    );
    let text = format!(
        "{}\n[queue]\nkind = \"sqs\"\nurl = \"https://sqs.eu-west-1.amazonaws.com/1/w\"\nwait_time = \"30s\"\nlease_period = \"40s\"\nvisibility_timeout = \"13h\"\n",
        *MINIMAL
    );
    let e = err(&text);
    assert!(e.contains("queue.wait_time: must be at most 20s"), "{e}");
    assert!(
        e.contains("queue.lease_period: 40s is less than twice the longest poll interval (30s)"),
        "{e}"
    );
    assert!(
        e.contains("queue.visibility_timeout: must be at most 12h"),
        "{e}"
    );
    let text = format!("{}\n[queue]\nkind = \"sqs\"\nurl = \"work\"\n", *MINIMAL);
    assert!(err(&text).contains("queue.url: \"work\" is not an SQS queue URL"));
}

#[test]
fn events_come_from_s3_sources_only_and_imply_sqs_in_the_queues_region() {
    let text = format!(
        "{}\n[jobs.events]\nqueue_url = \"https://sqs.eu-west-1.amazonaws.com/1/events\"\n",
        *MINIMAL
    );
    let e = err(&text);
    assert!(e.contains("jobs[0].events: event notifications come from S3 only; source \"s\" is local folder /tmp"), "{e}");
    let s3 = text.replace(
        "[sources.s]\nkind = \"local\"\nroot = \"/tmp\"",
        "[sources.s]\nkind = \"s3\"\nbucket = \"landing\"",
    );
    let c = from_toml_str(&s3).unwrap();
    let feed = c.jobs[0].events.as_ref().unwrap();
    assert_eq!(feed.reconcile_every, Some(Duration::from_secs(3600)));
    let q = c.queue.unwrap();
    assert!(q.work.is_none(), "events alone share no work");
    assert_eq!(q.sqs.region, "eu-west-1");
}

#[test]
fn value_contracts_that_cannot_hold_are_config_errors_naming_the_key() {
    let bad = |columns: &str| {
        err(&test_toml(&format!(
            "mode = \"append\"\ncolumns = [ {columns} ]\n"
        )))
    };
    let e = bad(r#"{ name = "n", type = "int", one_of = ["1", "x"] }"#);
    assert!(
        e.contains("jobs[0].columns[0].one_of[1]: \"x\" does not fit the column"),
        "{e}"
    );
    let e = bad(r#"{ name = "n", type = "int", pattern = "[0-9]+" }"#);
    assert!(
        e.contains("jobs[0].columns[0].pattern: pattern applies to varchar and uuid columns"),
        "{e}"
    );
    let e = bad(r#"{ name = "s", type = "varchar(5)", pattern = "(" }"#);
    assert!(
        e.contains("jobs[0].columns[0].pattern: \"(\" is not a regular expression"),
        "{e}"
    );
    let e = bad(r#"{ name = "s", type = "varchar(5)", min = "a" }"#);
    assert!(
        e.contains("jobs[0].columns[0].min: min and max apply to int"),
        "{e}"
    );
    let e = bad(r#"{ name = "n", type = "decimal(5,2)", min = "10", max = "9.99" }"#);
    assert!(
        e.contains("jobs[0].columns[0].min: 10 is above max = 9.99"),
        "{e}"
    );
    let e = bad(r#"{ name = "n", type = "int", not_empty = true }"#);
    assert!(
        e.contains("jobs[0].columns[0].not_empty: not_empty applies to varchar columns"),
        "{e}"
    );
    let ok = from_toml_str(&test_toml(
        "mode = \"append\"\ncolumns = [ { name = \"id\", type = \"uuid\", one_of = [\"0F8FAD5B-D9CB-469F-A165-70867728950E\"] } ]\n",
    ))
    .unwrap();
    let rules = ok.jobs[0].columns[0].rules.as_ref().unwrap();
    assert_eq!(
        rules.one_of,
        ["0f8fad5b-d9cb-469f-a165-70867728950e"],
        "kept in canonical form"
    );
}

#[test]
fn a_layout_needs_auto_create_and_names_columns_of_the_job() {
    let cols =
        "columns = [ { name = \"id\", type = \"int\" }, { name = \"at\", type = \"date\" } ]\n";
    let e = err(&test_toml(&format!(
        "mode = \"append\"\ndistkey = \"id\"\n{cols}"
    )));
    assert!(
        e.contains("jobs[0].distkey: distkey and sortkey lay out tables ferry creates"),
        "{e}"
    );
    let e = err(&test_toml(&format!(
        "mode = \"append\"\nauto_create = true\ndistkey = \"nope\"\nsortkey = [\"at\", \"x\"]\n{cols}"
    )));
    assert!(
        e.contains("jobs[0].distkey: nope is not one of the job's columns"),
        "{e}"
    );
    assert!(
        e.contains("jobs[0].sortkey[1]: x is not one of the job's columns"),
        "{e}"
    );
    let c = from_toml_str(&test_toml(&format!(
        "mode = \"append\"\nauto_create = true\ndistkey = \"id\"\nsortkey = [\"at\"]\n{cols}"
    )))
    .unwrap();
    let layout = c.jobs[0].auto_create.as_ref().unwrap();
    assert_eq!(layout.distkey.as_ref().unwrap().as_str(), "id");
    let sql = crate::warehouse::sql::create_targets(
        c.warehouse.schema(),
        &c.jobs[0],
        crate::sql::Dialect::Redshift,
    );
    assert_eq!(
        sql[0],
        "CREATE TABLE IF NOT EXISTS \"public\".\"t\" (\"id\" INTEGER, \"at\" DATE, \"ferry_file\" VARCHAR(1024), \"ferry_line\" BIGINT, \"ferry_load_id\" VARCHAR(64), \"ferry_loaded_at\" TIMESTAMPTZ) DISTKEY (\"id\") SORTKEY (\"at\")"
    );
    assert_eq!(
        sql.len(),
        1,
        "no dimensions; no PostgreSQL defaults on Redshift"
    );
}

#[test]
fn a_super_column_cannot_feed_a_dimension() {
    let e = err(&test_toml(
        "key = [\"id\"]\ncolumns = [ { name = \"id\", type = \"bigint\" }, { name = \"doc\", type = \"super\" } ]\n\
         dimensions = [ { table = \"d\", key = \"id\", columns = [ { name = \"doc\" } ] } ]\n",
    ));
    assert!(
        e.contains("jobs[0].dimensions[0]") && e.contains("column doc is a super"),
        "{e}"
    );
}

#[test]
fn gzip_threads_are_checked_and_default_to_the_host() {
    let with = |n: &str| {
        test_toml(&format!(
            "key = [\"id\"]\ngzip_threads = {n}\ncolumns = [ {{ name = \"id\", type = \"bigint\" }} ]\n"
        ))
    };
    let e = err(&with("0"));
    assert!(e.contains("jobs[0].gzip_threads: must be 1 to 64"), "{e}");
    assert_eq!(from_toml_str(&with("3")).unwrap().jobs[0].gzip_threads, 3);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let auto = from_toml_str(&MINIMAL).unwrap().jobs[0].gzip_threads;
    assert_eq!(auto, if cores > 2 { (cores / 2).min(8) } else { 1 });
}

#[test]
fn row_threads_are_checked_and_default_to_the_host() {
    let with = |n: &str| {
        test_toml(&format!(
            "key = [\"id\"]\nrow_threads = {n}\ncolumns = [ {{ name = \"id\", type = \"bigint\" }} ]\n"
        ))
    };
    for bad in ["0", "65"] {
        let e = err(&with(bad));
        assert!(e.contains("jobs[0].row_threads: must be 1 to 64"), "{e}");
    }
    assert_eq!(from_toml_str(&with("1")).unwrap().jobs[0].row_threads, 1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let csv = from_toml_str(&MINIMAL).unwrap().jobs[0].row_threads;
    let ndjson = from_toml_str(&test_toml(
        "key = [\"id\"]\nformat = { kind = \"ndjson\" }\ncolumns = [ { name = \"id\", type = \"bigint\" } ]\n",
    ))
    .unwrap()
    .jobs[0]
        .row_threads;
    let expected = |json: bool| match cores {
        0 | 1 => 1,
        2 => 1 + usize::from(json),
        n => (n / 2).clamp(2, 8),
    };
    assert_eq!((csv, ndjson), (expected(false), expected(true)));
}

//! The `ferry` binary end to end: exit codes, messages, and two `once`
//! passes against the in-process servers and the real PostgreSQL.

use crate::harness::{Stack, TestDb, task_events_job};
use std::process::{Command, Output};

fn ferry(config: &std::path::Path, args: &[&str]) -> Output {
    ferry_logging(config, args, "warn")
}

/// [`ferry`] with `RUST_LOG` set to `log`.
fn ferry_logging(config: &std::path::Path, args: &[&str], log: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", log)
        .output()
        .expect("ferry runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn version_prints_the_crate_version() {
    let o = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        text(&o).0.trim(),
        format!("ferry {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_misspelled_key_exits_78_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ferry.toml");
    std::fs::write(&cfg, "[daemon]\npol_interval = \"5s\"\n[staging]\nbucket = \"b\"\n[warehouse]\nkind = \"postgres\"\n").unwrap();
    let o = ferry(&cfg, &["check"]);
    assert_eq!(o.status.code(), Some(78));
    let (_, err) = text(&o);
    assert!(err.contains("unknown field `pol_interval`"), "{err}");
}

#[test]
fn a_missing_secret_variable_exits_78_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ferry.toml");
    std::fs::write(&cfg, "[staging]\nbucket = \"b\"\n[warehouse]\nkind = \"postgres\"\npassword_env = \"FERRY_TEST_NOT_SET_ANYWHERE\"\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--config")
        .arg(&cfg)
        .arg("check")
        .env_remove("FERRY_TEST_NOT_SET_ANYWHERE")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(78));
    let (_, err) = text(&o);
    assert!(
        err.contains("environment variable FERRY_TEST_NOT_SET_ANYWHERE is not set"),
        "{err}"
    );
}

#[test]
fn a_missing_config_file_says_how_to_point_at_one() {
    let o = ferry(std::path::Path::new("/nonexistent/ferry.toml"), &["check"]);
    assert_eq!(o.status.code(), Some(78));
    assert!(text(&o).1.contains("--config PATH or set FERRY_CONFIG"));
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_a_stopped_server_and_once_loads_nothing_twice() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    stack.put_sftp(
        "/outbox/a.csv",
        "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n\
         e1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,5,1,\n\
         e2,t2,created,open,u2,jira,2026-03-01T10:00:00Z,6,1,\n",
    );
    let cfg = stack.write_config(&stack.config_toml(&db, &task_events_job("")));

    // Before migrate, check says so.
    let o = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || ferry(&cfg, &["check"])
    })
    .await
    .unwrap();
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL  warehouse") && out.contains("run `ferry migrate`"),
        "{out}"
    );
    assert!(out.contains("OK    staging"), "{out}");
    assert!(out.contains("OK    source partner"), "{out}");

    let run = |args: &'static [&'static str]| {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || ferry(&cfg, args))
    };
    let o = run(&["migrate"]).await.unwrap();
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains("applied 0001_ledger.sql"));

    let o = run(&["once"]).await.unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("loaded  task-events /outbox/a.csv: 2 rows, 0 rejected"),
        "{out}"
    );
    assert!(out.contains("1 loaded, 0 skipped"), "{out}");

    let o = run(&["once"]).await.unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("0 loaded, 1 skipped"), "{out}");
    let count: i64 = db
        .client
        .query_one(
            &format!("SELECT count(*) FROM {}", db.t("task_events")),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2);

    // Now stop the SFTP server: check names it and fails.
    let port = stack.sftp.addr.port();
    let Stack { sftp, s3, dir, .. } = stack;
    drop(sftp);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let o = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || ferry(&cfg, &["check"])
    })
    .await
    .unwrap();
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("OK    warehouse"), "{out}");
    assert!(out.contains(&format!("FAIL  source partner (sftp 127.0.0.1:{port}): source partner: cannot connect to sftp 127.0.0.1:{port}")), "{out}");
    drop((s3, dir));
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_downloads_a_file_and_prints_its_hash() {
    use sha2::{Digest, Sha256};
    let stack = Stack::start().await;
    let body: Vec<u8> = (0..1_500_000u32).map(|i| (i % 241) as u8).collect();
    let path = stack.sftp.root.join("in/f.bin");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &body).unwrap();
    let cfg = stack.dir.path().join("ferry.toml");
    std::fs::write(
        &cfg,
        format!("{}[warehouse]\nkind = \"postgres\"\n", stack.base_toml()),
    )
    .unwrap();
    let out_file = stack.dir.path().join("copy.bin");
    let o = tokio::task::spawn_blocking({
        let (cfg, out_file) = (cfg.clone(), out_file.clone());
        move || {
            ferry(
                &cfg,
                &[
                    "fetch",
                    "partner",
                    "/in/f.bin",
                    "--out",
                    out_file.to_str().unwrap(),
                ],
            )
        }
    })
    .await
    .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains(&format!("fetched {} bytes", body.len())),
        "{out}"
    );
    assert!(out.contains(&hex::encode(Sha256::digest(&body))), "{out}");
    assert_eq!(std::fs::read(&out_file).unwrap(), body);
    let o = tokio::task::spawn_blocking(move || ferry(&cfg, &["fetch", "nope", "/x"]))
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(78));
    assert!(
        text(&o)
            .1
            .contains("no source named \"nope\" (defined: partner)")
    );
}

#[test]
fn normalize_writes_gzip_csv_and_reports_counts_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ferry.toml");
    std::fs::write(
        &cfg,
        "[staging]\nbucket = \"b\"\n[warehouse]\nkind = \"postgres\"\n[sources.s]\nkind = \"local\"\nroot = \"/tmp\"\n\
         [[jobs]]\nname = \"j\"\nsource = \"s\"\npath = \"/\"\ntarget = \"t\"\nmode = \"append\"\nmax_errors = \"40%\"\nformat = { kind = \"ndjson\" }\n\
         columns = [ { name = \"id\", type = \"int\" }, { name = \"who\", type = \"varchar(10)\", source = \"/user/name\" } ]\n",
    )
    .unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(
        &input,
        "{\"id\": 1, \"user\": {\"name\": \"ann\"}}\n{\"id\": \"x\"}\n{\"id\": 3}\n",
    )
    .unwrap();
    let o = ferry(&cfg, &["normalize", input.to_str().unwrap(), "--job", "j"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("2 rows written") && out.contains("1 rejected"),
        "{out}"
    );
    assert!(out.contains("line 2 column id: [1207]"), "{out}");
    let staged = std::fs::read(dir.path().join("in.ndjson.staged.csv.gz")).unwrap();
    let mut csv = String::new();
    use std::io::Read;
    flate2::read::MultiGzDecoder::new(staged.as_slice())
        .read_to_string(&mut csv)
        .unwrap();
    assert!(csv.starts_with("1,ann,"), "{csv}");
    assert_eq!(csv.lines().count(), 2);
    // Every rejected record, beside the output.
    let rejects_file = dir.path().join("in.ndjson.staged.rejects.csv.gz");
    assert!(out.contains(&rejects_file.display().to_string()), "{out}");
    let mut rejects = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&rejects_file).unwrap())
        .read_to_string(&mut rejects)
        .unwrap();
    assert_eq!(rejects.lines().count(), 2, "{rejects}");
    assert!(
        rejects.lines().nth(1).unwrap().starts_with("2,id,1207,"),
        "{rejects}"
    );
    // The same rows as Parquet, typed for COPY … FORMAT AS PARQUET.
    let pq = dir.path().join("in.parquet");
    let o = ferry(
        &cfg,
        &[
            "normalize",
            input.to_str().unwrap(),
            "--job",
            "j",
            "--out",
            pq.to_str().unwrap(),
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("2 rows written") && out.contains("1 rejected"),
        "{out}"
    );
    assert!(dir.path().join("in.rejects.csv.gz").exists(), "{out}");
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(&pq).unwrap()).unwrap();
    let rows: Vec<String> = reader
        .get_row_iter(None)
        .unwrap()
        .map(|r| r.unwrap().to_string())
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0].starts_with("{id: 1, who: \"ann\", ferry_file: "),
        "{rows:?}"
    );
    assert!(
        rows[1].starts_with("{id: 3, who: null, ferry_file: "),
        "{rows:?}"
    );
    assert!(rows[1].ends_with("ferry_line: 3}"), "{rows:?}");
}

#[test]
fn infer_prints_a_mapping_and_a_create_table_without_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sample.csv");
    std::fs::write(
        &input,
        "id,when,who\n1,2026-01-01T00:00:00Z,ann\n2,2026-01-02T00:00:00Z,\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["--config", "/nonexistent.toml", "infer"])
        .arg(&input)
        .args(["--table", "task_events"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("{ name = \"id\", type = \"int\", required = true }"),
        "{out}"
    );
    assert!(
        out.contains("{ name = \"who\", type = \"varchar(16)\" }"),
        "{out}"
    );
    assert!(
        out.contains("CREATE TABLE IF NOT EXISTS \"task_events\" ("),
        "{out}"
    );
    assert!(out.contains("    \"when\" TIMESTAMPTZ NOT NULL,"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_commands_print_tables_and_json_and_reset_asks_first() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let header = "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";
    stack.put_sftp(
        "/outbox/a.csv",
        &format!("{header}e1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,5,1,\n"),
    );
    let bad: String = (0..11)
        .map(|i| format!("b{i},t1,created,open,u1,jira,2026-03-01T10:00:00Z,later,1,\n"))
        .collect();
    stack.put_sftp("/outbox/b.csv", &format!("{header}{bad}"));
    let cfg = stack.write_config(&stack.config_toml(&db, &task_events_job("")));
    let run = |args: &'static [&'static str]| {
        let cfg = cfg.clone();
        async move {
            let o = tokio::task::spawn_blocking(move || ferry(&cfg, args))
                .await
                .unwrap();
            let (out, err) = text(&o);
            (o.status.code(), out, err)
        }
    };
    assert_eq!(run(&["migrate"]).await.0, Some(0));
    assert_eq!(run(&["once"]).await.0, Some(1), "b.csv fails");

    let (code, out, err) = run(&["jobs"]).await;
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("JOB  ") && lines[0].contains("LAST_LOAD"),
        "{out}"
    );
    assert!(lines[1].starts_with("task-events  active"), "{out}");

    let (_, out, _) = run(&["files", "--state", "failed", "--json"]).await;
    let files: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(files.as_array().unwrap().len(), 1, "{out}");
    assert_eq!(files[0]["path"], "/outbox/b.csv");
    assert_eq!(files[0]["state"], "failed");

    let (_, out, _) = run(&["errors", "--file", "/outbox/b.csv", "--limit", "3"]).await;
    assert_eq!(out.lines().count(), 4, "a header and three rows: {out}");
    assert!(
        out.contains("duration_ms") && out.contains("later"),
        "{out}"
    );

    let (code, out, _) = run(&["jobs", "pause", "task-events"]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("job task-events paused"), "{out}");
    let (_, out, _) = run(&["jobs", "--json"]).await;
    assert!(out.contains("\"state\": \"paused\""), "{out}");
    let (code, _, err) = run(&["jobs", "resume", "nope"]).await;
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("no job named \"nope\""), "{err}");

    let (code, out, _) = run(&["retry", "--job", "task-events"]).await;
    assert_eq!(code, Some(0));
    assert!(out.starts_with("1 failed file version(s)"), "{out}");

    // No terminal to confirm on: reset refuses without --yes.
    let (code, _, err) = run(&["reset", "task-events"]).await;
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("pass --yes"), "{err}");
    assert_eq!(db.count("ferry_files").await, 1, "nothing was forgotten");
    let (code, out, _) = run(&["reset", "task-events", "--yes"]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("forgot 1 file version(s), 1 load(s)"), "{out}");
    assert_eq!(db.count("ferry_files").await, 0);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_a_line_and_carry_the_file_span() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    stack.put_sftp(
        "/outbox/a.csv",
        "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n\
         e1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,5,1,\n",
    );
    let toml = stack.config_toml(&db, &task_events_job("")).replacen(
        "[daemon]\n",
        "[daemon]\nlog_format = \"json\"\n",
        1,
    );
    let cfg = stack.write_config(&toml);
    let run = |args: &'static [&'static str]| {
        let cfg = cfg.clone();
        // A file's own events (fetch, normalize, stage) are debug.
        tokio::task::spawn_blocking(move || ferry_logging(&cfg, args, "info,ferry=debug"))
    };
    let o = run(&["migrate"]).await.unwrap();
    assert!(o.status.success(), "{:?}", text(&o));
    let o = run(&["once"]).await.unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");

    let events: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!events.is_empty(), "ferry logged nothing");
    for e in &events {
        assert!(e["timestamp"].is_string() && e["level"].is_string(), "{e}");
    }
    let in_file_span: Vec<&serde_json::Value> = events
        .iter()
        .filter_map(|e| e["spans"].as_array()?.iter().find(|s| s["name"] == "file"))
        .collect();
    let span = in_file_span
        .first()
        .unwrap_or_else(|| panic!("no event inside a file span: {err}"));
    assert_eq!(span["job"], "task-events", "{span}");
    assert_eq!(span["path"], "/outbox/a.csv", "{span}");
    let version = span["version"].as_str().expect("a version id");
    assert!(
        version.len() == 12 && version.chars().all(|c| c.is_ascii_hexdigit()),
        "{span}"
    );
    assert!(
        span["size"].is_number() && span["mtime"].is_number(),
        "{span}"
    );
    db.drop_schema().await;
}

/// `ferry once` on a terminal (a pseudo-terminal from util-linux
/// `script`) draws a progress bar per job with files, bytes and rows;
/// off a terminal it prints plain lines and no bar.
#[tokio::test(flavor = "multi_thread")]
async fn once_on_a_terminal_shows_a_progress_bar_and_plain_lines_off_one() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let header = "event_id,task_id,event_type,status,user_id,system,occurred_at,duration_ms,attempt,payload\n";
    for name in ["a", "b", "c"] {
        stack.put_sftp(
            &format!("/outbox/{name}.csv"),
            &format!("{header}{name}1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,1,1,\n"),
        );
    }
    let config = stack.write_config(&stack.config_toml(&db, &task_events_job("")));
    let migrated = ferry(&config, &["migrate"]);
    assert!(migrated.status.success(), "{:?}", text(&migrated));
    let command = format!(
        "{} --config {} --log-level warn once",
        env!("CARGO_BIN_EXE_ferry"),
        config.display()
    );
    let run = tokio::process::Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("TERM", "xterm")
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("ferry once under script ends")
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("task-events ["),
        "a bar for the job: {shown}"
    );
    assert!(shown.contains("3/3 files"), "{shown}");
    assert!(
        shown.contains("3 rows") && shown.contains("read"),
        "{shown}"
    );
    assert!(
        shown.contains("loaded  task-events /outbox/a.csv"),
        "{shown}"
    );

    // Off a terminal: the same command's lines, no bar.
    std::fs::write(
        stack.sftp.root.join("outbox/d.csv"),
        format!("{header}d1,t1,created,open,u1,jira,2026-03-01T10:00:00Z,1,1,\n"),
    )
    .unwrap();
    let plain = ferry(&config, &["once"]);
    let (stdout, stderr) = text(&plain);
    assert!(plain.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("loaded  task-events /outbox/d.csv"),
        "{stdout}"
    );
    assert!(
        !stderr.contains("files  ") && !stderr.contains("=>"),
        "no bar off a terminal: {stderr}"
    );
    db.drop_schema().await;
}

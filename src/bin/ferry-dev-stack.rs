//! `ferry-dev-stack`: the local stack without Docker.
//!
//! Starts in-process stand-ins on the fixed ports `config/local.toml` uses
//! (S3 on 127.0.0.1:9000, SFTP on 127.0.0.1:2222, FTP on 127.0.0.1:2121),
//! seeds the demo files from `demo/outbox`, applies the migrations, runs one
//! ferry pass against them and the local PostgreSQL, and prints what it
//! loaded. With `--serve` the stand-ins keep running (for `ferry run
//! --config config/local.toml` in another shell) until Ctrl-C.
//!
//!     cargo run --features testkit --bin ferry-dev-stack [-- --serve] [--state DIR]
//!
//! `--state DIR` keeps the servers' files in DIR (`DIR/sftp`, `DIR/ftp`,
//! `DIR/s3`) instead of a temporary folder.

// The daemon's futures nest deep (a pass, a receive round, a load).
#![recursion_limit = "256"]

use ferry::testkit::{
    ftp::FtpServer, s3::S3Server, sftp::SftpServer, sftp::SftpUser, sftp::test_key,
};
use std::path::Path;

const S3_ADDR: &str = "127.0.0.1:9000";
const SFTP_ADDR: &str = "127.0.0.1:2222";
const FTP_PORT: u16 = 2121;
const BUCKET: &str = "ferry-local";

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("ferry-dev-stack: error: {e}");
        std::process::exit(1);
    }
}

fn seed(from: &Path, to: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(to)?;
    let mut n = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
            n += 1;
        }
    }
    Ok(n)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let serve = std::env::args().any(|a| a == "--serve");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(repo)?;
    ferry::telemetry::init("info", ferry::config::LogFormat::Text);

    // `--state DIR` keeps the servers' files in DIR (benches drop files
    // there); by default they live in a temporary folder.
    let args: Vec<String> = std::env::args().collect();
    let state_dir = args
        .iter()
        .position(|a| a == "--state")
        .and_then(|i| args.get(i + 1));
    let temp = match state_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            None
        }
        None => Some(
            tempfile::Builder::new()
                .prefix("ferry-dev-stack-")
                .tempdir()?,
        ),
    };
    let state = match &temp {
        Some(t) => t.path().to_path_buf(),
        None => std::path::PathBuf::from(state_dir.expect("set when there is no temp dir")),
    };
    let secret = std::fs::read_to_string(repo.join("testdata/local-s3-secret"))?;
    let s3 =
        S3Server::start_with_credentials(&state.join("s3"), S3_ADDR, "ferry-local", secret.trim())
            .await
            .map_err(|e| {
                format!("cannot start S3 on {S3_ADDR} (is MinIO or another stack running?): {e}")
            })?;
    s3.create_bucket(BUCKET)?;
    let sftp = SftpServer::start(
        &state.join("sftp"),
        SFTP_ADDR,
        test_key("host_ed25519"),
        SftpUser {
            name: "demo".into(),
            password: None,
            key: Some(test_key("client_ed25519").public_key().clone()),
        },
    )
    .await
    .map_err(|e| format!("cannot start SFTP on {SFTP_ADDR}: {e}"))?;
    let ftp = FtpServer::start(&state.join("ftp"), FTP_PORT)
        .await
        .map_err(|e| format!("cannot start FTP on 127.0.0.1:{FTP_PORT}: {e}"))?;
    let demo = repo.join("demo/outbox");
    let n = seed(&demo, &sftp.root.join("outbox"))?;
    seed(&demo, &ftp.root.join("outbox"))?;
    println!(
        "stand-ins up: S3 {} (bucket {BUCKET}), SFTP {} (user demo), FTP {}; seeded {n} demo files",
        s3.endpoint(),
        sftp.addr,
        ftp.addr
    );

    let config = ferry::config::load(&repo.join("config/local.toml"))?;
    let schema = config.warehouse.schema().clone();
    let stager = ferry::stage::Stager::new(&config.staging).await;
    let wh = ferry::warehouse::connect(&config, &stager).await?;
    for m in ferry::ledger::migrate(&*wh).await? {
        println!("applied migration {m}");
    }
    drop(wh);
    let rt = ferry::pipeline::Runtime::start(config).await?;
    let pass_started = chrono::Utc::now();
    let report = ferry::pipeline::run_pass(&rt, None).await?;
    for line in report.lines() {
        println!("{line}");
    }

    let (client, conn) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(conn);
    let rows = client
        .query(
            &format!(
                "SELECT event_id, task_id, event_type, coalesce(status, ''), to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') \
                 FROM {}.task_events ORDER BY occurred_at, event_id",
                schema.quoted()
            ),
            &[],
        )
        .await?;
    println!("\n{}.task_events now holds {} rows:", schema, rows.len());
    println!(
        "{:<10} {:<10} {:<10} {:<12} occurred_at (UTC)",
        "event_id", "task_id", "event_type", "status"
    );
    for r in &rows {
        let (a, b, c, d, e): (String, String, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        println!("{a:<10} {b:<10} {c:<10} {d:<12} {e}");
    }
    let errors = client
        .query(
            &format!(
                "SELECT path, line_number, column_name, reason FROM {}.ferry_load_errors \
                 WHERE created_at >= $1 ORDER BY path, line_number LIMIT 5",
                schema.quoted()
            ),
            &[&pass_started],
        )
        .await?;
    if !errors.is_empty() {
        println!("\nrecords rejected by this pass (ferry_load_errors):");
        for r in &errors {
            let (path, line, column, reason): (String, Option<i64>, Option<String>, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let e = ferry::normalize::RowError {
                line: line.unwrap_or(0).max(0) as u64,
                column,
                code: 0,
                reason,
                raw_line: String::new(),
                raw_value: None,
            };
            println!("  {path} {}", e.describe());
        }
    }
    if report.has_failures() {
        return Err("some files failed; see above".into());
    }
    if serve {
        println!(
            "\nserving until Ctrl-C; in another shell: cargo run -- --config config/local.toml run"
        );
        ferry::daemon::shutdown_signal().await;
    }
    drop((s3, sftp, ftp));
    Ok(())
}

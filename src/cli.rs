//! The command line: arguments resolved into calls of the library.
//!
//! `main` stays thin: it parses [`Cli`], calls [`execute`] and maps the error
//! to an exit code.

use crate::commands::{check, fetch, ops};
use crate::config::{self, Config, LogFormat};
use crate::error::{Error, Result};
use crate::ledger::reports::Filter;
use crate::pipeline::{Runtime, run_pass};
use crate::stage::Stager;
use crate::{daemon, telemetry, warehouse};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

/// ferry loads task-event files from FTP, FTPS, SFTP and S3 into Redshift
/// (or PostgreSQL), exactly once.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short,
        env = "FERRY_CONFIG",
        default_value = "/etc/ferry/ferry.toml",
        global = true
    )]
    pub config: PathBuf,
    /// Log level (or a RUST_LOG-style filter) when RUST_LOG is unset.
    #[arg(long, default_value = "info", global = true)]
    pub log_level: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: poll every job until SIGTERM or SIGINT.
    Run,
    /// One pass over the jobs, then exit (non-zero if any file failed).
    Once {
        /// Only this job (runs it even if paused).
        #[arg(long)]
        job: Option<String>,
    },
    /// Create or upgrade the ledger and example tables.
    Migrate,
    /// Reconcile source, ledger, target and staging bucket: files on the
    /// source the ledger lacks (and why), loads whose rows in the target
    /// do not add up, objects with no ledger row. Exit 1 when anything is
    /// off.
    Audit {
        /// Only this job.
        #[arg(long)]
        job: Option<String>,
        /// Only files modified, loads started and objects written since
        /// then: a time (`2026-12-01`, `2026-12-01T06:00:00Z`) or an age
        /// (`24h`, `7d`).
        #[arg(long)]
        since: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Load again, from the raw archive (`archive_raw = true`), the versions
    /// of a job loaded in a window, as new versions (merge replaces rows by
    /// key; append is refused without --append-again).
    Replay {
        /// The job.
        #[arg(long)]
        job: String,
        /// Versions loaded since then (a time or an age, as for audit).
        #[arg(long)]
        since: String,
        /// ... and before then (default: now).
        #[arg(long)]
        until: Option<String>,
        /// Only paths this glob matches (the whole path on the source).
        #[arg(long)]
        path: Option<String>,
        /// Print what would load, load nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replay an append job (its rows are added again).
        #[arg(long)]
        append_again: bool,
    },
    /// Alerts: `ferry alerts test` sends a test message to every
    /// `[[alerts]]` entry (or the one named) and says what happened.
    Alerts {
        /// What to do.
        #[command(subcommand)]
        action: AlertsAction,
    },
    /// Download one file from a configured source (to check access and
    /// measure throughput); prints bytes, MB/s and the SHA-256.
    Fetch {
        /// A `[sources.NAME]` entry.
        source: String,
        /// Path of the file on that source.
        path: String,
        /// Where to write it (default: nowhere, just count).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Skip the SHA-256 (to time the transfer alone).
        #[arg(long)]
        no_hash: bool,
    },
    /// Normalize a local file as a job would and write the gzip CSV; prints
    /// row and error counts and the first errors.
    Normalize {
        /// The input file (any of the job's formats, gzip or not).
        file: PathBuf,
        /// The job whose format and columns apply.
        #[arg(long)]
        job: String,
        /// Where to write the gzip CSV (default: FILE.staged.csv.gz); a
        /// name ending in `.parquet` writes the staged rows as Parquet,
        /// typed for Redshift's `COPY … FORMAT AS PARQUET`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sample a CSV, NDJSON, JSON or XML file and print a job block and a
    /// CREATE TABLE that fit it (no config needed).
    Infer {
        /// The file to sample.
        file: PathBuf,
        /// Records to sample.
        #[arg(long, default_value_t = 1000)]
        rows: usize,
        /// Table name for the output.
        #[arg(long, default_value = "events")]
        table: String,
    },
    /// Validate the configuration and connect to every component.
    Check {
        /// Only validate the configuration (secrets included); connect to nothing.
        #[arg(long)]
        offline: bool,
    },
    /// List the jobs (state, files loaded and failed, rows, last load), or
    /// pause or resume one.
    Jobs {
        /// Pause or resume a job instead of listing.
        #[command(subcommand)]
        action: Option<JobsAction>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List file versions in the ledger, newest first.
    Files {
        /// Only this job.
        #[arg(long)]
        job: Option<String>,
        /// Only files in this state.
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// At most this many rows.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List rejected records and COPY errors (line, column, reason, raw
    /// value), newest first.
    Errors {
        /// Only this job.
        #[arg(long)]
        job: Option<String>,
        /// Only this file (its path on the source).
        #[arg(long)]
        file: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List schema drift, newest first: per file version the fields its
    /// mapping did not have, mapped fields it lacked, values that did not
    /// fit, what the job's contract did, and the columns `evolve` added
    /// or widened (`ferry_schema_changes`).
    Changes {
        /// Only this job.
        #[arg(long)]
        job: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Forget the failures of a job's files (or of one file) so that the
    /// next pass loads them again.
    Retry {
        /// The job.
        #[arg(long)]
        job: String,
        /// Only this file (its path on the source); default: every failed file.
        path: Option<String>,
    },
    /// Forget everything the ledger knows of a job (files, loads, errors);
    /// the next pass loads every file still on the source again. Rows
    /// already loaded stay in the target.
    Reset {
        /// The job.
        name: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// `ferry alerts test`.
#[derive(Debug, Subcommand)]
pub enum AlertsAction {
    /// Send a test message (exit 1 if one could not be delivered).
    Test {
        /// Only this alert.
        #[arg(long)]
        name: Option<String>,
    },
}

/// `ferry jobs pause|resume NAME`.
#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// Stop polling a job (persisted in `ferry_jobs`, for every replica).
    Pause {
        /// The job.
        name: String,
    },
    /// Poll a paused job again.
    Resume {
        /// The job.
        name: String,
    },
}

/// A file state, for `ferry files --state`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StateArg {
    /// Loaded and committed.
    Loaded,
    /// Failed; waits for `ferry retry` or a change of the file.
    Failed,
    /// Recorded and not loaded (e.g. changed after load, `on_change = "ignore"`).
    Skipped,
}

impl StateArg {
    fn as_str(self) -> &'static str {
        match self {
            StateArg::Loaded => "loaded",
            StateArg::Failed => "failed",
            StateArg::Skipped => "skipped",
        }
    }
}

/// The configured warehouse, for the commands that only read or change
/// the ledger.
async fn connect_warehouse(cfg: &config::Config) -> Result<Box<dyn warehouse::Warehouse>> {
    let stager = Stager::new(&cfg.staging).await;
    warehouse::connect(cfg, &stager).await
}

/// Prints a table as text or JSON.
fn print_table(t: &ops::Table, json: bool) {
    if json {
        print!("{}", t.json());
    } else if t.rows.is_empty() {
        println!("(none)");
    } else {
        print!("{}", t.text());
    }
}

/// Asks on the terminal for the job's name before a reset; refuses
/// without a terminal (scripts pass `--yes`).
fn confirm_reset(name: &str) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(Error::config(format!(
            "refusing to reset job {name} without confirmation: run it on a terminal, or pass --yes"
        )));
    }
    print!(
        "This forgets every file, load and error of job {name}; the next pass loads every file still on the source again.\nType the job's name to confirm: "
    );
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::config("cannot read the confirmation").with_source(e))?;
    if answer.trim() != name {
        return Err(Error::config(format!(
            "not confirmed; job {name} is unchanged"
        )));
    }
    Ok(())
}

/// Runs the command; returns the process exit code.
pub async fn execute(cli: Cli) -> Result<i32> {
    if let Command::Infer { file, rows, table } = &cli.command {
        return infer(file, *rows, table);
    }
    let cfg = match config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            telemetry::init(&cli.log_level, LogFormat::Text);
            return Err(e);
        }
    };
    telemetry::init(&cli.log_level, cfg.daemon.log_format);
    match cli.command {
        Command::Infer { .. } => unreachable!("handled before the config is read"),
        Command::Migrate => migrate(&cfg).await,
        Command::Check { offline } => check(&cli.config, &cfg, offline).await,
        Command::Fetch {
            source,
            path,
            out,
            no_hash,
        } => fetch(&cfg, &source, &path, out.as_deref(), !no_hash).await,
        Command::Normalize { file, job, out } => normalize(&cfg, &file, &job, out),
        Command::Alerts {
            action: AlertsAction::Test { name },
        } => {
            let mut failed = false;
            for (alert, result) in crate::alerts::test(&cfg, name.as_deref()).await? {
                match result {
                    Ok(()) => println!("OK    alert {alert}: test message delivered"),
                    Err(why) => {
                        failed = true;
                        println!("FAIL  alert {alert}: {why}");
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        Command::Audit { job, since, json } => {
            let since = since.as_deref().map(parse_since).transpose()?;
            if let Some(j) = &job
                && !cfg.jobs.iter().any(|c| &c.name == j)
            {
                return Err(not_defined(
                    "job",
                    j,
                    cfg.jobs.iter().map(|j| j.name.as_str()),
                ));
            }
            let rt = Runtime::start(cfg).await?;
            let findings = crate::commands::audit::audit(&rt, job.as_deref(), since).await?;
            let off = findings.iter().filter(|f| f.off).count();
            print_table(&crate::commands::audit::table(&findings), json);
            if !json {
                println!(
                    "{off} finding(s) off, {} note(s){}",
                    findings.len() - off,
                    if off == 0 {
                        ": source, ledger, target and staging agree"
                    } else {
                        ""
                    }
                );
            }
            Ok(if off > 0 { 1 } else { 0 })
        }
        Command::Replay {
            job,
            since,
            until,
            path,
            dry_run,
            append_again,
        } => {
            replay(
                cfg,
                &job,
                &since,
                until.as_deref(),
                path.as_deref(),
                dry_run,
                append_again,
            )
            .await
        }
        Command::Once { job } => {
            let rt = Runtime::start(cfg).await?;
            // On a terminal: a progress bar per job (plain log lines off one).
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                telemetry::bars::enable();
            }
            // Alerts raised by the pass go out before the command exits.
            let stop_alerts = CancellationToken::new();
            let alerting = crate::alerts::run(&rt.config, stop_alerts.clone());
            let pass = async {
                let report = run_pass(&rt, job.as_deref()).await;
                stop_alerts.cancel();
                report
            };
            let ((), report) = futures::join!(alerting, pass);
            telemetry::bars::disable();
            // With a work queue: the leases taken go back at once.
            crate::pipeline::stop_sharing(&rt).await;
            let report = report?;
            for line in report.lines() {
                println!("{line}");
            }
            Ok(if report.has_failures() { 1 } else { 0 })
        }
        Command::Run => {
            let rt = Runtime::start(cfg).await?;
            let token = CancellationToken::new();
            let trigger = token.clone();
            tokio::spawn(async move {
                daemon::shutdown_signal().await;
                trigger.cancel();
            });
            daemon::run(&rt, token).await?;
            Ok(0)
        }
        ops_command => operate(&cfg, ops_command).await,
    }
}

/// `ferry replay`: the plan (all of it with `--dry-run`), then the load.
async fn replay(
    cfg: Config,
    job: &str,
    since: &str,
    until: Option<&str>,
    path: Option<&str>,
    dry_run: bool,
    append_again: bool,
) -> Result<i32> {
    use crate::commands::replay as r;
    let j = cfg
        .jobs
        .iter()
        .find(|j| j.name == job)
        .cloned()
        .ok_or_else(|| not_defined("job", job, cfg.jobs.iter().map(|j| j.name.as_str())))?;
    let path = match path {
        Some(p) => Some(
            globset::Glob::new(p)
                .map_err(|e| Error::config(format!("--path {p:?} is not a glob: {e}")))?
                .compile_matcher(),
        ),
        None => None,
    };
    let window = r::Window {
        job: job.to_string(),
        since: parse_since(since)?,
        until: until
            .map(parse_since)
            .transpose()?
            .unwrap_or_else(chrono::Utc::now),
        path,
    };
    let rt = Runtime::start(r::with_raw_source(cfg)).await?;
    let plan = r::plan(&rt, &window).await?;
    let table = ops::Table {
        columns: vec!["path", "loaded_at", "rows", "raw_copy"],
        rows: plan
            .iter()
            .map(|p| {
                vec![
                    Some(p.path.clone()),
                    Some(p.loaded_at.clone()),
                    Some(p.rows.clone()),
                    Some(match (&p.raw_key, &p.raw) {
                        (Some(k), Ok((size, _))) => {
                            format!("s3://{}/{k} ({size} bytes)", rt.stager.bucket())
                        }
                        (_, Err(why)) => format!("cannot replay: {why}"),
                        (None, Ok(_)) => "cannot replay".into(),
                    }),
                ]
            })
            .collect(),
    };
    print_table(&table, false);
    let missing = plan.iter().filter(|p| p.raw.is_err()).count();
    let ready = plan.len() - missing;
    if dry_run {
        println!(
            "dry run: {ready} version(s) would load again from their raw copies{}",
            if missing > 0 {
                format!(", {missing} cannot (no raw copy)")
            } else {
                String::new()
            }
        );
        return Ok(if missing > 0 { 1 } else { 0 });
    }
    let report = r::replay(&rt, &j, &plan, append_again).await?;
    for line in report.lines() {
        println!("{line}");
    }
    Ok(if report.has_failures() || missing > 0 {
        1
    } else {
        0
    })
}

/// `--since`: a time (RFC 3339, or a date at midnight UTC) or an age
/// before now (`24h`).
fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    match crate::config::parse_duration(text) {
        Ok(age) => Ok(chrono::Utc::now()
            - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::days(36_500))),
        Err(_) => Err(Error::config(format!(
            "--since {text:?} is not a time (2026-12-01, 2026-12-01T06:00:00Z) or an age (24h, 7d)"
        ))),
    }
}

/// `ferry infer`: a typed job skeleton from a sample of `file`.
fn infer(file: &Path, rows: usize, table: &str) -> Result<i32> {
    let f = std::fs::File::open(file)
        .map_err(|e| Error::permanent(format!("cannot open {}", file.display())).with_source(e))?;
    let (format, cols) = crate::normalize::infer::infer(f, rows)
        .map_err(|e| Error::permanent(format!("cannot sample {}: {e}", file.display())))?;
    let table = crate::sql::Ident::parse(table).map_err(Error::config)?;
    print!(
        "{}",
        crate::normalize::infer::render(table.as_str(), &format, &cols)
    );
    Ok(0)
}

/// `ferry migrate`: the ledger (and example) schema, up to date.
async fn migrate(cfg: &Config) -> Result<i32> {
    let wh = connect_warehouse(cfg).await?;
    let applied = crate::ledger::migrate(&*wh).await?;
    if applied.is_empty() {
        println!("schema {} is up to date", cfg.warehouse.schema());
    }
    for name in applied {
        println!("applied {name}");
    }
    Ok(0)
}

/// `ferry check`: the config, then (unless `offline`) one line per
/// component; exit 1 when one of them failed.
async fn check(path: &Path, cfg: &Config, offline: bool) -> Result<i32> {
    let lines = if offline {
        Vec::new()
    } else {
        check::run(cfg).await
    };
    println!(
        "OK    config {}: {} source(s), {} job(s)",
        path.display(),
        cfg.sources.len(),
        cfg.jobs.len()
    );
    for l in &lines {
        println!("{l}");
    }
    let failed = lines.iter().any(|l| l.result.is_err());
    Ok(if failed { 1 } else { 0 })
}

/// The error for a `kind` called `name` that the config does not define.
fn not_defined<'a>(kind: &str, name: &str, known: impl Iterator<Item = &'a str>) -> Error {
    let known: Vec<&str> = known.collect();
    Error::config(format!(
        "no {kind} named {name:?} (defined: {})",
        known.join(", ")
    ))
}

/// `ferry fetch`: one timed (and hashed) download from a source.
async fn fetch(
    cfg: &Config,
    source: &str,
    path: &str,
    out: Option<&Path>,
    hash: bool,
) -> Result<i32> {
    let settings = cfg
        .sources
        .get(source)
        .ok_or_else(|| not_defined("source", source, cfg.sources.keys().map(String::as_str)))?;
    let f = fetch::fetch(settings, path, out, hash).await?;
    println!(
        "fetched {} bytes from {} {path} in {:.2} s ({:.1} MB/s), sha256 {}",
        f.bytes,
        settings.describe(),
        f.seconds,
        f.bytes as f64 / 1e6 / f.seconds.max(1e-9),
        f.sha256.as_deref().unwrap_or("not computed")
    );
    Ok(0)
}

/// `ferry normalize`: a local file through a job's normalize step, with
/// its counts and first rejects; exit 1 when the file would fail.
fn normalize(cfg: &Config, file: &Path, job: &str, out: Option<PathBuf>) -> Result<i32> {
    let j = cfg
        .jobs
        .iter()
        .find(|j| j.name == job)
        .ok_or_else(|| not_defined("job", job, cfg.jobs.iter().map(|j| j.name.as_str())))?;
    let out = out.unwrap_or_else(|| {
        let mut p = file.to_path_buf().into_os_string();
        p.push(".staged.csv.gz");
        PathBuf::from(p)
    });
    let r = crate::normalize::normalize_file(j, file, &out)?;
    println!(
        "{}: {} rows written to {}, {} rejected, {} bytes read in {:.2} s ({:.1} MB/s, {:.0} rows/s)",
        file.display(),
        r.stats.rows,
        out.display(),
        r.stats.rejected,
        r.stats.input_bytes,
        r.seconds,
        r.stats.input_bytes as f64 / 1e6 / r.seconds.max(1e-9),
        (r.stats.rows + r.stats.rejected) as f64 / r.seconds.max(1e-9),
    );
    if let Some(path) = &r.rejects {
        println!(
            "every rejected record (line, column, code, reason, raw value, raw line): {}",
            path.display()
        );
    }
    for e in r.stats.errors.iter().take(20) {
        println!(
            "  line {}{}: [{}] {}",
            e.line,
            e.column
                .as_deref()
                .map(|c| format!(" column {c}"))
                .unwrap_or_default(),
            e.code,
            e.reason
        );
    }
    let failed = j
        .max_errors
        .exceeded(r.stats.rejected, r.stats.rows + r.stats.rejected);
    if failed {
        println!(
            "the file would fail: more rejected records than max_errors = {}",
            j.max_errors
        );
    }
    Ok(if failed { 1 } else { 0 })
}

/// The operations commands over the ledger: `jobs` (and pause/resume),
/// `files`, `errors`, `retry`, `reset`.
async fn operate(cfg: &Config, command: Command) -> Result<i32> {
    if let Command::Reset { name, yes: false } = &command {
        confirm_reset(name)?;
    }
    let wh = connect_warehouse(cfg).await?;
    let wh = &*wh;
    match command {
        Command::Jobs { action, json } => match action {
            None => print_table(&ops::jobs(cfg, wh).await?, json),
            Some(JobsAction::Pause { name }) => {
                println!("{}", ops::set_paused(cfg, wh, &name, true).await?)
            }
            Some(JobsAction::Resume { name }) => {
                println!("{}", ops::set_paused(cfg, wh, &name, false).await?)
            }
        },
        Command::Files {
            job,
            state,
            limit,
            json,
        } => {
            let filter = Filter {
                job,
                detail: state.map(|s| s.as_str().to_string()),
                limit,
            };
            print_table(&ops::files(cfg, wh, &filter).await?, json);
        }
        Command::Errors {
            job,
            file,
            limit,
            json,
        } => {
            let filter = Filter {
                job,
                detail: file,
                limit,
            };
            print_table(&ops::errors(cfg, wh, &filter).await?, json);
        }
        Command::Changes { job, limit, json } => {
            print_table(&ops::changes(cfg, wh, job.as_deref(), limit).await?, json);
        }
        Command::Retry { job, path } => {
            println!("{}", ops::retry(cfg, wh, &job, path.as_deref()).await?)
        }
        Command::Reset { name, .. } => println!("{}", ops::reset(cfg, wh, &name).await?),
        other => unreachable!("not an operations command: {other:?}"),
    }
    Ok(0)
}

/// Prints `err` with its whole chain for an operator.
pub fn report_error(err: &Error) {
    eprintln!("ferry: error: {}", err.chain());
}

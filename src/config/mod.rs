//! Configuration: a TOML file plus `FERRY__SECTION__KEY` environment
//! overrides, read into serde structs (`Raw…`; unknown keys are errors)
//! and then validated into the domain types the rest of ferry reads.
//!
//! One file per section, each holding its raw structs, their validation
//! and the domain types they become, in that order: [`daemon`],
//! [`staging`] (and the S3 endpoint settings S3 sources share),
//! [`warehouse`], [`source`], and for `[[jobs]]` [`job`], [`format`](mod@format),
//! [`columns`], [`dimensions`], [`settle`] (and on_success/on_failure),
//! [`limits`] (batch, limits, max_errors) and [`checks`]; [`values`]
//! parses durations, sizes, names and globs.
//!
//! Every error names the key path (`jobs[0].columns[2].type`, `staging.sse`)
//! and what is wrong with it; one run reports every problem.

pub mod alerts;
pub mod checks;
pub mod columns;
pub mod contract;
pub mod daemon;
pub mod dimensions;
pub mod format;
pub mod job;
pub mod limits;
pub mod queue;
mod secret;
pub mod settle;
pub mod source;
pub mod staging;
pub mod values;
pub mod warehouse;

pub use alerts::*;
pub use checks::*;
pub use columns::*;
pub use contract::*;
pub use daemon::*;
pub use dimensions::*;
pub use format::*;
pub use job::*;
pub use limits::*;
pub use queue::*;
pub use secret::{Secret, resolve as resolve_secret};
pub use settle::*;
pub use source::*;
pub use staging::*;
pub use values::*;
pub use warehouse::*;

use crate::error::{Error, Result};
use crate::schema::Column;
use crate::sql::Ident;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Process-wide settings.
    #[serde(default)]
    pub daemon: RawDaemon,
    /// Where staged gzip CSV goes.
    pub staging: RawStaging,
    /// The warehouse that receives the rows and keeps the ledger.
    pub warehouse: RawWarehouse,
    /// Named servers that jobs read from.
    #[serde(default)]
    pub sources: BTreeMap<String, RawSource>,
    /// The SQS work queue replicas share (none: one replica does all).
    pub queue: Option<RawQueue>,
    /// What to load: one entry per job.
    #[serde(default)]
    pub jobs: Vec<RawJob>,
    /// Where alerts go and on what.
    #[serde(default)]
    pub alerts: Vec<RawAlert>,
}

/// Prefix of environment overrides: `FERRY__DAEMON__POLL_INTERVAL=5s`.
pub const ENV_PREFIX: &str = "FERRY";

/// Reads `path`, applies environment overrides and validates the result.
pub fn load(path: &Path) -> Result<Config> {
    let raw = read_raw(path)?;
    validate(raw)
}

/// Reads the file and environment overrides into the raw structs.
pub fn read_raw(path: &Path) -> Result<RawConfig> {
    if !path.exists() {
        return Err(Error::config(format!(
            "config file {} does not exist (pass --config PATH or set FERRY_CONFIG)",
            path.display()
        )));
    }
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()
        .map_err(|e| Error::config(format!("cannot read config {}: {e}", path.display())))?;
    built
        .try_deserialize::<RawConfig>()
        .map_err(|e| Error::config(format!("invalid config {}: {e}", path.display())))
}

/// Parses a TOML string (no environment overrides); for tests and tools.
pub fn from_toml_str(text: &str) -> Result<Config> {
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| Error::config(format!("cannot read config: {e}")))?;
    let raw = built
        .try_deserialize::<RawConfig>()
        .map_err(|e| Error::config(format!("invalid config: {e}")))?;
    validate(raw)
}

/// Collects validation errors so that one run reports all of them.
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, path: impl AsRef<str>, message: impl AsRef<str>) {
        self.0
            .push(format!("{}: {}", path.as_ref(), message.as_ref()));
    }

    fn take<T>(&mut self, path: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(path, e);
                None
            }
        }
    }

    /// The value `names` gives `text` (one of a closed set), or a problem
    /// at `path` listing the choices: one helper, so every closed set
    /// reads and fails alike.
    fn choose<T: Clone>(&mut self, path: &str, text: &str, names: &[(&str, T)]) -> Option<T> {
        if let Some((_, v)) = names.iter().find(|(n, _)| *n == text) {
            return Some(v.clone());
        }
        let shown: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
        let choices = match shown.split_last() {
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        self.push(path, format!("{text:?}: expected {choices}"));
        None
    }

    /// For errors that already start with their key path.
    fn take_pathed<T>(&mut self, r: Result<T, String>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }
}

/// Validates the raw structs into a [`Config`], reporting every problem.
pub fn validate(raw: RawConfig) -> Result<Config> {
    let mut p = Problems(Vec::new());

    let daemon = validate_daemon(&raw.daemon, &mut p);
    let staging = validate_staging(&raw.staging, &mut p);
    let warehouse = validate_warehouse(&raw.warehouse, &mut p);
    let default_poll = daemon
        .as_ref()
        .map_or(Duration::from_secs(30), |d| d.poll_interval);
    let queue = match &raw.queue {
        Some(q) => validate_queue(q, &raw.jobs, default_poll, &mut p).map(Some),
        None => Some(None),
    };

    let mut sources = BTreeMap::new();
    for (name, rs) in &raw.sources {
        if let Some(s) = validate_source(name, rs, &mut p) {
            sources.insert(name.clone(), Arc::new(s));
        }
    }

    let mut jobs = Vec::new();
    let mut names = HashSet::new();
    for (i, rj) in raw.jobs.iter().enumerate() {
        let path = format!("jobs[{i}]");
        if !names.insert(rj.name.clone()) {
            p.push(
                format!("{path}.name"),
                format!("job {:?} is defined twice", rj.name),
            );
        }
        if let Some(job) = validate_job(&path, rj, &raw.sources, &sources, default_poll, &mut p) {
            jobs.push(Arc::new(job));
        }
    }

    let alerts = validate_alerts(&raw.alerts, &raw.jobs, &mut p);
    // A job's event queue needs SQS even without a `[queue]` section.
    let queue = match queue {
        Some(None) => Some(
            jobs.iter()
                .find_map(|j| j.events.as_ref())
                .map(|e| QueueSettings::implied_by_events(&e.queue_url)),
        ),
        other => other,
    };
    if !p.0.is_empty() {
        return Err(Error::config(format!(
            "invalid configuration:\n  - {}",
            p.0.join("\n  - ")
        )));
    }
    Ok(Config {
        daemon: daemon.expect("no problems means daemon is valid"),
        staging: staging.expect("no problems means staging is valid"),
        warehouse: warehouse.expect("no problems means warehouse is valid"),
        queue: queue.expect("no problems means queue is valid"),
        sources,
        jobs,
        alerts: alerts.expect("no problems means the alerts are valid"),
    })
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Process-wide settings.
    pub daemon: DaemonSettings,
    /// The S3 bucket and prefix staged files go to.
    pub staging: StagingSettings,
    /// Where rows and the ledger are written.
    pub warehouse: WarehouseSettings,
    /// The SQS work queue and how SQS is reached; `None`: ferry uses no
    /// SQS at all (no `[queue]` section and no job with `events`).
    pub queue: Option<QueueSettings>,
    /// The servers jobs read, by name.
    pub sources: BTreeMap<String, Arc<SourceSettings>>,
    /// Jobs, in file order.
    pub jobs: Vec<Arc<Job>>,
    /// Where alerts go, in file order.
    pub alerts: Vec<AlertSettings>,
}

#[cfg(test)]
mod tests;

/// For unit tests: a valid configuration (staging bucket `b`, a
/// PostgreSQL warehouse, local source `s` at `/tmp`) with one job `j`
/// reading `/in` into `t`, whose remaining lines are `job_lines`.
#[cfg(test)]
pub(crate) fn test_toml(job_lines: &str) -> String {
    format!(
        "[staging]\nbucket = \"b\"\n\n[warehouse]\nkind = \"postgres\"\n\n[sources.s]\nkind = \"local\"\nroot = \"/tmp\"\n\n\
         [[jobs]]\nname = \"j\"\nsource = \"s\"\npath = \"/in\"\ntarget = \"t\"\n{job_lines}"
    )
}

//! `[daemon]`: the process — polling, concurrency, shutdown, the HTTP
//! listener, logging, liveness.

use super::*;
use std::net::SocketAddr;

/// `[daemon]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// How often each job lists its source, e.g. `30s`, `5m`.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: String,
    /// How many files are fetched, normalized and staged at the same time
    /// across all jobs (each job also has its own `concurrency`).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Loads (warehouse transactions) in flight at once across all jobs;
    /// loads take the ledger lock in turn anyway, so more only queue in
    /// the warehouse.
    #[serde(default = "default_max_loads")]
    pub max_concurrent_loads: usize,
    /// How long a shutdown waits for in-flight loads to finish.
    #[serde(default = "default_grace_period")]
    pub grace_period: String,
    /// Address of the health and metrics listener; empty turns it off.
    #[serde(default = "default_http_listen")]
    pub http_listen: String,
    /// `text` for people, `json` for CloudWatch and other collectors.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// A job's pass that finishes no file for this long is stuck:
    /// `/healthz` answers 503 naming it and the systemd watchdog stops, so
    /// systemd (or ECS) restarts ferry.
    #[serde(default = "default_stuck_after")]
    pub stuck_after: String,
    /// Whether the status page offers pause, resume and retry buttons
    /// (each asks for the admin token). Off: the page is read-only.
    #[serde(default)]
    pub http_admin: bool,
    /// The admin token, from this environment variable (required with
    /// `http_admin = true`; at least 16 characters).
    pub http_admin_token_env: Option<String>,
    /// The admin token, from this file's trimmed content.
    pub http_admin_token_file: Option<String>,
}

/// 1 h: every network wait has its own, far shorter deadline, so a pass
/// this quiet is wedged in a way nothing else caught; a large file that
/// takes longer than this to fetch needs a larger value.
pub(super) fn default_stuck_after() -> String {
    "1h".into()
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            poll_interval: default_poll_interval(),
            concurrency: default_concurrency(),
            max_concurrent_loads: default_max_loads(),
            grace_period: default_grace_period(),
            http_listen: default_http_listen(),
            log_format: default_log_format(),
            stuck_after: default_stuck_after(),
            http_admin: false,
            http_admin_token_env: None,
            http_admin_token_file: None,
        }
    }
}

pub(super) fn default_poll_interval() -> String {
    "30s".into()
}

pub(super) fn default_concurrency() -> usize {
    16
}

pub(super) fn default_max_loads() -> usize {
    2
}

pub(super) fn default_grace_period() -> String {
    "60s".into()
}

pub(super) fn default_http_listen() -> String {
    "127.0.0.1:9187".into()
}

pub(super) fn default_log_format() -> String {
    "text".into()
}

pub(super) fn validate_daemon(d: &RawDaemon, p: &mut Problems) -> Option<DaemonSettings> {
    let poll_interval = p.take("daemon.poll_interval", parse_duration(&d.poll_interval));
    let grace_period = p.take("daemon.grace_period", parse_duration(&d.grace_period));
    if d.concurrency == 0 {
        p.push("daemon.concurrency", "must be at least 1");
    }
    if d.max_concurrent_loads == 0 {
        p.push("daemon.max_concurrent_loads", "must be at least 1");
    }
    let http_listen = if d.http_listen.trim().is_empty() {
        Some(None)
    } else {
        p.take(
            "daemon.http_listen",
            d.http_listen
                .parse()
                .map(Some)
                .map_err(|_| format!("{:?} is not an address like 127.0.0.1:9187", d.http_listen)),
        )
    };
    let log_format = p.choose(
        "daemon.log_format",
        &d.log_format,
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
    );
    let stuck_after = p.take("daemon.stuck_after", timeout(&d.stuck_after));
    let admin_token = validate_admin(d, http_listen.flatten().is_some(), p);
    Some(DaemonSettings {
        admin_token: admin_token?,
        stuck_after: stuck_after?,
        poll_interval: poll_interval?,
        concurrency: d.concurrency.max(1),
        max_concurrent_loads: d.max_concurrent_loads.max(1),
        grace_period: grace_period?,
        http_listen: http_listen?,
        log_format: log_format?,
    })
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The shortest admin token accepted: 16 characters of a generated token
/// are beyond guessing through a listener.
const MIN_ADMIN_TOKEN: usize = 16;

/// `http_admin` and its token: the token, when the status page may change
/// things; never admin without a token, nor a token nobody uses.
fn validate_admin(d: &RawDaemon, listening: bool, p: &mut Problems) -> Option<Option<Secret>> {
    let token = p.take_pathed(secret::resolve(
        "daemon.http_admin_token",
        d.http_admin_token_env.as_deref(),
        d.http_admin_token_file.as_deref(),
    ))?;
    match (d.http_admin, token) {
        (false, _) => Some(None),
        (true, None) => {
            p.push(
                "daemon.http_admin",
                "is true but no token is set: set daemon.http_admin_token_env (or _file) to a long random value, e.g. from `openssl rand -hex 24`",
            );
            None
        }
        (true, Some(_)) if !listening => {
            p.push(
                "daemon.http_admin",
                "is true but daemon.http_listen is off: set an address or turn http_admin off",
            );
            None
        }
        (true, Some(t)) if t.expose().chars().count() < MIN_ADMIN_TOKEN => {
            p.push(
                "daemon.http_admin_token",
                format!("is shorter than {MIN_ADMIN_TOKEN} characters: use a long random value, e.g. from `openssl rand -hex 24`"),
            );
            None
        }
        (true, Some(t)) => Some(Some(t)),
    }
}

/// `[daemon]`
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// With `http_admin = true`: the token the status page's buttons
    /// (and `Authorization: Bearer`) must present; `None`: read-only.
    pub admin_token: Option<Secret>,
    /// Interval between two listings of a job's source.
    pub poll_interval: Duration,
    /// Files staged at the same time across all jobs.
    pub concurrency: usize,
    /// Loads in flight at once against the warehouse.
    pub max_concurrent_loads: usize,
    /// Time in-flight work gets to finish on shutdown.
    pub grace_period: Duration,
    /// Health and metrics listener, if any.
    pub http_listen: Option<SocketAddr>,
    /// `text` for a terminal or journald, `json` (one object per line) for
    /// CloudWatch and other collectors.
    pub log_format: LogFormat,
    /// A pass without progress for this long is stuck (`/healthz`, watchdog).
    pub stuck_after: Duration,
}

//! `[[alerts]]`: where alerts go (a webhook, Slack-compatible, or an
//! Amazon SNS topic), on what, for which jobs, and how often at most.

use super::staging::{aws_credentials, endpoint_url};
use super::*;
use std::collections::BTreeSet;

/// What raises an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertKind {
    /// A file failed for good (recorded `failed` in the ledger).
    FileFailed,
    /// A job's lag is over its `max_lag`.
    Lag,
    /// A loaded file rejected more than `reject_rate` of its records.
    Rejects,
    /// A post-load check failed.
    CheckFailed,
    /// A file drifted from its job's mapping (or `evolve` changed a table).
    SchemaChange,
    /// A job's source has not answered for `source_down_after`.
    SourceDown,
    /// The daemon paused a job after `pause_after_failures` failed passes.
    JobPaused,
}

impl AlertKind {
    /// Every kind, in the order messages list them.
    pub const ALL: [AlertKind; 7] = [
        AlertKind::FileFailed,
        AlertKind::Lag,
        AlertKind::Rejects,
        AlertKind::CheckFailed,
        AlertKind::SchemaChange,
        AlertKind::SourceDown,
        AlertKind::JobPaused,
    ];

    /// The name in `on = [...]`, in messages and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::FileFailed => "file_failed",
            AlertKind::Lag => "lag",
            AlertKind::Rejects => "rejects",
            AlertKind::CheckFailed => "check_failed",
            AlertKind::SchemaChange => "schema_change",
            AlertKind::SourceDown => "source_down",
            AlertKind::JobPaused => "job_paused",
        }
    }
}

/// `[[alerts]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlert {
    /// A name for logs, metrics and `ferry alerts test --name`.
    pub name: String,
    /// `webhook` (an HTTP POST of JSON with a Slack-compatible `text`) or
    /// `sns` (a message published to an Amazon SNS topic).
    pub kind: String,
    /// Webhook: the URL (`http://` or `https://`). A Slack or Teams URL
    /// carries its token: prefer `url_env` or `url_file`.
    pub url: Option<String>,
    /// Webhook: the URL from this environment variable.
    pub url_env: Option<String>,
    /// Webhook: the URL from this file's trimmed content.
    pub url_file: Option<String>,
    /// SNS: the topic's ARN.
    pub topic_arn: Option<String>,
    /// SNS: the topic's region.
    #[serde(default = "default_region")]
    pub region: String,
    /// SNS: an endpoint other than AWS's (a local stand-in).
    pub endpoint: Option<String>,
    /// SNS: static access key id; unset uses the default credential chain.
    pub access_key_id: Option<String>,
    /// SNS: environment variable holding the secret access key.
    pub secret_access_key_env: Option<String>,
    /// SNS: a file whose contents are the secret access key.
    pub secret_access_key_file: Option<String>,
    /// What raises this alert: any of `file_failed`, `lag`, `rejects`,
    /// `check_failed`, `schema_change`, `source_down`, `job_paused`;
    /// unset: all of them.
    pub on: Option<Vec<String>>,
    /// Only these jobs; unset: every job.
    pub jobs: Option<Vec<String>>,
    /// At most one message per alert kind and job this often: the first
    /// goes at once, what follows within the interval goes as one digest
    /// with counts when it ends.
    #[serde(default = "default_digest")]
    pub digest: String,
    /// `rejects`: a loaded file whose rejected share of its records is
    /// above this (0 to 1) raises it.
    #[serde(default = "default_reject_rate")]
    pub reject_rate: f64,
    /// `source_down`: a source that has not answered a job's listing for
    /// this long raises it.
    #[serde(default = "default_source_down_after")]
    pub source_down_after: String,
    /// The longest one delivery attempt may take.
    #[serde(default = "default_alert_timeout")]
    pub timeout: String,
    /// Attempts after the first when a delivery fails for a reason that may
    /// pass (network, 429, 5xx), with backoff from 1 s doubling to 60 s.
    #[serde(default = "default_alert_retries")]
    pub retries: u32,
}

/// 10 min: a burst of failures is one message now and one digest later.
fn default_digest() -> String {
    "10m".into()
}

/// 5 %: a few bad records are normal in partner files; a twentieth is not.
fn default_reject_rate() -> f64 {
    0.05
}

/// 15 min: a source restarting or a network blip stays quiet.
fn default_source_down_after() -> String {
    "15m".into()
}

fn default_alert_timeout() -> String {
    "10s".into()
}

fn default_alert_retries() -> u32 {
    5
}

/// Where an alert's messages go.
#[derive(Debug, Clone)]
pub enum AlertTarget {
    /// An HTTP POST of JSON to this URL (a secret: it may carry a token).
    Webhook {
        /// The URL.
        url: Secret,
    },
    /// A message published to an SNS topic.
    Sns {
        /// The topic.
        topic_arn: String,
        /// How SNS is reached (the same shape as SQS).
        aws: SqsEndpoint,
    },
}

/// A validated `[[alerts]]` entry.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Its name.
    pub name: String,
    /// Where messages go.
    pub target: AlertTarget,
    /// What raises it.
    pub on: BTreeSet<AlertKind>,
    /// Only these jobs; empty: every job.
    pub jobs: Vec<String>,
    /// At most one message per kind and job this often.
    pub digest: Duration,
    /// The rejected share above which `rejects` is raised.
    pub reject_rate: f64,
    /// How long a source may not answer before `source_down`.
    pub source_down_after: Duration,
    /// The longest one delivery attempt may take.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
}

impl AlertSettings {
    /// Whether this alert wants `kind` for `job`.
    pub fn wants(&self, kind: AlertKind, job: &str) -> bool {
        self.on.contains(&kind) && (self.jobs.is_empty() || self.jobs.iter().any(|j| j == job))
    }
}

/// Validates every `[[alerts]]` entry against the configured jobs.
pub(super) fn validate_alerts(
    raw: &[RawAlert],
    jobs: &[RawJob],
    p: &mut Problems,
) -> Option<Vec<AlertSettings>> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    let mut ok = true;
    for (i, a) in raw.iter().enumerate() {
        let path = format!("alerts[{i}]");
        if a.name.trim().is_empty() || a.name.len() > 64 {
            p.push(format!("{path}.name"), "must be 1 to 64 characters");
        } else if !names.insert(a.name.as_str()) {
            p.push(
                format!("{path}.name"),
                format!("{:?} is used by another alert", a.name),
            );
        }
        match validate_alert(&path, a, jobs, p) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn validate_alert(
    path: &str,
    a: &RawAlert,
    jobs: &[RawJob],
    p: &mut Problems,
) -> Option<AlertSettings> {
    let target = match a.kind.as_str() {
        "webhook" => validate_webhook(path, a, p),
        "sns" => validate_sns(path, a, p),
        other => {
            p.push(
                format!("{path}.kind"),
                format!("{other:?} is not webhook or sns"),
            );
            None
        }
    };
    let on = match &a.on {
        None => AlertKind::ALL.into_iter().collect(),
        Some(names) => {
            let mut on = BTreeSet::new();
            for (i, n) in names.iter().enumerate() {
                match AlertKind::ALL.into_iter().find(|k| k.name() == n) {
                    Some(k) => {
                        on.insert(k);
                    }
                    None => p.push(
                        format!("{path}.on[{i}]"),
                        format!(
                            "{n:?} is not one of {}",
                            AlertKind::ALL.map(AlertKind::name).join(", ")
                        ),
                    ),
                }
            }
            if on.is_empty() {
                p.push(
                    format!("{path}.on"),
                    "names nothing: leave it out for every kind",
                );
            }
            on
        }
    };
    let known: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    for (i, j) in a.jobs.iter().flatten().enumerate() {
        if !known.contains(&j.as_str()) {
            p.push(
                format!("{path}.jobs[{i}]"),
                format!("no job named {j:?} (jobs: {})", known.join(", ")),
            );
        }
    }
    let digest = p.take(&format!("{path}.digest"), parse_duration(&a.digest));
    let source_down_after = p.take(
        &format!("{path}.source_down_after"),
        parse_duration(&a.source_down_after),
    );
    let timeout = p.take(&format!("{path}.timeout"), super::timeout(&a.timeout));
    if !(a.reject_rate > 0.0 && a.reject_rate <= 1.0) {
        p.push(
            format!("{path}.reject_rate"),
            "must be above 0 and at most 1 (0.05 is 5 %)",
        );
    }
    if a.retries > 20 {
        p.push(
            format!("{path}.retries"),
            "at most 20 (the backoff tops out at 60 s)",
        );
    }
    Some(AlertSettings {
        name: a.name.clone(),
        target: target?,
        on,
        jobs: a.jobs.clone().unwrap_or_default(),
        digest: digest?,
        reject_rate: a.reject_rate,
        source_down_after: source_down_after?,
        timeout: timeout?,
        retries: a.retries,
    })
}

fn validate_webhook(path: &str, a: &RawAlert, p: &mut Problems) -> Option<AlertTarget> {
    if a.topic_arn.is_some() {
        p.push(format!("{path}.topic_arn"), "is for kind = \"sns\"");
    }
    let from_secret = p.take_pathed(secret::resolve(
        &format!("{path}.url"),
        a.url_env.as_deref(),
        a.url_file.as_deref(),
    ))?;
    let url = match (&a.url, from_secret) {
        (Some(_), Some(_)) => {
            p.push(
                format!("{path}.url"),
                "is set twice: keep one of url, url_env and url_file",
            );
            return None;
        }
        (Some(u), None) => Secret::new(u.clone()),
        (None, Some(s)) => s,
        (None, None) => {
            p.push(
                format!("{path}.url"),
                "is required for a webhook (url, url_env or url_file)",
            );
            return None;
        }
    };
    let u = url.expose();
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"));
    if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
        // The URL is a secret: the message names the key, not the value.
        p.push(
            format!("{path}.url"),
            "is not an http:// or https:// URL with a host",
        );
        return None;
    }
    Some(AlertTarget::Webhook { url })
}

fn validate_sns(path: &str, a: &RawAlert, p: &mut Problems) -> Option<AlertTarget> {
    if a.url.is_some() || a.url_env.is_some() || a.url_file.is_some() {
        p.push(format!("{path}.url"), "is for kind = \"webhook\"");
    }
    let Some(arn) = &a.topic_arn else {
        p.push(
            format!("{path}.topic_arn"),
            "is required for kind = \"sns\"",
        );
        return None;
    };
    if !arn.starts_with("arn:aws") || arn.split(':').nth(2) != Some("sns") {
        p.push(
            format!("{path}.topic_arn"),
            format!("{arn:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"),
        );
    }
    endpoint_url(path, &a.endpoint, p);
    let credentials = aws_credentials(
        path,
        &a.access_key_id,
        &a.secret_access_key_env,
        &a.secret_access_key_file,
        p,
    )?;
    let timeout = p.take(&format!("{path}.timeout"), super::timeout(&a.timeout))?;
    Some(AlertTarget::Sns {
        topic_arn: arn.clone(),
        aws: SqsEndpoint {
            region: a.region.clone(),
            endpoint: a.endpoint.clone(),
            credentials,
            io_timeout: timeout,
        },
    })
}

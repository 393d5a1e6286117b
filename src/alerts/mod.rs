//! Alerts that reach a person: `[[alerts]]` webhooks (Slack-compatible
//! JSON) and SNS topics, on a file failed for good, a job's lag over its
//! `max_lag`, a file's reject rate over a threshold, a failed post-load
//! check, schema drift, a source unreachable for too long, and a job the
//! daemon paused after `pause_after_failures`.
//!
//! The pipeline [`raise`]s events from wherever they happen (a no-op when
//! no dispatcher runs); [`run`] is the dispatcher: it watches the jobs'
//! live state for lag and unreachable sources, digests (one message per
//! alert, kind and job per interval, with counts; [`digest`]) and
//! delivers with retries and backoff ([`deliver`]). Deliveries run inside
//! the dispatcher's own future; at shutdown what is held is sent within
//! [`FLUSH_GRACE`]. A delivery that fails for good is logged and counted
//! (`ferry_alerts_total{result="failed"}`), never retried forever.

pub mod deliver;
pub mod digest;
pub mod webhook;

use crate::config::{AlertKind, AlertSettings, Config};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a stopping dispatcher keeps delivering what it holds.
pub const FLUSH_GRACE: Duration = Duration::from_secs(10);
/// Events waiting for the dispatcher; more are dropped (and counted).
const QUEUE: usize = 1024;
/// Deliveries in flight at once; more are dropped (and counted).
const IN_FLIGHT: usize = 256;
/// How often lag and unreachable sources are looked at, and digests ended.
const TICK: Duration = Duration::from_secs(1);
/// A condition that holds (lag, source down) is raised again this often
/// (the digest then says it still holds).
const CONDITION_EVERY: Duration = Duration::from_secs(60);
/// The longest detail kept in a message.
const DETAIL_MAX: usize = 1000;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What kind.
    pub kind: AlertKind,
    /// The job it happened to.
    pub job: String,
    /// A file's path, a check's name, a source's name.
    pub subject: String,
    /// What happened, for a person.
    pub detail: String,
    /// `rejects`: the rejected share; `source_down`: seconds unreachable.
    pub measure: Option<f64>,
    /// When.
    pub at: DateTime<Utc>,
}

impl Event {
    /// An event now.
    pub fn new(kind: AlertKind, job: &str, subject: &str, detail: &str) -> Event {
        Event {
            kind,
            job: job.to_string(),
            subject: subject.to_string(),
            detail: crate::ledger::fit(detail, DETAIL_MAX).to_string(),
            measure: None,
            at: Utc::now(),
        }
    }

    /// With a measure.
    pub fn measured(mut self, m: f64) -> Event {
        self.measure = Some(m);
        self
    }

    /// Whether `alert` wants this event (its kind, its job, over its
    /// threshold).
    fn for_alert(&self, alert: &AlertSettings) -> bool {
        if !alert.wants(self.kind, &self.job) {
            return false;
        }
        match (self.kind, self.measure) {
            (AlertKind::Rejects, Some(rate)) => rate > alert.reject_rate,
            (AlertKind::SourceDown, Some(secs)) => secs >= alert.source_down_after.as_secs_f64(),
            _ => true,
        }
    }

    /// The event in a few words, without the job.
    fn summary(&self) -> String {
        // A reason that starts with the file's path says it once.
        let detail = self
            .detail
            .strip_prefix(&self.subject)
            .and_then(|d| d.strip_prefix(": "))
            .unwrap_or(&self.detail);
        match self.kind {
            AlertKind::FileFailed => format!("file failed for good: {}: {detail}", self.subject),
            AlertKind::Rejects => format!("{}: {detail}", self.subject),
            AlertKind::CheckFailed => format!("post-load check {} failed: {detail}", self.subject),
            AlertKind::SchemaChange => format!("schema drift in {}: {detail}", self.subject),
            AlertKind::Lag | AlertKind::SourceDown | AlertKind::JobPaused => self.detail.clone(),
        }
    }
}

/// What one delivery says: one event, or a digest of `count` of them
/// (with up to [`digest::SAMPLES`] samples) over `window`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The events shown (the first few and the newest).
    pub events: Vec<Event>,
    /// How many events it stands for.
    pub count: u64,
    /// For a digest: the interval it covers.
    pub window: Option<Duration>,
}

impl Message {
    /// A message of `events` standing for `count`.
    pub fn new(events: Vec<Event>, count: u64, window: Option<Duration>) -> Message {
        Message {
            events,
            count,
            window,
        }
    }

    /// The text a person reads (Slack's `text`, the SNS message's first
    /// line): `ferry [host] job: …`.
    pub fn text(&self, host: &str) -> String {
        let Some(last) = self.events.last() else {
            return format!("ferry [{host}]: (empty alert)");
        };
        let head = format!("ferry [{host}] {}: ", last.job);
        match self.window {
            None => format!("{head}{}", last.summary()),
            Some(w) if matches!(last.kind, AlertKind::Lag | AlertKind::SourceDown) => {
                format!(
                    "{head}still, over the last {}: {}",
                    crate::telemetry::ago(w),
                    last.summary()
                )
            }
            Some(w) => format!(
                "{head}{} more {} in the last {}; latest: {}",
                self.count,
                last.kind.name(),
                crate::telemetry::ago(w),
                last.summary()
            ),
        }
    }

    /// The JSON body: `text` for Slack and Teams-style receivers, then the
    /// fields a program reads.
    pub fn json(&self, alert: &str, host: &str) -> serde_json::Value {
        let last = self.events.last();
        serde_json::json!({
            "text": self.text(host),
            "alert": alert,
            "kind": last.map(|e| e.kind.name()),
            "job": last.map(|e| e.job.as_str()),
            "count": self.count,
            "digest_window_s": self.window.map(|w| w.as_secs()),
            "host": host,
            "events": self.events.iter().map(|e| serde_json::json!({
                "at": e.at.to_rfc3339(),
                "subject": e.subject,
                "detail": e.detail,
            })).collect::<Vec<_>>(),
        })
    }
}

fn sink() -> &'static Mutex<Option<mpsc::Sender<Event>>> {
    static SINK: OnceLock<Mutex<Option<mpsc::Sender<Event>>>> = OnceLock::new();
    SINK.get_or_init(Default::default)
}

/// Hands `event` to the dispatcher, if one runs; never waits (a full queue
/// drops the event and counts it).
pub fn raise(event: Event) {
    let guard = sink().lock().unwrap_or_else(|p| p.into_inner());
    let Some(tx) = &*guard else {
        return;
    };
    if tx.try_send(event).is_err() {
        crate::telemetry::metrics::add(
            "ferry_alerts_total",
            &[("alert", ""), ("result", "dropped")],
            1.0,
        );
    }
}

/// A file loaded with rejected records: `rejects`, with its share (each
/// alert compares it with its own `reject_rate`).
pub fn file_loaded(job: &str, path: &str, rows: u64, rejected: u64) {
    if rejected == 0 {
        return;
    }
    let rate = rejected as f64 / (rows + rejected) as f64;
    raise(
        Event::new(
            AlertKind::Rejects,
            job,
            path,
            &format!(
                "rejected {rejected} of {} records ({:.1} %); see `ferry errors --job {job} --path {path}`",
                rows + rejected,
                rate * 100.0
            ),
        )
        .measured(rate),
    );
}

/// A post-load check failed (returned rows, or could not run).
pub fn check_failed(
    job: &str,
    check: &str,
    load_id: &str,
    failing_rows: u64,
    detail: Option<&str>,
) {
    raise(Event::new(
        AlertKind::CheckFailed,
        job,
        check,
        &format!(
            "load {load_id}: {} (the load stays committed; see ferry_checks)",
            detail.map_or_else(|| format!("{failing_rows} rows"), str::to_string)
        ),
    ));
}

/// This daemon's name in messages: the host name.
pub fn host() -> String {
    crate::config::host_name()
}

/// Lag over `max_lag` and sources unreachable, from the jobs' live state:
/// one event per job and condition at most every [`CONDITION_EVERY`].
fn conditions(
    cfg: &Config,
    last: &mut HashMap<(AlertKind, String), Instant>,
    now: Instant,
) -> Vec<Event> {
    let live = crate::telemetry::jobs::snapshot();
    let wall = Utc::now();
    let ago = crate::telemetry::ago;
    // A source is reported once it has been down for the shortest
    // `source_down_after` of the alerts that want it.
    let down_after = cfg
        .alerts
        .iter()
        .filter(|a| a.on.contains(&AlertKind::SourceDown))
        .map(|a| a.source_down_after)
        .min();
    let mut out = Vec::new();
    for job in &cfg.jobs {
        let Some(state) = live.get(&job.name) else {
            continue;
        };
        if let Some(max) = job.max_lag {
            let lag = state.lag(wall);
            if lag > max {
                out.push(Event::new(
                    AlertKind::Lag,
                    &job.name,
                    "lag",
                    &format!(
                        "lag {} is over max_lag {} (a settled file has waited that long to load; see the status page or `ferry files --job {}`)",
                        ago(lag),
                        ago(max),
                        job.name
                    ),
                ));
            }
        }
        if let (Some((since, why)), Some(after)) = (&state.source_down, down_after)
            && (wall - *since).to_std().unwrap_or_default() >= after
        {
            let down = (wall - *since).to_std().unwrap_or_default();
            out.push(
                Event::new(
                    AlertKind::SourceDown,
                    &job.name,
                    &job.source.name,
                    &format!(
                        "source {} unreachable for {}: {why}",
                        job.source.name,
                        ago(down)
                    ),
                )
                .measured(down.as_secs_f64()),
            );
        }
    }
    out.retain(|e| {
        let key = (e.kind, e.job.clone());
        match last.get(&key) {
            Some(at) if now.duration_since(*at) < CONDITION_EVERY => false,
            _ => {
                last.insert(key, now);
                true
            }
        }
    });
    out
}

/// Runs the dispatcher for `cfg.alerts` until `stop`, then delivers what it
/// holds within [`FLUSH_GRACE`]. Without alerts it only waits for `stop`.
pub async fn run(cfg: &Config, stop: CancellationToken) {
    if cfg.alerts.is_empty() {
        stop.cancelled().await;
        return;
    }
    let (tx, mut rx) = mpsc::channel(QUEUE);
    *sink().lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    let host = host();
    let mut targets = Vec::new();
    for a in &cfg.alerts {
        targets.push(deliver::Target::connect(a).await);
    }
    let mut digests: Vec<digest::Digests> = cfg.alerts.iter().map(|_| Default::default()).collect();
    let mut held_conditions = HashMap::new();
    let mut sending = futures::stream::FuturesUnordered::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(alerts = cfg.alerts.len(), "alert dispatcher started");
    let send = |i: usize, m: Message, sending: &mut futures::stream::FuturesUnordered<_>| {
        if sending.len() >= IN_FLIGHT {
            tracing::error!(alert = %cfg.alerts[i].name, "too many alert deliveries in flight; dropping one");
            crate::telemetry::metrics::add(
                "ferry_alerts_total",
                &[("alert", &cfg.alerts[i].name), ("result", "dropped")],
                1.0,
            );
            return;
        }
        sending.push(deliver::deliver(&cfg.alerts[i], &targets[i], m, &host));
    };
    let route = |e: Event, digests: &mut Vec<digest::Digests>, sending: &mut _| {
        for (i, a) in cfg.alerts.iter().enumerate() {
            if e.for_alert(a)
                && let Some(m) = digests[i].take(e.clone(), Instant::now(), a.digest)
            {
                send(i, m, sending);
            }
        }
    };
    loop {
        tokio::select! {
            Some(e) = rx.recv() => route(e, &mut digests, &mut sending),
            _ = tick.tick() => {
                let now = Instant::now();
                for e in conditions(cfg, &mut held_conditions, now) {
                    route(e, &mut digests, &mut sending);
                }
                for (i, a) in cfg.alerts.iter().enumerate() {
                    for m in digests[i].due(now, a.digest) {
                        send(i, m, &mut sending);
                    }
                }
            }
            Some(_) = sending.next(), if !sending.is_empty() => {}
            () = stop.cancelled() => break,
        }
    }
    *sink().lock().unwrap_or_else(|p| p.into_inner()) = None;
    while let Ok(e) = rx.try_recv() {
        route(e, &mut digests, &mut sending);
    }
    for (i, a) in cfg.alerts.iter().enumerate() {
        for m in digests[i].drain(a.digest) {
            send(i, m, &mut sending);
        }
    }
    let flush = async { while sending.next().await.is_some() {} };
    if tokio::time::timeout(FLUSH_GRACE, flush).await.is_err() {
        tracing::warn!("alerts still undelivered after {FLUSH_GRACE:?} at shutdown; dropped");
    }
}

/// `ferry alerts test`: one test message to each alert (or to the one
/// named), delivered with its retries; what happened, per alert.
pub async fn test(
    cfg: &Config,
    only: Option<&str>,
) -> crate::Result<Vec<(String, Result<(), String>)>> {
    let chosen: Vec<&AlertSettings> = cfg
        .alerts
        .iter()
        .filter(|a| only.is_none_or(|n| a.name == n))
        .collect();
    if chosen.is_empty() {
        let known: Vec<&str> = cfg.alerts.iter().map(|a| a.name.as_str()).collect();
        return Err(crate::Error::config(match only {
            Some(n) => format!("no alert named {n:?} (alerts: {})", known.join(", ")),
            None => "no [[alerts]] in the configuration".to_string(),
        }));
    }
    let host = host();
    let mut out = Vec::new();
    for a in chosen {
        let target = deliver::Target::connect(a).await;
        let job = a.jobs.first().map_or("(every job)", String::as_str);
        let m = Message::new(
            vec![Event::new(
                AlertKind::JobPaused,
                job,
                "test",
                &format!(
                    "test message from `ferry alerts test`: alert {} reaches you",
                    a.name
                ),
            )],
            1,
            None,
        );
        out.push((a.name.clone(), deliver::deliver(a, &target, m, &host).await));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_name_the_host_job_and_what_happened() {
        let e = Event::new(
            AlertKind::FileFailed,
            "task-events",
            "/in/a.csv",
            "/in/a.csv: 12 rejected records",
        );
        let one = Message::new(vec![e.clone()], 1, None);
        assert_eq!(
            one.text("h1"),
            "ferry [h1] task-events: file failed for good: /in/a.csv: 12 rejected records"
        );
        let digest = Message::new(vec![e], 7, Some(Duration::from_secs(600)));
        assert_eq!(
            digest.text("h1"),
            "ferry [h1] task-events: 7 more file_failed in the last 10m 00s; latest: file failed for good: /in/a.csv: 12 rejected records"
        );
        let json = digest.json("oncall", "h1");
        assert_eq!(json["count"], 7);
        assert_eq!(json["kind"], "file_failed");
        assert_eq!(json["digest_window_s"], 600);
        assert_eq!(json["events"][0]["subject"], "/in/a.csv");
    }

    #[test]
    fn thresholds_pick_the_alerts_an_event_reaches() {
        let toml = crate::config::test_toml(
            "key = [\"id\"]\ncolumns = [ { name = \"id\", type = \"bigint\" } ]\n",
        ) + "\n[[alerts]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nreject_rate = 0.1\nsource_down_after = \"5m\"\n\
               [[alerts]]\nname = \"b\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\non = [\"file_failed\"]\njobs = [\"j\"]\n";
        let cfg = crate::config::from_toml_str(&toml).unwrap();
        let (a, b) = (&cfg.alerts[0], &cfg.alerts[1]);
        let rejects = |rate| Event::new(AlertKind::Rejects, "j", "/x", "").measured(rate);
        assert!(!rejects(0.05).for_alert(a) && rejects(0.2).for_alert(a));
        assert!(!rejects(0.9).for_alert(b), "b is not on rejects");
        let down = |secs| Event::new(AlertKind::SourceDown, "j", "s", "").measured(secs);
        assert!(!down(60.0).for_alert(a) && down(300.0).for_alert(a));
        let failed = |job| Event::new(AlertKind::FileFailed, job, "/x", "");
        assert!(
            failed("j").for_alert(b)
                && failed("other").for_alert(a)
                && !failed("other").for_alert(b)
        );
    }
}

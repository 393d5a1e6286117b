//! `[queue]`: the SQS work queue that lets several replicas share the
//! work (one lister per job, every replica receives), and how ferry
//! reaches SQS for the jobs' S3 event queues (`[jobs.events]`).
//!
//! No `[queue]` section: one replica lists and loads everything itself,
//! exactly as without a queue.

use super::*;

/// `[queue]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    /// `sqs`, the only kind.
    pub kind: String,
    /// The work queue's URL. A name ending in `.fifo` is a FIFO queue (no
    /// message delivered twice; a send the SDK retried kept once); any
    /// other is a standard queue (a duplicate is harmless: the ledger
    /// decides).
    /// Unset: no work sharing; the section then only says how to reach SQS
    /// for the jobs' event queues.
    pub url: Option<String>,
    /// AWS region of the queue.
    #[serde(default = "default_region")]
    pub region: String,
    /// Custom endpoint (a local SQS stand-in); unset for AWS.
    pub endpoint: Option<String>,
    /// Static access key id; unset uses the default AWS credential chain.
    pub access_key_id: Option<String>,
    /// Environment variable holding the secret access key.
    pub secret_access_key_env: Option<String>,
    /// A file whose contents are the secret access key.
    pub secret_access_key_file: Option<String>,
    /// How long a received message stays hidden from other replicas; a
    /// replica extends it every third of this while it works on the file
    /// (its heartbeat), so it only matters when a replica dies: its files
    /// are received again this long after its last heartbeat.
    #[serde(default = "default_visibility_timeout")]
    pub visibility_timeout: String,
    /// A job's lister renews its lease every poll; a lister that stops
    /// (killed, partitioned) loses it this long after its last renewal,
    /// and another replica lists the job from then on. At least twice the
    /// longest poll interval of the jobs.
    #[serde(default = "default_lease_period")]
    pub lease_period: String,
    /// How long one receive waits for a message (SQS long polling; at
    /// most 20s).
    #[serde(default = "default_wait_time")]
    pub wait_time: String,
    /// A version the lister sent that is still not in the ledger after
    /// this long is sent again (a message that expired or went to a
    /// dead-letter queue).
    #[serde(default = "default_resend_after")]
    pub resend_after: String,
    /// This replica's name in the lease table; unset: host name, process
    /// id and a random suffix.
    pub replica_id: Option<String>,
    /// The longest one SQS request attempt may take.
    #[serde(default = "default_queue_io_timeout")]
    pub io_timeout: String,
}

/// 5 min: a file's heartbeat renews it long before; a dead replica's
/// files are picked up again within five minutes.
pub(super) fn default_visibility_timeout() -> String {
    "5m".into()
}

/// 2 min: four polls at the default 30 s interval.
pub(super) fn default_lease_period() -> String {
    "2m".into()
}

/// 10 s of long polling: few empty receives, a prompt shutdown.
pub(super) fn default_wait_time() -> String {
    "10s".into()
}

pub(super) fn default_resend_after() -> String {
    "1h".into()
}

/// 30 s: SQS calls are small; a long poll adds its wait time to this.
pub(super) fn default_queue_io_timeout() -> String {
    "30s".into()
}

/// The validated `[queue]`.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// The work queue; `None`: no work sharing.
    pub work: Option<WorkQueue>,
    /// How SQS is reached (region, endpoint, credentials, deadline).
    pub sqs: SqsEndpoint,
    /// See [`RawQueue::visibility_timeout`].
    pub visibility_timeout: Duration,
    /// See [`RawQueue::lease_period`].
    pub lease_period: Duration,
    /// See [`RawQueue::wait_time`].
    pub wait_time: Duration,
    /// See [`RawQueue::resend_after`].
    pub resend_after: Duration,
    /// This replica's name in the lease table.
    pub replica_id: String,
}

/// The work queue ferry's listers send versions to.
#[derive(Debug, Clone)]
pub struct WorkQueue {
    /// Its URL.
    pub url: String,
    /// Whether it is a FIFO queue (its name ends in `.fifo`).
    pub fifo: bool,
}

/// How SQS is reached.
#[derive(Debug, Clone)]
pub struct SqsEndpoint {
    /// The region requests are signed for.
    pub region: String,
    /// An endpoint other than AWS's.
    pub endpoint: Option<String>,
    /// Static credentials; `None` uses the default chain.
    pub credentials: Option<(String, Secret)>,
    /// The longest one request attempt may take.
    pub io_timeout: Duration,
}

impl SqsEndpoint {
    /// AWS's own SQS in the region a queue URL names
    /// (`https://sqs.REGION.amazonaws.com/…`), with the default credential
    /// chain: how a job's event queue is reached without a `[queue]`.
    pub fn for_url(url: &str) -> SqsEndpoint {
        let region = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('.').nth(1))
            .filter(|r| !r.is_empty() && !r.contains('/'))
            .unwrap_or("us-east-1");
        SqsEndpoint {
            region: region.to_string(),
            endpoint: None,
            credentials: None,
            io_timeout: Duration::from_secs(30),
        }
    }
}

impl QueueSettings {
    /// No `[queue]` section, but a job reads S3 events from `url`: AWS's
    /// SQS in the URL's region, the default credential chain, every
    /// setting at its default, no work queue.
    pub fn implied_by_events(url: &str) -> QueueSettings {
        let d = |text: String| parse_duration(&text).expect("a default duration parses");
        QueueSettings {
            work: None,
            sqs: SqsEndpoint::for_url(url),
            visibility_timeout: d(default_visibility_timeout()),
            lease_period: d(default_lease_period()),
            wait_time: d(default_wait_time()),
            resend_after: d(default_resend_after()),
            replica_id: default_replica_id(),
        }
    }
}

/// A replica name: host, process id and a random suffix, so two
/// processes on one host (or a restarted one) never share a lease.
fn default_replica_id() -> String {
    let host = host_name();
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..6])
}

/// This machine's host name (`ferry` when it has none to read): the start
/// of a replica's default id, and who sends an alert.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "ferry".into())
}

/// Checks an SQS queue URL at `path`.
pub(super) fn queue_url(path: &str, url: &str, p: &mut Problems) {
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.split('/').count() < 5 {
        p.push(
            path,
            format!(
                "{url:?} is not an SQS queue URL (expected https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"
            ),
        );
    }
}

pub(super) fn validate_queue(
    q: &RawQueue,
    jobs: &[RawJob],
    default_poll: Duration,
    p: &mut Problems,
) -> Option<QueueSettings> {
    p.choose("queue.kind", &q.kind, &[("sqs", ())])?;
    if let Some(url) = &q.url {
        queue_url("queue.url", url, p);
    }
    endpoint_url("queue", &q.endpoint, p);
    let credentials = aws_credentials(
        "queue",
        &q.access_key_id,
        &q.secret_access_key_env,
        &q.secret_access_key_file,
        p,
    )?;
    let io_timeout = p.take("queue.io_timeout", timeout(&q.io_timeout));
    let visibility = p.take("queue.visibility_timeout", timeout(&q.visibility_timeout));
    if let Some(v) = visibility
        && v > Duration::from_secs(12 * 3600)
    {
        p.push(
            "queue.visibility_timeout",
            "must be at most 12h (SQS's limit)",
        );
    }
    let wait_time = p.take("queue.wait_time", parse_duration(&q.wait_time));
    if let Some(w) = wait_time
        && w > Duration::from_secs(20)
    {
        p.push(
            "queue.wait_time",
            "must be at most 20s (SQS's long polling limit)",
        );
    }
    let lease = p.take("queue.lease_period", timeout(&q.lease_period));
    let longest_poll = jobs
        .iter()
        .filter_map(|j| {
            j.poll_interval
                .as_deref()
                .and_then(|t| parse_duration(t).ok())
        })
        .chain([default_poll])
        .max()
        .unwrap_or(default_poll);
    if q.url.is_some()
        && let Some(l) = lease
        && l < longest_poll * 2
    {
        p.push(
            "queue.lease_period",
            format!(
                "{} is less than twice the longest poll interval ({}s): a lister would lose its lease between two polls",
                q.lease_period,
                longest_poll.as_secs()
            ),
        );
    }
    let resend_after = p.take("queue.resend_after", timeout(&q.resend_after));
    if let Some(id) = &q.replica_id
        && (id.is_empty() || id.len() > 256)
    {
        p.push("queue.replica_id", "must be 1 to 256 bytes");
    }
    Some(QueueSettings {
        work: q.url.as_ref().map(|url| WorkQueue {
            url: url.clone(),
            fifo: url.ends_with(".fifo"),
        }),
        sqs: SqsEndpoint {
            region: q.region.clone(),
            endpoint: q.endpoint.clone(),
            credentials,
            io_timeout: io_timeout?,
        },
        visibility_timeout: visibility?,
        lease_period: lease?,
        wait_time: wait_time?,
        resend_after: resend_after?,
        replica_id: q.replica_id.clone().unwrap_or_else(default_replica_id),
    })
}

//! The SQS queues ferry reads and writes: the work queue replicas share
//! (a lister sends one [`WorkItem`] per file version the ledger does not
//! have; every replica receives), and a job's queue of S3 event
//! notifications ([`events`]). [`claims`] holds what this replica has
//! received and keeps it hidden from the others while it works.
//!
//! The ledger stays the only truth for "loaded": a message received twice,
//! late or after the version loaded is harmless, because the receiver asks
//! the ledger before it fetches and the load transaction leaves out a
//! version loaded meanwhile. A message is deleted only after its version's
//! load committed or its failure was recorded; a replica that dies leaves
//! its messages to come back after the visibility timeout.

pub mod claims;
pub mod events;

use crate::config::SqsEndpoint;
use crate::error::{Error, Result, classified};
use crate::ledger::FileVersion;
use crate::source::RemoteEntry;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// SQS takes at most 10 entries per batch call and returns at most 10
/// messages per receive.
pub const SQS_BATCH: usize = 10;

/// One file version to work on, as the lister sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    /// Format of the message (1).
    pub ferry: u32,
    /// The job.
    pub job: String,
    /// Full path on the source.
    pub path: String,
    /// Path relative to the job's folder.
    pub relative: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// The entity tag the source listed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

impl WorkItem {
    /// The message for `entry` of `job`.
    pub fn new(job: &str, entry: &RemoteEntry) -> WorkItem {
        WorkItem {
            ferry: 1,
            job: job.to_string(),
            path: entry.path.clone(),
            relative: entry.relative.clone(),
            size: entry.size,
            mtime: entry.mtime,
            etag: entry.etag.clone(),
        }
    }

    /// Reads a message body; `None` when it is not one of ferry's.
    pub fn parse(body: &str) -> Option<WorkItem> {
        serde_json::from_str::<WorkItem>(body)
            .ok()
            .filter(|w| w.ferry == 1)
    }

    /// The listed entry it names.
    pub fn entry(&self) -> RemoteEntry {
        RemoteEntry {
            path: self.path.clone(),
            relative: self.relative.clone(),
            size: self.size,
            mtime: self.mtime,
            etag: self.etag.clone(),
        }
    }

    /// The version it names.
    pub fn version(&self) -> FileVersion {
        FileVersion {
            job: self.job.clone(),
            path: self.path.clone(),
            size: self.size,
            mtime: self.mtime,
        }
    }

    /// The body sent.
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("a work item serializes")
    }
}

/// A received message.
#[derive(Debug, Clone)]
pub struct Received {
    /// SQS's id of the message (the same each time it is received).
    pub id: String,
    /// Its body.
    pub body: String,
    /// The handle that deletes it or changes its visibility.
    pub receipt: String,
}

/// An SQS client with ferry's deadlines.
#[derive(Debug, Clone)]
pub struct Sqs {
    client: aws_sdk_sqs::Client,
    /// How long a received message stays hidden.
    pub visibility: Duration,
    /// How long a receive waits for a message.
    pub wait: Duration,
}

/// Whole seconds for SQS, at least 1 (0 only where asked for).
fn secs(d: Duration) -> i32 {
    d.as_secs().clamp(0, i32::MAX as u64) as i32
}

impl Sqs {
    /// A client for `ep`; a received message stays hidden for `visibility`,
    /// a receive waits up to `wait` (long polling).
    pub async fn connect(ep: &SqsEndpoint, visibility: Duration, wait: Duration) -> Sqs {
        // A long poll is an attempt that waits `wait` on purpose.
        let sdk =
            crate::aws::aws_config(&ep.region, ep.credentials.as_ref(), ep.io_timeout + wait).await;
        let mut b = aws_sdk_sqs::config::Builder::from(&sdk);
        if let Some(url) = &ep.endpoint {
            b = b.endpoint_url(url.clone());
        }
        Sqs {
            client: aws_sdk_sqs::Client::from_conf(b.build()),
            visibility,
            wait,
        }
    }

    /// Sends `bodies` (body, deduplication id) to `url`, ten per call and
    /// four calls at a time. On a FIFO queue each goes in a group of its
    /// own (no version waits for another) with its deduplication id, so a
    /// send the SDK retries is kept once.
    pub async fn send(&self, url: &str, fifo: bool, bodies: &[(String, String)]) -> Result<()> {
        for calls in bodies.chunks(SQS_BATCH * 4) {
            let batches: Vec<_> = calls
                .chunks(SQS_BATCH)
                .map(|chunk| self.send_batch(url, fifo, chunk))
                .collect();
            futures::future::try_join_all(batches).await?;
        }
        Ok(())
    }

    async fn send_batch(&self, url: &str, fifo: bool, chunk: &[(String, String)]) -> Result<()> {
        let mut req = self.client.send_message_batch().queue_url(url);
        for (i, (body, dedup)) in chunk.iter().enumerate() {
            let mut e = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body);
            if fifo {
                e = e.message_group_id(dedup).message_deduplication_id(dedup);
            }
            req = req.entries(built(e.build())?);
        }
        let out = req
            .send()
            .await
            .map_err(classified(format!("cannot send to the work queue {url}")))?;
        refused("send to", url, out.failed())
    }

    /// Receives up to `max` (1 to 10) messages from `url`, waiting up to
    /// the long-poll time for the first.
    pub async fn receive(&self, url: &str, max: usize) -> Result<Vec<Received>> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, SQS_BATCH) as i32)
            .wait_time_seconds(secs(self.wait))
            .visibility_timeout(secs(self.visibility).max(1))
            .send()
            .await
            .map_err(classified(format!("cannot receive from {url}")))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Received {
                    id: m.message_id()?.to_string(),
                    body: m.body()?.to_string(),
                    receipt: m.receipt_handle()?.to_string(),
                })
            })
            .collect())
    }

    /// Hides the messages of `receipts` for `hidden` more from now (0:
    /// visible again at once), ten per call.
    pub async fn hide(&self, url: &str, receipts: &[&str], hidden: Duration) -> Result<()> {
        for chunk in receipts.chunks(SQS_BATCH) {
            let mut req = self.client.change_message_visibility_batch().queue_url(url);
            for (i, r) in chunk.iter().enumerate() {
                req = req.entries(built(
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*r)
                        .visibility_timeout(secs(hidden))
                        .build(),
                )?);
            }
            let out = req
                .send()
                .await
                .map_err(classified(format!("cannot extend messages of {url}")))?;
            refused("extend messages of", url, out.failed())?;
        }
        Ok(())
    }

    /// Deletes the messages of `receipts`, ten per call.
    pub async fn delete(&self, url: &str, receipts: &[&str]) -> Result<()> {
        for chunk in receipts.chunks(SQS_BATCH) {
            let mut req = self.client.delete_message_batch().queue_url(url);
            for (i, r) in chunk.iter().enumerate() {
                req = req.entries(built(
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*r)
                        .build(),
                )?);
            }
            let out = req
                .send()
                .await
                .map_err(classified(format!("cannot delete messages of {url}")))?;
            refused("delete messages of", url, out.failed())?;
        }
        Ok(())
    }
}

/// A batch entry ferry built (its required fields are always set).
fn built<T>(entry: std::result::Result<T, aws_sdk_sqs::error::BuildError>) -> Result<T> {
    entry.map_err(|e| Error::permanent(format!("cannot build an SQS request: {e}")))
}

/// The first batch entry SQS refused, if any: its fault (a receipt that
/// expired, a message too large) is for good, SQS's own is transient.
fn refused(what: &str, url: &str, failed: &[BatchResultErrorEntry]) -> Result<()> {
    let Some(f) = failed.first() else {
        return Ok(());
    };
    let text = format!(
        "cannot {what} {url}: {}{}",
        f.code(),
        f.message().map(|m| format!(": {m}")).unwrap_or_default()
    );
    Err(if f.sender_fault() {
        Error::permanent(text)
    } else {
        Error::transient(text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_item_reads_back_what_it_wrote_and_nothing_else() {
        let entry = RemoteEntry {
            path: "/in/a b.csv".into(),
            relative: "a b.csv".into(),
            size: 12,
            mtime: 1_700_000_000,
            etag: None,
        };
        let item = WorkItem::new("events", &entry);
        let back = WorkItem::parse(&item.body()).expect("parses");
        assert_eq!(back, item);
        assert_eq!(back.entry(), entry);
        assert_eq!(back.version().short_id(), item.version().short_id());
        assert!(WorkItem::parse("{\"Records\":[]}").is_none());
        assert!(WorkItem::parse("not json").is_none());
        let future = item.body().replace("\"ferry\":1", "\"ferry\":2");
        assert!(WorkItem::parse(&future).is_none());
    }
}

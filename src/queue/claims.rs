//! What this replica has received and not finished: per file version, the
//! message (queue and receipt) that brought it. A heartbeat extends the
//! visibility of every held message by the queue's visibility timeout
//! every third of it, so no other replica receives a file this one is
//! still working on; [`Claims::settle`] deletes the messages of versions
//! that are done and makes the others visible again.
//!
//! Nothing here is written anywhere but SQS: a replica that dies stops its
//! heartbeat, and its messages come back to the others.

use super::Sqs;
use crate::ledger::FileVersion;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One held message.
#[derive(Debug, Clone)]
struct Claim {
    queue: Arc<str>,
    id: String,
    receipt: String,
}

/// What [`Claims::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// The version was not held: it is now, work on it.
    New,
    /// The message that brought it came back (its visibility ran out
    /// before a heartbeat): its new receipt is kept, nothing else to do.
    Again,
    /// Another message for a version held already (a duplicate): delete
    /// that message; the one held stays.
    Duplicate,
}

type Held = Arc<Mutex<HashMap<FileVersion, Claim>>>;

/// The messages this replica holds, by version, with their heartbeat.
pub struct Claims {
    held: Held,
    sqs: Sqs,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for Claims {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl Claims {
    /// Starts the heartbeat (on the current Tokio runtime).
    pub fn new(sqs: Sqs) -> Claims {
        let held: Held = Arc::default();
        let heartbeat = tokio::spawn(heartbeat(held.clone(), sqs.clone()));
        Claims {
            held,
            sqs,
            heartbeat,
        }
    }

    /// The SQS client the claims were received with.
    pub fn sqs(&self) -> &Sqs {
        &self.sqs
    }

    /// Holds `version`, brought by message `id` (received in `receipt`)
    /// from `queue`.
    pub fn claim(
        &self,
        version: FileVersion,
        queue: &Arc<str>,
        id: &str,
        receipt: &str,
    ) -> Claimed {
        let mut held = self.held.lock().expect("claims lock");
        match held.get_mut(&version) {
            Some(c) if c.id == id => {
                c.receipt = receipt.to_string();
                Claimed::Again
            }
            Some(_) => Claimed::Duplicate,
            None => {
                held.insert(
                    version,
                    Claim {
                        queue: queue.clone(),
                        id: id.to_string(),
                        receipt: receipt.to_string(),
                    },
                );
                Claimed::New
            }
        }
    }

    /// The versions of `job` held.
    pub fn of_job(&self, job: &str) -> Vec<FileVersion> {
        self.held
            .lock()
            .expect("claims lock")
            .keys()
            .filter(|v| v.job == job)
            .cloned()
            .collect()
    }

    /// Lets go of `done` (deleting their messages: their loads committed
    /// or their failures are recorded) and of `again` (their messages
    /// become visible again after `retry_after`, for any replica). A
    /// message that brought several versions goes once none of them is
    /// held. A failure is logged: a message not deleted comes back, and
    /// its receiver finds the version in the ledger.
    pub async fn settle(&self, done: &[FileVersion], again: &[FileVersion], retry_after: Duration) {
        let (delete, release) = {
            let mut held = self.held.lock().expect("claims lock");
            let mut take = |versions: &[FileVersion]| -> Vec<Claim> {
                versions.iter().filter_map(|v| held.remove(v)).collect()
            };
            let (delete, release) = (take(done), take(again));
            let in_use = |c: &Claim| held.values().any(|h| h.receipt == c.receipt);
            let delete: Vec<Claim> = delete.into_iter().filter(|c| !in_use(c)).collect();
            let release: Vec<Claim> = release.into_iter().filter(|c| !in_use(c)).collect();
            (by_queue(delete), by_queue(release))
        };
        for (queue, receipts) in delete {
            let receipts = dedup(&receipts);
            if let Err(e) = self.sqs.delete(&queue, &receipts).await {
                tracing::warn!(queue = %queue, messages = receipts.len(), error = %e.chain(), "cannot delete messages of finished files; they come back and are found loaded");
            }
        }
        for (queue, receipts) in release {
            let receipts = dedup(&receipts);
            if let Err(e) = self.sqs.hide(&queue, &receipts, retry_after).await {
                tracing::warn!(queue = %queue, messages = receipts.len(), error = %e.chain(), "cannot release messages; they come back after the visibility timeout");
            }
        }
    }

    /// Lets go of every held message at once (the replica stops): each is
    /// visible again now, for the other replicas, instead of after its
    /// visibility timeout.
    pub async fn release_all(&self) {
        let all: Vec<FileVersion> = self
            .held
            .lock()
            .expect("claims lock")
            .keys()
            .cloned()
            .collect();
        if !all.is_empty() {
            tracing::info!(
                files = all.len(),
                "stopping: received files not loaded go back to the queue"
            );
            self.settle(&[], &all, Duration::ZERO).await;
        }
    }

    /// Deletes a message that brought nothing to hold (a duplicate, an
    /// event outside the job, a test event).
    pub async fn discard(&self, queue: &str, receipt: &str) {
        if let Err(e) = self.sqs.delete(queue, &[receipt]).await {
            tracing::warn!(queue, error = %e.chain(), "cannot delete a message that needs no work; it comes back and is discarded again");
        }
    }
}

fn by_queue(claims: Vec<Claim>) -> Vec<(Arc<str>, Vec<String>)> {
    let mut out: Vec<(Arc<str>, Vec<String>)> = Vec::new();
    for c in claims {
        match out.iter_mut().find(|(q, _)| *q == c.queue) {
            Some((_, r)) => r.push(c.receipt),
            None => out.push((c.queue, vec![c.receipt])),
        }
    }
    out
}

fn dedup(receipts: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = receipts.iter().map(String::as_str).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Every third of the visibility timeout, hides every held message for
/// another visibility timeout.
async fn heartbeat(held: Held, sqs: Sqs) {
    let every = (sqs.visibility / 3).max(Duration::from_millis(500));
    loop {
        tokio::time::sleep(every).await;
        let claims: Vec<Claim> = held
            .lock()
            .expect("claims lock")
            .values()
            .cloned()
            .collect();
        for (queue, receipts) in by_queue(claims) {
            let receipts = dedup(&receipts);
            match sqs.hide(&queue, &receipts, sqs.visibility).await {
                Ok(()) => tracing::trace!(queue = %queue, messages = receipts.len(), "heartbeat"),
                Err(e) => {
                    tracing::warn!(queue = %queue, messages = receipts.len(), error = %e.chain(), "heartbeat failed; another replica may receive these files when their visibility timeout ends")
                }
            }
        }
    }
}

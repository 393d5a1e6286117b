//! Decoding on one thread, mapping and writing on another.
//!
//! A decoder turns bytes into owned records and hands them over in
//! batches; the [`RowSink`] maps, checks and writes them as CSV on a scoped
//! thread of its own, and the gzip output compresses on a third. Both
//! cores work on one file. Batches are bounded by rows and bytes, and only
//! a few are in flight, so memory stays bounded; drained batches come back
//! so that a decoder can reuse their records' buffers.

use super::sink::RowSink;
use super::{NormalizeError, NormalizeStats, Output, RowError};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Records per batch.
const BATCH_ROWS: usize = 1024;
/// Bytes of input per batch (a batch is sent when either limit is reached).
const BATCH_BYTES: usize = 512 * 1024;
/// Records kept for reuse: all that can be in flight at once.
const SPARE_ROWS: usize = BATCH_ROWS * (IN_FLIGHT + 2);
/// Batches queued between the threads.
const IN_FLIGHT: usize = 8;

enum Item<T> {
    Row(u64, T),
    Reject(RowError),
}

/// A record a decoder hands over; the writer thread turns it into a row
/// (or an error row).
pub trait Record: Send {
    /// Maps and writes this record, which starts on physical `line`.
    fn emit<W: Output>(&self, line: u64, sink: &mut RowSink<'_, W>) -> Result<(), NormalizeError>;
}

/// Implements [`Record`] for a type that is its own [`Fields`](super::sink::Fields).
macro_rules! fields_record {
    ($t:ty) => {
        impl $crate::normalize::handoff::Record for $t {
            fn emit<W: $crate::normalize::Output>(
                &self,
                line: u64,
                sink: &mut $crate::normalize::sink::RowSink<'_, W>,
            ) -> Result<(), $crate::normalize::NormalizeError> {
                sink.push(line, self)
            }
        }
    };
}
pub(super) use fields_record;

/// The writer thread stopped; its own error says why.
#[derive(Debug)]
pub struct Stopped;

/// The decoder's end of the hand-off.
pub struct Feed<T> {
    batch: Vec<Item<T>>,
    bytes: usize,
    tx: Option<SyncSender<Vec<Item<T>>>>,
    back: Receiver<Vec<Item<T>>>,
    spare: Vec<T>,
    empty: Vec<Vec<Item<T>>>,
    /// The decoder asks for spares; otherwise returned records are freed.
    reuses: bool,
}

impl<T> Feed<T> {
    /// Hands over a record that starts on physical `line` and took `size`
    /// bytes of input.
    pub fn push(&mut self, line: u64, size: usize, record: T) -> Result<(), Stopped> {
        self.reclaim();
        self.batch.push(Item::Row(line, record));
        self.bytes += size;
        self.maybe_send()
    }

    /// Hands over a record rejected before mapping.
    pub fn reject(&mut self, error: RowError) -> Result<(), Stopped> {
        self.bytes += error.raw_line.len();
        self.batch.push(Item::Reject(error));
        self.maybe_send()
    }

    /// A record the writer is done with, to read the next one into.
    pub fn spare(&mut self) -> Option<T> {
        self.reuses = true;
        self.reclaim();
        self.spare.pop()
    }

    /// Takes back drained batches: their records become spares (as many
    /// as can be in circulation, so a steady stream allocates nothing) and
    /// any beyond that are dropped here, on the thread that allocated them,
    /// which the allocator handles far faster than frees from another
    /// thread. An emptied batch becomes the next batch's buffer.
    fn reclaim(&mut self) {
        while let Ok(mut batch) = self.back.try_recv() {
            for item in batch.drain(..) {
                if let Item::Row(_, r) = item
                    && self.reuses
                    && self.spare.len() < SPARE_ROWS
                {
                    self.spare.push(r);
                }
            }
            if self.empty.len() < IN_FLIGHT {
                self.empty.push(batch);
            }
        }
    }

    fn maybe_send(&mut self) -> Result<(), Stopped> {
        if self.batch.len() >= BATCH_ROWS || self.bytes >= BATCH_BYTES {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<(), Stopped> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let next = self
            .empty
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BATCH_ROWS));
        let full = std::mem::replace(&mut self.batch, next);
        self.bytes = 0;
        match &self.tx {
            Some(tx) => tx.send(full).map_err(|_| Stopped),
            None => Err(Stopped),
        }
    }
}

/// Runs `decode` here and `sink` on a thread of its own. The sink's error
/// wins over the decoder's: a decoder that failed because the writer
/// stopped only reports the consequence.
pub fn run<'j, W, T, F>(
    sink: RowSink<'j, W>,
    path: &str,
    decode: F,
) -> Result<NormalizeStats, NormalizeError>
where
    W: Output + Send,
    T: Record,
    F: FnOnce(&mut Feed<T>) -> Result<(), NormalizeError>,
{
    let (tx, rx) = sync_channel::<Vec<Item<T>>>(IN_FLIGHT);
    let (back_tx, back_rx) = sync_channel::<Vec<Item<T>>>(IN_FLIGHT + 2);
    std::thread::scope(|s| {
        let writer = std::thread::Builder::new()
            .name("ferry-rows".into())
            .spawn_scoped(s, move || -> Result<NormalizeStats, NormalizeError> {
                let mut sink = sink;
                for batch in rx {
                    for item in &batch {
                        match item {
                            Item::Row(line, record) => record.emit(*line, &mut sink)?,
                            Item::Reject(e) => sink.rejected(e.clone())?,
                        }
                    }
                    let _ = back_tx.try_send(batch);
                }
                sink.finish()
            })
            .expect("spawning the row writer thread");
        let mut feed = Feed {
            batch: Vec::with_capacity(BATCH_ROWS),
            bytes: 0,
            tx: Some(tx),
            back: back_rx,
            spare: Vec::new(),
            empty: Vec::new(),
            reuses: false,
        };
        let decoded = decode(&mut feed).and_then(|()| feed.send().map_err(|Stopped| stopped(path)));
        feed.tx.take();
        drop(feed);
        let written = match writer.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        match (decoded, written) {
            (_, Err(e)) => Err(e),
            (Err(e), Ok(_)) => Err(e),
            (Ok(()), Ok(stats)) => Ok(stats),
        }
    })
}

/// The error a decoder returns when the writer has stopped (replaced by
/// the writer's own error in [`run`]).
pub fn stopped(path: &str) -> NormalizeError {
    NormalizeError::Write {
        path: path.to_string(),
        source: std::io::Error::other("the row writer stopped"),
    }
}

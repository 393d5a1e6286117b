//! Decoding on one thread, mapping and writing on another.
//!
//! A decoder turns bytes into owned records and hands them over in
//! batches; the [`RowSink`] maps, checks and writes them as CSV on a scoped
//! thread of its own, and the gzip output compresses on a third. Both
//! cores work on one file. Batches are bounded by rows and bytes, and only
//! a few are in flight, so memory stays bounded; drained batches come back
//! so that a decoder can reuse their records' buffers. A decoder whose
//! records are many small pieces (CSV fields, JSON lines) hands over its
//! own batch type instead, all its records in one buffer: the writer's
//! first touch of data made on the other core then streams through one
//! contiguous block instead of missing the cache record by record.
//!
//! A job with `row_threads` above one spreads a large file's batches over
//! that many writers (batch *k* to writer *k* mod *n*), each writing its
//! batch's rows as CSV text into a chunk of its own, and one assembler
//! takes the chunks back in batch order: the staged rows, their order, the
//! rejects and the drift are what one writer would have made (see
//! [`Tracker::merge`](super::drift::Tracker::merge)), while mapping and
//! coercion, the costliest part for JSON, use more cores.
//!
//! A small input is not worth a thread: with `one_thread` each batch is
//! written on the decoder's thread as soon as it is full (a thread spawn
//! and its hand-offs cost more than normalizing a 5 KB file).

use super::sink::{Chunk, RowSink};
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
/// Chunks a row writer may have written ahead of the assembler.
const CHUNKS_AHEAD: usize = 1;

enum Item<T> {
    Row(u64, T),
    Reject(RowError),
}

/// A record's fields as key and value slots, reused from record to record
/// (a decoder takes a spare back from the writer and refills it): only
/// the first `len` are live, the rest keep their buffers.
#[derive(Debug, Default)]
pub struct Slots<V> {
    values: Vec<(String, V)>,
    len: usize,
}

impl<V: Default> Slots<V> {
    /// The live slots.
    pub fn live(&self) -> &[(String, V)] {
        &self.values[..self.len]
    }

    /// Empties the record (buffers are kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `key`, in a reused slot where there is one; `fill` writes
    /// the value into the slot's old one.
    pub fn push(&mut self, key: &str, fill: impl FnOnce(&mut V)) {
        if let Some((k, v)) = self.values.get_mut(self.len) {
            k.clear();
            k.push_str(key);
            fill(v);
        } else {
            let mut v = V::default();
            fill(&mut v);
            self.values.push((key.to_string(), v));
        }
        self.len += 1;
    }
}

/// A record a decoder hands over; the writer thread turns it into a row
/// (or an error row).
pub trait Record: Send {
    /// Maps and writes this record, which starts on physical `line`.
    fn emit<W: Output>(&self, line: u64, sink: &mut RowSink<'_, W>) -> Result<(), NormalizeError>;

    /// Lets go of what the record refers to before it waits as a spare
    /// (called on the decoder's thread); buffers may stay.
    fn recycle(&mut self) {}
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

/// Writes a batch on the decoder's thread (`one_thread`).
type Inline<'w, T> = &'w mut dyn FnMut(&[Item<T>]) -> Result<(), Stopped>;

/// Where the decoder's batches go.
enum Writer<'w, T> {
    /// To the writer threads, in turn (batch `k` to `txs[k % n]`);
    /// drained batches come back on `back`.
    Thread {
        txs: Vec<SyncSender<Vec<Item<T>>>>,
        next: usize,
        back: Receiver<Vec<Item<T>>>,
    },
    /// Written here, at once.
    Inline(Inline<'w, T>),
}

/// The decoder's end of the hand-off.
pub struct Feed<'w, T> {
    batch: Vec<Item<T>>,
    bytes: usize,
    writer: Writer<'w, T>,
    spare: Vec<T>,
    empty: Vec<Vec<Item<T>>>,
    /// The decoder asks for spares; otherwise returned records are freed.
    reuses: bool,
}

impl<'w, T: Record> Feed<'w, T> {
    fn new(writer: Writer<'w, T>) -> Self {
        Feed {
            batch: Vec::with_capacity(BATCH_ROWS),
            bytes: 0,
            writer,
            spare: Vec::new(),
            empty: Vec::new(),
            reuses: false,
        }
    }

    /// Hands over a record that starts on physical `line` and took `size`
    /// bytes of input.
    pub fn push(&mut self, line: u64, size: usize, record: T) -> Result<(), Stopped> {
        self.reclaim();
        self.batch.push(Item::Row(line, record));
        self.bytes += size;
        self.maybe_send()
    }

    /// Hands over a record that is a batch of rows by itself (a Parquet
    /// column batch) and sends it at once.
    pub fn push_whole(&mut self, line: u64, record: T) -> Result<(), Stopped> {
        self.reclaim();
        self.batch.push(Item::Row(line, record));
        self.send()
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
        let Writer::Thread { back, .. } = &self.writer else {
            return;
        };
        while let Ok(batch) = back.try_recv() {
            keep(&mut self.spare, &mut self.empty, self.reuses, batch);
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
        match &mut self.writer {
            Writer::Thread { txs, next, .. } => {
                let Some(tx) = txs.get(*next) else {
                    return Err(Stopped);
                };
                *next = (*next + 1) % txs.len();
                tx.send(full).map_err(|_| Stopped)
            }
            Writer::Inline(write) => {
                write(&full)?;
                keep(&mut self.spare, &mut self.empty, self.reuses, full);
                Ok(())
            }
        }
    }
}

/// Keeps a drained batch's records as spares (when the decoder `reuses`
/// them) and the batch as the next one's buffer.
fn keep<T: Record>(
    spare: &mut Vec<T>,
    empty: &mut Vec<Vec<Item<T>>>,
    reuses: bool,
    mut batch: Vec<Item<T>>,
) {
    for item in batch.drain(..) {
        if let Item::Row(_, mut r) = item
            && reuses
            && spare.len() < SPARE_ROWS
        {
            r.recycle();
            spare.push(r);
        }
    }
    if empty.len() < IN_FLIGHT {
        empty.push(batch);
    }
}

/// Maps and writes one batch into `sink`.
fn write_batch<T: Record, W: Output>(
    batch: &[Item<T>],
    sink: &mut RowSink<'_, W>,
) -> Result<(), NormalizeError> {
    for item in batch {
        match item {
            Item::Row(line, record) => record.emit(*line, sink)?,
            Item::Reject(e) => sink.rejected(e.clone())?,
        }
    }
    Ok(())
}

/// Runs `decode` here and `sink` on a thread of its own (or, with
/// `one_thread`, here too). The sink's error wins over the decoder's: a
/// decoder that failed because the writer stopped only reports the
/// consequence.
pub fn run<'j, W, T, F>(
    sink: RowSink<'j, W>,
    path: &str,
    one_thread: bool,
    decode: F,
) -> Result<NormalizeStats, NormalizeError>
where
    W: Output + Send,
    T: Record,
    F: FnOnce(&mut Feed<'_, T>) -> Result<(), NormalizeError>,
{
    if one_thread {
        return run_here(sink, path, decode);
    }
    let writers = sink.row_threads();
    if writers > 1 {
        return run_spread(sink, path, writers, decode);
    }
    let (tx, rx) = sync_channel::<Vec<Item<T>>>(IN_FLIGHT);
    let (back_tx, back_rx) = sync_channel::<Vec<Item<T>>>(IN_FLIGHT + 2);
    std::thread::scope(|s| {
        let writer = std::thread::Builder::new()
            .name("ferry-rows".into())
            .spawn_scoped(s, move || -> Result<NormalizeStats, NormalizeError> {
                let mut sink = sink;
                for batch in rx {
                    write_batch(&batch, &mut sink)?;
                    let _ = back_tx.try_send(batch);
                }
                sink.finish()
            })
            .expect("spawning the row writer thread");
        let feed = Feed::new(Writer::Thread {
            txs: vec![tx],
            next: 0,
            back: back_rx,
        });
        let decoded = decode_all(decode, feed, path);
        outcome(decoded, joined(writer))
    })
}

/// Runs the decoder into `feed` and sends its last batch.
fn decode_all<T: Record, F>(
    decode: F,
    mut feed: Feed<'_, T>,
    path: &str,
) -> Result<(), NormalizeError>
where
    F: FnOnce(&mut Feed<'_, T>) -> Result<(), NormalizeError>,
{
    decode(&mut feed).and_then(|()| feed.send().map_err(|Stopped| stopped(path)))
}

/// The run's result: the writer's error wins over the decoder's.
fn outcome(
    decoded: Result<(), NormalizeError>,
    written: Result<NormalizeStats, NormalizeError>,
) -> Result<NormalizeStats, NormalizeError> {
    match (decoded, written) {
        (_, Err(e)) => Err(e),
        (Err(e), Ok(_)) => Err(e),
        (Ok(()), Ok(stats)) => Ok(stats),
    }
}

/// A scoped thread's result; its panic goes on here.
fn joined<R>(handle: std::thread::ScopedJoinHandle<'_, R>) -> R {
    match handle.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// [`run`] with `writers` row writers side by side and an assembler that
/// writes their chunks to `sink`'s output in batch order.
fn run_spread<'j, W: Output + Send, T: Record>(
    mut sink: RowSink<'j, W>,
    path: &str,
    writers: usize,
    decode: impl FnOnce(&mut Feed<'_, T>) -> Result<(), NormalizeError>,
) -> Result<NormalizeStats, NormalizeError> {
    // Each writer holds a few batches in and a few chunks out; in all
    // about as many as one writer would.
    let depth = (IN_FLIGHT / writers).max(2);
    let (back_tx, back_rx) = sync_channel::<Vec<Item<T>>>(IN_FLIGHT + 2);
    let mut txs = Vec::with_capacity(writers);
    let mut chunks = Vec::with_capacity(writers);
    let mut frees = Vec::with_capacity(writers);
    let mut workers = Vec::with_capacity(writers);
    for _ in 0..writers {
        let (tx, rx) = sync_channel::<Vec<Item<T>>>(depth);
        // Written chunks wait for the assembler in a short queue: it only
        // copies them on, and each is a batch's whole CSV text.
        let (chunk_tx, chunk_rx) = sync_channel::<Result<Chunk, NormalizeError>>(CHUNKS_AHEAD);
        let (free_tx, free_rx) = sync_channel::<Chunk>(CHUNKS_AHEAD + 1);
        txs.push(tx);
        chunks.push(chunk_rx);
        frees.push(free_tx);
        workers.push((
            rx,
            chunk_tx,
            free_rx,
            back_tx.clone(),
            sink.fork(Chunk::default()),
        ));
    }
    drop(back_tx);
    std::thread::scope(|s| {
        let handles: Vec<_> = workers
            .into_iter()
            .enumerate()
            .map(|(i, (rx, chunk_tx, free_rx, back_tx, mut worker))| {
                std::thread::Builder::new()
                    .name(format!("ferry-rows-{i}"))
                    .spawn_scoped(s, move || {
                        for batch in rx {
                            let written = write_batch(&batch, &mut worker);
                            let _ = back_tx.try_send(batch);
                            let fresh = free_rx.try_recv().unwrap_or_default();
                            let chunk = worker.swap_out(fresh);
                            let failed = written.is_err();
                            if chunk_tx.send(written.map(|()| chunk)).is_err() || failed {
                                break;
                            }
                        }
                        worker
                    })
                    .expect("spawning a row writer thread")
            })
            .collect();
        // The assembler: chunk k comes from writer k mod n; a writer with
        // nothing more to send has had every batch it was given.
        let assembler = std::thread::Builder::new()
            .name("ferry-rows".into())
            .spawn_scoped(s, move || -> Result<RowSink<'j, W>, NormalizeError> {
                for k in (0..writers).cycle() {
                    match chunks[k].recv() {
                        Ok(Ok(mut chunk)) => {
                            sink.take_chunk(&mut chunk)?;
                            let _ = frees[k].try_send(chunk);
                        }
                        Ok(Err(e)) => return Err(e),
                        Err(_) => break,
                    }
                }
                Ok(sink)
            })
            .expect("spawning the row assembler thread");
        let feed = Feed::new(Writer::Thread {
            txs,
            next: 0,
            back: back_rx,
        });
        let decoded = decode_all(decode, feed, path);
        let assembled = joined(assembler);
        let finished: Vec<RowSink<'j, Chunk>> = handles.into_iter().map(joined).collect();
        let written = assembled.and_then(|mut sink| {
            for worker in finished {
                sink.absorb(worker);
            }
            sink.settle();
            sink.finish()
        });
        outcome(decoded, written)
    })
}

/// [`run`] on one thread: each full batch is written before decoding
/// goes on.
fn run_here<'j, W, T, F>(
    mut sink: RowSink<'j, W>,
    path: &str,
    decode: F,
) -> Result<NormalizeStats, NormalizeError>
where
    W: Output + Send,
    T: Record,
    F: FnOnce(&mut Feed<'_, T>) -> Result<(), NormalizeError>,
{
    let mut failure = None;
    let decoded = {
        let mut write = |batch: &[Item<T>]| {
            write_batch(batch, &mut sink).map_err(|e| {
                failure = Some(e);
                Stopped
            })
        };
        let mut feed = Feed::new(Writer::Inline(&mut write));
        decode(&mut feed).and_then(|()| feed.send().map_err(|Stopped| stopped(path)))
    };
    if let Some(e) = failure {
        return Err(e);
    }
    decoded?;
    sink.finish()
}

/// The error a decoder returns when the writer has stopped (replaced by
/// the writer's own error in [`run`]).
pub fn stopped(path: &str) -> NormalizeError {
    NormalizeError::Write {
        path: path.to_string(),
        source: std::io::Error::other("the row writer stopped"),
    }
}

//! Gzip output on a thread of its own, so that parsing and compression use
//! both cores: the writer hands 1 MiB blocks to a compressor thread through
//! a bounded channel (memory stays at a few blocks).
//!
//! On a host with more cores, blocks are compressed side by side
//! ([`ParallelGzip::with_threads`]) into one ordinary gzip member, as
//! pigz does: each block is raw deflate primed with the 32 KiB before it
//! and ended on a byte boundary (a sync flush), the last one ends the
//! stream, and the blocks' CRC-32s are combined for the trailer. Any gzip
//! reader (COPY's included) sees one stream; only the compressed bytes
//! differ from a serial run's, by a few bytes per block.

use std::io::{self, Write};
use std::sync::mpsc;
use std::thread;

const BLOCK: usize = 1 << 20;
const IN_FLIGHT: usize = 8;

/// A `Write` that gzips on another thread into `W`. The thread starts with
/// the first full block: an output smaller than one block (a small file)
/// is compressed on the calling thread when it finishes, without a thread.
pub struct ParallelGzip<W: Write + Send + 'static> {
    buf: Vec<u8>,
    level: u32,
    inner: Option<W>,
    tx: Option<mpsc::SyncSender<Vec<u8>>>,
    worker: Option<thread::JoinHandle<io::Result<W>>>,
    /// More than one: blocks compressed side by side.
    threads: usize,
    pool: Option<Box<Pool<W>>>,
}

/// Deflate's window: what a block is primed with from the one before.
const WINDOW: usize = 32 * 1024;

/// One block for a compressing thread: its place, its bytes, the window
/// before it, and whether it ends the stream.
struct Block {
    seq: u64,
    data: Vec<u8>,
    window: Vec<u8>,
    last: bool,
}

/// A block compressed: its place, its raw deflate and its CRC-32.
type Packed = (u64, io::Result<Vec<u8>>, flate2::Crc);

/// The compressing threads and the thread that writes their blocks in
/// order.
struct Pool<W> {
    jobs: Option<mpsc::SyncSender<Block>>,
    workers: Vec<thread::JoinHandle<()>>,
    writer: thread::JoinHandle<io::Result<W>>,
    seq: u64,
    window: Vec<u8>,
}

/// Raw deflate of one block, primed with `window`, ended by a sync flush
/// (or, for the last block, the stream's end).
fn deflate_block(level: u32, b: &Block) -> io::Result<Vec<u8>> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    let mut c = Compress::new(Compression::new(level), false);
    if !b.window.is_empty() {
        c.set_dictionary(&b.window).map_err(io::Error::other)?;
    }
    let flush = if b.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(b.data.len() / 2 + 1024);
    loop {
        let done = c.total_in() as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let status = c
            .compress_vec(&b.data[done..], &mut out, flush)
            .map_err(io::Error::other)?;
        let finished = match status {
            Status::StreamEnd => true,
            // A sync flush is complete once all input is taken and the
            // output was not filled to the brim.
            Status::Ok | Status::BufError => {
                !b.last && c.total_in() as usize == b.data.len() && out.len() < out.capacity()
            }
        };
        if finished {
            return Ok(out);
        }
    }
}

impl<W: Write + Send + 'static> Pool<W> {
    fn start(mut inner: W, level: u32, threads: usize) -> io::Result<Self> {
        let (jobs, job_rx) = mpsc::sync_channel::<Block>(threads);
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::sync_channel::<Packed>(threads * 2 + 2);
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = job_rx.clone();
            let tx = done_tx.clone();
            workers.push(
                thread::Builder::new()
                    .name(format!("ferry-gzip-{i}"))
                    .spawn(move || {
                        loop {
                            let next = rx.lock().map(|r| r.recv());
                            let Ok(Ok(block)) = next else { return };
                            let mut crc = flate2::Crc::new();
                            crc.update(&block.data);
                            let packed = deflate_block(level, &block);
                            if tx.send((block.seq, packed, crc)).is_err() {
                                return;
                            }
                        }
                    })?,
            );
        }
        drop(done_tx);
        let writer = thread::Builder::new().name("ferry-gzip-out".into()).spawn(
            move || -> io::Result<W> {
                // A gzip header: deflate, no name, no time, unknown OS.
                inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
                let mut crc = flate2::Crc::new();
                let mut waiting = std::collections::BTreeMap::new();
                let mut next = 0u64;
                for (seq, packed, block_crc) in done_rx {
                    waiting.insert(seq, (packed, block_crc));
                    while let Some((packed, block_crc)) = waiting.remove(&next) {
                        inner.write_all(&packed?)?;
                        crc.combine(&block_crc);
                        next += 1;
                    }
                }
                if !waiting.is_empty() {
                    return Err(io::Error::other("a gzip block was lost"));
                }
                inner.write_all(&crc.sum().to_le_bytes())?;
                inner.write_all(&crc.amount().to_le_bytes())?;
                inner.flush()?;
                Ok(inner)
            },
        )?;
        Ok(Pool {
            jobs: Some(jobs),
            workers,
            writer,
            seq: 0,
            window: Vec::new(),
        })
    }

    /// Queues `data` as the next block (waiting while all threads are
    /// busy).
    fn send(&mut self, data: Vec<u8>, last: bool) -> io::Result<()> {
        let window = std::mem::replace(
            &mut self.window,
            data[data.len().saturating_sub(WINDOW)..].to_vec(),
        );
        let block = Block {
            seq: self.seq,
            data,
            window,
            last,
        };
        self.seq += 1;
        match &self.jobs {
            Some(jobs) if jobs.send(block).is_ok() => Ok(()),
            _ => Err(io::Error::other("the gzip threads stopped")),
        }
    }

    /// Sends the last block and waits for everything to be written.
    fn finish(mut self, rest: Vec<u8>) -> io::Result<W> {
        let sent = self.send(rest, true);
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let written = self
            .writer
            .join()
            .map_err(|_| io::Error::other("the gzip writer thread panicked"))?;
        // A write error says more than the stopped queue it caused.
        let inner = written?;
        sent?;
        Ok(inner)
    }
}

impl<W: Write + Send + 'static> ParallelGzip<W> {
    /// Compresses into `inner` at `level` (0–9; 1 is fast, the default).
    pub fn new(inner: W, level: u32) -> Self {
        Self::with_threads(inner, level, 1)
    }

    /// Like [`new`](Self::new), compressing on `threads` threads side by
    /// side when more than one (see the module's documentation).
    pub fn with_threads(inner: W, level: u32, threads: usize) -> Self {
        ParallelGzip {
            buf: Vec::new(),
            level,
            inner: Some(inner),
            tx: None,
            worker: None,
            threads: threads.max(1),
            pool: None,
        }
    }

    /// Starts the compressor thread (on the first full block).
    fn start(&mut self) -> io::Result<()> {
        let inner = self
            .inner
            .take()
            .ok_or_else(|| io::Error::other("the gzip stream was already finished"))?;
        let level = self.level;
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
        let worker =
            thread::Builder::new()
                .name("ferry-gzip".into())
                .spawn(move || -> io::Result<W> {
                    let mut gz =
                        flate2::write::GzEncoder::new(inner, flate2::Compression::new(level));
                    for block in rx {
                        gz.write_all(&block)?;
                    }
                    let mut inner = gz.finish()?;
                    inner.flush()?;
                    Ok(inner)
                })?;
        self.tx = Some(tx);
        self.worker = Some(worker);
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.threads > 1 {
            if self.pool.is_none() {
                let inner = self
                    .inner
                    .take()
                    .ok_or_else(|| io::Error::other("the gzip stream was already finished"))?;
                self.pool = Some(Box::new(Pool::start(inner, self.level, self.threads)?));
            }
            let block = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
            let pool = self.pool.as_mut().expect("started");
            if let Err(e) = pool.send(block, false) {
                // The writer stopped: its own error says why.
                let pool = self.pool.take().expect("started");
                return Err(pool.finish(Vec::new()).err().unwrap_or(e));
            }
            return Ok(());
        }
        if self.tx.is_none() {
            self.start()?;
        }
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        let tx = self.tx.as_ref().expect("started");
        if tx.send(block).is_err() {
            // The compressor stopped: its own error says why.
            return Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("the gzip thread stopped")));
        }
        Ok(())
    }

    fn join(&mut self) -> io::Result<W> {
        self.tx.take();
        match self.worker.take() {
            Some(w) => w
                .join()
                .map_err(|_| io::Error::other("the gzip thread panicked"))?,
            None => Err(io::Error::other("the gzip stream was already finished")),
        }
    }

    /// Compresses what is left, ends the gzip stream and returns `W`.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some(pool) = self.pool.take() {
            let rest = std::mem::take(&mut self.buf);
            return pool.finish(rest);
        }
        if let Some(inner) = self.inner.take() {
            // Never started: everything is in `buf`; compress it here.
            let mut gz = flate2::write::GzEncoder::new(inner, flate2::Compression::new(self.level));
            gz.write_all(&self.buf)?;
            let mut inner = gz.finish()?;
            inner.flush()?;
            return Ok(inner);
        }
        self.send()?;
        self.join()
    }
}

impl<W: Write + Send + 'static> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= BLOCK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for ParallelGzip<W> {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // reading a small test stream whole
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn round_trips_large_and_small_inputs() {
        for threads in [1, 3] {
            for size in [0usize, 10, BLOCK, BLOCK * 3 + 17] {
                let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
                let mut w = ParallelGzip::with_threads(Vec::new(), 1, threads);
                for chunk in data.chunks(7919) {
                    w.write_all(chunk).unwrap();
                }
                let packed = w.finish().unwrap();
                // One gzip member, whatever the threads: a reader that
                // stops after the first member still gets every byte.
                let mut back = Vec::new();
                flate2::read::GzDecoder::new(packed.as_slice())
                    .read_to_end(&mut back)
                    .unwrap();
                assert!(back == data, "size {size}, {threads} threads");
            }
        }
    }

    #[test]
    fn blocks_compressed_side_by_side_are_about_as_small_as_one_stream() {
        // Text with repeats across block edges: the window each block is
        // primed with keeps the ratio.
        let line =
            b"ev-0000000001,task-0670487,created,open,user-48598,linear,2026-03-08 07:08:47+00\n";
        let data: Vec<u8> = line.iter().copied().cycle().take(BLOCK * 4 + 999).collect();
        let one = {
            let mut w = ParallelGzip::new(Vec::new(), 1);
            w.write_all(&data).unwrap();
            w.finish().unwrap()
        };
        let four = {
            let mut w = ParallelGzip::with_threads(Vec::new(), 1, 4);
            w.write_all(&data).unwrap();
            w.finish().unwrap()
        };
        assert!(
            four.len() < one.len() * 11 / 10 + 200,
            "{} vs {}",
            four.len(),
            one.len()
        );
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(four.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data);
    }
}

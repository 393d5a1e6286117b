//! Gzip output on a thread of its own, so that parsing and compression use
//! both cores: the writer hands 1 MiB blocks to a compressor thread through
//! a bounded channel (memory stays at a few blocks).

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
}

impl<W: Write + Send + 'static> ParallelGzip<W> {
    /// Compresses into `inner` at `level` (0–9; 1 is fast, the default).
    pub fn new(inner: W, level: u32) -> Self {
        ParallelGzip {
            buf: Vec::new(),
            level,
            inner: Some(inner),
            tx: None,
            worker: None,
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
        for size in [0usize, 10, BLOCK * 3 + 17] {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let mut w = ParallelGzip::new(Vec::new(), 1);
            for chunk in data.chunks(7919) {
                w.write_all(chunk).unwrap();
            }
            let packed = w.finish().unwrap();
            let mut back = Vec::new();
            flate2::read::MultiGzDecoder::new(packed.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == data, "size {size}");
        }
    }
}

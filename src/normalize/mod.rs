//! Normalize: input bytes → mapped, type-checked rows → gzip CSV, plus error
//! rows for the records that do not fit.
//!
//! Pure and synchronous: it reads from a [`Read`] and writes to an
//! [`Output`], so the pipeline runs it on a blocking thread between the
//! source stream and the staging files. Inside, the decoder runs on the
//! calling thread and hands owned records, in batches that are each one
//! contiguous buffer, to a writer thread that maps, checks and writes them
//! (`handoff`); the staged output compresses on a third ([`gzip`]) and
//! the input's SHA-256 is taken on a fourth. A small input is done on the
//! calling thread. Memory is bounded by the largest record and a few
//! batches, never by the file.
//!
//! The staged CSV is RFC 4180: fields are quoted when they need it, `""` is
//! the empty string and an unquoted `\N` is NULL (a value that is literally
//! `\N` is written quoted), so NULL and empty stay distinct on both
//! warehouses (`NULL AS '\N'`).

mod csv_in;
mod csv_out;
mod csv_records;
pub mod drift;
mod encoding;
pub mod gzip;
mod handoff;
pub mod infer;
mod json_in;
pub mod output;
mod parquet_flat;
mod parquet_in;
mod parquet_out;
pub mod sink;
mod xml_in;

pub use csv_out::{NULL_MARKER, write_record, write_row};
pub use output::{Blob, LocalStaged, Output, RawCopy, StagedParts, Tee};
pub use parquet_flat::staged_as_csv;

use crate::config::{Format, Job, Limits, TextEncoding};
use sha2::{Digest, Sha256};
use std::io::{self, BufRead, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Error rows kept in memory per file; the count goes on past it.
pub const MAX_KEPT_ERRORS: usize = 1000;
/// Raw lines and values are capped at this many bytes in error rows.
pub const RAW_CAP: usize = 1024;

/// A record that was not written, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Physical line the record starts on (1-based; embedded newlines count).
    pub line: u64,
    /// Target column, if the problem is one value.
    pub column: Option<String>,
    /// Redshift-style error code.
    pub code: i32,
    /// What is wrong, for a person.
    pub reason: String,
    /// The record as read (capped at [`RAW_CAP`] bytes).
    pub raw_line: String,
    /// The offending value (capped).
    pub raw_value: Option<String>,
}

impl RowError {
    /// Where and what, for a message: `line 3 column duration_ms: reason`.
    pub fn describe(&self) -> String {
        match &self.column {
            Some(c) => {
                // Reasons from coercion already start with the column.
                let reason = self
                    .reason
                    .strip_prefix(&format!("column {c}: "))
                    .unwrap_or(&self.reason);
                format!("line {} column {c}: {reason}", self.line)
            }
            None => format!("line {}: {}", self.line, self.reason),
        }
    }

    /// A record rejected before mapping (ragged, unparsable, not UTF-8).
    pub fn unmapped(line: u64, code: i32, reason: String, raw: &str) -> RowError {
        RowError {
            line,
            column: None,
            code,
            reason,
            raw_line: cap(raw),
            raw_value: None,
        }
    }
}

/// What one file produced.
#[derive(Debug, Clone, Default)]
pub struct NormalizeStats {
    /// Rows written.
    pub rows: u64,
    /// Records rejected.
    pub rejected: u64,
    /// The first [`MAX_KEPT_ERRORS`] error rows.
    pub errors: Vec<RowError>,
    /// Raw input bytes read.
    pub input_bytes: u64,
    /// SHA-256 of the raw input, hex.
    pub sha256: String,
    /// How the file's fields and values differ from the mapping.
    pub drift: drift::Drift,
}

/// Facts about the file that derived columns use.
#[derive(Debug, Clone)]
pub struct FileContext {
    /// Source path.
    pub path: String,
    /// Ingest time, already in timestamp text form.
    pub ingest_time: String,
    /// The input's size, when the listing said: a small input is
    /// normalized on one thread.
    pub size_hint: Option<u64>,
}

/// Inputs up to this size are normalized on one thread.
pub const ONE_THREAD_UP_TO: u64 = 1 << 20;

impl FileContext {
    /// Whether the input is small enough to normalize on one thread.
    pub fn one_thread(&self) -> bool {
        self.size_hint.is_some_and(|n| n <= ONE_THREAD_UP_TO)
    }
}

/// A failure of the whole file.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    /// Reading the input failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: io::Error,
    },
    /// Writing the staged output failed.
    #[error("cannot write staged output for {path}: {source}")]
    Write {
        /// File.
        path: String,
        /// Cause.
        source: io::Error,
    },
    /// A safety limit was exceeded (record size, decompressed size or ratio).
    #[error("{path}: {what}")]
    Limit {
        /// File.
        path: String,
        /// Which limit, with the numbers.
        what: String,
    },
    /// The file is not in the job's format (e.g. malformed JSON document).
    #[error("{path}: {reason}")]
    Format {
        /// File.
        path: String,
        /// What is wrong, with line and column where known.
        reason: String,
    },
    /// The file drifted from the mapping where the contract freezes it.
    #[error("{path}: {reason}")]
    Drift {
        /// File.
        path: String,
        /// What changed, where, and how to accept it.
        reason: String,
    },
    /// A mapped field is not in the file's header.
    #[error(
        "{path}: field {field:?} (for column {column}) is not in the header; the header has: {header}"
    )]
    MissingField {
        /// File.
        path: String,
        /// Field name.
        field: String,
        /// Target column.
        column: String,
        /// Header as read.
        header: String,
    },
}

/// Counts and hashes the raw bytes that pass through, and remembers
/// whether reading the source itself failed: a decoder's error after that
/// is the network's fault (retry), any other is the bytes' (fail the file).
struct HashingReader<R> {
    inner: R,
    hasher: InputHash,
    bytes: Arc<AtomicU64>,
    /// The source's own read error, if one happened.
    failure: Option<(io::ErrorKind, String)>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                self.failure = Some((e.kind(), e.to_string()));
                return Err(e);
            }
        };
        self.hasher.update(&buf[..n]);
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// SHA-256 of the input, on the reading thread for a small input, else
/// on a thread of its own (fed copies of what was read, from a pool of
/// buffers: a copy costs a tenth of hashing it), so that the decoder's
/// thread, the busiest, does not also hash.
enum InputHash {
    Here(Sha256),
    Thread {
        tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
        pool: std::sync::mpsc::Receiver<Vec<u8>>,
        worker: Option<std::thread::JoinHandle<Sha256>>,
    },
}

/// Chunks queued for the hashing thread.
const HASH_IN_FLIGHT: usize = 8;

impl InputHash {
    fn new(threaded: bool) -> InputHash {
        if !threaded {
            return InputHash::Here(Sha256::new());
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASH_IN_FLIGHT);
        let (back, pool) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASH_IN_FLIGHT + 2);
        let spawned = std::thread::Builder::new()
            .name("ferry-sha256".into())
            .spawn(move || {
                let mut h = Sha256::new();
                for chunk in rx {
                    h.update(&chunk);
                    let _ = back.try_send(chunk);
                }
                h
            });
        match spawned {
            Ok(worker) => InputHash::Thread {
                tx: Some(tx),
                pool,
                worker: Some(worker),
            },
            // No thread to be had: hash here.
            Err(_) => InputHash::Here(Sha256::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            InputHash::Here(h) => h.update(data),
            InputHash::Thread { tx, pool, .. } => {
                if data.is_empty() {
                    return;
                }
                let mut chunk = pool.try_recv().unwrap_or_default();
                chunk.clear();
                chunk.extend_from_slice(data);
                if let Some(t) = tx {
                    // The thread only stops when `tx` is dropped.
                    let _ = t.send(chunk);
                }
            }
        }
    }

    /// The digest of everything passed to [`update`](Self::update), hex.
    fn finish(self) -> String {
        let h = match self {
            InputHash::Here(h) => h,
            InputHash::Thread {
                mut tx, mut worker, ..
            } => {
                tx.take();
                match worker.take().map(|w| w.join()) {
                    Some(Ok(h)) => h,
                    Some(Err(panic)) => std::panic::resume_unwind(panic),
                    None => Sha256::new(),
                }
            }
        };
        hex::encode(h.finalize())
    }
}

/// Caps a value at [`RAW_CAP`] bytes (on a character boundary).
fn cap(s: &str) -> String {
    if s.len() <= RAW_CAP {
        return s.to_string();
    }
    let mut end = RAW_CAP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Keeps one record from growing without bound: decoders report where each
/// record ended; the reader under them refuses to deliver more than
/// `max_record_bytes` (plus a buffer's worth of read-ahead) past that point.
pub struct RecordGuard {
    delivered: AtomicU64,
    last_end: AtomicU64,
    max: u64,
    tripped: AtomicBool,
}

/// Read-ahead a decoder may hold beyond the record it is parsing.
const READ_AHEAD: u64 = 512 * 1024;

impl RecordGuard {
    fn new(max: u64) -> Self {
        RecordGuard {
            delivered: AtomicU64::new(0),
            last_end: AtomicU64::new(0),
            max,
            tripped: AtomicBool::new(false),
        }
    }

    /// A record ended at byte `pos` of the decoded stream.
    pub fn record_ended(&self, pos: u64) {
        self.last_end.store(pos, Ordering::Relaxed);
    }

    /// A record ended somewhere in what has been delivered so far.
    pub fn record_ended_here(&self) {
        self.last_end
            .store(self.delivered.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

struct Guarded<'g, R> {
    inner: R,
    guard: &'g RecordGuard,
}

impl<R: Read> Read for Guarded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let g = self.guard;
        let since = g
            .delivered
            .load(Ordering::Relaxed)
            .saturating_sub(g.last_end.load(Ordering::Relaxed));
        if since > g.max + READ_AHEAD {
            g.tripped.store(true, Ordering::Relaxed);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "record too large",
            ));
        }
        let n = self.inner.read(buf)?;
        g.delivered.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A gzip stream with a cap on its decompressed size and ratio (bombs).
struct Inflate<R: BufRead> {
    inner: flate2::bufread::MultiGzDecoder<R>,
    out: u64,
    compressed: Arc<AtomicU64>,
    limits: Limits,
    tripped: Option<String>,
    /// The decoder's last error (truncated or corrupt data, or the
    /// source's own error passed through: [`HashingReader`] tells which).
    failed: Option<String>,
}

impl<R: BufRead> Read for Inflate<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.failed = Some(e.to_string());
            }
        })?;
        self.out += n as u64;
        let input = self.compressed.load(Ordering::Relaxed).max(1);
        let what = if self.out > self.limits.max_decompressed_bytes {
            Some(format!(
                "decompressed size passed max_decompressed_bytes ({} bytes)",
                self.limits.max_decompressed_bytes
            ))
        } else if self.out > 1 << 20 && self.out / input > self.limits.max_compression_ratio {
            Some(format!(
                "compression ratio passed max_compression_ratio ({}:1): {} bytes from {input}; a gzip bomb?",
                self.limits.max_compression_ratio, self.out
            ))
        } else {
            None
        };
        if let Some(w) = what {
            self.tripped = Some(w);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "decompression limit",
            ));
        }
        Ok(n)
    }
}

/// Reads `input` as the job's format and writes the staged CSV to `output`:
/// no header, the job's columns in order, then the source path and the
/// record's line number (`ferry_file`, `ferry_line`). Gzip input is
/// recognized by its magic bytes, whatever the file is called.
pub fn normalize<R: Read, W: Output>(
    job: &Job,
    ctx: &FileContext,
    input: R,
    output: W,
) -> Result<NormalizeStats, NormalizeError> {
    let counted = Arc::new(AtomicU64::new(0));
    let mut hashing = HashingReader {
        inner: input,
        hasher: InputHash::new(!ctx.one_thread()),
        bytes: counted.clone(),
        failure: None,
    };
    let guard = RecordGuard::new(job.limits.max_record_bytes);
    let read_err = |source| NormalizeError::Read {
        path: ctx.path.clone(),
        source,
    };
    let mut gzip_trip: Option<String> = None;
    let mut gzip_failed: Option<(String, u64)> = None;
    let result = {
        let mut buffered = io::BufReader::with_capacity(256 * 1024, &mut hashing);
        let is_gzip = buffered
            .fill_buf()
            .map_err(read_err)?
            .starts_with(&[0x1f, 0x8b]);
        if is_gzip {
            let mut inflate = Inflate {
                inner: flate2::bufread::MultiGzDecoder::new(buffered),
                out: 0,
                compressed: counted.clone(),
                limits: job.limits.clone(),
                tripped: None,
                failed: None,
            };
            let r = decode(job, ctx, &mut inflate, &guard, output);
            gzip_trip = inflate.tripped.take();
            gzip_failed = inflate.failed.take().map(|e| (e, inflate.out));
            r
        } else {
            decode(job, ctx, &mut buffered, &guard, output)
        }
    };
    let mut stats = match result {
        Ok(s) => s,
        Err(e) => {
            // The source failed under the decoder: whatever the decoder
            // made of it, this is a network error, worth a retry.
            if let Some((kind, text)) = hashing.failure.take() {
                return Err(NormalizeError::Read {
                    path: ctx.path.clone(),
                    source: io::Error::new(kind, text),
                });
            }
            if let Some(what) = gzip_trip {
                return Err(NormalizeError::Limit {
                    path: ctx.path.clone(),
                    what,
                });
            }
            if guard.tripped.load(Ordering::Relaxed) {
                return Err(NormalizeError::Limit {
                    path: ctx.path.clone(),
                    what: format!(
                        "a record near byte {} is larger than max_record_bytes ({} bytes)",
                        guard.last_end.load(Ordering::Relaxed),
                        job.limits.max_record_bytes
                    ),
                });
            }
            if let Some((why, inflated)) = gzip_failed {
                return Err(NormalizeError::Format {
                    path: ctx.path.clone(),
                    reason: format!(
                        "the gzip data is truncated or corrupt after {} compressed bytes ({inflated} bytes decompressed): {why}; the file must be uploaded again",
                        counted.load(Ordering::Relaxed)
                    ),
                });
            }
            // Every other read error came from the bytes themselves.
            return Err(match e {
                NormalizeError::Read { path, source } => NormalizeError::Format {
                    path,
                    reason: source.to_string(),
                },
                other => other,
            });
        }
    };
    // Drain whatever the decoder left unread so the hash covers the file.
    io::copy(&mut hashing, &mut io::sink()).map_err(read_err)?;
    stats.input_bytes = counted.load(Ordering::Relaxed);
    stats.sha256 = hashing.hasher.finish();
    Ok(stats)
}

/// What [`normalize_file`] did.
#[derive(Debug)]
pub struct FileRun {
    /// Counts and errors.
    pub stats: NormalizeStats,
    /// Wall time.
    pub seconds: f64,
    /// Where every rejected record went, if any was rejected.
    pub rejects: Option<std::path::PathBuf>,
}

/// The rejects file beside `out`: `x.csv.gz` → `x.rejects.csv.gz`.
pub fn rejects_path(out: &std::path::Path) -> std::path::PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".csv.gz")
        .or_else(|| name.strip_suffix(".gz"))
        .or_else(|| name.strip_suffix(".parquet"))
        .unwrap_or(&name);
    out.with_file_name(format!("{stem}.rejects.csv.gz"))
}

/// Normalizes a local file into one gzip CSV at `out` (compressing on a
/// second thread), or one Parquet file when `out` ends in `.parquet`
/// (the staged columns typed as Redshift's `COPY … FORMAT AS PARQUET`
/// wants them), and every rejected record into [`rejects_path`]; for
/// `ferry normalize` and the bench.
pub fn normalize_file(
    job: &Job,
    input: &std::path::Path,
    out: &std::path::Path,
) -> crate::Result<FileRun> {
    let started = std::time::Instant::now();
    for l in job.lookups.iter().filter(|l| !l.is_loaded()) {
        l.load_file().map_err(|e| {
            crate::Error::permanent(format!(
                "job {}: cannot load lookup {} from {}: {e}",
                job.name, l.name, l.location
            ))
        })?;
    }
    let file = std::fs::File::open(input).map_err(|e| {
        crate::Error::permanent(format!("cannot open {}", input.display())).with_source(e)
    })?;
    let ctx = FileContext {
        path: input.display().to_string(),
        ingest_time: chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string(),
        size_hint: file.metadata().ok().map(|m| m.len()),
    };
    let write_err = |what: &str, path: &std::path::Path| {
        let what = format!("cannot write {what} {}", path.display());
        move |e: io::Error| crate::Error::permanent(what).with_source(e)
    };
    // One part (no size limit), so the output is a single file.
    let mut staged = StagedParts::new(u64::MAX, job.gzip_level)
        .map_err(write_err("a temporary folder for", out))?;
    staged.gzip_threads(job.gzip_threads);
    let input = io::BufReader::with_capacity(256 * 1024, file);
    let as_parquet = out.extension().is_some_and(|e| e == "parquet");
    let columns = || job.columns.iter().map(|c| (c.name.as_str(), c.column_type));
    if as_parquet {
        staged.as_parquet(columns());
    }
    let stats = normalize(job, &ctx, input, &mut staged)
        .map_err(|e| crate::Error::permanent(e.to_string()))?;
    let local = staged.finish().map_err(write_err("the output", out))?;
    match local.parts.first() {
        Some(part) => part.save(out).map_err(write_err("the output", out))?,
        // No rows: an empty Parquet file or gzip stream, so the output is
        // still valid.
        None if as_parquet => {
            parquet_out::ParquetStaged::new(
                std::fs::File::create(out).map_err(write_err("the output", out))?,
                columns(),
            )
            .and_then(|p| p.finish())
            .map_err(write_err("the output", out))?;
        }
        None => {
            gzip::ParallelGzip::new(
                std::fs::File::create(out).map_err(write_err("the output", out))?,
                job.gzip_level,
            )
            .finish()
            .map_err(write_err("the output", out))?;
        }
    }
    let rejects = match &local.rejects {
        Some(r) => {
            let to = rejects_path(out);
            r.save(&to).map_err(write_err("the rejects", &to))?;
            Some(to)
        }
        None => None,
    };
    Ok(FileRun {
        stats,
        seconds: started.elapsed().as_secs_f64(),
        rejects,
    })
}

fn decode<W: Output>(
    job: &Job,
    ctx: &FileContext,
    input: &mut dyn Read,
    guard: &RecordGuard,
    output: W,
) -> Result<NormalizeStats, NormalizeError> {
    match &job.format {
        // The CSV reader bounds its records itself (and skips one too
        // large), so it needs no guard.
        Format::Csv(fmt) => match fmt.encoding {
            TextEncoding::Utf8 => csv_in::decode(job, fmt, ctx, input, output),
            other => csv_in::decode(job, fmt, ctx, encoding::ToUtf8::new(input, other), output),
        },
        Format::Ndjson => {
            json_in::decode_ndjson(job, ctx, input, job.limits.max_record_bytes, output)
        }
        Format::Json { records_path } => {
            let guarded = Guarded {
                inner: input,
                guard,
            };
            json_in::decode_document(job, ctx, guarded, records_path, guard, output)
        }
        Format::Parquet => parquet_in::decode(job, ctx, input, output),
        Format::Xml { record_path } => {
            let guarded = io::BufReader::with_capacity(
                64 * 1024,
                Guarded {
                    inner: input,
                    guard,
                },
            );
            xml_in::decode(
                job,
                ctx,
                guarded,
                record_path,
                job.limits.max_xml_depth,
                guard,
                output,
            )
        }
    }
}

#[cfg(test)]
mod spread_tests;
#[cfg(test)]
mod tests;

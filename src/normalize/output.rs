//! Where normalized rows go.
//!
//! Decoders write through a [`RowSink`](super::sink::RowSink) into an
//! [`Output`]: a `Write` for the staged CSV that is also told where each
//! record ends (the only places the CSV may be cut) and about every
//! rejected record. [`StagedParts`] is the output the pipeline uses: gzip
//! parts of bounded size plus a gzip CSV of all rejected records, on local
//! disk, so memory stays bounded however large the file is.

use super::csv_out::push_row;
use super::gzip::ParallelGzip;
use super::parquet_out::ParquetStaged;
use super::{RowError, write_record};
use crate::config::StageFormat;
use crate::schema::ColumnType;
use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

/// The staged CSV stream, with record boundaries and rejects.
pub trait Output: Write + Send {
    /// A whole record has been written; the output may start a new part.
    fn record_end(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// A record was rejected (every one, not only the first few kept in
    /// memory).
    fn rejected(&mut self, _error: &RowError) -> io::Result<()> {
        Ok(())
    }

    /// Whether rows may come as staged CSV text written to it (so several
    /// threads can write them side by side); not when it stores values.
    fn takes_csv(&self) -> bool {
        true
    }

    /// Takes one staged row: the job's columns' canonical values, then the
    /// source file and line. The default writes it as a staged CSV line
    /// (built in `scratch`; a column marked `plain` never needs quotes)
    /// and ends the record; an output that stores values (Parquet) takes
    /// them as they are.
    fn row(
        &mut self,
        values: &[Option<Cow<'_, str>>],
        file: &str,
        line: &str,
        plain: &[bool],
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        csv_row(self, values, file, line, plain, scratch)
    }
}

/// Writes one staged row to `out` as a CSV line (built in `scratch`) and
/// ends the record: [`Output::row`]'s default.
fn csv_row<O: Output + ?Sized>(
    out: &mut O,
    values: &[Option<Cow<'_, str>>],
    file: &str,
    line: &str,
    plain: &[bool],
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    scratch.clear();
    push_row(
        scratch,
        values
            .iter()
            .zip(plain)
            .map(|(v, plain)| (v.as_deref(), *plain))
            .chain([(Some(file), false), (Some(line), true)]),
    );
    out.write_all(scratch)?;
    out.record_end()
}

impl Output for Vec<u8> {}

impl Output for io::Sink {}

impl<W: Write + Send + 'static> Output for ParallelGzip<W> {}

impl<O: Output + ?Sized> Output for &mut O {
    fn record_end(&mut self) -> io::Result<()> {
        (**self).record_end()
    }

    fn row(
        &mut self,
        values: &[Option<Cow<'_, str>>],
        file: &str,
        line: &str,
        plain: &[bool],
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        (**self).row(values, file, line, plain, scratch)
    }

    fn rejected(&mut self, error: &RowError) -> io::Result<()> {
        (**self).rejected(error)
    }

    fn takes_csv(&self) -> bool {
        (**self).takes_csv()
    }
}

/// Header of a rejects file.
pub const REJECTS_HEADER: [&str; 6] = ["line", "column", "code", "reason", "raw_value", "raw_line"];

/// The part being written.
enum Part {
    Gzip(ParallelGzip<SpillWriter>),
    Parquet(Box<ParquetStaged<SpillWriter>>),
}

/// A staged object waiting for its upload: in memory while the file's
/// outputs are small, in a file of the temporary folder beyond that.
#[derive(Debug)]
pub enum Blob {
    /// The bytes themselves.
    Memory(Vec<u8>),
    /// A file in the [`LocalStaged`] folder.
    File(PathBuf),
}

impl Blob {
    /// Writes the bytes to `to` (moves a file, copying across file systems).
    pub fn save(&self, to: &std::path::Path) -> io::Result<()> {
        match self {
            Blob::Memory(b) => std::fs::write(to, b),
            Blob::File(p) => {
                if std::fs::rename(p, to).is_ok() {
                    return Ok(());
                }
                std::fs::copy(p, to).map(|_| ())
            }
        }
    }
}

/// Bytes of one file's outputs (parts, rejects, raw copy) kept in memory
/// before they go to disk: a small file never touches the disk (a temp
/// folder per file cost more than its normalize), a large one spills after
/// the first few MiB, so memory stays bounded.
const MEMORY_BUDGET: usize = 4 << 20;

/// The temporary folder (made on first use) and what is left of the
/// memory budget, shared by one file's outputs.
#[derive(Debug)]
struct Spill {
    dir: std::sync::Mutex<Option<tempfile::TempDir>>,
    memory_left: std::sync::atomic::AtomicUsize,
}

impl Spill {
    fn new(budget: usize) -> Self {
        Spill {
            dir: std::sync::Mutex::new(None),
            memory_left: std::sync::atomic::AtomicUsize::new(budget),
        }
    }

    /// Takes `n` bytes of the memory budget, if that many are left.
    fn reserve(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.memory_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.memory_left
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// `name` in the temporary folder, creating the folder first.
    fn path(&self, name: &str) -> io::Result<PathBuf> {
        let mut dir = self
            .dir
            .lock()
            .map_err(|_| io::Error::other("spill lock"))?;
        if dir.is_none() {
            *dir = Some(tempfile::Builder::new().prefix("ferry-staged-").tempdir()?);
        }
        Ok(dir.as_ref().expect("just made").path().join(name))
    }

    fn into_dir(self) -> Option<tempfile::TempDir> {
        self.dir.into_inner().ok().flatten()
    }
}

/// A `Write` into memory that moves to a file of the [`Spill`] folder
/// once the budget runs out.
struct SpillWriter {
    name: String,
    spill: std::sync::Arc<Spill>,
    to: SpillTo,
}

enum SpillTo {
    Memory(Vec<u8>),
    File(BufWriter<File>, PathBuf),
}

impl SpillWriter {
    fn new(name: String, spill: std::sync::Arc<Spill>) -> io::Result<Self> {
        let mut w = SpillWriter {
            name,
            spill,
            to: SpillTo::Memory(Vec::new()),
        };
        // Once the budget is gone, later outputs go straight to disk.
        if w.spill
            .memory_left
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            w.spill_to_disk()?;
        }
        Ok(w)
    }

    fn spill_to_disk(&mut self) -> io::Result<()> {
        let path = self.spill.path(&self.name)?;
        let mut file = BufWriter::with_capacity(256 * 1024, File::create(&path)?);
        if let SpillTo::Memory(buf) = &self.to {
            file.write_all(buf)?;
            self.spill.release(buf.len());
        }
        self.to = SpillTo::File(file, path);
        Ok(())
    }

    fn finish(self) -> io::Result<Blob> {
        match self.to {
            SpillTo::Memory(buf) => Ok(Blob::Memory(buf)),
            SpillTo::File(mut file, path) => {
                file.flush()?;
                Ok(Blob::File(path))
            }
        }
    }
}

impl Write for SpillWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let SpillTo::Memory(buf) = &mut self.to {
            if self.spill.reserve(data.len()) {
                buf.extend_from_slice(data);
                return Ok(data.len());
            }
            self.spill_to_disk()?;
        }
        match &mut self.to {
            SpillTo::File(file, _) => file.write(data),
            SpillTo::Memory(_) => unreachable!("moved to disk above"),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.to {
            SpillTo::File(file, _) => file.flush(),
            SpillTo::Memory(_) => Ok(()),
        }
    }
}

/// Gzip CSV parts of at most about `max_part_bytes` of CSV each (cut after
/// the record that passes it), and a gzip CSV of rejected records; kept in
/// memory while they are small, then in a temporary folder that is removed
/// when the [`LocalStaged`] is dropped.
pub struct StagedParts {
    spill: std::sync::Arc<Spill>,
    max_part_bytes: u64,
    level: u32,
    /// Threads that compress each gzip part.
    gzip_threads: usize,
    /// Parquet parts of these staged columns instead of gzip CSV.
    parquet: Option<Vec<(String, ColumnType)>>,
    current: Option<Part>,
    in_part: u64,
    parts: Vec<Blob>,
    /// Parts begun so far (names the files of spilled parts).
    begun: usize,
    /// Where finished parts go at once, instead of waiting in `parts`.
    stream_to: Option<tokio::sync::mpsc::Sender<Blob>>,
    rejects: Option<flate2::write::GzEncoder<SpillWriter>>,
    raw: Option<RawCopy>,
}

/// What [`StagedParts`] produced.
#[derive(Debug)]
pub struct LocalStaged {
    /// The folder of the outputs that went to disk, if any did; dropping
    /// it removes the files.
    pub dir: Option<tempfile::TempDir>,
    /// The parts in order; none when no row was written.
    pub parts: Vec<Blob>,
    /// The rejects file, if any record was rejected.
    pub rejects: Option<Blob>,
    /// The copy of the raw input, if one was asked for.
    pub raw: Option<Blob>,
}

/// The byte-for-byte copy of a file's input (see [`StagedParts::raw_copy`]).
pub struct RawCopy(SpillWriter);

impl Write for RawCopy {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl StagedParts {
    /// Parts compressed at `level`, in memory up to a budget of a few MiB
    /// per file and in a temporary folder beyond.
    pub fn new(max_part_bytes: u64, level: u32) -> io::Result<Self> {
        Self::with_memory(max_part_bytes, level, MEMORY_BUDGET)
    }

    /// Like [`new`](Self::new) with a memory budget of `budget` bytes (0:
    /// everything on disk).
    pub fn with_memory(max_part_bytes: u64, level: u32, budget: usize) -> io::Result<Self> {
        Ok(StagedParts {
            spill: std::sync::Arc::new(Spill::new(budget)),
            max_part_bytes: max_part_bytes.max(1),
            level,
            gzip_threads: 1,
            parquet: None,
            current: None,
            in_part: 0,
            parts: Vec::new(),
            begun: 0,
            stream_to: None,
            rejects: None,
            raw: None,
        })
    }

    /// Compresses each part on `threads` threads side by side (see
    /// [`ParallelGzip::with_threads`]).
    pub fn gzip_threads(&mut self, threads: usize) {
        self.gzip_threads = threads.max(1);
    }

    /// Sends each part to `to` as soon as it is finished (to upload it
    /// while the next one is written), waiting when `to` is full; a closed
    /// `to` fails the write. [`LocalStaged::parts`] is then empty, and the
    /// folder of spilled parts lives until the [`LocalStaged`] is dropped.
    /// Call from a blocking thread.
    pub fn stream_parts(&mut self, to: tokio::sync::mpsc::Sender<Blob>) {
        self.stream_to = Some(to);
    }

    /// Parts as typed Parquet of the staged `columns` (the job's, by name
    /// and type) instead of gzip CSV; rows must then come as values
    /// ([`Output::row`]).
    pub fn as_parquet<'a>(&mut self, columns: impl IntoIterator<Item = (&'a str, ColumnType)>) {
        self.parquet = Some(
            columns
                .into_iter()
                .map(|(n, t)| (n.to_string(), t))
                .collect(),
        );
    }

    /// Where the next part goes (`part-NNNNN.{ext}`).
    fn next_part(&mut self, ext: &str) -> io::Result<SpillWriter> {
        let name = format!("part-{:05}.{ext}", self.begun);
        self.begun += 1;
        self.in_part = 0;
        SpillWriter::new(name, self.spill.clone())
    }

    /// The gzip CSV part being written, opened on first use.
    fn part(&mut self) -> io::Result<&mut ParallelGzip<SpillWriter>> {
        if self.current.is_none() {
            let sink = self.next_part(StageFormat::Csv.extension())?;
            self.current = Some(Part::Gzip(ParallelGzip::with_threads(
                sink,
                self.level,
                self.gzip_threads,
            )));
        }
        match self.current.as_mut() {
            Some(Part::Gzip(gz)) => Ok(gz),
            _ => Err(io::Error::other(
                "CSV bytes written to a Parquet staged output (a bug in ferry)",
            )),
        }
    }

    /// The Parquet part being written, opened on first use.
    fn parquet_part(&mut self) -> io::Result<&mut ParquetStaged<SpillWriter>> {
        if self.current.is_none() {
            let sink = self.next_part(StageFormat::Parquet.extension())?;
            let columns = self.parquet.as_deref().unwrap_or_default();
            self.current = Some(Part::Parquet(Box::new(ParquetStaged::new(
                sink,
                columns.iter().map(|(n, t)| (n.as_str(), *t)),
            )?)));
        }
        match self.current.as_mut() {
            Some(Part::Parquet(p)) => Ok(&mut **p),
            _ => Err(io::Error::other("a gzip part is open (a bug in ferry)")),
        }
    }

    fn close_part(&mut self) -> io::Result<()> {
        let part = match self.current.take() {
            Some(Part::Gzip(gz)) => gz.finish()?.finish()?,
            Some(Part::Parquet(p)) => p.finish()?.finish()?,
            None => return Ok(()),
        };
        match &self.stream_to {
            Some(to) => to
                .blocking_send(part)
                .map_err(|_| io::Error::other("the load stopped taking staged parts"))?,
            None => self.parts.push(part),
        }
        Ok(())
    }

    /// A writer for a byte-for-byte copy of the raw input (the `raw/`
    /// archive); hand it back with [`set_raw`](Self::set_raw) once the
    /// input is read, and it is returned in [`LocalStaged::raw`].
    pub fn raw_copy(&mut self) -> io::Result<RawCopy> {
        Ok(RawCopy(SpillWriter::new("raw".into(), self.spill.clone())?))
    }

    /// Keeps the finished raw copy.
    pub fn set_raw(&mut self, raw: RawCopy) {
        self.raw = Some(raw);
    }

    /// Ends the last part and the rejects file.
    pub fn finish(mut self) -> io::Result<LocalStaged> {
        self.close_part()?;
        let rejects = match self.rejects.take() {
            Some(gz) => Some(gz.finish()?.finish()?),
            None => None,
        };
        let raw = match self.raw.take() {
            Some(r) => Some(r.0.finish()?),
            None => None,
        };
        let parts = std::mem::take(&mut self.parts);
        self.stream_to.take();
        let spill = std::sync::Arc::try_unwrap(self.spill)
            .map_err(|_| io::Error::other("a staged output is still open"))?;
        Ok(LocalStaged {
            dir: spill.into_dir(),
            parts,
            rejects,
            raw,
        })
    }
}

/// Passes reads through and writes a copy of every byte read to `copy`.
pub struct Tee<R, W> {
    inner: R,
    copy: W,
}

impl<R, W: Write> Tee<R, W> {
    /// Copies what is read from `inner` into `copy`.
    pub fn new(inner: R, copy: W) -> Self {
        Tee { inner, copy }
    }

    /// Flushes the copy and returns it.
    pub fn finish(mut self) -> io::Result<W> {
        self.copy.flush()?;
        Ok(self.copy)
    }
}

impl<R: io::Read, W: Write> io::Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

impl Write for StagedParts {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.part()?.write(data)?;
        self.in_part += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Output for StagedParts {
    fn row(
        &mut self,
        values: &[Option<Cow<'_, str>>],
        file: &str,
        line: &str,
        plain: &[bool],
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        if self.parquet.is_none() {
            return csv_row(self, values, file, line, plain, scratch);
        }
        let bytes: usize = values
            .iter()
            .map(|v| v.as_deref().map_or(2, |v| v.len() + 1))
            .sum::<usize>()
            + file.len()
            + line.len()
            + 2;
        self.parquet_part()?.push(
            values
                .iter()
                .map(|v| v.as_deref())
                .chain([Some(file), Some(line)]),
        )?;
        // Cut as the CSV would be: after the row that passes the size.
        self.in_part += bytes as u64;
        self.record_end()
    }

    fn takes_csv(&self) -> bool {
        self.parquet.is_none()
    }

    fn record_end(&mut self) -> io::Result<()> {
        if self.in_part >= self.max_part_bytes {
            self.close_part()?;
        }
        Ok(())
    }

    fn rejected(&mut self, e: &RowError) -> io::Result<()> {
        if self.rejects.is_none() {
            let sink = SpillWriter::new("rejects.csv.gz".into(), self.spill.clone())?;
            let mut gz = flate2::write::GzEncoder::new(sink, flate2::Compression::new(self.level));
            write_record(&mut gz, REJECTS_HEADER.iter().map(|h| Some(*h)))?;
            self.rejects = Some(gz);
        }
        let gz = self.rejects.as_mut().expect("just opened");
        let line = e.line.to_string();
        let code = e.code.to_string();
        write_record(
            gz,
            [
                Some(line.as_str()),
                e.column.as_deref(),
                Some(code.as_str()),
                Some(e.reason.as_str()),
                e.raw_value.as_deref(),
                Some(e.raw_line.as_str()),
            ],
        )
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // reading small test files whole
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(blob: &Blob) -> String {
        let bytes = match blob {
            Blob::Memory(b) => b.clone(),
            Blob::File(p) => std::fs::read(p).unwrap(),
        };
        let mut s = String::new();
        flate2::read::MultiGzDecoder::new(bytes.as_slice())
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn parts_are_cut_only_between_records() {
        let mut out = StagedParts::new(10, 1).unwrap();
        for i in 0..7 {
            // Each record is 6 bytes: two records pass 10 bytes.
            writeln!(out, "r{i},ab").unwrap();
            out.record_end().unwrap();
        }
        let staged = out.finish().unwrap();
        let texts: Vec<String> = staged.parts.iter().map(gunzip).collect();
        assert_eq!(
            texts,
            [
                "r0,ab\nr1,ab\n",
                "r2,ab\nr3,ab\n",
                "r4,ab\nr5,ab\n",
                "r6,ab\n"
            ]
        );
        assert!(staged.rejects.is_none());
        // Small outputs stay in memory: no folder was made.
        assert!(staged.dir.is_none());
        assert!(staged.parts.iter().all(|p| matches!(p, Blob::Memory(_))));
    }

    #[test]
    fn outputs_past_the_memory_budget_go_to_disk_whole() {
        // Level 0 stores: the part passes a 4 KiB budget after ~4 KiB.
        let mut out = StagedParts::with_memory(1 << 20, 0, 4096).unwrap();
        let mut raw = out.raw_copy().unwrap();
        let mut expected = String::new();
        for i in 0..2000 {
            let line = format!("r{i},abcdefgh\n");
            out.write_all(line.as_bytes()).unwrap();
            out.record_end().unwrap();
            raw.write_all(line.as_bytes()).unwrap();
            expected.push_str(&line);
        }
        out.set_raw(raw);
        let staged = out.finish().unwrap();
        assert_eq!(staged.parts.len(), 1);
        assert!(
            matches!(staged.parts[0], Blob::File(_)),
            "{:?}",
            staged.parts
        );
        assert!(matches!(staged.raw, Some(Blob::File(_))));
        assert!(staged.dir.is_some());
        assert_eq!(gunzip(&staged.parts[0]), expected);
        let Some(Blob::File(raw)) = &staged.raw else {
            unreachable!()
        };
        assert_eq!(std::fs::read_to_string(raw).unwrap(), expected);
        let folder = staged.dir.as_ref().unwrap().path().to_path_buf();
        drop(staged);
        assert!(!folder.exists(), "the folder goes with the staged output");
    }

    #[test]
    fn no_rows_no_parts_and_rejects_kept_in_full() {
        let mut out = StagedParts::new(1 << 20, 1).unwrap();
        for line in 1..=3 {
            out.rejected(&RowError {
                line,
                column: Some("n".into()),
                code: 1207,
                reason: "not a number, \"x\"".into(),
                raw_line: "x,\ny".into(),
                raw_value: Some("x".into()),
            })
            .unwrap();
        }
        let staged = out.finish().unwrap();
        assert!(staged.parts.is_empty());
        let text = gunzip(staged.rejects.as_ref().unwrap());
        let mut rows = csv::Reader::from_reader(text.as_bytes());
        let recs: Vec<csv::StringRecord> = rows.records().map(|r| r.unwrap()).collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(&recs[2][0], "3");
        assert_eq!(&recs[2][3], "not a number, \"x\"");
        assert_eq!(&recs[2][5], "x,\ny");
    }
}

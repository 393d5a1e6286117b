//! Where normalized rows go.
//!
//! Decoders write through a [`RowSink`](super::sink::RowSink) into an
//! [`Output`]: a `Write` for the staged CSV that is also told where each
//! record ends (the only places the CSV may be cut) and about every
//! rejected record. [`StagedParts`] is the output the pipeline uses: gzip
//! parts of bounded size plus a gzip CSV of all rejected records, on local
//! disk, so memory stays bounded however large the file is.

use super::gzip::ParallelGzip;
use super::{RowError, write_record};
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
}

impl Output for Vec<u8> {}

impl Output for io::Sink {}

impl<W: Write + Send + 'static> Output for ParallelGzip<W> {}

impl<O: Output + ?Sized> Output for &mut O {
    fn record_end(&mut self) -> io::Result<()> {
        (**self).record_end()
    }

    fn rejected(&mut self, error: &RowError) -> io::Result<()> {
        (**self).rejected(error)
    }
}

/// Header of a rejects file.
pub const REJECTS_HEADER: [&str; 6] = ["line", "column", "code", "reason", "raw_value", "raw_line"];

/// Gzip CSV parts of at most about `max_part_bytes` of CSV each (cut after
/// the record that passes it), and a gzip CSV of rejected records, in a
/// temporary folder that is removed when the [`LocalStaged`] is dropped.
pub struct StagedParts {
    dir: tempfile::TempDir,
    max_part_bytes: u64,
    level: u32,
    current: Option<ParallelGzip<BufWriter<File>>>,
    in_part: u64,
    parts: Vec<PathBuf>,
    rejects: Option<flate2::write::GzEncoder<BufWriter<File>>>,
    raw: Option<PathBuf>,
}

/// What [`StagedParts`] left on disk.
#[derive(Debug)]
pub struct LocalStaged {
    /// Owns the folder; dropping it removes the files.
    pub dir: tempfile::TempDir,
    /// The parts in order; none when no row was written.
    pub parts: Vec<PathBuf>,
    /// The rejects file, if any record was rejected.
    pub rejects: Option<PathBuf>,
    /// The copy of the raw input, if one was asked for.
    pub raw: Option<PathBuf>,
}

impl StagedParts {
    /// Parts in a new temporary folder, compressed at `level`.
    pub fn new(max_part_bytes: u64, level: u32) -> io::Result<Self> {
        Ok(StagedParts {
            dir: tempfile::Builder::new().prefix("ferry-staged-").tempdir()?,
            max_part_bytes: max_part_bytes.max(1),
            level,
            current: None,
            in_part: 0,
            parts: Vec::new(),
            rejects: None,
            raw: None,
        })
    }

    fn part(&mut self) -> io::Result<&mut ParallelGzip<BufWriter<File>>> {
        if self.current.is_none() {
            let path = self
                .dir
                .path()
                .join(format!("part-{:05}.csv.gz", self.parts.len()));
            let file = File::create(&path)?;
            self.parts.push(path);
            self.current = Some(ParallelGzip::new(
                BufWriter::with_capacity(256 * 1024, file),
                self.level,
            ));
            self.in_part = 0;
        }
        Ok(self.current.as_mut().expect("just opened"))
    }

    fn close_part(&mut self) -> io::Result<()> {
        if let Some(gz) = self.current.take() {
            gz.finish()?.flush()?;
        }
        Ok(())
    }

    /// A file beside the parts for a byte-for-byte copy of the raw input
    /// (the `raw/` archive); it is returned in [`LocalStaged::raw`].
    pub fn raw_copy(&mut self) -> io::Result<BufWriter<File>> {
        let path = self.dir.path().join("raw");
        let file = File::create(&path)?;
        self.raw = Some(path);
        Ok(BufWriter::with_capacity(256 * 1024, file))
    }

    /// Ends the last part and the rejects file.
    pub fn finish(mut self) -> io::Result<LocalStaged> {
        self.close_part()?;
        let rejects = match self.rejects.take() {
            Some(gz) => {
                gz.finish()?.flush()?;
                Some(self.dir.path().join("rejects.csv.gz"))
            }
            None => None,
        };
        Ok(LocalStaged {
            dir: self.dir,
            parts: self.parts,
            rejects,
            raw: self.raw,
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
    fn record_end(&mut self) -> io::Result<()> {
        if self.in_part >= self.max_part_bytes {
            self.close_part()?;
        }
        Ok(())
    }

    fn rejected(&mut self, e: &RowError) -> io::Result<()> {
        if self.rejects.is_none() {
            let file = File::create(self.dir.path().join("rejects.csv.gz"))?;
            let mut gz = flate2::write::GzEncoder::new(
                BufWriter::new(file),
                flate2::Compression::new(self.level),
            );
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

    fn gunzip(path: &std::path::Path) -> String {
        let mut s = String::new();
        flate2::read::MultiGzDecoder::new(File::open(path).unwrap())
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
        let texts: Vec<String> = staged.parts.iter().map(|p| gunzip(p)).collect();
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

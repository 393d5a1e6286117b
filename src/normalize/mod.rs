//! Normalize: input bytes → mapped, type-checked rows → gzip CSV, plus error
//! rows for the records that do not fit.
//!
//! Pure and synchronous: it reads from a [`Read`] and writes to a [`Write`],
//! so the pipeline runs it on a blocking thread between the source stream
//! and the staging file. Memory is bounded by the largest record, never by
//! the file.
//!
//! The staged CSV is RFC 4180: fields are quoted when they need it, `""` is
//! the empty string and an unquoted `\N` is NULL (a value that is literally
//! `\N` is written quoted), so NULL and empty stay distinct on both
//! warehouses (`NULL AS '\N'`).

mod coerce;
mod csv_out;

pub use coerce::{CoerceError, coerce};
pub use csv_out::{NULL_MARKER, write_record};

use crate::config::{ColumnSource, Format, Job};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

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
}

/// Facts about the file that derived columns use.
#[derive(Debug, Clone)]
pub struct FileContext {
    /// Source path.
    pub path: String,
    /// Ingest time, already in timestamp text form.
    pub ingest_time: String,
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

/// Counts and hashes the bytes that pass through.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

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

/// Field `i` of `record`, without the `\r` a CRLF line end leaves on the
/// last field.
fn field(record: &csv::StringRecord, i: usize) -> &str {
    let v = &record[i];
    if i + 1 == record.len() {
        v.strip_suffix('\r').unwrap_or(v)
    } else {
        v
    }
}

/// How each target column gets its value in one file.
enum Plan {
    Field(usize),
    Missing,
    SourceFile,
    SourceLine,
    IngestTime,
    Constant(String),
}

/// Reads `input` as the job's format and writes the staged CSV to `output`:
/// no header, the job's columns in order, then the source path and the
/// record's line number (`ferry_file`, `ferry_line`).
pub fn normalize<R: Read, W: Write>(
    job: &Job,
    ctx: &FileContext,
    input: R,
    output: W,
) -> Result<NormalizeStats, NormalizeError> {
    let Format::Csv(fmt) = &job.format;
    let mut hashing = HashingReader {
        inner: input,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut stats = NormalizeStats::default();
    {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(fmt.delimiter)
            .quote(fmt.quote)
            .has_headers(false)
            .flexible(true)
            // Records end at `\n` only, so that positions count physical
            // lines in CRLF files too; `field` strips the `\r`.
            .terminator(csv::Terminator::Any(b'\n'))
            .from_reader(&mut hashing);
        let mut out = io::BufWriter::with_capacity(256 * 1024, output);
        let read_err = |path: &str, e: csv::Error| NormalizeError::Read {
            path: path.to_string(),
            source: match e.into_kind() {
                csv::ErrorKind::Io(io) => io,
                other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
            },
        };

        let mut record = csv::StringRecord::new();
        let header: Vec<String> = if fmt.header {
            match reader.read_record(&mut record) {
                Ok(true) => (0..record.len())
                    .map(|i| {
                        let h = field(&record, i);
                        let h = if i == 0 {
                            h.trim_start_matches('\u{feff}')
                        } else {
                            h
                        };
                        h.trim().to_string()
                    })
                    .collect(),
                Ok(false) => Vec::new(), // empty file: zero rows
                Err(e) => return Err(read_err(&ctx.path, e)),
            }
        } else {
            fmt.field_names.clone()
        };
        let empty_file = fmt.header && header.is_empty();

        let mut plan = Vec::with_capacity(job.columns.len());
        for col in &job.columns {
            plan.push(match &col.source {
                ColumnSource::Field(f) => match header.iter().position(|h| h == f) {
                    Some(i) => Plan::Field(i),
                    // An empty file has no header to check; a default
                    // stands in for a field the file does not have.
                    None if empty_file || col.default.is_some() => Plan::Missing,
                    None => {
                        return Err(NormalizeError::MissingField {
                            path: ctx.path.clone(),
                            field: f.clone(),
                            column: col.name.to_string(),
                            header: header.join(", "),
                        });
                    }
                },
                ColumnSource::SourceFile => Plan::SourceFile,
                ColumnSource::SourceLine => Plan::SourceLine,
                ColumnSource::IngestTime => Plan::IngestTime,
                ColumnSource::Constant(c) => Plan::Constant(c.clone()),
            });
        }

        let mut values: Vec<Option<String>> = Vec::with_capacity(job.columns.len());
        loop {
            match reader.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(read_err(&ctx.path, e)),
            }
            let line = record.position().map_or(0, |p| p.line());
            if record.len() == 1 && field(&record, 0).is_empty() {
                continue; // blank line
            }
            let raw_line = || {
                cap(&(0..record.len())
                    .map(|i| field(&record, i))
                    .collect::<Vec<_>>()
                    .join(&(fmt.delimiter as char).to_string()))
            };
            if !header.is_empty() && record.len() != header.len() {
                stats.rejected += 1;
                if stats.errors.len() < MAX_KEPT_ERRORS {
                    stats.errors.push(RowError {
                        line,
                        column: None,
                        code: if record.len() > header.len() {
                            1202
                        } else {
                            1203
                        },
                        reason: format!(
                            "record has {} fields; the header has {}",
                            record.len(),
                            header.len()
                        ),
                        raw_line: raw_line(),
                        raw_value: None,
                    });
                }
                continue;
            }
            values.clear();
            let mut failure: Option<RowError> = None;
            for (col, how) in job.columns.iter().zip(&plan) {
                let raw: Option<String> = match how {
                    Plan::Field(i) if *i < record.len() => {
                        let v = field(&record, *i);
                        Some(if col.trim {
                            v.trim().to_string()
                        } else {
                            v.to_string()
                        })
                    }
                    Plan::Field(_) => None,
                    Plan::Missing => None,
                    Plan::SourceFile => Some(ctx.path.clone()),
                    Plan::SourceLine => Some(line.to_string()),
                    Plan::IngestTime => Some(ctx.ingest_time.clone()),
                    Plan::Constant(c) => Some(c.clone()),
                };
                let raw = match raw {
                    Some(v)
                        if v.is_empty()
                            && !matches!(
                                col.column_type,
                                crate::config::ColumnType::Varchar(_)
                            ) =>
                    {
                        None
                    }
                    Some(v) if v.is_empty() && col.required => None,
                    other => other,
                };
                let raw = raw.or_else(|| col.default.clone());
                let value = match raw {
                    None if col.required => {
                        failure = Some(RowError {
                            line,
                            column: Some(col.name.to_string()),
                            code: 1213,
                            reason: format!(
                                "column {} is required but the value is missing or empty",
                                col.name
                            ),
                            raw_line: raw_line(),
                            raw_value: Some(String::new()),
                        });
                        break;
                    }
                    None => None,
                    Some(v) => match coerce(&v, col.column_type) {
                        Ok(c) => Some(c.into_owned()),
                        Err(e) => {
                            failure = Some(RowError {
                                line,
                                column: Some(col.name.to_string()),
                                code: e.code,
                                reason: format!("column {}: {}", col.name, e.reason),
                                raw_line: raw_line(),
                                raw_value: Some(cap(&v)),
                            });
                            break;
                        }
                    },
                };
                values.push(value);
            }
            if let Some(f) = failure {
                stats.rejected += 1;
                if stats.errors.len() < MAX_KEPT_ERRORS {
                    stats.errors.push(f);
                }
                continue;
            }
            let line_text = line.to_string();
            let extra = [Some(ctx.path.as_str()), Some(line_text.as_str())];
            write_record(&mut out, values.iter().map(|v| v.as_deref()).chain(extra)).map_err(
                |source| NormalizeError::Write {
                    path: ctx.path.clone(),
                    source,
                },
            )?;
            stats.rows += 1;
        }
        out.flush().map_err(|source| NormalizeError::Write {
            path: ctx.path.clone(),
            source,
        })?;
    }
    // Drain whatever the CSV reader left (nothing, normally) so the hash
    // covers the whole file.
    io::copy(&mut hashing, &mut io::sink()).map_err(|source| NormalizeError::Read {
        path: ctx.path.clone(),
        source,
    })?;
    stats.input_bytes = hashing.bytes;
    stats.sha256 = hex::encode(hashing.hasher.finalize());
    Ok(stats)
}

#[cfg(test)]
mod tests;

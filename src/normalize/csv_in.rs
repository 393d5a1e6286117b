//! The CSV decoder: header or configured names, any one-byte delimiter and
//! quote, a UTF-8 BOM, CRLF or LF, quoted fields with embedded newlines.
//! Records end at LF only, so positions count physical lines in CRLF files
//! too. Ragged records, records that are not UTF-8 and records larger
//! than `max_record_bytes` become error rows; the rest of the file loads.

use super::csv_records::{Next, Record, RecordReader, Records};
use super::handoff::{self, Feed, Stopped};
use super::output::Output;
use super::sink::{Fields, Key, RowSink};
use super::{FileContext, NormalizeError, RowError};
use crate::config::{CsvFormat, Job};
use std::borrow::Cow;
use std::io::{self, Read};

/// Field `i` of `record`, without the `\r` a CRLF line end leaves on the
/// last field.
fn field<'a>(record: &Record<'a>, i: usize) -> &'a str {
    let v = record.get(i).unwrap_or_default();
    if i + 1 == record.len() {
        v.strip_suffix('\r').unwrap_or(v)
    } else {
        v
    }
}

/// Records bound for the writer thread, owned, in one batch (see
/// [`Records`]).
struct CsvBatch {
    records: Records,
    delimiter: u8,
}

/// A batch is handed on at this many records …
const BATCH_RECORDS: usize = 512;
/// … or this many bytes of field text.
const BATCH_TEXT: usize = 64 * 1024;

/// One record of a batch, as the sink reads it.
struct CsvView<'a> {
    record: Record<'a>,
    delimiter: u8,
}

fn raw_record(record: &Record<'_>, delimiter: u8) -> String {
    (0..record.len())
        .map(|i| field(record, i))
        .collect::<Vec<_>>()
        .join(&(delimiter as char).to_string())
}

impl handoff::Record for CsvBatch {
    fn emit<W: Output>(&self, _: u64, sink: &mut RowSink<'_, W>) -> Result<(), NormalizeError> {
        for (line, record) in self.records.iter() {
            let view = CsvView {
                record,
                delimiter: self.delimiter,
            };
            sink.push(line, &view)?;
        }
        Ok(())
    }
}

impl Fields for CsvView<'_> {
    fn get(&self, key: &Key) -> Option<Cow<'_, str>> {
        match key {
            Key::Index(i) if *i < self.record.len() => Some(Cow::Borrowed(field(&self.record, *i))),
            _ => None,
        }
    }

    fn raw(&self) -> String {
        raw_record(&self.record, self.delimiter)
    }
}

/// A read error as a file failure: I/O stays a read error (the caller
/// tells the source's failures from the bytes').
fn read_err(path: &str, source: io::Error) -> NormalizeError {
    NormalizeError::Read {
        path: path.to_string(),
        source,
    }
}

/// The file failure for a header that is not UTF-8 or too large.
fn bad_header(path: &str, reason: String) -> NormalizeError {
    NormalizeError::Format {
        path: path.to_string(),
        reason,
    }
}

/// Where a record stops being UTF-8, for a message.
fn not_utf8_at(field: usize, byte: usize) -> String {
    format!("field {}, byte {} of the field", field + 1, byte + 1)
}

/// Decodes `input` as CSV into `out`.
pub fn decode<R: Read, W: Output>(
    job: &Job,
    fmt: &CsvFormat,
    ctx: &FileContext,
    input: R,
    out: W,
) -> Result<super::NormalizeStats, NormalizeError> {
    let max_record = job.limits.max_record_bytes;
    let mut reader = RecordReader::new(fmt, input, max_record);
    let path = ctx.path.as_str();
    let header: Vec<String> = if fmt.header {
        let mut first = Records::default();
        match reader.next(&mut first).map_err(|e| read_err(path, e))? {
            Next::NotUtf8 { field, byte, .. } => {
                return Err(bad_header(
                    path,
                    format!(
                        "line 1, {}: the header is not valid UTF-8; if the file is Latin-1 or Windows-1252, set format.encoding",
                        not_utf8_at(field, byte)
                    ),
                ));
            }
            Next::Record { .. } => {
                let record = first.get(0).1;
                (0..record.len())
                    .map(|i| {
                        let h = field(&record, i);
                        let h = if i == 0 {
                            h.trim_start_matches('\u{feff}')
                        } else {
                            h
                        };
                        h.trim().to_string()
                    })
                    .collect()
            }
            Next::TooLarge { bytes, .. } => {
                return Err(bad_header(
                    path,
                    format!(
                        "line 1: the header is {bytes} bytes, longer than max_record_bytes ({max_record} bytes); is format.delimiter or format.quote right?"
                    ),
                ));
            }
            Next::End => Vec::new(), // empty file: zero rows
        }
    } else {
        fmt.field_names.clone()
    };
    let empty_file = fmt.header && header.is_empty();
    let mut lacking: Vec<(String, String)> = Vec::new();
    let mut sink = RowSink::new(job, ctx, out, |name, col| {
        match header.iter().position(|h| h == name) {
            Some(i) => Ok(Key::Index(i)),
            // An empty file has no header to check.
            None if empty_file => Ok(Key::Missing),
            // A default stands in for a field the file does not have, and
            // a contract may load it as NULL: drift, recorded.
            None if col.default.is_some() || job.contract.tolerates_missing() => {
                lacking.push((name.to_string(), col.name.to_string()));
                Ok(Key::Missing)
            }
            None => Err(NormalizeError::MissingField {
                path: ctx.path.clone(),
                field: name.to_string(),
                column: col.name.to_string(),
                header: header.join(", "),
            }),
        }
    })?;
    for (field, column) in &lacking {
        sink.header_lacks(field, column);
    }
    if !empty_file {
        sink.header(&header)?;
    }
    handoff::run(
        sink,
        path,
        ctx.one_thread(),
        |feed: &mut Feed<'_, CsvBatch>| {
            let new_batch = |feed: &mut Feed<'_, CsvBatch>| {
                let mut b = feed.spare().unwrap_or_else(|| CsvBatch {
                    records: Records::default(),
                    delimiter: fmt.delimiter,
                });
                b.records.clear();
                b
            };
            // Hands the batch on (records before a reject go first, so
            // that rows and error rows keep the file's order).
            let flush = |feed: &mut Feed<'_, CsvBatch>, batch: &mut CsvBatch| {
                if batch.records.len() == 0 {
                    return Ok(());
                }
                let full = std::mem::replace(batch, new_batch(feed));
                let size = full.records.bytes() + full.records.len();
                let line = full.records.get(0).0;
                feed.push(line, size, full)
                    .map_err(|Stopped| handoff::stopped(path))
            };
            let mut batch = new_batch(feed);
            loop {
                let reject = match reader
                    .next(&mut batch.records)
                    .map_err(|e| read_err(path, e))?
                {
                    Next::End => break,
                    Next::Record { line } => {
                        let record = batch.records.last().expect("just read");
                        if record.len() == 1 && field(&record, 0).is_empty() {
                            batch.records.pop();
                            continue; // blank line
                        }
                        if header.is_empty() || record.len() == header.len() {
                            if batch.records.len() >= BATCH_RECORDS
                                || batch.records.bytes() >= BATCH_TEXT
                            {
                                flush(feed, &mut batch)?;
                            }
                            continue;
                        }
                        let code = if record.len() > header.len() {
                            1202
                        } else {
                            1203
                        };
                        let reason = format!(
                            "record has {} fields; the header has {}",
                            record.len(),
                            header.len()
                        );
                        let raw = raw_record(&record, fmt.delimiter);
                        batch.records.pop();
                        RowError::unmapped(line, code, reason, &raw)
                    }
                    // One bad record, not a bad file: reject it, go on.
                    Next::NotUtf8 { line, field, byte } => {
                        let reason = format!(
                            "{} is not valid UTF-8; if the file is Latin-1 or Windows-1252, set format.encoding",
                            not_utf8_at(field, byte)
                        );
                        RowError::unmapped(line, 1220, reason, "")
                    }
                    // One record too large is rejected, not the file: its
                    // bytes were parsed and dropped, never held.
                    Next::TooLarge {
                        line,
                        bytes: size,
                        head,
                    } => {
                        let reason = format!(
                            "the record is {size} bytes, longer than max_record_bytes ({max_record} bytes); raise limits.max_record_bytes to load it"
                        );
                        RowError::unmapped(line, 1225, reason, &String::from_utf8_lossy(&head))
                    }
                };
                flush(feed, &mut batch)?;
                feed.reject(reject)
                    .map_err(|Stopped| handoff::stopped(path))?;
            }
            flush(feed, &mut batch)
        },
    )
}

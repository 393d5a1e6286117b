//! The CSV decoder: header or configured names, any one-byte delimiter and
//! quote, a UTF-8 BOM, CRLF or LF, quoted fields with embedded newlines.
//! Records end at LF only, so positions count physical lines in CRLF files
//! too. Ragged records, records that are not UTF-8 and records larger
//! than `max_record_bytes` become error rows; the rest of the file loads.

use super::csv_records::{Next, RecordReader};
use super::handoff::{self, Feed, Stopped};
use super::output::Output;
use super::sink::{Fields, Key, RowSink};
use super::{FileContext, NormalizeError, RowError};
use crate::config::{CsvFormat, Job};
use std::borrow::Cow;
use std::io::{self, Read};

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

/// One record, owned, so it can cross to the writer thread.
struct CsvRecord {
    record: csv::StringRecord,
    delimiter: u8,
}

fn raw_record(record: &csv::StringRecord, delimiter: u8) -> String {
    (0..record.len())
        .map(|i| field(record, i))
        .collect::<Vec<_>>()
        .join(&(delimiter as char).to_string())
}

handoff::fields_record!(CsvRecord);

impl Fields for CsvRecord {
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

/// Checks that `bytes` is UTF-8; on failure, the field and byte that are
/// not, and the record back for reuse.
fn to_strings(bytes: csv::ByteRecord) -> Result<csv::StringRecord, (String, csv::ByteRecord)> {
    csv::StringRecord::from_byte_record(bytes).map_err(|e| {
        let u = e.utf8_error();
        let at = format!(
            "field {}, byte {} of the field",
            u.field() + 1,
            u.valid_up_to() + 1
        );
        (at, e.into_byte_record())
    })
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
        let mut bytes = csv::ByteRecord::new();
        match reader.next(&mut bytes).map_err(|e| read_err(path, e))? {
            Next::Record { .. } => {
                let record = to_strings(bytes).map_err(|(at, _)| {
                    bad_header(path, format!(
                        "line 1, {at}: the header is not valid UTF-8; if the file is Latin-1 or Windows-1252, set format.encoding"
                    ))
                })?;
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
        |feed: &mut Feed<'_, CsvRecord>| {
            let mut spare = csv::ByteRecord::new();
            loop {
                let mut bytes = feed
                    .spare()
                    .map(|r| r.record.into_byte_record())
                    .unwrap_or_else(|| std::mem::take(&mut spare));
                let line = match reader.next(&mut bytes).map_err(|e| read_err(path, e))? {
                    Next::Record { line } => line,
                    Next::End => break,
                    Next::TooLarge {
                        line,
                        bytes: size,
                        head,
                    } => {
                        // One record too large is rejected, not the file:
                        // its bytes were parsed and dropped, never held.
                        let reason = format!(
                            "the record is {size} bytes, longer than max_record_bytes ({max_record} bytes); raise limits.max_record_bytes to load it"
                        );
                        spare = bytes;
                        feed.reject(RowError::unmapped(
                            line,
                            1225,
                            reason,
                            &String::from_utf8_lossy(&head),
                        ))
                        .map_err(|Stopped| handoff::stopped(path))?;
                        continue;
                    }
                };
                let record = match to_strings(bytes) {
                    Ok(r) => r,
                    Err((at, back)) => {
                        // One bad record, not a bad file: reject it, go on.
                        spare = back;
                        let reason = format!(
                            "{at} is not valid UTF-8; if the file is Latin-1 or Windows-1252, set format.encoding"
                        );
                        feed.reject(RowError::unmapped(line, 1220, reason, ""))
                            .map_err(|Stopped| handoff::stopped(path))?;
                        continue;
                    }
                };
                if record.len() == 1 && field(&record, 0).is_empty() {
                    spare = record.into_byte_record();
                    continue; // blank line
                }
                if !header.is_empty() && record.len() != header.len() {
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
                    spare = record.into_byte_record();
                    feed.reject(RowError::unmapped(line, code, reason, &raw))
                        .map_err(|Stopped| handoff::stopped(path))?;
                    continue;
                }
                let size = record.as_byte_record().as_slice().len() + record.len();
                feed.push(
                    line,
                    size,
                    CsvRecord {
                        record,
                        delimiter: fmt.delimiter,
                    },
                )
                .map_err(|Stopped| handoff::stopped(path))?;
            }
            Ok(())
        },
    )
}

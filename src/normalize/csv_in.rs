//! The CSV decoder: header or configured names, any one-byte delimiter and
//! quote, a UTF-8 BOM, CRLF or LF, quoted fields with embedded newlines.
//! Records end at LF only, so positions count physical lines in CRLF files
//! too. Ragged records become error rows.

use super::handoff::{self, Feed, Stopped};
use super::output::Output;
use super::sink::{Fields, Key, RowSink};
use super::{FileContext, NormalizeError, RecordGuard, RowError};
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

/// A CSV reader's error as a file failure: I/O stays a read error (the
/// caller tells the source's failures from the bytes'), anything else says
/// where the bytes are wrong and what to set.
fn read_err(path: &str, e: csv::Error) -> NormalizeError {
    let reason = match e.kind() {
        csv::ErrorKind::Utf8 { pos, err } => format!(
            "line {}, field {}, byte {} of the field: the header is not valid UTF-8; if the file is Latin-1 or Windows-1252, set format.encoding",
            pos.as_ref().map_or(1, |p| p.line()),
            err.field() + 1,
            err.valid_up_to() + 1
        ),
        csv::ErrorKind::Io(_) => {
            let source = match e.into_kind() {
                csv::ErrorKind::Io(source) => source,
                other => io::Error::other(format!("{other:?}")),
            };
            return NormalizeError::Read {
                path: path.to_string(),
                source,
            };
        }
        _ => format!("not readable as CSV: {e}"),
    };
    NormalizeError::Format {
        path: path.to_string(),
        reason,
    }
}

/// Decodes `input` as CSV into `out`.
pub fn decode<R: Read, W: Output>(
    job: &Job,
    fmt: &CsvFormat,
    ctx: &FileContext,
    input: R,
    guard: &RecordGuard,
    out: W,
) -> Result<super::NormalizeStats, NormalizeError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(fmt.delimiter)
        .quote(fmt.quote)
        .escape(fmt.escape)
        .double_quote(fmt.escape.is_none())
        .has_headers(false)
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        // As large as the buffered reader below, so that its reads go
        // straight into this buffer instead of being copied twice.
        .buffer_capacity(256 * 1024)
        .from_reader(input);
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
    guard.record_ended(reader.position().byte());
    let empty_file = fmt.header && header.is_empty();
    let sink = RowSink::new(job, ctx, out, |name, col| {
        match header.iter().position(|h| h == name) {
            Some(i) => Ok(Key::Index(i)),
            // An empty file has no header to check; a default stands in
            // for a field the file does not have.
            None if empty_file || col.default.is_some() => Ok(Key::Missing),
            None => Err(NormalizeError::MissingField {
                path: ctx.path.clone(),
                field: name.to_string(),
                column: col.name.to_string(),
                header: header.join(", "),
            }),
        }
    })?;
    let path = ctx.path.as_str();
    handoff::run(
        sink,
        path,
        ctx.one_thread(),
        |feed: &mut Feed<'_, CsvRecord>| {
            loop {
                let mut record = feed.spare().map(|r| r.record).unwrap_or_default();
                match reader.read_record(&mut record) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        if let csv::ErrorKind::Utf8 { pos, err } = e.kind() {
                            // One bad record, not a bad file: reject it, go on.
                            let line = pos.as_ref().map_or(0, |p| p.line());
                            let reason = format!(
                                "field {} is not valid UTF-8; if the file is Latin-1 or Windows-1252, set format.encoding",
                                err.field() + 1
                            );
                            guard.record_ended(reader.position().byte());
                            feed.reject(RowError::unmapped(line, 1220, reason, ""))
                                .map_err(|Stopped| handoff::stopped(path))?;
                            continue;
                        }
                        return Err(read_err(path, e));
                    }
                }
                guard.record_ended(reader.position().byte());
                let line = record.position().map_or(0, |p| p.line());
                if record.len() == 1 && field(&record, 0).is_empty() {
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

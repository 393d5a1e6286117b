//! Parquet input, read row group by row group.
//!
//! A Parquet file keeps its schema and row group offsets in a footer at
//! its end, so the stream is first spooled to a temporary file (disk, not
//! memory); then the row groups are read one at a time, each record's
//! values handed to the writer thread as text: numbers as written,
//! booleans `true`/`false`, dates `YYYY-MM-DD`, timestamps ISO-8601 in UTC,
//! decimals with their scale, binary as hex, and groups, lists and maps as
//! JSON (an object's members in name order). A nested field is mapped by its path (`task/id` or `/task/id`);
//! the record's line is its row number (from 1). A flat file (no groups,
//! lists or maps) is read column by column instead, in `parquet_flat`,
//! with the same text.

use super::handoff::{self, Feed, Slots, Stopped};
use super::output::Output;
use super::sink::{FieldVisit, Fields, Key, RowSink};
use super::{FileContext, NormalizeError, NormalizeStats};
use crate::config::Job;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use std::borrow::Cow;
use std::io::{self, Read, Seek};

/// One record's values by path, owned, reused from record to record.
pub type ParquetFields = Slots<Option<String>>;

handoff::fields_record!(ParquetFields);

impl Fields for ParquetFields {
    fn get(&self, key: &Key) -> Option<Cow<'_, str>> {
        match key {
            Key::Name(n) => self
                .live()
                .iter()
                .find(|(k, _)| k == n)
                .and_then(|(_, v)| v.as_deref().map(Cow::Borrowed)),
            _ => None,
        }
    }

    fn raw(&self) -> String {
        self.live()
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("NULL")))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn each_field(&self, visit: &mut FieldVisit<'_>) {
        for (k, v) in self.live() {
            if !k.contains('/') {
                visit(k, v.as_deref().map(Cow::Borrowed), None);
            }
        }
    }
}

/// Decodes a Parquet file from `input`.
pub fn decode<W: Output + Send>(
    job: &Job,
    ctx: &FileContext,
    input: &mut dyn Read,
    out: W,
) -> Result<NormalizeStats, NormalizeError> {
    let format_err = |reason: String| NormalizeError::Format {
        path: ctx.path.clone(),
        reason,
    };
    let mut spool = tempfile::tempfile().map_err(|source| NormalizeError::Write {
        path: ctx.path.clone(),
        source,
    })?;
    let spooled = io::copy(
        &mut input.take(job.limits.max_decompressed_bytes + 1),
        &mut spool,
    )
    .map_err(|source| NormalizeError::Read {
        path: ctx.path.clone(),
        source,
    })?;
    if spooled > job.limits.max_decompressed_bytes {
        return Err(NormalizeError::Limit {
            path: ctx.path.clone(),
            what: format!(
                "the Parquet file is larger than limits.max_decompressed_bytes ({} bytes)",
                job.limits.max_decompressed_bytes
            ),
        });
    }
    spool
        .seek(io::SeekFrom::Start(0))
        .map_err(|source| NormalizeError::Read {
            path: ctx.path.clone(),
            source,
        })?;
    if spooled == 0 {
        // An empty file: no rows.
        let sink = RowSink::new(job, ctx, out, |name, _| {
            Ok(Key::Name(name.trim_start_matches('/').to_string()))
        })?;
        return sink.finish();
    }
    let reader = SerializedFileReader::new(spool)
        .map_err(|e| format_err(format!("not a readable Parquet file: {e}")))?;
    if let Some(columns) =
        super::parquet_flat::flat_columns(reader.metadata().file_metadata().schema_descr())
    {
        return super::parquet_flat::decode(job, ctx, reader, columns, out);
    }
    let mut nested = Vec::new();
    let sink = RowSink::new(job, ctx, out, |name, _| {
        let key = name.trim_start_matches('/').to_string();
        if let Some((top, _)) = key.split_once('/') {
            nested.push(top.to_string());
        }
        Ok(Key::Name(key))
    })?;
    handoff::run(
        sink,
        &ctx.path,
        ctx.one_thread(),
        |feed: &mut Feed<'_, ParquetFields>| {
            let mut line = 0u64;
            for g in 0..reader.num_row_groups() {
                let group = reader
                    .get_row_group(g)
                    .map_err(|e| format_err(format!("row group {g}: {e}")))?;
                let rows = group
                    .get_row_iter(None)
                    .map_err(|e| format_err(format!("row group {g}: {e}")))?;
                for row in rows {
                    line += 1;
                    let row = row.map_err(|e| format_err(format!("row {line}: {e}")))?;
                    let mut fields = feed.spare().unwrap_or_default();
                    fields.clear();
                    flatten(&row, "", &nested, &mut fields, 0);
                    let size = fields
                        .live()
                        .iter()
                        .map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len))
                        .sum();
                    feed.push(line, size, fields)
                        .map_err(|Stopped| handoff::stopped(&ctx.path))?;
                }
            }
            Ok(())
        },
    )
}

/// Nested groups are followed this deep for paths.
const MAX_PATH_DEPTH: usize = 16;

/// Puts `row`'s values into `out` under `prefix`: every column by name
/// (a group as JSON), and below the groups a mapped path reaches
/// (`nested`: top-level names some mapped path goes into), `a/b`.
fn flatten(row: &Row, prefix: &str, nested: &[String], out: &mut ParquetFields, depth: usize) {
    for (name, field) in row.get_column_iter() {
        if prefix.is_empty() {
            out.push(name, |v| *v = text(field));
        } else {
            out.push(&format!("{prefix}/{name}"), |v| *v = text(field));
        }
        if let Field::Group(inner) = field {
            let top = if prefix.is_empty() {
                name.as_str()
            } else {
                prefix.split('/').next().unwrap_or(prefix)
            };
            if depth < MAX_PATH_DEPTH && nested.iter().any(|n| n == top) {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                flatten(inner, &key, nested, out, depth + 1);
            }
        }
    }
}

/// A value as text (`None`: NULL).
pub(super) fn text(field: &Field) -> Option<String> {
    Some(match field {
        Field::Null => return None,
        Field::Bool(b) => b.to_string(),
        Field::Byte(n) => n.to_string(),
        Field::Short(n) => n.to_string(),
        Field::Int(n) => n.to_string(),
        Field::Long(n) => n.to_string(),
        Field::UByte(n) => n.to_string(),
        Field::UShort(n) => n.to_string(),
        Field::UInt(n) => n.to_string(),
        Field::ULong(n) => n.to_string(),
        Field::Float(x) => x.to_string(),
        Field::Double(x) => x.to_string(),
        Field::Str(s) => s.clone(),
        Field::Bytes(b) => hex::encode(b.data()),
        Field::Date(days) => chrono::DateTime::from_timestamp(i64::from(*days) * 86_400, 0)?
            .format("%Y-%m-%d")
            .to_string(),
        Field::TimestampMillis(ms) => iso(chrono::DateTime::from_timestamp_millis(*ms)?),
        Field::TimestampMicros(us) => iso(chrono::DateTime::from_timestamp_micros(*us)?),
        Field::Decimal(d) => decimal(d.data(), d.scale())?,
        other => other.to_json_value().to_string(),
    })
}

pub(super) fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A Parquet decimal (big-endian two's complement, `scale` places) as text.
fn decimal(bytes: &[u8], scale: i32) -> Option<String> {
    decimal_text(decimal_int(bytes)?, scale)
}

/// A big-endian two's complement integer of 1 to 16 bytes.
pub(super) fn decimal_int(bytes: &[u8]) -> Option<i128> {
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let mut buf = [if bytes[0] & 0x80 != 0 { 0xff } else { 0 }; 16];
    buf[16 - bytes.len()..].copy_from_slice(bytes);
    Some(i128::from_be_bytes(buf))
}

/// The unscaled `n` with `scale` decimal places as text.
pub(super) fn decimal_text(n: i128, scale: i32) -> Option<String> {
    if !(0..=38).contains(&scale) {
        return None;
    }
    let digits = n.unsigned_abs().to_string();
    let scale = scale as usize;
    let body = if scale == 0 {
        digits
    } else {
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (i, f) = padded.split_at(padded.len() - scale);
        format!("{i}.{f}")
    };
    Some(if n < 0 { format!("-{body}") } else { body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_their_scale_and_sign() {
        assert_eq!(decimal(&[0x04, 0xd2], 2).as_deref(), Some("12.34"));
        assert_eq!(decimal(&[0xfb, 0x2e], 2).as_deref(), Some("-12.34"));
        assert_eq!(decimal(&[0x05], 3).as_deref(), Some("0.005"));
        assert_eq!(decimal(&[0x7f], 0).as_deref(), Some("127"));
    }
}

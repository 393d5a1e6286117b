//! JSON decoders, streaming: NDJSON (one value per line; a bad line is an
//! error row) and JSON documents whose records are an array at the top
//! level or under a path such as `/events` (elements are parsed one at a
//! time, never the whole document). A field is a top-level member name or
//! a JSON pointer (`/task/id`); nested values load as compact JSON text.

use super::output::Output;
use super::sink::{Fields, Key, RowSink};
use super::{FileContext, NormalizeError, NormalizeStats, RecordGuard};
use crate::config::Job;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufRead, Read};

struct JsonFields<'a>(&'a Value);

fn text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        other => Some(Cow::Owned(other.to_string())),
    }
}

impl Fields for JsonFields<'_> {
    fn get(&self, key: &Key) -> Option<Cow<'_, str>> {
        match key {
            Key::Name(n) => self.0.get(n).and_then(text),
            Key::Pointer(p) => self.0.pointer(p).and_then(text),
            _ => None,
        }
    }

    fn raw(&self) -> String {
        self.0.to_string()
    }
}

/// JSON fields are looked up by name, or by pointer when they start with `/`.
fn key_of(name: &str, _: &crate::config::Column) -> Result<Key, NormalizeError> {
    Ok(if name.starts_with('/') {
        Key::Pointer(name.to_string())
    } else {
        Key::Name(name.to_string())
    })
}

/// Decodes newline-delimited JSON.
pub fn decode_ndjson<R: Read, W: Output>(
    job: &Job,
    ctx: &FileContext,
    input: R,
    max_record: u64,
    out: W,
) -> Result<NormalizeStats, NormalizeError> {
    let mut sink = RowSink::new(job, ctx, out, key_of)?;
    let mut reader = io::BufReader::with_capacity(256 * 1024, input);
    let mut line_buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        line_buf.clear();
        line_no += 1;
        // Read one line, but never more than the record limit.
        let n = (&mut reader)
            .take(max_record + 1)
            .read_until(b'\n', &mut line_buf)
            .map_err(|source| NormalizeError::Read {
                path: ctx.path.clone(),
                source,
            })?;
        if n == 0 {
            break;
        }
        if line_buf.len() as u64 > max_record && !line_buf.ends_with(b"\n") {
            return Err(NormalizeError::Limit {
                path: ctx.path.clone(),
                what: format!(
                    "line {line_no} is longer than max_record_bytes ({max_record} bytes)"
                ),
            });
        }
        let mut bytes = line_buf.as_slice();
        if line_no == 1 {
            bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        }
        let trimmed = bytes.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Value>(trimmed) {
            Ok(v @ Value::Object(_)) => sink.push(line_no, &JsonFields(&v))?,
            Ok(_) => sink.reject(
                line_no,
                1224,
                "the line is JSON but not an object".into(),
                || String::from_utf8_lossy(trimmed).into_owned(),
            )?,
            Err(e) => sink.reject(
                line_no,
                1224,
                format!("not valid JSON at column {}: {e}", e.column()),
                || String::from_utf8_lossy(trimmed).into_owned(),
            )?,
        }
    }
    sink.finish()
}

/// Receives each record; errors are kept aside, since serde only carries
/// strings.
struct Collector<'s, 'j, W: Output> {
    sink: &'s mut RowSink<'j, W>,
    guard: &'s RecordGuard,
    count: u64,
    failure: Option<NormalizeError>,
}

impl<W: Output> Collector<'_, '_, W> {
    fn take(&mut self, v: Value) -> Result<(), String> {
        self.count += 1;
        let r = match &v {
            Value::Object(_) => self.sink.push(self.count, &JsonFields(&v)),
            _ => self.sink.reject(
                self.count,
                1224,
                "the record is JSON but not an object".into(),
                || v.to_string(),
            ),
        };
        self.guard.record_ended_here();
        r.map_err(|e| {
            let text = e.to_string();
            self.failure = Some(e);
            text
        })
    }
}

/// Walks `path` (object keys) down to the records, then streams them.
struct Records<'p, 'c, 's, 'j, W: Output> {
    path: &'p [String],
    c: &'c mut Collector<'s, 'j, W>,
}

impl<'de, W: Output> DeserializeSeed<'de> for Records<'_, '_, '_, '_, W> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, W: Output> Visitor<'de> for Records<'_, '_, '_, '_, W> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str("an array of records or one record object")
        } else {
            write!(f, "an object with member {:?}", self.path[0])
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        if !self.path.is_empty() {
            return Err(de::Error::custom(format!(
                "expected an object with member {:?}, found an array",
                self.path[0]
            )));
        }
        while let Some(v) = seq.next_element::<Value>()? {
            self.c.take(v).map_err(de::Error::custom)?;
        }
        Ok(true)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        if self.path.is_empty() {
            // One record object at the top.
            let v = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
            self.c.take(v).map_err(de::Error::custom)?;
            return Ok(true);
        }
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            if !found && key == self.path[0] {
                found = map.next_value_seed(Records {
                    path: &self.path[1..],
                    c: &mut *self.c,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

use serde::Deserialize;

/// Decodes a JSON document whose records sit at `path` (empty: the top).
pub fn decode_document<R: Read, W: Output>(
    job: &Job,
    ctx: &FileContext,
    input: R,
    path: &[String],
    guard: &RecordGuard,
    out: W,
) -> Result<NormalizeStats, NormalizeError> {
    let mut sink = RowSink::new(job, ctx, out, key_of)?;
    let mut reader = io::BufReader::with_capacity(256 * 1024, input);
    // An empty (or all-blank) file is zero records.
    let blank = loop {
        let buf = reader.fill_buf().map_err(|source| NormalizeError::Read {
            path: ctx.path.clone(),
            source,
        })?;
        if buf.is_empty() {
            break true;
        }
        let skip = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
        let skip = if buf.starts_with(b"\xef\xbb\xbf") {
            3
        } else {
            skip
        };
        if skip == 0 {
            break false;
        }
        reader.consume(skip);
    };
    if !blank {
        let mut collector = Collector {
            sink: &mut sink,
            guard,
            count: 0,
            failure: None,
        };
        let mut de = serde_json::Deserializer::from_reader(reader);
        let result = Records {
            path,
            c: &mut collector,
        }
        .deserialize(&mut de)
        .and_then(|found| de.end().map(|()| found));
        if let Some(e) = collector.failure.take() {
            return Err(e);
        }
        match result {
            Ok(true) => {}
            Ok(false) => {
                return Err(NormalizeError::Format {
                    path: ctx.path.clone(),
                    reason: format!(
                        "no records at {:?}: the document has no such member",
                        format!("/{}", path.join("/"))
                    ),
                });
            }
            Err(e) if e.is_io() => {
                return Err(NormalizeError::Read {
                    path: ctx.path.clone(),
                    source: io::Error::other(e.to_string()),
                });
            }
            Err(e) => {
                return Err(NormalizeError::Format {
                    path: ctx.path.clone(),
                    reason: format!("not valid JSON: {e}"),
                });
            }
        }
    }
    sink.finish()
}

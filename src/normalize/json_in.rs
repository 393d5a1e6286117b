//! JSON decoders, streaming: NDJSON (one value per line; a bad line is an
//! error row) and JSON documents whose records are an array at the top
//! level or under a path such as `/events` (elements are parsed one at a
//! time, never the whole document). A field is a top-level member name or
//! a JSON pointer (`/task/id`). Values keep their text as written: numbers
//! their exact digits, nested objects and arrays their JSON text.

use super::handoff::{self, Feed, Stopped};
use super::output::Output;
use super::sink::{FieldVisit, Fields, Key, RowSink};
use super::{FileContext, NormalizeError, NormalizeStats, RecordGuard, RowError};
use crate::config::Job;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufRead, Read};

/// Records bound for the writer thread, owned, in one batch: their text
/// end to end in one string (checked as UTF-8 on the decoder's thread) and
/// where each starts. The writer parses each into a borrowed view: member
/// values stay slices of the text (numbers keep their exact digits, nested
/// values their text) and strings are unescaped only when a column reads
/// them. One contiguous buffer crosses between the cores, not one
/// allocation per record.
#[derive(Debug, Default)]
pub struct JsonBatch {
    text: String,
    /// Per record: its line (or ordinal), and where its text is.
    recs: Vec<(u64, usize, usize)>,
}

/// A batch is handed on at this many records …
const BATCH_RECORDS: usize = 512;
/// … or this many bytes of text.
const BATCH_TEXT: usize = 128 * 1024;

impl JsonBatch {
    fn add(&mut self, line: u64, text: &str) {
        let start = self.text.len();
        self.text.push_str(text);
        self.recs.push((line, start, self.text.len()));
    }

    fn full(&self) -> bool {
        self.recs.len() >= BATCH_RECORDS || self.text.len() >= BATCH_TEXT
    }

    fn clear(&mut self) {
        self.text.clear();
        self.recs.clear();
    }
}

/// Parses one record object into `members` (reused from record to record).
struct MembersInto<'v, 'a>(&'v mut Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for MembersInto<'_, 'a> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for MembersInto<'_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Str(k)) = map.next_key::<Str<'de>>()? {
            self.0.push((k, map.next_value::<&'de RawValue>()?));
        }
        Ok(())
    }
}

/// A string that borrows from the input unless it holds escapes.
#[derive(serde::Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

/// An object's members, in order, as raw values.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Members<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut members = Vec::with_capacity(16);
        MembersInto(&mut members).deserialize(d)?;
        Ok(Members(members))
    }
}

/// The text of a raw value as a column sees it: strings unescaped, `null`
/// absent, anything else (numbers, booleans, objects, arrays) as written.
fn raw_text(t: &str) -> Option<Cow<'_, str>> {
    match t.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<Str<'_>>(t).ok().map(|s| s.0),
        Some(b'n') if t == "null" => None,
        _ => Some(Cow::Borrowed(t)),
    }
}

/// Follows a JSON pointer (`/a/b/0`) from a record's members.
fn pointer<'a>(members: &[(Cow<'a, str>, &'a RawValue)], ptr: &str) -> Option<&'a str> {
    let unescape = |seg: &str| seg.replace("~1", "/").replace("~0", "~");
    let mut segs = ptr.split('/').skip(1);
    let first = unescape(segs.next()?);
    let mut v = members.iter().rev().find(|(k, _)| *k == first)?.1.get();
    for seg in segs {
        let seg = unescape(seg);
        v = match v.as_bytes().first() {
            Some(b'{') => {
                let m: Members<'a> = serde_json::from_str(v).ok()?;
                m.0.into_iter().rev().find(|(k, _)| *k == seg)?.1.get()
            }
            Some(b'[') => {
                let items: Vec<&'a RawValue> = serde_json::from_str(v).ok()?;
                items.get(seg.parse::<usize>().ok()?)?.get()
            }
            _ => return None,
        };
    }
    Some(v)
}

/// A parsed record, borrowing from its batch.
struct JsonView<'v, 'a> {
    text: &'a str,
    members: &'v [(Cow<'a, str>, &'a RawValue)],
}

impl Fields for JsonView<'_, '_> {
    fn get(&self, key: &Key) -> Option<Cow<'_, str>> {
        self.get_value(key).map(|(t, _)| t)
    }

    fn get_value(&self, key: &Key) -> Option<(Cow<'_, str>, bool)> {
        let v = match key {
            Key::Name(n) => self.members.iter().rev().find(|(k, _)| k == n)?.1.get(),
            Key::Pointer(p) => pointer(self.members, p)?,
            _ => return None,
        };
        // Strings are unescaped; anything else is JSON text serde_json
        // has already parsed.
        let json = !v.starts_with('"');
        raw_text(v).map(|t| (t, json))
    }

    fn raw(&self) -> String {
        self.text.to_string()
    }

    fn each_field(&self, visit: &mut FieldVisit<'_>) {
        for (k, v) in self.members {
            visit(k, raw_text(v.get()), Some(v.get()));
        }
    }

    fn each_name(&self, visit: &mut dyn FnMut(&str)) {
        for (k, _) in self.members {
            visit(k);
        }
    }
}

impl handoff::Record for JsonBatch {
    fn emit<W: Output>(&self, _: u64, sink: &mut RowSink<'_, W>) -> Result<(), NormalizeError> {
        let mut members = Vec::with_capacity(16);
        for &(line, a, b) in &self.recs {
            let text = &self.text[a..b];
            members.clear();
            let mut de = serde_json::Deserializer::from_str(text);
            let parsed = MembersInto(&mut members)
                .deserialize(&mut de)
                .and_then(|()| de.end());
            match parsed {
                Ok(()) => sink.push(
                    line,
                    &JsonView {
                        text,
                        members: &members,
                    },
                )?,
                Err(e) => {
                    let reason = if serde_json::from_str::<IgnoredAny>(text).is_ok() {
                        "the record is JSON but not an object".to_string()
                    } else {
                        format!("not valid JSON at column {}: {e}", e.column())
                    };
                    sink.rejected(RowError::unmapped(line, 1224, reason, text))?;
                }
            }
        }
        Ok(())
    }
}

/// JSON fields are looked up by name, or by pointer when they start with `/`.
fn key_of(name: &str, _: &crate::schema::Column) -> Result<Key, NormalizeError> {
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
    let sink = RowSink::new(job, ctx, out, key_of)?;
    let path = ctx.path.as_str();
    let mut reader = io::BufReader::with_capacity(256 * 1024, input);
    let mut line_no = 0u64;
    handoff::run(
        sink,
        path,
        ctx.one_thread(),
        |feed: &mut Feed<'_, JsonBatch>| {
            let mut line_buf = Vec::new();
            let mut batch = JsonBatch::default();
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
                    // One record too large is rejected, not the file: the
                    // rest of its line is skipped in bounded steps, never
                    // held, and the next line is read as usual.
                    let mut skipped = line_buf.len() as u64;
                    let head =
                        String::from_utf8_lossy(&line_buf[..line_buf.len().min(256)]).into_owned();
                    loop {
                        line_buf.clear();
                        let n = (&mut reader)
                            .take(64 * 1024)
                            .read_until(b'\n', &mut line_buf)
                            .map_err(|source| NormalizeError::Read {
                                path: ctx.path.clone(),
                                source,
                            })?;
                        skipped += n as u64;
                        if n == 0 || line_buf.ends_with(b"\n") {
                            break;
                        }
                    }
                    let reason = format!(
                        "the record is {skipped} bytes, longer than max_record_bytes ({max_record} bytes); raise limits.max_record_bytes to load it"
                    );
                    flush(feed, &mut batch, path)?;
                    feed.reject(RowError::unmapped(line_no, 1225, reason, &head))
                        .map_err(|Stopped| handoff::stopped(path))?;
                    continue;
                }
                let mut start = 0;
                if line_no == 1 && line_buf.starts_with(b"\xef\xbb\xbf") {
                    start = 3;
                }
                let mut end = line_buf.len();
                while start < end && line_buf[start].is_ascii_whitespace() {
                    start += 1;
                }
                while end > start && line_buf[end - 1].is_ascii_whitespace() {
                    end -= 1;
                }
                if start == end {
                    continue;
                }
                match std::str::from_utf8(&line_buf[start..end]) {
                    Ok(text) => {
                        batch.add(line_no, text);
                        if batch.full() {
                            flush(feed, &mut batch, path)?;
                        }
                    }
                    Err(e) => {
                        let reason = format!("not valid UTF-8 at byte {}", e.valid_up_to() + 1);
                        let raw = String::from_utf8_lossy(&line_buf[start..end]).into_owned();
                        flush(feed, &mut batch, path)?;
                        feed.reject(RowError::unmapped(line_no, 1224, reason, &raw))
                            .map_err(|Stopped| handoff::stopped(path))?;
                    }
                }
            }
            flush(feed, &mut batch, path)
        },
    )
}

/// Hands `batch` on, if it holds anything, and starts the next in a spare.
fn flush(
    feed: &mut Feed<'_, JsonBatch>,
    batch: &mut JsonBatch,
    path: &str,
) -> Result<(), NormalizeError> {
    if batch.recs.is_empty() {
        return Ok(());
    }
    let mut next = feed.spare().unwrap_or_default();
    next.clear();
    let full = std::mem::replace(batch, next);
    let line = full.recs[0].0;
    feed.push(line, full.text.len(), full)
        .map_err(|Stopped| handoff::stopped(path))
}

/// Receives each record; errors are kept aside, since serde only carries
/// strings.
struct Collector<'s, 'w> {
    feed: &'s mut Feed<'w, JsonBatch>,
    batch: JsonBatch,
    guard: &'s RecordGuard,
    path: &'s str,
    count: u64,
    failure: Option<NormalizeError>,
}

impl Collector<'_, '_> {
    fn take(&mut self, text: String) -> Result<(), String> {
        self.count += 1;
        self.batch.add(self.count, &text);
        let r = if self.batch.full() {
            flush(self.feed, &mut self.batch, self.path)
        } else {
            Ok(())
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
struct Records<'p, 'c, 's, 'w> {
    path: &'p [String],
    c: &'c mut Collector<'s, 'w>,
}

impl<'de> DeserializeSeed<'de> for Records<'_, '_, '_, '_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Records<'_, '_, '_, '_> {
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
        while let Some(v) = seq.next_element::<Box<RawValue>>()? {
            self.c
                .take(String::from(Box::<str>::from(v)))
                .map_err(de::Error::custom)?;
        }
        Ok(true)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        if self.path.is_empty() {
            // One record object at the top.
            let v = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
            self.c.take(v.to_string()).map_err(de::Error::custom)?;
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
    let sink = RowSink::new(job, ctx, out, key_of)?;
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
    handoff::run(
        sink,
        &ctx.path,
        ctx.one_thread(),
        |feed: &mut Feed<'_, JsonBatch>| {
            if !blank {
                let mut collector = Collector {
                    feed,
                    batch: JsonBatch::default(),
                    guard,
                    path: &ctx.path,
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
                    Ok(true) => flush(collector.feed, &mut collector.batch, &ctx.path)?,
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
            Ok(())
        },
    )
}

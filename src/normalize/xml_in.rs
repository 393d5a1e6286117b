//! The XML decoder, streaming with quick-xml.
//!
//! Records are the elements at `record_path` (local names from the root,
//! e.g. `/export/events/event`; namespace prefixes are ignored, so
//! `<ns:event>` matches `event`). A column's field is a child element
//! (`status`), a nested one (`task/id`), an attribute of the record
//! (`@id`) or of a child (`task/@id`). DTDs are refused, so no entity can
//! expand; only the five predefined entities and character references are
//! read. Nesting deeper than `max_xml_depth` fails the file. A record
//! larger than `max_record_bytes` is rejected (nothing of it is kept past
//! the limit) and the next one read; a single text or tag that large fails
//! the file, since it cannot be skipped without holding it. An error row's
//! line is the record's ordinal; its reason gives the byte offset.

use super::handoff::{self, Feed, Slots, Stopped};
use super::output::Output;
use super::sink::{FieldVisit, Fields, Key, RowSink};
use super::{FileContext, NormalizeError, NormalizeStats, RecordGuard};
use crate::config::Job;
use quick_xml::events::Event;
use std::borrow::Cow;
use std::io::BufRead;

/// One record's fields, owned, so it can cross to the writer thread.
type XmlFields = Slots<String>;

impl XmlFields {
    /// Records `key` unless the record has it already (the first
    /// occurrence of a repeated child counts).
    fn set_if_absent(&mut self, key: &str, value: &str) {
        if self.live().iter().any(|(k, _)| k == key) {
            return;
        }
        self.push(key, |v| {
            v.clear();
            v.push_str(value);
        });
    }
}

handoff::fields_record!(XmlFields);

impl Fields for XmlFields {
    fn get(&self, key: &Key) -> Option<Cow<'_, str>> {
        match key {
            Key::Name(n) => self
                .live()
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| Cow::Borrowed(v.as_str())),
            _ => None,
        }
    }

    fn each_field(&self, visit: &mut FieldVisit<'_>) {
        for (k, v) in self.live() {
            // Direct children and the record's attributes only.
            if !k.contains('/') {
                visit(k, Some(Cow::Borrowed(v.as_str())), None);
            }
        }
    }

    fn raw(&self) -> String {
        let mut pairs: Vec<_> = self.live().iter().collect();
        pairs.sort();
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Writes the local part of a (possibly prefixed) name into `out`.
fn local_into(name: &[u8], out: &mut String) {
    let n = match name.iter().position(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    out.clear();
    out.push_str(&String::from_utf8_lossy(n));
}

fn predefined(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

/// Decodes XML records at `record_path` (local names, root first).
pub fn decode<R: BufRead, W: Output>(
    job: &Job,
    ctx: &FileContext,
    input: R,
    record_path: &[String],
    max_depth: usize,
    guard: &RecordGuard,
    out: W,
) -> Result<NormalizeStats, NormalizeError> {
    let mut wanted = Vec::new();
    let sink = RowSink::new(job, ctx, out, |name, _| {
        let key = name.trim_start_matches('/').to_string();
        wanted.push(key.clone());
        Ok(Key::Name(key))
    })?;
    let mut state = State {
        record_path,
        wanted,
        names: Vec::new(),
        depth: 0,
        record: None,
        text: String::new(),
        key: String::new(),
        record_start: 0,
        too_large: false,
        max_record: job.limits.max_record_bytes,
    };
    handoff::run(
        sink,
        &ctx.path,
        ctx.one_thread(),
        |feed: &mut Feed<'_, XmlFields>| state.decode(ctx, input, max_depth, guard, feed),
    )
}

/// The decoder's state; buffers are reused from element to element.
struct State<'p> {
    record_path: &'p [String],
    /// The field keys the job maps; other children are skipped, but for
    /// the record's own children and attributes (drift).
    wanted: Vec<String>,
    /// Local names of the open elements; the first `depth` are live.
    names: Vec<String>,
    depth: usize,
    /// Inside a record: the record element's depth and its fields.
    record: Option<(usize, XmlFields)>,
    /// Text of the innermost element so far.
    text: String,
    /// Scratch for a field key.
    key: String,
    /// Where the current record started (byte offset).
    record_start: u64,
    /// The current record passed `max_record` bytes: nothing more of it is
    /// kept, and it is rejected at its end tag.
    too_large: bool,
    max_record: u64,
}

impl State<'_> {
    /// A mapped field, or one the record has directly (a child or an
    /// attribute of the record element): those are kept for drift.
    fn is_wanted(&self, key: &str) -> bool {
        !key.contains('/') || self.wanted.iter().any(|w| w == key)
    }

    /// `key` = the path of the open elements below the record, joined by `/`.
    fn relative_key(&mut self, record_depth: usize) {
        self.key.clear();
        for (i, n) in self.names[record_depth..self.depth].iter().enumerate() {
            if i > 0 {
                self.key.push('/');
            }
            self.key.push_str(n);
        }
    }

    fn decode<R: BufRead>(
        &mut self,
        ctx: &FileContext,
        input: R,
        max_depth: usize,
        guard: &RecordGuard,
        feed: &mut Feed<'_, XmlFields>,
    ) -> Result<(), NormalizeError> {
        let mut reader = quick_xml::Reader::from_reader(input);
        reader.config_mut().trim_text(false);
        let format_err = |reason: String| NormalizeError::Format {
            path: ctx.path.clone(),
            reason,
        };
        let mut buf = Vec::new();
        let mut count = 0u64;
        loop {
            let pos = reader.buffer_position();
            let event = reader.read_event_into(&mut buf).map_err(|e| {
                format_err(format!(
                    "not well-formed XML near byte {}: {e}",
                    reader.error_position()
                ))
            })?;
            if self.record.is_some() {
                self.watch_size(reader.buffer_position(), guard);
            }
            match event {
                Event::DocType(_) => {
                    return Err(format_err(
                        "the document has a DTD (<!DOCTYPE …>); DTDs are refused so that no entity can expand".into(),
                    ));
                }
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let empty = matches!(event, Event::Empty(_));
                    if self.depth == self.names.len() {
                        self.names.push(String::new());
                    }
                    local_into(e.name().as_ref(), &mut self.names[self.depth]);
                    self.depth += 1;
                    if self.depth > max_depth {
                        return Err(format_err(format!(
                            "elements nest deeper than max_xml_depth ({max_depth}) near byte {pos}"
                        )));
                    }
                    let starts_record = self.record.is_none()
                        && self.depth == self.record_path.len()
                        && self.names[..self.depth]
                            .iter()
                            .zip(self.record_path)
                            .all(|(a, b)| a == b);
                    if starts_record {
                        count += 1;
                        let mut fields = feed.spare().unwrap_or_default();
                        fields.clear();
                        self.record = Some((self.depth, fields));
                        self.record_start = pos;
                    }
                    if let Some(record_depth) = self.record.as_ref().map(|r| r.0)
                        && !self.too_large
                    {
                        self.relative_key(record_depth);
                        let prefix_len = self.key.len();
                        for a in e.attributes().filter_map(|a| a.ok()) {
                            if a.key.as_ref().starts_with(b"xmlns") {
                                continue;
                            }
                            self.key.truncate(prefix_len);
                            if prefix_len > 0 {
                                self.key.push('/');
                            }
                            self.key.push('@');
                            let name = a.key.as_ref();
                            let local = match name.iter().position(|&b| b == b':') {
                                Some(i) => &name[i + 1..],
                                None => name,
                            };
                            self.key.push_str(&String::from_utf8_lossy(local));
                            if self.is_wanted(&self.key) {
                                let v = a
                                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                    .unwrap_or_default();
                                let key = std::mem::take(&mut self.key);
                                if let Some((_, fields)) = self.record.as_mut() {
                                    fields.set_if_absent(&key, &v);
                                }
                                self.key = key;
                            }
                        }
                        self.text.clear();
                    }
                    if empty {
                        self.end_element(count, reader.buffer_position(), guard, feed)?;
                    }
                }
                Event::Text(t) if self.record.is_some() && !self.too_large => {
                    self.text.push_str(
                        &t.xml10_content()
                            .map_err(|e| format_err(format!("bad text near byte {pos}: {e}")))?,
                    );
                }
                Event::CData(t) if self.record.is_some() && !self.too_large => {
                    self.text.push_str(
                        &t.decode()
                            .map_err(|e| format_err(format!("bad CDATA near byte {pos}: {e}")))?,
                    );
                }
                Event::GeneralRef(r) if self.record.is_some() && !self.too_large => {
                    if let Some(c) = r.resolve_char_ref().ok().flatten() {
                        self.text.push(c);
                    } else {
                        let name = r.decode().map_err(|e| format_err(e.to_string()))?;
                        match predefined(&name) {
                            Some(c) => self.text.push(c),
                            None => {
                                return Err(format_err(format!(
                                    "unknown entity &{name}; near byte {pos} (only the predefined entities are read)"
                                )));
                            }
                        }
                    }
                }
                Event::End(_) => self.end_element(count, reader.buffer_position(), guard, feed)?,
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        if self.record.is_some() {
            return Err(format_err(format!(
                "the document ends inside record {count}"
            )));
        }
        Ok(())
    }

    /// Past `max_record` bytes into a record, stops keeping any of it (so
    /// a record of many parts holds no memory) and tells the guard that
    /// the bytes are accounted for. One part (a text, an attribute) larger
    /// than the limit still trips the guard, which fails the file.
    fn watch_size(&mut self, at: u64, guard: &RecordGuard) {
        if !self.too_large && at.saturating_sub(self.record_start) > self.max_record {
            self.too_large = true;
            if let Some((_, fields)) = self.record.as_mut() {
                fields.clear();
            }
            self.text = String::new();
        }
        if self.too_large {
            guard.record_ended_here();
        }
    }

    fn end_element(
        &mut self,
        count: u64,
        at: u64,
        guard: &RecordGuard,
        feed: &mut Feed<'_, XmlFields>,
    ) -> Result<(), NormalizeError> {
        if let Some(record_depth) = self.record.as_ref().map(|r| r.0) {
            if self.depth > record_depth {
                // The innermost text wins; an element with only children
                // keeps what its children recorded.
                self.relative_key(record_depth);
                if self.is_wanted(&self.key)
                    && let Some((_, fields)) = self.record.as_mut()
                {
                    fields.set_if_absent(&self.key, &self.text);
                }
                self.text.clear();
            } else if self.depth == record_depth && self.too_large {
                self.record = None;
                self.too_large = false;
                let reason = format!(
                    "the record is {} bytes, longer than max_record_bytes ({} bytes); raise limits.max_record_bytes to load it",
                    at.saturating_sub(self.record_start),
                    self.max_record
                );
                feed.reject(super::RowError::unmapped(count, 1225, reason, ""))
                    .map_err(|Stopped| handoff::stopped(""))?;
                guard.record_ended_here();
            } else if self.depth == record_depth {
                let (_, fields) = self.record.take().expect("inside a record");
                let size = fields.live().iter().map(|(k, v)| k.len() + v.len()).sum();
                feed.push(count, size, fields)
                    .map_err(|Stopped| handoff::stopped(""))?;
                guard.record_ended_here();
            }
        }
        self.depth = self.depth.saturating_sub(1);
        Ok(())
    }
}

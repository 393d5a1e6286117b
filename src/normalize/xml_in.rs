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

use super::handoff::{self, Feed, Stopped};
use super::output::Output;
use super::sink::{FieldVisit, Fields, Key, RowSink};
use super::{FileContext, NormalizeError, NormalizeStats, RecordGuard};
use crate::config::Job;
use quick_xml::events::Event;
use std::borrow::Cow;
use std::io::BufRead;
use std::sync::Arc;

/// One record's fields, owned, so it can cross to the writer thread: the
/// values end to end in one text, a mapped field found by its place in the
/// job's field list, other direct children and attributes (for drift and
/// error rows) by name. A few buffers per record, reused from record to
/// record, rather than two strings per field.
#[derive(Debug)]
struct XmlRecord {
    /// The keys the job maps, shared by every record of the file.
    wanted: Arc<[String]>,
    /// Values, and the names of `extra` fields, end to end.
    text: String,
    /// Per mapped key: where its value is in `text`.
    found: Vec<Option<(usize, usize)>>,
    /// Direct children and attributes the job does not map by this name:
    /// where the name and the value are in `text`, and whether the name
    /// is not mapped at all (a new field, for drift) rather than the head
    /// of a mapped path such as `task` of `task/@id`.
    extra: Vec<(usize, usize, usize, bool)>,
}

impl XmlRecord {
    fn new(wanted: Arc<[String]>) -> Self {
        XmlRecord {
            found: vec![None; wanted.len()],
            wanted,
            text: String::new(),
            extra: Vec::new(),
        }
    }

    fn clear(&mut self) {
        self.text.clear();
        self.found.iter_mut().for_each(|f| *f = None);
        self.extra.clear();
    }

    /// Sets mapped key `i` unless the record has it already (the first
    /// occurrence of a repeated child counts).
    fn set_wanted(&mut self, i: usize, value: &str) {
        if self.found[i].is_none() {
            let start = self.text.len();
            self.text.push_str(value);
            self.found[i] = Some((start, self.text.len()));
        }
    }

    fn extras(&self) -> impl Iterator<Item = (&str, &str, bool)> {
        self.extra
            .iter()
            .map(|&(k, v, end, new)| (&self.text[k..v], &self.text[v..end], new))
    }

    /// Records a direct child or attribute the job does not map by its
    /// name, unless the record has it already.
    fn set_extra(&mut self, key: &str, value: &str, new: bool) {
        if self.extras().any(|(k, _, _)| k == key) {
            return;
        }
        let k = self.text.len();
        self.text.push_str(key);
        let v = self.text.len();
        self.text.push_str(value);
        self.extra.push((k, v, self.text.len(), new));
    }

    /// The bytes it holds (for the hand-off's batch size).
    fn size(&self) -> usize {
        self.text.len()
    }
}

handoff::fields_record!(XmlRecord);

impl Fields for XmlRecord {
    fn get(&self, key: &Key) -> Option<Cow<'_, str>> {
        match key {
            Key::Index(i) => self
                .found
                .get(*i)
                .copied()
                .flatten()
                .map(|(a, b)| Cow::Borrowed(&self.text[a..b])),
            _ => None,
        }
    }

    fn each_field(&self, visit: &mut FieldVisit<'_>) {
        for (k, v, new) in self.extras() {
            if new {
                visit(k, Some(Cow::Borrowed(v)), None);
            }
        }
    }

    fn each_name(&self, visit: &mut dyn FnMut(&str)) {
        for (k, _, new) in self.extras() {
            if new {
                visit(k);
            }
        }
    }

    fn raw(&self) -> String {
        let mut pairs: Vec<(&str, &str)> = self
            .wanted
            .iter()
            .zip(&self.found)
            .filter_map(|(k, f)| f.map(|(a, b)| (k.as_str(), &self.text[a..b])))
            .chain(self.extras().map(|(k, v, _)| (k, v)))
            .collect();
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
    let n = match memchr::memchr(b':', name) {
        Some(i) => &name[i + 1..],
        None => name,
    };
    out.clear();
    push_name(n, out);
}

/// Appends a name as text (UTF-8 as it nearly always is; lossy if not).
fn push_name(name: &[u8], out: &mut String) {
    match std::str::from_utf8(name) {
        Ok(n) => out.push_str(n),
        Err(_) => out.push_str(&String::from_utf8_lossy(name)),
    }
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
    let mut wanted: Vec<String> = Vec::new();
    let sink = RowSink::new(job, ctx, out, |name, _| {
        let key = name.trim_start_matches('/');
        let i = match wanted.iter().position(|w| w == key) {
            Some(i) => i,
            None => {
                wanted.push(key.to_string());
                wanted.len() - 1
            }
        };
        Ok(Key::Index(i))
    })?;
    let heads = wanted
        .iter()
        .map(|w| super::drift::top_level(w).to_string())
        .collect();
    let mut state = State {
        record_path,
        wanted: wanted.into(),
        heads,
        names: Vec::new(),
        slots: Vec::new(),
        child: 0,
        predicted: Vec::new(),
        predicted_attrs: Vec::new(),
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
        |feed: &mut Feed<'_, XmlRecord>| state.decode(ctx, input, max_depth, guard, feed),
    )
}

/// The decoder's state; buffers are reused from element to element.
struct State<'p> {
    record_path: &'p [String],
    /// The field keys the job maps; other children are skipped, but for
    /// the record's own children and attributes (drift).
    wanted: Arc<[String]>,
    /// The first segment of each mapped key (`task` of `task/@id`).
    heads: Vec<String>,
    /// Local names of the open elements; the first `depth` are live.
    names: Vec<String>,
    /// Where each open element's text goes, found at its start tag.
    slots: Vec<Slot>,
    /// The current record's children so far.
    child: usize,
    /// Per child ordinal: the last record's child there, as its raw name,
    /// its local name and its slot.
    predicted: Vec<(Vec<u8>, String, Slot)>,
    /// Per attribute ordinal: the last record element's attribute there,
    /// as its raw name and its slot.
    predicted_attrs: Vec<(Vec<u8>, Slot)>,
    depth: usize,
    /// Inside a record: the record element's depth and its fields.
    record: Option<(usize, XmlRecord)>,
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

/// Where a key's value goes in the record.
#[derive(Debug, Clone, Copy, Default)]
enum Slot {
    /// The job maps it: its place in the field list.
    Wanted(usize),
    /// A direct child or attribute kept by name; `true`: not mapped at
    /// all (a new field).
    Extra(bool),
    /// Neither: skipped.
    #[default]
    Skip,
}

impl State<'_> {
    /// Where the value of `key` (relative to the record; `direct`: a
    /// child or attribute of the record element itself) goes: a mapped
    /// field, or one the record has directly (kept for drift).
    fn slot(&self, key: &str, direct: bool) -> Slot {
        if let Some(i) = self.wanted.iter().position(|w| w == key) {
            Slot::Wanted(i)
        } else if direct {
            Slot::Extra(!self.heads.iter().any(|h| h == key))
        } else {
            Slot::Skip
        }
    }

    /// Remembers that a record's `k`-th child named `raw` (its local name
    /// in `names`) goes to `slot`.
    fn predict(&mut self, k: usize, raw: &[u8], slot: Slot) {
        if self.predicted.len() <= k {
            self.predicted.resize_with(k + 1, Default::default);
        }
        let local = &self.names[self.depth - 1];
        let p = &mut self.predicted[k];
        p.0.clear();
        p.0.extend_from_slice(raw);
        p.1.clone_from(local);
        p.2 = slot;
    }

    /// Where the `nth` attribute, named `name`, of the element whose key
    /// is `self.key[..prefix_len]` goes; leaves its key in `self.key`
    /// unless the last record's `nth` attribute had the same name (the
    /// record's own attributes, like its children, mostly come as the
    /// last record's did) and a mapped or skipped slot.
    fn attribute_slot(&mut self, nth: usize, name: &[u8], prefix_len: usize) -> Slot {
        let own = prefix_len == 0;
        if own
            && let Some((n, slot)) = self.predicted_attrs.get(nth)
            && n.as_slice() == name
            && !matches!(slot, Slot::Extra(_))
        {
            return *slot;
        }
        self.key.truncate(prefix_len);
        if prefix_len > 0 {
            self.key.push('/');
        }
        self.key.push('@');
        let local = match memchr::memchr(b':', name) {
            Some(i) => &name[i + 1..],
            None => name,
        };
        push_name(local, &mut self.key);
        let slot = self.slot(&self.key, own);
        if own {
            if self.predicted_attrs.len() <= nth {
                self.predicted_attrs.resize_with(nth + 1, Default::default);
            }
            let p = &mut self.predicted_attrs[nth];
            p.0.clear();
            p.0.extend_from_slice(name);
            p.1 = slot;
        }
        slot
    }

    /// Stores `value` in `slot` (found for `self.key`) of the current
    /// record.
    fn keep(&mut self, slot: Slot, value: &str) {
        if let Some((_, fields)) = self.record.as_mut() {
            match slot {
                Slot::Wanted(i) => fields.set_wanted(i, value),
                Slot::Extra(new) => fields.set_extra(&self.key, value, new),
                Slot::Skip => {}
            }
        }
    }

    /// Whether text read now is kept: inside a record that is not too
    /// large, in an element whose text a field takes.
    fn keeps_text(&self) -> bool {
        self.record.is_some()
            && !self.too_large
            && self
                .depth
                .checked_sub(1)
                .is_some_and(|d| !matches!(self.slots[d], Slot::Skip))
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
        feed: &mut Feed<'_, XmlRecord>,
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
                        self.slots.push(Slot::Skip);
                    }
                    self.slots[self.depth] = Slot::Skip;
                    // A record's k-th child is most often named as the last
                    // record's was: then its name and slot are known.
                    let raw = e.name();
                    let raw = raw.as_ref();
                    let child = self.record.as_ref().map(|r| r.0) == Some(self.depth);
                    let mut known = None;
                    if child && !self.too_large {
                        let k = self.child;
                        self.child += 1;
                        if let Some((name, local, slot)) = self.predicted.get(k)
                            && name.as_slice() == raw
                        {
                            self.names[self.depth].clone_from(local);
                            known = Some(*slot);
                        }
                    }
                    if known.is_none() {
                        local_into(raw, &mut self.names[self.depth]);
                    }
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
                        let mut fields = feed
                            .spare()
                            .unwrap_or_else(|| XmlRecord::new(self.wanted.clone()));
                        fields.clear();
                        self.record = Some((self.depth, fields));
                        self.record_start = pos;
                        self.child = 0;
                    }
                    if let Some(slot) = known
                        && e.attributes_raw().is_empty()
                    {
                        self.slots[self.depth - 1] = slot;
                        self.text.clear();
                    } else if let Some(record_depth) = self.record.as_ref().map(|r| r.0)
                        && !self.too_large
                    {
                        self.relative_key(record_depth);
                        if self.depth > record_depth {
                            let slot = self.slot(&self.key, self.depth == record_depth + 1);
                            self.slots[self.depth - 1] = slot;
                            if child {
                                self.predict(self.child - 1, raw, slot);
                            }
                        }
                        let prefix_len = self.key.len();
                        let mut nth = 0;
                        for a in e.attributes().filter_map(|a| a.ok()) {
                            let name = a.key.as_ref();
                            if name.starts_with(b"xmlns") {
                                continue;
                            }
                            let slot = self.attribute_slot(nth, name, prefix_len);
                            nth += 1;
                            if !matches!(slot, Slot::Skip) {
                                let v = a
                                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                    .unwrap_or_default();
                                self.keep(slot, &v);
                            }
                        }
                        self.text.clear();
                    }
                    if empty {
                        self.end_element(count, reader.buffer_position(), guard, feed)?;
                    }
                }
                Event::Text(t) if self.keeps_text() => {
                    self.text.push_str(
                        &t.xml10_content()
                            .map_err(|e| format_err(format!("bad text near byte {pos}: {e}")))?,
                    );
                }
                Event::CData(t) if self.keeps_text() => {
                    self.text.push_str(
                        &t.decode()
                            .map_err(|e| format_err(format!("bad CDATA near byte {pos}: {e}")))?,
                    );
                }
                Event::GeneralRef(r) if self.keeps_text() => {
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
        feed: &mut Feed<'_, XmlRecord>,
    ) -> Result<(), NormalizeError> {
        if let Some(record_depth) = self.record.as_ref().map(|r| r.0) {
            if self.depth > record_depth {
                // The innermost text wins; an element with only children
                // keeps what its children recorded.
                match (self.slots[self.depth - 1], self.record.as_mut()) {
                    (Slot::Wanted(i), Some((_, fields))) => fields.set_wanted(i, &self.text),
                    (Slot::Extra(new), Some(_)) => {
                        self.relative_key(record_depth);
                        if let Some((_, fields)) = self.record.as_mut() {
                            fields.set_extra(&self.key, &self.text, new);
                        }
                    }
                    _ => {}
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
                let size = fields.size();
                feed.push(count, size, fields)
                    .map_err(|Stopped| handoff::stopped(""))?;
                guard.record_ended_here();
            }
        }
        self.depth = self.depth.saturating_sub(1);
        Ok(())
    }
}

//! The XML decoder, streaming with quick-xml.
//!
//! Records are the elements at `record_path` (local names from the root,
//! e.g. `/export/events/event`; namespace prefixes are ignored, so
//! `<ns:event>` matches `event`). A column's field is a child element
//! (`status`), a nested one (`task/id`), an attribute of the record
//! (`@id`) or of a child (`task/@id`). DTDs are refused, so no entity can
//! expand; only the five predefined entities and character references are
//! read. Nesting deeper than `max_xml_depth` fails the file. An error row's
//! line is the record's ordinal; its reason gives the byte offset.

use super::output::Output;
use super::sink::{Fields, Key, RowSink};
use super::{FileContext, NormalizeError, NormalizeStats, RecordGuard};
use crate::config::Job;
use quick_xml::events::Event;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::BufRead;

struct XmlFields<'a> {
    values: &'a HashMap<String, String>,
}

impl Fields for XmlFields<'_> {
    fn get(&self, key: &Key) -> Option<Cow<'_, str>> {
        match key {
            Key::Name(n) => self.values.get(n).map(|v| Cow::Borrowed(v.as_str())),
            _ => None,
        }
    }

    fn raw(&self) -> String {
        let mut pairs: Vec<_> = self.values.iter().collect();
        pairs.sort();
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn local(name: &[u8]) -> String {
    let n = match name.iter().position(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    String::from_utf8_lossy(n).into_owned()
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
    let mut sink = RowSink::new(job, ctx, out, |name, _| {
        Ok(Key::Name(name.trim_start_matches('/').to_string()))
    })?;
    let mut reader = quick_xml::Reader::from_reader(input);
    reader.config_mut().trim_text(false);
    let format_err = |reason: String| NormalizeError::Format {
        path: ctx.path.clone(),
        reason,
    };
    let mut buf = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    // Inside a record: its depth, its values, the text being collected.
    let mut record: Option<(usize, HashMap<String, String>)> = None;
    let mut text = String::new();
    let mut count = 0u64;
    let mut record_start = 0u64;
    loop {
        let pos = reader.buffer_position();
        let event = reader.read_event_into(&mut buf).map_err(|e| {
            format_err(format!(
                "not well-formed XML near byte {}: {e}",
                reader.error_position()
            ))
        })?;
        match event {
            Event::DocType(_) => {
                return Err(format_err(
                    "the document has a DTD (<!DOCTYPE …>); DTDs are refused so that no entity can expand".into(),
                ));
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = local(e.name().as_ref());
                stack.push(name);
                if stack.len() > max_depth {
                    return Err(format_err(format!(
                        "elements nest deeper than max_xml_depth ({max_depth}) near byte {pos}"
                    )));
                }
                let attrs: Vec<(String, String)> = e
                    .attributes()
                    .filter_map(|a| a.ok())
                    .filter(|a| !a.key.as_ref().starts_with(b"xmlns"))
                    .map(|a| {
                        let v = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .map(|v| v.into_owned())
                            .unwrap_or_default();
                        (local(a.key.as_ref()), v)
                    })
                    .collect();
                if record.is_none()
                    && stack.len() == record_path.len()
                    && stack.iter().zip(record_path).all(|(a, b)| a == b)
                {
                    count += 1;
                    record_start = pos;
                    let mut values = HashMap::new();
                    for (k, v) in attrs {
                        values.insert(format!("@{k}"), v);
                    }
                    record = Some((stack.len(), values));
                    text.clear();
                } else if let Some((depth, values)) = record.as_mut() {
                    let rel = stack[*depth..].join("/");
                    for (k, v) in attrs {
                        values.insert(format!("{rel}/@{k}"), v);
                    }
                    text.clear();
                }
                if empty {
                    end_element(
                        &mut stack,
                        &mut record,
                        &mut text,
                        &mut sink,
                        count,
                        record_start,
                        guard,
                    )?;
                }
            }
            Event::Text(t) if record.is_some() => {
                text.push_str(
                    &t.xml10_content()
                        .map_err(|e| format_err(format!("bad text near byte {pos}: {e}")))?,
                );
            }
            Event::CData(t) if record.is_some() => {
                text.push_str(
                    &t.decode()
                        .map_err(|e| format_err(format!("bad CDATA near byte {pos}: {e}")))?,
                );
            }
            Event::GeneralRef(r) if record.is_some() => {
                if let Some(c) = r.resolve_char_ref().ok().flatten() {
                    text.push(c);
                } else {
                    let name = r.decode().map_err(|e| format_err(e.to_string()))?;
                    match predefined(&name) {
                        Some(c) => text.push(c),
                        None => {
                            return Err(format_err(format!(
                                "unknown entity &{name}; near byte {pos} (only the predefined entities are read)"
                            )));
                        }
                    }
                }
            }
            Event::End(_) => end_element(
                &mut stack,
                &mut record,
                &mut text,
                &mut sink,
                count,
                record_start,
                guard,
            )?,
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if record.is_some() {
        return Err(format_err(format!(
            "the document ends inside record {count}"
        )));
    }
    sink.finish()
}

#[allow(clippy::too_many_arguments)]
fn end_element<W: Output>(
    stack: &mut Vec<String>,
    record: &mut Option<(usize, HashMap<String, String>)>,
    text: &mut String,
    sink: &mut RowSink<'_, W>,
    count: u64,
    record_start: u64,
    guard: &RecordGuard,
) -> Result<(), NormalizeError> {
    if let Some((depth, values)) = record.as_mut() {
        if stack.len() > *depth {
            let rel = stack[*depth..].join("/");
            // The innermost text wins; an element with only children
            // keeps what its children recorded.
            values.entry(rel).or_insert_with(|| std::mem::take(text));
            text.clear();
        } else if stack.len() == *depth {
            let (_, values) = record.take().expect("inside a record");
            let _ = record_start;
            sink.push(count, &XmlFields { values: &values })?;
            guard.record_ended_here();
        }
    }
    stack.pop();
    Ok(())
}

//! Drift: how one file's fields and values differ from the job's mapping
//! — fields the mapping does not have, mapped fields the file lacks, and
//! values that do not fit their column's type or length — and what the
//! job's contract ([`Contract`]) did about each.
//!
//! The [`Tracker`] lives in the row sink and sees every record; what it
//! found is the file's [`Drift`], which the pipeline records in
//! `ferry_schema_changes` and, under `evolve`, turns into DDL.

use super::infer::TypeGuess;
use crate::config::{Contract, Job, Policy};
use crate::schema::{ColumnSource, ColumnType};
use std::collections::{HashMap, HashSet};

/// New fields tracked one by one per file; more are only counted.
pub const MAX_NEW_FIELDS: usize = 64;

/// New fields a worker of a parallel row writer tracks (its records are
/// a share of the file's, so the file's first [`MAX_NEW_FIELDS`] may come
/// late in its share).
pub const WORKER_NEW_FIELDS: usize = 4096;

/// A field of the file the mapping does not have.
#[derive(Debug, Clone, PartialEq)]
pub struct NewField {
    /// As the file names it.
    pub name: String,
    /// Records that had it.
    pub records: u64,
    /// Line of the first record that had it.
    pub first_line: u64,
    /// The narrowest type its values fit (kept under `evolve` only).
    pub guess: Option<TypeGuess>,
}

/// A mapped field the file does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingField {
    /// The field.
    pub field: String,
    /// The column it maps to.
    pub column: String,
}

/// What was done with the values of one column that did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MisfitAction {
    /// Their rows were rejected.
    Rejected,
    /// They were loaded as NULL (`types = "discard_value"`).
    Nulled,
    /// They were kept for a wider VARCHAR (`types = "evolve"`).
    Widen,
}

/// Values of one column that did not fit its type or length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misfit {
    /// The column.
    pub column: String,
    /// Its type as mapped.
    pub column_type: ColumnType,
    /// How many values.
    pub count: u64,
    /// Line of the first.
    pub first_line: u64,
    /// Why the first did not fit.
    pub reason: String,
    /// The longest value, in bytes.
    pub widest: usize,
    /// What was done.
    pub action: MisfitAction,
}

/// One file's drift from its mapping.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drift {
    /// New fields, in the order first seen (at most [`MAX_NEW_FIELDS`]).
    pub new_fields: Vec<NewField>,
    /// Distinct new fields beyond those.
    pub more_new_fields: u64,
    /// Mapped fields the file lacks (CSV: not in the header; JSON and XML:
    /// no record had a value).
    pub missing: Vec<MissingField>,
    /// Columns with values that did not fit.
    pub misfits: Vec<Misfit>,
    /// Records whose unmapped fields went into the capture column.
    pub captured: u64,
}

impl Drift {
    /// Whether the file matched its mapping.
    pub fn is_empty(&self) -> bool {
        self.new_fields.is_empty() && self.missing.is_empty() && self.misfits.is_empty()
    }

    /// A one-line summary for logs and `ferry files`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.new_fields.is_empty() {
            let names: Vec<&str> = self.new_fields.iter().map(|f| f.name.as_str()).collect();
            let more = match self.more_new_fields {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            parts.push(format!("new fields {}{more}", names.join(", ")));
        }
        if !self.missing.is_empty() {
            let names: Vec<&str> = self.missing.iter().map(|m| m.field.as_str()).collect();
            parts.push(format!("missing fields {}", names.join(", ")));
        }
        for m in &self.misfits {
            parts.push(format!(
                "{} values of {} did not fit {}",
                m.count,
                m.column,
                m.column_type.sql()
            ));
        }
        parts.join("; ")
    }
}

/// What a record's unmapped fields do under the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNew {
    /// Noted (names and counts) and left out.
    Note,
    /// Noted with a type guess: the job adds columns for them.
    Evolve,
    /// The file fails.
    Fail,
    /// The record is rejected.
    Reject,
    /// Kept in the capture column.
    Capture,
}

/// Follows one file's records for drift; owned by the row sink.
#[derive(Debug, Clone)]
pub struct Tracker {
    /// Top-level field names the mapping reads (a pointer's or path's
    /// first segment).
    mapped: HashSet<String>,
    /// Index into `drift.new_fields` by name.
    new_index: HashMap<String, usize>,
    /// Per column: a value was seen (JSON and XML missing fields).
    seen: Vec<bool>,
    /// Per column: its entry in `drift.misfits`.
    misfit_index: Vec<Option<usize>>,
    /// New fields tracked one by one.
    cap: usize,
    /// What unmapped fields do.
    pub on_new: OnNew,
    /// What values that do not fit do.
    pub types: Policy,
    /// What was found so far.
    pub drift: Drift,
}

impl Tracker {
    /// A tracker for `job`'s mapping and contract.
    pub fn new(job: &Job) -> Self {
        let mapped = job
            .columns
            .iter()
            .flat_map(|c| match &c.source {
                ColumnSource::Field(f) => vec![top_level(f).to_string()],
                ColumnSource::Expr(e) => {
                    e.fields.iter().map(|f| top_level(f).to_string()).collect()
                }
                _ => Vec::new(),
            })
            .collect();
        let Contract { columns, types, .. } = &job.contract;
        Tracker {
            mapped,
            new_index: HashMap::new(),
            seen: vec![false; job.columns.len()],
            misfit_index: vec![None; job.columns.len()],
            cap: MAX_NEW_FIELDS,
            on_new: match columns {
                None | Some(Policy::DiscardValue) => OnNew::Note,
                Some(Policy::Evolve) => OnNew::Evolve,
                Some(Policy::Freeze) => OnNew::Fail,
                Some(Policy::DiscardRow) => OnNew::Reject,
                Some(Policy::Capture) => OnNew::Capture,
            },
            types: types.unwrap_or(Policy::DiscardRow),
            drift: Drift::default(),
        }
    }

    /// Whether `name` (a record's top-level field) is mapped.
    pub fn is_mapped(&self, name: &str) -> bool {
        self.mapped.contains(name)
    }

    /// A record on `line` had the unmapped field `name` with `value`;
    /// returns its entry in the drift's new fields, if it has one.
    pub fn new_field(&mut self, name: &str, value: Option<&str>, line: u64) -> Option<usize> {
        let evolve = self.on_new == OnNew::Evolve;
        let i = match self.new_index.get(name) {
            Some(&usize::MAX) => return None,
            Some(&i) => i,
            None if self.drift.new_fields.len() < self.cap => {
                self.drift.new_fields.push(NewField {
                    name: name.to_string(),
                    records: 0,
                    first_line: line,
                    guess: evolve.then(TypeGuess::default),
                });
                let i = self.drift.new_fields.len() - 1;
                self.new_index.insert(name.to_string(), i);
                i
            }
            None => {
                self.drift.more_new_fields += 1;
                // Remembered, so that it is counted once.
                self.new_index.insert(name.to_string(), usize::MAX);
                return None;
            }
        };
        let f = &mut self.drift.new_fields[i];
        f.records += 1;
        if let Some(g) = &mut f.guess {
            g.observe(value);
        }
        Some(i)
    }

    /// A fixed-header file (CSV) lacks `field`, mapped to `column`.
    pub fn missing(&mut self, field: &str, column: &str) {
        self.drift.missing.push(MissingField {
            field: field.to_string(),
            column: column.to_string(),
        });
    }

    /// Column `i` had a value.
    pub fn saw(&mut self, i: usize) {
        self.seen[i] = true;
    }

    /// A value of column `i` on `line` did not fit; returns what to do
    /// with it.
    #[allow(clippy::too_many_arguments)]
    pub fn misfit(
        &mut self,
        i: usize,
        column: &str,
        column_type: ColumnType,
        code: i32,
        reason: &str,
        value: &str,
        line: u64,
        required: bool,
    ) -> MisfitAction {
        let action = match self.types {
            // Only a VARCHAR can be widened (Redshift alters no other
            // type), and only up to its maximum.
            Policy::Evolve
                if code == 1204
                    && matches!(column_type, ColumnType::Varchar(_))
                    && value.len() <= 65535 =>
            {
                MisfitAction::Widen
            }
            Policy::DiscardValue if !required => MisfitAction::Nulled,
            _ => MisfitAction::Rejected,
        };
        let misfits = &mut self.drift.misfits;
        let at = *self.misfit_index[i].get_or_insert_with(|| {
            misfits.push(Misfit {
                column: column.to_string(),
                column_type,
                count: 0,
                first_line: line,
                reason: reason.to_string(),
                widest: 0,
                action,
            });
            misfits.len() - 1
        });
        let m = &mut misfits[at];
        m.count += 1;
        m.widest = m.widest.max(value.len());
        // One value that cannot be widened makes the column's lot rejected.
        if action == MisfitAction::Rejected {
            m.action = MisfitAction::Rejected;
        }
        action
    }

    /// A copy for a worker of a parallel row writer, made before any
    /// record: it tracks up to [`WORKER_NEW_FIELDS`] new fields, so that
    /// the merged drift keeps the same first [`MAX_NEW_FIELDS`] as one
    /// tracker would, with their counts and type guesses over every record.
    /// What it holds already (a header's fields) stays here: the copy
    /// starts their counts from nothing, so that merging adds only what
    /// the worker saw.
    pub fn for_worker(&self) -> Tracker {
        let mut worker = Tracker {
            cap: WORKER_NEW_FIELDS,
            ..self.clone()
        };
        for f in &mut worker.drift.new_fields {
            f.records = 0;
            if let Some(g) = &mut f.guess {
                *g = TypeGuess::default();
            }
        }
        worker
    }

    /// Takes in what a worker's tracker ([`for_worker`](Self::for_worker))
    /// found in other records of the same file; call
    /// [`settle`](Self::settle) once all are in. Counts add up; the first
    /// line, and the reason given with it, is the earlier one. Missing
    /// fields of a header are the same in both and are kept once. The
    /// result is one tracker's exactly unless a worker saw more than
    /// [`WORKER_NEW_FIELDS`] distinct new fields (a file of thousands of
    /// distinct keys), when the tracked ones' counts may miss some records.
    pub fn merge(&mut self, other: Tracker) {
        for (seen, other) in self.seen.iter_mut().zip(&other.seen) {
            *seen |= *other;
        }
        self.drift.captured += other.drift.captured;
        for f in other.drift.new_fields {
            match self.new_index.get(&f.name) {
                Some(&usize::MAX) => {}
                Some(&i) => {
                    let mine = &mut self.drift.new_fields[i];
                    mine.records += f.records;
                    mine.first_line = mine.first_line.min(f.first_line);
                    if let (Some(g), Some(o)) = (&mut mine.guess, &f.guess) {
                        g.merge(o);
                    }
                }
                None => {
                    self.new_index
                        .insert(f.name.clone(), self.drift.new_fields.len());
                    self.drift.new_fields.push(f);
                }
            }
        }
        for (name, i) in other.new_index {
            if i == usize::MAX && !self.new_index.contains_key(&name) {
                self.new_index.insert(name, usize::MAX);
                self.drift.more_new_fields += 1;
            }
        }
        // Misfits: by column.
        for (col, at) in other.misfit_index.iter().enumerate() {
            let Some(at) = at else { continue };
            let m = &other.drift.misfits[*at];
            match self.misfit_index[col] {
                Some(mine) => {
                    let mine = &mut self.drift.misfits[mine];
                    mine.count += m.count;
                    if m.first_line < mine.first_line {
                        mine.first_line = m.first_line;
                        mine.reason.clone_from(&m.reason);
                    }
                    mine.widest = mine.widest.max(m.widest);
                    if m.action == MisfitAction::Rejected {
                        mine.action = MisfitAction::Rejected;
                    }
                }
                None => {
                    self.misfit_index[col] = Some(self.drift.misfits.len());
                    self.drift.misfits.push(m.clone());
                }
            }
        }
    }

    /// After [`merge`](Self::merge): new fields and misfits in the order
    /// first seen, the first [`MAX_NEW_FIELDS`] new fields kept and the
    /// rest only counted. A header's fields (line 1, before any record)
    /// keep their places.
    pub fn settle(&mut self) {
        // Misfits by first line; one line's, in the order they came.
        let mut order: Vec<(u64, usize, usize)> = self
            .misfit_index
            .iter()
            .enumerate()
            .filter_map(|(col, at)| at.map(|at| (self.drift.misfits[at].first_line, at, col)))
            .collect();
        order.sort_unstable();
        let mut misfits: Vec<Option<Misfit>> = std::mem::take(&mut self.drift.misfits)
            .into_iter()
            .map(Some)
            .collect();
        for (place, (_, at, col)) in order.into_iter().enumerate() {
            self.misfit_index[col] = Some(place);
            self.drift
                .misfits
                .push(misfits[at].take().expect("one misfit per column"));
        }
        self.drift.new_fields.sort_by_key(|f| f.first_line);
        let cut = MAX_NEW_FIELDS.min(self.drift.new_fields.len());
        for f in self.drift.new_fields.drain(cut..) {
            self.new_index.insert(f.name, usize::MAX);
            self.drift.more_new_fields += 1;
        }
        for (i, f) in self.drift.new_fields.iter().enumerate() {
            self.new_index.insert(f.name.clone(), i);
        }
        self.cap = MAX_NEW_FIELDS;
    }

    /// The file's drift, once every record is seen: mapped fields of a
    /// JSON or XML file that no record had join the missing ones.
    pub fn finish(mut self, job: &Job, records: u64, by_header: bool) -> Drift {
        if !by_header && records > 0 {
            for (col, seen) in job.columns.iter().zip(&self.seen) {
                if let (ColumnSource::Field(f), false) = (&col.source, seen) {
                    self.drift.missing.push(MissingField {
                        field: f.clone(),
                        column: col.name.to_string(),
                    });
                }
            }
        }
        self.drift
    }
}

/// The record-level field a mapped field reads: `/task/id` → `task`,
/// `task/@kind` → `task`, `@id` → `@id`, `status` → `status`.
pub fn top_level(field: &str) -> &str {
    let f = field.strip_prefix('/').unwrap_or(field);
    f.split('/').next().unwrap_or(f)
}

/// Appends `"name":value` to the JSON object being built in `out` (which
/// starts as `{`); `json` is the value's own JSON text when the input is
/// JSON, else `text` is written as a JSON string.
pub fn capture_into(out: &mut String, name: &str, text: Option<&str>, json: Option<&str>) {
    if out.len() > 1 {
        out.push(',');
    }
    push_json_string(out, name);
    out.push(':');
    match (json, text) {
        (Some(j), _) => out.push_str(j),
        (None, Some(t)) => push_json_string(out, t),
        (None, None) => out.push_str("null"),
    }
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_names() {
        assert_eq!(top_level("/task/id"), "task");
        assert_eq!(top_level("task/@kind"), "task");
        assert_eq!(top_level("@id"), "@id");
        assert_eq!(top_level("status"), "status");
    }

    #[test]
    fn captured_fields_are_valid_json() {
        let mut out = String::from("{");
        capture_into(&mut out, "a \"b\"", Some("x\ny\u{1}"), None);
        capture_into(&mut out, "n", None, Some("[1, 2]"));
        capture_into(&mut out, "z", None, None);
        out.push('}');
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["a \"b\""], "x\ny\u{1}");
        assert_eq!(v["n"], serde_json::json!([1, 2]));
        assert!(v["z"].is_null());
    }
}

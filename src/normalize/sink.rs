//! The row sink every decoder feeds: it maps one input record onto the
//! job's columns, checks and converts each value, and writes the staged CSV
//! line or an error row. Decoders only say how to find a field.

use super::drift::{self, MisfitAction, OnNew, Tracker};
use super::output::Output;
use super::{FileContext, MAX_KEPT_ERRORS, NormalizeError, NormalizeStats, RAW_CAP, RowError, cap};
use crate::config::{Job, Policy};
use crate::schema::{Canon, ColumnSource, ColumnType, coerce_column_into};
use std::borrow::Cow;
use std::io;

/// Where a decoder finds a column's input field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A positional field (CSV).
    Index(usize),
    /// A top-level member (JSON) or child element/attribute (XML).
    Name(String),
    /// A JSON pointer such as `/task/id`.
    Pointer(String),
    /// The file has no such field; the column's default applies.
    Missing,
}

/// What [`Fields::each_field`] calls per field: name, text (`None`:
/// null) and, from JSON, the value's JSON text.
pub type FieldVisit<'v> = dyn FnMut(&str, Option<Cow<'_, str>>, Option<&str>) + 'v;

/// One input record as a decoder sees it.
pub trait Fields {
    /// The value of `key`; `None` when absent or null.
    fn get(&self, key: &Key) -> Option<Cow<'_, str>>;
    /// The record as read, for error rows (capped by the caller).
    fn raw(&self) -> String;
    /// The value of `key` and whether the decoder parsed it as a JSON
    /// value (object, array, number or literal), so its text is valid
    /// JSON as it is and a JSON column need not check it again.
    fn get_value(&self, key: &Key) -> Option<(Cow<'_, str>, bool)> {
        self.get(key).map(|t| (t, false))
    }
    /// Every top-level field the record has, for drift: its name, its
    /// text (`None`: null) and, from JSON, its JSON text. Decoders with a
    /// fixed header (CSV) report theirs once instead
    /// ([`RowSink::header`]).
    fn each_field(&self, _visit: &mut FieldVisit<'_>) {}
    /// The names [`each_field`](Fields::each_field) visits, in the same
    /// order, without their values (the cheap check most records pass).
    fn each_name(&self, visit: &mut dyn FnMut(&str)) {
        self.each_field(&mut |name, _, _| visit(name));
    }
}

/// An emptied vector's allocation, to hold values of another lifetime
/// (the values of one row borrow from its record, so the vector cannot
/// be kept as it is from row to row; its memory can).
fn recycle<'b>(mut v: Vec<Option<Cow<'_, str>>>) -> Vec<Option<Cow<'b, str>>> {
    v.clear();
    v.into_iter().map(|_| None).collect()
}

/// `s` without leading and trailing white space; values that start and end
/// with a visible ASCII byte (nearly all) return at once. Unicode white
/// space starts and ends with bytes ≥ 0x80, so those take the full path.
fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(&a), Some(&z)) if a > b' ' && a < 0x80 && z > b' ' && z < 0x80 => s,
        _ => s.trim(),
    }
}

/// `n` in decimal, in `buf` (no allocation, no formatter).
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("ASCII digits")
}

/// How each column gets its value.
#[derive(Clone)]
enum Plan {
    Field(Key),
    SourceFile,
    SourceLine,
    IngestTime,
    Constant(String),
    Captured,
    /// The keys of the expression's fields.
    Expr(Vec<Key>),
}

/// A worker's output: staged CSV lines of whole records, how many, and
/// the records it rejected, in order.
#[derive(Debug, Default)]
pub struct Chunk {
    bytes: Vec<u8>,
    rows: u64,
    rejects: Vec<RowError>,
}

impl io::Write for Chunk {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Output for Chunk {
    fn record_end(&mut self) -> io::Result<()> {
        self.rows += 1;
        Ok(())
    }

    fn rejected(&mut self, error: &RowError) -> io::Result<()> {
        self.rejects.push(error.clone());
        Ok(())
    }
}

/// Maps records and writes staged CSV.
pub struct RowSink<'j, W: Output> {
    job: &'j Job,
    ctx: &'j FileContext,
    plan: Vec<Plan>,
    out: W,
    line: Vec<u8>,
    /// Per column: its canonical text never needs CSV quoting.
    plain: Vec<bool>,
    /// Drift from the mapping, under the job's contract.
    tracker: Tracker,
    /// A fixed header's unmapped fields (their entry in the drift's new
    /// fields, and where they are); `None`: fields come per record.
    header_extras: Option<Vec<(usize, Key)>>,
    /// Scratch for the capture column's JSON object.
    captured: String,
    /// Reused from row to row: the row's values (empty between rows) …
    values: Vec<Option<Cow<'static, str>>>,
    /// … and per column, a buffer for a canonical text that differs
    /// from its input (a timestamp in UTC, say).
    owned: Vec<String>,
    /// The field names of the last record whose fields were all mapped
    /// (records of one file mostly share theirs): a record with the same
    /// names needs no drift check.
    shape: Option<Vec<String>>,
    /// What has been written and rejected so far.
    pub stats: NormalizeStats,
}

impl<'j, W: Output> RowSink<'j, W> {
    /// A sink for `job`; `key_of` resolves each field source to a key
    /// (a decoder with a header turns names into positions).
    pub fn new(
        job: &'j Job,
        ctx: &'j FileContext,
        out: W,
        mut key_of: impl FnMut(&str, &crate::schema::Column) -> Result<Key, NormalizeError>,
    ) -> Result<Self, NormalizeError> {
        let mut plan = Vec::with_capacity(job.columns.len());
        for col in &job.columns {
            plan.push(match &col.source {
                ColumnSource::Field(f) => Plan::Field(key_of(f, col)?),
                ColumnSource::SourceFile => Plan::SourceFile,
                ColumnSource::SourceLine => Plan::SourceLine,
                ColumnSource::IngestTime => Plan::IngestTime,
                ColumnSource::Constant(c) => Plan::Constant(c.clone()),
                ColumnSource::Captured => Plan::Captured,
                ColumnSource::Expr(e) => Plan::Expr(
                    e.fields
                        .iter()
                        .map(|f| key_of(f, col))
                        .collect::<Result<_, _>>()?,
                ),
            });
        }
        Ok(RowSink {
            job,
            ctx,
            plan,
            out,
            line: Vec::with_capacity(1024),
            plain: job
                .columns
                .iter()
                .map(|c| {
                    !matches!(
                        c.column_type,
                        ColumnType::Varchar(_) | ColumnType::Json | ColumnType::Super
                    )
                })
                .collect(),
            tracker: Tracker::new(job),
            header_extras: None,
            captured: String::new(),
            values: Vec::with_capacity(job.columns.len()),
            owned: vec![String::new(); job.columns.len()],
            shape: None,
            stats: NormalizeStats::default(),
        })
    }

    /// A fixed header (CSV): its fields the mapping does not have are the
    /// file's new fields, read by position from each record. Under
    /// `contract.columns = "freeze"` any such field fails the file here.
    pub fn header(&mut self, header: &[String]) -> Result<(), NormalizeError> {
        let mut extras = Vec::new();
        for (i, name) in header.iter().enumerate() {
            if name.is_empty() || self.tracker.is_mapped(name) {
                continue;
            }
            if let Some(at) = self.tracker.new_field(name, None, 1) {
                self.tracker.drift.new_fields[at].records = 0;
                extras.push((at, Key::Index(i)));
            }
        }
        if self.tracker.on_new == OnNew::Fail && !self.tracker.drift.new_fields.is_empty() {
            let names: Vec<&str> = self
                .tracker
                .drift
                .new_fields
                .iter()
                .map(|f| f.name.as_str())
                .collect();
            return Err(self.frozen_fields(1, &names));
        }
        self.header_extras = Some(extras);
        Ok(())
    }

    /// Threads to map and write this file's rows on: the job's
    /// `row_threads`, or one when the output takes rows as values rather
    /// than CSV text (Parquet staging).
    pub(super) fn row_threads(&self) -> usize {
        if self.out.takes_csv() {
            self.job.row_threads.max(1)
        } else {
            1
        }
    }

    /// A sink like this one, made before any record, that writes to `out`
    /// instead: a worker of a parallel row writer, whose output the
    /// assembler hands on with [`take_chunk`](Self::take_chunk) and whose
    /// drift it takes in with [`absorb`](Self::absorb).
    pub(super) fn fork<V: Output>(&self, out: V) -> RowSink<'j, V> {
        RowSink {
            job: self.job,
            ctx: self.ctx,
            plan: self.plan.clone(),
            out,
            line: Vec::with_capacity(1024),
            plain: self.plain.clone(),
            tracker: self.tracker.for_worker(),
            header_extras: self.header_extras.clone(),
            captured: String::new(),
            values: Vec::with_capacity(self.job.columns.len()),
            owned: vec![String::new(); self.job.columns.len()],
            shape: None,
            stats: NormalizeStats::default(),
        }
    }

    /// Replaces the output (a worker's filled chunk for an empty one).
    pub(super) fn swap_out(&mut self, out: W) -> W {
        std::mem::replace(&mut self.out, out)
    }

    /// Writes a worker's chunk: its staged rows, as they are, and its
    /// rejected records, counted and kept as if rejected here.
    pub(super) fn take_chunk(&mut self, chunk: &mut Chunk) -> Result<(), NormalizeError> {
        self.out
            .write_all(&chunk.bytes)
            .and_then(|()| self.out.record_end())
            .map_err(|source| self.write_error(source))?;
        self.stats.rows += chunk.rows;
        for e in chunk.rejects.drain(..) {
            self.rejected(e)?;
        }
        chunk.bytes.clear();
        chunk.rows = 0;
        Ok(())
    }

    /// Takes in the drift a finished worker found (its rows and rejects
    /// came through [`take_chunk`](Self::take_chunk)); then
    /// [`settle`](Self::settle).
    pub(super) fn absorb<V: Output>(&mut self, worker: RowSink<'j, V>) {
        self.tracker.merge(worker.tracker);
    }

    /// Once every worker is absorbed: the drift as one sink would have it.
    pub(super) fn settle(&mut self) {
        self.tracker.settle();
    }

    /// A mapped field a fixed header lacks: NULL (or the column's default)
    /// under a contract that tolerates it, recorded as drift.
    pub fn header_lacks(&mut self, field: &str, column: &str) {
        self.tracker.missing(field, column);
    }

    fn frozen_fields(&self, line: u64, names: &[&str]) -> NormalizeError {
        NormalizeError::Drift {
            path: self.ctx.path.clone(),
            reason: format!(
                "line {line}: field(s) {} are not in the mapping (contract.columns = \"freeze\"); to accept them, map them in the job's columns, or set contract.columns to \"evolve\", \"capture\" or \"discard_value\"",
                names.join(", ")
            ),
        }
    }

    /// The record's unmapped fields, under the contract: noted, and for
    /// `capture` written as JSON into `self.captured` (`{}` when none).
    /// Returns the first unmapped field's name when the record must be
    /// rejected (`discard_row`).
    fn unmapped(
        &mut self,
        line: u64,
        fields: &dyn Fields,
    ) -> Result<Option<String>, NormalizeError> {
        let on_new = self.tracker.on_new;
        let capture = on_new == OnNew::Capture;
        if self.header_extras.is_none() && self.all_mapped(fields) {
            self.captured.clear();
            return Ok(None);
        }
        if capture {
            self.captured.clear();
            self.captured.push('{');
        }
        let mut first: Option<String> = None;
        if let Some(extras) = &self.header_extras {
            if extras.is_empty() {
                return Ok(None);
            }
            for (at, key) in extras {
                let value = fields.get(key);
                let value = value.as_deref().filter(|v| !v.is_empty());
                let f = &mut self.tracker.drift.new_fields[*at];
                if value.is_some() {
                    f.records += 1;
                }
                if let Some(g) = &mut f.guess {
                    g.observe(value);
                }
                if capture && value.is_some() {
                    drift::capture_into(&mut self.captured, &f.name, value, None);
                }
                if first.is_none() && value.is_some() {
                    first = Some(f.name.clone());
                }
            }
        } else {
            let tracker = &mut self.tracker;
            let captured = &mut self.captured;
            let mut names: Vec<String> = Vec::new();
            fields.each_field(&mut |name, text, json| {
                if tracker.is_mapped(name) {
                    return;
                }
                let text = text.as_deref().filter(|t| !t.trim().is_empty());
                if text.is_none() && json.is_none_or(|j| j == "null") {
                    return;
                }
                tracker.new_field(name, text, line);
                if capture {
                    drift::capture_into(captured, name, text, json);
                }
                if on_new == OnNew::Fail || (on_new == OnNew::Reject && names.is_empty()) {
                    names.push(name.to_string());
                }
            });
            if on_new == OnNew::Fail && !names.is_empty() {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                return Err(self.frozen_fields(line, &names));
            }
            first = names.into_iter().next();
        }
        if capture {
            self.captured.push('}');
            if self.captured.len() > 2 {
                self.tracker.drift.captured += 1;
            }
        }
        Ok(if on_new == OnNew::Reject { first } else { None })
    }

    /// Whether every field of `fields` is mapped: at once when its names
    /// are the last such record's, else by looking each up (and then
    /// remembered as the shape to compare with).
    fn all_mapped(&mut self, fields: &dyn Fields) -> bool {
        if let Some(shape) = &self.shape {
            let (mut i, mut same) = (0, true);
            fields.each_name(&mut |name| {
                same = same && shape.get(i).is_some_and(|s| s == name);
                i += 1;
            });
            if same && i == shape.len() {
                return true;
            }
        }
        let mut names = Vec::new();
        let mut all = true;
        fields.each_name(&mut |name| {
            all = all && self.tracker.is_mapped(name);
            names.push(name.to_string());
        });
        if all {
            self.shape = Some(names);
        }
        all
    }

    /// Records a rejected record that never got to mapping (ragged rows,
    /// unparsable JSON, records over the size limit).
    pub fn reject(
        &mut self,
        line: u64,
        code: i32,
        reason: String,
        raw: impl FnOnce() -> String,
    ) -> Result<(), NormalizeError> {
        self.rejected(RowError {
            line,
            column: None,
            code,
            reason,
            raw_line: cap(&raw()),
            raw_value: None,
        })
    }

    /// Counts a rejected record, hands it to the output and keeps the first
    /// [`MAX_KEPT_ERRORS`] in memory.
    pub(super) fn rejected(&mut self, mut error: RowError) -> Result<(), NormalizeError> {
        // Kept errors stay small whatever the input: reasons and raw
        // text are capped (reasons quote at most a prefix of a value).
        if error.reason.len() > RAW_CAP {
            error.reason = cap(&error.reason);
        }
        self.stats.rejected += 1;
        self.out
            .rejected(&error)
            .map_err(|source| self.write_error(source))?;
        if self.stats.errors.len() < MAX_KEPT_ERRORS {
            self.stats.errors.push(error);
        }
        Ok(())
    }

    fn write_error(&self, source: io::Error) -> NormalizeError {
        NormalizeError::Write {
            path: self.ctx.path.clone(),
            source,
        }
    }

    /// Maps, checks and writes one record starting on physical `line`.
    pub fn push<F: Fields>(&mut self, line: u64, fields: &F) -> Result<(), NormalizeError> {
        let mut digits = [0u8; 20];
        let line_text = decimal(line, &mut digits);
        if let Some(field) = self.unmapped(line, fields)? {
            return self.rejected(RowError {
                line,
                column: None,
                code: 1240,
                reason: format!(
                    "the record has field {field}, which the mapping does not (contract.columns = \"discard_row\")"
                ),
                raw_line: cap(&fields.raw()),
                raw_value: None,
            });
        }
        // Values borrow from the record, or from a per-column buffer
        // reused from row to row: no allocation per field or per row.
        let RowSink {
            job,
            ctx,
            plan,
            out,
            line: scratch,
            plain,
            tracker,
            captured,
            values: kept,
            owned,
            ..
        } = self;
        let mut values = recycle(std::mem::take(kept));
        let captured = (captured.len() > 2).then_some(captured.as_str());
        let mut failure: Option<RowError> = None;
        for (i, ((col, how), slot)) in job
            .columns
            .iter()
            .zip(plan.iter())
            .zip(owned.iter_mut())
            .enumerate()
        {
            let (raw, is_json): (Option<Cow<'_, str>>, bool) = match how {
                Plan::Field(key) => match fields.get_value(key) {
                    Some((v, json)) if col.trim => (
                        Some(match v {
                            Cow::Borrowed(b) => Cow::Borrowed(trim(b)),
                            Cow::Owned(o) => Cow::Owned(trim(&o).to_string()),
                        }),
                        json,
                    ),
                    Some((v, json)) => (Some(v), json),
                    None => (None, false),
                },
                Plan::SourceFile => (Some(Cow::Borrowed(ctx.path.as_str())), false),
                Plan::SourceLine => (Some(Cow::Borrowed(line_text)), false),
                Plan::IngestTime => (Some(Cow::Borrowed(ctx.ingest_time.as_str())), false),
                Plan::Constant(c) => (Some(Cow::Borrowed(c.as_str())), false),
                Plan::Captured => (captured.map(Cow::Borrowed), false),
                Plan::Expr(keys) => {
                    let ColumnSource::Expr(e) = &col.source else {
                        unreachable!("an Expr plan is made for an expr column")
                    };
                    let get = |k: usize| fields.get(&keys[k]);
                    match e.eval(&get) {
                        Ok(v) => (v, false),
                        Err(reason) => {
                            failure = Some(RowError {
                                line,
                                column: Some(col.name.to_string()),
                                code: crate::schema::expr::EXPR_ERROR,
                                reason: format!("column {}: {reason} (in {})", col.name, e.text),
                                raw_line: cap(&fields.raw()),
                                raw_value: None,
                            });
                            break;
                        }
                    }
                }
            };
            if raw.is_some() {
                tracker.saw(i);
            }
            // Empty input is NULL, except for a varchar that may be empty
            // (as Redshift loads it without EMPTYASNULL).
            let raw = match raw {
                Some(v)
                    if v.is_empty()
                        && (col.required || !matches!(col.column_type, ColumnType::Varchar(_))) =>
                {
                    None
                }
                other => other,
            };
            let raw = raw.or_else(|| col.default.as_deref().map(Cow::Borrowed));
            let value = match raw {
                None if col.required => {
                    failure = Some(RowError {
                        line,
                        column: Some(col.name.to_string()),
                        code: 1213,
                        reason: format!(
                            "column {} is required but the value is missing or empty",
                            col.name
                        ),
                        raw_line: cap(&fields.raw()),
                        raw_value: Some(String::new()),
                    });
                    break;
                }
                None => None,
                Some(v) => {
                    // A JSON value the decoder parsed is valid JSON as it is.
                    let canon = if is_json
                        && matches!(col.column_type, ColumnType::Json | ColumnType::Super)
                    {
                        Ok(Canon::Same)
                    } else {
                        coerce_column_into(&v, col, slot)
                    };
                    let checked = canon.map_err(|e| (e, true)).and_then(|c| match &col.rules {
                        Some(rules) => {
                            let text = match c {
                                Canon::Same => &*v,
                                Canon::Written => slot.as_str(),
                            };
                            rules
                                .check(text, col.column_type)
                                .map(|()| c)
                                .map_err(|e| (e, false))
                        }
                        None => Ok(c),
                    });
                    match checked {
                        Ok(Canon::Same) => Some(v),
                        Ok(Canon::Written) => Some(Cow::Borrowed(slot.as_str())),
                        // The value does not fit the type: the contract says.
                        Err((e, true)) if tracker.types == Policy::Freeze => {
                            return Err(NormalizeError::Drift {
                                path: ctx.path.clone(),
                                reason: format!(
                                    "line {line} column {}: {} (contract.types = \"freeze\"); to accept such values, change the column's type in the mapping and in the target, or set contract.types to \"evolve\" (VARCHAR lengths), \"discard_value\" or \"discard_row\"",
                                    col.name, e.reason
                                ),
                            });
                        }
                        Err((e, is_type)) => {
                            let action = if is_type {
                                tracker.misfit(
                                    i,
                                    col.name.as_str(),
                                    col.column_type,
                                    e.code,
                                    &e.reason,
                                    &v,
                                    line,
                                    col.required,
                                )
                            } else {
                                MisfitAction::Rejected
                            };
                            match action {
                                MisfitAction::Widen => {
                                    values.push(Some(v));
                                    continue;
                                }
                                MisfitAction::Nulled => {
                                    values.push(None);
                                    continue;
                                }
                                MisfitAction::Rejected => {}
                            }
                            failure = Some(RowError {
                                line,
                                column: Some(col.name.to_string()),
                                code: e.code,
                                reason: format!("column {}: {}", col.name, e.reason),
                                raw_line: cap(&fields.raw()),
                                raw_value: Some(cap(&v)),
                            });
                            break;
                        }
                    }
                }
            };
            values.push(value);
        }
        if let Some(f) = failure {
            *kept = recycle(values);
            return self.rejected(f);
        }
        // One write per record: a CSV line is built in a reused buffer.
        let written = out.row(&values, ctx.path.as_str(), line_text, plain, scratch);
        *kept = recycle(values);
        written.map_err(|source| NormalizeError::Write {
            path: ctx.path.clone(),
            source,
        })?;
        self.stats.rows += 1;
        Ok(())
    }

    /// Flushes the output and returns the counts and the file's drift.
    /// Under `contract.columns = "freeze"`, a mapped field no record had
    /// fails the file.
    pub fn finish(mut self) -> Result<NormalizeStats, NormalizeError> {
        self.out
            .flush()
            .map_err(|source| self.write_error(source))?;
        let records = self.stats.rows + self.stats.rejected;
        let by_header = self.header_extras.is_some();
        let mut drift = self.tracker.finish(self.job, records, by_header);
        if let Some(extras) = &self.header_extras
            && self
                .job
                .contract
                .columns
                .is_none_or(|p| p == Policy::DiscardValue)
        {
            // Noted only: every record had the header's fields.
            for (at, _) in extras {
                drift.new_fields[*at].records = records;
            }
        }
        if self.job.contract.columns == Some(Policy::Freeze) && !drift.missing.is_empty() {
            let names: Vec<String> = drift
                .missing
                .iter()
                .map(|m| format!("{} (column {})", m.field, m.column))
                .collect();
            return Err(NormalizeError::Drift {
                path: self.ctx.path.clone(),
                reason: format!(
                    "no record has the mapped field(s) {} (contract.columns = \"freeze\"); to accept files without them, give the columns a default, or set contract.columns to \"evolve\" or \"discard_value\"",
                    names.join(", ")
                ),
            });
        }
        self.stats.drift = drift;
        Ok(self.stats)
    }
}

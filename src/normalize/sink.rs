//! The row sink every decoder feeds: it maps one input record onto the
//! job's columns, checks and converts each value, and writes the staged CSV
//! line or an error row. Decoders only say how to find a field.

use super::output::Output;
use super::{
    FileContext, MAX_KEPT_ERRORS, NormalizeError, NormalizeStats, RAW_CAP, RowError, cap, write_row,
};
use crate::config::Job;
use crate::schema::coerce_column;
use crate::schema::{ColumnSource, ColumnType};
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

/// One input record as a decoder sees it.
pub trait Fields {
    /// The value of `key`; `None` when absent or null.
    fn get(&self, key: &Key) -> Option<Cow<'_, str>>;
    /// The record as read, for error rows (capped by the caller).
    fn raw(&self) -> String;
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
enum Plan {
    Field(Key),
    SourceFile,
    SourceLine,
    IngestTime,
    Constant(String),
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
                .map(|c| !matches!(c.column_type, ColumnType::Varchar(_) | ColumnType::Json))
                .collect(),
            stats: NormalizeStats::default(),
        })
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
    pub fn push(&mut self, line: u64, fields: &dyn Fields) -> Result<(), NormalizeError> {
        // Values borrow from the record where they can: no allocation per
        // field for the common case of text that needs no conversion.
        let mut values: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(self.job.columns.len());
        let mut digits = [0u8; 20];
        let line_text = decimal(line, &mut digits);
        let mut failure: Option<RowError> = None;
        for (col, how) in self.job.columns.iter().zip(&self.plan) {
            let raw: Option<Cow<'_, str>> = match how {
                Plan::Field(key) => fields.get(key).map(|v| {
                    if col.trim {
                        match v {
                            Cow::Borrowed(b) => Cow::Borrowed(trim(b)),
                            Cow::Owned(o) => Cow::Owned(trim(&o).to_string()),
                        }
                    } else {
                        v
                    }
                }),
                Plan::SourceFile => Some(Cow::Borrowed(self.ctx.path.as_str())),
                Plan::SourceLine => Some(Cow::Borrowed(line_text)),
                Plan::IngestTime => Some(Cow::Borrowed(self.ctx.ingest_time.as_str())),
                Plan::Constant(c) => Some(Cow::Borrowed(c.as_str())),
            };
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
                Some(v) => match coerce_column(&v, col).and_then(|c| match &col.rules {
                    Some(rules) => rules.check(&c, col.column_type).map(|()| c),
                    None => Ok(c),
                }) {
                    Ok(Cow::Borrowed(b)) if b.len() == v.len() => Some(v),
                    Ok(c) => Some(Cow::Owned(c.into_owned())),
                    Err(e) => {
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
                },
            };
            values.push(value);
        }
        if let Some(f) = failure {
            drop(values);
            return self.rejected(f);
        }
        let extra = [
            (Some(self.ctx.path.as_str()), false),
            (Some(line_text), true),
        ];
        // One write per record: the line is built in a reused buffer.
        self.line.clear();
        write_row(
            &mut self.line,
            values
                .iter()
                .zip(&self.plain)
                .map(|(v, plain)| (v.as_deref(), *plain))
                .chain(extra),
        )
        .and_then(|()| self.out.write_all(&self.line))
        .and_then(|()| self.out.record_end())
        .map_err(|source| NormalizeError::Write {
            path: self.ctx.path.clone(),
            source,
        })?;
        self.stats.rows += 1;
        Ok(())
    }

    /// Flushes the output and returns the counts.
    pub fn finish(mut self) -> Result<NormalizeStats, NormalizeError> {
        self.out
            .flush()
            .map_err(|source| self.write_error(source))?;
        Ok(self.stats)
    }
}

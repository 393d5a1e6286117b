//! Flat Parquet files, read column by column.
//!
//! Most Parquet files are flat: every top-level field is a plain,
//! non-repeated value. Those skip the record API (a tree of owned fields
//! and names per row) and are read in batches straight from each column's
//! typed reader, values rendered into reused text slots and keyed by
//! position, as a CSV file's are. The text is exactly what the record
//! path writes (`parquet_in`'s rules), so a file loads the same whichever
//! path reads it; a file with a column this path does not know how to
//! render (groups, lists, times, half floats) goes the record way.

use super::handoff::{self, Feed, Stopped};
use super::output::Output;
use super::sink::{Fields, Key, RowSink};
use super::{FileContext, NormalizeError, NormalizeStats};
use crate::config::Job;
use parquet::basic::{ConvertedType, LogicalType, Type as Physical};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, DataType, DoubleType, FixedLenByteArray,
    FixedLenByteArrayType, FloatType, Int32Type, Int64Type, Int96, Int96Type,
};
use parquet::file::reader::{ChunkReader, FileReader, SerializedFileReader};
use parquet::schema::types::{ColumnDescPtr, SchemaDescriptor};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::sync::Arc;

/// Records read from every column at a time: a batch crosses to the row
/// writer whole, so this sets what is in flight (1024: a 200 MB file
/// peaks at 55 MiB with two writers, 2048 at 65; no faster).
const BATCH: usize = 1024;

/// How a column's values become text (the record path's rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Render {
    Bool,
    /// A signed integer as written.
    Int,
    /// INT32 stored for a narrower or unsigned type: cast, then written.
    I8,
    I16,
    U8,
    U16,
    U32,
    /// INT64 holding an unsigned 64-bit number.
    U64,
    /// Days since 1970-01-01, as `YYYY-MM-DD`.
    Date,
    /// An unscaled integer with this many decimal places.
    Decimal(i32),
    TimestampMillis,
    TimestampMicros,
    /// INT96 (legacy nanosecond timestamps), to the millisecond.
    Int96,
    Float,
    /// UTF-8 text, checked.
    Text,
    /// Binary as lower-case hex.
    Hex,
}

/// How `descr`'s values render, or `None` when only the record path can.
fn render_of(descr: &ColumnDescPtr) -> Option<Render> {
    use ConvertedType as C;
    let scale = descr.type_scale();
    Some(match (descr.physical_type(), descr.converted_type()) {
        (Physical::BOOLEAN, _) => Render::Bool,
        (Physical::INT32, C::NONE | C::INT_32) => Render::Int,
        (Physical::INT32, C::INT_8) => Render::I8,
        (Physical::INT32, C::INT_16) => Render::I16,
        (Physical::INT32, C::UINT_8) => Render::U8,
        (Physical::INT32, C::UINT_16) => Render::U16,
        (Physical::INT32, C::UINT_32) => Render::U32,
        (Physical::INT32, C::DATE) => Render::Date,
        (Physical::INT32 | Physical::INT64, C::DECIMAL) => Render::Decimal(scale),
        (Physical::INT64, C::NONE | C::INT_64) => Render::Int,
        (Physical::INT64, C::UINT_64) => Render::U64,
        (Physical::INT64, C::TIMESTAMP_MILLIS) => Render::TimestampMillis,
        (Physical::INT64, C::TIMESTAMP_MICROS) => Render::TimestampMicros,
        (Physical::INT96, _) => Render::Int96,
        (Physical::FLOAT | Physical::DOUBLE, _) => Render::Float,
        (Physical::BYTE_ARRAY, C::UTF8 | C::ENUM | C::JSON) => Render::Text,
        (Physical::BYTE_ARRAY, C::NONE | C::BSON) => Render::Hex,
        (Physical::BYTE_ARRAY | Physical::FIXED_LEN_BYTE_ARRAY, C::DECIMAL) => {
            Render::Decimal(scale)
        }
        (Physical::FIXED_LEN_BYTE_ARRAY, C::NONE)
            if descr.logical_type_ref() != Some(&LogicalType::Float16) =>
        {
            Render::Hex
        }
        _ => return None,
    })
}

/// A flat file's columns, each with how its values render.
pub(super) type Columns = Vec<(ColumnDescPtr, Render)>;

/// The columns of a flat schema with how each renders, or `None` when the
/// schema has a group, a repeated field or a type only the record path
/// renders.
pub(super) fn flat_columns(schema: &SchemaDescriptor) -> Option<Columns> {
    let fields = schema.root_schema().get_fields();
    if fields.len() != schema.num_columns() || fields.iter().any(|f| !f.is_primitive()) {
        return None;
    }
    (0..schema.num_columns())
        .map(|i| {
            let descr = schema.column(i);
            if descr.max_rep_level() > 0 || descr.max_def_level() > 1 {
                return None;
            }
            render_of(&descr).map(|r| (descr, r))
        })
        .collect()
}

/// One value's text slot.
#[derive(Debug, Default, Clone)]
struct Cell {
    null: bool,
    text: String,
}

/// One row: its values by column position, reused from row to row.
#[derive(Debug)]
pub struct FlatRow {
    names: Arc<[String]>,
    cells: Vec<Cell>,
}

handoff::fields_record!(FlatRow);

impl Fields for FlatRow {
    fn get(&self, key: &Key) -> Option<Cow<'_, str>> {
        match key {
            Key::Index(i) => self
                .cells
                .get(*i)
                .filter(|c| !c.null)
                .map(|c| Cow::Borrowed(c.text.as_str())),
            _ => None,
        }
    }

    fn raw(&self) -> String {
        self.names
            .iter()
            .zip(&self.cells)
            .map(|(k, c)| format!("{k}={}", if c.null { "NULL" } else { &c.text }))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A column's typed reader.
enum Reader {
    Bool(ColumnReaderImpl<BoolType>),
    I32(ColumnReaderImpl<Int32Type>),
    I64(ColumnReaderImpl<Int64Type>),
    I96(ColumnReaderImpl<Int96Type>),
    F32(ColumnReaderImpl<FloatType>),
    F64(ColumnReaderImpl<DoubleType>),
    Bytes(ColumnReaderImpl<ByteArrayType>),
    Fixed(ColumnReaderImpl<FixedLenByteArrayType>),
}

/// A batch of one column's values, as read (typed, not yet text).
#[derive(Debug)]
enum Vals {
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    I96(Vec<Int96>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<ByteArray>),
    Fixed(Vec<FixedLenByteArray>),
}

/// One column of the current row group.
struct Column {
    reader: Reader,
    render: Render,
    optional: bool,
}

/// One column's values for a batch of records, with how they render.
#[derive(Debug)]
struct ColValues {
    vals: Vals,
    /// Definition levels of the batch (optional columns only).
    def: Vec<i16>,
    render: Render,
    optional: bool,
}

/// Reads `n` whole records of one typed column into `values` (and `def`).
fn read_n<T: DataType>(
    reader: &mut ColumnReaderImpl<T>,
    n: usize,
    def: Option<&mut Vec<i16>>,
    values: &mut Vec<T::T>,
) -> Result<(), String> {
    values.clear();
    let mut def = def;
    if let Some(d) = def.as_deref_mut() {
        d.clear();
    }
    let mut got = 0;
    while got < n {
        let (records, _, _) = reader
            .read_records(n - got, def.as_deref_mut(), None, values)
            .map_err(|e| e.to_string())?;
        if records == 0 {
            return Err(format!(
                "the column chunk ends after {got} of the row group's {n} remaining rows"
            ));
        }
        got += records;
    }
    Ok(())
}

impl Column {
    fn new(reader: ColumnReader, render: Render, optional: bool) -> Column {
        let reader = match reader {
            ColumnReader::BoolColumnReader(r) => Reader::Bool(r),
            ColumnReader::Int32ColumnReader(r) => Reader::I32(r),
            ColumnReader::Int64ColumnReader(r) => Reader::I64(r),
            ColumnReader::Int96ColumnReader(r) => Reader::I96(r),
            ColumnReader::FloatColumnReader(r) => Reader::F32(r),
            ColumnReader::DoubleColumnReader(r) => Reader::F64(r),
            ColumnReader::ByteArrayColumnReader(r) => Reader::Bytes(r),
            ColumnReader::FixedLenByteArrayColumnReader(r) => Reader::Fixed(r),
        };
        Column {
            reader,
            render,
            optional,
        }
    }

    /// Empty values of this column's type, to read into.
    fn empty(&self) -> ColValues {
        let vals = match self.reader {
            Reader::Bool(_) => Vals::Bool(Vec::new()),
            Reader::I32(_) => Vals::I32(Vec::new()),
            Reader::I64(_) => Vals::I64(Vec::new()),
            Reader::I96(_) => Vals::I96(Vec::new()),
            Reader::F32(_) => Vals::F32(Vec::new()),
            Reader::F64(_) => Vals::F64(Vec::new()),
            Reader::Bytes(_) => Vals::Bytes(Vec::new()),
            Reader::Fixed(_) => Vals::Fixed(Vec::new()),
        };
        ColValues {
            vals,
            def: Vec::new(),
            render: self.render,
            optional: self.optional,
        }
    }

    /// Reads the next `n` records into `into` (values of another column
    /// or type are replaced).
    fn fill(&mut self, n: usize, into: &mut ColValues) -> Result<(), String> {
        if std::mem::discriminant(&self.empty().vals) != std::mem::discriminant(&into.vals) {
            *into = self.empty();
        }
        into.render = self.render;
        into.optional = self.optional;
        let def = self.optional.then_some(&mut into.def);
        match (&mut self.reader, &mut into.vals) {
            (Reader::Bool(r), Vals::Bool(v)) => read_n(r, n, def, v),
            (Reader::I32(r), Vals::I32(v)) => read_n(r, n, def, v),
            (Reader::I64(r), Vals::I64(v)) => read_n(r, n, def, v),
            (Reader::I96(r), Vals::I96(v)) => read_n(r, n, def, v),
            (Reader::F32(r), Vals::F32(v)) => read_n(r, n, def, v),
            (Reader::F64(r), Vals::F64(v)) => read_n(r, n, def, v),
            (Reader::Bytes(r), Vals::Bytes(v)) => read_n(r, n, def, v),
            (Reader::Fixed(r), Vals::Fixed(v)) => read_n(r, n, def, v),
            _ => unreachable!("the values were made for this reader above"),
        }
    }
}

impl ColValues {
    /// Renders record `record` of the batch into `out` (`value`: the
    /// batch's next non-null value, advanced past it); `false`: NULL.
    fn render(&self, record: usize, value: &mut usize, out: &mut String) -> Result<bool, String> {
        if self.optional && self.def.get(record).is_none_or(|d| *d < 1) {
            return Ok(false);
        }
        let i = *value;
        *value += 1;
        let missing = || "the column has fewer values than its levels say".to_string();
        Ok(match &self.vals {
            Vals::Bool(v) => {
                out.push_str(if *v.get(i).ok_or_else(missing)? {
                    "true"
                } else {
                    "false"
                });
                true
            }
            Vals::I32(v) => int32(*v.get(i).ok_or_else(missing)?, self.render, out),
            Vals::I64(v) => int64(*v.get(i).ok_or_else(missing)?, self.render, out),
            Vals::I96(v) => timestamp(
                chrono::DateTime::from_timestamp_millis(v.get(i).ok_or_else(missing)?.to_millis()),
                out,
            ),
            Vals::F32(v) => {
                let _ = write!(out, "{}", v.get(i).ok_or_else(missing)?);
                true
            }
            Vals::F64(v) => {
                let _ = write!(out, "{}", v.get(i).ok_or_else(missing)?);
                true
            }
            Vals::Bytes(v) => bytes(v.get(i).ok_or_else(missing)?.data(), self.render, out)?,
            Vals::Fixed(v) => bytes(v.get(i).ok_or_else(missing)?.data(), self.render, out)?,
        })
    }
}

/// Up to `BATCH` records of every column, read on the decoder's thread
/// and turned into text rows by the row writer ([`emit`](handoff::Record::emit)):
/// reading pages stays with the decoder, rendering values (UTF-8 checks,
/// timestamps, numbers) moves to the writers.
#[derive(Debug)]
pub struct ColumnBatch {
    path: Arc<str>,
    names: Arc<[String]>,
    cols: Vec<ColValues>,
    rows: usize,
    /// The row rendered into and each column's next value, reused.
    scratch: std::cell::RefCell<(FlatRow, Vec<usize>)>,
}

impl ColumnBatch {
    fn new(path: Arc<str>, names: Arc<[String]>) -> Self {
        let row = FlatRow {
            cells: vec![Cell::default(); names.len()],
            names: names.clone(),
        };
        ColumnBatch {
            path,
            names,
            cols: Vec::new(),
            rows: 0,
            scratch: std::cell::RefCell::new((row, Vec::new())),
        }
    }

    /// Renders record `r` (on `line`) into `row`; `values` holds each
    /// column's next value (all 0 before record 0). Returns its bytes of
    /// text.
    fn render_row(
        &self,
        r: usize,
        line: u64,
        values: &mut [usize],
        row: &mut FlatRow,
    ) -> Result<usize, String> {
        let mut size = 0;
        for (((col, cell), name), v) in self
            .cols
            .iter()
            .zip(&mut row.cells)
            .zip(self.names.iter())
            .zip(values.iter_mut())
        {
            cell.text.clear();
            cell.null = !col
                .render(r, v, &mut cell.text)
                .map_err(|e| format!("row {line}, column {name}: {e}"))?;
            size += cell.text.len();
        }
        Ok(size)
    }
}

impl handoff::Record for ColumnBatch {
    fn emit<W: Output>(&self, line: u64, sink: &mut RowSink<'_, W>) -> Result<(), NormalizeError> {
        let mut scratch = self.scratch.borrow_mut();
        let (row, values) = &mut *scratch;
        values.clear();
        values.resize(self.cols.len(), 0);
        for r in 0..self.rows {
            let line = line + r as u64;
            self.render_row(r, line, values, row)
                .map_err(|reason| NormalizeError::Format {
                    path: self.path.to_string(),
                    reason,
                })?;
            sink.push(line, &*row)?;
        }
        Ok(())
    }

    /// A spare batch keeps its vectors but no values: a text value holds
    /// its page, and spares would otherwise keep pages long read.
    fn recycle(&mut self) {
        for c in &mut self.cols {
            match &mut c.vals {
                Vals::Bytes(v) => v.clear(),
                Vals::Fixed(v) => v.clear(),
                _ => {}
            }
        }
    }
}

fn int32(n: i32, render: Render, out: &mut String) -> bool {
    let mut b = itoa::Buffer::new();
    match render {
        Render::I8 => out.push_str(b.format(n as i8)),
        Render::I16 => out.push_str(b.format(n as i16)),
        Render::U8 => out.push_str(b.format(n as u8)),
        Render::U16 => out.push_str(b.format(n as u16)),
        Render::U32 => out.push_str(b.format(n as u32)),
        Render::Date => return date(n, out),
        Render::Decimal(scale) => return decimal(i128::from(n), scale, out),
        _ => out.push_str(b.format(n)),
    }
    true
}

fn int64(n: i64, render: Render, out: &mut String) -> bool {
    match render {
        Render::U64 => out.push_str(itoa::Buffer::new().format(n as u64)),
        Render::TimestampMillis => {
            return timestamp(chrono::DateTime::from_timestamp_millis(n), out);
        }
        Render::TimestampMicros => {
            return timestamp(chrono::DateTime::from_timestamp_micros(n), out);
        }
        Render::Decimal(scale) => return decimal(i128::from(n), scale, out),
        _ => out.push_str(itoa::Buffer::new().format(n)),
    }
    true
}

fn bytes(data: &[u8], render: Render, out: &mut String) -> Result<bool, String> {
    Ok(match render {
        Render::Text => {
            out.push_str(std::str::from_utf8(data).map_err(|e| {
                format!("a text value is not valid UTF-8 ({e}); the file's writer broke the UTF8 annotation")
            })?);
            true
        }
        Render::Decimal(scale) => match super::parquet_in::decimal_int(data) {
            Some(n) => decimal(n, scale, out),
            None => false,
        },
        _ => {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            out.reserve(data.len() * 2);
            for b in data {
                out.push(char::from(DIGITS[usize::from(b >> 4)]));
                out.push(char::from(DIGITS[usize::from(b & 15)]));
            }
            true
        }
    })
}

fn decimal(n: i128, scale: i32, out: &mut String) -> bool {
    match super::parquet_in::decimal_text(n, scale) {
        Some(t) => {
            out.push_str(&t);
            true
        }
        None => false,
    }
}

/// Days since 1970-01-01 as `YYYY-MM-DD` (`false`: out of range, NULL).
fn date(days: i32, out: &mut String) -> bool {
    let Some(t) = chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0) else {
        return false;
    };
    let d = t.date_naive();
    if (0..=9999).contains(&chrono::Datelike::year(&d)) {
        use chrono::Datelike;
        digits(out, d.year() as u32, 4);
        out.push('-');
        digits(out, d.month(), 2);
        out.push('-');
        digits(out, d.day(), 2);
    } else {
        let _ = write!(out, "{}", d.format("%Y-%m-%d"));
    }
    true
}

fn digits(out: &mut String, n: u32, width: u32) {
    for p in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10u32.pow(p) % 10) as u8));
    }
}

/// A UTC time as RFC 3339 with `Z` and as many fraction digits as it
/// needs (0, 3, 6 or 9), as `to_rfc3339_opts(AutoSi, true)` writes it
/// (`false`: out of range, NULL).
fn timestamp(t: Option<chrono::DateTime<chrono::Utc>>, out: &mut String) -> bool {
    use chrono::{Datelike, Timelike};
    let Some(utc) = t else { return false };
    // Fields of the naive time: each of `DateTime`'s would convert again.
    let t = utc.naive_utc();
    let nanos = t.nanosecond();
    if !(0..=9999).contains(&t.year()) || nanos >= 1_000_000_000 {
        out.push_str(&super::parquet_in::iso(utc));
        return true;
    }
    digits(out, t.year() as u32, 4);
    out.push('-');
    digits(out, t.month(), 2);
    out.push('-');
    digits(out, t.day(), 2);
    out.push('T');
    digits(out, t.hour(), 2);
    out.push(':');
    digits(out, t.minute(), 2);
    out.push(':');
    digits(out, t.second(), 2);
    if nanos != 0 {
        out.push('.');
        if nanos % 1_000_000 == 0 {
            digits(out, nanos / 1_000_000, 3);
        } else if nanos % 1_000 == 0 {
            digits(out, nanos / 1_000, 6);
        } else {
            digits(out, nanos, 9);
        }
    }
    out.push('Z');
    true
}

/// Decodes the flat file `reader` holds (see [`is_flat`]).
pub fn decode<W: Output + Send>(
    job: &Job,
    ctx: &FileContext,
    reader: SerializedFileReader<File>,
    columns: Columns,
    out: W,
) -> Result<NormalizeStats, NormalizeError> {
    let names: Arc<[String]> = columns.iter().map(|(d, _)| d.name().to_string()).collect();
    let mut lacking: Vec<(String, String)> = Vec::new();
    let mut sink = RowSink::new(job, ctx, out, |name, col| {
        let name = name.trim_start_matches('/');
        Ok(match names.iter().position(|n| n == name) {
            Some(i) => Key::Index(i),
            None => {
                lacking.push((name.to_string(), col.name.to_string()));
                Key::Missing
            }
        })
    })?;
    for (field, column) in &lacking {
        sink.header_lacks(field, column);
    }
    sink.header(&names)?;
    let path: Arc<str> = ctx.path.as_str().into();
    handoff::run(
        sink,
        &ctx.path,
        ctx.one_thread(),
        |feed: &mut Feed<'_, ColumnBatch>| {
            each_batch(
                &reader,
                &columns,
                feed,
                |feed| {
                    feed.spare()
                        .unwrap_or_else(|| ColumnBatch::new(path.clone(), names.clone()))
                },
                |feed, line, batch| {
                    feed.push_whole(line, batch)
                        .map_err(|Stopped| ReadError::Stopped(handoff::stopped(&ctx.path)))
                },
            )
            .map_err(|e| e.into_error(&ctx.path))
        },
    )
}

/// Why reading stopped: the file (a reason) or the receiver (its error).
enum ReadError<E> {
    File(String),
    Stopped(E),
}

impl ReadError<NormalizeError> {
    fn into_error(self, path: &str) -> NormalizeError {
        match self {
            ReadError::File(reason) => NormalizeError::Format {
                path: path.to_string(),
                reason,
            },
            ReadError::Stopped(e) => e,
        }
    }
}

/// Where rows go and where reused ones come from.
trait RowTarget {
    fn spare(&mut self) -> Option<FlatRow>;
}

/// Reads every record of the file, row group by row group, in batches of
/// up to `BATCH` records of every column, each read into a batch `spare`
/// gives and handed to `push` with the line of its first record (from 1).
fn each_batch<T, R: ChunkReader + 'static, E>(
    reader: &SerializedFileReader<R>,
    columns: &[(ColumnDescPtr, Render)],
    target: &mut T,
    mut spare: impl FnMut(&mut T) -> ColumnBatch,
    mut push: impl FnMut(&mut T, u64, ColumnBatch) -> Result<(), ReadError<E>>,
) -> Result<(), ReadError<E>> {
    let mut line = 0u64;
    for g in 0..reader.num_row_groups() {
        let group = reader
            .get_row_group(g)
            .map_err(|e| ReadError::File(format!("row group {g}: {e}")))?;
        let mut cols = Vec::with_capacity(columns.len());
        for (i, (descr, render)) in columns.iter().enumerate() {
            let r = group.get_column_reader(i).map_err(|e| {
                ReadError::File(format!("row group {g}, column {}: {e}", descr.name()))
            })?;
            cols.push(Column::new(r, *render, descr.max_def_level() > 0));
        }
        let mut left = usize::try_from(group.metadata().num_rows()).unwrap_or(0);
        while left > 0 {
            let n = left.min(BATCH);
            left -= n;
            let mut batch = spare(target);
            batch.cols.truncate(cols.len());
            for (i, (col, (descr, _))) in cols.iter_mut().zip(columns).enumerate() {
                if batch.cols.len() <= i {
                    batch.cols.push(col.empty());
                }
                col.fill(n, &mut batch.cols[i]).map_err(|e| {
                    ReadError::File(format!("row group {g}, column {}: {e}", descr.name()))
                })?;
            }
            batch.rows = n;
            push(target, line + 1, batch)?;
            line += n as u64;
        }
    }
    Ok(())
}

/// Reads every row of the file into rows handed to `push` (with the
/// row's line, from 1, and its bytes of text), rendered here.
fn each_row<T: RowTarget, R: ChunkReader + 'static, E>(
    reader: &SerializedFileReader<R>,
    columns: &[(ColumnDescPtr, Render)],
    names: &Arc<[String]>,
    target: &mut T,
    mut push: impl FnMut(&mut T, u64, usize, FlatRow) -> Result<(), E>,
) -> Result<(), ReadError<E>> {
    // One batch, read into again and again.
    let kept: std::cell::RefCell<Option<ColumnBatch>> = Default::default();
    let mut values = Vec::new();
    each_batch(
        reader,
        columns,
        target,
        |_| {
            kept.take()
                .unwrap_or_else(|| ColumnBatch::new("".into(), names.clone()))
        },
        |target, first, batch| {
            values.clear();
            values.resize(batch.cols.len(), 0);
            for r in 0..batch.rows {
                let line = first + r as u64;
                let mut row = target.spare().unwrap_or_else(|| FlatRow {
                    names: names.clone(),
                    cells: vec![Cell::default(); names.len()],
                });
                let size = batch
                    .render_row(r, line, &mut values, &mut row)
                    .map_err(ReadError::File)?;
                push(target, line, size, row).map_err(ReadError::Stopped)?;
            }
            kept.replace(Some(batch));
            Ok(())
        },
    )
}

/// Turns a staged Parquet part (as `parquet_out` writes it) back into
/// staged CSV lines, handing them to `emit` in chunks of about 256 KiB:
/// how the local backends, which COPY CSV, load Parquet staging.
pub fn staged_as_csv<R: ChunkReader + 'static>(
    part: R,
    mut emit: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    let reader = SerializedFileReader::new(part)
        .map_err(|e| bad(format!("not a readable Parquet part: {e}")))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let columns = flat_columns(&schema)
        .ok_or_else(|| bad("the Parquet part is not flat (not one ferry wrote)".into()))?;
    let names: Arc<[String]> = columns.iter().map(|(d, _)| d.name().to_string()).collect();
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    let mut spare = Recycle(None);
    each_row(&reader, &columns, &names, &mut spare, |spare, _, _, row| {
        super::csv_out::push_row(
            &mut buf,
            row.cells
                .iter()
                .map(|c| ((!c.null).then_some(c.text.as_str()), false)),
        );
        spare.0 = Some(row);
        if buf.len() >= CHUNK {
            emit(&buf)?;
            buf.clear();
        }
        Ok(())
    })
    .map_err(|e| match e {
        ReadError::File(reason) => bad(reason),
        ReadError::Stopped(e) => e,
    })?;
    if !buf.is_empty() {
        emit(&buf)?;
    }
    Ok(())
}

/// Bytes of CSV handed on at a time by [`staged_as_csv`].
const CHUNK: usize = 256 * 1024;

/// One row kept for reuse.
struct Recycle(Option<FlatRow>);

impl RowTarget for Recycle {
    fn spare(&mut self) -> Option<FlatRow> {
        self.0.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
    use parquet::schema::parser::parse_message_type;
    use std::io::{Seek, Write};

    impl RowTarget for Vec<Vec<Option<String>>> {
        fn spare(&mut self) -> Option<FlatRow> {
            None
        }
    }

    /// A small xorshift generator: the same values on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    const SCHEMA: &str = "message t {
        REQUIRED BOOLEAN b;
        OPTIONAL INT32 i32;
        OPTIONAL INT32 i8 (INT_8);
        OPTIONAL INT32 i16 (INT_16);
        OPTIONAL INT32 u8 (UINT_8);
        OPTIONAL INT32 u16 (UINT_16);
        OPTIONAL INT32 u32 (UINT_32);
        OPTIONAL INT32 d (DATE);
        OPTIONAL INT32 dec32 (DECIMAL(9,2));
        OPTIONAL INT64 i64;
        OPTIONAL INT64 u64 (UINT_64);
        OPTIONAL INT64 tsm (TIMESTAMP_MILLIS);
        OPTIONAL INT64 tsu (TIMESTAMP_MICROS);
        OPTIONAL INT64 dec64 (DECIMAL(18,4));
        OPTIONAL INT96 i96;
        OPTIONAL FLOAT f;
        REQUIRED DOUBLE g;
        OPTIONAL BYTE_ARRAY s (UTF8);
        REQUIRED BYTE_ARRAY e (ENUM);
        OPTIONAL BYTE_ARRAY j (JSON);
        OPTIONAL BYTE_ARRAY raw;
        OPTIONAL BYTE_ARRAY bdec (DECIMAL(20,3));
        OPTIONAL FIXED_LEN_BYTE_ARRAY (16) fdec (DECIMAL(38,5));
        OPTIONAL FIXED_LEN_BYTE_ARRAY (4) fraw;
    }";

    fn write<T: DataType>(col: &mut SerializedColumnWriter<'_>, v: &[T::T], def: Option<&[i16]>) {
        col.typed::<T>().write_batch(v, def, None).unwrap();
    }

    /// Random values for every column, about one in five NULL, in row
    /// groups that end inside and on a batch's edge.
    fn random_file() -> File {
        let schema = Arc::new(parse_message_type(SCHEMA).unwrap());
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build(),
        );
        let mut file = tempfile::tempfile().unwrap();
        let mut w = SerializedFileWriter::new(file.try_clone().unwrap(), schema, props).unwrap();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for rows in [3000usize, BATCH, 1, 5000] {
            let mut rg = w.next_row_group().unwrap();
            let mut n = 0;
            while let Some(mut col) = rg.next_column().unwrap() {
                let def: Vec<i16> = (0..rows)
                    .map(|_| i16::from(!rng.next().is_multiple_of(5)))
                    .collect();
                let present = def.iter().filter(|d| **d == 1).count();
                let def = Some(def.as_slice());
                // A time within chrono's range, or any at all.
                let time = |rng: &mut Rng, unit: i64| -> i64 {
                    let r = rng.next();
                    match r % 3 {
                        0 => r as i64,
                        1 => (r % 10_000_000_000) as i64 * unit / 1000 * 1000,
                        _ => (r % 4_000_000_000_000) as i64 * unit - 1_000_000_000_000 * unit,
                    }
                };
                let bytes = |rng: &mut Rng, len: usize| -> Vec<u8> {
                    (0..len).map(|_| rng.next() as u8).collect()
                };
                match n {
                    0 => write::<BoolType>(
                        &mut col,
                        &(0..rows)
                            .map(|_| rng.next().is_multiple_of(2))
                            .collect::<Vec<_>>(),
                        None,
                    ),
                    1..=8 => {
                        let v: Vec<i32> = (0..present)
                            .map(|_| match (n, rng.next()) {
                                (7, r) if r % 2 == 0 => (r % 100_000) as i32,
                                (_, r) => r as i32,
                            })
                            .collect();
                        write::<Int32Type>(&mut col, &v, def);
                    }
                    9..=13 => {
                        let v: Vec<i64> = (0..present)
                            .map(|_| match n {
                                11 => time(&mut rng, 1),
                                12 => time(&mut rng, 1000),
                                13 => rng.next() as i64 % 1_000_000_000_000_000_000,
                                _ => rng.next() as i64,
                            })
                            .collect();
                        write::<Int64Type>(&mut col, &v, def);
                    }
                    14 => {
                        let v: Vec<Int96> = (0..present)
                            .map(|_| {
                                let mut t = Int96::new();
                                let r = rng.next();
                                t.set_data(
                                    r as u32,
                                    (r >> 32) as u32 % 20_000,
                                    2_440_588 + (rng.next() % 200_000) as u32 - 100_000,
                                );
                                t
                            })
                            .collect();
                        write::<Int96Type>(&mut col, &v, def);
                    }
                    15 => {
                        let v: Vec<f32> = (0..present)
                            .map(|_| f32::from_bits(rng.next() as u32))
                            .collect();
                        write::<FloatType>(&mut col, &v, def);
                    }
                    16 => {
                        let v: Vec<f64> = (0..rows)
                            .map(|_| match rng.next() {
                                r if r % 2 == 0 => f64::from_bits(r),
                                r => (r % 100_000) as f64 / 8.0,
                            })
                            .collect();
                        write::<DoubleType>(&mut col, &v, None);
                    }
                    17..=19 => {
                        let count = if n == 18 { rows } else { present };
                        let v: Vec<ByteArray> = (0..count)
                            .map(|_| {
                                let len = (rng.next() % 12) as usize;
                                let text: String = (0..len)
                                    .map(|_| {
                                        char::from_u32((rng.next() % 0x3000) as u32).unwrap_or('x')
                                    })
                                    .collect();
                                ByteArray::from(text.as_str())
                            })
                            .collect();
                        write::<ByteArrayType>(&mut col, &v, if n == 18 { None } else { def });
                    }
                    20 | 21 => {
                        let v: Vec<ByteArray> = (0..present)
                            .map(|_| {
                                let len = if n == 21 {
                                    1 + (rng.next() % 9) as usize
                                } else {
                                    (rng.next() % 9) as usize
                                };
                                ByteArray::from(bytes(&mut rng, len))
                            })
                            .collect();
                        write::<ByteArrayType>(&mut col, &v, def);
                    }
                    _ => {
                        let len = if n == 22 { 16 } else { 4 };
                        let v: Vec<FixedLenByteArray> = (0..present)
                            .map(|_| FixedLenByteArray::from(bytes(&mut rng, len)))
                            .collect();
                        write::<FixedLenByteArrayType>(&mut col, &v, def);
                    }
                }
                col.close().unwrap();
                n += 1;
            }
            rg.close().unwrap();
        }
        w.close().unwrap();
        file.flush().unwrap();
        file.rewind().unwrap();
        file
    }

    #[test]
    fn every_value_reads_as_the_record_path_reads_it() {
        let file = random_file();
        let reader = SerializedFileReader::new(file.try_clone().unwrap()).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let columns = flat_columns(&schema).expect("the test schema is flat");
        let names: Arc<[String]> = columns.iter().map(|(d, _)| d.name().to_string()).collect();
        let mut flat: Vec<Vec<Option<String>>> = Vec::new();
        let mut lines = Vec::new();
        each_row(
            &reader,
            &columns,
            &names,
            &mut flat,
            |rows, line, _, row| {
                lines.push(line);
                rows.push(
                    row.cells
                        .iter()
                        .map(|c| (!c.null).then(|| c.text.clone()))
                        .collect(),
                );
                Ok(())
            },
        )
        .map_err(|e| e.into_error("t.parquet").to_string())
        .unwrap();
        let want: Vec<Vec<Option<String>>> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|row| {
                row.unwrap()
                    .get_column_iter()
                    .map(|(_, f)| super::super::parquet_in::text(f))
                    .collect()
            })
            .collect();
        assert_eq!(flat.len(), 3000 + BATCH + 1 + 5000);
        assert_eq!(lines, (1..=flat.len() as u64).collect::<Vec<_>>());
        for (i, (got, want)) in flat.iter().zip(&want).enumerate() {
            for (c, (g, w)) in got.iter().zip(want).enumerate() {
                assert_eq!(g, w, "row {}, column {}", i + 1, names[c]);
            }
        }
        // Every column had values and NULLs (the required ones: values).
        for (c, name) in names.iter().enumerate() {
            assert!(flat.iter().any(|r| r[c].is_some()), "{name}");
        }
    }

    /// Column batches rendered by the row writers (one, three, or on the
    /// decoder's thread for a small file) stage the same rows.
    #[test]
    fn batches_stage_the_same_rows_whatever_the_writers() {
        let file = random_file();
        let names: Vec<String> = {
            let reader = SerializedFileReader::new(file.try_clone().unwrap()).unwrap();
            let schema = reader.metadata().file_metadata().schema_descr_ptr();
            flat_columns(&schema)
                .unwrap()
                .iter()
                .map(|(d, _)| d.name().to_string())
                .collect()
        };
        let columns: Vec<String> = names
            .iter()
            .map(|n| format!("{{ name = \"{n}\", type = \"varchar(1000)\" }}"))
            .collect();
        let text = crate::config::test_toml(&format!(
            "mode = \"append\"\nformat = {{ kind = \"parquet\" }}\ncolumns = [ {} ]\n",
            columns.join(", ")
        ));
        let job = crate::config::from_toml_str(&text).unwrap().jobs[0]
            .as_ref()
            .clone();
        let run = |writers: usize, size_hint: Option<u64>| {
            let mut job = job.clone();
            job.row_threads = writers;
            let ctx = FileContext {
                path: "/in/t.parquet".into(),
                ingest_time: "2026-01-01 00:00:00.000000".into(),
                size_hint,
            };
            let reader = SerializedFileReader::new(file.try_clone().unwrap()).unwrap();
            let schema = reader.metadata().file_metadata().schema_descr_ptr();
            let cols = flat_columns(&schema).unwrap();
            let mut out = Vec::new();
            let stats = decode(&job, &ctx, reader, cols, &mut out).unwrap();
            (String::from_utf8(out).unwrap(), stats.rows, stats.rejected)
        };
        let one = run(1, None);
        assert_eq!((one.1, one.2), (3000 + BATCH as u64 + 1 + 5000, 0));
        let last = format!(",/in/t.parquet,{}\n", one.1);
        assert!(one.0.ends_with(&last), "{}", &one.0[one.0.len() - 60..]);
        assert!(run(3, None) == one, "three writers differ");
        assert!(run(1, Some(1024)) == one, "one thread differs");
    }

    #[test]
    fn nested_and_repeated_schemas_take_the_record_path() {
        for schema in [
            "message t { REQUIRED INT32 a; OPTIONAL group g { OPTIONAL INT32 b; } }",
            "message t { REQUIRED INT32 a; REPEATED INT32 r; }",
            "message t { OPTIONAL INT32 t (TIME_MILLIS); }",
        ] {
            let s = SchemaDescriptor::new(Arc::new(parse_message_type(schema).unwrap()));
            assert!(flat_columns(&s).is_none(), "{schema}");
        }
        let s = SchemaDescriptor::new(Arc::new(parse_message_type(SCHEMA).unwrap()));
        assert_eq!(flat_columns(&s).map(|c| c.len()), Some(24));
    }

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Around 1970–2400, with every kind of fraction.
            let micros = (seed % 13_000_000_000_000_000) as i64 - 500_000_000_000_000;
            let micros = match seed % 4 {
                0 => micros / 1_000_000 * 1_000_000,
                1 => micros / 1_000 * 1_000,
                _ => micros,
            };
            let t = chrono::DateTime::from_timestamp_micros(micros);
            let mut got = String::new();
            assert!(timestamp(t, &mut got));
            assert_eq!(got, super::super::parquet_in::iso(t.unwrap()), "{micros}");
        }
        let mut far = String::new();
        assert!(timestamp(
            chrono::DateTime::from_timestamp(300_000_000_000, 0),
            &mut far
        ));
        assert!(far.starts_with("+11476-"), "{far}");
    }

    #[test]
    fn dates_are_written_as_chrono_writes_them() {
        for days in [-719_528, -1, 0, 1, 20_500, 2_932_896, 3_000_000] {
            let mut got = String::new();
            assert!(date(days, &mut got));
            let want = chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0)
                .unwrap()
                .format("%Y-%m-%d")
                .to_string();
            assert_eq!(got, want, "{days}");
        }
    }
}

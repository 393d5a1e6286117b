//! Staged rows written as Parquet instead of gzip CSV.
//!
//! Redshift's `COPY … FORMAT AS PARQUET` reads a Parquet file's columns by
//! position into the table's columns, and its types must match the
//! table's (a VARCHAR from a UTF-8 string, a BIGINT from an INT64, a
//! DECIMAL from a DECIMAL of the same scale, a TIMESTAMP from a
//! microsecond TIMESTAMP). So each staged column is written with the
//! Parquet type its column type asks for, from the canonical text the row
//! sink checked: the job's columns, then `ferry_file` and `ferry_line`, as
//! in the staged CSV. Every column is optional (NULL is a missing value,
//! not a marker). Rows are buffered per column up to a row group of
//! [`GROUP_ROWS`] rows or [`GROUP_BYTES`] bytes of text, so memory stays
//! bounded; pages are dictionary-encoded and snappy-compressed, without
//! statistics (COPY does not use them).

use crate::schema::ColumnType;
use bytes::Bytes;
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical};
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, FixedLenByteArray, FixedLenByteArrayType, Int32Type,
    Int64Type,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use std::io::{self, Write};
use std::sync::{Arc, mpsc};
use std::thread;

/// Rows per row group at most.
pub const GROUP_ROWS: usize = 128 * 1024;
/// Bytes of buffered text per row group at most.
pub const GROUP_BYTES: usize = 4 << 20;

/// A staged column's Parquet form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    Bigint,
    /// DECIMAL stored as INT64 (precision ≤ 18) with this scale.
    Decimal64(u8),
    /// DECIMAL stored as 16 bytes with this scale.
    Decimal128(u8),
    Bool,
    Date,
    /// Microseconds since 1970 (UTC for both kinds).
    Timestamp,
}

impl Kind {
    fn of(ty: ColumnType) -> Kind {
        match ty {
            ColumnType::Varchar(_) | ColumnType::Json | ColumnType::Uuid | ColumnType::Super => {
                Kind::Text
            }
            ColumnType::Int => Kind::Int,
            ColumnType::Bigint => Kind::Bigint,
            ColumnType::Decimal(p, s) if p <= 18 => Kind::Decimal64(s),
            ColumnType::Decimal(_, s) => Kind::Decimal128(s),
            ColumnType::Boolean => Kind::Bool,
            ColumnType::Date => Kind::Date,
            ColumnType::Timestamp | ColumnType::Timestamptz => Kind::Timestamp,
        }
    }
}

/// The Parquet field for a staged column of type `ty`.
fn field(name: &str, ty: ColumnType) -> parquet::errors::Result<Type> {
    let b =
        |p: Physical| Type::primitive_type_builder(name, p).with_repetition(Repetition::OPTIONAL);
    match ty {
        ColumnType::Varchar(_) | ColumnType::Json | ColumnType::Uuid | ColumnType::Super => {
            b(Physical::BYTE_ARRAY)
                .with_logical_type(Some(LogicalType::String))
                .build()
        }
        ColumnType::Int => b(Physical::INT32).build(),
        ColumnType::Bigint => b(Physical::INT64).build(),
        ColumnType::Decimal(p, s) => {
            let wide = p > 18;
            b(if wide {
                Physical::FIXED_LEN_BYTE_ARRAY
            } else {
                Physical::INT64
            })
            .with_length(if wide { 16 } else { -1 })
            .with_logical_type(Some(LogicalType::decimal(i32::from(s), i32::from(p))))
            .with_precision(i32::from(p))
            .with_scale(i32::from(s))
            .build()
        }
        ColumnType::Boolean => b(Physical::BOOLEAN).build(),
        ColumnType::Date => b(Physical::INT32)
            .with_logical_type(Some(LogicalType::Date))
            .build(),
        ColumnType::Timestamp | ColumnType::Timestamptz => b(Physical::INT64)
            .with_logical_type(Some(LogicalType::timestamp(
                ty == ColumnType::Timestamptz,
                TimeUnit::MICROS,
            )))
            .build(),
    }
}

/// One column's values of the current row group, as the rows thread
/// collects them: text in one buffer (no allocation per value), numbers
/// in place.
#[derive(Debug, Default)]
struct Pending {
    def: Vec<i16>,
    text: Vec<u8>,
    ends: Vec<usize>,
    i32s: Vec<i32>,
    i64s: Vec<i64>,
    bools: Vec<bool>,
}

struct Column {
    name: String,
    kind: Kind,
    pending: Pending,
}

/// A Parquet file of staged rows, written to `W`. Rows are collected per
/// column on the caller's thread; once a first row group is full, each is
/// encoded and compressed on a thread of its own (as the gzip CSV is), at
/// most one group waiting, so both cores work and memory stays at two
/// groups. A file of one row group (a small file) is encoded where it
/// ends, without a thread.
pub struct ParquetStaged<W: Write + Send + 'static> {
    columns: Vec<Column>,
    /// Rows per row group ([`GROUP_ROWS`]).
    group_rows: usize,
    rows: usize,
    bytes: usize,
    /// The file writer until the encoder thread takes it.
    inline: Option<SerializedFileWriter<W>>,
    tx: Option<mpsc::SyncSender<Vec<(Kind, Pending)>>>,
    worker: Option<thread::JoinHandle<io::Result<W>>>,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("writing the staged Parquet: {e}"))
}

/// Encodes one row group's columns.
fn write_group<W: Write + Send>(
    writer: &mut SerializedFileWriter<W>,
    columns: Vec<(Kind, Pending)>,
) -> io::Result<()> {
    let mut group = writer.next_row_group().map_err(other)?;
    for (kind, p) in columns {
        let mut w = group
            .next_column()
            .map_err(other)?
            .ok_or_else(|| other("fewer columns in the schema than staged"))?;
        let def = Some(p.def.as_slice());
        match kind {
            Kind::Text => {
                let all = Bytes::from(p.text);
                let mut from = 0;
                let values: Vec<ByteArray> = p
                    .ends
                    .iter()
                    .map(|&to| {
                        let v = ByteArray::from(all.slice(from..to));
                        from = to;
                        v
                    })
                    .collect();
                w.typed::<ByteArrayType>().write_batch(&values, def, None)
            }
            Kind::Decimal128(_) => {
                let all = Bytes::from(p.text);
                let values: Vec<FixedLenByteArray> = (0..all.len() / 16)
                    .map(|i| {
                        FixedLenByteArray::from(ByteArray::from(all.slice(i * 16..i * 16 + 16)))
                    })
                    .collect();
                w.typed::<FixedLenByteArrayType>()
                    .write_batch(&values, def, None)
            }
            Kind::Int | Kind::Date => w.typed::<Int32Type>().write_batch(&p.i32s, def, None),
            Kind::Bigint | Kind::Decimal64(_) | Kind::Timestamp => {
                w.typed::<Int64Type>().write_batch(&p.i64s, def, None)
            }
            Kind::Bool => w.typed::<BoolType>().write_batch(&p.bools, def, None),
        }
        .map_err(other)?;
        w.close().map_err(other)?;
    }
    group.close().map_err(other)?;
    Ok(())
}

impl<W: Write + Send + 'static> ParquetStaged<W> {
    /// A writer for the staged columns `columns` (name and type), then
    /// `ferry_file` and `ferry_line`.
    pub fn new<'a>(
        out: W,
        columns: impl IntoIterator<Item = (&'a str, ColumnType)>,
    ) -> io::Result<Self> {
        // The staging table's own two columns come last, as in the CSV.
        let mut cols: Vec<(String, ColumnType)> = columns
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect();
        cols.push(("ferry_file".into(), ColumnType::Varchar(1024)));
        cols.push(("ferry_line".into(), ColumnType::Bigint));
        let fields = cols
            .iter()
            .map(|(n, t)| field(n, *t).map(Arc::new))
            .collect::<parquet::errors::Result<Vec<_>>>()
            .map_err(other)?;
        let schema = Type::group_type_builder("staged")
            .with_fields(fields)
            .build()
            .map_err(other)?;
        let props = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_compression(Compression::SNAPPY)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_max_row_group_row_count(Some(GROUP_ROWS))
            .build();
        let writer =
            SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props)).map_err(other)?;
        let columns = cols
            .into_iter()
            .map(|(name, ty)| Column {
                name,
                kind: Kind::of(ty),
                pending: Pending::default(),
            })
            .collect();
        Ok(ParquetStaged {
            columns,
            group_rows: GROUP_ROWS,
            rows: 0,
            bytes: 0,
            inline: Some(writer),
            tx: None,
            worker: None,
        })
    }

    /// Adds one row: the job's columns' canonical text, then the file and
    /// the line.
    pub fn push<'v>(
        &mut self,
        values: impl IntoIterator<Item = Option<&'v str>>,
    ) -> io::Result<()> {
        let mut n = 0;
        for (col, v) in self.columns.iter_mut().zip(values) {
            n += 1;
            let p = &mut col.pending;
            let Some(v) = v else {
                p.def.push(0);
                continue;
            };
            p.def.push(1);
            self.bytes += v.len();
            let bad = || {
                io::Error::other(format!(
                    "column {}: {v:?} is not the canonical text of its type (a bug in ferry)",
                    col.name
                ))
            };
            match col.kind {
                Kind::Text => {
                    p.text.extend_from_slice(v.as_bytes());
                    p.ends.push(p.text.len());
                }
                Kind::Int => p.i32s.push(v.parse().map_err(|_| bad())?),
                Kind::Date => p.i32s.push(days(v).ok_or_else(bad)?),
                Kind::Bigint => p.i64s.push(v.parse().map_err(|_| bad())?),
                Kind::Decimal64(s) => p.i64s.push(
                    unscaled(v, s)
                        .and_then(|n| i64::try_from(n).ok())
                        .ok_or_else(bad)?,
                ),
                Kind::Decimal128(s) => {
                    let n = unscaled(v, s).ok_or_else(bad)?;
                    p.text.extend_from_slice(&n.to_be_bytes());
                }
                Kind::Timestamp => p.i64s.push(micros(v).ok_or_else(bad)?),
                Kind::Bool => p.bools.push(match v {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad()),
                }),
            }
        }
        if n != self.columns.len() {
            return Err(io::Error::other(format!(
                "a staged row has {n} values for {} columns (a bug in ferry)",
                self.columns.len()
            )));
        }
        self.rows += 1;
        if self.rows >= self.group_rows || self.bytes >= GROUP_BYTES {
            self.flush_group(false)?;
        }
        Ok(())
    }

    /// Hands the buffered rows to the encoder as one row group: the
    /// `last` one of a file that never filled a group is encoded here,
    /// the first full one starts the encoder thread.
    fn flush_group(&mut self, last: bool) -> io::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let group: Vec<(Kind, Pending)> = self
            .columns
            .iter_mut()
            .map(|c| (c.kind, std::mem::take(&mut c.pending)))
            .collect();
        self.rows = 0;
        self.bytes = 0;
        if let Some(writer) = self.inline.as_mut() {
            if last {
                return write_group(writer, group);
            }
            self.start_encoder()?;
        }
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(group).is_ok());
        if !sent {
            // The encoder stopped: its error says why.
            return Err(self
                .join()
                .err()
                .unwrap_or_else(|| other("the encoder stopped")));
        }
        Ok(())
    }

    /// Moves the file writer to a thread that encodes the groups sent.
    fn start_encoder(&mut self) -> io::Result<()> {
        let mut writer = self
            .inline
            .take()
            .ok_or_else(|| other("the encoder already runs"))?;
        let (tx, rx) = mpsc::sync_channel::<Vec<(Kind, Pending)>>(1);
        let worker = thread::Builder::new().name("ferry-parquet".into()).spawn(
            move || -> io::Result<W> {
                for group in rx {
                    write_group(&mut writer, group)?;
                }
                writer.into_inner().map_err(other)
            },
        )?;
        self.tx = Some(tx);
        self.worker = Some(worker);
        Ok(())
    }

    fn join(&mut self) -> io::Result<W> {
        self.tx = None;
        match self.worker.take() {
            Some(w) => w.join().map_err(|_| other("the encoder thread panicked"))?,
            None => Err(other("the file was already finished")),
        }
    }

    /// Writes the last row group and the footer; returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_group(true)?;
        match self.inline.take() {
            Some(writer) => writer.into_inner().map_err(other),
            None => self.join(),
        }
    }
}

/// `YYYY-MM-DD` as days since 1970-01-01.
fn days(v: &str) -> Option<i32> {
    let d = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()?;
    i32::try_from(
        d.signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?)
            .num_days(),
    )
    .ok()
}

/// A staged timestamp (`YYYY-MM-DD HH:MM:SS[.ffffff]`, `+00` for a
/// timestamptz) as microseconds since 1970 UTC.
fn micros(v: &str) -> Option<i64> {
    let v = v.strip_suffix("+00").unwrap_or(v);
    let b = v.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = b.get(r)?;
        s.iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let fixed = b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':';
    let t = if fixed {
        let frac = match b.get(19) {
            None => 0,
            Some(b'.') if b.len() <= 26 => {
                let digits = &v[20..];
                let n: u32 = num(20..b.len())?;
                n * 10u32.pow(6 - digits.len() as u32)
            }
            _ => return None,
        };
        chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?
            .and_hms_micro_opt(num(11..13)?, num(14..16)?, num(17..19)?, frac)?
    } else {
        chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f").ok()?
    };
    Some(t.and_utc().timestamp_micros())
}

/// A decimal's text as an integer of `scale` places (`1.5`, 2 → 150).
fn unscaled(v: &str, scale: u8) -> Option<i128> {
    let (neg, digits) = match v.as_bytes().first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if frac.len() > usize::from(scale) || (int.is_empty() && frac.is_empty()) {
        return None;
    }
    let mut n: i128 = 0;
    for c in int.bytes().chain(frac.bytes()) {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(i128::from(c - b'0'))?;
    }
    n = n.checked_mul(10i128.checked_pow(u32::from(scale) - frac.len() as u32)?)?;
    Some(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    #[test]
    fn staged_rows_read_back_typed_and_in_order() {
        let types = [
            ("v", ColumnType::Varchar(16)),
            ("i", ColumnType::Int),
            ("b", ColumnType::Bigint),
            ("d", ColumnType::Decimal(12, 2)),
            ("w", ColumnType::Decimal(38, 4)),
            ("t", ColumnType::Boolean),
            ("day", ColumnType::Date),
            ("ts", ColumnType::Timestamp),
            ("tz", ColumnType::Timestamptz),
            ("j", ColumnType::Super),
        ];
        let file = tempfile::tempfile().unwrap();
        let mut w = ParquetStaged::new(file.try_clone().unwrap(), types).unwrap();
        w.group_rows = 3;
        let rows = 7;
        for r in 0..rows {
            let line = (r + 2).to_string();
            let text = format!("é{r}");
            let values: Vec<Option<&str>> = if r % 3 == 1 {
                vec![None; 10]
            } else {
                vec![
                    Some(text.as_str()),
                    Some("-7"),
                    Some("9007199254740993"),
                    Some("-1.5"),
                    Some("12345678901234567890.0001"),
                    Some(if r % 2 == 0 { "true" } else { "false" }),
                    Some("2026-03-01"),
                    Some("2026-03-01 10:00:00.5"),
                    Some("2026-03-01 08:00:00+00"),
                    Some("{\"a\": 1}"),
                ]
            };
            w.push(
                values
                    .into_iter()
                    .chain([Some("in.csv"), Some(line.as_str())]),
            )
            .unwrap();
        }
        w.finish().unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        assert_eq!(reader.num_row_groups(), 3);
        let got: Vec<Vec<String>> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|row| {
                row.unwrap()
                    .get_column_iter()
                    .map(|(_, f)| match f {
                        Field::Null => "NULL".to_string(),
                        Field::Decimal(d) => {
                            super::super::parquet_in::text(f).unwrap()
                                + &format!("/{}", d.precision())
                        }
                        other => format!("{other}"),
                    })
                    .collect()
            })
            .collect();
        assert_eq!(got.len(), rows);
        assert_eq!(
            got[0],
            [
                "\"é0\"",
                "-7",
                "9007199254740993",
                "-1.50/12",
                "12345678901234567890.0001/38",
                "true",
                "2026-03-01",
                "2026-03-01 10:00:00.500000 +00:00",
                "2026-03-01 08:00:00.000000 +00:00",
                "\"{\"a\": 1}\"",
                "\"in.csv\"",
                "2",
            ]
        );
        assert_eq!(got[1][..10], ["NULL"; 10]);
        assert_eq!(got[1][10..], ["\"in.csv\"", "3"]);
        assert_eq!(got[6][0], "\"é6\"");
        assert_eq!(got[6][11], "8");
        // The types Redshift matches a table's columns against.
        let schema = reader.metadata().file_metadata().schema_descr();
        let ts = schema.column(7);
        assert_eq!(
            ts.logical_type_ref(),
            Some(&LogicalType::timestamp(false, TimeUnit::MICROS))
        );
        assert_eq!(
            schema.column(8).logical_type_ref(),
            Some(&LogicalType::timestamp(true, TimeUnit::MICROS))
        );
        assert_eq!(schema.column(3).physical_type(), Physical::INT64);
        assert_eq!(
            schema.column(4).physical_type(),
            Physical::FIXED_LEN_BYTE_ARRAY
        );
    }

    #[test]
    fn a_file_of_one_row_group_is_written_without_the_encoder_thread() {
        let file = tempfile::tempfile().unwrap();
        let mut w =
            ParquetStaged::new(file.try_clone().unwrap(), [("v", ColumnType::Varchar(4))]).unwrap();
        for line in ["2", "3"] {
            w.push([Some("ab"), Some("f.csv"), Some(line)]).unwrap();
        }
        assert!(w.worker.is_none());
        w.finish().unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        assert_eq!(reader.num_row_groups(), 1);
        let rows: Vec<String> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().to_string())
            .collect();
        assert_eq!(
            rows,
            [
                "{v: \"ab\", ferry_file: \"f.csv\", ferry_line: 2}",
                "{v: \"ab\", ferry_file: \"f.csv\", ferry_line: 3}"
            ]
        );
        // An empty file is a valid Parquet file with the schema.
        let file = tempfile::tempfile().unwrap();
        ParquetStaged::new(file.try_clone().unwrap(), [("v", ColumnType::Int)])
            .unwrap()
            .finish()
            .unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
        assert_eq!(
            reader
                .metadata()
                .file_metadata()
                .schema_descr()
                .num_columns(),
            3
        );
    }

    #[test]
    fn canonical_text_converts_to_parquet_values() {
        assert_eq!(unscaled("1.5", 2), Some(150));
        assert_eq!(unscaled("-0.05", 3), Some(-50));
        assert_eq!(unscaled("+12", 0), Some(12));
        assert_eq!(unscaled("1.555", 2), None);
        assert_eq!(unscaled(".", 2), None);
        assert_eq!(days("1970-01-02"), Some(1));
        assert_eq!(days("1969-12-31"), Some(-1));
        assert_eq!(micros("1970-01-01 00:00:01+00"), Some(1_000_000));
        assert_eq!(micros("1970-01-01 00:00:00.5"), Some(500_000));
        assert_eq!(
            micros("2026-03-08 07:08:47.123456+00"),
            Some(1_772_953_727_123_456)
        );
        assert_eq!(micros("2026-03-08T07:08:47"), None);
    }
}

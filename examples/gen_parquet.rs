//! Turns a task-event CSV written by `bench/gen_events.py` into Parquet
//! (snappy, row groups of 128k rows, typed columns), for
//! `bench/normalize.sh`:
//!
//!     cargo run --release --example gen_parquet -- IN.csv OUT.parquet

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::sync::Arc;

const GROUP: usize = 128 * 1024;
const TEXT: [usize; 6] = [0, 1, 2, 3, 4, 5];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (input, output) = (&args[1], &args[2]);
    let schema = Arc::new(
        parse_message_type(
            "message event {
               REQUIRED BYTE_ARRAY event_id (UTF8);
               REQUIRED BYTE_ARRAY task_id (UTF8);
               REQUIRED BYTE_ARRAY event_type (UTF8);
               REQUIRED BYTE_ARRAY status (UTF8);
               REQUIRED BYTE_ARRAY user_id (UTF8);
               REQUIRED BYTE_ARRAY source_system (UTF8);
               REQUIRED INT64 occurred_at (TIMESTAMP_MILLIS);
               REQUIRED INT64 duration_ms;
               REQUIRED INT32 attempt;
               REQUIRED BYTE_ARRAY payload (UTF8);
             }",
        )
        .expect("schema"),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let file = std::fs::File::create(output).expect("output");
    let mut writer = SerializedFileWriter::new(file, schema, props).expect("writer");
    let mut reader = csv::Reader::from_path(input).expect("input");
    let mut rows: Vec<csv::StringRecord> = Vec::with_capacity(GROUP);
    let mut flush = |rows: &mut Vec<csv::StringRecord>| {
        if rows.is_empty() {
            return;
        }
        let mut rg = writer.next_row_group().expect("row group");
        let mut n = 0;
        while let Some(mut col) = rg.next_column().expect("column") {
            match n {
                6 => {
                    let v: Vec<i64> = rows
                        .iter()
                        .map(|r| {
                            chrono::DateTime::parse_from_rfc3339(&r[6])
                                .expect("occurred_at")
                                .timestamp_millis()
                        })
                        .collect();
                    col.typed::<Int64Type>()
                        .write_batch(&v, None, None)
                        .expect("write");
                }
                7 => {
                    let v: Vec<i64> = rows
                        .iter()
                        .map(|r| r[7].parse().expect("duration"))
                        .collect();
                    col.typed::<Int64Type>()
                        .write_batch(&v, None, None)
                        .expect("write");
                }
                8 => {
                    let v: Vec<i32> = rows
                        .iter()
                        .map(|r| r[8].parse().expect("attempt"))
                        .collect();
                    col.typed::<Int32Type>()
                        .write_batch(&v, None, None)
                        .expect("write");
                }
                i => {
                    debug_assert!(TEXT.contains(&i) || i == 9);
                    let v: Vec<ByteArray> = rows.iter().map(|r| ByteArray::from(&r[i])).collect();
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, None, None)
                        .expect("write");
                }
            }
            col.close().expect("close column");
            n += 1;
        }
        rg.close().expect("close row group");
        rows.clear();
    };
    for r in reader.records() {
        rows.push(r.expect("a CSV record"));
        if rows.len() == GROUP {
            flush(&mut rows);
        }
    }
    flush(&mut rows);
    writer.close().expect("close");
}

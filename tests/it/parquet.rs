//! Parquet input end to end, on both backends: a file written with the
//! `parquet` crate (two row groups, snappy, a nested group, a decimal, a
//! timestamp, a date and NULLs) loads row for row, nested fields by path.

use crate::harness::{Backend, Env};
use ferry::pipeline::run_pass;
use parquet::basic::Compression;
use parquet::data_type::{
    ByteArray, ByteArrayType, FixedLenByteArray, FixedLenByteArrayType, Int32Type, Int64Type,
};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::sync::Arc;

crate::harness::both_backends!(
    a_parquet_file_loads_row_for_row_with_nested_fields_by_path,
    a_flat_parquet_file_loads_row_for_row,
    parquet_staging_loads_the_rows_gzip_csv_staging_loads
);

/// The flat variant of the test file: the group's two fields at the top.
const FLAT: &str = "message event {
   REQUIRED BYTE_ARRAY id (UTF8);
   OPTIONAL INT64 ms;
   OPTIONAL INT64 at (TIMESTAMP_MILLIS);
   OPTIONAL INT32 day (DATE);
   OPTIONAL FIXED_LEN_BYTE_ARRAY (8) price (DECIMAL(12,2));
   REQUIRED BYTE_ARRAY tid (UTF8);
   OPTIONAL BYTE_ARRAY kind (UTF8);
 }";

/// Writes the test file: ids `p0`…, in two row groups of `per_group`;
/// `flat` puts the nested group's fields at the top level.
fn parquet_file(per_group: usize, flat: bool) -> Vec<u8> {
    let schema = Arc::new(
        parse_message_type(if flat {
            FLAT
        } else {
            "message event {
               REQUIRED BYTE_ARRAY id (UTF8);
               OPTIONAL INT64 ms;
               OPTIONAL INT64 at (TIMESTAMP_MILLIS);
               OPTIONAL INT32 day (DATE);
               OPTIONAL FIXED_LEN_BYTE_ARRAY (8) price (DECIMAL(12,2));
               REQUIRED group task {
                 REQUIRED BYTE_ARRAY tid (UTF8);
                 OPTIONAL BYTE_ARRAY kind (UTF8);
               }
             }"
        })
        .unwrap(),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut out = Vec::new();
    let mut w = SerializedFileWriter::new(&mut out, schema, props).unwrap();
    for g in 0..2 {
        let ids: Vec<usize> = (g * per_group..(g + 1) * per_group).collect();
        // Every third row has NULL ms, at, day, price and kind.
        let def: Vec<i16> = ids.iter().map(|i| i16::from(i % 3 != 0)).collect();
        let present: Vec<usize> = ids.iter().copied().filter(|i| i % 3 != 0).collect();
        let mut rg = w.next_row_group().unwrap();
        let mut n = 0;
        while let Some(mut col) = rg.next_column().unwrap() {
            match n {
                0 => {
                    let v: Vec<ByteArray> = ids
                        .iter()
                        .map(|i| ByteArray::from(format!("p{i}").as_str()))
                        .collect();
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, None, None)
                        .unwrap();
                }
                1 => {
                    let v: Vec<i64> = present.iter().map(|i| *i as i64 * 10).collect();
                    col.typed::<Int64Type>()
                        .write_batch(&v, Some(&def), None)
                        .unwrap();
                }
                2 => {
                    // 2026-03-01T00:00:00Z plus i seconds.
                    let v: Vec<i64> = present
                        .iter()
                        .map(|i| 1_772_323_200_000 + *i as i64 * 1000)
                        .collect();
                    col.typed::<Int64Type>()
                        .write_batch(&v, Some(&def), None)
                        .unwrap();
                }
                3 => {
                    // 2026-03-01 is day 20513 since 1970-01-01.
                    let v: Vec<i32> = present.iter().map(|i| 20_513 + (*i % 28) as i32).collect();
                    col.typed::<Int32Type>()
                        .write_batch(&v, Some(&def), None)
                        .unwrap();
                }
                4 => {
                    let v: Vec<FixedLenByteArray> = present
                        .iter()
                        .map(|i| {
                            FixedLenByteArray::from((*i as i64 * 101 - 500).to_be_bytes().to_vec())
                        })
                        .collect();
                    col.typed::<FixedLenByteArrayType>()
                        .write_batch(&v, Some(&def), None)
                        .unwrap();
                }
                5 => {
                    let v: Vec<ByteArray> = ids
                        .iter()
                        .map(|i| ByteArray::from(format!("t{}", i % 4).as_str()))
                        .collect();
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, None, None)
                        .unwrap();
                }
                _ => {
                    let v: Vec<ByteArray> =
                        present.iter().map(|_| ByteArray::from("bug")).collect();
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, Some(&def), None)
                        .unwrap();
                }
            }
            col.close().unwrap();
            n += 1;
        }
        rg.close().unwrap();
    }
    w.close().unwrap();
    out
}

/// Puts `bytes` on the SFTP server as `/outbox/{file}` and returns a
/// runtime with one merge job into `target`: the file's first five fields
/// as columns, then `more`.
async fn job_on(
    env: &Env,
    file: &str,
    bytes: &[u8],
    target: &str,
    more: &str,
) -> ferry::pipeline::Runtime {
    std::fs::create_dir_all(env.stack.sftp.root.join("outbox")).unwrap();
    std::fs::write(env.stack.sftp.root.join("outbox").join(file), bytes).unwrap();
    env.runtime(&format!(
        r#"
[[jobs]]
name = "{target}"
source = "partner"
path = "/outbox"
pattern = "*.parquet"
target = "{target}"
key = ["id"]
auto_create = true
settle = {{ min_age = "0s" }}
format = {{ kind = "parquet" }}
columns = [
  {{ name = "id", type = "varchar(16)", required = true }},
  {{ name = "ms", type = "bigint" }},
  {{ name = "at", type = "timestamptz" }},
  {{ name = "day", type = "date" }},
  {{ name = "price", type = "decimal(12,2)" }},{more}
]
"#
    ))
    .await
}

async fn a_parquet_file_loads_row_for_row_with_nested_fields_by_path(backend: Backend) {
    let env = Env::start(backend).await;
    let rt = job_on(
        &env,
        "a.parquet",
        &parquet_file(500, false),
        "pq_events",
        r#"
  { name = "task_id", type = "varchar(8)", source = "task/tid" },
  { name = "kind", type = "varchar(8)", source = "/task/kind" },
  { name = "task", type = "json" },"#,
    )
    .await;
    let r = run_pass(&rt, None).await.unwrap();
    assert!(!r.has_failures(), "{r:?}");
    assert_eq!(env.db.count("pq_events").await, 1000);
    let rows = env
        .db
        .texts(
            &format!(
                "SELECT concat_ws('|', id, coalesce(ms::text, '-'), coalesce((at AT TIME ZONE 'UTC')::text, '-'), \
                 coalesce(day::text, '-'), coalesce(price::text, '-'), task_id, coalesce(kind, '-'), task) \
                 FROM {} WHERE id IN ('p0', 'p1', 'p502') ORDER BY id",
                env.db.t("pq_events")
            ),
            &[],
        )
        .await;
    assert_eq!(
        rows,
        [
            "p0|-|-|-|-|t0|-|{\"kind\":null,\"tid\":\"t0\"}",
            "p1|10|2026-03-01 00:00:01|2026-03-02|-3.99|t1|bug|{\"kind\":\"bug\",\"tid\":\"t1\"}",
            "p502|5020|2026-03-01 00:08:22|2026-03-27|502.02|t2|bug|{\"kind\":\"bug\",\"tid\":\"t2\"}",
        ]
    );
    drop(rt);
    env.finish().await;
}

/// A flat file is read column by column (not record by record): the
/// same values, the same text.
async fn a_flat_parquet_file_loads_row_for_row(backend: Backend) {
    let env = Env::start(backend).await;
    let rt = job_on(
        &env,
        "flat.parquet",
        &parquet_file(1500, true),
        "pq_flat",
        r#"
  { name = "task_id", type = "varchar(8)", source = "tid" },
  { name = "kind", type = "varchar(8)" },
  { name = "note", type = "varchar(8)", default = "none" },
  { name = "line", type = "bigint", derived = "source_line" },"#,
    )
    .await;
    let r = run_pass(&rt, None).await.unwrap();
    assert!(!r.has_failures(), "{r:?}");
    assert_eq!(env.db.count("pq_flat").await, 3000);
    let rows = env
        .db
        .texts(
            &format!(
                "SELECT concat_ws('|', id, coalesce(ms::text, '-'), coalesce((at AT TIME ZONE 'UTC')::text, '-'), \
                 coalesce(day::text, '-'), coalesce(price::text, '-'), task_id, coalesce(kind, '-'), note, line) \
                 FROM {} WHERE id IN ('p0', 'p1', 'p2048', 'p2999') ORDER BY id",
                env.db.t("pq_flat")
            ),
            &[],
        )
        .await;
    assert_eq!(
        rows,
        [
            "p0|-|-|-|-|t0|-|none|1",
            "p1|10|2026-03-01 00:00:01|2026-03-02|-3.99|t1|bug|none|2",
            "p2048|20480|2026-03-01 00:34:08|2026-03-05|2063.48|t0|bug|none|2049",
            "p2999|29990|2026-03-01 00:49:59|2026-03-04|3023.99|t3|bug|none|3000",
        ]
    );
    // The file has no `note`: recorded as drift, the default loaded.
    let changes = env
        .db
        .texts(
            &format!(
                "SELECT change || ':' || field FROM {} ORDER BY change",
                env.db.t("ferry_schema_changes")
            ),
            &[],
        )
        .await;
    assert_eq!(changes, ["missing_fields:note"]);
    drop(rt);
    env.finish().await;
}

/// The same CSV file loaded by two jobs, one staging gzip CSV (merge) and
/// one staging Parquet in small parts (append): every column of every row
/// is the same in both targets, NULLs and empty strings included.
async fn parquet_staging_loads_the_rows_gzip_csv_staging_loads(backend: Backend) {
    let env = Env::start(backend).await;
    let mut csv = String::from("id,name,n,big,price,wide,ok,day,at,atz,doc,uid\n");
    for i in 0..3000u64 {
        let name = match i % 5 {
            0 => String::new(),
            1 => "\"quoted, \"\"x\"\"\"".to_string(),
            _ => format!("name-{i}-é"),
        };
        let null = |s: String| if i % 7 == 3 { String::new() } else { s };
        csv.push_str(&format!(
            "{i},{name},{},{},{},{},{},{},{},{},{},{}\n",
            null(format!("-{}", i % 1000)),
            null(format!("{}", 9_007_199_254_740_000u64 + i)),
            null(format!("{}.{:02}", i, i % 100)),
            null(format!("123456789012345678901234.{:04}", i)),
            null(if i % 2 == 0 { "true" } else { "no" }.to_string()),
            null(format!("2026-03-{:02}", 1 + i % 28)),
            null(format!(
                "2026-03-01 10:{:02}:{:02}.{:06}",
                i % 60,
                i % 60,
                i
            )),
            null(format!("2026-03-01T10:00:00+0{}:00", i % 10)),
            null("\"{\"\"k\"\": [1, 2]}\"".to_string()),
            null(format!("{{6F9619FF-8B86-D011-B42D-00C04FC9{i:04X}}}")),
        ));
    }
    std::fs::create_dir_all(env.stack.sftp.root.join("outbox")).unwrap();
    std::fs::write(env.stack.sftp.root.join("outbox/both.csv"), &csv).unwrap();
    let columns = r#"columns = [
  { name = "id", type = "bigint", required = true },
  { name = "name", type = "varchar(40)" },
  { name = "n", type = "int" },
  { name = "big", type = "bigint" },
  { name = "price", type = "decimal(12,2)" },
  { name = "wide", type = "decimal(38,4)" },
  { name = "ok", type = "boolean" },
  { name = "day", type = "date" },
  { name = "at", type = "timestamp" },
  { name = "atz", type = "timestamptz" },
  { name = "doc", type = "super" },
  { name = "uid", type = "uuid" },
]"#;
    let job = |name: &str, extra: &str| {
        format!(
            "[[jobs]]\nname = \"{name}\"\nsource = \"partner\"\npath = \"/outbox\"\npattern = \"*.csv\"\n\
             target = \"{name}\"\nauto_create = true\nsettle = {{ min_age = \"0s\" }}\n\
             format = {{ kind = \"csv\" }}\n{extra}\n{columns}\n"
        )
    };
    let config = job("via_csv", "key = [\"id\"]")
        + &job(
            "via_parquet",
            "mode = \"append\"\nstage_format = \"parquet\"\npart_size = \"64KiB\"",
        );
    let rt = env.runtime(&config).await;
    let r = run_pass(&rt, None).await.unwrap();
    assert!(!r.has_failures(), "{r:?}");
    assert_eq!(env.db.count("via_csv").await, 3000);
    assert_eq!(env.db.count("via_parquet").await, 3000);
    // More than one Parquet part went up, and no gzip CSV part.
    let staged = env.stack.staged_objects();
    let parquet_parts = staged
        .iter()
        .filter(|k| k.contains("/via_parquet/") && k.ends_with(".parquet"))
        .count();
    assert!(parquet_parts > 1, "{staged:?}");
    assert!(
        !staged
            .iter()
            .any(|k| k.contains("staged/via_parquet/") && k.ends_with(".csv.gz")),
        "{staged:?}"
    );
    let cols = "id, name, n, big, price, wide, ok, day, at, atz, doc::text, uid";
    for (a, b) in [("via_csv", "via_parquet"), ("via_parquet", "via_csv")] {
        let differ = env
            .db
            .texts(
                &format!(
                    "SELECT count(*)::text FROM (SELECT {cols} FROM {} EXCEPT SELECT {cols} FROM {}) d",
                    env.db.t(a),
                    env.db.t(b)
                ),
                &[],
            )
            .await;
        assert_eq!(differ, ["0"], "rows of {a} not in {b}");
    }
    let sample = env
        .db
        .texts(
            &format!(
                "SELECT concat_ws('|', id, coalesce(name, '-'), coalesce(price::text, '-'), coalesce(wide::text, '-'), \
                 coalesce(at::text, '-'), coalesce(uid, '-')) FROM {} WHERE id IN (0, 1, 3) ORDER BY id",
                env.db.t("via_parquet")
            ),
            &[],
        )
        .await;
    assert_eq!(
        sample,
        [
            "0||0.00|123456789012345678901234.0000|2026-03-01 10:00:00|6f9619ff-8b86-d011-b42d-00c04fc90000",
            "1|quoted, \"x\"|1.01|123456789012345678901234.0001|2026-03-01 10:01:01.000001|6f9619ff-8b86-d011-b42d-00c04fc90001",
            "3|name-3-é|-|-|-|-",
        ]
    );
    drop(rt);
    env.finish().await;
}

//! Golden tests of the CSV path.

use super::*;
use crate::config::from_toml_str;

fn job(columns: &str) -> Job {
    let text = format!(
        r#"
[staging]
bucket = "b"
[warehouse]
kind = "postgres"
[sources.s]
kind = "local"
root = "/tmp"
[[jobs]]
name = "j"
source = "s"
path = "/in"
target = "t"
mode = "append"
max_errors = 100
columns = [ {columns} ]
"#
    );
    from_toml_str(&text).unwrap().jobs[0].as_ref().clone()
}

fn run(job: &Job, input: &str) -> Result<(String, NormalizeStats), NormalizeError> {
    let ctx = FileContext {
        path: "/in/f.csv".into(),
        ingest_time: "2026-01-01 00:00:00.000000".into(),
    };
    let mut out = Vec::new();
    let stats = normalize(job, &ctx, input.as_bytes(), &mut out)?;
    Ok((String::from_utf8(out).unwrap(), stats))
}

#[test]
fn maps_by_header_name_and_appends_file_and_line() {
    let j = job(
        r#"{ name = "b", type = "int" }, { name = "a", type = "varchar(10)" }, { name = "f", type = "varchar(100)", derived = "source_file" }, { name = "k", type = "varchar(5)", constant = "x" }"#,
    );
    let (out, stats) = run(&j, "\u{feff}a,b\r\nhello,1\r\n\"multi\nline\",2\r\n").unwrap();
    assert_eq!(
        out,
        "1,hello,/in/f.csv,x,/in/f.csv,2\n2,\"multi\nline\",/in/f.csv,x,/in/f.csv,3\n"
    );
    assert_eq!((stats.rows, stats.rejected), (2, 0));
    assert_eq!(
        stats.input_bytes,
        "\u{feff}a,b\r\nhello,1\r\n\"multi\nline\",2\r\n".len() as u64
    );
}

#[test]
fn ragged_rows_are_rejected_with_their_line() {
    let j = job(r#"{ name = "a", type = "int" }"#);
    let (out, stats) = run(&j, "a,b\n1,2\n3\n4,5,6\n").unwrap();
    assert_eq!(out, "1,/in/f.csv,2\n");
    assert_eq!(stats.rejected, 2);
    assert_eq!(stats.errors[0].line, 3);
    assert_eq!(stats.errors[0].code, 1203);
    assert_eq!(stats.errors[1].line, 4);
    assert_eq!(stats.errors[1].code, 1202);
}

#[test]
fn a_mapped_field_missing_from_the_header_fails_the_file() {
    let j = job(r#"{ name = "a", type = "int" }, { name = "zz", type = "int" }"#);
    let e = run(&j, "a,b\n1,2\n").unwrap_err().to_string();
    assert!(
        e.contains("field \"zz\" (for column zz) is not in the header; the header has: a, b"),
        "{e}"
    );
}

#[test]
fn empty_and_header_only_files_are_zero_rows() {
    let j = job(r#"{ name = "a", type = "int" }"#);
    let (out, stats) = run(&j, "").unwrap();
    assert_eq!((out.as_str(), stats.rows, stats.rejected), ("", 0, 0));
    let (out, stats) = run(&j, "a\n").unwrap();
    assert_eq!((out.as_str(), stats.rows, stats.rejected), ("", 0, 0));
}

#[test]
fn required_defaults_and_nulls() {
    let j = job(
        r#"{ name = "a", type = "int", required = true }, { name = "b", type = "int", default = "7" }, { name = "c", type = "varchar(5)" }, { name = "d", type = "date" }"#,
    );
    let (out, stats) = run(&j, "a,b,c,d\n1,,,\n,2,x,2026-01-02\n").unwrap();
    assert_eq!(out, "1,7,\"\",\\N,/in/f.csv,2\n");
    assert_eq!(stats.rejected, 1);
    assert_eq!(stats.errors[0].column.as_deref(), Some("a"));
    assert_eq!(stats.errors[0].code, 1213);
}

#[test]
fn the_hash_covers_every_byte() {
    let j = job(r#"{ name = "a", type = "int" }"#);
    let input = "a\n1\n";
    let (_, stats) = run(&j, input).unwrap();
    use sha2::{Digest, Sha256};
    assert_eq!(stats.sha256, hex::encode(Sha256::digest(input.as_bytes())));
}

#[test]
fn written_fields_read_back_unchanged() {
    // Every awkward value survives the writer and a CSV reader.
    let values = [
        "",
        " lead",
        "trail ",
        "a,b",
        "q\"uote",
        "line\nbreak",
        "cr\r\nlf",
        "\\N",
        "\\",
        "ünï©ødé",
        "\"\"",
        ",",
    ];
    let mut out = Vec::new();
    write_record(&mut out, values.iter().map(|v| Some(*v))).unwrap();
    write_record(&mut out, [None, Some("x")]).unwrap();
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(out.as_slice());
    let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows[0].iter().collect::<Vec<_>>(), values.to_vec());
    assert_eq!(&rows[1][0], NULL_MARKER);
}

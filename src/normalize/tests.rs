//! Golden tests of normalize: every decoder, coercion, limits and the
//! bad-input cases. One file (over 600 lines) because the cases share the
//! job builders and `run` helpers at its top; each test reads on its own.

use super::*;
use crate::config::from_toml_str;

fn job(columns: &str) -> Job {
    job_with("", columns)
}

pub(super) fn job_with(extra: &str, columns: &str) -> Job {
    let text = crate::config::test_toml(&format!(
        "mode = \"append\"\nmax_errors = 100\n{extra}\ncolumns = [ {columns} ]\n"
    ));
    from_toml_str(&text).unwrap().jobs[0].as_ref().clone()
}

fn run(job: &Job, input: &str) -> Result<(String, NormalizeStats), NormalizeError> {
    run_bytes(job, input.as_bytes())
}

/// Normalizes `input` with one row writer on its own thread, again with
/// three side by side, and again on one thread (as small files are), and
/// checks all give the same result.
fn run_bytes(job: &Job, input: &[u8]) -> Result<(String, NormalizeStats), NormalizeError> {
    let mut single = job.clone();
    single.row_threads = 1;
    let threaded = run_with_hint(&single, input, None);
    let mut spread = job.clone();
    spread.row_threads = 3;
    for (mode, other) in [
        ("three-writer", run_with_hint(&spread, input, None)),
        (
            "one-thread",
            run_with_hint(job, input, Some(input.len() as u64)),
        ),
    ] {
        same_result(mode, &threaded, &other);
    }
    threaded
}

/// Asserts two runs of one input gave the same rows, counts, errors and
/// drift, or the same error.
pub(super) fn same_result(
    mode: &str,
    a: &Result<(String, NormalizeStats), NormalizeError>,
    b: &Result<(String, NormalizeStats), NormalizeError>,
) {
    match (a, b) {
        (Ok((a, sa)), Ok((b, sb))) => {
            assert!(a == b, "{mode} output differs");
            let (sa, sb) = (format!("{sa:?}"), format!("{sb:?}"));
            let at = sa
                .bytes()
                .zip(sb.bytes())
                .take_while(|(x, y)| x == y)
                .count();
            let from = sa.floor_char_boundary(at.saturating_sub(80));
            assert!(
                sa == sb,
                "{mode} stats differ at byte {at}: …{} vs …{}",
                &sa[from..sa.ceil_char_boundary((at + 200).min(sa.len()))],
                &sb[from..sb.ceil_char_boundary((at + 200).min(sb.len()))]
            );
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{mode} error differs"),
        _ => panic!("the two modes disagree ({mode}): {a:?} vs {b:?}"),
    }
}

pub(super) fn run_with_hint(
    job: &Job,
    input: &[u8],
    size_hint: Option<u64>,
) -> Result<(String, NormalizeStats), NormalizeError> {
    let ctx = FileContext {
        path: "/in/f.csv".into(),
        ingest_time: "2026-01-01 00:00:00.000000".into(),
        size_hint,
    };
    let mut out = Vec::new();
    let stats = normalize(job, &ctx, input, &mut out)?;
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

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn ndjson_maps_names_and_pointers_and_rejects_bad_lines() {
    let j = job_with(
        "format = { kind = \"ndjson\" }",
        r#"{ name = "id", type = "int", required = true }, { name = "task", type = "varchar(10)", source = "/task/id" }, { name = "meta", type = "json" }, { name = "ok", type = "boolean" }"#,
    );
    let input = "{\"id\":1,\"task\":{\"id\":\"t1\"},\"meta\":{\"a\":[1,2]},\"ok\":true}\n\n{\"id\":2,\"task\":null}\nnot json\n[1,2]\n{\"id\":\"x\"}\n";
    let (out, stats) = run(&j, input).unwrap();
    assert_eq!(
        out,
        "1,t1,\"{\"\"a\"\":[1,2]}\",true,/in/f.csv,1\n2,\\N,\\N,\\N,/in/f.csv,3\n"
    );
    assert_eq!(stats.rejected, 3);
    assert_eq!(
        stats
            .errors
            .iter()
            .map(|e| (e.line, e.code))
            .collect::<Vec<_>>(),
        vec![(4, 1224), (5, 1224), (6, 1207)]
    );
    assert!(
        stats.errors[0].reason.contains("not valid JSON"),
        "{}",
        stats.errors[0].reason
    );
}

#[test]
fn json_numbers_keep_their_digits_and_escaped_names_still_match() {
    let j = job_with(
        "format = { kind = \"ndjson\" }",
        r#"{ name = "big", type = "decimal(38,0)" }, { name = "f", type = "decimal(20,19)" }, { name = "q", type = "varchar(10)", source = "a\"b" }, { name = "dup", type = "int" }"#,
    );
    let input = "{\"big\": 12345678901234567890123, \"f\": 0.1000000000000000055, \"a\\\"b\": \"x\\ny\", \"dup\": 1, \"dup\": 2}\n";
    let (out, stats) = run(&j, input).unwrap();
    assert_eq!(stats.rejected, 0, "{:?}", stats.errors);
    assert_eq!(
        out,
        "12345678901234567890123,0.1000000000000000055,\"x\ny\",2,/in/f.csv,1\n"
    );
}

#[test]
fn json_documents_stream_records_at_the_top_or_under_a_path() {
    let cols = r#"{ name = "id", type = "int" }, { name = "name", type = "varchar(10)" }"#;
    let top = job_with("format = { kind = \"json\" }", cols);
    let (out, stats) = run(&top, " [ {\"id\": 1, \"name\": \"a\"}, {\"id\": 2}, 7 ]").unwrap();
    assert_eq!(out, "1,a,/in/f.csv,1\n2,\\N,/in/f.csv,2\n");
    assert_eq!((stats.rows, stats.rejected), (2, 1));
    let (out, _) = run(&top, "{\"id\": 5, \"name\": \"one\"}").unwrap();
    assert_eq!(out, "5,one,/in/f.csv,1\n");
    let (out, stats) = run(&top, "   ").unwrap();
    assert_eq!((out.as_str(), stats.rows), ("", 0));

    let nested = job_with(
        "format = { kind = \"json\", records_path = \"/data/events\" }",
        cols,
    );
    let doc = "{\"meta\": {\"events\": [{\"id\": 9}]}, \"data\": {\"count\": 2, \"events\": [{\"id\": 1}, {\"id\": 2, \"name\": \"b\"}]}}";
    let (out, _) = run(&nested, doc).unwrap();
    assert_eq!(out, "1,\\N,/in/f.csv,1\n2,b,/in/f.csv,2\n");
    let e = run(&nested, "{\"data\": {}}").unwrap_err().to_string();
    assert!(e.contains("no records at \"/data/events\""), "{e}");
    let e = run(&top, "[{\"id\": 1},\n {\"id\": }]")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not valid JSON") && e.contains("line 2"), "{e}");
}

#[test]
fn gzip_input_is_recognized_by_its_magic_bytes() {
    let j = job(r#"{ name = "a", type = "int" }"#);
    let plain = "a\n1\n2\n";
    let packed = gzip(plain.as_bytes());
    let (out, stats) = run_bytes(&j, &packed).unwrap();
    assert_eq!(out, "1,/in/f.csv,2\n2,/in/f.csv,3\n");
    assert_eq!(
        stats.input_bytes,
        packed.len() as u64,
        "the raw (compressed) bytes are counted and hashed"
    );
}

#[test]
fn a_gzip_bomb_fails_the_file_with_a_clear_reason() {
    let j = job(r#"{ name = "a", type = "varchar(10)" }"#);
    let body = format!("a\n{}", "1\n".repeat(10 << 20)).into_bytes();
    let e = run_bytes(&j, &gzip(&body)).unwrap_err().to_string();
    assert!(e.contains("max_compression_ratio"), "{e}");
    let j = job_with(
        "limits = { max_decompressed_bytes = \"1KiB\" }",
        r#"{ name = "a", type = "int" }"#,
    );
    let e = run_bytes(&j, &gzip("a\n1\n".repeat(1000).as_bytes()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_decompressed_bytes (1024 bytes)"), "{e}");
}

/// `stats` has `rows` rows and one reject, on `line` with `code`, whose
/// reason says `says` and whose raw line is bounded.
fn assert_one_reject(stats: &NormalizeStats, rows: u64, (line, code): (u64, i32), says: &str) {
    assert_eq!((stats.rows, stats.rejected), (rows, 1));
    let e = &stats.errors[0];
    assert_eq!((e.line, e.code), (line, code));
    assert!(e.reason.contains(says), "{}", e.reason);
    assert!(e.raw_line.len() <= 256);
}

/// Regression: a CSV record larger than `max_record_bytes` failed the
/// whole file; now it is rejected (parsed and dropped, never held) and the
/// records around it load, as in NDJSON.
#[test]
fn a_record_larger_than_the_limit_is_rejected_and_the_rest_loads() {
    let j = job_with(
        "limits = { max_record_bytes = \"64KiB\" }",
        r#"{ name = "a", type = "varchar(10)" }"#,
    );
    let huge = format!("a\nok1\n\"{}\n\"\nok2\n", "x".repeat(3 << 20));
    let (out, stats) = run(&j, &huge).unwrap();
    assert_eq!(out, "ok1,/in/f.csv,2\nok2,/in/f.csv,5\n");
    assert_one_reject(
        &stats,
        2,
        (3, 1225),
        "3145732 bytes, longer than max_record_bytes (65536 bytes)",
    );
    let nd = job_with(
        "format = { kind = \"ndjson\" }\nlimits = { max_record_bytes = \"1KiB\" }",
        r#"{ name = "a", type = "varchar(10)" }"#,
    );
    // NDJSON: the one record is rejected and the lines around it load.
    let input = format!(
        "{{\"a\":\"ok1\"}}\n{{\"a\":\"{}\"}}\n{{\"a\":\"ok2\"}}\n",
        "x".repeat(300_000)
    );
    let (out, stats) = run(&nd, &input).unwrap();
    assert_eq!(out, "ok1,/in/f.csv,1\nok2,/in/f.csv,3\n");
    assert_one_reject(
        &stats,
        2,
        (2, 1225),
        "300009 bytes, longer than max_record_bytes (1024 bytes)",
    );
}

#[test]
fn windows_1252_latin1_and_invalid_utf8() {
    let cols = r#"{ name = "a", type = "varchar(20)" }"#;
    let cp = job_with(
        "format = { kind = \"csv\", encoding = \"windows-1252\" }",
        cols,
    );
    let (out, _) = run_bytes(&cp, b"a\ncaf\xe9 \x80\n").unwrap();
    assert_eq!(out, "caf\u{e9} \u{20ac},/in/f.csv,2\n");
    let utf8 = job(cols);
    let (out, stats) = run_bytes(&utf8, b"a\nok\nbad \xe9\nfine\n").unwrap();
    assert_eq!(out, "ok,/in/f.csv,2\nfine,/in/f.csv,4\n");
    assert_eq!((stats.errors[0].line, stats.errors[0].code), (3, 1220));
    assert!(stats.errors[0].reason.contains("format.encoding"));
}

#[test]
fn an_escape_character_can_replace_doubled_quotes() {
    let j = job_with(
        "format = { kind = \"csv\", escape = \"\\\\\" }",
        r#"{ name = "a", type = "varchar(20)" }"#,
    );
    let (out, _) = run(&j, "a\n\"say \\\"hi\\\"\"\n").unwrap();
    assert_eq!(out, "\"say \"\"hi\"\"\",/in/f.csv,2\n");
}

#[test]
fn max_errors_as_count_or_percent() {
    use crate::config::MaxErrors;
    assert!(!MaxErrors::Count(2).exceeded(2, 10));
    assert!(MaxErrors::Count(2).exceeded(3, 10));
    assert!(!MaxErrors::Percent(10.0).exceeded(1, 10));
    assert!(MaxErrors::Percent(10.0).exceeded(2, 10));
    assert!(!MaxErrors::Percent(0.0).exceeded(0, 0));
}

#[test]
fn xml_records_by_path_with_children_attributes_and_namespaces() {
    let j = job_with(
        "format = { kind = \"xml\", record_path = \"/export/events/event\" }",
        r#"{ name = "id", type = "int", source = "@id" }, { name = "status", type = "varchar(20)" }, { name = "task", type = "varchar(10)", source = "task/id" }, { name = "kind", type = "varchar(10)", source = "task/@kind" }, { name = "note", type = "varchar(40)" }"#,
    );
    let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<x:export xmlns:x="urn:acme">
  <x:meta><x:event id="99"/></x:meta>
  <x:events>
    <x:event id="1"><x:status>open</x:status><x:task kind="bug"><x:id>t1</x:id></x:task><x:note>a &amp; b &#233; <![CDATA[<raw>]]></x:note></x:event>
    <x:event id="2"><x:status/></x:event>
    <x:event id="x"><x:status>bad id</x:status></x:event>
  </x:events>
</x:export>"#;
    let (out, stats) = run(&j, doc).unwrap();
    assert_eq!(
        out,
        "1,open,t1,bug,a & b \u{e9} <raw>,/in/f.csv,1\n2,\"\",\\N,\\N,\\N,/in/f.csv,2\n"
    );
    assert_eq!(stats.rejected, 1);
    assert_eq!(
        (stats.errors[0].line, stats.errors[0].column.as_deref()),
        (3, Some("id"))
    );
}

/// The decoder guesses a record's children and attributes from the last
/// record's; every way the guess can be wrong still maps right: children
/// swapped, a namespace prefix, an attribute on a child, a new field
/// where a mapped one was (and then guessed), attributes reordered, a
/// mapped child with only an unmapped child of its own (empty text, as
/// ever).
#[test]
fn xml_records_that_differ_from_the_last_one_map_right() {
    let j = job_with(
        "format = { kind = \"xml\", record_path = \"/r/e\" }",
        r#"{ name = "id", type = "int", source = "@id" }, { name = "a", type = "int" }, { name = "b", type = "varchar(5)" }, { name = "bk", type = "varchar(5)", source = "b/@k" }, { name = "k", type = "varchar(5)", source = "@k" }"#,
    );
    let doc = r#"<r>
<e id="1"><a>1</a><b>x</b></e>
<e id="2"><b>y</b><a>2</a></e>
<e id="3"><n:a xmlns:n="urn:n">3</n:a><b>z</b></e>
<e id="4"><a>4</a><b k="v">w</b></e>
<e id="5"><a>5</a><c>new</c></e>
<e id="6"><a>6</a><c>again</c><b>u</b></e>
<e k="9" id="7"><a>7</a><b>q</b></e>
<e id="8" k="8"><a>8</a><b><i>deep</i></b></e>
</r>"#;
    let (out, stats) = run(&j, doc).unwrap();
    assert_eq!(
        out,
        "1,1,x,\\N,\\N,/in/f.csv,1\n\
         2,2,y,\\N,\\N,/in/f.csv,2\n\
         3,3,z,\\N,\\N,/in/f.csv,3\n\
         4,4,w,v,\\N,/in/f.csv,4\n\
         5,5,\\N,\\N,\\N,/in/f.csv,5\n\
         6,6,u,\\N,\\N,/in/f.csv,6\n\
         7,7,q,\\N,9,/in/f.csv,7\n\
         8,8,\"\",\\N,8,/in/f.csv,8\n"
    );
    let new: Vec<(&str, u64, u64)> = stats
        .drift
        .new_fields
        .iter()
        .map(|f| (f.name.as_str(), f.records, f.first_line))
        .collect();
    assert_eq!(new, [("c", 2, 5)]);
}

#[test]
fn xml_refuses_dtds_deep_nesting_and_broken_documents() {
    let cols = r#"{ name = "a", type = "varchar(10)" }"#;
    let j = job_with(
        "format = { kind = \"xml\", record_path = \"/r/e\" }\nlimits = { max_xml_depth = 8 }",
        cols,
    );
    let bomb = "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><r><e><a>&b;</a></e></r>";
    let e = run(&j, bomb).unwrap_err().to_string();
    assert!(e.contains("DTD"), "{e}");
    let deep = format!("<r><e>{}x{}</e></r>", "<d>".repeat(20), "</d>".repeat(20));
    let e = run(&j, &deep).unwrap_err().to_string();
    assert!(e.contains("max_xml_depth (8)"), "{e}");
    let e = run(&j, "<r><e><a>1</b></e></r>").unwrap_err().to_string();
    assert!(e.contains("not well-formed XML"), "{e}");
    let e = run(&j, "<r><e><a>&nope;</a></e></r>")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown entity &nope;"), "{e}");
    let (out, stats) = run(&j, "").unwrap();
    assert_eq!((out.as_str(), stats.rows), ("", 0));
}

/// An XML record of many parts larger than `max_record_bytes` is
/// rejected and the records after it load; one text larger than the limit
/// (plus read-ahead) fails the file, since it cannot be skipped unheld.
#[test]
fn an_xml_record_larger_than_the_limit_is_rejected_and_the_rest_loads() {
    let j = job_with(
        "format = { kind = \"xml\", record_path = \"/r/e\" }\nlimits = { max_record_bytes = \"1KiB\" }",
        r#"{ name = "a", type = "varchar(10)" }"#,
    );
    let big = format!(
        "<r><e><a>ok1</a></e><e><a>no</a>{}</e><e><a>ok2</a></e></r>",
        "<x>filler</x>".repeat(100_000)
    );
    let (out, stats) = run(&j, &big).unwrap();
    assert_eq!(out, "ok1,/in/f.csv,1\nok2,/in/f.csv,3\n");
    assert_one_reject(
        &stats,
        2,
        (2, 1225),
        "longer than max_record_bytes (1024 bytes)",
    );
    let one_text = format!(
        "<r><e><a>ok1</a></e><e><a>{}</a></e></r>",
        "y".repeat(3 << 20)
    );
    let e = run(&j, &one_text).unwrap_err().to_string();
    assert!(
        e.contains("larger than max_record_bytes (1024 bytes)"),
        "{e}"
    );
}

#[test]
fn timestamp_formats_epochs_and_a_configured_offset() {
    let j = job(
        r#"{ name = "t", type = "timestamptz", formats = ["%d/%m/%Y %H:%M", "epoch_ms"], timezone = "+02:00" }, { name = "e", type = "timestamp", formats = ["epoch"] }"#,
    );
    let (out, stats) = run(
        &j,
        "t,e\n31/01/2026 10:30,1767225600\n1767225600123,1767225600.5\n2026-01-31T10:30:00Z,x\n",
    )
    .unwrap();
    assert_eq!(
        out,
        "2026-01-31 08:30:00+00,2026-01-01 00:00:00,/in/f.csv,2\n\
         2026-01-01 00:00:00.123000+00,2026-01-01 00:00:00.500000,/in/f.csv,3\n"
    );
    assert_eq!(stats.errors[0].line, 4);
    assert!(
        stats.errors[0]
            .reason
            .contains("matches none of the formats"),
        "{}",
        stats.errors[0].reason
    );
}

#[test]
fn varchar_overflow_rejects_or_truncates_by_bytes() {
    let j = job(
        r#"{ name = "a", type = "varchar(4)", on_overflow = "truncate" }, { name = "b", type = "varchar(4)" }"#,
    );
    let (out, stats) = run(&j, "a,b\nabcdef,ok\nh\u{e9}\u{e9}x,toolong\n").unwrap();
    assert_eq!(out, "abcd,ok,/in/f.csv,2\n");
    assert_eq!(stats.rejected, 1);
    let (out, _) = run(&j, "a,b\nh\u{e9}\u{e9}x,ok\n").unwrap();
    assert_eq!(
        out, "h\u{e9},ok,/in/f.csv,2\n",
        "cut at a character boundary within 4 bytes"
    );
}

use crate::rng::XorShift as Rng;

#[test]
fn arbitrary_bytes_never_panic_any_decoder() {
    let formats = [
        "format = { kind = \"csv\" }",
        "format = { kind = \"csv\", header = false, field_names = [\"a\"], escape = \"\\\\\", encoding = \"windows-1252\" }",
        "format = { kind = \"ndjson\" }",
        "format = { kind = \"json\" }",
        "format = { kind = \"json\", records_path = \"/x/y\" }",
        "format = { kind = \"xml\", record_path = \"/r/e\" }",
    ];
    let alphabet: &[u8] = b"a,\"\n\r\\{}[]:<>/=&;#x10 \xef\xbb\xbf\x1f\x8b\x00\xff";
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for f in formats {
        let j = job_with(
            &format!(
                "{f}\nlimits = {{ max_record_bytes = \"2KiB\", max_decompressed_bytes = \"64KiB\" }}"
            ),
            r#"{ name = "a", type = "varchar(8)" }, { name = "b", type = "int", source = "/b" }"#,
        );
        for round in 0..300 {
            let len = rng.below(if round % 10 == 0 { 20_000 } else { 300 }) as usize;
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect();
            if round % 7 == 0 {
                bytes = gzip(&bytes);
            }
            if round % 13 == 0 && !bytes.is_empty() {
                bytes.truncate(bytes.len() / 2); // a cut-off gzip stream or document
            }
            let _ = run_bytes(&j, &bytes); // Ok or Err; never a panic
        }
    }
}

/// A source that delivers `good` and then fails the way a dropped
/// connection does.
struct FailsAfter<'a> {
    good: &'a [u8],
}

impl Read for FailsAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.good.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            ));
        }
        let n = buf.len().min(self.good.len()).min(7);
        buf[..n].copy_from_slice(&self.good[..n]);
        self.good = &self.good[n..];
        Ok(n)
    }
}

/// One classification for every decoder: the source failing under it is
/// a read error (transient: retry), bad bytes are a format or limit error
/// (permanent: fail the file), whatever the format and with or without
/// gzip. The pipeline maps `Read` to transient and the rest to permanent.
#[test]
fn source_failures_are_read_errors_and_bad_bytes_are_not_under_every_decoder() {
    let csv = "format = { kind = \"csv\" }";
    let ndjson = "format = { kind = \"ndjson\" }";
    let json = "format = { kind = \"json\" }";
    let xml = "format = { kind = \"xml\", record_path = \"/r/e\" }";
    let cols = r#"{ name = "a", type = "varchar(8)" }"#;
    let ok_csv = "a\nx\ny\nz\n".repeat(20);
    let ok_ndjson = "{\"a\":\"x\"}\n".repeat(20);
    let ok_json = format!("[{}{{\"a\":\"x\"}}]", "{\"a\":\"x\"},".repeat(20));
    let ok_xml = format!("<r>{}</r>", "<e><a>x</a></e>".repeat(20));
    let mut cut_gzip = gzip(ok_csv.repeat(50).as_bytes());
    cut_gzip.truncate(cut_gzip.len() / 2);
    let mut bad_crc = gzip(ok_csv.as_bytes());
    let n = bad_crc.len();
    bad_crc[n - 6] ^= 0xff; // the CRC-32 in the trailer
    // (format, bytes the source delivers, the source fails after them?,
    // what the error must be)
    let cases: Vec<(&str, Vec<u8>, bool, &str)> = vec![
        (csv, ok_csv.clone().into_bytes(), true, "read"),
        (csv, gzip(ok_csv.as_bytes()), true, "read"),
        (ndjson, ok_ndjson.clone().into_bytes(), true, "read"),
        (json, ok_json.clone().into_bytes(), true, "read"),
        (xml, ok_xml.clone().into_bytes(), true, "read"),
        (xml, gzip(ok_xml.as_bytes()), true, "read"),
        (
            csv,
            b"a\xff\xfe\nx\n".to_vec(),
            false,
            "format: not valid UTF-8",
        ),
        (
            csv,
            cut_gzip,
            false,
            "format: gzip data is truncated or corrupt",
        ),
        (
            csv,
            bad_crc,
            false,
            "format: gzip data is truncated or corrupt",
        ),
        (
            json,
            b"[{\"a\":\"x\"},".to_vec(),
            false,
            "format: not valid JSON",
        ),
        (
            xml,
            b"<r><e><a>x</b></e></r>".to_vec(),
            false,
            "format: not well-formed XML",
        ),
        (
            xml,
            b"<r><e><a>x</a>".to_vec(),
            false,
            "format: ends inside record",
        ),
    ];
    for (format, bytes, fails, want) in cases {
        let j = job_with(format, cols);
        let ctx = FileContext {
            path: "/in/f".into(),
            ingest_time: "2026-01-01 00:00:00.000000".into(),
            size_hint: None,
        };
        let mut out = Vec::new();
        let got = if fails {
            normalize(&j, &ctx, FailsAfter { good: &bytes }, &mut out)
        } else {
            normalize(&j, &ctx, &bytes[..], &mut out)
        };
        let e = got.expect_err(&format!("{format} {want}: an error"));
        let kind = match &e {
            NormalizeError::Read { .. } => "read",
            NormalizeError::Format { .. } => "format",
            NormalizeError::Limit { .. } => "limit",
            _ => "other",
        };
        let (want_kind, want_text) = want.split_once(": ").unwrap_or((want, ""));
        assert_eq!(kind, want_kind, "{format} {want}: {e}");
        assert!(e.to_string().contains(want_text), "{format} {want}: {e}");
        if fails {
            assert!(e.to_string().contains("connection reset"), "{e}");
        }
    }
}

#[test]
fn value_contracts_reject_rows_naming_the_rule_and_uuids_are_lower_cased() {
    let j = job(r#"{ name = "id", type = "uuid", required = true },
           { name = "status", type = "varchar(12)", one_of = ["open", "done"] },
           { name = "code", type = "varchar(12)", pattern = "[A-Z]{3}-[0-9]+" },
           { name = "n", type = "int", min = "0", max = "100" },
           { name = "at", type = "date", min = "2026-01-01" },
           { name = "note", type = "varchar(12)", not_empty = true }"#);
    let id = "0F8FAD5B-D9CB-469F-A165-70867728950E";
    let input = format!(
        "id,status,code,n,at,note\n\
         {id},open,ABC-1,+7,2026-03-01,x\n\
         not-a-uuid,open,ABC-1,7,2026-03-01,x\n\
         {id},gone,ABC-1,7,2026-03-01,x\n\
         {id},done,abc-1,7,2026-03-01,x\n\
         {id},done,ABC-1,101,2026-03-01,x\n\
         {id},done,ABC-1,7,2025-12-31,x\n\
         {id},done,ABC-1,7,2026-03-01,\n\
         {id},open,ABC-1,,,\"\"\n"
    );
    let (out, stats) = run(&j, &input).unwrap();
    assert_eq!(
        out, "0f8fad5b-d9cb-469f-a165-70867728950e,open,ABC-1,7,2026-03-01,x,/in/f.csv,2\n",
        "only the first row keeps every contract"
    );
    let got: Vec<(u64, Option<&str>, i32)> = stats
        .errors
        .iter()
        .map(|e| (e.line, e.column.as_deref(), e.code))
        .collect();
    assert_eq!(
        got,
        [
            (3, Some("id"), 1234),
            (4, Some("status"), 1230),
            (5, Some("code"), 1231),
            (6, Some("n"), 1232),
            (7, Some("at"), 1232),
            (8, Some("note"), 1233),
            (9, Some("note"), 1233),
        ]
    );
    assert!(
        stats.errors[1]
            .reason
            .contains("column status: \"gone\" is not one of [\"open\", \"done\"] (one_of)"),
        "{}",
        stats.errors[1].reason
    );
    assert!(
        stats.errors[3].reason.contains("above max = 100"),
        "{}",
        stats.errors[3].reason
    );
    assert_eq!(
        stats.errors[5].raw_value.as_deref(),
        Some(""),
        "an empty text, not a missing one"
    );
    // An empty text is a value: one_of and pattern check it too.
    let (_, stats) = run(&j, &format!("id,status,code,n,at,note\n{id},,ABC-1,,,x\n")).unwrap();
    assert_eq!(stats.errors[0].code, 1230);
}

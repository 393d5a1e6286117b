//! Limit programs for `bench/normalize.sh`: the least work any normalizer
//! of these files must do, each on its own, to hold ferry's normalize
//! against. Each streams its file in 1 MiB reads with the same crates
//! ferry uses and prints what it did and how fast:
//!
//!     limits parse csv FILE            every record split into fields (csv)
//!     limits parse ndjson FILE         every line into a map of raw field values (serde_json)
//!     limits parse xml FILE ELEMENT    every event read, ELEMENT starts counted (quick-xml, no unescaping)
//!     limits gzip FILE LEVEL           FILE gzipped at LEVEL into nothing (flate2 on zlib-rs)
//!     limits sha256 FILE               FILE hashed (sha2)
//!
//! Output, one line: `WHAT BYTES bytes RECORDS records SECONDS s MB/s`.
//!
//!     cargo run --release --example limits -- parse csv events.csv

#![allow(clippy::disallowed_methods)] // a bench tool: reads whole lines

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Instant;

const CHUNK: usize = 1 << 20;

fn open(path: &str) -> BufReader<std::fs::File> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    BufReader::with_capacity(CHUNK, f)
}

/// CSV: every record split into its fields.
fn csv(path: &str) -> u64 {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(open(path));
    let mut rec = csv::ByteRecord::new();
    let mut n = 0;
    while r.read_byte_record(&mut rec).expect("a CSV record") {
        n += 1;
    }
    n
}

/// NDJSON: every line into its top-level fields, values left raw.
fn ndjson(path: &str) -> u64 {
    let mut r = open(path);
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).expect("a line") == 0 {
            return n;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let fields: std::collections::HashMap<&str, &serde_json::value::RawValue> =
            serde_json::from_slice(&line).expect("a JSON object per line");
        n += u64::from(!fields.is_empty());
    }
}

/// XML: every event read; `element` starts counted as records.
fn xml(path: &str, element: &str) -> u64 {
    let mut r = quick_xml::Reader::from_reader(open(path));
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        match r.read_event_into(&mut buf).expect("an XML event") {
            quick_xml::events::Event::Start(e) if e.local_name().as_ref() == element.as_bytes() => {
                n += 1
            }
            quick_xml::events::Event::Eof => return n,
            _ => {}
        }
        buf.clear();
    }
}

/// Hands `path` to `each` in reads of [`CHUNK`] bytes.
fn chunks(path: &str, mut each: impl FnMut(&[u8])) {
    let mut r = open(path);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let got = r.read(&mut buf).expect("a read");
        if got == 0 {
            return;
        }
        each(&buf[..got]);
    }
}

/// `path` gzipped at `level` into a sink.
fn gzip(path: &str, level: u32) -> u64 {
    let mut enc = flate2::write::GzEncoder::new(std::io::sink(), flate2::Compression::new(level));
    chunks(path, |b| enc.write_all(b).expect("gzip"));
    enc.finish().expect("gzip end");
    0
}

/// `path` hashed.
fn sha256(path: &str) -> u64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    chunks(path, |b| h.update(b));
    std::hint::black_box(h.finalize());
    0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let usage = "usage: limits parse csv|ndjson FILE | parse xml FILE ELEMENT | gzip FILE LEVEL | sha256 FILE";
    let (what, file) = match a.as_slice() {
        ["parse", kind, file, ..] => (format!("parse-{kind}"), *file),
        [kind @ ("gzip" | "sha256"), file, ..] => (kind.to_string(), *file),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let start = Instant::now();
    let records = match a.as_slice() {
        ["parse", "csv", f] => csv(f),
        ["parse", "ndjson", f] => ndjson(f),
        ["parse", "xml", f, element] => xml(f, element),
        ["gzip", f, level] => gzip(f, level.parse().expect("a gzip level 0-9")),
        ["sha256", f] => sha256(f),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{what} {bytes} bytes {records} records {secs:.3} s {:.1} MB/s",
        bytes as f64 / 1e6 / secs.max(1e-9)
    );
}

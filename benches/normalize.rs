//! criterion benches for normalize's hot loops: each decoder with mapping
//! and CSV writing (no compression), timestamp coercion, the CSV writer,
//! and gzip. Run with `cargo bench --bench normalize`; the end-to-end
//! figures (with gzip, SHA-256 and peak RSS on a 1 GB file) come from
//! `bench/normalize.sh`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry::config::Job;
use ferry::normalize::{FileContext, normalize, write_record};
use ferry::schema::ColumnType;
use ferry::schema::coerce;
use std::hint::black_box;
use std::io::Write;

const ROWS: usize = 20_000;

/// The mapping `bench/normalize.sh` uses too.
const COLUMNS: &str = include_str!("../bench/columns.toml");

fn job(format: &str, id: &str) -> Job {
    let toml = format!(
        "[staging]\nbucket = \"b\"\n[warehouse]\nkind = \"postgres\"\n[sources.s]\nkind = \"local\"\nroot = \"/tmp\"\n\
         [[jobs]]\nname = \"bench\"\nsource = \"s\"\npath = \"/\"\ntarget = \"task_events\"\nmode = \"append\"\n\
         format = {format}\ncolumns = [{}\n]\n",
        COLUMNS.replace("SRC_ID", &format!("source = \"{id}\""))
    );
    let config = ferry::config::from_toml_str(&toml).expect("bench config is valid");
    (*config.jobs[0]).clone()
}

/// One generated event's values.
struct Event {
    id: String,
    task: String,
    user: String,
    time: String,
    duration: usize,
    attempt: usize,
}

fn event(i: usize) -> Event {
    Event {
        id: format!("ev-{i:010}"),
        task: format!("task-{:07}", i * 7919 % 1_000_000),
        user: format!("user-{}", i % 50_000),
        time: format!(
            "2026-03-{:02}T{:02}:{:02}:{:02}Z",
            i % 28 + 1,
            i % 24,
            i % 60,
            i * 7 % 60
        ),
        duration: i * 31 % 3_600_000,
        attempt: i % 5 + 1,
    }
}

/// `head`, one line per generated event, `tail`.
fn generate(head: &str, tail: &str, line: impl Fn(&Event) -> String) -> Vec<u8> {
    let mut out = head.as_bytes().to_vec();
    for e in (0..ROWS).map(event) {
        writeln!(out, "{}", line(&e)).unwrap();
    }
    out.extend_from_slice(tail.as_bytes());
    out
}

fn csv_input() -> Vec<u8> {
    generate(
        "event_id,task_id,event_type,status,user_id,source_system,occurred_at,duration_ms,attempt,payload\n",
        "",
        |e| {
            format!(
                "{},{},created,open,{},jira,{},{},{},\"{{\"\"priority\"\": \"\"high\"\", \"\"note\"\": \"\"a, b\"\"}}\"",
                e.id, e.task, e.user, e.time, e.duration, e.attempt
            )
        },
    )
}

fn ndjson_input() -> Vec<u8> {
    generate("", "", |e| {
        format!(
            r#"{{"event_id": "{}", "task_id": "{}", "event_type": "created", "status": "open", "user_id": "{}", "source_system": "jira", "occurred_at": "{}", "duration_ms": {}, "attempt": {}, "payload": {{"priority": "high", "note": "a, b"}}}}"#,
            e.id, e.task, e.user, e.time, e.duration, e.attempt
        )
    })
}

fn xml_input() -> Vec<u8> {
    generate(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<export><events>\n",
        "</events></export>\n",
        |e| {
            format!(
                "<event id=\"{}\"><task_id>{}</task_id><event_type>created</event_type><status>open</status><user_id>{}</user_id><source_system>jira</source_system><occurred_at>{}</occurred_at><duration_ms>{}</duration_ms><attempt>{}</attempt><payload>{{\"priority\": \"high\", \"note\": \"a, b\"}}</payload></event>",
                e.id, e.task, e.user, e.time, e.duration, e.attempt
            )
        },
    )
}

fn decoders(c: &mut Criterion) {
    let ctx = FileContext {
        path: "/outbox/2026/03/01/events.dat".into(),
        ingest_time: "2026-03-01 00:00:00".into(),
        size_hint: None,
    };
    let cases = [
        ("csv", job("{ kind = \"csv\" }", "event_id"), csv_input()),
        (
            "ndjson",
            job("{ kind = \"ndjson\" }", "event_id"),
            ndjson_input(),
        ),
        (
            "xml",
            job(
                "{ kind = \"xml\", record_path = \"/export/events/event\" }",
                "@id",
            ),
            xml_input(),
        ),
    ];
    let mut g = c.benchmark_group("normalize");
    for (name, job, input) in &cases {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| {
                let stats = normalize(job, &ctx, input.as_slice(), std::io::sink()).unwrap();
                assert_eq!(stats.rows, ROWS as u64);
                black_box(stats.rows)
            })
        });
    }
    g.finish();
}

fn values(c: &mut Criterion) {
    let mut g = c.benchmark_group("values");
    g.throughput(Throughput::Elements(1));
    g.bench_function("timestamptz_z", |b| {
        b.iter(|| coerce(black_box("2026-03-08T07:08:47Z"), ColumnType::Timestamptz).unwrap())
    });
    g.bench_function("timestamptz_offset_fraction", |b| {
        b.iter(|| {
            coerce(
                black_box("2026-03-08T07:08:47.123456+05:30"),
                ColumnType::Timestamptz,
            )
            .unwrap()
        })
    });
    g.bench_function("bigint", |b| {
        b.iter(|| coerce(black_box("1719583"), ColumnType::Bigint).unwrap())
    });
    let row: [Option<&str>; 12] = [
        Some("ev-0000000001"),
        Some("task-0670487"),
        Some("created"),
        Some("open"),
        Some("user-48598"),
        None,
        Some("2026-03-08 07:08:47+00"),
        Some("1719583"),
        Some("1"),
        Some(r#"{"priority": "high", "note": "a, b"}"#),
        Some("/outbox/2026/03/01/events.csv"),
        Some("123456"),
    ];
    let mut buf = Vec::with_capacity(512);
    g.bench_function("write_record", |b| {
        b.iter(|| {
            buf.clear();
            write_record(&mut buf, black_box(row)).unwrap();
            buf.len()
        })
    });
    g.finish();
}

fn gzip(c: &mut Criterion) {
    let data = csv_input();
    let mut g = c.benchmark_group("gzip");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("parallel_level_1", |b| {
        b.iter(|| {
            let mut w = ferry::normalize::gzip::ParallelGzip::new(Vec::new(), 1);
            w.write_all(&data).unwrap();
            w.finish().unwrap().len()
        })
    });
    g.finish();
}

criterion_group!(benches, decoders, values, gzip);
criterion_main!(benches);

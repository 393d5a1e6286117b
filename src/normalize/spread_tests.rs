//! Several row writers side by side (`row_threads`) give what one gives:
//! the same staged bytes, counts, kept errors, drift and failures, on
//! files of many batches with rejects, new fields, misfits and captures
//! spread through them, in every decoder.

use super::tests::{run_with_hint, same_result};
use super::*;

/// A small deterministic generator (xorshift64*): the inputs vary from
/// seed to seed but each test's are fixed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

const RECORDS: u64 = 6000;

/// A record: id, amount text, name, and an unmapped field if any.
type Generated = (u64, String, String, Option<(String, String)>);

/// The records of a file. About one amount in 150 is not a number (a
/// reject) and one name in 150 too long for its VARCHAR(6) (a misfit);
/// one record in 15 has a new field, of 90 names whose first use is
/// spread through the file (more than `MAX_NEW_FIELDS`, so the cap is
/// exercised). Records up to `clean_until` have none of these.
fn records_from(seed: u64, clean_until: u64) -> Vec<Generated> {
    let mut rng = Rng(seed);
    (1..=RECORDS)
        .map(|id| {
            let clean = id <= clean_until;
            let amount = match rng.below(150) {
                0 if !clean => "twelve".to_string(),
                _ => rng.below(1_000_000).to_string(),
            };
            let name = match rng.below(150) {
                0 if !clean => "a-much-longer-name".to_string(),
                _ => format!("n{}", rng.below(999)),
            };
            let extra = (rng.below(15) == 0 && !clean).then(|| {
                // Names past the first few show up later in the file.
                let k = rng.below(1 + (id * 90 / RECORDS).min(89));
                (format!("extra_{k}"), rng.below(50).to_string())
            });
            (id, amount, name, extra)
        })
        .collect()
}

fn records(seed: u64) -> Vec<Generated> {
    records_from(seed, 0)
}

fn ndjson(seed: u64) -> String {
    ndjson_of(records(seed))
}

fn ndjson_of(records: Vec<Generated>) -> String {
    records
        .into_iter()
        .map(|(id, amount, name, extra)| {
            let extra = extra.map_or(String::new(), |(k, v)| format!(",\"{k}\":{v}"));
            format!("{{\"id\":{id},\"amount\":\"{amount}\",\"name\":\"{name}\"{extra}}}\n")
        })
        .collect()
}

fn xml(seed: u64) -> String {
    let body: String = records(seed)
        .into_iter()
        .map(|(id, amount, name, extra)| {
            let extra = extra.map_or(String::new(), |(k, v)| format!("<{k}>{v}</{k}>"));
            format!("<e id=\"{id}\"><amount>{amount}</amount><name>{name}</name>{extra}</e>\n")
        })
        .collect();
    format!("<r>\n{body}</r>\n")
}

/// CSV has its new fields in the header: a column that only some
/// records fill.
fn csv(seed: u64) -> String {
    let mut out = String::from("id,amount,name,note\n");
    for (id, amount, name, extra) in records(seed) {
        let note = extra.map_or(String::new(), |(_, v)| v);
        out.push_str(&format!("{id},{amount},\"{name}\",{note}\n"));
    }
    out
}

const COLUMNS: &str = r#"{ name = "id", type = "bigint", required = true }, { name = "amount", type = "bigint" }, { name = "name", type = "varchar(6)" }"#;
const XML_COLUMNS: &str = r#"{ name = "id", type = "bigint", required = true, source = "@id" }, { name = "amount", type = "bigint" }, { name = "name", type = "varchar(6)" }"#;

/// Runs `input` with one writer and with two and three, on a thread of
/// their own (no size hint), and checks the results are the same; returns
/// the one-writer result.
fn spread(
    extra: &str,
    columns: &str,
    input: &str,
) -> Result<(String, NormalizeStats), NormalizeError> {
    let text = crate::config::test_toml(&format!(
        "mode = \"append\"\nmax_errors = \"20%\"\n{extra}\ncolumns = [ {columns} ]\n"
    ));
    let job = crate::config::from_toml_str(&text).unwrap().jobs[0]
        .as_ref()
        .clone();
    let with = |n: usize| {
        let mut j = job.clone();
        j.row_threads = n;
        run_with_hint(&j, input.as_bytes(), None)
    };
    let one = with(1);
    for n in [2, 3] {
        same_result(&format!("{n}-writer"), &one, &with(n));
    }
    one
}

/// Every decoder under each contract that tracks fields and values.
#[test]
fn several_writers_make_what_one_makes() {
    let contracts = [
        "",
        "contract = { columns = \"evolve\", types = \"evolve\" }",
        "contract = { columns = \"discard_value\", types = \"discard_value\" }",
        "contract = { columns = \"capture\", capture_column = \"extra\" }",
        "contract = { columns = \"discard_row\" }",
    ];
    for (seed, contract) in contracts.iter().enumerate() {
        let seed = seed as u64 * 7919 + 1;
        let cases = [
            ("format = { kind = \"ndjson\" }", COLUMNS, ndjson(seed)),
            (
                "format = { kind = \"xml\", record_path = \"/r/e\" }",
                XML_COLUMNS,
                xml(seed),
            ),
            ("format = { kind = \"csv\" }", COLUMNS, csv(seed)),
        ];
        for (format, columns, input) in cases {
            let (out, stats) = spread(&format!("{format}\n{contract}"), columns, &input)
                .unwrap_or_else(|e| panic!("{format} {contract}: {e}"));
            // The files did what they were made for: many batches, rejects
            // and drift spread through them.
            assert!(stats.rows > 5000 && !out.is_empty(), "{format} {contract}");
            if !contract.contains("discard_value") {
                assert!(
                    stats.rejected > 20,
                    "{format} {contract}: {}",
                    stats.rejected
                );
            }
            assert!(!stats.drift.is_empty(), "{format} {contract}");
        }
    }
}

/// More new fields than are tracked: the first ones, in file order, with
/// every record counted.
#[test]
fn the_new_fields_tracked_are_the_first_in_the_file() {
    let (_, stats) = spread(
        "format = { kind = \"ndjson\" }\ncontract = { columns = \"evolve\" }",
        COLUMNS,
        &ndjson(3),
    )
    .unwrap();
    let drift = &stats.drift;
    assert_eq!(drift.new_fields.len(), drift::MAX_NEW_FIELDS);
    assert!(drift.more_new_fields > 0);
    let lines: Vec<u64> = drift.new_fields.iter().map(|f| f.first_line).collect();
    assert!(lines.is_sorted(), "{lines:?}");
    let input = ndjson(3);
    let first = &drift.new_fields[0];
    let count = input
        .lines()
        .filter(|l| l.contains(&format!("\"{}\":", first.name)))
        .count() as u64;
    assert_eq!(first.records, count);
}

/// A file that fails half way (a new field under `freeze`, a value that
/// does not fit under `types = "freeze"`, first in a later batch) fails
/// with the same error, the first in file order, however many writers
/// there are.
#[test]
fn a_failure_is_the_first_in_the_file_whatever_the_writers() {
    for (contract, want) in [
        (
            "contract = { columns = \"freeze\" }",
            "are not in the mapping",
        ),
        (
            "contract = { types = \"freeze\" }",
            "contract.types = \"freeze\"",
        ),
    ] {
        let e = spread(
            &format!("format = {{ kind = \"ndjson\" }}\n{contract}"),
            COLUMNS,
            &ndjson_of(records_from(11, 3000)),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(want), "{e}");
        assert!(!e.contains("line 1 "), "{e}");
    }
}

//! Any string survives normalize → PostgreSQL COPY unchanged, and NULL
//! stays distinct from the empty string: randomized, against the real
//! database, through the exact COPY options the loader uses.

use crate::harness::TestDb;
use bytes::Bytes;
use ferry::rng::XorShift as Rng;
use futures::SinkExt;

const PIECES: &[&str] = &[
    "a", "Z", "0", ",", "\"", "\"\"", "\n", "\r\n", "\r", "\\", "\\N", "N", " ", "\t", "'", ";",
    "ü", "€", "😀", "日本", "NULL", "null", "\u{feff}",
];

fn random_value(rng: &mut Rng) -> Option<String> {
    match rng.next_u64() % 10 {
        0 => None,
        1 => Some(String::new()),
        _ => {
            let n = 1 + rng.next_u64() % 12;
            Some(
                (0..n)
                    .map(|_| PIECES[(rng.next_u64() % PIECES.len() as u64) as usize])
                    .collect(),
            )
        }
    }
}

#[tokio::test]
async fn any_string_survives_normalize_and_copy_and_null_stays_null() {
    let db = TestDb::new().await;
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let rows: Vec<[Option<String>; 3]> = (0..400)
        .map(|_| {
            [
                random_value(&mut rng),
                random_value(&mut rng),
                random_value(&mut rng),
            ]
        })
        .collect();
    // NDJSON input can say null, "" and any string apart.
    let mut input = String::new();
    for (i, r) in rows.iter().enumerate() {
        let obj = serde_json::json!({ "id": i, "a": r[0], "b": r[1], "c": r[2] });
        input.push_str(&obj.to_string());
        input.push('\n');
    }
    let toml = "[staging]\nbucket = \"b\"\n[warehouse]\nkind = \"postgres\"\n[sources.s]\nkind = \"local\"\nroot = \"/tmp\"\n\
        [[jobs]]\nname = \"j\"\nsource = \"s\"\npath = \"/\"\ntarget = \"t\"\nmode = \"append\"\nformat = { kind = \"ndjson\" }\n\
        columns = [ { name = \"id\", type = \"int\" }, { name = \"a\", type = \"varchar(65535)\", trim = false }, \
        { name = \"b\", type = \"varchar(65535)\", trim = false }, { name = \"c\", type = \"varchar(65535)\", trim = false } ]\n";
    let config = ferry::config::from_toml_str(toml).unwrap();
    let job = config.jobs[0].clone();
    let ctx = ferry::normalize::FileContext {
        path: "/in/f.ndjson".into(),
        ingest_time: "2026-01-01 00:00:00".into(),
        size_hint: None,
    };
    let mut staged = Vec::new();
    let stats = ferry::normalize::normalize(&job, &ctx, input.as_bytes(), &mut staged).unwrap();
    assert_eq!((stats.rows, stats.rejected), (400, 0));

    let t = db.t("roundtrip");
    db.client
        .batch_execute(&format!(
            "CREATE TABLE {t} (id INTEGER, a VARCHAR(65535), b VARCHAR(65535), c VARCHAR(65535), ferry_file VARCHAR(1024), ferry_line BIGINT)"
        ))
        .await
        .unwrap();
    let sink = db
        .client
        .copy_in::<_, Bytes>(&format!("COPY {t} (id, a, b, c, ferry_file, ferry_line) FROM STDIN WITH (FORMAT csv, NULL '\\N')"))
        .await
        .unwrap();
    futures::pin_mut!(sink);
    sink.send(Bytes::from(staged)).await.unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 400);
    let got = db
        .client
        .query(&format!("SELECT id, a, b, c FROM {t} ORDER BY id"), &[])
        .await
        .unwrap();
    for (row, want) in got.iter().zip(&rows) {
        let id: i32 = row.get(0);
        let have: [Option<String>; 3] = [row.get(1), row.get(2), row.get(3)];
        assert_eq!(&have, want, "row {id}");
    }
    db.drop_schema().await;
}

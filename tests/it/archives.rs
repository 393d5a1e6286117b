//! Zip and tar(.gz) archives end to end, on both backends: each member
//! that matches `archive.members` loads as its own version
//! (`archive.zip!/member.csv`), the archive is recorded and finalized
//! only once every member has loaded, a member that fails fails the
//! archive (naming it) without holding back the others, `ferry retry`
//! of the archive tries its failed members again, and an archive whose
//! members loaded before a crash (its own row never written) is
//! completed without loading a row twice.

use crate::harness::{Backend, Env};
use ferry::pipeline::run_pass;
use std::io::Write;

crate::harness::both_backends!(
    archive_members_load_as_versions_and_the_archive_finalizes_after_all,
    a_failed_member_fails_its_archive_and_retry_loads_it,
);

fn job(extra: &str) -> String {
    format!(
        r#"
[[jobs]]
name = "arch"
source = "partner"
path = "/outbox"
pattern = "*.{{zip,tgz,tar}}"
target = "arch_events"
key = ["id"]
auto_create = true
settle = {{ min_age = "0s" }}
archive = {{ members = "*.csv" }}
{extra}
columns = [
  {{ name = "id", type = "varchar(16)", required = true }},
  {{ name = "n", type = "int" }},
  {{ name = "file", type = "varchar(256)", derived = "source_file" }},
]
"#
    )
}

/// A CSV of ids `{prefix}{i}` for `i` in `range`.
fn csv(prefix: &str, range: std::ops::Range<usize>) -> String {
    let mut s = String::from("id,n\n");
    for i in range {
        s.push_str(&format!("{prefix}{i},{i}\n"));
    }
    s
}

fn zip_of(members: &[(&str, &str)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, body) in members {
        if name.ends_with('/') {
            w.add_directory(*name, opts).unwrap();
        } else {
            w.start_file(*name, opts).unwrap();
            w.write_all(body.as_bytes()).unwrap();
        }
    }
    w.finish().unwrap().into_inner()
}

fn tgz_of(members: &[(&str, &str)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, body) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_772_323_200);
        h.set_cksum();
        b.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

async fn ledger_rows(env: &Env) -> Vec<String> {
    env.db
        .texts(
            &format!(
                "SELECT path || ' ' || state || ' ' || rows_loaded FROM {} WHERE job = 'arch' ORDER BY path",
                env.db.t("ferry_files")
            ),
            &[],
        )
        .await
}

async fn archive_members_load_as_versions_and_the_archive_finalizes_after_all(backend: Backend) {
    let env = Env::start(backend).await;
    let outbox = env.stack.sftp.root.join("outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    let a = csv("a", 0..300);
    let b = csv("b", 0..200);
    std::fs::write(
        outbox.join("day.zip"),
        zip_of(&[
            ("a.csv", &a),
            ("sub/", ""),
            ("sub/b.csv", &b),
            ("readme.txt", "not data"),
            ("__MACOSX/._a.csv", "resource fork"),
        ]),
    )
    .unwrap();
    let c = csv("c", 0..150);
    std::fs::write(
        outbox.join("night.tgz"),
        tgz_of(&[("./c.csv", &c), ("notes.md", "# not data")]),
    )
    .unwrap();
    let rt = env
        .runtime(&job(
            "on_success = { action = \"move\", to = \"/done\" }\nbatch = { max_files = 2 }",
        ))
        .await;
    let r = run_pass(&rt, None).await.unwrap();
    assert!(!r.has_failures(), "{r:?}");
    assert_eq!(r.loaded.len(), 3, "{r:?}");
    assert_eq!(env.db.count("arch_events").await, 650);
    assert_eq!(
        env.db
            .count_where("arch_events", "file = '/outbox/day.zip!/sub/b.csv'")
            .await,
        200
    );
    assert_eq!(
        ledger_rows(&env).await,
        [
            "/outbox/day.zip loaded 0",
            "/outbox/day.zip!/a.csv loaded 300",
            "/outbox/day.zip!/sub/b.csv loaded 200",
            "/outbox/night.tgz loaded 0",
            "/outbox/night.tgz!/c.csv loaded 150",
        ]
    );
    // Finalized only after all members: both archives moved, whole.
    assert!(!outbox.join("day.zip").exists());
    assert!(env.stack.sftp.root.join("done/day.zip").exists());
    assert!(env.stack.sftp.root.join("done/night.tgz").exists());

    // The same archive put back (same bytes, same mtime) is the same
    // version: nothing loads twice.
    std::fs::copy(
        env.stack.sftp.root.join("done/day.zip"),
        outbox.join("day.zip"),
    )
    .unwrap();
    let mtime = std::fs::metadata(env.stack.sftp.root.join("done/day.zip"))
        .unwrap()
        .modified()
        .unwrap();
    std::fs::File::options()
        .write(true)
        .open(outbox.join("day.zip"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let r = run_pass(&rt, None).await.unwrap();
    assert!(r.loaded.is_empty(), "{r:?}");
    assert_eq!(env.db.count("arch_events").await, 650);

    // A crash after the members' commits and before the archive's own row:
    // the next pass opens it again, skips its members, records it.
    env.db
        .client
        .execute(
            &format!(
                "DELETE FROM {} WHERE path = '/outbox/day.zip'",
                env.db.t("ferry_files")
            ),
            &[],
        )
        .await
        .unwrap();
    drop(rt);
    let rt = env
        .runtime(&job(
            "on_success = { action = \"move\", to = \"/done\" }\nbatch = { max_files = 2 }",
        ))
        .await;
    let r = run_pass(&rt, None).await.unwrap();
    assert!(r.loaded.is_empty() && !r.has_failures(), "{r:?}");
    assert_eq!(env.db.count("arch_events").await, 650);
    assert_eq!(ledger_rows(&env).await.len(), 5);
    assert!(!outbox.join("day.zip").exists(), "finalized on completion");
    drop(rt);
    env.finish().await;
}

async fn a_failed_member_fails_its_archive_and_retry_loads_it(backend: Backend) {
    let env = Env::start(backend).await;
    let outbox = env.stack.sftp.root.join("outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    let good = csv("g", 0..100);
    let bad = format!("{}x1,not-a-number\n", csv("h", 0..50));
    std::fs::write(
        outbox.join("mixed.zip"),
        zip_of(&[("good.csv", &good), ("bad.csv", &bad)]),
    )
    .unwrap();
    let rt = env.runtime(&job("")).await;
    let r = run_pass(&rt, None).await.unwrap();
    assert_eq!(r.loaded.len(), 1, "{r:?}");
    let failed: Vec<&str> = r.failed.iter().map(|(_, p, _)| p.as_str()).collect();
    assert_eq!(
        failed,
        ["/outbox/mixed.zip!/bad.csv", "/outbox/mixed.zip"],
        "{r:?}"
    );
    let why = &r.failed[1].2;
    assert!(
        why.contains("1 of its 2 members failed (first: bad.csv:")
            && why.contains("ferry retry --job arch --path /outbox/mixed.zip"),
        "{why}"
    );
    assert_eq!(env.db.count("arch_events").await, 100);
    // Failed for good: the next pass leaves it alone.
    let r = run_pass(&rt, None).await.unwrap();
    assert!(r.loaded.is_empty() && r.failed.is_empty(), "{r:?}");

    // The operator accepts the bad record (max_errors) and retries the
    // archive: its failed member is tried again, the good one not.
    drop(rt);
    let config = ferry::config::from_toml_str(&env.config_toml(&job("max_errors = 1"))).unwrap();
    let said = ferry::commands::ops::retry(
        &config,
        &*ferry::warehouse::connect(&config, &ferry::stage::Stager::new(&config.staging).await)
            .await
            .unwrap(),
        "arch",
        Some("/outbox/mixed.zip"),
    )
    .await
    .unwrap();
    assert!(said.starts_with("2 failed file version(s)"), "{said}");
    let rt = ferry::pipeline::Runtime::start(config).await.unwrap();
    let r = run_pass(&rt, None).await.unwrap();
    assert!(!r.has_failures(), "{r:?}");
    assert_eq!(r.loaded.len(), 1, "{r:?}");
    assert_eq!(r.loaded[0].path, "/outbox/mixed.zip!/bad.csv");
    assert_eq!(r.loaded[0].rejected, 1);
    assert_eq!(env.db.count("arch_events").await, 150);
    assert_eq!(
        ledger_rows(&env).await,
        [
            "/outbox/mixed.zip loaded 0",
            "/outbox/mixed.zip!/bad.csv loaded 50",
            "/outbox/mixed.zip!/good.csv loaded 100",
        ]
    );
    drop(rt);
    env.finish().await;
}

//! Every statement ferry renders for Redshift, checked against Redshift's
//! rules: PostgreSQL runs the same statements in the other tests but
//! accepts things Redshift rejects (TEXT, SERIAL, ON CONFLICT, MERGE
//! guards, enforced keys), so passing there proves nothing about Redshift.
//! Each statement is parsed with sqlparser's Redshift dialect and checked
//! against a list of PostgreSQL-only constructs.

use crate::harness::{Stack, task_events_job};
use ferry::migrate::{MIGRATIONS, render};
use ferry::sql::Dialect;
use ferry::sql::Ident;
use ferry::warehouse::sql::{LoadSql, TARGET_META};
use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::parser::Parser;

/// Constructs PostgreSQL accepts and Redshift does not (or does not
/// enforce, which for ferry is worse).
const POSTGRES_ONLY: &[&str] = &[
    " TEXT",
    "SERIAL",
    "ON CONFLICT",
    "RETURNING",
    "PRIMARY KEY",
    "UNIQUE",
    "REFERENCES",
    "JSONB",
    "NOW()",
    "CLOCK_TIMESTAMP",
    "WHEN MATCHED AND",
    "DO NOTHING",
    "$1",
];

fn check(sql: &str) {
    Parser::parse_sql(&RedshiftSqlDialect {}, sql)
        .unwrap_or_else(|e| panic!("not Redshift SQL ({e}):\n{sql}"));
    let upper = sql.to_uppercase();
    for bad in POSTGRES_ONLY {
        assert!(
            !upper.contains(bad),
            "{bad:?} is PostgreSQL-only or unenforced on Redshift:\n{sql}"
        );
    }
}

#[tokio::test]
async fn load_statements_are_redshift_sql_in_every_mode() {
    let stack = Stack::start().await;
    let schema = Ident::parse("analytics").unwrap();
    let stage = Ident::parse("ferry_stage_0123456789ab").unwrap();
    let jobs = [
        task_events_job(""),
        task_events_job("mode = \"append\""),
        crate::harness::task_events_job_with_scd2(),
    ];
    for job_toml in jobs {
        let toml = format!(
            "{}[warehouse]\nkind = \"postgres\"\n{job_toml}",
            stack.base_toml(),
        );
        let config = ferry::config::from_toml_str(&toml).expect("config is valid");
        let job = &config.jobs[0];
        let sql = LoadSql {
            dialect: Dialect::Redshift,
            schema: &schema,
            job,
            stage: &stage,
            target_meta: TARGET_META.to_vec(),
        };
        let mut statements = vec![sql.create_stage()];
        statements.extend(sql.drop_stale());
        for d in &job.dimensions {
            statements.extend(sql.merge_dimension(d));
        }
        statements.extend(sql.delete_replaced());
        statements.push(sql.insert_fact());
        statements.push(sql.drop_stage());
        for s in &statements {
            check(s);
        }
    }
}

#[test]
fn migrations_are_redshift_sql() {
    for m in MIGRATIONS {
        let statements = render(m, Dialect::Redshift);
        // A migration of PostgreSQL-only indexes has nothing for Redshift.
        assert!(
            !statements.is_empty() || m.sql.contains("/*@postgres"),
            "{}",
            m.name
        );
        for s in statements {
            check(&s);
        }
    }
}

#[test]
fn the_check_rejects_what_redshift_would() {
    for bad in [
        "CREATE TABLE t (a TEXT)",
        "INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING",
        "CREATE TABLE t (id BIGSERIAL)",
        "CREATE TABLE t (a INTEGER PRIMARY KEY)",
        "SELECT FROM WHERE",
    ] {
        let caught = std::panic::catch_unwind(|| check(bad));
        assert!(caught.is_err(), "accepted: {bad}");
    }
    check("CREATE TABLE t (a INTEGER) DISTSTYLE ALL");
}

#[test]
fn ledger_statements_are_redshift_sql_with_named_parameters() {
    use ferry::ledger::LedgerSql;
    let l = LedgerSql::with_dialect(&Ident::parse("analytics").unwrap(), Dialect::Redshift);
    let (update_job, insert_job) = l.sync_job();
    let [clear_failed, insert_failed]: [String; 2] = l.record_failed().try_into().unwrap();
    let statements = [
        l.versions_report("j", &["a", "b", "c"]).sql,
        l.insert_skipped(),
        l.clear_unloaded(),
        l.insert_loaded(),
        clear_failed,
        insert_failed,
        l.mark_finalized(),
        l.insert_load(),
        update_job,
        insert_job,
        l.job_enabled_report("j").sql,
    ];
    check(&l.lock());
    for s in &statements {
        check(s);
        assert!(
            s.contains(":job") || s.contains(":e0_job") || s.contains(":load_id"),
            "{s}"
        );
    }
    assert!(statements[0].contains("IN (:p0, :p1, :p2)"));
    // A failure is recorded only while no replica has the version loaded.
    assert!(statements[5].contains("l.mtime = CAST(CAST(:mtime AS VARCHAR(20)) AS BIGINT)"));
    // Error rows come from a staged CSV, never as 11 parameters a row.
    use ferry::ledger::errors::CopiedErrors;
    for s in l.errors_from_copy(
        "'s3://b/errors.csv.gz'",
        "default",
        CopiedErrors::OfVersion {
            unless_loaded: true,
        },
    ) {
        check(&s);
    }
    // Leases: the lock on ferry_leases (never the ledger's), then the
    // statements on the warehouse's own clock, GETDATE() on Redshift.
    let take = l.take_lease(std::time::Duration::from_secs(120));
    assert_eq!(take[0], "LOCK TABLE \"analytics\".\"ferry_leases\"");
    for s in take.iter().chain(&l.release_lease()) {
        check(s);
        assert!(!s.contains("ferry_files"), "{s}");
    }
    for s in &take[1..] {
        assert!(
            s.contains(":job") && s.contains(":owner") && s.contains("GETDATE()"),
            "{s}"
        );
    }
    assert!(
        take[2].contains("GETDATE() + INTERVAL '120 seconds'"),
        "{}",
        take[2]
    );
    check(&l.leases_report().sql);
    // PostgreSQL keeps its $n form.
    let pg = LedgerSql::new(&Ident::parse("analytics").unwrap());
    let pg_failed = pg.record_failed();
    assert!(pg_failed[1].contains("$8") && !pg_failed[1].contains(":rejects_key"));
}

#[test]
fn operations_statements_are_redshift_sql_with_named_parameters() {
    use ferry::ledger::LedgerSql;
    use ferry::ledger::reports::Filter;
    let l = LedgerSql::with_dialect(&Ident::parse("analytics").unwrap(), Dialect::Redshift);
    let filter = Filter {
        job: Some("j".into()),
        detail: Some("x".into()),
        limit: 10,
    };
    let mut statements = vec![
        l.jobs_report().sql,
        l.files_report(&filter).sql,
        l.files_report(&Filter::default()).sql,
        l.errors_report(&filter).sql,
    ];
    for change in [
        l.set_auto("j", false),
        l.set_auto("j", true),
        l.retry_failed("j", None),
        l.retry_failed("j", Some("/a.csv")),
        l.reset_job("j"),
        l.insert_check("j", "l1", "c", false, 3, "why"),
    ] {
        for s in &change.sqls {
            assert!(s.contains(":job"), "{s}");
        }
        statements.extend(change.sqls);
    }
    for s in &statements {
        check(s);
        assert!(!s.contains('$'), "{s}");
    }
}

/// Options of a Redshift COPY from S3 ferry may use: every one is in
/// Redshift's documented option list (data source, authorization, format,
/// compression, conversion and load control).
const COPY_OPTIONS: &[&str] = &[
    "IAM_ROLE",
    "MANIFEST",
    "GZIP",
    "CSV",
    "NULL",
    "AS",
    "TIMEFORMAT",
    "DATEFORMAT",
    "COMPUPDATE",
    "STATUPDATE",
    "OFF",
];

/// Checks a rendered COPY: `COPY t [(cols)] FROM 's3://…' options`, with
/// only documented options, an explicit NULL string and no EMPTYASNULL
/// (an empty string is a value, not NULL).
fn check_copy(sql: &str) {
    let from = sql.find(" FROM 's3://").expect("COPY reads from S3");
    let rest = &sql[from + " FROM '".len()..];
    let url_end = rest.find('\'').unwrap();
    let options = &rest[url_end + 1..];
    let mut words = Vec::new();
    let mut in_quote = false;
    let mut word = String::new();
    for c in options.chars() {
        match c {
            '\'' => in_quote = !in_quote,
            c if c.is_whitespace() && !in_quote && !word.is_empty() => {
                words.push(std::mem::take(&mut word));
            }
            c if c.is_whitespace() => {}
            c if !in_quote => word.push(c),
            _ => {}
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    for w in &words {
        assert!(
            COPY_OPTIONS.contains(&w.as_str()),
            "COPY option {w} is not in ferry's list of documented Redshift options:\n{sql}"
        );
    }
    assert!(sql.contains(" IAM_ROLE "), "{sql}");
    assert!(sql.contains("NULL AS '\\N'"), "{sql}");
    assert!(!sql.contains("EMPTYASNULL"), "{sql}");
}

#[tokio::test]
async fn a_redshift_load_batch_is_redshift_sql_and_fits_one_batch() {
    use ferry::warehouse::redshift::{BatchInputs, load_batch};
    let stack = Stack::start().await;
    let schema = Ident::parse("analytics").unwrap();
    let stage = Ident::parse("ferry_stage_0123456789ab").unwrap();
    for job_toml in [
        task_events_job(""),
        task_events_job("mode = \"append\""),
        crate::harness::task_events_job_with_scd2(),
    ] {
        let toml = format!(
            "{}[warehouse]\nkind = \"postgres\"\n{job_toml}",
            stack.base_toml(),
        );
        let config = ferry::config::from_toml_str(&toml).expect("config is valid");
        let job = &config.jobs[0];
        for (manifest, errors) in [(true, true), (false, false)] {
            let inputs = BatchInputs {
                list: "'s3://b/ferry/manifests/j/2026/11/23/x/files.csv.gz'".into(),
                manifest: manifest
                    .then(|| "'s3://b/ferry/manifests/j/2026/11/23/x/parts.manifest'".into()),
                errors: errors
                    .then(|| "'s3://b/ferry/manifests/j/2026/11/23/x/errors.csv.gz'".into()),
                role: "'arn:aws:iam::123456789012:role/ferry-copy'".into(),
            };
            let batch = load_batch(&schema, job, &stage, TARGET_META.to_vec(), &inputs);
            assert!(batch.statements.len() <= 40, "{}", batch.statements.len());
            let copies = batch
                .statements
                .iter()
                .filter(|(s, _)| s.starts_with("COPY "))
                .count();
            assert_eq!(copies, 1 + manifest as usize + errors as usize);
            if let Some(i) = batch.copy_at {
                assert!(batch.statements[i].0.contains(" MANIFEST "));
            }
            assert!(
                batch.statements[batch.check_at]
                    .0
                    .contains("ferry_row_count_check")
            );
            for (s, _) in &batch.statements {
                if s.starts_with("COPY ") {
                    check_copy(s);
                } else {
                    check(s);
                }
            }
        }
    }
}

#[test]
fn auto_created_tables_are_redshift_sql_with_their_layout() {
    let toml = String::from(
        "[staging]\nbucket = \"b\"\n[warehouse]\nkind = \"postgres\"\n[sources.partner]\nkind = \"local\"\nroot = \"/tmp\"\n",
    ) + &crate::harness::task_events_job(
        "auto_create = true\ndistkey = \"task_id\"\nsortkey = [\"occurred_at\", \"event_id\"]",
    );
    let config = ferry::config::from_toml_str(&toml).unwrap();
    let job = &config.jobs[0];
    let sql = ferry::warehouse::sql::create_targets(
        &Ident::parse("analytics").unwrap(),
        job,
        Dialect::Redshift,
    );
    assert_eq!(
        sql.len(),
        1 + job.dimensions.len(),
        "no PostgreSQL defaults"
    );
    for s in &sql {
        check(s);
        assert!(
            s.starts_with("CREATE TABLE IF NOT EXISTS \"analytics\"."),
            "{s}"
        );
    }
    assert!(
        sql[0].ends_with("DISTKEY (\"task_id\") SORTKEY (\"occurred_at\", \"event_id\")"),
        "{}",
        sql[0]
    );
    assert!(
        sql[1].contains("\"task_id\" VARCHAR(64) NOT NULL, \"last_status\" VARCHAR(32)"),
        "{}",
        sql[1]
    );
}

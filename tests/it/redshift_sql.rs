//! Every statement ferry renders for Redshift, checked against Redshift's
//! rules: PostgreSQL runs the same statements in the other tests but
//! accepts things Redshift rejects (TEXT, SERIAL, ON CONFLICT, MERGE
//! guards, enforced keys), so passing there proves nothing about Redshift.
//! Each statement is parsed with sqlparser's Redshift dialect and checked
//! against a list of PostgreSQL-only constructs.

use crate::harness::{Stack, task_events_job};
use ferry::config::Ident;
use ferry::migrate::{MIGRATIONS, render};
use ferry::warehouse::Dialect;
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
        assert!(!statements.is_empty(), "{}", m.name);
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
    let statements = [
        l.lookup(),
        l.path_states(),
        l.insert_skipped(),
        l.clear_unloaded(),
        l.insert_loaded(),
        l.insert_failed(),
        l.mark_finalized(),
        l.insert_load(),
        l.insert_errors(2),
        update_job,
        insert_job,
        l.job_auto(),
    ];
    check(&l.lock());
    for s in &statements {
        check(s);
        assert!(
            s.contains(":job") || s.contains(":e0_job") || s.contains(":load_id"),
            "{s}"
        );
    }
    assert!(statements[8].contains(":e1_raw_field_value"));
    // PostgreSQL keeps its $n form.
    let pg = LedgerSql::new(&Ident::parse("analytics").unwrap());
    assert!(pg.lookup().contains("$4") && !pg.lookup().contains(":mtime"));
}

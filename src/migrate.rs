//! Schema migrations, embedded from `migrations/`.
//!
//! Each migration is a numbered SQL file written for Redshift's rules that
//! also runs on PostgreSQL. `/*@redshift … */` blocks carry Redshift-only
//! table attributes (DISTKEY, SORTKEY, DISTSTYLE) and `/*@postgres … */`
//! blocks PostgreSQL-only statements (indexes): [`render`] unwraps each for
//! its dialect and drops it for the other. Applied versions are
//! recorded in `ferry_schema_migrations`, so `ferry migrate` is idempotent.

use crate::sql::Dialect;

/// One migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version (the file's number).
    pub version: i32,
    /// File name.
    pub name: &'static str,
    /// SQL text as written.
    pub sql: &'static str,
}

/// `version => "file name"`: a [`Migration`] embedded from `migrations/`.
macro_rules! migrations {
    ($($version:literal => $name:literal),+ $(,)?) => {
        &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/", $name)),
        }),+]
    };
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = migrations![
    1 => "0001_ledger.sql",
    2 => "0002_task_events.sql",
    3 => "0003_rejects_key.sql",
    4 => "0004_postgres_indexes.sql",
    5 => "0005_checks.sql",
    6 => "0006_postgres_load_defaults.sql",
    7 => "0007_leases.sql",
    8 => "0008_schema_changes.sql",
    9 => "0009_status_indexes.sql",
];

/// The table that records applied versions.
pub const VERSIONS_TABLE: &str = "ferry_schema_migrations";

/// Splits a migration into statements for `dialect`: comments dropped,
/// `/*@redshift … */` unwrapped on Redshift and removed elsewhere.
pub fn render(m: &Migration, dialect: Dialect) -> Vec<String> {
    let mut text = String::new();
    let mut rest = m.sql;
    // `/*@redshift … */` and `/*@postgres … */`: kept for their dialect only.
    while let Some(start) = rest.find("/*@") {
        text.push_str(&rest[..start]);
        let after = &rest[start + "/*@".len()..];
        let (only, body) = if let Some(b) = after.strip_prefix("redshift") {
            (Dialect::Redshift, b)
        } else if let Some(b) = after.strip_prefix("postgres") {
            (Dialect::Postgres, b)
        } else {
            panic!("{}: unknown /*@ block", m.name);
        };
        let end = body.find("*/").expect("a /*@ block is closed");
        if dialect == only {
            text.push_str(body[..end].trim());
        }
        rest = &body[end + 2..];
    }
    text.push_str(rest);
    text.lines()
        .map(|l| match l.find("--") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
        .split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redshift_blocks_apply_only_on_redshift() {
        let m = &MIGRATIONS[1];
        let pg = render(m, Dialect::Postgres);
        let rs = render(m, Dialect::Redshift);
        assert_eq!(pg.len(), 4);
        assert_eq!(rs.len(), 4);
        assert!(pg[0].ends_with(")"), "{}", pg[0]);
        assert!(!pg[0].contains("DISTKEY"));
        assert!(
            rs[0].ends_with("DISTKEY (task_id) SORTKEY (occurred_at)"),
            "{}",
            rs[0]
        );
    }

    #[test]
    fn postgres_blocks_apply_only_on_postgres() {
        let m = &MIGRATIONS[3];
        assert!(render(m, Dialect::Redshift).is_empty());
        let pg = render(m, Dialect::Postgres);
        assert_eq!(pg.len(), 2, "{pg:?}");
        assert!(
            pg.iter()
                .all(|s| s.starts_with("CREATE INDEX IF NOT EXISTS"))
        );
    }

    #[test]
    fn versions_are_increasing_and_names_match() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
    }

    #[test]
    fn no_postgres_only_types_in_migrations() {
        for m in MIGRATIONS {
            for stmt in render(m, Dialect::Redshift) {
                let upper = format!(" {} ", stmt.to_uppercase());
                for bad in [
                    " TEXT ",
                    "SERIAL",
                    "JSONB",
                    " UUID ",
                    "BYTEA",
                    "PRIMARY KEY",
                    "UNIQUE",
                ] {
                    assert!(
                        !upper.contains(bad),
                        "{} uses {bad}, which Redshift lacks or does not enforce",
                        m.name
                    );
                }
            }
        }
    }
}

//! Applying [`MIGRATIONS`] and checking that they are applied, once for
//! both dialects, on the [`LedgerStore`] seam.
//!
//! Redshift's Data API cannot branch inside a transaction, so neither
//! does this: the pending migrations run in one change that locks the
//! versions table, divides by zero if another migrator recorded any of
//! them meanwhile (which aborts the change), applies them and records
//! them. After such an abort the versions are read again: when another
//! migrator applied everything, there is nothing left to do.

use super::reports::{Change, Report};
use super::store::LedgerStore;
use crate::error::{Error, Result};
use crate::migrate::{MIGRATIONS, Migration, VERSIONS_TABLE, render};
use crate::sql::Dialect;

/// Applies pending migrations (creating the schema and the versions table
/// first); returns the names of those applied.
pub async fn migrate(store: &dyn LedgerStore) -> Result<Vec<String>> {
    let ledger = store.ledger();
    let schema = ledger.schema().quoted();
    let versions = versions_table(store);
    store
        .write_ledger(&Change {
            sqls: vec![
                format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
                format!(
                    "CREATE TABLE IF NOT EXISTS {versions} (version INTEGER NOT NULL, name VARCHAR(256) NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
                ),
            ],
            ..Change::default()
        })
        .await
        .map_err(|e| e.wrap(format!("cannot create schema {schema} and {versions}")))?;
    let todo = pending(store).await?;
    if todo.is_empty() {
        return Ok(Vec::new());
    }
    let listed: Vec<String> = todo.iter().map(|m| m.version.to_string()).collect();
    let search_path = match ledger.dialect() {
        Dialect::Postgres => "SET LOCAL search_path TO",
        Dialect::Redshift => "SET search_path TO",
    };
    let mut sqls = vec![
        format!("LOCK TABLE {versions}"),
        format!(
            "SELECT 1 / (CASE WHEN (SELECT COUNT(*) FROM {versions} WHERE version IN ({})) = 0 THEN 1 ELSE 0 END) AS ferry_not_applied_meanwhile",
            listed.join(", ")
        ),
        format!("{search_path} {schema}"),
    ];
    for m in &todo {
        sqls.extend(render(m, ledger.dialect()));
        // Version and file name come from this binary, never from input.
        sqls.push(format!(
            "INSERT INTO {versions} (version, name, applied_at) VALUES ({}, '{}', {})",
            m.version,
            m.name.replace('\'', ""),
            ledger.dialect().transaction_time()
        ));
    }
    let applied = store
        .write_ledger(&Change {
            sqls,
            ..Change::default()
        })
        .await;
    match applied {
        Ok(_) => Ok(todo.iter().map(|m| m.name.to_string()).collect()),
        Err(e) => match pending(store).await {
            Ok(left) if left.is_empty() => {
                tracing::info!(schema = %ledger.schema(), "another migrator applied the pending migrations meanwhile");
                Ok(Vec::new())
            }
            _ => Err(e.wrap(format!(
                "cannot apply migrations {} to {}",
                listed.join(", "),
                store.describe()
            ))),
        },
    }
}

/// Verifies that every migration is applied; returns `ferry check`'s
/// line about them (an error naming `ferry migrate` when some are not).
pub async fn verify_ledger(store: &dyn LedgerStore) -> Result<String> {
    let applied = applied(store).await?.len();
    let summary = format!(
        "{} schema {}: {applied} of {} migrations applied",
        store.describe(),
        store.ledger().schema(),
        MIGRATIONS.len()
    );
    if applied < MIGRATIONS.len() {
        return Err(Error::config(format!("{summary}; run `ferry migrate`")));
    }
    Ok(summary)
}

fn versions_table(store: &dyn LedgerStore) -> String {
    format!("{}.\"{VERSIONS_TABLE}\"", store.ledger().schema().quoted())
}

/// The migrations not yet recorded.
async fn pending(store: &dyn LedgerStore) -> Result<Vec<&'static Migration>> {
    let applied = applied(store).await?;
    Ok(MIGRATIONS
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .collect())
}

/// The versions recorded (none while the versions table does not exist:
/// the catalog is asked first, so a missing table is not an error).
async fn applied(store: &dyn LedgerStore) -> Result<Vec<i32>> {
    let exists = store
        .read_ledger(&Report {
            sql: store.ledger().dialect().adapt(
                "SELECT CAST(COUNT(*) AS VARCHAR(20)) FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2",
                &["schema", "table"],
            ),
            params: vec![
                ("schema", store.ledger().schema().as_str().to_string()),
                ("table", VERSIONS_TABLE.to_string()),
            ],
            columns: &["tables"],
        })
        .await
        .map_err(|e| e.wrap("cannot read the catalog"))?;
    if exists
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
        == Some("0")
    {
        return Ok(Vec::new());
    }
    let rows = store
        .read_ledger(&Report {
            sql: format!(
                "SELECT CAST(version AS VARCHAR(11)) FROM {}",
                versions_table(store)
            ),
            params: Vec::new(),
            columns: &["version"],
        })
        .await
        .map_err(|e| e.wrap("cannot read applied migrations"))?;
    Ok(rows
        .iter()
        .filter_map(|r| r.first()?.as_deref()?.trim().parse().ok())
        .collect())
}

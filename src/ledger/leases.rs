//! Leases: which replica lists a job when several share a work queue.
//!
//! One row per job in `ferry_leases` (job, owner, expires_at). A replica
//! takes or renews the job's lease in one transaction that locks
//! `ferry_leases` (never the ledger lock, so a long load never holds up a
//! lister): it extends its own row, drops a row that has expired, and
//! inserts its own if no row is left. The time is the warehouse's own
//! clock, so replicas with skewed clocks still agree. Written once for both
//! dialects on the [`LedgerStore`] seam.

use super::LedgerSql;
use super::reports::{Change, Report};
use super::store::LedgerStore;
use crate::error::Result;
use std::time::Duration;

impl LedgerSql {
    /// Takes or renews `job`'s lease for `owner` until `period` from now:
    /// params job, owner. The last two statements each change one row when
    /// the lease is `owner`'s afterwards (a renewal or a take).
    pub fn take_lease(&self, period: Duration) -> Vec<String> {
        let names = ["job", "owner"];
        let until = format!(
            "clock_timestamp() + INTERVAL '{} seconds'",
            period.as_secs().max(1)
        );
        let adapt = |sql: String| self.dialect.adapt(&sql, &names);
        vec![
            format!("LOCK TABLE {}", self.leases),
            adapt(format!(
                "DELETE FROM {} WHERE job = $1 AND owner <> $2 AND expires_at < clock_timestamp()",
                self.leases
            )),
            adapt(format!(
                "UPDATE {} SET renewed_at = clock_timestamp(), expires_at = {until} WHERE job = $1 AND owner = $2",
                self.leases
            )),
            adapt(format!(
                "INSERT INTO {leases} (job, owner, taken_at, renewed_at, expires_at) \
                 SELECT CAST($1 AS VARCHAR(64)), CAST($2 AS VARCHAR(256)), clock_timestamp(), clock_timestamp(), {until} \
                 WHERE NOT EXISTS (SELECT 1 FROM {leases} WHERE job = CAST($1 AS VARCHAR(64)))",
                leases = self.leases
            )),
        ]
    }

    /// Gives `job`'s lease up if `owner` holds it: params job, owner.
    pub fn release_lease(&self) -> Vec<String> {
        vec![
            format!("LOCK TABLE {}", self.leases),
            self.dialect.adapt(
                &format!("DELETE FROM {} WHERE job = $1 AND owner = $2", self.leases),
                &["job", "owner"],
            ),
        ]
    }

    /// Every lease: job, owner, expires_at (text), and whether it has
    /// expired (`true`/`false`).
    pub fn leases_report(&self) -> Report {
        Report {
            sql: format!(
                "SELECT job, owner, CAST(expires_at AS VARCHAR(40)), CASE WHEN expires_at < {} THEN 'true' ELSE 'false' END FROM {} ORDER BY job",
                self.dialect.adapt("clock_timestamp()", &[]),
                self.leases
            ),
            params: vec![],
            columns: &["job", "owner", "expires_at", "expired"],
        }
    }
}

/// What [`take_lease`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseTaken {
    /// Another replica holds the lease.
    Elsewhere,
    /// This replica held it and renewed it.
    Renewed,
    /// This replica took it: nobody held it (first start, or its holder
    /// gave it up when it stopped).
    Free,
    /// This replica took it over from a holder whose lease had expired (a
    /// lister that died or stalled: what it sent may still be on the queue).
    Expired,
}

impl LeaseTaken {
    /// Whether this replica holds the lease now.
    pub fn held(self) -> bool {
        self != LeaseTaken::Elsewhere
    }
}

/// Takes or renews `job`'s lease for `owner` for `period`.
pub async fn take_lease(
    store: &dyn LedgerStore,
    job: &str,
    owner: &str,
    period: Duration,
) -> Result<LeaseTaken> {
    let changed = store
        .write_ledger(&Change {
            sqls: store.ledger().take_lease(period),
            params: vec![
                ("job", Some(job.to_string())),
                ("owner", Some(owner.to_string())),
            ],
            ..Change::default()
        })
        .await?;
    let n = |i: usize| changed.get(i).copied().unwrap_or(0);
    Ok(match (n(1), n(2), n(3)) {
        (_, r, _) if r > 0 => LeaseTaken::Renewed,
        (0, _, t) if t > 0 => LeaseTaken::Free,
        (_, _, t) if t > 0 => LeaseTaken::Expired,
        _ => LeaseTaken::Elsewhere,
    })
}

/// Gives up `job`'s lease if `owner` holds it (a replica that stops), so
/// another replica lists the job at once instead of after the lease period.
pub async fn release_lease(store: &dyn LedgerStore, job: &str, owner: &str) -> Result<()> {
    store
        .write_ledger(&Change {
            sqls: store.ledger().release_lease(),
            params: vec![
                ("job", Some(job.to_string())),
                ("owner", Some(owner.to_string())),
            ],
            ..Change::default()
        })
        .await?;
    Ok(())
}

/// One job's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub job: String,
    /// The replica that holds (or held) it.
    pub owner: String,
    /// When it expires (the warehouse's text).
    pub expires_at: String,
    /// Whether it has expired.
    pub expired: bool,
}

/// Every job's lease.
pub async fn leases(store: &dyn LedgerStore) -> Result<Vec<Lease>> {
    let rows = store.read_ledger(&store.ledger().leases_report()).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let text = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            Lease {
                job: text(0),
                owner: text(1),
                expires_at: text(2),
                expired: text(3) == "true",
            }
        })
        .collect())
}

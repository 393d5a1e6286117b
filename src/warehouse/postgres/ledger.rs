//! Error rows written with parameters, [`ERRORS_PER_INSERT`] rows per
//! statement, inside the caller's transaction.

use super::*;
use crate::ledger::ErrorRows;
use crate::ledger::errors::{ERRORS_PER_INSERT, error_params};

impl PostgresWarehouse {
    /// Inserts `rows` into `ferry_load_errors` (all text parameters).
    pub(super) async fn insert_error_rows(
        &self,
        c: &impl GenericClient,
        rows: &ErrorRows,
    ) -> Result<()> {
        let v = &rows.version;
        for chunk in rows.rows.chunks(ERRORS_PER_INSERT) {
            let sql = self.ledger.insert_errors(chunk.len(), rows.unless_loaded);
            let values: Vec<Option<String>> = chunk
                .iter()
                .flat_map(|e| error_params(e, v, rows.load_id.as_deref()))
                .collect();
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
                .iter()
                .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            c.execute(&sql, &params).await.map_err(classified(format!(
                "cannot record load errors of {}",
                v.path
            )))?;
        }
        Ok(())
    }
}

//! Ledger writes that take typed values: error rows cut to their columns,
//! and statements on one file version.

use super::*;

/// An error row's text cut to its columns' widths: a long reason or
/// value must never keep a failure from being recorded.
pub(super) struct Fitted<'a> {
    pub(super) line: i64,
    pub(super) column: Option<&'a str>,
    pub(super) reason: &'a str,
    pub(super) raw_line: &'a str,
    pub(super) raw_value: Option<&'a str>,
}

impl<'a> Fitted<'a> {
    pub(super) fn of(e: &'a RowError) -> Self {
        Fitted {
            line: e.line as i64,
            column: e.column.as_deref().map(|c| fit(c, width::COLUMN)),
            reason: fit(&e.reason, width::REASON),
            raw_line: fit(&e.raw_line, width::RAW_LINE),
            raw_value: e.raw_value.as_deref().map(|r| fit(r, width::RAW_VALUE)),
        }
    }
}

impl PostgresWarehouse {
    /// Inserts `errors` of `v` into `ferry_load_errors`.
    pub(super) async fn insert_errors(
        &self,
        c: &impl GenericClient,
        v: &FileVersion,
        load_id: Option<&str>,
        errors: &[RowError],
    ) -> Result<()> {
        let size = v.size as i64;
        for chunk in errors.chunks(100) {
            let sql = self.ledger.insert_errors(chunk.len());
            let fitted: Vec<Fitted<'_>> = chunk.iter().map(Fitted::of).collect();
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                Vec::with_capacity(chunk.len() * 11);
            for (e, f) in chunk.iter().zip(&fitted) {
                params.extend_from_slice(&[
                    &v.job,
                    &v.path,
                    &size,
                    &v.mtime,
                    &load_id,
                    &f.line,
                    &f.column,
                    &e.code,
                    &f.reason,
                    &f.raw_line,
                    &f.raw_value,
                ]);
            }
            c.execute(&sql, &params)
                .await
                .map_err(pg_error(format!("cannot record load errors of {}", v.path)))?;
        }
        Ok(())
    }
}

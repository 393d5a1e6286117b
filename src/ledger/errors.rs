//! Error rows: the rejected records and COPY errors a file's ledger rows
//! keep in `ferry_load_errors`, cut to their columns once, and the two
//! ways a backend writes many of them (parameters on PostgreSQL, a COPY of
//! a staged CSV on Redshift, whose statements have a 100 KB limit).

use super::{FileVersion, LedgerSql, fit, width};
use crate::normalize::RowError;

/// `e` cut to the ledger's column widths: a long reason or value must
/// never keep a failure from being recorded.
pub fn fitted(e: &RowError) -> RowError {
    RowError {
        line: e.line,
        column: e.column.as_deref().map(|c| fit(c, width::COLUMN).into()),
        code: e.code,
        reason: fit(&e.reason, width::REASON).into(),
        raw_line: fit(&e.raw_line, width::RAW_LINE).into(),
        raw_value: e
            .raw_value
            .as_deref()
            .map(|r| fit(r, width::RAW_VALUE).into()),
    }
}

/// The parameters of error row `e` of `v` for [`LedgerSql::insert_errors`],
/// in order: job, path, size, mtime, load_id, line_number, column_name,
/// error_code, reason, raw_line, raw_field_value.
pub fn error_params(e: &RowError, v: &FileVersion, load_id: Option<&str>) -> [Option<String>; 11] {
    [
        Some(v.job.clone()),
        Some(v.path.clone()),
        Some(v.size.to_string()),
        Some(v.mtime.to_string()),
        load_id.map(str::to_string),
        Some(e.line.to_string()),
        e.column.clone(),
        Some(e.code.to_string()),
        Some(e.reason.clone()),
        Some(e.raw_line.clone()),
        e.raw_value.clone(),
    ]
}

/// Error row `e` of `v` as a line of the CSV that
/// [`LedgerSql::errors_from_copy`] reads ([`COPY_ERROR_COLUMNS`]): the
/// parameters without job and load id, which the statement adds.
pub fn copy_fields(e: &RowError, v: &FileVersion) -> Vec<Option<String>> {
    let [_job, path, size, mtime, _load_id, rest @ ..] = error_params(e, v, None);
    [path, size, mtime].into_iter().chain(rest).collect()
}

/// Error rows of one version that a [`Change`](super::reports::Change)
/// adds after its statements, in the same transaction.
#[derive(Debug, Clone)]
pub struct ErrorRows {
    /// The version they belong to.
    pub version: FileVersion,
    /// The load that kept them (`None`: a failure's, or a failed COPY's).
    pub load_id: Option<String>,
    /// The rows, cut to their columns ([`fitted`]).
    pub rows: Vec<RowError>,
    /// Add them only while the ledger has no `loaded` row of the version
    /// (a replica may have loaded it meanwhile; its rows then stand).
    pub unless_loaded: bool,
}

impl ErrorRows {
    /// `errors` of `version`, cut to the ledger's widths.
    pub fn of(version: &FileVersion, load_id: Option<&str>, errors: &[RowError]) -> Self {
        ErrorRows {
            version: version.clone(),
            load_id: load_id.map(str::to_string),
            rows: errors.iter().map(fitted).collect(),
            unless_loaded: false,
        }
    }
}

/// The columns of the CSV [`LedgerSql::errors_from_copy`] reads, as a
/// temp table's definition.
pub const COPY_ERROR_COLUMNS: &str = "path VARCHAR(1024), size BIGINT, mtime BIGINT, line_number BIGINT, column_name VARCHAR(127), error_code INTEGER, reason VARCHAR(1024), raw_line VARCHAR(1024), raw_field_value VARCHAR(1024)";

/// Error rows per [`LedgerSql::insert_errors`] statement: 1,100 parameters.
pub const ERRORS_PER_INSERT: usize = 100;

/// Where the rows [`LedgerSql::errors_from_copy`] reads belong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopiedErrors {
    /// Rows of a load batch's versions: only those still in `ferry_batch`
    /// (the batch's versions that were not loaded before).
    OfBatch,
    /// Rows of the one version named by params path, size, mtime; with
    /// `unless_loaded`, only while that version has no `loaded` row.
    OfVersion {
        /// See [`ErrorRows::unless_loaded`].
        unless_loaded: bool,
    },
}

/// `CAST(CAST($n AS VARCHAR(20)) AS BIGINT)`: a number sent as text, which
/// PostgreSQL (binding a text value) and Redshift (named text parameters)
/// both accept.
pub(super) fn bigint(n: usize) -> String {
    format!("CAST(CAST(${n} AS VARCHAR(20)) AS BIGINT)")
}

impl LedgerSql {
    /// `NOT EXISTS` a `loaded` row of the version with params `$job`,
    /// `$path`, `$size`, `$mtime` (positions, all text).
    pub(super) fn not_loaded(&self, job: usize, path: usize, size: usize, mtime: usize) -> String {
        format!(
            "NOT EXISTS (SELECT 1 FROM {} l WHERE l.job = CAST(${job} AS VARCHAR(64)) AND l.path = CAST(${path} AS VARCHAR(1024)) \
             AND l.size = {} AND l.mtime = {} AND l.state = 'loaded')",
            self.files,
            bigint(size),
            bigint(mtime)
        )
    }

    /// PostgreSQL: inserts `n` error rows of one version at once, 11 text
    /// parameters per row as [`error_params`] orders them; with
    /// `unless_loaded`, only while the version (the first row's) has no
    /// `loaded` row. Redshift writes error rows with
    /// [`errors_from_copy`](Self::errors_from_copy).
    pub fn insert_errors(&self, n: usize, unless_loaded: bool) -> String {
        let rows: Vec<String> = (0..n)
            .map(|r| {
                let p = |i: usize| r * 11 + i;
                format!(
                    "(CAST(${} AS VARCHAR(64)), CAST(${} AS VARCHAR(1024)), {}, {}, CAST(${} AS VARCHAR(64)), {}, CAST(${} AS VARCHAR(127)), CAST({} AS INTEGER), CAST(${} AS VARCHAR(1024)), CAST(${} AS VARCHAR(1024)), CAST(${} AS VARCHAR(1024)))",
                    p(1),
                    p(2),
                    bigint(p(3)),
                    bigint(p(4)),
                    p(5),
                    bigint(p(6)),
                    p(7),
                    bigint(p(8)),
                    p(9),
                    p(10),
                    p(11)
                )
            })
            .collect();
        let guard = if unless_loaded {
            format!(" WHERE {}", self.not_loaded(1, 2, 3, 4))
        } else {
            String::new()
        };
        format!(
            "INSERT INTO {} (job, path, size, mtime, load_id, line_number, column_name, error_code, reason, raw_line, raw_field_value, created_at) \
             SELECT e.*, now() FROM (VALUES {}) AS e{guard}",
            self.errors,
            rows.join(", ")
        )
    }

    /// Redshift: statements that insert the error rows in the gzip CSV at
    /// `url` ([`COPY_ERROR_COLUMNS`], read with IAM role `role`; both
    /// checked literals) into `ferry_load_errors`. Params `:job`,
    /// `:load_id`, and for [`CopiedErrors::OfVersion`] `:path`, `:size`,
    /// `:mtime`.
    pub fn errors_from_copy(&self, url: &str, role: &str, of: CopiedErrors) -> Vec<String> {
        let condition = match of {
            CopiedErrors::OfBatch => {
                " JOIN ferry_batch b ON b.path = e.path AND b.size = e.size AND b.mtime = e.mtime"
                    .to_string()
            }
            CopiedErrors::OfVersion {
                unless_loaded: true,
            } => format!(
                " WHERE {}",
                self.dialect.adapt(
                    &self.not_loaded(1, 2, 3, 4),
                    &["job", "path", "size", "mtime"]
                )
            ),
            CopiedErrors::OfVersion {
                unless_loaded: false,
            } => String::new(),
        };
        vec![
            format!("CREATE TEMP TABLE ferry_batch_errors ({COPY_ERROR_COLUMNS})"),
            format!(
                "COPY ferry_batch_errors FROM {url} IAM_ROLE {role} GZIP CSV NULL AS '\\N' COMPUPDATE OFF STATUPDATE OFF"
            ),
            format!(
                "INSERT INTO {} (job, path, size, mtime, load_id, line_number, column_name, error_code, reason, raw_line, raw_field_value, created_at) \
                 SELECT CAST(:job AS VARCHAR(64)), e.path, e.size, e.mtime, CAST(:load_id AS VARCHAR(64)), e.line_number, e.column_name, e.error_code, e.reason, e.raw_line, e.raw_field_value, SYSDATE \
                 FROM ferry_batch_errors e{condition}",
                self.errors
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Dialect, Ident};

    fn error(len: usize) -> RowError {
        RowError {
            line: 7,
            column: Some("c".repeat(len)),
            code: 1207,
            reason: "r".repeat(len * 10),
            raw_line: "l".repeat(len * 10),
            raw_value: None,
        }
    }

    #[test]
    fn rows_are_cut_to_their_columns_and_null_stays_null() {
        let row = fitted(&error(200));
        assert_eq!(row.column.as_deref().map(str::len), Some(width::COLUMN));
        assert_eq!(row.reason.len(), width::REASON);
        assert_eq!(row.raw_line.len(), width::RAW_LINE);
        let v = FileVersion {
            job: "j".into(),
            path: "/a".into(),
            size: 3,
            mtime: 4,
        };
        let p = error_params(&row, &v, None);
        assert_eq!(p[4], None);
        assert_eq!(p[10], None);
        assert_eq!(p[5].as_deref(), Some("7"));
        let csv = copy_fields(&row, &v);
        assert_eq!(csv.len(), 9);
        assert_eq!(csv[0].as_deref(), Some("/a"));
        assert_eq!(csv[3].as_deref(), Some("7"));
    }

    #[test]
    fn guarded_inserts_name_the_first_rows_version() {
        let l = LedgerSql::new(&Ident::parse("s").unwrap());
        let sql = l.insert_errors(2, true);
        assert!(sql.contains("CAST($22 AS VARCHAR(1024)))"), "{sql}");
        assert!(sql.contains("l.job = CAST($1 AS VARCHAR(64))"), "{sql}");
        assert!(!l.insert_errors(1, false).contains("NOT EXISTS"));
        let rs = LedgerSql::with_dialect(&Ident::parse("s").unwrap(), Dialect::Redshift);
        let copied = rs.errors_from_copy(
            "'s3://b/k'",
            "default",
            CopiedErrors::OfVersion {
                unless_loaded: true,
            },
        );
        assert!(copied[2].contains("l.path = CAST(:path AS VARCHAR(1024))"));
        assert!(copied[2].contains("CAST(:job AS VARCHAR(64))"));
        let batch = rs.errors_from_copy("'s3://b/k'", "default", CopiedErrors::OfBatch);
        assert!(batch[2].ends_with("b.mtime = e.mtime"));
    }
}

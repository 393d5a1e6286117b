//! A job's `mode` and `dimensions`: how the fact table is written and
//! which dimension tables (plain or SCD2) are kept from its rows.

use super::*;
use crate::sql::Ident;
use std::collections::HashSet;

/// One dimension table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDimension {
    /// The dimension table (in the warehouse schema) kept from the rows.
    pub table: String,
    /// Key column of the dimension (also the name of the fact column).
    pub key: String,
    /// Attribute columns and the fact column each comes from.
    #[serde(default)]
    pub columns: Vec<RawDimensionColumn>,
    /// `scd1` (update attributes in place, the default) or `scd2` (close
    /// the current row and add a new one when an attribute changes).
    #[serde(default = "default_history")]
    pub history: String,
    /// SCD2: the column holding when a row version became current.
    #[serde(default = "default_valid_from")]
    pub valid_from: String,
    /// SCD2: the column holding when it stopped being current (NULL while
    /// current).
    #[serde(default = "default_valid_to")]
    pub valid_to: String,
    /// SCD2: the boolean column marking the current row of a key.
    #[serde(default = "default_is_current")]
    pub is_current: String,
}

pub(super) fn default_history() -> String {
    "scd1".into()
}

pub(super) fn default_valid_from() -> String {
    "valid_from".into()
}

pub(super) fn default_valid_to() -> String {
    "valid_to".into()
}

pub(super) fn default_is_current() -> String {
    "is_current".into()
}

/// One dimension attribute.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDimensionColumn {
    /// Column in the dimension table.
    pub name: String,
    /// Column of the fact rows it is taken from (defaults to `name`).
    pub from: Option<String>,
}

/// How the fact table is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Insert every row.
    Append,
    /// Replace rows with the same key (delete + insert).
    Merge,
}

/// A dimension maintained from the loaded rows.
#[derive(Debug, Clone)]
pub struct Dimension {
    /// The dimension table, in the warehouse schema.
    pub table: Ident,
    /// Key column (same name in the fact rows).
    pub key: Ident,
    /// `(dimension column, fact column)` pairs.
    pub columns: Vec<(Ident, Ident)>,
    /// SCD2 history columns, or `None` for SCD1 (update in place).
    pub scd2: Option<Scd2>,
}

/// The columns of an SCD2 dimension that track row versions.
#[derive(Debug, Clone)]
pub struct Scd2 {
    /// When the row version became current.
    pub valid_from: Ident,
    /// When it stopped being current (NULL while current).
    pub valid_to: Ident,
    /// Whether it is the current version of its key.
    pub is_current: Ident,
}

/// Validates a job's `dimensions` against its `columns` (`path` is the
/// job's key path).
pub(super) fn validate_dimensions(
    path: &str,
    raw: &[RawDimension],
    columns: &HashSet<&str>,
    p: &mut Problems,
) -> Vec<Dimension> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, d)| validate_dimension(&format!("{path}.dimensions[{i}]"), d, columns, p))
        .collect()
}

/// One dimension at `dpath`: its table, a key and attribute columns taken
/// from the job's `columns`, and for `scd2` the version columns.
fn validate_dimension(
    dpath: &str,
    d: &RawDimension,
    column_names: &HashSet<&str>,
    p: &mut Problems,
) -> Option<Dimension> {
    let table = p.take(&format!("{dpath}.table"), Ident::parse(&d.table));
    let dkey = p.take(&format!("{dpath}.key"), Ident::parse(&d.key));
    if let Some(k) = &dkey
        && !column_names.contains(k.as_str())
    {
        p.push(
            format!("{dpath}.key"),
            format!("{k} is not one of the job's columns"),
        );
    }
    let mut cols = Vec::new();
    for (ci, c) in d.columns.iter().enumerate() {
        let name = p.take(
            &format!("{dpath}.columns[{ci}].name"),
            Ident::parse(&c.name),
        );
        let from = p.take(
            &format!("{dpath}.columns[{ci}].from"),
            Ident::parse(c.from.as_deref().unwrap_or(&c.name)),
        );
        if let Some(f) = &from
            && !column_names.contains(f.as_str())
        {
            p.push(
                format!("{dpath}.columns[{ci}].from"),
                format!("{f} is not one of the job's columns"),
            );
        }
        if let (Some(n), Some(f)) = (name, from) {
            cols.push((n, f));
        }
    }
    let scd2 = match p.choose(
        &format!("{dpath}.history"),
        &d.history,
        &[("scd1", false), ("scd2", true)],
    )? {
        false => None,
        true => {
            if cols.is_empty() {
                p.push(
                    format!("{dpath}.columns"),
                    "an scd2 dimension needs attribute columns whose changes it records",
                );
            }
            let mut id =
                |field: &str, v: &str| p.take(&format!("{dpath}.{field}"), Ident::parse(v));
            Some(Scd2 {
                valid_from: id("valid_from", &d.valid_from)?,
                valid_to: id("valid_to", &d.valid_to)?,
                is_current: id("is_current", &d.is_current)?,
            })
        }
    };
    Some(Dimension {
        table: table?,
        key: dkey?,
        columns: cols,
        scd2,
    })
}

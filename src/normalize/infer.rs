//! `ferry infer FILE`: samples a CSV or NDJSON file and proposes a job
//! mapping and a Redshift `CREATE TABLE` that fit it (the Glue-crawler step
//! of hand-made pipelines). Types are the narrowest that every sampled
//! value fits: boolean, int, bigint, decimal, timestamptz, date, json, then
//! varchar sized to the longest value rounded up.

use crate::schema::ColumnType;
use crate::schema::coerce;
use std::io::{BufRead, BufReader, Read};

/// One inferred column.
#[derive(Debug, Clone, PartialEq)]
pub struct Inferred {
    /// Field name in the file.
    pub field: String,
    /// Column name (lowercase identifier).
    pub column: String,
    /// Narrowest type that fits every sample.
    pub column_type: ColumnType,
    /// Some sample was empty.
    pub nullable: bool,
}

fn ident(field: &str) -> String {
    let mut s: String = field
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

const CANDIDATES: [ColumnType; 6] = [
    ColumnType::Boolean,
    ColumnType::Int,
    ColumnType::Bigint,
    ColumnType::Decimal(38, 6),
    ColumnType::Date,
    ColumnType::Timestamptz,
];

fn infer_column(field: &str, values: &[Option<String>]) -> Inferred {
    let present: Vec<&str> = values
        .iter()
        .flatten()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .collect();
    let nullable = present.len() < values.len();
    let fits = |t: ColumnType| {
        !present.is_empty()
            && present.iter().all(|v| match t {
                // 1/0 are numbers first; only words make a boolean.
                ColumnType::Boolean => {
                    matches!(
                        v.to_ascii_lowercase().as_str(),
                        "true" | "false" | "t" | "f" | "yes" | "no"
                    )
                }
                _ => coerce(v, t).is_ok(),
            })
    };
    let column_type = CANDIDATES
        .into_iter()
        .find(|t| fits(*t))
        .or_else(|| {
            (!present.is_empty()
                && present.iter().all(|v| v.starts_with(['{', '[']))
                && fits(ColumnType::Json))
            .then_some(ColumnType::Json)
        })
        .unwrap_or_else(|| {
            let longest = present.iter().map(|v| v.len()).max().unwrap_or(0).max(1);
            ColumnType::Varchar((longest * 2).next_power_of_two().clamp(16, 65535) as u32)
        });
    Inferred {
        field: field.to_string(),
        column: ident(field),
        column_type,
        nullable,
    }
}

/// Samples up to `rows` records of a CSV (with a header) or NDJSON file.
pub fn infer<R: Read>(input: R, rows: usize) -> Result<(bool, Vec<Inferred>), String> {
    let mut reader = BufReader::new(input);
    let first = reader.fill_buf().map_err(|e| e.to_string())?;
    let is_json = first
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let mut fields: Vec<String> = Vec::new();
    let mut samples: Vec<Vec<Option<String>>> = Vec::new();
    if is_json {
        for line in reader.lines().take(rows) {
            let line = line.map_err(|e| e.to_string())?;
            let Ok(serde_json::Value::Object(obj)) = serde_json::from_str(&line) else {
                continue;
            };
            for k in obj.keys() {
                if !fields.contains(k) {
                    fields.push(k.clone());
                    samples.push(vec![None; samples.first().map_or(0, Vec::len)]);
                }
            }
            for (i, f) in fields.iter().enumerate() {
                samples[i].push(obj.get(f).and_then(|v| match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                }));
            }
        }
    } else {
        let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
        fields = csv
            .headers()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
            .collect();
        samples = vec![Vec::new(); fields.len()];
        for rec in csv.records().take(rows) {
            let rec = rec.map_err(|e| e.to_string())?;
            for (i, col) in samples.iter_mut().enumerate() {
                col.push(rec.get(i).map(String::from));
            }
        }
    }
    Ok((
        is_json,
        fields
            .iter()
            .zip(&samples)
            .map(|(f, v)| infer_column(f, v))
            .collect(),
    ))
}

/// The `[[jobs]]` columns and a `CREATE TABLE` for `table`.
pub fn render(table: &str, is_json: bool, cols: &[Inferred]) -> String {
    let type_text = |t: ColumnType| match t {
        ColumnType::Varchar(n) => format!("varchar({n})"),
        ColumnType::Decimal(p, s) => format!("decimal({p},{s})"),
        ColumnType::Int => "int".into(),
        ColumnType::Bigint => "bigint".into(),
        ColumnType::Boolean => "boolean".into(),
        ColumnType::Date => "date".into(),
        ColumnType::Timestamp => "timestamp".into(),
        ColumnType::Timestamptz => "timestamptz".into(),
        ColumnType::Json => "json".into(),
        ColumnType::Uuid => "uuid".into(),
    };
    let mut out =
        String::from("# A job mapping that fits the sample (review the types and the key):\n");
    out.push_str(&format!(
        "format = {{ kind = \"{}\" }}\n",
        if is_json { "ndjson" } else { "csv" }
    ));
    out.push_str(&format!("target = \"{table}\"\ncolumns = [\n"));
    for c in cols {
        let source = if c.field != c.column {
            format!(", source = \"{}\"", c.field.replace('"', "\\\""))
        } else {
            String::new()
        };
        let required = if c.nullable { "" } else { ", required = true" };
        out.push_str(&format!(
            "  {{ name = \"{}\", type = \"{}\"{source}{required} }},\n",
            c.column,
            type_text(c.column_type)
        ));
    }
    out.push_str("]\n\n-- A Redshift table for it (runs on PostgreSQL too):\n");
    out.push_str(&format!("CREATE TABLE IF NOT EXISTS \"{table}\" (\n"));
    let defs: Vec<String> = cols
        .iter()
        .map(|c| {
            format!(
                "    \"{}\" {}{}",
                c.column,
                c.column_type.sql(),
                if c.nullable { "" } else { " NOT NULL" }
            )
        })
        .collect();
    out.push_str(&defs.join(",\n"));
    out.push_str("\n);\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_types_are_the_narrowest_that_fit() {
        let csv = "Event ID,n,big,amount,ok,day,at,meta,name\n\
                   e1,1,5000000000,1.5,true,2026-01-01,2026-01-01T10:00:00Z,{\"a\":1},x\n\
                   e2,,7,2,false,2026-01-02,2026-01-01 11:00:00,[1],longer name\n";
        let (json, cols) = infer(csv.as_bytes(), 100).unwrap();
        assert!(!json);
        let types: Vec<(String, ColumnType, bool)> = cols
            .iter()
            .map(|c| (c.column.clone(), c.column_type, c.nullable))
            .collect();
        assert_eq!(
            types,
            vec![
                ("event_id".into(), ColumnType::Varchar(16), false),
                ("n".into(), ColumnType::Int, true),
                ("big".into(), ColumnType::Bigint, false),
                ("amount".into(), ColumnType::Decimal(38, 6), false),
                ("ok".into(), ColumnType::Boolean, false),
                ("day".into(), ColumnType::Date, false),
                ("at".into(), ColumnType::Timestamptz, false),
                ("meta".into(), ColumnType::Json, false),
                ("name".into(), ColumnType::Varchar(32), false),
            ]
        );
        let text = render("events", json, &cols);
        assert!(text.contains("{ name = \"event_id\", type = \"varchar(16)\", source = \"Event ID\", required = true }"), "{text}");
        assert!(text.contains("    \"big\" BIGINT NOT NULL,"), "{text}");
    }

    #[test]
    fn ndjson_fields_from_every_sampled_line() {
        let nd = "{\"id\": 1, \"t\": \"2026-01-01T00:00:00Z\"}\n{\"id\": 2, \"extra\": \"x\"}\n";
        let (json, cols) = infer(nd.as_bytes(), 100).unwrap();
        assert!(json);
        assert_eq!(
            cols.iter().map(|c| c.column.as_str()).collect::<Vec<_>>(),
            vec!["id", "t", "extra"]
        );
        assert!(cols[1].nullable && cols[2].nullable && !cols[0].nullable);
        assert_eq!(cols[0].column_type, ColumnType::Int);
    }
}

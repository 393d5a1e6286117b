//! `ferry infer FILE`: samples a CSV, NDJSON, JSON or XML file and proposes
//! a whole `[[jobs]]` block (format, columns, a placeholder source and
//! path) that validates, and a Redshift `CREATE TABLE` that fit it (the
//! Glue-crawler step of hand-made pipelines). Types are the narrowest that
//! every sampled value fits: boolean, int, bigint, decimal, date,
//! timestamptz, uuid, json, then varchar sized to the longest value rounded
//! up. Nested JSON objects map by pointer (`/task/id`), XML children,
//! grandchildren and attributes by path (`task/id`, `@id`, `task/@id`).

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

/// A column name for `field`: lower-case letters, digits and `_`.
pub fn ident(field: &str) -> String {
    let mut s: String = field
        .trim()
        .trim_start_matches(['/', '@'])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    // `task/@id` is `task_id`, not `task__id`.
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

const CANDIDATES: [ColumnType; 7] = [
    ColumnType::Boolean,
    ColumnType::Int,
    ColumnType::Bigint,
    ColumnType::Decimal(38, 6),
    ColumnType::Date,
    ColumnType::Timestamptz,
    ColumnType::Uuid,
];

/// The largest JSON document `infer` reads whole (an NDJSON file or a CSV
/// is read only as far as its sample).
pub const MAX_JSON_DOCUMENT: u64 = 64 << 20;

/// The format a sample was read as, as the job's `format` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sampled {
    /// Delimited text with a header.
    Csv,
    /// One object per line.
    Ndjson,
    /// A JSON document; the records are the array at this path (`None`:
    /// the document is the array).
    Json(Option<String>),
    /// XML; the records are the elements at this path.
    Xml(String),
}

impl Sampled {
    /// The job's `format = { … }`.
    pub fn format_toml(&self) -> String {
        match self {
            Sampled::Csv => "{ kind = \"csv\" }".into(),
            Sampled::Ndjson => "{ kind = \"ndjson\" }".into(),
            Sampled::Json(None) => "{ kind = \"json\" }".into(),
            Sampled::Json(Some(p)) => format!("{{ kind = \"json\", records_path = \"{p}\" }}"),
            Sampled::Xml(p) => format!("{{ kind = \"xml\", record_path = \"{p}\" }}"),
        }
    }

    /// A file pattern for the job.
    fn pattern(&self) -> &'static str {
        match self {
            Sampled::Csv => "*.csv",
            Sampled::Ndjson => "*.ndjson",
            Sampled::Json(_) => "*.json",
            Sampled::Xml(_) => "*.xml",
        }
    }
}

/// Fields in first-seen order, with one sample per record each.
#[derive(Default)]
struct Samples {
    fields: Vec<String>,
    values: Vec<Vec<Option<String>>>,
    records: usize,
}

impl Samples {
    /// Adds one record of (field, value) pairs.
    fn record(&mut self, pairs: Vec<(String, Option<String>)>) {
        for (field, _) in &pairs {
            if !self.fields.contains(field) {
                self.fields.push(field.clone());
                self.values.push(vec![None; self.records]);
            }
        }
        for (i, f) in self.fields.iter().enumerate() {
            let v = pairs
                .iter()
                .find(|(k, _)| k == f)
                .and_then(|(_, v)| v.clone());
            self.values[i].push(v);
        }
        self.records += 1;
    }

    fn columns(self) -> Vec<Inferred> {
        let mut cols: Vec<Inferred> = self
            .fields
            .iter()
            .zip(&self.values)
            .map(|(f, v)| infer_column(f, v))
            .collect();
        // `@id` and `id` (or `/a/b` and `a_b`) would share a name.
        let mut taken = std::collections::HashSet::new();
        for c in &mut cols {
            let base = c.column.clone();
            let mut n = 1;
            while !taken.insert(c.column.clone()) {
                n += 1;
                c.column = format!("{base}_{n}");
            }
        }
        cols
    }
}

/// The narrowest type every value seen so far fits, kept as values
/// stream past (for `ferry infer`'s samples and for the columns a
/// `contract.columns = "evolve"` job adds): each candidate type drops out
/// at the first value it does not fit.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeGuess {
    /// Bit i: CANDIDATES\[i\] fits every value so far; bit 7: JSON does.
    fits: u8,
    /// Non-empty values seen.
    values: u64,
    /// Empty or absent values seen.
    empty: u64,
    /// The longest value, in bytes.
    longest: usize,
}

impl Default for TypeGuess {
    fn default() -> Self {
        TypeGuess {
            fits: u8::MAX,
            values: 0,
            empty: 0,
            longest: 0,
        }
    }
}

impl TypeGuess {
    /// Takes one value into account (`None` or blank: a NULL).
    pub fn observe(&mut self, value: Option<&str>) {
        let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            self.empty += 1;
            return;
        };
        self.values += 1;
        self.longest = self.longest.max(v.len());
        for (i, t) in CANDIDATES.iter().enumerate() {
            let bit = 1u8 << i;
            if self.fits & bit == 0 {
                continue;
            }
            let fits = match t {
                // 1/0 are numbers first; only words make a boolean.
                ColumnType::Boolean => matches!(
                    v.to_ascii_lowercase().as_str(),
                    "true" | "false" | "t" | "f" | "yes" | "no"
                ),
                t => coerce(v, *t).is_ok(),
            };
            if !fits {
                self.fits &= !bit;
            }
        }
        if self.fits & 0x80 != 0
            && !(v.starts_with(['{', '[']) && coerce(v, ColumnType::Json).is_ok())
        {
            self.fits &= !0x80;
        }
    }

    /// Takes in what `other` saw (the same field's values elsewhere in
    /// the file): the guess is then as if one had seen them all.
    pub fn merge(&mut self, other: &TypeGuess) {
        self.fits &= other.fits;
        self.values += other.values;
        self.empty += other.empty;
        self.longest = self.longest.max(other.longest);
    }

    /// Whether some value was empty or absent.
    pub fn nullable(&self) -> bool {
        self.empty > 0
    }

    /// The longest value seen, in bytes.
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// The narrowest type that fits every value: boolean, int, bigint,
    /// decimal, date, timestamptz, uuid, json, else a VARCHAR of twice the
    /// longest value rounded up to a power of two (16 to 65535 bytes).
    pub fn column_type(&self) -> ColumnType {
        if self.values > 0 {
            if let Some(i) = (0..CANDIDATES.len()).find(|i| self.fits & (1 << i) != 0) {
                return CANDIDATES[i];
            }
            if self.fits & 0x80 != 0 {
                return ColumnType::Json;
            }
        }
        let longest = self.longest.max(1);
        ColumnType::Varchar((longest * 2).next_power_of_two().clamp(16, 65535) as u32)
    }
}

fn infer_column(field: &str, values: &[Option<String>]) -> Inferred {
    let mut guess = TypeGuess::default();
    for v in values {
        guess.observe(v.as_deref());
    }
    Inferred {
        field: field.to_string(),
        column: ident(field),
        column_type: guess.column_type(),
        nullable: guess.nullable(),
    }
}

/// Samples up to `rows` records of a CSV (with a header), NDJSON, JSON or
/// XML file.
pub fn infer<R: Read>(input: R, rows: usize) -> Result<(Sampled, Vec<Inferred>), String> {
    let mut reader = BufReader::new(input);
    let first = reader.fill_buf().map_err(|e| e.to_string())?;
    let start = first
        .iter()
        .skip_while(|b| b.is_ascii_whitespace() || **b == 0xef || **b == 0xbb || **b == 0xbf)
        .copied()
        .next();
    match start {
        Some(b'<') => infer_xml(reader, rows),
        Some(b'[') => infer_json_document(reader, rows),
        Some(b'{') => {
            // One object per line, or one document over many lines.
            let line_end = first
                .iter()
                .position(|b| *b == b'\n')
                .unwrap_or(first.len());
            let one_line = serde_json::from_slice::<serde_json::Value>(&first[..line_end]).is_ok();
            if one_line {
                infer_ndjson(reader, rows)
            } else {
                infer_json_document(reader, rows)
            }
        }
        _ => infer_csv(reader, rows),
    }
}

fn infer_csv<R: BufRead>(reader: R, rows: usize) -> Result<(Sampled, Vec<Inferred>), String> {
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let fields: Vec<String> = csv
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
        .collect();
    let mut samples = vec![Vec::new(); fields.len()];
    for rec in csv.records().take(rows) {
        let rec = rec.map_err(|e| e.to_string())?;
        for (i, col) in samples.iter_mut().enumerate() {
            col.push(rec.get(i).map(String::from));
        }
    }
    let cols = fields
        .iter()
        .zip(&samples)
        .map(|(f, v)| infer_column(f, v))
        .collect();
    Ok((Sampled::Csv, cols))
}

fn infer_ndjson<R: BufRead>(reader: R, rows: usize) -> Result<(Sampled, Vec<Inferred>), String> {
    let mut samples = Samples::default();
    for line in reader.lines().take(rows) {
        let line = line.map_err(|e| e.to_string())?;
        if let Ok(serde_json::Value::Object(obj)) = serde_json::from_str(&line) {
            samples.record(json_pairs(&obj));
        }
    }
    Ok((Sampled::Ndjson, samples.columns()))
}

/// A JSON document (read whole, up to [`MAX_JSON_DOCUMENT`]): an array of
/// objects, or an object whose first member holding an array of objects is
/// the records (its path becomes `records_path`).
fn infer_json_document<R: BufRead>(
    reader: R,
    rows: usize,
) -> Result<(Sampled, Vec<Inferred>), String> {
    let mut text = Vec::new();
    // Bounded by `take`: a sample, never the whole of a large file.
    #[allow(clippy::disallowed_methods)]
    reader
        .take(MAX_JSON_DOCUMENT + 1)
        .read_to_end(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_JSON_DOCUMENT {
        return Err(format!(
            "a JSON document over {} MiB; sample a smaller file",
            MAX_JSON_DOCUMENT >> 20
        ));
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("not a JSON document: {e}"))?;
    let (path, records) = match &doc {
        serde_json::Value::Array(a) => (None, a),
        serde_json::Value::Object(_) => find_records(&doc, "")
            .map(|(p, a)| (Some(p), a))
            .ok_or("no array of objects in the document")?,
        _ => return Err("the document is neither an array nor an object".into()),
    };
    let mut samples = Samples::default();
    for r in records.iter().take(rows) {
        if let serde_json::Value::Object(obj) = r {
            samples.record(json_pairs(obj));
        }
    }
    Ok((Sampled::Json(path), samples.columns()))
}

/// The first array of objects below `v`, depth first, with its path.
fn find_records<'v>(
    v: &'v serde_json::Value,
    at: &str,
) -> Option<(String, &'v Vec<serde_json::Value>)> {
    let serde_json::Value::Object(obj) = v else {
        return None;
    };
    for (k, child) in obj {
        let path = format!("{at}/{k}");
        match child {
            serde_json::Value::Array(a) if a.iter().any(serde_json::Value::is_object) => {
                return Some((path, a));
            }
            serde_json::Value::Object(_) => {
                if let Some(found) = find_records(child, &path) {
                    return Some(found);
                }
            }
            _ => {}
        }
    }
    None
}

/// A record's fields: members, and members of nested objects by pointer
/// (`/task/id`); arrays and deeper objects stay one JSON value.
fn json_pairs(obj: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, Option<String>)> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    let mut out = Vec::new();
    for (k, v) in obj {
        match v {
            serde_json::Value::Object(inner) if !inner.is_empty() => {
                for (ik, iv) in inner {
                    out.push((format!("/{k}/{ik}"), text(iv)));
                }
            }
            _ => out.push((k.clone(), text(v))),
        }
    }
    out
}

/// XML (its first [`MAX_JSON_DOCUMENT`] bytes): the records are the
/// shallowest element path below the root that occurs more than once (the
/// most frequent at that depth); their fields are attributes (`@id`),
/// children (`status`), children's attributes (`task/@id`) and
/// grandchildren (`task/id`).
fn infer_xml<R: BufRead>(reader: R, rows: usize) -> Result<(Sampled, Vec<Inferred>), String> {
    let mut bytes = Vec::new();
    // Bounded by `take`: a sample, never the whole of a large file.
    #[allow(clippy::disallowed_methods)]
    reader
        .take(MAX_JSON_DOCUMENT)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    let counts = xml_paths(&bytes)?;
    let path = counts
        .iter()
        .filter(|(p, n)| **n > 1 && p.matches('/').count() >= 2)
        .min_by_key(|(p, n)| (p.matches('/').count(), std::cmp::Reverse(**n)))
        .map(|(p, _)| p.clone())
        .ok_or("no repeated element below the root to take as records")?;
    let samples = xml_records(&bytes, &path, rows)?;
    Ok((Sampled::Xml(path), samples.columns()))
}

/// The local name of an element or attribute (namespace prefix dropped).
fn local(name: &[u8]) -> String {
    let n = String::from_utf8_lossy(name);
    n.rsplit(':').next().unwrap_or(&n).to_string()
}

/// How often each element path occurs; a sample cut mid-document ends
/// the count where it breaks.
fn xml_paths(bytes: &[u8]) -> Result<std::collections::HashMap<String, usize>, String> {
    use quick_xml::events::Event;
    let mut xml = quick_xml::Reader::from_reader(bytes);
    let mut stack: Vec<String> = Vec::new();
    let mut counts = std::collections::HashMap::new();
    loop {
        match xml.read_event() {
            Ok(Event::Start(e)) => {
                stack.push(local(e.name().as_ref()));
                *counts.entry(format!("/{}", stack.join("/"))).or_insert(0) += 1;
            }
            Ok(Event::Empty(e)) => {
                stack.push(local(e.name().as_ref()));
                *counts.entry(format!("/{}", stack.join("/"))).or_insert(0) += 1;
                stack.pop();
            }
            Ok(Event::End(_)) => {
                stack.pop();
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(_) if !counts.is_empty() => break,
            Err(e) => return Err(format!("not well-formed XML: {e}")),
        }
    }
    Ok(counts)
}

/// Samples up to `rows` records at `path`.
fn xml_records(bytes: &[u8], path: &str, rows: usize) -> Result<Samples, String> {
    use quick_xml::events::Event;
    let mut xml = quick_xml::Reader::from_reader(bytes);
    let mut stack: Vec<String> = Vec::new();
    let mut current: Option<OpenRecord> = None;
    let mut samples = Samples::default();
    while samples.records < rows {
        let event = match xml.read_event() {
            Ok(Event::Eof) => break,
            Ok(e) => e,
            // A sample cut mid-document: what was read is the sample.
            Err(_) if samples.records > 0 => break,
            Err(e) => return Err(format!("not well-formed XML: {e}")),
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                stack.push(local(e.name().as_ref()));
                let attrs: Vec<(String, Option<String>)> = e
                    .attributes()
                    .flatten()
                    .map(|a| {
                        let value = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .ok()
                            .map(|v| v.into_owned());
                        (local(a.key.as_ref()), value)
                    })
                    .collect();
                if current.is_none() && format!("/{}", stack.join("/")) == path {
                    let pairs = attrs
                        .into_iter()
                        .map(|(k, v)| (format!("@{k}"), v))
                        .collect();
                    current = Some((stack.len(), pairs));
                } else if let Some((depth, pairs)) = &mut current
                    && stack.len() <= *depth + 2
                {
                    let rel = stack[*depth..].join("/");
                    for (k, v) in attrs {
                        pairs.push((format!("{rel}/@{k}"), v));
                    }
                }
                if matches!(event, Event::Empty(_)) {
                    close(&mut stack, &mut current, &mut samples);
                }
            }
            Event::Text(t) => {
                if let Some((depth, pairs)) = &mut current
                    && stack.len() > *depth
                    && stack.len() <= *depth + 2
                {
                    let text = t
                        .xml10_content()
                        .map_err(|e| e.to_string())?
                        .trim()
                        .to_string();
                    let rel = stack[*depth..].join("/");
                    if !text.is_empty() && !pairs.iter().any(|(k, _)| *k == rel) {
                        pairs.push((rel, Some(text)));
                    }
                }
            }
            Event::End(_) => close(&mut stack, &mut current, &mut samples),
            _ => {}
        }
    }
    Ok(samples)
}

/// A record being read: its depth and its (field, value) pairs so far.
type OpenRecord = (usize, Vec<(String, Option<String>)>);

/// Leaves an element; at a record's end, the record is sampled.
fn close(stack: &mut Vec<String>, current: &mut Option<OpenRecord>, samples: &mut Samples) {
    if current
        .as_ref()
        .is_some_and(|(depth, _)| *depth == stack.len())
        && let Some((_, pairs)) = current.take()
    {
        samples.record(pairs);
    }
    stack.pop();
}

/// A `[[jobs]]` block (it validates once `source` names one of your
/// sources) and a `CREATE TABLE` for `table`.
pub fn render(table: &str, format: &Sampled, cols: &[Inferred]) -> String {
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
        ColumnType::Super => "super".into(),
        ColumnType::Uuid => "uuid".into(),
    };
    let mut out = String::from(
        "# A job that fits the sample: set source and path to yours, review the\n\
         # types, and for mode = \"merge\" name the key (and order_by).\n[[jobs]]\n",
    );
    out.push_str(&format!(
        "name = \"{}\"\nsource = \"my-source\"\npath = \"/outbox\"\npattern = \"{}\"\n\
         format = {}\ntarget = \"{table}\"\nmode = \"append\"\ncolumns = [\n",
        table.replace('_', "-"),
        format.pattern(),
        format.format_toml()
    ));
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
        let (format, cols) = infer(csv.as_bytes(), 100).unwrap();
        assert_eq!(format, Sampled::Csv);
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
        let text = render("events", &format, &cols);
        assert!(text.contains("{ name = \"event_id\", type = \"varchar(16)\", source = \"Event ID\", required = true }"), "{text}");
        assert!(text.contains("    \"big\" BIGINT NOT NULL,"), "{text}");
    }

    #[test]
    fn ndjson_fields_from_every_sampled_line() {
        let nd = "{\"id\": 1, \"t\": \"2026-01-01T00:00:00Z\"}\n{\"id\": 2, \"extra\": \"x\"}\n";
        let (format, cols) = infer(nd.as_bytes(), 100).unwrap();
        assert_eq!(format, Sampled::Ndjson);
        assert_eq!(
            cols.iter().map(|c| c.column.as_str()).collect::<Vec<_>>(),
            vec!["id", "t", "extra"]
        );
        assert!(cols[1].nullable && cols[2].nullable && !cols[0].nullable);
        assert_eq!(cols[0].column_type, ColumnType::Int);
    }

    /// The rendered block inside a config with a source `my-source`.
    fn validates(text: &str) -> crate::config::Config {
        let toml = text.split("\n-- A Redshift table").next().unwrap();
        let full = format!(
            "[staging]\nbucket = \"b\"\n[warehouse]\nkind = \"postgres\"\n[sources.my-source]\nkind = \"local\"\nroot = \"/tmp\"\n{toml}"
        );
        crate::config::from_toml_str(&full).unwrap_or_else(|e| panic!("{e}\n{full}"))
    }

    #[test]
    fn a_json_document_finds_its_records_and_maps_nested_members_by_pointer() {
        let doc = r#"{"meta": {"n": 2}, "data": {"events": [
            {"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "task": {"id": "t1", "prio": 2}, "tags": ["a"]},
            {"id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "task": {"id": "t2", "prio": 3}, "tags": []}
        ]}}"#;
        let (format, cols) = infer(doc.as_bytes(), 100).unwrap();
        assert_eq!(format, Sampled::Json(Some("/data/events".into())));
        let got: Vec<(&str, &str, ColumnType)> = cols
            .iter()
            .map(|c| (c.field.as_str(), c.column.as_str(), c.column_type))
            .collect();
        assert_eq!(
            got,
            // Members in name order (as serde_json keeps them).
            [
                ("id", "id", ColumnType::Uuid),
                ("tags", "tags", ColumnType::Json),
                ("/task/id", "task_id", ColumnType::Varchar(16)),
                ("/task/prio", "task_prio", ColumnType::Int),
            ]
        );
        let text = render("task_events", &format, &cols);
        let config = validates(&text);
        let job = &config.jobs[0];
        assert_eq!(job.name, "task-events");
        assert_eq!(job.columns.len(), 4);
        let (format, _) = infer("[{\"a\": 1}, {\"a\": 2}]".as_bytes(), 100).unwrap();
        assert_eq!(format, Sampled::Json(None));
    }

    #[test]
    fn xml_records_are_the_shallowest_repeated_element_with_their_fields() {
        let xml = r#"<?xml version="1.0"?>
<export><meta><made>2026</made></meta><events>
  <event id="e1"><status>open</status><task id="t1"><prio>2</prio></task><tag>a</tag><tag>b</tag></event>
  <event id="e2"><status>done</status><task id="t2"><prio>3</prio></task></event>
  <event id="e3"><status>done</status><task id="t3"/></event>
</events></export>"#;
        let (format, cols) = infer(xml.as_bytes(), 100).unwrap();
        assert_eq!(format, Sampled::Xml("/export/events/event".into()));
        let got: Vec<(&str, &str, ColumnType, bool)> = cols
            .iter()
            .map(|c| {
                (
                    c.field.as_str(),
                    c.column.as_str(),
                    c.column_type,
                    c.nullable,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("@id", "id", ColumnType::Varchar(16), false),
                ("status", "status", ColumnType::Varchar(16), false),
                ("task/@id", "task_id", ColumnType::Varchar(16), false),
                ("task/prio", "task_prio", ColumnType::Int, true),
                ("tag", "tag", ColumnType::Varchar(16), true),
            ]
        );
        let text = render("events", &format, &cols);
        assert!(
            text.contains("format = { kind = \"xml\", record_path = \"/export/events/event\" }"),
            "{text}"
        );
        // The proposed job reads the file it was inferred from, every row.
        let config = validates(&text);
        let ctx = crate::normalize::FileContext {
            path: "/in/x.xml".into(),
            ingest_time: "2026-01-01 00:00:00.000000".into(),
            size_hint: None,
        };
        let mut out = Vec::new();
        let stats =
            crate::normalize::normalize(&config.jobs[0], &ctx, xml.as_bytes(), &mut out).unwrap();
        assert_eq!((stats.rows, stats.rejected), (3, 0), "{:?}", stats.errors);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("e1,open,t1,2,a,"), "{text}");
    }

    #[test]
    fn every_format_renders_a_job_that_validates() {
        let csv = "id,at\n1,2026-01-01T00:00:00Z\n";
        let nd = "{\"id\": 1}\n{\"id\": 2}\n";
        for input in [csv, nd] {
            let (format, cols) = infer(input.as_bytes(), 10).unwrap();
            validates(&render("events", &format, &cols));
        }
    }
}

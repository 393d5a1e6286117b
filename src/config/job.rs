//! `[[jobs]]`: what to load from where — path and pattern, settling,
//! batching, limits, errors, checks, and what happens to a file after.

use super::*;

/// `[[jobs]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    /// Unique name; used in the ledger, staging keys, logs and metrics.
    pub name: String,
    /// How often the daemon lists this job's source; default
    /// `daemon.poll_interval`.
    pub poll_interval: Option<String>,
    /// Name of a `[sources.NAME]` entry.
    pub source: String,
    /// Folder on the source to list; may hold date templates `{yyyy}`,
    /// `{mm}`, `{dd}` (UTC), e.g. `/export/{yyyy}/{mm}/{dd}`.
    pub path: String,
    /// With a date template: how many days before today are listed too.
    #[serde(default = "default_lookback_days")]
    pub lookback_days: u32,
    /// Glob the file name (or path below `path`, when recursive) must match.
    #[serde(default = "default_pattern")]
    pub pattern: String,
    /// Globs of names to leave alone.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// List sub-folders too.
    #[serde(default)]
    pub recursive: bool,
    /// A paused job (`false`) is listed by `ferry jobs` but never polled.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Input format and its options.
    #[serde(default)]
    pub format: RawFormat,
    /// Target table (in the warehouse schema).
    pub target: String,
    /// `merge` (replace rows with the same key) or `append`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Key columns: rows with the same key are one row in the target.
    #[serde(default)]
    pub key: Vec<String>,
    /// Among rows with the same key, the greatest `order_by` wins; ties go to
    /// the later file and line.
    pub order_by: Option<String>,
    /// Target columns, in the staged file's order.
    pub columns: Vec<RawColumn>,
    /// Dimension tables kept up to date from the loaded rows (SCD1).
    #[serde(default)]
    pub dimensions: Vec<RawDimension>,
    /// When a file counts as completely uploaded.
    #[serde(default)]
    pub settle: RawSettle,
    /// What happens to the source file after its load has committed.
    #[serde(default)]
    pub on_success: RawFinalize,
    /// What happens to the source file when it fails for good (bad data,
    /// too many rejects, a COPY or merge error): `keep` (the default) or
    /// `move` to a folder (`to`), so the drop folder holds only what is
    /// still to load. Never `delete`: a failed file is the operator's.
    #[serde(default)]
    pub on_failure: RawFinalize,
    /// A file that changes (new size or mtime) after a version of it was
    /// loaded: `reload` (load it as a new version; rows replace by key in
    /// merge mode) or `ignore` (record it as skipped, load nothing).
    #[serde(default = "default_on_change")]
    pub on_change: String,
    /// Rejected records a file may have before it fails as a whole: a
    /// count (`10`) or a share of its records (`"2%"`).
    #[serde(default)]
    pub max_errors: RawMaxErrors,
    /// Safety limits against runaway input.
    #[serde(default)]
    pub limits: RawLimits,
    /// Gzip level of the staged CSV, 1 (fast, the default) to 9 (small).
    #[serde(default = "default_gzip_level")]
    pub gzip_level: u32,
    /// Keep a byte-for-byte copy of each source file under `raw/` in the
    /// staging bucket (written before the load, whatever its outcome).
    #[serde(default)]
    pub archive_raw: bool,
    /// The staged CSV is cut into parts after the record that passes this
    /// many bytes (before compression), e.g. `"256MiB"`.
    #[serde(default = "default_part_size")]
    pub part_size: String,
    /// Files fetched, normalized and staged at the same time.
    #[serde(default = "default_job_concurrency")]
    pub concurrency: usize,
    /// When staged files are loaded together.
    #[serde(default)]
    pub batch: RawBatch,
    /// Queries run after each committed load of the job; each returns the
    /// rows that are wrong and passes when it returns none.
    #[serde(default)]
    pub checks: Vec<RawCheck>,
}

/// A post-load check, e.g. `{ name = "no_null_task", sql = "SELECT
/// event_id FROM {target} WHERE ferry_load_id = :load_id AND task_id IS
/// NULL" }`. A failed check is logged, counted in the metrics and kept in
/// `ferry_checks`; the load stays committed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// Name in logs, metrics and `ferry_checks` (letters, digits, `_`).
    pub name: String,
    /// One SELECT. `{target}` is the job's target table and `{schema}`
    /// the warehouse schema (both quoted); `:load_id`, `:job` and `:rows`
    /// (the rows the load wrote) are text parameters: compare numbers as
    /// `CAST(:rows AS BIGINT)`.
    pub sql: String,
}

pub(super) fn default_job_concurrency() -> usize {
    4
}

/// `[jobs.batch]`: staged files wait and load together in one transaction
/// and one COPY once any limit is reached (the Firehose buffering hints).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    /// Load when this many files are staged.
    #[serde(default = "default_batch_files")]
    pub max_files: usize,
    /// Load when the staged files' source bytes reach this, e.g. `"1GiB"`.
    #[serde(default = "default_batch_bytes")]
    pub max_bytes: String,
    /// Load at the end of a poll once the oldest staged file has waited
    /// this long (`"0s"`: at the end of every poll).
    #[serde(default = "default_batch_wait")]
    pub max_wait: String,
}

impl Default for RawBatch {
    fn default() -> Self {
        RawBatch {
            max_files: default_batch_files(),
            max_bytes: default_batch_bytes(),
            max_wait: default_batch_wait(),
        }
    }
}

pub(super) fn default_batch_files() -> usize {
    500
}

pub(super) fn default_batch_bytes() -> String {
    "1GiB".into()
}

pub(super) fn default_batch_wait() -> String {
    "0s".into()
}

pub(super) fn default_on_change() -> String {
    "reload".into()
}

pub(super) fn default_gzip_level() -> u32 {
    1
}

pub(super) fn default_part_size() -> String {
    "256MiB".into()
}

/// `max_errors = 10` or `max_errors = "2%"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawMaxErrors {
    /// A count.
    Count(u64),
    /// A percentage like `"2.5%"`.
    Text(String),
}

impl Default for RawMaxErrors {
    fn default() -> Self {
        RawMaxErrors::Count(0)
    }
}

/// `limits = { … }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest record (a CSV record, a JSON line or array element).
    #[serde(default = "default_max_record")]
    pub max_record_bytes: String,
    /// Largest decompressed size of a gzip input.
    #[serde(default = "default_max_decompressed")]
    pub max_decompressed_bytes: String,
    /// Largest decompressed:compressed ratio of a gzip input.
    #[serde(default = "default_max_ratio")]
    pub max_compression_ratio: u64,
    /// Deepest XML element nesting.
    #[serde(default = "default_max_xml_depth")]
    pub max_xml_depth: usize,
}

pub(super) fn default_max_xml_depth() -> usize {
    64
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_record_bytes: default_max_record(),
            max_decompressed_bytes: default_max_decompressed(),
            max_compression_ratio: default_max_ratio(),
            max_xml_depth: default_max_xml_depth(),
        }
    }
}

pub(super) fn default_max_record() -> String {
    "4MiB".into()
}

pub(super) fn default_max_decompressed() -> String {
    "100GiB".into()
}

pub(super) fn default_max_ratio() -> u64 {
    200
}

pub(super) fn default_lookback_days() -> u32 {
    1
}

pub(super) fn default_pattern() -> String {
    "*".into()
}

pub(super) fn default_mode() -> String {
    "merge".into()
}

/// `settle = { … }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettle {
    /// A file younger than this (by its modification time) is not ready.
    #[serde(default = "default_min_age")]
    pub min_age: String,
    /// If set, a file is ready only when `name + marker_suffix` exists.
    pub marker_suffix: Option<String>,
    /// If set, a file is ready only when a file of this name (e.g.
    /// `_SUCCESS`) exists in the same folder.
    pub folder_marker: Option<String>,
    /// A file is ready only after its size and modification time stayed
    /// the same across this many further polls (0: off).
    #[serde(default)]
    pub stable_polls: u32,
    /// Globs of temporary names that are never ready.
    #[serde(default = "default_temp_patterns")]
    pub temp_patterns: Vec<String>,
}

impl Default for RawSettle {
    fn default() -> Self {
        RawSettle {
            min_age: default_min_age(),
            marker_suffix: None,
            folder_marker: None,
            stable_polls: 0,
            temp_patterns: default_temp_patterns(),
        }
    }
}

pub(super) fn default_min_age() -> String {
    "30s".into()
}

pub(super) fn default_temp_patterns() -> Vec<String> {
    ["*.part", "*.tmp", "*.filepart", "*.partial", ".*"]
        .map(String::from)
        .to_vec()
}

/// `on_success = { action = "…" }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFinalize {
    /// `keep`, `delete` or `move`.
    #[serde(default = "default_action")]
    pub action: String,
    /// Folder for `move`; created if missing.
    pub to: Option<String>,
}

impl Default for RawFinalize {
    fn default() -> Self {
        RawFinalize {
            action: default_action(),
            to: None,
        }
    }
}

pub(super) fn default_action() -> String {
    "keep".into()
}

/// Validates one `[[jobs]]` entry at `path` (`jobs[3]`) against the
/// sources (`raw_sources` as written, `sources` those that validated).
pub(super) fn validate_job(
    path: &str,
    j: &RawJob,
    raw_sources: &BTreeMap<String, RawSource>,
    sources: &BTreeMap<String, Arc<SourceSettings>>,
    default_poll: Duration,
    p: &mut Problems,
) -> Option<Job> {
    validate_name(&format!("{path}.name"), &j.name, p);
    let poll_interval = match &j.poll_interval {
        Some(text) => p.take(&format!("{path}.poll_interval"), parse_duration(text)),
        None => Some(default_poll),
    };
    let source = source_of(path, &j.source, raw_sources, sources, p);
    let pattern = glob(&format!("{path}.pattern"), &j.pattern, p).map(|g| g.compile_matcher());
    let exclude = glob_set(&format!("{path}.exclude"), &j.exclude, p);
    let target = p.take(&format!("{path}.target"), Ident::parse(&j.target));
    let mode = p.choose(
        &format!("{path}.mode"),
        &j.mode,
        &[("merge", LoadMode::Merge), ("append", LoadMode::Append)],
    );
    let format = validate_format(path, &j.format, p);
    let max_errors = validate_max_errors(path, &j.max_errors, p);
    let (gzip_level, part_size) = validate_output(path, j, p);
    let batch = validate_batch(path, &j.batch, p);
    let limits = validate_limits(path, &j.limits, p);
    let columns = validate_columns(path, &j.columns, p);
    let column_names: HashSet<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let (key, order_by) = validate_key(path, j, &column_names, mode, p);
    let dimensions = validate_dimensions(path, &j.dimensions, &column_names, p);
    let settle = validate_settle(path, &j.settle, p);
    let on_success = validate_finalize(&format!("{path}.on_success"), &j.on_success, true, p);
    let on_failure = validate_finalize(&format!("{path}.on_failure"), &j.on_failure, false, p);
    let on_change = p.choose(
        &format!("{path}.on_change"),
        &j.on_change,
        &[("reload", OnChange::Reload), ("ignore", OnChange::Ignore)],
    );
    let checks = validate_checks(path, &j.checks, p);
    Some(Job {
        name: j.name.clone(),
        source: source?,
        path: j.path.clone(),
        lookback_days: j.lookback_days,
        pattern: pattern?,
        pattern_text: j.pattern.clone(),
        exclude: exclude?,
        recursive: j.recursive,
        enabled: j.enabled,
        poll_interval: poll_interval?,
        format: format?,
        target: target?,
        mode: mode?,
        key,
        order_by,
        columns,
        dimensions,
        settle: settle?,
        on_success: on_success?,
        on_failure: on_failure?,
        on_change: on_change?,
        max_errors: max_errors?,
        limits: limits?,
        gzip_level,
        part_size: part_size?,
        archive_raw: j.archive_raw,
        concurrency: j.concurrency,
        batch: batch?,
        checks,
    })
}

/// The source named `name`, or a problem listing the defined ones (none
/// when the source is defined but did not validate: that is reported).
fn source_of(
    path: &str,
    name: &str,
    raw_sources: &BTreeMap<String, RawSource>,
    sources: &BTreeMap<String, Arc<SourceSettings>>,
    p: &mut Problems,
) -> Option<Arc<SourceSettings>> {
    if let Some(s) = sources.get(name) {
        return Some(s.clone());
    }
    if !raw_sources.contains_key(name) {
        let known: Vec<&str> = raw_sources.keys().map(String::as_str).collect();
        p.push(
            format!("{path}.source"),
            format!("no source named {name:?} (defined: {})", known.join(", ")),
        );
    }
    None
}

/// `max_errors`: a count, or a percentage of the file's records.
fn validate_max_errors(path: &str, raw: &RawMaxErrors, p: &mut Problems) -> Option<MaxErrors> {
    match raw {
        RawMaxErrors::Count(n) => Some(MaxErrors::Count(*n)),
        RawMaxErrors::Text(t) => {
            match t.trim().strip_suffix('%').map(|n| n.trim().parse::<f64>()) {
                Some(Ok(pct)) if (0.0..=100.0).contains(&pct) => Some(MaxErrors::Percent(pct)),
                _ => {
                    p.push(
                        format!("{path}.max_errors"),
                        format!("{t:?}: expected a count like 10 or a percentage like \"2%\""),
                    );
                    None
                }
            }
        }
    }
}

/// The staged output: `gzip_level` (1-9), `part_size` (more than 0) and
/// the job's `concurrency` (1-64).
fn validate_output(path: &str, j: &RawJob, p: &mut Problems) -> (u32, Option<u64>) {
    if !(1..=9).contains(&j.gzip_level) {
        p.push(
            format!("{path}.gzip_level"),
            "must be 1 (fast) to 9 (small)",
        );
    }
    let part_size = p.take(&format!("{path}.part_size"), parse_size(&j.part_size));
    if part_size == Some(0) {
        p.push(format!("{path}.part_size"), "must be more than 0 bytes");
    }
    if !(1..=64).contains(&j.concurrency) {
        p.push(format!("{path}.concurrency"), "must be 1 to 64");
    }
    (j.gzip_level, part_size)
}

/// `batch`: how many files and bytes load together, and how long the
/// first one waits for others.
fn validate_batch(path: &str, b: &RawBatch, p: &mut Problems) -> Option<Batch> {
    if b.max_files == 0 {
        p.push(format!("{path}.batch.max_files"), "must be at least 1");
    }
    let max_bytes = p.take(&format!("{path}.batch.max_bytes"), parse_size(&b.max_bytes));
    let max_wait = p.take(
        &format!("{path}.batch.max_wait"),
        parse_duration(&b.max_wait),
    );
    Some(Batch {
        max_files: b.max_files,
        max_bytes: max_bytes?,
        max_wait: max_wait?,
    })
}

/// `limits`: the largest record, gzip bombs, XML depth.
fn validate_limits(path: &str, l: &RawLimits, p: &mut Problems) -> Option<Limits> {
    let rec = p.take(
        &format!("{path}.limits.max_record_bytes"),
        parse_size(&l.max_record_bytes),
    );
    let dec = p.take(
        &format!("{path}.limits.max_decompressed_bytes"),
        parse_size(&l.max_decompressed_bytes),
    );
    if l.max_compression_ratio < 2 {
        p.push(
            format!("{path}.limits.max_compression_ratio"),
            "must be at least 2",
        );
    }
    match (rec, dec) {
        (Some(max_record_bytes), Some(max_decompressed_bytes)) => Some(Limits {
            max_record_bytes,
            max_decompressed_bytes,
            max_compression_ratio: l.max_compression_ratio,
            max_xml_depth: l.max_xml_depth.max(1),
        }),
        _ => None,
    }
}

/// `key` and `order_by`: columns of the job; `merge` needs a key.
fn validate_key(
    path: &str,
    j: &RawJob,
    column_names: &HashSet<&str>,
    mode: Option<LoadMode>,
    p: &mut Problems,
) -> (Vec<Ident>, Option<Ident>) {
    let mut key = Vec::new();
    for (i, k) in j.key.iter().enumerate() {
        if let Some(id) = p.take(&format!("{path}.key[{i}]"), Ident::parse(k)) {
            if !column_names.contains(id.as_str()) {
                p.push(
                    format!("{path}.key[{i}]"),
                    format!("{id} is not one of the job's columns"),
                );
            }
            key.push(id);
        }
    }
    if mode == Some(LoadMode::Merge) && j.key.is_empty() {
        p.push(
            format!("{path}.key"),
            "mode = \"merge\" needs key columns (or use mode = \"append\")",
        );
    }
    let order_by = j.order_by.as_ref().and_then(|o| {
        let id = p.take(&format!("{path}.order_by"), Ident::parse(o))?;
        if !column_names.contains(id.as_str()) {
            p.push(
                format!("{path}.order_by"),
                format!("{id} is not one of the job's columns"),
            );
        }
        Some(id)
    });
    (key, order_by)
}

/// `settle`: when a listed file is complete.
fn validate_settle(path: &str, settle: &RawSettle, p: &mut Problems) -> Option<Settle> {
    let min_age = p.take(
        &format!("{path}.settle.min_age"),
        parse_duration(&settle.min_age),
    );
    let temp_patterns = glob_set(
        &format!("{path}.settle.temp_patterns"),
        &settle.temp_patterns,
        p,
    );
    if let Some(m) = &settle.marker_suffix
        && (m.is_empty() || m.contains('/'))
    {
        p.push(
            format!("{path}.settle.marker_suffix"),
            format!("{m:?} must be a non-empty suffix like .done"),
        );
    }
    Some(Settle {
        min_age: min_age?,
        marker_suffix: settle.marker_suffix.clone(),
        folder_marker: settle.folder_marker.clone(),
        stable_polls: settle.stable_polls,
        temp_patterns: temp_patterns?,
        temp_pattern_text: settle.temp_patterns.clone(),
    })
}

/// `on_success` or `on_failure` at `path`: keep, move (with a folder in
/// `to`), or — only where `may_delete` — delete; a failed file is never
/// deleted.
fn validate_finalize(
    path: &str,
    raw: &RawFinalize,
    may_delete: bool,
    p: &mut Problems,
) -> Option<Finalize> {
    let action = if may_delete {
        p.choose(
            &format!("{path}.action"),
            &raw.action,
            &[("keep", "keep"), ("delete", "delete"), ("move", "move")],
        )
    } else if raw.action == "delete" {
        p.push(
            format!("{path}.action"),
            format!(
                "{:?}: expected keep or move (a failed file is never deleted)",
                raw.action
            ),
        );
        None
    } else {
        p.choose(
            &format!("{path}.action"),
            &raw.action,
            &[("keep", "keep"), ("move", "move")],
        )
    }?;
    match (action, &raw.to) {
        ("move", Some(to)) if !to.trim().is_empty() => Some(Finalize::Move(to.clone())),
        ("move", _) => {
            p.push(
                format!("{path}.to"),
                "action = \"move\" needs a folder in `to`",
            );
            None
        }
        (_, Some(_)) => {
            p.push(
                format!("{path}.to"),
                "`to` is only used with action = \"move\"",
            );
            None
        }
        ("delete", None) => Some(Finalize::Delete),
        _ => Some(Finalize::Keep),
    }
}

/// Validates a job's post-load `checks` (`path` is the job's key path).
fn validate_checks(path: &str, raw: &[RawCheck], p: &mut Problems) -> Vec<Check> {
    let mut checks = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let check = validate_check(&format!("{path}.checks[{i}]"), c, &checks, p);
        checks.push(check);
    }
    checks
}

/// One check at `cpath`: a name not used by `checks` before it, and one
/// read-only SELECT with only `{target}`/`{schema}` and `:name` parameters.
fn validate_check(cpath: &str, c: &RawCheck, checks: &[Check], p: &mut Problems) -> Check {
    let named = !c.name.is_empty()
        && c.name.len() <= 64
        && c.name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
    if !named {
        p.push(
            format!("{cpath}.name"),
            format!("{:?}: use 1-64 letters, digits or _", c.name),
        );
    } else if checks.iter().any(|k| k.name == c.name) {
        p.push(
            format!("{cpath}.name"),
            format!("{:?} is used twice", c.name),
        );
    }
    let sql = c.sql.trim().trim_end_matches(';').trim();
    if !sql.to_ascii_lowercase().starts_with("select")
        && !sql.to_ascii_lowercase().starts_with("with")
    {
        p.push(
            format!("{cpath}.sql"),
            "must be one SELECT (or WITH … SELECT) returning the rows that are wrong",
        );
    } else if sql.contains(';') {
        p.push(
            format!("{cpath}.sql"),
            "must be one statement (no `;` inside)",
        );
    }
    let unknown: Vec<&str> = sql
        .match_indices('{')
        .filter_map(|(at, _)| sql[at..].find('}').map(|end| &sql[at..at + end + 1]))
        .filter(|t| *t != "{target}" && *t != "{schema}")
        .collect();
    if let Some(t) = unknown.first() {
        p.push(
            format!("{cpath}.sql"),
            format!("{t} is not a placeholder; use {{target}} or {{schema}}"),
        );
    }
    const WRITES: &[&str] = &[
        "insert", "update", "delete", "merge", "truncate", "drop", "alter", "create", "grant",
        "revoke", "copy", "unload", "call", "vacuum", "analyze", "lock",
    ];
    if let Some(w) = crate::sql::bind::first_keyword(sql, WRITES) {
        p.push(
            format!("{cpath}.sql"),
            format!(
                "uses {}: a check only reads (it runs in a read-only transaction)",
                w.to_ascii_uppercase()
            ),
        );
    }
    if let Some(d) = crate::sql::bind::positional_used(sql).first() {
        p.push(
            format!("{cpath}.sql"),
            format!(
                "uses {d}; name the parameters :load_id, :job or :rows (a literal $ belongs in quotes)"
            ),
        );
    }
    Check {
        name: c.name.clone(),
        sql: sql.to_string(),
    }
}
/// Safety limits on one input file.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest record in bytes.
    pub max_record_bytes: u64,
    /// Largest decompressed size of gzip input.
    pub max_decompressed_bytes: u64,
    /// Largest decompression ratio.
    pub max_compression_ratio: u64,
    /// Deepest XML nesting.
    pub max_xml_depth: usize,
}

/// When a file fails as a whole for its rejected records.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxErrors {
    /// More than this many rejected records.
    Count(u64),
    /// More than this percentage of the file's records.
    Percent(f64),
}

impl MaxErrors {
    /// Whether `rejected` of `total` records is too many.
    pub fn exceeded(self, rejected: u64, total: u64) -> bool {
        match self {
            MaxErrors::Count(n) => rejected > n,
            MaxErrors::Percent(p) => total > 0 && (rejected as f64) * 100.0 > p * total as f64,
        }
    }
}

impl std::fmt::Display for MaxErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxErrors::Count(n) => write!(f, "{n}"),
            MaxErrors::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// When a file is ready.
#[derive(Debug, Clone)]
pub struct Settle {
    /// Minimum age by modification time.
    pub min_age: Duration,
    /// Marker suffix, if required.
    pub marker_suffix: Option<String>,
    /// Folder marker file name, if required.
    pub folder_marker: Option<String>,
    /// Unchanged polls required (0: off).
    pub stable_polls: u32,
    /// Temporary-name globs.
    pub temp_patterns: globset::GlobSet,
    /// The same globs as written, for messages.
    pub temp_pattern_text: Vec<String>,
}

/// What to do with a file that changed after a version of it was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    /// Load the new version.
    Reload,
    /// Record it as skipped and load nothing.
    Ignore,
}

/// What to do with a source file after its load committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finalize {
    /// Leave it.
    Keep,
    /// Delete it.
    Delete,
    /// Move it into this folder.
    Move(String),
}

impl Job {
    /// Whether `path` holds a date template.
    pub fn path_is_templated(&self) -> bool {
        ["{yyyy}", "{mm}", "{dd}"]
            .iter()
            .any(|t| self.path.contains(t))
    }

    /// The folders to list on `today` (UTC): the path itself, or one per
    /// day from `lookback_days` ago to today for a templated path.
    pub fn folders(&self, today: chrono::NaiveDate) -> Vec<String> {
        if !self.path_is_templated() {
            return vec![self.path.clone()];
        }
        let mut out: Vec<String> = (0..=self.lookback_days as i64)
            .rev()
            .map(|back| {
                let d = today - chrono::Duration::days(back);
                self.path
                    .replace("{yyyy}", &d.format("%Y").to_string())
                    .replace("{mm}", &d.format("%m").to_string())
                    .replace("{dd}", &d.format("%d").to_string())
            })
            .collect();
        out.dedup();
        out
    }
}

/// A job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Name.
    pub name: String,
    /// Its source.
    pub source: Arc<SourceSettings>,
    /// Folder to list, possibly with `{yyyy}`, `{mm}`, `{dd}`.
    pub path: String,
    /// Days before today listed too when `path` has a date template.
    pub lookback_days: u32,
    /// Include glob.
    pub pattern: globset::GlobMatcher,
    /// Include glob as written.
    pub pattern_text: String,
    /// Exclude globs.
    pub exclude: globset::GlobSet,
    /// Recursive listing.
    pub recursive: bool,
    /// Polled at all.
    pub enabled: bool,
    /// How often the daemon polls this job.
    pub poll_interval: Duration,
    /// Input format.
    pub format: Format,
    /// Target table.
    pub target: Ident,
    /// Merge or append.
    pub mode: LoadMode,
    /// Key columns.
    pub key: Vec<Ident>,
    /// Order column for "latest wins".
    pub order_by: Option<Ident>,
    /// Columns in staged order.
    pub columns: Vec<Column>,
    /// Dimensions.
    pub dimensions: Vec<Dimension>,
    /// Settle rules.
    pub settle: Settle,
    /// After success.
    pub on_success: Finalize,
    /// After a permanent failure (`Keep` or `Move`).
    pub on_failure: Finalize,
    /// A file changed after a version of it was loaded.
    pub on_change: OnChange,
    /// Rejected records allowed per file.
    pub max_errors: MaxErrors,
    /// Safety limits.
    pub limits: Limits,
    /// Gzip level of the staged CSV.
    pub gzip_level: u32,
    /// Bytes of CSV (before compression) after which a part is cut.
    pub part_size: u64,
    /// Copy each source file's bytes under `raw/`.
    pub archive_raw: bool,
    /// Files staged at the same time.
    pub concurrency: usize,
    /// When staged files load together.
    pub batch: Batch,
    /// Post-load checks.
    pub checks: Vec<Check>,
}

/// A post-load check: a query that returns the rows that are wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Name (letters, digits, `_`).
    pub name: String,
    /// The query, with `{target}`/`{schema}` and `:load_id`/`:job`/`:rows`
    /// still to fill in.
    pub sql: String,
}

/// Batching limits of a job: staged files load together once one is hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Files per batch.
    pub max_files: usize,
    /// Source bytes per batch.
    pub max_bytes: u64,
    /// How long the oldest staged file may wait past the end of a poll.
    pub max_wait: std::time::Duration,
}

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
    /// Which members of an archive (`.zip`, `.tar`, `.tar.gz`, `.tgz`) are
    /// loaded, each as a file version of its own.
    #[serde(default)]
    pub archive: RawArchive,
    /// Gzip level of the staged CSV, 1 (fast, the default) to 9 (small).
    #[serde(default = "default_gzip_level")]
    pub gzip_level: u32,
    /// Threads that compress the staged CSV side by side (1 to 64; the
    /// output is one gzip stream either way). Unset: half the host's
    /// cores (at most 8) when it has more than two, else one thread
    /// beside the decoder.
    pub gzip_threads: Option<u32>,
    /// Threads that map, check and write a large file's rows side by side
    /// (1 to 64; the staged rows keep the file's order either way). Unset:
    /// half the host's cores (2 to 8) on a host with more than two; on two
    /// cores 2 for JSON and Parquet, 1 for CSV and XML.
    pub row_threads: Option<u32>,
    /// How staged rows are written for COPY: `"csv"` (gzip CSV, the
    /// default) or `"parquet"` (typed Parquet, `COPY … FORMAT AS PARQUET`).
    #[serde(default)]
    pub stage_format: StageFormat,
    /// Keep a byte-for-byte copy of each source file under `raw/` in the
    /// staging bucket (written before the load, whatever its outcome).
    #[serde(default)]
    pub archive_raw: bool,
    /// The job's lag SLO, e.g. `"30m"`: a settled file waiting longer
    /// than this to load raises the `lag` alert and shows as behind on
    /// the status page. Unset: no SLO.
    pub max_lag: Option<String>,
    /// Pause the job (as `ferry jobs pause` would) after this many passes
    /// in a row that failed, alerting once; unset: never.
    pub pause_after_failures: Option<u32>,
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
    /// S3 sources only: read the bucket's `ObjectCreated` event
    /// notifications from an SQS queue instead of listing the prefix on
    /// every poll (a slow reconciling listing catches lost events).
    pub events: Option<RawEvents>,
    /// Create the target table and the dimension tables from the mapping
    /// (with the `ferry_*` load columns) when they do not exist, as the
    /// daemon or `ferry once` starts.
    #[serde(default)]
    pub auto_create: bool,
    /// Redshift `DISTKEY` of a created target: one of the job's columns.
    pub distkey: Option<String>,
    /// Redshift `SORTKEY` of a created target: columns of the job.
    #[serde(default)]
    pub sortkey: Vec<String>,
    /// What happens when a file's fields or values drift from the mapping
    /// (new fields, missing fields, values that do not fit).
    pub contract: Option<RawContract>,
    /// Small mapping files `lookup('name', key)` reads in column
    /// expressions: name = a local CSV path or `s3://bucket/key` (a header
    /// line, then key,value rows), loaded once as the job starts.
    #[serde(default)]
    pub lookups: BTreeMap<String, String>,
}

/// `[jobs.events]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    /// The SQS queue the bucket's events arrive on (S3 → SQS directly, or
    /// through an EventBridge rule); one queue per job.
    pub queue_url: String,
    /// How often the job's prefix is still listed, to find objects whose
    /// event was lost (`0s`: never).
    #[serde(default = "default_reconcile_every")]
    pub reconcile_every: String,
}

/// 1 h: a lost event costs at most an hour of lag, and a listing of a
/// large prefix 24 times a day instead of every poll.
pub(super) fn default_reconcile_every() -> String {
    "1h".into()
}

/// A job's S3 event feed.
#[derive(Debug, Clone)]
pub struct EventFeed {
    /// The SQS queue the events arrive on.
    pub queue_url: String,
    /// How often the prefix is listed anyway; `None`: never.
    pub reconcile_every: Option<Duration>,
}

fn validate_events(
    path: &str,
    e: &RawEvents,
    source: Option<&SourceSettings>,
    p: &mut Problems,
) -> Option<EventFeed> {
    queue_url(&format!("{path}.events.queue_url"), &e.queue_url, p);
    if let Some(s) = source
        && !matches!(s.kind, SourceKind::S3 { .. })
    {
        p.push(
            format!("{path}.events"),
            format!(
                "event notifications come from S3 only; source {:?} is {}",
                s.name,
                s.describe()
            ),
        );
    }
    let every = p.take(
        &format!("{path}.events.reconcile_every"),
        parse_duration(&e.reconcile_every),
    )?;
    Some(EventFeed {
        queue_url: e.queue_url.clone(),
        reconcile_every: (!every.is_zero()).then_some(every),
    })
}

pub(super) fn default_job_concurrency() -> usize {
    4
}

/// How a job's staged rows are written for COPY.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageFormat {
    /// Gzip CSV parts, `COPY … GZIP CSV` (the default: as fast to write,
    /// readable by anything).
    #[default]
    Csv,
    /// Parquet parts with typed columns, `COPY … FORMAT AS PARQUET`.
    Parquet,
}

impl StageFormat {
    /// The staged part's file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            StageFormat::Csv => "csv.gz",
            StageFormat::Parquet => "parquet",
        }
    }
}

pub(super) fn default_gzip_level() -> u32 {
    1
}

pub(super) fn default_part_size() -> String {
    "256MiB".into()
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
    let archive = validate_archive(path, &j.archive, p);
    let lookups = validate_lookups(path, &j.lookups, p);
    let columns = validate_columns(path, &j.name, &j.columns, &lookups, p);
    let column_names: HashSet<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let (key, order_by) = validate_key(path, j, &column_names, mode, p);
    let dimensions = validate_dimensions(path, &j.dimensions, &column_names, p);
    // A document column stays in the fact table: a dimension's key and
    // attributes are compared and copied as values.
    for (i, d) in dimensions.iter().enumerate() {
        for f in std::iter::once(&d.key).chain(d.columns.iter().map(|(_, f)| f)) {
            if columns
                .iter()
                .any(|c| c.name == *f && c.column_type == crate::schema::ColumnType::Super)
            {
                p.push(
                    format!("{path}.dimensions[{i}]"),
                    format!("column {f} is a super (JSON document) column; a dimension takes text, number and time columns"),
                );
            }
        }
    }
    let settle = validate_settle(path, &j.settle, p);
    let on_success = validate_finalize(&format!("{path}.on_success"), &j.on_success, true, p);
    let on_failure = validate_finalize(&format!("{path}.on_failure"), &j.on_failure, false, p);
    let on_change = p.choose(
        &format!("{path}.on_change"),
        &j.on_change,
        &[("reload", OnChange::Reload), ("ignore", OnChange::Ignore)],
    );
    let checks = validate_checks(path, &j.checks, p);
    let (contract, create_table) =
        validate_contract(path, j.contract.as_ref(), &column_names, j.auto_create, p);
    let auto_create = validate_layout(path, j, create_table, &column_names, p);
    let mut columns = columns;
    if let Some(capture) = &contract.capture_column {
        columns.push(crate::schema::Column::captured(capture.clone()));
    }
    let max_lag = match &j.max_lag {
        Some(m) => Some(p.take(&format!("{path}.max_lag"), parse_duration(m))?),
        None => None,
    };
    if j.pause_after_failures == Some(0) {
        p.push(
            format!("{path}.pause_after_failures"),
            "must be at least 1 (leave it out to never pause)",
        );
    }
    let events = match &j.events {
        Some(e) => Some(validate_events(path, e, source.as_deref(), p)?),
        None => None,
    };
    let format = format?;
    let row_threads = j
        .row_threads
        .map_or_else(|| auto_row_threads(&format), |n| n as usize);
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
        format,
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
        archive: archive?,
        gzip_level,
        gzip_threads: j
            .gzip_threads
            .map_or_else(auto_gzip_threads, |n| n as usize),
        row_threads,
        stage_format: j.stage_format,
        part_size: part_size?,
        archive_raw: j.archive_raw,
        max_lag,
        pause_after_failures: j.pause_after_failures,
        concurrency: j.concurrency,
        batch: batch?,
        checks,
        events,
        auto_create,
        contract,
        lookups,
    })
}

/// `lookups`: each name an identifier, each location a path or an
/// `s3://bucket/key` URL.
fn validate_lookups(
    path: &str,
    raw: &BTreeMap<String, String>,
    p: &mut Problems,
) -> Vec<Arc<crate::schema::expr::Lookup>> {
    raw.iter()
        .filter_map(|(name, at)| {
            let key = format!("{path}.lookups.{name}");
            p.take(&key, Ident::parse(name))?;
            if at.trim().is_empty() || (at.starts_with("s3://") && !at[5..].contains('/')) {
                p.push(
                    key,
                    format!("{at:?}: expected a file path or s3://bucket/key"),
                );
                return None;
            }
            Some(Arc::new(crate::schema::expr::Lookup::new(name, at)))
        })
        .collect()
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

/// The staged output: `gzip_level` (1-9), `gzip_threads` and
/// `row_threads` (1-64),
/// `part_size` (more than 0) and the job's `concurrency` (1-64).
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
    if j.gzip_threads.is_some_and(|n| !(1..=64).contains(&n)) {
        p.push(format!("{path}.gzip_threads"), "must be 1 to 64");
    }
    if j.row_threads.is_some_and(|n| !(1..=64).contains(&n)) {
        p.push(format!("{path}.row_threads"), "must be 1 to 64");
    }
    (j.gzip_level, part_size)
}

/// `row_threads` when unset: half the host's cores, at least 2 and at
/// most 8, on a host with more than two; on two cores, 2 for JSON and
/// Parquet (whose row writer, parsing JSON or rendering column values, is
/// the busiest thread) and 1 for CSV and XML, whose busiest thread is the
/// compressor or the decoder, which a second writer only takes turns with
/// (measured in docs/design.md, "Normalize: threads and hand-offs").
fn auto_row_threads(format: &super::Format) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let writer_bound = matches!(
        format,
        super::Format::Ndjson | super::Format::Json { .. } | super::Format::Parquet
    );
    match cores {
        0 | 1 => 1,
        2 if writer_bound => 2,
        2 => 1,
        n => (n / 2).clamp(2, 8),
    }
}

/// `gzip_threads` when unset: half the host's cores, at most 8, on a host
/// with more than two; else 1 (the compressor shares the two cores with
/// the decoder and the writer, and more threads would only take turns).
fn auto_gzip_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores > 2 { (cores / 2).min(8) } else { 1 }
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
    /// The job's name: in logs, metrics, staging keys and the ledger.
    pub name: String,
    /// The server the job reads (shared with other jobs on it).
    pub source: Arc<SourceSettings>,
    /// Folder to list, possibly with `{yyyy}`, `{mm}`, `{dd}`.
    pub path: String,
    /// Days before today listed too when `path` has a date template.
    pub lookback_days: u32,
    /// Include glob.
    pub pattern: globset::GlobMatcher,
    /// Include glob as written.
    pub pattern_text: String,
    /// Relative paths that match are never loaded (even if `pattern` does).
    pub exclude: globset::GlobSet,
    /// Whether folders below `path` are listed too.
    pub recursive: bool,
    /// Polled at all.
    pub enabled: bool,
    /// How often the daemon polls this job.
    pub poll_interval: Duration,
    /// How the files are decoded.
    pub format: Format,
    /// The fact table the rows go to, in the warehouse schema.
    pub target: Ident,
    /// Merge or append.
    pub mode: LoadMode,
    /// Columns that identify a row for `merge` (latest by `order_by` wins).
    pub key: Vec<Ident>,
    /// Order column for "latest wins".
    pub order_by: Option<Ident>,
    /// Columns in staged order.
    pub columns: Vec<Column>,
    /// Dimension tables kept from the same rows, in the same transaction.
    pub dimensions: Vec<Dimension>,
    /// When a listed file counts as complete.
    pub settle: Settle,
    /// After success.
    pub on_success: Finalize,
    /// After a permanent failure (`Keep` or `Move`).
    pub on_failure: Finalize,
    /// A file changed after a version of it was loaded.
    pub on_change: OnChange,
    /// Rejected records allowed per file.
    pub max_errors: MaxErrors,
    /// Per-file limits: record size, gzip bombs, XML depth.
    pub limits: Limits,
    /// Which members of an archive load.
    pub archive: ArchiveSettings,
    /// Gzip level of the staged CSV.
    pub gzip_level: u32,
    /// Threads that compress the staged CSV.
    pub gzip_threads: usize,
    /// Threads that map and write the rows of a large file.
    pub row_threads: usize,
    /// How staged rows are written for COPY.
    pub stage_format: StageFormat,
    /// Bytes of CSV (before compression) after which a part is cut.
    pub part_size: u64,
    /// Copy each source file's bytes under `raw/`.
    pub archive_raw: bool,
    /// The lag SLO: settled files waiting longer than this to load.
    pub max_lag: Option<Duration>,
    /// Passes in a row that may fail before the daemon pauses the job.
    pub pause_after_failures: Option<u32>,
    /// Files staged at the same time.
    pub concurrency: usize,
    /// When staged files load together.
    pub batch: Batch,
    /// Read-only queries run after each load; a row returned is a failure.
    pub checks: Vec<Check>,
    /// S3 event notifications read instead of a listing every poll.
    pub events: Option<EventFeed>,
    /// With `auto_create`: how a created target is laid out.
    pub auto_create: Option<TableLayout>,
    /// What a file's drift from the mapping does.
    pub contract: Contract,
    /// Lookup files of the job's expressions (loaded before its first
    /// file).
    pub lookups: Vec<Arc<crate::schema::expr::Lookup>>,
}

/// The Redshift layout of a target ferry creates (PostgreSQL ignores it).
#[derive(Debug, Clone, Default)]
pub struct TableLayout {
    /// `DISTKEY` column.
    pub distkey: Option<Ident>,
    /// `SORTKEY` columns.
    pub sortkey: Vec<Ident>,
}

/// `auto_create`, `distkey` and `sortkey`: columns of the job, and only
/// with `auto_create` (ferry lays out only the tables it creates).
fn validate_layout(
    path: &str,
    j: &RawJob,
    create_table: bool,
    columns: &HashSet<&str>,
    p: &mut Problems,
) -> Option<TableLayout> {
    let column = |key: String, name: &str, p: &mut Problems| -> Option<Ident> {
        let id = p.take(&key, Ident::parse(name))?;
        if !columns.contains(id.as_str()) {
            p.push(key, format!("{id} is not one of the job's columns"));
            return None;
        }
        Some(id)
    };
    let distkey = j
        .distkey
        .as_ref()
        .and_then(|d| column(format!("{path}.distkey"), d, p));
    let sortkey: Vec<Ident> = j
        .sortkey
        .iter()
        .enumerate()
        .filter_map(|(i, c)| column(format!("{path}.sortkey[{i}]"), c, p))
        .collect();
    if !j.auto_create && !create_table {
        if j.distkey.is_some() || !j.sortkey.is_empty() {
            p.push(
                format!("{path}.distkey"),
                "distkey and sortkey lay out tables ferry creates: set auto_create = true or contract.table = \"evolve\" (or lay out your own table)",
            );
        }
        return None;
    }
    Some(TableLayout { distkey, sortkey })
}

//! How much a job takes at once and how much it tolerates: `batch`,
//! `limits` (records, gzip bombs, XML depth) and `max_errors`.

use super::*;

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

/// `max_errors`: a count, or a percentage of the file's records.
pub(super) fn validate_max_errors(
    path: &str,
    raw: &RawMaxErrors,
    p: &mut Problems,
) -> Option<MaxErrors> {
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

/// `batch`: how many files and bytes load together, and how long the
/// first one waits for others.
pub(super) fn validate_batch(path: &str, b: &RawBatch, p: &mut Problems) -> Option<Batch> {
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
pub(super) fn validate_limits(path: &str, l: &RawLimits, p: &mut Problems) -> Option<Limits> {
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

/// `archive = { … }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArchive {
    /// Glob of the member names to load. A glob without `/` matches the
    /// member's file name in any folder of the archive (`*.csv`); one with
    /// `/` matches its whole name (`daily/*.csv`).
    #[serde(default = "default_members")]
    pub members: String,
    /// Most members one archive may have to load; an archive with more
    /// fails (an archive bomb, or a glob too wide).
    #[serde(default = "default_max_members")]
    pub max_members: usize,
}

impl Default for RawArchive {
    fn default() -> Self {
        RawArchive {
            members: default_members(),
            max_members: default_max_members(),
        }
    }
}

fn default_members() -> String {
    "*".into()
}

fn default_max_members() -> usize {
    10_000
}

/// Which members of an archive load.
#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    /// Member names to load.
    pub members: MemberGlob,
    /// Most members to load from one archive.
    pub max_members: usize,
}

/// A member glob: on the file name when it has no `/`, else on the whole
/// name.
#[derive(Debug, Clone)]
pub struct MemberGlob {
    glob: globset::GlobMatcher,
    whole_name: bool,
}

impl MemberGlob {
    /// Compiles `pattern` (as `archive.members` reads it).
    pub fn new(pattern: &str) -> std::result::Result<MemberGlob, String> {
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("{pattern:?} is not a valid glob: {e}"))?;
        Ok(MemberGlob {
            glob: glob.compile_matcher(),
            whole_name: pattern.contains('/'),
        })
    }

    /// Whether member `name` (`folder/file.csv`) matches.
    pub fn is_match(&self, name: &str) -> bool {
        if self.whole_name {
            self.glob.is_match(name)
        } else {
            // The last part of the member's path (config reads no source).
            self.glob.is_match(name.rsplit('/').next().unwrap_or(name))
        }
    }
}

/// `archive`: the member glob and the member limit.
pub(super) fn validate_archive(
    path: &str,
    a: &RawArchive,
    p: &mut Problems,
) -> Option<ArchiveSettings> {
    let members = p.take(
        &format!("{path}.archive.members"),
        MemberGlob::new(&a.members),
    );
    if a.max_members == 0 {
        p.push(format!("{path}.archive.max_members"), "must be at least 1");
    }
    Some(ArchiveSettings {
        members: members?,
        max_members: a.max_members.max(1),
    })
}

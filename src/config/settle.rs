//! Around one file: when it is complete (`settle`), what happens to it
//! after its load or its failure (`on_success`, `on_failure`), and what a
//! changed loaded file means (`on_change`).

use super::*;

pub(super) fn default_on_change() -> String {
    "reload".into()
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

/// `settle`: when a listed file is complete.
pub(super) fn validate_settle(path: &str, settle: &RawSettle, p: &mut Problems) -> Option<Settle> {
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
pub(super) fn validate_finalize(
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

/// When a file is ready.
#[derive(Debug, Clone)]
pub struct Settle {
    /// Minimum age by modification time.
    pub min_age: Duration,
    /// A file waits until `name + marker_suffix` exists beside it (the marker
    /// is never loaded).
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

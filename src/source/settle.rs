//! Settle rules: when a listed file counts as completely uploaded.
//!
//! A file is ready when its name is not a temporary name, it is at least
//! `min_age` old and, if the job wants one, its marker file exists. Marker
//! files themselves are never loaded.

use super::RemoteEntry;
use crate::config::Settle;
use std::collections::HashSet;

/// Why a file is not ready yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// A temporary name such as `*.part`.
    TempName,
    /// The marker file itself.
    IsMarker,
    /// Younger than `min_age`.
    TooYoung {
        /// Seconds until it is old enough.
        wait_secs: i64,
    },
    /// Its marker has not arrived.
    NoMarker,
}

/// Splits `entries` into ready files and the others with their reason.
pub fn split(
    entries: Vec<RemoteEntry>,
    settle: &Settle,
    now_unix: i64,
) -> (Vec<RemoteEntry>, Vec<(RemoteEntry, NotReady)>) {
    let paths: HashSet<String> = entries.iter().map(|e| e.path.clone()).collect();
    let mut ready = Vec::new();
    let mut waiting = Vec::new();
    for e in entries {
        match check(&e, &paths, settle, now_unix) {
            None => ready.push(e),
            Some(why) => waiting.push((e, why)),
        }
    }
    (ready, waiting)
}

fn check(
    e: &RemoteEntry,
    paths: &HashSet<String>,
    settle: &Settle,
    now_unix: i64,
) -> Option<NotReady> {
    let name = super::file_name(&e.path);
    if settle.temp_patterns.is_match(name) {
        return Some(NotReady::TempName);
    }
    if let Some(suffix) = &settle.marker_suffix {
        if name.ends_with(suffix.as_str()) {
            return Some(NotReady::IsMarker);
        }
        if !paths.contains(&format!("{}{suffix}", e.path)) {
            return Some(NotReady::NoMarker);
        }
    }
    let age = now_unix - e.mtime;
    let min = settle.min_age.as_secs() as i64;
    if age < min {
        return Some(NotReady::TooYoung {
            wait_secs: min - age,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settle(min_age: u64, marker: Option<&str>) -> Settle {
        let pats = ["*.part", "*.tmp", ".*"];
        let mut b = globset::GlobSetBuilder::new();
        for p in pats {
            b.add(globset::Glob::new(p).unwrap());
        }
        Settle {
            min_age: Duration::from_secs(min_age),
            marker_suffix: marker.map(String::from),
            temp_patterns: b.build().unwrap(),
            temp_pattern_text: pats.map(String::from).to_vec(),
        }
    }

    fn entry(path: &str, mtime: i64) -> RemoteEntry {
        RemoteEntry {
            path: path.into(),
            relative: super::super::file_name(path).into(),
            size: 10,
            mtime,
        }
    }

    #[test]
    fn temp_names_and_young_files_wait() {
        let (ready, waiting) = split(
            vec![
                entry("/in/a.csv", 0),
                entry("/in/b.csv.part", 0),
                entry("/in/.c.csv", 0),
                entry("/in/d.csv", 95),
            ],
            &settle(10, None),
            100,
        );
        assert_eq!(ready, vec![entry("/in/a.csv", 0)]);
        assert_eq!(waiting[0].1, NotReady::TempName);
        assert_eq!(waiting[1].1, NotReady::TempName);
        assert_eq!(waiting[2].1, NotReady::TooYoung { wait_secs: 5 });
    }

    #[test]
    fn marker_gates_its_file_and_is_never_loaded() {
        let (ready, waiting) = split(
            vec![
                entry("/in/a.csv", 0),
                entry("/in/a.csv.done", 0),
                entry("/in/b.csv", 0),
            ],
            &settle(0, Some(".done")),
            100,
        );
        assert_eq!(ready, vec![entry("/in/a.csv", 0)]);
        assert_eq!(waiting[0].1, NotReady::IsMarker);
        assert_eq!(waiting[1].1, NotReady::NoMarker);
    }
}

//! Settle rules: when a listed file counts as completely uploaded.
//!
//! A file is ready when its name is not a temporary name, it is at least
//! `min_age` old, its size and mtime stayed the same for `stable_polls`
//! polls and, if the job wants them, its marker file (`name.done`) or its
//! folder's marker (`_SUCCESS`) exists. Marker files are never loaded.

use super::RemoteEntry;
use crate::config::Settle;
use std::collections::{HashMap, HashSet};

/// Remembers each file's size and mtime across polls of one job.
#[derive(Debug, Default)]
pub struct Stability {
    seen: HashMap<String, (u64, i64, u32)>,
}

impl Stability {
    /// Records a listing: a file whose size and mtime match the previous
    /// poll gains one unchanged poll; any change starts over. Files no
    /// longer listed are forgotten.
    pub fn observe(&mut self, entries: &[RemoteEntry]) {
        let mut next = HashMap::with_capacity(entries.len());
        for e in entries {
            let polls = match self.seen.get(&e.path) {
                Some(&(size, mtime, n)) if size == e.size && mtime == e.mtime => n + 1,
                _ => 0,
            };
            next.insert(e.path.clone(), (e.size, e.mtime, polls));
        }
        self.seen = next;
    }

    /// Polls the file has stayed unchanged for.
    pub fn unchanged_polls(&self, path: &str) -> u32 {
        self.seen.get(path).map_or(0, |s| s.2)
    }
}

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
    /// Its folder's marker has not arrived.
    NoFolderMarker,
    /// Still changing, or not yet seen unchanged often enough.
    Unstable {
        /// Unchanged polls so far.
        seen: u32,
        /// Unchanged polls required.
        need: u32,
    },
}

/// Splits `entries` into ready files and the others with their reason.
pub fn split(
    entries: Vec<RemoteEntry>,
    settle: &Settle,
    now_unix: i64,
    stability: &Stability,
) -> (Vec<RemoteEntry>, Vec<(RemoteEntry, NotReady)>) {
    let paths: HashSet<String> = entries.iter().map(|e| e.path.clone()).collect();
    let mut ready = Vec::new();
    let mut waiting = Vec::new();
    for e in entries {
        let verdict = check(&e, &paths, settle, now_unix).or_else(|| {
            let seen = stability.unchanged_polls(&e.path);
            (seen < settle.stable_polls).then_some(NotReady::Unstable {
                seen,
                need: settle.stable_polls,
            })
        });
        match verdict {
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
    if let Some(marker) = &settle.folder_marker {
        if name == marker {
            return Some(NotReady::IsMarker);
        }
        let folder = e.path.rsplit_once('/').map_or("", |(d, _)| d);
        if !paths.contains(&format!("{folder}/{marker}")) && !paths.contains(marker.as_str()) {
            return Some(NotReady::NoFolderMarker);
        }
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
        settle_with(min_age, marker, None, 0)
    }

    fn settle_with(
        min_age: u64,
        marker: Option<&str>,
        folder_marker: Option<&str>,
        stable_polls: u32,
    ) -> Settle {
        let pats = ["*.part", "*.tmp", ".*"];
        let mut b = globset::GlobSetBuilder::new();
        for p in pats {
            b.add(globset::Glob::new(p).unwrap());
        }
        Settle {
            min_age: Duration::from_secs(min_age),
            marker_suffix: marker.map(String::from),
            folder_marker: folder_marker.map(String::from),
            stable_polls,
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
            etag: None,
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
            &Stability::default(),
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
            &Stability::default(),
        );
        assert_eq!(ready, vec![entry("/in/a.csv", 0)]);
        assert_eq!(waiting[0].1, NotReady::IsMarker);
        assert_eq!(waiting[1].1, NotReady::NoMarker);
    }

    #[test]
    fn a_growing_file_waits_until_it_stops_changing() {
        let rules = settle_with(0, None, None, 2);
        let mut st = Stability::default();
        let mut poll = |size: u64| {
            let e = RemoteEntry {
                size,
                ..entry("/in/a.csv", 0)
            };
            st.observe(std::slice::from_ref(&e));
            split(vec![e], &rules, 100, &st).0.len()
        };
        assert_eq!(poll(10), 0, "first sight");
        assert_eq!(poll(20), 0, "grew");
        assert_eq!(poll(20), 0, "unchanged once");
        assert_eq!(poll(20), 1, "unchanged twice: ready");
        assert_eq!(poll(30), 0, "changed again: waits again");
    }

    #[test]
    fn a_folder_marker_gates_every_file_in_its_folder() {
        let rules = settle_with(0, None, Some("_SUCCESS"), 0);
        let listing = vec![
            entry("/in/d1/a.csv", 0),
            entry("/in/d1/_SUCCESS", 0),
            entry("/in/d2/b.csv", 0),
        ];
        let (ready, waiting) = split(listing, &rules, 100, &Stability::default());
        assert_eq!(ready, vec![entry("/in/d1/a.csv", 0)]);
        assert_eq!(waiting[0].1, NotReady::IsMarker);
        assert_eq!(waiting[1].1, NotReady::NoFolderMarker);
    }
}

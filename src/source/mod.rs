//! Sources: where files come from.
//!
//! A [`Source`] lists a folder, opens a file as a byte stream and finalizes
//! it (keep, delete, move) after its load has committed. [`settle`] decides
//! which listed files are complete; [`resume`] keeps a download going
//! across dropped connections; [`archive`] opens zip and tar archives as
//! folders of member files. One implementation per kind: [`sftp`],
//! [`ftp`] (FTP and FTPS), [`s3`], [`local`].
//!
//! A listing that fails is an error, never an empty result: no file may look
//! new or gone because of a network error.

pub mod archive;
pub mod ftp;
pub mod local;
pub mod resume;
pub mod s3;
pub mod settle;
pub mod sftp;

use crate::config::{Finalize, SourceKind, SourceSettings};
use crate::error::Result;
use async_trait::async_trait;
use std::sync::Arc;
use tokio::io::AsyncRead;

/// One listed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    /// Full path on the source.
    pub path: String,
    /// Path relative to the listed folder (what globs match against).
    pub relative: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, Unix seconds (UTC).
    pub mtime: i64,
    /// The server's entity tag where it has one (S3): reads of this
    /// version are made conditional on it, so bytes of a replaced object
    /// are never mixed into it.
    pub etag: Option<String>,
}

/// A byte stream of one remote file.
pub type ByteStream = Box<dyn AsyncRead + Send + Unpin>;

/// A connected source.
///
/// Contract: `list` returns every regular file below `dir` (recursively if
/// asked) or an error; it never hides a failure as an empty listing.
/// `open` streams the file from `offset` (0: the first byte); memory use
/// does not depend on its size. Sources reconnect by themselves when a
/// connection was lost between calls. `finalize` is only called after the file's load committed,
/// and must never overwrite an existing file.
#[async_trait]
pub trait Source: Send + Sync {
    /// Lists regular files below `dir`.
    async fn list(&self, dir: &str, recursive: bool) -> Result<Vec<RemoteEntry>>;
    /// Opens `path` for reading from byte `offset`.
    async fn open(&self, path: &str, offset: u64) -> Result<ByteStream>;
    /// Opens the listed version `entry` from byte `offset`, with the
    /// entity tag of what it opened where the server tells one. A source
    /// that can make the read conditional on the version (S3 `If-Match` on
    /// `entry.etag`) fails with [`changed_error`] when the file was
    /// replaced.
    async fn open_entry(
        &self,
        entry: &RemoteEntry,
        offset: u64,
    ) -> Result<(ByteStream, Option<String>)> {
        Ok((self.open(&entry.path, offset).await?, None))
    }
    /// Whether a file or folder exists at `path`.
    async fn exists(&self, path: &str) -> Result<bool>;
    /// Applies the job's on-success action to `path`; returns where the
    /// file is now (`None` once deleted).
    async fn finalize(&self, path: &str, action: &Finalize) -> Result<Option<String>>;
    /// The size and modification time of the file at `path` now (`None`
    /// if it is gone; a time the server cannot tell is `None`): ferry
    /// checks that the version it read is still the one listed, before a
    /// resumed read and before the load.
    async fn stat(&self, path: &str) -> Result<Option<(u64, Option<i64>)>>;
    /// The longest a reply or a pause in a download may take
    /// (`io_timeout`); `None` for local folders.
    fn io_timeout(&self) -> Option<std::time::Duration> {
        None
    }
    /// `kind host:port` for messages.
    fn describe(&self) -> String;
}

/// Connects to `settings`.
pub async fn connect(settings: &Arc<SourceSettings>) -> Result<Arc<dyn Source>> {
    match &settings.kind {
        SourceKind::Sftp(s) => Ok(Arc::new(
            sftp::SftpSource::connect(&settings.name, s).await?,
        )),
        SourceKind::Ftp(f) => Ok(Arc::new(
            ftp::FtpSource::connect(&settings.name, f, settings.max_transfers).await?,
        )),
        SourceKind::Local { root } => Ok(Arc::new(local::LocalSource::new(root)?)),
        SourceKind::S3 { bucket, s3 } => Ok(Arc::new(
            s3::S3Source::connect(&settings.name, bucket, s3).await?,
        )),
    }
}

/// What changed in the file since `entry` was listed, if anything: its
/// size, or its modification time where the server tells it, or it is
/// gone.
pub async fn change(src: &dyn Source, entry: &RemoteEntry) -> Result<Option<String>> {
    Ok(match src.stat(&entry.path).await? {
        None => Some("gone".into()),
        Some((size, _)) if size != entry.size => Some(format!("{size} bytes")),
        Some((_, Some(mtime))) if mtime != entry.mtime => Some(format!("mtime {mtime}")),
        Some(_) => None,
    })
}

/// The error for a file that changed while it was read: transient, so the
/// file goes back to settling and is read whole again.
pub fn changed_error(entry: &RemoteEntry, now: &str) -> crate::Error {
    crate::Error::transient(format!(
        "{} changed while it was read (listed: {} bytes, mtime {}; now: {now}); nothing of it is loaded, it is read again once it has settled",
        entry.path, entry.size, entry.mtime
    ))
    .later()
}

/// `Ok` if `entry` is still the version listed ([`change`]).
pub async fn unchanged(src: &dyn Source, entry: &RemoteEntry) -> Result<()> {
    match change(src, entry).await? {
        Some(now) => Err(changed_error(entry, &now)),
        None => Ok(()),
    }
}

/// Joins a folder and a name with exactly one `/`.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The file name part of a path.
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Picks a name in `existing` that is free: `name`, then `name.1`, `name.2`,
/// … (before the extension: `a.csv` → `a.1.csv`).
pub fn free_name(name: &str, exists: impl Fn(&str) -> bool) -> String {
    if !exists(name) {
        return name.to_string();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    (1..)
        .map(|n| format!("{stem}.{n}{ext}"))
        .find(|candidate| !exists(candidate))
        .expect("an unbounded range always finds a free name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_name_adds_a_counter_before_the_extension() {
        let taken = ["a.csv", "a.1.csv"];
        assert_eq!(free_name("a.csv", |n| taken.contains(&n)), "a.2.csv");
        assert_eq!(free_name("b.csv", |n| taken.contains(&n)), "b.csv");
        assert_eq!(free_name("noext", |n| n == "noext"), "noext.1");
    }

    #[test]
    fn join_and_file_name() {
        assert_eq!(join("/in/", "a.csv"), "/in/a.csv");
        assert_eq!(join("/in", "a.csv"), "/in/a.csv");
        assert_eq!(file_name("/in/sub/a.csv"), "a.csv");
    }
}

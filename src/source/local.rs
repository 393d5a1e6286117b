//! A folder on this host: NFS drops, and tests.

use super::{ByteStream, RemoteEntry, Source, free_name, join};
use crate::config::Finalize;
use crate::error::{Classified, Context, ErrorKind, Result};
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Reads files under a root folder; job paths are relative to it.
pub struct LocalSource {
    root: PathBuf,
}

impl LocalSource {
    /// A source rooted at `root` (which must exist).
    pub fn new(root: &str) -> Result<Self> {
        let root = PathBuf::from(root);
        std::fs::metadata(&root).context(ErrorKind::Config, || {
            format!("local source root {} is not readable", root.display())
        })?;
        Ok(LocalSource { root })
    }

    fn full(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

#[async_trait]
impl Source for LocalSource {
    async fn stat(&self, path: &str) -> Result<Option<(u64, Option<i64>)>> {
        match tokio::fs::metadata(self.full(path)).await {
            Ok(meta) => {
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs() as i64);
                Ok(Some((meta.len(), mtime)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(crate::error::classified(format!("cannot stat {path}"))(e)),
        }
    }

    fn describe(&self) -> String {
        format!("local folder {}", self.root.display())
    }

    async fn list(&self, dir: &str, recursive: bool) -> Result<Vec<RemoteEntry>> {
        let mut out = Vec::new();
        let mut pending = vec![(dir.to_string(), String::new())];
        while let Some((remote_dir, rel_prefix)) = pending.pop() {
            let full = self.full(&remote_dir);
            let mut rd = tokio::fs::read_dir(&full)
                .await
                .classify(|| format!("cannot list {}", full.display()))?;
            while let Some(entry) = rd
                .next_entry()
                .await
                .classify(|| format!("cannot list {}", full.display()))?
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                let meta = entry
                    .metadata()
                    .await
                    .classify(|| format!("cannot stat {}", entry.path().display()))?;
                let relative = format!("{rel_prefix}{name}");
                if meta.is_dir() {
                    if recursive && !name.starts_with('.') {
                        pending.push((join(&remote_dir, &name), format!("{relative}/")));
                    }
                } else if meta.is_file() {
                    let mtime = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs() as i64);
                    out.push(RemoteEntry {
                        path: join(&remote_dir, &name),
                        relative,
                        size: meta.len(),
                        mtime,
                        etag: None,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn open(&self, path: &str, offset: u64) -> Result<ByteStream> {
        use tokio::io::AsyncSeekExt;
        let full = self.full(path);
        let mut f = tokio::fs::File::open(&full)
            .await
            .classify(|| format!("cannot open {}", full.display()))?;
        if offset > 0 {
            f.seek(std::io::SeekFrom::Start(offset))
                .await
                .classify(|| format!("cannot seek in {}", full.display()))?;
        }
        Ok(Box::new(f))
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        Ok(tokio::fs::try_exists(self.full(path))
            .await
            .unwrap_or(false))
    }

    async fn finalize(&self, path: &str, action: &Finalize) -> Result<Option<String>> {
        let full = self.full(path);
        match action {
            Finalize::Keep => Ok(Some(path.to_string())),
            Finalize::Delete => {
                tokio::fs::remove_file(&full)
                    .await
                    .classify(|| format!("cannot delete {}", full.display()))?;
                Ok(None)
            }
            Finalize::Move(to) => {
                let dir = self.full(to);
                tokio::fs::create_dir_all(&dir)
                    .await
                    .classify(|| format!("cannot create {}", dir.display()))?;
                let name = free_name(super::file_name(path), |n| Path::new(&dir.join(n)).exists());
                let dest = dir.join(&name);
                tokio::fs::rename(&full, &dest)
                    .await
                    .classify(|| format!("cannot move {} to {}", full.display(), dest.display()))?;
                Ok(Some(join(to, &name)))
            }
        }
    }
}

//! Archives on a source (zip, tar, tar.gz) read as folders of files.
//!
//! A listed file whose name ends in `.zip`, `.tar`, `.tar.gz` or `.tgz` is
//! an archive: it is fetched once into a local spool folder (disk, never
//! memory), its members are extracted there one at a time, and each member
//! that matches the job's `archive.members` glob becomes a file version of
//! its own, named `archive.zip!/member.csv` (size: the member's; mtime: the
//! archive's, so a new archive version makes new member versions).
//! [`ArchiveSource`] serves those member paths from the spool and leaves
//! every other path to the real source; members are never finalized on
//! the source themselves: the archive is, once all of them have loaded
//! (see `pipeline::archives`).
//!
//! Extraction never trusts the archive: names are only labels (members are
//! written as numbered files, so `../x` cannot escape), only regular files
//! are taken (no links, devices or folders), two members of one name fail
//! the archive, and the job's `limits.max_decompressed_bytes`,
//! `limits.max_compression_ratio` and `archive.max_members` stop bombs.

use super::resume::Resuming;
use super::{ByteStream, RemoteEntry, Source};
use crate::config::{ArchiveSettings, Finalize, Limits};
use crate::error::{Error, Result};
use async_trait::async_trait;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Between an archive's path and a member's name in a member's path.
pub const SEPARATOR: &str = "!/";

/// The kinds of archive ferry opens, told by the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `.zip`
    Zip,
    /// `.tar`
    Tar,
    /// `.tar.gz`, `.tgz`
    TarGz,
}

/// The kind of archive `path` names, if it is one (case-insensitive).
pub fn kind_of(path: &str) -> Option<Kind> {
    if path.contains(SEPARATOR) {
        return None;
    }
    let name = super::file_name(path).to_ascii_lowercase();
    if name.ends_with(".zip") {
        Some(Kind::Zip)
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Some(Kind::TarGz)
    } else if name.ends_with(".tar") {
        Some(Kind::Tar)
    } else {
        None
    }
}

/// The path of member `name` of the archive at `archive`.
pub fn member_path(archive: &str, name: &str) -> String {
    format!("{archive}{SEPARATOR}{name}")
}

/// The archive path and member name of a member path.
pub fn split(path: &str) -> Option<(&str, &str)> {
    path.split_once(SEPARATOR)
}

/// Whether `path` names a member of an archive.
pub fn is_member(path: &str) -> bool {
    path.contains(SEPARATOR)
}

/// One member taken out of an archive.
#[derive(Debug)]
pub struct Member {
    /// Its name in the archive (`folder/events.csv`).
    pub name: String,
    /// Its size, uncompressed.
    pub size: u64,
    /// Where it was extracted.
    local: PathBuf,
}

/// An archive fetched and extracted into its spool folder (removed when
/// the last reference goes).
#[derive(Debug)]
pub struct Expanded {
    /// The archive as listed.
    pub archive: RemoteEntry,
    /// SHA-256 of the archive's bytes (hex).
    pub sha256: String,
    /// Members that match the job's glob, in archive order.
    pub members: Vec<Member>,
    /// Members left out (not matching, hidden, not regular files).
    pub left_out: usize,
    _spool: tempfile::TempDir,
}

impl Expanded {
    /// The members as listed entries (path `archive!/name`, the member's
    /// size, the archive's mtime).
    pub fn entries(&self) -> Vec<RemoteEntry> {
        self.members
            .iter()
            .map(|m| RemoteEntry {
                path: member_path(&self.archive.path, &m.name),
                relative: member_path(&self.archive.relative, &m.name),
                size: m.size,
                mtime: self.archive.mtime,
                etag: None,
            })
            .collect()
    }

    /// Whether `entry` is the version this was expanded from.
    pub fn is_version(&self, entry: &RemoteEntry) -> bool {
        self.archive.path == entry.path
            && self.archive.size == entry.size
            && self.archive.mtime == entry.mtime
    }
}

/// Fetches `entry` into a new spool folder and extracts the members
/// `settings` selects. Errors: transient for a read that failed or a file
/// that changed while read, permanent for an archive that cannot be read
/// or breaks a limit (the message names the archive, and the member where
/// there is one).
pub async fn expand(
    src: &Arc<dyn Source>,
    entry: &RemoteEntry,
    kind: Kind,
    settings: &ArchiveSettings,
    limits: &Limits,
) -> Result<Expanded> {
    let spool = tempfile::Builder::new()
        .prefix("ferry-archive-")
        .tempdir()
        .map_err(|e| Error::transient("cannot create the archive spool folder").with_source(e))?;
    let file = spool.path().join("archive");
    let sha256 = fetch_to(src, entry, &file).await?;
    let (dir, archive, settings, limits) = (
        spool.path().to_path_buf(),
        entry.clone(),
        settings.clone(),
        limits.clone(),
    );
    let extracted = tokio::task::spawn_blocking(move || {
        let r = extract(&file, &dir, kind, &archive, &settings, &limits);
        let _ = std::fs::remove_file(&file);
        r
    })
    .await
    .map_err(|e| Error::permanent("archive extraction stopped unexpectedly").with_source(e))??;
    Ok(Expanded {
        archive: entry.clone(),
        sha256,
        members: extracted.0,
        left_out: extracted.1,
        _spool: spool,
    })
}

/// Copies the listed version into `to`; returns its SHA-256.
async fn fetch_to(src: &Arc<dyn Source>, entry: &RemoteEntry, to: &Path) -> Result<String> {
    use sha2::Digest;
    let local_err =
        |e: io::Error| Error::transient("cannot write the archive spool file").with_source(e);
    let mut stream = Resuming::open_version(src.clone(), entry).await?;
    let mut out = tokio::fs::File::create(to).await.map_err(local_err)?;
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut read = 0u64;
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| {
            Error::transient(format!("{}: reading the archive failed", entry.path)).with_source(e)
        })?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        out.write_all(&buf[..n]).await.map_err(local_err)?;
        read += n as u64;
    }
    out.flush().await.map_err(local_err)?;
    if read != entry.size {
        return Err(super::changed_error(entry, &format!("{read} bytes read")));
    }
    super::unchanged(&**src, entry).await?;
    Ok(hex::encode(hash.finalize()))
}

/// Members taken so far, within the limits.
struct Extraction<'a> {
    dir: &'a Path,
    archive: &'a RemoteEntry,
    settings: &'a ArchiveSettings,
    limits: &'a Limits,
    bytes: u64,
    members: Vec<Member>,
    names: std::collections::HashSet<String>,
    left_out: usize,
}

impl Extraction<'_> {
    fn bad(&self, what: String) -> Error {
        Error::permanent(format!("{}: {what}", self.archive.path))
    }

    /// Takes member `name` (extracted to the spool) if the job wants it.
    fn take(&mut self, name: String, from: &mut dyn Read) -> Result<()> {
        if !visible(&name) || !self.settings.members.is_match(&name) {
            self.left_out += 1;
            return Ok(());
        }
        if !self.names.insert(name.clone()) {
            return Err(self.bad(format!(
                "holds two members named {name}; each member must have its own name"
            )));
        }
        if self.members.len() >= self.settings.max_members {
            return Err(self.bad(format!(
                "more than archive.max_members = {} members to load; raise it, or narrow archive.members",
                self.settings.max_members
            )));
        }
        let local = self.dir.join(format!("m{}", self.members.len()));
        let size = self.copy(&name, from, &local)?;
        self.members.push(Member { name, size, local });
        Ok(())
    }

    /// Copies one member to `to`, within what is left of the limits.
    fn copy(&mut self, name: &str, from: &mut dyn Read, to: &Path) -> Result<u64> {
        let by_size = self
            .limits
            .max_decompressed_bytes
            .saturating_sub(self.bytes);
        let by_ratio = self
            .archive
            .size
            .max(1)
            .saturating_mul(self.limits.max_compression_ratio)
            .saturating_sub(self.bytes);
        let allowed = by_size.min(by_ratio);
        let mut out = io::BufWriter::new(std::fs::File::create(to).map_err(spool_err)?);
        let copied = io::copy(&mut from.take(allowed.saturating_add(1)), &mut out)
            .map_err(|e| self.bad(format!("member {name} cannot be read: {e}")))?;
        out.flush().map_err(spool_err)?;
        if copied > allowed {
            let limit = if by_size <= by_ratio {
                format!(
                    "its members hold more than limits.max_decompressed_bytes = {} bytes",
                    self.limits.max_decompressed_bytes
                )
            } else {
                format!(
                    "its members hold more than limits.max_compression_ratio = {} times its {} bytes (an archive bomb?)",
                    self.limits.max_compression_ratio, self.archive.size
                )
            };
            return Err(self.bad(format!("at member {name}: {limit}")));
        }
        self.bytes += copied;
        Ok(copied)
    }
}

fn spool_err(e: io::Error) -> Error {
    Error::transient("cannot write the archive spool folder").with_source(e)
}

/// Whether a member name is one to consider at all: not a folder, no
/// hidden segment (`.DS_Store`, `._x`, and so `..`), no macOS resource
/// fork folder.
fn visible(name: &str) -> bool {
    !name.is_empty()
        && !name.ends_with('/')
        && !name
            .split('/')
            .any(|seg| seg.starts_with('.') || seg == "__MACOSX")
}

/// A member name as ferry keeps it: `/`-separated, without a leading `./`
/// or `/`.
fn clean_name(name: &str) -> String {
    let name = name.replace('\\', "/");
    let mut s = name.as_str();
    loop {
        if let Some(rest) = s.strip_prefix("./") {
            s = rest;
        } else if let Some(rest) = s.strip_prefix('/') {
            s = rest;
        } else {
            break;
        }
    }
    s.to_string()
}

/// Extracts the wanted members of the archive `file` into `dir`; returns
/// them and how many were left out.
fn extract(
    file: &Path,
    dir: &Path,
    kind: Kind,
    archive: &RemoteEntry,
    settings: &ArchiveSettings,
    limits: &Limits,
) -> Result<(Vec<Member>, usize)> {
    let mut x = Extraction {
        dir,
        archive,
        settings,
        limits,
        bytes: 0,
        members: Vec::new(),
        names: std::collections::HashSet::new(),
        left_out: 0,
    };
    let open = || std::fs::File::open(file).map_err(spool_err);
    match kind {
        Kind::Zip => {
            let mut zip = zip::ZipArchive::new(io::BufReader::new(open()?))
                .map_err(|e| x.bad(format!("is not a readable zip archive: {e}")))?;
            for i in 0..zip.len() {
                let mut m = zip
                    .by_index(i)
                    .map_err(|e| x.bad(format!("zip entry {i} cannot be read: {e}")))?;
                if m.is_dir() {
                    continue;
                }
                let name =
                    clean_name(&m.name().map_err(|e| {
                        x.bad(format!("zip entry {i} has an unreadable name: {e}"))
                    })?);
                if !m.is_file() {
                    x.left_out += 1;
                    continue;
                }
                x.take(name, &mut m)?;
            }
        }
        Kind::Tar | Kind::TarGz => {
            let reader: Box<dyn Read> = match kind {
                Kind::TarGz => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(
                    open()?,
                ))),
                _ => Box::new(io::BufReader::new(open()?)),
            };
            let mut tar = tar::Archive::new(reader);
            let entries = tar
                .entries()
                .map_err(|e| x.bad(format!("is not a readable tar archive: {e}")))?;
            for (i, m) in entries.enumerate() {
                let mut m = m.map_err(|e| x.bad(format!("tar entry {i} cannot be read: {e}")))?;
                let kind = m.header().entry_type();
                if kind.is_dir() {
                    continue;
                }
                let name = clean_name(&String::from_utf8_lossy(&m.path_bytes()));
                if !(kind.is_file() || kind == tar::EntryType::Continuous) {
                    // Links, devices, fifos: nothing to load.
                    x.left_out += 1;
                    continue;
                }
                x.take(name, &mut m)?;
            }
        }
    }
    Ok((x.members, x.left_out))
}

/// A source that serves the members of the archives it holds from their
/// spool folders, and everything else from the real source.
pub struct ArchiveSource {
    inner: Arc<dyn Source>,
    /// Member path → its archive and its index there.
    members: HashMap<String, (Arc<Expanded>, usize)>,
}

impl ArchiveSource {
    /// `inner`, with the members of `expanded`.
    pub fn new(inner: Arc<dyn Source>, expanded: &[Arc<Expanded>]) -> Self {
        let mut members = HashMap::new();
        for x in expanded {
            for (i, m) in x.members.iter().enumerate() {
                members.insert(member_path(&x.archive.path, &m.name), (x.clone(), i));
            }
        }
        ArchiveSource { inner, members }
    }

    fn member(&self, path: &str) -> Result<&Member> {
        let (x, i) = self.members.get(path).ok_or_else(|| {
            Error::transient(format!(
                "{path}: its archive is not open here; it is read again with its archive"
            ))
        })?;
        Ok(&x.members[*i])
    }
}

#[async_trait]
impl Source for ArchiveSource {
    async fn list(&self, dir: &str, recursive: bool) -> Result<Vec<RemoteEntry>> {
        self.inner.list(dir, recursive).await
    }

    async fn open(&self, path: &str, offset: u64) -> Result<ByteStream> {
        if !is_member(path) {
            return self.inner.open(path, offset).await;
        }
        let m = self.member(path)?;
        let err = |e: io::Error| {
            Error::transient(format!("{path}: cannot read the extracted member")).with_source(e)
        };
        let mut f = tokio::fs::File::open(&m.local).await.map_err(err)?;
        f.seek(io::SeekFrom::Start(offset)).await.map_err(err)?;
        Ok(Box::new(f))
    }

    async fn open_entry(
        &self,
        entry: &RemoteEntry,
        offset: u64,
    ) -> Result<(ByteStream, Option<String>)> {
        if !is_member(&entry.path) {
            return self.inner.open_entry(entry, offset).await;
        }
        Ok((self.open(&entry.path, offset).await?, None))
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        if is_member(path) {
            return Ok(self.members.contains_key(path));
        }
        self.inner.exists(path).await
    }

    async fn finalize(&self, path: &str, action: &Finalize) -> Result<Option<String>> {
        if is_member(path) {
            // A member stays in its archive; the archive is finalized once
            // all its members have loaded.
            return Ok(Some(path.to_string()));
        }
        self.inner.finalize(path, action).await
    }

    async fn stat(&self, path: &str) -> Result<Option<(u64, Option<i64>)>> {
        if is_member(path) {
            return Ok(self
                .members
                .get(path)
                .map(|(x, i)| (x.members[*i].size, Some(x.archive.mtime))));
        }
        self.inner.stat(path).await
    }

    fn io_timeout(&self) -> Option<std::time::Duration> {
        self.inner.io_timeout()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_told_by_name() {
        assert_eq!(kind_of("/in/a.zip"), Some(Kind::Zip));
        assert_eq!(kind_of("/in/A.ZIP"), Some(Kind::Zip));
        assert_eq!(kind_of("/in/a.tar"), Some(Kind::Tar));
        assert_eq!(kind_of("/in/a.tar.gz"), Some(Kind::TarGz));
        assert_eq!(kind_of("/in/a.tgz"), Some(Kind::TarGz));
        assert_eq!(kind_of("/in/a.csv.gz"), None);
        assert_eq!(kind_of("/in/a.zip!/b.zip"), None);
    }

    #[test]
    fn member_paths_split_at_the_first_separator() {
        let p = member_path("/in/a.zip", "x/b.csv");
        assert_eq!(p, "/in/a.zip!/x/b.csv");
        assert_eq!(split(&p), Some(("/in/a.zip", "x/b.csv")));
        assert!(is_member(&p));
        assert!(!is_member("/in/a.zip"));
    }

    #[test]
    fn names_are_cleaned_and_hidden_ones_left_out() {
        assert_eq!(clean_name("./x/a.csv"), "x/a.csv");
        assert_eq!(clean_name("/x/a.csv"), "x/a.csv");
        assert_eq!(clean_name("x\\a.csv"), "x/a.csv");
        assert!(visible("x/a.csv"));
        assert!(!visible("x/"));
        assert!(!visible("__MACOSX/._a.csv"));
        assert!(!visible("x/.DS_Store"));
    }

    fn settings(members: &str, max_members: usize) -> ArchiveSettings {
        ArchiveSettings {
            members: crate::config::MemberGlob::new(members).unwrap(),
            max_members,
        }
    }

    fn limits(max_bytes: u64, ratio: u64) -> Limits {
        Limits {
            max_record_bytes: 1 << 20,
            max_decompressed_bytes: max_bytes,
            max_compression_ratio: ratio,
            max_xml_depth: 64,
        }
    }

    fn zip_bytes(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, body) in members {
            w.start_file(*name, opts).unwrap();
            w.write_all(body).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// Extracts `bytes` as `kind`; the error's text on failure.
    fn run(
        bytes: &[u8],
        kind: Kind,
        s: &ArchiveSettings,
        l: &Limits,
    ) -> std::result::Result<Vec<(String, u64, Vec<u8>)>, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("archive");
        std::fs::write(&file, bytes).unwrap();
        let entry = RemoteEntry {
            path: "/in/a.zip".into(),
            relative: "a.zip".into(),
            size: bytes.len() as u64,
            mtime: 1,
            etag: None,
        };
        let (members, _) = extract(&file, dir.path(), kind, &entry, s, l).map_err(|e| e.chain())?;
        Ok(members
            .into_iter()
            .map(|m| {
                let body = std::fs::read(&m.local).unwrap();
                (m.name, m.size, body)
            })
            .collect())
    }

    #[test]
    fn members_are_extracted_whole_and_chosen_by_file_name() {
        let bytes = zip_bytes(&[
            ("a.csv", b"id\n1\n".to_vec()),
            ("deep/er/b.csv", b"id\n2\n".to_vec()),
            ("c.txt", b"x".to_vec()),
            ("../../escape.csv", b"id\n3\n".to_vec()),
        ]);
        let got = run(
            &bytes,
            Kind::Zip,
            &settings("*.csv", 10),
            &limits(1 << 20, 100),
        )
        .unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _, _)| n.as_str()).collect();
        // `..` segments count as hidden: left out (names are only labels
        // anyway; nothing is written under them).
        assert_eq!(names, ["a.csv", "deep/er/b.csv"]);
        assert_eq!(got[1].2, b"id\n2\n");
        assert_eq!(got[1].1, 5);
        let whole = run(
            &bytes,
            Kind::Zip,
            &settings("deep/*.csv", 10),
            &limits(1 << 20, 100),
        )
        .unwrap();
        assert!(
            whole.is_empty(),
            "a glob with / matches the whole name, one level"
        );
    }

    #[test]
    fn a_zip_bomb_stops_at_the_ratio_or_the_size_limit() {
        let bomb = zip_bytes(&[("z.csv", vec![b'0'; 4 << 20])]);
        let e = run(&bomb, Kind::Zip, &settings("*", 10), &limits(1 << 40, 50)).unwrap_err();
        assert!(
            e.contains("at member z.csv") && e.contains("max_compression_ratio = 50"),
            "{e}"
        );
        let e = run(
            &bomb,
            Kind::Zip,
            &settings("*", 10),
            &limits(1 << 20, 100_000),
        )
        .unwrap_err();
        assert!(e.contains("max_decompressed_bytes = 1048576"), "{e}");
    }

    #[test]
    fn too_many_members_or_two_of_one_name_fail_the_archive() {
        let many: Vec<(String, Vec<u8>)> =
            (0..5).map(|i| (format!("m{i}.csv"), vec![b'1'])).collect();
        let many: Vec<(&str, Vec<u8>)> =
            many.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
        let e = run(
            &zip_bytes(&many),
            Kind::Zip,
            &settings("*", 4),
            &limits(1 << 20, 100),
        )
        .unwrap_err();
        assert!(e.contains("more than archive.max_members = 4"), "{e}");

        let mut b = tar::Builder::new(Vec::new());
        for body in [&b"id\n1\n"[..], &b"id\n2\n"[..]] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_cksum();
            b.append_data(&mut h, "same.csv", body).unwrap();
        }
        let e = run(
            &b.into_inner().unwrap(),
            Kind::Tar,
            &settings("*", 10),
            &limits(1 << 20, 100),
        )
        .unwrap_err();
        assert!(e.contains("two members named same.csv"), "{e}");
    }

    #[test]
    fn tar_links_are_left_out_and_a_broken_archive_is_named() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(6);
        h.set_cksum();
        b.append_data(&mut h, "a.csv", &b"id\n1\n"[..]).unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        b.append_link(&mut link, "b.csv", "/etc/passwd").unwrap();
        let got = run(
            &b.into_inner().unwrap(),
            Kind::Tar,
            &settings("*", 10),
            &limits(1 << 20, 100),
        )
        .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "a.csv");

        let e = run(
            b"PK\x03\x04 not really",
            Kind::Zip,
            &settings("*", 10),
            &limits(1 << 20, 100),
        )
        .unwrap_err();
        assert!(
            e.starts_with("/in/a.zip: is not a readable zip archive"),
            "{e}"
        );
    }
}

//! Staging in S3: the client, deterministic keys and uploads.
//!
//! Keys are date-partitioned and unique per file version *and* attempt, so
//! two attempts or two replicas never write the same object:
//!
//! - `{prefix}/staged/{job}/{yyyy}/{mm}/{dd}/{name}-{version}-{attempt}/part-00000.csv.gz`
//!   (one or more parts of the staged CSV),
//! - `{prefix}/rejects/{job}/{yyyy}/{mm}/{dd}/{name}-{version}-{attempt}.csv.gz`
//!   (every rejected record: line, column, code, reason, raw value, raw line),
//! - `{prefix}/raw/{job}/{yyyy}/{mm}/{dd}/{name}-{version}-{attempt}/{name}`
//!   (with `archive_raw`: the source file's bytes as they were read),
//! - `{prefix}/manifests/{job}/{yyyy}/{mm}/{dd}/{load_id}/` (Redshift: the
//!   COPY manifest of a batch's parts and the batch's file list).

use crate::aws::s3_client;
use crate::config::{Sse, StagingSettings};
use crate::error::classified;
use crate::error::{Error, Result};
use crate::normalize::Blob;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use chrono::{DateTime, Utc};
use std::path::Path;

/// The error for a local staged file that cannot be read.
fn unreadable<E: std::error::Error + Send + Sync + 'static>(
    path: &Path,
) -> impl FnOnce(E) -> Error {
    let what = format!("cannot read staged file {}", path.display());
    move |e| Error::transient(what).with_source(e)
}

/// Where one attempt at one file version goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageKeys {
    /// Folder of the parts, ending in `/`.
    pub staged: String,
    /// The rejects object.
    pub rejects: String,
    /// The raw archive object.
    pub raw: String,
    /// The parts' extension: `csv.gz`, or `parquet` for Parquet staging.
    pub part_ext: &'static str,
}

/// Whether the staged part at `key` is Parquet (`stage_format = "parquet"`)
/// rather than gzip CSV.
pub fn is_parquet_part(key: &str) -> bool {
    key.strip_suffix(crate::config::StageFormat::Parquet.extension())
        .is_some_and(|k| k.ends_with('.'))
}

impl StageKeys {
    /// The key of part `i`.
    pub fn part(&self, i: usize) -> String {
        format!("{}part-{i:05}.{}", self.staged, self.part_ext)
    }
}

/// The file name of `source_path` as it appears in keys: ASCII letters,
/// digits, `.`, `-` and `_`; anything else becomes `_`.
fn key_name(source_path: &str) -> String {
    crate::source::file_name(source_path)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Uploads staged objects.
#[derive(Clone)]
pub struct Stager {
    client: Client,
    bucket: String,
    prefix: String,
    sse: Sse,
    part_size: u64,
}

/// Parts of one multipart upload sent at once.
const PARTS_IN_FLIGHT: usize = 4;

impl Stager {
    /// A stager for `settings`.
    pub async fn new(settings: &StagingSettings) -> Self {
        Stager {
            client: s3_client(&settings.s3).await,
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            sse: settings.sse.clone(),
            part_size: settings.multipart_part_size,
        }
    }

    /// The S3 client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The keys for one attempt at one file version.
    pub fn keys(
        &self,
        job: &str,
        source_path: &str,
        version: &str,
        attempt: &str,
        at: DateTime<Utc>,
    ) -> StageKeys {
        let name = key_name(source_path);
        let rel = |kind: &str| {
            let rel = format!(
                "{kind}/{job}/{}/{name}-{version}-{attempt}",
                at.format("%Y/%m/%d")
            );
            self.under_prefix(rel)
        };
        StageKeys {
            staged: format!("{}/", rel("staged")),
            rejects: format!("{}.csv.gz", rel("rejects")),
            raw: format!("{}/{name}", rel("raw")),
            part_ext: crate::config::StageFormat::Csv.extension(),
        }
    }

    /// The raw archive object of the attempt whose parts are in the folder
    /// `staged` (a ledger row's `staged_key`) of the file at
    /// `source_path`: the same attempt's key under `raw/`. `None` for a
    /// folder that is not under this stager's `staged/`.
    pub fn raw_key_of(&self, staged: &str, source_path: &str) -> Option<String> {
        let rel = if self.prefix.is_empty() {
            staged
        } else {
            staged.strip_prefix(&self.prefix)?.strip_prefix('/')?
        };
        let attempt = rel.strip_prefix("staged/")?.strip_suffix('/')?;
        Some(self.under_prefix(format!("raw/{attempt}/{}", key_name(source_path))))
    }

    /// `{prefix}/{kind}/{job}/`: where a job's objects of one kind are.
    pub fn kind_prefix(&self, kind: &str, job: &str) -> String {
        self.under_prefix(format!("{kind}/{job}/"))
    }

    /// Every object under `{prefix}/{kind}/{job}/` (`kind`: `staged`,
    /// `raw`, `rejects`, `manifests`): key and last-modified (Unix
    /// seconds), in key order.
    pub async fn list_kind(&self, kind: &str, job: &str) -> Result<Vec<(String, i64)>> {
        let prefix = self.kind_prefix(kind, job);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(classified(format!(
                "cannot list s3://{}/{prefix}",
                self.bucket
            )))?;
            for obj in page.contents() {
                if let Some(k) = obj.key() {
                    out.push((k.to_string(), obj.last_modified().map_or(0, |t| t.secs())));
                }
            }
        }
        Ok(out)
    }

    /// The folder for one load's manifests:
    /// `{prefix}/manifests/{job}/{yyyy}/{mm}/{dd}/{load_id}/` (the COPY
    /// manifest of the staged parts and the batch's file list).
    pub fn manifest_folder(&self, job: &str, load_id: &str, at: DateTime<Utc>) -> String {
        self.under_prefix(format!(
            "manifests/{job}/{}/{load_id}/",
            at.format("%Y/%m/%d")
        ))
    }

    /// `rel` under the staging prefix (as it is when the prefix is empty).
    fn under_prefix(&self, rel: String) -> String {
        if self.prefix.is_empty() {
            rel
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// The key prefix every staged part of `job` starts with.
    pub fn staged_root(&self, job: &str) -> String {
        self.kind_prefix("staged", job)
    }

    /// Loads every lookup file of `jobs` not loaded yet: a local path, or
    /// `s3://bucket/key` read with the staging client (at most
    /// [`MAX_LOOKUP_BYTES`](crate::schema::expr::MAX_LOOKUP_BYTES)).
    pub async fn load_lookups(&self, jobs: &[std::sync::Arc<crate::config::Job>]) -> Result<()> {
        for job in jobs {
            for l in job.lookups.iter().filter(|l| !l.is_loaded()) {
                let fail = |e: String| {
                    Error::permanent(format!(
                        "job {}: cannot load lookup {} from {}: {e}",
                        job.name, l.name, l.location
                    ))
                };
                let rows = match l.location.strip_prefix("s3://") {
                    Some(rest) => {
                        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                        let got = self
                            .client
                            .get_object()
                            .bucket(bucket)
                            .key(key)
                            .send()
                            .await
                            .map_err(classified(format!("cannot read {}", l.location)))?;
                        if got.content_length().unwrap_or(0) as u64
                            > crate::schema::expr::MAX_LOOKUP_BYTES
                        {
                            return Err(fail("larger than 64 MiB".into()));
                        }
                        let bytes = got
                            .body
                            .collect()
                            .await
                            .map_err(|e| fail(e.to_string()))?
                            .into_bytes();
                        l.load_csv(&bytes).map_err(fail)?
                    }
                    None => l.load_file().map_err(fail)?,
                };
                tracing::info!(job = %job.name, lookup = %l.name, location = %l.location, rows, "lookup loaded");
            }
        }
        Ok(())
    }

    /// Writes a small object (a manifest, a batch list) from memory.
    pub async fn put_small(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<()> {
        self.put(key, ByteStream::from(body), content_type, None)
            .await
    }

    /// One `PutObject` with the configured encryption.
    async fn put(
        &self,
        key: &str,
        body: ByteStream,
        content_type: &str,
        encoding: Option<&str>,
    ) -> Result<()> {
        let (sse, kms_key) = self.sse_fields();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .set_content_encoding(encoding.map(str::to_string))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .body(body)
            .send()
            .await
            .map_err(classified(format!("cannot upload {}", self.url(key))))?;
        Ok(())
    }

    /// The `s3://bucket/key` URL of `key`.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// The server-side encryption headers to send.
    fn sse_fields(&self) -> (Option<ServerSideEncryption>, Option<String>) {
        match &self.sse {
            Sse::None => (None, None),
            Sse::Aes256 => (Some(ServerSideEncryption::Aes256), None),
            Sse::Kms(key_id) => (Some(ServerSideEncryption::AwsKms), key_id.clone()),
        }
    }

    /// Uploads a staged gzip CSV (a part or the rejects) from memory or
    /// disk to `key`.
    pub async fn upload_staged(&self, blob: &Blob, key: &str) -> Result<()> {
        // A Parquet part is compressed inside: no content encoding.
        let (kind, encoding) = if is_parquet_part(key) {
            ("application/vnd.apache.parquet", None)
        } else {
            ("text/csv", Some("gzip"))
        };
        match blob {
            Blob::Memory(b) => {
                self.put(key, ByteStream::from(b.clone()), kind, encoding)
                    .await
            }
            Blob::File(path) => self.upload(path, key, kind, encoding).await,
        }
    }

    /// The size in bytes of the staged object at `key` (for a manifest
    /// entry's `meta.content_length`).
    pub async fn object_size(&self, key: &str) -> Result<i64> {
        Ok(self.object_meta(key).await?.0)
    }

    /// The size and last-modified time (Unix seconds) of the object at
    /// `key`.
    pub async fn object_meta(&self, key: &str) -> Result<(i64, i64)> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(classified(format!(
                "cannot read the size of {}",
                self.url(key)
            )))?;
        Ok((
            head.content_length().unwrap_or(0),
            head.last_modified().map_or(0, |t| t.secs()),
        ))
    }

    /// Uploads the byte-for-byte copy of a source file to `key`.
    pub async fn upload_raw_copy(&self, blob: &Blob, key: &str) -> Result<()> {
        match blob {
            Blob::Memory(b) => {
                self.put(
                    key,
                    ByteStream::from(b.clone()),
                    "application/octet-stream",
                    None,
                )
                .await
            }
            Blob::File(path) => self.upload_raw(path, key).await,
        }
    }

    /// Uploads the local file at `path` to `key`.
    pub async fn upload_file(&self, path: &Path, key: &str) -> Result<()> {
        self.upload(path, key, "text/csv", Some("gzip")).await
    }

    /// Uploads a byte-for-byte copy of a source file to `key`.
    pub async fn upload_raw(&self, path: &Path, key: &str) -> Result<()> {
        self.upload(path, key, "application/octet-stream", None)
            .await
    }

    async fn upload(
        &self,
        path: &Path,
        key: &str,
        content_type: &str,
        encoding: Option<&str>,
    ) -> Result<()> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(unreadable(path))?
            .len();
        if size > self.part_size {
            return self
                .upload_multipart(path, key, content_type, encoding, size)
                .await;
        }
        let body = ByteStream::from_path(path)
            .await
            .map_err(unreadable(path))?;
        self.put(key, body, content_type, encoding).await
    }

    /// Uploads `path` in parts of `part_size`, a few at once, reading each
    /// part from disk as it goes (memory stays at a few buffers). Any
    /// failure aborts the upload, so S3 keeps no orphaned parts.
    async fn upload_multipart(
        &self,
        path: &Path,
        key: &str,
        content_type: &str,
        encoding: Option<&str>,
        size: u64,
    ) -> Result<()> {
        let url = self.url(key);
        let (sse, kms_key) = self.sse_fields();
        let upload_id = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .set_content_encoding(encoding.map(str::to_string))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .send()
            .await
            .map_err(classified(format!(
                "cannot start a multipart upload of {url}"
            )))?
            .upload_id
            .ok_or_else(|| Error::transient(format!("no upload id for {url}")))?;
        let started = std::time::Instant::now();
        match self.upload_parts(path, key, &upload_id, size).await {
            Ok(parts) => {
                let count = parts.len();
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(classified(format!("cannot complete the upload of {url}")))?;
                tracing::debug!(
                    key,
                    bytes = size,
                    parts = count,
                    secs = started.elapsed().as_secs_f64(),
                    "multipart upload done"
                );
                Ok(())
            }
            Err(e) => {
                if let Err(abort) = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await
                {
                    tracing::warn!(
                        key,
                        upload_id,
                        error = %aws_sdk_s3::error::DisplayErrorContext(&abort),
                        "cannot abort a failed multipart upload; a lifecycle rule (AbortIncompleteMultipartUpload) will clean it up"
                    );
                }
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        path: &Path,
        key: &str,
        upload_id: &str,
        size: u64,
    ) -> Result<Vec<CompletedPart>> {
        use futures::{StreamExt, TryStreamExt};
        let count = size.div_ceil(self.part_size);
        let mut parts: Vec<CompletedPart> = futures::stream::iter(0..count)
            .map(|i| async move {
                let offset = i * self.part_size;
                let length = self.part_size.min(size - offset);
                let number = i as i32 + 1;
                let body = ByteStream::read_from()
                    .path(path)
                    .offset(offset)
                    .length(Length::Exact(length))
                    .build()
                    .await
                    .map_err(unreadable(path))?;
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(body)
                    .send()
                    .await
                    .map_err(classified(format!(
                        "cannot upload part {number} of {}",
                        self.url(key)
                    )))?;
                Ok::<_, Error>(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag)
                        .build(),
                )
            })
            .buffer_unordered(PARTS_IN_FLIGHT)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    /// Checks that the bucket exists and is reachable.
    pub async fn check(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(classified(format!(
                "staging bucket {} is not reachable",
                self.bucket
            )))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_toml;

    #[tokio::test]
    async fn a_raw_copy_is_found_from_its_staged_folder() {
        for prefix in ["", "ferry/x"] {
            let toml =
                test_toml("key = [\"id\"]\ncolumns = [ { name = \"id\", type = \"bigint\" } ]\n")
                    .replace(
                        "bucket = \"b\"",
                        &format!("bucket = \"b\"\nprefix = \"{prefix}\""),
                    );
            let cfg = crate::config::from_toml_str(&toml).unwrap();
            let stager = super::Stager::new(&cfg.staging).await;
            let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
            let keys = stager.keys("j", "/in/staged/a b.csv", "v1", "a1", at);
            assert_eq!(
                stager
                    .raw_key_of(&keys.staged, "/in/staged/a b.csv")
                    .as_deref(),
                Some(keys.raw.as_str()),
                "prefix {prefix:?}"
            );
            assert_eq!(stager.raw_key_of("elsewhere/staged/x/", "/in/a.csv"), None);
        }
    }
}

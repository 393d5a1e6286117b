//! An S3 bucket prefix as a source (what Redshift auto-copy watches).
//!
//! A job's `path` is a key prefix; listing pages through ListObjectsV2
//! (with `/` as delimiter unless recursive). Objects are streamed with a
//! ranged GET, so a resumed download starts at its offset. `move` is a copy
//! to the new key followed by a delete (S3 has no rename), never over an
//! existing key.

use super::{ByteStream, RemoteEntry, Source, free_name};
use crate::aws::s3_client;
use crate::config::{Finalize, S3Endpoint};
use crate::error::Result;
use crate::error::classified;
use async_trait::async_trait;
use aws_sdk_s3::Client;

/// A bucket.
pub struct S3Source {
    name: String,
    bucket: String,
    client: Client,
    io_timeout: std::time::Duration,
}

/// The key prefix for a job path: no leading `/`, a trailing `/` unless
/// empty.
pub(crate) fn prefix(dir: &str) -> String {
    let p = dir.trim_start_matches('/');
    if p.is_empty() || p.ends_with('/') {
        p.to_string()
    } else {
        format!("{p}/")
    }
}

fn key(path: &str) -> &str {
    path.trim_start_matches('/')
}

impl S3Source {
    /// A source on `bucket`.
    pub async fn connect(name: &str, bucket: &str, ep: &S3Endpoint) -> Result<Self> {
        let client = s3_client(ep).await;
        let src = S3Source {
            name: name.to_string(),
            bucket: bucket.to_string(),
            client,
            io_timeout: ep.io_timeout,
        };
        src.client
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(classified(format!(
                "source {name}: bucket {bucket} is not reachable"
            )))?;
        Ok(src)
    }

    fn what(&self, verb: &str, key: &str) -> String {
        format!(
            "source {}: cannot {verb} s3://{}/{key}",
            self.name, self.bucket
        )
    }

    /// GetObject from `offset`, with the ETag of what it opened; with the
    /// `version` read, only while the object still has that version's ETag
    /// (`If-Match`): S3 answers 412 once it was replaced, and the read fails
    /// as "changed" instead of mixing bytes.
    async fn get(
        &self,
        path: &str,
        offset: u64,
        version: Option<&RemoteEntry>,
    ) -> Result<(ByteStream, Option<String>)> {
        let mut req = self.client.get_object().bucket(&self.bucket).key(key(path));
        if offset > 0 {
            req = req.range(format!("bytes={offset}-"));
        }
        if let Some(etag) = version.and_then(|v| v.etag.as_deref()) {
            req = req.if_match(etag);
        }
        match req.send().await {
            Ok(obj) => {
                let etag = obj.e_tag().map(str::to_string);
                Ok((Box::new(obj.body.into_async_read()), etag))
            }
            Err(e) => match version {
                // Only a read conditional on a version fails its
                // precondition; any other 412 is an SDK error like the rest.
                Some(v) if v.etag.is_some() && precondition_failed(&e) => {
                    Err(super::changed_error(
                        v,
                        &format!("ETag no longer {}", v.etag.as_deref().unwrap_or("")),
                    ))
                }
                _ => Err(classified(self.what("download", path))(e)),
            },
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(classified(self.what("delete", key)))?;
        Ok(())
    }

    async fn key_exists(&self, key: &str) -> Result<bool> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(classified(self.what("check", key))(e)),
        }
    }
}

#[async_trait]
impl Source for S3Source {
    async fn stat(&self, path: &str) -> Result<Option<(u64, Option<i64>)>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key(path))
            .send()
            .await
        {
            Ok(h) => Ok(Some((
                h.content_length().unwrap_or(0).max(0) as u64,
                h.last_modified().map(|t| t.secs()),
            ))),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(classified(self.what("check", path))(e)),
        }
    }

    fn io_timeout(&self) -> Option<std::time::Duration> {
        Some(self.io_timeout)
    }

    fn describe(&self) -> String {
        format!("source {} (s3 bucket {})", self.name, self.bucket)
    }

    async fn list(&self, dir: &str, recursive: bool) -> Result<Vec<RemoteEntry>> {
        let prefix = prefix(dir);
        let mut req = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix);
        if !recursive {
            req = req.delimiter("/");
        }
        let mut pages = req.into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(classified(self.what("list", &prefix)))?;
            for obj in page.contents() {
                let Some(k) = obj.key() else { continue };
                let relative = &k[prefix.len().min(k.len())..];
                if relative.is_empty() || k.ends_with('/') {
                    continue; // the "folder" placeholder objects some tools create
                }
                out.push(RemoteEntry {
                    path: k.to_string(),
                    relative: relative.to_string(),
                    size: obj.size().unwrap_or(0).max(0) as u64,
                    mtime: obj.last_modified().map_or(0, |t| t.secs()),
                    etag: obj.e_tag().map(str::to_string),
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn open(&self, path: &str, offset: u64) -> Result<ByteStream> {
        Ok(self.get(path, offset, None).await?.0)
    }

    async fn open_entry(
        &self,
        entry: &RemoteEntry,
        offset: u64,
    ) -> Result<(ByteStream, Option<String>)> {
        self.get(&entry.path, offset, Some(entry)).await
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        if self.key_exists(key(path)).await? {
            return Ok(true);
        }
        // A "folder" exists when any key starts with it.
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix(path))
            .max_keys(1)
            .send()
            .await
            .map_err(classified(self.what("list", path)))?;
        Ok(page.key_count().unwrap_or(0) > 0)
    }

    async fn finalize(&self, path: &str, action: &Finalize) -> Result<Option<String>> {
        let from = key(path);
        match action {
            Finalize::Keep => Ok(Some(path.to_string())),
            Finalize::Delete => {
                self.delete(from).await?;
                Ok(None)
            }
            Finalize::Move(to) => {
                let dir = prefix(to);
                let base = super::file_name(from);
                let mut taken = std::collections::HashSet::new();
                let mut candidate = base.to_string();
                while self.key_exists(&format!("{dir}{candidate}")).await? {
                    taken.insert(candidate.clone());
                    candidate = free_name(base, |n| taken.contains(n));
                }
                let dest = format!("{dir}{candidate}");
                let source = format!("{}/{}", self.bucket, urlencode_key(from));
                self.client
                    .copy_object()
                    .bucket(&self.bucket)
                    .key(&dest)
                    .copy_source(source)
                    .send()
                    .await
                    .map_err(classified(self.what("copy", from)))?;
                self.delete(from).await?;
                Ok(Some(dest))
            }
        }
    }
}

/// S3's answer to a conditional request whose condition no longer holds.
fn precondition_failed<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> bool
where
    R: std::fmt::Debug,
    aws_sdk_s3::error::SdkError<E, R>: aws_sdk_s3::error::ProvideErrorMetadata,
{
    use aws_sdk_s3::error::ProvideErrorMetadata;
    e.code() == Some("PreconditionFailed")
}

/// Percent-encodes a key for `x-amz-copy-source`, keeping `/`.
fn urlencode_key(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    for b in k.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_copy_sources() {
        assert_eq!(prefix("/landing/events"), "landing/events/");
        assert_eq!(prefix("landing/"), "landing/");
        assert_eq!(prefix("/"), "");
        assert_eq!(urlencode_key("in/a b+c.csv"), "in/a%20b%2Bc.csv");
    }
}

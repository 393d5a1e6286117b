//! Staging in S3: the client, deterministic keys and uploads.
//!
//! Keys are date-partitioned and unique per file version *and* attempt, so
//! two attempts or two replicas never write the same object:
//!
//! - `{prefix}/staged/{job}/{yyyy}/{mm}/{dd}/{name}-{version}-{attempt}/part-00000.csv.gz`
//!   (one or more parts of the staged CSV),
//! - `{prefix}/rejects/{job}/{yyyy}/{mm}/{dd}/{name}-{version}-{attempt}.csv.gz`
//!   (every rejected record: line, column, code, reason, raw value, raw line).

use crate::config::{Checksums, S3Endpoint, Sse, StagingSettings};
use crate::error::{Error, ErrorKind, Result};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use chrono::{DateTime, Utc};
use std::path::Path;

/// Builds an S3 client for `ep`.
pub async fn s3_client(ep: &S3Endpoint) -> Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(ep.region.clone()));
    if let Some((id, secret)) = &ep.credentials {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            id.clone(),
            secret.expose().to_string(),
            None,
            None,
            "ferry-config",
        ));
    }
    let sdk = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(ep.path_style);
    if let Some(url) = &ep.endpoint {
        b = b.endpoint_url(url.clone());
    }
    if ep.checksums == Checksums::WhenRequired {
        b = b
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    Client::from_conf(b.build())
}

/// Classifies an SDK error: throttling, timeouts and 5xx are transient.
pub fn sdk_error<E, R>(what: String) -> impl FnOnce(aws_sdk_s3::error::SdkError<E, R>) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_sdk_s3::error::SdkError;
    move |e| {
        let kind = match &e {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => ErrorKind::Transient,
            SdkError::ServiceError(s) => {
                let text = format!("{:?}", s.raw());
                if text.contains("status: 5") || text.contains("SlowDown") {
                    ErrorKind::Transient
                } else {
                    ErrorKind::Permanent
                }
            }
            _ => ErrorKind::Transient,
        };
        let detail = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
        Error::new(kind, format!("{what}: {detail}"))
    }
}

/// Where one attempt at one file version goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageKeys {
    /// Folder of the parts, ending in `/`.
    pub staged: String,
    /// The rejects object.
    pub rejects: String,
}

impl StageKeys {
    /// The key of part `i`.
    pub fn part(&self, i: usize) -> String {
        format!("{}part-{i:05}.csv.gz", self.staged)
    }
}

/// Uploads staged objects.
#[derive(Clone)]
pub struct Stager {
    client: Client,
    bucket: String,
    prefix: String,
    sse: Sse,
}

impl Stager {
    /// A stager for `settings`.
    pub async fn new(settings: &StagingSettings) -> Self {
        Stager {
            client: s3_client(&settings.s3).await,
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            sse: settings.sse.clone(),
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
        let name: String = crate::source::file_name(source_path)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let rel = |kind: &str| {
            let rel = format!(
                "{kind}/{job}/{}/{name}-{version}-{attempt}",
                at.format("%Y/%m/%d")
            );
            if self.prefix.is_empty() {
                rel
            } else {
                format!("{}/{rel}", self.prefix)
            }
        };
        StageKeys {
            staged: format!("{}/", rel("staged")),
            rejects: format!("{}.csv.gz", rel("rejects")),
        }
    }

    /// The `s3://bucket/key` URL of `key`.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// Uploads the local file at `path` to `key`.
    pub async fn upload_file(&self, path: &Path, key: &str) -> Result<()> {
        self.upload(path, key, "text/csv").await
    }

    async fn upload(&self, path: &Path, key: &str, content_type: &str) -> Result<()> {
        let body = ByteStream::from_path(path).await.map_err(|e| {
            Error::transient(format!("cannot read staged file {}", path.display())).with_source(e)
        })?;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_encoding("gzip")
            .body(body);
        match &self.sse {
            Sse::None => {}
            Sse::Aes256 => req = req.server_side_encryption(ServerSideEncryption::Aes256),
            Sse::Kms(key_id) => {
                req = req.server_side_encryption(ServerSideEncryption::AwsKms);
                if let Some(id) = key_id {
                    req = req.ssekms_key_id(id);
                }
            }
        }
        req.send()
            .await
            .map_err(sdk_error(format!("cannot upload {}", self.url(key))))?;
        Ok(())
    }

    /// Checks that the bucket exists and is reachable.
    pub async fn check(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(sdk_error(format!(
                "staging bucket {} is not reachable",
                self.bucket
            )))?;
        Ok(())
    }
}

//! `[staging]`: the S3 bucket staged files go to, and the S3 endpoint
//! settings (region, credentials, endpoint, checksums) that S3 sources
//! share.

use super::*;

/// `[staging]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStaging {
    /// The S3 bucket for staged, raw and rejected objects.
    pub bucket: String,
    /// Key prefix under which ferry writes; no leading or trailing `/`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// AWS region of the bucket.
    #[serde(default = "default_region")]
    pub region: String,
    /// Custom endpoint (MinIO, a local stand-in); unset for AWS.
    pub endpoint: Option<String>,
    /// Path-style addressing (`http://host/bucket/key`), needed by MinIO.
    #[serde(default)]
    pub path_style: bool,
    /// Server-side encryption: `none`, `aes256` (SSE-S3) or `aws:kms`.
    #[serde(default = "default_sse")]
    pub sse: String,
    /// KMS key for `sse = "aws:kms"`; unset uses the AWS-managed key.
    pub kms_key_id: Option<String>,
    /// Static access key id; unset uses the default AWS credential chain.
    pub access_key_id: Option<String>,
    /// Environment variable holding the secret access key.
    pub secret_access_key_env: Option<String>,
    /// A file whose contents are the secret access key.
    pub secret_access_key_file: Option<String>,
    /// `auto`, `when_supported` or `when_required`. `auto` sends request
    /// checksums only to AWS, since many S3-compatible servers reject them.
    #[serde(default = "default_checksums")]
    pub checksums: String,
    /// Objects larger than this go up as a multipart upload in parts of
    /// this size (at least 5MiB, S3's minimum), e.g. `"16MiB"`.
    #[serde(default = "default_multipart_part_size")]
    pub multipart_part_size: String,
    /// The longest one S3 request attempt may take, the upload of one
    /// part included (the SDK then retries it).
    #[serde(default = "default_staging_io_timeout")]
    pub io_timeout: String,
}

/// 120 s: a 16 MiB part at 150 KB/s still fits; a frozen endpoint costs
/// two minutes per attempt.
pub(super) fn default_staging_io_timeout() -> String {
    "120s".into()
}

pub(super) fn default_multipart_part_size() -> String {
    "16MiB".into()
}

pub(super) fn default_prefix() -> String {
    "ferry".into()
}

pub(super) fn default_region() -> String {
    "us-east-1".into()
}

pub(super) fn default_sse() -> String {
    "none".into()
}

pub(super) fn default_checksums() -> String {
    "auto".into()
}

/// The S3 connection keys shared by `[staging]` and `kind = "s3"` sources.
pub(super) struct S3Keys<'a> {
    pub(super) region: &'a str,
    pub(super) endpoint: &'a Option<String>,
    pub(super) path_style: bool,
    pub(super) access_key_id: &'a Option<String>,
    pub(super) secret_env: &'a Option<String>,
    pub(super) secret_file: &'a Option<String>,
    pub(super) checksums: &'a str,
    pub(super) io_timeout: &'a str,
}

/// Static AWS credentials at `path` (`access_key_id` with
/// `secret_access_key_env` or `_file`): `Some(None)` for the default
/// chain, `None` when only one half is set (reported).
pub(super) fn aws_credentials(
    path: &str,
    access_key_id: &Option<String>,
    secret_env: &Option<String>,
    secret_file: &Option<String>,
    p: &mut Problems,
) -> Option<Option<(String, Secret)>> {
    let secret = p.take_pathed(secret::resolve(
        &format!("{path}.secret_access_key"),
        secret_env.as_deref(),
        secret_file.as_deref(),
    ))?;
    match (access_key_id, secret) {
        (Some(id), Some(secret)) => Some(Some((id.clone(), secret))),
        (None, None) => Some(None),
        (Some(_), None) => {
            p.push(
                format!("{path}.access_key_id"),
                "is set without secret_access_key_env or secret_access_key_file",
            );
            None
        }
        (None, Some(_)) => {
            p.push(
                format!("{path}.secret_access_key_env"),
                "is set without access_key_id",
            );
            None
        }
    }
}

/// A custom endpoint at `path.endpoint` must be an http(s) URL.
pub(super) fn endpoint_url(path: &str, endpoint: &Option<String>, p: &mut Problems) {
    if let Some(ep) = endpoint
        && !(ep.starts_with("http://") || ep.starts_with("https://"))
    {
        p.push(
            format!("{path}.endpoint"),
            format!("{ep:?} must start with http:// or https://"),
        );
    }
}

pub(super) fn s3_endpoint(path: &str, k: S3Keys<'_>, p: &mut Problems) -> Option<S3Endpoint> {
    let S3Keys {
        region,
        endpoint,
        path_style,
        access_key_id,
        secret_env,
        secret_file,
        checksums,
        io_timeout,
    } = k;
    let io_timeout = p.take(&format!("{path}.io_timeout"), timeout(io_timeout))?;
    let credentials = aws_credentials(path, access_key_id, secret_env, secret_file, p)?;
    endpoint_url(path, endpoint, p);
    // `auto`: an endpoint other than AWS's may not know the SDK's newer
    // checksums, so they are sent only when required there.
    let auto = if endpoint.is_some() {
        Checksums::WhenRequired
    } else {
        Checksums::WhenSupported
    };
    let checksums = p.choose(
        &format!("{path}.checksums"),
        checksums,
        &[
            ("auto", auto),
            ("when_supported", Checksums::WhenSupported),
            ("when_required", Checksums::WhenRequired),
        ],
    )?;
    Some(S3Endpoint {
        region: region.to_string(),
        endpoint: endpoint.clone(),
        path_style,
        credentials,
        checksums,
        io_timeout,
    })
}

pub(super) fn validate_staging(s: &RawStaging, p: &mut Problems) -> Option<StagingSettings> {
    if s.bucket.trim().is_empty() {
        p.push("staging.bucket", "must not be empty");
    }
    let sse = p.choose(
        "staging.sse",
        &s.sse.to_ascii_lowercase(),
        &[
            ("none", Sse::None),
            ("aes256", Sse::Aes256),
            ("aws:kms", Sse::Kms(s.kms_key_id.clone())),
        ],
    );
    if s.kms_key_id.is_some() && !matches!(sse, Some(Sse::Kms(_))) {
        p.push("staging.kms_key_id", "is only used with sse = \"aws:kms\"");
    }
    let s3 = s3_endpoint(
        "staging",
        S3Keys {
            region: &s.region,
            endpoint: &s.endpoint,
            path_style: s.path_style,
            access_key_id: &s.access_key_id,
            secret_env: &s.secret_access_key_env,
            secret_file: &s.secret_access_key_file,
            checksums: &s.checksums,
            io_timeout: &s.io_timeout,
        },
        p,
    );
    let part = p.take(
        "staging.multipart_part_size",
        parse_size(&s.multipart_part_size),
    );
    let part = match part {
        Some(n) if n < 5 << 20 => {
            p.push(
                "staging.multipart_part_size",
                format!("{n} bytes is below S3's minimum part size of 5MiB"),
            );
            None
        }
        Some(n) if n > 5 << 30 => {
            p.push(
                "staging.multipart_part_size",
                "must be at most 5GiB (S3's largest part)",
            );
            None
        }
        other => other,
    };
    Some(StagingSettings {
        bucket: s.bucket.clone(),
        prefix: s.prefix.trim_matches('/').to_string(),
        s3: s3?,
        sse: sse?,
        multipart_part_size: part?,
    })
}

/// Server-side encryption of staged objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// No header sent (the bucket default applies; SSE-S3 on AWS since 2023).
    None,
    /// SSE-S3.
    Aes256,
    /// SSE-KMS with an optional key id.
    Kms(Option<String>),
}

/// When the S3 client sends request checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksums {
    /// Whenever the operation supports them (AWS default).
    WhenSupported,
    /// Only when the operation requires them (S3-compatible servers).
    WhenRequired,
}

/// Connection settings for an S3 endpoint.
#[derive(Debug, Clone)]
pub struct S3Endpoint {
    /// The AWS region requests are signed for.
    pub region: String,
    /// An endpoint other than AWS's (MinIO, a test server); `None` for AWS.
    pub endpoint: Option<String>,
    /// `http://host/bucket/key` instead of `http://bucket.host/key`
    /// (most S3 stand-ins need it).
    pub path_style: bool,
    /// Static credentials; `None` uses the default chain.
    pub credentials: Option<(String, Secret)>,
    /// Checksum behaviour.
    pub checksums: Checksums,
    /// The longest one request attempt may take (an upload of a part
    /// included), and the longest a download may pause.
    pub io_timeout: Duration,
}

/// `[staging]`
#[derive(Debug, Clone)]
pub struct StagingSettings {
    /// The bucket staged, rejected and archived objects go to.
    pub bucket: String,
    /// Key prefix without slashes at either end (may be empty).
    pub prefix: String,
    /// Endpoint and credentials.
    pub s3: S3Endpoint,
    /// Server-side encryption.
    pub sse: Sse,
    /// Multipart upload part size (and the size above which it is used).
    pub multipart_part_size: u64,
}

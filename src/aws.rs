//! AWS basics shared by staging, S3 sources and the Redshift Data API:
//! the SDK configuration with a deadline on every attempt, the S3 client,
//! and one classification of SDK errors into [`ErrorKind`]s.

use crate::config::{Checksums, S3Endpoint};
use crate::error::{Error, ErrorKind};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};

/// The shared AWS configuration for `region`: static `credentials` if
/// given, else the default chain (environment, instance profile, ECS task
/// role). Every request attempt has a deadline: 10 s to connect and
/// `io_timeout` in all (a part upload included; a download's body is
/// streamed after it, and its pauses are bounded by the source's idle
/// timeout); the SDK's standard retry takes it from there.
pub async fn aws_config(
    region: &str,
    credentials: Option<&(String, crate::config::Secret)>,
    io_timeout: std::time::Duration,
) -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(10).min(io_timeout))
        .operation_attempt_timeout(io_timeout)
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .timeout_config(timeouts);
    if let Some((id, secret)) = credentials {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            id.clone(),
            secret.expose().to_string(),
            None,
            None,
            "ferry-config",
        ));
    }
    loader.load().await
}

/// Builds an S3 client for `ep`.
pub async fn s3_client(ep: &S3Endpoint) -> Client {
    let sdk = aws_config(&ep.region, ep.credentials.as_ref(), ep.io_timeout).await;
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
pub fn sdk_error<E>(
    what: String,
) -> impl FnOnce(aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Error
where
    E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + Send + Sync + 'static,
{
    use aws_sdk_s3::error::SdkError;
    move |e| {
        let kind = match &e {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => ErrorKind::Transient,
            SdkError::ServiceError(s) => {
                let status = s.raw().status().as_u16();
                let code = s.err().code().unwrap_or_default();
                let throttled = matches!(
                    code,
                    "SlowDown"
                        | "Throttling"
                        | "ThrottlingException"
                        | "RequestTimeout"
                        | "RequestTimeTooSkewed"
                        | "InternalError"
                        | "ServiceUnavailable"
                        // The Redshift Data API's own "try again later"s.
                        | "ActiveStatementsExceededException"
                        | "ActiveSessionsExceededException"
                        | "ActiveWaitingRequestsExceededException"
                );
                if status >= 500 || status == 429 || throttled {
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

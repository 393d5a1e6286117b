//! AWS basics shared by staging, S3 sources and the Redshift Data API:
//! the SDK configuration with a deadline on every attempt, the S3 client,
//! and one classification of SDK errors into [`ErrorKind`]s.

use crate::config::{Checksums, S3Endpoint};
use crate::error::{Classify, ErrorKind};
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

/// An AWS service's own "try again" error codes (beyond every 5xx and
/// 429, which always are): each operation's error type names its service.
pub trait Service {
    /// Codes that mean throttled or busy, whatever the HTTP status.
    const TRY_AGAIN: &'static [&'static str];
}

/// S3's: slow down, throttled, a request that took too long or whose
/// clock was skewed (the SDK signs it again), an internal error.
pub const S3_TRY_AGAIN: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
];

/// The Redshift Data API's: throttled, or too many statements, sessions or
/// waiting requests at once (its quotas; a later attempt gets through).
pub const DATA_API_TRY_AGAIN: &[&str] = &[
    "ThrottlingException",
    "InternalServerException",
    "ActiveStatementsExceededException",
    "ActiveSessionsExceededException",
    "ActiveWaitingRequestsExceededException",
];

macro_rules! service {
    ($codes:path: $($error:ty),+ $(,)?) => {
        $(impl Service for $error {
            const TRY_AGAIN: &'static [&'static str] = $codes;
        })+
    };
}

service!(S3_TRY_AGAIN:
    aws_sdk_s3::operation::get_object::GetObjectError,
    aws_sdk_s3::operation::put_object::PutObjectError,
    aws_sdk_s3::operation::head_object::HeadObjectError,
    aws_sdk_s3::operation::head_bucket::HeadBucketError,
    aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error,
    aws_sdk_s3::operation::delete_object::DeleteObjectError,
    aws_sdk_s3::operation::copy_object::CopyObjectError,
    aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadError,
    aws_sdk_s3::operation::upload_part::UploadPartError,
    aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadError,
);
service!(SQS_TRY_AGAIN:
    aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError,
    aws_sdk_sqs::operation::receive_message::ReceiveMessageError,
    aws_sdk_sqs::operation::change_message_visibility_batch::ChangeMessageVisibilityBatchError,
    aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchError,
);
/// SQS's own "try again" codes, beyond every 5xx and 429.
pub const SQS_TRY_AGAIN: &[&str] = &[
    "ThrottlingException",
    "RequestThrottled",
    "AWS.SimpleQueueService.RequestThrottled",
    "KmsThrottled",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
];

/// SNS's: throttled (the topic's or KMS's), or busy.
pub const SNS_TRY_AGAIN: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "KMSThrottling",
    "InternalError",
    "InternalErrorException",
    "ServiceUnavailable",
];

service!(SNS_TRY_AGAIN: aws_sdk_sns::operation::publish::PublishError);
service!(DATA_API_TRY_AGAIN:
    aws_sdk_redshiftdata::operation::execute_statement::ExecuteStatementError,
    aws_sdk_redshiftdata::operation::batch_execute_statement::BatchExecuteStatementError,
    aws_sdk_redshiftdata::operation::describe_statement::DescribeStatementError,
    aws_sdk_redshiftdata::operation::get_statement_result::GetStatementResultError,
    aws_sdk_redshiftdata::operation::cancel_statement::CancelStatementError,
);

/// What a service's answer means: every 5xx, 429 and the service's own
/// [`Service::TRY_AGAIN`] codes are transient, any other answer (access
/// denied, no such bucket, a precondition) fails for good.
pub fn answer_kind(status: u16, code: &str, try_again: &[&str]) -> ErrorKind {
    if status >= 500 || status == 429 || try_again.contains(&code) {
        ErrorKind::Transient
    } else {
        ErrorKind::Permanent
    }
}

/// An SDK error: no answer (a timeout, a connection that failed or a
/// response that could not be read) is transient; an answer is as
/// [`answer_kind`] says for the operation's service.
impl<E> Classify for aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>
where
    E: Service
        + std::error::Error
        + aws_sdk_s3::error::ProvideErrorMetadata
        + Send
        + Sync
        + 'static,
{
    fn kind(&self) -> ErrorKind {
        use aws_sdk_s3::error::SdkError;
        match self {
            SdkError::ServiceError(s) => answer_kind(
                s.raw().status().as_u16(),
                s.err().code().unwrap_or_default(),
                E::TRY_AGAIN,
            ),
            _ => ErrorKind::Transient,
        }
    }

    /// The SDK's whole account: the operation, the code, the message.
    fn detail(&self) -> Option<String> {
        Some(aws_sdk_s3::error::DisplayErrorContext(self).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_retries_its_own_busy_codes_and_every_5xx() {
        use ErrorKind::{Permanent as P, Transient as T};
        let (s3, api) = (S3_TRY_AGAIN, DATA_API_TRY_AGAIN);
        let cases = [
            (503, "SlowDown", s3, T),
            (400, "RequestTimeout", s3, T),
            (403, "AccessDenied", s3, P),
            (404, "NoSuchBucket", s3, P),
            (412, "PreconditionFailed", s3, P),
            (500, "", s3, T),
            (429, "", s3, T),
            (400, "ActiveStatementsExceededException", api, T),
            (400, "ActiveStatementsExceededException", s3, P),
            (400, "ThrottlingException", api, T),
            (400, "ValidationException", api, P),
            (400, "ResourceNotFoundException", api, P),
        ];
        for (status, code, table, want) in cases {
            assert_eq!(answer_kind(status, code, table), want, "{status} {code}");
        }
    }
}

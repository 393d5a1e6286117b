//! An S3 server on a local folder (s3s-fs), with static credentials.

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::dto::{
    CompleteMultipartUploadInput, CreateMultipartUploadInput, ETagCondition, GetObjectInput,
    HeadObjectInput, PutObjectInput, ServerSideEncryption, UploadPartInput,
};
use s3s::service::S3ServiceBuilder;
use s3s::{S3Request, S3Result, s3_error};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Access key id of the test server.
pub const ACCESS_KEY: &str = "ferry-test-access";
/// Secret key of the test server.
pub const SECRET_KEY: &str = "ferry-test-secret";

/// What a test can inject into, and read back from, the S3 server.
#[derive(Debug, Default)]
pub struct S3Probe {
    /// Fail `UploadPart` with a 500 for this part number (0: never).
    pub fail_upload_part: AtomicI32,
    /// Server-side encryption and KMS key id of the last `PutObject` or
    /// `CreateMultipartUpload`, as the client sent them.
    pub last_sse: Mutex<Option<(String, Option<String>)>>,
    /// Multipart uploads completed.
    pub multipart_completed: AtomicI32,
}

/// Checks credentials like the default, applies the probe, and answers
/// a `GetObject` with `If-Match` the way S3 does (s3s-fs ignores it): 412
/// `PreconditionFailed` once the object's ETag is another.
struct ProbeAccess(Arc<S3Probe>, s3s_fs::FileSystem);

#[async_trait::async_trait]
impl S3Access for ProbeAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        match cx.credentials() {
            Some(_) => Ok(()),
            None => Err(s3_error!(AccessDenied, "Signature is required")),
        }
    }

    async fn get_object(&self, req: &mut S3Request<GetObjectInput>) -> S3Result<()> {
        let Some(ETagCondition::ETag(wanted)) = req.input.if_match.clone() else {
            return Ok(());
        };
        let head = S3Request {
            input: HeadObjectInput::builder()
                .bucket(req.input.bucket.clone())
                .key(req.input.key.clone())
                .build()
                .map_err(|e| s3_error!(InvalidRequest, "{e}"))?,
            method: hyper::Method::HEAD,
            uri: req.uri.clone(),
            headers: Default::default(),
            extensions: Default::default(),
            credentials: req.credentials.clone(),
            region: req.region.clone(),
            service: req.service.clone(),
            trailing_headers: None,
        };
        let now = s3s::S3::head_object(&self.1, head).await?.output.e_tag;
        let same = now.as_ref().is_some_and(|t| t.value() == wanted.value());
        if !same {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
        Ok(())
    }

    async fn put_object(&self, req: &mut S3Request<PutObjectInput>) -> S3Result<()> {
        self.record_sse(
            req.input.server_side_encryption.as_ref(),
            req.input.ssekms_key_id.as_ref(),
        );
        Ok(())
    }

    async fn create_multipart_upload(
        &self,
        req: &mut S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<()> {
        self.record_sse(
            req.input.server_side_encryption.as_ref(),
            req.input.ssekms_key_id.as_ref(),
        );
        Ok(())
    }

    async fn upload_part(&self, req: &mut S3Request<UploadPartInput>) -> S3Result<()> {
        let fail = self.0.fail_upload_part.load(Ordering::SeqCst);
        if fail != 0 && req.input.part_number == fail {
            return Err(s3_error!(InternalError, "injected failure of part {fail}"));
        }
        Ok(())
    }

    async fn complete_multipart_upload(
        &self,
        _req: &mut S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<()> {
        self.0.multipart_completed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl ProbeAccess {
    fn record_sse(&self, sse: Option<&ServerSideEncryption>, key: Option<&String>) {
        *self.0.last_sse.lock().expect("probe lock") =
            sse.map(|s| (s.as_str().to_string(), key.cloned()));
    }
}

/// A running S3 server; stops when dropped.
pub struct S3Server {
    /// Listening address.
    pub addr: SocketAddr,
    /// The folder holding buckets (one sub-folder each).
    pub root: PathBuf,
    /// Fault injection and request capture.
    pub probe: Arc<S3Probe>,
    stop: CancellationToken,
}

impl S3Server {
    /// Serves `root` on `bind` (use `127.0.0.1:0` for a free port) with the
    /// test credentials [`ACCESS_KEY`] and [`SECRET_KEY`].
    pub async fn start(root: &Path, bind: &str) -> std::io::Result<S3Server> {
        Self::start_with_credentials(root, bind, ACCESS_KEY, SECRET_KEY).await
    }

    /// Serves `root` on `bind`, accepting one access key and secret.
    pub async fn start_with_credentials(
        root: &Path,
        bind: &str,
        access_key: &str,
        secret_key: &str,
    ) -> std::io::Result<S3Server> {
        std::fs::create_dir_all(root)?;
        let fs =
            s3s_fs::FileSystem::new(root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let heads =
            s3s_fs::FileSystem::new(root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let probe = Arc::new(S3Probe::default());
        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(access_key, secret_key));
            b.set_access(ProbeAccess(probe.clone(), heads));
            b.build()
        };
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        super::serve_http(listener, stop.clone(), move || service.clone());
        Ok(S3Server {
            addr,
            root: root.to_path_buf(),
            probe,
            stop,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Multipart uploads started and neither completed nor aborted: the
    /// part files s3s-fs keeps under its root until then.
    pub fn pending_upload_parts(&self) -> usize {
        std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(".upload_id-"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Creates a bucket (a folder).
    pub fn create_bucket(&self, name: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(self.root.join(name))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

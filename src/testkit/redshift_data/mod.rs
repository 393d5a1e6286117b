//! A local Redshift Data API endpoint that executes on PostgreSQL.
//!
//! It speaks the Data API's `awsJson1_1` protocol (`POST /` with
//! `X-Amz-Target: RedshiftData.<Operation>`) with the real request and
//! response shapes: `ExecuteStatement`, `BatchExecuteStatement` (one
//! transaction, sub-statement ids `…:N`), `DescribeStatement`,
//! `GetStatementResult` and `CancelStatement`, and errors as
//! `{"__type": …, "message": …}`. Like the real service, each call gets a
//! fresh database session and runs in the background: a statement is
//! `SUBMITTED`, then `STARTED`, then `FINISHED`, `FAILED` or `ABORTED`, and
//! the caller polls. Signatures are not checked.
//!
//! `:name` parameters are bound server side, as Redshift does: the value is
//! quoted as a literal before the text reaches PostgreSQL.
//!
//! By role: `protocol` (requests, replies, errors, the read-only
//! operations), `execute` (calls run in the background), `translate`
//! (binding and Redshift → PostgreSQL text), `copy` (COPY from S3 and the
//! emulated `sys_load_error_detail`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_postgres::NoTls;
use tokio_postgres::types::Type;
use tokio_util::sync::CancellationToken;

mod copy;
mod execute;
mod protocol;
mod translate;

use copy::*;
use execute::*;
use protocol::*;
use translate::*;

/// One executed statement of a call (a batch has several).
#[derive(Debug, Clone)]
struct Sub {
    sql: String,
    status: &'static str,
    error: Option<String>,
    rows: Option<(Vec<Value>, Vec<Vec<Value>>)>,
    result_rows: i64,
}

/// One `ExecuteStatement` or `BatchExecuteStatement` call.
#[derive(Debug, Clone)]
struct Call {
    status: &'static str,
    error: Option<String>,
    created: f64,
    updated: f64,
    database: Option<String>,
    batch: bool,
    subs: Vec<Sub>,
    cancel: CancellationToken,
}

type Calls = Arc<Mutex<HashMap<String, Call>>>;

/// Where `COPY … FROM 's3://…'` reads from.
type S3 = Option<aws_sdk_s3::Client>;

/// A running endpoint; stops when dropped.
pub struct RedshiftDataServer {
    /// Listening address.
    pub addr: SocketAddr,
    calls: Calls,
    stop: CancellationToken,
}

fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

impl RedshiftDataServer {
    /// Serves on `127.0.0.1:0`, executing on the PostgreSQL at `pg_url`;
    /// `COPY … FROM 's3://…'` is refused.
    pub async fn start(pg_url: &str) -> std::io::Result<RedshiftDataServer> {
        Self::start_with_s3(pg_url, None).await
    }

    /// Like [`start`](Self::start), reading `COPY … FROM 's3://…'` through
    /// `s3`.
    pub async fn start_with_s3(pg_url: &str, s3: S3) -> std::io::Result<RedshiftDataServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let calls: Calls = Arc::default();
        let stop = CancellationToken::new();
        let (state, url) = (calls.clone(), pg_url.to_string());
        super::serve_http(listener, stop.clone(), move || {
            let (state, url, s3) = (state.clone(), url.clone(), s3.clone());
            hyper::service::service_fn(move |req| {
                let (state, url, s3) = (state.clone(), url.clone(), s3.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(req, state, url, s3).await) }
            })
        });
        Ok(RedshiftDataServer { addr, calls, stop })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls received so far.
    pub fn calls(&self) -> usize {
        self.calls.lock().expect("calls lock").len()
    }
}

impl Drop for RedshiftDataServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_from_s3_is_recognized_and_unknown_options_refused() {
        let c = parse_copy(
            "COPY \"s\".\"t\" (a, b) FROM 's3://bkt/m/x.manifest' IAM_ROLE 'arn:aws:iam::1:role/r' MANIFEST GZIP CSV NULL AS '\\N' TIMEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.target, "\"s\".\"t\" (a, b)");
        assert_eq!((c.bucket.as_str(), c.key.as_str()), ("bkt", "m/x.manifest"));
        assert!(c.manifest && c.gzip);
        assert_eq!(c.null_as.as_deref(), Some("\\N"));
        assert_eq!(parse_copy("COPY t FROM STDIN").unwrap(), None);
        assert_eq!(parse_copy("SELECT 1").unwrap(), None);
        let e = parse_copy("COPY t FROM 's3://b/k' IAM_ROLE default CSV EMPTYASNULL").unwrap_err();
        assert!(e.contains("EMPTYASNULL"), "{e}");
        let e = parse_copy("COPY t FROM 's3://b/k' CSV").unwrap_err();
        assert!(e.contains("IAM_ROLE"), "{e}");
        // Parquet: read by position, none of the text options.
        let c = parse_copy(
            "COPY \"ferry_stage\" FROM 's3://bkt/m/x.manifest' IAM_ROLE default MANIFEST FORMAT AS PARQUET",
        )
        .unwrap()
        .unwrap();
        assert!(c.parquet && c.manifest && !c.gzip);
        for extra in [
            "GZIP",
            "CSV",
            "NULL AS '\\N'",
            "TIMEFORMAT 'auto'",
            "REGION 'us-east-1'",
        ] {
            let e = parse_copy(&format!(
                "COPY t FROM 's3://b/k' IAM_ROLE default FORMAT AS PARQUET {extra}"
            ))
            .unwrap_err();
            assert!(
                e.contains("FORMAT AS PARQUET does not take"),
                "{extra}: {e}"
            );
        }
    }

    #[test]
    fn parameters_bind_as_literals_but_casts_and_quoted_text_stay() {
        let p: HashMap<String, String> = [
            ("job".to_string(), "it's".to_string()),
            ("n".to_string(), "5".to_string()),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            bind("SELECT :job, :n::int, ':job', now()::date", &p).unwrap(),
            "SELECT 'it''s', '5'::int, ':job', now()::date"
        );
        assert!(
            bind("SELECT :missing", &p)
                .unwrap_err()
                .contains(":missing")
        );
    }
}

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

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

fn client_error(kind: &str, message: String) -> Response<Full<Bytes>> {
    reply(
        StatusCode::BAD_REQUEST,
        json!({"__type": kind, "message": message}),
    )
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    calls: Calls,
    pg_url: String,
    s3: S3,
) -> Response<Full<Bytes>> {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return client_error("ValidationException", e.to_string()),
    };
    let input: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return client_error("ValidationException", format!("bad JSON: {e}")),
    };
    let op = target.strip_prefix("RedshiftData.").unwrap_or_default();
    match op {
        "ExecuteStatement" | "BatchExecuteStatement" => submit(op, &input, calls, pg_url, s3),
        "DescribeStatement" | "GetStatementResult" | "CancelStatement" => {
            let id = input["Id"].as_str().unwrap_or_default();
            let (base, sub) = split_id(id);
            let calls = calls.lock().expect("calls lock");
            match (calls.get(base), op) {
                (None, _) => not_found(id),
                (Some(c), "DescribeStatement") => describe(id, base, sub, c),
                (Some(c), "GetStatementResult") => result(id, sub, c),
                (Some(c), _) => cancel(c),
            }
        }
        other => client_error(
            "ValidationException",
            format!("operation {other:?} is not supported by this endpoint"),
        ),
    }
}

/// Binds `:name` parameters as quoted literals, leaving `::type` casts and
/// text inside quotes alone.
fn bind(sql: &str, params: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len());
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            out.push(c);
            i += 1;
            continue;
        }
        if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push_str("::");
            i += 2;
            continue;
        }
        if c == ':'
            && chars
                .get(i + 1)
                .is_some_and(|n| n.is_ascii_alphanumeric() || *n == '_')
        {
            let start = i + 1;
            let mut end = start;
            while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
                end += 1;
            }
            let name: String = chars[start..end].iter().collect();
            let value = params
                .get(&name)
                .ok_or_else(|| format!("no value for parameter :{name}"))?;
            out.push('\'');
            out.push_str(&value.replace('\'', "''"));
            out.push('\'');
            i = end;
            continue;
        }
        out.push(c);
        i += 1;
    }
    Ok(out)
}

/// Rewrites what Redshift has and PostgreSQL lacks: table attributes
/// (`DISTSTYLE x`, `[COMPOUND|INTERLEAVED] SORTKEY (…)`, `DISTKEY (…)`,
/// `ENCODE x`) are dropped, `SYSDATE` (the transaction's start) becomes
/// `now()` and `GETDATE()` (the statement's) `clock_timestamp()`. Quoted
/// text is left alone. COPY statements pass unchanged.
fn to_postgres(sql: &str) -> String {
    if sql
        .trim_start()
        .get(..5)
        .is_some_and(|w| w.eq_ignore_ascii_case("COPY "))
    {
        return sql.to_string();
    }
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let word_at = |i: usize| -> String {
        chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
            .collect::<String>()
            .to_ascii_uppercase()
    };
    let skip_space = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let skip_group = |i: usize| {
        let mut j = skip_space(i);
        if chars.get(j) == Some(&'(') {
            while j < chars.len() && chars[j] != ')' {
                j += 1;
            }
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' {
            let end = chars[i + 1..]
                .iter()
                .position(|d| *d == c)
                .map(|p| i + 2 + p)
                .unwrap_or(chars.len());
            out.extend(&chars[i..end]);
            i = end;
            continue;
        }
        let starts_word = (c.is_ascii_alphabetic() || c == '_')
            && (i == 0 || !(chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_'));
        if !starts_word {
            out.push(c);
            i += 1;
            continue;
        }
        let word = word_at(i);
        let after = i + word.len();
        match word.as_str() {
            "DISTSTYLE" | "ENCODE" => {
                let j = skip_space(after);
                i = j + word_at(j).len();
            }
            "DISTKEY" | "SORTKEY" => i = skip_group(after),
            "COMPOUND" | "INTERLEAVED" if word_at(skip_space(after)) == "SORTKEY" => {
                i = skip_space(after);
            }
            "SYSDATE" => {
                out.push_str("now()");
                i = after;
            }
            "GETDATE" if chars[skip_space(after)..].starts_with(&['(', ')']) => {
                out.push_str("clock_timestamp()");
                i = skip_space(after) + 2;
            }
            _ => {
                out.push_str(&sql_slice(&chars, i, after));
                i = after;
            }
        }
    }
    out
}

fn sql_slice(chars: &[char], from: usize, to: usize) -> String {
    chars[from..to].iter().collect()
}

fn submit(op: &str, input: &Value, calls: Calls, pg_url: String, s3: S3) -> Response<Full<Bytes>> {
    let batch = op == "BatchExecuteStatement";
    let sqls: Vec<String> = if batch {
        input["Sqls"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        input["Sql"]
            .as_str()
            .map(|s| vec![s.to_string()])
            .unwrap_or_default()
    };
    if sqls.is_empty() || sqls.len() > 40 {
        return client_error(
            "ValidationException",
            format!("{op} needs 1 to 40 statements, got {}", sqls.len()),
        );
    }
    let params: HashMap<String, String> = input["Parameters"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    Some((
                        p["name"].as_str()?.to_string(),
                        p["value"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some((name, _)) = params.iter().find(|(_, v)| v.is_empty()) {
        return client_error(
            "ValidationException",
            format!(
                "parameter {name} has an empty value; the Data API requires a length of at least 1"
            ),
        );
    }
    if let Some(name) = params
        .keys()
        .find(|n| !sqls.iter().any(|s| s.contains(&format!(":{n}"))))
    {
        return client_error(
            "ValidationException",
            format!("parameter {name} is not used by any statement"),
        );
    }
    let bound: Result<Vec<String>, String> = sqls
        .iter()
        .map(|s| bind(s, &params).map(|b| to_postgres(&b)))
        .collect();
    let bound = match bound {
        Ok(b) => b,
        Err(e) => return client_error("ValidationException", e),
    };
    let id = uuid::Uuid::new_v4().to_string();
    let database = input["Database"].as_str().map(str::to_string);
    let cancel = CancellationToken::new();
    let created = now();
    calls.lock().expect("calls lock").insert(
        id.clone(),
        Call {
            status: "SUBMITTED",
            error: None,
            created,
            updated: created,
            database: database.clone(),
            batch,
            subs: sqls
                .iter()
                .map(|s| Sub {
                    sql: s.clone(),
                    status: "SUBMITTED",
                    error: None,
                    rows: None,
                    result_rows: -1,
                })
                .collect(),
            cancel: cancel.clone(),
        },
    );
    tokio::spawn(run(id.clone(), bound, calls, pg_url, s3, cancel));
    let mut out = json!({"Id": id, "CreatedAt": created});
    if let Some(db) = database {
        out["Database"] = json!(db);
    }
    reply(StatusCode::OK, out)
}

/// Runs a call's statements in one transaction on a fresh session.
async fn run(
    id: String,
    sqls: Vec<String>,
    calls: Calls,
    pg_url: String,
    s3: S3,
    cancel: CancellationToken,
) {
    let set = |f: &dyn Fn(&mut Call)| {
        if let Some(c) = calls.lock().expect("calls lock").get_mut(&id) {
            f(c);
            c.updated = now();
        }
    };
    set(&|c| c.status = "STARTED");
    let outcome: Result<(), (usize, String)> = async {
        let (client, conn) = tokio_postgres::connect(&pg_url, NoTls)
            .await
            .map_err(|e| (0, format!("cannot connect: {e}")))?;
        tokio::spawn(conn);
        let single = sqls.len() == 1;
        if !single {
            client
                .batch_execute("BEGIN")
                .await
                .map_err(|e| (0, e.to_string()))?;
        }
        for (n, sql) in sqls.iter().enumerate() {
            set(&|c| c.subs[n].status = "STARTED");
            let done = tokio::select! {
                r = execute(&client, sql, &s3, &pg_url) => r,
                () = cancel.cancelled() => Err("Query cancelled on user's request".to_string()),
            };
            match done {
                Ok((rows, count)) => set(&|c| {
                    c.subs[n].status = "FINISHED";
                    c.subs[n].result_rows = count;
                    c.subs[n].rows = rows.clone();
                }),
                Err(e) => return Err((n, e)),
            }
        }
        if !single {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| (sqls.len() - 1, e.to_string()))?;
        }
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => set(&|c| c.status = "FINISHED"),
        Err((n, e)) => {
            let aborted = cancel.is_cancelled();
            set(&|c| {
                let status = if aborted { "ABORTED" } else { "FAILED" };
                c.status = status;
                c.error = Some(format!("ERROR: {e}"));
                if let Some(s) = c.subs.get_mut(n) {
                    s.status = status;
                    s.error = Some(format!("ERROR: {e}"));
                }
                for s in c.subs.iter_mut().skip(n + 1) {
                    s.status = "ABORTED";
                }
            })
        }
    }
}

type ResultSet = Option<(Vec<Value>, Vec<Vec<Value>>)>;

/// Executes one statement; a statement that returns rows keeps them as
/// Data API `Field`s with `ColumnMetadata`.
async fn execute(
    client: &tokio_postgres::Client,
    sql: &str,
    s3: &S3,
    pg_url: &str,
) -> Result<(ResultSet, i64), String> {
    if let Some(copy) = parse_copy(sql)? {
        let s3 = s3
            .as_ref()
            .ok_or("this endpoint was started without S3: COPY FROM 's3://…' is refused")?;
        let n = copy_from_s3(client, &copy, s3, pg_url).await?;
        return Ok((None, n as i64));
    }
    let stmt = client.prepare(sql).await.map_err(db_message)?;
    if stmt.columns().is_empty() {
        let n = client.execute(&stmt, &[]).await.map_err(db_message)?;
        return Ok((None, n as i64));
    }
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    let meta: Vec<Value> = stmt
        .columns()
        .iter()
        .map(|c| {
            json!({"name": c.name(), "label": c.name(), "typeName": c.type_().name(),
                   "nullable": 1, "isSigned": true, "isCurrency": false, "isCaseSensitive": true,
                   "precision": 0, "scale": 0, "schemaName": "", "tableName": "", "length": 0})
        })
        .collect();
    // The text protocol gives every value as text; the prepared columns
    // say how each is typed in the Data API's Field union.
    let messages = client.simple_query(sql).await.map_err(db_message)?;
    let mut records = Vec::new();
    for m in messages {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
            let fields = (0..row.len())
                .map(|i| field(row.get(i), types.get(i)))
                .collect();
            records.push(fields);
        }
    }
    let n = records.len() as i64;
    Ok((Some((meta, records)), n))
}

/// A Redshift `COPY … FROM 's3://…'`, as far as this endpoint emulates it.
#[derive(Debug, PartialEq)]
struct CopyFromS3 {
    /// `table [(columns)]` as written.
    target: String,
    bucket: String,
    key: String,
    manifest: bool,
    gzip: bool,
    null_as: Option<String>,
    delimiter: Option<String>,
}

/// Words and `'quoted'` strings (`''` inside one is a quote).
fn tokens(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut s = String::new();
            while let Some(c) = chars.next() {
                if c == '\'' {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                        s.push('\'');
                    } else {
                        break;
                    }
                } else {
                    s.push(c);
                }
            }
            out.push((s, true));
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '\'' {
                    break;
                }
                s.push(c);
                chars.next();
            }
            out.push((s.to_ascii_uppercase(), false));
        }
    }
    out
}

/// Recognizes `COPY target FROM 's3://bucket/key' options`; options that
/// are not emulated are an error, so a test never passes on an option
/// PostgreSQL would silently treat differently.
fn parse_copy(sql: &str) -> Result<Option<CopyFromS3>, String> {
    let trimmed = sql.trim_start();
    if !trimmed
        .get(..5)
        .is_some_and(|w| w.eq_ignore_ascii_case("COPY "))
    {
        return Ok(None);
    }
    let upper = trimmed.to_ascii_uppercase();
    let Some(from) = upper.find(" FROM 'S3://") else {
        return Ok(None);
    };
    let target = trimmed[5..from].trim().to_string();
    let rest = tokens(&trimmed[from + " FROM ".len()..]);
    let url = &rest[0].0;
    let (bucket, key) = url
        .strip_prefix("s3://")
        .and_then(|u| u.split_once('/'))
        .ok_or_else(|| format!("not an s3://bucket/key URL: {url}"))?;
    let mut copy = CopyFromS3 {
        target,
        bucket: bucket.to_string(),
        key: key.to_string(),
        manifest: false,
        gzip: false,
        null_as: None,
        delimiter: None,
    };
    let (mut csv, mut authorized) = (false, false);
    let mut it = rest[1..].iter().map(|(t, quoted)| (t.as_str(), *quoted));
    while let Some((word, quoted)) = it.next() {
        if quoted {
            return Err(format!("unexpected string '{word}' in COPY options"));
        }
        let mut value = |what: &str| {
            let (mut v, mut q) = it.next().ok_or(format!("{what} needs a value"))?;
            if !q && v == "AS" {
                (v, q) = it.next().ok_or(format!("{what} AS needs a value"))?;
            }
            Ok::<_, String>((v.to_string(), q))
        };
        match word {
            "IAM_ROLE" => {
                let (role, quoted) = value("IAM_ROLE")?;
                if !(quoted && role.starts_with("arn:aws:iam::") || !quoted && role == "DEFAULT") {
                    return Err(format!(
                        "IAM_ROLE {role:?}: expected 'arn:aws:iam::…' or default"
                    ));
                }
                authorized = true;
            }
            "MANIFEST" => copy.manifest = true,
            "GZIP" => copy.gzip = true,
            "CSV" => csv = true,
            "FORMAT" => {
                let (f, _) = value("FORMAT")?;
                if f != "CSV" {
                    return Err(format!("FORMAT {f} is not emulated (only CSV)"));
                }
                csv = true;
            }
            "NULL" => copy.null_as = Some(value("NULL")?.0),
            "DELIMITER" => copy.delimiter = Some(value("DELIMITER")?.0),
            "TIMEFORMAT" | "DATEFORMAT" | "REGION" => {
                value(word)?;
            }
            "COMPUPDATE" | "STATUPDATE" => {
                let (v, _) = value(word)?;
                if !matches!(v.as_str(), "ON" | "OFF" | "TRUE" | "FALSE") {
                    return Err(format!("{word} {v}: expected ON or OFF"));
                }
            }
            other => {
                return Err(format!(
                    "COPY option {other} is not emulated by this endpoint (or is not a Redshift COPY option)"
                ));
            }
        }
    }
    if !authorized {
        return Err("COPY from S3 needs IAM_ROLE (or credentials); none given".into());
    }
    if !csv {
        return Err("only CSV COPY is emulated; add CSV".into());
    }
    Ok(Some(copy))
}

/// Runs a [`CopyFromS3`] as `COPY … FROM STDIN` fed from the objects: the
/// manifest's entries (all `mandatory`), or every object under the prefix.
async fn copy_from_s3(
    client: &tokio_postgres::Client,
    copy: &CopyFromS3,
    s3: &aws_sdk_s3::Client,
    pg_url: &str,
) -> Result<u64, String> {
    let keys: Vec<String> = if copy.manifest {
        let obj = s3
            .get_object()
            .bucket(&copy.bucket)
            .key(&copy.key)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot read manifest s3://{}/{}: {e:?}",
                    copy.bucket, copy.key
                )
            })?;
        let bytes = obj
            .body
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .into_bytes();
        let manifest: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("the manifest is not JSON: {e}"))?;
        let mut keys = Vec::new();
        for entry in manifest["entries"]
            .as_array()
            .ok_or("the manifest has no entries")?
        {
            let url = entry["url"].as_str().ok_or("a manifest entry has no url")?;
            let key = url
                .strip_prefix(&format!("s3://{}/", copy.bucket))
                .ok_or_else(|| format!("manifest entry {url} is in another bucket"))?;
            keys.push(key.to_string());
        }
        keys
    } else {
        let listed = s3
            .list_objects_v2()
            .bucket(&copy.bucket)
            .prefix(&copy.key)
            .send()
            .await
            .map_err(|e| format!("cannot list s3://{}/{}: {e:?}", copy.bucket, copy.key))?;
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    };
    if keys.is_empty() {
        return Err(format!(
            "The specified S3 prefix '{}' does not exist",
            copy.key
        ));
    }
    let quote = |v: &str| format!("'{}'", v.replace('\'', "''"));
    let mut options = vec!["FORMAT csv".to_string()];
    if let Some(n) = &copy.null_as {
        options.push(format!("NULL {}", quote(n)));
    }
    if let Some(d) = &copy.delimiter {
        options.push(format!("DELIMITER {}", quote(d)));
    }
    let sql = format!(
        "COPY {} FROM STDIN WITH ({})",
        copy.target,
        options.join(", ")
    );
    let sink = client.copy_in::<_, Bytes>(&sql).await.map_err(db_message)?;
    let mut fed = crate::warehouse::postgres::Fed::default();
    match crate::warehouse::postgres::feed_copy(
        sink,
        s3,
        &copy.bucket,
        futures::stream::iter(keys.clone()),
        copy.gzip,
        &mut fed,
        None,
    )
    .await
    {
        Ok(n) => Ok(n),
        Err(e) => {
            let message = e.chain();
            let urls: Vec<String> = keys
                .iter()
                .map(|k| format!("s3://{}/{k}", copy.bucket))
                .collect();
            if let Err(why) = record_load_error(pg_url, &message, &urls, &fed.lines).await {
                tracing::warn!(error = %why, "the Data API stand-in cannot write sys_load_error_detail");
            }
            Err(message)
        }
    }
}

/// Like Redshift, keeps a row per COPY error in `sys_load_error_detail`
/// (in `public`, written outside the failing transaction): PostgreSQL's
/// "line N, column c: \"value\"" is mapped back to the object it came
/// from and the line within it.
async fn record_load_error(
    pg_url: &str,
    message: &str,
    urls: &[String],
    lines: &[u64],
) -> Result<(), String> {
    let Some(at) = crate::warehouse::copy_error_at(message) else {
        return Ok(()); // not a row error (a missing object, say)
    };
    let (i, within) = crate::warehouse::locate_line(at.line, lines);
    let file = urls.get(i).cloned().unwrap_or_default();
    let (column, raw_value) = (at.column, at.value);
    let (client, conn) = tokio_postgres::connect(pg_url, NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let create = "CREATE TABLE IF NOT EXISTS public.sys_load_error_detail (query_id BIGINT, start_time TIMESTAMP,          file_name VARCHAR(1024), line_number BIGINT, column_name VARCHAR(127), error_message VARCHAR(1024),          raw_line VARCHAR(1024), raw_field_value VARCHAR(1024))";
    if let Err(e) = client.batch_execute(create).await {
        // Two endpoints creating it at once: one wins, which is enough.
        tracing::debug!(error = %e, "creating sys_load_error_detail");
    }
    let reason: String = message.chars().take(1024).collect();
    client
        .execute(
            "INSERT INTO public.sys_load_error_detail (query_id, start_time, file_name, line_number, column_name, error_message, raw_line, raw_field_value) \
             VALUES (-1, now() AT TIME ZONE 'UTC', $1, $2, $3, $4, '', $5)",
            &[&file, &(within as i64), &column, &reason, &raw_value],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn field(text: Option<&str>, ty: Option<&Type>) -> Value {
    let Some(t) = text else {
        return json!({"isNull": true});
    };
    match ty {
        Some(&Type::INT2) | Some(&Type::INT4) | Some(&Type::INT8) => t
            .parse::<i64>()
            .map(|v| json!({"longValue": v}))
            .unwrap_or_else(|_| json!({"stringValue": t})),
        Some(&Type::FLOAT4) | Some(&Type::FLOAT8) => t
            .parse::<f64>()
            .map(|v| json!({"doubleValue": v}))
            .unwrap_or_else(|_| json!({"stringValue": t})),
        Some(&Type::BOOL) => json!({"booleanValue": t == "t"}),
        _ => json!({"stringValue": t}),
    }
}

fn db_message(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Splits `uuid[:N]` into the call id and a 0-based sub-statement index.
fn split_id(id: &str) -> (&str, Option<usize>) {
    match id.rsplit_once(':') {
        Some((base, n)) if n.parse::<usize>().is_ok_and(|n| n >= 1) => {
            (base, n.parse::<usize>().ok().map(|n| n - 1))
        }
        _ => (id, None),
    }
}

fn not_found(id: &str) -> Response<Full<Bytes>> {
    reply(
        StatusCode::BAD_REQUEST,
        json!({"__type": "ResourceNotFoundException", "message": format!("Query does not exist: {id}"), "ResourceId": id}),
    )
}

fn describe(id: &str, base: &str, sub: Option<usize>, c: &Call) -> Response<Full<Bytes>> {
    let duration = ((c.updated - c.created) * 1e9) as i64;
    let sub_json = |i: usize, s: &Sub| {
        let mut v = json!({"Id": format!("{base}:{}", i + 1), "Status": s.status, "QueryString": s.sql,
            "CreatedAt": c.created, "UpdatedAt": c.updated, "Duration": duration,
            "HasResultSet": s.rows.is_some(), "ResultRows": s.result_rows, "ResultSize": -1, "RedshiftQueryId": -1});
        if let Some(e) = &s.error {
            v["Error"] = json!(e);
        }
        v
    };
    let mut out = match sub {
        Some(i) => match c.subs.get(i) {
            Some(s) => sub_json(i, s),
            None => return not_found(id),
        },
        None => {
            let mut v = json!({"Id": base, "Status": c.status, "CreatedAt": c.created,
                "UpdatedAt": c.updated, "Duration": duration, "RedshiftPid": 1, "RedshiftQueryId": 1});
            if c.batch {
                v["SubStatements"] = json!(
                    c.subs
                        .iter()
                        .enumerate()
                        .map(|(i, s)| sub_json(i, s))
                        .collect::<Vec<_>>()
                );
            } else {
                let s = &c.subs[0];
                v["QueryString"] = json!(s.sql);
                v["HasResultSet"] = json!(s.rows.is_some());
                v["ResultRows"] = json!(s.result_rows);
            }
            if let Some(e) = &c.error {
                v["Error"] = json!(e);
            }
            v
        }
    };
    if let Some(db) = &c.database {
        out["Database"] = json!(db);
    }
    reply(StatusCode::OK, out)
}

fn result(id: &str, sub: Option<usize>, c: &Call) -> Response<Full<Bytes>> {
    let index = match (c.batch, sub) {
        (true, None) => {
            return client_error(
                "ValidationException",
                "BatchExecuteStatement result can only be retrieved with sub-statement id.".into(),
            );
        }
        (_, Some(i)) => i,
        (false, None) => 0,
    };
    let Some(s) = c.subs.get(index) else {
        return not_found(id);
    };
    if s.status != "FINISHED" {
        return client_error(
            "ValidationException",
            format!("Query has not finished: status {}", s.status),
        );
    }
    match &s.rows {
        Some((meta, records)) => reply(
            StatusCode::OK,
            json!({"Records": records, "ColumnMetadata": meta, "TotalNumRows": records.len()}),
        ),
        None => client_error(
            "ResourceNotFoundException",
            format!("Query does not have result: {id}"),
        ),
    }
}

fn cancel(c: &Call) -> Response<Full<Bytes>> {
    let running = matches!(c.status, "SUBMITTED" | "PICKED" | "STARTED");
    if running {
        c.cancel.cancel();
    }
    reply(StatusCode::OK, json!({"Status": running}))
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

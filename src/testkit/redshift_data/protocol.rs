//! The `awsJson1_1` protocol: one request routed by `X-Amz-Target`,
//! replies and service errors in the Data API's shapes, and the read-only
//! operations (`DescribeStatement`, `GetStatementResult`,
//! `CancelStatement`).

use super::*;

pub(super) fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

pub(super) fn client_error(kind: &str, message: String) -> Response<Full<Bytes>> {
    reply(
        StatusCode::BAD_REQUEST,
        json!({"__type": kind, "message": message}),
    )
}

pub(super) async fn handle(
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

pub(super) fn field(text: Option<&str>, ty: Option<&Type>) -> Value {
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

/// Splits `uuid[:N]` into the call id and a 0-based sub-statement index.
pub(super) fn split_id(id: &str) -> (&str, Option<usize>) {
    match id.rsplit_once(':') {
        Some((base, n)) if n.parse::<usize>().is_ok_and(|n| n >= 1) => {
            (base, n.parse::<usize>().ok().map(|n| n - 1))
        }
        _ => (id, None),
    }
}

pub(super) fn not_found(id: &str) -> Response<Full<Bytes>> {
    reply(
        StatusCode::BAD_REQUEST,
        json!({"__type": "ResourceNotFoundException", "message": format!("Query does not exist: {id}"), "ResourceId": id}),
    )
}

pub(super) fn describe(
    id: &str,
    base: &str,
    sub: Option<usize>,
    c: &Call,
) -> Response<Full<Bytes>> {
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

pub(super) fn result(id: &str, sub: Option<usize>, c: &Call) -> Response<Full<Bytes>> {
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

pub(super) fn cancel(c: &Call) -> Response<Full<Bytes>> {
    let running = matches!(c.status, "SUBMITTED" | "PICKED" | "STARTED");
    if running {
        c.cancel.cancel();
    }
    reply(StatusCode::OK, json!({"Status": running}))
}

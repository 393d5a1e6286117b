//! Running a call in the background on a fresh session, as the service
//! does: SUBMITTED, STARTED, then FINISHED, FAILED or ABORTED; a batch in
//! one transaction.

use super::*;

pub(super) fn submit(
    op: &str,
    input: &Value,
    calls: Calls,
    pg_url: String,
    s3: S3,
) -> Response<Full<Bytes>> {
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
    // Refused as Redshift refuses them: the call fails when it runs.
    let refused = sqls
        .iter()
        .enumerate()
        .find_map(|(n, s)| translate::refused_ddl(s, batch).map(|e| (n, e)));
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
    match refused {
        Some((n, e)) => {
            if let Some(c) = calls.lock().expect("calls lock").get_mut(&id) {
                c.status = "FAILED";
                c.error = Some(format!("ERROR: {e}"));
                c.subs[n].status = "FAILED";
                c.subs[n].error = Some(format!("ERROR: {e}"));
            }
        }
        None => {
            tokio::spawn(run(id.clone(), bound, calls, pg_url, s3, cancel));
        }
    }
    let mut out = json!({"Id": id, "CreatedAt": created});
    if let Some(db) = database {
        out["Database"] = json!(db);
    }
    reply(StatusCode::OK, out)
}

/// Runs a call's statements in one transaction on a fresh session.
pub(super) async fn run(
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

pub(super) type ResultSet = Option<(Vec<Value>, Vec<Vec<Value>>)>;

/// Executes one statement; a statement that returns rows keeps them as
/// Data API `Field`s with `ColumnMetadata`.
pub(super) async fn execute(
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

pub(super) fn db_message(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

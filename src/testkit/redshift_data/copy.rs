//! `COPY … FROM 's3://…'` read from the stand-in S3 server, with the
//! options ferry uses, and its rejected rows recorded where
//! `sys_load_error_detail` has them.

use super::*;

/// A Redshift `COPY … FROM 's3://…'`, as far as this endpoint emulates it.
#[derive(Debug, PartialEq)]
pub(super) struct CopyFromS3 {
    /// `table [(columns)]` as written.
    pub(super) target: String,
    pub(super) bucket: String,
    pub(super) key: String,
    pub(super) manifest: bool,
    pub(super) gzip: bool,
    /// `FORMAT AS PARQUET`: the objects are Parquet, read by position.
    pub(super) parquet: bool,
    pub(super) null_as: Option<String>,
    pub(super) delimiter: Option<String>,
}

/// Words and `'quoted'` strings (`''` inside one is a quote).
pub(super) fn tokens(text: &str) -> Vec<(String, bool)> {
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
pub(super) fn parse_copy(sql: &str) -> Result<Option<CopyFromS3>, String> {
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
        parquet: false,
        null_as: None,
        delimiter: None,
    };
    let (mut csv, mut authorized) = (false, false);
    // Options only a text format takes.
    let mut text_options: Vec<String> = Vec::new();
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
                match f.as_str() {
                    "CSV" => csv = true,
                    "PARQUET" => copy.parquet = true,
                    _ => return Err(format!("FORMAT {f} is not emulated (only CSV and PARQUET)")),
                }
            }
            "NULL" => copy.null_as = Some(value("NULL")?.0),
            "DELIMITER" => copy.delimiter = Some(value("DELIMITER")?.0),
            "TIMEFORMAT" | "DATEFORMAT" | "REGION" => {
                value(word)?;
                text_options.push(word.to_string());
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
    if copy.parquet {
        // Redshift takes few options with a columnar format: the data's
        // own types and compression apply.
        if csv
            || copy.gzip
            || copy.null_as.is_some()
            || copy.delimiter.is_some()
            || !text_options.is_empty()
        {
            return Err(format!(
                "COPY with FORMAT AS PARQUET does not take CSV, GZIP, NULL AS, DELIMITER, TIMEFORMAT, DATEFORMAT or REGION{}",
                if text_options.is_empty() {
                    String::new()
                } else {
                    format!(" (given: {})", text_options.join(", "))
                }
            ));
        }
        copy.null_as = Some(crate::normalize::NULL_MARKER.to_string());
        return Ok(Some(copy));
    }
    if !csv {
        return Err("only CSV COPY is emulated; add CSV".into());
    }
    Ok(Some(copy))
}

/// Runs a [`CopyFromS3`] as `COPY … FROM STDIN` fed from the objects: the
/// manifest's entries (all `mandatory`), or every object under the prefix.
pub(super) async fn copy_from_s3(
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
            // A columnar COPY needs every object's length in its entry.
            if copy.parquet && entry["meta"]["content_length"].as_i64().is_none() {
                return Err(format!(
                    "manifest entry {url} has no meta.content_length, which COPY of Parquet requires"
                ));
            }
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
pub(super) async fn record_load_error(
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

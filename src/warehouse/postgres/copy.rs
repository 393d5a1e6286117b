//! `COPY … FROM STDIN` fed from staged objects in S3: objects read ahead
//! and streamed a chunk at a time, record ends tracked so a COPY error's
//! line is located in its object, and COPY errors kept as error rows.

use super::*;

/// The row a failed COPY rejected: the number of files in the load, the
/// version the row belongs to, the row.
pub(super) type KeptCopyError = (usize, FileVersion, RowError);

/// Staged objects requested ahead of the one being fed to COPY.
pub(super) const OBJECTS_AHEAD: usize = 8;

/// Staged objects up to this size are read whole and gunzipped on the
/// COPY task itself; larger ones stream through a blocking thread.
pub(super) const INLINE_OBJECT: i64 = 256 * 1024;

/// What [`feed_copy`] sent to COPY: each object's key and line count, in
/// order (to say which object a COPY error's line number falls in).
#[derive(Debug, Default)]
pub struct Fed {
    /// Keys, in the order they were fed.
    pub keys: Vec<String>,
    /// Lines sent from each (`keys[i]` sent `lines[i]` lines).
    pub lines: Vec<u64>,
}

/// Feeds S3 objects, one after the other as `keys` yields them, into a
/// started `COPY … FROM STDIN`: a large one is streamed and (with `gzip`)
/// gunzipped on a blocking thread, so memory stays at a few chunks
/// whatever the size. Returns the rows COPY loaded and records in `fed`
/// what went in; with a `suffix` (`,a,b\n`) puts it in place of the line
/// end of every CSV record (not of line breaks inside quotes).
pub async fn feed_copy(
    sink: tokio_postgres::CopyInSink<Bytes>,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    keys: impl futures::Stream<Item = String> + Send,
    gzip: bool,
    fed: &mut Fed,
    suffix: Option<&[u8]>,
) -> Result<u64> {
    use futures::StreamExt;
    futures::pin_mut!(sink);
    // The next few objects are requested while one streams (only their
    // response heads wait; bodies stay in the sockets): many small parts
    // do not pay one round trip each.
    let request = |key: String| {
        let (s3, bucket) = (s3.clone(), bucket.to_string());
        async move {
            let url = format!("s3://{bucket}/{key}");
            let obj = s3
                .get_object()
                .bucket(bucket)
                .key(key.clone())
                .send()
                .await
                .map_err(classified(format!("cannot read staged object {url}")));
            (key, url, obj)
        }
    };
    let objects = keys.map(request).buffered(OBJECTS_AHEAD);
    futures::pin_mut!(objects);
    let lines = &mut fed.lines;
    let mut buf = vec![0u8; 256 * 1024];
    while let Some((key, url, obj)) = objects.next().await {
        let obj = obj?;
        fed.keys.push(key);
        lines.push(0);
        let unreadable = |e: std::io::Error| {
            Error::transient(format!("cannot read staged object {url}")).with_source(e)
        };
        let mut ends = suffix.map(RecordEnds::new);
        // A Parquet part (`stage_format = "parquet"`) is turned back into
        // staged CSV lines: COPY here reads CSV.
        let parquet = fed
            .keys
            .last()
            .is_some_and(|k| crate::stage::is_parquet_part(k));
        if obj.content_length().is_some_and(|n| n <= INLINE_OBJECT) {
            // Small: read whole and gunzip here; a thread hop per 5 KB
            // object costs more than the work.
            let body = obj
                .body
                .collect()
                .await
                .map_err(|e| {
                    Error::transient(format!("cannot read staged object {url}")).with_source(e)
                })?
                .into_bytes();
            if parquet {
                let mut chunks = Vec::new();
                crate::normalize::staged_as_csv(body, |c| {
                    chunks.push(RecordEnds::chunk(&mut ends, c));
                    Ok(())
                })
                .map_err(unreadable)?;
                for chunk in chunks {
                    send_chunk(&mut sink, lines, chunk, &url).await?;
                }
                continue;
            }
            let mut input: Box<dyn Read + Send + '_> = if gzip {
                Box::new(flate2::read::MultiGzDecoder::new(&body[..]))
            } else {
                Box::new(&body[..])
            };
            loop {
                let n = input.read(&mut buf).map_err(unreadable)?;
                if n == 0 {
                    break;
                }
                let chunk = RecordEnds::chunk(&mut ends, &buf[..n]);
                send_chunk(&mut sink, lines, chunk, &url).await?;
            }
            continue;
        }
        let reader = tokio_util::io::SyncIoBridge::new(obj.body.into_async_read());
        let (chunks_tx, mut chunks_rx) =
            tokio::sync::mpsc::channel::<std::io::Result<(Bytes, u64)>>(4);
        let decoder = tokio::task::spawn_blocking(move || {
            if parquet {
                // Its footer is at the end: spooled to disk, then read.
                let converted = tempfile::tempfile().and_then(|mut spool| {
                    let mut reader = reader;
                    std::io::copy(&mut reader, &mut spool)?;
                    crate::normalize::staged_as_csv(spool, |c| {
                        chunks_tx
                            .blocking_send(Ok(RecordEnds::chunk(&mut ends, c)))
                            .map_err(|_| std::io::Error::other("COPY stopped"))
                    })
                });
                if let Err(e) = converted {
                    let _ = chunks_tx.blocking_send(Err(e));
                }
                return;
            }
            let mut input: Box<dyn Read> = if gzip {
                Box::new(flate2::read::MultiGzDecoder::new(reader))
            } else {
                Box::new(reader)
            };
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match input.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        let chunk = RecordEnds::chunk(&mut ends, &buf[..n]);
                        if chunks_tx.blocking_send(Ok(chunk)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = chunks_tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        while let Some(chunk) = chunks_rx.recv().await {
            send_chunk(&mut sink, lines, chunk.map_err(unreadable)?, &url).await?;
        }
        decoder
            .await
            .map_err(|e| Error::transient("the gunzip thread of COPY stopped").with_source(e))?;
    }
    sink.as_mut()
        .finish()
        .await
        .map_err(classified("COPY into the staging table failed"))
}

/// Sends one chunk of a staged object to COPY, counting its lines.
pub(super) async fn send_chunk(
    sink: &mut std::pin::Pin<&mut tokio_postgres::CopyInSink<Bytes>>,
    lines: &mut [u64],
    (chunk, breaks): (Bytes, u64),
    url: &str,
) -> Result<()> {
    if let Some(n) = lines.last_mut() {
        *n += breaks;
    }
    sink.send(chunk)
        .await
        .map_err(classified(format!("COPY from {url} failed")))
}

/// Replaces the line end of every CSV record with a suffix, tracking
/// quotes across chunks (a quote toggles; `""` toggles twice).
pub(super) struct RecordEnds {
    pub(super) suffix: Vec<u8>,
    pub(super) quoted: bool,
}

impl RecordEnds {
    pub(super) fn new(suffix: &[u8]) -> Self {
        RecordEnds {
            suffix: suffix.to_vec(),
            quoted: false,
        }
    }

    /// `data` as a chunk for COPY (completed by `ends` if there is one)
    /// and the number of line breaks in it.
    pub(super) fn chunk(ends: &mut Option<RecordEnds>, data: &[u8]) -> (Bytes, u64) {
        let lines = memchr::memchr_iter(b'\n', data).count();
        let chunk = match ends {
            Some(e) => e.complete(data, lines),
            None => Bytes::copy_from_slice(data),
        };
        (chunk, lines as u64)
    }

    /// `chunk` with each record end replaced; `lines` (its line breaks)
    /// sizes the output once.
    pub(super) fn complete(&mut self, chunk: &[u8], lines: usize) -> Bytes {
        let mut out = Vec::with_capacity(chunk.len() + lines * self.suffix.len());
        let mut start = 0;
        for i in memchr::memchr2_iter(b'"', b'\n', chunk) {
            if chunk[i] == b'"' {
                self.quoted = !self.quoted;
            } else if !self.quoted {
                out.extend_from_slice(&chunk[start..i]);
                out.extend_from_slice(&self.suffix);
                start = i + 1;
            }
        }
        out.extend_from_slice(&chunk[start..]);
        Bytes::from(out)
    }
}

impl PostgresWarehouse {
    /// Streams staged objects from S3, as `keys` yields them, into one
    /// `COPY … FROM STDIN`.
    pub(super) async fn copy_from_s3(
        &self,
        tx: &Transaction<'_>,
        copy_sql: &str,
        keys: impl futures::Stream<Item = String> + Send,
        fed: &mut Fed,
        suffix: Option<&[u8]>,
    ) -> Result<u64> {
        let sink = tx
            .copy_in::<_, Bytes>(copy_sql)
            .await
            .map_err(classified("cannot start COPY into the staging table"))?;
        feed_copy(
            sink,
            self.stager.client(),
            self.stager.bucket(),
            keys,
            true,
            fed,
            suffix,
        )
        .await
    }

    /// Names the staged part, line and column of a failed COPY, and which
    /// of `files` (a version and its part keys) it belongs to, with the
    /// row error.
    pub(super) fn copy_failure(
        &self,
        e: Error,
        files: &[(&FileVersion, &[String])],
        fed: &Fed,
    ) -> (Error, Option<(usize, RowError)>) {
        let chain = e.chain();
        let Some(at) = crate::warehouse::copy_error_at(&chain) else {
            return (e, None);
        };
        let (part, line) = crate::warehouse::locate_line(at.line, &fed.lines);
        let Some(key) = fed.keys.get(part) else {
            return (e, None);
        };
        let owner = files
            .iter()
            .position(|(_, parts)| parts.contains(key))
            .unwrap_or_default();
        let row = RowError {
            line,
            column: at.column,
            code: 1200,
            reason: chain.clone(),
            raw_line: String::new(),
            raw_value: at.value,
        };
        let error = Error::new(
            e.kind(),
            format!(
                "COPY of {} failed at staged part {} {}",
                files[owner].0.path,
                self.stager.url(key),
                row.describe()
            ),
        );
        (error, Some((owner, row)))
    }

    /// COPYs what `keys` yields; a failed COPY names the file (one of
    /// `files`, which gets what was fed), staged part, line and column,
    /// and puts the row error in `keep` ([`crate::ledger::keep_copy_errors`]
    /// decides whether it is kept).
    pub(super) async fn copy<'c>(
        &self,
        open: OpenLoad<'c>,
        keys: impl futures::Stream<Item = String> + Send,
        files: impl FnOnce(&Fed) -> Vec<(FileVersion, Vec<String>)>,
        keep: &mut Option<KeptCopyError>,
    ) -> Result<(OpenLoad<'c>, u64)> {
        let mut fed = Fed::default();
        let copied = self
            .copy_from_s3(
                &open.tx,
                &open.copy_sql,
                keys,
                &mut fed,
                open.suffix.as_deref(),
            )
            .await;
        match copied {
            Ok(n) => Ok((open, n)),
            Err(e) => {
                let mut files = files(&fed);
                let refs: Vec<(&FileVersion, &[String])> =
                    files.iter().map(|(v, p)| (v, p.as_slice())).collect();
                let (error, row) = self.copy_failure(e, &refs, &fed);
                if let Some((owner, row)) = row {
                    let n = files.len();
                    *keep = Some((n, files.swap_remove(owner).0, row));
                }
                Err(error)
            }
        }
    }

    /// Runs `load` (which locks the client itself), then, if its COPY
    /// failed on a row, keeps that error row in the ledger (after the
    /// rollback) as [`crate::ledger::keep_copy_errors`] says.
    pub(super) async fn keeping_copy_errors<T>(
        &self,
        load: impl AsyncFnOnce(&mut Option<KeptCopyError>) -> Result<T>,
    ) -> Result<T> {
        let mut keep = None;
        let result = load(&mut keep).await;
        if let Some((files_in_load, version, row)) = keep {
            crate::ledger::keep_copy_errors(self, files_in_load, &version, &[row]).await;
        }
        result
    }
}

//! `ferry fetch SOURCE PATH`: stream one file from a source through the
//! same resuming download the pipeline uses, hashing it on the way. For an
//! operator checking access, and for the throughput bench.

use crate::config::SourceSettings;
use crate::error::{Error, Result};
use crate::source::{self, resume::Resuming};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncReadExt;

/// What a fetch did.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Bytes read.
    pub bytes: u64,
    /// Wall time of the download (connection set-up excluded).
    pub seconds: f64,
    /// SHA-256, hex (`None` when hashing was turned off).
    pub sha256: Option<String>,
}

/// Downloads `path` from `settings`, writing it to `out` if given. Hashing
/// (unless `hash` is false) and writing run on their own thread, beside the
/// download.
pub async fn fetch(
    settings: &Arc<SourceSettings>,
    path: &str,
    out: Option<&Path>,
    hash: bool,
) -> Result<Fetched> {
    let src = source::connect(settings).await?;
    let mut file = match out {
        Some(p) => Some(std::fs::File::create(p).map_err(|e| {
            Error::permanent(format!("cannot create {}", p.display())).with_source(e)
        })?),
        None => None,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
    let sink = std::thread::spawn(move || -> std::io::Result<Option<String>> {
        let mut hasher = hash.then(Sha256::new);
        while let Some(chunk) = rx.blocking_recv() {
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            if let Some(f) = file.as_mut() {
                f.write_all(&chunk)?;
            }
        }
        if let Some(f) = file.as_mut() {
            f.flush()?;
        }
        Ok(hasher.map(|h| hex::encode(h.finalize())))
    });
    let started = Instant::now();
    let mut stream = Resuming::open(src, path).await?;
    let mut bytes = 0u64;
    loop {
        // Fill most of a 1 MiB buffer before handing it over (fewer,
        // larger chunks), reading into spare capacity without zeroing it.
        let mut buf = bytes::BytesMut::with_capacity(1 << 20);
        while buf.len() < (1 << 19) {
            let n = stream.read_buf(&mut buf).await.map_err(|e| {
                Error::transient(format!("download of {path} failed")).with_source(e)
            })?;
            if n == 0 {
                break;
            }
        }
        if buf.is_empty() {
            break;
        }
        bytes += buf.len() as u64;
        if tx.send(buf.freeze()).await.is_err() {
            break; // the writer failed; its error is reported below
        }
    }
    drop(tx);
    let sha256 = sink
        .join()
        .map_err(|_| Error::permanent("the hashing thread panicked"))?
        .map_err(|e| Error::permanent("cannot write the output file").with_source(e))?;
    Ok(Fetched {
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        sha256,
    })
}

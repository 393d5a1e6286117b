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
    /// SHA-256, hex.
    pub sha256: String,
}

/// Downloads `path` from `settings`, writing it to `out` if given. Hashing
/// and writing run on their own thread, beside the download.
pub async fn fetch(
    settings: &Arc<SourceSettings>,
    path: &str,
    out: Option<&Path>,
) -> Result<Fetched> {
    let src = source::connect(settings).await?;
    let mut file = match out {
        Some(p) => Some(std::fs::File::create(p).map_err(|e| {
            Error::permanent(format!("cannot create {}", p.display())).with_source(e)
        })?),
        None => None,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    let sink = std::thread::spawn(move || -> std::io::Result<String> {
        let mut hasher = Sha256::new();
        while let Some(chunk) = rx.blocking_recv() {
            hasher.update(&chunk);
            if let Some(f) = file.as_mut() {
                f.write_all(&chunk)?;
            }
        }
        if let Some(f) = file.as_mut() {
            f.flush()?;
        }
        Ok(hex::encode(hasher.finalize()))
    });
    let started = Instant::now();
    let mut stream = Resuming::open(src, path).await?;
    let mut bytes = 0u64;
    loop {
        let mut buf = vec![0u8; 1 << 20];
        let mut filled = 0;
        // Fill most of the buffer before handing it over: fewer, larger
        // chunks keep the hashing thread's overhead down.
        while filled < buf.len() / 2 {
            let n = stream.read(&mut buf[filled..]).await.map_err(|e| {
                Error::transient(format!("download of {path} failed")).with_source(e)
            })?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        bytes += filled as u64;
        if tx.send(buf).await.is_err() {
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

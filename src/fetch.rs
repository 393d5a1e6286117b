//! `ferry fetch SOURCE PATH`: stream one file from a source through the
//! same resuming download the pipeline uses, hashing it on the way. For an
//! operator checking access, and for the throughput bench.

use crate::config::SourceSettings;
use crate::error::{Error, Result};
use crate::source::{self, resume::Resuming};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// Downloads `path` from `settings`, writing it to `out` if given.
pub async fn fetch(
    settings: &Arc<SourceSettings>,
    path: &str,
    out: Option<&Path>,
) -> Result<Fetched> {
    let src = source::connect(settings).await?;
    let mut file = match out {
        Some(p) => Some(tokio::fs::File::create(p).await.map_err(|e| {
            Error::permanent(format!("cannot create {}", p.display())).with_source(e)
        })?),
        None => None,
    };
    let started = Instant::now();
    let mut stream = Resuming::open(src, path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| Error::transient(format!("download of {path} failed")).with_source(e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
        if let Some(f) = file.as_mut() {
            f.write_all(&buf[..n])
                .await
                .map_err(|e| Error::permanent("cannot write the output file").with_source(e))?;
        }
    }
    if let Some(mut f) = file {
        f.flush()
            .await
            .map_err(|e| Error::permanent("cannot write the output file").with_source(e))?;
    }
    Ok(Fetched {
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        sha256: hex::encode(hasher.finalize()),
    })
}

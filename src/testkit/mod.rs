//! In-process stand-ins for the servers ferry talks to, for tests and for
//! `ferry-dev-stack`: an S3 server (s3s + s3s-fs), an SFTP server (russh +
//! russh-sftp, backed by a folder) and an FTP server (libunftp, backed by a
//! folder). Each binds `127.0.0.1:0` (or a fixed port for the dev stack)
//! and stops when dropped.
//!
//! Built only with the `testkit` feature; ferry itself never links them.

pub mod ftp;
pub mod proxy;
pub mod s3;
pub mod sftp;

use std::path::{Path, PathBuf};

/// The repository's `testdata/` folder.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// A free TCP port on 127.0.0.1 (for servers that only take an address).
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

//! Integration tests: real PostgreSQL, in-process S3, SFTP and FTP servers,
//! and the `ferry` binary. One test binary for all of them (faster to link).

mod cli;
mod config_file;
mod harness;
mod servers;
mod sftp_to_postgres;

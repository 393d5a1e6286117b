//! Integration tests: real PostgreSQL, in-process S3, SFTP and FTP servers,
//! and the `ferry` binary. One test binary for all of them (faster to link).

// Tests read small files whole to compare them; ferry itself may not.
#![allow(clippy::disallowed_methods)]

mod alerts;
mod archives;
mod audit;
mod bad_input;
mod cli;
mod config_file;
mod conformance;
mod crash;
mod daemon;
mod drift;
mod faults;
mod ftp_source;
mod harness;
mod ops;
mod parquet;
mod real_servers;
mod redshift_data;
mod redshift_sql;
mod replay;
mod replicas;
mod roundtrip;
mod servers;
mod settle_and_sources;
mod sftp_to_postgres;
mod stage;
mod status_page;
mod transforms;

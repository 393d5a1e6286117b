//! ferry moves task-event files from FTP, FTPS, SFTP, S3 and local folders
//! into Amazon Redshift (or PostgreSQL standing in for it), exactly once.
//!
//! # Layout
//!
//! One file's way through the daemon is list → settle → claim → fetch →
//! normalize → stage → load → finalize (see `docs/design.md` and
//! `ARCHITECTURE.md`). Each part is one module:
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the TOML file and `FERRY__…` overrides, parsed into serde structs that reject unknown keys, then validated into domain types; [`config::Secret`] |
//! | [`source`] | listing, settling, streaming and finalizing remote files (`sftp`, `local`, …) behind the [`source::Source`] trait |
//! | [`normalize`] | decoding input (CSV today), mapping and type-checking columns, writing gzip CSV, error rows |
//! | [`stage`] | the S3 client, deterministic staging keys and uploads of staged objects |
//! | [`warehouse`] | the load transaction, SQL rendering with quoted identifiers, the `postgres` backend |
//! | [`ledger`] | the ledger tables: file versions and their states, loads, load errors |
//! | [`migrate`] | versioned, idempotent schema migrations embedded from `migrations/` |
//! | [`pipeline`] | one pass over the jobs: one file's steps in order, with the load-once checks |
//! | [`daemon`] | the long-running poll loop, signals and graceful shutdown |
//! | [`check`] | `ferry check`: connects to every component and reports one line each |
//! | [`fetch`] | `ferry fetch`: one download from a source, timed and hashed |
//! | [`ops`] | the operations commands (`jobs`, `pause`/`resume`, `files`, `errors`, `retry`, `reset`) over the ledger, printed as tables or JSON |
//! | [`cli`] | the command line, resolved into calls of the modules above |
//! | [`telemetry`] | logging set-up and the named events the business code emits |
//! | [`retry`] | retry with exponential backoff and jitter, driven by [`ErrorKind`] |
//! | [`error`] | the crate-level [`Error`] whose [`ErrorKind`] tells a caller to retry, fail the file, or stop |
//! | `testkit` (feature `testkit`) | in-process S3, FTP and SFTP servers for tests and the dev stack |

pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod error;
pub mod fetch;
pub mod ledger;
pub mod migrate;
pub mod normalize;
pub mod ops;
pub mod pipeline;
pub mod retry;
pub mod source;
pub mod stage;
pub mod telemetry;
pub mod warehouse;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::{Error, ErrorKind, Result};

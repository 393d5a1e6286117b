//! ferry moves task-event files from FTP, FTPS, SFTP, S3 and local folders
//! into Amazon Redshift (or PostgreSQL standing in for it), exactly once.
//!
//! # Layout
//!
//! One file's way through the daemon is discover → settle → claim → fetch →
//! normalize → stage → batch → load → finalize (see `docs/design.md` and
//! `ARCHITECTURE.md`). Where each step is:
//!
//! | step | code |
//! |---|---|
//! | discover | `pipeline/discover.rs` (listing each folder), [`source::Source::list`] per kind; with a work queue or S3 events, `pipeline/shared.rs` (the lister sends, every replica receives) |
//! | settle | [`source::settle`] (age, markers, stable polls) |
//! | claim | `pipeline/mod.rs` `to_stage` (what the ledger already has), [`ledger`] |
//! | fetch | `pipeline/file.rs`, [`source::resume`] (resumed, idle-timed downloads) |
//! | normalize | [`normalize`] (decoders, [`schema::coerce`], the gzip CSV writer) |
//! | stage | [`stage`] (keys and uploads) |
//! | batch | `pipeline/batch.rs`, `pipeline/stream.rs` (a large file alone) |
//! | load | [`warehouse`] (`postgres/load.rs`, `redshift/load.rs`), then `pipeline/checks.rs` |
//! | finalize | `pipeline/finish.rs` (on_success, on_failure, failures recorded) |
//!
//! Each part is one module:
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the TOML file and `FERRY__…` overrides, parsed into serde structs that reject unknown keys, then validated into domain types; [`config::Secret`] |
//! | [`source`] | listing, settling, streaming and finalizing remote files (`sftp`, `ftp`/`ftps`, `s3`, `local`) behind the [`source::Source`] trait |
//! | [`normalize`] | decoding CSV, NDJSON, JSON and XML (gzip or not), mapping and type-checking columns, writing gzip CSV parts (in memory while small), error rows |
//! | [`stage`] | deterministic staging keys and uploads of staged objects |
//! | [`warehouse`] | the load transaction (whole or streamed), SQL rendering with quoted identifiers, the `postgres` and `redshift-data` backends |
//! | [`ledger`] | the ledger, written once for both backends over the [`ledger::LedgerStore`] seam: file versions and their states, failures and error rows, loads, checks, migrations, and ([`ledger::reports`]) the reports and writes behind the operations commands |
//! | [`migrate`] | versioned, idempotent schema migrations embedded from `migrations/` |
//! | [`pipeline`] | a pass over a job: one file's steps in order with the load-once checks, batches, streamed loads of large files, post-load checks, the staging/transfer/load slots |
//! | [`queue`] | SQS: the work queue's messages, S3 event notifications, and the messages a replica holds with their heartbeat ([`queue::claims`]) |
//! | [`daemon`] | one poll loop per job (and a receive loop with a work queue), signals and graceful shutdown, the HTTP listener (`/healthz` `/readyz` `/metrics` and the [`daemon::status`] page), systemd notify |
//! | [`alerts`] | `[[alerts]]`: events raised by the pipeline, lag and unreachable sources watched, digests, webhook and SNS delivery with retries |
//! | [`commands`] | the commands that are not the pipeline: `ferry check` (one line per component), `ferry fetch` (one timed download), and the operations commands over the ledger (`jobs`, `pause`/`resume`, `files`, `errors`, `retry`, `reset`) |
//! | [`cli`] | the command line, resolved into calls of the modules above |
//! | [`telemetry`] | logging set-up, the named events the business code emits, and the metrics they update |
//! | [`sql`] | validated identifiers ([`sql::Ident`]), the two dialects' differences ([`sql::Dialect`]), and [`sql::bind`]: placeholders in SQL text (`$n`, `:name`) found outside literals, quoted names and comments; errors, never panics |
//! | [`schema`] | a job's column schema (types, value sources, time zones) and the coercion of every value to its column type |
//! | [`aws`] | the AWS SDK configuration (deadlines on every attempt), the S3 client, SDK errors as [`ErrorKind`]s |
//! | [`tls`] | the certificate authorities FTPS, PostgreSQL's `verify-full` and alert webhooks trust |
//! | [`retry`] | retry with exponential backoff and jitter, driven by [`ErrorKind`], with one named policy per kind of work (connect, list, fetch, resume, upload, load, poll) |
//! | [`rng`] | jitter, and a seedable generator for replayable randomized tests |
//! | [`error`] | the crate-level [`Error`] whose [`ErrorKind`] tells a caller to retry, fail the file, or stop |
//! | `testkit` (feature `testkit`) | in-process S3, FTP and SFTP servers for tests and the dev stack |

pub mod alerts;
pub mod aws;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod error;
pub mod ledger;
pub mod migrate;
pub mod normalize;
pub mod pipeline;
pub mod queue;
pub mod retry;
pub mod rng;
pub mod schema;
pub mod source;
pub mod sql;
pub mod stage;
pub mod telemetry;
pub mod tls;
pub mod warehouse;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::{Error, ErrorKind, Result};

//! Configuration: a TOML file plus `FERRY__SECTION__KEY` environment
//! overrides, read into the serde structs of [`raw`] (unknown keys are
//! errors) and then validated into the domain types of [`model`].
//!
//! Every error names the key path (`jobs[0].columns[2].type`, `staging.sse`)
//! and what is wrong with it.

pub mod model;
pub mod raw;
mod secret;

pub use model::*;
pub use secret::{Secret, resolve as resolve_secret};

use crate::error::{Error, Result};
use crate::schema::{Column, ColumnSource, ColumnType, Zone};
use crate::sql::Ident;
use raw::*;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Prefix of environment overrides: `FERRY__DAEMON__POLL_INTERVAL=5s`.
pub const ENV_PREFIX: &str = "FERRY";

/// Reads `path`, applies environment overrides and validates the result.
pub fn load(path: &Path) -> Result<Config> {
    let raw = read_raw(path)?;
    validate(raw)
}

/// Reads the file and environment overrides into the raw structs.
pub fn read_raw(path: &Path) -> Result<RawConfig> {
    if !path.exists() {
        return Err(Error::config(format!(
            "config file {} does not exist (pass --config PATH or set FERRY_CONFIG)",
            path.display()
        )));
    }
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()
        .map_err(|e| Error::config(format!("cannot read config {}: {e}", path.display())))?;
    built
        .try_deserialize::<RawConfig>()
        .map_err(|e| Error::config(format!("invalid config {}: {e}", path.display())))
}

/// Parses a TOML string (no environment overrides); for tests and tools.
pub fn from_toml_str(text: &str) -> Result<Config> {
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| Error::config(format!("cannot read config: {e}")))?;
    let raw = built
        .try_deserialize::<RawConfig>()
        .map_err(|e| Error::config(format!("invalid config: {e}")))?;
    validate(raw)
}

/// Parses `250ms`, `30s`, `5m`, `2h`, `1d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (expected e.g. 500ms, 30s, 5m, 2h)"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit (use ms, s, m, h or d)"
            ));
        }
    };
    Ok(d)
}

/// Parses `4MiB`, `512KB`, `1GiB`, `100` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size (expected e.g. 4MiB, 512KB, 1GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit (use B, KB, KiB, MB, MiB, GB or GiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Collects validation errors so that one run reports all of them.
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, path: impl AsRef<str>, message: impl AsRef<str>) {
        self.0
            .push(format!("{}: {}", path.as_ref(), message.as_ref()));
    }

    fn take<T>(&mut self, path: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(path, e);
                None
            }
        }
    }

    /// For errors that already start with their key path.
    fn take_pathed<T>(&mut self, r: Result<T, String>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }
}

/// Validates the raw structs into a [`Config`], reporting every problem.
pub fn validate(raw: RawConfig) -> Result<Config> {
    let mut p = Problems(Vec::new());

    let daemon = validate_daemon(&raw.daemon, &mut p);
    let staging = validate_staging(&raw.staging, &mut p);
    let warehouse = validate_warehouse(&raw.warehouse, &mut p);

    let mut sources = BTreeMap::new();
    for (name, rs) in &raw.sources {
        if let Some(s) = validate_source(name, rs, &mut p) {
            sources.insert(name.clone(), Arc::new(s));
        }
    }

    let mut jobs = Vec::new();
    let mut names = HashSet::new();
    let default_poll = daemon
        .as_ref()
        .map_or(Duration::from_secs(30), |d| d.poll_interval);
    for (i, rj) in raw.jobs.iter().enumerate() {
        let path = format!("jobs[{i}]");
        if !names.insert(rj.name.clone()) {
            p.push(
                format!("{path}.name"),
                format!("job {:?} is defined twice", rj.name),
            );
        }
        if let Some(job) = validate_job(&path, rj, &raw.sources, &sources, default_poll, &mut p) {
            jobs.push(Arc::new(job));
        }
    }

    if !p.0.is_empty() {
        return Err(Error::config(format!(
            "invalid configuration:\n  - {}",
            p.0.join("\n  - ")
        )));
    }
    Ok(Config {
        daemon: daemon.expect("no problems means daemon is valid"),
        staging: staging.expect("no problems means staging is valid"),
        warehouse: warehouse.expect("no problems means warehouse is valid"),
        sources,
        jobs,
    })
}

fn validate_daemon(d: &RawDaemon, p: &mut Problems) -> Option<DaemonSettings> {
    let poll_interval = p.take("daemon.poll_interval", parse_duration(&d.poll_interval));
    let grace_period = p.take("daemon.grace_period", parse_duration(&d.grace_period));
    if d.concurrency == 0 {
        p.push("daemon.concurrency", "must be at least 1");
    }
    if d.max_concurrent_loads == 0 {
        p.push("daemon.max_concurrent_loads", "must be at least 1");
    }
    let http_listen = if d.http_listen.trim().is_empty() {
        Some(None)
    } else {
        p.take(
            "daemon.http_listen",
            d.http_listen
                .parse()
                .map(Some)
                .map_err(|_| format!("{:?} is not an address like 127.0.0.1:9187", d.http_listen)),
        )
    };
    let log_format = match d.log_format.as_str() {
        "text" => Some(LogFormat::Text),
        "json" => Some(LogFormat::Json),
        other => {
            p.push(
                "daemon.log_format",
                format!("{other:?}: expected text or json"),
            );
            None
        }
    };
    let stuck_after = p.take("daemon.stuck_after", timeout(&d.stuck_after));
    Some(DaemonSettings {
        stuck_after: stuck_after?,
        poll_interval: poll_interval?,
        concurrency: d.concurrency.max(1),
        max_concurrent_loads: d.max_concurrent_loads.max(1),
        grace_period: grace_period?,
        http_listen: http_listen?,
        log_format: log_format?,
    })
}

/// The S3 connection keys shared by `[staging]` and `kind = "s3"` sources.
struct S3Keys<'a> {
    region: &'a str,
    endpoint: &'a Option<String>,
    path_style: bool,
    access_key_id: &'a Option<String>,
    secret_env: &'a Option<String>,
    secret_file: &'a Option<String>,
    checksums: &'a str,
    io_timeout: &'a str,
}

fn s3_endpoint(path: &str, k: S3Keys<'_>, p: &mut Problems) -> Option<S3Endpoint> {
    let S3Keys {
        region,
        endpoint,
        path_style,
        access_key_id,
        secret_env,
        secret_file,
        checksums,
        io_timeout,
    } = k;
    let io_timeout = p.take(&format!("{path}.io_timeout"), timeout(io_timeout))?;
    let secret = p.take_pathed(secret::resolve(
        &format!("{path}.secret_access_key"),
        secret_env.as_deref(),
        secret_file.as_deref(),
    ))?;
    let credentials = match (access_key_id, secret) {
        (Some(id), Some(secret)) => Some((id.clone(), secret)),
        (None, None) => None,
        (Some(_), None) => {
            p.push(
                format!("{path}.access_key_id"),
                "is set without secret_access_key_env or secret_access_key_file",
            );
            return None;
        }
        (None, Some(_)) => {
            p.push(
                format!("{path}.secret_access_key_env"),
                "is set without access_key_id",
            );
            return None;
        }
    };
    if let Some(ep) = endpoint
        && !(ep.starts_with("http://") || ep.starts_with("https://"))
    {
        p.push(
            format!("{path}.endpoint"),
            format!("{ep:?} must start with http:// or https://"),
        );
    }
    let checksums = match checksums {
        "auto" if endpoint.is_some() => Checksums::WhenRequired,
        "auto" | "when_supported" => Checksums::WhenSupported,
        "when_required" => Checksums::WhenRequired,
        other => {
            p.push(
                format!("{path}.checksums"),
                format!("{other:?}: expected auto, when_supported or when_required"),
            );
            return None;
        }
    };
    Some(S3Endpoint {
        region: region.to_string(),
        endpoint: endpoint.clone(),
        path_style,
        credentials,
        checksums,
        io_timeout,
    })
}

/// A network deadline: a duration of at least a second.
fn timeout(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_secs(1) {
        return Err(format!("{text:?}: at least 1s"));
    }
    Ok(d)
}

fn validate_staging(s: &RawStaging, p: &mut Problems) -> Option<StagingSettings> {
    if s.bucket.trim().is_empty() {
        p.push("staging.bucket", "must not be empty");
    }
    let sse = match s.sse.to_ascii_lowercase().as_str() {
        "none" => Some(Sse::None),
        "aes256" => Some(Sse::Aes256),
        "aws:kms" => Some(Sse::Kms(s.kms_key_id.clone())),
        other => {
            p.push(
                "staging.sse",
                format!("{other:?}: expected none, aes256 or aws:kms"),
            );
            None
        }
    };
    if s.kms_key_id.is_some() && !matches!(sse, Some(Sse::Kms(_))) {
        p.push("staging.kms_key_id", "is only used with sse = \"aws:kms\"");
    }
    let s3 = s3_endpoint(
        "staging",
        S3Keys {
            region: &s.region,
            endpoint: &s.endpoint,
            path_style: s.path_style,
            access_key_id: &s.access_key_id,
            secret_env: &s.secret_access_key_env,
            secret_file: &s.secret_access_key_file,
            checksums: &s.checksums,
            io_timeout: &s.io_timeout,
        },
        p,
    );
    let part = p.take(
        "staging.multipart_part_size",
        parse_size(&s.multipart_part_size),
    );
    let part = match part {
        Some(n) if n < 5 << 20 => {
            p.push(
                "staging.multipart_part_size",
                format!("{n} bytes is below S3's minimum part size of 5MiB"),
            );
            None
        }
        Some(n) if n > 5 << 30 => {
            p.push(
                "staging.multipart_part_size",
                "must be at most 5GiB (S3's largest part)",
            );
            None
        }
        other => other,
    };
    Some(StagingSettings {
        bucket: s.bucket.clone(),
        prefix: s.prefix.trim_matches('/').to_string(),
        s3: s3?,
        sse: sse?,
        multipart_part_size: part?,
    })
}

fn validate_warehouse(w: &RawWarehouse, p: &mut Problems) -> Option<WarehouseSettings> {
    match w {
        RawWarehouse::Postgres(pg) => {
            let password = p.take_pathed(secret::resolve(
                "warehouse.password",
                pg.password_env.as_deref(),
                pg.password_file.as_deref(),
            ));
            let schema = p.take("warehouse.schema", Ident::parse(&pg.schema));
            let connect_timeout = p.take(
                "warehouse.connect_timeout",
                parse_duration(&pg.connect_timeout),
            );
            let statement_timeout = p.take(
                "warehouse.statement_timeout",
                timeout(&pg.statement_timeout),
            );
            let lock_timeout = p.take("warehouse.lock_timeout", timeout(&pg.lock_timeout));
            let sslmode = match pg.sslmode.as_str() {
                "disable" => Some(PgSslMode::Disable),
                "prefer" => Some(PgSslMode::Prefer),
                "require" => Some(PgSslMode::Require),
                "verify-full" => Some(PgSslMode::VerifyFull),
                other => {
                    p.push(
                        "warehouse.sslmode",
                        format!("{other:?}: expected disable, prefer, require or verify-full"),
                    );
                    None
                }
            };
            if pg.ca_file.is_some() && sslmode != Some(PgSslMode::VerifyFull) {
                p.push(
                    "warehouse.ca_file",
                    "is only used with sslmode = \"verify-full\"",
                );
            }
            Some(WarehouseSettings::Postgres(PostgresSettings {
                host: pg.host.clone(),
                port: pg.port,
                user: pg.user.clone(),
                database: pg.database.clone(),
                password: password?,
                schema: schema?,
                connect_timeout: connect_timeout?,
                statement_timeout: statement_timeout?,
                lock_timeout: lock_timeout?,
                sslmode: sslmode?,
                ca_file: pg.ca_file.clone(),
            }))
        }
        RawWarehouse::RedshiftData(r) => {
            let schema = p.take("warehouse.schema", Ident::parse(&r.schema));
            let target = match (
                &r.cluster_identifier,
                &r.workgroup_name,
                &r.db_user,
                &r.secret_arn,
            ) {
                (Some(c), None, Some(u), None) => Some(RedshiftTarget::ClusterDbUser {
                    cluster: c.clone(),
                    db_user: u.clone(),
                }),
                (Some(c), None, None, Some(s)) => Some(RedshiftTarget::ClusterSecret {
                    cluster: c.clone(),
                    secret_arn: s.clone(),
                }),
                (None, Some(w), None, s) => Some(RedshiftTarget::Workgroup {
                    workgroup: w.clone(),
                    secret_arn: s.clone(),
                }),
                (Some(_), Some(_), _, _) => {
                    p.push(
                        "warehouse.workgroup_name",
                        "set either cluster_identifier or workgroup_name, not both",
                    );
                    None
                }
                (None, None, _, _) => {
                    p.push(
                        "warehouse.cluster_identifier",
                        "set cluster_identifier (provisioned) or workgroup_name (serverless)",
                    );
                    None
                }
                (Some(_), None, None, None) => {
                    p.push(
                        "warehouse.db_user",
                        "a provisioned cluster needs db_user or secret_arn",
                    );
                    None
                }
                (Some(_), None, Some(_), Some(_)) => {
                    p.push(
                        "warehouse.secret_arn",
                        "set db_user or secret_arn, not both",
                    );
                    None
                }
                (None, Some(_), Some(_), _) => {
                    p.push(
                        "warehouse.db_user",
                        "serverless workgroups take secret_arn or IAM, not db_user",
                    );
                    None
                }
            };
            if !r.iam_role.starts_with("arn:aws") && r.iam_role != "default" {
                p.push(
                    "warehouse.iam_role",
                    format!("{:?} must be an IAM role ARN or \"default\"", r.iam_role),
                );
            }
            // The same key rules as S3's; the Data API endpoint is checked
            // for its scheme there too.
            let keys = s3_endpoint(
                "warehouse",
                S3Keys {
                    region: &r.region,
                    endpoint: &r.endpoint,
                    path_style: false,
                    access_key_id: &r.access_key_id,
                    secret_env: &r.secret_access_key_env,
                    secret_file: &r.secret_access_key_file,
                    checksums: "auto",
                    io_timeout: &r.io_timeout,
                },
                p,
            );
            let statement_timeout = p.take(
                "warehouse.statement_timeout",
                parse_duration(&r.statement_timeout),
            );
            Some(WarehouseSettings::RedshiftData(RedshiftDataSettings {
                region: r.region.clone(),
                target: target?,
                database: r.database.clone(),
                iam_role: r.iam_role.clone(),
                endpoint: r.endpoint.clone(),
                schema: schema?,
                io_timeout: keys.as_ref().map(|k| k.io_timeout)?,
                credentials: keys?.credentials,
                statement_timeout: statement_timeout?,
            }))
        }
    }
}

fn validate_name(path: &str, name: &str, p: &mut Problems) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        p.push(
            path,
            format!("{name:?}: names use lowercase letters, digits, - and _ (at most 64)"),
        );
    }
}

fn validate_source(name: &str, s: &RawSource, p: &mut Problems) -> Option<SourceSettings> {
    let path = format!("sources.{name}");
    validate_name(&path, name, p);
    let kind = match s {
        RawSource::Sftp(r) => {
            let password = p.take_pathed(secret::resolve(
                &format!("{path}.password"),
                r.password_env.as_deref(),
                r.password_file.as_deref(),
            ))?;
            let passphrase = p.take_pathed(secret::resolve(
                &format!("{path}.private_key_passphrase"),
                r.private_key_passphrase_env.as_deref(),
                r.private_key_passphrase_file.as_deref(),
            ))?;
            let auth = match (&r.private_key_file, password) {
                (Some(file), None) => SftpAuth::Key {
                    file: file.clone(),
                    passphrase,
                },
                (None, Some(pw)) => SftpAuth::Password(pw),
                (Some(_), Some(_)) => {
                    p.push(
                        format!("{path}.private_key_file"),
                        "set a private key or a password, not both",
                    );
                    return None;
                }
                (None, None) => {
                    p.push(
                        format!("{path}.private_key_file"),
                        "set private_key_file or password_env/password_file",
                    );
                    return None;
                }
            };
            let host_key = match (
                &r.known_hosts_file,
                &r.host_key_fingerprint,
                r.accept_any_host_key,
            ) {
                (Some(f), None, false) => HostKeyPolicy::KnownHosts(f.clone()),
                (None, Some(fp), false) => {
                    if !fp.starts_with("SHA256:") {
                        p.push(
                            format!("{path}.host_key_fingerprint"),
                            format!(
                                "{fp:?} must look like SHA256:… (ssh-keygen -lf KEY prints it)"
                            ),
                        );
                    }
                    HostKeyPolicy::Fingerprint(fp.trim_end_matches('=').to_string())
                }
                (None, None, true) => HostKeyPolicy::AcceptAny,
                (None, None, false) => {
                    p.push(format!("{path}.known_hosts_file"), "set known_hosts_file or host_key_fingerprint so the server's key can be checked (accept_any_host_key = true turns the check off)");
                    return None;
                }
                _ => {
                    p.push(format!("{path}.known_hosts_file"), "set only one of known_hosts_file, host_key_fingerprint and accept_any_host_key");
                    return None;
                }
            };
            if r.reads_in_flight == 0 || r.reads_in_flight > 256 {
                p.push(format!("{path}.reads_in_flight"), "must be 1 to 256");
            }
            SourceKind::Sftp(SftpSettings {
                host: r.host.clone(),
                port: r.port,
                user: r.user.clone(),
                auth,
                host_key,
                connect_timeout: p.take(
                    &format!("{path}.connect_timeout"),
                    parse_duration(&r.connect_timeout),
                )?,
                io_timeout: p.take(&format!("{path}.io_timeout"), timeout(&r.io_timeout))?,
                reads_in_flight: r.reads_in_flight.clamp(1, 256),
            })
        }
        RawSource::Ftp(r) | RawSource::Ftps(r) => {
            let tls = matches!(s, RawSource::Ftps(_));
            if !tls && (r.implicit_tls || r.ca_file.is_some()) {
                p.push(
                    format!("{path}.implicit_tls"),
                    "TLS options need kind = \"ftps\"",
                );
            }
            let password = p.take_pathed(secret::resolve(
                &format!("{path}.password"),
                r.password_env.as_deref(),
                r.password_file.as_deref(),
            ))?;
            let data_mode = match r.data_mode.as_str() {
                "epsv" => FtpDataMode::Epsv,
                "pasv" => FtpDataMode::Pasv,
                "active" => FtpDataMode::Active,
                other => {
                    p.push(
                        format!("{path}.data_mode"),
                        format!("{other:?}: expected epsv, pasv or active"),
                    );
                    return None;
                }
            };
            SourceKind::Ftp(FtpSettings {
                data_mode,
                host: r.host.clone(),
                port: r.port.unwrap_or(if r.implicit_tls { 990 } else { 21 }),
                user: r.user.clone(),
                password,
                tls: tls.then(|| FtpTls {
                    implicit: r.implicit_tls,
                    ca_file: r.ca_file.clone(),
                }),
                connect_timeout: p.take(
                    &format!("{path}.connect_timeout"),
                    parse_duration(&r.connect_timeout),
                )?,
                io_timeout: p.take(&format!("{path}.io_timeout"), timeout(&r.io_timeout))?,
            })
        }
        RawSource::S3(r) => SourceKind::S3 {
            bucket: r.bucket.clone(),
            s3: s3_endpoint(
                &path,
                S3Keys {
                    region: &r.region,
                    endpoint: &r.endpoint,
                    path_style: r.path_style,
                    access_key_id: &r.access_key_id,
                    secret_env: &r.secret_access_key_env,
                    secret_file: &r.secret_access_key_file,
                    checksums: "auto",
                    io_timeout: &r.io_timeout,
                },
                p,
            )?,
        },
        RawSource::Local(r) => SourceKind::Local {
            root: r.root.clone(),
        },
    };
    let max_transfers = match s {
        RawSource::Sftp(r) => r.max_transfers,
        RawSource::Ftp(r) | RawSource::Ftps(r) => r.max_transfers,
        RawSource::S3(r) => r.max_transfers,
        RawSource::Local(r) => r.max_transfers,
    };
    if !(1..=64).contains(&max_transfers) {
        p.push(format!("{path}.max_transfers"), "must be 1 to 64");
    }
    Some(SourceSettings {
        name: name.to_string(),
        max_transfers: max_transfers.clamp(1, 64),
        kind,
    })
}

fn glob(path: &str, pattern: &str, p: &mut Problems) -> Option<globset::Glob> {
    p.take(
        path,
        globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("{pattern:?} is not a valid glob: {e}")),
    )
}

fn glob_set(path: &str, patterns: &[String], p: &mut Problems) -> Option<globset::GlobSet> {
    let mut b = globset::GlobSetBuilder::new();
    for (i, pat) in patterns.iter().enumerate() {
        b.add(glob(&format!("{path}[{i}]"), pat, p)?);
    }
    p.take(path, b.build().map_err(|e| e.to_string()))
}

fn validate_job(
    path: &str,
    j: &RawJob,
    raw_sources: &BTreeMap<String, RawSource>,
    sources: &BTreeMap<String, Arc<SourceSettings>>,
    default_poll: Duration,
    p: &mut Problems,
) -> Option<Job> {
    validate_name(&format!("{path}.name"), &j.name, p);
    let poll_interval = match &j.poll_interval {
        Some(text) => p.take(&format!("{path}.poll_interval"), parse_duration(text)),
        None => Some(default_poll),
    };
    let source = match sources.get(&j.source) {
        Some(s) => Some(s.clone()),
        None if raw_sources.contains_key(&j.source) => None, // already reported
        None => {
            let known: Vec<&str> = raw_sources.keys().map(String::as_str).collect();
            p.push(
                format!("{path}.source"),
                format!(
                    "no source named {:?} (defined: {})",
                    j.source,
                    known.join(", ")
                ),
            );
            None
        }
    };
    let pattern = glob(&format!("{path}.pattern"), &j.pattern, p).map(|g| g.compile_matcher());
    let exclude = glob_set(&format!("{path}.exclude"), &j.exclude, p);
    let target = p.take(&format!("{path}.target"), Ident::parse(&j.target));
    let mode = match j.mode.as_str() {
        "merge" => Some(LoadMode::Merge),
        "append" => Some(LoadMode::Append),
        other => {
            p.push(
                format!("{path}.mode"),
                format!("{other:?}: expected merge or append"),
            );
            None
        }
    };
    let format = match &j.format {
        RawFormat::Csv(c) => {
            let byte = |key: &str, s: &str, p: &mut Problems| -> Option<u8> {
                match s.as_bytes() {
                    [b] if b.is_ascii() => Some(*b),
                    _ => {
                        p.push(
                            format!("{path}.format.{key}"),
                            format!("{s:?} must be one ASCII character"),
                        );
                        None
                    }
                }
            };
            let delimiter = byte("delimiter", &c.delimiter, p);
            let quote = byte("quote", &c.quote, p);
            let escape = match &c.escape {
                Some(e) => byte("escape", e, p).map(Some),
                None => Some(None),
            };
            if !c.header && c.field_names.is_empty() {
                p.push(
                    format!("{path}.format.field_names"),
                    "a file without a header needs field_names",
                );
            }
            let encoding = match c.encoding.to_ascii_lowercase().replace('_', "-").as_str() {
                "utf-8" | "utf8" => Some(TextEncoding::Utf8),
                "latin-1" | "latin1" | "iso-8859-1" => Some(TextEncoding::Latin1),
                "windows-1252" | "cp1252" => Some(TextEncoding::Windows1252),
                other => {
                    p.push(
                        format!("{path}.format.encoding"),
                        format!("{other:?}: expected utf-8, latin-1 or windows-1252"),
                    );
                    None
                }
            };
            Some(Format::Csv(CsvFormat {
                delimiter: delimiter?,
                quote: quote?,
                header: c.header,
                field_names: c.field_names.clone(),
                escape: escape?,
                encoding: encoding?,
            }))
        }
        RawFormat::Ndjson(_) => Some(Format::Ndjson),
        RawFormat::Xml(x) => {
            let parts: Vec<String> = x
                .record_path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            if parts.is_empty() {
                p.push(
                    format!("{path}.format.record_path"),
                    "name the record elements from the root, e.g. /export/events/event",
                );
                None
            } else {
                Some(Format::Xml { record_path: parts })
            }
        }
        RawFormat::Json(r) => Some(Format::Json {
            records_path: r
                .records_path
                .as_deref()
                .unwrap_or("")
                .split(['/', '.'])
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        }),
    };
    let max_errors = match &j.max_errors {
        RawMaxErrors::Count(n) => Some(MaxErrors::Count(*n)),
        RawMaxErrors::Text(t) => {
            match t.trim().strip_suffix('%').map(|n| n.trim().parse::<f64>()) {
                Some(Ok(pct)) if (0.0..=100.0).contains(&pct) => Some(MaxErrors::Percent(pct)),
                _ => {
                    p.push(
                        format!("{path}.max_errors"),
                        format!("{t:?}: expected a count like 10 or a percentage like \"2%\""),
                    );
                    None
                }
            }
        }
    };
    if !(1..=9).contains(&j.gzip_level) {
        p.push(
            format!("{path}.gzip_level"),
            "must be 1 (fast) to 9 (small)",
        );
    }
    let part_size = p.take(&format!("{path}.part_size"), parse_size(&j.part_size));
    if part_size == Some(0) {
        p.push(format!("{path}.part_size"), "must be more than 0 bytes");
    }
    if !(1..=64).contains(&j.concurrency) {
        p.push(format!("{path}.concurrency"), "must be 1 to 64");
    }
    if j.batch.max_files == 0 {
        p.push(format!("{path}.batch.max_files"), "must be at least 1");
    }
    let batch_bytes = p.take(
        &format!("{path}.batch.max_bytes"),
        parse_size(&j.batch.max_bytes),
    );
    let batch_wait = p.take(
        &format!("{path}.batch.max_wait"),
        parse_duration(&j.batch.max_wait),
    );
    let limits = {
        let l = &j.limits;
        let rec = p.take(
            &format!("{path}.limits.max_record_bytes"),
            parse_size(&l.max_record_bytes),
        );
        let dec = p.take(
            &format!("{path}.limits.max_decompressed_bytes"),
            parse_size(&l.max_decompressed_bytes),
        );
        if l.max_compression_ratio < 2 {
            p.push(
                format!("{path}.limits.max_compression_ratio"),
                "must be at least 2",
            );
        }
        match (rec, dec) {
            (Some(max_record_bytes), Some(max_decompressed_bytes)) => Some(Limits {
                max_record_bytes,
                max_decompressed_bytes,
                max_compression_ratio: l.max_compression_ratio,
                max_xml_depth: l.max_xml_depth.max(1),
            }),
            _ => None,
        }
    };

    let mut columns = Vec::new();
    let mut seen = HashSet::new();
    for (i, rc) in j.columns.iter().enumerate() {
        let cpath = format!("{path}.columns[{i}]");
        let Some(name) = p.take(&format!("{cpath}.name"), Ident::parse(&rc.name)) else {
            continue;
        };
        if !seen.insert(name.clone()) {
            p.push(
                format!("{cpath}.name"),
                format!("column {name} is listed twice"),
            );
        }
        let column_type = p.take(&format!("{cpath}.type"), ColumnType::parse(&rc.column_type));
        let source = match (&rc.source, &rc.derived, &rc.constant) {
            (Some(s), None, None) => Some(ColumnSource::Field(s.clone())),
            (None, None, None) => Some(ColumnSource::Field(rc.name.clone())),
            (None, Some(d), None) => match d.as_str() {
                "source_file" => Some(ColumnSource::SourceFile),
                "source_line" => Some(ColumnSource::SourceLine),
                "ingest_time" => Some(ColumnSource::IngestTime),
                other => {
                    p.push(
                        format!("{cpath}.derived"),
                        format!("{other:?}: expected source_file, source_line or ingest_time"),
                    );
                    None
                }
            },
            (None, None, Some(c)) => Some(ColumnSource::Constant(c.clone())),
            _ => {
                p.push(
                    format!("{cpath}.source"),
                    "set only one of source, derived and constant",
                );
                None
            }
        };
        if let (Some(ty), Some(ColumnSource::Constant(c))) = (column_type, &source)
            && let Err(e) = crate::schema::coerce(c, ty)
        {
            p.push(format!("{cpath}.constant"), e.reason);
        }
        if let (Some(ty), Some(d)) = (column_type, &rc.default)
            && let Err(e) = crate::schema::coerce(d, ty)
        {
            p.push(format!("{cpath}.default"), e.reason);
        }
        let zone = match rc.timezone.as_deref() {
            None => Some(Zone::utc()),
            Some(tz) => p.take(&format!("{cpath}.timezone"), Zone::parse(tz)),
        };
        if !rc.formats.is_empty()
            && !matches!(
                column_type,
                Some(ColumnType::Timestamp | ColumnType::Timestamptz)
            )
        {
            p.push(
                format!("{cpath}.formats"),
                "formats apply to timestamp and timestamptz columns",
            );
        }
        let truncate = match rc.on_overflow.as_str() {
            "reject" => false,
            "truncate" => true,
            other => {
                p.push(
                    format!("{cpath}.on_overflow"),
                    format!("{other:?}: expected reject or truncate"),
                );
                false
            }
        };
        if let (Some(name), Some(column_type), Some(source), Some(zone)) =
            (Some(name), column_type, source, zone)
        {
            columns.push(Column {
                name,
                source,
                column_type,
                required: rc.required,
                default: rc.default.clone(),
                trim: rc.trim,
                formats: rc.formats.clone(),
                zone,
                truncate,
            });
        }
    }
    if j.columns.is_empty() {
        p.push(format!("{path}.columns"), "a job needs at least one column");
    }
    let column_names: HashSet<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let mut key = Vec::new();
    for (i, k) in j.key.iter().enumerate() {
        if let Some(id) = p.take(&format!("{path}.key[{i}]"), Ident::parse(k)) {
            if !column_names.contains(id.as_str()) {
                p.push(
                    format!("{path}.key[{i}]"),
                    format!("{id} is not one of the job's columns"),
                );
            }
            key.push(id);
        }
    }
    if mode == Some(LoadMode::Merge) && j.key.is_empty() {
        p.push(
            format!("{path}.key"),
            "mode = \"merge\" needs key columns (or use mode = \"append\")",
        );
    }
    let order_by = j.order_by.as_ref().and_then(|o| {
        let id = p.take(&format!("{path}.order_by"), Ident::parse(o))?;
        if !column_names.contains(id.as_str()) {
            p.push(
                format!("{path}.order_by"),
                format!("{id} is not one of the job's columns"),
            );
        }
        Some(id)
    });

    let mut dimensions = Vec::new();
    for (i, d) in j.dimensions.iter().enumerate() {
        let dpath = format!("{path}.dimensions[{i}]");
        let table = p.take(&format!("{dpath}.table"), Ident::parse(&d.table));
        let dkey = p.take(&format!("{dpath}.key"), Ident::parse(&d.key));
        if let Some(k) = &dkey
            && !column_names.contains(k.as_str())
        {
            p.push(
                format!("{dpath}.key"),
                format!("{k} is not one of the job's columns"),
            );
        }
        let mut cols = Vec::new();
        for (ci, c) in d.columns.iter().enumerate() {
            let name = p.take(
                &format!("{dpath}.columns[{ci}].name"),
                Ident::parse(&c.name),
            );
            let from = p.take(
                &format!("{dpath}.columns[{ci}].from"),
                Ident::parse(c.from.as_deref().unwrap_or(&c.name)),
            );
            if let Some(f) = &from
                && !column_names.contains(f.as_str())
            {
                p.push(
                    format!("{dpath}.columns[{ci}].from"),
                    format!("{f} is not one of the job's columns"),
                );
            }
            if let (Some(n), Some(f)) = (name, from) {
                cols.push((n, f));
            }
        }
        let scd2 = match d.history.as_str() {
            "scd1" => Some(None),
            "scd2" => {
                let mut id =
                    |field: &str, v: &str| p.take(&format!("{dpath}.{field}"), Ident::parse(v));
                let (vf, vt, cur) = (
                    id("valid_from", &d.valid_from),
                    id("valid_to", &d.valid_to),
                    id("is_current", &d.is_current),
                );
                if cols.is_empty() {
                    p.push(
                        format!("{dpath}.columns"),
                        "an scd2 dimension needs attribute columns whose changes it records",
                    );
                }
                match (vf, vt, cur) {
                    (Some(valid_from), Some(valid_to), Some(is_current)) => Some(Some(Scd2 {
                        valid_from,
                        valid_to,
                        is_current,
                    })),
                    _ => None,
                }
            }
            other => {
                p.push(
                    format!("{dpath}.history"),
                    format!("{other:?}: expected scd1 or scd2"),
                );
                None
            }
        };
        if let (Some(table), Some(key), Some(scd2)) = (table, dkey, scd2) {
            dimensions.push(Dimension {
                table,
                key,
                columns: cols,
                scd2,
            });
        }
    }

    let min_age = p.take(
        &format!("{path}.settle.min_age"),
        parse_duration(&j.settle.min_age),
    );
    let temp_patterns = glob_set(
        &format!("{path}.settle.temp_patterns"),
        &j.settle.temp_patterns,
        p,
    );
    if let Some(m) = &j.settle.marker_suffix
        && (m.is_empty() || m.contains('/'))
    {
        p.push(
            format!("{path}.settle.marker_suffix"),
            format!("{m:?} must be a non-empty suffix like .done"),
        );
    }
    let on_success = match (j.on_success.action.as_str(), &j.on_success.to) {
        ("keep", None) => Some(Finalize::Keep),
        ("delete", None) => Some(Finalize::Delete),
        ("move", Some(to)) if !to.trim().is_empty() => Some(Finalize::Move(to.clone())),
        ("move", _) => {
            p.push(
                format!("{path}.on_success.to"),
                "action = \"move\" needs a folder in `to`",
            );
            None
        }
        ("keep" | "delete", Some(_)) => {
            p.push(
                format!("{path}.on_success.to"),
                "`to` is only used with action = \"move\"",
            );
            None
        }
        (other, _) => {
            p.push(
                format!("{path}.on_success.action"),
                format!("{other:?}: expected keep, delete or move"),
            );
            None
        }
    };

    let on_failure = match (j.on_failure.action.as_str(), &j.on_failure.to) {
        ("keep", None) => Some(Finalize::Keep),
        ("move", Some(to)) if !to.trim().is_empty() => Some(Finalize::Move(to.clone())),
        ("move", _) => {
            p.push(
                format!("{path}.on_failure.to"),
                "action = \"move\" needs a folder in `to`",
            );
            None
        }
        ("keep", Some(_)) => {
            p.push(
                format!("{path}.on_failure.to"),
                "`to` is only used with action = \"move\"",
            );
            None
        }
        (other, _) => {
            p.push(
                format!("{path}.on_failure.action"),
                format!("{other:?}: expected keep or move (a failed file is never deleted)"),
            );
            None
        }
    };

    let on_change = match j.on_change.as_str() {
        "reload" => Some(OnChange::Reload),
        "ignore" => Some(OnChange::Ignore),
        other => {
            p.push(
                format!("{path}.on_change"),
                format!("{other:?}: expected reload or ignore"),
            );
            None
        }
    };

    let mut checks = Vec::new();
    for (i, c) in j.checks.iter().enumerate() {
        let cpath = format!("{path}.checks[{i}]");
        let named = !c.name.is_empty()
            && c.name.len() <= 64
            && c.name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !named {
            p.push(
                format!("{cpath}.name"),
                format!("{:?}: use 1-64 letters, digits or _", c.name),
            );
        } else if checks.iter().any(|k: &Check| k.name == c.name) {
            p.push(
                format!("{cpath}.name"),
                format!("{:?} is used twice", c.name),
            );
        }
        let sql = c.sql.trim().trim_end_matches(';').trim();
        if !sql.to_ascii_lowercase().starts_with("select")
            && !sql.to_ascii_lowercase().starts_with("with")
        {
            p.push(
                format!("{cpath}.sql"),
                "must be one SELECT (or WITH … SELECT) returning the rows that are wrong",
            );
        } else if sql.contains(';') {
            p.push(
                format!("{cpath}.sql"),
                "must be one statement (no `;` inside)",
            );
        }
        let unknown: Vec<&str> = sql
            .match_indices('{')
            .filter_map(|(at, _)| sql[at..].find('}').map(|end| &sql[at..at + end + 1]))
            .filter(|t| *t != "{target}" && *t != "{schema}")
            .collect();
        if let Some(t) = unknown.first() {
            p.push(
                format!("{cpath}.sql"),
                format!("{t} is not a placeholder; use {{target}} or {{schema}}"),
            );
        }
        const WRITES: &[&str] = &[
            "insert", "update", "delete", "merge", "truncate", "drop", "alter", "create", "grant",
            "revoke", "copy", "unload", "call", "vacuum", "analyze", "lock",
        ];
        if let Some(w) = crate::sql::bind::first_keyword(sql, WRITES) {
            p.push(
                format!("{cpath}.sql"),
                format!(
                    "uses {}: a check only reads (it runs in a read-only transaction)",
                    w.to_ascii_uppercase()
                ),
            );
        }
        if let Some(d) = crate::sql::bind::positional_used(sql).first() {
            p.push(
                format!("{cpath}.sql"),
                format!(
                    "uses {d}; name the parameters :load_id, :job or :rows (a literal $ belongs in quotes)"
                ),
            );
        }
        checks.push(Check {
            name: c.name.clone(),
            sql: sql.to_string(),
        });
    }

    Some(Job {
        name: j.name.clone(),
        source: source?,
        path: j.path.clone(),
        lookback_days: j.lookback_days,
        pattern: pattern?,
        pattern_text: j.pattern.clone(),
        exclude: exclude?,
        recursive: j.recursive,
        enabled: j.enabled,
        poll_interval: poll_interval?,
        format: format?,
        target: target?,
        mode: mode?,
        key,
        order_by,
        columns,
        dimensions,
        settle: Settle {
            min_age: min_age?,
            marker_suffix: j.settle.marker_suffix.clone(),
            folder_marker: j.settle.folder_marker.clone(),
            stable_polls: j.settle.stable_polls,
            temp_patterns: temp_patterns?,
            temp_pattern_text: j.settle.temp_patterns.clone(),
        },
        on_success: on_success?,
        on_failure: on_failure?,
        on_change: on_change?,
        max_errors: max_errors?,
        limits: limits?,
        gzip_level: j.gzip_level,
        part_size: part_size?,
        archive_raw: j.archive_raw,
        concurrency: j.concurrency,
        batch: Batch {
            max_files: j.batch.max_files,
            max_bytes: batch_bytes?,
            max_wait: batch_wait?,
        },
        checks,
    })
}

#[cfg(test)]
mod tests;

//! The shipped configuration files parse, and the environment overrides them.

use std::path::Path;
use std::process::Command;

fn ferry() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

#[test]
fn the_example_config_documents_only_valid_keys() {
    let out = ferry()
        .args([
            "--config",
            "config/ferry.example.toml",
            "check",
            "--offline",
        ])
        .env("PARTNER_KEY_PASSPHRASE", "x")
        .env("FERRY_PG_PASSWORD", "x")
        .env("VENDOR_FTP_PASSWORD", "x")
        .env("FERRY_ALERT_WEBHOOK", "https://hooks.example.com/ferry")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 source(s), 1 job(s)"));
}

#[test]
fn every_raw_field_appears_in_the_example() {
    // Each documented option is in the example: scan the raw structs'
    // field names and look for `name =` in the file (commented or not).
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ferry.example.toml"),
    )
    .unwrap();
    // The raw structs live in one file per section of src/config/; only
    // the lines inside `pub struct Raw…`/`pub enum Raw…` are options.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config");
    let mut raw = String::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let mut inside = false;
        for line in text.lines() {
            if line.starts_with("pub struct Raw") || line.starts_with("pub enum Raw") {
                inside = true;
            } else if line == "}" {
                inside = false;
            } else if inside {
                raw.push_str(line);
                raw.push('\n');
            }
        }
    }
    assert!(
        raw.contains("pub poll_interval:"),
        "the raw structs were found"
    );
    let mut missing = Vec::new();
    for line in raw.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("pub ")
            && let Some((name, _)) = rest.split_once(':')
            && !name.contains(' ')
            && !name.contains('(')
        {
            let key = if name == "column_type" { "type" } else { name };
            if !example.contains(&format!("{key} ="))
                && !example.contains(&format!("{key}\n"))
                && !example.contains(&format!("[{key}"))
                && !example.contains(&format!("{key}, "))
                && !example.contains(&format!("{key}_env"))
            {
                missing.push(key.to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "options missing from config/ferry.example.toml: {missing:?}"
    );
}

#[test]
fn the_local_stack_config_is_valid() {
    let out = ferry()
        .args(["--config", "config/local.toml", "check", "--offline"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn environment_overrides_win_and_are_validated() {
    let out = ferry()
        .args(["--config", "config/local.toml", "check", "--offline"])
        .env("FERRY__DAEMON__POLL_INTERVAL", "whenever")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("daemon.poll_interval: \"whenever\" is not a duration"),
        "{stderr}"
    );
}

#[test]
fn the_compose_config_is_valid_with_its_mounts() {
    // Inside the container testdata is mounted at /etc/ferry/testdata.
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/compose.toml"))
            .unwrap()
            .replace(
                "/etc/ferry/testdata",
                &Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("testdata")
                    .display()
                    .to_string(),
            );
    let cfg = dir.path().join("compose.toml");
    std::fs::write(&cfg, &text).unwrap();
    // Every secret the config reads from the environment is set on the
    // ferry service in docker-compose.yml.
    let compose =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml"))
            .unwrap();
    let ferry_service = compose
        .split("\n  ferry:\n")
        .nth(1)
        .expect("a ferry service");
    let mut check = ferry();
    check.arg("--config").arg(&cfg).args(["check", "--offline"]);
    let vars: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            l.split_once("_env = \"")
                .map(|(_, v)| v.trim_end_matches('"'))
        })
        .collect();
    assert!(vars.contains(&"FERRY_FTP_PASSWORD"), "{vars:?}");
    for var in vars {
        assert!(
            ferry_service.contains(&format!("      {var}: ")),
            "docker-compose.yml does not set {var} for ferry"
        );
        check.env(var, "x");
    }
    let out = check.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The deployment files parse, and say what the daemon relies on.
#[test]
fn the_deployment_files_are_valid_and_match_the_daemon() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let unit = std::fs::read_to_string(root.join("ferry.service")).unwrap();
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=",
        "EnvironmentFile=-/etc/ferry/ferry.env",
        "ExecStart=/usr/local/bin/ferry --config /etc/ferry/ferry.toml run",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "ferry.service lacks {line}"
        );
    }
    // The stop timeout leaves room for the default grace period (60 s).
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .expect("TimeoutStopSec");
    assert!(stop > 60, "TimeoutStopSec={stop}");

    let policy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("iam-policy.json")).unwrap())
            .unwrap();
    let actions: Vec<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| match &s["Action"] {
            serde_json::Value::String(a) => vec![a.clone()],
            serde_json::Value::Array(a) => {
                a.iter().map(|v| v.as_str().unwrap().to_string()).collect()
            }
            _ => vec![],
        })
        .collect();
    // Every call ferry makes is allowed; nothing is allowed with a wildcard.
    for needed in [
        "s3:PutObject",
        "s3:GetObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListBucket",
        "redshift-data:ExecuteStatement",
        "redshift-data:BatchExecuteStatement",
        "redshift-data:DescribeStatement",
        "redshift-data:GetStatementResult",
        "redshift-data:CancelStatement",
        "redshift:GetClusterCredentials",
        "iam:PassRole",
    ] {
        assert!(
            actions.iter().any(|a| a == needed),
            "the IAM policy lacks {needed}"
        );
    }
    assert!(actions.iter().all(|a| !a.contains('*')), "{actions:?}");

    let task: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("ecs-task-definition.json")).unwrap(),
    )
    .unwrap();
    let c = &task["containerDefinitions"][0];
    assert_eq!(c["command"][0], "run");
    assert!(
        c["healthCheck"]["command"][1]
            .as_str()
            .unwrap()
            .contains("/healthz")
    );
    assert!(c["stopTimeout"].as_u64().unwrap() > 60);
    let env: Vec<&str> = c["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env.contains(&"FERRY__DAEMON__LOG_FORMAT"), "{env:?}");
}

/// The Dockerfile's build stage copies everything cargo needs: the
/// manifest's targets (a declared bench missing from the context fails
/// the manifest), the lock file as it is (`--locked`), and every file the
/// code includes at compile time. No Docker engine runs here, so the
/// context is rebuilt from the COPY lines and cargo reads it.
#[test]
fn the_dockerfile_build_context_holds_what_cargo_needs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let build_stage = dockerfile
        .split("\nFROM ")
        .find(|stage| {
            stage
                .lines()
                .next()
                .is_some_and(|l| l.contains(" AS build"))
        })
        .expect("a stage named build");
    let ctx = tempfile::tempdir().unwrap();
    let mut copied = Vec::new();
    for line in build_stage.lines() {
        let Some(args) = line.strip_prefix("COPY ") else {
            continue;
        };
        let mut parts: Vec<&str> = args.split_whitespace().collect();
        let dest = parts.pop().expect("a destination");
        for src in parts {
            let to = if dest.ends_with('/') && dest != "./" {
                ctx.path().join(dest.trim_start_matches("./")).join(src)
            } else if dest == "./" {
                ctx.path().join(src)
            } else {
                ctx.path().join(dest.trim_start_matches("./"))
            };
            copy_tree(&root.join(src), &to);
            copied.push(src.to_string());
        }
    }
    assert!(
        copied.iter().any(|c| c == "Cargo.lock"),
        "the build stage copies Cargo.lock: {copied:?}"
    );
    // Only a build reads the manifest's targets: ask for a binary that
    // does not exist, so cargo parses the manifest and the lock file
    // (`--locked`), then stops before compiling anything.
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--locked",
            "--offline",
            "--bin",
            "ferry-no-such-binary",
        ])
        .current_dir(ctx.path())
        .env("CARGO_TARGET_DIR", ctx.path().join("target"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no bin target named `ferry-no-such-binary`")
            && stderr.lines().any(|l| l.trim() == "ferry"),
        "cargo cannot read the Docker build context (copied: {copied:?}): {stderr}"
    );
    // Files pulled in by include_str!/include_bytes! from what the image
    // builds (not the testkit or the dev-stack binary: test-only).
    let mut pending = vec![root.join("src")];
    while let Some(dir) = pending.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.starts_with(root.join("src/testkit")) || p.starts_with(root.join("src/bin")) {
                continue;
            }
            if p.is_dir() {
                pending.push(p);
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let included = text
                .split("include_str!(\"")
                .skip(1)
                .chain(text.split("include_bytes!(\"").skip(1));
            for piece in included {
                let rel = piece.split('"').next().unwrap_or_default();
                let needed = normalize(&p.parent().unwrap().join(rel));
                let inside = needed.strip_prefix(root).expect("inside the repository");
                assert!(
                    ctx.path().join(inside).exists(),
                    "{} includes {rel}, which the Dockerfile does not copy",
                    p.display()
                );
            }
        }
    }
}

/// `a/b/../c` → `a/c`.
fn normalize(p: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Copies a file or a folder (recursively) to `to`.
fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to)
            .unwrap_or_else(|e| panic!("the Dockerfile copies {}: {e}", from.display()));
    }
}

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
    let raw =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/raw.rs"))
            .unwrap();
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
    std::fs::write(&cfg, text).unwrap();
    let out = ferry()
        .arg("--config")
        .arg(&cfg)
        .args(["check", "--offline"])
        .env("FERRY_PG_PASSWORD", "x")
        .output()
        .unwrap();
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

//! Config values written as text: durations, sizes, names and globs,
//! and the defaults several sections share.

use super::*;

pub(super) fn default_connect_timeout() -> String {
    "10s".into()
}

pub(super) fn default_statement_timeout() -> String {
    "1h".into()
}

pub(super) fn default_max_transfers() -> usize {
    8
}

/// 60 s: far above any healthy reply or pause in a stream (a loaded SFTP
/// server answers within a second or two), short enough that a frozen
/// server costs a minute per attempt, not a pass.
pub(super) fn default_io_timeout() -> String {
    "60s".into()
}

pub(super) fn default_true() -> bool {
    true
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

/// A network deadline: a duration of at least a second.
pub(super) fn timeout(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_secs(1) {
        return Err(format!("{text:?}: at least 1s"));
    }
    Ok(d)
}

pub(super) fn validate_name(path: &str, name: &str, p: &mut Problems) {
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

pub(super) fn glob(path: &str, pattern: &str, p: &mut Problems) -> Option<globset::Glob> {
    p.take(
        path,
        globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("{pattern:?} is not a valid glob: {e}")),
    )
}

pub(super) fn glob_set(
    path: &str,
    patterns: &[String],
    p: &mut Problems,
) -> Option<globset::GlobSet> {
    let mut b = globset::GlobSetBuilder::new();
    for (i, pat) in patterns.iter().enumerate() {
        b.add(glob(&format!("{path}[{i}]"), pat, p)?);
    }
    p.take(path, b.build().map_err(|e| e.to_string()))
}

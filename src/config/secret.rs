//! Secrets: values that never reach logs, errors or metrics.

use std::fmt;

/// A secret string. `Debug` and `Display` print `***`; only [`Secret::expose`]
/// gives the value, at the one place that hands it to a client library.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself. Call it only where a client library needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Resolves a secret given by `<name>_env` (an environment variable) or
/// `<name>_file` (a file whose trimmed content is the secret).
///
/// `path` is the config key path without the suffix, e.g.
/// `sources.partner.password`, so that errors name the exact key.
pub fn resolve(
    path: &str,
    env: Option<&str>,
    file: Option<&str>,
) -> Result<Option<Secret>, String> {
    match (env, file) {
        (Some(_), Some(_)) => Err(format!(
            "{path}_env and {path}_file are both set: keep one of them"
        )),
        (Some(var), None) => match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(Some(Secret(value))),
            Ok(_) => Err(format!(
                "{path}_env: environment variable {var} is set but empty"
            )),
            Err(_) => Err(format!(
                "{path}_env: environment variable {var} is not set (export it, or put it in the EnvironmentFile)"
            )),
        },
        (None, Some(file)) => match std::fs::read_to_string(file) {
            Ok(value) => {
                let value = value.trim_end_matches(['\r', '\n']).to_string();
                if value.is_empty() {
                    Err(format!("{path}_file: {file} is empty"))
                } else {
                    Ok(Some(Secret(value)))
                }
            }
            Err(e) => Err(format!("{path}_file: cannot read {file}: {e}")),
        },
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn missing_env_var_is_named() {
        let err = resolve(
            "sources.a.password",
            Some("FERRY_TEST_SURELY_UNSET_VAR"),
            None,
        )
        .unwrap_err();
        assert!(err.contains("FERRY_TEST_SURELY_UNSET_VAR"), "{err}");
        assert!(err.starts_with("sources.a.password_env"), "{err}");
    }

    #[test]
    fn file_secret_is_trimmed_of_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let got = resolve("x", None, Some(path.to_str().unwrap()))
            .unwrap()
            .unwrap();
        assert_eq!(got.expose(), "s3cret");
    }
}

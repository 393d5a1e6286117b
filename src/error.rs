//! The crate-level error.
//!
//! Every module has its own error type with the context an operator needs
//! (host, path, line, column). They all convert into [`Error`], whose
//! [`ErrorKind`] is what callers act on: retry a transient failure, fail the
//! one file on a permanent one, stop at start-up on a configuration error.

use std::fmt;

/// What a caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration is wrong: fix the file or the environment.
    Config,
    /// Worth retrying: network, timeouts, throttling, serialization conflicts.
    Transient,
    /// Retrying will not help: bad data, missing table, permission denied.
    Permanent,
}

impl ErrorKind {
    /// The process exit code `main` uses for an error of this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Config => 78,    // EX_CONFIG
            ErrorKind::Transient => 75, // EX_TEMPFAIL
            ErrorKind::Permanent => 1,
        }
    }
}

/// An error with a kind and a chain of causes.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    /// Transient, but a retry right away cannot help (the file is still
    /// changing): only a later pass tries again.
    later: bool,
}

/// Result with the crate-level [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a lowercase message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
            later: false,
        }
    }

    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    /// A transient error (retry).
    pub fn transient(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Transient, message)
    }

    /// A permanent error (fail the file or batch).
    pub fn permanent(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Permanent, message)
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// This error as the cause of a new one of the same kind that says
    /// what was being done: `cannot apply migrations …: <this>`.
    pub fn wrap(self, message: impl Into<String>) -> Self {
        let (kind, later) = (self.kind, self.later);
        Error {
            later,
            ..Error::new(kind, message).with_source(self)
        }
    }

    /// Marks a transient error as worth retrying on a later pass only.
    pub fn later(mut self) -> Self {
        self.later = true;
        self
    }

    /// Whether only a later pass should retry (see [`Error::later`]).
    pub fn only_later(&self) -> bool {
        self.later
    }

    /// What a caller should do about this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    /// The message and every cause, joined with `: `, as logs and the ledger
    /// show it.
    pub fn chain(&self) -> String {
        let mut out = self.message.clone();
        let mut next: Option<&(dyn std::error::Error + 'static)> = self
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(cause) = next {
            let text = cause.to_string();
            if !text.is_empty() && !out.ends_with(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            next = cause.source();
        }
        out
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// What a foreign error means for ferry. Each I/O module implements it for
/// the errors of the client it wraps, as one table, next to that client:
/// `tokio_postgres::Error` (`warehouse::postgres`), `SdkError` (`aws`,
/// with each service's own "try again" codes), `FtpError` (`source::ftp`),
/// the SFTP client's error (`source::sftp`) and [`std::io::Error`] (here:
/// local folders and sockets). The Data API's failed statements, which
/// arrive as text, are read by `warehouse::redshift`'s `RETRYABLE` table.
pub trait Classify: std::error::Error + Send + Sync + Sized + 'static {
    /// Transient (retry), permanent (fail the file) or configuration.
    fn kind(&self) -> ErrorKind;
    /// How the error reads after `what: `, when its own text is not the
    /// best account (a server's reply, a database's context); `None`
    /// keeps it as the cause, which [`Error::chain`] shows.
    fn detail(&self) -> Option<String> {
        None
    }
}

/// Wraps a foreign error as an [`Error`] of the kind its [`Classify`]
/// table gives, saying `what` was being done:
/// `.map_err(classified(format!("cannot list {dir}")))`.
pub fn classified<E: Classify>(what: impl Into<String>) -> impl FnOnce(E) -> Error {
    let what = what.into();
    move |e| match e.detail() {
        Some(detail) => Error::new(e.kind(), format!("{what}: {detail}")),
        None => Error::new(e.kind(), what).with_source(e),
    }
}

/// [`classified`] for a `Result`, with a message built only on failure:
/// `.classify(|| format!("cannot stat {path}"))`.
pub trait Classified<T> {
    /// Wraps the error as its [`Classify`] table says, with `message`.
    fn classify(self, message: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Classify> Classified<T> for std::result::Result<T, E> {
    fn classify(self, message: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| classified(message())(e))
    }
}

/// Local files and sockets: permission denied fails the file for good (as
/// it does on SFTP and FTP, where an operator fixes it and runs `ferry
/// retry`); anything else (a dropped NFS mount, a full disk, a reset) is
/// transient.
impl Classify for std::io::Error {
    fn kind(&self) -> ErrorKind {
        match self.kind() {
            std::io::ErrorKind::PermissionDenied => ErrorKind::Permanent,
            _ => ErrorKind::Transient,
        }
    }
}

/// Extension to wrap foreign errors with a message and a kind.
pub trait Context<T> {
    /// Wraps the error as `kind` with `message`.
    fn context(self, kind: ErrorKind, message: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E> Context<T> for std::result::Result<T, E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn context(self, kind: ErrorKind, message: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::new(kind, message()).with_source(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_joins_every_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let err = Error::transient("cannot connect to sftp server partner (127.0.0.1:2222)")
            .with_source(io);
        assert_eq!(
            err.chain(),
            "cannot connect to sftp server partner (127.0.0.1:2222): connection refused"
        );
        assert!(err.is_transient());
        assert_eq!(err.kind().exit_code(), 75);
    }

    #[test]
    fn local_errors_are_transient_unless_permission_is_denied() {
        use std::io::ErrorKind as Io;
        for (io, want) in [
            (Io::PermissionDenied, ErrorKind::Permanent),
            (Io::NotFound, ErrorKind::Transient),
            (Io::ConnectionReset, ErrorKind::Transient),
            (Io::StorageFull, ErrorKind::Transient),
            (Io::TimedOut, ErrorKind::Transient),
        ] {
            let e = classified("cannot read /in/a.csv")(std::io::Error::from(io));
            assert_eq!(e.kind(), want, "{io:?}");
            assert!(
                e.chain().starts_with("cannot read /in/a.csv: "),
                "{}",
                e.chain()
            );
        }
    }
}

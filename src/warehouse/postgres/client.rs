//! Connections and errors: opening a session with its timeouts, keepalive
//! and TLS; what a database error means (transient or not) and how it
//! reads; text parameters.

use super::*;

/// Whether a PostgreSQL error state is worth retrying: serialization
/// failures and deadlocks (40001, 40P01), a lock not granted in time
/// (55P03), a statement cancelled or timed out (57014), the server
/// shutting down or not accepting connections yet (57P01-57P03), lost or
/// refused connections (class 08) and exhausted resources (class 53: too
/// many connections, out of memory, disk full).
pub(super) fn is_transient_state(c: &SqlState) -> bool {
    let code = c.code();
    *c == SqlState::T_R_SERIALIZATION_FAILURE
        || *c == SqlState::T_R_DEADLOCK_DETECTED
        || *c == SqlState::LOCK_NOT_AVAILABLE
        || *c == SqlState::QUERY_CANCELED
        || code.starts_with("57P")
        || code.starts_with("08")
        || code.starts_with("53")
}

/// A database error: the states of `is_transient_state` and I/O errors
/// (no state: a closed or lost connection) are transient; the rest
/// (missing table, bad type, permission denied, …) fail the file.
impl Classify for tokio_postgres::Error {
    fn kind(&self) -> ErrorKind {
        match self.code() {
            Some(c) if is_transient_state(c) => ErrorKind::Transient,
            Some(_) => ErrorKind::Permanent,
            None => ErrorKind::Transient,
        }
    }

    /// The server's message, its state and where it happened: PostgreSQL's
    /// context says, e.g. `COPY t, line 3, column x: "abc"`.
    fn detail(&self) -> Option<String> {
        Some(match self.as_db_error() {
            Some(db) => match db.where_() {
                Some(w) => format!("{} ({}) at {w}", db.message(), db.code().code()),
                None => format!("{} ({})", db.message(), db.code().code()),
            },
            None => self.to_string(),
        })
    }
}

pub(super) async fn open(s: &PostgresSettings) -> Result<Client> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&s.host)
        .port(s.port)
        .user(&s.user)
        .dbname(&s.database)
        .connect_timeout(s.connect_timeout)
        // The server cuts a statement or lock wait off by itself; the
        // client notices a server or network that went silent: keepalive
        // probes after 30 s of silence, and unacknowledged data gives up
        // after the connect timeout (a frozen host whose kernel still
        // answers is caught by ferry's own deadline, `with_deadline`).
        // idle_in_transaction_session_timeout: a ferry that vanished mid-
        // load (a black-holed network keeps the server's socket open for
        // hours) does not keep the ledger lock longer than this.
        .options(format!(
            "-c statement_timeout={t} -c lock_timeout={} -c idle_in_transaction_session_timeout={t}",
            s.lock_timeout.as_millis(),
            t = s.statement_timeout.as_millis(),
        ))
        .keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(30))
        .keepalives_interval(std::time::Duration::from_secs(10))
        .keepalives_retries(3)
        .tcp_user_timeout(s.connect_timeout.max(std::time::Duration::from_secs(30)))
        .application_name("ferry");
    if let Some(pw) = &s.password {
        cfg.password(pw.expose());
    }
    let failed = |e: tokio_postgres::Error| {
        let hint = if s.sslmode == PgSslMode::Disable {
            "is PostgreSQL running? start it with `pg_ctlcluster 15 main start`"
        } else {
            "is PostgreSQL running, with TLS on? for verify-full, is its certificate signed by a CA in the system roots or warehouse.ca_file, for this host name?"
        };
        Error::transient(format!(
            "cannot connect to {} as {} ({hint})",
            describe(s),
            s.user
        ))
        .with_source(e)
    };
    let server = describe(s);
    let ended = move |e: tokio_postgres::Error| {
        let e = Error::transient(e.to_string()).with_source(e);
        tracing::warn!(server = %server, error = %e.chain(), "postgres connection ended");
    };
    match s.sslmode {
        PgSslMode::Disable => {
            let (client, connection) = cfg.connect(NoTls).await.map_err(failed)?;
            tokio::spawn(async move { connection.await.unwrap_or_else(ended) });
            Ok(client)
        }
        mode => {
            cfg.ssl_mode(if mode == PgSslMode::Prefer {
                tokio_postgres::config::SslMode::Prefer
            } else {
                tokio_postgres::config::SslMode::Require
            });
            let tls = crate::warehouse::pg_tls::RustlsConnect::new(mode, s.ca_file.as_deref())?;
            let (client, connection) = cfg.connect(tls).await.map_err(failed)?;
            tokio::spawn(async move { connection.await.unwrap_or_else(ended) });
            Ok(client)
        }
    }
}

/// Named text parameters, bound in order.
pub(super) fn text_params<'p, T: tokio_postgres::types::ToSql + Sync>(
    params: &'p [(&'static str, T)],
) -> Vec<&'p (dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|(_, v)| v as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

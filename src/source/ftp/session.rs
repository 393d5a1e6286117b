//! Sessions with the server: resolving it, opening a control connection
//! (plain, explicit or implicit TLS, login, binary mode, the data mode),
//! leasing one from the pool, and running an operation on it with its
//! deadline, so a dead or wedged session is dropped and replaced.

use super::*;

impl FtpSource {
    pub(super) async fn resolve(&self) -> Result<SocketAddr> {
        tokio::net::lookup_host((self.settings.host.as_str(), self.settings.port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                Error::transient(format!(
                    "source {}: cannot resolve {}",
                    self.name,
                    self.addr_text()
                ))
            })
    }

    pub(super) async fn open_conn(&self) -> Result<Conn> {
        let s = &self.settings;
        let addr = self.resolve().await?;
        let what = || {
            format!(
                "source {}: cannot connect to {}",
                self.name,
                self.addr_text()
            )
        };
        let connecting = async {
            let mut conn = match (&s.tls, &self.tls) {
                (Some(t), Some(cfg)) if t.implicit => {
                    let connector =
                        AsyncRustlsConnector::from(tokio_rustls::TlsConnector::from(cfg.clone()));
                    Conn::Tls(
                        ImplAsyncFtpStream::connect_secure_implicit(addr, connector, &s.host)
                            .await
                            .map_err(classified(what()))?,
                    )
                }
                (Some(_), Some(cfg)) => {
                    let plain = AsyncRustlsFtpStream::connect_timeout(addr, s.connect_timeout)
                        .await
                        .map_err(classified(what()))?;
                    let connector =
                        AsyncRustlsConnector::from(tokio_rustls::TlsConnector::from(cfg.clone()));
                    Conn::Tls(plain.into_secure(connector, &s.host).await.map_err(|e| {
                        classified(format!(
                            "{} (TLS: check the server's certificate, or set ca_file)",
                            what()
                        ))(e)
                    })?)
                }
                _ => Conn::Plain(
                    AsyncFtpStream::connect_timeout(addr, s.connect_timeout)
                        .await
                        .map_err(classified(what()))?,
                ),
            };
            let password = s.password.as_ref().map_or("ferry@", |p| p.expose());
            on_conn!(&mut conn, c => {
                c.login(s.user.as_str(), password).await.map_err(|e| {
                    let mut err = classified(format!("source {}: login as {:?} on {} failed", self.name, s.user, self.addr_text()))(e);
                    if err.to_string().contains(" 530 ") { err = Error::permanent(err.to_string()); }
                    err
                })?;
                if s.tls.as_ref().is_some_and(|t| t.implicit) {
                    // Implicit FTPS still needs PROT P before data
                    // connections are encrypted on servers like vsftpd.
                    c.custom_command("PBSZ 0", &[Status::CommandOk]).await.map_err(classified(what()))?;
                    c.custom_command("PROT P", &[Status::CommandOk]).await.map_err(classified(what()))?;
                }
                c.transfer_type(FileType::Binary).await.map_err(classified(what()))?;
                match s.data_mode {
                    FtpDataMode::Epsv => c.set_mode(Mode::ExtendedPassive),
                    FtpDataMode::Pasv => {
                        c.set_mode(Mode::Passive);
                        c.set_passive_nat_workaround(true);
                    }
                    FtpDataMode::Active => c.set_mode(Mode::Active),
                }
                let mlsd = c.feat().await.map(|f| f.keys().any(|k| k.eq_ignore_ascii_case("MLST"))).unwrap_or(false);
                self.mlsd.store(mlsd, std::sync::atomic::Ordering::Relaxed);
            });
            Ok::<_, Error>(conn)
        };
        match tokio::time::timeout(s.connect_timeout * 2, connecting).await {
            Ok(r) => r,
            Err(_) => Err(Error::transient(format!(
                "{}: no answer within {:?}",
                what(),
                s.connect_timeout * 2
            ))),
        }
    }

    /// A pool slot with a live connection: an idle one, or a new one.
    /// A new connection the server refuses for a per-client limit while
    /// others are open shrinks the pool and waits for one of those.
    pub(super) async fn lease(&self) -> std::result::Result<pool::Lease, FtpError> {
        loop {
            let mut lease = self.pool.lease().await;
            if lease.conn().is_some() {
                return Ok(lease);
            }
            match self.open_conn().await {
                Ok(c) => {
                    lease.put(c);
                    return Ok(lease);
                }
                Err(e) if pool::is_connection_limit(&e) && self.pool.shrink(lease) => {
                    tracing::warn!(
                        source = %self.name,
                        connections = self.pool.limit(),
                        error = %e.chain(),
                        "the FTP server allows no more connections from ferry; keeping {n} (set sources.{name}.max_transfers = {n} to match)",
                        n = self.pool.limit(),
                        name = self.name,
                    );
                }
                Err(e) => return Err(FtpError::ConnectionError(std::io::Error::other(e.chain()))),
            }
        }
    }

    /// Runs `op` on a pooled connection (see [`FtpSource::run_on`]).
    pub(super) async fn with_conn<T, F>(&self, op: F) -> std::result::Result<T, FtpError>
    where
        F: for<'c> Fn(
            &'c mut Conn,
        ) -> futures::future::BoxFuture<'c, std::result::Result<T, FtpError>>,
    {
        let mut lease = self.lease().await?;
        self.run_on(&mut lease, op).await
    }

    /// Runs `op` on `lease`'s connection, reconnecting once if the
    /// connection was lost (or lost before the call).
    pub(super) async fn run_on<T, F>(
        &self,
        lease: &mut pool::Lease,
        op: F,
    ) -> std::result::Result<T, FtpError>
    where
        F: for<'c> Fn(
            &'c mut Conn,
        ) -> futures::future::BoxFuture<'c, std::result::Result<T, FtpError>>,
    {
        for attempt in 0..2 {
            if lease.conn().is_none() {
                match self.open_conn().await {
                    Ok(c) => lease.put(c),
                    Err(e) => {
                        return Err(FtpError::ConnectionError(std::io::Error::other(e.chain())));
                    }
                }
            }
            let conn = lease.conn().expect("connected above");
            // Every command's reply within io_timeout; a silent server's
            // connection is dropped (a download's reads have their own
            // idle deadline).
            let answered = match tokio::time::timeout(self.settings.io_timeout, op(conn)).await {
                Ok(r) => r,
                Err(_) => {
                    lease.discard();
                    tracing::warn!(source = %self.name, server = %self.addr_text(), timeout_s = self.settings.io_timeout.as_secs(), "no reply from the FTP server in time; connection dropped");
                    return Err(FtpError::ConnectionError(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no reply within {}s (io_timeout)",
                            self.settings.io_timeout.as_secs()
                        ),
                    )));
                }
            };
            match answered {
                Err(FtpError::ConnectionError(e)) if attempt == 0 => {
                    tracing::info!(source = %self.name, error = %e, "FTP connection lost; reconnecting");
                    lease.discard();
                }
                // 421 (and libunftp's 221 "Session timed out") mean the
                // server closed an idle control connection; the command was
                // not carried out, so running it again is safe.
                Err(FtpError::UnexpectedResponse(r))
                    if attempt == 0 && matches!(r.status.code(), 421 | 221) =>
                {
                    tracing::info!(source = %self.name, reply = r.status.code(), "FTP server closed the idle connection; reconnecting");
                    lease.discard();
                }
                Err(FtpError::BadResponse) if attempt == 0 => {
                    lease.discard();
                }
                Err(e @ (FtpError::ConnectionError(_) | FtpError::BadResponse)) => {
                    lease.discard();
                    return Err(e);
                }
                other => return other,
            }
        }
        unreachable!("the second attempt returns")
    }
}

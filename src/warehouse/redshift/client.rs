//! The Data API as a client: submitting a statement or a batch to the
//! configured cluster or workgroup, polling it to its end, and which
//! failures mean "run it again" ([`RETRYABLE`]).

use super::*;

/// A parameter value: `None` is SQL NULL. The Data API can carry neither
/// NULL nor an empty string, so those become the constants `NULL` and `''`
/// in the text (constants, not values from outside).
pub(super) type Param<'a> = (&'a str, Option<String>);

/// A failed statement: which sub-statement of a batch, and the message.
#[derive(Debug)]
pub(super) struct Failed {
    pub(super) sub: Option<usize>,
    pub(super) message: String,
}

/// Redshift messages (lower-cased fragments) that mean "try again", as
/// PostgreSQL's transient SQLSTATEs do on the local backend
/// ([`is_transient_state`](crate::warehouse::postgres)): the Data API gives no code,
/// only the text. Each with why.
pub(super) const RETRYABLE: &[(&str, &str)] = &[
    (
        "1023",
        "serializable isolation violation (concurrent writers)",
    ),
    (
        "serializable isolation violation",
        "the same, without its number",
    ),
    (
        "could not serialize access",
        "PostgreSQL's 40001 behind the local endpoint",
    ),
    (
        "deadlock detected",
        "40P01: one of two waiting transactions is chosen",
    ),
    (
        "wlm",
        "a WLM rule or timeout cancelled the query: the queue was busy",
    ),
    (
        "cancelled on user's request",
        "a WLM timeout or an operator cancel",
    ),
    (
        "canceling statement due to",
        "statement or lock timeout, a cancel",
    ),
    (
        "cancelled:",
        "the statement was ABORTED by a cancel (ferry's own on its deadline or the service's)",
    ),
    (
        "terminating connection",
        "the session was ended (maintenance, a reboot)",
    ),
    ("server closed the connection", "the leader node restarted"),
    ("connection reset", "the connection was lost"),
    (
        "could not connect",
        "the cluster is not accepting connections yet",
    ),
    (
        "the database system is",
        "starting up or shutting down (57P03)",
    ),
    ("restart", "a cluster restart or maintenance window"),
    ("maintenance", "the cluster is in its maintenance window"),
    ("resiz", "the cluster is being resized"),
    ("out of memory", "resources: a later run gets its memory"),
    (
        "disk full",
        "resources: space is freed by vacuum or other loads",
    ),
    ("lock timeout", "a lock not granted in time"),
];

/// Whether a failed statement's message is one of [`RETRYABLE`]: a rerun
/// of the whole batch (one transaction) can succeed.
/// Quoted parts (values, names) are left out first, so a bad value that
/// happens to read "restart" stays a data error.
pub(super) fn retryable(message: &str) -> bool {
    let mut m = String::with_capacity(message.len());
    let mut quote = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' && !m.ends_with(|p: char| p.is_alphanumeric()) => {
                quote = Some(c)
            }
            None => m.push(c.to_ascii_lowercase()),
        }
    }
    RETRYABLE.iter().any(|(needle, _)| m.contains(needle))
}

/// Sets the database and the cluster or workgroup and its credentials on
/// an ExecuteStatement or BatchExecuteStatement call (two builder types
/// with the same setters).
macro_rules! targeted {
    ($wh:expr, $call:expr) => {{
        let (cluster, db_user, secret, workgroup) = $wh.target();
        $call
            .database(&$wh.settings.database)
            .set_cluster_identifier(cluster)
            .set_db_user(db_user)
            .set_secret_arn(secret)
            .set_workgroup_name(workgroup)
    }};
}

/// The id of a submitted call.
pub(super) fn statement_id(id: Option<&str>) -> Result<String> {
    id.map(str::to_string)
        .ok_or_else(|| Error::transient("the Data API accepted a statement but returned no id"))
}

impl RedshiftDataWarehouse {
    pub(super) fn describe(&self) -> String {
        match &self.settings.target {
            RedshiftTarget::ClusterDbUser { cluster, db_user } => format!(
                "redshift cluster {cluster} database {} as {db_user}",
                self.settings.database
            ),
            RedshiftTarget::ClusterSecret { cluster, .. } => format!(
                "redshift cluster {cluster} database {}",
                self.settings.database
            ),
            RedshiftTarget::Workgroup { workgroup, .. } => format!(
                "redshift serverless workgroup {workgroup} database {}",
                self.settings.database
            ),
        }
    }

    /// Submits one statement; returns its id.
    pub(super) async fn submit(&self, sql: &str, params: &[Param<'_>]) -> Result<String> {
        let (sql, params) = inline_constants(sql, params);
        let call = targeted!(self, self.client.execute_statement().sql(sql));
        let out = call
            .set_parameters((!params.is_empty()).then_some(params))
            .send()
            .await
            .map_err(classified(format!(
                "the Data API refused a statement for {}",
                self.describe()
            )))?;
        statement_id(out.id())
    }

    /// Submits a batch (one transaction); returns its id.
    pub(super) async fn submit_batch(
        &self,
        sqls: &[String],
        params: &[Param<'_>],
    ) -> Result<String> {
        assert!(
            sqls.len() <= MAX_BATCH,
            "a batch holds at most {MAX_BATCH} statements"
        );
        let mut texts = Vec::with_capacity(sqls.len());
        let mut send: Vec<SqlParameter> = Vec::new();
        for sql in sqls {
            let (text, used) = inline_constants(sql, params);
            texts.push(text);
            for p in used {
                if !send.iter().any(|s| s.name() == p.name()) {
                    send.push(p);
                }
            }
        }
        let call = targeted!(
            self,
            self.client.batch_execute_statement().set_sqls(Some(texts))
        );
        let out = call
            .set_parameters((!send.is_empty()).then_some(send))
            .send()
            .await
            .map_err(classified(format!(
                "the Data API refused a batch for {}",
                self.describe()
            )))?;
        statement_id(out.id())
    }

    /// Cluster id, db user, secret ARN and workgroup, as the target says.
    pub(super) fn target(
        &self,
    ) -> (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ) {
        match &self.settings.target {
            RedshiftTarget::ClusterDbUser { cluster, db_user } => {
                (Some(cluster.clone()), Some(db_user.clone()), None, None)
            }
            RedshiftTarget::ClusterSecret {
                cluster,
                secret_arn,
            } => (Some(cluster.clone()), None, Some(secret_arn.clone()), None),
            RedshiftTarget::Workgroup {
                workgroup,
                secret_arn,
            } => (None, None, secret_arn.clone(), Some(workgroup.clone())),
        }
    }

    /// Polls a statement with backoff ([`RetryPolicy::POLL`]) until it
    /// ends. FAILED and ABORTED come back as [`Failed`]; past the
    /// statement timeout the statement is cancelled and the wait fails
    /// transiently. An unknown status counts as still running.
    pub(super) async fn wait(
        &self,
        id: &str,
        what: &str,
    ) -> Result<std::result::Result<DescribeStatementOutput, Failed>> {
        let started = Instant::now();
        let mut polls = 0;
        loop {
            let d = self
                .client
                .describe_statement()
                .id(id)
                .send()
                .await
                .map_err(classified(format!("cannot follow {what} ({id})")))?;
            match d.status() {
                Some(StatusString::Finished) => return Ok(Ok(d)),
                Some(StatusString::Failed) | Some(StatusString::Aborted) => {
                    let sub = d
                        .sub_statements()
                        .iter()
                        .position(|s| s.error().is_some_and(|e| !e.is_empty()));
                    let message = d
                        .error()
                        .map(str::to_string)
                        .or_else(|| {
                            sub.and_then(|i| d.sub_statements()[i].error().map(str::to_string))
                        })
                        .unwrap_or_else(|| {
                            format!("{:?} without a message", d.status().expect("a status"))
                        });
                    let message = if d.status() == Some(&StatusString::Aborted) {
                        format!("cancelled: {message}")
                    } else {
                        message
                    };
                    return Ok(Err(Failed { sub, message }));
                }
                _ => {}
            }
            if started.elapsed() > self.settings.statement_timeout {
                let _ = self.client.cancel_statement().id(id).send().await;
                return Err(Error::transient(format!(
                    "{what} ({id}) ran longer than warehouse.statement_timeout ({:?}); cancelled, will retry",
                    self.settings.statement_timeout
                )));
            }
            polls += 1;
            tokio::time::sleep(RetryPolicy::POLL.delay(polls)).await;
        }
    }

    /// Turns a failed statement into an error: [`RETRYABLE`] messages (a
    /// conflict, a WLM abort, a cancel, a restart) are transient.
    pub(super) fn failure(what: &str, f: &Failed) -> Error {
        let kind = if retryable(&f.message) {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        };
        Error::new(kind, format!("{what}: {}", f.message))
    }

    /// Runs one statement to its end.
    pub(super) async fn run(
        &self,
        sql: &str,
        params: &[Param<'_>],
        what: &str,
    ) -> Result<DescribeStatementOutput> {
        let id = self.submit(sql, params).await?;
        self.wait(&id, what)
            .await?
            .map_err(|f| Self::failure(what, &f))
    }

    /// Runs one query and returns its rows (every page).
    pub(super) async fn query(
        &self,
        sql: &str,
        params: &[Param<'_>],
        what: &str,
    ) -> Result<Vec<Vec<Field>>> {
        let done = self.run(sql, params, what).await?;
        let mut rows = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_statement_result()
                .id(done.id())
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(classified(format!("cannot read the result of {what}")))?;
            rows.extend(page.records().iter().cloned());
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(rows),
            }
        }
    }
}

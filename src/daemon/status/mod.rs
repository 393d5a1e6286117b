//! The status page: server-rendered HTML on the daemon's HTTP listener,
//! read from the ledger and from what this daemon knows of its jobs
//! ([`telemetry::jobs`](crate::telemetry::jobs)), with no script and no
//! request off the machine.
//!
//! - `GET /`: every job (state, lag, last load, files and rows per hour),
//!   rows per hour of all jobs, the latest loads;
//! - `GET /jobs/{job}`: the job's rows-per-hour chart, its recent files
//!   (`?state=failed` and so on), loads and schema changes;
//! - `GET /jobs/{job}/file?path=…`: the file's versions, its staged, rejects
//!   and raw objects, and the rejected records of one version;
//! - `GET /loads`: recent loads with their durations (`?job=`);
//! - `POST /jobs/{job}/pause|resume|retry` (only with `daemon.http_admin =
//!   true`): the token (form field `token` or `Authorization: Bearer`) is
//!   compared in constant time; a wrong one is `403`, and without admin
//!   these paths do not exist.
//!
//! Every page is built within [`PAGE_TIMEOUT`]; a warehouse that does not
//! answer is a `504` page saying so, never a hung connection.

mod chart;
pub mod html;
mod pages;

use super::request::{HTML, Request, Response};
use crate::config::Secret;
use crate::pipeline::Runtime;
use std::time::Duration;

/// How long one page may take to read the ledger and render.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer for a status-page path, or `None` when `req` is not one.
pub async fn route(rt: &Runtime, req: &Request) -> Option<Response> {
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let page = match (req.method.as_str(), segs.as_slice()) {
        ("GET" | "HEAD", []) => pages::overview(rt).await,
        ("GET" | "HEAD", ["style.css"]) => {
            return Some(Response {
                status: "200 OK",
                content_type: "text/css; charset=utf-8",
                headers: vec![("cache-control", "max-age=3600".to_string())],
                body: html::STYLE.to_string(),
                head_only: false,
            });
        }
        ("GET" | "HEAD", ["loads"]) => pages::loads(rt, req.param("job")).await,
        ("GET" | "HEAD", ["jobs", job]) => pages::job(rt, job, req).await,
        ("GET" | "HEAD", ["jobs", job, "file"]) => pages::file(rt, job, req).await,
        ("POST", ["jobs", job, action]) if rt.config.daemon.admin_token.is_some() => {
            return Some(admin(rt, job, action, req).await);
        }
        _ => return None,
    };
    Some(match page {
        Ok(body) => html_response("200 OK", body),
        Err(Trouble::NotFound(what)) => html_response(
            "404 Not Found",
            html::page("Not found", &format!("<p>{}</p>", html::esc(&what))),
        ),
        Err(Trouble::Ledger(why)) => html_response(
            "503 Service Unavailable",
            html::page(
                "The ledger cannot be read",
                &format!(
                    "<p class=\"error\">{}</p><p>The page reads the ledger in the warehouse; see <a href=\"/readyz\">/readyz</a>.</p>",
                    html::esc(&why)
                ),
            ),
        ),
        Err(Trouble::Slow) => html_response(
            "504 Gateway Timeout",
            html::page(
                "The warehouse is slow",
                &format!(
                    "<p class=\"error\">The ledger did not answer within {}s; try again, or see <a href=\"/readyz\">/readyz</a>.</p>",
                    PAGE_TIMEOUT.as_secs()
                ),
            ),
        ),
    })
}

/// Why a page could not be shown.
#[derive(Debug)]
enum Trouble {
    /// No such job or file.
    NotFound(String),
    /// The ledger read failed: why.
    Ledger(String),
    /// The ledger did not answer within [`PAGE_TIMEOUT`].
    Slow,
}

impl From<crate::Error> for Trouble {
    fn from(e: crate::Error) -> Self {
        Trouble::Ledger(e.chain())
    }
}

/// An HTML page with headers that keep it in its lane: nothing but its
/// own stylesheet loads, forms post only here, nothing frames it.
fn html_response(status: &'static str, body: String) -> Response {
    Response {
        status,
        content_type: HTML,
        headers: vec![
            (
                "content-security-policy",
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'".to_string(),
            ),
            ("x-content-type-options", "nosniff".to_string()),
            ("referrer-policy", "no-referrer".to_string()),
            ("cache-control", "no-store".to_string()),
        ],
        body,
        head_only: false,
    }
}

/// Whether `given` is the admin token, compared in time that does not
/// depend on where they differ (both hashed first, so not on length
/// either).
pub fn token_matches(given: &str, token: &Secret) -> bool {
    use sha2::{Digest, Sha256};
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(token.expose().as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// A button's POST: checks the token, runs the operation as the CLI would,
/// and sends the browser back to the job's page with what happened.
async fn admin(rt: &Runtime, job: &str, action: &str, req: &Request) -> Response {
    let Some(token) = &rt.config.daemon.admin_token else {
        return Response::text("404 Not Found", "not found\n");
    };
    let given = req
        .headers
        .get("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .or_else(|| req.form.get("token").map(String::as_str))
        .unwrap_or("");
    if !token_matches(given, token) {
        tracing::warn!(
            job,
            action,
            "status page: an admin action with a wrong token was refused"
        );
        return Response::text("403 Forbidden", "wrong or missing admin token\n");
    }
    let cfg = &rt.config;
    let wh = &*rt.warehouse;
    let done = match action {
        "pause" => crate::commands::ops::set_paused(cfg, wh, job, true).await,
        "resume" => crate::commands::ops::set_paused(cfg, wh, job, false).await,
        "retry" => {
            let path = req
                .form
                .get("path")
                .map(String::as_str)
                .filter(|p| !p.is_empty());
            crate::commands::ops::retry(cfg, wh, job, path).await
        }
        _ => return Response::text("404 Not Found", "no such action (pause, resume, retry)\n"),
    };
    let said = match done {
        Ok(said) => {
            tracing::info!(job, action, said, "status page: admin action");
            said
        }
        Err(e) => format!("{action} failed: {}", e.chain()),
    };
    Response::see_other(format!(
        "/jobs/{}?said={}",
        super::request::encode(job),
        super::request::encode(&said)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_itself_matches() {
        let t = Secret::new("0123456789abcdef0123");
        assert!(token_matches("0123456789abcdef0123", &t));
        assert!(!token_matches("0123456789abcdef012", &t));
        assert!(!token_matches("", &t));
        assert!(!token_matches("1123456789abcdef0123", &t));
    }
}

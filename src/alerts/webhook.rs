//! One HTTP/1.1 POST of a JSON body to a webhook URL (`http://` or
//! `https://`, TLS with the system's roots), within a deadline, and what
//! its answer means: 2xx delivered; 408, 429 and 5xx worth another try;
//! any other status refused for good (a wrong URL stays wrong).

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a delivery failed, and whether another attempt may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// What went wrong (never the URL itself: it may carry a token).
    pub why: String,
    /// Another attempt may succeed.
    pub retry: bool,
}

/// A URL's parts.
#[derive(Debug, PartialEq, Eq)]
struct Url<'u> {
    tls: bool,
    host: &'u str,
    port: u16,
    target: String,
}

fn parse(url: &str) -> Option<Url<'_>> {
    let (tls, rest) = match url.split_once("://")? {
        ("https", r) => (true, r),
        ("http", r) => (false, r),
        _ => return None,
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, rest) = v6.split_once(']')?;
        match rest.strip_prefix(':') {
            Some(p) => (h, p.parse().ok()?),
            None if rest.is_empty() => (h, default),
            None => return None,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, default),
        }
    };
    if host.is_empty() {
        return None;
    }
    let target = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    Some(Url {
        tls,
        host,
        port,
        target,
    })
}

/// POSTs `body` (JSON) to `url` within `deadline`.
pub async fn post(url: &str, body: &str, deadline: Duration) -> Result<(), Failed> {
    let Some(u) = parse(url) else {
        return Err(Failed {
            why: "the webhook URL cannot be parsed".into(),
            retry: false,
        });
    };
    match tokio::time::timeout(deadline, exchange(&u, body)).await {
        Ok(r) => r,
        Err(_) => Err(Failed {
            why: format!("no answer from {} within {}s", u.host, deadline.as_secs()),
            retry: true,
        }),
    }
}

async fn exchange(u: &Url<'_>, body: &str) -> Result<(), Failed> {
    let net = |e: std::io::Error| Failed {
        why: format!("{}:{}: {e}", u.host, u.port),
        retry: true,
    };
    let tcp = tokio::net::TcpStream::connect((u.host, u.port))
        .await
        .map_err(net)?;
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nuser-agent: ferry/{}\r\nconnection: close\r\n\r\n",
        u.target,
        u.host,
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    let status = if u.tls {
        let config = tls()?;
        let name =
            rustls_pki_types::ServerName::try_from(u.host.to_string()).map_err(|e| Failed {
                why: format!("{} is not a host name: {e}", u.host),
                retry: false,
            })?;
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(net)?;
        send(&mut tls, &head, body).await.map_err(net)?
    } else {
        let mut tcp = tcp;
        send(&mut tcp, &head, body).await.map_err(net)?
    };
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(Failed {
            why: format!("{} answered {status}", u.host),
            retry: true,
        }),
        _ => Err(Failed {
            why: format!("{} refused the message with {status}", u.host),
            retry: false,
        }),
    }
}

/// The TLS client configuration, built once (the system's roots are read
/// from disk).
fn tls() -> Result<std::sync::Arc<tokio_rustls::rustls::ClientConfig>, Failed> {
    type Config = std::sync::Arc<tokio_rustls::rustls::ClientConfig>;
    static TLS: std::sync::OnceLock<Result<Config, String>> = std::sync::OnceLock::new();
    TLS.get_or_init(|| crate::tls::client_config(None).map_err(|e| e.chain()))
        .clone()
        .map_err(|why| Failed { why, retry: false })
}

/// Writes the request and reads the status code of the answer.
async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    head: &str,
    body: &str,
) -> std::io::Result<u16> {
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    s.flush().await?;
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.contains(&b'\n') && got.len() < 8192 {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&got);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("the answer is not HTTP"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_target() {
        let u = parse("https://hooks.slack.com/services/T/B/x?y=1").unwrap();
        assert_eq!(
            (u.tls, u.host, u.port, u.target.as_str()),
            (true, "hooks.slack.com", 443, "/services/T/B/x?y=1")
        );
        let u = parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.tls, u.host, u.port, u.target.as_str()),
            (false, "127.0.0.1", 8080, "/")
        );
        let u = parse("http://[::1]:9000/hook").unwrap();
        assert_eq!((u.host, u.port), ("::1", 9000));
        assert_eq!(parse("https://[::1]/").unwrap().port, 443);
        let u = parse("http://example.com?x").unwrap();
        assert_eq!(u.target, "/?x");
        assert!(parse("ftp://x/").is_none());
        assert!(parse("http://:80/").is_none());
        assert!(parse("http://h:notaport/").is_none());
    }

    #[tokio::test]
    async fn statuses_decide_between_retry_and_refusal() {
        for (status, expect) in [
            ("200 OK", None),
            ("204 No Content", None),
            ("429 Too Many Requests", Some(true)),
            ("503 Service Unavailable", Some(true)),
            ("404 Not Found", Some(false)),
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
            let server = tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap();
                s.write_all(answer.as_bytes()).await.unwrap();
                String::from_utf8_lossy(&buf[..n]).into_owned()
            });
            let r = post(
                &format!("http://127.0.0.1:{port}/hook"),
                "{\"text\":\"hi\"}",
                Duration::from_secs(5),
            )
            .await;
            assert_eq!(r.as_ref().err().map(|f| f.retry), expect, "{status}: {r:?}");
            let request = server.await.unwrap();
            assert!(request.starts_with("POST /hook HTTP/1.1\r\n"), "{request}");
        }
    }

    #[tokio::test]
    async fn a_silent_server_is_a_retry_after_the_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _hold = tokio::spawn(async move {
            let (_s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let r = post(
            &format!("http://127.0.0.1:{port}/"),
            "{}",
            Duration::from_millis(300),
        )
        .await;
        let f = r.unwrap_err();
        assert!(f.retry && f.why.contains("no answer"), "{f:?}");
    }
}

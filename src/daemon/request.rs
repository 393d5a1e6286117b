//! HTTP/1.1 requests and answers for the daemon's listener, read and
//! written by hand: one request per connection, a bounded head and body,
//! percent-decoded path and query, and a form body for the status page's
//! buttons. Anything malformed is a `400`, never a panic.

use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most a request's head (request line and headers) may hold.
const MAX_HEAD: usize = 16 * 1024;
/// The most a request's body may hold (a form of a few fields).
const MAX_BODY: usize = 16 * 1024;

/// One request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, percent-decoded, split at `/` (empty segments dropped):
    /// `/jobs/a%2Fb` is `["jobs", "a/b"]`.
    pub segments: Vec<String>,
    /// Query parameters, percent-decoded (the last of a repeated name).
    pub query: BTreeMap<String, String>,
    /// Header values by lower-case name.
    pub headers: BTreeMap<String, String>,
    /// A form body (`application/x-www-form-urlencoded`), decoded.
    pub form: BTreeMap<String, String>,
}

/// Why a request could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// The client sent nothing in time, or went away: no answer.
    Gone,
    /// Malformed or too large: answered `400` with this reason.
    Bad(&'static str),
}

impl Request {
    /// Reads one request from `socket` within `deadline` in all.
    pub async fn read<R: AsyncRead + Unpin>(
        socket: &mut R,
        deadline: Duration,
    ) -> Result<Request, Unreadable> {
        match tokio::time::timeout(deadline, read_request(socket)).await {
            Ok(r) => r,
            Err(_) => Err(Unreadable::Gone),
        }
    }

    /// The query parameter `name`, if given and not empty.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

async fn read_request<R: AsyncRead + Unpin>(socket: &mut R) -> Result<Request, Unreadable> {
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        let end = memchr::memmem::find(&buf, b"\r\n\r\n");
        if end.unwrap_or(buf.len()) > MAX_HEAD {
            return Err(Unreadable::Bad("request head too large"));
        }
        if let Some(at) = end {
            break at;
        }
        let mut chunk = [0u8; 2048];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                return Err(if buf.is_empty() {
                    Unreadable::Gone
                } else {
                    Unreadable::Bad("request ended inside its head")
                });
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head =
        std::str::from_utf8(&buf[..head_end]).map_err(|_| Unreadable::Bad("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(_version), None) = (
        request_line.next(),
        request_line.next(),
        request_line.next(),
        request_line.next(),
    ) else {
        return Err(Unreadable::Bad("malformed request line"));
    };
    let mut headers = BTreeMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(Unreadable::Bad("malformed header"));
        };
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let length: usize = match headers.get("content-length") {
        Some(v) => v
            .parse()
            .map_err(|_| Unreadable::Bad("bad content-length"))?,
        None => 0,
    };
    if length > MAX_BODY {
        return Err(Unreadable::Bad("request body too large"));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 2048];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(Unreadable::Bad("request ended inside its body")),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(length);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let form_type = headers
        .get("content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let form = if form_type {
        pairs(std::str::from_utf8(&body).map_err(|_| Unreadable::Bad("form is not UTF-8"))?)
    } else {
        BTreeMap::new()
    };
    Ok(Request {
        method: method.to_string(),
        segments: path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| decode(s, false))
            .collect(),
        query: pairs(query),
        headers,
        form,
    })
}

/// `a=1&b=x+y` as decoded pairs.
fn pairs(text: &str) -> BTreeMap<String, String> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k, true), decode(v, true))
        })
        .collect()
}

/// Percent-decodes `s` (and `+` as a space in a query or form); a broken
/// escape stays as it is, bytes that are not UTF-8 become U+FFFD.
pub fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes `s` for a path segment or a query value: everything but
/// unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An answer: status line, content type, extra headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `200 OK`, `404 Not Found`, …
    pub status: &'static str,
    /// The body's content type.
    pub content_type: &'static str,
    /// More headers (a redirect's `location`, caching).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: String,
    /// Answering a `HEAD`: the head alone (with the body's length).
    pub head_only: bool,
}

/// Plain text.
pub const TEXT: &str = "text/plain; charset=utf-8";
/// An HTML page.
pub const HTML: &str = "text/html; charset=utf-8";

impl Response {
    /// `status` with a plain-text body.
    pub fn text(status: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: TEXT,
            headers: Vec::new(),
            body: body.into(),
            head_only: false,
        }
    }

    /// A `303 See Other` to `location` (after a button's POST).
    pub fn see_other(location: String) -> Response {
        Response {
            status: "303 See Other",
            content_type: TEXT,
            headers: vec![("location", location)],
            body: String::new(),
            head_only: false,
        }
    }

    /// The bytes on the wire, with `connection: close`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(raw: &[u8]) -> Result<Request, Unreadable> {
        let mut r = raw;
        Request::read(&mut r, Duration::from_secs(1)).await
    }

    #[tokio::test]
    async fn a_get_splits_and_decodes_its_path_and_query() {
        let r =
            parse(b"GET /jobs/a%2Fb/file?path=%2Fin%2Fx+y.csv&size=3 HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.segments, ["jobs", "a/b", "file"]);
        assert_eq!(r.param("path"), Some("/in/x y.csv"));
        assert_eq!(r.param("size"), Some("3"));
        assert_eq!(r.headers["host"], "x");
    }

    #[tokio::test]
    async fn a_post_form_arrives_in_pieces() {
        let body = "token=s3cr%21t&x=1";
        let raw = format!(
            "POST /jobs/j/pause HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = parse(raw.as_bytes()).await.unwrap();
        assert_eq!(r.form["token"], "s3cr!t");
        assert_eq!(r.segments, ["jobs", "j", "pause"]);
    }

    #[tokio::test]
    async fn malformed_or_oversized_requests_are_refused() {
        assert_eq!(parse(b"").await, Err(Unreadable::Gone));
        assert_eq!(
            parse(b"GET\r\n\r\n").await,
            Err(Unreadable::Bad("malformed request line"))
        );
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(
            parse(big.as_bytes()).await,
            Err(Unreadable::Bad("request head too large"))
        );
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\ncontent-length: 99999999\r\n\r\n").await,
            Err(Unreadable::Bad("request body too large"))
        );
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\ncontent-length: 10\r\n\r\nabc").await,
            Err(Unreadable::Bad("request ended inside its body"))
        );
    }

    #[test]
    fn percent_coding_round_trips_and_broken_escapes_stay() {
        for s in ["/in/a b.csv", "ü!*'();:@&=+$,/?#[]%", ""] {
            assert_eq!(decode(&encode(s), false), s);
        }
        assert_eq!(decode("100%", false), "100%");
        assert_eq!(decode("%zz%4", false), "%zz%4");
        assert_eq!(decode("%ff", false), "\u{fffd}");
        assert_eq!(decode("%+1", false), "%+1");
    }
}

//! A real headless Chromium for tests, driven through ChromeDriver's
//! WebDriver protocol (JSON over HTTP on loopback): open a page, read its
//! title, source and elements' text, type into a field, click, and save a
//! screenshot. Debian's `chromium` and `chromium-driver` packages
//! (`/usr/bin/chromium`, `/usr/bin/chromedriver`) are installed by
//! `.ci/setup`.
//!
//! Every call has a deadline; the driver (and the browser under it) is
//! killed when the [`Browser`] is dropped.

use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one WebDriver command may take (a page load included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The key WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A ChromeDriver with one browser session.
pub struct Browser {
    driver: tokio::process::Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

/// Where the browser and its driver are, overridable by `CHROMIUM` and
/// `CHROMEDRIVER`.
fn binary(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

impl Browser {
    /// Starts ChromeDriver on a free port and a headless Chromium session
    /// with a `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Browser> {
        let driver_bin = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = binary("CHROMIUM", "/usr/bin/chromium");
        for b in [&driver_bin, &chromium] {
            anyhow::ensure!(
                Path::new(b).exists(),
                "{b} is missing: install Debian's chromium and chromium-driver (bash .ci/setup does)"
            );
        }
        let port = super::free_port()?;
        let driver = tokio::process::Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let profile = tempfile::tempdir()?;
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let ready = async {
            loop {
                if let Ok(v) = browser.call("GET", "/status", None).await
                    && v["value"]["ready"].as_bool() == Some(true)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(15), ready)
            .await
            .map_err(|_| anyhow::anyhow!("chromedriver did not get ready within 15 s"))?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ],
            },
        }}});
        let v = browser.call("POST", "/session", Some(caps)).await?;
        browser.session = v["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no session id in {v}"))?
            .to_string();
        Ok(browser)
    }

    /// One WebDriver command: `method` on `path` with a JSON body; an
    /// answer whose `value` holds an `error` is an error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let exchange = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
            let head = format!(
                "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                self.port,
                body.len()
            );
            s.write_all(head.as_bytes()).await?;
            s.write_all(body.as_bytes()).await?;
            // The driver may keep the connection open: read the head,
            // then as much body as it announces.
            let mut out = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&chunk[..n]);
                if complete(&out) {
                    break;
                }
            }
            anyhow::Ok(out)
        };
        let raw = tokio::time::timeout(COMMAND_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                anyhow::anyhow!("WebDriver {method} {path}: no answer within {COMMAND_TIMEOUT:?}")
            })??;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow::anyhow!("WebDriver {method} {path}: no HTTP answer"))?;
        // ChromeDriver may answer chunked.
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            unchunk(body)
        } else {
            body.to_string()
        };
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| anyhow::anyhow!("WebDriver {method} {path}: {e} in {body:?}"))?;
        if let Some(err) = v["value"]["error"].as_str() {
            anyhow::bail!(
                "WebDriver {method} {path}: {err}: {}",
                v["value"]["message"].as_str().unwrap_or("")
            );
        }
        Ok(v)
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` and waits for it to load.
    pub async fn open(&self, url: &str) -> anyhow::Result<()> {
        self.call("POST", &self.at("/url"), Some(json!({"url": url})))
            .await
            .map(|_| ())
    }

    /// The page's title.
    pub async fn title(&self) -> anyhow::Result<String> {
        let v = self.call("GET", &self.at("/title"), None).await?;
        Ok(v["value"].as_str().unwrap_or_default().to_string())
    }

    /// The page's current URL.
    pub async fn url(&self) -> anyhow::Result<String> {
        let v = self.call("GET", &self.at("/url"), None).await?;
        Ok(v["value"].as_str().unwrap_or_default().to_string())
    }

    /// The DOM as the browser has it, serialized.
    pub async fn source(&self) -> anyhow::Result<String> {
        let v = self.call("GET", &self.at("/source"), None).await?;
        Ok(v["value"].as_str().unwrap_or_default().to_string())
    }

    async fn element(&self, css: &str) -> anyhow::Result<String> {
        let v = self
            .call(
                "POST",
                &self.at("/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        v["value"][ELEMENT]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("no element {css:?}"))
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let e = self.element(css).await?;
        let v = self
            .call("GET", &self.at(&format!("/element/{e}/text")), None)
            .await?;
        Ok(v["value"].as_str().unwrap_or_default().to_string())
    }

    /// The text of the first element matching `css` once it holds
    /// `needle` (after a click that loads another page), waiting up to
    /// 10 s; the last text seen in the error otherwise.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> anyhow::Result<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.text(css).await;
            match seen {
                Ok(t) if t.contains(needle) => return Ok(t),
                _ if std::time::Instant::now() > deadline => {
                    anyhow::bail!("{css} never held {needle:?} within 10 s; last: {seen:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> anyhow::Result<usize> {
        let v = self
            .call(
                "POST",
                &self.at("/elements"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        Ok(v["value"].as_array().map_or(0, Vec::len))
    }

    /// Types `text` into the first element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let e = self.element(css).await?;
        self.call(
            "POST",
            &self.at(&format!("/element/{e}/value")),
            Some(json!({"text": text})),
        )
        .await
        .map(|_| ())
    }

    /// Clicks the first element matching `css` (a submit follows its form).
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let e = self.element(css).await?;
        self.call(
            "POST",
            &self.at(&format!("/element/{e}/click")),
            Some(json!({})),
        )
        .await
        .map(|_| ())
    }

    /// Saves a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let v = self.call("GET", &self.at("/screenshot"), None).await?;
        let png = base64_decode(v["value"].as_str().unwrap_or_default())?;
        anyhow::ensure!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        std::fs::write(path, png)?;
        Ok(())
    }

    /// Ends the session and stops the driver.
    pub async fn quit(mut self) {
        let _ = self.call("DELETE", &self.at(""), None).await;
        let _ = self.driver.kill().await;
    }
}

/// Whether `raw` holds a whole answer: its head and the body its
/// `content-length` announces, or a chunked body's last chunk.
fn complete(raw: &[u8]) -> bool {
    let Some(at) = memchr::memmem::find(raw, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
    let body = &raw[at + 4..];
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    length.is_some_and(|n| body.len() >= n)
}

/// A chunked body joined.
fn unchunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
}

/// Standard base64 (with padding) decoded.
fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    let value = |c: u8| -> anyhow::Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => anyhow::bail!("not base64: {:?}", c as char),
        } as u32)
    };
    let clean: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for quad in clean.chunks(4) {
        let data: Vec<u8> = quad.iter().copied().filter(|&b| b != b'=').collect();
        let mut n = 0u32;
        for (i, &c) in data.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..data.len().saturating_sub(1)]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_chunked_bodies_decode() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert!(base64_decode("a$==").is_err());
        assert_eq!(unchunk("5\r\nhello\r\n3\r\n!!!\r\n0\r\n\r\n"), "hello!!!");
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Len"));
    }
}

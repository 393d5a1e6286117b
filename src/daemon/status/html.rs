//! HTML for the status page: escaping (everything that comes from a file
//! or the ledger goes through [`esc`]), the page frame, tables, and the
//! stylesheet served at `/style.css`.

use std::fmt::Write;

/// `s` with `& < > " '` replaced by entities, safe in text and in quoted
/// attributes; control characters (a file name's escape sequence) are
/// shown as `\u{..}`.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A ledger cell: escaped text, or `–` for NULL.
pub fn cell(v: Option<&str>) -> String {
    v.map_or_else(|| "–".to_string(), esc)
}

/// An `href` built from path segments and query pairs, each
/// percent-encoded, then escaped for the attribute.
pub fn href(segments: &[&str], query: &[(&str, &str)]) -> String {
    use crate::daemon::request::encode;
    let mut url = String::new();
    for s in segments {
        url.push('/');
        url.push_str(&encode(s));
    }
    if url.is_empty() {
        url.push('/');
    }
    for (i, (k, v)) in query.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(&encode(k));
        url.push('=');
        url.push_str(&encode(v));
    }
    esc(&url)
}

/// A link to `url` (already from [`href`]) with `text` escaped.
pub fn link(url: &str, text: &str) -> String {
    format!("<a href=\"{url}\">{}</a>", esc(text))
}

/// A whole page: the frame with navigation, `title` and `body` (HTML).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · ferry</title><link rel=\"stylesheet\" href=\"/style.css\"></head>\n<body>\
         <header><a class=\"brand\" href=\"/\">ferry</a><nav><a href=\"/\">Jobs</a> \
         <a href=\"/loads\">Loads</a> <a href=\"/metrics\">Metrics</a></nav></header>\n\
         <main><h1>{t}</h1>\n{body}</main>\n<footer>Rendered {now} UTC. \
         Read from the ledger and this daemon; refresh to update.</footer></body></html>\n",
        t = esc(title),
        now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S"),
    )
}

/// A table column: its header, and whether it holds numbers (right
/// aligned).
pub type Col = (&'static str, bool);

/// A table with `cols` and rows of ready HTML cells; `empty` (text) when
/// there are no rows.
pub fn table(id: &str, cols: &[Col], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\" id=\"{id}\">{}</p>\n", esc(empty));
    }
    let class = |num: bool| if num { " class=\"num\"" } else { "" };
    let mut out = format!("<table id=\"{id}\"><thead><tr>");
    for (h, num) in cols {
        let _ = write!(out, "<th{}>{}</th>", class(*num), esc(h));
    }
    out.push_str("</tr></thead><tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            let num = cols.get(i).is_some_and(|(_, n)| *n);
            let _ = write!(out, "<td{}>{c}</td>", class(num));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
    out
}

/// A state as a coloured badge.
pub fn badge(state: &str) -> String {
    let class = match state {
        "loaded" | "active" | "ok" | "caught up" => "good",
        "failed" | "down" | "stuck" => "bad",
        "paused" | "disabled" | "skipped" | "behind" | "running" => "warn",
        _ => "info",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(state))
}

pub use crate::telemetry::ago;

/// A count with thin thousands separators: `1 234 567`.
pub fn count(v: Option<&str>) -> String {
    let Some(v) = v else {
        return "–".into();
    };
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return esc(v);
    }
    let mut out = String::new();
    for (i, c) in v.chars().enumerate() {
        if i > 0 && (v.len() - i) % 3 == 0 {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    out
}

/// A ledger timestamp cut to seconds (`2026-12-07 13:55:01`).
pub fn when(v: Option<&str>) -> String {
    match v {
        Some(t) if t.len() >= 19 => esc(&t[..19]),
        other => cell(other),
    }
}

/// The stylesheet: small, no web fonts, readable in a narrow window.
pub const STYLE: &str = r#"
:root { --fg:#1d2330; --muted:#5c6578; --line:#d9dee8; --bg:#f6f7fa; --card:#fff;
  --good:#1d7f46; --bad:#b42318; --warn:#a15c07; --info:#2754b5; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; gap:2em; align-items:center; padding:.6em 1.5em; background:#1d2330; }
header a { color:#e8ecf4; text-decoration:none; margin-right:1.2em; }
header .brand { font-weight:700; font-size:1.15em; letter-spacing:.04em; }
main { padding:1em 1.5em 2em; max-width:1400px; }
h1 { font-size:1.35em; margin:.4em 0 .8em; word-break:break-all; }
h2 { font-size:1.1em; margin:1.6em 0 .5em; }
table { border-collapse:collapse; width:100%; background:var(--card); border:1px solid var(--line); }
th, td { text-align:left; padding:.35em .6em; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#eef1f6; font-weight:600; white-space:nowrap; }
td { word-break:break-word; max-width:48em; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
tbody tr:hover { background:#f0f4fb; }
a { color:var(--info); }
code, .mono { font-family:ui-monospace, SFMono-Regular, Menlo, monospace; font-size:.92em; }
.badge { display:inline-block; padding:0 .55em; border-radius:1em; font-size:.85em; font-weight:600; color:#fff; white-space:nowrap; }
.badge.good { background:var(--good); } .badge.bad { background:var(--bad); }
.badge.warn { background:var(--warn); } .badge.info { background:var(--info); }
.error { color:var(--bad); }
.empty, footer, .muted { color:var(--muted); }
footer { padding:1em 1.5em; font-size:.85em; }
dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:.2em 1.2em; background:var(--card); border:1px solid var(--line); padding:.8em 1em; }
dl.facts dt { color:var(--muted); } dl.facts dd { margin:0; word-break:break-all; }
form.admin { display:inline-flex; gap:.4em; align-items:center; margin:.2em 1em .2em 0; }
form.admin input[type=password] { width:14em; padding:.25em .4em; }
button { padding:.3em .9em; border:1px solid var(--line); border-radius:4px; background:#fff; cursor:pointer; }
svg.chart { background:var(--card); border:1px solid var(--line); max-width:100%; height:auto; }
svg.chart .bar { fill:var(--info); } svg.chart text { font-size:11px; fill:var(--muted); }
svg.chart line { stroke:var(--line); }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_comes_from_files_cannot_become_markup() {
        let name = "/in/<script>alert('x')</script>&\"q\".csv\u{1b}[2J";
        let e = esc(name);
        assert!(!e.contains('<') && !e.contains('>') && !e.contains('"') && !e.contains('\''));
        assert_eq!(
            e,
            "/in/&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;q&quot;.csv\\u{1b}[2J"
        );
        let h = href(&["jobs", "a\"b"], &[("path", "/in/\"><b>.csv")]);
        assert!(!h.contains('"') && !h.contains('<'), "{h}");
        assert_eq!(h, "/jobs/a%22b?path=%2Fin%2F%22%3E%3Cb%3E.csv");
    }

    #[test]
    fn numbers_and_durations_read_at_a_glance() {
        assert_eq!(count(Some("1234567")), "1\u{2009}234\u{2009}567");
        assert_eq!(count(Some("123")), "123");
        assert_eq!(count(None), "–");
        assert_eq!(ago(std::time::Duration::from_secs(42)), "42s");
        assert_eq!(ago(std::time::Duration::from_millis(300)), "300ms");
        assert_eq!(ago(std::time::Duration::ZERO), "0s");
        assert_eq!(ago(std::time::Duration::from_secs(192)), "3m 12s");
        assert_eq!(
            ago(std::time::Duration::from_secs(5 * 3600 + 120)),
            "5h 02m"
        );
        assert_eq!(
            ago(std::time::Duration::from_secs(2 * 86_400 + 4 * 3600)),
            "2d 4h"
        );
        assert_eq!(
            when(Some("2026-12-07 13:55:01.123456+00")),
            "2026-12-07 13:55:01"
        );
    }
}

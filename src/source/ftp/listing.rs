//! Parsers for FTP directory listings: MLSD facts (RFC 3659), Unix `ls -l`
//! style LIST lines, and DOS/IIS style LIST lines (2- or 4-digit years,
//! 12- or 24-hour times). Pure functions, tested against real server output.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};

/// What a listing line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// `.`/`..`, links and the like: skipped.
    Other,
}

/// One parsed listing line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The name (no folder).
    pub name: String,
    /// File, folder or other.
    pub kind: Kind,
    /// Size in bytes (0 when the line has none).
    pub size: u64,
    /// Modification time, Unix seconds, if the line has one.
    pub mtime: Option<i64>,
    /// Whether `mtime` has seconds (MLSD) or only minutes/days (LIST).
    pub precise: bool,
}

/// Parses one MLSD line: `fact=value;fact=value; name`.
pub fn parse_mlsd(line: &str) -> Option<Listed> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (facts, name) = line.split_once(' ')?;
    let mut kind = Kind::Other;
    let mut size = 0;
    let mut mtime = None;
    for fact in facts.split(';').filter(|f| !f.is_empty()) {
        let (k, v) = fact.split_once('=')?;
        match k.to_ascii_lowercase().as_str() {
            "type" => {
                kind = match v.to_ascii_lowercase().as_str() {
                    "file" => Kind::File,
                    "dir" => Kind::Dir,
                    _ => Kind::Other, // cdir, pdir, OS.unix=slink:…
                }
            }
            "size" => size = v.parse().ok()?,
            "modify" => mtime = parse_mdtm(v),
            _ => {}
        }
    }
    if name.is_empty() || name == "." || name == ".." {
        kind = Kind::Other;
    }
    Some(Listed {
        name: name.to_string(),
        kind,
        size,
        mtime,
        precise: true,
    })
}

/// Parses an MDTM / MLSD time `YYYYMMDDHHMMSS[.sss]` (always UTC).
pub fn parse_mdtm(v: &str) -> Option<i64> {
    let digits = v.get(..14)?;
    NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M%S")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// Splits into whitespace-separated tokens with their byte offsets.
fn tokens(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, &line[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

/// Parses one LIST line in Unix or DOS style. `now` resolves the year of
/// recent Unix entries, which show a time instead of a year.
pub fn parse_list(line: &str, now: NaiveDateTime) -> Option<Listed> {
    let line = line.trim_end_matches(['\r', '\n']);
    let first = line.chars().next()?;
    if first.is_ascii_digit() {
        return parse_dos(line);
    }
    if !matches!(first, '-' | 'd' | 'l' | 'b' | 'c' | 'p' | 's') {
        return None; // "total 12" and other chatter
    }
    let toks = tokens(line);
    // Find "Mon DD HH:MM|YYYY"; the size is the token before it.
    let m = (1..toks.len().saturating_sub(3)).find(|&i| {
        MONTHS.contains(&toks[i].1.to_ascii_lowercase().as_str())
            && toks[i + 1].1.parse::<u32>().is_ok()
    })?;
    let size: u64 = toks[m - 1].1.parse().ok()?;
    let month = MONTHS
        .iter()
        .position(|x| *x == toks[m].1.to_ascii_lowercase())? as u32
        + 1;
    let day: u32 = toks[m + 1].1.parse().ok()?;
    let when = toks[m + 2].1;
    let mtime = if let Some((h, mi)) = when.split_once(':') {
        let t = NaiveTime::from_hms_opt(h.parse().ok()?, mi.parse().ok()?, 0)?;
        let mut year = now.year();
        let mut dt = NaiveDate::from_ymd_opt(year, month, day)?.and_time(t);
        // A recent-looking date in the future belongs to last year.
        if dt > now + chrono::Duration::days(1) {
            year -= 1;
            dt = NaiveDate::from_ymd_opt(year, month, day)?.and_time(t);
        }
        dt
    } else {
        NaiveDate::from_ymd_opt(when.parse().ok()?, month, day)?.and_hms_opt(0, 0, 0)?
    };
    let name_start = toks.get(m + 3)?.0;
    let mut name = &line[name_start..];
    let kind = match first {
        '-' => Kind::File,
        'd' => Kind::Dir,
        _ => Kind::Other,
    };
    if first == 'l'
        && let Some((n, _)) = name.split_once(" -> ")
    {
        name = n;
    }
    let kind = if name == "." || name == ".." {
        Kind::Other
    } else {
        kind
    };
    Some(Listed {
        name: name.to_string(),
        kind,
        size,
        mtime: Some(mtime.and_utc().timestamp()),
        precise: false,
    })
}

fn parse_dos(line: &str) -> Option<Listed> {
    let toks = tokens(line);
    if toks.len() < 4 {
        return None;
    }
    let date = toks[0].1;
    let mut parts = date.split(['-', '/']);
    let (mo, d, y) = (parts.next()?, parts.next()?, parts.next()?);
    let mut year: i32 = y.parse().ok()?;
    if y.len() == 2 {
        year += if year < 70 { 2000 } else { 1900 };
    }
    let date = NaiveDate::from_ymd_opt(year, mo.parse().ok()?, d.parse().ok()?)?;
    let (time_tok, mut next) = (toks[1].1, 2);
    let upper = time_tok.to_ascii_uppercase();
    let (clock, ampm) = if let Some(c) = upper.strip_suffix("AM") {
        (c.to_string(), Some(false))
    } else if let Some(c) = upper.strip_suffix("PM") {
        (c.to_string(), Some(true))
    } else if matches!(toks[2].1.to_ascii_uppercase().as_str(), "AM" | "PM") {
        next = 3;
        (upper.clone(), Some(toks[2].1.eq_ignore_ascii_case("PM")))
    } else {
        (upper.clone(), None)
    };
    let (h, mi) = clock.split_once(':')?;
    let mut h: u32 = h.parse().ok()?;
    let mi: u32 = mi.get(..2).unwrap_or(mi).parse().ok()?;
    match ampm {
        Some(true) if h < 12 => h += 12,
        Some(false) if h == 12 => h = 0,
        _ => {}
    }
    let mtime = date.and_hms_opt(h, mi, 0)?;
    let size_tok = toks.get(next)?;
    let name_tok = toks.get(next + 1)?;
    let name = &line[name_tok.0..];
    let (kind, size) = if size_tok.1.eq_ignore_ascii_case("<DIR>") {
        (Kind::Dir, 0)
    } else {
        (Kind::File, size_tok.1.replace([',', '.'], "").parse().ok()?)
    };
    Some(Listed {
        name: name.to_string(),
        kind,
        size,
        mtime: Some(mtime.and_utc().timestamp()),
        precise: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 3, 10)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
    }

    fn ts(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<i64> {
        Some(
            NaiveDate::from_ymd_opt(y, mo, d)
                .unwrap()
                .and_hms_opt(h, mi, s)
                .unwrap()
                .and_utc()
                .timestamp(),
        )
    }

    #[test]
    fn mlsd_lines_from_pure_ftpd_and_libunftp() {
        let l =
            parse_mlsd("type=file;size=1234;modify=20260301101502;UNIX.mode=0644; events 1.csv\r")
                .unwrap();
        assert_eq!(
            l,
            Listed {
                name: "events 1.csv".into(),
                kind: Kind::File,
                size: 1234,
                mtime: ts(2026, 3, 1, 10, 15, 2),
                precise: true
            }
        );
        assert_eq!(
            parse_mlsd("type=cdir;modify=20260301101502; .")
                .unwrap()
                .kind,
            Kind::Other
        );
        assert_eq!(
            parse_mlsd("type=pdir;modify=20260301101502; ..")
                .unwrap()
                .kind,
            Kind::Other
        );
        assert_eq!(
            parse_mlsd("Type=dir;Modify=20260301101502.123; sub")
                .unwrap()
                .kind,
            Kind::Dir
        );
    }

    #[test]
    fn unix_list_lines_from_vsftpd() {
        let l = parse_list(
            "-rw-r--r--    1 1000     1000         1234 Mar 01 10:15 events.csv",
            now(),
        )
        .unwrap();
        assert_eq!(
            l,
            Listed {
                name: "events.csv".into(),
                kind: Kind::File,
                size: 1234,
                mtime: ts(2026, 3, 1, 10, 15, 0),
                precise: false
            }
        );
        // Older than six months: a year instead of a time.
        let l = parse_list(
            "-rw-r--r--    1 ftp      ftp            7 Nov 05  2024 old file.csv",
            now(),
        )
        .unwrap();
        assert_eq!(
            (l.name.as_str(), l.mtime),
            ("old file.csv", ts(2024, 11, 5, 0, 0, 0))
        );
        // A time in "the future" is last year.
        let l = parse_list(
            "-rw-r--r--    1 ftp      ftp            7 Dec 24 18:00 xmas.csv",
            now(),
        )
        .unwrap();
        assert_eq!(l.mtime, ts(2025, 12, 24, 18, 0, 0));
        assert_eq!(
            parse_list("drwxr-xr-x    2 ftp ftp 4096 Mar 01 10:15 sub", now())
                .unwrap()
                .kind,
            Kind::Dir
        );
        assert_eq!(
            parse_list("lrwxrwxrwx 1 ftp ftp 4 Mar 01 10:15 link -> target", now())
                .unwrap()
                .name,
            "link"
        );
        // No group column.
        let l = parse_list("-rw-r--r-- 1 owner 99 Mar 1 10:15 a.csv", now()).unwrap();
        assert_eq!((l.size, l.name.as_str()), (99, "a.csv"));
        assert!(parse_list("total 12", now()).is_none());
    }

    #[test]
    fn dos_list_lines_from_iis() {
        let l = parse_list("03-01-26  10:15AM                 1234 events.csv", now()).unwrap();
        assert_eq!(
            l,
            Listed {
                name: "events.csv".into(),
                kind: Kind::File,
                size: 1234,
                mtime: ts(2026, 3, 1, 10, 15, 0),
                precise: false
            }
        );
        let l = parse_list("10-19-20  03:19PM       <DIR>          pub", now()).unwrap();
        assert_eq!((l.kind, l.mtime), (Kind::Dir, ts(2020, 10, 19, 15, 19, 0)));
        // Four-digit years, 24-hour times, grouped sizes.
        let l = parse_list("03-01-2026  22:05       1,234,567 big file.csv", now()).unwrap();
        assert_eq!(
            (l.size, l.mtime, l.name.as_str()),
            (1_234_567, ts(2026, 3, 1, 22, 5, 0), "big file.csv")
        );
        let l = parse_list("03-01-2026  12:05 AM       10 midnight.csv", now()).unwrap();
        assert_eq!(l.mtime, ts(2026, 3, 1, 0, 5, 0));
    }

    #[test]
    fn mdtm_times_are_utc_and_drop_fractions() {
        assert_eq!(parse_mdtm("20260301101502"), ts(2026, 3, 1, 10, 15, 2));
        assert_eq!(parse_mdtm("20260301101502.999"), ts(2026, 3, 1, 10, 15, 2));
        assert_eq!(parse_mdtm("2026"), None);
    }
}

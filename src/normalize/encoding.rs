//! Single-byte text encodings to UTF-8: ISO-8859-1 (Latin-1) and
//! Windows-1252, whose 0x80–0x9F range holds €, smart quotes and dashes
//! where Latin-1 has control characters.

use crate::config::TextEncoding;
use std::io::{self, Read};

/// Windows-1252 0x80..=0x9F; U+FFFD for the five unassigned bytes.
const CP1252_HIGH: [char; 32] = [
    '€', '\u{FFFD}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{FFFD}', 'Ž',
    '\u{FFFD}', '\u{FFFD}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{FFFD}',
    'ž', 'Ÿ',
];

/// Transcodes a single-byte encoding into UTF-8 as it is read.
pub struct ToUtf8<R> {
    inner: R,
    encoding: TextEncoding,
    input: Vec<u8>,
    pending: Vec<u8>,
    pos: usize,
}

impl<R: Read> ToUtf8<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, encoding: TextEncoding) -> Self {
        ToUtf8 {
            inner,
            encoding,
            input: vec![0; 64 * 1024],
            pending: Vec::with_capacity(128 * 1024),
            pos: 0,
        }
    }
}

impl<R: Read> Read for ToUtf8<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.pending.len() {
            let n = self.inner.read(&mut self.input)?;
            if n == 0 {
                return Ok(0);
            }
            self.pending.clear();
            self.pos = 0;
            for &b in &self.input[..n] {
                let c = match (b, self.encoding) {
                    (0x00..=0x7f, _) => {
                        self.pending.push(b);
                        continue;
                    }
                    (0x80..=0x9f, TextEncoding::Windows1252) => CP1252_HIGH[(b - 0x80) as usize],
                    _ => char::from(b),
                };
                let mut tmp = [0u8; 4];
                self.pending
                    .extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
        let n = buf.len().min(self.pending.len() - self.pos);
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(bytes: &[u8], e: TextEncoding) -> String {
        let mut out = String::new();
        ToUtf8::new(bytes, e).read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn latin1_and_windows_1252() {
        assert_eq!(
            convert(b"caf\xe9 \x80", TextEncoding::Latin1),
            "café \u{80}"
        );
        assert_eq!(
            convert(b"caf\xe9 \x80 \x93q\x94", TextEncoding::Windows1252),
            "café € “q”"
        );
    }
}

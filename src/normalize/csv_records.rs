//! CSV records read with bounded memory: a record larger than
//! `max_record_bytes` is skipped (its bytes parsed and dropped, never
//! held) and reported, and the next record is read as usual.
//!
//! The parse is csv-core's, with the job's dialect; this module owns the
//! buffers around it: the input window, the unescaped fields of the current
//! record, and where each field ends.

use crate::config::CsvFormat;
use std::io::{self, Read};

/// What [`RecordReader::next`] found.
pub enum Next {
    /// A record, in the caller's buffer, starting on physical `line`.
    Record { line: u64 },
    /// A record starting on `line` that was `bytes` long, more than the
    /// limit; `head` holds its first bytes, as read (for the error row).
    TooLarge {
        line: u64,
        bytes: u64,
        head: Vec<u8>,
    },
    /// No more records.
    End,
}

/// Bytes of a skipped record kept for its error row.
const HEAD: usize = 256;

/// Reads CSV records from `input`, none larger than `max` bytes.
pub struct RecordReader<R> {
    core: csv_core::Reader,
    input: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
    out: Vec<u8>,
    ends: Vec<usize>,
    consumed: u64,
    max: u64,
    delimiter: u8,
}

impl<R: Read> RecordReader<R> {
    /// A reader of `input` in the dialect of `fmt`; records end at LF (a
    /// CR before it stays on the last field).
    pub fn new(fmt: &CsvFormat, input: R, max: u64) -> Self {
        let core = csv_core::ReaderBuilder::new()
            .delimiter(fmt.delimiter)
            .quote(fmt.quote)
            .escape(fmt.escape)
            .double_quote(fmt.escape.is_none())
            .terminator(csv_core::Terminator::Any(b'\n'))
            .build();
        RecordReader {
            core,
            input,
            buf: vec![0; 256 * 1024],
            pos: 0,
            len: 0,
            eof: false,
            out: vec![0; 4096],
            ends: vec![0; 64],
            consumed: 0,
            max,
            delimiter: fmt.delimiter,
        }
    }

    /// The first [`HEAD`] bytes of the record parsed so far, its fields
    /// joined by the delimiter (what the error row of a skipped record
    /// shows).
    fn head(&self, outlen: usize, endlen: usize) -> Vec<u8> {
        let mut head = Vec::with_capacity(HEAD + 1);
        let mut from = 0;
        let partial = (outlen > self.ends[..endlen].last().copied().unwrap_or(0)).then_some(outlen);
        for (i, end) in self.ends[..endlen]
            .iter()
            .copied()
            .chain(partial)
            .enumerate()
        {
            if head.len() >= HEAD {
                break;
            }
            if i > 0 {
                head.push(self.delimiter);
            }
            head.extend_from_slice(&self.out[from..end]);
            from = end;
        }
        head.truncate(HEAD);
        head
    }

    /// Reads the next record into `record` (cleared first).
    pub fn next(&mut self, record: &mut csv::ByteRecord) -> io::Result<Next> {
        use csv_core::ReadRecordResult as R;
        let start = self.consumed;
        let line = self.core.line();
        let (mut outlen, mut endlen) = (0, 0);
        let mut too_large = false;
        let mut head = Vec::new();
        loop {
            if self.pos == self.len && !self.eof {
                self.len = self.input.read(&mut self.buf)?;
                self.pos = 0;
                self.eof = self.len == 0;
            }
            let input = &self.buf[self.pos..self.len];
            let (res, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.out[outlen..], &mut self.ends[endlen..]);
            self.pos += nin;
            self.consumed += nin as u64;
            outlen += nout;
            endlen += nend;
            if !too_large && self.consumed - start > self.max {
                too_large = true;
                head = self.head(outlen, endlen);
            }
            match res {
                R::InputEmpty => {}
                // A record over the limit is parsed into the same buffers
                // again and again; one under it may grow them.
                R::OutputFull if too_large => outlen = 0,
                R::OutputEndsFull if too_large => endlen = 0,
                R::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                R::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                R::Record if too_large => {
                    return Ok(Next::TooLarge {
                        line,
                        bytes: self.consumed - start,
                        head,
                    });
                }
                R::Record => {
                    record.clear();
                    let mut from = 0;
                    for &end in &self.ends[..endlen] {
                        record.push_field(&self.out[from..end]);
                        from = end;
                    }
                    return Ok(Next::Record { line });
                }
                R::End => return Ok(Next::End),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt() -> CsvFormat {
        CsvFormat {
            delimiter: b',',
            quote: b'"',
            escape: None,
            header: true,
            field_names: Vec::new(),
            encoding: crate::config::TextEncoding::Utf8,
        }
    }

    fn all(input: &str, max: u64) -> Vec<String> {
        let mut r = RecordReader::new(&fmt(), input.as_bytes(), max);
        let mut rec = csv::ByteRecord::new();
        let mut seen = Vec::new();
        loop {
            match r.next(&mut rec).unwrap() {
                Next::Record { line } => seen.push(format!(
                    "{line}:{}",
                    rec.iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect::<Vec<_>>()
                        .join("|")
                )),
                Next::TooLarge { line, bytes, head } => {
                    seen.push(format!("{line}:too large {bytes} {}", head.len()))
                }
                Next::End => return seen,
            }
        }
    }

    #[test]
    fn quoted_newlines_doubled_quotes_and_line_numbers() {
        assert_eq!(
            all("a,b\n\"x\ny\",\"q\"\"q\"\n\n3,4", 1 << 20),
            vec!["1:a|b", "2:x\ny|q\"q", "4:3|4"]
        );
    }

    #[test]
    fn a_record_over_the_limit_is_skipped_whole_and_the_next_one_read() {
        let big = format!("1,\"{}\nstill\"\n2,b\n", "x".repeat(100_000));
        let seen = all(&big, 1000);
        assert_eq!(seen, vec!["1:too large 100011 256", "3:2|b"]);
        // Many small fields are as large as one big one.
        let many = format!("{}\nok\n", ",".repeat(5000));
        assert_eq!(all(&many, 1000), vec!["1:too large 5001 256", "2:ok"]);
    }

    #[test]
    fn a_record_at_the_limit_loads() {
        let line = format!("{}\n", "y".repeat(99));
        assert_eq!(all(&line, 100).len(), 1);
        assert!(all(&line, 99)[0].contains("too large"));
    }
}

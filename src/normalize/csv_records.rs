//! CSV records read with bounded memory: a record larger than
//! `max_record_bytes` is skipped (its bytes parsed and dropped, never
//! held) and reported, and the next record is read as usual.
//!
//! The parse is csv-core's, with the job's dialect; this module owns the
//! buffers around it: the input window, the unescaped fields of the current
//! record, and where each field ends. A record is handed out as one
//! checked UTF-8 text plus its field ends ([`Record`]): one validation and
//! one copy per record, none per field.

use crate::config::CsvFormat;
use std::io::{self, Read};

/// Records end to end: their fields' unescaped text in one string, where
/// each field ends, and where each record starts. Filled by
/// [`RecordReader::next`] one record at a time and handed on whole, so a
/// thread that reads them reads one contiguous buffer, not one allocation
/// per record (which, touched first on another core, misses the cache).
/// Reused from batch to batch (the buffers are kept).
#[derive(Debug, Default)]
pub struct Records {
    text: String,
    ends: Vec<usize>,
    /// Per record: its physical line, its first entry in `ends`, and
    /// where its text starts.
    starts: Vec<(u64, usize, usize)>,
}

/// One record of [`Records`].
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    text: &'a str,
    from: usize,
    ends: &'a [usize],
}

impl Records {
    /// How many records.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Empties the batch (buffers are kept).
    pub fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
        self.starts.clear();
    }

    /// Bytes of field text held.
    pub fn bytes(&self) -> usize {
        self.text.len()
    }

    /// Record `i` and its physical line.
    pub fn get(&self, i: usize) -> (u64, Record<'_>) {
        let (line, first, from) = self.starts[i];
        let last = self.starts.get(i + 1).map_or(self.ends.len(), |s| s.1);
        (
            line,
            Record {
                text: &self.text,
                from,
                ends: &self.ends[first..last],
            },
        )
    }

    /// The last record read.
    pub fn last(&self) -> Option<Record<'_>> {
        self.len().checked_sub(1).map(|i| self.get(i).1)
    }

    /// Drops the last record read (a blank or ragged line).
    pub fn pop(&mut self) {
        if let Some((_, first, from)) = self.starts.pop() {
            self.ends.truncate(first);
            self.text.truncate(from);
        }
    }

    /// Each record with its line.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Record<'_>)> {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl<'a> Record<'a> {
    /// How many fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Field `i`, as unescaped.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { self.from } else { self.ends[i - 1] };
        self.text.get(start..end)
    }

    /// The fields, in order.
    #[cfg(test)]
    pub fn fields(&self) -> impl Iterator<Item = &'a str> {
        let r = *self;
        (0..self.len()).map(move |i| r.get(i).unwrap_or_default())
    }
}

/// What [`RecordReader::next`] found.
pub enum Next {
    /// A record starting on physical `line`, appended to the caller's
    /// [`Records`].
    Record { line: u64 },
    /// A record starting on `line` whose field `field` (0-based) is not
    /// UTF-8 from its byte `byte` (0-based) on.
    NotUtf8 {
        line: u64,
        field: usize,
        byte: usize,
    },
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
    /// The last input byte parsed (a record ended by a line break has
    /// its terminator counted in csv-core's line).
    last_byte: u8,
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
            last_byte: 0,
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

    /// Reads the next record and appends it to `records`.
    pub fn next(&mut self, records: &mut Records) -> io::Result<Next> {
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
            if nin > 0 {
                self.last_byte = input[nin - 1];
            }
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
                    // csv-core skips blank lines before a record, so the
                    // line it started on is counted back from its end:
                    // the terminator's line, less the line breaks inside
                    // its (quoted) fields.
                    let end = self.core.line() - u64::from(self.last_byte == b'\n');
                    let inside = memchr::memchr_iter(b'\n', &self.out[..outlen]).count() as u64;
                    let line = end.saturating_sub(inside).max(line);
                    return Ok(self.take(records, line, outlen, endlen));
                }
                R::End => return Ok(Next::End),
            }
        }
    }
}

impl<R> RecordReader<R> {
    /// Appends the parsed record (`outlen` bytes, `endlen` fields) to
    /// `records`, checked as UTF-8 once: the whole text, and that no field
    /// end cuts a character (so every field is valid on its own).
    fn take(&self, records: &mut Records, line: u64, outlen: usize, endlen: usize) -> Next {
        let bytes = &self.out[..outlen];
        let ends = &self.ends[..endlen];
        let bad = |at: usize| {
            let field = ends
                .iter()
                .position(|&e| e > at)
                .unwrap_or(endlen.saturating_sub(1));
            let start = if field == 0 { 0 } else { ends[field - 1] };
            Next::NotUtf8 {
                line,
                field,
                byte: at - start,
            }
        };
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                if let Some(&cut) = ends.iter().find(|&&e| !text.is_char_boundary(e)) {
                    // A field ends inside a character: the field before
                    // the cut is not UTF-8 on its own.
                    let mut at = cut;
                    while !text.is_char_boundary(at) {
                        at -= 1;
                    }
                    return bad(at);
                }
                let from = records.text.len();
                records.starts.push((line, records.ends.len(), from));
                records.text.push_str(text);
                records.ends.extend(ends.iter().map(|e| from + e));
                Next::Record { line }
            }
            Err(e) => bad(e.valid_up_to()),
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
        all_of(input.as_bytes(), max).0
    }

    /// What the reader made of `input`, and the records it kept.
    fn all_of(input: &[u8], max: u64) -> (Vec<String>, Records) {
        let mut r = RecordReader::new(&fmt(), input, max);
        let mut rec = Records::default();
        let mut seen = Vec::new();
        loop {
            match r.next(&mut rec).unwrap() {
                Next::Record { line } => seen.push(format!(
                    "{line}:{}",
                    rec.last().unwrap().fields().collect::<Vec<_>>().join("|")
                )),
                Next::NotUtf8 { line, field, byte } => {
                    seen.push(format!("{line}:not utf-8 field {field} byte {byte}"))
                }
                Next::TooLarge { line, bytes, head } => {
                    seen.push(format!("{line}:too large {bytes} {}", head.len()))
                }
                Next::End => return (seen, rec),
            }
        }
    }

    #[test]
    fn quoted_newlines_doubled_quotes_and_line_numbers() {
        assert_eq!(
            all("a,b\n\"x\ny\",\"q\"\"q\"\n\n3,4", 1 << 20),
            vec!["1:a|b", "2:x\ny|q\"q", "5:3|4"]
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
    fn bytes_that_are_not_utf8_are_found_in_their_field() {
        let (seen, rec) = all_of(b"ok,\xc3\xa9t\xe9,x\n\xc3,\xa9\ny,z\n", 1 << 20);
        // Line 2's two fields are each a half of one character: the whole
        // text is valid, the fields are not.
        assert_eq!(
            seen,
            vec![
                "1:not utf-8 field 1 byte 3",
                "2:not utf-8 field 0 byte 0",
                "3:y|z"
            ]
        );
        // Only the good record was kept.
        assert_eq!(rec.len(), 1);
    }

    #[test]
    fn records_accumulate_and_the_last_can_be_dropped() {
        let mut r = RecordReader::new(&fmt(), &b"a,b\nx\nc,d\n"[..], 1 << 20);
        let mut recs = Records::default();
        while !matches!(r.next(&mut recs).unwrap(), Next::End) {
            if recs.last().is_some_and(|l| l.len() == 1) {
                recs.pop(); // as a ragged record is
            }
        }
        let all: Vec<String> = recs
            .iter()
            .map(|(line, rec)| format!("{line}:{}", rec.fields().collect::<Vec<_>>().join("|")))
            .collect();
        assert_eq!(all, vec!["1:a|b", "3:c|d"]);
        assert_eq!(recs.bytes(), 4);
    }

    #[test]
    fn a_record_after_blank_lines_has_its_own_line() {
        assert_eq!(
            all("a,b\n\n\nc,d\n\"e\nf\",g\r\n\r\nh,i", 1 << 20),
            vec!["1:a|b", "4:c|d", "5:e\nf|g\r", "7:\r", "8:h|i"]
        );
    }

    #[test]
    fn a_record_at_the_limit_loads() {
        let line = format!("{}\n", "y".repeat(99));
        assert_eq!(all(&line, 100).len(), 1);
        assert!(all(&line, 99)[0].contains("too large"));
    }
}

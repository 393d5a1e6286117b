//! Declarative transforms: a column's value computed from the record's
//! fields by an expression (`expr = "lower(trim(status))"`), compiled once
//! when the configuration is read — functions resolved, regular
//! expressions built, constant arguments checked — and evaluated per
//! record as a small tree, with no interpreter and no allocation where a
//! value passes through unchanged.
//!
//! The language: field references (`status`, or `"Task Id"` and
//! `"/task/id"` quoted), text in single quotes (`'it''s'`), numbers,
//! `+ - * /` on numbers (exact decimals), parentheses, and the functions
//! below. Every value is text or NULL, as in the staged file; the result is
//! then checked against the column's type like any value.
//!
//! | function | result |
//! |---|---|
//! | `lower(x)`, `upper(x)`, `trim(x)` | case folded, white space stripped |
//! | `concat(a, b, …)` | the texts joined; NULLs count as empty; NULL only when all are |
//! | `coalesce(a, b, …)` | the first that is not NULL |
//! | `substring(x, start[, length])` | characters from `start` (1-based) |
//! | `regex_extract(x, 'pattern'[, group])` | the first match (or its group); NULL when none |
//! | `split_part(x, 'delimiter', n)` | the n-th part (1-based); empty past the last |
//! | `replace(x, 'from', 'to')` | every `from` replaced |
//! | `nullif(x, 'text')` | NULL when x is the text |
//! | `date_part('unit', ts)` | year, quarter, month, week (ISO), day, dow (0 = Sunday), doy, hour, minute, second, epoch |
//! | `date_trunc('unit', ts)` | the UTC timestamp cut to year, quarter, month, week, day, hour or minute |
//! | `hash(a, b, …)` | SHA-256 hex of the texts joined by U+001F (NULL as empty): `SHA2(a \|\| CHR(31) \|\| b, 256)` in Redshift |
//! | `lookup('name', key[, default])` | the value of `key` in the job's lookup file `name`; `default` (or NULL) when absent |
//!
//! Errors in an expression name the position (1-based character) at
//! which they were found; errors while evaluating (a number expected, a
//! timestamp that is none) reject the record with code 1250, naming the
//! column and the value.

use super::coerce::parse_timestamp;
use chrono::{DateTime, Datelike, Timelike, Utc};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// Error code of a record whose expression failed on its values.
pub const EXPR_ERROR: i32 = 1250;

/// The largest lookup file read.
pub const MAX_LOOKUP_BYTES: u64 = 64 << 20;

/// A small mapping file a job's `lookup()` reads: key → value, loaded once
/// before the first file is normalized.
#[derive(Debug)]
pub struct Lookup {
    /// The name expressions use.
    pub name: String,
    /// Where it is: a local path or `s3://bucket/key`.
    pub location: String,
    table: OnceLock<HashMap<String, String>>,
}

impl Lookup {
    /// A lookup not loaded yet.
    pub fn new(name: &str, location: &str) -> Lookup {
        Lookup {
            name: name.to_string(),
            location: location.to_string(),
            table: OnceLock::new(),
        }
    }

    /// Loads the table from CSV text: a header line, then `key,value`
    /// rows (more fields are ignored; a repeated key: the last wins).
    pub fn load_csv(&self, text: &[u8]) -> Result<usize, String> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(text);
        let mut map = HashMap::new();
        for (i, row) in reader.records().enumerate() {
            let row = row.map_err(|e| format!("line {}: {e}", i + 2))?;
            match (row.get(0), row.get(1)) {
                (Some(k), Some(v)) => {
                    map.insert(k.trim().to_string(), v.trim().to_string());
                }
                _ => return Err(format!("line {}: expected key,value", i + 2)),
            }
        }
        let n = map.len();
        // Loaded once: a second load keeps the first table.
        let _ = self.table.set(map);
        Ok(n)
    }

    /// Loads the table from its local file.
    pub fn load_file(&self) -> Result<usize, String> {
        if self.location.starts_with("s3://") {
            return Err("on S3: only the daemon and `ferry once` read lookups from S3".into());
        }
        let size = std::fs::metadata(&self.location)
            .map_err(|e| e.to_string())?
            .len();
        if size > MAX_LOOKUP_BYTES {
            return Err("larger than 64 MiB".into());
        }
        #[allow(clippy::disallowed_methods)] // bounded just above
        let text = std::fs::read(&self.location).map_err(|e| e.to_string())?;
        self.load_csv(&text)
    }

    /// Whether the table is loaded.
    pub fn is_loaded(&self) -> bool {
        self.table.get().is_some()
    }

    fn get(&self, key: &str) -> Result<Option<&str>, String> {
        self.table
            .get()
            .map(|t| t.get(key).map(String::as_str))
            .ok_or_else(|| format!("lookup {} ({}) is not loaded", self.name, self.location))
    }
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct Expr {
    root: Node,
    /// The input fields it reads; the value getter of [`eval`](Self::eval) is asked by index into this list.
    pub fields: Vec<String>,
    /// The expression as written.
    pub text: String,
}

/// Two expressions are equal when they are written alike.
impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Expr {}

/// Where an expression is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// 1-based character position.
    pub at: usize,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for ExprError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at position {}: {}", self.at, self.reason)
    }
}

#[derive(Debug, Clone)]
enum Node {
    Field(usize),
    Text(String),
    Number(Dec),
    Arith(Op, Box<Node>, Box<Node>),
    Neg(Box<Node>),
    Call(Func, Vec<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Year,
    Quarter,
    Month,
    Week,
    Day,
    Dow,
    Doy,
    Hour,
    Minute,
    Second,
    Epoch,
}

#[derive(Debug, Clone)]
enum Func {
    Lower,
    Upper,
    Trim,
    Concat,
    Coalesce,
    Substring,
    RegexExtract(Box<regex::Regex>, usize),
    SplitPart(String),
    Replace(String, String),
    NullIf(String),
    DatePart(Unit),
    DateTrunc(Unit),
    Hash,
    Lookup(Arc<Lookup>),
}

/// An exact decimal: `m / 10^s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dec {
    m: i128,
    s: u32,
}

const MAX_SCALE: u32 = 18;

impl Dec {
    fn parse(text: &str) -> Option<Dec> {
        let t = text.trim();
        let (neg, digits) = match t.as_bytes().first()? {
            b'-' => (true, &t[1..]),
            b'+' => (false, &t[1..]),
            _ => (false, t),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > MAX_SCALE as usize
            || int.len() > 30
        {
            return None;
        }
        let mut m: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            m = m.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        }
        Some(Dec {
            m: if neg { -m } else { m },
            s: frac.len() as u32,
        })
    }

    fn rescale(self, s: u32) -> Option<Dec> {
        let m = self
            .m
            .checked_mul(10i128.checked_pow(s.checked_sub(self.s)?)?)?;
        Some(Dec { m, s })
    }

    fn arith(self, op: Op, b: Dec) -> Result<Dec, String> {
        let overflow = || "the number is too large".to_string();
        match op {
            Op::Add | Op::Sub => {
                let s = self.s.max(b.s);
                let (x, y) = (
                    self.rescale(s).ok_or_else(overflow)?,
                    b.rescale(s).ok_or_else(overflow)?,
                );
                let m = if op == Op::Add {
                    x.m.checked_add(y.m)
                } else {
                    x.m.checked_sub(y.m)
                };
                Ok(Dec {
                    m: m.ok_or_else(overflow)?,
                    s,
                })
            }
            Op::Mul => {
                let m = self.m.checked_mul(b.m).ok_or_else(overflow)?;
                let d = Dec { m, s: self.s + b.s };
                Ok(if d.s > MAX_SCALE { d.cut(MAX_SCALE) } else { d })
            }
            Op::Div => {
                if b.m == 0 {
                    return Err("division by zero".into());
                }
                // Six more places than the inputs have, at most MAX_SCALE.
                let s = (self.s.max(b.s) + 6).min(MAX_SCALE);
                // self.m / 10^self.s ÷ b.m / 10^b.s = self.m * 10^(s + b.s - self.s) / b.m / 10^s
                let up = (s + b.s).checked_sub(self.s);
                let m = match up {
                    Some(up) => {
                        self.m
                            .checked_mul(10i128.checked_pow(up).ok_or_else(overflow)?)
                            .ok_or_else(overflow)?
                            / b.m
                    }
                    None => self.m / 10i128.pow(self.s - s - b.s) / b.m,
                };
                Ok(Dec { m, s })
            }
        }
    }

    /// Cut (toward zero) to `s` places.
    fn cut(self, s: u32) -> Dec {
        if self.s <= s {
            return self;
        }
        Dec {
            m: self.m / 10i128.pow(self.s - s),
            s,
        }
    }

    /// The shortest text: no trailing zeros after the point, no point
    /// for a whole number.
    fn text(self) -> String {
        let (mut m, mut s) = (self.m, self.s);
        while s > 0 && m % 10 == 0 {
            m /= 10;
            s -= 1;
        }
        // Digits backwards into a buffer: sign, 39 digits, a point, zeros.
        let mut buf = [0u8; 64];
        let mut i = buf.len();
        let mut u = m.unsigned_abs();
        let mut written = 0u32;
        loop {
            if written == s && s > 0 {
                i -= 1;
                buf[i] = b'.';
            }
            i -= 1;
            buf[i] = b'0' + (u % 10) as u8;
            u /= 10;
            written += 1;
            if u == 0 && written > s {
                break;
            }
        }
        if m < 0 {
            i -= 1;
            buf[i] = b'-';
        }
        String::from_utf8(buf[i..].to_vec()).expect("ASCII digits")
    }
}

/// Compiles `text`; `lookups` are the job's lookup files.
pub fn compile(text: &str, lookups: &[Arc<Lookup>]) -> Result<Expr, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut p = Parser {
        chars: &chars,
        at: 0,
        fields: Vec::new(),
        lookups,
        depth: 0,
    };
    let root = p.expr()?;
    p.space();
    if p.at < chars.len() {
        return Err(p.error(format!("unexpected {:?}", chars[p.at])));
    }
    Ok(Expr {
        root,
        fields: p.fields,
        text: text.to_string(),
    })
}

/// Nesting deeper than this is refused (no stack overflow on hostile input).
const MAX_DEPTH: usize = 64;

struct Parser<'c, 'l> {
    chars: &'c [char],
    at: usize,
    fields: Vec<String>,
    lookups: &'l [Arc<Lookup>],
    depth: usize,
}

impl Parser<'_, '_> {
    fn error(&self, reason: String) -> ExprError {
        ExprError {
            at: self.at + 1,
            reason,
        }
    }

    fn space(&mut self) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.space();
        self.chars.get(self.at).copied()
    }

    fn expect(&mut self, c: char) -> Result<(), ExprError> {
        match self.peek() {
            Some(d) if d == c => {
                self.at += 1;
                Ok(())
            }
            Some(d) => Err(self.error(format!("expected {c:?}, found {d:?}"))),
            None => Err(self.error(format!("expected {c:?} at the end"))),
        }
    }

    fn expr(&mut self) -> Result<Node, ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nested more than {MAX_DEPTH} deep")));
        }
        let mut left = self.term()?;
        while let Some(c @ ('+' | '-')) = self.peek() {
            self.at += 1;
            let right = self.term()?;
            let op = if c == '+' { Op::Add } else { Op::Sub };
            left = Node::Arith(op, Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn term(&mut self) -> Result<Node, ExprError> {
        let mut left = self.unary()?;
        while let Some(c @ ('*' | '/')) = self.peek() {
            self.at += 1;
            let right = self.unary()?;
            let op = if c == '*' { Op::Mul } else { Op::Div };
            left = Node::Arith(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        if self.peek() == Some('-') {
            self.at += 1;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(self.error(format!("nested more than {MAX_DEPTH} deep")));
            }
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Node::Neg(Box::new(inner)));
        }
        self.primary()
    }

    fn field(&mut self, name: String) -> Node {
        let i = match self.fields.iter().position(|f| *f == name) {
            Some(i) => i,
            None => {
                self.fields.push(name);
                self.fields.len() - 1
            }
        };
        Node::Field(i)
    }

    fn quoted(&mut self, q: char) -> Result<String, ExprError> {
        let start = self.at;
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.chars.get(self.at) {
                None => {
                    self.at = start;
                    return Err(self.error(format!("the {q} quote is never closed")));
                }
                Some(&c) if c == q => {
                    if self.chars.get(self.at + 1) == Some(&q) {
                        out.push(q);
                        self.at += 2;
                    } else {
                        self.at += 1;
                        return Ok(out);
                    }
                }
                Some(&c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        match self.peek() {
            None => Err(self.error("an expression is missing".into())),
            Some('(') => {
                self.at += 1;
                let inner = self.expr()?;
                self.expect(')')?;
                Ok(inner)
            }
            Some('\'') => Ok(Node::Text(self.quoted('\'')?)),
            Some('"') => {
                let name = self.quoted('"')?;
                if name.is_empty() {
                    return Err(self.error("an empty field name".into()));
                }
                Ok(self.field(name))
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                let start = self.at;
                while self
                    .chars
                    .get(self.at)
                    .is_some_and(|c| c.is_ascii_digit() || *c == '.')
                {
                    self.at += 1;
                }
                let text: String = self.chars[start..self.at].iter().collect();
                let at = self.at;
                self.at = start;
                let n = Dec::parse(&text)
                    .ok_or_else(|| self.error(format!("{text} is not a number")))?;
                self.at = at;
                Ok(Node::Number(n))
            }
            Some(c) if c.is_alphabetic() || c == '_' || c == '@' => {
                let start = self.at;
                while self
                    .chars
                    .get(self.at)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '@')
                {
                    self.at += 1;
                }
                let name: String = self.chars[start..self.at].iter().collect();
                if self.peek() == Some('(') {
                    let open = self.at;
                    self.at += 1;
                    let mut args = Vec::new();
                    if self.peek() == Some(')') {
                        self.at += 1;
                    } else {
                        loop {
                            self.space();
                            args.push((self.at, self.expr()?));
                            match self.peek() {
                                Some(',') => self.at += 1,
                                _ => {
                                    self.expect(')')?;
                                    break;
                                }
                            }
                        }
                    }
                    let end = self.at;
                    self.at = start;
                    let node = self.call(&name, args, open)?;
                    self.at = end;
                    Ok(node)
                } else {
                    Ok(self.field(name))
                }
            }
            Some(c) => Err(self.error(format!("unexpected {c:?}"))),
        }
    }

    /// The function `name` over `args` (each with its position), checked.
    fn call(
        &mut self,
        name: &str,
        args: Vec<(usize, Node)>,
        open: usize,
    ) -> Result<Node, ExprError> {
        let n = args.len();
        let arity = |min: usize, max: usize| -> Result<(), ExprError> {
            if n < min || n > max {
                let want = if min == max {
                    format!("{min}")
                } else if max == usize::MAX {
                    format!("at least {min}")
                } else {
                    format!("{min} to {max}")
                };
                return Err(ExprError {
                    at: open + 1,
                    reason: format!("{name}() takes {want} arguments, not {n}"),
                });
            }
            Ok(())
        };
        // A constant text argument (a pattern, a unit, a lookup's name).
        let text_arg = |i: usize, what: &str| -> Result<String, ExprError> {
            match args.get(i) {
                Some((_, Node::Text(t))) => Ok(t.clone()),
                Some((at, _)) => Err(ExprError {
                    at: at + 1,
                    reason: format!("the {what} of {name}() must be a text in quotes"),
                }),
                None => Err(ExprError {
                    at: open + 1,
                    reason: format!("{name}() needs its {what}"),
                }),
            }
        };
        let int_arg = |i: usize, what: &str| -> Result<usize, ExprError> {
            match args.get(i) {
                Some((_, Node::Number(d))) if d.s == 0 && d.m >= 0 && d.m < 1 << 31 => {
                    Ok(d.m as usize)
                }
                Some((at, _)) => Err(ExprError {
                    at: at + 1,
                    reason: format!("the {what} of {name}() must be a whole number"),
                }),
                None => Ok(0),
            }
        };
        let unit = |i: usize, trunc: bool| -> Result<Unit, ExprError> {
            let u = text_arg(i, "unit")?;
            let unit = match u.to_ascii_lowercase().as_str() {
                "year" => Unit::Year,
                "quarter" => Unit::Quarter,
                "month" => Unit::Month,
                "week" => Unit::Week,
                "day" => Unit::Day,
                "hour" => Unit::Hour,
                "minute" => Unit::Minute,
                "dow" if !trunc => Unit::Dow,
                "doy" if !trunc => Unit::Doy,
                "second" if !trunc => Unit::Second,
                "epoch" if !trunc => Unit::Epoch,
                _ => {
                    return Err(ExprError {
                        at: args[i].0 + 1,
                        reason: format!("{name}() has no unit {u:?}"),
                    });
                }
            };
            Ok(unit)
        };
        let func = match name.to_ascii_lowercase().as_str() {
            "lower" => arity(1, 1).map(|()| Func::Lower)?,
            "upper" => arity(1, 1).map(|()| Func::Upper)?,
            "trim" => arity(1, 1).map(|()| Func::Trim)?,
            "concat" => arity(1, usize::MAX).map(|()| Func::Concat)?,
            "coalesce" => arity(1, usize::MAX).map(|()| Func::Coalesce)?,
            "hash" => arity(1, usize::MAX).map(|()| Func::Hash)?,
            "substring" => {
                arity(2, 3)?;
                for (at, a) in &args[1..] {
                    if !matches!(a, Node::Number(d) if d.s == 0) {
                        return Err(ExprError {
                            at: at + 1,
                            reason: "substring() takes whole numbers for start and length".into(),
                        });
                    }
                }
                Func::Substring
            }
            "regex_extract" => {
                arity(2, 3)?;
                let pattern = text_arg(1, "pattern")?;
                let re = regex::Regex::new(&pattern).map_err(|e| ExprError {
                    at: args[1].0 + 1,
                    reason: format!("the pattern is not a regular expression: {e}"),
                })?;
                let group = int_arg(2, "group")?;
                if group >= re.captures_len() {
                    return Err(ExprError {
                        at: args[2].0 + 1,
                        reason: format!(
                            "the pattern has {} groups, not {group}",
                            re.captures_len() - 1
                        ),
                    });
                }
                Func::RegexExtract(Box::new(re), group)
            }
            "split_part" => {
                arity(3, 3)?;
                let d = text_arg(1, "delimiter")?;
                if d.is_empty() {
                    return Err(ExprError {
                        at: args[1].0 + 1,
                        reason: "the delimiter of split_part() is empty".into(),
                    });
                }
                if int_arg(2, "part number")? == 0 {
                    return Err(ExprError {
                        at: args[2].0 + 1,
                        reason: "split_part() counts parts from 1".into(),
                    });
                }
                Func::SplitPart(d)
            }
            "replace" => {
                arity(3, 3)?;
                let from = text_arg(1, "text to replace")?;
                if from.is_empty() {
                    return Err(ExprError {
                        at: args[1].0 + 1,
                        reason: "replace() needs a text to replace".into(),
                    });
                }
                Func::Replace(from, text_arg(2, "replacement")?)
            }
            "nullif" => {
                arity(2, 2)?;
                Func::NullIf(text_arg(1, "text")?)
            }
            "date_part" => {
                arity(2, 2)?;
                Func::DatePart(unit(0, false)?)
            }
            "date_trunc" => {
                arity(2, 2)?;
                Func::DateTrunc(unit(0, true)?)
            }
            "lookup" => {
                arity(2, 3)?;
                let which = text_arg(0, "lookup name")?;
                let found = self
                    .lookups
                    .iter()
                    .find(|l| l.name == which)
                    .ok_or_else(|| {
                        let known: Vec<&str> =
                            self.lookups.iter().map(|l| l.name.as_str()).collect();
                        ExprError {
                            at: args[0].0 + 1,
                            reason: format!(
                                "no lookup named {which:?} in the job's lookups (defined: {})",
                                if known.is_empty() {
                                    "none".to_string()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        }
                    })?;
                Func::Lookup(found.clone())
            }
            _ => {
                return Err(ExprError {
                    at: self.at + 1,
                    reason: format!(
                        "unknown function {name}() (known: lower, upper, trim, concat, coalesce, substring, regex_extract, split_part, replace, nullif, date_part, date_trunc, hash, lookup)"
                    ),
                });
            }
        };
        // Constant arguments are part of the function now.
        let mut args: Vec<Node> = args.into_iter().map(|(_, a)| a).collect();
        match &func {
            Func::RegexExtract(..) | Func::NullIf(_) | Func::Replace(..) => args.truncate(1),
            // split_part keeps the text and the part number.
            Func::SplitPart(_) => {
                args.remove(1);
            }
            Func::DatePart(_) | Func::DateTrunc(_) | Func::Lookup(_) => {
                args.remove(0);
            }
            _ => {}
        }
        Ok(Node::Call(func, args))
    }
}

/// A value while an expression is evaluated.
type Val<'a> = Option<Cow<'a, str>>;

impl Expr {
    /// Evaluates the expression for one record; `get(i)` is the value of
    /// [`fields`](Self::fields)`[i]`. An error says what did not fit.
    pub fn eval<'a>(&'a self, get: &dyn Fn(usize) -> Val<'a>) -> Result<Val<'a>, String> {
        eval(&self.root, get)
    }
}

fn number(v: &Val<'_>) -> Result<Option<Dec>, String> {
    match v {
        None => Ok(None),
        Some(t) => Dec::parse(t)
            .map(Some)
            .ok_or_else(|| format!("{:?} is not a number", cut(t))),
    }
}

/// A value cut for a message.
fn cut(t: &str) -> String {
    t.chars().take(64).collect()
}

fn timestamp(v: &str) -> Result<DateTime<Utc>, String> {
    let t = v.trim();
    parse_timestamp(t)
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|n| n.and_utc())
        })
        .ok_or_else(|| format!("{:?} is not a timestamp", cut(t)))
}

/// The number a node stands for: arithmetic stays in decimals from
/// operand to operand (no text in between); other nodes are parsed.
fn numeric<'a>(node: &'a Node, get: &dyn Fn(usize) -> Val<'a>) -> Result<Option<Dec>, String> {
    Ok(match node {
        Node::Number(d) => Some(*d),
        Node::Neg(inner) => match numeric(inner, get)? {
            None => None,
            Some(d) => Some(Dec {
                m: d.m.checked_neg().ok_or("the number is too large")?,
                s: d.s,
            }),
        },
        Node::Arith(op, a, b) => match (numeric(a, get)?, numeric(b, get)?) {
            (Some(x), Some(y)) => Some(x.arith(*op, y)?),
            _ => None,
        },
        other => number(&eval(other, get)?)?,
    })
}

/// Lower-case hex of `bytes`.
fn hex_text(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
    String::from_utf8(out).expect("hex digits are ASCII")
}

fn eval<'a>(node: &'a Node, get: &dyn Fn(usize) -> Val<'a>) -> Result<Val<'a>, String> {
    Ok(match node {
        Node::Field(i) => get(*i),
        Node::Text(t) => Some(Cow::Borrowed(t.as_str())),
        Node::Number(d) => Some(Cow::Owned(d.text())),
        Node::Neg(_) | Node::Arith(..) => numeric(node, get)?.map(|d| Cow::Owned(d.text())),
        Node::Call(func, args) => call(func, args, get)?,
    })
}

fn call<'a>(
    func: &'a Func,
    args: &'a [Node],
    get: &dyn Fn(usize) -> Val<'a>,
) -> Result<Val<'a>, String> {
    let arg = |i: usize| -> Result<Val<'a>, String> {
        match args.get(i) {
            Some(a) => eval(a, get),
            None => Ok(None),
        }
    };
    let whole = |i: usize| -> Result<Option<i64>, String> {
        Ok(number(&arg(i)?)?.map(|d| d.cut(0).m.clamp(i64::MIN as i128, i64::MAX as i128) as i64))
    };
    Ok(match func {
        Func::Lower => arg(0)?.map(|v| {
            if !v.is_ascii() {
                Cow::Owned(v.to_lowercase())
            } else if v.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(v.to_ascii_lowercase())
            } else {
                v
            }
        }),
        Func::Upper => arg(0)?.map(|v| {
            if !v.is_ascii() {
                Cow::Owned(v.to_uppercase())
            } else if v.bytes().any(|b| b.is_ascii_lowercase()) {
                Cow::Owned(v.to_ascii_uppercase())
            } else {
                v
            }
        }),
        Func::Trim => arg(0)?.map(|v| match v {
            Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
            Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
        }),
        Func::Concat => {
            let mut out = String::new();
            let mut any = false;
            for i in 0..args.len() {
                if let Some(v) = arg(i)? {
                    any = true;
                    out.push_str(&v);
                }
            }
            any.then_some(Cow::Owned(out))
        }
        Func::Coalesce => {
            for i in 0..args.len() {
                if let Some(v) = arg(i)? {
                    return Ok(Some(v));
                }
            }
            None
        }
        Func::Substring => {
            let Some(v) = arg(0)? else { return Ok(None) };
            let start = whole(1)?.unwrap_or(1);
            let len = if args.len() > 2 { whole(2)? } else { None };
            // SQL's rule: characters start..start+len, counted from 1, the
            // part before 1 cut off.
            let from = start.max(1);
            let to = match len {
                Some(l) if l < 0 => return Err(format!("substring() length {l} is negative")),
                Some(l) => start.saturating_add(l),
                None => i64::MAX,
            };
            let out: String = v
                .chars()
                .enumerate()
                .filter(|(i, _)| {
                    let pos = *i as i64 + 1;
                    pos >= from && pos < to
                })
                .map(|(_, c)| c)
                .collect();
            Some(Cow::Owned(out))
        }
        Func::RegexExtract(re, group) => {
            let Some(v) = arg(0)? else { return Ok(None) };
            re.captures(&v)
                .and_then(|c| c.get(*group))
                .map(|m| Cow::Owned(m.as_str().to_string()))
        }
        Func::SplitPart(delimiter) => {
            let Some(v) = arg(0)? else { return Ok(None) };
            let n = whole(1)?.unwrap_or(1).max(1) as usize;
            Some(Cow::Owned(
                v.split(delimiter.as_str())
                    .nth(n - 1)
                    .unwrap_or("")
                    .to_string(),
            ))
        }
        Func::Replace(from, to) => arg(0)?.map(|v| {
            if v.contains(from.as_str()) {
                Cow::Owned(v.replace(from.as_str(), to))
            } else {
                v
            }
        }),
        Func::NullIf(text) => arg(0)?.filter(|v| v != text),
        Func::DatePart(unit) => {
            let Some(v) = arg(0)? else { return Ok(None) };
            let t = timestamp(&v)?;
            let n: i64 = match unit {
                Unit::Year => t.year().into(),
                Unit::Quarter => (t.month0() / 3 + 1).into(),
                Unit::Month => t.month().into(),
                Unit::Week => t.iso_week().week().into(),
                Unit::Day => t.day().into(),
                Unit::Dow => t.weekday().num_days_from_sunday().into(),
                Unit::Doy => t.ordinal().into(),
                Unit::Hour => t.hour().into(),
                Unit::Minute => t.minute().into(),
                Unit::Second => t.second().into(),
                Unit::Epoch => t.timestamp(),
            };
            Some(Cow::Owned(n.to_string()))
        }
        Func::DateTrunc(unit) => {
            let Some(v) = arg(0)? else { return Ok(None) };
            let t = timestamp(&v)?;
            let d = t.date_naive();
            let day = match unit {
                Unit::Year => d.with_ordinal(1),
                Unit::Quarter => d
                    .with_day(1)
                    .and_then(|d| d.with_month(d.month0() / 3 * 3 + 1)),
                Unit::Month => d.with_day(1),
                Unit::Week => {
                    Some(d - chrono::Duration::days(d.weekday().num_days_from_monday().into()))
                }
                _ => Some(d),
            }
            .ok_or_else(|| "the date cannot be truncated".to_string())?;
            let (h, m) = match unit {
                Unit::Hour => (t.hour(), 0),
                Unit::Minute => (t.hour(), t.minute()),
                _ => (0, 0),
            };
            let out = day
                .and_hms_opt(h, m, 0)
                .ok_or_else(|| "the time cannot be truncated".to_string())?;
            Some(Cow::Owned(super::coerce::timestamp_text(
                out.and_utc(),
                super::ColumnType::Timestamptz,
            )))
        }
        Func::Hash => {
            let mut h = Sha256::new();
            for i in 0..args.len() {
                if i > 0 {
                    h.update([0x1f]);
                }
                if let Some(v) = arg(i)? {
                    h.update(v.as_bytes());
                }
            }
            Some(Cow::Owned(hex_text(&h.finalize())))
        }
        Func::Lookup(table) => {
            let key = arg(0)?;
            match key {
                None => arg(1)?,
                Some(k) => match table.get(k.trim())? {
                    Some(v) => Some(Cow::Owned(v.to_string())),
                    None => arg(1)?,
                },
            }
        }
    })
}

#[cfg(test)]
mod tests;

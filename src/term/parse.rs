//! Reading Erlang term literals typed by a person, for the command line:
//! atoms (`ok`, `'Quoted atom'`), integers, floats, strings (`"abc"`, a
//! list of characters as in Erlang), binaries (`<<"abc">>`, `<<1,2>>`),
//! tuples and lists (including `[H | T]`). Bounded: input is a command-line
//! argument, and nesting is limited.

use super::{atom, binary, int, list, tuple, Term};
use thiserror::Error;

const MAX_DEPTH: usize = 64;

/// Why [`parse_term`] could not read its input: the input, the byte offset
/// and what was wrong there.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("cannot read {input:?} as an Erlang term at byte {at}: {why}")]
pub struct ParseError {
    input: String,
    at: usize,
    why: &'static str,
}

/// Parses one term; a trailing `.` is allowed.
pub fn parse_term(input: &str) -> Result<Term, ParseError> {
    let mut p = Parser {
        s: input.as_bytes(),
        at: 0,
        depth: 0,
    };
    let fail = |at, why| ParseError {
        input: input.to_owned(),
        at,
        why,
    };
    let term = p.term().map_err(|(at, why)| fail(at, why))?;
    p.skip_ws();
    if p.peek() == Some(b'.') {
        p.at += 1;
        p.skip_ws();
    }
    if p.at != p.s.len() {
        return Err(fail(p.at, "unexpected text after the term"));
    }
    Ok(term)
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    depth: usize,
}

type Res<T> = Result<T, (usize, &'static str)>;

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn expect(&mut self, c: u8, why: &'static str) -> Res<()> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err((self.at, why))
        }
    }

    fn term(&mut self) -> Res<Term> {
        self.skip_ws();
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err((self.at, "nested too deep"));
        }
        let result = match self.peek() {
            Some(b'{') => self.seq(b'{', b'}').map(tuple),
            Some(b'[') => self.list(),
            Some(b'<') => self.binary(),
            Some(b'"') => self
                .quoted(b'"')
                .map(|s| list(s.chars().map(|c| int(c as i64)).collect())),
            Some(b'\'') => self.quoted(b'\'').map(|s| atom(&s)),
            Some(c) if c.is_ascii_lowercase() => Ok(atom(&self.word())),
            Some(c) if c.is_ascii_digit() || c == b'-' => self.number(),
            _ => Err((self.at, "expected a term")),
        };
        self.depth -= 1;
        result
    }

    fn word(&mut self) -> String {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'@')
        {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.at]).into_owned()
    }

    fn number(&mut self) -> Res<Term> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || c == b'.' || c == b'e' || c == b'E')
        {
            self.at += 1;
        }
        let text =
            std::str::from_utf8(&self.s[start..self.at]).map_err(|_| (start, "bad number"))?;
        if let Ok(i) = text.parse::<i64>() {
            return Ok(int(i));
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Term::from(eetf::Float { value: f })),
            _ => Err((start, "bad number")),
        }
    }

    fn quoted(&mut self, quote: u8) -> Res<String> {
        let start = self.at;
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err((start, "unterminated quote")),
                Some(c) if c == quote => {
                    self.at += 1;
                    return String::from_utf8(out).map_err(|_| (start, "invalid UTF-8"));
                }
                Some(b'\\') => {
                    self.at += 1;
                    let c = self.peek().ok_or((self.at, "dangling backslash"))?;
                    out.push(match c {
                        b'n' => b'\n',
                        b't' => b'\t',
                        other => other,
                    });
                    self.at += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
    }

    /// Comma-separated terms between `open` and `close`.
    fn seq(&mut self, open: u8, close: u8) -> Res<Vec<Term>> {
        self.expect(open, "expected an opening bracket")?;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(close) {
            self.at += 1;
            return Ok(items);
        }
        loop {
            items.push(self.term()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(c) if c == close => {
                    self.at += 1;
                    return Ok(items);
                }
                _ => return Err((self.at, "expected ',' or a closing bracket")),
            }
        }
    }

    fn list(&mut self) -> Res<Term> {
        self.expect(b'[', "expected '['")?;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(list(items));
        }
        loop {
            items.push(self.term()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(list(items));
                }
                Some(b'|') => {
                    self.at += 1;
                    let tail = self.term()?;
                    self.expect(b']', "expected ']' after the tail")?;
                    return Ok(match tail {
                        Term::List(l) => {
                            items.extend(l.elements);
                            list(items)
                        }
                        tail => Term::from(eetf::ImproperList::from((items, tail))),
                    });
                }
                _ => return Err((self.at, "expected ',', '|' or ']'")),
            }
        }
    }

    fn binary(&mut self) -> Res<Term> {
        self.expect(b'<', "expected '<<'")?;
        self.expect(b'<', "expected '<<'")?;
        let mut bytes = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'>') {
            self.expect(b'>', "expected '>>'")?;
            self.expect(b'>', "expected '>>'")?;
            return Ok(binary(bytes));
        }
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'"') => bytes.extend(self.quoted(b'"')?.into_bytes()),
                _ => {
                    let at = self.at;
                    match self.number()? {
                        Term::FixInteger(i) if (0..=255).contains(&i.value) => {
                            bytes.push(i.value as u8)
                        }
                        _ => return Err((at, "binary segments must be bytes or strings")),
                    }
                }
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'>') => {
                    self.expect(b'>', "expected '>>'")?;
                    self.expect(b'>', "expected '>>'")?;
                    return Ok(binary(bytes));
                }
                _ => return Err((self.at, "expected ',' or '>>'")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_people_type() {
        assert_eq!(parse_term("ok").unwrap(), atom("ok"));
        assert_eq!(parse_term("'Hello world'.").unwrap(), atom("Hello world"));
        assert_eq!(parse_term("-42").unwrap(), int(-42));
        assert_eq!(
            parse_term("{job, 1}").unwrap(),
            tuple(vec![atom("job"), int(1)])
        );
        assert_eq!(
            parse_term("[a | b]").unwrap(),
            Term::from(eetf::ImproperList::from((vec![atom("a")], atom("b"))))
        );
        assert_eq!(
            parse_term("[1, 2 | [3]]").unwrap(),
            list(vec![int(1), int(2), int(3)])
        );
        assert_eq!(parse_term("\"ab\"").unwrap(), list(vec![int(97), int(98)]));
        assert_eq!(
            parse_term("<<\"ab\", 3>>").unwrap(),
            binary(vec![97, 98, 3])
        );
        assert_eq!(parse_term("<<>>").unwrap(), binary(Vec::<u8>::new()));
        assert_eq!(parse_term(" {} ").unwrap(), tuple(vec![]));
        assert_eq!(
            parse_term("1.5").unwrap(),
            Term::from(eetf::Float { value: 1.5 })
        );
    }

    #[test]
    fn refuses_junk_with_a_position() {
        for bad in [
            "",
            "{a",
            "[a,",
            "<<300>>",
            "\"open",
            "a b",
            "Var",
            &"[".repeat(100),
        ] {
            assert!(parse_term(bad).is_err(), "{bad:?}");
        }
    }
}

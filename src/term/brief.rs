//! [`Brief`]: a term rendered for a log line, bounded whatever its size.
//!
//! Terms in log lines often come from the network, and `{:?}` of a term
//! prints all of it (a million-element list becomes megabytes of log, and
//! eetf's `Debug` recurses once per level). `Brief` prints Erlang-like
//! syntax but stops at [`MAX_DEPTH`] levels, [`MAX_ELEMENTS`] elements per
//! container and [`MAX_BYTES`] bytes in all, writing `...` where it cut: the
//! work done and the text written are bounded, not only the text.

use eetf::Term;
use std::fmt::{self, Write};

/// Most bytes of one rendering (`...` may follow).
pub(crate) const MAX_BYTES: usize = 200;
/// Containers nested deeper than this are shown as `...`.
pub(crate) const MAX_DEPTH: usize = 4;
/// Elements shown of each tuple, list, map or binary.
pub(crate) const MAX_ELEMENTS: usize = 8;

/// A bounded rendering of a term: `tracing::warn!(term = %Brief(&t), ...)`.
#[derive(Clone, Copy)]
pub struct Brief<'a>(pub &'a Term);

impl fmt::Display for Brief<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Capped::new(MAX_BYTES);
        if render(self.0, 0, &mut out).is_err() {
            out.text.push_str("...");
        }
        f.write_str(&out.text)
    }
}

impl fmt::Debug for Brief<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `value`'s text, cut after `max` bytes (on a character boundary, then
/// `...`) without formatting the rest: a term of millions of nodes is never
/// printed in full first.
pub(crate) fn bounded_text(value: &impl fmt::Display, max: usize) -> String {
    let mut out = Capped::new(max);
    if write!(out, "{value}").is_err() {
        out.text.push_str("...");
    }
    out.text
}

/// A string that refuses to grow past `max` bytes (cut on a character
/// boundary), which stops the rendering early.
struct Capped {
    text: String,
    max: usize,
}

impl Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.max - self.text.len();
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.text.push_str(&s[..cut]);
        Err(fmt::Error)
    }
}

/// Renders `term` at `depth`; recursion is bounded by [`MAX_DEPTH`].
fn render(term: &Term, depth: usize, out: &mut Capped) -> fmt::Result {
    let nested = depth >= MAX_DEPTH;
    match term {
        Term::Atom(a) => write!(out, "'{}'", a.name),
        Term::FixInteger(i) => write!(out, "{}", i.value),
        Term::BigInteger(b) => {
            // Printing a huge bignum in decimal costs quadratic time.
            let bits = b.value.bits();
            if bits <= 128 {
                write!(out, "{}", b.value)
            } else {
                write!(out, "<integer of {bits} bits>")
            }
        }
        Term::Float(x) => write!(out, "{}", x.value),
        Term::Pid(p) => write!(out, "<{}.{}.{}>", p.node.name, p.id, p.serial),
        Term::Port(p) => write!(out, "#Port<{}.{}>", p.node.name, p.id),
        Term::Reference(r) => write!(out, "#Ref<{}.{:?}>", r.node.name, Capped::few(&r.id)),
        Term::Binary(b) => bytes(out, "<<", &b.bytes, ">>"),
        Term::BitBinary(b) => bytes(out, "<<", &b.bytes, ":bits>>"),
        Term::ByteList(b) => bytes(out, "[", &b.bytes, "]"),
        Term::Tuple(_) if nested => out.write_str("{...}"),
        Term::Tuple(t) => elements(out, "{", &t.elements, None, "}", depth),
        Term::List(_) | Term::ImproperList(_) if nested => out.write_str("[...]"),
        Term::List(l) => elements(out, "[", &l.elements, None, "]", depth),
        Term::ImproperList(l) => elements(out, "[", &l.elements, Some(&l.last), "]", depth),
        Term::Map(_) if nested => out.write_str("#{...}"),
        Term::Map(m) => {
            out.write_str("#{")?;
            for (i, (k, v)) in m.map.iter().enumerate() {
                if i == MAX_ELEMENTS {
                    return write!(out, ",...({} pairs)}}", m.map.len());
                }
                if i > 0 {
                    out.write_str(",")?;
                }
                render(k, depth + 1, out)?;
                out.write_str("=>")?;
                render(v, depth + 1, out)?;
            }
            out.write_str("}")
        }
        Term::ExternalFun(e) => {
            write!(out, "fun {}:{}/{}", e.module.name, e.function.name, e.arity)
        }
        Term::InternalFun(_) => out.write_str("#Fun<...>"),
    }
}

impl Capped {
    fn new(max: usize) -> Capped {
        Capped {
            text: String::new(),
            max,
        }
    }

    /// The first few id words of a reference.
    fn few(id: &[u32]) -> &[u32] {
        &id[..id.len().min(MAX_ELEMENTS)]
    }
}

fn bytes(out: &mut Capped, open: &str, bytes: &[u8], close: &str) -> fmt::Result {
    out.write_str(open)?;
    for (i, b) in bytes.iter().take(MAX_ELEMENTS).enumerate() {
        if i > 0 {
            out.write_str(",")?;
        }
        write!(out, "{b}")?;
    }
    if bytes.len() > MAX_ELEMENTS {
        write!(out, ",...({} bytes)", bytes.len())?;
    }
    out.write_str(close)
}

fn elements(
    out: &mut Capped,
    open: &str,
    items: &[Term],
    tail: Option<&Term>,
    close: &str,
    depth: usize,
) -> fmt::Result {
    out.write_str(open)?;
    for (i, item) in items.iter().take(MAX_ELEMENTS).enumerate() {
        if i > 0 {
            out.write_str(",")?;
        }
        render(item, depth + 1, out)?;
    }
    if items.len() > MAX_ELEMENTS {
        write!(out, ",...({} elements)", items.len())?;
    }
    if let Some(tail) = tail {
        out.write_str("|")?;
        render(tail, depth + 1, out)?;
    }
    out.write_str(close)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{atom, binary, int, list, tuple};

    #[test]
    fn small_terms_print_whole() {
        let t = tuple(vec![atom("ok"), int(-3), binary(vec![1, 2]), list(vec![])]);
        assert_eq!(Brief(&t).to_string(), "{'ok',-3,<<1,2>>,[]}");
    }

    #[test]
    fn a_million_elements_print_a_few() {
        let t = list(vec![atom("abcdefgh"); 1_000_000]);
        let text = Brief(&t).to_string();
        assert!(text.len() <= MAX_BYTES + 3, "{text}");
        assert!(text.contains("1000000 elements"), "{text}");
        let b = binary(vec![7u8; 1 << 20]);
        assert!(Brief(&b).to_string().contains("1048576 bytes"));
    }

    #[test]
    fn deep_terms_stop_at_the_depth_limit() {
        // Built without recursion; 10 000 levels would overflow a
        // recursive printer's stack in debug builds long before this.
        let mut t = atom("core");
        for _ in 0..10 {
            t = tuple(vec![t]);
        }
        assert_eq!(Brief(&t).to_string(), "{{{{{...}}}}}");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let t = tuple(vec![atom(&"é".repeat(120)), atom(&"é".repeat(120))]);
        let text = Brief(&t).to_string();
        assert!(text.ends_with("..."));
        assert!(text.len() <= MAX_BYTES + 3);
    }

    #[test]
    fn huge_integers_are_not_printed_in_decimal() {
        let mut value = eetf::BigInteger::from(1i64).value;
        value <<= 100_000usize;
        let big = Term::from(eetf::BigInteger { value });
        assert_eq!(Brief(&big).to_string(), "<integer of 100001 bits>");
    }
}

//! A canonical byte form of a term, so keys, values and tags compare with
//! Erlang's `=:=` and can be hashed.
//!
//! `eetf`'s own `==` is not `=:=`, and its `Hash` is not even consistent with
//! its `==`:
//! - the BEAM sends `[1,2]` or `"ab"` as a `ByteList` and other lists as a
//!   `List`, and Rust code can build either; `=:=` sees one list;
//! - `[1 | [2]]` can be an `ImproperList` whose tail is a proper list;
//! - the same integer can be a `FixInteger` or a `BigInteger`;
//! - a bit string whose last byte is full (`tail_bits_size` 8) is a binary;
//! - `Map` hashes its entries in `HashMap` iteration order, so two equal maps
//!   can hash differently (a `HashMap<Term, _>` would lose map keys).
//!
//! [`Canon::of`] writes a prefix-free encoding in which all of these
//! coincide: lists are written element by element (`c` elem ... then `n`, or
//! `|` tail for an improper list) whatever their representation, integers by
//! value, maps with their entries sorted by encoded bytes. Everything else is
//! written field by field. Two terms get the same bytes exactly when `=:=`
//! holds, with one caveat: floats compare by bit pattern, so `0.0` and `-0.0`
//! differ (OTP 27's `=:=`; OTP 26 and older call them equal).
//!
//! Nesting is capped at [`MAX_DEPTH`] (the distribution layer already stops
//! at 128), so a hostile term cannot overflow the stack here.

use super::Term;

/// Deepest nesting [`Canon::of`] accepts; deeper terms are refused.
pub(crate) const MAX_DEPTH: usize = 256;

/// A term's canonical bytes: equal exactly when the terms are `=:=`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Canon(Vec<u8>);

/// The term nests deeper than [`MAX_DEPTH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooDeep;

impl Canon {
    /// The canonical form of `term`.
    pub(crate) fn of(term: &Term) -> Result<Canon, TooDeep> {
        let mut out = Vec::new();
        encode(term, &mut out, 0)?;
        Ok(Canon(out))
    }

    /// Gives back spare capacity, for a canon kept in a large table.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }

    /// The encoded bytes (for tests and diagnostics).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Erlang's `=:=` on two terms, as far as the canonical form goes (see the
/// module docs). Terms too deep to encode fall back to `eetf`'s `==`.
/// (The tests hold the canonical form to it.)
#[cfg(test)]
pub(crate) fn exact_eq(a: &Term, b: &Term) -> bool {
    match (Canon::of(a), Canon::of(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u64).to_le_bytes());
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    len(out, b.len());
    out.extend_from_slice(b);
}

fn int64(out: &mut Vec<u8>, v: i64) {
    out.push(b'i');
    out.extend_from_slice(&v.to_le_bytes());
}

fn u32s(out: &mut Vec<u8>, values: &[u32]) {
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn atom(out: &mut Vec<u8>, a: &eetf::Atom) {
    out.push(b'a');
    bytes(out, a.name.as_bytes());
}

fn pid(out: &mut Vec<u8>, p: &eetf::Pid) {
    out.push(b'p');
    atom(out, &p.node);
    u32s(out, &[p.id, p.serial, p.creation]);
}

fn encode(term: &Term, out: &mut Vec<u8>, depth: usize) -> Result<(), TooDeep> {
    if depth > MAX_DEPTH {
        return Err(TooDeep);
    }
    match term {
        Term::Atom(a) => atom(out, a),
        Term::FixInteger(i) => int64(out, i64::from(i.value)),
        Term::BigInteger(b) => match i64::try_from(&b.value) {
            Ok(v) => int64(out, v),
            Err(_) => {
                // Minimal two's complement bytes: one form per value.
                out.push(b'I');
                bytes(out, &b.value.to_signed_bytes_le());
            }
        },
        Term::Float(f) => {
            out.push(b'f');
            out.extend_from_slice(&f.value.to_bits().to_le_bytes());
        }
        Term::Pid(p) => pid(out, p),
        Term::Port(p) => {
            out.push(b'o');
            atom(out, &p.node);
            out.extend_from_slice(&p.id.to_le_bytes());
            u32s(out, &[p.creation]);
        }
        Term::Reference(r) => {
            out.push(b'r');
            atom(out, &r.node);
            len(out, r.id.len());
            u32s(out, &r.id);
            u32s(out, &[r.creation]);
        }
        Term::ExternalFun(f) => {
            out.push(b'e');
            atom(out, &f.module);
            atom(out, &f.function);
            out.push(f.arity);
        }
        Term::InternalFun(f) => match f.as_ref() {
            eetf::InternalFun::Old {
                module,
                pid: p,
                free_vars,
                index,
                uniq,
            } => {
                out.push(b'F');
                atom(out, module);
                pid(out, p);
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(&uniq.to_le_bytes());
                terms(out, free_vars, depth)?;
            }
            eetf::InternalFun::New {
                module,
                arity,
                pid: p,
                free_vars,
                index,
                uniq,
                old_index,
                old_uniq,
            } => {
                out.push(b'N');
                atom(out, module);
                out.push(*arity);
                pid(out, p);
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(uniq);
                out.extend_from_slice(&old_index.to_le_bytes());
                out.extend_from_slice(&old_uniq.to_le_bytes());
                terms(out, free_vars, depth)?;
            }
        },
        Term::Binary(b) => {
            out.push(b'b');
            bytes(out, &b.bytes);
        }
        Term::BitBinary(b) => bit_binary(out, &b.bytes, b.tail_bits_size),
        Term::ByteList(_) | Term::List(_) | Term::ImproperList(_) => encode_list(term, out, depth)?,
        Term::Tuple(t) => {
            out.push(b't');
            terms(out, &t.elements, depth)?;
        }
        Term::Map(m) => {
            let mut entries = Vec::with_capacity(m.map.len());
            for (k, v) in &m.map {
                let mut ek = Vec::new();
                encode(k, &mut ek, depth + 1)?;
                let mut ev = Vec::new();
                encode(v, &mut ev, depth + 1)?;
                entries.push((ek, ev));
            }
            entries.sort();
            out.push(b'm');
            len(out, entries.len());
            for (k, v) in entries {
                out.extend_from_slice(&k);
                out.extend_from_slice(&v);
            }
        }
    }
    Ok(())
}

fn terms(out: &mut Vec<u8>, elements: &[Term], depth: usize) -> Result<(), TooDeep> {
    len(out, elements.len());
    for e in elements {
        encode(e, out, depth + 1)?;
    }
    Ok(())
}

/// `tail_bits_size` is how many bits of the last byte count (1..=8 on the
/// wire). A full last byte makes a binary; 0 means the last byte is unused.
/// The bits that count are the low ones: eetf shifts the wire's
/// left-aligned tail down when decoding (and up when encoding). Unused bits
/// are masked so they cannot tell equal bit strings apart.
fn bit_binary(out: &mut Vec<u8>, data: &[u8], tail_bits: u8) {
    let (data, tail_bits) = match (data.split_last(), tail_bits) {
        (Some((_, rest)), 0) => (rest, 8),
        (None, _) => (data, 8),
        _ => (data, tail_bits),
    };
    if tail_bits >= 8 {
        out.push(b'b');
        bytes(out, data);
        return;
    }
    out.push(b'B');
    out.push(tail_bits);
    len(out, data.len());
    if let Some((last, rest)) = data.split_last() {
        out.extend_from_slice(rest);
        let mask = ((1u16 << tail_bits) - 1) as u8;
        out.push(last & mask);
    }
}

/// Any list representation, written as `c` element ... then `n` (proper) or
/// `|` tail (improper). Chains of improper lists whose tails are lists are
/// followed, each link counting as one level of nesting.
fn encode_list(mut term: &Term, out: &mut Vec<u8>, mut depth: usize) -> Result<(), TooDeep> {
    out.push(b'l');
    loop {
        if depth > MAX_DEPTH {
            return Err(TooDeep);
        }
        match term {
            Term::List(l) => {
                for e in &l.elements {
                    out.push(b'c');
                    encode(e, out, depth + 1)?;
                }
                out.push(b'n');
                return Ok(());
            }
            Term::ByteList(b) => {
                for &x in &b.bytes {
                    out.push(b'c');
                    int64(out, i64::from(x));
                }
                out.push(b'n');
                return Ok(());
            }
            Term::ImproperList(l) => {
                for e in &l.elements {
                    out.push(b'c');
                    encode(e, out, depth + 1)?;
                }
                term = &l.last;
                depth += 1;
            }
            other => {
                out.push(b'|');
                return encode(other, out, depth + 1);
            }
        }
    }
}

//! Small helpers for building and taking apart `eetf` terms.
//!
//! The BEAM sends a list of bytes such as `"abc"` or `[1,2,3]` as a
//! `ByteList`, and any other list as a `List`; [`list_elements`] hides that
//! difference from callers. [`Packed`] keeps a term as its external-format
//! bytes; [`parse_term`] reads a term literal typed by a person. (Inside
//! the crate, `Canon` is a term's canonical bytes, equal exactly when
//! Erlang's `=:=` holds, for keys, values and tags in tables.)

pub(crate) mod brief;
pub(crate) mod canon;
#[cfg(test)]
mod canon_tests;
mod packed;
mod parse;

pub use brief::Brief;
pub(crate) use canon::Canon;
pub use eetf::{Atom, Binary, FixInteger, ImproperList, List, Map, Pid, Reference, Term, Tuple};
pub use packed::Packed;
pub use parse::{parse_term, ParseError};

/// An atom term.
pub fn atom(name: &str) -> Term {
    Term::from(Atom::from(name))
}

/// A tuple term.
pub fn tuple(elements: Vec<Term>) -> Term {
    Term::from(Tuple::from(elements))
}

/// A proper list term.
pub fn list(elements: Vec<Term>) -> Term {
    Term::from(List::from(elements))
}

/// An integer term (small or big as needed).
pub fn int(value: i64) -> Term {
    match i32::try_from(value) {
        Ok(v) => Term::from(FixInteger::from(v)),
        Err(_) => Term::from(eetf::BigInteger::from(value)),
    }
}

/// A binary term.
pub fn binary(bytes: impl Into<Vec<u8>>) -> Term {
    Term::from(Binary::from(bytes.into()))
}

/// An Erlang string (a list of character codes), as `"text"` is in Erlang:
/// a byte list when every character fits in a byte, else a list of integers.
pub fn string(text: &str) -> Term {
    if text.chars().all(|c| u32::from(c) < 256) {
        Term::from(eetf::ByteList::from(
            text.chars().map(|c| c as u8).collect::<Vec<u8>>(),
        ))
    } else {
        list(text.chars().map(|c| int(i64::from(u32::from(c)))).collect())
    }
}

/// Whether `term` is the atom `name`.
pub fn is_atom(term: &Term, name: &str) -> bool {
    matches!(term, Term::Atom(a) if a.name == name)
}

/// The atom's name, if `term` is an atom.
pub fn as_atom(term: &Term) -> Option<&str> {
    match term {
        Term::Atom(a) => Some(&a.name),
        _ => None,
    }
}

/// The elements of a tuple, if `term` is one.
pub fn as_tuple(term: &Term) -> Option<&[Term]> {
    match term {
        Term::Tuple(t) => Some(&t.elements),
        _ => None,
    }
}

/// The integer value of a small or big integer that fits in i64.
pub fn as_int(term: &Term) -> Option<i64> {
    match term {
        Term::FixInteger(i) => Some(i64::from(i.value)),
        Term::BigInteger(b) => i64::try_from(&b.value).ok(),
        _ => None,
    }
}

/// The elements of a proper list, whichever way the BEAM encoded it.
pub fn list_elements(term: &Term) -> Option<Vec<Term>> {
    match term {
        Term::List(l) => Some(l.elements.clone()),
        Term::ByteList(b) => Some(b.bytes.iter().map(|&x| int(i64::from(x))).collect()),
        _ => None,
    }
}

/// The `'normal'` exit reason.
pub fn normal() -> Term {
    atom("normal")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_lists_and_lists_read_the_same() {
        let bytes = Term::from(eetf::ByteList::from(vec![1u8, 2]));
        assert_eq!(
            list_elements(&bytes),
            list_elements(&list(vec![int(1), int(2)]))
        );
        assert_eq!(as_int(&int(1 << 40)), Some(1 << 40));
        assert!(is_atom(&atom("ok"), "ok"));
    }

    #[test]
    fn strings_are_lists_of_character_codes() {
        assert_eq!(list_elements(&string("ab")), Some(vec![int(97), int(98)]));
        assert_eq!(
            list_elements(&string("é→")),
            Some(vec![int(0xe9), int(0x2192)])
        );
    }
}

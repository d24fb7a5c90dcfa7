//! A term kept as its external-format bytes.

use super::{atom, Term};
use crate::dist::etf::{decode_term, encode_term, Limits};

/// A term kept as its external-format bytes: a few dozen bytes where a
/// `Term` tree takes hundreds (tables of a million keys are a real load),
/// decoded only when needed.
#[derive(Debug, Clone, PartialEq)]
pub enum Packed {
    /// The external term format bytes (`term_to_binary/1`, version byte 131 first).
    Bytes(Box<[u8]>),
    /// A term the encoder refused (not seen in practice; kept as is).
    Term(Box<Term>),
}

impl Packed {
    /// Encodes `term`; never fails (a term the encoder refuses is kept whole).
    pub fn new(term: &Term) -> Packed {
        let mut out = Vec::new();
        match encode_term(term, &mut out) {
            Ok(()) => Packed::Bytes(out.into_boxed_slice()),
            Err(_) => Packed::Term(Box::new(term.clone())),
        }
    }

    /// The term back.
    pub fn term(&self) -> Term {
        match self {
            Packed::Bytes(bytes) => decode_term(bytes, &Limits::default())
                .map(|(term, _)| term)
                // Bytes we encoded ourselves always decode.
                .unwrap_or_else(|_| atom("undefined")),
            Packed::Term(term) => (**term).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{int, tuple};

    #[test]
    fn round_trips() {
        let t = tuple(vec![
            atom("a"),
            int(1),
            Term::from(crate::term::Pid::new("n@h", 1, 2, 3)),
        ]);
        assert_eq!(Packed::new(&t).term(), t);
    }
}

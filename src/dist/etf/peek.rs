//! Cheap questions about terms for code outside this module: whether a term
//! can be sent at all (asked before a reply goes out, so an unsendable reply
//! becomes an error reply instead of silence), how deep a term nests, and
//! the `From` of a `{'$gen_call', From, Request}` whose `Request` is too
//! deep to decode (so its caller can be answered).

use super::{
    validate_for_encode, walk, Check, Limits, Scanner, TermError, ATOM_EXT, ATOM_UTF8_EXT,
    DEFAULT_MAX_DEPTH, LARGE_TUPLE_EXT, SMALL_ATOM_EXT, SMALL_ATOM_UTF8_EXT, SMALL_TUPLE_EXT,
    VERSION,
};
use eetf::Term;

/// The deepest nesting we send or decode (see `DEFAULT_MAX_DEPTH`).
pub(crate) const MAX_DEPTH: usize = DEFAULT_MAX_DEPTH;

/// `Ok` if [`super::encode_term`] would accept `term`: the same walk (no
/// recursion, no encoding, no allocation beyond its stack).
pub(crate) fn check_encodable(term: &Term) -> Result<(), TermError> {
    walk(term, |t, level| validate_for_encode(t, level).map(|_| ()))
}

/// Whether `e` (from [`check_encodable`]) refused the term for its depth.
pub(crate) fn is_too_deep(e: &TermError) -> bool {
    matches!(
        e,
        TermError::TooDeep { .. } | TermError::UnencodableDepth { .. }
    )
}

/// How many containers nest in `term` (an atom is 0, `{a}` is 1), counted
/// without recursion; stops counting past `cap` (returns `cap + 1`).
pub(crate) fn depth_at_most(term: &Term, cap: usize) -> usize {
    let mut deepest = 0;
    let _ = walk(term, |t, level| {
        let here = match t {
            Term::List(l) if l.elements.is_empty() => level,
            Term::List(_)
            | Term::Tuple(_)
            | Term::ImproperList(_)
            | Term::Map(_)
            | Term::InternalFun(_) => level + 1,
            _ => level,
        };
        deepest = deepest.max(here);
        if deepest > cap {
            return Err(TermError::TooDeep {
                offset: 0,
                max_depth: cap,
            });
        }
        Ok(())
    });
    deepest.min(cap + 1)
}

/// The `From` of a payload `{'$gen_call', From, Request}` (version byte
/// first, atom cache references already expanded), decoded within
/// `limits`, whatever `Request` holds: only the prefix is read. `None`
/// for any other payload.
pub(crate) fn gen_call_from(payload: &[u8], limits: &Limits) -> Option<Term> {
    let mut pos = match payload {
        [VERSION, SMALL_TUPLE_EXT, 3, ..] => 3,
        [VERSION, LARGE_TUPLE_EXT, 0, 0, 0, 3, ..] => 6,
        _ => return None,
    };
    let (name, used) = atom_at(payload.get(pos..)?)?;
    if name != b"$gen_call" {
        return None;
    }
    pos += used;
    let mut scanner = Scanner::new(payload, pos, limits, Check);
    scanner.walk(&mut Vec::new()).ok()?;
    let mut from = Vec::with_capacity(1 + scanner.pos - pos);
    from.push(VERSION);
    from.extend_from_slice(&payload[pos..scanner.pos]);
    super::decode_term(&from, limits).ok().map(|(t, _)| t)
}

/// An atom's text and encoded length, for the four atom tags.
fn atom_at(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let (len, head) = match bytes {
        [SMALL_ATOM_UTF8_EXT | SMALL_ATOM_EXT, n, ..] => (usize::from(*n), 2),
        [ATOM_UTF8_EXT | ATOM_EXT, a, b, ..] => (usize::from(u16::from_be_bytes([*a, *b])), 3),
        _ => return None,
    };
    Some((bytes.get(head..head + len)?, head + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{atom, list, tuple};

    fn nested(levels: usize) -> Term {
        (0..levels).fold(atom("x"), |t, _| tuple(vec![t]))
    }

    #[test]
    fn encodable_follows_the_depth_limit() {
        assert!(check_encodable(&nested(MAX_DEPTH)).is_ok());
        assert!(matches!(
            check_encodable(&nested(MAX_DEPTH + 1)),
            Err(e) if is_too_deep(&e)
        ));
    }

    #[test]
    fn depth_counts_containers_and_stops_at_the_cap() {
        assert_eq!(depth_at_most(&atom("a"), 10), 0);
        assert_eq!(depth_at_most(&list(vec![]), 10), 0);
        assert_eq!(depth_at_most(&tuple(vec![list(vec![atom("a")])]), 10), 2);
        assert_eq!(depth_at_most(&nested(5), 10), 5);
        assert_eq!(depth_at_most(&nested(500), 10), 11);
    }

    #[test]
    fn gen_call_from_reads_only_the_prefix() {
        let from = tuple(vec![atom("not_a_pid"), atom("tag")]);
        let call = tuple(vec![atom("$gen_call"), from.clone(), nested(5)]);
        let mut bytes = Vec::new();
        super::super::encode_term(&call, &mut bytes).unwrap();
        // Cut the request short: the prefix alone answers.
        let cut = bytes.len() - 3;
        let limits = Limits::default();
        assert_eq!(gen_call_from(&bytes[..cut], &limits), Some(from));
        let cast = tuple(vec![atom("$gen_cast"), atom("x"), atom("y")]);
        let mut bytes = Vec::new();
        super::super::encode_term(&cast, &mut bytes).unwrap();
        assert_eq!(gen_call_from(&bytes, &limits), None);
        assert_eq!(gen_call_from(&[], &limits), None);
        assert_eq!(
            gen_call_from(&[VERSION, SMALL_TUPLE_EXT, 3, 119, 200], &limits),
            None
        );
    }
}

//! The canonical form is `=:=`: the same term in every spelling the BEAM
//! or Rust code can produce gets the same bytes, different terms do not.

use super::canon::{exact_eq, Canon};
use super::{atom, binary, int, list, tuple, Term};
use eetf::{BigInteger, BitBinary, ByteList, Float, ImproperList, Map, Pid};
use std::collections::HashMap;

fn canon(t: &Term) -> Canon {
    Canon::of(t).unwrap()
}

#[test]
fn canonical_form_is_exact_equality() {
    let same = [
        (
            Term::from(ByteList::from("ab")),
            list(vec![int(97), int(98)]),
        ),
        (Term::from(ByteList::from(vec![])), list(vec![])),
        (
            Term::from(ImproperList::from((
                vec![int(1)],
                Term::from(ImproperList::from((vec![int(2)], list(vec![])))),
            ))),
            list(vec![int(1), int(2)]),
        ),
        (
            Term::from(ImproperList::from((
                vec![],
                Term::from(ByteList::from("a")),
            ))),
            list(vec![int(97)]),
        ),
        (Term::from(BigInteger::from(7i64)), int(7)),
        (
            Term::from(BitBinary::from((vec![1, 2], 8))),
            binary(vec![1, 2]),
        ),
        (
            Term::from(BitBinary::from((vec![1, 2], 0))),
            binary(vec![1]),
        ),
        // The low 3 bits count (eetf's form of `<<7:3>>`), not the rest.
        (
            Term::from(BitBinary::from((vec![0xFF], 3))),
            Term::from(BitBinary::from((vec![0x07], 3))),
        ),
        (
            tuple(vec![Term::from(ByteList::from("x"))]),
            tuple(vec![list(vec![int(120)])]),
        ),
    ];
    for (a, b) in &same {
        assert_eq!(canon(a), canon(b), "{a} vs {b}");
        assert!(exact_eq(a, b));
    }
    // Maps: any insertion order, keys and values in any list form.
    let m1: HashMap<Term, Term> = (0..50)
        .map(|i| (int(i), Term::from(ByteList::from("v"))))
        .collect();
    let mut m2 = HashMap::new();
    for i in (0..50).rev() {
        m2.insert(int(i), list(vec![int(118)]));
    }
    assert!(exact_eq(
        &Term::from(Map::from(m1)),
        &Term::from(Map::from(m2))
    ));
    let different = [
        (int(1), Term::from(Float { value: 1.0 })),
        (atom("a"), binary("a")),
        (atom("a"), Term::from(ByteList::from("a"))),
        (binary("a"), Term::from(ByteList::from("a"))),
        (list(vec![]), binary(vec![])),
        (list(vec![]), tuple(vec![])),
        (tuple(vec![int(1), int(2)]), list(vec![int(1), int(2)])),
        (
            Term::from(ImproperList::from((vec![int(1)], int(2)))),
            list(vec![int(1), int(2)]),
        ),
        (list(vec![list(vec![])]), list(vec![])),
        (
            Term::from(Float { value: 0.0 }),
            Term::from(Float { value: -0.0 }),
        ),
        (
            Term::from(BigInteger::from(u64::MAX)),
            Term::from(BigInteger::from(u64::MAX - 1)),
        ),
        (Term::from(BigInteger::from(u64::MAX)), int(-1)),
        (
            Term::from(Pid::new("n@h", 1, 0, 1)),
            Term::from(Pid::new("n@h", 1, 0, 2)),
        ),
        (
            Term::from(BitBinary::from((vec![0xFF], 3))),
            Term::from(BitBinary::from((vec![0xFF], 4))),
        ),
        // `<<1, 3:5>>` is not `<<1, 0:5>>`.
        (
            Term::from(BitBinary::from((vec![1, 3], 5))),
            Term::from(BitBinary::from((vec![1, 0], 5))),
        ),
        (tuple(vec![atom("ab")]), tuple(vec![atom("a"), atom("b")])),
        (
            tuple(vec![binary("ab"), binary("")]),
            tuple(vec![binary("a"), binary("b")]),
        ),
    ];
    for (a, b) in &different {
        assert_ne!(canon(a), canon(b), "{a} vs {b}");
        assert!(!exact_eq(a, b));
    }
}

#[test]
fn nesting_is_capped() {
    let mut t = int(0);
    for _ in 0..super::canon::MAX_DEPTH + 1 {
        t = tuple(vec![t]);
    }
    assert!(Canon::of(&t).is_err());
}

use super::*;
use eetf::{BigInteger, BitBinary, ExternalFun, FixInteger, Float, Reference, Tuple};

const NODE: [u8; 3] = [SMALL_ATOM_UTF8_EXT, 1, b'n'];

fn lim() -> Limits {
    Limits::default()
}
fn atom(s: &str) -> Term {
    Term::from(Atom::from(s))
}
fn int(i: i32) -> Term {
    Term::from(FixInteger::from(i))
}
fn tuple(v: Vec<Term>) -> Term {
    Term::from(Tuple::from(v))
}
fn list(v: Vec<Term>) -> Term {
    Term::from(List::from(v))
}
fn pid() -> Pid {
    Pid::new("n@h", 42, 1, 7)
}
fn fun(free_vars: Vec<Term>) -> Term {
    let (module, pid, uniq) = (Atom::from("m"), pid(), [9; 16]);
    let f = InternalFun::New {
        module,
        arity: 1,
        pid,
        free_vars,
        index: 3,
        uniq,
        old_index: 4,
        old_uniq: -5,
    };
    Term::from(f)
}
fn enc(t: &Term) -> Vec<u8> {
    let mut out = Vec::new();
    encode_term(t, &mut out).unwrap();
    out
}
/// Encodes, checks and decodes; what was decoded must encode again.
fn round_trip(t: &Term) -> Term {
    let bytes = enc(t);
    assert_eq!(check_term(&bytes, &lim()).unwrap(), bytes.len());
    let (back, n) = decode_term(&bytes, &lim()).unwrap();
    assert_eq!(n, bytes.len());
    enc(&back);
    back
}
fn complex() -> Term {
    let map = Map::from([
        (atom("k"), list(vec![int(-1), int(300)])),
        (int(1), tuple(vec![])),
    ]);
    let improper = ImproperList::from((vec![int(1), atom("b")], atom("tail")));
    tuple(vec![
        atom("héllo"),
        int(-70000),
        Term::from(BigInteger {
            value: BigInteger::from(u64::MAX).value * 3,
        }),
        Term::from(Float::try_from(-2.5).unwrap()),
        Term::from(pid()),
        Term::from(Port {
            node: Atom::from("n@h"),
            id: 1 << 40,
            creation: 2,
        }),
        Term::from(Reference::from(("n@h", vec![1, 2, 3]))),
        Term::from(Binary::from(vec![1, 2, 3])),
        Term::from(BitBinary::from((vec![255, 5], 3))),
        Term::from(improper),
        Term::from(ByteList::from("str")),
        Term::from(map),
        Term::from(ExternalFun::from(("lists", "map", 2))),
        fun(vec![atom("free"), list(vec![])]),
    ])
}

#[test]
fn round_trips_every_kind() {
    let big = |v: BigInteger| Term::from(v);
    let cases = [
        atom("ok"),
        atom(""),
        atom(&"é".repeat(255)),
        int(0),
        int(255),
        int(-1),
        int(256),
        int(i32::MIN),
        int(i32::MAX),
        big(BigInteger::from(i64::MIN)),
        big(BigInteger {
            value: BigInteger::from(u64::MAX).value.pow(40),
        }), // LARGE_BIG_EXT
        Term::from(Float::try_from(1e300).unwrap()),
        Term::from(Port::from(("n@h", 5))),
        Term::from(Reference::from(("n@h", 9))),
        Term::from(Reference::from(("n@h", vec![1, 2, 3, 4, 5]))),
        Term::from(Binary::from(vec![])),
        Term::from(BitBinary::from((vec![1, 2, 255], 8))),
        list(vec![]),
        tuple(vec![]),
        tuple((0..300).map(int).collect()),
        Term::from(Map::from([(Term::from(ByteList::from("k")), atom("v"))])),
        complex(),
    ];
    for t in cases {
        assert_eq!(round_trip(&t), t);
    }
    // Latin-1 atom tags, which we never send, decode if they are ASCII.
    for b in [
        &[131, 100, 0, 2, b'o', b'k'][..],
        &[131, 115, 2, b'o', b'k'],
    ] {
        assert_eq!(decode_term(b, &lim()).unwrap(), (atom("ok"), b.len()));
    }
}

#[test]
fn encoder_bugs_are_worked_around() {
    for v in [vec![-1, 2, 3], vec![0, -5]] {
        let t = list(v.into_iter().map(int).collect());
        assert_eq!(enc(&t)[1], LIST_EXT);
        assert_eq!(round_trip(&t), t);
    }
    // No STRING_EXT can hold it, so it comes back as the same list in
    // eetf's other representation.
    let bytes = vec![7; 70_000];
    let long = Term::from(ByteList::from(bytes.clone()));
    let long_list = Term::from(List::from(ByteList::from(bytes)));
    assert_eq!(round_trip(&long), long_list);
    let bad = list(vec![int(-1), int(2), int(3)]);
    let nested = |l: &Term| {
        let inner = tuple(vec![list(vec![bad.clone(), l.clone(), atom("x")])]);
        Term::from(Map::from([(atom("k"), inner), (bad.clone(), atom("v"))]))
    };
    assert_eq!(round_trip(&nested(&long)), nested(&long_list));
    assert_eq!(
        round_trip(&Term::from(BitBinary::from((vec![], 0)))),
        Term::from(Binary::from(vec![]))
    );
}

#[test]
fn unencodable_terms_are_refused_and_out_is_untouched() {
    let deep = (0..DEFAULT_MAX_DEPTH).fold(list(vec![]), |t, _| tuple(vec![t]));
    let cases = [
        atom(&"a".repeat(256)),
        Term::from(Float { value: f64::NAN }),
        Term::from(Float {
            value: f64::INFINITY,
        }),
        Term::from(BitBinary::from((vec![1], 0))),
        Term::from(BitBinary::from((vec![1], 9))),
        Term::from(Reference::from(("n@h", vec![]))),
        Term::from(Reference::from(("n@h", vec![1; 6]))),
        Term::from(Pid::new("a".repeat(300), 1, 2, 3)),
        Term::from(InternalFun::Old {
            module: Atom::from("m"),
            pid: pid(),
            free_vars: vec![],
            index: 0,
            uniq: 0,
        }),
    ];
    for t in cases {
        let mut out = vec![1, 2, 3];
        assert!(
            matches!(encode_term(&t, &mut out), Err(TermError::Unencodable(_))),
            "{t:?}"
        );
        assert_eq!(out, [1, 2, 3]);
    }
    // Depth has a variant of its own (replies say `{too_deep, N}` from it).
    let mut out = vec![1, 2, 3];
    assert!(matches!(
        encode_term(&tuple(vec![deep.clone()]), &mut out),
        Err(TermError::UnencodableDepth { max_depth }) if max_depth == DEFAULT_MAX_DEPTH
    ));
    assert_eq!(out, [1, 2, 3]);
    assert_eq!(round_trip(&deep), deep);
}

fn rejected(bytes: &[u8]) -> TermError {
    let err = check_term(bytes, &lim()).unwrap_err();
    assert!(decode_term(bytes, &lim()).is_err());
    err
}

#[test]
fn hostile_lengths_are_checked_before_use() {
    let max = [255, 255, 255, 255];
    let mut fun_huge_free = enc(&fun(vec![]));
    fun_huge_free[1 + 1 + 4 + 1 + 16 + 4..][..4].copy_from_slice(&max);
    let cases: [Vec<u8>; 10] = [
        [&[131, LIST_EXT][..], &max, &[1, 2, 3]].concat(),
        [&[131, LARGE_TUPLE_EXT][..], &max, &[1, 2, 3]].concat(),
        [&[131, MAP_EXT][..], &max, &[1, 2, 3]].concat(),
        vec![131, BINARY_EXT, 0, 0, 0, 4, 1, 2, 3],
        [&[131, BINARY_EXT][..], &max, &[1, 2, 3]].concat(),
        [&[131, LARGE_BIG_EXT][..], &max, &[0, 1, 2, 3]].concat(),
        vec![131, STRING_EXT, 255, 255, 1, 2, 3],
        [&[131, NEWER_REFERENCE_EXT, 255, 255][..], &NODE, &[0; 4]].concat(),
        fun_huge_free,
        // Each count fits what is left, but not both together.
        vec![
            131, LIST_EXT, 0, 0, 0, 3, LIST_EXT, 0, 0, 0, 3, 106, 106, 106, 106,
        ],
    ];
    for c in cases {
        let err = rejected(&c);
        assert!(
            matches!(
                err,
                TermError::Truncated { .. } | TermError::Malformed { .. }
            ),
            "{err}"
        );
    }
}

#[test]
fn deep_nesting_is_rejected_fast_without_recursion() {
    let n = 1_000_000;
    let tuples = [&[131][..], &[SMALL_TUPLE_EXT, 1].repeat(n), &[NIL_EXT]].concat();
    let lists = [
        &[131][..],
        &[LIST_EXT, 0, 0, 0, 1].repeat(n),
        &[NIL_EXT].repeat(n + 1),
    ]
    .concat();
    let start = std::time::Instant::now();
    for b in [&tuples, &lists] {
        assert!(matches!(rejected(b), TermError::TooDeep { .. }));
        // The checker itself has no depth limit of its own.
        let unbounded = Limits {
            max_depth: usize::MAX,
            ..lim()
        };
        assert_eq!(check_term(b, &unbounded).unwrap(), b.len());
    }
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn default_depth_is_safe_on_a_2mib_stack() {
    let max = DEFAULT_MAX_DEPTH;
    let nest = |n: usize, wrap: fn(Term) -> Term| (0..n).fold(atom("x"), |t, _| wrap(t));
    // The worst shapes measured, each as deep as the default allows.
    let deepest = [
        nest(max, |t| tuple(vec![t])),
        nest(max, |t| list(vec![t])),
        nest(max, |t| Term::from(ImproperList::from((vec![int(1)], t)))),
        nest(max, |t| Term::from(Map::from([(t, list(vec![]))]))),
        nest(max - 1, |t| fun(vec![t])),
    ];
    let worker = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            for t in deepest {
                let back = round_trip(&t);
                assert_eq!(back.clone(), t);
                assert!(!format!("{back:?}").is_empty());
                let mut one_more = vec![131, SMALL_TUPLE_EXT, 1];
                one_more.extend(&enc(&t)[1..]);
                assert!(matches!(rejected(&one_more), TermError::TooDeep { .. }));
            }
        });
    worker.unwrap().join().unwrap();
}

#[test]
fn rejected_tags() {
    let float_ext = [
        &[131, FLOAT_EXT][..],
        b"1.50000000000000000000e+00\0\0\0\0\0",
    ]
    .concat();
    let cases: [(Vec<u8>, u8); 7] = [
        (vec![131, DIST_HEADER, 0], DIST_HEADER),
        (vec![131, ATOM_CACHE_REF, 0], ATOM_CACHE_REF),
        (
            vec![131, SMALL_TUPLE_EXT, 1, ATOM_CACHE_REF, 0],
            ATOM_CACHE_REF,
        ),
        (
            vec![
                131, COMPRESSED, 0, 0, 0, 1, 120, 156, 203, 0, 0, 0, 107, 0, 107,
            ],
            COMPRESSED,
        ),
        (float_ext, FLOAT_EXT),
        (vec![131, 121, 0, 0, 0, 0, 106], 121),
        (vec![131, FUN_EXT, 0, 0, 0, 0], FUN_EXT),
    ];
    for (bytes, tag) in cases {
        assert!(matches!(rejected(&bytes), TermError::RejectedTag { tag: t, .. } if t == tag));
    }
}

#[test]
fn malformed_terms() {
    let mut fun_bad_size = enc(&fun(vec![int(1)]));
    fun_bad_size[5] -= 1;
    let cases: [Vec<u8>; 13] = [
        vec![131, SMALL_ATOM_UTF8_EXT, 2, 0xff, 0xfe],
        vec![131, SMALL_ATOM_EXT, 1, 0xe9],
        [&[131, ATOM_UTF8_EXT, 1, 0][..], &[b'a'; 256]].concat(),
        vec![131, BIT_BINARY_EXT, 0, 0, 0, 0, 0],
        vec![131, BIT_BINARY_EXT, 0, 0, 0, 1, 0, 5],
        vec![131, BIT_BINARY_EXT, 0, 0, 0, 1, 9, 5],
        vec![131, NEW_FLOAT_EXT, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
        vec![131, NEW_FLOAT_EXT, 0xff, 0xf0, 0, 0, 0, 0, 0, 0],
        [&[131, NEW_PID_EXT, SMALL_TUPLE_EXT, 0][..], &[0; 12]].concat(),
        [&[131, NEWER_REFERENCE_EXT, 0, 0][..], &NODE, &[0; 4]].concat(),
        [
            &[131, EXPORT_EXT][..],
            &NODE,
            &NODE,
            &[INTEGER_EXT, 0, 0, 1, 0],
        ]
        .concat(),
        vec![131, SMALL_BIG_EXT, 1, 2, 1],
        fun_bad_size,
    ];
    for c in cases {
        let err = rejected(&c);
        assert!(
            matches!(err, TermError::Malformed { .. }),
            "{err} {:?}",
            &c[..c.len().min(8)]
        );
    }
    assert!(matches!(
        rejected(&[130, NIL_EXT]),
        TermError::BadVersion { found: 130 }
    ));
    let dup = [131, MAP_EXT, 0, 0, 0, 2, 97, 1, NIL_EXT, 97, 1, NIL_EXT];
    assert_eq!(check_term(&dup, &lim()).unwrap(), dup.len());
    assert!(matches!(
        decode_term(&dup, &lim()),
        Err(TermError::DuplicateMapKeys)
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = enc(&complex());
    for i in 0..bytes.len() {
        rejected(&bytes[..i]);
    }
}

#[test]
fn offset_is_the_term_length_when_bytes_follow() {
    let bytes = enc(&complex());
    let mut more = bytes.clone();
    more.extend([131, NIL_EXT, 1, 2]);
    assert_eq!(check_term(&more, &lim()).unwrap(), bytes.len());
    assert_eq!(
        decode_term(&more, &lim()).unwrap(),
        (complex(), bytes.len())
    );
    assert_eq!(check_term(&more[bytes.len()..], &lim()).unwrap(), 2);
}

#[test]
fn max_terms_is_enforced() {
    let limits = Limits {
        max_terms: 10,
        ..lim()
    };
    let ten = enc(&tuple((0..9).map(int).collect()));
    assert_eq!(check_term(&ten, &limits).unwrap(), ten.len());
    let eleven = enc(&tuple((0..10).map(int).collect()));
    assert!(matches!(
        check_term(&eleven, &limits),
        Err(TermError::TooManyTerms { .. })
    ));
    // A count beyond the limit fails at the header, before reading on.
    let big = [&[131, LIST_EXT, 0, 1, 0, 0][..], &[NIL_EXT; 65537]].concat();
    assert!(matches!(
        check_term(&big, &limits),
        Err(TermError::TooManyTerms { offset: 6, .. })
    ));
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..100_000 {
        let len = 1 + (next() % 64) as usize;
        let bytes: Vec<u8> = std::iter::once(131)
            .chain((0..len).map(|_| next() as u8))
            .collect();
        let _ = decode_term(&bytes, &lim());
    }
    // Mutations of a valid term reach far deeper into the checker; what
    // passes must decode, and what decodes must encode again.
    let valid = enc(&complex());
    for _ in 0..20_000 {
        let mut bytes = valid.clone();
        for _ in 0..1 + next() % 3 {
            let i = 1 + (next() as usize) % (bytes.len() - 1);
            bytes[i] = next() as u8;
        }
        if check_term(&bytes, &lim()).is_ok() {
            match decode_term(&bytes, &lim()) {
                Ok((term, _)) => drop(enc(&term)),
                Err(e) => assert!(matches!(e, TermError::DuplicateMapKeys), "{e}"),
            }
        }
    }
}

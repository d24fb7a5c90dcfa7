use super::*;
use crate::dist::control::{self, ControlMessage};
use crate::dist::etf::{self, decode_term, encode_term};
use eetf::{Atom, FixInteger, InternalFun, Pid, Term, Tuple};

// Frame bodies captured from a real OTP 25 node (erts 13.1.5) sending to a
// Rust hidden node that advertised DFLAG_DIST_HDR_ATOM_CACHE (a scratch
// program, not in this repository), in this order on one connection
// (frames 2, 3 and 7 of that capture are left out; nothing below refers to
// the slots they set). `*_EXPANDED` is what that node's
// `term_to_binary(T, [{minor_version, 2}])` gave for the control message
// and the payload. Every message is a SEND_SENDER {22, From, To} from
// <0.85.0> on capbeam@127.0.0.1 to <1.0> on cap_rs@127.0.0.1:
// F0, F1: {hello, world}, twice (F1 only refers to cached atoms).
// F4, F5, F6: {Long}, {Long, x1}, {Long, x1, x2}, Long being 255 euro signs
//   (765 bytes): the LongAtoms flag with 3, 4 and 5 references.
// F8: ['héllo', '日本語', '🦀', '', true, false, undefined].
// F9: {Self, Ref, Port, Rust, node(), node(Rust), [Ref, Self]}.
// F10: {Fun1, Fun2, Fun3, fun lists:map/2, fun cap:start/0}, funs with free
//   variables whose module is an atom cache reference (sizes grow).
// The hex is at the end of this file.

fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    let digit = |c: u8| (c as char).to_digit(16).unwrap() as u8;
    s.chunks(2)
        .map(|p| digit(p[0]) << 4 | digit(p[1]))
        .collect()
}

fn lim() -> Limits {
    Limits::default()
}

fn expand(cache: &mut AtomCache, body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    cache.expand(body, &lim(), &mut out).map(|()| out)
}

fn atom(s: &str) -> Term {
    Term::from(Atom::from(s))
}

fn tuple(v: Vec<Term>) -> Term {
    Term::from(Tuple::from(v))
}

fn enc(t: &Term) -> Vec<u8> {
    let mut out = Vec::new();
    encode_term(t, &mut out).unwrap();
    out
}

/// The frames in capture order, with what each must expand to.
fn captured() -> Vec<(Vec<u8>, Vec<u8>)> {
    let f0 = hex(F0_EXPANDED);
    let control_len = etf::check_term(&f0, &lim()).unwrap();
    let long = "€".repeat(255);
    let with_control = |msg: Term| {
        let mut v = f0[..control_len].to_vec();
        v.extend_from_slice(&enc(&msg));
        v
    };
    vec![
        (hex(F0_BODY), f0.clone()),
        (hex(F1_BODY), f0.clone()),
        (hex(F4_BODY), with_control(tuple(vec![atom(&long)]))),
        (
            hex(F5_BODY),
            with_control(tuple(vec![atom(&long), atom("x1")])),
        ),
        (
            hex(F6_BODY),
            with_control(tuple(vec![atom(&long), atom("x1"), atom("x2")])),
        ),
        (hex(F8_BODY), hex(F8_EXPANDED)),
        (hex(F9_BODY), hex(F9_EXPANDED)),
        (hex(F10_BODY), hex(F10_EXPANDED)),
    ]
}

#[test]
fn real_frames_expand_to_what_the_beam_encodes() {
    let mut cache = AtomCache::new();
    for (i, (body, want)) in captured().into_iter().enumerate() {
        let got = expand(&mut cache, &body).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        assert_eq!(got, want, "frame {i}");
        match control::decode(&got, &lim()).unwrap() {
            ControlMessage::SendSender(m) => {
                assert_eq!(m.from_pid.node.name, "capbeam@127.0.0.1");
                assert_eq!(m.to_pid.node.name, "cap_rs@127.0.0.1");
            }
            other => panic!("frame {i}: {other:?}"),
        }
    }
    // The LongAtoms flag sits in the nibble after the last reference.
    let f4 = hex(F4_BODY);
    assert_eq!((f4[2], f4[3 + 1] >> 4 & 1), (3, 1));
    let f5 = hex(F5_BODY);
    assert_eq!((f5[2], f5[3 + 2] & 1), (4, 1));
}

#[test]
fn a_cached_frame_is_smaller_and_needs_the_cache() {
    let (f0, f1) = (hex(F0_BODY), hex(F1_BODY));
    assert!(f1.len() < f0.len());
    // Without the entries F0 made, F1 names unset slots.
    assert!(matches!(
        expand(&mut AtomCache::new(), &f1),
        Err(AtomCacheError::UnsetSlot { offset: 6, .. })
    ));
}

/// Cache states before each captured frame.
fn states() -> Vec<(AtomCache, Vec<u8>)> {
    let mut cache = AtomCache::new();
    let mut v = Vec::new();
    for (body, _) in captured() {
        v.push((cache.clone(), body.clone()));
        expand(&mut cache, &body).unwrap();
    }
    v
}

#[test]
fn every_truncation_is_refused_or_a_lone_control_message() {
    for (i, (cache, body)) in states().into_iter().enumerate() {
        for cut in 0..body.len() {
            let mut c = cache.clone();
            let mut out = vec![7];
            match c.expand(&body[..cut], &lim(), &mut out) {
                Err(_) => assert_eq!(out, [7], "frame {i} cut {cut}: out changed"),
                // Cut exactly between control and payload: a well-formed
                // frame, but SEND_SENDER needs its payload.
                Ok(()) => assert!(
                    control::decode(&out[1..], &lim()).is_err(),
                    "frame {i} cut {cut}"
                ),
            }
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    let states = states();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut ok, mut out) = (0, Vec::new());
    let small = Limits {
        max_depth: 8,
        max_terms: 500,
    };
    for round in 0..50_000 {
        let (cache, body) = &states[next() as usize % states.len()];
        let mut body = body.clone();
        for _ in 0..1 + next() % 4 {
            let at = next() as usize % body.len();
            match next() % 6 {
                0 => body[at] ^= 1 << (next() % 8),
                1 => body[at] = next() as u8,
                2 => body[at] = [82, 0, 255, 104, 108, 112, 88][next() as usize % 7],
                3 => body.truncate(at.max(1)),
                4 => body.insert(at, next() as u8),
                _ => {
                    body.remove(at);
                }
            }
            if body.is_empty() {
                body.push(131);
            }
        }
        let limits = if round % 4 == 0 { small } else { lim() };
        let mut c = cache.clone();
        out.clear();
        out.push(1);
        match c.expand(&body, &limits, &mut out) {
            Ok(()) => {
                ok += 1;
                let _ = control::decode(&out[1..], &limits);
            }
            Err(_) => assert_eq!(out, [1]),
        }
    }
    // Some mutations land in binaries or integers and stay valid.
    assert!(ok > 1000, "{ok} accepted");
}

/// A header naming `refs` (slot, text if a new entry).
fn header(refs: &[(usize, Option<&[u8]>)], long: bool) -> Vec<u8> {
    let n = refs.len();
    let mut h = vec![131, 68, n as u8];
    if n == 0 {
        return h;
    }
    let mut flags = vec![0u8; n / 2 + 1];
    let mut nibble = |i: usize, v: u8| flags[i / 2] |= v << ((i & 1) * 4);
    for (i, (slot, text)) in refs.iter().enumerate() {
        nibble(i, (slot >> 8) as u8 | if text.is_some() { 8 } else { 0 });
    }
    nibble(n, u8::from(long));
    h.extend_from_slice(&flags);
    for (slot, text) in refs {
        h.push(*slot as u8);
        if let Some(t) = text {
            if long {
                h.extend_from_slice(&(t.len() as u16).to_be_bytes());
            } else {
                h.push(t.len() as u8);
            }
            h.extend_from_slice(t);
        }
    }
    h
}

/// `header` followed by `{N, ref 0, ref 1, ...}` for each listed reference.
fn frame(refs: &[(usize, Option<&[u8]>)], long: bool) -> Vec<u8> {
    let mut f = header(refs, long);
    f.extend_from_slice(&[104, refs.len() as u8 + 1, 97, refs.len() as u8]);
    for i in 0..refs.len() {
        f.extend_from_slice(&[82, i as u8]);
    }
    f
}

fn expected(names: &[&str]) -> Vec<u8> {
    let mut v = vec![FixInteger::from(names.len() as i32).into()];
    v.extend(names.iter().map(|n| atom(n)));
    enc(&tuple(v))
}

#[test]
fn slots_are_segment_times_256_plus_internal_index() {
    let mut c = AtomCache::new();
    let refs: &[(usize, Option<&[u8]>)] = &[
        (0, Some(b"zero")),
        (0x7ff, Some(b"last")),
        (0x100, Some(b"")),
        (0x3a5, Some("ünï".as_bytes())),
    ];
    let f = frame(refs, false);
    assert_eq!(
        expand(&mut c, &f).unwrap(),
        expected(&["zero", "last", "", "ünï"])
    );
    assert_eq!(c.slot(0x7ff), Some(&[119, 4, b'l', b'a', b's', b't'][..]));
    assert_eq!(c.slot(0x100), Some(&[119, 0][..]));
    assert_eq!(c.slot(0x0ff), None);
    assert_eq!(c.slot(CACHE_SIZE), None);
    // Cached references, in another order, and a slot overwritten.
    let refs: &[(usize, Option<&[u8]>)] = &[(0x3a5, None), (0, Some(b"new")), (0x7ff, None)];
    let f = frame(refs, false);
    assert_eq!(
        expand(&mut c, &f).unwrap(),
        expected(&["ünï", "new", "last"])
    );
}

#[test]
fn long_atoms_use_two_byte_lengths_whatever_the_reference_count() {
    let long = "é".repeat(200); // 400 bytes: ATOM_UTF8_EXT
    for n in 1..=6 {
        let mut refs: Vec<(usize, Option<&[u8]>)> = vec![(9, Some(long.as_bytes()))];
        let names: Vec<String> = (1..n).map(|i| format!("a{i}")).collect();
        refs.extend(
            names
                .iter()
                .enumerate()
                .map(|(i, s)| (i + 20, Some(s.as_bytes()))),
        );
        let mut want: Vec<&str> = vec![&long];
        want.extend(names.iter().map(String::as_str));
        let f = frame(&refs, true);
        assert_eq!(
            expand(&mut AtomCache::new(), &f).unwrap(),
            expected(&want),
            "{n}"
        );
    }
    let mut c = AtomCache::new();
    expand(&mut c, &frame(&[(9, Some(long.as_bytes()))], true)).unwrap();
    assert_eq!(&c.slot(9).unwrap()[..3], &[118, 1, 144]);
}

#[test]
fn zero_references_and_atoms_sent_in_full() {
    // 131 68 0, then terms without version bytes; a payload is optional.
    let mut f = vec![131, 68, 0];
    let control = enc(&tuple(vec![FixInteger::from(5).into()]));
    f.extend_from_slice(&control[1..]);
    assert_eq!(expand(&mut AtomCache::new(), &f).unwrap(), control);
    let payload = enc(&tuple(vec![atom("full"), atom(&"ü".repeat(150))]));
    f.extend_from_slice(&payload[1..]);
    let mut want = control.clone();
    want.extend_from_slice(&payload);
    assert_eq!(expand(&mut AtomCache::new(), &f).unwrap(), want);
    // A reference with none listed.
    let f = [131, 68, 0, 104, 1, 82, 0];
    assert_eq!(
        expand(&mut AtomCache::new(), &f),
        Err(AtomCacheError::UnknownRef {
            offset: 5,
            index: 0,
            listed: 0
        })
    );
}

#[test]
fn bad_references_and_headers_are_errors() {
    let mut c = AtomCache::new();
    let e = |c: &mut AtomCache, f: &[u8]| expand(c, f).unwrap_err();
    // A cached reference to a slot never set.
    assert_eq!(
        e(&mut c, &frame(&[(5, Some(b"a")), (0x205, None)], false)),
        AtomCacheError::UnsetSlot {
            offset: 8,
            slot: 0x205
        }
    );
    // An index beyond the listed references.
    let mut f = frame(&[(1, Some(b"a"))], false);
    let n = f.len();
    f[n - 1] = 1;
    assert_eq!(
        e(&mut c, &f),
        AtomCacheError::UnknownRef {
            offset: n - 2,
            index: 1,
            listed: 1
        }
    );
    // The same slot twice in one header.
    assert!(matches!(
        e(&mut c, &frame(&[(1, Some(b"a")), (1, Some(b"b"))], false)),
        AtomCacheError::DuplicateSlot { slot: 1, .. }
    ));
    // Not UTF-8; too many characters (the BEAM's limit is 255).
    assert!(matches!(
        e(&mut c, &frame(&[(1, Some(b"\xff"))], false)),
        AtomCacheError::BadAtomText { offset: 6, .. }
    ));
    let long = "é".repeat(256);
    assert!(matches!(
        e(&mut c, &frame(&[(1, Some(long.as_bytes()))], true)),
        AtomCacheError::BadAtomText { .. }
    ));
    assert!(expand(
        &mut c,
        &frame(&[(1, Some("é".repeat(255).as_bytes()))], true)
    )
    .is_ok());
    // A pass-through frame, fragments, a version byte after the header.
    let bad_version = AtomCacheError::BadVersion { found: 112 };
    assert_eq!(e(&mut c, &[112, 131, 106]), bad_version);
    assert!(matches!(
        e(&mut c, &[131, 69, 0]),
        AtomCacheError::UnsupportedHeader { tag: 69, .. }
    ));
    assert!(matches!(
        e(&mut c, &[131, 68, 0, 131, 106]),
        AtomCacheError::RejectedTag {
            tag: 131,
            offset: 3,
            ..
        }
    ));
    assert_eq!(
        e(&mut c, &[131, 68, 0]),
        AtomCacheError::Truncated { offset: 3 }
    );
    assert_eq!(
        e(&mut c, &[131, 68, 0, 106, 106, 106]),
        AtomCacheError::TrailingBytes {
            offset: 5,
            count: 1
        }
    );
    // A term claiming more children than there are bytes.
    assert!(matches!(
        e(&mut c, &[131, 68, 0, 108, 255, 255, 255, 255, 106]),
        AtomCacheError::Truncated { .. }
    ));
}

#[test]
fn references_stand_for_node_and_module_atoms() {
    let refs: &[(usize, Option<&[u8]>)] = &[(3, Some(b"n@h")), (4, Some(b"mod"))];
    let pid = Pid::new("n@h", 42, 1, 7);
    let f_term = Term::from(InternalFun::New {
        module: Atom::from("mod"),
        arity: 1,
        pid: pid.clone(),
        free_vars: vec![atom("mod"), Term::from(pid.clone())],
        index: 3,
        uniq: [9; 16],
        old_index: 4,
        old_uniq: 5,
    });
    let plain = enc(&tuple(vec![Term::from(pid), f_term.clone()]));
    // Replace every atom by a reference to it (all are `n@h` or `mod`).
    let mut body = header(refs, false);
    let mut i = 1;
    while i < plain.len() {
        let rest = &plain[i..];
        if rest.starts_with(&[119, 3, b'n', b'@', b'h']) || rest.starts_with(&[119, 3, b'm']) {
            body.extend_from_slice(&[82, u8::from(rest[2] == b'm')]);
            i += 5;
        } else {
            body.push(rest[0]);
            i += 1;
        }
    }
    // The fun's size field shrank by 3 bytes per reference inside it.
    let size_at = plain.windows(2).position(|w| w == [112, 0]).unwrap() + 1;
    let size = u32::from_be_bytes(plain[size_at..size_at + 4].try_into().unwrap());
    let at = body.windows(2).position(|w| w == [112, 0]).unwrap() + 1;
    body[at..at + 4].copy_from_slice(&(size - 12).to_be_bytes());
    let out = expand(&mut AtomCache::new(), &body).unwrap();
    assert_eq!(out, plain);
    let (term, _) = decode_term(&out, &lim()).unwrap();
    assert_eq!(term, decode_term(&plain, &lim()).unwrap().0);
    // A size that does not match the input is refused, not repaired.
    body[at + 3] ^= 1;
    assert!(matches!(
        expand(&mut AtomCache::new(), &body),
        Err(AtomCacheError::Malformed { .. } | AtomCacheError::Truncated { .. })
    ));
}

#[test]
fn limits_apply_as_in_check_term() {
    let limits = Limits {
        max_depth: 4,
        max_terms: 10,
    };
    let frame_of = |plain: &[u8]| {
        let mut f = vec![131, 68, 0];
        f.extend_from_slice(&plain[1..]);
        f
    };
    let nest = |n: usize| {
        let mut t = atom("x");
        for _ in 0..n {
            t = tuple(vec![t]);
        }
        enc(&t)
    };
    let pid_at = |n: usize| {
        let mut t = Term::from(Pid::new("n@h", 1, 0, 1));
        for _ in 0..n {
            t = tuple(vec![t]);
        }
        enc(&t)
    };
    let wide = enc(&tuple((0..10).map(|_| atom("y")).collect()));
    let cases = [
        nest(4),
        nest(5),
        pid_at(3),
        pid_at(4),
        wide.clone(),
        enc(&tuple(vec![atom("y"); 8])),
    ];
    for plain in cases {
        let checked = etf::check_term(&plain, &limits);
        let mut out = Vec::new();
        let got = AtomCache::new().expand(&frame_of(&plain), &limits, &mut out);
        assert_eq!(
            got.is_ok(),
            checked.is_ok(),
            "{plain:?}: {got:?} vs {checked:?}"
        );
        if got.is_ok() {
            assert_eq!(out, plain);
        }
    }
    let mut out = Vec::new();
    assert!(matches!(
        AtomCache::new().expand(&frame_of(&nest(5)), &limits, &mut out),
        Err(AtomCacheError::TooDeep { max_depth: 4, .. })
    ));
    assert!(matches!(
        AtomCache::new().expand(&frame_of(&wide), &limits, &mut out),
        Err(AtomCacheError::TooManyTerms { max_terms: 10, .. })
    ));
}

#[test]
fn output_is_bounded_and_appended() {
    let long = "€".repeat(255);
    let mut f = header(&[(1, Some(long.as_bytes()))], true);
    f.extend_from_slice(&[104, 100]);
    f.extend(std::iter::repeat_n([82, 0], 100).flatten());
    let mut c = AtomCache::new().with_max_output(50_000);
    let mut out = b"kept".to_vec();
    assert!(matches!(
        c.expand(&f, &lim(), &mut out),
        Err(AtomCacheError::TooLarge { max: 50_000, .. })
    ));
    assert_eq!(out, b"kept");
    let mut c = AtomCache::new().with_max_output(100_000);
    c.expand(&f, &lim(), &mut out).unwrap();
    assert_eq!(&out[..4], b"kept");
    assert_eq!(out.len(), 4 + 3 + 100 * 768);
    assert!(format!("{c:?}").contains("set_slots: 1"));
}

const F0_BODY: &str = "\
    834404bfaf0098116361706265616d403132372e302e302e3162106361705f7273403132372e302e302e31ed0568656c\
    6c6f7b05776f726c646803611658520000000055000000006b013bb05852010000000100000000000012346802520252\
    03";
const F1_BODY: &str = "\
    8344043727009862ed7b6803611658520000000055000000006b013bb058520100000001000000000000123468025202\
    5203";
const F4_BODY: &str = "\
    834403371b98626302fde282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282\
    ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282\
    ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282\
    ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282\
    ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282\
    ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282\
    ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282\
    ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282\
    ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282\
    ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282\
    ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282\
    ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282\
    ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282\
    ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282\
    ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282\
    ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282ace282\
    ace282ace282ac6803611658520000000055000000006b013bb058520100000001000000000000123468015202";
const F5_BODY: &str = "\
    83440437a30198626365000278316803611658520000000055000000006b013bb0585201000000010000000000001234\
    680252025203";
const F6_BODY: &str = "\
    83440537231a9862636566000278326803611658520000000055000000006b013bb05852010000000100000000000012\
    346803520252035204";
const F8_BODY: &str = "\
    83440937aa8a880898627c0668c3a96c6c6f7d09e697a5e69cace8aa9e7e04f09fa6800500010474727565000566616c\
    73650e09756e646566696e65646803611658520000000055000000006b013bb05852010000000100000000000012346c\
    0000000752025203520452055206520752086a";
const F9_BODY: &str = "\
    834402370098626803611658520000000055000000006b013bb058520100000001000000000000123468075852000000\
    0055000000006b013bb05a000352006b013bb00002084f4974000226527455595200000000006b013bb0585201000000\
    010000000000001234520052016c000000025a000352006b013bb00002084f4974000226527455585200000000550000\
    00006b013bb06a";
const F10_BODY: &str = "\
    83440637b8ad0098620803636170a1056c6973747333036d61707d057374617274680361165852000000005500000000\
    6b013bb05852010000000100000000000012346805700000003500c1b92d74de3bc430af107a2a2fe1f4a80000000300\
    0000005202610362060dc96b58520000000055000000006b013bb0700000003501c1b92d74de3bc430af107a2a2fe1f4\
    a800000004000000005202610462060dc96b58520000000055000000006b013bb0700000006b01c1b92d74de3bc430af\
    107a2a2fe1f4a800000005000000015202610562060dc96b58520000000055000000006b013bb0700000003500c1b92d\
    74de3bc430af107a2a2fe1f4a800000003000000005202610362060dc96b58520000000055000000006b013bb0715203\
    5204610271520252056100";
const F0_EXPANDED: &str = "\
    83680361165877116361706265616d403132372e302e302e3100000055000000006b013bb05877106361705f72734031\
    32372e302e302e31000000010000000000001234836802770568656c6c6f7705776f726c64";
const F8_EXPANDED: &str = "\
    83680361165877116361706265616d403132372e302e302e3100000055000000006b013bb05877106361705f72734031\
    32372e302e302e31000000010000000000001234836c00000007770668c3a96c6c6f7709e697a5e69cace8aa9e7704f0\
    9fa6807700770474727565770566616c73657709756e646566696e65646a";
const F9_EXPANDED: &str = "\
    83680361165877116361706265616d403132372e302e302e3100000055000000006b013bb05877106361705f72734031\
    32372e302e302e310000000100000000000012348368075877116361706265616d403132372e302e302e310000005500\
    0000006b013bb05a000377116361706265616d403132372e302e302e316b013bb00002084f4974000226527455597711\
    6361706265616d403132372e302e302e31000000006b013bb05877106361705f7273403132372e302e302e3100000001\
    000000000000123477116361706265616d403132372e302e302e3177106361705f7273403132372e302e302e316c0000\
    00025a000377116361706265616d403132372e302e302e316b013bb00002084f49740002265274555877116361706265\
    616d403132372e302e302e3100000055000000006b013bb06a";
const F10_EXPANDED: &str = "\
    83680361165877116361706265616d403132372e302e302e3100000055000000006b013bb05877106361705f72734031\
    32372e302e302e31000000010000000000001234836805700000004900c1b92d74de3bc430af107a2a2fe1f4a8000000\
    03000000007703636170610362060dc96b5877116361706265616d403132372e302e302e3100000055000000006b013b\
    b0700000004901c1b92d74de3bc430af107a2a2fe1f4a800000004000000007703636170610462060dc96b5877116361\
    706265616d403132372e302e302e3100000055000000006b013bb0700000009301c1b92d74de3bc430af107a2a2fe1f4\
    a800000005000000017703636170610562060dc96b5877116361706265616d403132372e302e302e3100000055000000\
    006b013bb0700000004900c1b92d74de3bc430af107a2a2fe1f4a800000003000000007703636170610362060dc96b58\
    77116361706265616d403132372e302e302e3100000055000000006b013bb07177056c6973747377036d617061027177\
    03636170770573746172746100";

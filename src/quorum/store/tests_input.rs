//! Hostile and random input, and the canonical form behind `=:=`.

use super::tests::{check, config, err, fresh, gwl, ok, reply, tag, write, NODE};
use super::*;
use crate::term::binary;
use crate::term::canon::MAX_DEPTH;
use eetf::{BigInteger, BitBinary, ByteList, ExternalFun, Float, ImproperList, Map, Pid, Port};
use std::collections::HashSet;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn name(&mut self, names: &[&'static str]) -> &'static str {
        names[self.below(names.len() as u64) as usize]
    }
}

const NAMES: &[&str] = &[
    "get_write_lock",
    "release_write_lock",
    "write",
    "update",
    "extend_lease",
    "release",
    "set_nodes",
    "set_w",
    "wait_for",
    "wait_for_release",
    "get_debug_state",
    "get_meta",
    "summary",
    "trans_log",
    "not_found",
    "infinity",
    "ok",
    "k",
    "rust@h",
    "",
];

fn any_term(r: &mut Rng, depth: u32) -> Term {
    let leaf = depth == 0 || r.below(3) == 0;
    if leaf {
        return match r.below(12) {
            0 | 1 => atom(r.name(NAMES)),
            2 => int(r.below(7) as i64 - 2),
            3 => int(r.next() as i64),
            4 => Term::from(BigInteger::from(u64::MAX - r.below(3))),
            5 => Term::from(Float {
                value: *r.pick(&[0.0, -0.0, 1.5, -1e300, 2000.0]),
            }),
            6 => binary(vec![r.below(256) as u8; r.below(3) as usize]),
            7 => Term::from(BitBinary::from((
                vec![0xFF; r.below(3) as usize],
                r.below(10) as u8,
            ))),
            8 => Term::from(ByteList::from(vec![b'k'; r.below(3) as usize])),
            9 => Term::from(Pid::from(("n@h", r.below(3) as u32, 0))),
            10 => Term::from(Port::from(("n@h", r.below(3) as u32))),
            _ => Term::from(ExternalFun::from(("m", "f", r.below(3) as u8))),
        };
    }
    let n = r.below(5) as usize;
    let elements: Vec<Term> = (0..n).map(|_| any_term(r, depth - 1)).collect();
    match r.below(4) {
        0 => list(elements),
        1 => Term::from(ImproperList::from((elements, any_term(r, depth - 1)))),
        2 => {
            let pairs = elements.into_iter().map(|e| (e, any_term(r, 0)));
            Term::from(Map::from(pairs.collect::<HashMap<_, _>>()))
        }
        _ => tuple(elements),
    }
}

/// Well-formed calls and log ops: the name and the kind of each argument
/// (key, value, tag, lease, nodes, w, timeout).
const CALLS: &[(&str, &str)] = &[
    ("get_write_lock", "kvt"),
    ("release_write_lock", "t"),
    ("write", "tkvl"),
    ("update", "tkv"),
    ("extend_lease", "tkvl"),
    ("release", "kvt"),
    ("set_nodes", "nn"),
    ("set_w", "w"),
    ("wait_for", "ko"),
    ("wait_for_release", "ko"),
];
const OPS: &[(&str, &str)] = &[
    ("write", "kvl"),
    ("update", "kv"),
    ("extend_lease", "kvl"),
    ("release", "k"),
];

fn argument(r: &mut Rng, kind: u8) -> Term {
    match kind {
        b'k' | b'v' => match r.below(5) {
            0 => atom(r.name(&["a", "b", "not_found"])),
            1 => Term::from(ByteList::from("a")),
            2 => list(vec![int(97)]),
            3 => int(r.below(3) as i64),
            _ => any_term(r, 2),
        },
        b't' => tag(r.below(3) as u32),
        b'l' | b'o' | b'w' => match r.below(16) {
            0 => atom("infinity"),
            1 => int(-1),
            2 => Term::from(Float { value: 75.5 }),
            3 => int(100_000),
            _ => int(r.below(3000) as i64),
        },
        b'n' => list(vec![atom(NODE), atom("b@h")]),
        _ => request_like(r, CALLS),
    }
}

/// A term that often looks like a request or a log op: mostly well formed,
/// with arguments drawn from small pools so that keys and tags collide;
/// otherwise a known name with random arguments, or anything at all.
fn request_like(r: &mut Rng, shapes: &[(&str, &str)]) -> Term {
    match r.below(10) {
        0 => return any_term(r, 4),
        1 => return atom(r.name(NAMES)),
        2 => {
            let mut elements = vec![atom(r.name(NAMES))];
            elements.extend((0..r.below(6)).map(|_| any_term(r, 2)));
            return tuple(elements);
        }
        _ => {}
    }
    let (name, kinds) = *r.pick(shapes);
    let mut elements = vec![atom(name)];
    for &kind in kinds.as_bytes() {
        let wild = r.below(20) == 0;
        elements.push(if wild {
            any_term(r, 2)
        } else {
            argument(r, kind)
        });
    }
    tuple(elements)
}

/// Checks one answer to a parked caller.
fn answer(id: WaiterId, reply: &Term, parked: &mut HashSet<WaiterId>) {
    assert!(parked.remove(&id), "{id:?} answered twice or never parked");
    let shape = as_tuple(reply).expect("a tuple");
    assert!(is_atom(&shape[0], "ok") && shape.len() == 2);
}

#[test]
fn ten_thousand_random_inputs_never_panic() {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let mut s = fresh();
    let mut now = 0u64;
    let mut parked: HashSet<WaiterId> = HashSet::new();
    let (mut parks, mut woken) = (0, 0);
    for i in 0..10_000 {
        now += r.below(300);
        let input = request_like(&mut r, CALLS);
        match r.below(10) {
            0..=5 => {
                let result = s.call(now, &input);
                for (id, reply) in &result.wake {
                    answer(*id, reply, &mut parked);
                }
                if let CallOutcome::Wait(id) = result.outcome {
                    assert!(parked.insert(id));
                    parks += 1;
                }
                woken += result.wake.len();
            }
            6 | 7 => {
                let ops = (0..r.below(5)).map(|_| request_like(&mut r, OPS)).collect();
                // From a master when there is one (random `set_nodes`
                // change them), so that most logs are replayed.
                let from = s.masters().iter().find(|m| *m != NODE).cloned();
                let from = atom(from.as_deref().unwrap_or("m@h"));
                let cast = tuple(vec![atom("trans_log"), from, list(ops)]);
                if let Ok(result) = s.cast(now, &cast) {
                    woken += result.wake.len();
                    for (id, reply) in &result.wake {
                        answer(*id, reply, &mut parked);
                    }
                }
            }
            8 => {
                let sweep = s.sweep(now);
                woken += sweep.wake.len();
                for (id, reply) in &sweep.wake {
                    answer(*id, reply, &mut parked);
                }
                for id in sweep.timed_out {
                    assert!(parked.remove(&id));
                }
            }
            _ => {
                let _ = s.cast(now, &input);
                if let Some(&id) = parked.iter().next() {
                    assert!(s.cancel_waiter(id));
                    parked.remove(&id);
                }
                s.take_log();
            }
        }
        check(&s);
        assert_eq!(s.waiters.len(), parked.len(), "iteration {i}");
    }
    // Everything expires in the end.
    now += 10_000_000;
    let sweep = s.sweep(now);
    for (id, reply) in &sweep.wake {
        answer(*id, reply, &mut parked);
    }
    for id in &sweep.timed_out {
        parked.remove(id);
    }
    check(&s);
    let stats = s.stats(now);
    eprintln!("{stats:?}, {parks} parked, {woken} woken");
    assert_eq!((stats.entries, stats.promises), (0, 0));
    assert!(stats.calls > 5000 && stats.bad_requests > 0 && stats.skipped_ops > 0);
    assert!(stats.bad_requests < stats.calls / 2 && stats.replayed_ops > 1000);
    assert!(parks > 100 && woken > 50 && stats.guard_refusals == 0);
    // Only `infinity` waiters on keys that never go away can be left.
    assert!(s.waiters.values().all(|w| w.deadline.is_none()));
}

#[test]
fn odd_shapes_never_panic() {
    let mut s = fresh();
    let mut deep = atom("k");
    for _ in 0..MAX_DEPTH + 10 {
        deep = tuple(vec![deep]);
    }
    let mut deep_list = list(vec![]);
    for _ in 0..MAX_DEPTH + 10 {
        deep_list = Term::from(ImproperList::from((vec![int(1)], deep_list)));
    }
    for key in [&deep, &deep_list] {
        let req = gwl(key.clone(), atom("not_found"), tag(1));
        let expected = tuple(vec![
            atom("error"),
            tuple(vec![atom("unknown_request"), req.clone()]),
        ]);
        assert_eq!(reply(&mut s, 0, req), expected);
        assert_eq!(s.dirty_read(0, key), None);
        let op = tuple(vec![atom("write"), key.clone(), ok(), int(5)]);
        let cast = tuple(vec![atom("trans_log"), atom("m@h"), list(vec![op])]);
        assert_eq!(s.cast(0, &cast).unwrap().skipped.len(), 1);
    }
    // Truncations of every request, and every request with an extra element.
    let full = [
        gwl(atom("k"), atom("not_found"), tag(1)),
        write(tag(1), atom("k"), ok(), 10),
        tuple(vec![atom("release"), atom("k"), ok(), tag(1)]),
        tuple(vec![atom("set_nodes"), list(vec![]), list(vec![])]),
        tuple(vec![atom("wait_for"), atom("k"), int(1)]),
    ];
    for req in &full {
        let elements = as_tuple(req).unwrap();
        for n in 0..elements.len() {
            let short = tuple(elements[..n].to_vec());
            assert!(matches!(s.call(0, &short).outcome, CallOutcome::Reply(_)));
        }
        let mut long = elements.to_vec();
        long.push(ok());
        assert!(matches!(
            s.call(0, &tuple(long)).outcome,
            CallOutcome::Reply(_)
        ));
    }
    check(&s);
    // Extreme clocks and leases.
    let mut s = Store::new(config(), u64::MAX, NODE);
    assert!(s.guard_active(u64::MAX - 1));
    s.mark_caught_up();
    let huge = Term::from(BigInteger::from(u64::MAX));
    let req = tuple(vec![atom("write"), tag(1), atom("k"), ok(), huge.clone()]);
    assert_eq!(reply(&mut s, u64::MAX - 1, req), err("lease_too_long"));
    let req = tuple(vec![atom("write"), tag(1), atom("k"), ok(), int(60_000)]);
    assert_eq!(reply(&mut s, u64::MAX - 1, req), ok());
    let req = tuple(vec![atom("wait_for_release"), atom("k"), huge]);
    assert!(matches!(
        s.call(u64::MAX - 1, &req).outcome,
        CallOutcome::Wait(_)
    ));
    let _ = s.sweep(u64::MAX);
    check(&s);
    let big_w = tuple(vec![atom("set_w"), Term::from(BigInteger::from(u64::MAX))]);
    assert_ne!(reply(&mut s, 0, big_w), ok());
}

fn canon(t: &Term) -> Canon {
    Canon::of(t).unwrap()
}

/// The same term spelled another way: lists as strings and back, integers
/// as big integers, lists split into improper chains.
fn respell(t: &Term, r: &mut Rng) -> Term {
    match t {
        Term::ByteList(b) => list(b.bytes.iter().map(|&x| int(i64::from(x))).collect()),
        Term::List(l) if !l.elements.is_empty() && r.below(2) == 0 => {
            let (head, tail) = l.elements.split_at(1);
            let tail = list(tail.iter().map(|e| respell(e, r)).collect());
            Term::from(ImproperList::from((vec![respell(&head[0], r)], tail)))
        }
        Term::List(l) => list(l.elements.iter().map(|e| respell(e, r)).collect()),
        Term::FixInteger(i) => Term::from(BigInteger::from(i.value)),
        Term::Tuple(tu) => tuple(tu.elements.iter().map(|e| respell(e, r)).collect()),
        Term::Map(m) => {
            let pairs = m.map.iter().map(|(k, v)| (respell(k, r), respell(v, r)));
            Term::from(Map::from(pairs.collect::<HashMap<_, _>>()))
        }
        other => other.clone(),
    }
}

#[test]
fn respelled_terms_are_the_same_key() {
    let mut r = Rng(42);
    let mut s = fresh();
    for i in 0..2000u64 {
        let t = any_term(&mut r, 4);
        let u = respell(&t, &mut r);
        assert_eq!(canon(&t), canon(&u), "{t} vs {u}");
        let _ = s.call(i, &write(tag(1), t.clone(), ok(), 1000));
        assert_eq!(s.dirty_read(i, &u), Some(ok()), "{t} vs {u}");
        let released = reply(&mut s, i, tuple(vec![atom("release"), u, ok(), tag(1)]));
        assert_eq!(released, ok());
    }
    check(&s);
}

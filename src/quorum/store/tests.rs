//! The store's semantics, call by call, and the helpers the other test
//! files share: waiters and the guard are in `tests_wait.rs`, the log and
//! its replay in `tests_log.rs`, hostile input and the canonical form in
//! `tests_input.rs`, a model-based check in `tests_model.rs`.

use super::*;
use crate::term::binary;
use eetf::{BigInteger, ByteList, ImproperList, Reference};

pub(super) const NODE: &str = "rust@h";

pub(super) fn config() -> Config {
    Config {
        promise_ms: 10_000,
        max_lease_ms: 60_000,
        w: 2,
    }
}

/// A store with the restart guard off, a master beside `m@h` (whose
/// `trans_log` it replays) with the replica `r@h`.
pub(super) fn fresh() -> Store {
    let mut s = Store::new(config(), 0, NODE);
    s.mark_caught_up();
    let nodes = t(
        "set_nodes",
        vec![list(vec![atom("m@h"), atom(NODE)]), list(vec![atom("r@h")])],
    );
    let _ = s.call(0, &nodes);
    s
}

pub(super) fn tag(n: u32) -> Term {
    Term::from(Reference::from(("client@h", vec![n, 7, 9])))
}

pub(super) fn ok() -> Term {
    atom("ok")
}

pub(super) fn err(reason: &str) -> Term {
    tuple(vec![atom("error"), atom(reason)])
}

pub(super) fn released() -> Term {
    tuple(vec![atom("ok"), atom("released")])
}

pub(super) fn t(name: &str, args: Vec<Term>) -> Term {
    let mut elements = vec![atom(name)];
    elements.extend(args);
    tuple(elements)
}

pub(super) fn gwl(key: Term, expected: Term, tag: Term) -> Term {
    t("get_write_lock", vec![key, expected, tag])
}
pub(super) fn write(tag: Term, key: Term, value: Term, ms: i64) -> Term {
    t("write", vec![tag, key, value, int(ms)])
}
pub(super) fn update(tag: Term, key: Term, value: Term) -> Term {
    t("update", vec![tag, key, value])
}
pub(super) fn extend(tag: Term, key: Term, value: Term, ms: i64) -> Term {
    t("extend_lease", vec![tag, key, value, int(ms)])
}
pub(super) fn release(key: Term, value: Term, tag: Term) -> Term {
    t("release", vec![key, value, tag])
}
pub(super) fn rwl(tag: Term) -> Term {
    t("release_write_lock", vec![tag])
}
pub(super) fn wait_for(key: Term, ms: i64) -> Term {
    t("wait_for", vec![key, int(ms)])
}
pub(super) fn wait_rel(key: Term, ms: i64) -> Term {
    t("wait_for_release", vec![key, int(ms)])
}
pub(super) fn trans_log(ops: Vec<Term>) -> Term {
    t("trans_log", vec![atom("m@h"), list(ops)])
}

/// The reply of a call that must answer at once and wake nobody.
pub(super) fn reply(s: &mut Store, now: u64, req: Term) -> Term {
    let (r, wake) = reply_wake(s, now, req);
    assert!(wake.is_empty(), "unexpected wake {wake:?}");
    r
}

pub(super) fn reply_wake(s: &mut Store, now: u64, req: Term) -> (Term, Wake) {
    let result = s.call(now, &req);
    check(s);
    match result.outcome {
        CallOutcome::Reply(r) => (r, result.wake),
        CallOutcome::Wait(id) => panic!("{req} parked as {id:?}"),
    }
}

pub(super) fn park(s: &mut Store, now: u64, req: Term) -> WaiterId {
    let result = s.call(now, &req);
    check(s);
    assert!(result.wake.is_empty());
    match result.outcome {
        CallOutcome::Wait(id) => id,
        CallOutcome::Reply(r) => panic!("{req} answered {r}"),
    }
}

/// Lock `key` to `value` as `locker:lock/3` does against this one master.
pub(super) fn lock(s: &mut Store, now: u64, key: Term, value: Term, ms: i64) {
    assert_eq!(
        reply(s, now, gwl(key.clone(), atom("not_found"), tag(99))),
        ok()
    );
    let _ = s.call(now, &write(tag(99), key, value, ms));
    check(s);
}

/// Every index agrees with the tables it indexes.
pub(super) fn check(s: &Store) {
    // Session entries have no expiry of their own.
    let own_lease = s.entries.values().filter(|e| e.session.is_none()).count();
    assert_eq!(s.expiry.len(), own_lease);
    for (k, e) in &s.entries {
        assert_eq!(
            e.session.is_none(),
            s.expiry.contains(&(e.expires_at, k.clone()))
        );
    }
    assert_eq!(s.promise_deadlines.len(), s.promises.len());
    let mut by_tag = 0;
    for (tag, keys) in &s.promises_by_tag {
        assert!(!keys.is_empty());
        for k in keys {
            assert_eq!(&s.promises[k].tag_canon, tag);
            by_tag += 1;
        }
    }
    assert_eq!(by_tag, s.promises.len());
    for (k, p) in &s.promises {
        assert!(s.promise_deadlines.contains(&(p.deadline, k.clone())));
    }
    let parked: usize = s.waiters_by_key.values().map(BTreeSet::len).sum();
    assert_eq!(parked, s.waiters.len());
    for (id, w) in &s.waiters {
        assert!(s.waiters_by_key[&w.key].contains(id));
        if let Some(d) = w.deadline {
            assert!(s.waiter_deadlines.contains(&(d, *id)));
        }
    }
    let with_deadline = s.waiters.values().filter(|w| w.deadline.is_some()).count();
    assert_eq!(s.waiter_deadlines.len(), with_deadline);
}

#[test]
fn get_write_lock_replies() {
    let mut s = fresh();
    let k = atom("k");
    assert_eq!(
        reply(&mut s, 0, gwl(k.clone(), atom("not_found"), tag(1))),
        ok()
    );
    // One promise per key, whoever asks (even the same tag).
    assert_eq!(
        reply(&mut s, 1, gwl(k.clone(), atom("not_found"), tag(2))),
        err("already_locked")
    );
    assert_eq!(
        reply(&mut s, 1, gwl(k.clone(), atom("not_found"), tag(1))),
        err("already_locked")
    );
    // Absent key, a concrete expected value.
    assert_eq!(
        reply(&mut s, 1, gwl(atom("j"), int(5), tag(3))),
        err("not_expected_value")
    );
    // Present key.
    let _ = s.call(2, &write(tag(1), k.clone(), int(5), 2000));
    assert_eq!(reply(&mut s, 3, gwl(k.clone(), int(5), tag(4))), ok());
    assert_eq!(reply(&mut s, 3, rwl(tag(4))), ok());
    assert_eq!(
        reply(&mut s, 3, gwl(k.clone(), atom("not_found"), tag(4))),
        err("not_expected_value")
    );
    assert_eq!(
        reply(&mut s, 3, gwl(k.clone(), int(6), tag(4))),
        err("not_expected_value")
    );
    // =:=, not ==: 5.0 is not 5.
    let five = Term::from(eetf::Float { value: 5.0 });
    assert_eq!(
        reply(&mut s, 3, gwl(k.clone(), five, tag(4))),
        err("not_expected_value")
    );
    // A stored value that is the atom not_found matches Expected = not_found.
    let _ = s.call(3, &write(tag(5), atom("nf"), atom("not_found"), 2000));
    assert_eq!(
        reply(&mut s, 4, gwl(atom("nf"), atom("not_found"), tag(6))),
        ok()
    );
    // A promise blocks a key even when the expected value matches.
    assert_eq!(
        reply(&mut s, 4, gwl(atom("nf"), atom("not_found"), tag(7))),
        err("already_locked")
    );
}

#[test]
fn promise_expires_after_promise_ms() {
    let mut s = fresh();
    let k = atom("k");
    assert_eq!(
        reply(&mut s, 1000, gwl(k.clone(), atom("not_found"), tag(1))),
        ok()
    );
    assert_eq!(
        reply(&mut s, 10_999, gwl(k.clone(), atom("not_found"), tag(2))),
        err("already_locked")
    );
    // Gone at exactly promise_ms, swept or not.
    assert_eq!(
        reply(&mut s, 11_000, gwl(k.clone(), atom("not_found"), tag(2))),
        ok()
    );
    assert_eq!(s.stats(11_000).promises, 1);
    // A sweep drops expired promises.
    assert_eq!(s.sweep(20_999), SweepResult::default());
    assert_eq!(s.stats(20_999).promises, 1);
    let _ = s.sweep(21_000);
    check(&s);
    assert_eq!(s.stats(21_000).promises, 0);
    assert_eq!(
        reply(&mut s, 21_000, gwl(k, atom("not_found"), tag(3))),
        ok()
    );
}

#[test]
fn release_write_lock_drops_every_promise_of_the_tag() {
    let mut s = fresh();
    for k in ["a", "b", "c"] {
        assert_eq!(
            reply(&mut s, 0, gwl(atom(k), atom("not_found"), tag(1))),
            ok()
        );
    }
    assert_eq!(
        reply(&mut s, 0, gwl(atom("d"), atom("not_found"), tag(2))),
        ok()
    );
    assert_eq!(reply(&mut s, 1, rwl(tag(1))), ok());
    assert_eq!(reply(&mut s, 1, rwl(tag(1))), ok(), "idempotent");
    assert_eq!(s.stats(1).promises, 1);
    assert_eq!(
        reply(&mut s, 1, gwl(atom("a"), atom("not_found"), tag(3))),
        ok()
    );
    assert_eq!(
        reply(&mut s, 1, gwl(atom("d"), atom("not_found"), tag(3))),
        err("already_locked")
    );
    assert!(s.take_log().is_empty(), "promises are not logged");
}

#[test]
fn write_sets_lease_drops_promise_and_logs() {
    let mut s = fresh();
    let (k, v) = (binary("key"), atom("v"));
    assert_eq!(
        reply(&mut s, 100, gwl(k.clone(), atom("not_found"), tag(1))),
        ok()
    );
    assert_eq!(
        reply(&mut s, 200, write(tag(1), k.clone(), v.clone(), 2000)),
        ok()
    );
    assert_eq!(s.stats(200).promises, 0);
    assert_eq!(s.dirty_read(2199, &k), Some(v.clone()));
    assert_eq!(s.dirty_read(2200, &k), None, "expired at now + lease");
    assert_eq!(
        s.dirty_read_reply(300, &k),
        tuple(vec![atom("ok"), v.clone()])
    );
    assert_eq!(s.dirty_read_reply(2200, &k), err("not_found"));
    assert_eq!(
        s.take_log(),
        vec![t("write", vec![k.clone(), v.clone(), int(2000)])]
    );
    assert!(s.take_log().is_empty());
    // Not unconditional (the original is): a write under a tag without the
    // key's live promise must not replace what another tag may own.
    assert_eq!(reply(&mut s, 300, gwl(k.clone(), v.clone(), tag(2))), ok());
    assert_eq!(
        reply(&mut s, 300, write(tag(3), k.clone(), int(1), 5000)),
        err("no_promise")
    );
    assert_eq!(s.dirty_read(300, &k), Some(v.clone()));
    assert_eq!(s.stats(300).refused_writes, 1);
    // The promise's own tag writes.
    assert_eq!(
        reply(&mut s, 300, write(tag(2), k.clone(), int(1), 5000)),
        ok()
    );
    assert_eq!(s.dirty_read(5299, &k), Some(int(1)));
    // Without any live promise, a write that would change a live value is
    // refused; one that changes nothing someone could hold is applied (that
    // is how a master that refused the vote in its restart guard catches up).
    assert_eq!(
        reply(&mut s, 400, write(tag(4), k.clone(), int(9), 5000)),
        err("no_promise")
    );
    assert_eq!(
        reply(&mut s, 400, extend(tag(4), k.clone(), int(1), 5000)),
        ok()
    );
    assert_eq!(
        reply(&mut s, 400, write(tag(5), atom("fresh"), int(7), 100)),
        ok()
    );
    assert_eq!(
        reply(&mut s, 400, update(tag(6), k.clone(), int(8))),
        err("no_promise")
    );
    assert_eq!(reply(&mut s, 300, gwl(k.clone(), int(1), tag(7))), ok());
    assert_eq!(s.stats(300).promises, 1);
    let _ = s.call(300, &rwl(tag(7)));
    // Lease expiry via sweep (the extend at 400 runs to 5400).
    assert_eq!(s.sweep(5399).wake, vec![]);
    assert_eq!(s.stats(5399).entries, 1);
    let _ = s.sweep(5400);
    check(&s);
    assert_eq!(s.stats(5400).entries, 0);
}

#[test]
fn leases_in_ms_floats_and_the_cap() {
    let mut s = fresh();
    let float = Term::from(eetf::Float { value: 1500.9 });
    let req = t("write", vec![tag(1), atom("f"), ok(), float]);
    assert_eq!(reply(&mut s, 0, req), ok());
    assert_eq!(s.dirty_read(1499, &atom("f")), Some(ok()));
    assert_eq!(s.dirty_read(1500, &atom("f")), None);
    // Longer than max_lease_ms: refused, not shortened behind the client's
    // back, and nothing is stored or logged.
    let err_long = err("lease_too_long");
    assert_eq!(
        reply(&mut s, 0, write(tag(1), atom("long"), ok(), 3_600_000)),
        err_long
    );
    let huge = Term::from(BigInteger::from(u64::MAX)); // past i64
    assert_eq!(
        reply(
            &mut s,
            0,
            t("extend_lease", vec![tag(1), atom("h"), ok(), huge])
        ),
        err_long
    );
    assert_eq!(s.dirty_read(0, &atom("long")), None);
    assert_eq!(s.dirty_read(0, &atom("h")), None);
    assert_eq!(s.stats(0).refused_leases, 2);
    assert_eq!(s.stats(0).clamped_leases, 0);
    // Exactly max_lease_ms is fine.
    assert_eq!(
        reply(&mut s, 0, write(tag(1), atom("max"), ok(), 60_000)),
        ok()
    );
    assert_eq!(s.dirty_read(59_999, &atom("max")), Some(ok()));
    let log = s.take_log();
    assert_eq!(log[0], t("write", vec![atom("f"), ok(), int(1500)]));
    assert_eq!(log[1], t("write", vec![atom("max"), ok(), int(60_000)]));
    assert_eq!(log.len(), 2);
    // A zero lease is gone at once but still logged.
    assert_eq!(reply(&mut s, 5, write(tag(1), atom("z"), ok(), 0)), ok());
    assert_eq!(s.dirty_read(5, &atom("z")), None);
    assert_eq!(
        s.take_log(),
        vec![t("write", vec![atom("z"), ok(), int(0)])]
    );
    // Negative leases are malformed, and change nothing.
    let bad = write(tag(1), atom("n"), ok(), -1);
    let expected = tuple(vec![
        atom("error"),
        tuple(vec![atom("unknown_request"), bad.clone()]),
    ]);
    assert_eq!(reply(&mut s, 5, bad), expected);
    assert!(s.take_log().is_empty());
}

#[test]
fn update_keeps_expiry_and_is_a_no_op_when_gone() {
    let mut s = fresh();
    let k = atom("k");
    let _ = s.call(0, &write(tag(1), k.clone(), int(1), 1000));
    s.take_log();
    assert_eq!(reply(&mut s, 0, gwl(k.clone(), int(1), tag(2))), ok());
    assert_eq!(reply(&mut s, 500, update(tag(2), k.clone(), int(2))), ok());
    assert_eq!(s.stats(500).promises, 0, "update drops its tag's promise");
    assert_eq!(s.dirty_read(999, &k), Some(int(2)));
    assert_eq!(s.dirty_read(1000, &k), None, "old expiry kept");
    // Gone: nothing stored, but logged all the same (as the original does).
    assert_eq!(reply(&mut s, 1000, update(tag(3), k.clone(), int(3))), ok());
    assert_eq!(s.dirty_read(1000, &k), None);
    assert_eq!(s.stats(1000).entries, 0);
    assert_eq!(
        s.take_log(),
        vec![
            t("update", vec![k.clone(), int(2)]),
            t("update", vec![k, int(3)])
        ]
    );
}

#[test]
fn extend_lease_upserts_with_a_new_expiry() {
    let mut s = fresh();
    let k = atom("k");
    // Absent: created (how a new master catches up).
    assert_eq!(
        reply(&mut s, 0, extend(tag(1), k.clone(), int(1), 1000)),
        ok()
    );
    assert_eq!(s.dirty_read(999, &k), Some(int(1)));
    assert_eq!(reply(&mut s, 0, gwl(k.clone(), int(1), tag(2))), ok());
    assert_eq!(
        reply(&mut s, 900, extend(tag(2), k.clone(), int(1), 1000)),
        ok()
    );
    assert_eq!(s.stats(900).promises, 0);
    assert_eq!(s.dirty_read(1899, &k), Some(int(1)));
    assert_eq!(s.dirty_read(1900, &k), None);
    let _ = s.sweep(1000);
    check(&s);
    assert_eq!(s.stats(1000).entries, 1, "the old expiry no longer counts");
    assert_eq!(
        s.take_log(),
        vec![
            t("extend_lease", vec![k.clone(), int(1), int(1000)]),
            t("extend_lease", vec![k, int(1), int(1000)]),
        ]
    );
}

#[test]
fn release_replies_and_log() {
    let mut s = fresh();
    let (k, v) = (atom("k"), atom("mine"));
    let _ = s.call(0, &write(tag(1), k.clone(), v.clone(), 5000));
    s.take_log();
    assert_eq!(reply(&mut s, 1, gwl(k.clone(), v.clone(), tag(2))), ok());
    assert_eq!(
        reply(&mut s, 1, release(k.clone(), atom("theirs"), tag(2))),
        err("not_owner")
    );
    // The promise went with the failed release; the entry stays.
    assert_eq!(s.stats(1).promises, 0);
    assert_eq!(s.dirty_read(1, &k), Some(v.clone()));
    assert!(s.take_log().is_empty());
    assert_eq!(reply(&mut s, 2, gwl(k.clone(), v.clone(), tag(3))), ok());
    assert_eq!(
        reply(&mut s, 2, release(k.clone(), v.clone(), tag(3))),
        ok()
    );
    assert_eq!(s.stats(2).promises, 0);
    assert_eq!(s.dirty_read(2, &k), None);
    assert_eq!(
        reply(&mut s, 2, release(k.clone(), v.clone(), tag(3))),
        err("not_found")
    );
    assert_eq!(s.take_log(), vec![t("release", vec![k.clone()])]);
    // An expired entry is not_found even before the sweep.
    let _ = s.call(10, &write(tag(4), k.clone(), v.clone(), 10));
    assert_eq!(reply(&mut s, 20, release(k, v, tag(4))), err("not_found"));
}

#[test]
fn membership_and_w() {
    let mut s = Store::new(config(), 0, NODE);
    assert_eq!(s.role(), Role::Neither);
    assert_eq!(s.w(), 2);
    let nodes = |names: &[&str]| list(names.iter().map(|n| atom(n)).collect());
    let req = t(
        "set_nodes",
        vec![nodes(&["c@h", NODE, "a@h", "c@h"]), nodes(&["r@h", "r@h"])],
    );
    assert_eq!(reply(&mut s, 0, req), ok());
    assert_eq!(s.masters(), ["a@h", "c@h", NODE]);
    assert_eq!(s.replicas(), ["r@h"]);
    assert_eq!(s.role(), Role::Master);
    assert_eq!(s.push_targets(), ["r@h"]);
    let req = t("set_nodes", vec![nodes(&["a@h"]), nodes(&[NODE, "b@h"])]);
    assert_eq!(reply(&mut s, 0, req), ok());
    assert_eq!(s.role(), Role::Replica);
    assert_eq!(s.push_targets(), ["b@h"]);
    let req = t("set_nodes", vec![nodes(&[NODE]), nodes(&[NODE])]);
    assert_eq!(reply(&mut s, 0, req), ok());
    assert_eq!(s.role(), Role::Both);
    let empty = Term::from(ByteList::from(vec![]));
    assert_eq!(
        reply(&mut s, 0, t("set_nodes", vec![list(vec![]), empty])),
        ok()
    );
    assert_eq!(s.role(), Role::Neither);
    assert_eq!(reply(&mut s, 0, t("set_w", vec![int(3)])), ok());
    assert_eq!(s.w(), 3);
    let meta = t("set_nodes", vec![nodes(&["b@h", "a@h"]), nodes(&["r@h"])]);
    reply(&mut s, 0, meta);
    assert_eq!(
        reply(&mut s, 0, atom("get_meta")),
        tuple(vec![nodes(&["a@h", "b@h"]), nodes(&["r@h"]), int(3)])
    );
    // Malformed: the state is unchanged.
    for bad in [
        t("set_w", vec![int(-1)]),
        t("set_w", vec![atom("two")]),
        t("set_nodes", vec![list(vec![int(1)]), list(vec![])]),
        t("set_nodes", vec![atom("a@h"), list(vec![])]),
        t(
            "set_nodes",
            vec![Term::from(ByteList::from(vec![97])), list(vec![])],
        ),
    ] {
        let expected = tuple(vec![
            atom("error"),
            tuple(vec![atom("unknown_request"), bad.clone()]),
        ]);
        assert_eq!(reply(&mut s, 0, bad), expected);
    }
    assert_eq!((s.w(), s.masters().len()), (3, 2));
}

#[test]
fn unknown_and_malformed_calls() {
    let mut s = fresh();
    for req in [
        atom("foo"),
        int(1),
        list(vec![]),
        tuple(vec![]),
        t("foo", vec![]),
        tuple(vec![int(1), int(2)]),
        t("get_write_lock", vec![atom("k"), atom("not_found")]),
        t("release_write_lock", vec![]),
        t("write", vec![tag(1), atom("k"), int(1)]),
        t("write", vec![tag(1), atom("k"), int(1), atom("infinity")]),
        t("extend_lease", vec![tag(1), atom("k"), int(1), binary("1")]),
        t("update", vec![tag(1), atom("k")]),
        t("release", vec![atom("k"), int(1)]),
        t("wait_for", vec![atom("k")]),
        t("wait_for", vec![atom("k"), int(-1)]),
        t("wait_for_release", vec![atom("k"), atom("soon")]),
        t("get_debug_state", vec![]),
        t("summary", vec![int(1)]),
    ] {
        let expected = tuple(vec![
            atom("error"),
            tuple(vec![atom("unknown_request"), req.clone()]),
        ]);
        assert_eq!(reply(&mut s, 0, req), expected);
    }
    assert_eq!(s.stats(0).bad_requests, 18);
    assert_eq!(s.stats(0).entries + s.stats(0).promises, 0);
    assert!(s.take_log().is_empty());
}

#[test]
fn debug_state_summary_and_stats() {
    let mut s = fresh();
    let _ = s.call(0, &write(tag(1), atom("a"), int(1), 1000));
    let _ = s.call(0, &write(tag(1), atom("gone"), int(1), 5));
    let _ = s.call(0, &gwl(atom("b"), atom("not_found"), tag(2)));
    park(&mut s, 0, wait_for(atom("w"), 100));
    park(&mut s, 0, wait_rel(atom("a"), 100));
    assert_eq!(
        reply(&mut s, 10, atom("get_debug_state")),
        tuple(vec![
            atom("ok"),
            list(vec![tuple(vec![atom("b"), tag(2), int(10_000)])]),
            list(vec![tuple(vec![atom("a"), int(1), int(1000)])]),
            atom("undefined"),
            atom("undefined"),
            atom("undefined"),
        ])
    );
    assert_eq!(
        reply(&mut s, 10, atom("summary")),
        list(vec![
            tuple(vec![atom("write_locks"), int(1)]),
            tuple(vec![atom("leases"), int(2)]),
        ])
    );
    let stats = s.stats(10);
    assert_eq!(
        (
            stats.entries,
            stats.promises,
            stats.wait_for_waiters,
            stats.release_waiters
        ),
        (2, 1, 1, 1)
    );
    // `fresh`'s set_nodes is a call too.
    assert_eq!((stats.pending_log, stats.w, stats.calls), (2, 2, 8));
}

#[test]
fn list_and_byte_list_keys_are_one_key() {
    let mut s = fresh();
    let as_bytes = Term::from(ByteList::from("ab"));
    let as_list = list(vec![int(97), int(98)]);
    let as_improper = Term::from(ImproperList::from((vec![int(97)], list(vec![int(98)]))));
    let big = Term::from(BigInteger::from(98i64));
    let as_big = list(vec![int(97), big]);
    assert_eq!(
        reply(&mut s, 0, gwl(as_bytes.clone(), atom("not_found"), tag(1))),
        ok()
    );
    for key in [&as_list, &as_improper, &as_big] {
        let req = gwl(key.clone(), atom("not_found"), tag(2));
        assert_eq!(reply(&mut s, 0, req), err("already_locked"));
    }
    let _ = s.call(0, &write(tag(1), as_list.clone(), as_bytes.clone(), 1000));
    for key in [&as_bytes, &as_list, &as_improper, &as_big] {
        assert_eq!(s.dirty_read(0, key), Some(as_bytes.clone()));
    }
    // Values too: Expected as a list matches a value stored as a string.
    assert_eq!(
        reply(&mut s, 0, gwl(as_improper.clone(), as_list.clone(), tag(3))),
        ok()
    );
    assert_eq!(
        reply(&mut s, 0, release(as_big.clone(), as_list.clone(), tag(3))),
        ok()
    );
    assert_eq!(s.stats(0).entries, 0);
    // The tag as well: a tag sent as a list drops a promise taken as a string.
    reply(
        &mut s,
        0,
        gwl(atom("k"), atom("not_found"), as_bytes.clone()),
    );
    reply(&mut s, 0, rwl(as_improper));
    assert_eq!(s.stats(0).promises, 0);
    // And a replica replays into the same key.
    let _ = s
        .cast(
            0,
            &trans_log(vec![t("write", vec![as_list.clone(), ok(), int(100)])]),
        )
        .unwrap();
    let _ = s
        .cast(0, &trans_log(vec![t("release", vec![as_bytes.clone()])]))
        .unwrap();
    assert_eq!(s.dirty_read(0, &as_list), None);
    // A string is not a binary, nor an atom.
    let _ = s.call(0, &write(tag(1), binary("ab"), ok(), 100));
    assert_eq!(s.dirty_read(0, &as_bytes), None);
    assert_eq!(s.dirty_read(0, &atom("ab")), None);
}

#[test]
fn one_round_lock_votes_and_writes_at_once() {
    let lock =
        |k: Term, v: Term, ms: i64, t: Term| tuple(vec![atom("erl_quorum_lock"), k, v, int(ms), t]);
    let mut s = Store::new(config(), 0, NODE);
    // The restart guard refuses it like a promise.
    assert_eq!(
        reply(&mut s, 0, lock(atom("k"), atom("a"), 1000, tag(1))),
        err("already_locked")
    );
    s.mark_caught_up();
    assert_eq!(
        reply(&mut s, 0, lock(atom("k"), atom("a"), 1000, tag(1))),
        ok()
    );
    assert_eq!(s.dirty_read(999, &atom("k")), Some(atom("a")));
    assert_eq!(
        s.take_log(),
        vec![t("write", vec![atom("k"), atom("a"), int(1000)])]
    );
    // Taken: refused, whoever asks.
    assert_eq!(
        reply(&mut s, 1, lock(atom("k"), atom("b"), 1000, tag(2))),
        err("not_expected_value")
    );
    // A live promise refuses it; so does a lease over the maximum.
    assert_eq!(
        reply(&mut s, 1, gwl(atom("p"), atom("not_found"), tag(3))),
        ok()
    );
    assert_eq!(
        reply(&mut s, 1, lock(atom("p"), atom("b"), 1000, tag(4))),
        err("already_locked")
    );
    assert_eq!(
        reply(&mut s, 1, lock(atom("q"), atom("b"), 3_600_000, tag(4))),
        err("lease_too_long")
    );
    // Free again once the lease is over.
    assert_eq!(
        reply(&mut s, 1000, lock(atom("k"), atom("b"), 1000, tag(5))),
        ok()
    );
    check(&s);
}

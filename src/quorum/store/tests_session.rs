//! Session leases: entries that live as long as their session.

use super::tests::*;
use super::*;

fn session(n: i64) -> Term {
    tuple(vec![atom("serving"), int(n)])
}

fn open(s: &mut Store, now: u64, n: i64, ms: i64) -> Term {
    reply(s, now, t("erl_quorum_session", vec![session(n), int(ms)]))
}

fn lock_in(key: Term, value: Term, n: i64, tag_n: u32) -> Term {
    t(
        "erl_quorum_lock",
        vec![
            key,
            value,
            tuple(vec![atom("session"), session(n)]),
            tag(tag_n),
        ],
    )
}

#[test]
fn entries_live_while_their_session_is_renewed() {
    let mut s = fresh();
    // No session yet: refused.
    assert_eq!(
        reply(&mut s, 0, lock_in(atom("k"), int(1), 1, 1)),
        err("no_session")
    );
    assert_eq!(open(&mut s, 0, 1, 1000), atom("created"));
    assert_eq!(reply(&mut s, 10, lock_in(atom("k"), int(1), 1, 1)), ok());
    // Held: a second lock (in any session) is refused.
    assert_eq!(open(&mut s, 10, 2, 1000), atom("created"));
    assert_eq!(
        reply(&mut s, 20, lock_in(atom("k"), int(2), 2, 2)),
        err("not_expected_value")
    );
    // Renewals keep it past the first lease; a shorter renewal never shortens.
    assert_eq!(open(&mut s, 900, 1, 1000), ok());
    assert_eq!(open(&mut s, 901, 1, 10), ok());
    assert_eq!(s.dirty_read(1500, &atom("k")), Some(int(1)));
    let _ = s.sweep(1500);
    assert_eq!(s.stats(1500).entries, 1);
    // The session ends: its entries go, and release waiters are answered.
    let id = park(&mut s, 1600, wait_rel(atom("k"), 5000));
    assert_eq!(s.dirty_read(1900, &atom("k")), None);
    let swept = s.sweep(1900);
    assert_eq!(swept.wake, vec![(id, released())]);
    assert_eq!(s.stats(1900).entries, 0);
    // A lapsed session renewed is a new one: its entries stay gone.
    assert_eq!(open(&mut s, 1950, 1, 1000), atom("created"));
    assert_eq!(s.dirty_read(1960, &atom("k")), None);
    // Repair writes a key back under a live session, also during a guard.
    let repair =
        |k: &str, v: i64, n: i64| t("erl_quorum_repair", vec![atom(k), int(v), session(n)]);
    assert_eq!(reply(&mut s, 1970, repair("k", 1, 1)), ok());
    assert_eq!(reply(&mut s, 1971, repair("k", 1, 1)), ok());
    assert_eq!(
        reply(&mut s, 1972, repair("k", 2, 1)),
        err("not_expected_value")
    );
    assert_eq!(reply(&mut s, 1973, repair("x", 2, 9)), err("no_session"));
    assert_eq!(s.dirty_read(1974, &atom("k")), Some(int(1)));
    // Plain release works on session entries too.
    assert_eq!(open(&mut s, 2000, 3, 1000), atom("created"));
    assert_eq!(reply(&mut s, 2000, lock_in(atom("j"), int(3), 3, 3)), ok());
    assert_eq!(
        reply(&mut s, 2001, release(atom("j"), int(3), tag(3))),
        ok()
    );
    assert_eq!(s.dirty_read(2002, &atom("j")), None);
    check(&s);
}

#[test]
fn sessions_obey_the_lease_limit_and_the_restart_guard() {
    let mut s = fresh();
    assert_eq!(open(&mut s, 0, 1, 10_000_000), err("lease_too_long"));
    let mut guarded = Store::new(config(), 0, "me@host");
    assert_eq!(open(&mut guarded, 0, 1, 1000), atom("created"));
    assert_eq!(
        reply(&mut guarded, 1, lock_in(atom("k"), int(1), 1, 1)),
        err("already_locked")
    );
}

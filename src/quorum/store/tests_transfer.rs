//! `erl_quorum_transfer`: a held session entry handed from one serving
//! node's value to another's in one step.

use super::tests::*;
use super::*;

fn session(n: i64) -> Term {
    tuple(vec![atom("serving"), int(n)])
}

fn open(s: &mut Store, now: u64, n: i64, ms: i64) -> Term {
    reply(s, now, t("erl_quorum_session", vec![session(n), int(ms)]))
}

fn transfer(key: &str, from: i64, to: i64, n: i64) -> Term {
    t(
        "erl_quorum_transfer",
        vec![atom(key), int(from), int(to), session(n)],
    )
}

fn lock_in(key: &str, value: i64, n: i64) -> Term {
    t(
        "erl_quorum_lock",
        vec![
            atom(key),
            int(value),
            tuple(vec![atom("session"), session(n)]),
            tag(1),
        ],
    )
}

#[test]
fn a_transfer_moves_the_entry_to_the_new_session() {
    let mut s = fresh();
    assert_eq!(open(&mut s, 0, 1, 1000), atom("created"));
    assert_eq!(open(&mut s, 0, 2, 1000), atom("created"));
    assert_eq!(reply(&mut s, 1, lock_in("k", 1, 1)), ok());
    // The target session must be live here.
    assert_eq!(reply(&mut s, 2, transfer("k", 1, 2, 9)), err("no_session"));
    // Only from the expected value.
    assert_eq!(
        reply(&mut s, 3, transfer("k", 5, 2, 2)),
        err("not_expected_value")
    );
    assert_eq!(reply(&mut s, 4, transfer("k", 1, 2, 2)), ok());
    // Again (a retried round): still ok; and the old value is gone.
    assert_eq!(reply(&mut s, 5, transfer("k", 1, 2, 2)), ok());
    assert_eq!(s.dirty_read(6, &atom("k")), Some(int(2)));
    assert_eq!(
        reply(&mut s, 7, transfer("k", 3, 1, 1)),
        err("not_expected_value")
    );
    // The entry now lives with session 2: session 1 lapsing leaves it,
    // session 2 lapsing takes it.
    assert_eq!(open(&mut s, 900, 2, 1000), ok());
    let _ = s.sweep(1500);
    assert_eq!(s.dirty_read(1500, &atom("k")), Some(int(2)));
    let _ = s.sweep(2000);
    assert_eq!(s.dirty_read(2000, &atom("k")), None);
    check(&s);
}

#[test]
fn an_absent_key_is_taken_as_a_one_round_lock_would() {
    let mut s = fresh();
    assert_eq!(open(&mut s, 0, 2, 1000), atom("created"));
    // Lost here (a restart, a lapse): taken under the new session.
    assert_eq!(reply(&mut s, 1, transfer("k", 1, 2, 2)), ok());
    assert_eq!(s.dirty_read(2, &atom("k")), Some(int(2)));
    // The same value under another session is someone else's.
    assert_eq!(open(&mut s, 3, 3, 1000), atom("created"));
    assert_eq!(
        reply(&mut s, 4, transfer("k", 1, 2, 3)),
        err("not_expected_value")
    );
    // In the restart guard an absent key is refused: this master may have
    // forgotten a holder.
    let mut guarded = Store::new(config(), 0, "me@host");
    assert_eq!(open(&mut guarded, 0, 2, 1000), atom("created"));
    assert_eq!(
        reply(&mut guarded, 1, transfer("k", 1, 2, 2)),
        err("already_locked")
    );
    assert_eq!(guarded.dirty_read(2, &atom("k")), None);
}

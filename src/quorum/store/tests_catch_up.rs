//! Catch-up answers: what a master tells a starting one, the bounded
//! decoder, and the merge.

use super::snapshot::{
    too_large, CatchUpError, Hold, SnapEntry, SnapPromise, SnapSession, MAX_CATCH_UP_ITEMS,
};
use super::tests::*;
use super::*;

fn session(n: i64) -> Term {
    tuple(vec![atom("serving"), int(n)])
}

fn catch_up_of(s: &mut Store, now: u64) -> CatchUpReply {
    let r = reply(s, now, t("erl_quorum_catch_up", vec![atom("new@h")]));
    CatchUpReply::decode(&r).expect("decodes")
}

/// A starting store beside `m@h`.
fn starting() -> Store {
    let mut s = Store::new(config(), 0, NODE);
    let nodes = t(
        "set_nodes",
        vec![list(vec![atom("m@h"), atom(NODE)]), list(vec![])],
    );
    let _ = s.call(0, &nodes);
    s
}

#[test]
fn a_serving_master_tells_what_is_live_with_remaining_times() {
    let mut s = fresh();
    s.set_incarnation(42);
    lock(&mut s, 0, atom("a"), int(1), 5000);
    lock(&mut s, 0, atom("gone"), int(1), 100);
    assert_eq!(
        reply(&mut s, 0, gwl(atom("b"), atom("not_found"), tag(3))),
        ok()
    );
    assert_eq!(
        reply(
            &mut s,
            0,
            t("erl_quorum_session", vec![session(1), int(8000)])
        ),
        atom("created")
    );
    let lock_in = t(
        "erl_quorum_lock",
        vec![
            atom("c"),
            int(2),
            tuple(vec![atom("session"), session(1)]),
            tag(4),
        ],
    );
    assert_eq!(reply(&mut s, 0, lock_in), ok());
    let mut got = catch_up_of(&mut s, 1000);
    got.entries.sort_by_key(|e| format!("{}", e.key));
    assert_eq!(got.incarnation, 42);
    assert_eq!(got.status, PeerStatus::Serving { vouched: vec![] });
    assert_eq!(
        got.entries,
        vec![
            SnapEntry {
                key: atom("a"),
                value: int(1),
                hold: Hold::LeaseMs(4000)
            },
            SnapEntry {
                key: atom("c"),
                value: int(2),
                hold: Hold::Session(session(1))
            },
        ]
    );
    assert_eq!(
        got.promises,
        vec![SnapPromise {
            key: atom("b"),
            tag: tag(3),
            remaining_ms: 9000
        }]
    );
    assert_eq!(
        got.sessions,
        vec![SnapSession {
            session: session(1),
            remaining_ms: 7000
        }]
    );
    // The one encoder and the one decoder agree.
    assert_eq!(CatchUpReply::decode(&got.encode()), Ok(got));
}

#[test]
fn a_starting_master_says_so_and_a_declaring_one_names_whom_it_vouched_for() {
    let mut s = starting();
    assert_eq!(
        catch_up_of(&mut s, 10).status,
        PeerStatus::Starting { restarted: false }
    );
    // One that served before (its marker) says so.
    s.set_restarted(true);
    assert_eq!(
        catch_up_of(&mut s, 10).status,
        PeerStatus::Starting { restarted: true }
    );
    s.mark_new_cluster(vec![("m@h".to_owned(), 7)]);
    assert_eq!(
        catch_up_of(&mut s, 10).status,
        PeerStatus::Serving {
            vouched: vec![("m@h".to_owned(), 7)]
        }
    );
    // FromNode must be an atom.
    let bad = t("erl_quorum_catch_up", vec![int(1)]);
    assert!(matches!(s.call(0, &bad).outcome, CallOutcome::Reply(r) if r != ok()));
}

#[test]
fn the_decoder_bounds_what_it_accepts() {
    let good = CatchUpReply {
        incarnation: 1,
        status: PeerStatus::Starting { restarted: false },
        entries: vec![],
        promises: vec![],
        sessions: vec![],
    };
    let mut term = good.encode();
    assert!(CatchUpReply::decode(&term).is_ok());
    let Term::Tuple(ref mut tup) = term else {
        panic!()
    };
    // Too many items.
    tup.elements[3] = list(vec![atom("x"); MAX_CATCH_UP_ITEMS + 1]);
    assert_eq!(CatchUpReply::decode(&term), Err(CatchUpError::TooMany));
    // A key deeper than the store keeps.
    let mut deep = atom("k");
    for _ in 0..200 {
        deep = tuple(vec![deep]);
    }
    let Term::Tuple(ref mut tup) = term else {
        panic!()
    };
    tup.elements[3] = list(vec![tuple(vec![deep, int(1), int(5)])]);
    assert!(matches!(
        CatchUpReply::decode(&term),
        Err(CatchUpError::BadItem("entry"))
    ));
    // Negative times, wrong shapes.
    for bad in [
        tuple(vec![atom("erl_quorum_catch_up"), int(-1)]),
        atom("ok"),
        tuple(vec![
            atom("erl_quorum_catch_up"),
            int(1),
            atom("maybe"),
            list(vec![]),
            list(vec![]),
            list(vec![]),
        ]),
    ] {
        assert!(CatchUpReply::decode(&bad).is_err(), "{bad}");
    }
}

#[test]
fn merge_keeps_the_longer_entry_copies_promises_and_sessions() {
    let mut peer = fresh();
    lock(&mut peer, 0, atom("a"), int(1), 5000);
    lock(&mut peer, 0, atom("b"), int(1), 1000);
    assert_eq!(
        reply(&mut peer, 0, gwl(atom("p"), atom("not_found"), tag(5))),
        ok()
    );
    assert_eq!(
        reply(
            &mut peer,
            0,
            t("erl_quorum_session", vec![session(1), int(8000)])
        ),
        atom("created")
    );
    let lock_in = tuple(vec![atom("session"), session(1)]);
    let lock_in = t("erl_quorum_lock", vec![atom("s"), int(3), lock_in, tag(6)]);
    assert_eq!(reply(&mut peer, 0, lock_in), ok());
    let answer = catch_up_of(&mut peer, 0);

    let mut s = starting();
    // "b" is here already, with a longer lease: it stays.
    let _ = s.cast(
        0,
        &trans_log(vec![t("write", vec![atom("b"), int(9), int(3000)])]),
    );
    let wake = s.merge_catch_up(100, &answer);
    assert!(wake.is_empty());
    check(&s);
    assert_eq!(
        s.dirty_read(5050, &atom("a")),
        Some(int(1)),
        "a's lease, from 100"
    );
    assert_eq!(s.dirty_read(1500, &atom("b")), Some(int(9)));
    // The promise came with its tag: the client's write is accepted once
    // the guard is off, another client's promise is refused.
    s.mark_caught_up();
    assert_eq!(
        reply(&mut s, 200, gwl(atom("p"), atom("not_found"), tag(7))),
        err("already_locked")
    );
    assert_eq!(
        reply(&mut s, 200, write(tag(5), atom("p"), int(1), 1000)),
        ok()
    );
    // The session came too: a renewal is `ok`, not `created`, and its
    // entry lives while it does.
    assert_eq!(
        reply(
            &mut s,
            300,
            t("erl_quorum_session", vec![session(1), int(8000)])
        ),
        ok()
    );
    assert_eq!(s.dirty_read(8200, &atom("s")), Some(int(3)));
    assert_eq!(s.dirty_read(8400, &atom("s")), None);
}

#[test]
fn merge_leaves_keys_changed_during_the_guard_alone() {
    let mut peer = fresh();
    lock(&mut peer, 0, atom("k"), int(1), 5000);
    let answer = catch_up_of(&mut peer, 0);
    let mut s = starting();
    // Released here (replayed) after the peer's answer was taken: the
    // merge must not bring it back.
    let _ = s.cast(
        0,
        &trans_log(vec![t("write", vec![atom("k"), int(1), int(5000)])]),
    );
    let _ = s.cast(10, &trans_log(vec![t("release", vec![atom("k")])]));
    let _ = s.merge_catch_up(20, &answer);
    assert_eq!(s.dirty_read(30, &atom("k")), None);
    // Once caught up, the record is dropped.
    s.mark_caught_up();
    assert!(s.touched.is_empty());
    // A store whose guard just runs out (a replica never catches up) drops
    // it at the next sweep, and records nothing after.
    let mut r = starting();
    let _ = r.cast(
        0,
        &trans_log(vec![t("write", vec![atom("k"), int(1), int(5000)])]),
    );
    assert_eq!(r.touched.len(), 1);
    let _ = r.sweep(70_000);
    assert!(r.touched.is_empty() && !r.guard_active(70_000));
    let _ = r.cast(70_001, &trans_log(vec![t("release", vec![atom("k")])]));
    assert!(r.touched.is_empty());
}

#[test]
fn an_answer_over_the_byte_bound_is_too_large_and_counts_as_none() {
    let mut s = fresh();
    for k in 0..50 {
        lock(
            &mut s,
            0,
            int(k),
            crate::term::binary(vec![0; 1_000]),
            5_000,
        );
    }
    // 50 values of 1 000 bytes: well over 10 000, well under 1 MiB.
    assert!(s.catch_up_answer(1, 10_000) == too_large());
    assert_eq!(
        CatchUpReply::decode(&s.catch_up_answer(1, 10_000)),
        Err(CatchUpError::TooLarge)
    );
    let whole = s.catch_up_answer(1, 1 << 20);
    assert_eq!(
        CatchUpReply::decode(&whole).map(|r| r.entries.len()),
        Ok(50)
    );
    // The estimate is no smaller than the encoding, and not far above.
    let mut bytes = Vec::new();
    crate::dist::etf::encode_term(&whole, &mut bytes).unwrap();
    let estimate = s.catch_up_size(1);
    assert!(
        estimate >= bytes.len() && estimate < 2 * bytes.len(),
        "{estimate} for {} bytes",
        bytes.len()
    );
}

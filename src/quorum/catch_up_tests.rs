//! The catch-up driver, step by step: who counts toward R, vouching, a new
//! cluster, failed rounds and late answers.

use super::*;
use crate::quorum::store::{CatchUpReply, Config};
use crate::term::{atom, list, tuple};

const ME: &str = "m0@h";

fn store(masters: &[&str], w: usize) -> Store {
    let config = Config {
        promise_ms: 1_000,
        max_lease_ms: 3_000,
        w,
    };
    let mut s = Store::new(config, 0, ME);
    let nodes = list(masters.iter().map(|m| atom(m)).collect());
    let _ = s.call(0, &tuple(vec![atom("set_nodes"), nodes, list(vec![])]));
    s.set_incarnation(7);
    s
}

fn answer(status: PeerStatus, incarnation: u64) -> Result<CatchUpReply, ()> {
    Ok(CatchUpReply {
        incarnation,
        status,
        entries: vec![],
        promises: vec![],
        sessions: vec![],
    })
}

fn serving() -> PeerStatus {
    PeerStatus::Serving { vouched: vec![] }
}

fn first_ask(c: &mut CatchUp, s: &mut Store) -> Ask {
    match c.poll(0, s) {
        Poll::Ask(ask) => ask,
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_serving_peers_count_toward_r() {
    // N=3, W=2: R = 2, both others.
    let mut s = store(&[ME, "m1@h", "m2@h"], 2);
    let mut c = CatchUp::new(ME, 0);
    let ask = first_ask(&mut c, &mut s);
    assert_eq!(ask.peers, vec!["m1@h", "m2@h"]);
    assert_eq!(
        c.answer(10, &mut s, ask.round, "m1@h", answer(serving(), 1)),
        Poll::Nothing
    );
    // A starting peer does not count: the round fails, the guard stays.
    let last = c.answer(
        20,
        &mut s,
        ask.round,
        "m2@h",
        answer(PeerStatus::Starting { restarted: false }, 2),
    );
    assert_eq!(last, Poll::Nothing);
    assert!(s.guard_active(20));
    // Retried after RETRY_MS; both serving now: caught up.
    assert_eq!(c.poll(20 + RETRY_MS - 1, &mut s), Poll::Nothing);
    let ask = match c.poll(20 + RETRY_MS, &mut s) {
        Poll::Ask(ask) => ask,
        other => panic!("{other:?}"),
    };
    // An answer to the old round is ignored.
    assert_eq!(
        c.answer(600, &mut s, ask.round - 1, "m2@h", answer(serving(), 2)),
        Poll::Nothing
    );
    let _ = c.answer(600, &mut s, ask.round, "m1@h", answer(serving(), 1));
    let done = c.answer(600, &mut s, ask.round, "m2@h", answer(serving(), 2));
    assert_eq!(done, Poll::Done(CaughtUp::Quorum(2), vec![]));
    assert!(!s.guard_active(600));
    assert!(c.done());
}

#[test]
fn five_masters_need_three_serving_answers() {
    let mut s = store(&[ME, "m1@h", "m2@h", "m3@h", "m4@h"], 3);
    let mut c = CatchUp::new(ME, 0);
    let ask = first_ask(&mut c, &mut s);
    let _ = c.answer(1, &mut s, ask.round, "m1@h", answer(serving(), 1));
    let _ = c.answer(1, &mut s, ask.round, "m2@h", Err(()));
    let _ = c.answer(1, &mut s, ask.round, "m3@h", answer(serving(), 3));
    assert!(s.guard_active(1));
    let done = c.answer(1, &mut s, ask.round, "m4@h", answer(serving(), 4));
    assert_eq!(done, Poll::Done(CaughtUp::Quorum(3), vec![]));
}

#[test]
fn all_starting_is_a_new_cluster_and_a_vouched_master_serves() {
    let mut s = store(&[ME, "m1@h", "m2@h"], 2);
    let mut c = CatchUp::new(ME, 0);
    let ask = first_ask(&mut c, &mut s);
    let _ = c.answer(
        1,
        &mut s,
        ask.round,
        "m1@h",
        answer(PeerStatus::Starting { restarted: false }, 11),
    );
    let done = c.answer(
        1,
        &mut s,
        ask.round,
        "m2@h",
        answer(PeerStatus::Starting { restarted: false }, 12),
    );
    assert_eq!(done, Poll::Done(CaughtUp::NewCluster, vec![]));
    // It vouches for the two starting incarnations it saw.
    let vouched = vec![("m1@h".to_owned(), 11), ("m2@h".to_owned(), 12)];
    assert_eq!(s.catch_up_reply(2).status, PeerStatus::Serving { vouched });

    // m1 asks it later: vouched for by incarnation, so it serves at once
    // even with the third master starting.
    let mut s1 = store(&[ME, "m1@h", "m2@h"], 2);
    s1.set_incarnation(11);
    let mut c1 = CatchUp::new("m1@h", 0);
    let ask = first_ask(&mut c1, &mut s1);
    let status = s.catch_up_reply(3).status;
    let done = c1.answer(3, &mut s1, ask.round, ME, answer(status, 7));
    assert_eq!(done, Poll::Done(CaughtUp::Vouched(ME.to_owned()), vec![]));
}

#[test]
fn a_vouch_for_an_earlier_incarnation_does_not_count() {
    let mut s = store(&[ME, "m1@h", "m2@h"], 2);
    let mut c = CatchUp::new(ME, 0);
    let ask = first_ask(&mut c, &mut s);
    let old = PeerStatus::Serving {
        vouched: vec![(ME.to_owned(), 6)],
    };
    let _ = c.answer(1, &mut s, ask.round, "m1@h", answer(old, 1));
    let _ = c.answer(1, &mut s, ask.round, "m2@h", Err(()));
    assert!(s.guard_active(1));
    assert!(!c.done());
}

#[test]
fn a_lost_answer_fails_the_round_at_its_deadline_and_the_guard_ends_it() {
    let mut s = store(&[ME, "m1@h", "m2@h"], 2);
    let mut c = CatchUp::new(ME, 0);
    let ask = first_ask(&mut c, &mut s);
    let _ = c.answer(1, &mut s, ask.round, "m1@h", answer(serving(), 1));
    // m2's answer never comes.
    assert_eq!(c.poll(ROUND_MS - 1, &mut s), Poll::Nothing);
    assert_eq!(c.poll(ROUND_MS, &mut s), Poll::Nothing);
    assert!(matches!(c.poll(ROUND_MS + RETRY_MS, &mut s), Poll::Ask(_)));
    // A jump past the guard (promise + lease = 4 s): it is over by itself.
    assert_eq!(
        c.poll(4_000, &mut s),
        Poll::Done(CaughtUp::GuardOver, vec![])
    );
    assert!(c.done());
}

#[test]
fn a_master_alone_serves_at_once_and_a_replica_never_asks() {
    let mut s = store(&[ME], 1);
    let mut c = CatchUp::new(ME, 0);
    assert_eq!(c.poll(0, &mut s), Poll::Done(CaughtUp::NewCluster, vec![]));

    let mut r = Store::new(Config::default(), 0, ME);
    let nodes = tuple(vec![
        atom("set_nodes"),
        list(vec![atom("m1@h")]),
        list(vec![atom(ME)]),
    ]);
    let _ = r.call(0, &nodes);
    let mut c = CatchUp::new(ME, 0);
    assert_eq!(c.poll(0, &mut r), Poll::Nothing);
    assert!(r.guard_active(0));
}

#[test]
fn a_restarted_master_never_declares_a_new_cluster_nor_serves_alone() {
    // Alone, with its marker: it waits out the guard (promise + lease).
    let mut s = store(&[ME], 1);
    s.set_restarted(true);
    let mut c = CatchUp::new(ME, 0);
    assert_eq!(c.poll(0, &mut s), Poll::Nothing);
    assert_eq!(c.poll(3_999, &mut s), Poll::Nothing);
    assert!(s.guard_active(3_999));
    assert_eq!(
        c.poll(4_000, &mut s),
        Poll::Done(CaughtUp::GuardOver, vec![])
    );

    // Every peer starting, this one restarted: no new cluster.
    let mut s = store(&[ME, "m1@h", "m2@h"], 2);
    s.set_restarted(true);
    let mut c = CatchUp::new(ME, 0);
    let ask = first_ask(&mut c, &mut s);
    let new = PeerStatus::Starting { restarted: false };
    let _ = c.answer(1, &mut s, ask.round, "m1@h", answer(new.clone(), 1));
    let last = c.answer(1, &mut s, ask.round, "m2@h", answer(new.clone(), 2));
    assert_eq!(last, Poll::Nothing);
    assert!(s.guard_active(1));

    // A new master seeing one restarted peer starting: no new cluster.
    let mut s = store(&[ME, "m1@h", "m2@h"], 2);
    let mut c = CatchUp::new(ME, 0);
    let ask = first_ask(&mut c, &mut s);
    let restarted = PeerStatus::Starting { restarted: true };
    let _ = c.answer(1, &mut s, ask.round, "m1@h", answer(new, 1));
    let last = c.answer(1, &mut s, ask.round, "m2@h", answer(restarted, 2));
    assert_eq!(last, Poll::Nothing);
    assert!(s.guard_active(1));
    // R serving peers still let it in (rule 1 does not care).
    let ask = match c.poll(1 + RETRY_MS, &mut s) {
        Poll::Ask(ask) => ask,
        other => panic!("{other:?}"),
    };
    let _ = c.answer(300, &mut s, ask.round, "m1@h", answer(serving(), 1));
    let done = c.answer(300, &mut s, ask.round, "m2@h", answer(serving(), 2));
    assert_eq!(done, Poll::Done(CaughtUp::Quorum(2), vec![]));
}

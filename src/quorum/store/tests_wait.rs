//! `wait_for`, `wait_for_release`, waiter timeouts, and the restart guard.

use super::tests::*;
use super::*;

#[test]
fn wait_for_answers_now_or_on_a_write() {
    let mut s = fresh();
    let k = atom("k");
    let id = park(&mut s, 0, wait_for(k.clone(), 5000));
    let other = park(&mut s, 0, wait_for(atom("other"), 5000));
    let result = s.call(10, &write(tag(1), k.clone(), int(7), 1000));
    assert_eq!(result.wake, vec![(id, tuple(vec![atom("ok"), int(7)]))]);
    // Present: at once.
    assert_eq!(
        reply(&mut s, 20, wait_for(k.clone(), 5000)),
        tuple(vec![atom("ok"), int(7)])
    );
    // By a replayed write, and by extend_lease.
    let id2 = park(&mut s, 20, wait_for(atom("r"), 5000));
    let cast = s
        .cast(
            30,
            &trans_log(vec![t("write", vec![atom("r"), ok(), int(100)])]),
        )
        .unwrap();
    assert_eq!(cast.wake, vec![(id2, tuple(vec![atom("ok"), ok()]))]);
    let id3 = park(&mut s, 30, wait_for(atom("e"), 5000));
    let result = s.call(40, &extend(tag(1), atom("e"), int(1), 100));
    assert_eq!(result.wake, vec![(id3, tuple(vec![atom("ok"), int(1)]))]);
    // An update of an absent key wakes nobody.
    let result = s.call(40, &update(tag(1), atom("other"), int(1)));
    assert!(result.wake.is_empty());
    assert_eq!(s.stats(40).wait_for_waiters, 1);
    assert!(s.cancel_waiter(other));
    assert!(!s.cancel_waiter(other));
    check(&s);
    // Several waiters on one key wake oldest first.
    let a = park(&mut s, 50, wait_for(atom("m"), 5000));
    let b = park(&mut s, 50, t("wait_for", vec![atom("m"), atom("infinity")]));
    let result = s.call(60, &write(tag(1), atom("m"), ok(), 100));
    let woken: Vec<WaiterId> = result.wake.iter().map(|w| w.0).collect();
    assert_eq!(woken, vec![a, b]);
}

#[test]
fn waiters_time_out_and_are_never_answered_late() {
    let mut s = fresh();
    let id = park(&mut s, 0, wait_for(atom("k"), 100));
    let rel = park_after_write(&mut s);
    let inf = park(&mut s, 0, t("wait_for", vec![atom("k"), atom("infinity")]));
    // Past its timeout (not yet swept): a write does not answer it.
    let result = s.call(100, &write(tag(1), atom("k"), ok(), 1000));
    assert_eq!(result.wake, vec![(inf, tuple(vec![atom("ok"), ok()]))]);
    let sweep = s.sweep(100);
    assert_eq!(sweep.timed_out, vec![id]);
    assert_eq!(sweep.wake, vec![]);
    let sweep = s.sweep(200);
    assert_eq!(sweep.timed_out, vec![rel]);
    check(&s);
    assert_eq!(
        s.stats(200).wait_for_waiters + s.stats(200).release_waiters,
        0
    );
    // A zero timeout is answered at once, parking nothing.
    let timeout = tuple(vec![atom("error"), atom("timeout")]);
    assert_eq!(reply(&mut s, 300, wait_for(atom("nope"), 0)), timeout);
    assert_eq!(reply(&mut s, 300, wait_rel(atom("held"), 0)), timeout);
    assert_eq!(
        s.stats(300).wait_for_waiters + s.stats(300).release_waiters,
        0
    );
}

fn park_after_write(s: &mut Store) -> WaiterId {
    let _ = s.call(0, &write(tag(1), atom("held"), ok(), 10_000));
    park(s, 0, wait_rel(atom("held"), 200))
}

#[test]
fn wait_for_release_answers_now_or_on_release_or_expiry() {
    let mut s = fresh();
    let released_now = reply(&mut s, 0, wait_rel(atom("absent"), 1000));
    assert_eq!(released_now, released());
    // Woken by a release call.
    lock(&mut s, 0, atom("a"), int(1), 5000);
    let a = park(&mut s, 0, wait_rel(atom("a"), 10_000));
    assert_eq!(
        reply(&mut s, 1, release(atom("a"), int(2), tag(5))),
        err("not_owner")
    );
    let (r, wake) = reply_wake(&mut s, 2, release(atom("a"), int(1), tag(5)));
    assert_eq!((r, wake), (ok(), vec![(a, released())]));
    // Woken by the sweep at expiry.
    lock(&mut s, 0, atom("b"), int(1), 500);
    let b = park(&mut s, 0, wait_rel(atom("b"), 10_000));
    assert_eq!(s.sweep(499).wake, vec![]);
    assert_eq!(s.sweep(500).wake, vec![(b, released())]);
    // Woken by a call that finds the lease up before the sweep does.
    lock(&mut s, 1000, atom("c"), int(1), 500);
    let c = park(&mut s, 1000, wait_rel(atom("c"), 10_000));
    let (r, wake) = reply_wake(&mut s, 1500, gwl(atom("c"), atom("not_found"), tag(6)));
    assert_eq!((r, wake), (ok(), vec![(c, released())]));
    // Woken by a replayed release.
    let _ = s.call(2000, &write(tag(1), atom("d"), int(1), 5000));
    let d = park(&mut s, 2000, wait_rel(atom("d"), 10_000));
    let cast = s
        .cast(2001, &trans_log(vec![t("release", vec![atom("d")])]))
        .unwrap();
    assert_eq!(cast.wake, vec![(d, released())]);
    // Not woken by a write that keeps the key.
    let _ = s.call(3000, &write(tag(1), atom("e"), int(1), 5000));
    let e = park(&mut s, 3000, wait_rel(atom("e"), 10_000));
    assert!(s
        .call(3001, &write(tag(1), atom("e"), int(2), 5000))
        .wake
        .is_empty());
    assert!(s.cancel_waiter(e));
    check(&s);
}

#[test]
fn restart_guard_refuses_promises() {
    let mut s = Store::new(config(), 1_000, NODE);
    let nodes = list(vec![atom("m@h"), atom(NODE)]);
    let _ = s.call(1_000, &t("set_nodes", vec![nodes, list(vec![])]));
    let limit = 1_000 + 10_000 + 60_000;
    assert!(s.guard_active(limit - 1));
    assert_eq!(s.stats(1_000).guard_remaining_ms, 70_000);
    let k = atom("k");
    assert_eq!(
        reply(&mut s, 1_000, gwl(k.clone(), atom("not_found"), tag(1))),
        err("already_locked")
    );
    // A write no promise of its own backs does not count as an ack
    // meanwhile (this store may have forgotten a lease it granted) ...
    assert_eq!(
        reply(&mut s, 2_000, extend(tag(1), k.clone(), int(1), 50_000)),
        err("no_promise")
    );
    // ... but replayed log ops still apply: that is how it catches up.
    let log = tuple(vec![
        atom("trans_log"),
        atom("m@h"),
        list(vec![tuple(vec![
            atom("extend_lease"),
            k.clone(),
            int(1),
            int(50_000),
        ])]),
    ]);
    assert!(s.cast(2_000, &log).unwrap().skipped.is_empty());
    assert_eq!(s.dirty_read(2_000, &k), Some(int(1)));
    assert_eq!(
        reply(&mut s, 2_000, gwl(k.clone(), int(1), tag(1))),
        err("already_locked")
    );
    assert_eq!(
        reply(&mut s, limit - 1, gwl(atom("j"), atom("not_found"), tag(2))),
        err("already_locked")
    );
    assert_eq!(s.stats(limit).guard_refusals, 3);
    assert_eq!(
        reply(&mut s, limit, gwl(atom("j"), atom("not_found"), tag(2))),
        ok()
    );
    // Set by hand, then lifted by mark_caught_up.
    s.set_guard_until(limit + 1_000_000);
    assert_eq!(
        reply(&mut s, limit, gwl(atom("i"), atom("not_found"), tag(3))),
        err("already_locked")
    );
    s.mark_caught_up();
    assert!(!s.guard_active(limit));
    assert_eq!(s.stats(limit).guard_remaining_ms, 0);
    assert_eq!(
        reply(&mut s, limit, gwl(atom("i"), atom("not_found"), tag(3))),
        ok()
    );
}

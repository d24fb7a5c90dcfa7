//! The slot machine against scripted outcomes: FIFO waiters, reentrancy,
//! held_by, owner exits, lost connections, lost sessions.

use super::*;
use crate::term::Pid;
use crate::term::{atom, tuple};

fn pid(n: u32) -> Pid {
    Pid::new("beam@host", n, 0, 1)
}

fn caller(n: u32) -> Caller {
    Caller {
        pid: pid(n),
        tag: crate::term::int(n as i64),
    }
}

fn replies(actions: &[Action]) -> Vec<(u32, Term)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply(c, t) => Some((c.pid.id, t.encode())),
            _ => None,
        })
        .collect()
}

/// The slot, operation and shard of the acquisition in `actions`.
fn acquire_op(actions: &[Action]) -> Option<(SlotId, OpId, u32)> {
    actions.iter().find_map(|a| match a {
        Action::Acquire {
            slot, op, shard, ..
        } => Some((*slot, *op, *shard)),
        _ => None,
    })
}

fn release_op(actions: &[Action]) -> Option<(SlotId, OpId)> {
    actions.iter().find_map(|a| match a {
        Action::Release { slot, op, .. } => Some((*slot, *op)),
        _ => None,
    })
}

#[test]
fn waiters_are_served_in_arrival_order_and_reentrant() {
    let mut s = Slots::new();
    s.lock(caller(1), atom("k"), pid(1), true, false);
    let a = s.take_actions();
    let (slot, op, shard) = acquire_op(&a).expect("acquire");
    assert_eq!(Some(shard), shard_of_key(Kind::Lock, &atom("k")));
    // Two more arrive while the first is being taken, one non-blocking.
    s.lock(caller(2), atom("k"), pid(2), true, false);
    s.lock(caller(3), atom("k"), pid(3), false, false);
    s.lock(caller(4), atom("k"), pid(4), true, false);
    assert!(replies(&s.take_actions()).is_empty());
    s.op_done(slot, op, 0, Outcome::Acquired(1));
    let a = s.take_actions();
    assert_eq!(replies(&a), vec![(1, atom("acquired"))]);
    // The guard hears of the owner before the owner does.
    let notify = a.iter().position(|x| {
        matches!(
            x,
            Action::Notify {
                notice: Notice::Owned,
                ..
            }
        )
    });
    let reply = a.iter().position(|x| matches!(x, Action::Reply(..)));
    assert!(notify < reply);
    // Reentrant for the holder, at once.
    s.lock(caller(1), atom("k"), pid(1), true, false);
    assert_eq!(replies(&s.take_actions()), vec![(1, atom("acquired"))]);
    // The holder exits: released, then 2 gets it (3 was non-blocking, but
    // queued behind 2: answered when 2 holds it).
    s.owner_down(&pid(1), false);
    let (rslot, rop) = release_op(&s.take_actions()).expect("release");
    s.op_done(rslot, rop, 0, Outcome::Released);
    let (slot, op, _) = acquire_op(&s.take_actions()).expect("next acquire");
    s.op_done(slot, op, 0, Outcome::Acquired(1));
    let held_by_2 = tuple(vec![atom("held_by"), Term::from(pid(2))]);
    assert_eq!(
        replies(&s.take_actions()),
        vec![(2, atom("acquired")), (3, held_by_2)]
    );
    // 4 waits for 2; a waiter that dies leaves the queue.
    s.lock(caller(5), atom("k"), pid(5), true, false);
    s.owner_down(&pid(4), false);
    s.owner_down(&pid(2), false);
    let (rslot, rop) = release_op(&s.take_actions()).expect("release");
    s.op_done(rslot, rop, 0, Outcome::Released);
    let (slot, op, shard) = acquire_op(&s.take_actions()).expect("acquire for 5");
    assert_eq!(Some(shard), shard_of_key(Kind::Lock, &atom("k")));
    s.op_done(slot, op, 0, Outcome::Acquired(1));
    assert_eq!(replies(&s.take_actions()), vec![(5, atom("acquired"))]);
}

#[test]
fn a_lost_connection_keeps_the_hold_until_release_due() {
    let mut s = Slots::new();
    s.register(caller(1), atom("n"), pid(1));
    let (slot, op, _) = acquire_op(&s.take_actions()).unwrap();
    s.op_done(slot, op, 0, Outcome::Acquired(1));
    assert_eq!(replies(&s.take_actions()), vec![(1, atom("yes"))]);
    s.owner_down(&pid(1), true);
    let a = s.take_actions();
    assert!(release_op(&a).is_none());
    assert!(a.iter().any(|x| matches!(x, Action::ReleaseLater { .. })));
    // Still held meanwhile: a new registration is refused at once, and an
    // unregister by someone else waits for the release.
    s.register(caller(2), atom("n"), pid(2));
    assert_eq!(replies(&s.take_actions()), vec![(2, atom("no"))]);
    s.unregister(caller(3), atom("n"));
    assert!(replies(&s.take_actions()).is_empty(), "waits its turn");
    s.release_due(slot, &pid(1));
    let a = s.take_actions();
    let (rslot, rop) = release_op(&a).expect("released when due");
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::NameChanged { pid: None, .. })));
    s.op_done(rslot, rop, 0, Outcome::Released);
    assert_eq!(replies(&s.take_actions()), vec![(3, atom("ok"))]);
    s.register(caller(2), atom("n"), pid(2));
    let (slot, op, _) = acquire_op(&s.take_actions()).expect("taken again");
    s.op_done(slot, op, 0, Outcome::Acquired(1));
    assert_eq!(replies(&s.take_actions()), vec![(2, atom("yes"))]);
}

#[test]
fn held_elsewhere_answers_held_by_or_waits_for_release() {
    let mut s = Slots::new();
    s.lock(caller(1), atom("k"), pid(1), false, false);
    let (slot, op, _) = acquire_op(&s.take_actions()).unwrap();
    s.op_done(slot, op, 0, Outcome::HeldBy(Some(pid(9))));
    let held = tuple(vec![atom("held_by"), Term::from(pid(9))]);
    assert_eq!(replies(&s.take_actions()), vec![(1, held)]);
    assert!(s.is_empty(), "nothing left to remember");
    s.lock(caller(2), atom("k"), pid(2), true, false);
    let (slot, op, _) = acquire_op(&s.take_actions()).unwrap();
    s.op_done(slot, op, 0, Outcome::HeldBy(Some(pid(9))));
    let a = s.take_actions();
    let Some(Action::WaitRelease { op, .. }) =
        a.iter().find(|x| matches!(x, Action::WaitRelease { .. }))
    else {
        panic!("no wait: {a:?}");
    };
    s.op_done(slot, *op, 0, Outcome::Released);
    let (slot, op, _) = acquire_op(&s.take_actions()).expect("tries again");
    s.op_done(slot, op, 0, Outcome::Acquired(1));
    assert_eq!(replies(&s.take_actions()), vec![(2, atom("acquired"))]);
}

#[test]
fn a_lost_session_tells_every_owner_and_stale_grants_do_not_count() {
    let mut s = Slots::new();
    s.lock(caller(1), atom("a"), pid(1), true, false);
    let (slot, op, _) = acquire_op(&s.take_actions()).unwrap();
    s.op_done(slot, op, 0, Outcome::Acquired(1));
    s.take_actions();
    s.lock(caller(2), atom("b"), pid(2), true, false);
    let (slot_b, op_b, _) = acquire_op(&s.take_actions()).unwrap();
    s.session_lost();
    let a = s.take_actions();
    assert!(a.iter().any(
        |x| matches!(x, Action::Notify { notice: Notice::Lost, owner, .. } if *owner == pid(1))
    ));
    // The grant of the old session arrives late: not a hold; tried again.
    s.op_done(slot_b, op_b, 0, Outcome::Acquired(1));
    let a = s.take_actions();
    assert!(replies(&a).is_empty());
    assert!(a.iter().any(|x| matches!(x, Action::RetryLater { .. })));
    s.retry(slot_b);
    let Some(Action::Acquire { epoch, .. }) = s
        .take_actions()
        .into_iter()
        .find(|x| matches!(x, Action::Acquire { .. }))
    else {
        panic!("no retry");
    };
    assert_eq!(epoch, 1);
}

#[test]
fn names_unregister_and_refuse_taken_names() {
    let mut s = Slots::new();
    s.register(caller(1), atom("n"), pid(1));
    let (slot, op, _) = acquire_op(&s.take_actions()).unwrap();
    s.op_done(slot, op, 0, Outcome::Acquired(1));
    s.take_actions();
    s.register(caller(2), atom("n"), pid(2));
    assert_eq!(replies(&s.take_actions()), vec![(2, atom("no"))]);
    s.unregister(caller(3), atom("n"));
    let a = s.take_actions();
    assert_eq!(replies(&a), vec![(3, atom("ok"))]);
    // A register right after waits for the release, then succeeds.
    s.register(caller(5), atom("n"), pid(5));
    assert!(replies(&s.take_actions()).is_empty());
    let (rslot, rop) = release_op(&a).expect("release");
    s.op_done(rslot, rop, 0, Outcome::Released);
    let (slot, op, _) = acquire_op(&s.take_actions()).expect("then 5 tries");
    s.op_done(slot, op, 0, Outcome::Acquired(1));
    assert_eq!(replies(&s.take_actions()), vec![(5, atom("yes"))]);
    s.unregister(caller(4), atom("never"));
    assert_eq!(replies(&s.take_actions()), vec![(4, atom("ok"))]);
}

#[test]
fn sizes() {
    eprintln!(
        "Slot {} State {} Waiting {} Packed {} Option<Slot> {} Pid {} Caller {}",
        std::mem::size_of::<Slot>(),
        std::mem::size_of::<State>(),
        std::mem::size_of::<Waiting>(),
        std::mem::size_of::<Packed>(),
        std::mem::size_of::<Option<Slot>>(),
        std::mem::size_of::<Pid>(),
        std::mem::size_of::<Caller>(),
    );
    let k = index_key(
        Kind::Name,
        &tuple(vec![atom("name"), crate::term::int(123)]),
    )
    .unwrap();
    eprintln!(
        "index key {} packed {:?}",
        k.len(),
        Packed::new(&tuple(vec![atom("name"), crate::term::int(123)]))
    );
}

#[test]
fn a_retried_wait_is_granted_with_the_first_and_never_again() {
    let mut s = Slots::new();
    s.lock(caller(1), atom("k"), pid(1), true, false);
    let (slot, op, _) = acquire_op(&s.take_actions()).expect("acquire");
    s.op_done(slot, op, 0, Outcome::Acquired(1));
    s.take_actions();
    // 2 waits, gives up on its call (timeout) and asks again, behind 3.
    s.lock(caller(2), atom("k"), pid(2), true, false);
    s.lock(caller(3), atom("k"), pid(3), true, false);
    let retry = Caller {
        pid: pid(2),
        tag: crate::term::int(99),
    };
    s.lock(retry, atom("k"), pid(2), true, false);
    s.take_actions();
    s.owner_down(&pid(1), false);
    let (rslot, rop) = release_op(&s.take_actions()).expect("release");
    s.op_done(rslot, rop, 0, Outcome::Released);
    let (slot, op, _) = acquire_op(&s.take_actions()).expect("acquire for 2");
    s.op_done(slot, op, 0, Outcome::Acquired(1));
    let tags: Vec<Term> = s
        .take_actions()
        .iter()
        .filter_map(|x| match x {
            Action::Reply(c, _) => Some(c.tag.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(tags, vec![crate::term::int(2), crate::term::int(99)]);
    // 2 releases: 3 is next, and 2 is not granted the key again unasked.
    s.owner_down(&pid(2), false);
    let (rslot, rop) = release_op(&s.take_actions()).expect("release");
    s.op_done(rslot, rop, 0, Outcome::Released);
    let (slot, op, _) = acquire_op(&s.take_actions()).expect("acquire for 3");
    s.op_done(slot, op, 0, Outcome::Acquired(1));
    assert_eq!(replies(&s.take_actions()), vec![(3, atom("acquired"))]);
}

#[test]
fn a_fenced_lock_is_answered_with_its_grants_token_and_again_when_reentrant() {
    let fenced = |token: i64| tuple(vec![atom("acquired"), crate::term::int(token)]);
    let mut s = Slots::new();
    s.lock(caller(1), atom("k"), pid(1), true, true);
    let (slot, op, _) = acquire_op(&s.take_actions()).expect("acquire");
    s.op_done(slot, op, 0, Outcome::Acquired(41));
    assert_eq!(replies(&s.take_actions()), vec![(1, fenced(41))]);
    // Reentrant: the same token (and plain `acquired` without the option).
    s.lock(caller(1), atom("k"), pid(1), false, true);
    s.lock(caller(1), atom("k"), pid(1), false, false);
    assert_eq!(
        replies(&s.take_actions()),
        vec![(1, fenced(41)), (1, atom("acquired"))]
    );
    // Waiters: 2 fenced, 3 plain; 2 asks twice (a retried call): both
    // answered with 2's grant.
    s.lock(caller(2), atom("k"), pid(2), true, true);
    s.lock(caller(3), atom("k"), pid(3), true, false);
    let retry = Caller {
        pid: pid(2),
        tag: atom("again"),
    };
    s.lock(retry, atom("k"), pid(2), true, true);
    assert!(replies(&s.take_actions()).is_empty());
    s.owner_down(&pid(1), false);
    let (rslot, rop) = release_op(&s.take_actions()).expect("release");
    s.op_done(rslot, rop, 0, Outcome::Released);
    let (slot, op, _) = acquire_op(&s.take_actions()).expect("for 2");
    s.op_done(slot, op, 0, Outcome::Acquired(42));
    assert_eq!(
        replies(&s.take_actions()),
        vec![(2, fenced(42)), (2, fenced(42))]
    );
    s.owner_down(&pid(2), false);
    let (rslot, rop) = release_op(&s.take_actions()).expect("release");
    s.op_done(rslot, rop, 0, Outcome::Released);
    let (slot, op, _) = acquire_op(&s.take_actions()).expect("for 3");
    s.op_done(slot, op, 0, Outcome::Acquired(43));
    assert_eq!(replies(&s.take_actions()), vec![(3, atom("acquired"))]);
    // A name granted under a token is answered `yes` as ever.
    s.register(caller(4), atom("n"), pid(4));
    let (slot, op, _) = acquire_op(&s.take_actions()).expect("name");
    s.op_done(slot, op, 0, Outcome::Acquired(44));
    assert_eq!(replies(&s.take_actions()), vec![(4, atom("yes"))]);
}

#[test]
fn a_slot_holding_a_token_is_no_larger() {
    // A serving node may hold a million slots: the token lives in the
    // `Held` state, beside the owner, in room `Acquiring` takes anyway.
    assert!(std::mem::size_of::<State>() <= 24);
    assert!(std::mem::size_of::<Option<Slot>>() <= 56);
}

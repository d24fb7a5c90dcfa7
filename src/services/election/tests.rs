//! The member core, deterministic: hand-delivered messages (some lost,
//! some reordered), jumps in time, a leader whose validity lapses.

use super::core::{Action, Callbacks, Caller, Elected, Info, Input, LeaderReply, Member, REFRESH};
use super::wire::{Msg, Role};
use crate::term::{atom, int, tuple, Pid, Term};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Default, Debug)]
struct Cb {
    elected: Vec<Option<Pid>>,
    surrendered: Vec<Option<Term>>,
    calls: Vec<Term>,
    casts: Vec<Term>,
    from_leader: Vec<Term>,
    downs: Vec<Pid>,
}

impl Callbacks for Cb {
    fn elected(&mut self, info: &Info, joiner: Option<&Pid>) -> Elected {
        self.elected.push(joiner.cloned());
        Elected::All(tuple(vec![atom("sync"), Term::from(info.me.clone())]))
    }
    fn surrendered(&mut self, sync: Option<&Term>, _info: &Info) {
        self.surrendered.push(sync.cloned());
    }
    fn handle_leader_call(&mut self, request: &Term, _info: &Info) -> LeaderReply {
        self.calls.push(request.clone());
        LeaderReply {
            reply: request.clone(),
            broadcast: Some(atom("b")),
        }
    }
    fn handle_leader_cast(&mut self, msg: &Term, _info: &Info) -> Option<Term> {
        self.casts.push(msg.clone());
        None
    }
    fn from_leader(&mut self, msg: &Term, _info: &Info) {
        self.from_leader.push(msg.clone());
    }
    fn handle_down(&mut self, member: &Pid, _info: &Info) -> Option<Term> {
        self.downs.push(member.clone());
        None
    }
}

fn pid(n: u32) -> Pid {
    Pid::new("n@h", n, 0, 1)
}

struct M {
    m: Member,
    cb: Cb,
}

fn member(n: u32, role: Role) -> (M, Vec<Action>) {
    let (m, out) = Member::new(atom("g"), pid(n), role);
    (
        M {
            m,
            cb: Cb::default(),
        },
        out,
    )
}

impl M {
    fn input(&mut self, i: Input, now: Instant) -> Vec<Action> {
        self.m.handle(i, now, &mut self.cb)
    }
}

fn sends(out: &[Action]) -> Vec<(Pid, Msg)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Send(p, m) => Some((p.clone(), m.clone())),
            _ => None,
        })
        .collect()
}

/// Makes `leader` lead (granted, then its deadline) at `now`.
fn elect(l: &mut M, token: u64, now: Instant, valid: Duration) -> Vec<Action> {
    let out = l.input(Input::Locked(Some(token)), now);
    let n = query_of(&out).expect("a validity query");
    assert!(!l.m.leading(now), "acts before it knows its deadline");
    l.input(Input::Validity(n, Some(now + valid)), now)
}

fn query_of(out: &[Action]) -> Option<u64> {
    out.iter().find_map(|a| match a {
        Action::QueryValidity(n) => Some(*n),
        _ => None,
    })
}

/// `follower` finds `leader` and joins it; the leader's sync comes back.
fn join(f: &mut M, l: &mut M, now: Instant) {
    let out = f.input(Input::Found(Some(l.m.info().me.clone())), now);
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    let out = l.input(Input::Wire(s[0].1.clone()), now);
    for (to, msg) in sends(&out) {
        if to == f.m.info().me {
            f.input(Input::Wire(msg), now);
        }
    }
}

#[test]
fn one_leader_syncs_every_joiner_and_serves_calls() {
    let t0 = Instant::now();
    let (mut a, out) = member(1, Role::Candidate);
    assert_eq!(out, vec![Action::StartLocker, Action::Find]);
    let (mut b, _) = member(2, Role::Candidate);
    let (mut w, out) = member(3, Role::Worker);
    assert_eq!(out, vec![Action::Find], "a worker never queues");
    elect(&mut a, 1, t0, Duration::from_secs(3));
    assert_eq!(a.cb.elected, vec![None]);
    assert!(a.m.leading(t0));
    join(&mut b, &mut a, t0);
    join(&mut w, &mut a, t0);
    assert_eq!(a.cb.elected, vec![None, Some(pid(2)), Some(pid(3))]);
    assert_eq!(b.m.info().leader, Some(pid(1)));
    assert_eq!(b.cb.surrendered.len(), 1);
    assert_eq!(w.m.info().candidates, vec![pid(1), pid(2)]);
    assert_eq!(w.m.info().workers, vec![pid(3)]);
    // A leader call from the follower's API: forwarded, answered, broadcast.
    let from = super::wire::From {
        pid: pid(9),
        tag: atom("t"),
    };
    let out = b.input(
        Input::LeaderCall {
            caller: Caller::Remote(from.clone()),
            request: int(5),
        },
        t0,
    );
    let s = sends(&out);
    assert_eq!(s[0].0, pid(1));
    let out = a.input(Input::Wire(s[0].1.clone()), t0);
    assert!(out.contains(&Action::Reply(Caller::Remote(from), int(5))));
    let bc = sends(&out);
    assert_eq!(bc.len(), 2, "to both others: {bc:?}");
    for (to, msg) in bc {
        let target = if to == pid(2) { &mut b } else { &mut w };
        target.input(Input::Wire(msg), t0);
    }
    assert_eq!(b.cb.from_leader, vec![atom("b")]);
    assert_eq!(w.cb.from_leader, vec![atom("b")]);
    // A member going down: handle_DOWN on the leader, lists updated.
    a.input(Input::Down(pid(3)), t0);
    assert_eq!(a.cb.downs, vec![pid(3)]);
    assert_eq!(a.m.info().workers, Vec::<Pid>::new());
}

#[test]
fn a_leader_past_its_deadline_surrenders_without_acting() {
    let t0 = Instant::now();
    let (mut a, _) = member(1, Role::Candidate);
    elect(&mut a, 1, t0, Duration::from_secs(3));
    // Refreshes are asked for while leading.
    let out = a.input(Input::Tick, t0 + REFRESH);
    assert!(query_of(&out).is_some());
    // Frozen: the next input comes 10 s later, a call first.
    let later = t0 + Duration::from_secs(10);
    let from = super::wire::From {
        pid: pid(9),
        tag: atom("t"),
    };
    let out = a.input(
        Input::LeaderCall {
            caller: Caller::Remote(from),
            request: int(1),
        },
        later,
    );
    assert!(a.cb.calls.is_empty(), "acted past its deadline");
    assert!(!out.iter().any(|x| matches!(x, Action::Reply(..))));
    assert_eq!(a.cb.surrendered, vec![None]);
    assert!(out.contains(&Action::StartLocker), "queues again: {out:?}");
    assert!(!a.m.leading(later));
    assert_eq!(a.m.term_end(), Some(t0 + Duration::from_secs(3)));
    // The next leader's sync: the queued call goes there.
    let out = a.input(
        Input::Wire(Msg::Sync {
            leader: pid(2),
            token: Some(2),
            sync: atom("s2"),
            candidates: vec![pid(1), pid(2)],
            workers: vec![],
        }),
        later,
    );
    assert_eq!(a.cb.surrendered, vec![None, Some(atom("s2"))]);
    let s = sends(&out);
    assert!(
        s.iter()
            .any(|(to, m)| *to == pid(2) && matches!(m, Msg::LeaderCall { .. })),
        "{out:?}"
    );
}

#[test]
fn a_guard_that_knows_no_deadline_or_says_lost_ends_the_term() {
    let t0 = Instant::now();
    let (mut a, _) = member(1, Role::Candidate);
    let n = query_of(&a.input(Input::Locked(None), t0)).unwrap();
    a.input(Input::Validity(n, None), t0);
    assert_eq!(a.cb.elected.len(), 0, "elected without a deadline");
    assert!(a.cb.surrendered.is_empty(), "no term to surrender");
    assert!(!a.m.leading(t0));
    let (mut b, _) = member(2, Role::Candidate);
    elect(&mut b, 1, t0, Duration::from_secs(3));
    let out = b.input(Input::Lost, t0 + Duration::from_millis(10));
    assert_eq!(b.cb.surrendered, vec![None]);
    assert!(out.contains(&Action::StartLocker));
    // A late refresh answer does not bring the term back.
    b.input(Input::Validity(1, Some(t0 + Duration::from_secs(9))), t0);
    assert!(!b.m.leading(t0));
}

/// Review S1: the answer to the first term's query, delayed past the
/// term's loss and a new grant, must not confirm the new term.
#[test]
fn a_late_validity_answer_does_not_confirm_a_later_term() {
    let t0 = Instant::now();
    let (mut a, _) = member(1, Role::Candidate);
    elect(&mut a, 1, t0, Duration::from_secs(3));
    let out = a.input(Input::Tick, t0 + REFRESH);
    let first = query_of(&out).expect("a refresh");
    a.input(Input::Lost, t0 + REFRESH);
    assert_eq!(a.cb.surrendered, vec![None]);
    let t1 = t0 + Duration::from_millis(400);
    let out = a.input(Input::Locked(Some(1)), t1);
    let second = query_of(&out).expect("the new term's query");
    assert_ne!(first, second);
    // The first query's answer (the old hold's deadline) arrives now.
    a.input(
        Input::Validity(first, Some(t0 + Duration::from_secs(3))),
        t1,
    );
    assert!(!a.m.leading(t1), "a stale answer confirmed the term");
    assert_eq!(a.cb.elected.len(), 1);
    // The new term's own answer does.
    a.input(
        Input::Validity(second, Some(t1 + Duration::from_secs(3))),
        t1,
    );
    assert!(a.m.leading(t1));
    assert_eq!(a.cb.elected.len(), 2);
}

/// Review P5: joins past MAX_MEMBERS are ignored (no sync, no monitor),
/// and a sync listing more members than that is refused.
#[test]
fn member_lists_from_peers_are_bounded() {
    use super::core::MAX_MEMBERS;
    let t0 = Instant::now();
    // A follower (a leader would sync each joiner: n^2 messages here).
    let (mut a, _) = member(1, Role::Worker);
    for n in 2..=MAX_MEMBERS as u32 + 5 {
        a.input(
            Input::Wire(Msg::Join {
                member: pid(n),
                role: Role::Worker,
            }),
            t0,
        );
    }
    let info = a.m.info();
    assert_eq!(info.candidates.len() + info.workers.len(), MAX_MEMBERS);
    let (mut b, _) = member(2, Role::Worker);
    let big: Vec<Pid> = (10..10 + MAX_MEMBERS as u32).map(pid).collect();
    b.input(
        Input::Wire(Msg::Sync {
            leader: pid(3),
            token: Some(1),
            sync: int(0),
            candidates: big,
            workers: vec![],
        }),
        t0,
    );
    assert!(b.cb.surrendered.is_empty(), "an oversized sync was taken");
    assert_eq!(b.m.info().candidates.len() + b.m.info().workers.len(), 1);
}

#[test]
fn stale_and_reordered_syncs_are_ignored() {
    let t0 = Instant::now();
    let (mut a, _) = member(1, Role::Candidate);
    let sync = |leader: u32, token: u64| Msg::Sync {
        leader: pid(leader),
        token: Some(token),
        sync: int(token as i64),
        candidates: vec![pid(1), pid(leader)],
        workers: vec![],
    };
    a.input(Input::Wire(sync(3, 5)), t0);
    // Term 4's sync, delayed, arrives after term 5's.
    a.input(Input::Wire(sync(2, 4)), t0);
    assert_eq!(a.m.info().leader, Some(pid(3)));
    assert_eq!(a.cb.surrendered, vec![Some(int(5))]);
    // A leader within its term ignores an earlier term's sync, but not a
    // newer one.
    let (mut l, _) = member(4, Role::Candidate);
    elect(&mut l, 7, t0, Duration::from_secs(3));
    l.input(Input::Wire(sync(2, 6)), t0);
    assert!(l.m.leading(t0));
    let out = l.input(Input::Wire(sync(2, 8)), t0);
    assert!(!l.m.leading(t0));
    assert_eq!(l.m.info().leader, Some(pid(2)));
    assert!(out.contains(&Action::StartLocker));
    // from_leader from anyone but the leader followed is dropped.
    a.input(
        Input::Wire(Msg::FromLeader {
            leader: pid(2),
            token: Some(4),
            msg: atom("old"),
        }),
        t0,
    );
    assert!(a.cb.from_leader.is_empty());
}

#[test]
fn a_lost_join_is_retried_after_the_wait_and_a_dead_leader_is_looked_for() {
    let t0 = Instant::now();
    let (mut a, _) = member(1, Role::Candidate);
    let (mut b, _) = member(2, Role::Candidate);
    elect(&mut a, 1, t0, Duration::from_secs(60));
    // The join is lost.
    let out = b.input(Input::Found(Some(pid(1))), t0);
    assert_eq!(sends(&out).len(), 1);
    // No sync within the wait: look again (backoff), then join again.
    let t1 = t0 + Duration::from_secs(3);
    b.input(Input::Tick, t1);
    let out = b.input(Input::Tick, t1 + Duration::from_secs(2));
    assert!(out.contains(&Action::Find), "{out:?}");
    join(&mut b, &mut a, t1 + Duration::from_secs(2));
    assert_eq!(b.m.info().leader, Some(pid(1)));
    // Nobody holds the lock yet: asked again later, not at once.
    let (mut c, _) = member(3, Role::Worker);
    let out = c.input(Input::Found(None), t0);
    assert!(!out.contains(&Action::Find));
    let out = c.input(Input::Tick, t0 + Duration::from_secs(1));
    assert!(out.contains(&Action::Find));
    // The leader dies: the follower looks for the next.
    let out = b.input(Input::Down(pid(1)), t1 + Duration::from_secs(3));
    assert_eq!(b.m.info().leader, None);
    assert!(!out.contains(&Action::Find));
    let out = b.input(Input::Tick, t1 + Duration::from_secs(5));
    assert!(out.contains(&Action::Find));
}

#[test]
fn calls_wait_for_a_leader_and_are_bounded() {
    let t0 = Instant::now();
    let (mut a, _) = member(1, Role::Candidate);
    for i in 0..(super::core::MAX_PENDING + 5) {
        a.input(
            Input::LeaderCall {
                caller: Caller::Local(i as u64),
                request: int(i as i64),
            },
            t0,
        );
    }
    let out = elect(&mut a, 1, t0, Duration::from_secs(3));
    let replies = out
        .iter()
        .filter(|x| matches!(x, Action::Reply(..)))
        .count();
    assert_eq!(replies, super::core::MAX_PENDING);
    assert!(out.contains(&Action::Reply(Caller::Local(5), int(5))));
    assert!(!out.contains(&Action::Reply(Caller::Local(4), int(4))));
}

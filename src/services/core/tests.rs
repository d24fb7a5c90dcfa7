//! The core against scripted round results: one serving node, one master
//! that always answers (see `sim` for many nodes and a faulty network).

use super::*;
use crate::services::protocol::peer::PEER_VERSION;
use crate::services::protocol::Request;
use crate::services::shards::Taken;
use crate::term::{atom, int};

/// The wall clock the test's shard rounds end at (ms since the epoch).
pub(super) const WALL_MS: u64 = 1_700_000_000_000;

pub(super) const ME: &str = "s@h";
pub(super) const MASTER: &str = "m@h";

pub(super) fn config() -> ServicesConfig {
    ServicesConfig {
        masters: vec![MASTER.into()],
        w: 1,
        peers: vec![ME.into()],
        ..ServicesConfig::default()
    }
}

pub(super) fn core(t0: Instant) -> Core {
    let me = Identity {
        node: ME.into(),
        pid: Pid::new(ME, 1, 0, 1),
    };
    let mut n = 0;
    let namer = Box::new(move || {
        n += 1;
        crate::term::tuple(vec![atom("session"), int(n)])
    });
    Core::new(config(), me, namer, 7, t0)
}

pub(super) fn pid(n: u32) -> Pid {
    Pid::new("beam@h", n, 0, 1)
}

pub(super) fn caller(n: u32) -> Caller {
    Caller {
        pid: pid(n),
        tag: int(i64::from(n)),
    }
}

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs the core's timers from its last time to `until` in 100 ms steps,
/// answering every renewal and taking every shard at once; returns what
/// else came out.
pub(super) fn run(core: &mut Core, from: Instant, until: Instant) -> Vec<Output> {
    let mut out = Vec::new();
    let mut now = from;
    loop {
        core.handle_timeout(now);
        answer(core, now, &mut out);
        if now >= until {
            return out;
        }
        now = (now + ms(100)).min(until);
    }
}

/// Answers the jobs in the core's outputs (renewals, shard rounds).
pub(super) fn answer(core: &mut Core, now: Instant, out: &mut Vec<Output>) {
    while let Some(output) = core.poll_action() {
        match output {
            Output::Run(Job::Renew { epoch, .. }) => {
                let event = Event::Renewed {
                    epoch,
                    sent_at: now,
                    renewed: vec![MASTER.into()],
                    created: vec![],
                };
                core.handle_round_result(event, now);
            }
            Output::Run(Job::TakeShard { shard, epoch, .. }) => {
                let event = Event::ShardTaken {
                    shard,
                    epoch,
                    taken: Taken::Held,
                    ok_at: vec![MASTER.into()],
                    wall_ms: WALL_MS,
                };
                core.handle_round_result(event, now);
            }
            Output::Run(Job::Repair {
                master,
                epoch,
                generation,
                ..
            }) => {
                let event = Event::Repaired {
                    master,
                    epoch,
                    generation,
                    ok: true,
                };
                core.handle_round_result(event, now);
            }
            other => out.push(other),
        }
    }
}

pub(super) fn replies(out: &[Output]) -> Vec<(u32, Term)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Reply(c, r) => Some((c.pid.id, r.encode())),
            _ => None,
        })
        .collect()
}

fn lock(n: u32, key: &str) -> Request {
    Request::Lock {
        key: atom(key),
        owner: pid(n),
        block: true,
        fencing: false,
    }
}

#[test]
fn a_grant_tells_the_guard_before_the_owner_and_monitors_it() {
    let t0 = Instant::now();
    let mut c = core(t0);
    run(&mut c, t0, t0);
    c.handle_request(caller(1), lock(1, "k"), t0);
    let mut out = Vec::new();
    answer(&mut c, t0, &mut out);
    let owned = out
        .iter()
        .position(|o| matches!(o, Output::Guard(g) if g.notice == Notice::Owned));
    let reply = out.iter().position(|o| matches!(o, Output::Reply(..)));
    assert!(owned.is_some() && owned < reply, "{out:?}");
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Monitor(_, MonitorTarget::Process(p)) if *p == pid(1))));
    assert_eq!(replies(&out), vec![(1, atom("acquired"))]);
}

#[test]
fn grants_wait_for_lost_margin_and_half_a_second_of_session() {
    let t0 = Instant::now();
    let mut c = core(t0);
    // Renewed once at t0 (valid until t0 + 10 s), then never answered.
    c.handle_timeout(t0);
    let mut out = Vec::new();
    answer(&mut c, t0, &mut out);
    let late = t0 + ms(6_600);
    c.handle_request(caller(1), lock(1, "k"), late);
    assert!(
        !std::iter::from_fn(|| c.poll_action())
            .any(|o| matches!(o, Output::Run(Job::TakeShard { .. }))),
        "3.4 s of session left is too little to grant"
    );
    // Past lost_margin: the session is given up (and a new one opened).
    c.handle_timeout(t0 + ms(7_000));
    let out: Vec<Output> = std::iter::from_fn(|| c.poll_action()).collect();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Run(Job::Renew { epoch: 1, .. }))),
        "{out:?}"
    );
    // Renewed: the parked lock is served by a round under the new session.
    let now = t0 + ms(7_100);
    c.handle_round_result(
        Event::Renewed {
            epoch: 1,
            sent_at: now,
            renewed: vec![MASTER.into()],
            created: vec![],
        },
        now,
    );
    // The master is repaired first (a shard was being taken), and counts
    // from the next renewal.
    let out = run(&mut c, now, now + ms(1_200));
    assert_eq!(replies(&out), vec![(1, atom("acquired"))], "{out:?}");
}

#[test]
fn a_forwarded_unregister_sends_its_change_to_peers_before_the_reply() {
    let t0 = Instant::now();
    let mut c = core(t0);
    run(&mut c, t0, t0);
    let peer_server = Pid::new("s2@h", 1, 0, 1);
    c.handle_request(caller(9), Request::subscribe_peer(peer_server.clone()), t0);
    let register = Request::RegisterName {
        name: atom("n"),
        pid: pid(1),
        meta: None,
    };
    c.handle_request(caller(1), register, t0);
    let mut out = Vec::new();
    answer(&mut c, t0, &mut out);
    c.flush_changes();
    answer(&mut c, t0, &mut out);
    out.clear();
    c.handle_request(
        caller(2),
        Request::UnregisterNameHere { name: atom("n") },
        t0,
    );
    answer(&mut c, t0, &mut out);
    let peers = out.iter().position(|o| matches!(o, Output::Peers(_)));
    let reply = out.iter().position(|o| matches!(o, Output::Reply(..)));
    assert!(peers.is_some() && peers < reply, "{out:?}");
    match &out[peers.unwrap()] {
        Output::Peers(msgs) => {
            assert_eq!(msgs.len(), 1);
            let PeerMsg::Changes {
                version, changes, ..
            } = &msgs[0].1
            else {
                panic!("{msgs:?}")
            };
            assert_eq!(*version, PEER_VERSION);
            assert_eq!(changes, &vec![NameChange::new(atom("n"), None)]);
        }
        _ => unreachable!(),
    }
    // A plain unregister answers first; the change waits for a flush.
    c.handle_request(
        caller(1),
        Request::RegisterName {
            name: atom("m"),
            pid: pid(1),
            meta: None,
        },
        t0,
    );
    c.handle_request(caller(3), Request::UnregisterName { name: atom("m") }, t0);
    out.clear();
    answer(&mut c, t0, &mut out);
    assert!(!out.iter().any(|o| matches!(o, Output::Peers(_))));
    assert!(c.has_unsent());
}

#[test]
fn an_owner_whose_node_lost_us_keeps_its_hold_for_the_lease_and_margin() {
    let t0 = Instant::now();
    let mut c = core(t0);
    run(&mut c, t0, t0);
    c.handle_request(caller(1), lock(1, "k"), t0);
    let mut out = Vec::new();
    answer(&mut c, t0, &mut out);
    let id = out
        .iter()
        .find_map(|o| match o {
            Output::Monitor(id, _) => Some(*id),
            _ => None,
        })
        .expect("monitored");
    c.handle_down(id, &atom("noconnection"), t0);
    c.handle_request(caller(2), lock(2, "k"), t0);
    let lease_and_margin = config().session_lease + config().margin;
    let out = run(&mut c, t0, t0 + lease_and_margin - ms(100));
    assert!(replies(&out).is_empty(), "{out:?}");
    assert!(!out.iter().any(|o| matches!(o, Output::Guard(_))));
    let end = t0 + lease_and_margin;
    let out = run(&mut c, end, end);
    assert!(out.iter().any(
        |o| matches!(o, Output::Guard(g) if g.notice == Notice::Released && g.owner == pid(1))
    ));
    assert_eq!(replies(&out), vec![(2, atom("acquired"))]);
}

#[test]
fn requests_a_shard_round_cannot_serve_in_time_get_no_quorum() {
    let t0 = Instant::now();
    let mut c = core(t0);
    run(&mut c, t0, t0);
    c.handle_request(caller(1), lock(1, "k"), t0);
    c.handle_request(
        caller(2),
        Request::RegisterName {
            name: atom("n"),
            pid: pid(2),
            meta: None,
        },
        t0,
    );
    let mut shards = Vec::new();
    while let Some(o) = c.poll_action() {
        if let Output::Run(Job::TakeShard { shard, epoch, .. }) = o {
            shards.push((shard, epoch));
        }
    }
    for (shard, epoch) in shards {
        let event = Event::ShardTaken {
            shard,
            epoch,
            taken: Taken::NoQuorum,
            ok_at: vec![],
            wall_ms: WALL_MS,
        };
        c.handle_round_result(event, t0);
    }
    let out: Vec<Output> = std::iter::from_fn(|| c.poll_action()).collect();
    let mut got = replies(&out);
    got.sort_by_key(|(n, _)| *n);
    assert_eq!(got, vec![(1, atom("no_quorum")), (2, atom("no"))]);
}

fn far_pid(n: u32) -> Pid {
    Pid::new("far@h", n, 0, 1)
}

/// The monitor the core set on `owner`, from `out`.
fn monitor_of(out: &[Output], owner: &Pid) -> Option<MonitorId> {
    out.iter().find_map(|o| match o {
        Output::Monitor(id, MonitorTarget::Process(p)) if p == owner => Some(*id),
        _ => None,
    })
}

#[test]
fn a_grant_to_a_silent_waiter_blocks_the_key_only_until_its_guard_must_have_told_it() {
    let t0 = Instant::now();
    let mut c = core(t0);
    run(&mut c, t0, t0);
    // 1 (on beam@h) holds k; 2 (on far@h) waits for it; far@h then goes
    // silent (a partition): no keepalive, no request, no nodedown.
    c.handle_request(caller(1), lock(1, "k"), t0);
    let mut out = Vec::new();
    answer(&mut c, t0, &mut out);
    let one = monitor_of(&out, &pid(1)).expect("1 monitored");
    let far = Caller {
        pid: far_pid(2),
        tag: int(2),
    };
    let far_lock = Request::Lock {
        key: atom("k"),
        owner: far_pid(2),
        block: true,
        fencing: false,
    };
    c.handle_request(far, far_lock, t0);
    let mut out = Vec::new();
    answer(&mut c, t0, &mut out);
    let two = monitor_of(&out, &far_pid(2)).expect("2 monitored");
    // 1's guard keeps beam@h alive; 1 exits 10 s later (a jump in time):
    // granted to 2, whose node says nothing from then on.
    let t1 = t0 + ms(10_000);
    for s in 1..=10 {
        let at = t0 + ms(1000 * s);
        c.handle_request(caller(50), Request::Keepalive, at);
        run(&mut c, at, at);
    }
    c.handle_down(one, &atom("normal"), t1);
    let out = run(&mut c, t1, t1);
    assert_eq!(replies(&out), vec![(2, atom("acquired"))]);
    // 3 (on beam@h, alive) waits; its node keeps speaking.
    c.handle_request(caller(3), lock(3, "k"), t1);
    let mut dropped = None;
    let mut now = t1;
    while now < t1 + ms(3000) && dropped.is_none() {
        now += ms(100);
        c.handle_request(caller(51), Request::Keepalive, now);
        let out = run(&mut c, now, now);
        assert!(!out
            .iter()
            .any(|o| matches!(o, Output::Disconnect(n) if n == "beam@h")));
        if out
            .iter()
            .any(|o| matches!(o, Output::Disconnect(n) if n == "far@h"))
        {
            dropped = Some(now);
        }
    }
    // Dropped once silent for the bound after the grant, not at nodedown.
    let dropped = dropped.expect("far@h dropped");
    assert_eq!(dropped, t1 + silence::SILENCE);
    // The driver closed the connection; the DOWN comes a little later
    // (the message announcing it is lost with the connection).
    let down_at = dropped + ms(30);
    c.handle_down(two, &atom("noconnection"), down_at);
    // Released once 2's guard must have told it: lost_margin after the
    // drop, well before a whole lease and margin.
    let release = dropped + config().lost_margin;
    let out = run(&mut c, down_at, release - ms(100));
    assert!(replies(&out).is_empty(), "{out:?}");
    let out = run(&mut c, release, release + ms(100));
    assert_eq!(replies(&out), vec![(3, atom("acquired"))]);
    assert!(release < t1 + config().session_lease + config().margin);
}

/// A shard taken on masters that did not all renew the session last time
/// (a handoff's taker, or a master that missed the shard) holds grants
/// back until a renewal counts W masters holding it: that renewal starts
/// at once, not at the next `renew_every` (1 s, the rolling restart's
/// longest gap).
#[test]
fn a_shard_taken_on_masters_that_did_not_renew_renews_at_once() {
    const M2: &str = "m2@h";
    let t0 = Instant::now();
    let config = ServicesConfig {
        masters: vec![MASTER.into(), M2.into()],
        ..config()
    };
    let me = Identity {
        node: ME.into(),
        pid: Pid::new(ME, 1, 0, 1),
    };
    let namer = Box::new(|| crate::term::tuple(vec![atom("session"), int(1)]));
    let mut c = Core::new(config, me, namer, 7, t0);
    // Renewed by MASTER alone (M2 slow to answer).
    c.handle_timeout(t0);
    let renew_answers = |c: &mut Core, now: Instant, renewed: &[&str], out: &mut Vec<Output>| {
        while let Some(output) = c.poll_action() {
            let event = match output {
                Output::Run(Job::Renew { epoch, .. }) => Event::Renewed {
                    epoch,
                    sent_at: now,
                    renewed: renewed.iter().map(|m| m.to_string()).collect(),
                    created: vec![],
                },
                // M2 said yes to the shard, MASTER missed it.
                Output::Run(Job::TakeShard { shard, epoch, .. }) => Event::ShardTaken {
                    shard,
                    epoch,
                    taken: Taken::Held,
                    ok_at: vec![M2.into()],
                    wall_ms: WALL_MS,
                },
                Output::Run(Job::Repair {
                    master,
                    epoch,
                    generation,
                    ..
                }) => Event::Repaired {
                    master,
                    epoch,
                    generation,
                    ok: true,
                },
                other => {
                    out.push(other);
                    continue;
                }
            };
            c.handle_round_result(event, now);
        }
    };
    let mut out = Vec::new();
    renew_answers(&mut c, t0, &[MASTER], &mut out);
    // Well before the next renewal is due (t0 + 1 s) and before any tick.
    let now = t0 + ms(10);
    c.handle_request(caller(1), lock(1, "k"), now);
    renew_answers(&mut c, now, &[MASTER, M2], &mut out);
    // The slot tries again within a tick of the renewal.
    let now = now + ms(100);
    c.handle_timeout(now);
    renew_answers(&mut c, now, &[MASTER, M2], &mut out);
    assert_eq!(replies(&out), vec![(1, atom("acquired"))], "{out:?}");
}

/// A new node whose first request comes before its first renewal (the
/// shard being taken makes every master a repair first) renews again as
/// soon as a repair ends, not at the next `renew_every` (1 s): a restarted
/// node answered its first requests up to 1 s late.
#[test]
fn a_first_renewal_held_back_by_repairs_is_done_again_once_repaired() {
    let t0 = Instant::now();
    let mut c = core(t0);
    c.handle_request(caller(1), lock(1, "k"), t0);
    let out = run(&mut c, t0, t0 + ms(300));
    assert_eq!(replies(&out), vec![(1, atom("acquired"))], "{out:?}");
}

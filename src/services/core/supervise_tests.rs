//! Supervised names through the core: one serving node, one master that
//! always answers (see `tests`), hosts and keepers played by the test.

use super::tests::{answer, caller, config, core, ms, pid, replies, run};
use super::*;
use crate::services::protocol::{HostKind, HostMsg, Request, Restart, Start};
use crate::term::{atom, int, list, tuple};
use std::collections::HashMap;

/// The core, the time, the monitors it set, and what it sent hosts.
struct Harness {
    c: Core,
    now: Instant,
    monitors: HashMap<Pid, MonitorId>,
    /// (host, id, name) of every `eq_start`, in order.
    starts: Vec<(Pid, u64, Term)>,
    exits: Vec<(Pid, Term)>,
    /// Every reply, as (caller's pid number, reply).
    replies: Vec<(u32, Term)>,
}

fn host(node: &str) -> Pid {
    Pid::new(node, 50, 0, 1)
}

/// A child started on `node`.
fn child(node: &str, n: u32) -> Pid {
    Pid::new(node, 100 + n, 0, 1)
}

fn keeper(node: &str, n: u32) -> Caller {
    Caller {
        pid: Pid::new(node, 200 + n, 0, 1),
        tag: int(i64::from(n)),
    }
}

fn mfa() -> Start {
    Start::Beam(tuple(vec![atom("m"), atom("start_link"), list(vec![])]))
}

fn start(name: &str, restart: Restart) -> Request {
    Request::start_name(atom(name), mfa(), restart)
}

impl Harness {
    fn new() -> Harness {
        let t0 = Instant::now();
        let mut c = core(t0);
        run(&mut c, t0, t0);
        let mut h = Harness {
            c,
            now: t0,
            monitors: HashMap::new(),
            starts: Vec::new(),
            exits: Vec::new(),
            replies: Vec::new(),
        };
        h.settle();
        h
    }

    /// Collects what came out.
    fn settle(&mut self) {
        let mut out = Vec::new();
        answer(&mut self.c, self.now, &mut out);
        self.replies.extend(replies(&out));
        for o in out {
            match o {
                Output::Monitor(id, MonitorTarget::Process(p)) => {
                    self.monitors.insert(p, id);
                }
                Output::Host(host, HostMsg::Start { id, name, .. }) => {
                    self.starts.push((host, id, name))
                }
                Output::Exit { owner, reason } => self.exits.push((owner, reason)),
                _ => {}
            }
        }
    }

    fn call(&mut self, from: Caller, request: Request) {
        self.c.handle_request(from, request, self.now);
        self.settle();
    }

    fn announce(&mut self, host: &Pid, kind: HostKind) {
        let from = Caller {
            pid: host.clone(),
            tag: int(0),
        };
        let request = Request::Host {
            pid: host.clone(),
            kind,
        };
        self.call(from, request);
    }

    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        let out = run(&mut self.c, self.now, until);
        self.now = until;
        self.replies.extend(replies(&out));
        for o in out {
            match o {
                Output::Monitor(id, MonitorTarget::Process(p)) => {
                    self.monitors.insert(p, id);
                }
                Output::Host(host, HostMsg::Start { id, name, .. }) => {
                    self.starts.push((host, id, name))
                }
                Output::Exit { owner, reason } => self.exits.push((owner, reason)),
                _ => {}
            }
        }
    }

    /// [`Harness::advance`] with the masters out of reach: every renewal
    /// and shard round fails.
    fn advance_cut_off(&mut self, by: Duration) {
        use crate::services::rounds::{Event, Job};
        use crate::services::shards::Taken;
        let until = self.now + by;
        loop {
            self.c.handle_timeout(self.now);
            while let Some(output) = self.c.poll_action() {
                let now = self.now;
                match output {
                    Output::Run(Job::Renew { epoch, .. }) => {
                        let event = Event::Renewed {
                            epoch,
                            sent_at: now,
                            renewed: vec![],
                            created: vec![],
                        };
                        self.c.handle_round_result(event, now)
                    }
                    Output::Run(Job::TakeShard { shard, epoch, .. }) => {
                        let event = Event::ShardTaken {
                            shard,
                            epoch,
                            taken: Taken::NoQuorum,
                            ok_at: vec![],
                            wall_ms: super::tests::WALL_MS,
                        };
                        self.c.handle_round_result(event, now)
                    }
                    Output::Host(host, HostMsg::Start { id, name, .. }) => {
                        self.starts.push((host, id, name))
                    }
                    Output::Monitor(id, MonitorTarget::Process(p)) => {
                        self.monitors.insert(p, id);
                    }
                    Output::Reply(..) => self.replies.extend(replies(&[output])),
                    _ => {}
                }
            }
            if self.now >= until {
                return;
            }
            self.now = (self.now + ms(100)).min(until);
        }
    }

    fn down(&mut self, pid: &Pid, reason: Term) {
        let id = self.monitors.remove(pid).expect("monitored");
        self.c.handle_down(id, &reason, self.now);
        self.settle();
    }

    /// The keeper `k` of the last `eq_start` says its child `pid` runs.
    fn started(&mut self, k: &Caller, pid: &Pid) {
        let id = self.starts.last().expect("an eq_start").1;
        let request = Request::Started {
            id,
            pid: pid.clone(),
        };
        self.call(k.clone(), request);
    }

    fn reply_to(&self, n: u32) -> Vec<Term> {
        self.replies
            .iter()
            .filter(|(p, _)| *p == n)
            .map(|(_, r)| r.clone())
            .collect()
    }

    fn whereis(&mut self, name: &str) -> Option<Pid> {
        self.c.slots.whereis_name(&atom(name))
    }
}

fn started(p: &Pid) -> Term {
    tuple(vec![atom("started"), Term::from(p.clone())])
}

fn already(p: &Pid) -> Term {
    tuple(vec![atom("already_started"), Term::from(p.clone())])
}

fn start_failed(reason: Term) -> Term {
    tuple(vec![
        atom("error"),
        tuple(vec![atom("start_failed"), reason]),
    ])
}

/// A started singleton `name` on `node`'s host, child number `n`.
fn running(h: &mut Harness, name: &str, restart: Restart, node: &str, n: u32) -> Pid {
    let before = h.starts.len();
    h.call(caller(n), start(name, restart));
    assert_eq!(h.starts.len(), before + 1, "one eq_start");
    let c = child(node, n);
    h.started(&keeper(node, n), &c);
    assert_eq!(h.reply_to(n), vec![started(&c)]);
    assert_eq!(h.whereis(name), Some(c.clone()));
    c
}

#[test]
fn three_racing_start_names_send_one_eq_start_and_all_get_the_one_pid() {
    let mut h = Harness::new();
    h.announce(&host("b1@h"), HostKind::Beam);
    for n in 1..=3 {
        h.call(caller(n), start("s", Restart::Permanent));
    }
    assert_eq!(h.starts.len(), 1, "{:?}", h.starts);
    assert_eq!(h.starts[0].0, host("b1@h"));
    assert!(
        h.reply_to(1).is_empty(),
        "nobody is answered before started"
    );
    let c = child("b1@h", 1);
    h.started(&keeper("b1@h", 1), &c);
    assert_eq!(h.reply_to(201), vec![atom("yes")], "the keeper keeps it");
    assert_eq!(h.reply_to(1), vec![started(&c)]);
    assert_eq!(h.reply_to(2), vec![already(&c)]);
    assert_eq!(h.reply_to(3), vec![already(&c)]);
    // Later: already started (same Start), conflict (another Start).
    h.call(caller(4), start("s", Restart::Permanent));
    assert_eq!(h.reply_to(4), vec![already(&c)]);
    let other = Request::start_name(atom("s"), Start::rust("svc"), Restart::Permanent);
    h.call(caller(5), other);
    assert_eq!(
        h.reply_to(5),
        vec![tuple(vec![atom("conflict"), Term::from(c.clone())])]
    );
    let status = h.c.status();
    assert!(status.contains(&("supervised".into(), 1)), "{status:?}");
    assert!(status.contains(&("hosts".into(), 1)), "{status:?}");
    assert!(status.contains(&("pending_starts".into(), 0)), "{status:?}");
}

#[test]
fn a_register_for_a_name_being_started_waits_and_then_gets_no() {
    let mut h = Harness::new();
    h.announce(&host("b1@h"), HostKind::Beam);
    h.call(caller(1), start("s", Restart::Temporary));
    let register = Request::RegisterName {
        name: atom("s"),
        pid: pid(2),
        meta: None,
    };
    h.call(caller(2), register);
    assert!(h.reply_to(2).is_empty(), "parked while the start runs");
    let c = child("b1@h", 1);
    h.started(&keeper("b1@h", 1), &c);
    assert_eq!(h.reply_to(1), vec![started(&c)]);
    assert_eq!(h.reply_to(2), vec![atom("no")]);
    assert_eq!(h.whereis("s"), Some(c));
}

#[test]
fn a_keeper_too_late_is_told_no_and_the_caller_gets_timeout() {
    let mut h = Harness::new();
    h.announce(&host("b1@h"), HostKind::Beam);
    h.call(caller(1), start("s", Restart::Permanent));
    h.advance(ms(29_900));
    assert!(h.reply_to(1).is_empty());
    h.advance(ms(200));
    assert_eq!(h.reply_to(1), vec![start_failed(atom("timeout"))]);
    // A start_name now waits: the keeper may yet start a child.
    h.call(caller(2), start("s", Restart::Permanent));
    assert_eq!(h.starts.len(), 1);
    let late = child("b1@h", 1);
    h.started(&keeper("b1@h", 1), &late);
    assert_eq!(h.reply_to(201), vec![atom("no")]);
    assert_eq!(h.whereis("s"), None);
    assert_eq!(h.starts.len(), 1, "not while the late child may run");
    assert!(h.reply_to(2).is_empty());
    // Its keeper killed it: the waiting start_name is served afresh.
    h.down(&late, atom("killed"));
    assert_eq!(h.starts.len(), 2);
    let c = child("b1@h", 2);
    h.started(&keeper("b1@h", 2), &c);
    assert_eq!(h.reply_to(2), vec![started(&c)]);
    assert!(h.c.status().contains(&("pending_starts".into(), 0)));
}

/// A start is never ordered while this node could not grant the name: its
/// child would run unregistered while the session may lapse, beside the one
/// the next holder of the shard starts (found by the simulation, seed 316).
#[test]
fn no_eq_start_goes_out_while_the_session_cannot_grant() {
    let mut h = Harness::new();
    h.announce(&host("b1@h"), HostKind::Beam);
    let c = running(&mut h, "s", Restart::Permanent, "b1@h", 1);
    h.down(&c, atom("crash"));
    assert_eq!(h.starts.len(), 2, "restarted at once");
    // The masters go out of reach before the keeper answers: the session
    // is given up and the attempt abandoned.
    h.advance_cut_off(config().session_lease);
    let late = child("b1@h", 2);
    h.started(&keeper("b1@h", 2), &late);
    assert_eq!(h.reply_to(202), vec![atom("no")]);
    // Its keeper kills it; the next attempt would go out now, with no
    // session able to grant the name.
    h.down(&late, atom("killed"));
    h.advance_cut_off(ms(3_000));
    assert_eq!(h.starts.len(), 2, "no eq_start without a session");
    // Once the masters answer again, the restart goes out.
    h.advance(ms(3_000));
    assert_eq!(h.starts.len(), 3);
    let c3 = child("b1@h", 3);
    h.started(&keeper("b1@h", 3), &c3);
    assert_eq!(h.reply_to(203), vec![atom("yes")]);
    assert_eq!(h.whereis("s"), Some(c3));
}

#[test]
fn a_restart_given_up_on_waits_for_the_slow_keeper_before_the_next_host() {
    let mut h = Harness::new();
    h.announce(&host("b1@h"), HostKind::Beam);
    let c = running(&mut h, "s", Restart::Permanent, "b1@h", 1);
    h.announce(&host("b2@h"), HostKind::Beam);
    h.down(&c, atom("crash"));
    assert_eq!(h.starts.len(), 2);
    assert_eq!(h.starts[1].0, host("b1@h"));
    h.advance(ms(30_100));
    assert_eq!(h.starts.len(), 2, "the slow keeper may still start it");
    // It gives up itself: now the next host.
    let id = h.starts[1].1;
    let failed = Request::StartFailed {
        id,
        reason: atom("boom"),
    };
    h.call(keeper("b1@h", 2), failed);
    assert_eq!(h.starts.len(), 3);
    assert_eq!(h.starts[2].0, host("b2@h"));
}

#[test]
fn no_host_and_failed_starts_are_reported_and_leave_nothing() {
    let mut h = Harness::new();
    h.call(caller(1), start("s", Restart::Permanent));
    assert_eq!(
        h.reply_to(1),
        vec![tuple(vec![atom("error"), atom("no_host")])]
    );
    h.announce(&host("b1@h"), HostKind::Beam);
    h.announce(&host("b2@h"), HostKind::Beam);
    h.call(caller(2), start("s", Restart::Permanent));
    let (first, id, _) = h.starts[0].clone();
    let failed = Request::StartFailed {
        id,
        reason: atom("boom"),
    };
    h.call(keeper(&first.node.name, 1), failed);
    assert_eq!(h.reply_to(201), vec![atom("ok")]);
    assert_eq!(h.starts.len(), 2, "the next host is tried");
    assert_ne!(h.starts[1].0, first);
    let id = h.starts[1].1;
    let failed = Request::StartFailed {
        id,
        reason: atom("ignore"),
    };
    h.call(keeper("x@h", 2), failed);
    assert_eq!(h.reply_to(2), vec![start_failed(atom("ignore"))]);
    assert_eq!(h.whereis("s"), None);
    let status = h.c.status();
    assert!(status.contains(&("supervised".into(), 0)), "{status:?}");
    // A Rust start needs a Rust host.
    let rust = Request::start_name(atom("r"), Start::rust("svc"), Restart::Permanent);
    h.call(caller(3), rust);
    assert_eq!(
        h.reply_to(3),
        vec![tuple(vec![atom("error"), atom("no_host")])]
    );
}

#[test]
fn a_crashed_permanent_singleton_restarts_on_its_own_host() {
    let mut h = Harness::new();
    h.announce(&host("b1@h"), HostKind::Beam);
    h.announce(&host("b2@h"), HostKind::Beam);
    h.call(caller(1), start("s", Restart::Permanent));
    let (on, _, _) = h.starts[0].clone();
    let node = on.node.name.clone();
    let c = child(&node, 1);
    h.started(&keeper(&node, 1), &c);
    h.down(&c, atom("crash"));
    assert_eq!(h.starts.len(), 2, "restarted at once");
    assert_eq!(h.starts[1].0, on, "on the host of its node");
    let c2 = child(&node, 2);
    h.started(&keeper(&node, 2), &c2);
    assert_eq!(h.reply_to(202), vec![atom("yes")]);
    assert_eq!(h.whereis("s"), Some(c2));
}

#[test]
fn a_lost_node_is_restarted_elsewhere_only_after_the_lease_and_margin() {
    let mut h = Harness::new();
    h.announce(&host("b1@h"), HostKind::Beam);
    let c = running(&mut h, "s", Restart::Permanent, "b1@h", 1);
    h.announce(&host("b2@h"), HostKind::Beam);
    h.down(&c, atom("noconnection"));
    let wait = config().session_lease + config().margin;
    h.advance(wait - ms(100));
    assert_eq!(h.starts.len(), 1, "no restart while it may run");
    assert_eq!(h.whereis("s"), Some(c), "still held by the lost owner");
    h.advance(ms(200));
    assert_eq!(h.starts.len(), 2, "restarted once released");
    assert_eq!(h.starts[1].0, host("b2@h"), "never on the lost node");
    // With no host on another node it waits for one.
    let c2 = child("b2@h", 2);
    h.started(&keeper("b2@h", 2), &c2);
    h.down(&c2, atom("noconnection"));
    h.advance(wait + ms(100));
    assert_eq!(h.starts.len(), 3);
    assert_eq!(h.starts[2].0, host("b1@h"));
}

#[test]
fn a_lost_node_with_no_other_host_waits_for_one() {
    let mut h = Harness::new();
    h.announce(&host("b1@h"), HostKind::Beam);
    let c = running(&mut h, "s", Restart::Permanent, "b1@h", 1);
    h.down(&c, atom("noconnection"));
    h.advance(config().session_lease + config().margin + ms(2_500));
    assert_eq!(h.starts.len(), 1, "b1's host is on the lost node");
    h.announce(&host("b3@h"), HostKind::Beam);
    h.advance(ms(1_100));
    assert_eq!(h.starts.len(), 2);
    assert_eq!(h.starts[1].0, host("b3@h"));
}

#[test]
fn transient_restarts_only_after_a_crash_and_temporary_never() {
    let mut h = Harness::new();
    h.announce(&host("b1@h"), HostKind::Beam);
    let c = running(&mut h, "t", Restart::Transient, "b1@h", 1);
    h.down(&c, atom("normal"));
    assert_eq!(h.starts.len(), 1, "a normal exit ends a transient one");
    let c = running(&mut h, "t", Restart::Transient, "b1@h", 2);
    h.down(&c, tuple(vec![atom("shutdown"), atom("why")]));
    assert_eq!(h.starts.len(), 2);
    let c = running(&mut h, "t", Restart::Transient, "b1@h", 3);
    h.down(&c, atom("crash"));
    assert_eq!(h.starts.len(), 4, "a crash restarts it");
    let mut h = Harness::new();
    h.announce(&host("b1@h"), HostKind::Beam);
    let c = running(&mut h, "p", Restart::Temporary, "b1@h", 1);
    h.down(&c, atom("crash"));
    assert_eq!(h.starts.len(), 1, "temporary: never restarted");
    assert_eq!(h.c.status()[5], ("supervised".into(), 0));
    // The next start_name starts it again.
    running(&mut h, "p", Restart::Temporary, "b1@h", 2);
}

#[test]
fn more_than_five_restarts_in_ten_seconds_give_up() {
    let mut h = Harness::new();
    h.announce(&host("b1@h"), HostKind::Beam);
    let mut c = running(&mut h, "s", Restart::Permanent, "b1@h", 1);
    for n in 2..=6 {
        h.down(&c, atom("crash"));
        assert_eq!(h.starts.len(), n as usize, "restart {n}");
        c = child("b1@h", n);
        h.started(&keeper("b1@h", n), &c);
        h.advance(ms(500));
    }
    h.down(&c, atom("crash"));
    assert_eq!(h.starts.len(), 6, "the sixth restart is one too many");
    assert_eq!(h.whereis("s"), None);
    assert_eq!(h.c.status()[5], ("supervised".into(), 0));
}

#[test]
fn unregister_stops_a_supervised_name_without_restart() {
    let mut h = Harness::new();
    h.announce(&host("b1@h"), HostKind::Beam);
    let c = running(&mut h, "s", Restart::Permanent, "b1@h", 1);
    h.call(caller(9), Request::UnregisterName { name: atom("s") });
    assert_eq!(h.reply_to(9), vec![atom("ok")]);
    assert_eq!(h.exits, vec![(c.clone(), atom("shutdown"))]);
    // Its exit (after the release, or before it) restarts nothing.
    if h.monitors.contains_key(&c) {
        h.down(&c, atom("shutdown"));
    }
    h.advance(ms(2_000));
    assert_eq!(h.starts.len(), 1);
    assert_eq!(h.whereis("s"), None);
}

#[test]
fn meta_is_kept_with_the_name_and_read_back_by_whereis_meta() {
    let mut h = Harness::new();
    let register = Request::RegisterName {
        name: atom("n"),
        pid: pid(1),
        meta: Some(atom("m1")),
    };
    h.call(caller(1), register);
    assert_eq!(h.reply_to(1), vec![atom("yes")]);
    h.call(caller(2), Request::WhereisMeta { name: atom("n") });
    assert_eq!(
        h.reply_to(2),
        vec![tuple(vec![Term::from(pid(1)), atom("m1")])]
    );
    h.call(caller(3), Request::WhereisMeta { name: atom("x") });
    assert_eq!(h.reply_to(3), vec![atom("undefined")]);
    // Released: its meta goes with it; a plain register has none.
    h.down(&pid(1), atom("normal"));
    let plain = Request::RegisterName {
        name: atom("n"),
        pid: pid(4),
        meta: None,
    };
    h.call(caller(4), plain);
    h.call(caller(5), Request::WhereisMeta { name: atom("n") });
    assert_eq!(
        h.reply_to(5),
        vec![tuple(vec![Term::from(pid(4)), atom("undefined")])]
    );
    // A singleton's meta comes from its start_name.
    h.announce(&host("b1@h"), HostKind::Beam);
    let request = Request::StartName {
        name: atom("s"),
        start: mfa(),
        restart: Restart::Permanent,
        meta: atom("sm"),
        host: None,
    };
    h.call(caller(6), request);
    let c = child("b1@h", 6);
    h.started(&keeper("b1@h", 6), &c);
    h.call(caller(7), Request::WhereisMeta { name: atom("s") });
    assert_eq!(h.reply_to(7), vec![tuple(vec![Term::from(c), atom("sm")])]);
}

#[test]
fn a_lost_session_answers_starts_in_flight_no_quorum_and_drops_records() {
    let mut h = Harness::new();
    h.announce(&host("b1@h"), HostKind::Beam);
    running(&mut h, "s", Restart::Permanent, "b1@h", 1);
    h.call(caller(2), start("t", Restart::Permanent));
    // Renewals stop being answered: drive the timers without `run`.
    let lost_at = h.now + config().session_lease;
    let mut now = h.now;
    while now < lost_at {
        now += ms(100);
        h.c.handle_timeout(now);
        while h.c.poll_action().is_some() {}
        if h.c.status()[5].1 == 0 {
            break;
        }
    }
    h.now = now;
    assert_eq!(h.c.status()[5], ("supervised".into(), 0));
    // The no_quorum reply went out among the outputs dropped above. The
    // start stays abandoned, not forgotten: its keeper is told no, and
    // the name is free once that child is gone.
    assert_eq!(h.c.status()[7], ("pending_starts".into(), 1));
    let late = child("b1@h", 2);
    h.started(&keeper("b1@h", 2), &late);
    assert_eq!(h.reply_to(202), vec![atom("no")]);
    h.down(&late, atom("killed"));
    assert_eq!(h.c.status()[7], ("pending_starts".into(), 0));
}

#[test]
fn a_host_that_goes_hands_its_start_to_the_next() {
    let mut h = Harness::new();
    h.announce(&host("b1@h"), HostKind::Beam);
    h.announce(&host("b2@h"), HostKind::Beam);
    h.call(caller(1), start("s", Restart::Permanent));
    let (first, old_id, _) = h.starts[0].clone();
    h.down(&first, atom("noconnection"));
    // Its keeper may run on, cut off, until the lease and margin passed.
    h.advance(config().session_lease + config().margin - ms(100));
    assert_eq!(h.starts.len(), 1);
    h.advance(ms(200));
    assert_eq!(h.starts.len(), 2);
    assert_ne!(h.starts[1].0, first);
    // The first keeper's late answer is refused.
    let late = Request::Started {
        id: old_id,
        pid: child(&first.node.name, 1),
    };
    h.call(keeper(&first.node.name, 1), late);
    assert_eq!(h.reply_to(201), vec![atom("no")]);
    let node = h.starts[1].0.node.name.clone();
    let c = child(&node, 2);
    h.started(&keeper(&node, 2), &c);
    assert_eq!(h.reply_to(1), vec![started(&c)]);
}

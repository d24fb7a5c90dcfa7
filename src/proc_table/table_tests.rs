//! The process table alone: names, aliases, links, monitors, exit signals,
//! and what a death or a lost connection fires. Mailboxes are plain
//! channels read with `try_recv`, so every test is deterministic.

use super::ids::{IdGen, LocalId};
use super::mailbox::{Mail, Signal};
use super::table::{ExitKind, ProcessTable, RegisterError, Remote};
use crate::term::{atom, tuple, Atom, Pid, Term};
use erl_dist::message::Message;
use erl_dist::term::PidOrAtom;
use std::collections::HashMap;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

const NODE: &str = "me@h";
const PEER: &str = "peer@h";

/// What a process's channel got: mail, or the news that it was killed.
#[derive(Debug, PartialEq)]
enum Got {
    Mail(Mail),
    Killed(Term),
}

struct World {
    table: ProcessTable,
    ids: IdGen,
    inboxes: HashMap<LocalId, UnboundedReceiver<Signal>>,
    out: Vec<Remote>,
}

impl World {
    fn new() -> Self {
        World {
            table: ProcessTable::new(NODE),
            ids: IdGen::new(NODE, 1),
            inboxes: HashMap::new(),
            out: Vec::new(),
        }
    }

    fn spawn(&mut self) -> (LocalId, Pid) {
        let (id, pid) = self.ids.new_pid();
        let (tx, rx) = unbounded_channel();
        self.table.insert(id, pid.clone(), tx);
        self.inboxes.insert(id, rx);
        (id, pid)
    }

    fn got(&mut self, id: LocalId) -> Vec<Got> {
        let rx = self.inboxes.get_mut(&id).expect("spawned");
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|s| match s {
                Signal::Mail(m) => Got::Mail(m),
                Signal::Killed(r) => Got::Killed(r),
            })
            .collect()
    }

    fn terminate(&mut self, id: LocalId, reason: Term) {
        self.table.terminate(id, reason, &mut self.out);
    }

    fn alive(&self, name: &str) -> bool {
        self.table.whereis(&Atom::from(name)).is_some()
    }

    fn take_out(&mut self) -> Vec<Remote> {
        std::mem::take(&mut self.out)
    }
}

fn remote_pid(id: u32) -> Pid {
    Pid::new(PEER, id, 0, 1)
}

fn msg(t: Term) -> Got {
    Got::Mail(Mail::Message(t))
}

// ---- names and aliases ------------------------------------------------

#[test]
fn names_are_unique_and_go_with_their_process() {
    let mut w = World::new();
    let (a, a_pid) = w.spawn();
    let (b, _) = w.spawn();
    assert_eq!(w.table.register(a, "svc"), Ok(()));
    assert_eq!(
        w.table.register(b, "svc"),
        Err(RegisterError::NameTaken("svc".into()))
    );
    assert_eq!(
        w.table.register(a, "other"),
        Err(RegisterError::AlreadyNamed("svc".into()))
    );
    assert_eq!(w.table.register(999, "ghost"), Err(RegisterError::NoProc));
    assert_eq!(w.table.whereis(&Atom::from("svc")), Some((a, a_pid)));
    assert_eq!(w.table.name_of(a), Some(Atom::from("svc")));
    assert!(w
        .table
        .deliver_to_name(&Atom::from("svc"), Mail::Message(atom("hi"))));
    assert_eq!(w.got(a), vec![msg(atom("hi"))]);

    assert!(w.table.unregister("svc"));
    assert!(!w.table.unregister("svc"));
    assert!(!w
        .table
        .deliver_to_name(&Atom::from("svc"), Mail::Message(atom("x"))));
    assert_eq!(w.table.register(b, "svc"), Ok(()));
    w.terminate(b, atom("normal"));
    assert!(!w.alive("svc"));
    assert!(w.table.registered().is_empty());
    assert_eq!(w.table.len(), 1);
}

#[test]
fn aliases_deliver_until_removed_or_their_owner_dies() {
    let mut w = World::new();
    let (a, _) = w.spawn();
    let alias = w.ids.new_ref();
    let other = w.ids.new_ref();
    w.table.add_alias(a, alias.clone());
    w.table.add_alias(a, other.clone());
    assert!(w.table.deliver_to_alias(&alias, Mail::Message(atom("one"))));
    w.table.remove_alias(&alias);
    assert!(!w.table.deliver_to_alias(&alias, Mail::Message(atom("two"))));
    assert_eq!(w.got(a), vec![msg(atom("one"))]);
    w.terminate(a, atom("normal"));
    assert!(!w
        .table
        .deliver_to_alias(&other, Mail::Message(atom("three"))));
}

// ---- links and exit signals -----------------------------------------------

#[test]
fn an_abnormal_death_kills_linked_processes_in_a_chain() {
    let mut w = World::new();
    let (a, _) = w.spawn();
    let (b, b_pid) = w.spawn();
    let (c, c_pid) = w.spawn();
    w.table.link_local(a, b, &b_pid, &mut w.out);
    w.table.link_local(b, c, &c_pid, &mut w.out);
    w.table.register(c, "c").unwrap();
    w.terminate(a, atom("boom"));
    // a's own handle hears it too, so a death from elsewhere is noticed.
    assert_eq!(w.got(a), vec![Got::Killed(atom("boom"))]);
    assert_eq!(w.got(b), vec![Got::Killed(atom("boom"))]);
    assert_eq!(w.got(c), vec![Got::Killed(atom("boom"))]);
    assert!(!w.alive("c"));
    assert_eq!(w.table.len(), 0);
    assert!(w.take_out().is_empty());
}

#[test]
fn trapping_processes_get_exit_mail_and_normal_exits_kill_nobody() {
    let mut w = World::new();
    let (a, a_pid) = w.spawn();
    let (b, b_pid) = w.spawn();
    let (c, _) = w.spawn();
    w.table.set_trap_exit(b, true);
    w.table.link_local(b, a, &a_pid, &mut w.out);
    w.table.link_local(c, a, &a_pid, &mut w.out);
    w.terminate(a, atom("boom"));
    assert_eq!(
        w.got(b),
        vec![Got::Mail(Mail::Exit {
            from: a_pid.clone(),
            reason: atom("boom")
        })]
    );
    assert_eq!(w.got(c), vec![Got::Killed(atom("boom"))]);

    // normal: a non-trapping linked process lives on.
    let (d, _) = w.spawn();
    w.table.link_local(d, b, &b_pid, &mut w.out);
    w.terminate(b, atom("normal"));
    assert!(w.got(d).is_empty());
    assert_eq!(w.table.len(), 1);
}

#[test]
fn linking_to_a_dead_process_is_an_exit_with_noproc() {
    let mut w = World::new();
    let (a, _) = w.spawn();
    let (gone, gone_pid) = w.spawn();
    w.terminate(gone, atom("normal"));
    w.table.set_trap_exit(a, true);
    w.table.link_local(a, gone, &gone_pid, &mut w.out);
    assert_eq!(
        w.got(a),
        vec![Got::Mail(Mail::Exit {
            from: gone_pid,
            reason: atom("noproc")
        })]
    );
}

#[test]
fn an_unlinked_process_survives_and_a_late_exit_is_ignored() {
    let mut w = World::new();
    let (a, _) = w.spawn();
    let (b, b_pid) = w.spawn();
    w.table.link_local(a, b, &b_pid, &mut w.out);
    assert!(w.table.unlink(a, &b_pid, Some(b)));
    assert!(!w.table.unlink(a, &b_pid, Some(b)));
    // An EXIT that crossed the unlink in flight.
    w.table
        .exit_signal(a, b_pid.clone(), atom("boom"), ExitKind::Link, &mut w.out);
    assert!(w.got(a).is_empty());
    w.terminate(b, atom("boom"));
    assert!(w.got(a).is_empty());
    assert_eq!(w.table.len(), 1);
}

#[test]
fn exit_signals_need_no_link_and_kill_cannot_be_trapped() {
    let mut w = World::new();
    let (_, a_pid) = w.spawn();
    let (t, _) = w.spawn();
    w.table.set_trap_exit(t, true);
    w.table
        .exit_signal(t, a_pid.clone(), atom("boom"), ExitKind::Exit2, &mut w.out);
    assert_eq!(
        w.got(t),
        vec![Got::Mail(Mail::Exit {
            from: a_pid.clone(),
            reason: atom("boom")
        })]
    );
    w.table
        .exit_signal(t, a_pid.clone(), atom("kill"), ExitKind::Exit2, &mut w.out);
    assert_eq!(w.got(t), vec![Got::Killed(atom("killed"))]);

    // exit(Self, normal) ends a process; exit(Other, normal) does not.
    let (s, s_pid) = w.spawn();
    w.table.exit_signal(
        s,
        a_pid.clone(),
        atom("normal"),
        ExitKind::Exit2,
        &mut w.out,
    );
    assert!(w.got(s).is_empty());
    w.table
        .exit_signal(s, s_pid, atom("normal"), ExitKind::Exit2, &mut w.out);
    assert_eq!(w.got(s), vec![Got::Killed(atom("normal"))]);
    assert_eq!(w.table.len(), 1);
}

// ---- monitors ----------------------------------------------------------------

#[test]
fn monitors_fire_once_with_the_reason_by_pid_or_by_name() {
    let mut w = World::new();
    let (watcher, _) = w.spawn();
    let (target, target_pid) = w.spawn();
    w.table.register(target, "svc").unwrap();
    let by_pid = w.ids.new_ref();
    let by_name = w.ids.new_ref();
    let dropped = w.ids.new_ref();
    w.table.monitor_local(
        watcher,
        Some(target),
        Some(target_pid.clone()),
        None,
        by_pid.clone(),
    );
    w.table.monitor_local(
        watcher,
        Some(target),
        Some(target_pid.clone()),
        Some(Atom::from("svc")),
        by_name.clone(),
    );
    w.table.monitor_local(
        watcher,
        Some(target),
        Some(target_pid.clone()),
        None,
        dropped.clone(),
    );
    assert!(w.table.demonitor(watcher, &dropped).is_none());
    w.terminate(target, atom("bye"));
    let mut got = w.got(watcher);
    got.sort_by_key(|g| format!("{g:?}"));
    let mut want = vec![
        Got::Mail(Mail::Down {
            reference: by_pid,
            object: target_pid.into(),
            reason: atom("bye"),
        }),
        Got::Mail(Mail::Down {
            reference: by_name,
            object: tuple(vec![atom("svc"), atom(NODE)]),
            reason: atom("bye"),
        }),
    ];
    want.sort_by_key(|g| format!("{g:?}"));
    assert_eq!(got, want);
}

#[test]
fn monitoring_a_missing_process_is_down_noproc_at_once() {
    let mut w = World::new();
    let (watcher, _) = w.spawn();
    let (gone, gone_pid) = w.spawn();
    w.terminate(gone, atom("normal"));
    let r1 = w.ids.new_ref();
    let r2 = w.ids.new_ref();
    w.table.monitor_local(
        watcher,
        Some(gone),
        Some(gone_pid.clone()),
        None,
        r1.clone(),
    );
    w.table
        .monitor_local(watcher, None, None, Some(Atom::from("nobody")), r2.clone());
    assert_eq!(
        w.got(watcher),
        vec![
            Got::Mail(Mail::Down {
                reference: r1,
                object: gone_pid.into(),
                reason: atom("noproc")
            }),
            Got::Mail(Mail::Down {
                reference: r2,
                object: tuple(vec![atom("nobody"), atom(NODE)]),
                reason: atom("noproc")
            }),
        ]
    );
}

// ---- signals for other nodes ---------------------------------------------------

#[test]
fn a_death_tells_remote_links_and_watchers_and_drops_its_own_remote_monitors() {
    let mut w = World::new();
    let (a, a_pid) = w.spawn();
    let remote = remote_pid(5);
    let watcher = remote_pid(6);
    assert!(w.table.link_to_remote(a, remote.clone()));
    let theirs = w.ids.new_ref();
    w.table.monitor_from_remote(
        watcher.clone(),
        &PidOrAtom::Pid(a_pid.clone()),
        Some(a),
        theirs.clone(),
        &mut w.out,
    );
    let ours = w.ids.new_ref();
    assert!(w.table.monitor_remote(
        a,
        Atom::from(PEER),
        PidOrAtom::Pid(remote.clone()),
        ours.clone()
    ));
    assert!(w.take_out().is_empty());
    w.terminate(a, atom("boom"));
    let out = w.take_out();
    assert!(out.iter().all(|r| r.node == Atom::from(PEER)));
    assert!(
        out.iter().any(|r| matches!(&r.message,
        Message::Exit(m) if m.from_pid == a_pid && m.to_pid == remote && m.reason == atom("boom")))
    );
    assert!(out.iter().any(|r| matches!(&r.message,
        Message::MonitorPExit(m) if m.reference == theirs && m.reason == atom("boom"))));
    assert!(out.iter().any(|r| matches!(&r.message,
        Message::DemonitorP(m) if m.reference == ours)));
    assert_eq!(out.len(), 3);
}

#[test]
fn remote_requests_for_missing_processes_are_answered_noproc() {
    let mut w = World::new();
    let from = remote_pid(1);
    let missing = Pid::new(NODE, 77, 0, 1);
    w.table
        .link_from_remote(None, from.clone(), missing.clone(), &mut w.out);
    let reference = w.ids.new_ref();
    w.table.monitor_from_remote(
        from.clone(),
        &PidOrAtom::Atom(Atom::from("nobody")),
        None,
        reference.clone(),
        &mut w.out,
    );
    let out = w.take_out();
    assert!(matches!(&out[0].message,
        Message::Exit(m) if m.to_pid == from && m.reason == atom("noproc")));
    assert!(matches!(&out[1].message,
        Message::MonitorPExit(m) if m.reference == reference && m.reason == atom("noproc")));
}

#[test]
fn a_remote_monitor_fires_with_the_object_it_was_taken_on() {
    let mut w = World::new();
    let (a, _) = w.spawn();
    let remote = remote_pid(3);
    let r1 = w.ids.new_ref();
    let r2 = w.ids.new_ref();
    let peer = Atom::from(PEER);
    w.table
        .monitor_remote(a, peer.clone(), PidOrAtom::Pid(remote.clone()), r1.clone());
    w.table.monitor_remote(
        a,
        peer.clone(),
        PidOrAtom::Atom(Atom::from("svc")),
        r2.clone(),
    );
    w.table.remote_monitor_fired(&peer, &r2, atom("gone"));
    w.table.remote_monitor_fired(&peer, &r2, atom("again"));
    assert_eq!(
        w.got(a),
        vec![Got::Mail(Mail::Down {
            reference: r2,
            object: tuple(vec![atom("svc"), atom(PEER)]),
            reason: atom("gone")
        })]
    );
    // The one left still fires on a lost connection.
    w.table.connection_lost(&peer, &mut w.out);
    assert_eq!(
        w.got(a),
        vec![Got::Mail(Mail::Down {
            reference: r1,
            object: remote.into(),
            reason: atom("noconnection")
        })]
    );
}

#[test]
fn a_lost_connection_breaks_links_fires_monitors_and_node_monitors_once() {
    let mut w = World::new();
    let peer = Atom::from(PEER);
    let (linked, _) = w.spawn();
    let (trapper, _) = w.spawn();
    let (watched, watched_pid) = w.spawn();
    let (node_watcher, _) = w.spawn();
    let (bystander, _) = w.spawn();
    let remote = remote_pid(9);
    w.table.link_to_remote(linked, remote.clone());
    w.table.set_trap_exit(trapper, true);
    w.table.link_to_remote(trapper, remote.clone());
    w.table.link_from_remote(
        Some(watched),
        remote.clone(),
        watched_pid.clone(),
        &mut w.out,
    );
    w.table.monitor_from_remote(
        remote.clone(),
        &PidOrAtom::Pid(watched_pid.clone()),
        Some(watched),
        w.ids.new_ref(),
        &mut w.out,
    );
    w.table.monitor_node(node_watcher, peer.clone());
    w.table.monitor_node(node_watcher, Atom::from("third@h"));

    w.table.connection_lost(&peer, &mut w.out);
    assert_eq!(w.got(linked), vec![Got::Killed(atom("noconnection"))]);
    assert_eq!(
        w.got(trapper),
        vec![Got::Mail(Mail::Exit {
            from: remote.clone(),
            reason: atom("noconnection")
        })]
    );
    // The remote side linked to `watched` is gone: `watched` dies of it too.
    assert_eq!(w.got(watched), vec![Got::Killed(atom("noconnection"))]);
    assert_eq!(
        w.got(node_watcher),
        vec![Got::Mail(Mail::NodeDown { node: PEER.into() })]
    );
    assert!(w.got(bystander).is_empty());
    // Nothing goes back to the lost node: its links and watchers were
    // dropped before anyone died.
    assert!(w.take_out().iter().all(|r| r.node != peer));

    // Node monitors are one shot.
    w.table.connection_lost(&peer, &mut w.out);
    assert!(w.got(node_watcher).is_empty());
    w.table.connection_lost(&Atom::from("third@h"), &mut w.out);
    assert_eq!(
        w.got(node_watcher),
        vec![Got::Mail(Mail::NodeDown {
            node: "third@h".into()
        })]
    );
}

/// Notifications about relations a connection made go only on a connection
/// that is up; a local process's own LINK or MONITOR_P may open one.
#[test]
fn only_a_local_processs_own_requests_may_open_a_connection() {
    let a = Pid::new("a@h", 1, 0, 1);
    let b = Pid::new("b@h", 2, 0, 1);
    let reference = eetf::Reference {
        node: Atom::from("a@h"),
        id: vec![1, 2, 3],
        creation: 1,
    };
    let remote = |message| Remote {
        node: Atom::from("b@h"),
        message,
    };
    for message in [
        Message::exit(a.clone(), b.clone(), atom("boom")),
        Message::monitor_p_exit(
            PidOrAtom::Pid(a.clone()),
            b.clone(),
            reference.clone(),
            atom("boom"),
        ),
        Message::demonitor_p(a.clone(), PidOrAtom::Pid(b.clone()), reference.clone()),
        Message::unlink_id_ack(Term::from(eetf::FixInteger::from(1)), a.clone(), b.clone()),
    ] {
        assert!(remote(message).needs_existing_connection());
    }
    for message in [
        Message::link(a.clone(), b.clone()),
        Message::monitor_p(a.clone(), PidOrAtom::Pid(b.clone()), reference),
        Message::exit2(a, b, atom("kill")),
    ] {
        assert!(!remote(message).needs_existing_connection());
    }
}

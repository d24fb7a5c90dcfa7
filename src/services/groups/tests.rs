//! The hub core and the wire format, in memory: lost, repeated and
//! reordered messages, authorities and nodes lost, peers coming back,
//! bounds.

use super::core::{Action, Dest, HubCore, JoinRefused, Limits, MonitorId, RETRY};
use super::wire::{Group, GroupMsg, GroupMsgError, Op, MAX_GROUP_BYTES, MAX_PIDS};
use crate::term::{atom, binary, int, list, tuple, Pid, Term};
use std::time::Duration;
use tokio::time::Instant;

const ME: &str = "hub@a";
const S: &str = "eq_pg";

fn pid(node: &str, id: u32) -> Pid {
    Pid::new(node, id, 0, 1)
}

fn group(name: &str) -> Group {
    Group::new(atom(name)).expect("a group")
}

fn hub(peers: &[&str], limits: Limits) -> (HubCore, Instant) {
    let now = Instant::now();
    let peers: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
    (HubCore::new(pid(ME, 1), ME, &peers, limits, now), now)
}

fn drain(core: &mut HubCore) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

fn sync(from: &Pid, seq: u64, groups: &[(&str, Vec<Pid>)]) -> GroupMsg {
    GroupMsg::Sync {
        scope: S.into(),
        from: from.clone(),
        seq,
        groups: groups.iter().map(|(g, p)| (group(g), p.clone())).collect(),
    }
}

fn delta(op: Op, from: &Pid, seq: u64, g: &str, pids: Vec<Pid>) -> GroupMsg {
    GroupMsg::Delta {
        op,
        scope: S.into(),
        from: from.clone(),
        seq,
        group: group(g),
        pids,
    }
}

fn members(core: &HubCore, g: &str) -> Vec<Pid> {
    core.members(S, &group(g).key).to_vec()
}

/// The monitor id the core asked for on `target`.
fn monitor_of(actions: &[Action], target: &Dest) -> MonitorId {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Monitor(id, t) if t == target => Some(*id),
            _ => None,
        })
        .expect("a monitor")
}

fn updates_to(actions: &[Action], sub: &Pid) -> Vec<(u64, Op, Vec<Pid>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(Dest::Pid(p), GroupMsg::Update { seq, op, pids, .. }) if p == sub => {
                Some((*seq, *op, pids.clone()))
            }
            _ => None,
        })
        .collect()
}

fn resyncs(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Send(_, GroupMsg::Resync { .. })))
        .count()
}

#[test]
fn a_sync_then_deltas_reach_subscribers_numbered_and_in_order() {
    let (mut core, now) = hub(&[], Limits::default());
    let auth = pid("beam@b", 9);
    let (p1, p2) = (pid("beam@b", 10), pid("beam@b", 11));
    let sub = pid("beam@c", 5);
    core.handle_msg(
        GroupMsg::Subscribe {
            scope: S.into(),
            subscriber: sub.clone(),
        },
        now,
    );
    let actions = drain(&mut core);
    assert!(actions.iter().any(|a| matches!(a,
        Action::Send(Dest::Pid(p), GroupMsg::Snapshot { seq: 0, groups, .. }) if *p == sub && groups.is_empty())));
    core.handle_msg(sync(&auth, 4, &[("g", vec![p1.clone()])]), now);
    core.handle_msg(
        delta(Op::Join, &auth, 5, "g", vec![p2.clone(), p1.clone()]),
        now,
    );
    core.handle_msg(delta(Op::Leave, &auth, 6, "g", vec![p1.clone()]), now);
    let actions = drain(&mut core);
    assert!(matches!(actions[0], Action::Monitor(_, Dest::Pid(ref p)) if *p == auth));
    assert_eq!(
        updates_to(&actions, &sub),
        vec![
            (1, Op::Join, vec![p1.clone()]),
            (2, Op::Join, vec![p2.clone(), p1.clone()]),
            (3, Op::Leave, vec![p1.clone()]),
        ]
    );
    // pg's order: the newest joins first, a leave removes one occurrence.
    assert_eq!(members(&core, "g"), vec![p2.clone(), p1.clone()]);
    // A subscriber on the members' own node is sent none of them: its
    // scope server knew first.
    let own = pid("beam@b", 77);
    core.handle_msg(
        GroupMsg::Subscribe {
            scope: S.into(),
            subscriber: own.clone(),
        },
        now,
    );
    core.handle_msg(delta(Op::Join, &auth, 7, "g", vec![pid("beam@b", 13)]), now);
    let actions = drain(&mut core);
    assert!(actions.iter().any(|a| matches!(a,
        Action::Send(Dest::Pid(p), GroupMsg::Snapshot { groups, .. }) if *p == own && groups.is_empty())));
    assert!(updates_to(&actions, &own).is_empty());
    assert_eq!(
        updates_to(&actions, &sub),
        vec![(4, Op::Join, vec![pid("beam@b", 13)])]
    );
    core.handle_msg(
        delta(Op::Leave, &auth, 8, "g", vec![pid("beam@b", 13)]),
        now,
    );
    drain(&mut core);
    // A later subscriber gets the same state as a snapshot.
    let late = pid("beam@d", 5);
    core.handle_msg(
        GroupMsg::Subscribe {
            scope: S.into(),
            subscriber: late.clone(),
        },
        now,
    );
    let snap = drain(&mut core).into_iter().find_map(|a| match a {
        Action::Send(Dest::Pid(p), GroupMsg::Snapshot { seq, groups, .. }) if p == late => {
            Some((seq, groups))
        }
        _ => None,
    });
    let (seq, groups) = snap.expect("a snapshot");
    assert_eq!(seq, 0, "numbered per subscriber");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].1, vec![p2, p1]);
}

#[test]
fn a_lost_delta_asks_a_resync_and_the_sync_repairs_the_view() {
    let (mut core, now) = hub(&[], Limits::default());
    let auth = pid("beam@b", 9);
    let (p1, p2, p3) = (pid("beam@b", 10), pid("beam@b", 11), pid("beam@b", 12));
    core.handle_msg(sync(&auth, 0, &[]), now);
    core.handle_msg(delta(Op::Join, &auth, 1, "g", vec![p1.clone()]), now);
    // Delta 2 (join p2) is lost; 3 arrives: a gap.
    core.handle_msg(delta(Op::Join, &auth, 3, "g", vec![p3.clone()]), now);
    // Later deltas wait for the sync.
    core.handle_msg(delta(Op::Leave, &auth, 4, "g", vec![p1.clone()]), now);
    let actions = drain(&mut core);
    assert_eq!(resyncs(&actions), 1, "{actions:?}");
    assert_eq!(members(&core, "g"), vec![p1.clone()]);
    // The authority answers with its state as of 4.
    core.handle_msg(sync(&auth, 4, &[("g", vec![p3.clone(), p2.clone()])]), now);
    let mut got = members(&core, "g");
    got.sort_by_key(|p| p.id);
    assert_eq!(got, vec![p2, p3.clone()]);
    // Repeated and reordered old deltas change nothing.
    core.handle_msg(delta(Op::Join, &auth, 3, "g", vec![p3.clone()]), now);
    core.handle_msg(delta(Op::Leave, &auth, 2, "g", vec![p3]), now);
    assert_eq!(members(&core, "g").len(), 2);
    assert_eq!(resyncs(&drain(&mut core)), 0);
}

#[test]
fn a_delta_of_an_unknown_stream_asks_a_sync_first() {
    let (mut core, now) = hub(&[], Limits::default());
    let auth = pid("beam@b", 9);
    core.handle_msg(delta(Op::Join, &auth, 7, "g", vec![pid("beam@b", 10)]), now);
    let actions = drain(&mut core);
    assert_eq!(resyncs(&actions), 1);
    monitor_of(&actions, &Dest::Pid(auth.clone()));
    assert!(members(&core, "g").is_empty());
    core.handle_msg(sync(&auth, 7, &[("g", vec![pid("beam@b", 10)])]), now);
    core.handle_msg(delta(Op::Join, &auth, 8, "g", vec![pid("beam@b", 11)]), now);
    assert_eq!(members(&core, "g").len(), 2);
}

#[test]
fn an_authority_lost_takes_every_member_it_reported_at_once() {
    let (mut core, now) = hub(&[], Limits::default());
    let (b, c) = (pid("beam@b", 9), pid("beam@c", 9));
    let sub = pid("beam@d", 5);
    core.handle_msg(
        GroupMsg::Subscribe {
            scope: S.into(),
            subscriber: sub.clone(),
        },
        now,
    );
    core.handle_msg(
        sync(
            &b,
            0,
            &[
                ("g", vec![pid("beam@b", 1), pid("beam@b", 2)]),
                ("h", vec![pid("beam@b", 1)]),
            ],
        ),
        now,
    );
    core.handle_msg(sync(&c, 0, &[("g", vec![pid("beam@c", 1)])]), now);
    let actions = drain(&mut core);
    let mon_b = monitor_of(&actions, &Dest::Pid(b.clone()));
    // `noconnection` or an exit: the same for the hub.
    core.handle_down(mon_b, now);
    assert_eq!(members(&core, "g"), vec![pid("beam@c", 1)]);
    assert!(members(&core, "h").is_empty());
    let updates = updates_to(&drain(&mut core), &sub);
    assert_eq!(updates.len(), 2, "one leave per group: {updates:?}");
    assert!(updates.iter().all(|(_, op, _)| *op == Op::Leave));
    // A message the lost authority sent before it went is stale.
    core.handle_msg(delta(Op::Join, &b, 1, "g", vec![pid("beam@b", 3)]), now);
    assert_eq!(members(&core, "g"), vec![pid("beam@c", 1)]);
}

#[test]
fn rust_members_are_monitored_pushed_to_peers_and_leave_everything_on_exit() {
    let (mut core, now) = hub(&["hub@b", ME], Limits::default());
    assert_eq!(core.poll_timeout(), Some(now));
    core.handle_timeout(now);
    let actions = drain(&mut core);
    let peer_mon = monitor_of(&actions, &Dest::Hub("hub@b".into()));
    let r = pid(ME, 50);
    core.local_join(S, group("g"), std::slice::from_ref(&r))
        .expect("join");
    core.local_join(S, group("g"), std::slice::from_ref(&r))
        .expect("join twice");
    core.local_join(S, group("h"), std::slice::from_ref(&r))
        .expect("join h");
    let actions = drain(&mut core);
    let r_mon = monitor_of(&actions, &Dest::Pid(r.clone()));
    let monitors = actions
        .iter()
        .filter(|a| matches!(a, Action::Monitor(..)))
        .count();
    assert_eq!(monitors, 1, "one monitor per member");
    let pushed: Vec<u64> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(Dest::Hub(n), GroupMsg::Delta { seq, .. }) if n == "hub@b" => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(pushed, vec![1, 2, 3]);
    assert_eq!(members(&core, "g"), vec![r.clone(), r.clone()]);
    // Leaves count joins; one not joined is `not_joined`.
    assert!(core.local_leave(S, &group("g"), std::slice::from_ref(&r)));
    assert!(!core.local_leave(S, &group("nope"), std::slice::from_ref(&r)));
    assert_eq!(members(&core, "g"), vec![r.clone()]);
    drain(&mut core);
    // Its exit: it leaves both groups, and the peer is told.
    core.handle_down(r_mon, now);
    assert!(members(&core, "g").is_empty() && members(&core, "h").is_empty());
    let leaves = drain(&mut core)
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Send(Dest::Hub(_), GroupMsg::Delta { op: Op::Leave, .. })
            )
        })
        .count();
    assert_eq!(leaves, 2);
    // The peer hub goes: tried again after RETRY, and sent a sync then.
    core.local_join(S, group("k"), &[pid(ME, 51)])
        .expect("join");
    core.handle_down(peer_mon, now);
    drain(&mut core);
    let later = now + Duration::from_secs(3);
    assert_eq!(core.poll_timeout(), Some(now + RETRY));
    core.handle_timeout(later);
    let actions = drain(&mut core);
    monitor_of(&actions, &Dest::Hub("hub@b".into()));
    assert!(actions.iter().any(|a| matches!(a,
        Action::Send(Dest::Hub(n), GroupMsg::Sync { seq: 7, groups, .. }) if n == "hub@b" && groups.len() == 1)),
        "{actions:?}");
}

#[test]
fn a_peer_asking_a_resync_gets_our_members() {
    let (mut core, now) = hub(&[], Limits::default());
    core.local_join(S, group("g"), &[pid(ME, 50)])
        .expect("join");
    drain(&mut core);
    let peer = pid("hub@b", 1);
    core.handle_msg(
        GroupMsg::Resync {
            scope: S.into(),
            hub: peer.clone(),
        },
        now,
    );
    let actions = drain(&mut core);
    assert!(matches!(&actions[..],
        [Action::Send(Dest::Pid(p), GroupMsg::Sync { seq: 1, groups, .. })] if *p == peer && groups.len() == 1));
}

#[test]
fn bounds_refuse_and_never_grow_past_them() {
    let limits = Limits {
        members: 3,
        groups: 2,
        ..Limits::default()
    };
    let (mut core, now) = hub(&[], limits);
    assert_eq!(
        core.local_join(S, group("g"), &[pid("other@x", 1)]),
        Err(JoinRefused::NotLocal(pid("other@x", 1)))
    );
    core.local_join(S, group("g"), &[pid(ME, 1), pid(ME, 2)])
        .expect("join");
    assert_eq!(
        core.local_join(S, group("g"), &[pid(ME, 3), pid(ME, 4)]),
        Err(JoinRefused::Full("members"))
    );
    let auth = pid("beam@b", 9);
    core.handle_msg(sync(&auth, 0, &[("h", vec![pid("beam@b", 1)])]), now);
    // A third group: refused; the stream is dropped, the authority told.
    core.handle_msg(
        sync(
            &auth,
            1,
            &[("x", vec![pid("beam@b", 1)]), ("y", vec![pid("beam@b", 2)])],
        ),
        now,
    );
    let actions = drain(&mut core);
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Send(Dest::Pid(p), GroupMsg::Refused { .. }) if *p == auth)));
    assert!(members(&core, "h").is_empty());
    assert_eq!(core.status().members, 2);
    // Subscribers past their bound are ignored.
    let limits = Limits {
        subscribers: 1,
        ..Limits::default()
    };
    let (mut core, now) = hub(&[], limits);
    core.handle_msg(
        GroupMsg::Subscribe {
            scope: S.into(),
            subscriber: pid("b@b", 1),
        },
        now,
    );
    core.handle_msg(
        GroupMsg::Subscribe {
            scope: S.into(),
            subscriber: pid("c@c", 1),
        },
        now,
    );
    assert_eq!(core.status().subscribers, 1);
}

#[test]
fn every_message_encodes_and_decodes_to_itself() {
    let from = pid("beam@b", 9);
    let msgs = vec![
        sync(
            &from,
            u64::MAX,
            &[("g", vec![pid("a@a", 1)]), ("h", vec![])],
        ),
        delta(Op::Join, &from, 1, "g", vec![pid("a@a", 1), pid("a@a", 1)]),
        delta(Op::Leave, &from, 2, "g", vec![]),
        GroupMsg::Resync {
            scope: S.into(),
            hub: from.clone(),
        },
        GroupMsg::Refused {
            scope: S.into(),
            hub: from.clone(),
            reason: "members".into(),
        },
        GroupMsg::Subscribe {
            scope: S.into(),
            subscriber: from.clone(),
        },
        GroupMsg::Snapshot {
            scope: S.into(),
            hub: from.clone(),
            seq: 3,
            groups: vec![],
        },
        GroupMsg::Update {
            scope: S.into(),
            hub: from.clone(),
            seq: 4,
            op: Op::Leave,
            group: Group::new(tuple(vec![atom("g"), int(2)])).expect("group"),
            pids: vec![pid("a@a", 2)],
        },
    ];
    for msg in msgs {
        assert_eq!(GroupMsg::decode(&msg.encode()), Ok(msg));
    }
}

#[test]
fn bad_messages_are_errors_not_panics() {
    let from = Term::from(pid("beam@b", 9));
    let e = |kind: &str, rest: Vec<Term>| {
        let mut t = vec![atom("eq_groups"), atom(kind)];
        t.extend(rest);
        GroupMsg::decode(&tuple(t))
    };
    assert_eq!(GroupMsg::decode(&atom("x")), Err(GroupMsgError::NotGroups));
    assert_eq!(
        GroupMsg::decode(&tuple(vec![atom("other"), atom("sync")])),
        Err(GroupMsgError::NotGroups)
    );
    assert_eq!(e("sync", vec![]), Err(GroupMsgError::Malformed));
    assert_eq!(
        e(
            "join",
            vec![atom(S), from.clone(), int(-1), atom("g"), list(vec![])]
        ),
        Err(GroupMsgError::Malformed)
    );
    assert_eq!(
        e(
            "join",
            vec![
                atom(S),
                from.clone(),
                int(1),
                atom("g"),
                list(vec![atom("notapid")])
            ]
        ),
        Err(GroupMsgError::Malformed)
    );
    let big = binary(vec![0u8; MAX_GROUP_BYTES + 1]);
    assert_eq!(
        e(
            "join",
            vec![atom(S), from.clone(), int(1), big, list(vec![])]
        ),
        Err(GroupMsgError::TooLarge("group"))
    );
    let many = list(vec![from.clone(); MAX_PIDS + 1]);
    assert_eq!(
        e(
            "leave",
            vec![atom(S), from.clone(), int(1), atom("g"), many]
        ),
        Err(GroupMsgError::TooLarge("pids"))
    );
    assert_eq!(
        e(
            "update",
            vec![
                atom(S),
                from,
                int(1),
                atom("sideways"),
                atom("g"),
                list(vec![])
            ]
        ),
        Err(GroupMsgError::Malformed)
    );
}

#[test]
fn a_hub_that_announces_itself_gets_our_members_too() {
    let (mut core, now) = hub(
        &[],
        Limits {
            peers: 1,
            ..Limits::default()
        },
    );
    core.local_join(S, group("g"), &[pid(ME, 50)])
        .expect("join");
    drain(&mut core);
    assert_eq!(core.poll_timeout(), None);
    core.set_connected(["hub@b".to_string(), "hub@c".to_string()]);
    core.handle_msg(
        GroupMsg::Peer {
            hub: pid("hub@b", 1),
        },
        now,
    );
    // Our own announcement comes back: ignored; a peer past the bound too.
    core.handle_msg(GroupMsg::Peer { hub: pid(ME, 1) }, now);
    core.handle_msg(
        GroupMsg::Peer {
            hub: pid("hub@c", 1),
        },
        now,
    );
    assert_eq!(core.poll_timeout(), Some(now));
    core.handle_timeout(now);
    let actions = drain(&mut core);
    monitor_of(&actions, &Dest::Hub("hub@b".into()));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Send(Dest::Hub(n), GroupMsg::Peer { .. }) if n == "hub@b")));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Send(Dest::Hub(n), GroupMsg::Sync { .. }) if n == "hub@b")));
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::Send(Dest::Hub(n), _) if n == "hub@c")));
}

#[test]
fn streams_per_authority_are_bounded_by_the_scopes_bound() {
    let limits = Limits {
        scopes: 3,
        ..Limits::default()
    };
    let (mut core, now) = hub(&[], limits);
    let a = pid("beam@x", 7);
    for i in 0..10 {
        let scope = format!("s{i}");
        core.handle_msg(
            GroupMsg::Sync {
                scope: scope.clone(),
                from: a.clone(),
                seq: 0,
                groups: vec![],
            },
            now,
        );
        core.handle_msg(
            GroupMsg::Delta {
                op: Op::Join,
                scope: format!("d{i}"),
                from: a.clone(),
                seq: 5,
                group: group("g"),
                pids: vec![],
            },
            now,
        );
    }
    assert_eq!(core.status().streams, 3);
    let refused = drain(&mut core)
        .iter()
        .filter(|a| matches!(a, Action::Send(_, GroupMsg::Refused { .. })))
        .count();
    assert_eq!(refused, 17);
}

#[test]
fn a_subscriber_cannot_register_more_scopes_than_the_bound() {
    let limits = Limits {
        scopes: 2,
        ..Limits::default()
    };
    let (mut core, now) = hub(&[], limits);
    let sub = pid("beam@x", 9);
    for i in 0..5 {
        core.handle_msg(
            GroupMsg::Subscribe {
                scope: format!("s{i}"),
                subscriber: sub.clone(),
            },
            now,
        );
    }
    // Subscribing again to a known scope is still answered.
    core.handle_msg(
        GroupMsg::Subscribe {
            scope: "s0".into(),
            subscriber: sub.clone(),
        },
        now,
    );
    let actions = drain(&mut core);
    let snapshots = actions
        .iter()
        .filter(|a| matches!(a, Action::Send(_, GroupMsg::Snapshot { .. })))
        .count();
    let refused = actions
        .iter()
        .filter(|a| matches!(a, Action::Send(Dest::Pid(p), GroupMsg::Refused { .. }) if *p == sub))
        .count();
    assert_eq!((snapshots, refused), (3, 3));
}

#[test]
fn a_subscriber_past_the_limit_is_answered_refused() {
    let limits = Limits {
        subscribers: 1,
        ..Limits::default()
    };
    let (mut core, now) = hub(&[], limits);
    for id in [1, 2] {
        core.handle_msg(
            GroupMsg::Subscribe {
                scope: S.into(),
                subscriber: pid("beam@x", id),
            },
            now,
        );
    }
    let actions = drain(&mut core);
    assert!(actions.iter().any(|a| matches!(a,
        Action::Send(Dest::Pid(p), GroupMsg::Refused { reason, .. })
            if *p == pid("beam@x", 2) && reason == "subscribers")));
}

#[test]
fn pids_of_another_node_than_the_authority_are_dropped() {
    let (mut core, now) = hub(&[], Limits::default());
    let a = pid("beam@x", 7);
    core.handle_msg(
        sync(&a, 0, &[("g", vec![pid("beam@x", 20), pid("beam@y", 21)])]),
        now,
    );
    core.handle_msg(
        delta(
            Op::Join,
            &a,
            1,
            "g",
            vec![pid("beam@y", 22), pid("beam@x", 23)],
        ),
        now,
    );
    let mut got = members(&core, "g");
    got.sort_by_key(|p| p.id);
    assert_eq!(got, vec![pid("beam@x", 20), pid("beam@x", 23)]);
}

#[test]
fn a_peer_is_accepted_only_from_a_connected_node() {
    let (mut core, now) = hub(&[], Limits::default());
    core.local_join(S, group("g"), &[pid(ME, 50)])
        .expect("join");
    drain(&mut core);
    core.set_connected(["hub@b".to_string()]);
    core.handle_msg(
        GroupMsg::Peer {
            hub: pid("far@away", 1),
        },
        now,
    );
    assert_eq!(core.poll_timeout(), None);
    core.handle_msg(
        GroupMsg::Peer {
            hub: pid("hub@b", 1),
        },
        now,
    );
    assert_eq!(core.poll_timeout(), Some(now));
}

#[test]
fn announced_peers_are_forgotten_when_down_and_configured_ones_back_off() {
    let limits = Limits {
        peers: 2,
        ..Limits::default()
    };
    let (mut core, mut now) = hub(&["hub@conf"], limits);
    core.set_connected((0..5).map(|i| format!("hub@e{i}")));
    for i in 0..5 {
        // Each announced hub comes, is tried, and goes: it never takes a
        // place for good, so a new hub is always accepted.
        let node = format!("hub@e{i}");
        core.handle_msg(GroupMsg::Peer { hub: pid(&node, 1) }, now);
        core.handle_timeout(now);
        let actions = drain(&mut core);
        let id = monitor_of(&actions, &Dest::Hub(node.clone()));
        core.handle_down(id, now);
        let conf = actions.iter().find_map(|a| match a {
            Action::Monitor(id, Dest::Hub(n)) if n == "hub@conf" => Some(*id),
            _ => None,
        });
        if let Some(id) = conf {
            core.handle_down(id, now);
        }
    }
    // Only the configured peer is left, waiting longer after each failure.
    let wait = core.poll_timeout().expect("a retry") - now;
    assert_eq!(wait, RETRY);
    let mut waits = vec![];
    for _ in 0..8 {
        now = core.poll_timeout().expect("a retry");
        core.handle_timeout(now);
        let id = monitor_of(&drain(&mut core), &Dest::Hub("hub@conf".into()));
        core.handle_down(id, now);
        waits.push(core.poll_timeout().expect("a retry") - now);
    }
    assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
    assert_eq!(*waits.last().expect("waits"), Duration::from_secs(5));
}

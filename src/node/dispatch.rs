//! What the node does with each control message a peer sends.
//!
//! Signals are checked as the BEAM checks them (erts `dist.c`): the sender
//! of a link, unlink, exit, monitor, demonitor, spawn request or
//! `SEND_SENDER` must be a process of the peer that sent it, or the
//! message is invalid and the connection is dropped. Otherwise a peer could
//! tie links and monitors to a third node's pids, which outlive its
//! connection and, on an exit, make us dial a node only it named.
//! Messages we refuse without dropping the peer at once go through
//! [`refusals`]: a few log lines (with [`Brief`] terms), then the drop.

pub(super) mod refusals;

use super::NodeInner;
use crate::proc_table::mailbox::Mail;
use crate::proc_table::table::ExitKind;
use crate::term::{Atom, Brief, Pid, Term};
use erl_dist::message::Message;
use erl_dist::term::PidOrAtom;
use refusals::Verdict;
use std::sync::Arc;
use std::time::Instant;

pub(super) fn dispatch(node: &Arc<NodeInner>, peer: &Atom, message: Message) {
    use Message as M;
    if let Some((op, sender)) = foreign_sender(peer, &message) {
        // As the BEAM does with an invalid message: the connection goes.
        tracing::warn!(
            peer = %peer.name,
            op,
            sender_node = %Brief(&Term::from(sender.node.clone())),
            "control message names a sender on another node; disconnecting"
        );
        super::connection::close_peer(node, peer, "invalid control message");
        return;
    }
    // Messages that leave state tied to the peer: none once its connection
    // is gone (messages still buffered behind one that dropped it).
    if matches!(
        message,
        M::Link(_) | M::MonitorP(_) | M::SpawnRequest(_) | M::SpawnRequestTt(_)
    ) && node.peers.state(peer) != super::peers::State::Up
    {
        return;
    }
    match message {
        M::Send(m) => deliver_to_pid(node, &m.to_pid, m.message),
        M::SendTt(m) => deliver_to_pid(node, &m.to_pid, m.message),
        M::SendSender(m) => deliver_to_pid(node, &m.to_pid, m.message),
        M::SendSenderTt(m) => deliver_to_pid(node, &m.to_pid, m.message),
        M::RegSend(m) => deliver_to_name(node, &m.to_name, m.message),
        M::RegSendTt(m) => deliver_to_name(node, &m.to_name, m.message),
        M::AliasSend(m) => {
            node.table()
                .deliver_to_alias(&m.alias, Mail::Message(m.message));
        }
        M::AliasSendTt(m) => {
            node.table()
                .deliver_to_alias(&m.alias, Mail::Message(m.message));
        }
        M::Link(m) => {
            let mut out = Vec::new();
            let target = node.local_id(&m.to_pid);
            node.table()
                .link_from_remote(target, m.from_pid, m.to_pid, &mut out);
            node.send_remotes(out);
        }
        M::Unlink(m) => unlink(node, &m.from_pid, &m.to_pid),
        M::UnlinkId(m) => {
            unlink(node, &m.from_pid, &m.to_pid);
            node.send_if_connected(peer, Message::unlink_id_ack(m.id, m.to_pid, m.from_pid));
        }
        M::UnlinkIdAck(_) => {}
        M::Exit(m) => exit(node, m.to_pid, m.from_pid, m.reason, ExitKind::Link),
        M::ExitTt(m) => exit(node, m.to_pid, m.from_pid, m.reason, ExitKind::Link),
        M::PayloadExit(m) => exit(node, m.to_pid, m.from_pid, m.reason, ExitKind::Link),
        M::PayloadExitTt(m) => exit(node, m.to_pid, m.from_pid, m.reason, ExitKind::Link),
        M::Exit2(m) => exit(node, m.to_pid, m.from_pid, m.reason, ExitKind::Exit2),
        M::Exit2Tt(m) => exit(node, m.to_pid, m.from_pid, m.reason, ExitKind::Exit2),
        M::PayloadExit2(m) => exit(node, m.to_pid, m.from_pid, m.reason, ExitKind::Exit2),
        M::PayloadExit2Tt(m) => exit(node, m.to_pid, m.from_pid, m.reason, ExitKind::Exit2),
        M::MonitorP(m) => {
            let target = resolve(node, &m.to_proc);
            let mut out = Vec::new();
            node.table()
                .monitor_from_remote(m.from_pid, &m.to_proc, target, m.reference, &mut out);
            node.send_remotes(out);
        }
        M::DemonitorP(m) => {
            let target = resolve(node, &m.to_proc);
            node.table().demonitor_from_remote(target, &m.reference);
        }
        M::MonitorPExit(m) => node
            .table()
            .remote_monitor_fired(peer, &m.reference, m.reason),
        M::PayloadMonitorPExit(m) => {
            node.table()
                .remote_monitor_fired(peer, &m.reference, m.reason)
        }
        M::SpawnRequest(m) => super::spawn_hook::dispatch(node, peer, m),
        M::SpawnRequestTt(m) => super::spawn_hook::dispatch(
            node,
            peer,
            erl_dist::message::SpawnRequest {
                req_id: m.req_id,
                from_pid: m.from_pid,
                group_leader: m.group_leader,
                mfa: m.mfa,
                opt_list: m.opt_list,
                arg_list: m.arg_list,
            },
        ),
        M::NodeLink(_) | M::GroupLeader(_) | M::Tick => {}
        other => {
            // We never spawn on a peer, so a conforming peer never sends a
            // SPAWN_REPLY; the rest are ops erl_dist knows and we do not use.
            refused(
                node,
                peer,
                op_name(&other),
                "unsupported control message ignored",
            );
        }
    }
}

/// A message from `peer` we refuse without acting on it: logged within the
/// peer's budget, and the peer dropped once it has refused too many.
fn refused(node: &Arc<NodeInner>, peer: &Atom, op: &'static str, what: &'static str) {
    match node.peers.refuse(peer, Instant::now()) {
        Verdict::Log { suppressed } => {
            tracing::warn!(peer = %peer.name, op, suppressed, "{what}")
        }
        Verdict::Quiet => {}
        Verdict::Drop => {
            tracing::warn!(
                peer = %peer.name,
                op,
                max = refusals::MAX_REFUSED,
                window_s = refusals::WINDOW.as_secs(),
                "peer keeps sending messages we refuse; disconnecting"
            );
            super::connection::close_peer(node, peer, "too many refused messages");
        }
    }
}

/// The operation and sender of a signal whose sender is not a process of
/// `peer` (the node at the other end of the connection it came on). Not
/// `GROUP_LEADER`: its "sender" is the new group leader, which may live on
/// any node (and we ignore the message).
fn foreign_sender<'m>(peer: &Atom, message: &'m Message) -> Option<(&'static str, &'m Pid)> {
    use Message as M;
    let sender = match message {
        M::Link(m) => &m.from_pid,
        M::Unlink(m) => &m.from_pid,
        M::UnlinkId(m) => &m.from_pid,
        M::UnlinkIdAck(m) => &m.from_pid,
        M::Exit(m) => &m.from_pid,
        M::ExitTt(m) => &m.from_pid,
        M::PayloadExit(m) => &m.from_pid,
        M::PayloadExitTt(m) => &m.from_pid,
        M::Exit2(m) => &m.from_pid,
        M::Exit2Tt(m) => &m.from_pid,
        M::PayloadExit2(m) => &m.from_pid,
        M::PayloadExit2Tt(m) => &m.from_pid,
        M::MonitorP(m) => &m.from_pid,
        M::DemonitorP(m) => &m.from_pid,
        M::MonitorPExit(m) => match &m.from_proc {
            PidOrAtom::Pid(p) => p,
            PidOrAtom::Atom(_) => return None,
        },
        M::PayloadMonitorPExit(m) => match &m.from_proc {
            PidOrAtom::Pid(p) => p,
            PidOrAtom::Atom(_) => return None,
        },
        M::SendSender(m) => &m.from_pid,
        M::SendSenderTt(m) => &m.from_pid,
        M::SpawnRequest(m) => &m.from_pid,
        M::SpawnRequestTt(m) => &m.from_pid,
        _ => return None,
    };
    (sender.node != *peer).then(|| (op_name(message), sender))
}

/// The operation's name, for log lines (bounded, unlike the message).
fn op_name(message: &Message) -> &'static str {
    use Message as M;
    match message {
        M::Link(_) => "LINK",
        M::Send(_) => "SEND",
        M::Exit(_) => "EXIT",
        M::Unlink(_) => "UNLINK",
        M::NodeLink(_) => "NODE_LINK",
        M::RegSend(_) => "REG_SEND",
        M::GroupLeader(_) => "GROUP_LEADER",
        M::Exit2(_) => "EXIT2",
        M::SendTt(_) => "SEND_TT",
        M::ExitTt(_) => "EXIT_TT",
        M::RegSendTt(_) => "REG_SEND_TT",
        M::Exit2Tt(_) => "EXIT2_TT",
        M::MonitorP(_) => "MONITOR_P",
        M::DemonitorP(_) => "DEMONITOR_P",
        M::MonitorPExit(_) => "MONITOR_P_EXIT",
        M::SendSender(_) => "SEND_SENDER",
        M::SendSenderTt(_) => "SEND_SENDER_TT",
        M::PayloadExit(_) => "PAYLOAD_EXIT",
        M::PayloadExitTt(_) => "PAYLOAD_EXIT_TT",
        M::PayloadExit2(_) => "PAYLOAD_EXIT2",
        M::PayloadExit2Tt(_) => "PAYLOAD_EXIT2_TT",
        M::PayloadMonitorPExit(_) => "PAYLOAD_MONITOR_P_EXIT",
        M::SpawnRequest(_) => "SPAWN_REQUEST",
        M::SpawnRequestTt(_) => "SPAWN_REQUEST_TT",
        M::SpawnReply(_) => "SPAWN_REPLY",
        M::SpawnReplyTt(_) => "SPAWN_REPLY_TT",
        M::UnlinkId(_) => "UNLINK_ID",
        M::UnlinkIdAck(_) => "UNLINK_ID_ACK",
        M::AliasSend(_) => "ALIAS_SEND",
        M::AliasSendTt(_) => "ALIAS_SEND_TT",
        M::Tick => "TICK",
    }
}

fn deliver_to_pid(node: &Arc<NodeInner>, to: &Pid, message: Term) {
    if let Some(id) = node.local_id(to) {
        node.table().deliver(id, Mail::Message(message));
    }
}

fn deliver_to_name(node: &Arc<NodeInner>, name: &Atom, message: Term) {
    // As on the BEAM, a message to a name nobody holds is dropped silently.
    node.table().deliver_to_name(name, Mail::Message(message));
}

/// The local process a MONITOR_P or DEMONITOR_P names.
fn resolve(node: &Arc<NodeInner>, target: &PidOrAtom) -> Option<u64> {
    match target {
        PidOrAtom::Pid(pid) => node.local_id(pid),
        PidOrAtom::Atom(name) => node.table().whereis(name).map(|(id, _)| id),
    }
}

fn unlink(node: &Arc<NodeInner>, from: &Pid, to: &Pid) {
    if let Some(id) = node.local_id(to) {
        node.table().unlink(id, from, None);
    }
}

fn exit(node: &Arc<NodeInner>, to: Pid, from: Pid, reason: Term, kind: ExitKind) {
    let Some(id) = node.local_id(&to) else { return };
    let mut out = Vec::new();
    node.table().exit_signal(id, from, reason, kind, &mut out);
    node.send_remotes(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_must_come_from_the_peers_own_processes() {
        let peer = Atom::from("peer@h");
        let own = Pid::new("peer@h", 1, 0, 1);
        let third = Pid::new("third@12q.0.0.1", 1, 0, 1);
        let ours = Pid::new("us@h", 2, 0, 1);
        let reference = eetf::Reference {
            node: Atom::from("peer@h"),
            id: vec![1, 2, 3],
            creation: 1,
        };
        let forged = |from: &Pid| {
            [
                Message::link(from.clone(), ours.clone()),
                Message::monitor_p(
                    from.clone(),
                    PidOrAtom::Pid(ours.clone()),
                    reference.clone(),
                ),
                Message::demonitor_p(
                    from.clone(),
                    PidOrAtom::Pid(ours.clone()),
                    reference.clone(),
                ),
                Message::exit(from.clone(), ours.clone(), Term::from(Atom::from("x"))),
                Message::exit2(from.clone(), ours.clone(), Term::from(Atom::from("x"))),
                Message::unlink_id(
                    Term::from(eetf::FixInteger::from(1)),
                    from.clone(),
                    ours.clone(),
                ),
                Message::payload_exit(from.clone(), ours.clone(), Term::from(Atom::from("x"))),
            ]
            .into_iter()
            .filter_map(|m| foreign_sender(&peer, &m).map(|(op, _)| op))
            .collect::<Vec<_>>()
        };
        assert!(forged(&own).is_empty());
        assert_eq!(
            forged(&third),
            [
                "LINK",
                "MONITOR_P",
                "DEMONITOR_P",
                "EXIT",
                "EXIT2",
                "UNLINK_ID",
                "PAYLOAD_EXIT"
            ]
        );
        // SEND names no sender; GROUP_LEADER's may live anywhere.
        let send = Message::send(ours.clone(), Term::from(Atom::from("x")));
        assert!(foreign_sender(&peer, &send).is_none());
        let gl = Message::GroupLeader(erl_dist::message::GroupLeader {
            from_pid: third.clone(),
            to_pid: ours.clone(),
        });
        assert!(foreign_sender(&peer, &gl).is_none());
    }
}

//! What the node does with each control message a peer sends.

use super::NodeInner;
use crate::proc_table::mailbox::Mail;
use crate::proc_table::table::ExitKind;
use crate::term::{Atom, Pid, Term};
use erl_dist::message::Message;
use erl_dist::term::PidOrAtom;
use std::sync::Arc;

pub(super) fn dispatch(node: &Arc<NodeInner>, peer: &Atom, message: Message) {
    use Message as M;
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
            node.send_remote(peer, Message::unlink_id_ack(m.id, m.to_pid, m.from_pid));
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
            tracing::warn!(peer = %peer.name, message = ?other, "unsupported control message ignored");
        }
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

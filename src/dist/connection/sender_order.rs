//! Erlang's ordering promise across nodes, kept while a large message is
//! decoded away from the connection's reader: signals from one process to
//! another arrive in the order they were sent. Nothing is promised between
//! different senders, so a small call from one process may go ahead of a
//! 50 MiB message from another that is still being decoded, while a later
//! message from the large message's own sender waits behind it. Sans-IO:
//! the driver says what was decoded where; this says what to dispatch.

use super::super::control::ControlMessage;
use eetf::Pid;
use erl_dist::term::PidOrAtom;
use std::collections::{HashMap, VecDeque};

/// A message whose decode was handed elsewhere, named for [`SenderOrder::complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Ticket(u64);

#[derive(Debug)]
enum Slot<M> {
    Decoding(Ticket),
    Decoded(M),
}

/// Per sender, what waits behind a message still being decoded.
#[derive(Debug)]
pub(crate) struct SenderOrder<M> {
    queues: HashMap<Pid, VecDeque<Slot<M>>>,
    next: u64,
    decoding: usize,
}

impl<M> Default for SenderOrder<M> {
    fn default() -> Self {
        SenderOrder {
            queues: HashMap::new(),
            next: 0,
            decoding: 0,
        }
    }
}

impl<M> SenderOrder<M> {
    /// Messages being decoded elsewhere.
    pub(crate) fn decoding(&self) -> usize {
        self.decoding
    }

    /// A message decoded on the reader, from `sender`: given back when it
    /// can be dispatched now, else kept behind its sender's earlier one.
    pub(crate) fn decoded(&mut self, sender: Option<&Pid>, message: M) -> Option<M> {
        match sender.and_then(|s| self.queues.get_mut(s)) {
            Some(queue) => {
                queue.push_back(Slot::Decoded(message));
                None
            }
            None => Some(message),
        }
    }

    /// A message from `sender` whose decode goes elsewhere: what follows
    /// from the same sender waits until [`SenderOrder::complete`].
    pub(crate) fn defer(&mut self, sender: Pid) -> Ticket {
        let ticket = Ticket(self.next);
        self.next += 1;
        self.decoding += 1;
        self.queues
            .entry(sender)
            .or_default()
            .push_back(Slot::Decoding(ticket));
        ticket
    }

    /// `ticket` (from `sender`) is decoded: the messages now due, in order.
    pub(crate) fn complete(&mut self, sender: &Pid, ticket: Ticket, message: M) -> Vec<M> {
        let Some(queue) = self.queues.get_mut(sender) else {
            return Vec::new();
        };
        if let Some(slot) = queue
            .iter_mut()
            .find(|s| matches!(s, Slot::Decoding(t) if *t == ticket))
        {
            *slot = Slot::Decoded(message);
            self.decoding -= 1;
        }
        let mut due = Vec::new();
        while let Some(Slot::Decoded(_)) = queue.front() {
            if let Some(Slot::Decoded(m)) = queue.pop_front() {
                due.push(m);
            }
        }
        if queue.is_empty() {
            self.queues.remove(sender);
        }
        due
    }
}

/// The process a control message comes from: the key of its order. A
/// `SEND` names none (peers that negotiated `SEND_SENDER`, as every BEAM
/// does with us, use `SEND_SENDER`); a monitor by name fires from a name.
pub(crate) fn sender_of(message: &ControlMessage) -> Option<&Pid> {
    use ControlMessage as M;
    Some(match message {
        M::Link(m) => &m.from_pid,
        M::Exit(m) => &m.from_pid,
        M::Unlink(m) => &m.from_pid,
        M::RegSend(m) => &m.from_pid,
        M::GroupLeader(m) => &m.from_pid,
        M::Exit2(m) => &m.from_pid,
        M::ExitTt(m) => &m.from_pid,
        M::RegSendTt(m) => &m.from_pid,
        M::Exit2Tt(m) => &m.from_pid,
        M::MonitorP(m) => &m.from_pid,
        M::DemonitorP(m) => &m.from_pid,
        M::MonitorPExit(m) => match &m.from_proc {
            PidOrAtom::Pid(p) => p,
            PidOrAtom::Atom(_) => return None,
        },
        M::SendSender(m) => &m.from_pid,
        M::SendSenderTt(m) => &m.from_pid,
        M::PayloadExit(m) => &m.from_pid,
        M::PayloadExitTt(m) => &m.from_pid,
        M::PayloadExit2(m) => &m.from_pid,
        M::PayloadExit2Tt(m) => &m.from_pid,
        M::PayloadMonitorPExit(m) => match &m.from_proc {
            PidOrAtom::Pid(p) => p,
            PidOrAtom::Atom(_) => return None,
        },
        M::SpawnRequest(m) => &m.from_pid,
        M::SpawnRequestTt(m) => &m.from_pid,
        M::UnlinkId(m) => &m.from_pid,
        M::UnlinkIdAck(m) => &m.from_pid,
        M::AliasSend(m) => &m.from_pid,
        M::AliasSendTt(m) => &m.from_pid,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(id: u32) -> Pid {
        Pid::new("a@h", id, 0, 1)
    }

    #[test]
    fn nothing_waits_while_nothing_is_decoding() {
        let mut o = SenderOrder::default();
        assert_eq!(o.decoded(Some(&pid(1)), "a"), Some("a"));
        assert_eq!(o.decoded(None, "b"), Some("b"));
        assert_eq!(o.decoding(), 0);
    }

    #[test]
    fn a_sender_waits_behind_its_own_large_message_and_others_pass() {
        let mut o = SenderOrder::default();
        let t = o.defer(pid(1));
        assert_eq!(o.decoded(Some(&pid(1)), "after big"), None);
        assert_eq!(o.decoded(Some(&pid(2)), "other"), Some("other"));
        assert_eq!(o.decoded(None, "no sender"), Some("no sender"));
        assert_eq!(o.decoding(), 1);
        assert_eq!(o.complete(&pid(1), t, "big"), vec!["big", "after big"]);
        assert_eq!(o.decoding(), 0);
        // The sender's queue is gone: its next message passes at once.
        assert_eq!(o.decoded(Some(&pid(1)), "later"), Some("later"));
    }

    #[test]
    fn two_large_messages_of_one_sender_complete_in_either_order() {
        let mut o = SenderOrder::default();
        let t1 = o.defer(pid(1));
        assert_eq!(o.decoded(Some(&pid(1)), "x"), None);
        let t2 = o.defer(pid(1));
        assert_eq!(o.decoded(Some(&pid(1)), "y"), None);
        // The second finishes first: nothing is due before the first.
        assert!(o.complete(&pid(1), t2, "big2").is_empty());
        assert_eq!(
            o.complete(&pid(1), t1, "big1"),
            vec!["big1", "x", "big2", "y"]
        );
        assert_eq!(o.decoding(), 0);
    }
}

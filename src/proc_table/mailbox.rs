//! What a Rust process receives.

use crate::term::{atom, tuple, Pid, Reference, Term};

/// One item in a process's mailbox.
#[derive(Debug, Clone, PartialEq)]
pub enum Mail {
    /// An ordinary message (from `!`, a registered-name send or an alias).
    Message(Term),
    /// A monitor fired: `{'DOWN', Ref, process, Object, Reason}` in Erlang.
    Down {
        /// The monitor reference `Process::monitor` returned.
        reference: Reference,
        /// The monitored pid, or `{Name, Node}` for a monitor by name.
        object: Term,
        /// The exit reason; `noproc` if the process did not exist,
        /// `noconnection` if its node was unreachable.
        reason: Term,
    },
    /// A trapped exit signal from a linked process: `{'EXIT', From, Reason}`.
    Exit {
        /// The linked process that exited.
        from: Pid,
        /// Its exit reason.
        reason: Term,
    },
    /// The connection to a node watched with `Process::monitor_node` is
    /// gone (or could not be made): `{nodedown, Node}`.
    NodeDown {
        /// The full node name, `name@host`.
        node: String,
    },
}

impl Mail {
    /// The Erlang term this mail would be in a BEAM mailbox.
    pub fn into_term(self) -> Term {
        match self {
            Mail::Message(t) => t,
            Mail::Down {
                reference,
                object,
                reason,
            } => tuple(vec![
                atom("DOWN"),
                reference.into(),
                atom("process"),
                object,
                reason,
            ]),
            Mail::Exit { from, reason } => tuple(vec![atom("EXIT"), from.into(), reason]),
            Mail::NodeDown { node } => tuple(vec![atom("nodedown"), atom(&node)]),
        }
    }
}

/// What the node puts into a process's channel.
#[derive(Debug)]
pub(crate) enum Signal {
    Mail(Mail),
    /// The process was killed by an exit signal; it is already gone from the
    /// node's tables, and its handle only learns it here.
    Killed(Term),
}

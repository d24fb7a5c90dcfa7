//! A slot's state: free, being taken, held here (with the grant's fencing
//! token), orphaned, being released, held elsewhere, or backing off.

use super::queue::Waiting;
use super::types::OpId;
use crate::term::Pid;
use std::sync::Arc;

#[derive(Debug)]
pub(super) enum State {
    Free,
    /// (Boxed, like `Elsewhere`'s pid, to keep every other state small.)
    Acquiring {
        op: OpId,
        for_: Box<Waiting>,
    },
    /// (The pid is shared by every slot of one owner: a million names of
    /// one process hold one pid.) `token`: the grant's fencing token (in
    /// what `Acquiring` needs anyway: the state does not grow).
    Held {
        owner: Arc<Pid>,
        token: u64,
    },
    /// The owner's node lost us; released after the guard's deadline.
    /// (`token`: the hold's, carried along if the shard is handed over.)
    Orphaned {
        owner: Arc<Pid>,
        token: u64,
    },
    Releasing {
        op: OpId,
    },
    /// Held on the quorum by someone this node does not serve.
    Elsewhere {
        holder: Option<Box<Pid>>,
        watch: Option<OpId>,
    },
    /// Refused for now; [`super::Slots::retry`] comes next.
    Backoff,
}

impl State {
    /// The owner, when this node holds the key for one (also while only
    /// the owner's node lost us).
    pub(super) fn owner(&self) -> Option<&Arc<Pid>> {
        match self {
            State::Held { owner, .. } | State::Orphaned { owner, .. } => Some(owner),
            _ => None,
        }
    }

    /// The fencing token of the hold, when this node grants the key.
    pub(super) fn token(&self) -> Option<u64> {
        match self {
            State::Held { token, .. } => Some(*token),
            _ => None,
        }
    }
}

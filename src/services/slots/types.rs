//! What goes in and out of [`super::Slots`]: the kinds of key, the ids of
//! slots and operations, how an operation ended ([`Outcome`]) and what the
//! driver must do ([`Action`]).

use crate::process::Caller;
use crate::services::protocol::{Notice, Reply};
use crate::term::{Pid, Term};

/// A Paxtor lock or a registry name: separate key spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    Lock,
    Name,
}

impl Kind {
    /// The atom used on the wire (`eq_owned` etc.).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Lock => "lock",
            Kind::Name => "name",
        }
    }
}

/// Identifies one quorum operation, so a stale outcome is recognised.
pub(crate) type OpId = u64;

/// A slot's place in the table. Places are reused; the generation tells a
/// late timer for an old slot from the slot now there. (Ordered so that
/// whatever is done to many slots at once is done in one order every run.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SlotId {
    pub(super) index: u32,
    pub(super) generation: u32,
}

/// How a quorum operation ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Granted, under this fencing token (see `core::fencing`).
    Acquired(u64),
    /// Someone else holds it on the quorum (the holder when known).
    /// Since shards no round reports it (a key in another node's shard is
    /// redirected before it reaches the slots); the slots' `Elsewhere`
    /// state still handles it, to be removed with that state.
    #[cfg_attr(not(test), expect(dead_code))]
    HeldBy(Option<Pid>),
    /// Refused for now (a promise, a restarting master): try again soon.
    Busy,
    /// Fewer than W masters answered.
    NoQuorum,
    /// A release went through, or a wait for release ended.
    Released,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    Reply(Caller, Reply),
    /// Grant the slot's key (of `shard`, see [`super::shard_of_key`]) under
    /// the session of `epoch`, or say why not.
    Acquire {
        op: OpId,
        slot: SlotId,
        shard: u32,
        epoch: u64,
    },
    /// Release the slot's key.
    Release {
        op: OpId,
        slot: SlotId,
    },
    /// Report `Released` when the holder elsewhere is gone (or after a
    /// while, to look again).
    WaitRelease {
        op: OpId,
        slot: SlotId,
    },
    /// Call [`Slots::retry`] for `slot` after a short random pause.
    RetryLater {
        slot: SlotId,
    },
    /// Call [`Slots::release_due`] after the session lease plus a margin:
    /// the owner's node lost us, and its guard tells the owner by then.
    ReleaseLater {
        slot: SlotId,
        owner: Pid,
    },
    Monitor(Pid),
    Demonitor(Pid),
    /// Tell the guard on the owner's node (`eq_owned` / `eq_released` /
    /// `eq_lost`).
    Notify {
        notice: Notice,
        owner: Pid,
        kind: Kind,
        key: Term,
    },
    /// A name now points at `pid` (`None`: unregistered).
    NameChanged {
        name: Term,
        pid: Option<Pid>,
    },
}

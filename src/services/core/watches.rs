//! The monitors the core asked for, by core-side id: the driver gets a
//! `Reference` only after the core has moved on, so it maps each
//! reference to the [`MonitorId`] it was set for.

use crate::term::Pid;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct MonitorId(pub u64);

/// What to monitor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MonitorTarget {
    Process(Pid),
    /// The `erl_quorum` service of a peer serving node.
    Service(String),
}

/// What a monitor watches, and why.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Watched {
    /// Holds or waits for a lock or name here.
    Owner(Pid),
    Subscriber(Pid),
    PeerSubscriber(Pid),
    /// A peer serving node whose names we follow.
    Peer(String),
    /// A host of supervised names.
    Host(Pid),
    /// A child started too late, told `no` (its keeper kills it).
    LateChild(Pid),
}

#[derive(Debug, Default)]
pub(super) struct Watches {
    by_id: HashMap<MonitorId, Watched>,
    /// One monitor per owner (the slots count its holds).
    owners: HashMap<Pid, MonitorId>,
    next: u64,
}

impl Watches {
    pub(super) fn watch(&mut self, what: Watched) -> MonitorId {
        self.next += 1;
        let id = MonitorId(self.next);
        if let Watched::Owner(pid) = &what {
            self.owners.insert(pid.clone(), id);
        }
        self.by_id.insert(id, what);
        id
    }

    /// The slots no longer watch `pid`: its monitor goes.
    pub(super) fn unwatch_owner(&mut self, pid: &Pid) -> Option<MonitorId> {
        let id = self.owners.remove(pid)?;
        self.by_id.remove(&id);
        Some(id)
    }

    /// Monitor `id` fired: what it watched (once).
    pub(super) fn down(&mut self, id: MonitorId) -> Option<Watched> {
        let watched = self.by_id.remove(&id)?;
        if let Watched::Owner(pid) = &watched {
            self.owners.remove(pid);
        }
        Some(watched)
    }
}

//! The local table of one node's hub, shared with the Rust readers
//! ([`super::Groups`]): the merged view, updated by the hub only, read
//! under a short lock (no round trip), and the Rust monitors, told of every
//! change under the same lock so that a snapshot and its events never
//! miss or repeat a change.

use super::driver::HubEvent;
use super::table::Table;
use super::wire::{Group, Op};
use crate::term::{Canon, Pid, Term};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::sync::mpsc;

/// Events a Rust monitor may fall behind by before its stream is ended.
pub(crate) const MONITOR_BACKLOG: usize = 4096;

/// A change of a group, as a Rust monitor sees it (OTP `pg`'s
/// `{Ref, join | leave, Group, Pids}`).
#[derive(Debug, Clone, PartialEq)]
pub enum GroupEvent {
    /// `pids` joined `group` (once more each).
    Join {
        /// The group.
        group: Term,
        /// Who joined.
        pids: Vec<Pid>,
    },
    /// `pids` left `group` (one join each).
    Leave {
        /// The group.
        group: Term,
        /// Who left.
        pids: Vec<Pid>,
    },
}

struct Watcher {
    scope: String,
    /// `None`: every group of the scope.
    group: Option<Canon>,
    tx: mpsc::Sender<GroupEvent>,
}

#[derive(Default)]
pub(crate) struct State {
    pub table: Table,
    watchers: Vec<Watcher>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    pub events: mpsc::UnboundedSender<HubEvent>,
}

impl Shared {
    pub(crate) fn new(events: mpsc::UnboundedSender<HubEvent>) -> Shared {
        Shared {
            state: Mutex::new(State::default()),
            events,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One change of the merged view (the hub's `Action::Changed`).
    pub(crate) fn apply(&self, scope: &str, op: Op, group: &Group, pids: &[Pid]) {
        let mut state = self.lock();
        match op {
            Op::Join => state.table.join(scope, group, pids),
            Op::Leave => {
                state.table.leave(scope, &group.key, pids);
            }
        }
        let event = match op {
            Op::Join => GroupEvent::Join {
                group: group.term.clone(),
                pids: pids.to_vec(),
            },
            Op::Leave => GroupEvent::Leave {
                group: group.term.clone(),
                pids: pids.to_vec(),
            },
        };
        // A watcher gone, or too far behind, is dropped: its stream ends.
        state.watchers.retain(|w| {
            if w.scope != scope || w.group.as_ref().is_some_and(|g| *g != group.key) {
                return !w.tx.is_closed();
            }
            w.tx.try_send(event.clone()).is_ok()
        });
    }

    /// Adds a monitor; `snapshot` runs under the same lock.
    pub(crate) fn watch<T>(
        &self,
        scope: &str,
        group: Option<Canon>,
        snapshot: impl FnOnce(&Table) -> T,
    ) -> (T, mpsc::Receiver<GroupEvent>) {
        let (tx, rx) = mpsc::channel(MONITOR_BACKLOG);
        let mut state = self.lock();
        let snap = snapshot(&state.table);
        state.watchers.push(Watcher {
            scope: scope.to_owned(),
            group,
            tx,
        });
        (snap, rx)
    }

    /// The hub stopped: the table empties and every monitor stream ends.
    pub(crate) fn stopped(&self) {
        let mut state = self.lock();
        state.table = Table::default();
        state.watchers.clear();
    }
}

fn hubs() -> &'static Mutex<HashMap<String, Arc<Shared>>> {
    static HUBS: OnceLock<Mutex<HashMap<String, Arc<Shared>>>> = OnceLock::new();
    HUBS.get_or_init(Mutex::default)
}

/// Records the hub of `node` (replacing a stopped one).
pub(crate) fn register(node: &str, shared: Arc<Shared>) {
    hubs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(node.to_owned(), shared);
}

/// The hub of `node`, if one was started.
pub(crate) fn lookup(node: &str) -> Option<Arc<Shared>> {
    hubs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(node)
        .cloned()
}

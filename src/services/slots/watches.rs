//! The owners [`super::Slots`] watches: one monitor per pid, however many
//! slots it holds or waits on. Kept apart from the slot states because it
//! is plain reference counting (a slot's count goes up per request or hold
//! and down per answer or release, the monitor follows the first and the
//! last), which the state machine only needs to call at the right places.

use super::types::{Action, SlotId};
use crate::term::Pid;
use std::collections::HashMap;
use std::sync::Arc;

/// An owner's slots (held or waited on), each with how many of its
/// requests or holds it stands for. A map, not a list: one owner may hold
/// a million names.
#[derive(Debug)]
struct Watch {
    pid: Arc<Pid>,
    slots: HashMap<SlotId, u32>,
}

/// Every watched owner.
#[derive(Debug, Default)]
pub(super) struct Watches {
    by_pid: HashMap<Pid, Watch>,
}

impl Watches {
    /// Adds `slot` to `pid`'s watch; a pid watched for the first time gets
    /// its [`Action::Monitor`].
    pub(super) fn add(&mut self, pid: &Pid, slot: SlotId, actions: &mut Vec<Action>) {
        let watch = self.by_pid.entry(pid.clone()).or_insert_with(|| Watch {
            pid: Arc::new(pid.clone()),
            slots: HashMap::new(),
        });
        if watch.slots.is_empty() {
            actions.push(Action::Monitor(pid.clone()));
        }
        *watch.slots.entry(slot).or_insert(0) += 1;
    }

    /// Takes one count of `slot` off `pid`'s watch; a pid left with no
    /// slot is no longer watched ([`Action::Demonitor`]).
    pub(super) fn remove(&mut self, pid: &Pid, slot: SlotId, actions: &mut Vec<Action>) {
        if let Some(watch) = self.by_pid.get_mut(pid) {
            if let Some(count) = watch.slots.get_mut(&slot) {
                *count -= 1;
                if *count == 0 {
                    watch.slots.remove(&slot);
                }
            }
            if watch.slots.is_empty() {
                self.by_pid.remove(pid);
                actions.push(Action::Demonitor(pid.clone()));
            }
        }
    }

    /// Whether `pid` is watched for `slot` (it has not gone since).
    pub(super) fn watching(&self, pid: &Pid, slot: SlotId) -> bool {
        self.by_pid
            .get(pid)
            .is_some_and(|w| w.slots.contains_key(&slot))
    }

    /// `pid` as shared by its slots (a million names of one process hold
    /// one pid), or a fresh one for a pid not watched.
    pub(super) fn shared_pid(&self, pid: &Pid) -> Arc<Pid> {
        self.by_pid
            .get(pid)
            .map_or_else(|| Arc::new(pid.clone()), |w| w.pid.clone())
    }

    /// Forgets `pid`, which is gone (its monitor fired): the slots it was
    /// watched for, in id order, or `None` if it was not watched.
    pub(super) fn gone(&mut self, pid: &Pid) -> Option<Vec<SlotId>> {
        let watch = self.by_pid.remove(pid)?;
        let mut ids: Vec<SlotId> = watch.slots.into_keys().collect();
        ids.sort_unstable();
        Some(ids)
    }
}

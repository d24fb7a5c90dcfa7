//! A shard's slots leaving this node (handed to another serving node) and
//! arriving from one: what `core::handoff` carries over, in the wire form
//! of [`crate::services::protocol::handoff`].
//!
//! Leaving, a slot's watches go (the owners are the taker's to monitor)
//! and nobody is told anything: the owners keep their holds, names stay
//! registered. Arriving, a hold is installed as if granted here (its
//! guard hears `eq_owned` from this node, a name is announced as this
//! node's) and the waiters queue again in their order.

use super::queue::{Ask, Waiting};
use super::state::State;
use super::types::{Action, Kind};
use super::{index_key, Slot, Slots};
use crate::dist::etf::encode_term;
use crate::process::Caller;
use crate::services::protocol::handoff::{MovedAsk, MovedSlot, MovedWaiter, MAX_MOVED_WAITERS};
use crate::services::protocol::{Notice, Reply};
use crate::term::{Packed, Term};
use std::collections::BTreeSet;

/// Encoded bytes of `term` (a term the encoder refuses counts as 1 KiB:
/// never seen, and refused again when the state is encoded).
fn term_bytes(term: &Term, scratch: &mut Vec<u8>) -> usize {
    scratch.clear();
    match encode_term(term, scratch) {
        Ok(()) => scratch.len(),
        Err(_) => 1024,
    }
}

impl From<&Ask> for MovedAsk {
    fn from(ask: &Ask) -> MovedAsk {
        match ask {
            Ask::Lock { block, fencing } => MovedAsk::Lock {
                block: *block,
                fencing: *fencing,
            },
            Ask::Register => MovedAsk::Register,
            Ask::Unregister => MovedAsk::Unregister,
        }
    }
}

impl From<MovedAsk> for Ask {
    fn from(ask: MovedAsk) -> Ask {
        match ask {
            MovedAsk::Lock { block, fencing } => Ask::Lock { block, fencing },
            MovedAsk::Register => Ask::Register,
            MovedAsk::Unregister => Ask::Unregister,
        }
    }
}

/// Encoded bytes of a pid of `node`, from above (tag, node atom, id,
/// serial, creation) plus the tuple around it.
fn pid_bytes(node: &str) -> usize {
    node.len() + 24
}

impl Slots {
    /// The slots of `shard`.
    fn shard_slots(&self, shard: u32) -> impl Iterator<Item = &Slot> + '_ {
        self.index
            .values()
            .filter_map(move |&id| self.slot(id).filter(|s| u32::from(s.shard) == shard))
    }

    /// Whether a hold of `shard` is orphaned (its owner's node lost us; it
    /// is released here when the margin is over).
    pub(crate) fn has_orphans(&self, shard: u32) -> bool {
        self.shard_slots(shard)
            .any(|s| matches!(s.state, State::Orphaned { .. }))
    }

    /// The nodes of the owners holding keys of `shard`.
    pub(crate) fn owner_nodes(&self, shard: u32) -> BTreeSet<String> {
        self.shard_slots(shard)
            .filter_map(|s| s.state.owner().map(|o| o.node.name.clone()))
            .collect()
    }

    /// How many slots of `shard` would move, and an estimate from above of
    /// the bytes of their `state` (keys and tags measured, pids and the
    /// rest bounded): the giver keeps a shard too large for one message.
    pub(crate) fn shard_size(&self, shard: u32) -> (usize, usize) {
        let (mut count, mut bytes) = (0, 0);
        let mut scratch = Vec::new();
        for slot in self.shard_slots(shard) {
            count += 1;
            bytes += 32
                + match &slot.key {
                    Packed::Bytes(b) => b.len(),
                    Packed::Term(t) => term_bytes(t, &mut scratch),
                };
            if let Some(owner) = slot.state.owner() {
                bytes += pid_bytes(&owner.node.name) + 16;
            }
            for w in slot.queue.iter().take(MAX_MOVED_WAITERS) {
                bytes += 32 + pid_bytes(&w.caller.pid.node.name) + pid_bytes(&w.owner.node.name);
                bytes += term_bytes(&w.caller.tag, &mut scratch);
            }
        }
        (count, bytes)
    }

    /// Takes every slot of `shard` out (for `to`, the taker): its hold and
    /// its waiters in order. Waiters past [`MAX_MOVED_WAITERS`] are told to
    /// ask `to` themselves.
    pub(crate) fn export_shard(&mut self, shard: u32, to: &str) -> Vec<MovedSlot> {
        let mut ids: Vec<_> = self
            .index
            .values()
            .copied()
            .filter(|&id| self.slot(id).is_some_and(|s| u32::from(s.shard) == shard))
            .collect();
        ids.sort_unstable();
        let mut moved = Vec::with_capacity(ids.len());
        for id in ids {
            let slot = self.slot_mut(id).expect("indexed");
            let (kind, key) = (slot.kind, slot.key());
            let mut waiting = slot.queue.take_all();
            let mut orphaned = false;
            let holder = match std::mem::replace(&mut slot.state, State::Free) {
                State::Held { owner, token } => Some(((*owner).clone(), token)),
                // Its node lost us: already told lost, the taker only
                // releases it once the margin is over.
                State::Orphaned { owner, token } => {
                    orphaned = true;
                    Some(((*owner).clone(), token))
                }
                // (Granted synchronously in a held shard; only a refused
                // grant waits, and goes first again.)
                State::Acquiring { for_, .. } => {
                    waiting.insert(0, *for_);
                    None
                }
                _ => None,
            };
            if let Some((owner, _)) = &holder {
                self.watched.remove(owner, id, &mut self.actions);
            }
            let mut waiters = Vec::new();
            for w in waiting {
                self.watched.remove(&w.owner, id, &mut self.actions);
                if waiters.len() >= MAX_MOVED_WAITERS {
                    let reply = Reply::Redirect(to.to_owned());
                    self.actions.push(Action::Reply(w.caller, reply));
                    continue;
                }
                waiters.push(MovedWaiter {
                    caller: w.caller.pid,
                    tag: w.caller.tag,
                    owner: w.owner,
                    ask: MovedAsk::from(&w.ask),
                });
            }
            self.remove(id);
            moved.push(MovedSlot {
                kind,
                key,
                holder,
                orphaned,
                waiters,
            });
        }
        moved
    }

    /// Installs a slot handed over by another node (whose shard this node
    /// now holds): its hold as granted here, its waiters ahead of any this
    /// node had for the key.
    pub(crate) fn import(&mut self, moved: MovedSlot) {
        let MovedSlot {
            kind,
            key,
            holder,
            orphaned,
            waiters,
        } = moved;
        let Some(ikey) = index_key(kind, &key) else {
            return;
        };
        let id = match self.index.get(&ikey) {
            Some(&id) => id,
            None => self.insert(ikey, kind, &key),
        };
        if let (Some((owner, token)), true) = (&holder, orphaned) {
            // Its guard told the owner it lost the hold: no `eq_owned`,
            // no watch; released when the margin is surely over (counted
            // afresh here: never sooner than at the giver).
            let slot = self.slot_mut(id).expect("present");
            slot.state = State::Orphaned {
                owner: std::sync::Arc::new(owner.clone()),
                token: *token,
            };
            self.actions.push(Action::ReleaseLater {
                slot: id,
                owner: owner.clone(),
            });
            if kind == Kind::Name {
                self.actions.push(Action::NameChanged {
                    name: key.clone(),
                    pid: Some(owner.clone()),
                });
            }
        } else if let Some((owner, token)) = holder {
            self.watched.add(&owner, id, &mut self.actions);
            let shared = self.watched.shared_pid(&owner);
            let slot = self.slot_mut(id).expect("present");
            slot.state = State::Held {
                owner: shared,
                token,
            };
            self.actions.push(Action::Notify {
                notice: Notice::Owned,
                owner: owner.clone(),
                kind,
                key: key.clone(),
            });
            if kind == Kind::Name {
                self.actions.push(Action::NameChanged {
                    name: key.clone(),
                    pid: Some(owner),
                });
            }
        }
        let slot = self.slot_mut(id).expect("present");
        let had = slot.queue.take_all();
        for w in waiters {
            let owner = w.owner.clone();
            let slot = self.slot_mut(id).expect("present");
            slot.queue.push_back(Waiting {
                caller: Caller {
                    pid: w.caller,
                    tag: w.tag,
                },
                owner: w.owner,
                ask: Ask::from(w.ask),
            });
            self.watched.add(&owner, id, &mut self.actions);
        }
        let slot = self.slot_mut(id).expect("present");
        for w in had {
            slot.queue.push_back(w);
        }
        self.settle(id);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{shard_of_key, Outcome};
    use super::*;
    use crate::term::{atom, int, Pid};

    fn owner() -> Pid {
        Pid::new("beam@host", 1, 0, 1)
    }

    /// A lock on `k` held by [`owner`] with fencing token 7.
    fn held() -> (Slots, u32) {
        let mut s = Slots::new();
        let caller = Caller {
            pid: owner(),
            tag: int(1),
        };
        s.lock(caller, atom("k"), owner(), true, true);
        let (slot, op) = s
            .take_actions()
            .into_iter()
            .find_map(|a| match a {
                Action::Acquire { slot, op, .. } => Some((slot, op)),
                _ => None,
            })
            .expect("acquire");
        s.op_done(slot, op, 0, Outcome::Acquired(7));
        s.take_actions();
        (s, shard_of_key(Kind::Lock, &atom("k")).expect("shard"))
    }

    #[test]
    fn shard_size_counts_the_shards_slots_and_their_bytes() {
        let (s, shard) = held();
        let (count, bytes) = s.shard_size(shard);
        assert_eq!(count, 1);
        assert!(bytes > pid_bytes("beam@host"), "{bytes}");
        assert_eq!(s.shard_size((shard + 1) % 64), (0, 0));
    }

    #[test]
    fn an_orphaned_hold_moves_orphaned_with_its_token_and_is_released_later() {
        let (mut s, shard) = held();
        s.owner_down(&owner(), true);
        s.take_actions();
        let moved = s.export_shard(shard, "t@h");
        assert_eq!(moved.len(), 1);
        assert!(moved[0].orphaned);
        assert_eq!(moved[0].holder, Some((owner(), 7)));

        let mut t = Slots::new();
        t.import(moved[0].clone());
        let actions = t.take_actions();
        // Told lost already: no `eq_owned`, no watch; released when due.
        assert!(!actions.iter().any(|a| matches!(a, Action::Notify { .. })));
        assert!(!actions.iter().any(|a| matches!(a, Action::Monitor(_))));
        let slot = actions
            .iter()
            .find_map(|a| match a {
                Action::ReleaseLater { slot, owner: o } if *o == owner() => Some(*slot),
                _ => None,
            })
            .expect("release later");
        t.release_due(slot, &owner());
        assert!(t
            .take_actions()
            .iter()
            .any(|a| matches!(a, Action::Release { .. })));
    }
}

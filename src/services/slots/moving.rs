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
use super::{index_key, Slots};
use crate::process::Caller;
use crate::services::protocol::handoff::{MovedAsk, MovedSlot, MovedWaiter, MAX_MOVED_WAITERS};
use crate::services::protocol::{Notice, Reply};

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

impl Slots {
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
            let holder = match std::mem::replace(&mut slot.state, State::Free) {
                State::Held { owner, token } => Some(((*owner).clone(), token)),
                // Its node lost us: the taker watches it afresh.
                State::Orphaned { owner } => Some(((*owner).clone(), 0)),
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
            waiters,
        } = moved;
        let Some(ikey) = index_key(kind, &key) else {
            return;
        };
        let id = match self.index.get(&ikey) {
            Some(&id) => id,
            None => self.insert(ikey, kind, &key),
        };
        if let Some((owner, token)) = holder {
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

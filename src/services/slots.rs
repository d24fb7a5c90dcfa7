//! The serving node's locks and names, as a sans-IO state machine.
//!
//! Each key (a Paxtor lock or a registry name) is a [`Slot`]: who holds it
//! through this node, what quorum operation is in flight, and the requests
//! waiting, in arrival order. Events come in as method calls (a request, an
//! operation's outcome, an owner's exit); what the driver must do comes out
//! as [`Action`]s: replies, quorum operations to run, monitors to set or
//! drop, the guard to notify, name changes to publish. No clock, no IO.
//!
//! Safety rests on the quorum, not on this table: a slot is `Held` only
//! once the driver granted it ([`Action::Acquire`]: this node holds the
//! key's shard on W masters under its session; see [`super::shards`]), and
//! a release is sent only once the owner is known dead or known told (see
//! [`Slots::owner_down`] and [`Slots::session_lost`]).

mod moving;
mod queue;
mod state;
mod types;
mod watches;

use super::protocol::{Notice, Reply};
use super::shards::shard_of;
use crate::process::Caller;
use crate::term::Canon;
use crate::term::{Packed, Pid, Term};
use queue::{Ask, Queue, Waiting};
use state::State;
use std::collections::HashMap;
pub(crate) use types::{Action, Kind, OpId, Outcome, SlotId};
use watches::Watches;

/// Kept small: a serving node may hold a million of these.
#[derive(Debug)]
struct Slot {
    kind: Kind,
    /// The key's shard ([`shard_of_key`]; fits in the padding).
    shard: u8,
    generation: u32,
    key: Packed,
    state: State,
    queue: Queue,
}

impl Slot {
    fn key(&self) -> Term {
        self.key.term()
    }
}

/// Every slot this node serves, and the owners it watches.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    /// [`index_key`] -> slot.
    index: HashMap<Box<[u8]>, SlotId>,
    table: Vec<Option<Slot>>,
    free: Vec<u32>,
    watched: Watches,
    next_op: OpId,
    epoch: u64,
    actions: Vec<Action>,
}

/// The index key of `key` of `kind`: a kind byte, then the key's canonical
/// bytes (a boxed slice: a million names pay 8 bytes less each than with a
/// `Vec`, and no namespace atom). `None`: too deep for anyone to hold.
fn index_key(kind: Kind, key: &Term) -> Option<Box<[u8]>> {
    let canon = Canon::of(key).ok()?;
    let mut bytes = Vec::with_capacity(canon.as_bytes().len() + 1);
    bytes.push(kind as u8);
    bytes.extend_from_slice(canon.as_bytes());
    Some(bytes.into_boxed_slice())
}

/// The shard of `key` of `kind`: the same on every node, from the bytes
/// the index is keyed by. `None`: too deep for anyone to hold.
pub(crate) fn shard_of_key(kind: Kind, key: &Term) -> Option<u32> {
    index_key(kind, key).map(|k| shard_of(&k))
}

/// The slot `id` names, borrowing only the table.
fn slot_in(table: &mut [Option<Slot>], id: SlotId) -> Option<&mut Slot> {
    table
        .get_mut(id.index as usize)?
        .as_mut()
        .filter(|s| s.generation == id.generation)
}

impl Slots {
    pub(crate) fn new() -> Slots {
        Slots::default()
    }

    /// The actions produced since the last call.
    pub(crate) fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// The session epoch acquisitions are made under.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn slot(&self, id: SlotId) -> Option<&Slot> {
        self.table
            .get(id.index as usize)?
            .as_ref()
            .filter(|s| s.generation == id.generation)
    }

    fn slot_mut(&mut self, id: SlotId) -> Option<&mut Slot> {
        slot_in(&mut self.table, id)
    }

    fn find(&self, kind: Kind, key: &Term) -> Option<SlotId> {
        self.index.get(&index_key(kind, key)?).copied()
    }

    fn insert(&mut self, ikey: Box<[u8]>, kind: Kind, key: &Term) -> SlotId {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.table.push(None);
                (self.table.len() - 1) as u32
            }
        };
        let generation = self.next_op as u32;
        self.next_op += 1;
        // Below 256: see `SHARDS`.
        let shard = shard_of(&ikey) as u8;
        self.table[index as usize] = Some(Slot {
            kind,
            shard,
            generation,
            key: Packed::new(key),
            state: State::Free,
            queue: Queue::default(),
        });
        let id = SlotId { index, generation };
        self.index.insert(ikey, id);
        id
    }

    fn remove(&mut self, id: SlotId) {
        let Some(slot) = self.slot(id) else { return };
        if let Some(ikey) = index_key(slot.kind, &slot.key()) {
            self.index.remove(&ikey);
        }
        self.table[id.index as usize] = None;
        self.free.push(id.index);
    }

    /// The holder this node knows of, if any: `Some(None)` means "known
    /// free here", `None` means "ask the quorum".
    pub(crate) fn holder(&self, kind: Kind, key: &Term) -> Option<Option<Pid>> {
        if index_key(kind, key).is_none() {
            return Some(None);
        }
        let owner = self.slot(self.find(kind, key)?)?.state.owner()?;
        Some(Some((**owner).clone()))
    }

    /// Whether this node has anything going on for `key` (held, waited on,
    /// being taken or released).
    pub(crate) fn knows(&self, kind: Kind, key: &Term) -> bool {
        self.find(kind, key).is_some()
    }

    /// `{lock, Key, Owner, Block}` (`fencing`: with `[fencing]`, answered
    /// `{acquired, Token}`).
    pub(crate) fn lock(
        &mut self,
        caller: Caller,
        key: Term,
        owner: Pid,
        block: bool,
        fencing: bool,
    ) {
        self.request(Kind::Lock, key, caller, owner, Ask::Lock { block, fencing });
    }

    /// `{register_name, Name, Pid}`.
    pub(crate) fn register(&mut self, caller: Caller, name: Term, pid: Pid) {
        self.request(Kind::Name, name, caller, pid, Ask::Register);
    }

    /// `{unregister_name, Name}`: answered `ok` at once; the release runs
    /// after the reply, and every later request for the name through this
    /// node waits for it (so a register right after succeeds).
    pub(crate) fn unregister(&mut self, caller: Caller, name: Term) {
        let Some(id) = self.find(Kind::Name, &name) else {
            self.actions.push(Action::Reply(caller, Reply::Ok));
            return;
        };
        let slot = self.slot_mut(id).expect("indexed");
        match &slot.state {
            State::Held { owner, .. } => {
                let owner = owner.clone();
                self.release(id, &owner, true);
                self.watched.remove(&owner, id, &mut self.actions);
                self.actions.push(Action::Reply(caller, Reply::Ok));
            }
            State::Free | State::Elsewhere { .. } if slot.queue.is_empty() => {
                self.actions.push(Action::Reply(caller, Reply::Ok));
            }
            _ => {
                let owner = caller.pid.clone();
                slot.queue.push_back(Waiting {
                    caller,
                    owner: owner.clone(),
                    ask: Ask::Unregister,
                });
                self.watched.add(&owner, id, &mut self.actions);
            }
        }
    }

    fn request(&mut self, kind: Kind, key: Term, caller: Caller, owner: Pid, ask: Ask) {
        let Some(ikey) = index_key(kind, &key) else {
            // Deeper than any store accepts: nobody can hold it.
            let reply = match ask {
                Ask::Register => Reply::No,
                _ => Reply::KeyTooDeep,
            };
            self.actions.push(Action::Reply(caller, reply));
            return;
        };
        let id = match self.index.get(&ikey) {
            Some(&id) => id,
            None => self.insert(ikey, kind, &key),
        };
        let slot = self.slot_mut(id).expect("indexed");
        let reentrant = match (&ask, &slot.state) {
            (Ask::Lock { .. }, State::Held { owner: o, token }) if **o == owner => Some(*token),
            _ => None,
        };
        if let Some(token) = reentrant {
            // Reentrant: at once, ahead of any waiters (they wait for this
            // very owner, so queueing it behind them would deadlock), under
            // the token it holds.
            self.actions.push(Action::Reply(caller, ask.granted(token)));
            return;
        }
        slot.queue.push_back(Waiting {
            caller,
            owner: owner.clone(),
            ask,
        });
        self.watched.add(&owner, id, &mut self.actions);
        self.settle(id);
    }

    /// Answers what the slot's state settles and starts the next operation.
    fn settle(&mut self, id: SlotId) {
        loop {
            let Some(slot) = slot_in(&mut self.table, id) else {
                return;
            };
            let holder: Option<Pid> = match &slot.state {
                State::Held { owner, .. } | State::Orphaned { owner, .. } => {
                    Some((**owner).clone())
                }
                State::Elsewhere { holder, .. } => holder.as_deref().cloned(),
                _ => None,
            };
            match &slot.state {
                State::Held { .. } | State::Elsewhere { .. } | State::Orphaned { .. } => {
                    let ours = matches!(slot.state, State::Held { .. });
                    let token = slot.state.token().unwrap_or(0);
                    // Still held until released (its owner may yet run):
                    // what can be answered now is, the rest waits.
                    let orphaned = matches!(slot.state, State::Orphaned { .. });
                    let Some(front) = slot.queue.front() else {
                        if matches!(slot.state, State::Elsewhere { watch: None, .. }) {
                            // Nobody waits: forget what may go stale.
                            self.remove(id);
                        }
                        return;
                    };
                    let answer = match &front.ask {
                        Ask::Lock { .. } if ours && Some(&front.owner) == holder.as_ref() => {
                            Some(front.ask.granted(token))
                        }
                        Ask::Lock { block: false, .. } => {
                            Some(front.ask.reply(false, holder.as_ref()))
                        }
                        Ask::Register => Some(Reply::No),
                        Ask::Unregister if orphaned => None,
                        Ask::Unregister if !ours => Some(Reply::Ok),
                        Ask::Unregister => None,
                        Ask::Lock { block: true, .. } => None,
                    };
                    match answer {
                        Some(reply) => {
                            let w = slot.queue.pop_front().expect("front exists");
                            self.actions.push(Action::Reply(w.caller, reply));
                            self.watched.remove(&w.owner, id, &mut self.actions);
                        }
                        None if ours && matches!(front.ask, Ask::Unregister) => {
                            let w = slot.queue.pop_front().expect("front exists");
                            self.watched.remove(&w.owner, id, &mut self.actions);
                            let owner = holder.expect("held");
                            self.release(id, &owner, true);
                            self.watched.remove(&owner, id, &mut self.actions);
                            self.actions.push(Action::Reply(w.caller, Reply::Ok));
                            return;
                        }
                        None => {
                            // A blocked lock: if the holder is elsewhere,
                            // watch for the release.
                            if let State::Elsewhere {
                                watch: w @ None, ..
                            } = &mut slot.state
                            {
                                let op = self.next_op;
                                self.next_op += 1;
                                *w = Some(op);
                                self.actions.push(Action::WaitRelease { op, slot: id });
                            }
                            return;
                        }
                    }
                }
                State::Free => {
                    let Some(front) = slot.queue.pop_front() else {
                        self.remove(id);
                        return;
                    };
                    if front.ask == Ask::Unregister {
                        self.actions.push(Action::Reply(front.caller, Reply::Ok));
                        self.watched.remove(&front.owner, id, &mut self.actions);
                        continue;
                    }
                    let op = self.next_op;
                    self.next_op += 1;
                    let shard = u32::from(slot.shard);
                    slot.state = State::Acquiring {
                        op,
                        for_: Box::new(front),
                    };
                    self.actions.push(Action::Acquire {
                        op,
                        slot: id,
                        shard,
                        epoch: self.epoch,
                    });
                    return;
                }
                State::Acquiring { .. } | State::Releasing { .. } | State::Backoff => return,
            }
        }
    }

    /// A quorum operation ended. Outcomes of operations the slot no longer
    /// waits for are ignored (an acquisition that lands after its owner
    /// died is released at once).
    pub(crate) fn op_done(&mut self, id: SlotId, op: OpId, epoch: u64, outcome: Outcome) {
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        match std::mem::replace(&mut slot.state, State::Free) {
            State::Acquiring { op: mine, for_ } if mine == op => {
                let outcome = if matches!(outcome, Outcome::Acquired(_)) && epoch != self.epoch {
                    // Taken under a session that has since been given up.
                    Outcome::Busy
                } else {
                    outcome
                };
                self.acquired(id, *for_, outcome);
            }
            State::Releasing { op: mine } if mine == op => self.settle(id),
            State::Elsewhere {
                watch: Some(mine), ..
            } if mine == op => self.settle(id),
            other => slot.state = other,
        }
    }

    fn acquired(&mut self, id: SlotId, for_: Waiting, outcome: Outcome) {
        let owner_alive = self.watched.watching(&for_.owner, id);
        let shared = self.watched.shared_pid(&for_.owner);
        let slot = self.slot_mut(id).expect("present");
        match outcome {
            Outcome::Acquired(token) => {
                let kind = slot.kind;
                slot.state = State::Held {
                    owner: shared,
                    token,
                };
                if !owner_alive {
                    // Died while we were taking it: give it back. Its
                    // watch entry is already gone.
                    self.release(id, &for_.owner, false);
                    return;
                }
                let key = slot.key();
                // The owner's other lock requests for this key (a retry
                // after a call timeout) are granted with it.
                let again = slot.queue.take_locks_of(&for_.owner);
                self.actions.push(Action::Notify {
                    notice: Notice::Owned,
                    owner: for_.owner.clone(),
                    kind,
                    key: key.clone(),
                });
                if kind == Kind::Name {
                    self.actions.push(Action::NameChanged {
                        name: key,
                        pid: Some(for_.owner.clone()),
                    });
                }
                self.actions
                    .push(Action::Reply(for_.caller, for_.ask.granted(token)));
                for w in again {
                    self.actions
                        .push(Action::Reply(w.caller, w.ask.granted(token)));
                    self.watched.remove(&w.owner, id, &mut self.actions);
                }
                // The watch entry for this request now stands for the hold.
            }
            Outcome::HeldBy(holder) => {
                slot.state = State::Elsewhere {
                    holder: holder.map(Box::new),
                    watch: None,
                };
                if owner_alive {
                    slot.queue.push_front(for_);
                }
            }
            Outcome::Busy => {
                slot.state = State::Backoff;
                if owner_alive {
                    slot.queue.push_front(for_);
                }
                self.actions.push(Action::RetryLater { slot: id });
                return;
            }
            Outcome::NoQuorum | Outcome::Released => {
                if owner_alive {
                    let reply = for_.ask.reply(false, None);
                    self.actions.push(Action::Reply(for_.caller, reply));
                    self.watched.remove(&for_.owner, id, &mut self.actions);
                }
            }
        }
        self.settle(id);
    }

    /// After [`Action::RetryLater`].
    pub(crate) fn retry(&mut self, id: SlotId) {
        if let Some(slot) = self.slot_mut(id) {
            if matches!(slot.state, State::Backoff) {
                slot.state = State::Free;
                self.settle(id);
            }
        }
    }

    /// Releases slot `id`, held by `owner` here. `notify`: tell the guard
    /// and the name's subscribers (not needed when they never heard of it).
    /// The caller drops the owner's watch entry if it still has one.
    fn release(&mut self, id: SlotId, owner: &Pid, notify: bool) {
        let op = self.next_op;
        self.next_op += 1;
        let slot = self.slot_mut(id).expect("present");
        slot.state = State::Releasing { op };
        let (kind, key) = (slot.kind, slot.key());
        self.actions.push(Action::Release { op, slot: id });
        if notify {
            self.announce_gone(Notice::Released, owner.clone(), kind, key);
        }
    }

    /// Tells the owner's guard (`what`: `eq_released` or `eq_lost`) and,
    /// for a name, its subscribers, that this node no longer holds `key`.
    fn announce_gone(&mut self, notice: Notice, owner: Pid, kind: Kind, key: Term) {
        let name_gone = (kind == Kind::Name).then(|| Action::NameChanged {
            name: key.clone(),
            pid: None,
        });
        self.actions.push(Action::Notify {
            notice,
            owner,
            kind,
            key,
        });
        self.actions.extend(name_gone);
    }

    /// A watched pid is gone. `connection_lost`: only its node's connection
    /// to us went (`noconnection`); it may still run, so its holds are kept
    /// until its guard has surely told it ([`Action::ReleaseLater`]).
    pub(crate) fn owner_down(&mut self, pid: &Pid, connection_lost: bool) {
        let Some(ids) = self.watched.gone(pid) else {
            return;
        };
        for id in ids {
            let Some(slot) = self.slot_mut(id) else {
                continue;
            };
            slot.queue.retain(|w| &w.owner != pid);
            match &slot.state {
                State::Held { owner, token } if **owner == *pid => {
                    if connection_lost {
                        slot.state = State::Orphaned {
                            owner: owner.clone(),
                            token: *token,
                        };
                        self.actions.push(Action::ReleaseLater {
                            slot: id,
                            owner: pid.clone(),
                        });
                    } else {
                        self.release(id, pid, true);
                    }
                }
                _ => self.settle(id),
            }
        }
    }

    /// After [`Action::ReleaseLater`].
    pub(crate) fn release_due(&mut self, id: SlotId, owner: &Pid) {
        let due = self
            .slot(id)
            .is_some_and(|s| matches!(&s.state, State::Orphaned { owner: o, .. } if **o == *owner));
        if due {
            self.release(id, owner, true);
        }
    }

    /// The session could not be renewed in time: every hold may lapse
    /// soon. Tell every owner (through its guard) now, and forget the holds;
    /// the masters drop them when the old session ends. New acquisitions
    /// use the next session (`epoch` + 1).
    pub(crate) fn session_lost(&mut self) {
        self.epoch += 1;
        let mut ids: Vec<SlotId> = self.index.values().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(slot) = self.slot_mut(id) else {
                continue;
            };
            let Some(owner) = slot.state.owner().map(|o| (**o).clone()) else {
                continue;
            };
            let kind = slot.kind;
            let key = slot.key();
            slot.state = State::Elsewhere {
                holder: Some(Box::new(owner.clone())),
                watch: None,
            };
            self.announce_gone(Notice::Lost, owner.clone(), kind, key);
            self.watched.remove(&owner, id, &mut self.actions);
            self.settle(id);
        }
    }

    /// The pid holding `name` through this node, if any.
    pub(crate) fn whereis_name(&self, name: &Term) -> Option<Pid> {
        let owner = self.slot(self.find(Kind::Name, name)?)?.state.owner()?;
        Some((**owner).clone())
    }

    /// Every name this node holds.
    pub(crate) fn held_names(&self) -> Vec<(Term, Pid)> {
        self.table
            .iter()
            .flatten()
            .filter(|s| s.kind == Kind::Name)
            .filter_map(|s| Some((s.key(), (**s.state.owner()?).clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests;

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
//! after W masters took the key under this node's session, and a release is
//! sent only once the owner is known dead or known told (see
//! [`Slots::owner_down`] and [`Slots::session_lost`]).

use crate::process::Caller;
use crate::quorum::store::Canon;
use crate::term::{atom, tuple, Pid, Term};
use std::collections::{HashMap, VecDeque};

/// A Paxtor lock or a registry name: separate key spaces on the quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Lock,
    Name,
}

impl Kind {
    /// The atom used on the wire (`eq_owned` etc.).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Lock => "lock",
            Kind::Name => "name",
        }
    }

    /// The quorum key for `key`: namespaced so it never meets a plain
    /// locker key.
    pub fn quorum_key(self, key: &Term) -> Term {
        let space = match self {
            Kind::Lock => "$erl_quorum_lock",
            Kind::Name => "$erl_quorum_name",
        };
        tuple(vec![atom(space), key.clone()])
    }
}

/// Identifies one quorum operation, so a stale outcome is recognised.
pub type OpId = u64;

/// How a quorum operation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// W masters took the key for the owner.
    Acquired,
    /// Someone else holds it on the quorum (the holder when known).
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
pub enum Action {
    Reply(Caller, Term),
    /// Take `qkey` with `value` under the session of `epoch`.
    Acquire {
        op: OpId,
        slot: Canon,
        qkey: Term,
        value: Term,
        epoch: u64,
    },
    /// Release `qkey` holding `value`, retrying until it goes through.
    Release {
        op: OpId,
        slot: Canon,
        qkey: Term,
        value: Term,
    },
    /// Report `Released` when `qkey` is gone from the masters (or after a
    /// while, to look again).
    WaitRelease {
        op: OpId,
        slot: Canon,
        qkey: Term,
    },
    /// Call [`Slots::retry`] for `slot` after a short random pause.
    RetryLater {
        slot: Canon,
    },
    /// Call [`Slots::release_due`] after the session lease plus a margin:
    /// the owner's node lost us, and its guard tells the owner by then.
    ReleaseLater {
        slot: Canon,
        owner: Pid,
    },
    Monitor(Pid),
    Demonitor(Pid),
    /// Tell the guard on the owner's node (`eq_owned` / `eq_released` /
    /// `eq_lost`).
    Notify {
        what: &'static str,
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

/// What a waiting request wants.
#[derive(Debug, Clone, PartialEq)]
enum Ask {
    Lock { block: bool },
    Register,
    Unregister,
}

#[derive(Debug, Clone)]
struct Waiting {
    caller: Caller,
    owner: Pid,
    ask: Ask,
}

#[derive(Debug)]
enum State {
    Free,
    Acquiring {
        op: OpId,
        for_: Waiting,
    },
    Held {
        owner: Pid,
    },
    /// The owner's node lost us; released after the guard's deadline.
    Orphaned {
        owner: Pid,
    },
    Releasing {
        op: OpId,
    },
    /// Held on the quorum by someone this node does not serve.
    Elsewhere {
        holder: Option<Pid>,
        watch: Option<OpId>,
    },
    /// Refused for now; [`Slots::retry`] comes next.
    Backoff,
}

#[derive(Debug)]
struct Slot {
    kind: Kind,
    key: Term,
    qkey: Term,
    state: State,
    queue: VecDeque<Waiting>,
}

/// Every slot this node serves, and the owners it watches.
#[derive(Debug)]
pub struct Slots {
    self_node: Term,
    slots: HashMap<Canon, Slot>,
    /// Slots each watched pid holds or waits on; a monitor per pid.
    watched: HashMap<Pid, Vec<Canon>>,
    next_op: OpId,
    epoch: u64,
    actions: Vec<Action>,
}

fn reply_for(ask: &Ask, granted: bool, holder: Option<&Pid>) -> Term {
    match (ask, granted) {
        (Ask::Lock { .. }, true) => atom("acquired"),
        (Ask::Lock { .. }, false) => match holder {
            Some(pid) => tuple(vec![atom("held_by"), Term::from(pid.clone())]),
            None => atom("no_quorum"),
        },
        (Ask::Register, true) => atom("yes"),
        (Ask::Register, false) => atom("no"),
        (Ask::Unregister, _) => atom("ok"),
    }
}

impl Slots {
    /// `self_node`: this node's name, part of every value written.
    pub fn new(self_node: &str) -> Slots {
        Slots {
            self_node: atom(self_node),
            slots: HashMap::new(),
            watched: HashMap::new(),
            next_op: 0,
            epoch: 0,
            actions: Vec::new(),
        }
    }

    /// The actions produced since the last call.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// The session epoch acquisitions are made under.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The value written for `owner`: `{Owner, ServingNode}`.
    pub fn value_of(&self, owner: &Pid) -> Term {
        tuple(vec![Term::from(owner.clone()), self.self_node.clone()])
    }

    /// The holder this node knows of, if any: `Some(None)` means "known
    /// free here", `None` means "ask the quorum".
    pub fn holder(&self, kind: Kind, key: &Term) -> Option<Option<Pid>> {
        let Ok(canon) = Canon::of(&kind.quorum_key(key)) else {
            return Some(None);
        };
        match self.slots.get(&canon).map(|s| &s.state) {
            Some(State::Held { owner }) | Some(State::Orphaned { owner }) => {
                Some(Some(owner.clone()))
            }
            _ => None,
        }
    }

    /// Whether this node has anything going on for `key` (held, waited on,
    /// being taken or released).
    pub fn knows(&self, kind: Kind, key: &Term) -> bool {
        Canon::of(&kind.quorum_key(key)).is_ok_and(|c| self.slots.contains_key(&c))
    }

    /// `{lock, Key, Owner, Block}`.
    pub fn lock(&mut self, caller: Caller, key: Term, owner: Pid, block: bool) {
        self.request(Kind::Lock, key, caller, owner, Ask::Lock { block });
    }

    /// `{register_name, Name, Pid}`.
    pub fn register(&mut self, caller: Caller, name: Term, pid: Pid) {
        self.request(Kind::Name, name, caller, pid, Ask::Register);
    }

    /// `{unregister_name, Name}`: answered `ok` at once; the release runs
    /// after the reply, and every later request for the name through this
    /// node waits for it (so a register right after succeeds).
    pub fn unregister(&mut self, caller: Caller, name: Term) {
        let qkey = Kind::Name.quorum_key(&name);
        let Ok(canon) = Canon::of(&qkey) else {
            self.actions.push(Action::Reply(caller, atom("ok")));
            return;
        };
        let Some(slot) = self.slots.get_mut(&canon) else {
            self.actions.push(Action::Reply(caller, atom("ok")));
            return;
        };
        match &slot.state {
            State::Held { owner } => {
                let owner = owner.clone();
                self.release(&canon, &owner, true);
                self.unwatch(&owner, &canon);
                self.actions.push(Action::Reply(caller, atom("ok")));
            }
            State::Free | State::Elsewhere { .. } if slot.queue.is_empty() => {
                self.actions.push(Action::Reply(caller, atom("ok")));
            }
            _ => {
                let owner = caller.pid.clone();
                slot.queue.push_back(Waiting {
                    caller,
                    owner,
                    ask: Ask::Unregister,
                });
            }
        }
    }

    fn request(&mut self, kind: Kind, key: Term, caller: Caller, owner: Pid, ask: Ask) {
        let qkey = kind.quorum_key(&key);
        let Ok(canon) = Canon::of(&qkey) else {
            // Deeper than any store accepts: nobody can hold it.
            let reply = match ask {
                Ask::Register => atom("no"),
                _ => tuple(vec![atom("error"), atom("key_too_deep")]),
            };
            self.actions.push(Action::Reply(caller, reply));
            return;
        };
        let slot = self.slots.entry(canon.clone()).or_insert_with(|| Slot {
            kind,
            key,
            qkey,
            state: State::Free,
            queue: VecDeque::new(),
        });
        if matches!(ask, Ask::Lock { .. })
            && matches!(&slot.state, State::Held { owner: o } if *o == owner)
        {
            // Reentrant: at once, ahead of any waiters (they wait for this
            // very owner, so queueing it behind them would deadlock).
            self.actions.push(Action::Reply(caller, atom("acquired")));
            return;
        }
        slot.queue.push_back(Waiting {
            caller,
            owner: owner.clone(),
            ask,
        });
        self.watch(&owner, &canon);
        self.settle(&canon);
    }

    fn watch(&mut self, pid: &Pid, slot: &Canon) {
        let slots = self.watched.entry(pid.clone()).or_default();
        if slots.is_empty() {
            self.actions.push(Action::Monitor(pid.clone()));
        }
        slots.push(slot.clone());
    }

    fn unwatch(&mut self, pid: &Pid, slot: &Canon) {
        if let Some(slots) = self.watched.get_mut(pid) {
            if let Some(i) = slots.iter().position(|s| s == slot) {
                slots.swap_remove(i);
            }
            if slots.is_empty() {
                self.watched.remove(pid);
                self.actions.push(Action::Demonitor(pid.clone()));
            }
        }
    }

    /// Answers what the slot's state settles and starts the next operation.
    fn settle(&mut self, canon: &Canon) {
        loop {
            let Some(slot) = self.slots.get_mut(canon) else {
                return;
            };
            let holder = match &slot.state {
                State::Held { owner } => Some(owner.clone()),
                State::Elsewhere { holder, .. } => holder.clone(),
                _ => None,
            };
            match &slot.state {
                State::Held { .. } | State::Elsewhere { .. } => {
                    let ours = matches!(slot.state, State::Held { .. });
                    let Some(front) = slot.queue.front() else {
                        if matches!(slot.state, State::Elsewhere { watch: None, .. }) {
                            // Nobody waits: forget what may go stale.
                            self.slots.remove(canon);
                        }
                        return;
                    };
                    let answer = match &front.ask {
                        Ask::Lock { .. } if ours && Some(&front.owner) == holder.as_ref() => {
                            Some(atom("acquired"))
                        }
                        Ask::Lock { block: false } => {
                            Some(reply_for(&front.ask, false, holder.as_ref()))
                        }
                        Ask::Register => Some(atom("no")),
                        Ask::Unregister if !ours => Some(atom("ok")),
                        Ask::Unregister => None,
                        Ask::Lock { block: true } => None,
                    };
                    match answer {
                        Some(reply) => {
                            let w = slot.queue.pop_front().expect("front exists");
                            self.actions.push(Action::Reply(w.caller, reply));
                            self.unwatch(&w.owner, canon);
                        }
                        None if ours && matches!(front.ask, Ask::Unregister) => {
                            let w = slot.queue.pop_front().expect("front exists");
                            self.unwatch(&w.owner, canon);
                            let owner = holder.expect("held");
                            self.release(canon, &owner, true);
                            self.unwatch(&owner, canon);
                            self.actions.push(Action::Reply(w.caller, atom("ok")));
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
                                let qkey = slot.qkey.clone();
                                self.actions.push(Action::WaitRelease {
                                    op,
                                    slot: canon.clone(),
                                    qkey,
                                });
                            }
                            return;
                        }
                    }
                }
                State::Free => {
                    let Some(front) = slot.queue.pop_front() else {
                        self.slots.remove(canon);
                        return;
                    };
                    if front.ask == Ask::Unregister {
                        self.actions.push(Action::Reply(front.caller, atom("ok")));
                        self.unwatch(&front.owner, canon);
                        continue;
                    }
                    let op = self.next_op;
                    self.next_op += 1;
                    let value = tuple(vec![
                        Term::from(front.owner.clone()),
                        self.self_node.clone(),
                    ]);
                    let qkey = slot.qkey.clone();
                    slot.state = State::Acquiring { op, for_: front };
                    self.actions.push(Action::Acquire {
                        op,
                        slot: canon.clone(),
                        qkey,
                        value,
                        epoch: self.epoch,
                    });
                    return;
                }
                State::Acquiring { .. }
                | State::Orphaned { .. }
                | State::Releasing { .. }
                | State::Backoff => return,
            }
        }
    }

    /// A quorum operation ended. Outcomes of operations the slot no longer
    /// waits for are ignored (an acquisition that lands after its owner
    /// died is released at once).
    pub fn op_done(&mut self, canon: &Canon, op: OpId, epoch: u64, outcome: Outcome) {
        let Some(slot) = self.slots.get_mut(canon) else {
            return;
        };
        match std::mem::replace(&mut slot.state, State::Free) {
            State::Acquiring { op: mine, for_ } if mine == op => {
                let outcome = if outcome == Outcome::Acquired && epoch != self.epoch {
                    // Taken under a session that has since been given up.
                    Outcome::Busy
                } else {
                    outcome
                };
                self.acquired(canon, for_, outcome);
            }
            State::Releasing { op: mine } if mine == op => self.settle(canon),
            State::Elsewhere {
                watch: Some(mine), ..
            } if mine == op => self.settle(canon),
            other => slot.state = other,
        }
    }

    fn acquired(&mut self, canon: &Canon, for_: Waiting, outcome: Outcome) {
        let owner_alive = self
            .watched
            .get(&for_.owner)
            .is_some_and(|s| s.contains(canon));
        let slot = self.slots.get_mut(canon).expect("present");
        match outcome {
            Outcome::Acquired => {
                let (kind, key) = (slot.kind, slot.key.clone());
                slot.state = State::Held {
                    owner: for_.owner.clone(),
                };
                if !owner_alive {
                    // Died while we were taking it: give it back. Its
                    // watch entry is already gone.
                    self.release(canon, &for_.owner, false);
                    return;
                }
                self.actions.push(Action::Notify {
                    what: "eq_owned",
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
                    .push(Action::Reply(for_.caller, reply_for(&for_.ask, true, None)));
                // The watch entry for this request now stands for the hold.
            }
            Outcome::HeldBy(holder) => {
                slot.state = State::Elsewhere {
                    holder,
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
                self.actions.push(Action::RetryLater {
                    slot: canon.clone(),
                });
                return;
            }
            Outcome::NoQuorum | Outcome::Released => {
                if owner_alive {
                    let reply = reply_for(&for_.ask, false, None);
                    self.actions.push(Action::Reply(for_.caller, reply));
                    self.unwatch(&for_.owner, canon);
                }
            }
        }
        self.settle(canon);
    }

    /// After [`Action::RetryLater`].
    pub fn retry(&mut self, canon: &Canon) {
        if let Some(slot) = self.slots.get_mut(canon) {
            if matches!(slot.state, State::Backoff) {
                slot.state = State::Free;
                self.settle(canon);
            }
        }
    }

    /// Releases `canon`, held by `owner` here. `notify`: tell the guard and
    /// the name's subscribers (not needed when they never heard of it). The
    /// caller drops the owner's watch entry if it still has one.
    fn release(&mut self, canon: &Canon, owner: &Pid, notify: bool) {
        let op = self.next_op;
        self.next_op += 1;
        let value = self.value_of(owner);
        let slot = self.slots.get_mut(canon).expect("present");
        slot.state = State::Releasing { op };
        let (kind, key, qkey) = (slot.kind, slot.key.clone(), slot.qkey.clone());
        self.actions.push(Action::Release {
            op,
            slot: canon.clone(),
            qkey,
            value,
        });
        if notify {
            self.actions.push(Action::Notify {
                what: "eq_released",
                owner: owner.clone(),
                kind,
                key: key.clone(),
            });
            if kind == Kind::Name {
                self.actions.push(Action::NameChanged {
                    name: key,
                    pid: None,
                });
            }
        }
    }

    /// A watched pid is gone. `connection_lost`: only its node's connection
    /// to us went (`noconnection`); it may still run, so its holds are kept
    /// until its guard has surely told it ([`Action::ReleaseLater`]).
    pub fn owner_down(&mut self, pid: &Pid, connection_lost: bool) {
        let Some(slots) = self.watched.remove(pid) else {
            return;
        };
        for canon in slots {
            let Some(slot) = self.slots.get_mut(&canon) else {
                continue;
            };
            slot.queue.retain(|w| &w.owner != pid);
            match &slot.state {
                State::Held { owner } if owner == pid => {
                    if connection_lost {
                        slot.state = State::Orphaned { owner: pid.clone() };
                        self.actions.push(Action::ReleaseLater {
                            slot: canon.clone(),
                            owner: pid.clone(),
                        });
                    } else {
                        self.release(&canon, pid, true);
                    }
                }
                _ => self.settle(&canon),
            }
        }
    }

    /// After [`Action::ReleaseLater`].
    pub fn release_due(&mut self, canon: &Canon, owner: &Pid) {
        let due = self
            .slots
            .get(canon)
            .is_some_and(|s| matches!(&s.state, State::Orphaned { owner: o } if o == owner));
        if due {
            self.release(canon, owner, true);
        }
    }

    /// The session could not be renewed in time: every hold may lapse
    /// soon. Tell every owner (through its guard) now, and forget the holds;
    /// the masters drop them when the old session ends. New acquisitions
    /// use the next session (`epoch` + 1).
    pub fn session_lost(&mut self) {
        self.epoch += 1;
        let canons: Vec<Canon> = self.slots.keys().cloned().collect();
        for canon in canons {
            let slot = self.slots.get_mut(&canon).expect("present");
            let owner = match &slot.state {
                State::Held { owner } | State::Orphaned { owner } => owner.clone(),
                _ => continue,
            };
            let (kind, key) = (slot.kind, slot.key.clone());
            slot.state = State::Elsewhere {
                holder: Some(owner.clone()),
                watch: None,
            };
            self.actions.push(Action::Notify {
                what: "eq_lost",
                owner: owner.clone(),
                kind,
                key: key.clone(),
            });
            if kind == Kind::Name {
                self.actions.push(Action::NameChanged {
                    name: key,
                    pid: None,
                });
            }
            self.unwatch(&owner, &canon);
            self.settle(&canon);
        }
    }

    /// Every name this node holds, for a peer's subscription.
    pub fn held_names(&self) -> Vec<(Term, Pid)> {
        self.slots
            .values()
            .filter(|s| s.kind == Kind::Name)
            .filter_map(|s| match &s.state {
                State::Held { owner } | State::Orphaned { owner } => {
                    Some((s.key.clone(), owner.clone()))
                }
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;

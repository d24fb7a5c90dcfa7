//! The process registered as `erl_quorum`: the tokio driver around
//! [`Slots`], [`Shards`] and [`Session`]. It parses the calls of
//! `rebar_fixture/PROTOCOL.md`, routes each key to the node holding its
//! shard, carries out the slots' actions (replies, monitors, grants from a
//! held shard, messages to guards and subscribers), keeps the session
//! renewed and its masters repaired, and shares name changes with its peer
//! serving nodes.

use super::names::{change, NameView};
use super::rounds::{Event, Job};
use super::session::{AfterRepair, Session};
use super::shards::{shard_key, Shards};
use super::slots::{shard_of_key, Action, Kind, Outcome, SlotId, Slots};
use super::ServicesConfig;
use crate::process::{Caller, Mail, Process, ProcessError};
use crate::term::{as_tuple, atom, int, is_atom, list, tuple, Pid, Reference, Term};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What a monitor set by the server watches.
#[derive(Debug, Clone)]
enum Watched {
    Owner(Pid),
    Subscriber(Pid),
    PeerSubscriber(Pid),
    Peer(String),
}

mod routing;
mod sharing;

pub(super) struct Server {
    pub process: Process,
    pub config: ServicesConfig,
    pub slots: Slots,
    pub names: NameView,
    pub jobs: mpsc::UnboundedSender<Job>,
    /// A worker of its own for session renewals: never behind long waits.
    pub renewals: mpsc::UnboundedSender<Job>,
    pub events: mpsc::UnboundedSender<Event>,
    pub session: Session,
    /// Which node grants the keys of each shard.
    shards: Shards,
    /// Slots waiting for a shard's round to end (slot -> shard).
    shard_waiters: HashMap<SlotId, u32>,
    monitors: HashMap<Reference, Watched>,
    owner_refs: HashMap<Pid, Reference>,
    subscribers: HashSet<Pid>,
    peer_subscribers: HashSet<Pid>,
    /// Peers whose names we follow (subscribed and monitored).
    peers_up: HashSet<String>,
    /// Peers with a subscription job in flight.
    peers_asking: HashSet<String>,
    /// Name changes not yet sent to subscribers / to peer subscribers: sent
    /// when the mailbox is momentarily empty, one message for many changes.
    unsent: Vec<Term>,
    unsent_to_peers: Vec<Term>,
    /// The request being handled came forwarded by a peer, which answers
    /// its caller's next `whereis_name` from its view of our names: the
    /// changes it causes go out before its reply (see `carry_out`).
    changes_before_replies: bool,
}

impl Server {
    pub fn new(
        process: Process,
        config: ServicesConfig,
        jobs: mpsc::UnboundedSender<Job>,
        renewals: mpsc::UnboundedSender<Job>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Server {
        let slots = Slots::new();
        let session = Session::new(&process, 0);
        Server {
            process,
            config,
            slots,
            names: NameView::default(),
            jobs,
            renewals,
            events,
            session,
            shards: Shards::default(),
            shard_waiters: HashMap::new(),
            monitors: HashMap::new(),
            owner_refs: HashMap::new(),
            subscribers: HashSet::new(),
            peer_subscribers: HashSet::new(),
            peers_up: HashSet::new(),
            peers_asking: HashSet::new(),
            unsent: Vec::new(),
            unsent_to_peers: Vec::new(),
            changes_before_replies: false,
        }
    }

    pub async fn run(mut self, mut events: mpsc::UnboundedReceiver<Event>) {
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let unsent = !self.unsent.is_empty() || !self.unsent_to_peers.is_empty();
            tokio::select! {
                biased;
                mail = self.process.recv() => match mail {
                    Ok(mail) => self.handle_mail(mail),
                    Err(ProcessError::Exited(reason)) => {
                        tracing::warn!(%reason, "erl_quorum service stopped");
                        return;
                    }
                },
                Some(event) = events.recv() => self.handle_event(event),
                _ = ticker.tick() => self.tick(),
                // Only when nothing else is ready: a burst of registrations
                // goes out as one message per subscriber.
                _ = std::future::ready(()), if unsent => self.flush_changes(),
            }
            self.carry_out();
        }
    }

    fn handle_mail(&mut self, mail: Mail) {
        match mail {
            Mail::Message(message) => match as_tuple(&message) {
                Some([kind, from, request]) if is_atom(kind, "$gen_call") => {
                    match Caller::from_term(from) {
                        Some(caller) => self.call(caller, request),
                        None => tracing::warn!(?from, "erl_quorum: call with a malformed From"),
                    }
                }
                Some([kind, from, changes]) if is_atom(kind, "rust_registry_peer") => {
                    self.peer_changes(from, changes)
                }
                _ => tracing::debug!(%message, "erl_quorum: unexpected message ignored"),
            },
            Mail::Down {
                reference, reason, ..
            } => self.down(&reference, &reason),
            Mail::Exit { .. } | Mail::NodeDown { .. } => {}
        }
    }

    fn call(&mut self, caller: Caller, request: &Term) {
        let reply = match as_tuple(request) {
            Some([op, key, Term::Pid(owner), block]) if is_atom(op, "lock") => {
                match block_flag(block) {
                    Some(block) => {
                        if let Some(caller) = self.route(caller, request, Kind::Lock, key) {
                            self.slots.lock(caller, key.clone(), owner.clone(), block);
                        }
                        return;
                    }
                    None => badarg(request),
                }
            }
            Some([op, name, Term::Pid(pid)]) if is_atom(op, "register_name") => {
                if let Some(caller) = self.route(caller, request, Kind::Name, name) {
                    self.slots.register(caller, name.clone(), pid.clone());
                }
                return;
            }
            Some([op, name]) if is_atom(op, "unregister_name") => {
                // A name another serving node holds is released by that
                // node (it monitors the owner and renews the session).
                if !self.slots.knows(Kind::Name, name) {
                    if let Some(peer) = self.names.peer(name).map(str::to_owned) {
                        // Forwarded once: the peer acts on its own holds
                        // only, so two stale views cannot bounce it.
                        let request = tuple(vec![atom("unregister_name_here"), name.clone()]);
                        let _ = self.jobs.send(Job::Forward {
                            caller,
                            node: peer,
                            request,
                        });
                        return;
                    }
                }
                self.slots.unregister(caller, name.clone());
                return;
            }
            Some([op, name]) if is_atom(op, "unregister_name_here") => {
                self.changes_before_replies = true;
                self.slots.unregister(caller, name.clone());
                return;
            }
            Some([op, name]) if is_atom(op, "whereis_name") => self
                .slots
                .whereis_name(name)
                .or_else(|| self.names.whereis(name))
                .map_or(atom("undefined"), Term::from),
            Some([op, key]) if is_atom(op, "whereis_lock") => {
                match self.slots.holder(Kind::Lock, key) {
                    Some(holder) => holder.map_or(atom("undefined"), Term::from),
                    None => match shard_of_key(Kind::Lock, key) {
                        Some(shard) if self.shards.held(shard, self.session.epoch) => {
                            atom("undefined")
                        }
                        Some(shard) => {
                            let key = key.clone();
                            let shard = shard_key(shard);
                            let _ = self.jobs.send(Job::WhereIs { caller, key, shard });
                            return;
                        }
                        None => atom("undefined"),
                    },
                }
            }
            Some([op, Term::Pid(pid)]) if is_atom(op, "subscribe") => {
                if self.subscribers.insert(pid.clone()) {
                    self.watch(Dest::Pid(pid.clone()), Watched::Subscriber(pid.clone()));
                }
                let mut all = self.names.snapshot();
                all.extend(
                    self.slots
                        .held_names()
                        .into_iter()
                        .map(|(n, p)| tuple(vec![n, Term::from(p)])),
                );
                tuple(vec![atom("ok"), list(all)])
            }
            Some([op, Term::Pid(pid)]) if is_atom(op, "subscribe_peer") => {
                self.watch(Dest::Pid(pid.clone()), Watched::PeerSubscriber(pid.clone()));
                self.peer_subscribers.insert(pid.clone());
                let own = self
                    .slots
                    .held_names()
                    .into_iter()
                    .map(|(n, p)| change(n, Some(p)))
                    .collect();
                tuple(vec![atom("ok"), list(own)])
            }
            _ if is_atom(request, "keepalive") => {
                tuple(vec![atom("ok"), int(self.valid_ms() as i64)])
            }
            _ if is_atom(request, "status") => self.status(),
            _ => tuple(vec![
                atom("error"),
                tuple(vec![atom("unknown_request"), request.clone()]),
            ]),
        };
        caller.reply(&self.process, reply);
    }

    /// How long every hold is safe from now, in ms (0 when not confirmed).
    fn valid_ms(&self) -> u64 {
        self.session.valid_until.map_or(0, |t| {
            t.saturating_duration_since(Instant::now()).as_millis() as u64
        })
    }

    fn status(&self) -> Term {
        let pair = |k: &str, v: Term| tuple(vec![atom(k), v]);
        list(vec![
            pair("slots", int(self.slots.len() as i64)),
            pair("peer_names", int(self.names.len() as i64)),
            pair("subscribers", int(self.subscribers.len() as i64)),
            pair("session_valid_ms", int(self.valid_ms() as i64)),
            pair("epoch", int(self.session.epoch as i64)),
        ])
    }

    fn watch(&mut self, target: Dest, what: Watched) {
        let reference = match target {
            Dest::Pid(pid) => self.process.monitor(pid),
            Dest::Peer(node) => self.process.monitor(("erl_quorum", node.as_str())),
        };
        self.monitors.insert(reference, what);
    }

    fn down(&mut self, reference: &Reference, reason: &Term) {
        let Some(what) = self.monitors.remove(reference) else {
            return;
        };
        match what {
            Watched::Owner(pid) => {
                self.owner_refs.remove(&pid);
                let lost = is_atom(reason, "noconnection");
                self.slots.owner_down(&pid, lost);
            }
            Watched::Subscriber(pid) => {
                self.subscribers.remove(&pid);
            }
            Watched::PeerSubscriber(pid) => {
                self.peer_subscribers.remove(&pid);
            }
            Watched::Peer(node) => {
                // Its names stay until its session could have lapsed: its
                // holds are still good on the quorum until then.
                self.peers_up.remove(&node);
                self.shards.forget_node(&node);
                let after = self.config.session_lease + self.config.margin;
                tracing::info!(peer = %node, "erl_quorum: lost a peer serving node");
                let forget = Event::PeerSnapshot {
                    peer: node,
                    names: None,
                };
                self.later(after, forget);
            }
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::ShardTaken {
                shard,
                epoch,
                taken,
                ok_at,
            } => self.shard_taken(shard, epoch, taken, ok_at),
            Event::ShardRetry(shard) => self.retake_shard(shard),
            Event::Retry(slot) => self.slots.retry(slot),
            Event::ReleaseDue(slot, owner) => self.slots.release_due(slot, &owner),
            Event::Renewed {
                epoch,
                sent_at,
                renewed,
                created,
            } => {
                if epoch == self.session.epoch {
                    self.session.renewing = false;
                    // A shard being taken counts: a master that restarts
                    // after saying yes to it would otherwise be taken in
                    // as holding nothing.
                    let holds = self.shards.any(epoch);
                    let (lease, w) = (self.config.session_lease, self.config.w);
                    let repair = self
                        .session
                        .renewed(sent_at, lease, w, renewed, created, holds);
                    for master in repair {
                        self.repair(master);
                    }
                }
            }
            Event::Repaired {
                master,
                epoch,
                generation,
                ok,
            } => {
                if epoch == self.session.epoch {
                    match self.session.repaired(&master, generation, ok) {
                        AfterRepair::Again(pause) if pause.is_zero() => self.repair(master),
                        AfterRepair::Again(pause) => self.later(pause, Event::RepairAgain(master)),
                        AfterRepair::Confirmed | AfterRepair::Nothing => {}
                    }
                }
            }
            Event::RepairAgain(master) => {
                if self.session.is_repairing(&master) {
                    self.repair(master);
                }
            }
            Event::PeerSnapshot { peer, names } => self.peer_snapshot(peer, names),
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let cfg = &self.config;
        if let Some(until) = self.session.valid_until {
            if until <= now + cfg.lost_margin {
                tracing::error!(
                    "erl_quorum: session could not be renewed in time; telling every owner"
                );
                self.slots.session_lost();
                self.shards.session_lost();
                self.session = Session::new(&self.process, self.slots.epoch());
            }
        }
        if !self.session.renewing && now >= self.session.next_renewal {
            self.session.renewing = true;
            self.session.next_renewal = now + self.config.renew_every;
            let _ = self.renewals.send(Job::Renew {
                session: self.session.term.clone(),
                epoch: self.session.epoch,
                lease: self.config.session_lease,
                // All answers are wanted, but a hung master must not hold
                // up the next renewal.
                wait: self.config.renew_every.min(self.config.call_timeout),
            });
        }
        let me = self.process.node().name().to_owned();
        for peer in self.config.peers.clone() {
            if peer != me
                && !self.peers_up.contains(&peer)
                && self.peers_asking.insert(peer.clone())
            {
                let _ = self.jobs.send(Job::SubscribePeer {
                    peer,
                    server: self.process.pid().clone(),
                });
            }
        }
    }

    /// Carries out what the slots asked for. Grants and releases in a
    /// shard this node holds are decided here and now (fed straight back
    /// to the slots, whose next actions this loop carries out too).
    ///
    /// Name changes normally go out in batches, after the replies. For a
    /// request a peer forwarded, they go out first, on the same connection
    /// as the reply: they are in the peer's mailbox before the reply reaches
    /// its caller, so the caller's next `whereis_name` there sees them.
    fn carry_out(&mut self) {
        let changes_first = std::mem::take(&mut self.changes_before_replies);
        let mut own_changes = Vec::new();
        let mut replies = Vec::new();
        loop {
            let actions = self.slots.take_actions();
            if actions.is_empty() {
                break;
            }
            for action in actions {
                match action {
                    Action::Reply(caller, reply) if changes_first => replies.push((caller, reply)),
                    action => self.carry_out_one(action, &mut own_changes),
                }
            }
        }
        self.publish(own_changes, true);
        if changes_first {
            self.flush_changes();
            for (caller, reply) in replies {
                caller.reply(&self.process, reply);
            }
        }
    }

    fn carry_out_one(&mut self, action: Action, own_changes: &mut Vec<Term>) {
        match action {
            Action::Reply(caller, reply) => caller.reply(&self.process, reply),
            Action::Acquire {
                op,
                slot,
                shard,
                epoch,
            } => {
                let outcome = self.grant(slot, shard, epoch);
                self.slots.op_done(slot, op, epoch, outcome);
            }
            // Nothing to undo on the masters: the shard entry stays.
            Action::Release { op, slot } => self.slots.op_done(slot, op, 0, Outcome::Released),
            // Only after a lost session; the old holds are forgotten,
            // and the next acquisition waits for the shard instead.
            Action::WaitRelease { op, slot } => self.slots.op_done(slot, op, 0, Outcome::Released),
            Action::RetryLater { slot } if self.waits_for_shard(slot) => {}
            Action::RetryLater { slot } => {
                let pause = Duration::from_millis(rand::random_range(5..=25));
                self.later(pause, Event::Retry(slot));
            }
            Action::ReleaseLater { slot, owner } => {
                let after = self.config.session_lease + self.config.margin;
                self.later(after, Event::ReleaseDue(slot, owner));
            }
            Action::Monitor(pid) => {
                let reference = self.process.monitor(pid.clone());
                self.monitors
                    .insert(reference.clone(), Watched::Owner(pid.clone()));
                self.owner_refs.insert(pid, reference);
            }
            Action::Demonitor(pid) => {
                if let Some(reference) = self.owner_refs.remove(&pid) {
                    self.monitors.remove(&reference);
                    self.process.demonitor(&reference);
                }
            }
            Action::Notify {
                what,
                owner,
                kind,
                key,
            } => self.notify(what, owner, kind, key),
            Action::NameChanged { name, pid } => {
                // Our own names live in the slots; the view holds peers'.
                own_changes.push(change(name, pid));
            }
        }
    }

    fn later(&self, after: Duration, event: Event) {
        let events = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = events.send(event);
        });
    }

    /// Tells the guard on the owner's node; an owner on this node is its
    /// own guard: told with an exit signal on `eq_lost`.
    fn notify(&mut self, what: &'static str, owner: Pid, kind: Kind, key: Term) {
        let owner_node = owner.node.name.clone();
        if owner_node == self.process.node().name() {
            if what == "eq_lost" {
                let reason = match kind {
                    Kind::Lock => "lock_lost",
                    Kind::Name => "name_lost",
                };
                self.process
                    .exit_signal(&owner, tuple(vec![atom(reason), key]));
            }
            return;
        }
        let message = tuple(vec![
            atom(what),
            atom(self.process.node().name()),
            Term::from(owner),
            atom(kind.as_str()),
            key,
        ]);
        self.process
            .send(("rust_quorum", owner_node.as_str()), message);
    }
}

/// What a server monitor points at.
enum Dest {
    Pid(Pid),
    Peer(String),
}

fn block_flag(term: &Term) -> Option<bool> {
    if is_atom(term, "true") {
        Some(true)
    } else if is_atom(term, "false") {
        Some(false)
    } else {
        None
    }
}

fn badarg(request: &Term) -> Term {
    tuple(vec![
        atom("error"),
        tuple(vec![atom("badarg"), request.clone()]),
    ])
}

//! The `erl_quorum` service as one sans-IO state machine: the slots, the
//! shards and requests parked on them, the session and its repairs, the
//! names shared with peers and subscribers, and the monitors. No clock, no
//! tasks, no sockets: time comes in as `now`, randomness from a seeded RNG.
//!
//! Inputs: [`Core::handle_request`], [`Core::handle_peer_msg`],
//! [`Core::handle_round_result`], [`Core::handle_down`],
//! [`Core::handle_timeout`] and [`Core::flush_changes`] (when the driver's
//! mailbox is momentarily empty). Outputs: [`Core::poll_action`] (replies,
//! monitors, quorum rounds to run, messages) and [`Core::poll_timeout`].
//! Grants from a held shard, the slots' releases and every timer are
//! settled inside: a driver never answers the core's questions.
//!
//! - `requests`: what each call does.
//! - `routing`: requests by shard, shard rounds, grants.
//! - `fencing`: the grants' fencing tokens.
//! - `lease`: the session, its renewals and repairs.
//! - `sharing`: names from peers, changes to subscribers and peers.
//! - `supervising`: supervised names (`start_name`, hosts, keepers),
//!   carried out for [`crate::services::supervise`].
//! - `watches`: the monitors, by core-side id.
//! - `handoff`: a shard handed to another serving node.
//! - `rebalance`: which shards to hand off, so they spread.
//! - `timers`: what is due when.

mod fencing;
mod handoff;
mod lease;
mod rebalance;
mod requests;
mod routing;
mod sharing;
mod silence;
mod supervising;
mod timers;
mod watches;

#[cfg(test)]
mod handoff_tests;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod supervise_tests;
#[cfg(test)]
mod tests;

pub(crate) use watches::{MonitorId, MonitorTarget};

use super::protocol::{
    lost_reason, GuardNotice, HostMsg, NameChange, NamesChanged, Notice, PeerMsg, Reply,
};
use super::rounds::{Event, Job};
use super::slots::{Action as SlotAction, Kind, Slots};
use super::supervise::Supervise;
use super::ServicesConfig;
use crate::process::Caller;
use crate::term::{Pid, Term};
use lease::Lease;
use rand::rngs::StdRng;
use rand::SeedableRng;
use routing::Routing;
use sharing::Sharing;
use silence::Silence;
use std::collections::VecDeque;
use std::time::Duration;
use timers::{Timer, Timers};
use tokio::time::Instant;
use watches::{Watched, Watches};

/// What the driver must do.
#[derive(Debug)]
pub(crate) enum Output {
    Reply(Caller, Reply),
    /// Monitor `target`; report its `DOWN` as [`Core::handle_down`] with `id`.
    Monitor(MonitorId, MonitorTarget),
    Demonitor(MonitorId),
    /// Run a quorum job on the worker pool (renewals on their own worker);
    /// its [`Event`] comes back through [`Core::handle_round_result`].
    Run(Job),
    /// To `rust_quorum` on the owner's node.
    Guard(GuardNotice),
    /// An owner on this node is its own guard: an exit signal.
    Exit {
        owner: Pid,
        reason: Term,
    },
    Subscribers(Vec<Pid>, NamesChanged),
    Peers(Vec<(Pid, PeerMsg)>),
    /// To the `erl_quorum` process of the serving node named.
    ToPeer(String, PeerMsg),
    /// To a host of supervised names (`eq_start`).
    Host(Pid, HostMsg),
    /// Close the connection to this node: it holds keys here and went
    /// silent (`silence`); its monitors then fire `noconnection`.
    Disconnect(String),
}

/// Who this service is: its node and its process.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub node: String,
    pub pid: Pid,
}

/// Makes the name of a fresh session (`{erl_quorum_session, Node, Ref}`
/// with a new reference).
pub(crate) type SessionNamer = Box<dyn FnMut() -> Term + Send>;

/// How often the session is checked, renewals started and peers asked.
const TICK: Duration = Duration::from_millis(100);

pub(crate) struct Core {
    config: ServicesConfig,
    me: Identity,
    /// The latest `now` an input brought.
    now: Instant,
    rng: StdRng,
    slots: Slots,
    routing: Routing,
    lease: Lease,
    sharing: Sharing,
    watches: Watches,
    timers: Timers,
    supervise: Supervise,
    silence: Silence,
    handoffs: handoff::Handoffs,
    rebalancer: rebalance::Rebalance,
    /// When the last tick ran: a long gap means this node stalled.
    last_tick: Instant,
    outputs: VecDeque<Output>,
}

impl Core {
    pub(crate) fn new(
        config: ServicesConfig,
        me: Identity,
        namer: SessionNamer,
        seed: u64,
        now: Instant,
    ) -> Core {
        let grace = config.session_lease + config.margin;
        let mut timers = Timers::default();
        timers.at(now, Timer::Tick);
        let mut rng = StdRng::seed_from_u64(seed);
        let handoffs = handoff::Handoffs::new(rand::RngExt::random(&mut rng));
        Core {
            lease: Lease::new(namer, now),
            config,
            now,
            rng,
            slots: Slots::new(),
            routing: Routing::default(),
            sharing: Sharing::default(),
            watches: Watches::default(),
            timers,
            supervise: Supervise::new(me.node.clone(), grace),
            silence: Silence::default(),
            handoffs,
            rebalancer: rebalance::Rebalance::default(),
            last_tick: now,
            me,
            outputs: VecDeque::new(),
        }
    }

    pub(crate) fn poll_action(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Core::handle_timeout`] is due next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Whether name changes wait to go out ([`Core::flush_changes`] sends
    /// them, best when no input is waiting: one message for many changes).
    pub(crate) fn has_unsent(&self) -> bool {
        self.sharing.has_unsent()
    }

    pub(crate) fn handle_peer_msg(&mut self, msg: PeerMsg, now: Instant) {
        self.now = now;
        self.peer_changes(msg);
        self.settle();
    }

    pub(crate) fn handle_round_result(&mut self, event: Event, now: Instant) {
        self.now = now;
        match event {
            Event::ShardTaken {
                shard,
                epoch,
                taken,
                ok_at,
                wall_ms,
            } => self.shard_taken(shard, epoch, taken, ok_at, wall_ms),
            Event::Renewed {
                epoch,
                sent_at,
                renewed,
                created,
            } => self.renewed(epoch, sent_at, renewed, created),
            Event::Repaired {
                master,
                epoch,
                generation,
                ok,
            } => self.repaired(master, epoch, generation, ok),
            Event::PeerSnapshot { peer, names } => self.peer_snapshot(peer, names),
            Event::Transferred {
                id,
                shard,
                ok,
                ok_at,
                back_at,
            } => self.transferred(id, shard, ok, ok_at, back_at),
            // The driver's own (it calls `drain`).
            Event::Drain(_) => {}
        }
        self.settle();
    }

    /// A monitor the core asked for fired with `reason`; `noconnection`
    /// means only the connection went (the target may still run).
    pub(crate) fn handle_down(&mut self, id: MonitorId, reason: &Term, now: Instant) {
        self.now = now;
        let connection_lost = crate::term::is_atom(reason, "noconnection");
        let Some(watched) = self.watches.down(id) else {
            return;
        };
        match watched {
            Watched::Owner(pid) => {
                self.owner_went(&pid, reason, connection_lost);
                self.slots.owner_down(&pid, connection_lost)
            }
            Watched::Host(pid) => self.supervise.host_down(&pid, now),
            Watched::LateChild(pid) => self.supervise.child_gone(&pid, connection_lost, now),
            Watched::Subscriber(pid) => self.sharing.subscriber_gone(&pid),
            Watched::PeerSubscriber(pid) => self.sharing.peer_subscriber_gone(&pid),
            Watched::Peer(node) => {
                // Its names stay until its session could have lapsed: its
                // holds are still good on the quorum until then.
                tracing::info!(peer = %node, "erl_quorum: lost a peer serving node");
                self.sharing.peer_down(&node);
                self.routing.shards.forget_node(&node);
                let after = self.config.session_lease + self.config.margin;
                self.timers.at(now + after, Timer::PeerGone(node));
            }
        }
        self.settle();
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Tick => {
                    if now > self.last_tick + silence::SILENCE / 2 {
                        self.silence.stalled(now);
                    }
                    self.last_tick = now;
                    self.tick();
                    self.timers.at(now + TICK, Timer::Tick);
                }
                Timer::SlotRetry(slot) => self.slots.retry(slot),
                Timer::ReleaseDue(slot, owner) => self.slots.release_due(slot, &owner),
                Timer::ShardRetry(shard) => self.retake_shard(shard),
                Timer::RepairAgain(master) => self.repair_again(master),
                Timer::PeerGone(peer) => self.peer_snapshot(peer, None),
                Timer::StartDeadline(id) => self.supervise.deadline(id),
                Timer::StartRetry(name) => self.supervise.retry(&name, now),
                Timer::StartResume(id) => self.supervise.resume(id, now),
                Timer::Handoff(id) => self.handoff_due(id),
                Timer::Receive(shard, from, id) => self.receive_due(shard, from, id),
            }
            self.settle();
        }
    }

    /// Sends the name changes waiting (see [`Core::has_unsent`]).
    pub(crate) fn flush_changes(&mut self) {
        let node = self.me.node.clone();
        let (subscribers, peers) = self.sharing.flush(&node);
        self.outputs.extend(subscribers);
        self.outputs.extend(peers);
    }

    fn tick(&mut self) {
        self.check_session();
        for node in self.silence.due(self.now, self.config.lost_margin) {
            tracing::warn!(%node, "erl_quorum: a node holding keys here went silent; dropping its connection");
            self.outputs.push_back(Output::Disconnect(node));
        }
        self.renew_if_due();
        let server = self.me.pid.clone();
        for peer in self.sharing.peers_to_ask(&self.config.peers, &self.me.node) {
            self.outputs.push_back(Output::Run(Job::SubscribePeer {
                peer,
                server: server.clone(),
            }));
        }
        self.rebalance();
    }

    /// Carries out what the slots asked for, until they ask nothing more.
    /// Grants and releases in a shard this node holds are decided here and
    /// fed straight back.
    ///
    /// Name changes normally go out in batches, after the replies. For a
    /// request a peer forwarded they go out first: they are in the peer's
    /// mailbox before the reply reaches its caller, so the caller's next
    /// `whereis_name` there sees them.
    fn settle(&mut self) {
        let changes_first = self.sharing.take_changes_first();
        let mut own_changes = Vec::new();
        let mut replies = Vec::new();
        loop {
            // Supervision asks the slots (a keeper's child to register) and
            // the slots answer it (grants, releases): until both are quiet.
            self.drain_supervise();
            let actions = self.slots.take_actions();
            if actions.is_empty() {
                break;
            }
            for action in actions {
                if let SlotAction::Reply(caller, reply) = &action {
                    if self.supervise.swallow_reply(caller) {
                        continue;
                    }
                    self.note_keeper_reply(caller, reply);
                }
                match action {
                    SlotAction::Reply(caller, reply) if changes_first => {
                        replies.push((caller, reply))
                    }
                    action => self.carry_out(action, &mut own_changes),
                }
            }
        }
        self.publish(own_changes, true);
        if changes_first {
            self.flush_changes();
            for (caller, reply) in replies {
                self.outputs.push_back(Output::Reply(caller, reply));
            }
        }
    }

    fn carry_out(&mut self, action: SlotAction, own_changes: &mut Vec<NameChange>) {
        use super::slots::Outcome;
        match action {
            SlotAction::Reply(caller, reply) => {
                self.outputs.push_back(Output::Reply(caller, reply))
            }
            SlotAction::Acquire {
                op,
                slot,
                shard,
                epoch,
            } => {
                let outcome = self.grant(slot, shard, epoch);
                self.slots.op_done(slot, op, epoch, outcome);
            }
            // Nothing to undo on the masters: the shard entry stays.
            SlotAction::Release { op, slot } => self.slots.op_done(slot, op, 0, Outcome::Released),
            // Only after a lost session; the old holds are forgotten, and
            // the next acquisition waits for the shard instead.
            SlotAction::WaitRelease { op, slot } => {
                self.slots.op_done(slot, op, 0, Outcome::Released)
            }
            SlotAction::RetryLater { slot } if self.routing.waits_for_shard(slot) => {}
            SlotAction::RetryLater { slot } => {
                let pause = self.jitter(5, 25);
                self.timers.at(self.now + pause, Timer::SlotRetry(slot));
            }
            SlotAction::ReleaseLater { slot, owner } => {
                // A node dropped for silence: once its guard surely told the
                // owner (`silence`); otherwise a whole lease and the margin.
                let latest = self.now + self.config.session_lease + self.config.margin;
                let at = self
                    .silence
                    .release_at(&owner.node.name)
                    .map_or(latest, |at| at.min(latest));
                self.timers.at(at, Timer::ReleaseDue(slot, owner));
            }
            SlotAction::Monitor(pid) => {
                let id = self.watches.watch(Watched::Owner(pid.clone()));
                self.outputs
                    .push_back(Output::Monitor(id, MonitorTarget::Process(pid)));
            }
            SlotAction::Demonitor(pid) => {
                if let Some(id) = self.watches.unwatch_owner(&pid) {
                    self.outputs.push_back(Output::Demonitor(id));
                }
            }
            SlotAction::Notify {
                notice,
                owner,
                kind,
                key,
            } => self.notify(notice, owner, kind, key),
            // Our own names live in the slots; the view holds peers'.
            SlotAction::NameChanged { name, pid } => {
                if pid.is_none() {
                    self.name_released(&name);
                }
                own_changes.push(NameChange::new(name, pid))
            }
        }
    }

    /// Tells the guard on the owner's node; an owner on this node is its
    /// own guard: told with an exit signal on `eq_lost`.
    fn notify(&mut self, notice: Notice, owner: Pid, kind: Kind, key: Term) {
        self.notify_to(notice, owner, kind, key, None)
    }

    /// [`Core::notify`]; `to`: with `Moved`, the node the hold went to.
    fn notify_to(&mut self, notice: Notice, owner: Pid, kind: Kind, key: Term, to: Option<String>) {
        if owner.node.name != self.me.node {
            match notice {
                Notice::Owned => self.silence.granted(&owner.node.name, self.now),
                Notice::Released | Notice::Lost | Notice::Moved => {
                    self.silence.ended(&owner.node.name)
                }
            }
        }
        if owner.node.name == self.me.node {
            if notice == Notice::Lost {
                let reason = lost_reason(kind, key);
                self.outputs.push_back(Output::Exit { owner, reason });
            }
            return;
        }
        self.outputs.push_back(Output::Guard(GuardNotice {
            notice,
            node: self.me.node.clone(),
            owner,
            kind,
            key,
            to,
        }));
    }

    /// A pause of `min..=max` ms, from the seeded RNG.
    fn jitter(&mut self, min: u64, max: u64) -> Duration {
        use rand::RngExt;
        Duration::from_millis(self.rng.random_range(min..=max))
    }

    /// How long every hold is safe from now, in ms (0 when not confirmed).
    fn valid_ms(&self) -> u64 {
        self.lease.valid_ms(self.now)
    }
}

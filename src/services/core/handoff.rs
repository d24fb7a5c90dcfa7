//! Graceful handoff: this node hands a shard it holds, with its holds,
//! names and waiters, to another serving node, so that owners keep their
//! locks and names and no caller sees `no_quorum` (on a stop, or to
//! rebalance). The wire is [`crate::services::protocol::handoff`].
//!
//! The giver G drives each handoff of shard S to the taker T:
//! 1. G freezes S (requests for it park) and asks T (`ask`).
//! 2. T, when it may grant and neither holds nor takes S, parks S's
//!    requests too and answers `ready` with its shard value and session.
//! 3. G runs one transfer round (`erl_quorum_transfer` on every master:
//!    G's entry becomes T's under T's session, in one step per master, so
//!    no third node can take S in between). Short of W, the round moves the
//!    entries back and G serves S again.
//! 4. With W, S is T's on the quorum: G takes S's slots out (no notice to
//!    anyone), redirects its parked requests to T, and sends T the `state`
//!    (holds with their tokens, waiters in order, S's next fencing token),
//!    again every [`RESEND`] until T answers `done`.
//! 5. T installs it: each owner's guard hears `eq_owned` from T (before T
//!    grants anything), names are announced as T's, the waiters queue in
//!    their order; then it serves S and answers `done`.
//! 6. G tells each owner's guard `eq_moved` (forget the hold for G: G's
//!    going later costs the owner nothing).
//!
//! Failures: no `ready` within [`ASK_WAIT`] (or `no`): G serves S again
//! (nothing moved) and tells T `no` (T's parked requests go to G). A round
//! short of W is moved back: back on W masters, G serves S again likewise,
//! the masters that did not confirm the move back not counting for its
//! session until repaired (they may hold T's entry); back on fewer, G
//! gives S up as after a late round (below). G's last moment is [`GIVER_LAST`]
//! after its `ask`, or 2 s before T's session could lapse (T says how long
//! it lives in `valid`), whichever is sooner: no `done` by then, G tells
//! the owners `eq_lost` (T may never learn of them); a round still
//! running then, or ending within [`ACK_WINDOW`] of it, G sends no state
//! and tells them at once, redirecting the shard's callers to T (unless a
//! hold was orphaned while the round ran: G then waits for the round, and
//! keeps S if it fell short). All of G's deadlines
//! count from its `ask`; T, without the state
//! by [`Core::receive_wait`] (longer than all of them, a lease and a margin
//! for the guards), finds out with a confirm round whether it holds S and
//! serves it empty. A shard over the `state` limits is never handed (it stays). A
//! session lost on either side mid-way: its holds were told `eq_lost` by
//! the slots; the shard is taken again.

use super::timers::Timer;
use super::{Core, Output};
use crate::process::Caller;
use crate::services::protocol::handoff::{
    HandoffBody, HandoffMsg, MovedSlot, MAX_MOVED_SLOTS, MAX_STATE_BYTES,
};
use crate::services::protocol::{Notice, PeerMsg, Reply};
use crate::services::rounds::Job;
use crate::services::shards::{Parked, FOREIGN_TTL, SHARDS};
use crate::services::slots::Kind;
use crate::term::{Pid, Term};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

#[path = "handoff_taker.rs"]
mod taker;

/// How long the giver waits for `ready` before serving the shard again.
pub(crate) const ASK_WAIT: Duration = Duration::from_secs(1);
/// The part of the giver's schedule ([`GIVER_LAST`]) for its transfer
/// round, its wait for a worker included (no deadline of its own: the
/// round is cut off at the giver's last moment).
pub(crate) const TRANSFER_WAIT: Duration = Duration::from_secs(3);
/// How often the giver sends the state again until `done`.
pub(crate) const RESEND: Duration = Duration::from_millis(250);
/// How long the giver sends the state before telling the owners lost.
pub(crate) const GIVE_UP: Duration = Duration::from_secs(5);
/// Time for the owners' guards to act on the giver's `eq_lost` before the
/// taker may grant their keys to others (the release margin's role after
/// a lost session).
const LOST_MARGIN: Duration = Duration::from_secs(2);
/// How long a taker waits for the state at least: past the giver's last
/// moment to send it and tell the owners otherwise, plus [`LOST_MARGIN`].
/// (The wait is longer: see [`Core::receive_wait`].)
pub(crate) const RECEIVE_WAIT: Duration = Duration::from_secs(11);
/// The giver's schedule, counted from its `ask` (the taker's from the
/// ask's arrival, never earlier): the state goes, or the owners are told
/// lost, before the taker serves the shard empty.
const GIVER_LAST: Duration = ASK_WAIT
    .saturating_add(TRANSFER_WAIT)
    .saturating_add(GIVE_UP);
const _: () = assert!(
    RECEIVE_WAIT.as_millis() >= GIVER_LAST.saturating_add(LOST_MARGIN).as_millis(),
    "the taker must outwait the giver's give-up and the guards' margin"
);
/// A handoff whose owners would have to be told lost within this of the
/// taker's `ready` is not made (the taker's session about to lapse).
const TOO_LITTLE: Duration = Duration::from_millis(500);
/// The state is not sent when less than this is left for it to be
/// installed and acknowledged before the owners must be told.
const ACK_WINDOW: Duration = Duration::from_millis(500);
/// Handoffs installed remembered, to answer a resent state again.
const INSTALLED_KEPT: usize = 256;

#[derive(Debug)]
enum Phase {
    Asked,
    Transferring,
    Sent {
        state: HandoffBody,
        holds: Vec<(Pid, Kind, Term)>,
    },
}

#[derive(Debug)]
struct Outgoing {
    to: String,
    shard: u32,
    phase: Phase,
    /// When the `ask` went: the transfer's and the give-up's deadlines
    /// count from it (never from a late step).
    asked: Instant,
    /// From `asked`, when the owners are told `eq_lost` at the latest if
    /// the taker has not said `done`: [`GIVER_LAST`], or sooner when the
    /// taker's session could lapse sooner ([`LOST_MARGIN`] before it).
    last: Duration,
}

/// The handoffs this node gives and takes.
#[derive(Debug, Default)]
pub(super) struct Handoffs {
    /// Starts at a random number below 2^61 at each start (see
    /// [`Handoffs::new`]).
    next_id: u64,
    outgoing: BTreeMap<u64, Outgoing>,
    /// (giver, id, shard) of the last installed handoffs.
    installed: VecDeque<(String, u64, u32)>,
    /// Stopping: every shard goes, none comes.
    stopping: bool,
    /// Round-robin over the live peers.
    next_target: usize,
    /// Shards kept at a stop: too large to hand over in one `state`, or
    /// with an orphaned hold.
    kept: BTreeSet<u32>,
}

impl Handoffs {
    /// `first_id`: random, so that a restarted node's ids do not repeat
    /// its last incarnation's. The taker keys the handoffs it installed
    /// by (giver, id, shard) to answer a resent `state` with `done`
    /// without installing it twice: with ids from 0 at each start, the
    /// restarted giver's first handoff of a shard was taken for its last
    /// incarnation's, answered `done` and never installed (its holds
    /// lost while the guards heard `eq_moved`; the simulation found it).
    pub(super) fn new(first_id: u64) -> Handoffs {
        Handoffs {
            next_id: first_id >> 3,
            ..Handoffs::default()
        }
    }

    pub(super) fn stopping(&self) -> bool {
        self.stopping
    }

    /// The shards a stop keeps (too large, or with an orphaned hold).
    #[cfg(test)]
    pub(super) fn kept(&self) -> &BTreeSet<u32> {
        &self.kept
    }

    /// Handoffs given by this node and not ended.
    pub(super) fn in_flight(&self) -> usize {
        self.outgoing.len()
    }

    fn handing(&self, shard: u32) -> bool {
        self.outgoing.values().any(|o| o.shard == shard)
    }
}

/// The holds of `slots` whose owners hear of the move (an orphaned hold's
/// owner was told lost already: no notice).
fn moved_holds(slots: &[MovedSlot]) -> Vec<(Pid, Kind, Term)> {
    slots
        .iter()
        .filter(|s| !s.orphaned)
        .filter_map(|s| {
            let (owner, _) = s.holder.as_ref()?;
            Some((owner.clone(), s.kind, s.key.clone()))
        })
        .collect()
}

impl Core {
    /// Hands shard `shard` (held here) to the serving node `to`; `false`
    /// when not held, or already being handed. (Rebalancing's entry
    /// point; the simulation drives it.)
    #[cfg_attr(not(test), expect(dead_code))]
    pub(crate) fn hand_off(&mut self, shard: u32, to: &str, now: Instant) -> bool {
        self.now = now;
        let started = self.start_handoff(shard, to);
        self.settle();
        started
    }

    /// Stops taking shards and hands every held one to the live peers in
    /// turn (a stop: SIGTERM). [`Core::drained`] says when all are gone.
    pub(crate) fn drain(&mut self, now: Instant) {
        self.now = now;
        self.handoffs.stopping = true;
        tracing::info!("erl_quorum: stopping; handing every shard over");
        for shard in self.routing.shards.held_shards(self.lease.session.epoch) {
            self.hand_to_any(shard);
        }
        self.settle();
    }

    /// Stopping, and no shard is held or in a handoff any more (or none
    /// can be: no peer is there to take them).
    pub(crate) fn drained(&self) -> bool {
        let held = self.routing.shards.held_shards(self.lease.session.epoch);
        let kept = &self.handoffs.kept;
        self.handoffs.stopping
            && self.handoffs.outgoing.is_empty()
            && (held.iter().all(|s| kept.contains(s)) || self.sharing.live_peers().is_empty())
    }

    /// Hands `shard` to the next live peer, if any.
    pub(super) fn hand_to_any(&mut self, shard: u32) {
        let peers = self.sharing.live_peers();
        if peers.is_empty() {
            return;
        }
        let i = self.handoffs.next_target % peers.len();
        self.handoffs.next_target = self.handoffs.next_target.wrapping_add(1);
        let to = peers[i].clone();
        self.start_handoff(shard, &to);
    }

    /// Starts handing `shard` to `to`. Not a shard with an orphaned hold
    /// (its owner's node lost us): its guard may keep the hold until the
    /// validity this node last promised it, which only this node's session
    /// covers; under the taker's, which may lapse sooner (the taker
    /// killed, or cut off), its key could be granted again too soon. It
    /// waits here until the hold is released; a stop keeps it (it lapses
    /// with this node's session, its other owners told by `nodedown`).
    pub(super) fn start_handoff(&mut self, shard: u32, to: &str) -> bool {
        if shard >= SHARDS || to == self.me.node || self.handoffs.handing(shard) {
            return false;
        }
        if !self.fits_one_state(shard) || self.slots.has_orphans(shard) {
            if self.handoffs.stopping {
                self.handoffs.kept.insert(shard);
            }
            return false;
        }
        let id = self.handoffs.next_id;
        let epoch = self.lease.session.epoch;
        if !self.routing.shards.freeze(shard, epoch, to, id) {
            return false;
        }
        self.handoffs.next_id += 1;
        // Frozen, it leaves the entries a repair writes: the entry may be
        // the taker's on a master any moment.
        self.lease.session.generation += 1;
        self.handoffs.outgoing.insert(
            id,
            Outgoing {
                to: to.to_owned(),
                shard,
                phase: Phase::Asked,
                asked: self.now,
                last: GIVER_LAST,
            },
        );
        self.send_handoff(to, id, HandoffBody::Ask { shard });
        self.timers.at(self.now + ASK_WAIT, Timer::Handoff(id));
        true
    }

    /// Whether `shard`'s state fits one message the taker accepts (at most
    /// [`MAX_MOVED_SLOTS`] slots, about [`MAX_STATE_BYTES`]); a larger one
    /// stays here (at a stop: its holds lapse with this node's session).
    fn fits_one_state(&self, shard: u32) -> bool {
        let (slots, bytes) = self.slots.shard_size(shard);
        let fits = slots <= MAX_MOVED_SLOTS && bytes <= MAX_STATE_BYTES;
        if !fits {
            tracing::warn!(
                shard,
                slots,
                bytes,
                "erl_quorum: shard too large to hand over in one state; it stays here"
            );
        }
        fits
    }

    fn send_handoff(&mut self, node: &str, id: u64, body: HandoffBody) {
        let msg = HandoffMsg {
            from: self.me.node.clone(),
            id,
            body,
        };
        self.outputs
            .push_back(Output::ToPeer(node.to_owned(), PeerMsg::Handoff(msg)));
    }

    /// A handoff message from a peer.
    pub(super) fn handoff_msg(&mut self, msg: HandoffMsg) {
        let HandoffMsg { from, id, body } = msg;
        if !self.config.peers.contains(&from) || from == self.me.node {
            tracing::warn!(peer = %from, "erl_quorum: handoff from a node that is not a peer ignored");
            return;
        }
        match body {
            HandoffBody::Ask { shard } => self.asked(from, id, shard),
            HandoffBody::Ready {
                shard,
                value,
                session,
            } => self.ready(&from, id, shard, value, session),
            HandoffBody::Valid { shard, valid_ms } => self.taker_valid(&from, id, shard, valid_ms),
            HandoffBody::No { shard } => {
                if self.outgoing_is(id, &from, shard, |p| matches!(p, Phase::Asked)) {
                    self.not_handed(id, false);
                } else {
                    self.receive_cancelled(&from, id, shard);
                }
            }
            HandoffBody::State {
                shard,
                next_token,
                ok_at,
                slots,
            } => self.install(from, id, shard, next_token, ok_at, slots),
            HandoffBody::Done { shard } => {
                if self.outgoing_is(id, &from, shard, |p| matches!(p, Phase::Sent { .. })) {
                    self.handoff_done(id);
                }
            }
        }
    }

    fn outgoing_is(&self, id: u64, from: &str, shard: u32, phase: impl Fn(&Phase) -> bool) -> bool {
        self.handoffs
            .outgoing
            .get(&id)
            .is_some_and(|o| o.to == from && o.shard == shard && phase(&o.phase))
    }

    /// Giver: the taker's session lives `valid_ms` more. The holds live
    /// under it from the transfer on: uninstalled, their owners must hear
    /// `eq_lost` from here before it could lapse (the taker killed, or cut
    /// off from the masters). (The taker counted `valid_ms` after the ask
    /// went: counted from the ask here, it lapses no sooner.)
    fn taker_valid(&mut self, from: &str, id: u64, shard: u32, valid_ms: u64) {
        if !self.outgoing_is(id, from, shard, |_| true) {
            return;
        }
        let o = self.handoffs.outgoing.get_mut(&id).expect("checked");
        let lapses = Duration::from_millis(valid_ms);
        o.last = o.last.min(lapses.saturating_sub(LOST_MARGIN));
    }

    /// Giver: the taker is ready; the transfer round, its deadline armed.
    fn ready(&mut self, from: &str, id: u64, shard: u32, value: Term, session: Term) {
        if !self.outgoing_is(id, from, shard, |p| matches!(p, Phase::Asked)) {
            return;
        }
        // Too little left for the round and the state before the owners
        // must be told (see `taker_valid`): not now.
        let o = &self.handoffs.outgoing[&id];
        if o.asked + o.last <= self.now + TOO_LITTLE {
            self.not_handed(id, true);
            return;
        }
        let deadline = o.asked + o.last;
        // A hold orphaned since the ask stays (see `start_handoff`).
        if self.slots.has_orphans(shard) {
            self.not_handed(id, true);
            return;
        }
        if let Some(o) = self.handoffs.outgoing.get_mut(&id) {
            o.phase = Phase::Transferring;
        }
        // A round still running then: the owners are told (`handoff_due`).
        self.timers.at(deadline, Timer::Handoff(id));
        let own = &self.lease.session;
        let job = Job::TransferShard {
            shard,
            from: self.shard_value(),
            to: value,
            session,
            epoch: own.epoch,
            handoff: Some((id, own.term.clone())),
        };
        self.outputs.push_back(Output::Run(job));
    }

    /// The session was given up (its holds told lost): a handoff not yet
    /// transferred is abandoned, the taker told `no`, and a transfer round
    /// of one in flight ends unheard. Left going, it went on under the
    /// next session: the shard, taken again meanwhile and granting, was
    /// moved to the taker by the late round while still served here (the
    /// simulation saw two owners). One already transferred goes on: the
    /// shard is the taker's.
    pub(super) fn handoffs_session_lost(&mut self) {
        let ids: Vec<u64> = self
            .handoffs
            .outgoing
            .iter()
            .filter(|(_, o)| matches!(o.phase, Phase::Asked | Phase::Transferring))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(o) = self.handoffs.outgoing.remove(&id) {
                self.send_handoff(&o.to, id, HandoffBody::No { shard: o.shard });
            }
        }
    }

    /// Giver: nothing moved (refused, unanswered, or the round fell short):
    /// serve the shard again; stopping, try the next peer. `tell`: the
    /// taker (which may be waiting, its requests parked) hears `no`.
    fn not_handed(&mut self, id: u64, tell: bool) {
        let Some(o) = self.handoffs.outgoing.remove(&id) else {
            return;
        };
        tracing::info!(shard = o.shard, to = %o.to, "erl_quorum: shard not handed over; serving it");
        if tell {
            self.send_handoff(&o.to, id, HandoffBody::No { shard: o.shard });
        }
        // Held again: the repairs write it again.
        self.lease.session.generation += 1;
        if let Some(parked) = self.routing.shards.thaw(o.shard, id) {
            self.wake_shard_waiters(o.shard);
            for p in parked {
                self.serve(p.caller, p.request);
            }
        }
        if self.handoffs.stopping {
            self.hand_to_any(o.shard);
        }
    }

    /// Giver: the transfer round of handoff `id` ended.
    pub(super) fn transferred(
        &mut self,
        id: u64,
        shard: u32,
        ok: bool,
        ok_at: Vec<String>,
        back_at: Vec<String>,
    ) {
        let Some(o) = self.handoffs.outgoing.get(&id) else {
            return;
        };
        if o.shard != shard || !matches!(o.phase, Phase::Transferring) {
            return;
        }
        // (A hold orphaned while the round ran would be dropped by giving
        // the shard up, its guard maybe not yet told: then it is kept.)
        let orphans = self.slots.has_orphans(shard);
        if !ok && (back_at.len() >= self.config.w || orphans) {
            // Before the shard is served again (its parked requests too):
            // no grant on the strength of the last renewal.
            self.moved_back(&back_at);
            self.not_handed(id, true);
            return;
        }
        // Back on fewer than W, the taker's entry may be on W masters
        // (its confirm round, or a round of its own, would find it): the
        // shard is given up as after a late round. Otherwise the state
        // goes, unless it would come too late to be installed before the
        // owners must be told: then they are told now.
        let late = !ok || self.now + ACK_WINDOW >= o.asked + o.last;
        let (shard, to) = (o.shard, o.to.clone());
        let slots = self.slots.export_shard(shard, &to);
        let holds = moved_holds(&slots);
        if late {
            self.transferred_late(id, shard, &to, slots, holds);
            return;
        }
        let state = HandoffBody::State {
            shard,
            next_token: self.routing.fences.next(shard),
            ok_at,
            slots,
        };
        let until = self.now + FOREIGN_TTL;
        if let Some((to, parked)) = self.routing.shards.handed(shard, id, until) {
            self.redirect(&to, parked);
        }
        self.wake_shard_waiters(shard);
        tracing::info!(shard, %to, "erl_quorum: shard handed over");
        self.send_handoff(&to, id, state.clone());
        let o = self.handoffs.outgoing.get_mut(&id).expect("present");
        o.phase = Phase::Sent { state, holds };
        let next = (self.now + RESEND).min(o.asked + o.last);
        self.timers.at(next, Timer::Handoff(id));
    }

    /// Giver: a transfer round short of W was moved back; `back_at` (W or
    /// more) said they hold this node's entry again. Any other master may hold the
    /// taker's (its `ok` or the move back lost on the way): it counts for
    /// the session only once repaired, and grants wait for a renewal
    /// unless W that renewed it last hold the entry (as for a shard just
    /// taken). Without this, a master left with the taker's entry still
    /// counted here while the taker, serving the shard later, counted it
    /// too: two nodes granting one key (found by the simulation). (Back on
    /// fewer than W, the shard is given up instead: see `transferred`.)
    fn moved_back(&mut self, back_at: &[String]) {
        let session = &mut self.lease.session;
        session.shard_taken_on(back_at, self.config.w);
        let lacking: Vec<String> = session
            .confirmed_except(back_at)
            .into_iter()
            .filter(|master| session.lacking(master))
            .collect();
        for master in lacking {
            self.repair(master);
        }
    }

    /// Giver: the shard is, or may be, the taker's on the quorum, too late
    /// for the state to be installed before the owners must be told (or
    /// moved back onto fewer than W masters, or its round still running at
    /// the deadline): the owners are told lost now (the taker confirms and
    /// serves the shard empty after its wait), the waiters and parked
    /// requests are sent to the taker.
    fn transferred_late(
        &mut self,
        id: u64,
        shard: u32,
        to: &str,
        slots: Vec<MovedSlot>,
        holds: Vec<(Pid, Kind, Term)>,
    ) {
        self.handoffs.outgoing.remove(&id);
        tracing::warn!(shard, %to, "erl_quorum: shard transferred too late to send its state; telling its owners");
        for (owner, kind, key) in holds {
            self.notify(Notice::Lost, owner, kind, key);
        }
        for w in slots.into_iter().flat_map(|s| s.waiters) {
            let caller = Caller {
                pid: w.caller,
                tag: w.tag,
            };
            let reply = Reply::Redirect(to.to_owned());
            self.outputs.push_back(Output::Reply(caller, reply));
        }
        // Not taken back here before the owners' guards acted on it.
        let until = self.now + LOST_MARGIN;
        if let Some((to, parked)) = self.routing.shards.handed(shard, id, until) {
            self.redirect(&to, parked);
        }
        self.wake_shard_waiters(shard);
    }

    fn redirect(&mut self, to: &str, parked: Vec<Parked>) {
        for p in parked {
            let reply = Reply::Redirect(to.to_owned());
            self.outputs.push_back(Output::Reply(p.caller, reply));
        }
    }

    /// Giver: the taker installed it; the guards forget the holds here.
    fn handoff_done(&mut self, id: u64) {
        let Some(o) = self.handoffs.outgoing.remove(&id) else {
            return;
        };
        if let Phase::Sent { holds, .. } = o.phase {
            for (owner, kind, key) in holds {
                self.notify_to(Notice::Moved, owner, kind, key, Some(o.to.clone()));
            }
        }
    }

    /// [`Timer::Handoff`]: unanswered, resend, or give up.
    pub(super) fn handoff_due(&mut self, id: u64) {
        let Some(o) = self.handoffs.outgoing.get(&id) else {
            return;
        };
        match &o.phase {
            Phase::Asked => self.not_handed(id, true),
            Phase::Transferring
                if self.now >= o.asked + o.last && !self.slots.has_orphans(o.shard) =>
            {
                // The round outlived the taker's session as the giver must
                // count it: whatever it did, the owners are told now, and
                // its result is not waited for.
                let (shard, to) = (o.shard, o.to.clone());
                tracing::warn!(shard, %to, "erl_quorum: handoff transfer round still running at its deadline; telling the owners");
                let slots = self.slots.export_shard(shard, &to);
                let holds = moved_holds(&slots);
                self.transferred_late(id, shard, &to, slots, holds);
            }
            Phase::Transferring => {}
            Phase::Sent { .. } if self.now >= o.asked + o.last => {
                let o = self.handoffs.outgoing.remove(&id).expect("present");
                tracing::warn!(shard = o.shard, to = %o.to, "erl_quorum: handoff state never acknowledged; telling its owners");
                if let Phase::Sent { holds, .. } = o.phase {
                    for (owner, kind, key) in holds {
                        self.notify(Notice::Lost, owner, kind, key);
                    }
                }
            }
            Phase::Sent { state, .. } => {
                let (to, state) = (o.to.clone(), state.clone());
                let next = (self.now + RESEND).min(o.asked + o.last);
                self.send_handoff(&to, id, state);
                self.timers.at(next, Timer::Handoff(id));
            }
        }
    }
}

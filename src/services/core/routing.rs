//! Routing by shard: which requests this node serves, which it redirects
//! or parks, the shard rounds behind them, and grants from a held shard
//! (see [`crate::services::shards`]).

use super::fencing::Fences;
use super::timers::Timer;
use super::{Core, Output};
use crate::process::Caller;
use crate::services::protocol::{Reply, Request};
use crate::services::rounds::Job;
use crate::services::shards::{shard_key, Parked, Resolved, Route, Shards, Taken};
use crate::services::slots::{shard_of_key, Kind, Outcome, SlotId};
use crate::term::{tuple, Term};
use std::collections::HashMap;
use std::time::Duration;

/// The shards, and the slots waiting for a shard's round to end.
#[derive(Debug, Default)]
pub(super) struct Routing {
    pub shards: Shards,
    /// Slot -> the shard whose round it waits for: tried again when that
    /// round ends, not on a timer (after a lost session that can take a
    /// lease, and every waiting key would otherwise poll).
    shard_waiters: HashMap<SlotId, u32>,
    /// Each shard's next fencing token.
    pub fences: Fences,
    /// Requests answered with a redirect since the start (`status`): a
    /// client that routes by shard pays none in steady state.
    pub redirects: u64,
}

impl Routing {
    pub(super) fn waits_for_shard(&self, slot: SlotId) -> bool {
        self.shard_waiters.contains_key(&slot)
    }

    /// The slots waiting for `shard`, forgotten here.
    fn waiters_of(&mut self, shard: u32) -> Vec<SlotId> {
        let mut slots: Vec<SlotId> = self
            .shard_waiters
            .iter()
            .filter(|&(_, &s)| s == shard)
            .map(|(&slot, _)| slot)
            .collect();
        // In one order every run (the map's is random).
        slots.sort_unstable();
        for slot in &slots {
            self.shard_waiters.remove(slot);
        }
        slots
    }
}

impl Core {
    /// Routes a lock or register request by its key's shard: gives the
    /// request back when this node serves it, else redirects or parks it.
    pub(super) fn route(
        &mut self,
        caller: Caller,
        request: Request,
        kind: Kind,
        key: &Term,
    ) -> Option<(Caller, Request)> {
        let Some(shard) = shard_of_key(kind, key) else {
            // The slots answer it (nobody can hold such a key).
            return Some((caller, request));
        };
        let parked = Parked { caller, request };
        let epoch = self.lease.session.epoch;
        match self.routing.shards.route(shard, epoch, self.now, parked) {
            Route::Here(parked) => Some((parked.caller, parked.request)),
            Route::Redirect(node, parked) => {
                self.routing.redirects += 1;
                self.outputs
                    .push_back(Output::Reply(parked.caller, Reply::Redirect(node)));
                None
            }
            Route::Parked { take } => {
                if take {
                    self.take_shard(shard);
                }
                None
            }
        }
    }

    /// Starts a round for `shard`, once the session allows a grant.
    pub(super) fn take_shard(&mut self, shard: u32) {
        if !self.may_grant() {
            let at = self.now + Duration::from_millis(100);
            self.timers.at(at, Timer::ShardRetry(shard));
            return;
        }
        let session = &self.lease.session;
        self.outputs.push_back(Output::Run(Job::TakeShard {
            shard,
            value: self.shard_value(),
            epoch: session.epoch,
            session: session.term.clone(),
        }));
    }

    /// A grant must come with at least `lost_margin` of session left (the
    /// guard assumes so until its first keepalive), plus a round's worth
    /// (well under 0.5 s) for a shard taken now.
    pub(super) fn may_grant(&self) -> bool {
        let needed = self.config.lost_margin + Duration::from_millis(500);
        self.lease.session.grants_allowed() && self.valid_ms() > needed.as_millis() as u64
    }

    /// A shard round ended; `wall_ms`: the wall clock when it started (the
    /// base of the shard's fencing tokens, see `fencing`).
    pub(super) fn shard_taken(
        &mut self,
        shard: u32,
        epoch: u64,
        taken: Taken,
        ok_at: Vec<String>,
        wall_ms: u64,
    ) {
        let current = self.lease.session.epoch;
        let resolved = self
            .routing
            .shards
            .taken(shard, epoch, current, taken, self.now);
        match resolved {
            Resolved::Serve(parked) => {
                self.routing.fences.taken(shard, wall_ms);
                // Held now (so a repair from here on writes it). A master
                // that did not say yes may lack the shard: it stops counting
                // before the first grant from it, until repaired.
                for master in self.lease.shard_taken(&ok_at, self.config.w) {
                    self.repair(master);
                }
                // Grants may now wait for a renewal: it starts now, not in 1 s.
                self.renew_if_due();
                self.wake_shard_waiters(shard);
                for p in parked {
                    self.serve(p.caller, p.request);
                }
                if self.handoffs.stopping() {
                    // Taken for a request while stopping: it goes too.
                    self.hand_to_any(shard);
                }
            }
            Resolved::Redirect(node, parked) => {
                self.wake_shard_waiters(shard);
                self.routing.redirects += parked.len() as u64;
                for p in parked {
                    let reply = Reply::Redirect(node.clone());
                    self.outputs.push_back(Output::Reply(p.caller, reply));
                }
            }
            Resolved::NoQuorum(parked) => {
                self.wake_shard_waiters(shard);
                self.no_quorum(parked);
            }
            Resolved::Retry => {
                let pause = self.jitter(20, 80);
                self.timers.at(self.now + pause, Timer::ShardRetry(shard));
            }
            Resolved::Again => self.take_shard(shard),
            Resolved::Nothing => {}
        }
    }

    fn no_quorum(&mut self, parked: Vec<Parked>) {
        for p in parked {
            let reply = Reply::no_quorum(&p.request);
            self.outputs.push_back(Output::Reply(p.caller, reply));
        }
    }

    /// A round for `shard` is due again (refused for now, or the session
    /// did not allow one). Requests parked longer than a call's timeout are
    /// answered "no quorum" (the caller decides whether to retry).
    pub(super) fn retake_shard(&mut self, shard: u32) {
        let timeout = self.config.call_timeout;
        let expired = self.routing.shards.expire(shard, self.now, timeout);
        self.no_quorum(expired);
        if self.routing.shards.retake(shard, self.lease.session.epoch) {
            self.take_shard(shard);
        }
    }

    /// The value of this node's shard entries: `{ServerPid, Session}`. The
    /// session in it tells an entry of this session from one of an earlier
    /// session of the same node, which a master may still hold (and which
    /// lapses with that session).
    pub(super) fn shard_value(&self) -> Term {
        tuple(vec![
            Term::from(self.me.pid.clone()),
            self.lease.session.term.clone(),
        ])
    }

    /// `{QKey, Value}` of every shard this node holds: what a repair writes.
    pub(super) fn held_entries(&self) -> Vec<(Term, Term)> {
        let value = self.shard_value();
        self.routing
            .shards
            .held_shards(self.lease.session.epoch)
            .into_iter()
            .map(|i| (shard_key(i), value.clone()))
            .collect()
    }

    /// Whether a slot may take its key (of `shard`) now: granted when this
    /// node holds the shard under the session (`epoch`) with time to spare;
    /// otherwise the shard is sent for and the slot tries again when its
    /// round ends, or, when another node holds the shard, the waiter is
    /// answered "no quorum" (it asks again and is redirected). Only reached
    /// for shards this node held when the request came, so only after a
    /// lost session.
    pub(super) fn grant(&mut self, slot: SlotId, shard: u32, epoch: u64) -> Outcome {
        let current = self.lease.session.epoch;
        if epoch == current && self.routing.shards.held(shard, epoch) {
            return if self.may_grant() {
                Outcome::Acquired(self.routing.fences.grant(shard))
            } else {
                Outcome::Busy
            };
        }
        if self.routing.shards.foreign(shard) {
            return Outcome::NoQuorum;
        }
        if self.routing.shards.want(shard, current, self.now) {
            self.take_shard(shard);
        }
        self.routing.shard_waiters.insert(slot, shard);
        Outcome::Busy
    }

    /// The slots waiting for `shard`'s round try again.
    pub(super) fn wake_shard_waiters(&mut self, shard: u32) {
        for slot in self.routing.waiters_of(shard) {
            self.slots.retry(slot);
        }
    }
}

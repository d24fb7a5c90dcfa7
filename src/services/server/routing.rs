//! Routing by shard: which requests this node serves, which it redirects
//! or parks, and the shard rounds and repairs behind them (see
//! [`super::super::shards`] and [`super::super::session`]).

use super::Server;
use crate::process::Caller;
use crate::services::rounds::{Event, Job};
use crate::services::shards::{
    no_quorum_reply, redirect, shard_key, Parked, Resolved, Route, Taken,
};
use crate::services::slots::{shard_of_key, Kind, Outcome, SlotId};
use crate::term::{tuple, Term};
use std::time::Duration;
use tokio::time::Instant;

impl Server {
    /// Routes a lock or register request by its key's shard: gives the
    /// caller back when this node serves it, else redirects or parks it.
    pub(super) fn route(
        &mut self,
        caller: Caller,
        request: &Term,
        kind: Kind,
        key: &Term,
    ) -> Option<Caller> {
        let Some(shard) = shard_of_key(kind, key) else {
            // The slots answer it (nobody can hold such a key).
            return Some(caller);
        };
        let parked = Parked {
            caller,
            request: request.clone(),
        };
        match self
            .shards
            .route(shard, self.session.epoch, Instant::now(), parked)
        {
            Route::Here(parked) => Some(parked.caller),
            Route::Redirect(node, parked) => {
                parked.caller.reply(&self.process, redirect(&node));
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
            self.later(Duration::from_millis(100), Event::ShardRetry(shard));
            return;
        }
        let value = self.shard_value();
        let _ = self.jobs.send(Job::TakeShard {
            shard,
            value,
            epoch: self.session.epoch,
            session: self.session.term.clone(),
        });
    }

    /// A grant must come with at least `lost_margin` of session left (the
    /// guard assumes so until its first keepalive), plus a round's worth
    /// (well under 0.5 s) for a shard taken now.
    pub(super) fn may_grant(&self) -> bool {
        let needed = self.config.lost_margin + Duration::from_millis(500);
        self.session.grants_allowed() && self.valid_ms() > needed.as_millis() as u64
    }

    pub(super) fn shard_taken(&mut self, shard: u32, epoch: u64, taken: Taken, ok_at: Vec<String>) {
        let current = self.session.epoch;
        match self
            .shards
            .taken(shard, epoch, current, taken, Instant::now())
        {
            Resolved::Serve(parked) => {
                // Held now (so a repair from here on writes it). A repair in
                // flight writes an older set: it runs again. A master that
                // did not say yes may lack the shard: it stops counting
                // before the first grant from it, until repaired (cheap: a
                // few dozen entries at most).
                self.session.generation += 1;
                self.session.shard_taken_on(&ok_at, self.config.w);
                for master in self.session.confirmed_except(&ok_at) {
                    if self.session.lacking(&master) {
                        self.repair(master);
                    }
                }
                self.wake_waiters(shard);
                for p in parked {
                    self.call(p.caller, &p.request);
                }
            }
            Resolved::Redirect(node, parked) => {
                self.wake_waiters(shard);
                let reply = redirect(&node);
                for p in parked {
                    p.caller.reply(&self.process, reply.clone());
                }
            }
            Resolved::NoQuorum(parked) => {
                self.wake_waiters(shard);
                for p in parked {
                    let reply = no_quorum_reply(&p.request);
                    p.caller.reply(&self.process, reply);
                }
            }
            Resolved::Retry => {
                let pause = Duration::from_millis(rand::random_range(20..=80));
                self.later(pause, Event::ShardRetry(shard));
            }
            Resolved::Again => self.take_shard(shard),
            Resolved::Nothing => {}
        }
    }

    /// A round for `shard` is due again (refused for now, or the session
    /// did not allow one). Requests parked longer than a call's timeout are
    /// answered "no quorum" (the caller decides whether to retry).
    pub(super) fn retake_shard(&mut self, shard: u32) {
        let expired = self
            .shards
            .expire(shard, Instant::now(), self.config.call_timeout);
        for p in expired {
            let reply = no_quorum_reply(&p.request);
            p.caller.reply(&self.process, reply);
        }
        if self.shards.retake(shard, self.session.epoch) {
            self.take_shard(shard);
        }
    }

    /// The value of this node's shard entries: `{ServerPid, Session}`. The
    /// session in it tells an entry of this session from one of an earlier
    /// session of the same node, which a master may still hold (and which
    /// lapses with that session).
    fn shard_value(&self) -> Term {
        tuple(vec![
            Term::from(self.process.pid().clone()),
            self.session.term.clone(),
        ])
    }

    /// `{QKey, Value}` of every shard this node holds: what a repair writes.
    pub(super) fn held_entries(&self) -> Vec<(Term, Term)> {
        let value = self.shard_value();
        self.shards
            .held_shards(self.session.epoch)
            .into_iter()
            .map(|i| (shard_key(i), value.clone()))
            .collect()
    }

    pub(super) fn repair(&self, master: String) {
        let _ = self.jobs.send(Job::Repair {
            master,
            session: self.session.term.clone(),
            epoch: self.session.epoch,
            generation: self.session.generation,
            entries: self.held_entries(),
        });
    }

    /// Whether a slot may take its key (of `shard`) now: granted when this
    /// node holds the shard under the session (`epoch`) with time to spare; otherwise the
    /// shard is sent for and the slot tries again soon, or, when another
    /// node holds the shard, the waiter is answered "no quorum" (it asks
    /// again and is redirected). Only reached for shards this node held
    /// when the request came, so only after a lost session.
    pub(super) fn grant(&mut self, slot: SlotId, shard: u32, epoch: u64) -> Outcome {
        if epoch == self.session.epoch && self.shards.held(shard, epoch) {
            return if self.may_grant() {
                Outcome::Acquired
            } else {
                Outcome::Busy
            };
        }
        if self.shards.foreign(shard) {
            return Outcome::NoQuorum;
        }
        if self.shards.want(shard, self.session.epoch) {
            self.take_shard(shard);
        }
        // Tried again when the shard's round ends, not on a timer: after a
        // lost session that can take a lease, and every waiting key would
        // otherwise poll.
        self.shard_waiters.insert(slot, shard);
        Outcome::Busy
    }

    /// The slots waiting for `shard`'s round try again.
    fn wake_waiters(&mut self, shard: u32) {
        let slots: Vec<SlotId> = self
            .shard_waiters
            .iter()
            .filter(|&(_, &s)| s == shard)
            .map(|(&slot, _)| slot)
            .collect();
        for slot in slots {
            self.shard_waiters.remove(&slot);
            self.slots.retry(slot);
        }
    }

    /// Whether `slot` waits for a shard round (its retry needs no timer).
    pub(super) fn waits_for_shard(&self, slot: SlotId) -> bool {
        self.shard_waiters.contains_key(&slot)
    }
}

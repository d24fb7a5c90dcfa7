//! The session lease: renewals, a session given up when it could not be
//! renewed in time, and repairs of masters that may lack its entries (see
//! [`crate::services::session`]).

use super::timers::Timer;
use super::{Core, Output, SessionNamer};
use crate::services::rounds::Job;
use crate::services::session::{AfterRepair, Session};
use tokio::time::Instant;

pub(super) struct Lease {
    pub session: Session,
    /// Names each new session.
    namer: SessionNamer,
}

impl Lease {
    pub(super) fn new(mut namer: SessionNamer, now: Instant) -> Lease {
        Lease {
            session: Session::new(namer(), 0, now),
            namer,
        }
    }

    pub(super) fn valid_ms(&self, now: Instant) -> u64 {
        self.session
            .valid_until
            .map_or(0, |t| t.saturating_duration_since(now).as_millis() as u64)
    }

    /// A shard was taken with `ok_at` saying yes: the masters to repair.
    /// Held now, so a repair from here on writes it; a repair in flight
    /// writes an older set and runs again.
    pub(super) fn shard_taken(&mut self, ok_at: &[String], w: usize) -> Vec<String> {
        let session = &mut self.session;
        session.generation += 1;
        session.shard_taken_on(ok_at, w);
        session
            .confirmed_except(ok_at)
            .into_iter()
            .filter(|master| session.lacking(master))
            .collect()
    }
}

impl Core {
    /// Gives the session up when it could lapse within `lost_margin`: every
    /// owner is told now, and a new session starts.
    pub(super) fn check_session(&mut self) {
        let Some(until) = self.lease.session.valid_until else {
            return;
        };
        if until > self.now + self.config.lost_margin {
            return;
        }
        tracing::error!("erl_quorum: session could not be renewed in time; telling every owner");
        self.supervise.session_lost();
        self.slots.session_lost();
        self.handoffs_session_lost();
        let again = self.routing.shards.session_lost(self.now);
        let term = (self.lease.namer)();
        self.lease.session = Session::new(term, self.slots.epoch(), self.now);
        for shard in again {
            self.timers.at(self.now, Timer::ShardRetry(shard));
        }
    }

    pub(super) fn renew_if_due(&mut self) {
        let session = &mut self.lease.session;
        // Grants held back for a renewal (a shard taken on masters that did
        // not all renew last time, as a handoff's taker does) would wait
        // up to `renew_every` (1 s) for the next one: the rolling restart's
        // longest gap. One at once instead; while the hold lasts, at most
        // one a tick, as each answers before the next goes.
        let due = self.now >= session.next_renewal || !session.grants_allowed();
        if session.renewing || !due {
            return;
        }
        session.renewing = true;
        session.next_renewal = self.now + self.config.renew_every;
        self.outputs.push_back(Output::Run(Job::Renew {
            session: session.term.clone(),
            epoch: session.epoch,
            lease: self.config.session_lease,
            // All answers are wanted, but a hung master must not hold up
            // the next renewal.
            wait: self.config.renew_every.min(self.config.call_timeout),
        }));
    }

    pub(super) fn renewed(
        &mut self,
        epoch: u64,
        sent_at: Instant,
        renewed: Vec<String>,
        created: Vec<String>,
    ) {
        if epoch != self.lease.session.epoch {
            return;
        }
        self.lease.session.renewing = false;
        // A shard being taken counts: a master that restarts after saying
        // yes to it would otherwise be taken in as holding nothing.
        let holds = self.routing.shards.any(epoch);
        let (lease, w) = (self.config.session_lease, self.config.w);
        let repair = self
            .lease
            .session
            .renewed(sent_at, lease, w, renewed, created, holds);
        for master in repair {
            self.repair(master);
        }
    }

    pub(super) fn repaired(&mut self, master: String, epoch: u64, generation: u64, ok: bool) {
        if epoch != self.lease.session.epoch {
            return;
        }
        match self.lease.session.repaired(&master, generation, ok) {
            AfterRepair::Again(pause) if pause.is_zero() => self.repair(master),
            AfterRepair::Again(pause) => {
                self.timers.at(self.now + pause, Timer::RepairAgain(master))
            }
            AfterRepair::Confirmed => {
                // The repaired master counts from the next renewal: while
                // grants wait for one (a new session whose first renewal
                // found a shard being taken, so every master was repaired
                // first), it goes now rather than in `renew_every`.
                let session = &mut self.lease.session;
                if session.valid_until.is_none() || !session.grants_allowed() {
                    session.next_renewal = self.now;
                    self.renew_if_due();
                }
            }
            AfterRepair::Nothing => {}
        }
    }

    pub(super) fn repair_again(&mut self, master: String) {
        if self.lease.session.is_repairing(&master) {
            self.repair(master);
        }
    }

    /// Writes every held shard back on `master`.
    pub(super) fn repair(&mut self, master: String) {
        let entries = self.held_entries();
        let session = &self.lease.session;
        self.outputs.push_back(Output::Run(Job::Repair {
            master,
            session: session.term.clone(),
            epoch: session.epoch,
            generation: session.generation,
            entries,
        }));
    }
}

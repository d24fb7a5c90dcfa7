//! This node's session lease on the masters, and which masters count for it.
//!
//! Every shard this node holds is an entry under the session; one renewal
//! a period keeps them all. A renewal counts only from masters known to
//! hold every entry (`confirmed`): the session is safe for another lease
//! when W of them renewed it. A master that may lack an entry (it answers
//! a renewal as a new session after a restart, it was away when a shard was
//! taken, or it refused a shard in its restart guard) stops counting until
//! every entry is written back there (a repair). Repairs carry the
//! `generation` of the entries they write; one that finishes after another
//! shard was taken runs again, so no entry slips past.
//!
//! Sans-IO: the server feeds renewal and repair results and starts the
//! repairs this returns.

use crate::term::Term;
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Session {
    pub term: Term,
    pub epoch: u64,
    /// Every hold is safe on the quorum until then (W masters confirmed).
    pub valid_until: Option<Instant>,
    pub renewing: bool,
    pub next_renewal: Instant,
    /// Bumped whenever this node takes a shard.
    pub generation: u64,
    /// Masters known to hold every entry of this session.
    confirmed: HashSet<String>,
    /// Masters being repaired.
    repairing: HashSet<String>,
    /// The masters the last renewal that counted was counted from.
    renewers: HashSet<String>,
    /// A shard was taken on too few of `renewers`: no grants until the
    /// next renewal that counts.
    awaiting_renewal: bool,
}

/// What to do after a repair ended.
#[derive(Debug, PartialEq)]
pub(crate) enum AfterRepair {
    /// The master counts again.
    Confirmed,
    /// Repair it again, after this pause, with the current entries.
    Again(Duration),
    Nothing,
}

impl Session {
    /// A session named `term` (`{erl_quorum_session, Node, Ref}`, fresh:
    /// masters tell it from any earlier one), due its first renewal `now`.
    pub(crate) fn new(term: Term, epoch: u64, now: Instant) -> Session {
        Session {
            term,
            epoch,
            valid_until: None,
            renewing: false,
            next_renewal: now,
            generation: 0,
            confirmed: HashSet::new(),
            repairing: HashSet::new(),
            renewers: HashSet::new(),
            awaiting_renewal: false,
        }
    }

    /// A renewal round's answers: `renewed` (the master had the session)
    /// and `created` (new to it: whatever it held of ours is gone). `holds`:
    /// whether this node holds any entry. Returns the masters to repair.
    pub(crate) fn renewed(
        &mut self,
        sent_at: Instant,
        lease: Duration,
        w: usize,
        renewed: Vec<String>,
        created: Vec<String>,
        holds: bool,
    ) -> Vec<String> {
        let mut repair = Vec::new();
        let mut counted = Vec::new();
        for master in renewed {
            if self.confirmed.contains(&master) {
                counted.push(master);
            } else if !self.repairing.contains(&master) {
                // It has the session, but took it while we did not count
                // it: it may have missed a shard since.
                self.join(master, holds, &mut repair, &mut counted);
            }
        }
        for master in created {
            self.confirmed.remove(&master);
            if self.repairing.contains(&master) {
                // Restarted while being repaired: what the repair wrote so
                // far is gone. A new generation makes it run again.
                self.generation += 1;
            } else {
                self.join(master, holds, &mut repair, &mut counted);
            }
        }
        if counted.len() >= w {
            self.valid_until = Some(sent_at + lease);
            self.renewers = counted.into_iter().collect();
            self.awaiting_renewal = false;
        } else {
            let count = counted.len();
            tracing::warn!(count, "erl_quorum: session renewal short of a quorum");
        }
        repair
    }

    /// A shard was taken with `ok_at` saying yes. `valid_until` holds for
    /// it only if W of them renewed the session last time (their session
    /// lives until then, and the shard with it); otherwise grants wait for
    /// the next renewal, which counts only masters holding every shard.
    pub(crate) fn shard_taken_on(&mut self, ok_at: &[String], w: usize) {
        if ok_at.iter().filter(|m| self.renewers.contains(*m)).count() < w {
            self.awaiting_renewal = true;
        }
    }

    /// Whether grants may be made on the strength of `valid_until`.
    pub(crate) fn grants_allowed(&self) -> bool {
        !self.awaiting_renewal
    }

    /// A master with the session that does not count yet: with nothing held
    /// it has all there is; otherwise it is repaired first.
    fn join(
        &mut self,
        master: String,
        holds: bool,
        repair: &mut Vec<String>,
        counted: &mut Vec<String>,
    ) {
        if holds {
            tracing::warn!(%master, "erl_quorum: a master may lack this node's entries; repairing it");
            self.repairing.insert(master.clone());
            repair.push(master);
        } else {
            self.confirmed.insert(master.clone());
            counted.push(master);
        }
    }

    /// `master` did not take a shard this node now holds. `true`: start a
    /// repair (one already running sees the generation change and reruns).
    pub(crate) fn lacking(&mut self, master: &str) -> bool {
        if self.confirmed.remove(master) {
            tracing::warn!(%master, "erl_quorum: a master missed a shard; repairing it");
            self.repairing.insert(master.to_owned());
            return true;
        }
        false
    }

    /// A repair of `master` with the entries of `generation` ended.
    pub(crate) fn repaired(&mut self, master: &str, generation: u64, ok: bool) -> AfterRepair {
        if !self.repairing.contains(master) {
            return AfterRepair::Nothing;
        }
        if !ok {
            return AfterRepair::Again(Duration::from_millis(500));
        }
        if generation != self.generation {
            return AfterRepair::Again(Duration::ZERO);
        }
        self.repairing.remove(master);
        tracing::info!(%master, "erl_quorum: master repaired");
        self.confirmed.insert(master.to_owned());
        AfterRepair::Confirmed
    }

    /// The confirmed masters not in `masters`.
    pub(crate) fn confirmed_except(&self, masters: &[String]) -> Vec<String> {
        self.confirmed
            .iter()
            .filter(|m| !masters.contains(m))
            .cloned()
            .collect()
    }

    pub(crate) fn is_repairing(&self, master: &str) -> bool {
        self.repairing.contains(master)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn session() -> Session {
        Session::new(crate::term::atom("s"), 0, Instant::now())
    }

    const LEASE: Duration = Duration::from_secs(10);

    #[test]
    fn a_master_joining_while_entries_are_held_counts_only_after_a_repair() {
        let mut s = session();
        let now = Instant::now();
        // Nothing held yet: every master counts at once.
        assert!(s
            .renewed(now, LEASE, 2, vec![], names(&["a", "b"]), false)
            .is_empty());
        assert!(s.valid_until.is_some());
        s.generation += 1;
        // c comes up later, and a restarts: both must be repaired.
        let repair = s.renewed(now, LEASE, 2, names(&["b"]), names(&["a", "c"]), true);
        assert_eq!(repair, names(&["a", "c"]));
        // a is repaired with the entries of this generation; c's repair
        // overlaps a shard taken meanwhile and runs again.
        assert_eq!(s.repaired("a", 1, true), AfterRepair::Confirmed);
        s.generation += 1;
        assert_eq!(s.repaired("c", 1, true), AfterRepair::Again(Duration::ZERO));
        assert_eq!(
            s.repaired("c", 2, false),
            AfterRepair::Again(Duration::from_millis(500))
        );
        // While c is repaired its renewals do not count.
        s.valid_until = None;
        s.renewed(now, LEASE, 2, names(&["b", "c"]), vec![], true);
        assert!(s.valid_until.is_none());
        assert_eq!(s.repaired("c", 2, true), AfterRepair::Confirmed);
        s.renewed(now, LEASE, 2, names(&["b", "c"]), vec![], true);
        assert!(s.valid_until.is_some());
    }

    #[test]
    fn a_confirmed_master_that_missed_a_shard_stops_counting() {
        let mut s = session();
        let now = Instant::now();
        s.renewed(now, LEASE, 2, vec![], names(&["a", "b", "c"]), false);
        // A shard taken with a and b saying yes: c may lack it.
        assert_eq!(s.confirmed_except(&names(&["a", "b"])), names(&["c"]));
        assert!(s.lacking("c"));
        assert!(!s.lacking("c"), "already being repaired");
        assert!(s.confirmed_except(&names(&["a", "b"])).is_empty());
        // c restarts while its repair runs: the repair must run again.
        let generation = s.generation;
        s.renewed(now, LEASE, 2, vec![], names(&["c"]), true);
        assert_eq!(
            s.repaired("c", generation, true),
            AfterRepair::Again(Duration::ZERO)
        );
        s.valid_until = None;
        s.renewed(now, LEASE, 2, names(&["c"]), vec![], true);
        assert!(s.valid_until.is_none(), "c alone counted");
        assert!(s.is_repairing("c"));
    }

    #[test]
    fn a_shard_taken_on_masters_that_did_not_renew_waits_for_a_renewal() {
        let mut s = session();
        let now = Instant::now();
        s.renewed(now, LEASE, 2, vec![], names(&["a", "b"]), false);
        s.shard_taken_on(&names(&["a", "b"]), 2);
        assert!(s.grants_allowed());
        // c said yes but did not renew last time: a and c are not two
        // masters whose session surely lives until `valid_until`.
        s.shard_taken_on(&names(&["a", "c"]), 2);
        assert!(!s.grants_allowed());
        s.renewed(now, LEASE, 2, names(&["a", "b"]), vec![], true);
        assert!(s.grants_allowed());
    }
}

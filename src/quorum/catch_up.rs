//! Catch-up: a master that (re)starts reads its peers' state instead of
//! refusing every promise for its whole restart guard. Sans IO: the driver
//! (`service.rs`) sends the [`Ask`]s, feeds answers in with [`CatchUp::answer`],
//! and calls [`CatchUp::poll`] on its tick; time is the store's `now_ms`.
//!
//! Why it is safe. N masters, W votes, 2W > N. A grant made by a quorum
//! that included this master before its restart is still held (as an
//! entry or a promise) by at least W-1 others; reading R other masters is
//! sure to meet one of them when R + (W-1) > N-1, i.e. R >= N-W+1. Only
//! answers of masters that are serving themselves count toward R (a
//! starting one has forgotten too). Grants made while this master catches
//! up need W votes of others (it refuses promises meanwhile), so any later
//! quorum with it meets one of them.
//!
//! Two ways to serve without R serving answers:
//! - every other master answers and all are starting, and neither they nor
//!   this one has served before: a brand-new cluster. This master serves
//!   and vouches for the starting incarnations it saw
//!   ([`Store::mark_new_cluster`]). A master that has served writes a
//!   marker file (the driver does); restarted with it
//!   ([`Store::set_restarted`]), it answers `{starting, restarted}` and
//!   never declares a new cluster itself, not even alone: a whole-cluster
//!   restart (or a lone master's) waits out the guard, during which
//!   serving nodes write their holds back before anyone can take them;
//! - a serving peer vouches for this very incarnation: when it declared
//!   the cluster new, this master was already starting, so everything it
//!   could remember was already given up, and every grant since needed W
//!   votes of others. So masters started one after another all serve
//!   within a round of the last one starting.
//!
//! Otherwise (a peer down, or too few serving) the guard stays; rounds are
//! retried while it runs, and the first one that succeeds ends it.

use super::store::{catch_up_request, CatchUpReply, PeerStatus, Role, Store};
use crate::term::Term;
use std::collections::{BTreeMap, BTreeSet};

/// How long a round waits for answers before it counts as failed.
pub(crate) const ROUND_MS: u64 = 1_000;
/// The pause between a failed round and the next.
pub(crate) const RETRY_MS: u64 = 250;

/// Ask `peers` for their state (`request`, on spawned processes); feed the
/// answers back with `round`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ask {
    pub round: u64,
    pub peers: Vec<String>,
    pub request: Term,
}

/// Why the guard ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CaughtUp {
    /// R serving peers answered (how many did).
    Quorum(usize),
    /// A serving peer declared the cluster new while this master was
    /// starting.
    Vouched(String),
    /// Every other master was starting.
    NewCluster,
    /// The guard ran out (or was lifted) by itself.
    GuardOver,
}

/// What [`CatchUp::poll`] asks of the driver.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Poll {
    Nothing,
    Ask(Ask),
    /// Finished; answer the parked callers in the wake list.
    Done(CaughtUp, Vec<(super::store::WaiterId, Term)>),
}

/// Which answers count (a test weakens it to show the model test fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Count starting peers toward R (unsafe).
    pub count_starting: bool,
    /// Use this R instead of N-W+1 (unsafe when smaller).
    pub r: Option<usize>,
    /// Treat restarted masters (this one and peers) as new: a whole-cluster
    /// or lone-master restart serves at once (unsafe; the old behaviour).
    pub ignore_marker: bool,
}

impl Policy {
    pub(crate) const SAFE: Policy = Policy {
        count_starting: false,
        r: None,
        ignore_marker: false,
    };
}

#[derive(Debug)]
enum Phase {
    Idle {
        next_at: u64,
    },
    Asking {
        deadline: u64,
        peers: Vec<String>,
        answers: BTreeMap<String, CatchUpReply>,
        failed: BTreeSet<String>,
    },
    Done,
}

/// The catch-up of one master incarnation.
#[derive(Debug)]
pub(crate) struct CatchUp {
    me: String,
    round: u64,
    phase: Phase,
    policy: Policy,
}

impl CatchUp {
    /// Starts asking at the first poll.
    pub(crate) fn new(me: &str, now: u64) -> CatchUp {
        CatchUp {
            me: me.to_owned(),
            round: 0,
            phase: Phase::Idle { next_at: now },
            policy: Policy::SAFE,
        }
    }

    #[cfg(test)]
    pub(crate) fn with_policy(mut self, policy: Policy) -> CatchUp {
        self.policy = policy;
        self
    }

    pub(crate) fn done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Starts a round when one is due, fails one past its deadline, and
    /// stops once the guard is off.
    pub(crate) fn poll(&mut self, now: u64, store: &mut Store) -> Poll {
        if self.done() {
            return Poll::Nothing;
        }
        if !store.guard_active(now) {
            self.phase = Phase::Done;
            store.mark_caught_up();
            return Poll::Done(CaughtUp::GuardOver, Vec::new());
        }
        // A replica (or a node in no list) votes for nothing: its guard
        // does not matter, and it has no business asking masters.
        if !matches!(store.role(), Role::Master | Role::Both) {
            return Poll::Nothing;
        }
        match &self.phase {
            Phase::Idle { next_at } if now >= *next_at => {
                self.round += 1;
                let peers: Vec<String> = store
                    .masters()
                    .iter()
                    .filter(|m| **m != self.me)
                    .cloned()
                    .collect();
                self.phase = Phase::Asking {
                    deadline: now.saturating_add(ROUND_MS),
                    peers: peers.clone(),
                    answers: BTreeMap::new(),
                    failed: BTreeSet::new(),
                };
                if peers.is_empty() {
                    // A cluster of this master alone: nobody to ask (new
                    // if it never served; otherwise it waits the guard).
                    return self.settle(now, store).unwrap_or(Poll::Nothing);
                }
                Poll::Ask(Ask {
                    round: self.round,
                    peers,
                    request: catch_up_request(&self.me),
                })
            }
            Phase::Asking { deadline, .. } if now >= *deadline => {
                self.phase = Phase::Idle {
                    next_at: now.saturating_add(RETRY_MS),
                };
                Poll::Nothing
            }
            _ => Poll::Nothing,
        }
    }

    /// One peer's answer (`Err`: no answer, a refusal or a bad one) to
    /// round `round`. Late, unknown and repeated answers are ignored.
    pub(crate) fn answer(
        &mut self,
        now: u64,
        store: &mut Store,
        round: u64,
        peer: &str,
        answer: Result<CatchUpReply, ()>,
    ) -> Poll {
        if round != self.round || !store.guard_active(now) {
            return self.poll(now, store);
        }
        let Phase::Asking {
            peers,
            answers,
            failed,
            ..
        } = &mut self.phase
        else {
            return Poll::Nothing;
        };
        if !peers.iter().any(|p| p == peer) || answers.contains_key(peer) || failed.contains(peer) {
            return Poll::Nothing;
        }
        match answer {
            Ok(reply) => {
                answers.insert(peer.to_owned(), reply);
            }
            Err(()) => {
                failed.insert(peer.to_owned());
            }
        }
        self.settle(now, store).unwrap_or(Poll::Nothing)
    }

    /// Ends the round if its answers decide it: caught up (merge, mark),
    /// or failed (every peer heard from, not enough).
    fn settle(&mut self, now: u64, store: &mut Store) -> Option<Poll> {
        let Phase::Asking {
            peers,
            answers,
            failed,
            ..
        } = &self.phase
        else {
            return None;
        };
        let n = store.masters().len();
        let decision = decide(
            self.policy,
            (&self.me, store.incarnation(), store.restarted()),
            n,
            store.w(),
            peers.len(),
            answers,
        );
        match decision {
            Some(how) => {
                let mut wake = Vec::new();
                for reply in answers.values() {
                    wake.extend(store.merge_catch_up(now, reply));
                }
                if how == CaughtUp::NewCluster {
                    let vouched = answers
                        .iter()
                        .map(|(peer, r)| (peer.clone(), r.incarnation))
                        .collect();
                    store.mark_new_cluster(vouched);
                } else {
                    store.mark_caught_up();
                }
                self.phase = Phase::Done;
                Some(Poll::Done(how, wake))
            }
            None if answers.len() + failed.len() >= peers.len() => {
                self.phase = Phase::Idle {
                    next_at: now.saturating_add(RETRY_MS),
                };
                Some(Poll::Nothing)
            }
            None => None,
        }
    }
}

/// Whether the answers so far let master `me` (this incarnation; whether
/// it has served before) serve.
fn decide(
    policy: Policy,
    me: (&str, u64, bool),
    n: usize,
    w: usize,
    n_peers: usize,
    answers: &BTreeMap<String, CatchUpReply>,
) -> Option<CaughtUp> {
    for (peer, reply) in answers {
        if let PeerStatus::Serving { vouched } = &reply.status {
            if vouched
                .iter()
                .any(|(node, inc)| node == me.0 && *inc == me.1)
            {
                return Some(CaughtUp::Vouched(peer.clone()));
            }
        }
    }
    let counted = answers
        .values()
        .filter(|r| policy.count_starting || matches!(r.status, PeerStatus::Serving { .. }))
        .count();
    // R = N-W+1; with W = 0 (or W > N) no number of answers is enough.
    let r = match policy.r {
        Some(r) => r,
        None if w == 0 || w > n => usize::MAX,
        None => n - w + 1,
    };
    if counted >= r {
        return Some(CaughtUp::Quorum(counted));
    }
    // A master that has served (this one or a peer) may hold grants
    // nobody else remembers: not a new cluster, whatever else answers.
    let fresh = |restarted: bool| !restarted || policy.ignore_marker;
    let all_new = answers
        .values()
        .all(|r| matches!(r.status, PeerStatus::Starting { restarted } if fresh(restarted)));
    (fresh(me.2) && answers.len() == n_peers && all_new).then_some(CaughtUp::NewCluster)
}

#[cfg(test)]
#[path = "catch_up_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "catch_up_model.rs"]
mod model;

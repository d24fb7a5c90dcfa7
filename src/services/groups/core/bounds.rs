//! The bounds a hub keeps against untrusted peers: streams per
//! authority, scopes per subscriber, pids of the authority's node only,
//! and the backoff of peer hubs.

use super::{Action, Dest, HubCore, RETRY, RETRY_MAX};
use crate::services::groups::wire::{Group, GroupMsg};
use crate::term::Pid;
use std::time::Duration;

/// The wait before the try after `failures` failed ones.
pub(super) fn backoff(failures: u32) -> Duration {
    RETRY.saturating_mul(1u32 << failures.min(8)).min(RETRY_MAX)
}

/// The groups of a sync without the pids of nodes other than the
/// authority's: it is monitored, not them, so they could outlive their node.
pub(super) fn own_pids(from: &Pid, groups: &[(Group, Vec<Pid>)]) -> Vec<(Group, Vec<Pid>)> {
    let mut dropped = 0;
    let kept = groups
        .iter()
        .map(|(g, pids)| {
            let mine: Vec<Pid> = pids
                .iter()
                .filter(|p| p.node == from.node)
                .cloned()
                .collect();
            dropped += pids.len() - mine.len();
            (g.clone(), mine)
        })
        .collect();
    if dropped > 0 {
        tracing::warn!(
            ?from,
            dropped,
            "eq_groups: pids of another node in a sync, dropped"
        );
    }
    kept
}

impl HubCore {
    /// Whether `from` already has as many streams as the hub has scopes:
    /// empty syncs and deltas on new scope names must not grow `streams`.
    pub(super) fn stream_full(&self, from: &Pid) -> bool {
        let n = self.streams.keys().filter(|(p, _)| p == from).count();
        n >= self.limits.scopes
    }

    /// The number of scopes `sub` is subscribed to.
    pub(super) fn subscribed_scopes(&self, sub: &Pid) -> usize {
        self.subscribers
            .values()
            .filter(|s| s.contains_key(sub))
            .count()
    }

    /// Tells a subscriber it was not subscribed (so it tries another hub
    /// or later), rather than leaving it waiting for a snapshot.
    pub(super) fn refuse_subscriber(&mut self, scope: String, subscriber: Pid, reason: &str) {
        let msg = GroupMsg::Refused {
            scope,
            hub: self.me.clone(),
            reason: reason.to_owned(),
        };
        self.outbox
            .push_back(Action::Send(Dest::Pid(subscriber), msg));
    }
}

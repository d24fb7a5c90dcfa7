//! Owners' nodes gone silent, found without waiting for `nodedown`.
//!
//! Why: a BEAM node notices a dead connection only after `net_ticktime`
//! (60 s by default). A node cut off while it holds keys here, or while one
//! of its processes waits for a key that is then granted to it, would
//! block those keys that long. Every node with owners here runs a guard
//! that sends a `keepalive` at least every second; a node with holds here
//! that has sent nothing for [`SILENCE`] since its last request or its last
//! grant is dropped: the driver closes the connection, its monitors fire
//! `noconnection`, and its holds are released once its guard has surely
//! told their owners.
//!
//! When that is: the guard tells owners at the latest at the validity this
//! node last promised it (`keepalive` answers, `{ok, ValidMs}`), or, for a
//! grant it saw before any answer, at the first `eq_owned` plus what a
//! grant comes with (`lost_margin`). Nothing reaches the node after the
//! connection is closed, so both are bounded: `max(promised, dropped_at +
//! lost_margin)`.
//!
//! And a grant sent into the silence: its reply reaches the caller only if
//! the caller still waits for it. `rust_quorum:call` gives up on a call
//! after `call_timeout_ms` (1.5 s by default, below [`SILENCE`]), and a
//! call given up drops its late reply (its alias is gone), so a grant that
//! arrives after the drop is never taken for a hold.
//!
//! Sans-IO: times come in as arguments.

use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// How long a node with holds here may stay silent. Above the guards'
/// keepalive period (1 s) and `rust_quorum`'s default call timeout (1.5 s).
pub(crate) const SILENCE: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Client {
    /// Holds of this node's owners here (`eq_owned` less `eq_released` and
    /// `eq_lost`).
    holds: usize,
    /// The later of its last request and its last grant.
    last: Option<Instant>,
    /// The latest validity a `keepalive` answer promised it.
    promised: Option<Instant>,
}

/// Per owner node: holds, last sign of life, validity promised.
#[derive(Debug, Default)]
pub(crate) struct Silence {
    clients: HashMap<String, Client>,
    /// Nodes dropped for silence: when their holds may be released.
    dropped: HashMap<String, Instant>,
}

impl Silence {
    /// A request from `node` arrived; `promised`: what a `keepalive`
    /// answer to it promises.
    pub(crate) fn heard(&mut self, node: &str, now: Instant, promised: Option<Instant>) {
        self.dropped.remove(node);
        let client = self.clients.entry(node.to_owned()).or_default();
        client.last = Some(client.last.map_or(now, |l| l.max(now)));
        if let Some(p) = promised {
            client.promised = Some(client.promised.map_or(p, |q| q.max(p)));
        }
        self.forget_idle(node);
    }

    /// This node itself did not run for a while (a pause, an overloaded
    /// machine): nobody's silence can be told from its own, so every node
    /// gets a fresh [`SILENCE`] from `now`.
    pub(crate) fn stalled(&mut self, now: Instant) {
        for client in self.clients.values_mut() {
            client.last = Some(client.last.map_or(now, |l| l.max(now)));
        }
    }

    /// A key was granted to an owner on `node`: its guard must speak up
    /// within [`SILENCE`] from now.
    pub(crate) fn granted(&mut self, node: &str, now: Instant) {
        let client = self.clients.entry(node.to_owned()).or_default();
        client.holds += 1;
        client.last = Some(client.last.map_or(now, |l| l.max(now)));
    }

    /// Holds of owners on `node` were taken over from another serving
    /// node, which may have promised their guard validity until `until`
    /// at the latest: released for silence no sooner than that.
    pub(crate) fn taken_over(&mut self, node: &str, until: Instant) {
        let client = self.clients.entry(node.to_owned()).or_default();
        client.promised = Some(client.promised.map_or(until, |p| p.max(until)));
    }

    /// A hold of an owner on `node` ended.
    pub(crate) fn ended(&mut self, node: &str) {
        if let Some(client) = self.clients.get_mut(node) {
            client.holds = client.holds.saturating_sub(1);
        }
        self.forget_idle(node);
    }

    fn forget_idle(&mut self, node: &str) {
        // A node without holds here has nothing to be dropped for.
        if self.clients.get(node).is_some_and(|c| c.holds == 0) {
            self.clients.remove(node);
        }
    }

    /// The nodes with holds silent for longer than [`SILENCE`]: to be
    /// dropped now. Each is remembered with its release time
    /// ([`Silence::release_at`]) and forgotten as a client.
    pub(crate) fn due(&mut self, now: Instant, lost_margin: Duration) -> Vec<String> {
        let silent: Vec<String> = self
            .clients
            .iter()
            .filter(|(_, c)| c.holds > 0 && c.last.is_some_and(|l| now >= l + SILENCE))
            .map(|(n, _)| n.clone())
            .collect();
        for node in &silent {
            let client = self.clients.remove(node).unwrap_or_default();
            let at = client
                .promised
                .map_or(now + lost_margin, |p| p.max(now + lost_margin));
            self.dropped.insert(node.clone(), at);
        }
        silent
    }

    /// Whether `node`, with holds here, has said nothing for longer than
    /// its guard's keepalive period (1 s) and some slack, or was dropped.
    pub(crate) fn quiet(&self, node: &str, now: Instant) -> bool {
        const QUIET: Duration = Duration::from_millis(1_500);
        self.dropped.contains_key(node)
            || self
                .clients
                .get(node)
                .is_some_and(|c| c.last.is_some_and(|l| now >= l + QUIET))
    }

    /// When the holds of an owner on `node`, whose connection went, may be
    /// released: `Some` only for a node this dropped for silence.
    pub(crate) fn release_at(&self, node: &str) -> Option<Instant> {
        self.dropped.get(node).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARGIN: Duration = Duration::from_secs(3);

    #[test]
    fn a_node_with_holds_that_stays_silent_is_dropped_and_released_at_its_promise() {
        let mut s = Silence::default();
        let t0 = Instant::now();
        s.granted("c@h", t0);
        // Its guard answers within the bound: kept.
        s.heard(
            "c@h",
            t0 + Duration::from_secs(1),
            Some(t0 + Duration::from_secs(6)),
        );
        assert!(s.due(t0 + Duration::from_millis(2900), MARGIN).is_empty());
        // Then nothing: dropped 2 s after its last keepalive.
        let at = t0 + Duration::from_secs(3);
        assert_eq!(s.due(at, MARGIN), vec!["c@h".to_string()]);
        assert!(s.due(at, MARGIN).is_empty(), "dropped once");
        // Released at the later of its promise and the margin after the drop.
        assert_eq!(s.release_at("c@h"), Some(at + MARGIN));
        // Heard again (a new connection): a client like any other.
        s.heard("c@h", at + Duration::from_secs(30), None);
        assert_eq!(s.release_at("c@h"), None);
    }

    #[test]
    fn holds_taken_over_are_released_no_sooner_than_the_givers_promise() {
        let mut s = Silence::default();
        let t0 = Instant::now();
        // The giver may have promised the guard 10 s; its node is silent
        // from the install on.
        s.taken_over("c@h", t0 + Duration::from_secs(10));
        s.granted("c@h", t0);
        assert_eq!(s.due(t0 + SILENCE, MARGIN), vec!["c@h".to_string()]);
        assert_eq!(s.release_at("c@h"), Some(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn a_grant_into_silence_counts_from_the_grant_and_nodes_without_holds_stay() {
        let mut s = Silence::default();
        let t0 = Instant::now();
        // A waiter's request, long ago; the grant comes much later.
        s.heard("w@h", t0, None);
        s.heard("idle@h", t0, None);
        let grant = t0 + Duration::from_secs(20);
        s.granted("w@h", grant);
        assert!(s
            .due(grant + Duration::from_millis(1999), MARGIN)
            .is_empty());
        assert_eq!(s.due(grant + SILENCE, MARGIN), vec!["w@h".to_string()]);
        // A silent node without holds is nobody's concern.
        assert!(s.due(grant + Duration::from_secs(60), MARGIN).is_empty());
        // After a stall of this node itself, everyone gets a fresh bound.
        s.granted("y@h", grant);
        s.stalled(grant + Duration::from_secs(9));
        assert!(s.due(grant + Duration::from_secs(10), MARGIN).is_empty());
        assert_eq!(
            s.due(grant + Duration::from_secs(11), MARGIN),
            vec!["y@h".to_string()]
        );
        // A hold that ended leaves nothing to drop.
        s.granted("x@h", grant);
        s.ended("x@h");
        assert!(s.due(grant + Duration::from_secs(60), MARGIN).is_empty());
    }
}

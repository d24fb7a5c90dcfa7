//! Which serving nodes know this host, sans-IO: the host announces itself
//! (`{host, Pid, rust}`) to each serving node's `erl_quorum`, watches that
//! process once it answered, and announces again after it goes (the node
//! restarted, or the connection was lost and comes back).

use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// The pause before announcing again to a node that did not answer or whose
/// `erl_quorum` went down: short, so a restarted node hears from its hosts
/// within a second of coming back; cheap, since an unreachable node costs one
/// failed connection attempt per retry.
pub(crate) const RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Announce at this instant.
    Due(Instant),
    /// An announcement is on its way.
    InFlight,
    /// The node answered `ok`; its `erl_quorum` is watched.
    Known,
}

/// Per serving node: announce, wait for the answer, watch, retry.
#[derive(Debug, Default)]
pub(crate) struct Announcer {
    nodes: BTreeMap<String, State>,
}

impl Announcer {
    /// Every node of `serving` due an announcement at `now`.
    pub(crate) fn new(serving: &[String], now: Instant) -> Announcer {
        Announcer {
            nodes: serving
                .iter()
                .map(|n| (n.clone(), State::Due(now)))
                .collect(),
        }
    }

    /// The nodes to announce to now; they count as in flight until
    /// [`Announcer::answered`].
    pub(crate) fn due(&mut self, now: Instant) -> Vec<String> {
        let mut due = Vec::new();
        for (node, state) in &mut self.nodes {
            if matches!(state, State::Due(at) if *at <= now) {
                *state = State::InFlight;
                due.push(node.clone());
            }
        }
        due
    }

    /// The answer to an announcement: `true` for `ok` (the driver then
    /// watches the node's `erl_quorum`), `false` for anything else (no
    /// answer, no such process, no connection): try again after [`RETRY`].
    pub(crate) fn answered(&mut self, node: &str, ok: bool, now: Instant) {
        if let Some(state) = self.nodes.get_mut(node) {
            *state = if ok {
                State::Known
            } else {
                State::Due(now + RETRY)
            };
        }
    }

    /// The watched `erl_quorum` of `node` went down: it forgot this host
    /// (its monitor fired too), so announce again once it is back.
    pub(crate) fn down(&mut self, node: &str, now: Instant) {
        if let Some(state) = self.nodes.get_mut(node) {
            if *state == State::Known {
                *state = State::Due(now + RETRY);
            }
        }
    }

    /// When [`Announcer::due`] next has something.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.nodes
            .values()
            .filter_map(|s| match s {
                State::Due(at) => Some(*at),
                _ => None,
            })
            .min()
    }

    /// The nodes that answered `ok` and are watched, for `sys:get_state`.
    pub(crate) fn known(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|(_, s)| **s == State::Known)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

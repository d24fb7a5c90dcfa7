//! What must be counted where it happens, because no snapshot holds it:
//! quorum rounds (by operation and outcome, with their latency) and
//! session renewals (with the margin the session had left). One per node
//! ([`Node::metrics`](crate::Node)); the callers make one call each.
//!
//! A leaf: it imports nothing from the crate, so the node layer can hold
//! one. The label values are `&'static str` from fixed sets, never input.

use crate::term::{as_tuple, Term};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use std::time::Duration;

/// The operations a round is labelled with: the first atom of the request
/// every master gets. Anything else is `other` (bounded cardinality).
const ROUND_OPS: [&str; 10] = [
    "get_write_lock",
    "write",
    "lock",
    "update",
    "extend_lease",
    "release",
    "release_write_lock",
    "erl_quorum_lock",
    "erl_quorum_session",
    "erl_quorum_repair",
];

/// Round latencies, 100 µs (a local master) to 10 s (a timeout).
const ROUND_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// What a renewal found of its session, in seconds (the default lease is
/// 10 s; owners are told when less than 3 s remain).
const MARGIN_BUCKETS: [f64; 12] = [0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 30.0];

/// How a quorum round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundOutcome {
    /// W masters said yes.
    Quorum,
    /// Fewer than W said yes (refusals, a timeout, lost masters).
    Short,
    /// The round could not be run (the caller's process was gone).
    Failed,
}

impl RoundOutcome {
    fn label(self) -> &'static str {
        match self {
            RoundOutcome::Quorum => "quorum",
            RoundOutcome::Short => "short",
            RoundOutcome::Failed => "failed",
        }
    }
}

/// The label of a round sending `request` (see [`ROUND_OPS`]).
pub fn round_op(request: &Term) -> &'static str {
    let first = match as_tuple(request) {
        Some([Term::Atom(a), ..]) => a.name.as_str(),
        _ => return "other",
    };
    ROUND_OPS
        .iter()
        .find(|op| **op == first)
        .copied()
        .unwrap_or("other")
}

/// The node's in-place metrics.
#[derive(Debug, Clone)]
pub struct Recorder {
    rounds: HistogramVec,
    renewals: IntCounterVec,
    margin: Histogram,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// Fresh metrics, all zero.
    pub fn new() -> Recorder {
        // The definitions are constants: they are valid or a unit test fails.
        let rounds = HistogramVec::new(
            HistogramOpts::new(
                "erl_quorum_quorum_round_seconds",
                "Quorum rounds this node ran against the locker masters, by request and outcome",
            )
            .buckets(ROUND_BUCKETS.to_vec()),
            &["op", "outcome"],
        )
        .expect("valid round histogram");
        let renewals = IntCounterVec::new(
            Opts::new(
                "erl_quorum_session_renewals_total",
                "Session renewal rounds of the erl_quorum service, by whether they extended the session",
            ),
            &["outcome"],
        )
        .expect("valid renewal counter");
        let margin = Histogram::with_opts(
            HistogramOpts::new(
                "erl_quorum_session_renewal_margin_seconds",
                "How long the session still had to run when a renewal extended it",
            )
            .buckets(MARGIN_BUCKETS.to_vec()),
        )
        .expect("valid margin histogram");
        Recorder {
            rounds,
            renewals,
            margin,
        }
    }

    /// One quorum round of `op` ([`round_op`]) took `elapsed`.
    pub fn round(&self, op: &'static str, outcome: RoundOutcome, elapsed: Duration) {
        self.rounds
            .with_label_values(&[op, outcome.label()])
            .observe(elapsed.as_secs_f64());
    }

    /// A renewal's answers were applied; `extended`: they renewed (or
    /// opened) the session, which had `margin_ms` left (`None`: it was
    /// opened, nothing was left to measure).
    pub fn renewal(&self, extended: bool, margin_ms: Option<u64>) {
        if extended {
            self.renewals.with_label_values(&["extended"]).inc();
            if let Some(ms) = margin_ms {
                self.margin.observe(ms as f64 / 1000.0);
            }
        } else {
            self.renewals.with_label_values(&["not_extended"]).inc();
        }
    }

    /// Adds these metrics to `registry` (a scrape's).
    pub(crate) fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.rounds.clone()))?;
        registry.register(Box::new(self.renewals.clone()))?;
        registry.register(Box::new(self.margin.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{atom, int, tuple};

    #[test]
    fn ops_come_from_a_fixed_set() {
        assert_eq!(round_op(&tuple(vec![atom("write"), int(1)])), "write");
        assert_eq!(
            round_op(&tuple(vec![atom("erl_quorum_lock")])),
            "erl_quorum_lock"
        );
        assert_eq!(round_op(&tuple(vec![atom("anything_else")])), "other");
        assert_eq!(round_op(&int(3)), "other");
        assert_eq!(round_op(&tuple(vec![int(1), atom("write")])), "other");
    }

    #[test]
    fn rounds_and_renewals_are_counted() {
        let r = Recorder::new();
        r.round("write", RoundOutcome::Quorum, Duration::from_micros(300));
        r.round("write", RoundOutcome::Quorum, Duration::from_millis(2));
        r.round("lock", RoundOutcome::Short, Duration::from_secs(1));
        r.renewal(true, Some(8_000));
        r.renewal(true, None);
        r.renewal(false, None);
        let registry = Registry::new();
        r.register(&registry).unwrap();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(text
            .contains("erl_quorum_quorum_round_seconds_count{op=\"write\",outcome=\"quorum\"} 2"));
        assert!(text.contains(
            "erl_quorum_quorum_round_seconds_bucket{op=\"write\",outcome=\"quorum\",le=\"0.0005\"} 1"
        ));
        assert!(
            text.contains("erl_quorum_quorum_round_seconds_count{op=\"lock\",outcome=\"short\"} 1")
        );
        assert!(text.contains("erl_quorum_session_renewals_total{outcome=\"extended\"} 2"));
        assert!(text.contains("erl_quorum_session_renewal_margin_seconds_count 1"));
        assert!(text.contains("erl_quorum_session_renewals_total{outcome=\"not_extended\"} 1"));
        assert!(text.contains("erl_quorum_session_renewal_margin_seconds_sum 8"));
    }
}

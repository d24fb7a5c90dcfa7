//! A scrape: what the node's tables and services say now ([`Snapshot`]),
//! plus the in-place metrics of the [`Recorder`], in the Prometheus text
//! format (the `prometheus` crate's encoder writes it).
//!
//! Each scrape builds a fresh registry, so a peer that went or a status
//! field that disappeared leaves no stale series behind: label values are
//! only connected peers' names and fixed sets.

use super::fields::{FieldValue, StatusFields};
use super::names::Service;
use super::recorder::Recorder;
use crate::node::PeerTable;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// The content type of the text format this writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the node and its services said at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The peer table with each connection's counters.
    pub peers: PeerTable,
    /// The `locker` service's status (`None`: not running or no answer).
    pub locker: Option<StatusFields>,
    /// The `erl_quorum` service's status (`None`: not running or no answer).
    pub services: Option<StatusFields>,
}

/// Why a scrape could not be written.
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct ExpositionError(#[from] prometheus::Error);

/// The text a scrape answers.
pub fn render(snapshot: &Snapshot, recorder: &Recorder) -> Result<String, ExpositionError> {
    let registry = Registry::new();
    recorder.register(&registry)?;
    peers(&registry, &snapshot.peers)?;
    let up = IntGaugeVec::new(
        Opts::new(
            "erl_quorum_service_up",
            "Whether the service answered its status call at this scrape",
        ),
        &["service"],
    )?;
    registry.register(Box::new(up.clone()))?;
    for (service, fields) in [
        (Service::Locker, &snapshot.locker),
        (Service::Services, &snapshot.services),
    ] {
        up.with_label_values(&[service.process()])
            .set(i64::from(fields.is_some()));
        if let Some(fields) = fields {
            status(&registry, service, fields);
        }
    }
    Ok(TextEncoder::new().encode_to_string(&registry.gather())?)
}

/// Connections by state, and each connected peer's traffic.
fn peers(registry: &Registry, table: &PeerTable) -> prometheus::Result<()> {
    let connections = IntGaugeVec::new(
        Opts::new(
            "erl_quorum_connections",
            "Distribution connections: up, or connecting (handshake under way)",
        ),
        &["state"],
    )?;
    connections
        .with_label_values(&["up"])
        .set(table.up.len() as i64);
    connections
        .with_label_values(&["connecting"])
        .set(table.connecting as i64);
    registry.register(Box::new(connections))?;
    let counter = |name: &str, help: &str| -> prometheus::Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(name, help), &["peer"])?;
        registry.register(Box::new(c.clone()))?;
        Ok(c)
    };
    let gauge = |name: &str, help: &str| -> prometheus::Result<IntGaugeVec> {
        let g = IntGaugeVec::new(Opts::new(name, help), &["peer"])?;
        registry.register(Box::new(g.clone()))?;
        Ok(g)
    };
    let bytes_in = counter(
        "erl_quorum_peer_received_bytes_total",
        "Bytes read from a connected peer since its connection came up",
    )?;
    let messages_in = counter(
        "erl_quorum_peer_received_messages_total",
        "Messages (control messages) received from a connected peer",
    )?;
    let bytes_out = counter(
        "erl_quorum_peer_sent_bytes_total",
        "Bytes handed to a connected peer's socket (written or queued)",
    )?;
    let frames_out = counter(
        "erl_quorum_peer_sent_frames_total",
        "Frames sent to a connected peer (messages, fragments and ticks)",
    )?;
    let queued = gauge(
        "erl_quorum_peer_queued_bytes",
        "Bytes waiting to be written to a connected peer",
    )?;
    let hidden = gauge(
        "erl_quorum_peer_hidden",
        "1 if a connected peer is a hidden node, 0 if published",
    )?;
    for peer in &table.up {
        let label = [peer.node.as_str()];
        bytes_in
            .with_label_values(&label)
            .inc_by(peer.counts.bytes_in);
        messages_in
            .with_label_values(&label)
            .inc_by(peer.counts.messages_in);
        bytes_out
            .with_label_values(&label)
            .inc_by(peer.counts.bytes_out);
        frames_out
            .with_label_values(&label)
            .inc_by(peer.counts.frames_out);
        queued
            .with_label_values(&label)
            .set(peer.queued_bytes as i64);
        hidden.with_label_values(&label).set(i64::from(peer.hidden));
    }
    Ok(())
}

/// `prefix_key` per number; `prefix_key{key="state"} 1` per state. A
/// field whose name is taken (or invalid) is left out, not an error.
fn status(registry: &Registry, service: Service, fields: &StatusFields) {
    for (key, value) in &fields.0 {
        let name = format!("{}{key}", service.prefix());
        let help = service.help(key);
        let registered = match value {
            FieldValue::Number(n) => IntGauge::new(name, help).and_then(|g| {
                g.set(*n);
                registry.register(Box::new(g))
            }),
            FieldValue::State(s) => IntGaugeVec::new(Opts::new(name, help), &[key]).and_then(|g| {
                g.with_label_values(&[s.as_str()]).set(1);
                registry.register(Box::new(g))
            }),
        };
        if let Err(e) = registered {
            tracing::debug!(%key, error = %e, "metrics: status field left out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::recorder::RoundOutcome;
    use crate::node::{PeerTraffic, TrafficCounts};
    use std::time::Duration;

    fn snapshot() -> Snapshot {
        Snapshot {
            peers: PeerTable {
                up: vec![PeerTraffic {
                    node: "a@127.0.0.1".into(),
                    hidden: true,
                    queued_bytes: 5,
                    counts: TrafficCounts {
                        bytes_in: 1200,
                        messages_in: 7,
                        bytes_out: 900,
                        frames_out: 9,
                    },
                }],
                connecting: 2,
            },
            locker: Some(StatusFields(vec![
                ("role".into(), FieldValue::State("master".into())),
                ("entries".into(), FieldValue::Number(3)),
                ("guard_remaining_ms".into(), FieldValue::Number(0)),
                // A key with no help text of its own, as a later field.
                ("catch_up".into(), FieldValue::State("serving".into())),
            ])),
            services: None,
        }
    }

    #[test]
    fn a_snapshot_becomes_named_labelled_series() {
        let recorder = Recorder::new();
        recorder.round("write", RoundOutcome::Quorum, Duration::from_millis(1));
        let text = render(&snapshot(), &recorder).unwrap();
        for line in [
            "erl_quorum_connections{state=\"up\"} 1",
            "erl_quorum_connections{state=\"connecting\"} 2",
            "erl_quorum_peer_received_bytes_total{peer=\"a@127.0.0.1\"} 1200",
            "erl_quorum_peer_received_messages_total{peer=\"a@127.0.0.1\"} 7",
            "erl_quorum_peer_sent_bytes_total{peer=\"a@127.0.0.1\"} 900",
            "erl_quorum_peer_sent_frames_total{peer=\"a@127.0.0.1\"} 9",
            "erl_quorum_peer_queued_bytes{peer=\"a@127.0.0.1\"} 5",
            "erl_quorum_peer_hidden{peer=\"a@127.0.0.1\"} 1",
            "erl_quorum_locker_role{role=\"master\"} 1",
            "erl_quorum_locker_entries 3",
            "erl_quorum_locker_guard_remaining_ms 0",
            "erl_quorum_locker_catch_up{catch_up=\"serving\"} 1",
            "erl_quorum_service_up{service=\"locker\"} 1",
            "erl_quorum_service_up{service=\"erl_quorum\"} 0",
            "erl_quorum_quorum_round_seconds_count{op=\"write\",outcome=\"quorum\"} 1",
            "# TYPE erl_quorum_peer_sent_bytes_total counter",
            "# TYPE erl_quorum_locker_entries gauge",
            "# HELP erl_quorum_locker_entries Keys the locker store holds",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(
            !text.contains("erl_quorum_services_"),
            "no services: no series"
        );
    }

    #[test]
    fn a_peer_that_went_leaves_no_series() {
        let recorder = Recorder::new();
        let mut s = snapshot();
        s.peers.up.clear();
        let text = render(&s, &recorder).unwrap();
        assert!(!text.contains("a@127.0.0.1"), "{text}");
        assert!(text.contains("erl_quorum_connections{state=\"up\"} 0"));
    }

    #[test]
    fn a_field_clashing_with_a_name_is_left_out() {
        let mut s = snapshot();
        // `erl_quorum_locker_` + `entries` twice cannot be: the second of
        // two equal names is dropped, the scrape still answers.
        if let Some(l) = s.locker.as_mut() {
            l.0.push(("entries".into(), FieldValue::Number(4)));
        }
        let text = render(&s, &Recorder::new()).unwrap();
        assert!(text.contains("erl_quorum_locker_entries 3"));
        assert!(!text.contains("erl_quorum_locker_entries 4"));
    }
}

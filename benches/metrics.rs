//! What the metrics cost on the hot path, per call, in-process: the
//! per-connection traffic counters (relaxed atomic adds, as
//! `node::traffic` makes them), a quorum round recorded in the node's
//! [`Recorder`], the `request` span each erl_quorum call enters and the
//! `conn` span of each connection task's poll (with a `fmt` subscriber at
//! `info`, as `erl_quorum serve` runs, writing to a sink), and one
//! scrape's rendering (20 peers and both services' status).
//!
//! ```text
//! cargo bench --bench metrics
//! ```
//!
//! Compare with a lock + release pair (hundreds of µs, benches/services.rs
//! and benches/quorum.rs): every figure here is well under 1 µs but the
//! scrape, which runs every few seconds, off the hot path.

use erl_quorum::metrics::fields::{FieldValue, StatusFields};
use erl_quorum::metrics::{render, round_op, Recorder, RoundOutcome, Snapshot};
use erl_quorum::node::{PeerTable, PeerTraffic, TrafficCounts};
use erl_quorum::term::{atom, int, tuple, Brief};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Runs `f` `n` times, best of 5: ns per call.
fn per_call(n: u32, mut f: impl FnMut(u32)) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for i in 0..n {
                f(i);
            }
            t.elapsed().as_nanos() as f64 / f64::from(n)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "erl_quorum=info,metrics=info",
        ))
        .with_writer(std::io::sink)
        .init();
    println!("{:<58} {:>10}", "what", "ns/call");
    let row = |what: &str, ns: f64| println!("{what:<58} {ns:>10.1}");

    row(
        "nothing (loop overhead)",
        per_call(1_000_000, |i| {
            black_box(i);
        }),
    );

    // node::traffic: a read and a message in, a frame out.
    let counters: [AtomicU64; 4] = Default::default();
    row(
        "traffic counters (read + message in + frame out)",
        per_call(1_000_000, |i| {
            counters[0].fetch_add(u64::from(i), Ordering::Relaxed);
            counters[1].fetch_add(1, Ordering::Relaxed);
            counters[2].fetch_add(u64::from(i), Ordering::Relaxed);
            counters[3].fetch_add(1, Ordering::Relaxed);
        }),
    );

    let recorder = Recorder::new();
    let request = tuple(vec![atom("erl_quorum_lock"), atom("key"), int(1)]);
    row(
        "round_op + Recorder::round (one quorum round)",
        per_call(1_000_000, |_| {
            recorder.round(
                round_op(black_box(&request)),
                RoundOutcome::Quorum,
                Duration::from_micros(120),
            );
        }),
    );
    row(
        "Recorder::renewal",
        per_call(1_000_000, |_| {
            recorder.renewal(true, Some(black_box(8_000)));
        }),
    );

    // services/server.rs's request_span, entered and left: a debug span
    // (what the server makes) is off at `info`; an info span would not be.
    let key = tuple(vec![atom("job"), int(42)]);
    for (what, debug) in [
        (
            "request span at debug (as served), subscriber at info",
            true,
        ),
        ("the same span at info (not served: for comparison)", false),
    ] {
        row(
            what,
            per_call(200_000, |_| {
                let span = if debug {
                    tracing::debug_span!(
                        target: "erl_quorum::services::server",
                        "request",
                        op = "lock",
                        caller = %"beam@127.0.0.1",
                        key = tracing::field::Empty
                    )
                } else {
                    tracing::info_span!(
                        target: "erl_quorum::services::server",
                        "request",
                        op = "lock",
                        caller = %"beam@127.0.0.1",
                        key = tracing::field::Empty
                    )
                };
                if !span.is_disabled() {
                    span.record("key", tracing::field::display(Brief(black_box(&key))));
                }
                let _in = span.enter();
            }),
        );
    }

    // node/connection.rs: the `conn` span, entered on each poll of a
    // connection's reader and writer tasks (a debug span, as served; the
    // same at info for comparison).
    let conn_debug = tracing::debug_span!(target: "erl_quorum::node::connection", "conn", peer = %"beam@127.0.0.1");
    let conn_info = tracing::info_span!(target: "erl_quorum::node::connection", "conn", peer = %"beam@127.0.0.1");
    row(
        "conn span at debug (as served) entered and left",
        per_call(1_000_000, |_| {
            let _in = black_box(&conn_debug).enter();
        }),
    );
    row(
        "the same span at info (for comparison)",
        per_call(1_000_000, |_| {
            let _in = black_box(&conn_info).enter();
        }),
    );

    let snapshot = Snapshot {
        peers: PeerTable {
            up: (0..20)
                .map(|i| PeerTraffic {
                    node: format!("peer{i}@127.0.0.1"),
                    hidden: i % 2 == 0,
                    queued_bytes: 0,
                    counts: TrafficCounts {
                        bytes_in: 1 << 30,
                        messages_in: 1 << 20,
                        bytes_out: 1 << 30,
                        frames_out: 1 << 20,
                    },
                })
                .collect(),
            connecting: 1,
        },
        locker: Some(StatusFields(
            [
                "w",
                "entries",
                "promises",
                "sessions",
                "waiters",
                "guard_remaining_ms",
            ]
            .iter()
            .map(|k| (k.to_string(), FieldValue::Number(3)))
            .chain([("role".to_string(), FieldValue::State("master".into()))])
            .collect(),
        )),
        services: Some(StatusFields(
            [
                "slots",
                "shards_held",
                "session_valid_ms",
                "subscribers",
                "epoch",
            ]
            .iter()
            .map(|k| (k.to_string(), FieldValue::Number(7)))
            .collect(),
        )),
    };
    let scrape = per_call(500, |_| {
        black_box(render(&snapshot, &recorder).expect("render"));
    });
    row(
        "one scrape's rendering (20 peers), off the hot path",
        scrape,
    );
}

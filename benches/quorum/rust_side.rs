//! The Rust side of the quorum bench: the three masters (as `erl_quorum
//! serve` child processes, or as nodes inside this process) and the Rust
//! client's measuring loop.

use erl_quorum::quorum::client::{FanOut, LockerClient, LockerError};
use erl_quorum::quorum::service::{self, ServiceConfig};
use erl_quorum::term::{atom, int, tuple, Term};
use erl_quorum::Node;
use std::time::Duration;
use tokio::time::Instant;

/// Long enough never to run out during a measurement: every pair releases
/// its key (the same lease as eq_quorum_bench's).
const LEASE: Duration = Duration::from_secs(10);

// ---- masters as child processes: benches/support/masters.rs ----------------

pub use crate::masters::{MasterProcs, W};

// ---- a client node that is also a master -----------------------------------

/// Starts the locker service on `node`, a master of `cluster` (W = 2,
/// a new cluster); must run inside `node`'s runtime.
pub fn start_master(node: &Node, cluster: &[String]) {
    let config = ServiceConfig {
        masters: cluster.to_vec(),
        w: W,
        fresh_cluster: true,
        ..ServiceConfig::default()
    };
    service::start(node, config).expect("start the locker service");
}

// ---- the Rust client ---------------------------------------------------------

/// What one measurement of the Rust client gave: the same figures as
/// `eq_quorum_bench:run/3`.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub pairs: u64,
    pub failed: u64,
    pub elapsed_ns: u64,
    /// Per completed pair, nanoseconds.
    pub samples: Vec<u64>,
}

/// `clients` tasks on `node`, each a [`LockerClient`] with a process of its
/// own, doing `lock` + `release` pairs against `masters` for `duration`.
/// `shared`: all on one key, a refused lock tried again at once; otherwise
/// each client has its own key and any failure aborts the run.
pub async fn client_pairs(
    node: &Node,
    masters: &[String],
    clients: usize,
    duration: Duration,
    shared: bool,
) -> Outcome {
    let (go, ready) = tokio::sync::watch::channel(None::<Instant>);
    let mut tasks = Vec::new();
    for i in 0..clients {
        // Every master here is an erl_quorum node, so the client may lock in
        // one round (`EQ_BENCH_TWO_PHASE=1` measures locker's two rounds).
        let one_round = std::env::var_os("EQ_BENCH_TWO_PHASE").is_none();
        // `EQ_QBENCH_FAN_OUT=all|idle` instead of the default (W masters;
        // idle: all when no other round is in flight, W under load).
        let hedge_after = Duration::from_millis(20);
        let fan_out = match std::env::var("EQ_QBENCH_FAN_OUT").as_deref() {
            Ok("all") => FanOut::All,
            Ok("idle") => FanOut::WWhenBusy { hedge_after },
            _ => FanOut::default(),
        };
        let mut client = LockerClient::new(node.spawn_process(), masters.to_vec(), W)
            .with_one_round_lock(one_round)
            .with_fan_out(fan_out);
        let mut ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            let key = if shared {
                atom("eq_quorum_bench_shared")
            } else {
                tuple(vec![atom("eq_quorum_bench"), int(i as i64)])
            };
            let value = Term::from(client.process().pid().clone());
            let deadline = loop {
                if let Some(d) = *ready.borrow_and_update() {
                    break d;
                }
                ready.changed().await.expect("the bench is waiting");
            };
            let mut samples = Vec::new();
            let mut failed = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= deadline {
                    break;
                }
                match client.lock(key.clone(), value.clone(), LEASE).await {
                    Ok(_) => {}
                    Err(LockerError::NoQuorum { .. }) if shared => {
                        failed += 1;
                        tokio::task::yield_now().await;
                        continue;
                    }
                    Err(e) => panic!("client {i}: lock failed: {e}"),
                }
                release(&mut client, &key, &value, i).await;
                samples.push(t0.elapsed().as_nanos() as u64);
            }
            (samples, failed)
        }));
    }
    let t0 = Instant::now();
    go.send_replace(Some(t0 + duration));
    let mut outcome = Outcome::default();
    for task in tasks {
        let (samples, failed) = task.await.expect("a client task panicked");
        outcome.failed += failed;
        outcome.samples.extend(samples);
    }
    outcome.elapsed_ns = t0.elapsed().as_nanos() as u64;
    outcome.pairs = outcome.samples.len() as u64;
    outcome
}

/// A release falls short of W votes only while a contender's aborted
/// promise is still in flight on two masters; try again a few times.
async fn release(client: &mut LockerClient, key: &Term, value: &Term, i: usize) {
    let mut tries = 5;
    loop {
        match client.release(key.clone(), value.clone()).await {
            Ok(_) => return,
            Err(LockerError::NoQuorum { .. }) if tries > 0 => tries -= 1,
            Err(e) => panic!("client {i}: release failed: {e}"),
        }
    }
}

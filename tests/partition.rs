//! Partitions that heal, killed and paused masters, against real nodes on
//! separate hosts (network namespaces, each with its own epmd and address;
//! see `partition_support/net.rs`). Three masters (`erl_quorum serve`,
//! W=2, a 5 s session lease) and two BEAM client nodes with OTP's default
//! `net_ticktime` (60 s) on two other hosts contend for 4 locks and 2
//! names; a nemesis isolates a client host, splits the hosts in two sides,
//! kills a master with kill -9 and restarts it without `--fresh`, and
//! pauses one with SIGSTOP for longer than a session lease. The checker
//! fails on any two overlapping holders and on a key left unavailable on
//! the majority side for longer than the session lease plus one second
//! (plus a little measuring slack) after a partition or an isolation.
//!
//! Runs as root (CI does); anything else fails loudly. `EQ_PARTITION_SECS`
//! sets how long each fault lasts (default 12). `EQ_PARTITION_LOG=1`
//! echoes every node's output.

mod common;
mod partition_support;

use partition_support::check::{holds, longest_gap, overlaps, Event};
use partition_support::net::Net;
use partition_support::procs::{now_us, Client, Master};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LEASE_MS: u64 = 5_000;
const HOLD_MS: u64 = 30;
/// The bound the fix promises, plus slack for the measurement itself (a
/// worker's round trips after the key is free again).
const BOUND_MS: f64 = (LEASE_MS + 1_000 + 500) as f64;
const MASTERS: [u8; 3] = [11, 12, 13];
const CLIENTS: [u8; 2] = [21, 22];

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

struct Phase {
    name: String,
    from: i64,
    to: i64,
    majority: Vec<String>,
    /// Whether the availability bound is asserted for it.
    bounded: bool,
}

#[test]
fn partitions_kills_and_pauses_keep_one_holder_and_the_majority_available() {
    let root = is_root();
    assert!(
        root,
        "tests/partition.rs needs root (network namespaces); CI runs it as root"
    );
    let fault = std::env::var("EQ_PARTITION_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12u64);
    let settle = 6;

    let mut all: Vec<u8> = MASTERS.to_vec();
    all.extend(CLIENTS);
    let net = Net::create(&all);

    let names: Vec<String> = MASTERS.iter().map(|&h| Master::name_of(h)).collect();
    let mut masters: Vec<Master> = MASTERS
        .iter()
        .map(|&h| Master::new(h, names.clone(), LEASE_MS))
        .collect();
    std::thread::scope(|s| {
        for m in masters.iter_mut() {
            s.spawn(move || m.start(true));
        }
    });

    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let keys = "[{lock,l1},{lock,l2},{lock,l3},{lock,l4},{name,n1},{name,n2}]";
    let key_names: Vec<String> = [
        "lock l1", "lock l2", "lock l3", "lock l4", "name n1", "name n2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Both call m11 first: when m11 is cut off, a client must fail over.
    let clients: Vec<Client> = CLIENTS
        .iter()
        .map(|&h| Client::start(h, &names, keys, HOLD_MS, &[], events.clone()))
        .collect();
    let (c21, c22) = (clients[0].name.clone(), clients[1].name.clone());
    let both = vec![c21.clone(), c22.clone()];

    let mut phases = Vec::new();
    let mut phase = |name: &str, majority: Vec<String>, bounded: bool, run: &mut dyn FnMut()| {
        let from = now_us();
        run();
        phases.push(Phase {
            name: name.to_owned(),
            from,
            to: now_us(),
            majority,
            bounded,
        });
    };

    phase("steady", both.clone(), true, &mut || {
        std::thread::sleep(secs(4))
    });
    phase(
        "client host c21 isolated",
        vec![c22.clone()],
        true,
        &mut || {
            net.partition(&[21], &[11, 12, 13, 22]);
            std::thread::sleep(secs(fault));
            net.heal(&[21], &[11, 12, 13, 22]);
            std::thread::sleep(secs(settle));
        },
    );
    phase(
        "{m11, c21} | {m12, m13, c22}",
        vec![c22.clone()],
        true,
        &mut || {
            net.partition(&[11, 21], &[12, 13, 22]);
            std::thread::sleep(secs(fault));
            net.heal(&[11, 21], &[12, 13, 22]);
            std::thread::sleep(secs(settle));
        },
    );
    phase("kill -9 m12, restart", both.clone(), true, &mut || {
        masters[1].kill9();
        std::thread::sleep(secs(4));
        masters[1].start(false);
        std::thread::sleep(secs(settle));
    });
    phase("SIGSTOP m13 > lease", both.clone(), true, &mut || {
        masters[2].stop();
        std::thread::sleep(Duration::from_millis(LEASE_MS + 3_000));
        masters[2].cont();
        std::thread::sleep(secs(settle));
    });

    let end = now_us();
    let history = events.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let held = holds(&history, end);
    let acquisitions: usize = held.values().map(Vec::len).sum();
    let by_node = |n: &str| {
        history
            .iter()
            .filter(|e| e.what == "ok" && e.node == n)
            .count()
    };
    eprintln!(
        "partition: {acquisitions} acquisitions ({c21}: {}, {c22}: {}), {} events",
        by_node(&c21),
        by_node(&c22),
        history.len()
    );
    let mut late = Vec::new();
    for p in &phases {
        let (gap, key) = longest_gap(&history, &p.majority, &key_names, p.from, p.to);
        let oks = history
            .iter()
            .filter(|e| e.what == "ok" && e.at_us >= p.from && e.at_us <= p.to)
            .count();
        eprintln!(
            "partition: phase {:<32} {:>6.1} s, {oks:>6} acquisitions, longest gap on the majority side {gap:>7.0} ms ({key})",
            p.name,
            (p.to - p.from) as f64 / 1e6
        );
        if p.bounded && gap > BOUND_MS {
            late.push(format!("{}: {gap:.0} ms ({key})", p.name));
        }
    }
    let bad = overlaps(&held);
    assert!(bad.is_empty(), "overlapping holders: {bad:#?}");
    assert!(
        acquisitions > 100,
        "too few acquisitions: {acquisitions}\n{}",
        clients[0].output()
    );
    assert!(
        late.is_empty(),
        "keys unavailable on the majority side for longer than {BOUND_MS} ms: {late:?}"
    );
    drop(clients);
    drop(masters);
    drop(net);
}

/// Whether this process runs as root (`id -u`).
fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

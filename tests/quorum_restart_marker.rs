//! Restarts of every master at once: a master that has served keeps a
//! marker (`<node>.served` in its `--state-dir`), and restarted with it,
//! it never takes a cluster of starting masters (or itself alone) for a
//! new cluster. It waits out its whole guard (`--promise-ms` plus
//! `--max-lease-ms`, 3 s here), so serving nodes and lease holders that
//! outlive the masters keep what they hold. Without the marker these
//! restarts served within a round (`a_new_cluster_serves_at_once_without_fresh`
//! in quorum_faults.rs shows that path, which still holds for masters that
//! never served).

mod common;
mod quorum_support;
mod rust_node;

use quorum_support::{node_name, status, status_int, MasterProcess, ServeOpts};
use std::time::{Duration, Instant};

const MAX_LEASE_MS: u64 = 2_000;
const PROMISE_MS: u64 = 1_000;
/// The restart guard: every promise and lease a master could have granted
/// before its crash has run out by then.
const GUARD: Duration = Duration::from_millis(PROMISE_MS + MAX_LEASE_MS);

fn opts(masters: &[String]) -> ServeOpts {
    ServeOpts {
        masters: masters.to_vec(),
        replicas: Vec::new(),
        w: masters.len() / 2 + 1,
        fresh: true,
        no_catch_up: false,
        max_lease_ms: Some(MAX_LEASE_MS),
        session_lease_ms: None,
        release_margin_ms: None,
    }
}

async fn start(masters: &[String]) -> Vec<MasterProcess> {
    let extra = vec!["--promise-ms".to_owned(), PROMISE_MS.to_string()];
    let mut started = Vec::new();
    for name in masters {
        started.push(MasterProcess::start_with_args(name, opts(masters), extra.clone()).await);
    }
    started
}

/// Waits for every master's marker (written once it serves).
async fn wait_for_markers(masters: &[MasterProcess]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for m in masters {
        while !m.has_served_marker() {
            assert!(
                Instant::now() < deadline,
                "{} never wrote its marker{}",
                m.name(),
                m.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Kills every master, restarts each (without `--fresh`), and checks that
/// none serves before its guard is over: `guard_remaining_ms` stays above
/// zero until `GUARD` after its spawn, and then drops to zero.
async fn restart_all_and_check_the_guard(prefix: &str, masters: &mut [MasterProcess]) {
    let node = rust_node::start(&format!("c_{prefix}")).await;
    let mut p = node.spawn_process();
    for m in masters.iter_mut() {
        m.kill9();
    }
    for m in masters.iter_mut() {
        m.restart(false, Some(MAX_LEASE_MS)).await;
    }
    let mut served = Vec::new();
    for m in masters.iter() {
        let since = loop {
            let guard = status_int(&status(&mut p, m.name()).await, "guard_remaining_ms");
            let since = m.spawned_at().elapsed();
            if guard == 0 {
                break since;
            }
            assert!(
                since < GUARD + Duration::from_secs(10),
                "{} still in its guard ({guard} ms) {since:?} after its restart",
                m.name()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // The guard starts after the spawn, so it cannot end sooner.
        assert!(
            since >= GUARD,
            "{} served {since:?} after its restart, inside its {GUARD:?} guard{}",
            m.name(),
            m.log_tail()
        );
        served.push(since);
    }
    eprintln!("{prefix}: restarted masters served {served:?} after their spawn (guard {GUARD:?})");
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_restart_waits_out_the_guard() {
    let names: Vec<String> = (0..3).map(|i| node_name(&format!("m{i}_wr"))).collect();
    let mut masters = start(&names).await;
    wait_for_markers(&masters).await;
    restart_all_and_check_the_guard("wr", &mut masters).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_master_restart_waits_out_the_guard() {
    let names = vec![node_name("m_lone")];
    let mut masters = start(&names).await;
    wait_for_markers(&masters).await;
    restart_all_and_check_the_guard("lone", &mut masters).await;
}

//! The locker service on Rust nodes, driven by a Rust client and by a real
//! BEAM node issuing locker's own calls.

mod common;
mod rust_node;

use common::BeamNode;
use erl_quorum::quorum::client::{LockerClient, LockerError};
use erl_quorum::quorum::service::{self, ServiceConfig};
use erl_quorum::term::{atom, int, tuple};
use erl_quorum::Node;
use std::time::Duration;

/// Three Rust masters, W = 2, fresh (no restart guard).
async fn three_masters(prefix: &str) -> Vec<Node> {
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(rust_node::start(&format!("{prefix}{i}")).await);
    }
    let masters: Vec<String> = nodes.iter().map(|n| n.name().to_owned()).collect();
    for node in &nodes {
        let config = ServiceConfig {
            masters: masters.clone(),
            w: 2,
            fresh_cluster: true,
            ..ServiceConfig::default()
        };
        service::start(node, config).expect("start locker");
    }
    nodes
}

fn names(nodes: &[Node]) -> Vec<String> {
    nodes.iter().map(|n| n.name().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_against_rust_masters() {
    let nodes = three_masters("rs_lk").await;
    let client_node = rust_node::start("rs_lkc").await;
    let mut a = LockerClient::new(client_node.spawn_process(), names(&nodes), 2);
    let mut b = LockerClient::new(client_node.spawn_process(), names(&nodes), 2);
    let key = tuple(vec![atom("job"), int(1)]);
    let lease = Duration::from_millis(800);

    let q = a
        .lock(key.clone(), atom("a"), lease)
        .await
        .expect("a locks");
    // The client stops waiting once W masters agreed.
    assert_eq!(q.w, 2);
    assert!(q.votes >= 2 && q.acks >= 2, "{q:?}");
    assert!(matches!(
        b.lock(key.clone(), atom("b"), lease).await,
        Err(LockerError::NoQuorum { .. })
    ));
    for node in names(&nodes) {
        assert_eq!(a.dirty_read(&node, key.clone()).await, Ok(Some(atom("a"))));
    }
    // Only the owner's value releases.
    assert!(b.release(key.clone(), atom("b")).await.is_err());
    a.update(key.clone(), atom("a"), atom("a2"))
        .await
        .expect("update");
    a.extend_lease(key.clone(), atom("a2"), lease)
        .await
        .expect("extend");
    assert_eq!(
        a.dirty_read(&names(&nodes)[1], key.clone()).await,
        Ok(Some(atom("a2")))
    );
    a.release(key.clone(), atom("a2")).await.expect("release");
    assert_eq!(a.dirty_read(&names(&nodes)[0], key.clone()).await, Ok(None));

    // A lease runs out by itself, and wait_for_release wakes when it does.
    b.lock(key.clone(), atom("b"), lease)
        .await
        .expect("b locks");
    let started = tokio::time::Instant::now();
    let first = names(&nodes)[0].clone();
    b.wait_for_release(&first, key.clone(), Duration::from_secs(5))
        .await
        .expect("released by expiry");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    a.lock(key.clone(), atom("a"), lease)
        .await
        .expect("free again");
    for n in nodes.iter().chain([&client_node]) {
        n.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beam_locker_client_against_rust_masters() {
    let nodes = three_masters("rs_lkb").await;
    common::ensure_epmd().unwrap();
    let b = BeamNode::start(&common::unique_name("b_lk"), rust_node::COOKIE, &[]).unwrap();
    let masters = format!(
        "[{}]",
        names(&nodes)
            .iter()
            .map(|n| common::atom(n))
            .collect::<Vec<_>>()
            .join(",")
    );
    b.eval_ok(&format!("M = {masters}"));
    assert_eq!(
        b.eval_ok("eq_locker_client:lock(M, 2, k1, v1, 2000)"),
        "{ok,2,3,3}"
    );
    assert_eq!(
        b.eval_ok("eq_locker_client:lock(M, 2, k1, v2, 2000)"),
        "{error,no_quorum}"
    );
    assert_eq!(
        b.eval_ok("eq_locker_client:update(M, 2, k1, v1, v3)"),
        "{ok,2,3,3}"
    );
    assert_eq!(
        b.eval_ok("eq_locker_client:extend_lease(M, 2, k1, v3, 2000)"),
        "ok"
    );
    assert_eq!(
        b.eval_ok("eq_locker_client:release({M, []}, 2, k1, wrong, x)"),
        "{error,no_quorum}"
    );
    assert_eq!(
        b.eval_ok("eq_locker_client:release({M, []}, 2, k1, v3, x)"),
        "{ok,2,3,3}"
    );
    // Exactly the master replies locker gives for each phase-1 outcome.
    assert_eq!(
        b.eval_ok("gen_server:multi_call(M, locker, {get_write_lock, k2, not_found, t1}, 5000)")
            .matches(",ok}")
            .count(),
        3
    );
    assert!(b
        .eval_ok("gen_server:multi_call(M, locker, {get_write_lock, k2, not_found, t2}, 5000)")
        .contains("{error,already_locked}"));
    assert_eq!(
        b.eval_ok("{R, []} = gen_server:multi_call(M, locker, {release_write_lock, t1}, 5000), lists:usort([X || {_, X} <- R])"),
        "[ok]"
    );
    assert!(b
        .eval_ok("gen_server:call({locker, hd(M)}, {no_such_request, 1})")
        .contains("{error,{unknown_request,{no_such_request,1}}}"));
    // A garbage cast is ignored and the service keeps serving.
    b.eval_ok("gen_server:cast({locker, hd(M)}, {garbage, <<1,2,3>>})");
    assert_eq!(
        b.eval_ok("eq_locker_client:lock(M, 2, k3, v, 500)"),
        "{ok,2,3,3}"
    );
    // wait_for_release wakes when the lease runs out.
    assert_eq!(
        b.eval_ok("eq_locker_client:wait_for_release(hd(M), k3, 5000)"),
        "{ok,released}"
    );
    for n in &nodes {
        n.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_master_refuses_promises_until_leases_could_have_expired() {
    let node = rust_node::start("rs_guard").await;
    let config = ServiceConfig {
        store: erl_quorum::quorum::StoreConfig {
            promise_ms: 300,
            max_lease_ms: 700,
            w: 1,
        },
        // A master alone that catches up finds no peer and serves at once
        // (a new cluster, or a whole-cluster restart: nobody can tell).
        // This is the guard itself, as when peers cannot be reached.
        catch_up: false,
        ..ServiceConfig::default()
    };
    service::start(&node, config).unwrap();
    let mut c = LockerClient::new(node.spawn_process(), vec![node.name().to_owned()], 1);
    let started = tokio::time::Instant::now();
    assert!(c
        .lock(atom("k"), atom("v"), Duration::from_millis(500))
        .await
        .is_err());
    let q = c
        .lock_until(
            atom("k"),
            atom("v"),
            Duration::from_millis(500),
            started + Duration::from_secs(5),
        )
        .await
        .expect("granted once the guard is over");
    assert_eq!(q.acks, 1);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_locks_exclude_each_other_and_two_phase_locks() {
    let nodes = three_masters("rs_lk1r").await;
    let client_node = rust_node::start("rs_lk1rc").await;
    let one_round =
        |n: &Node| LockerClient::new(n.spawn_process(), names(&nodes), 2).with_one_round_lock(true);
    let mut a = one_round(&client_node);
    let mut b = one_round(&client_node);
    let mut c = LockerClient::new(client_node.spawn_process(), names(&nodes), 2);
    let lease = Duration::from_secs(5);
    let q = a.lock(atom("k"), atom("a"), lease).await.expect("a locks");
    assert!(q.acks >= 2, "{q:?}");
    assert!(matches!(
        b.lock(atom("k"), atom("b"), lease).await,
        Err(LockerError::NoQuorum { .. })
    ));
    assert!(matches!(
        c.lock(atom("k"), atom("c"), lease).await,
        Err(LockerError::NoQuorum { .. })
    ));
    // A failed one-round attempt leaves nothing behind: after a's release
    // the key is free for everyone.
    a.release(atom("k"), atom("a")).await.expect("release");
    for n in names(&nodes) {
        assert_eq!(c.dirty_read(&n, atom("k")).await, Ok(None));
    }
    c.lock(atom("k"), atom("c"), lease)
        .await
        .expect("two-phase lock");
    assert!(b.lock(atom("k"), atom("b"), lease).await.is_err());
    c.release(atom("k"), atom("c")).await.expect("release");
    b.lock(atom("k"), atom("b"), lease)
        .await
        .expect("one-round lock");
    // Over the maximum lease: refused by every master.
    assert!(a
        .lock(atom("k2"), atom("a"), Duration::from_secs(3600))
        .await
        .is_err());
    for n in nodes.iter().chain([&client_node]) {
        n.shutdown();
    }
}

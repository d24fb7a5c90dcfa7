//! BEAM nodes and Rust clients send each request to the serving node that
//! holds its key's shard (PROTOCOL.md, "Redirects"; rebar_fixture's
//! `rust_quorum_shard` and `rust_quorum_route`, `Registry`'s shard map).
//!
//! - `the_beam_computes_the_shards_the_rust_nodes_do`: a BEAM node draws
//!   thousands of varied keys (atoms incl. UTF-8, integers small, big and
//!   negative around every boundary, floats incl. -0.0, binaries,
//!   bitstrings, lists incl. improper and strings, tuples, maps nested and
//!   with mixed keys) and compares `rust_quorum_shard:shard/2` with a Rust
//!   node's `{shard_of, Kind, Key}` for both kinds. All must agree, over all
//!   64 shards (a constant answer fails), and exactly the keys holding a
//!   pid, ref or fun must be `unknown`.
//! - `calls_pay_no_redirect_in_steady_state_and_the_map_heals`: shards
//!   spread over 3 serving nodes (shard S on node S rem 3). 1000 locks
//!   through `rust_quorum:call/1` with the map turned off pay about 2
//!   redirects in 3 (the nodes' `redirects` counters, which shows they
//!   count); with it, after one batch to learn, 1000 more pay none, and the
//!   map is exactly the spread. Then a node is killed: once its shards
//!   have moved, the map has none of them on it and a batch pays no
//!   redirect again. A Rust `Registry` learns the same way, and heals the
//!   same way after the kill.

mod common;
mod quorum_support;
mod rust_node;
mod services_support;

use erl_quorum::services::Registry;
use erl_quorum::term::{atom, int, tuple};
use quorum_support::{beval, erl_list};
use services_support::{start_app_node, start_cluster, start_cluster_args, ClusterOpts, Lang};
use std::time::Instant;

/// Random keys drawn for the cross-check (each checked as a lock key and
/// as a name), besides the fixed edge cases.
const KEYS: usize = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_beam_computes_the_shards_the_rust_nodes_do() {
    let started = Instant::now();
    let cluster = start_cluster("sx", None).await;
    let m = cluster.master_names();
    let b = start_app_node("b_sx", Lang::Erlang, &m).await;
    let node = common::atom(&m[1]);
    let fixed: usize = beval(&b, "length(eq_routing:fixed())").parse().unwrap();
    // Seeded: the same keys every run, so a failure can be replayed.
    let result = beval(
        &b,
        &format!(
            "#{{checked := C, unknown := U, shards := S, mismatches := M}} = \
               eq_routing:cross_check({node}, {KEYS}, 1), {{C, U, S, M}}"
        ),
    );
    // 4 fixed keys hold a pid, a ref or a fun; random keys never do.
    let expected = format!("{{{},8,64,[]}}", 2 * (KEYS + fixed - 4));
    assert_eq!(result, expected, "{{checked, unknown, shards, mismatches}}");
    println!(
        "cross-checked {} keys x 2 kinds in {:?}",
        KEYS + fixed,
        started.elapsed()
    );
}

/// The sum of the serving nodes' `redirects` counters (those that answer).
fn redirects(b: &common::BeamNode, masters: &str) -> i64 {
    beval(b, &format!("eq_routing:redirects({masters})"))
        .parse()
        .unwrap()
}

/// Redirects paid by a batch of `n` locks (fresh keys `{tag, I}`) from `b`.
fn batch(b: &common::BeamNode, masters: &str, tag: &str, n: usize) -> i64 {
    let before = redirects(b, masters);
    assert_eq!(
        beval(b, &format!("eq_routing:lock_batch({tag}, {n})")),
        n.to_string()
    );
    redirects(b, masters) - before
}

/// Redirects paid by 200 registrations (fresh names `{rs, Round, I}`, each
/// unregistered at once: the process holds nothing a killed node could
/// take with it) from a Rust `Registry`.
async fn rust_batch(b: &common::BeamNode, masters: &str, reg: &mut Registry, round: i64) -> i64 {
    let before = redirects(b, masters);
    let me = reg.process().pid().clone();
    for i in 0..200 {
        let name = tuple(vec![atom("rs"), int(round), int(i)]);
        assert_eq!(reg.register(name.clone(), &me).await, Ok(true));
        assert_eq!(reg.unregister(name).await, Ok(()));
    }
    redirects(b, masters) - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_pay_no_redirect_in_steady_state_and_the_map_heals() {
    let started = Instant::now();
    // The spread is seeded (shard S on node S rem 3), so the cluster does
    // not rebalance (`--no-rebalance`). The
    // default 10 s session lease: with 5 s, a loaded machine (a load
    // average of 14 on 2 cores was seen) let a session lapse before any
    // node was killed, and the seeded owners were told lock_lost.
    let timing = ClusterOpts {
        session_lease_ms: None,
        release_margin_ms: None,
    };
    let mut cluster = start_cluster_args("sr", timing, &["--no-rebalance"]).await;
    let m = cluster.master_names();
    let ms = erl_list(&m);
    let b = start_app_node("b_sr", Lang::Erlang, &m).await;
    assert_eq!(beval(&b, &format!("eq_routing:seed({ms})")), "ok");

    // Before: the map off, calls start at the node that answered last.
    beval(&b, "application:set_env(erl_quorum, route_by_shard, false)");
    let off = batch(&b, &ms, "off", 1000);
    assert_eq!(beval(&b, "rust_quorum_route:holders()"), "[]");
    // About 2 in 3 (shards held by the other two nodes); well above 0, so
    // the counter counts and the spread is real.
    assert!(off > 400, "{off} redirects per 1000 calls without the map");

    // After: one batch learns the map, the next pays nothing.
    beval(&b, "application:set_env(erl_quorum, route_by_shard, true)");
    let learning = batch(&b, &ms, "learn", 1000);
    let steady = batch(&b, &ms, "steady", 1000);
    println!("redirects per 1000 calls: {off} without the map, {learning} while learning, {steady} in steady state");
    assert_eq!(steady, 0, "redirects per 1000 calls in steady state");
    assert!(
        learning <= 64,
        "at most one redirect per shard to learn: {learning}"
    );
    assert_eq!(
        beval(
            &b,
            &format!("rust_quorum_route:holders() =:= eq_routing:expected_holders({ms})")
        ),
        "true",
        "map: {}",
        beval(&b, "rust_quorum_route:holders()")
    );

    // A Rust client learns the same spread.
    let node = rust_node::start("rs_sr").await;
    let mut reg = Registry::new(node.spawn_process()).with_server(&m[0]);
    let rust_learning = rust_batch(&b, &ms, &mut reg, 1).await;
    let rust_steady = rust_batch(&b, &ms, &mut reg, 2).await;
    println!("Rust Registry redirects per 200 calls: {rust_learning} while learning, {rust_steady} in steady state");
    assert!(rust_learning > 0 && rust_learning <= 64, "{rust_learning}");
    assert_eq!(rust_steady, 0);

    // A node killed: its shards move once its session lapses; the map
    // forgets it and learns their new holders.
    cluster.masters[2].kill9();
    let moved = beval(&b, "eq_routing:lock_all_shards(moved, 30000)");
    assert!(
        moved.starts_with("{ok,"),
        "shards of the killed node never granted: {moved}"
    );
    let alive = erl_list(&m[..2]);
    let healed = batch(&b, &alive, "healed", 1000);
    assert_eq!(healed, 0, "redirects per 1000 calls once the shards moved");
    let dead = common::atom(&m[2]);
    assert_eq!(
        beval(&b, &format!("{{length(rust_quorum_route:holders()), lists:keymember({dead}, 2, rust_quorum_route:holders())}}")),
        "{64,false}",
        "map: {}",
        beval(&b, "rust_quorum_route:holders()")
    );
    // The Rust client's entries for the dead node fail once each (it
    // forgets them and asks its own server, which may redirect), then no
    // call pays a redirect again.
    let rust_after_kill = rust_batch(&b, &alive, &mut reg, 3).await;
    let rust_healed = rust_batch(&b, &alive, &mut reg, 4).await;
    println!(
        "Rust Registry redirects per 200 calls after the kill: {rust_after_kill}, then {rust_healed}"
    );
    assert_eq!(
        rust_healed, 0,
        "Rust Registry redirects once the shards moved"
    );
    println!(
        "shards moved after the kill in {moved}; total {:?}",
        started.elapsed()
    );
}

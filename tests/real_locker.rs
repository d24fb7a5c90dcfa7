//! The Rust node inside a cluster of BEAM nodes running the real locker
//! library (wooga/locker), as a master and as a replica.
//!
//! locker is not in Debian's packages and CI has no network, so this test is
//! ignored unless `EQ_LOCKER_EBIN` names a directory with a compiled
//! `locker.beam`:
//!
//! ```text
//! git clone https://github.com/wooga/locker && erlc -o /tmp/locker_ebin locker/src/locker.erl
//! EQ_LOCKER_EBIN=/tmp/locker_ebin cargo test --test real_locker -- --ignored
//! ```

mod common;
mod rust_node;

use common::BeamNode;
use erl_quorum::quorum::service::{self, ServiceConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs EQ_LOCKER_EBIN: a compiled wooga/locker"]
async fn rust_node_as_master_and_replica_in_a_real_locker_cluster() {
    let ebin = std::env::var("EQ_LOCKER_EBIN").expect("EQ_LOCKER_EBIN");
    let node = rust_node::start("rs_real").await;
    service::start(
        &node,
        ServiceConfig {
            fresh_cluster: true,
            ..ServiceConfig::default()
        },
    )
    .unwrap();
    common::ensure_epmd().unwrap();
    let args = ["-pa", ebin.as_str()];
    let b1 = BeamNode::start(&common::unique_name("b_real1"), rust_node::COOKIE, &args).unwrap();
    let b2 = BeamNode::start(&common::unique_name("b_real2"), rust_node::COOKIE, &args).unwrap();
    // The lockers must outlive the evaluation that starts them.
    let start = "spawn(fun() -> {ok, _} = locker:start_link(2), receive never -> ok end end), \
                 eq_peer:wait_until(fun() -> whereis(locker) =/= undefined end, 5000)";
    b1.eval_ok(start);
    b2.eval_ok(start);
    let r = common::atom(node.name());
    b1.eval_ok(&format!(
        "R = {r}, B1 = node(), B2 = {}, pong = net_adm:ping(R), C = [B1, B2, R]",
        b2.node_atom()
    ));

    // As a master: locker's own client functions, run on a BEAM node.
    assert_eq!(b1.eval_ok("locker:set_nodes(C, C, [])"), "ok");
    assert_eq!(b1.eval_ok("locker:set_w(C, 2)"), "ok");
    assert_eq!(b1.eval_ok("locker:lock(k, v, 3000)"), "{ok,2,3,3}");
    assert_eq!(b1.eval_ok("locker:lock(k, v2, 3000)"), "{error,no_quorum}");
    assert_eq!(
        b1.eval_ok("gen_server:call({locker, R}, {dirty_read, k})"),
        "{ok,v}"
    );
    assert_eq!(b1.eval_ok("locker:update(k, v, v3)"), "{ok,2,3,3}");
    assert_eq!(b1.eval_ok("locker:extend_lease(k, v3, 3000)"), "ok");
    assert_eq!(
        b1.eval_ok("gen_server:call({locker, R}, {dirty_read, k})"),
        "{ok,v3}"
    );
    assert_eq!(b1.eval_ok("locker:release(k, v3)"), "{ok,2,3,3}");
    assert_eq!(
        b1.eval_ok("gen_server:call({locker, R}, {dirty_read, k})"),
        "{error,not_found}"
    );

    // As a replica: the masters' trans_log pushes reach it.
    assert_eq!(b1.eval_ok("locker:set_nodes(C, [B1, B2], [R])"), "ok");
    assert_eq!(b1.eval_ok("locker:lock(k2, val2, 5000)"), "{ok,2,2,2}");
    b1.eval_ok("eq_peer:wait_until(fun() -> gen_server:call({locker, R}, {dirty_read, k2}) =:= {ok, val2} end, 3000)");
    assert!(b1
        .eval_ok("locker:release(k2, val2)")
        .starts_with("{ok,2,2,"));
    b1.eval_ok("eq_peer:wait_until(fun() -> gen_server:call({locker, R}, {dirty_read, k2}) =:= {error, not_found} end, 3000)");
    node.shutdown();
}

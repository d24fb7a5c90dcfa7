//! The `locker` service as a gen_server seen from a BEAM shell: `sys`
//! shows its state and status, and its periodic sweep (the server's
//! deadline) wakes a `wait_for_release` when a lease runs out.

mod common;
mod rust_node;

use common::BeamNode;
use erl_quorum::quorum::service::{self, ServiceConfig};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_shows_the_locker_and_its_sweep_wakes_waiters() {
    let node = rust_node::start("rs_lsys").await;
    let config = ServiceConfig {
        fresh_cluster: true,
        ..ServiceConfig::default()
    };
    service::start(&node, config).expect("start locker");
    common::ensure_epmd().expect("epmd");
    let b =
        BeamNode::start(&common::unique_name("b_lsys"), rust_node::COOKIE, &[]).expect("start erl");
    let r = common::atom(node.name());
    b.eval_ok(&format!("L = {{locker, {r}}}"));
    // OTP 26.1+ shows the state; older releases wrap it in {ok, _}.
    b.eval_ok("State = fun() -> case sys:get_state(L) of {ok, S} -> S; S -> S end end");

    assert_eq!(
        b.eval_ok("S0 = State(), {proplists:get_value(role, S0), proplists:get_value(w, S0), proplists:get_value(entries, S0)}"),
        "{master,1,0}"
    );
    assert_eq!(
        b.eval_ok("gen_server:call(L, {erl_quorum_lock, job, me, 1500, tag1})"),
        "ok"
    );
    assert_eq!(b.eval_ok("proplists:get_value(entries, State())"), "1");
    assert_eq!(
        b.eval_ok(
            "{status, _, {module, gen_server}, [_, running, _, _, Misc]} = sys:get_status(L), \
             {lists:keyfind(header, 1, Misc), is_list(element(2, hd(element(2, lists:last(Misc)))))}"
        ),
        "{{header,\"Status for generic server locker\"},true}"
    );

    // Suspended, the locker holds calls; resumed, it answers them.
    assert_eq!(b.eval_ok("sys:suspend(L)"), "ok");
    b.eval_ok(
        "Self = self(), spawn(fun() -> Self ! {read, gen_server:call(L, {dirty_read, job})} end)",
    );
    assert_eq!(
        b.eval_ok("receive {read, R0} -> {early, R0} after 300 -> held end"),
        "held"
    );
    assert_eq!(b.eval_ok("sys:resume(L)"), "ok");
    assert_eq!(
        b.eval_ok("receive {read, R1} -> R1 after 5000 -> timeout end"),
        "{ok,me}"
    );

    // The lease runs out; the sweep (the server's deadline) wakes the waiter.
    let started = Instant::now();
    assert_eq!(
        b.eval_ok("gen_server:call(L, {wait_for_release, job, 5000}, 6000)"),
        "{ok,released}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(b.eval_ok("proplists:get_value(entries, State())"), "0");
}

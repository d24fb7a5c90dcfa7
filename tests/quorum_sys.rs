//! The `locker` service as a gen_server seen from a BEAM shell: `sys`
//! shows its state and status, and its periodic sweep (the server's
//! deadline) wakes a `wait_for_release` when a lease runs out. The
//! `erl_quorum` service of a serving node answers `sys` the same way, with
//! its status counters as the state.

mod common;
mod quorum_support;
mod rust_node;

use common::BeamNode;
use erl_quorum::quorum::service::{self, ServiceConfig};
use quorum_support::{beval, start_beam, Cluster};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_shows_the_erl_quorum_service_and_a_lock_works_after_a_resume() {
    // One `erl_quorum serve` node, its own only master (W=1).
    let cluster = Cluster::start("esys", 1, 0, 1, None).await;
    let b = start_beam("b_esys").await;
    let m = common::atom(&cluster.master_names()[0]);
    beval(&b, &format!("E = {{erl_quorum, {m}}}"));
    // OTP 26.1+ shows the state; OTP 25 wraps it in {ok, _}.
    let get_state = match b.otp() {
        common::Otp::V25 => "Get = fun() -> {ok, S} = sys:get_state(E), S end",
        _ => "Get = fun() -> sys:get_state(E) end",
    };
    beval(&b, get_state);
    // Locks are granted once the node's session is confirmed.
    beval(
        &b,
        "ok = eq_peer:wait_until(fun() -> \
           proplists:get_value(session_valid_ms, gen_server:call(E, status)) > 0 end, 10000)",
    );

    // The state is the status counters, the same as a `status` call's.
    let keys =
        "[slots,peer_names,subscribers,session_valid_ms,epoch,supervised,hosts,pending_starts,redirects,shards_held]";
    assert_eq!(beval(&b, "[K || {K, V} <- Get(), is_integer(V)]"), keys);
    assert_eq!(
        beval(&b, "[K || {K, _} <- gen_server:call(E, status)]"),
        keys
    );
    assert_eq!(beval(&b, "proplists:get_value(slots, Get())"), "0");
    assert_eq!(
        beval(
            &b,
            "{status, _, {module, gen_server}, [_, running, _, _, Misc]} = sys:get_status(E), \
             {lists:keyfind(header, 1, Misc), \
              [K || {K, _} <- element(2, hd(element(2, lists:last(Misc))))]}"
        ),
        format!("{{{{header,\"Status for generic server erl_quorum\"}},{keys}}}")
    );

    // Suspended, the service holds a lock call; resumed, it grants it.
    assert_eq!(beval(&b, "sys:suspend(E)"), "ok");
    beval(
        &b,
        "Self = self(), Owner = spawn(fun() -> \
           Self ! {locked, gen_server:call(E, {lock, sys_job, self(), true}, 10000)}, \
           receive stop -> ok end end)",
    );
    assert_eq!(
        beval(
            &b,
            "receive {locked, R0} -> {early, R0} after 300 -> held end"
        ),
        "held"
    );
    assert_eq!(beval(&b, "sys:resume(E)"), "ok");
    assert_eq!(
        beval(&b, "receive {locked, R1} -> R1 after 10000 -> timeout end"),
        "acquired"
    );
    assert_eq!(beval(&b, "proplists:get_value(slots, Get())"), "1");
    // Held by its owner: another process is told who holds it.
    assert_eq!(
        beval(
            &b,
            "gen_server:call(E, {lock, sys_job, self(), false}, 10000) =:= {held_by, Owner}"
        ),
        "true"
    );
    beval(&b, "Owner ! stop");
    drop(cluster);
}

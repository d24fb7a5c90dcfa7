//! The `locker` service against callers that misuse it: waiters whose
//! callers are gone, a `trans_log` cast that claims to come from a master it
//! does not come from, and `wait_for` with a timeout of 0. A BEAM node sends
//! all of these (they are valid terms; only their use is hostile).

mod common;
mod rust_node;

use common::BeamNode;
use erl_quorum::quorum::service::{self, ServiceConfig};
use std::time::{Duration, Instant};

async fn locker_and_beam(prefix: &str) -> (erl_quorum::node::Node, BeamNode) {
    let node = rust_node::start(&format!("rs_{prefix}")).await;
    let config = ServiceConfig {
        fresh_cluster: true,
        ..ServiceConfig::default()
    };
    service::start(&node, config).expect("start locker");
    common::ensure_epmd().expect("epmd");
    let b = BeamNode::start(
        &common::unique_name(&format!("b_{prefix}")),
        rust_node::COOKIE,
        &[],
    )
    .expect("start erl");
    let r = common::atom(node.name());
    b.eval_ok(&format!("R = {r}, L = {{locker, R}}"));
    b.eval_ok("Waiters = fun() -> proplists:get_value(waiters, gen_server:call(L, {erl_quorum, status})) end");
    (node, b)
}

/// 2000 `infinity` waiters whose callers exit, then 2000 more whose node
/// leaves: the locker forgets every one of them (before, they stayed for as
/// long as their keys were never written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_of_callers_that_are_gone_are_forgotten() {
    let (node, b) = locker_and_beam("lwait").await;
    let park = "Parked = fun(Tag) -> [spawn(fun() -> gen_server:call(L, {wait_for, {Tag, I}, infinity}, infinity) end) \
                || I <- lists:seq(1, 2000)], eq_peer:wait_until(fun() -> Waiters() >= 2000 end, 10000), Waiters() end";
    b.eval_ok(park);
    assert_eq!(b.eval_ok("Parked(exits)"), "2000");
    // One caller exits: its waiter alone goes.
    b.eval_ok("[P | _] = [P || {P, _} <- [{spawn(fun() -> gen_server:call(L, {wait_for, alone, infinity}, infinity) end), x}]], \
               eq_peer:wait_until(fun() -> Waiters() =:= 2001 end, 5000), exit(P, kill)");
    assert_eq!(
        b.eval_ok("eq_peer:wait_until(fun() -> Waiters() =:= 2000 end, 5000), Waiters()"),
        "2000"
    );
    // A key written still wakes a live waiter (the monitor changes nothing else).
    b.eval_ok("Self = self(), spawn(fun() -> Self ! {woke, gen_server:call(L, {wait_for, k, 5000}, 6000)} end), \
               eq_peer:wait_until(fun() -> Waiters() =:= 2001 end, 5000)");
    assert_eq!(
        b.eval_ok("gen_server:call(L, {erl_quorum_lock, k, v, 5000, t1})"),
        "ok"
    );
    assert_eq!(
        b.eval_ok("receive {woke, W} -> W after 3000 -> none end"),
        "{ok,v}"
    );
    // The caller's node leaves: all 2000 go.
    let b_name = b.node_name().to_owned();
    b.stop().expect("stop erl");
    let started = Instant::now();
    loop {
        let w = waiters(&node).await;
        if w == 0 {
            eprintln!(
                "2000 waiters forgotten {:?} after their node stopped",
                started.elapsed()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{w} waiters of {b_name} left after its node went"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.shutdown();
}

async fn waiters(node: &erl_quorum::node::Node) -> i64 {
    use erl_quorum::term::{as_tuple, atom, is_atom, list_elements, tuple, Term};
    let mut p = node.spawn_process();
    let status = p
        .call(
            "locker",
            tuple(vec![atom("erl_quorum"), atom("status")]),
            Duration::from_secs(5),
        )
        .await
        .expect("status");
    for pair in list_elements(&status).unwrap_or_default() {
        if let Some([k, Term::FixInteger(n)]) = as_tuple(&pair) {
            if is_atom(k, "waiters") {
                return i64::from(n.value);
            }
        }
    }
    panic!("no waiters in {status}");
}

/// A `trans_log` that names this master, a stranger or a replica is not
/// replayed; one from another configured master is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trans_log_is_replayed_only_from_another_master() {
    let (node, b) = locker_and_beam("ltlog").await;
    let me = common::atom(b.node_name());
    for from in ["R", "'stranger@nowhere'", "42"] {
        b.eval_ok(&format!(
            "gen_server:cast(L, {{trans_log, {from}, [{{write, injected, forged, 60000}}]}})"
        ));
        assert_eq!(
            b.eval_ok("timer:sleep(200), gen_server:call(L, {dirty_read, injected})"),
            "{error,not_found}",
            "a trans_log naming {from} was replayed"
        );
    }
    // Make the BEAM node a master beside us: its log is replayed.
    assert_eq!(
        b.eval_ok(&format!("gen_server:call(L, {{set_nodes, [R, {me}], []}})")),
        "ok"
    );
    b.eval_ok(&format!(
        "gen_server:cast(L, {{trans_log, {me}, [{{write, replayed, v, 60000}}]}})"
    ));
    assert_eq!(
        b.eval_ok("eq_peer:wait_until(fun() -> gen_server:call(L, {dirty_read, replayed}) =:= {ok, v} end, 3000), ok"),
        "ok"
    );
    node.shutdown();
}

/// `wait_for` and `wait_for_release` with a timeout of 0 answer at once,
/// and a parked waiter is answered `{error, timeout}` at its timeout (the
/// caller's own call timeout is longer, so it used to hang until then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_answers_at_its_timeout() {
    let (node, b) = locker_and_beam("lzero").await;
    assert_eq!(
        b.eval_ok("gen_server:call(L, {wait_for, absent, 0}, 5000)"),
        "{error,timeout}"
    );
    assert_eq!(
        b.eval_ok("gen_server:call(L, {erl_quorum_lock, held, v, 10000, t1})"),
        "ok"
    );
    assert_eq!(
        b.eval_ok("gen_server:call(L, {wait_for_release, held, 0}, 5000)"),
        "{error,timeout}"
    );
    assert_eq!(
        b.eval_ok(
            "T0 = erlang:monotonic_time(millisecond), \
             R1 = gen_server:call(L, {wait_for, absent, 300}, 5000), \
             {R1, erlang:monotonic_time(millisecond) - T0 < 2000}"
        ),
        "{{error,timeout},true}"
    );
    assert_eq!(b.eval_ok("Waiters()"), "0");
    // The Rust client maps it to its typed timeout.
    let mut client = erl_quorum::quorum::client::LockerClient::new(
        node.spawn_process(),
        vec![node.name().to_owned()],
        1,
    );
    let err = client
        .wait_for(
            node.name(),
            erl_quorum::term::atom("absent"),
            Duration::from_millis(0),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, erl_quorum::quorum::client::LockerError::Timeout),
        "{err:?}"
    );
    node.shutdown();
}

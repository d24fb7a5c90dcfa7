//! Fencing tokens on lock grants, against real BEAM nodes (Erlang and
//! Elixir) and three `erl_quorum serve` masters (W=2, 5 s session lease):
//! `paxtor:lock(K, [fencing])` answers `{acquired, Token}`; a reentrant call
//! gets the same token; the next holder (an Elixir process on another node,
//! served through another master) a larger one; after `kill -9` of the
//! serving node that held the key's shard, the shard moves to a surviving
//! node and its grants, to Erlang and to a Rust process
//! (`Registry::lock_fenced`), are larger still.

mod common;
mod quorum_support;
mod rust_node;
mod services_support;

use common::BeamNode;
use erl_quorum::services::{Fenced, LockReply, Registry};
use erl_quorum::term::{atom, tuple};
use services_support::{
    beval, ex_expr, rotated, start_app_node, start_cluster, term_expr, wait_on, Lang,
};
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

/// A token printed by the BEAM: a positive integer.
#[track_caller]
fn token(node: &BeamNode, expr: &str) -> u64 {
    let printed = beval(node, expr);
    printed
        .parse()
        .unwrap_or_else(|_| panic!("{expr}: not a token: {printed}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_grow_across_holders_nodes_and_a_killed_serving_node() {
    let mut cluster = start_cluster("fen", Some(5_000)).await;
    let m = cluster.master_names();
    let (a, x) = tokio::join!(
        start_app_node("fen_a", Lang::Erlang, &m),
        start_app_node("fen_x", Lang::Elixir, &rotated(&m, 1)),
    );
    beval(&a, "K = {fen, k}");

    // An Erlang holder: `{acquired, T1}`, the same token when it locks
    // again (plain `acquired` without the option).
    let r1 = beval(
        &a,
        "{R1, H1} = eq_services:holder(fun() -> paxtor:lock(K, [fencing]) end), R1",
    );
    assert!(r1.starts_with("{acquired,"), "{r1}");
    let t1 = token(&a, "element(2, R1)");
    assert!(t1 > 0);
    assert_eq!(
        beval(
            &a,
            "eq_services:run_in(H1, fun() -> {paxtor:lock(K, [fencing]), paxtor:lock(K), \
             paxtor:lock(K, [{fencing, true}, {block, false}])} end)"
        ),
        format!("{{{{acquired,{t1}}},acquired,{{acquired,{t1}}}}}")
    );
    assert_eq!(
        beval(
            &a,
            "try paxtor:lock(K, [{fencing, sometimes}]) catch error:{badarg, B} -> B end"
        ),
        "{fencing,sometimes}"
    );

    // From an Elixir node served through another master: a non-blocking
    // attempt is told who holds it (before anyone waits: a non-blocking
    // request is answered in its turn, after the waiters ahead of it), and
    // a process waits for it (`fencing: true`).
    beval(&x, &format!("H1 = {}", term_expr(&a, "H1")));
    assert_eq!(
        beval(
            &x,
            &format!(
                "{} =:= {{held_by, H1}}",
                ex_expr("Paxtor.lock({:fen, :k}, block: false, fencing: true)", &[])
            )
        ),
        "true"
    );
    beval(
        &x,
        &format!(
            "W = {}",
            ex_expr(
                ":eq_services.spawn_holder(fn -> Paxtor.lock({:fen, :k}, fencing: true) end)",
                &[]
            )
        ),
    );
    wait_on(&x, "eq_services:is_blocked(W)", 5 * SECOND);
    assert_eq!(beval(&a, "eq_services:kill(H1)"), "killed");
    wait_on(&x, "eq_services:result(W) =/= pending", 10 * SECOND);
    assert_eq!(
        beval(&x, "element(1, element(2, eq_services:result(W)))"),
        "acquired"
    );
    let t2 = token(&x, "element(2, element(2, eq_services:result(W)))");
    assert!(t2 > t1, "the next holder's token {t2} is not above {t1}");

    // The serving node that holds the key's shard: the one the others
    // redirect a lock of K to (it answers `{held_by, W}` itself).
    let names: Vec<String> = m.iter().map(|n| common::atom(n)).collect();
    let serving = beval(
        &a,
        &format!(
            "Rs = [{{M, gen_server:call({{erl_quorum, M}}, {{lock, K, self(), false, [fencing]}})}} \
               || M <- [{}]], \
             [S] = lists:usort([N || {{_, {{erl_quorum_redirect, N}}}} <- Rs]), \
             [{{S, {{held_by, _}}}}] = [R || {{_, {{held_by, _}}}} = R <- Rs], \
             S",
            names.join(",")
        ),
    );
    let i = names
        .iter()
        .position(|n| *n == serving)
        .unwrap_or_else(|| panic!("{serving} is none of {names:?}"));
    let alive: Vec<String> = (0..3).filter(|&j| j != i).map(|j| m[j].clone()).collect();

    // kill -9 of that serving node: W is told (its lock is lost), and once
    // the node's session lapsed a surviving node takes the shard; its
    // grants are larger still.
    let killed = Instant::now();
    cluster.masters[i].kill9();
    wait_on(&x, "eq_services:result(W) =:= dead", 10 * SECOND);
    let r3 = beval(
        &a,
        "{R3, H3} = eq_services:holder(fun() -> paxtor:lock(K, [fencing]) end), R3",
    );
    let moved = killed.elapsed();
    assert!(r3.starts_with("{acquired,"), "{r3}{}", cluster.logs());
    let t3 = token(&a, "element(2, R3)");
    assert!(t3 > t2, "after the failover: {t3} is not above {t2}");
    assert_eq!(
        beval(
            &a,
            "eq_services:run_in(H3, fun() -> paxtor:lock(K, [fencing]) end)"
        ),
        format!("{{acquired,{t3}}}")
    );

    // A Rust process, through a surviving node: held by H3, then granted
    // under a larger token, the same when it asks again.
    let node = rust_node::start("rs_fen").await;
    let mut rust = Registry::new(node.spawn_process()).with_server(&alive[0]);
    let key = tuple(vec![atom("fen"), atom("k")]);
    match rust.lock_fenced(key.clone(), false).await {
        Ok(Fenced::HeldBy(_)) => {}
        other => panic!("while H3 holds it: {other:?}"),
    }
    assert_eq!(beval(&a, "eq_services:kill(H3)"), "killed");
    let t4 = match rust.lock_fenced(key.clone(), true).await {
        Ok(Fenced::Acquired(t)) => t,
        other => panic!("after H3: {other:?}{}", cluster.logs()),
    };
    assert!(t4.get() > t3, "the Rust holder's {t4} is not above {t3}");
    assert_eq!(
        rust.lock_fenced(key.clone(), false).await,
        Ok(Fenced::Acquired(t4))
    );
    assert_eq!(rust.lock(key, false).await, Ok(LockReply::Acquired));
    eprintln!(
        "fencing tokens: {t1} < {t2} (next holder) < {t3} (after kill -9 of {serving}, \
         granted {moved:?} after the kill) < {t4} (Rust)"
    );
}

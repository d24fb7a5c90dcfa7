//! The BEAM guard (`rust_quorum`) against a late `eq_moved` (review #4).
//!
//! In a graceful handoff the taker T sends `eq_owned` (T→B) before `done`,
//! and the giver G sends `eq_moved` only after `done` (G→B): if the owner
//! releases at T in between, the guard can get T's `eq_released` before
//! G's `eq_moved`. The guard must not then guard the released hold again
//! under T, or T's going down tells (by default: kills) an owner that holds
//! nothing.
//!
//! G and T are two raw Rust nodes of this test, scripted: each runs a
//! stand-in `erl_quorum` that answers the guard's `subscribe` and
//! `keepalive` (so no lease deadline passes during the test) and sends the
//! guard's messages by hand in the bad order. A control owner, moved the
//! same way but not released, must be killed when T goes: the test can
//! fail.

mod common;
mod quorum_support;
mod rust_node;

use erl_quorum::process::{spawn_server, CallReply, Caller, GenServer, Mail, Process};
use erl_quorum::term::{as_tuple, atom, int, is_atom, list, tuple, Term};
use quorum_support::{beval, start_beam};
use std::time::Duration;

/// The `erl_quorum` a guard talks to, reduced to what it asks: every hold
/// valid for 10 s, an empty registry.
struct StandIn;

impl GenServer for StandIn {
    async fn handle_call(&mut self, request: Term, _from: &Caller, _p: &mut Process) -> CallReply {
        if is_atom(&request, "keepalive") {
            return CallReply::Reply(tuple(vec![atom("ok"), int(10_000)]));
        }
        match as_tuple(&request) {
            Some([tag, _]) if is_atom(tag, "subscribe") => {
                CallReply::Reply(tuple(vec![atom("ok"), list(vec![])]))
            }
            _ => CallReply::Reply(tuple(vec![atom("error"), atom("unknown_request")])),
        }
    }
}

/// `{Tag, Node, Owner, lock, Key | Extra}`.
fn notice(tag: &str, node: &str, owner: &Term, key: &str, extra: Option<&str>) -> Term {
    let mut items = vec![
        atom(tag),
        atom(node),
        owner.clone(),
        atom("lock"),
        atom(key),
    ];
    items.extend(extra.map(atom));
    tuple(items)
}

/// The guard's owners of `node`, as printed by the BEAM node.
fn owners_of(b: &common::BeamNode, node: &str) -> String {
    beval(
        b,
        &format!(
            "lists:sort(maps:get({}, maps:get(owners, rust_quorum:status()), []))",
            common::atom(node)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_eq_moved_does_not_revive_a_hold_the_taker_released() {
    let beam = tokio::spawn(start_beam("gho"));
    let giver = rust_node::start("gho_g").await;
    let taker = rust_node::start("gho_t").await;
    spawn_server(&giver, Some("erl_quorum"), StandIn).expect("register");
    spawn_server(&taker, Some("erl_quorum"), StandIn).expect("register");
    let b = beam.await.expect("join");
    let (g, t) = (giver.name().to_owned(), taker.name().to_owned());
    assert_eq!(
        beval(
            &b,
            &format!("eq_services:start_app([{}], 15000)", common::atom(&t))
        ),
        common::atom(&t)
    );

    // Two owners on the BEAM node: `released` lets go of its lock at T,
    // `held` (the control) keeps it. Their pids come to a probe on G.
    let mut probe = giver.spawn_process();
    probe.register("gho_probe").expect("register probe");
    beval(
        &b,
        &format!(
            "Owner = fun(Name) -> P = spawn(fun() -> receive stop -> ok end end), register(Name, P), P end, \
             {{gho_probe, {}}} ! {{owners, Owner(gho_released), Owner(gho_held)}}, ok",
            common::atom(&g)
        ),
    );
    let mail = probe
        .recv_timeout(Duration::from_secs(10))
        .await
        .expect("probe")
        .expect("owners' pids");
    let Mail::Message(message) = mail else {
        panic!("not a message: {mail:?}")
    };
    let [_, released, held] = as_tuple(&message).expect("{owners, R, H}") else {
        panic!("{message:?}")
    };
    let (released, held) = (released.clone(), held.clone());
    let send = |p: &Process, m: Term| p.send(("rust_quorum", b.node_name()), m);

    // G held both; T installed both (its eq_owned precedes `done`), then
    // `released` let go at T.
    for (o, k) in [(&released, "k_released"), (&held, "k_held")] {
        send(&probe, notice("eq_owned", &g, o, k, None));
    }
    let at_t = taker.spawn_process();
    for (o, k) in [(&released, "k_released"), (&held, "k_held")] {
        send(&at_t, notice("eq_owned", &t, o, k, None));
    }
    send(
        &at_t,
        notice("eq_released", &t, &released, "k_released", None),
    );
    let only_held = beval(&b, "[{whereis(gho_held), lock, k_held}]");
    rust_node::wait_until("T's notices at the guard", Duration::from_secs(10), || {
        owners_of(&b, &t) == only_held && owners_of(&b, &g).matches("lock").count() == 2
    })
    .await;

    // G's eq_moved for both, late.
    for (o, k) in [(&released, "k_released"), (&held, "k_held")] {
        send(&probe, notice("eq_moved", &g, o, k, Some(&t)));
    }
    rust_node::wait_until("G's eq_moved at the guard", Duration::from_secs(10), || {
        owners_of(&b, &g) == "[]"
    })
    .await;
    assert_eq!(
        owners_of(&b, &t),
        only_held,
        "a released hold came back under T"
    );

    // T goes: the control is told (killed, the default `on_lost`), the
    // owner that released is not.
    taker.shutdown();
    let alive = "{is_process_alive(whereis(gho_released)), whereis(gho_held)}";
    rust_node::wait_until("T's nodedown at the guard", Duration::from_secs(15), || {
        beval(&b, alive) == "{true,undefined}" || !beval(&b, alive).starts_with("{true")
    })
    .await;
    assert_eq!(beval(&b, alive), "{true,undefined}");
    giver.shutdown();
    drop(b);
}

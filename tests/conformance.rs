//! The conformance matrix's plain and atom cache cells: one test per
//! direction (who opened the connection), run on OTP 25 and again on OTP 27
//! by `scripts/test.sh`. The TLS, rpc, erpc, spawn_request and fragment
//! cells live beside their features (`dist_tls.rs`, `rpc.rs`,
//! `dist_fragments.rs`); the README's matrix names every cell's test.
//!
//! Why both directions: the two sides of a connection run different code
//! (our accept side or our dial side of the handshake, and the flags each
//! side settles on), so a feature is only shown once it works whichever
//! node dialed.

mod common;
mod rust_node;

use common::BeamNode;
use erl_quorum::term::{atom, tuple};
use erl_quorum::Node;
use rust_node::Dialer;
use std::time::Duration;

fn beam(prefix: &str) -> BeamNode {
    common::ensure_epmd().expect("epmd");
    BeamNode::start(&common::unique_name(prefix), rust_node::COOKIE, &[]).expect("start erl")
}

/// A Rust node with an `echo` server, a BEAM node, and one connection
/// between them opened by `dialer`.
async fn connected(prefix: &str, dialer: Dialer) -> (Node, BeamNode) {
    let node = rust_node::start(&format!("rs_{prefix}")).await;
    rust_node::start_echo(&node, "echo");
    let b = beam(&format!("b_{prefix}"));
    rust_node::open_connection(&node, &b, dialer).await;
    (node, b)
}

/// Plain distribution: a ping, calls both ways, a send to a registered Rust
/// process answered to the BEAM pid, and a monitor that carries an exit.
async fn plain(prefix: &str, dialer: Dialer) {
    let (node, b) = connected(prefix, dialer).await;
    let r = common::atom(node.name());
    assert_eq!(b.eval_ok(&format!("net_adm:ping({r})")), "pong");
    assert_eq!(
        b.eval_ok(&format!(
            "gen_server:call({{echo, {r}}}, {{hello, [1,2,3]}})"
        )),
        "{hello,[1,2,3]}"
    );
    assert_eq!(
        b.eval_ok(&format!(
            "{{echo, {r}}} ! {{self(), ping}}, receive {{echo, ping}} -> ok after 5000 -> timeout end"
        )),
        "ok"
    );
    b.eval_ok("eq_peer:start_echo(becho)");
    let mut p = node.spawn_process();
    let answer = p
        .call(("becho", b.node_name()), atom("hi"), Duration::from_secs(5))
        .await;
    assert_eq!(answer, Ok(atom("hi")));
    // A BEAM monitor of a Rust server sees it stop.
    let stop = format!(
        "Ref = erlang:monitor(process, {{echo, {r}}}), \
         stopping = gen_server:call({{echo, {r}}}, {{stop, normal}}), \
         receive {{'DOWN', Ref, process, _, normal}} -> down after 5000 -> timeout end"
    );
    assert_eq!(b.eval_ok(&stop), "down");
    node.shutdown();
}

/// The atom cache both ways: the BEAM's references are read (every term it
/// sends uses them), and ours are read back exactly by the BEAM, over
/// frames that reuse and overwrite cache slots.
async fn atom_cache(prefix: &str, dialer: Dialer) {
    let (node, b) = connected(prefix, dialer).await;
    let r = common::atom(node.name());
    let terms = "Many = [list_to_atom(\"ac\" ++ integer_to_list(I)) || I <- lists:seq(1, 600)], \
         Ts = [{self(), make_ref(), fun erlang:abs/1, 'üñí', node()}, \
               lists:sublist(Many, 300), lists:nthtail(300, Many), {Many, Many}]";
    let roundtrip = format!(
        "{terms}, lists:all(fun(T) -> gen_server:call({{echo, {r}}}, T) =:= T end, Ts ++ Ts ++ Ts)"
    );
    assert_eq!(b.eval_ok(&roundtrip), "true");
    // And from our side: a call to a BEAM echo with atoms it has not seen.
    b.eval_ok("eq_peer:start_echo(becho)");
    let mut p = node.spawn_process();
    let ours = tuple((0..300).map(|i| atom(&format!("rs_atom_{i}"))).collect());
    let answer = p
        .call(
            ("becho", b.node_name()),
            ours.clone(),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(answer, Ok(ours));
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_when_beam_dials() {
    plain("plain_bd", Dialer::Beam).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_when_rust_dials() {
    plain("plain_rd", Dialer::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atom_cache_when_beam_dials() {
    atom_cache("acache_bd", Dialer::Beam).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atom_cache_when_rust_dials() {
    atom_cache("acache_rd", Dialer::Rust).await;
}

//! Fragmented distribution messages (`DFLAG_FRAGMENTS`) against a real
//! BEAM, whichever node dials: a BEAM process sends a 50 MiB binary and a
//! large nested term to a Rust process that echoes them back, so the BEAM's
//! fragments are reassembled by the Rust node and ours by the BEAM, and the
//! content is compared on both sides (the Rust node decodes every byte; the
//! BEAM compares with `=:=`).
//!
//! Meanwhile another BEAM process makes `gen_server:call`s to the same Rust
//! process over the same connection, starting after the large message was
//! sent. With fragments in both directions a call's request passes between
//! the BEAM's fragments and its reply between ours, so calls complete
//! before the large echo is back. Without fragments (either side) every
//! such call waits behind the whole message, there and back, and none
//! completes first: that is what the tests check, functionally, not timed.
//! A short `net_ticktime` on both sides checks that the connection stays
//! up (ticks or traffic every few seconds) during the transfers.

mod common;
mod rust_node;

use common::BeamNode;
use std::time::Duration;

/// Short, so a connection stuck for a few seconds would be dropped.
const TICKTIME_SECS: u64 = 4;

async fn setup(prefix: &str) -> (erl_quorum::Node, BeamNode) {
    common::ensure_epmd().expect("epmd");
    let node = rust_node::start_with(prefix, |c| {
        c.with_ticktime(Duration::from_secs(TICKTIME_SECS))
    })
    .await;
    rust_node::start_echo(&node, "echo");
    let ticktime = TICKTIME_SECS.to_string();
    let args = ["-kernel", "net_ticktime", &ticktime];
    let b = BeamNode::start(&common::unique_name("b_frag"), rust_node::COOKIE, &args)
        .expect("start erl");
    (node, b)
}

/// Sends each large payload to the Rust echo and back; returns, per
/// payload, whether it came back equal and how many concurrent calls
/// completed while it was in flight; and whether the connection stayed up.
fn exchange(b: &BeamNode, rust: &str) -> String {
    let r = common::atom(rust);
    let expr = format!(
        "R = {r}, Echo = {{echo, R}}, Self = self(), \
         pong = net_adm:ping(R), true = erlang:monitor_node(R, true), \
         Big = rand:bytes(50 bsl 20), \
         Nested = [{{I, integer_to_list(I), <<I:32>>, Self, [a, b, {{c, -I}}], #{{I => 1.5}}}} \
                   || I <- lists:seq(1, 200000)], \
         Run = fun(Payload) -> \
             Echo ! {{Self, Payload}}, \
             Caller = spawn_link(fun() -> \
                 Loop = fun L(N) -> \
                     receive stop -> ok \
                     after 0 -> {{small, N}} = gen_server:call(Echo, {{small, N}}, 60000), \
                                Self ! call_done, L(N + 1) \
                     end \
                 end, \
                 Loop(0) end), \
             Count = fun C(N) -> receive call_done -> C(N + 1); \
                                         {{echo, Back}} -> {{Back =:= Payload, N}} \
                                 after 100000 -> {{timeout, N}} end end, \
             Result = Count(0), \
             unlink(Caller), Caller ! stop, \
             Result \
         end, \
         Results = [Run(P) || P <- [Big, Nested, Big]], \
         Up = receive {{nodedown, R}} -> down after 0 -> up end, \
         {{Results, Up}}"
    );
    b.eval_timeout(&expr, Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("exchange failed: {e}"))
}

/// Checks `exchange`'s answer: every payload back equal, at least one call
/// completed during each transfer, and the connection up.
fn check(answer: &str) {
    eprintln!("answer: {answer}");
    let inner = answer
        .strip_prefix("{[")
        .and_then(|s| s.strip_suffix("],up}"))
        .unwrap_or_else(|| panic!("connection dropped or bad answer: {answer}"));
    let pairs: Vec<&str> = inner.split("},{").collect();
    assert_eq!(pairs.len(), 3, "{answer}");
    for pair in pairs {
        let pair = pair.trim_matches(|c| c == '{' || c == '}');
        let (equal, calls) = pair.split_once(',').expect("a pair");
        assert_eq!(equal, "true", "payload not echoed intact: {answer}");
        let calls: u64 = calls.parse().expect("a count");
        assert!(
            calls >= 1,
            "no call completed while a large message was in flight: {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_when_beam_dials() {
    let (node, b) = setup("rs_frag_in").await;
    // The BEAM's ping dials.
    check(&exchange(&b, node.name()));
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_when_rust_dials() {
    let (node, b) = setup("rs_frag_out").await;
    node.connect(b.node_name()).await.expect("connect");
    check(&exchange(&b, node.name()));
    node.shutdown();
}

//! rpc, erpc and spawn_request from real BEAM nodes into the Rust node,
//! and rpc from the Rust node to them. The `*_when_beam_dials` and
//! `*_when_rust_dials` tests are cells of the README's conformance matrix
//! (each runs on OTP 25 and again on OTP 27). Where a BEAM node's answer is
//! the contract (undef, exceptions, exit reasons), the test asks the BEAM
//! node itself the same question and compares.

mod common;
mod rust_node;

use common::BeamNode;
use erl_quorum::process::rpc::{Call, Exception, RpcError};
use erl_quorum::term::{as_int, atom, int, tuple, Term};
use erl_quorum::Node;
use rust_node::Dialer;
use std::time::Duration;

fn beam(prefix: &str) -> BeamNode {
    common::ensure_epmd().expect("epmd");
    BeamNode::start(&common::unique_name(prefix), rust_node::COOKIE, &[]).expect("start erl")
}

/// A Rust node with `calc` functions registered, a BEAM node, and their
/// connection opened by `dialer`.
async fn connected(prefix: &str, dialer: Dialer) -> (Node, BeamNode, String) {
    let node = rust_node::start(&format!("rs_{prefix}")).await;
    register_calc(&node);
    let b = beam(&format!("b_{prefix}"));
    rust_node::open_connection(&node, &b, dialer).await;
    let r = common::atom(node.name());
    (node, b, r)
}

fn register_calc(node: &Node) {
    let f = node.rpc_functions();
    f.register("calc", "add", 2, |c: Call| async move {
        match (as_int(&c.args[0]), as_int(&c.args[1])) {
            (Some(a), Some(b)) => Ok(int(a + b)),
            _ => Err(Exception::badarg()),
        }
    });
    f.register("calc", "fail", 0, |_c: Call| async move {
        Err(Exception::error(atom("oops")))
    });
    f.register("calc", "quit", 0, |_c: Call| async move {
        Err(Exception::Exit(atom("boom")))
    });
    f.register("calc", "toss", 0, |_c: Call| async move {
        Err(Exception::Throw(atom("ball")))
    });
    f.register("calc", "panic", 0, |_c: Call| async move {
        if true {
            panic!("a bug in a Rust function");
        }
        Ok(atom("unreachable"))
    });
    // Sends `{hello, Self}` to the pid it is given: proves casts ran.
    f.register("calc", "notify", 1, |c: Call| async move {
        let Term::Pid(to) = &c.args[0] else {
            return Err(Exception::badarg());
        };
        let p = c.node.spawn_process();
        p.send(to, tuple(vec![atom("hello"), Term::from(c.pid.clone())]));
        Ok(atom("ok"))
    });
}

/// rpc:call/4,5, rpc:cast, rpc:multicall over a BEAM node and the Rust
/// node, and the answers a BEAM node gives for failures.
async fn rpc(prefix: &str, dialer: Dialer) {
    let (node, b, r) = connected(prefix, dialer).await;
    assert_eq!(b.eval_ok(&format!("rpc:call({r}, calc, add, [1, 2])")), "3");
    assert_eq!(
        b.eval_ok(&format!("rpc:call({r}, calc, add, [1, 2], 5000)")),
        "3"
    );
    assert_eq!(
        b.eval_ok(&format!("rpc:call({r}, erlang, node, []) =:= {r}")),
        "true"
    );
    // Unknown function: exactly what a BEAM node answers.
    assert_eq!(
        b.eval_ok(&format!(
            "rpc:call({r}, nomod, nofun, [1]) =:= rpc:call(node(), nomod, nofun, [1])"
        )),
        "true"
    );
    assert_eq!(
        b.eval_ok(&format!("rpc:call({r}, nomod, nofun, [1])")),
        "{badrpc,{'EXIT',{undef,[{nomod,nofun,[1],[]}]}}}"
    );
    // Failing Rust functions are exceptions of their class.
    assert_eq!(
        b.eval_ok(&format!("rpc:call({r}, calc, fail, [])")),
        "{badrpc,{'EXIT',{oops,[{calc,fail,0,[]}]}}}"
    );
    assert_eq!(
        b.eval_ok(&format!("rpc:call({r}, calc, quit, [])")),
        "{badrpc,{'EXIT',boom}}"
    );
    assert_eq!(b.eval_ok(&format!("rpc:call({r}, calc, toss, [])")), "ball");
    assert_eq!(
        b.eval_ok(&format!("rpc:call({r}, calc, add, [a, 2])")),
        "{badrpc,{'EXIT',{badarg,[{calc,add,2,[]}]}}}"
    );
    // A panic is an exception, and the node goes on answering.
    assert_eq!(
        b.eval_ok(&format!(
            "{{badrpc, {{'EXIT', {{{{rust_panic, Msg}}, _}}}}}} = rpc:call({r}, calc, panic, []), Msg"
        )),
        "<<\"a bug in a Rust function\">>"
    );
    assert_eq!(b.eval_ok(&format!("rpc:call({r}, calc, add, [2, 2])")), "4");
    // rpc:cast runs the function.
    assert_eq!(
        b.eval_ok(&format!(
            "true = rpc:cast({r}, calc, notify, [self()]), \
             receive {{hello, P}} when node(P) =:= {r} -> ok after 5000 -> timeout end"
        )),
        "ok"
    );
    // multicall over a BEAM node and the Rust node.
    assert_eq!(
        b.eval_ok(&format!(
            "rpc:multicall([node(), {r}], erlang, node, []) =:= {{[node(), {r}], []}}"
        )),
        "true"
    );
    // rex itself: block_call and sbcast.
    assert_eq!(
        b.eval_ok(&format!("rpc:block_call({r}, calc, add, [20, 22])")),
        "42"
    );
    assert_eq!(
        b.eval_ok(&format!("rpc:sbcast([{r}], no_such_name, hi)")),
        format!("{{[],[{r}]}}")
    );
    node.shutdown();
}

/// erpc:call/4,5 and erpc:multicall, with the exceptions a BEAM node raises.
async fn erpc(prefix: &str, dialer: Dialer) {
    let (node, b, r) = connected(prefix, dialer).await;
    assert_eq!(
        b.eval_ok(&format!("erpc:call({r}, calc, add, [1, 2])")),
        "3"
    );
    assert_eq!(
        b.eval_ok(&format!("erpc:call({r}, calc, add, [1, 2], 5000)")),
        "3"
    );
    // (eq_peer keeps bindings across evaluations: fresh names each time.)
    let n = std::cell::Cell::new(0);
    let catch = |call: &str| {
        n.set(n.get() + 1);
        let i = n.get();
        format!("try {call} of V{i} -> {{value, V{i}}} catch C{i}:E{i} -> {{C{i}, E{i}}} end")
    };
    // undef: the same exception as from a BEAM node.
    assert_eq!(
        b.eval_ok(&format!(
            "{} =:= {}",
            catch(&format!("erpc:call({r}, nomod, nofun, [1])")),
            catch("erpc:call(node(), nomod, nofun, [1])")
        )),
        "true"
    );
    assert_eq!(
        b.eval_ok(&catch(&format!("erpc:call({r}, nomod, nofun, [1])"))),
        "{error,{exception,undef,[{nomod,nofun,[1],[]}]}}"
    );
    assert_eq!(
        b.eval_ok(&catch(&format!("erpc:call({r}, calc, fail, [])"))),
        "{error,{exception,oops,[{calc,fail,0,[]}]}}"
    );
    assert_eq!(
        b.eval_ok(&catch(&format!("erpc:call({r}, calc, quit, [])"))),
        "{exit,{exception,boom}}"
    );
    assert_eq!(
        b.eval_ok(&catch(&format!("erpc:call({r}, calc, toss, [])"))),
        "{throw,ball}"
    );
    assert_eq!(
        b.eval_ok(&catch(&format!("erpc:call({r}, calc, panic, [])"))),
        "{error,{exception,{rust_panic,<<\"a bug in a Rust function\">>},[{calc,panic,0,[]}]}}"
    );
    assert_eq!(
        b.eval_ok(&format!(
            "erpc:multicall([node(), {r}], erlang, node, []) =:= [{{ok, node()}}, {{ok, {r}}}]"
        )),
        "true"
    );
    assert_eq!(
        b.eval_ok(&format!(
            "[{{ok, 3}}, {{error, {{exception, undef, _}}}}] = \
             erpc:multicall([{r}, node()], calc, add, [1, 2]), ok"
        )),
        "ok"
    );
    assert_eq!(
        b.eval_ok(&format!(
            "ok = erpc:cast({r}, calc, notify, [self()]), \
             receive {{hello, P}} when node(P) =:= {r} -> ok after 5000 -> timeout end"
        )),
        "ok"
    );
    node.shutdown();
}

/// A raw erlang:spawn_request/5 with `monitor`, `link` and `{reply, yes}`,
/// of a registered function and of an unknown one (which, as on a BEAM
/// node, spawns and then exits with undef).
async fn spawn_request(prefix: &str, dialer: Dialer) {
    let (node, b, r) = connected(prefix, dialer).await;
    // A fun of its own, so nothing stays bound in eq_peer's environment.
    let spawn = |target: &str, m: &str, f: &str, args: &str| {
        format!(
            "(fun() -> process_flag(trap_exit, true), \
             Ref = erlang:spawn_request({target}, {m}, {f}, {args}, [monitor, link, {{reply, yes}}]), \
             Pid = receive {{spawn_reply, Ref, ok, P}} -> P after 5000 -> no_reply end, \
             Down = receive {{'DOWN', Ref, process, Pid, R1}} -> R1 after 5000 -> no_down end, \
             Exit = receive {{'EXIT', Pid, R2}} -> R2 after 5000 -> no_exit end, \
             {{node(Pid), Down, Exit}} end)()"
        )
    };
    assert_eq!(
        b.eval_ok(&spawn(&r, "calc", "add", "[1, 2]")),
        format!("{{{r},normal,normal}}")
    );
    assert_eq!(
        b.eval_ok(&spawn(&r, "calc", "fail", "[]")),
        format!("{{{r},{{oops,[{{calc,fail,0,[]}}]}},{{oops,[{{calc,fail,0,[]}}]}}}}")
    );
    // Unknown: the same exit reason as a spawn of it on the BEAM node.
    let theirs = b.eval_ok(&spawn("node()", "nomod", "nofun", "[1]"));
    let ours = b.eval_ok(&spawn(&r, "nomod", "nofun", "[1]"));
    assert_eq!(
        ours.replacen(&r, "N", 1),
        theirs.replacen(&b.node_atom(), "N", 1)
    );
    assert!(ours.contains("{undef,[{nomod,nofun,[1],[]}]}"), "{ours}");
    // Without monitor or link, only the reply.
    assert_eq!(
        b.eval_ok(&format!(
            "Ref2 = erlang:spawn_request({r}, calc, add, [1, 2], [{{reply, yes}}]), \
             receive {{spawn_reply, Ref2, ok, P2}} -> node(P2) after 5000 -> no_reply end"
        )),
        r
    );
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_when_beam_dials() {
    rpc("rpc_bd", Dialer::Beam).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_when_rust_dials() {
    rpc("rpc_rd", Dialer::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erpc_when_beam_dials() {
    erpc("erpc_bd", Dialer::Beam).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erpc_when_rust_dials() {
    erpc("erpc_rd", Dialer::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_request_when_beam_dials() {
    spawn_request("spawn_bd", Dialer::Beam).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_request_when_rust_dials() {
    spawn_request("spawn_rd", Dialer::Rust).await;
}

/// The built-in functions, answered as the BIFs answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtins_answer_as_the_bifs_do() {
    let (node, b, r) = connected("builtins", Dialer::Beam).await;
    let me = b.node_atom();
    // The BEAM node is published: visible to us; we are hidden to it.
    assert_eq!(
        b.eval_ok(&format!("rpc:call({r}, erlang, nodes, [])")),
        format!("[{me}]")
    );
    assert_eq!(
        b.eval_ok(&format!(
            "rpc:call({r}, erlang, nodes, [[this, connected]])"
        )),
        format!("[{r},{me}]")
    );
    assert_eq!(
        b.eval_ok(&format!("rpc:call({r}, erlang, nodes, [hidden])")),
        "[]"
    );
    assert_eq!(
        b.eval_ok(&format!(
            "P = rpc:call({r}, erlang, whereis, [rex]), {{node(P), rpc:call({r}, erlang, is_process_alive, [P])}}"
        )),
        format!("{{{r},true}}")
    );
    assert_eq!(
        b.eval_ok(&format!("rpc:call({r}, erlang, whereis, [nobody])")),
        "undefined"
    );
    assert_eq!(
        b.eval_ok(&format!(
            "{{badrpc, {{'EXIT', {{badarg, _}}}}}} = rpc:call({r}, erlang, is_process_alive, [self()]), ok"
        )),
        "ok"
    );
    assert_eq!(
        b.eval_ok(&format!(
            "rpc:call({r}, erlang, system_info, [otp_release])"
        )),
        "\"25\""
    );
    assert_eq!(
        b.eval_ok(&format!(
            "lists:member(rex, rpc:call({r}, erlang, registered, []))"
        )),
        "true"
    );
    node.shutdown();
}

/// `locker:master_dirty_read/1` is `rpc:call(Master, locker, dirty_read,
/// [Key])`: it works against a Rust master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockers_master_dirty_read_reaches_a_rust_master() {
    use erl_quorum::quorum::client::LockerClient;
    use erl_quorum::quorum::service::{self, ServiceConfig};
    let node = rust_node::start("rs_dirty").await;
    service::start(
        &node,
        ServiceConfig {
            fresh_cluster: true,
            ..ServiceConfig::default()
        },
    )
    .expect("locker service");
    let mut client = LockerClient::new(node.spawn_process(), vec![node.name().to_owned()], 1);
    client
        .lock(atom("k"), atom("v"), Duration::from_secs(30))
        .await
        .expect("lock");
    let b = beam("b_dirty");
    let r = common::atom(node.name());
    assert_eq!(
        b.eval_ok(&format!("rpc:call({r}, locker, dirty_read, [k])")),
        "{ok,v}"
    );
    assert_eq!(
        b.eval_ok(&format!("rpc:call({r}, locker, dirty_read, [nokey])")),
        "{error,not_found}"
    );
    assert_eq!(
        b.eval_ok(&format!(
            "{{ok, _, [{{k, v, _}}], _, _, _}} = rpc:call({r}, locker, get_debug_state, []), ok"
        )),
        "ok"
    );
    // And the Rust client's dirty read takes the same road.
    assert_eq!(
        client.dirty_read(node.name(), atom("k")).await,
        Ok(Some(atom("v")))
    );
    node.shutdown();
}

/// rpc from Rust to a BEAM node: the value, `badrpc` as a typed error, and
/// a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_calls_beam_functions_with_rpc_semantics() {
    let node = rust_node::start("rs_rpcout").await;
    let b = beam("b_rpcout");
    let t = Duration::from_secs(5);
    assert_eq!(
        node.rpc(b.node_name(), "erlang", "node", vec![], t).await,
        Ok(atom(b.node_name()))
    );
    assert_eq!(
        node.rpc(
            b.node_name(),
            "lists",
            "sum",
            vec![erl_quorum::term::list(vec![int(1), int(2)])],
            t
        )
        .await,
        Ok(int(3))
    );
    match node
        .rpc(b.node_name(), "nomod", "nofun", vec![int(1)], t)
        .await
    {
        Err(RpcError::BadRpc(reason)) => {
            let text = reason.to_string();
            assert!(text.contains("undef") && text.contains("nomod"), "{text}");
        }
        other => panic!("expected badrpc undef, got {other:?}"),
    }
    assert_eq!(
        node.rpc(
            b.node_name(),
            "timer",
            "sleep",
            vec![int(3000)],
            Duration::from_millis(300)
        )
        .await,
        Err(RpcError::Timeout)
    );
    assert_eq!(
        node.rpc("nobody_here@127.0.0.1", "erlang", "node", vec![], t)
            .await,
        Err(RpcError::BadRpc(atom("nodedown")))
    );
    node.shutdown();
}

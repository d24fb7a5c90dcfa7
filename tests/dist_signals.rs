//! Monitors, links and exit signals between BEAM and Rust processes, and
//! what a dead node does to them.

mod common;
mod rust_node;

use common::BeamNode;
use erl_quorum::process::{CallError, Mail, ProcessError};
use erl_quorum::term::{atom, tuple, Pid, Term};
use std::time::{Duration, Instant};

fn beam(prefix: &str) -> BeamNode {
    common::ensure_epmd().expect("epmd");
    BeamNode::start(&common::unique_name(prefix), rust_node::COOKIE, &[]).expect("start erl")
}

fn shutdown_x() -> Term {
    tuple(vec![atom("shutdown"), atom("x")])
}

/// Gets a BEAM process's pid into Rust: the expression must evaluate to a pid.
async fn beam_pid(b: &BeamNode, node: &erl_quorum::Node, expr: &str) -> Pid {
    let mut inbox = node.spawn_process();
    let name = format!("inbox_{}", inbox.pid().id);
    inbox.register(&name).unwrap();
    b.eval_ok(&format!(
        "{{{name}, {}}} ! {{pid, {expr}}}",
        common::atom(node.name())
    ));
    let msg = rust_node::next_message(&mut inbox).await;
    match erl_quorum::term::as_tuple(&msg) {
        Some([_, Term::Pid(p)]) => p.clone(),
        _ => panic!("expected {{pid, Pid}}, got {msg:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beam_monitors_rust_processes() {
    let node = rust_node::start("rs_mon").await;
    let b = beam("b_mon");
    let r = common::atom(node.name());

    // By name: DOWN names {Name, Node} and carries the exit reason.
    let watched = node.spawn_process();
    watched.register("watched").unwrap();
    // monitor/2 is asynchronous: the ping's round trip makes sure it has
    // arrived before the process exits (otherwise noproc is correct).
    b.eval_ok(&format!(
        "Ref1 = erlang:monitor(process, {{watched, {r}}}), pong = net_adm:ping({r})"
    ));
    watched.exit(shutdown_x());
    assert_eq!(
        b.eval_ok("receive {'DOWN', Ref1, process, O1, W1} -> {O1, W1} after 5000 -> timeout end"),
        format!("{{{{watched,{r}}},{{shutdown,x}}}}")
    );

    // By pid.
    let p = node.spawn_process();
    p.send(
        ("eq_peer", b.node_name()),
        tuple(vec![atom("pid"), p.pid().clone().into()]),
    );
    b.eval_ok(&format!("{{pid, P}} = eq_peer:recv(5000), Ref2 = erlang:monitor(process, P), pong = net_adm:ping({r})"));
    p.exit(atom("boom"));
    assert_eq!(
        b.eval_ok("receive {'DOWN', Ref2, process, P, W2} -> W2 after 5000 -> timeout end"),
        "boom"
    );

    // An unknown name is noproc at once; so is a dead pid.
    let t = Instant::now();
    assert_eq!(
        b.eval_ok(&format!("R3 = erlang:monitor(process, {{nosuch, {r}}}), receive {{'DOWN', R3, _, _, W3}} -> W3 after 5000 -> timeout end")),
        "noproc"
    );
    assert_eq!(
        b.eval_ok("R4 = erlang:monitor(process, P), receive {'DOWN', R4, _, _, W4} -> W4 after 5000 -> timeout end"),
        "noproc"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_monitors_beam_processes() {
    let node = rust_node::start("rs_mon2").await;
    let b = beam("b_mon2");
    b.eval_ok("register(victim, spawn(fun() -> receive {die, Why} -> exit(Why) end end))");
    let mut p = node.spawn_process();
    let by_name = p.monitor(("victim", b.node_name()));
    let victim = beam_pid(&b, &node, "whereis(victim)").await;
    let by_pid = p.monitor(&victim);
    p.send(&victim, tuple(vec![atom("die"), atom("boom")]));
    for _ in 0..2 {
        match p.recv_timeout(Duration::from_secs(5)).await.unwrap() {
            Some(Mail::Down {
                reference,
                object,
                reason,
            }) => {
                assert_eq!(reason, atom("boom"));
                if reference == by_name {
                    assert_eq!(object, tuple(vec![atom("victim"), atom(b.node_name())]));
                } else {
                    assert_eq!(reference, by_pid);
                    assert_eq!(object, Term::from(victim.clone()));
                }
            }
            other => panic!("expected DOWN, got {other:?}"),
        }
    }
    let unknown = p.monitor(("nosuch", b.node_name()));
    match p.recv_timeout(Duration::from_secs(2)).await.unwrap() {
        Some(Mail::Down {
            reference, reason, ..
        }) => {
            assert_eq!(reference, unknown);
            assert_eq!(reason, atom("noproc"));
        }
        other => panic!("expected DOWN noproc, got {other:?}"),
    }
    // A demonitored process's death sends nothing.
    b.eval_ok("register(v2, spawn(fun() -> receive {die, Why} -> exit(Why) end end))");
    let r = p.monitor(("v2", b.node_name()));
    p.demonitor(&r);
    p.send(
        ("v2", b.node_name()),
        tuple(vec![atom("die"), atom("quiet")]),
    );
    assert_eq!(p.recv_timeout(Duration::from_millis(300)).await, Ok(None));
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_in_both_directions() {
    let node = rust_node::start("rs_link").await;
    let b = beam("b_link");

    // BEAM links to a Rust process and traps its exit.
    let p = node.spawn_process();
    p.send(
        ("eq_peer", b.node_name()),
        tuple(vec![atom("pid"), p.pid().clone().into()]),
    );
    b.eval_ok("process_flag(trap_exit, true), {pid, P} = eq_peer:recv(5000), link(P)");
    // link/1 is asynchronous; a round trip makes sure it has arrived.
    b.eval_ok(&format!(
        "pong = net_adm:ping({})",
        common::atom(node.name())
    ));
    p.exit(shutdown_x());
    assert_eq!(
        b.eval_ok("receive {'EXIT', P, W} -> W after 5000 -> timeout end"),
        "{shutdown,x}"
    );

    // A BEAM process that does not trap exits dies with the Rust process.
    let q = node.spawn_process();
    q.send(
        ("eq_peer", b.node_name()),
        tuple(vec![atom("pid"), q.pid().clone().into()]),
    );
    b.eval_ok("{pid, Q} = eq_peer:recv(5000), V = spawn(fun() -> link(Q), receive after infinity -> ok end end), M = monitor(process, V)");
    b.eval_ok(&format!(
        "pong = net_adm:ping({}), timer:sleep(100)",
        common::atom(node.name())
    ));
    q.exit(atom("boom"));
    assert_eq!(
        b.eval_ok("receive {'DOWN', M, _, _, WV} -> WV after 5000 -> timeout end"),
        "boom"
    );

    // Unlink (UNLINK_ID, acknowledged): no exit signal afterwards.
    let u = node.spawn_process();
    u.send(
        ("eq_peer", b.node_name()),
        tuple(vec![atom("pid"), u.pid().clone().into()]),
    );
    b.eval_ok("{pid, U} = eq_peer:recv(5000), link(U), unlink(U)");
    b.eval_ok(&format!(
        "pong = net_adm:ping({})",
        common::atom(node.name())
    ));
    u.exit(atom("boom"));
    assert_eq!(
        b.eval_ok("receive {'EXIT', U, _} -> got_exit after 500 -> none end"),
        "none"
    );

    // Rust links to BEAM processes: trapped, then not trapped.
    let mut t = node.spawn_process();
    t.trap_exit(true);
    let v = beam_pid(
        &b,
        &node,
        "spawn(fun() -> receive {die, Why} -> exit(Why) end end)",
    )
    .await;
    t.link(&v);
    t.send(&v, tuple(vec![atom("die"), atom("boom")]));
    match t.recv_timeout(Duration::from_secs(5)).await.unwrap() {
        Some(Mail::Exit { from, reason }) => {
            assert_eq!(from, v);
            assert_eq!(reason, atom("boom"));
        }
        other => panic!("expected a trapped EXIT, got {other:?}"),
    }
    let mut n = node.spawn_process();
    let watcher_ref = t.monitor(n.pid());
    let v2 = beam_pid(
        &b,
        &node,
        "spawn(fun() -> receive {die, Why} -> exit(Why) end end)",
    )
    .await;
    n.link(&v2);
    n.send(&v2, tuple(vec![atom("die"), atom("boom2")]));
    assert_eq!(
        n.recv_timeout(Duration::from_secs(5)).await,
        Err(ProcessError::Exited(atom("boom2")))
    );
    // Its death propagates to its own watchers with the same reason.
    match t.recv_timeout(Duration::from_secs(5)).await.unwrap() {
        Some(Mail::Down {
            reference, reason, ..
        }) => {
            assert_eq!(reference, watcher_ref);
            assert_eq!(reason, atom("boom2"));
        }
        other => panic!("expected DOWN, got {other:?}"),
    }
    // Linking to a dead BEAM pid gives noproc.
    t.link(&v);
    match t.recv_timeout(Duration::from_secs(5)).await.unwrap() {
        Some(Mail::Exit { reason, .. }) => assert_eq!(reason, atom("noproc")),
        other => panic!("expected EXIT noproc, got {other:?}"),
    }
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beam_exit_signals_reach_rust_processes() {
    let node = rust_node::start("rs_exit2").await;
    let b = beam("b_exit2");
    let mut p = node.spawn_process();
    p.trap_exit(true);
    p.send(
        ("eq_peer", b.node_name()),
        tuple(vec![atom("pid"), p.pid().clone().into()]),
    );
    b.eval_ok("{pid, P} = eq_peer:recv(5000), exit(P, please)");
    match p.recv_timeout(Duration::from_secs(5)).await.unwrap() {
        Some(Mail::Exit { reason, .. }) => assert_eq!(reason, atom("please")),
        other => panic!("expected trapped exit, got {other:?}"),
    }
    b.eval_ok("exit(P, kill)");
    assert_eq!(
        p.recv_timeout(Duration::from_secs(5)).await,
        Err(ProcessError::Exited(atom("killed")))
    );
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_gives_noconnection() {
    let node = rust_node::start("rs_kill").await;
    let mut b = beam("b_kill");
    b.eval_ok("register(blackhole, spawn(fun() -> receive never -> ok end end))");
    let v = beam_pid(&b, &node, "whereis(blackhole)").await;
    let mut watcher = node.spawn_process();
    watcher.trap_exit(true);
    let mref = watcher.monitor(&v);
    watcher.link(&v);
    watcher.monitor_node(b.node_name());
    let mut caller = node.spawn_process();
    let bname = b.node_name().to_owned();
    let call = tokio::spawn(async move {
        caller
            .call(
                ("blackhole", bname.as_str()),
                atom("x"),
                Duration::from_secs(30),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.kill9();
    let mut seen_down = false;
    let mut seen_exit = false;
    let mut seen_nodedown = false;
    while !(seen_down && seen_exit && seen_nodedown) {
        match watcher.recv_timeout(Duration::from_secs(10)).await.unwrap() {
            Some(Mail::Down {
                reference, reason, ..
            }) => {
                assert_eq!(reference, mref);
                assert_eq!(reason, atom("noconnection"));
                seen_down = true;
            }
            Some(Mail::Exit { from, reason }) => {
                assert_eq!(from, v);
                assert_eq!(reason, atom("noconnection"));
                seen_exit = true;
            }
            Some(Mail::NodeDown { node }) => {
                assert_eq!(node, b.node_name());
                seen_nodedown = true;
            }
            other => panic!("expected DOWN, EXIT and nodedown, got {other:?}"),
        }
    }
    assert_eq!(call.await.unwrap(), Err(CallError::NoConnection));
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beam_sees_noconnection_when_the_rust_node_goes_away() {
    let node = rust_node::start("rs_gone").await;
    let b = beam("b_gone");
    let r = common::atom(node.name());
    let watched = node.spawn_process();
    watched.register("watched").unwrap();
    b.eval_ok(&format!(
        "process_flag(trap_exit, true), Ref = erlang:monitor(process, {{watched, {r}}}), pong = net_adm:ping({r})"
    ));
    watched.send(
        ("eq_peer", b.node_name()),
        tuple(vec![atom("pid"), watched.pid().clone().into()]),
    );
    b.eval_ok("{pid, W} = eq_peer:recv(5000), link(W)");
    b.eval_ok(&format!("pong = net_adm:ping({r})"));
    node.shutdown();
    assert_eq!(
        b.eval_ok("receive {'DOWN', Ref, process, _, Why1} -> Why1 after 5000 -> timeout end"),
        "noconnection"
    );
    assert_eq!(
        b.eval_ok("receive {'EXIT', W, Why2} -> Why2 after 5000 -> timeout end"),
        "noconnection"
    );
    drop(watched);
}

//! Messages and gen_server calls between real BEAM nodes and a Rust node.

mod common;
mod rust_node;

use common::BeamNode;
use erl_quorum::process::{CallError, Mail};
use erl_quorum::term::{atom, int, tuple, Term};
use std::time::{Duration, Instant};

fn beam(prefix: &str) -> BeamNode {
    common::ensure_epmd().expect("epmd");
    BeamNode::start(&common::unique_name(prefix), rust_node::COOKIE, &[]).expect("start erl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beam_calls_rust_sequentially_and_concurrently() {
    let node = rust_node::start("rs_calls").await;
    rust_node::start_echo(&node, "echo");
    let b = beam("b_calls");
    let r = common::atom(node.name());
    let seq = format!(
        "lists:all(fun(I) -> gen_server:call({{echo, {r}}}, I) =:= I end, lists:seq(1, 1000))"
    );
    assert_eq!(b.eval_ok(&seq), "true");
    let concurrent = format!(
        "Self = self(), \
         [spawn(fun() -> Self ! {{done, lists:all(fun(I) -> gen_server:call({{echo, {r}}}, {{N, I}}) =:= {{N, I}} end, lists:seq(1, 20))}} end) \
          || N <- lists:seq(1, 50)], \
         lists:all(fun(_) -> receive {{done, X}} -> X after 20000 -> false end end, lists:seq(1, 50))"
    );
    assert_eq!(b.eval_ok(&concurrent), "true");
    // Terms the crates get wrong if used naively: negative small ints in lists,
    // strings, big integers, floats, maps, binaries, improper lists, refs, pids.
    let tricky =
        "[[-1,2,3], \"abc\", [], 1 bsl 70, -(1 bsl 70), 3.14159265358979, #{a => [1,-2]}, \
                  <<1,2,3>>, <<1:3>>, [a|b], make_ref(), self(), {[], {}}, 'üñí', <<\"ü\"/utf8>>]";
    let roundtrip = format!("T = {tricky}, gen_server:call({{echo, {r}}}, T) =:= T");
    assert_eq!(b.eval_ok(&roundtrip), "true");
    node.shutdown();
}

/// What we send goes out with atom cache references (src/dist/atom_cache/
/// writer.rs); the BEAM must read back exactly what it sent, for atoms in
/// every position: node names of pids and refs, an export's module and
/// function, a fun's module (left plain),
/// a 400-byte atom (left plain), more distinct atoms than one header can
/// list, and repeats, over frames that reuse and overwrite cache slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_with_atom_cache_references_read_back_exactly() {
    let node = rust_node::start("rs_atoms").await;
    rust_node::start_echo(&node, "echo");
    let b = beam("b_atoms");
    let r = common::atom(node.name());
    let terms = "Y = 7, Long = list_to_atom(lists:duplicate(200, 16#e9)), \
         Many = [list_to_atom(\"a\" ++ integer_to_list(I)) || I <- lists:seq(1, 300)], \
         Other = [list_to_atom(\"z\" ++ integer_to_list(I)) || I <- lists:seq(1, 3000)], \
         Ts = [{self(), make_ref(), fun(X) -> X + Y end, fun erlang:abs/1, Long, 'üñí', '', true}, \
               Many, {Many, Many}, lists:sublist(Other, 1000), lists:nthtail(1000, Other), \
               {node(), [node() || _ <- lists:seq(1, 10)], #{node() => self()}}]";
    let roundtrip = format!(
        "{terms}, lists:all(fun(T) -> gen_server:call({{echo, {r}}}, T) =:= T end, Ts ++ Ts ++ Ts)"
    );
    // (A frame the BEAM could not read would close the connection, and
    // the call would exit with noconnection instead.)
    assert_eq!(b.eval_ok(&roundtrip), "true");
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_calls_beam_with_replies_and_typed_errors() {
    let node = rust_node::start("rs_callout").await;
    let b = beam("b_callout");
    b.eval_ok("eq_peer:start_echo(becho)");
    b.eval_ok("register(blackhole, spawn(fun() -> receive never -> ok end end))");
    let target = ("becho", b.node_name());
    let mut p = node.spawn_process();
    for i in 0..1000 {
        let reply = p
            .call(target, int(i), Duration::from_secs(5))
            .await
            .expect("call");
        assert_eq!(reply, int(i));
    }
    let mut tasks = Vec::new();
    for n in 0..50 {
        let node = node.clone();
        let bname = b.node_name().to_owned();
        tasks.push(tokio::spawn(async move {
            let mut p = node.spawn_process();
            for i in 0..20 {
                let req = tuple(vec![int(n), int(i)]);
                let reply = p
                    .call(
                        ("becho", bname.as_str()),
                        req.clone(),
                        Duration::from_secs(10),
                    )
                    .await;
                assert_eq!(reply, Ok(req));
            }
        }));
    }
    for t in tasks {
        t.await.expect("caller task");
    }
    let started = Instant::now();
    let err = p
        .call(("nosuch", b.node_name()), atom("x"), Duration::from_secs(5))
        .await;
    assert_eq!(err, Err(CallError::NoProc));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "noproc must come at once"
    );
    let err = p
        .call(
            ("blackhole", b.node_name()),
            atom("x"),
            Duration::from_millis(300),
        )
        .await;
    assert_eq!(err, Err(CallError::Timeout));
    // The process still works after a timeout, and no stray reply or DOWN is left.
    assert_eq!(
        p.call(target, atom("again"), Duration::from_secs(5)).await,
        Ok(atom("again"))
    );
    assert_eq!(p.recv_timeout(Duration::from_millis(100)).await, Ok(None));
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn casts_multi_calls_and_stop() {
    let node = rust_node::start("rs_cast").await;
    rust_node::start_echo(&node, "echo");
    let b = beam("b_cast");
    let r = common::atom(node.name());
    assert_eq!(
        b.eval_ok(&format!(
            "gen_server:cast({{echo, {r}}}, {{self(), c1}}), eq_peer:recv(5000)"
        )),
        "{cast,c1}"
    );
    assert_eq!(
        b.eval_ok(&format!("gen_server:multi_call([{r}], echo, hi)")),
        format!("{{[{{{r},hi}}],[]}}")
    );
    assert_eq!(
        b.eval_ok(&format!("gen_server:call({{echo, {r}}}, {{stop, normal}})")),
        "stopping"
    );
    rust_node::wait_until("echo to stop", Duration::from_secs(5), || {
        node.whereis("echo").is_none()
    })
    .await;
    rust_node::start_echo(&node, "echo");
    assert_eq!(b.eval_ok(&format!("gen_server:stop({{echo, {r}}})")), "ok");
    assert_eq!(node.whereis("echo"), None);
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_by_name_pid_and_alias() {
    let node = rust_node::start("rs_send").await;
    rust_node::start_echo(&node, "echo");
    let b = beam("b_send");
    let r = common::atom(node.name());
    assert_eq!(
        b.eval_ok(&format!(
            "{{echo, {r}}} ! {{self(), x}}, eq_peer:recv(5000)"
        )),
        "{echo,x}"
    );

    // Rust to a registered BEAM name.
    b.eval_ok("eq_peer:start_sink(sink)");
    let mut inbox = node.spawn_process();
    inbox.register("inbox").unwrap();
    inbox.send(("sink", b.node_name()), tuple(vec![atom("hello"), int(-7)]));
    b.eval_ok("eq_peer:wait_until(fun() -> eq_peer:sink_messages(sink) =/= [] end, 5000)");
    assert_eq!(b.eval_ok("eq_peer:sink_messages(sink)"), "[{hello,-7}]");

    // Rust to a BEAM pid it learned from a message.
    b.eval_ok(&format!("{{inbox, {r}}} ! {{from, self()}}"));
    let from = rust_node::next_message(&mut inbox).await;
    let Some([_, Term::Pid(beam_pid)]) = erl_quorum::term::as_tuple(&from) else {
        panic!("unexpected {from:?}")
    };
    inbox.send(beam_pid, atom("to_pid"));
    assert_eq!(b.eval_ok("eq_peer:recv(5000)"), "to_pid");

    // BEAM to a Rust alias, and nothing once it is gone.
    let alias = inbox.alias();
    inbox.send(beam_pid, tuple(vec![atom("alias"), alias.clone().into()]));
    b.eval_ok("{alias, A} = eq_peer:recv(5000), A ! via_alias");
    assert_eq!(rust_node::next_message(&mut inbox).await, atom("via_alias"));
    inbox.unalias(&alias);
    b.eval_ok("A ! after_unalias");
    assert_eq!(
        inbox.recv_timeout(Duration::from_millis(300)).await,
        Ok(None)
    );
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_on_next_send_after_a_drop() {
    let node = rust_node::start("rs_reconn").await;
    let b = beam("b_reconn");
    b.eval_ok("eq_peer:start_sink(sink)");
    let p = node.spawn_process();
    p.send(("sink", b.node_name()), atom("one"));
    b.eval_ok("eq_peer:wait_until(fun() -> length(eq_peer:sink_messages(sink)) =:= 1 end, 5000)");
    b.eval_ok(&format!(
        "erlang:disconnect_node({})",
        common::atom(node.name())
    ));
    let bname = b.node_name().to_owned();
    rust_node::wait_until("the drop to be seen", Duration::from_secs(5), || {
        !node.connected_nodes().contains(&bname)
    })
    .await;
    p.send(("sink", b.node_name()), atom("two"));
    b.eval_ok("eq_peer:wait_until(fun() -> length(eq_peer:sink_messages(sink)) =:= 2 end, 5000)");
    assert_eq!(b.eval_ok("eq_peer:sink_messages(sink)"), "[one,two]");
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_processes_talk_locally() {
    let node = rust_node::start("rs_local").await;
    rust_node::start_echo(&node, "echo");
    let mut p = node.spawn_process();
    let r = p.call("echo", atom("local"), Duration::from_secs(1)).await;
    assert_eq!(r, Ok(atom("local")));
    let via_node_name = p
        .call(("echo", node.name()), int(5), Duration::from_secs(1))
        .await;
    assert_eq!(via_node_name, Ok(int(5)));
    assert_eq!(
        p.call("nosuch", atom("x"), Duration::from_secs(1)).await,
        Err(CallError::NoProc)
    );
    p.send(p.pid().clone(), atom("self"));
    assert!(matches!(p.recv().await, Ok(Mail::Message(t)) if t == atom("self")));
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_multi_calls_many_nodes_at_once() {
    let node = rust_node::start("rs_multi").await;
    rust_node::start_echo(&node, "becho");
    let b1 = beam("b_multi1");
    let b2 = beam("b_multi2");
    b1.eval_ok("eq_peer:start_echo(becho)");
    let mut p = node.spawn_process();
    let nodes = [
        b1.node_name(),
        b2.node_name(),
        node.name(),
        "nobody_here@127.0.0.1",
    ];
    let started = Instant::now();
    let results = p
        .multi_call(&nodes, "becho", atom("hi"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        results,
        vec![
            Ok(atom("hi")),
            Err(CallError::NoProc),
            Ok(atom("hi")),
            Err(CallError::NoConnection)
        ]
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "no answer waits for the timeout"
    );
    node.shutdown();
}

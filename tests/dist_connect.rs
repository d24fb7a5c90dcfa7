//! Connections between a Rust node and real BEAM nodes: EPMD, both
//! directions, hidden visibility, cookies, ticks, and hostile peers.

mod common;
mod rust_node;

use common::BeamNode;
use erl_quorum::term::{atom, tuple};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn beam(prefix: &str) -> BeamNode {
    beam_with(prefix, rust_node::COOKIE, &[])
}

fn beam_with(prefix: &str, cookie: &str, args: &[&str]) -> BeamNode {
    common::ensure_epmd().expect("epmd");
    BeamNode::start(&common::unique_name(prefix), cookie, args).expect("start erl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beam_pings_rust_and_sees_a_hidden_node() {
    let node = rust_node::start("rs_ping").await;
    let b = beam("b_ping");
    let r = common::atom(node.name());
    assert_eq!(b.eval_ok(&format!("net_adm:ping({r})")), "pong");
    assert_eq!(b.eval_ok(&format!("lists:member({r}, nodes())")), "false");
    assert_eq!(
        b.eval_ok(&format!("lists:member({r}, nodes(hidden))")),
        "true"
    );
    assert!(node.connected_nodes().contains(&b.node_name().to_owned()));
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_connects_out_and_pings() {
    let node = rust_node::start("rs_out").await;
    let b = beam("b_out");
    node.connect(b.node_name()).await.expect("connect");
    let r = common::atom(node.name());
    assert_eq!(
        b.eval_ok(&format!("lists:member({r}, nodes(hidden))")),
        "true"
    );
    assert_eq!(b.eval_ok(&format!("lists:member({r}, nodes())")), "false");
    let mut p = node.spawn_process();
    let auth = tuple(vec![atom("is_auth"), atom(node.name())]);
    let answer = p
        .call(("net_kernel", b.node_name()), auth, Duration::from_secs(5))
        .await;
    assert_eq!(answer, Ok(atom("yes")));
    // A name nobody has in EPMD fails cleanly.
    assert!(node.connect("nobody_here@127.0.0.1").await.is_err());
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_names_work() {
    let short = erl_quorum::node::full_node_name(&common::unique_name("rs_short"), false).unwrap();
    let node = erl_quorum::Node::start(erl_quorum::NodeConfig::new(short, rust_node::COOKIE))
        .await
        .unwrap();
    common::ensure_epmd().unwrap();
    let b = BeamNode::start_sname(&common::unique_name("b_short"), rust_node::COOKIE, &[]).unwrap();
    assert_eq!(
        b.eval_ok(&format!("net_adm:ping({})", common::atom(node.name()))),
        "pong"
    );
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cookies_are_rejected_both_ways() {
    let node = rust_node::start("rs_cookie").await;
    let bad = beam_with("b_badcookie", "not_the_cookie", &[]);
    let r = common::atom(node.name());
    assert_eq!(bad.eval_ok(&format!("net_adm:ping({r})")), "pang");
    assert!(node.connect(bad.node_name()).await.is_err());
    assert!(!node.connected_nodes().contains(&bad.node_name().to_owned()));
    // Everyone else is still served.
    let good = beam("b_goodcookie");
    assert_eq!(good.eval_ok(&format!("net_adm:ping({r})")), "pong");
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_keep_a_link_up_and_a_stopped_peer_is_dropped() {
    let node = rust_node::start_with("rs_tick", |c| c.with_ticktime(Duration::from_secs(4))).await;
    let b = beam_with(
        "b_tick",
        rust_node::COOKIE,
        &["-kernel", "net_ticktime", "4"],
    );
    let r = common::atom(node.name());
    assert_eq!(b.eval_ok(&format!("net_adm:ping({r})")), "pong");
    // Longer than net_ticktime with no traffic: ticks must keep both sides up.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(node.connected_nodes().contains(&b.node_name().to_owned()));
    assert_eq!(
        b.eval_ok(&format!("lists:member({r}, nodes(hidden))")),
        "true"
    );
    b.sigstop();
    let stopped = Instant::now();
    let bname = b.node_name().to_owned();
    rust_node::wait_until(
        "the stopped peer to be dropped",
        Duration::from_secs(15),
        || !node.connected_nodes().contains(&bname),
    )
    .await;
    let took = stopped.elapsed();
    b.sigcont();
    assert!(
        took >= Duration::from_secs(2),
        "dropped too early: {took:?}"
    );
    assert!(took <= Duration::from_secs(9), "dropped too late: {took:?}");
    node.shutdown();
}

/// Reads until the peer closes; panics if it is still open after 10 s.
fn assert_closed_by_peer(mut stream: TcpStream, what: &str) {
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("{what}: connection not closed: {e}"),
        }
        assert!(Instant::now() < deadline, "{what}: connection not closed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_lose_only_their_own_connection() {
    let node = rust_node::start_with("rs_hostile", |mut c| {
        c.max_frame_bytes = 1 << 20;
        c.handshake_timeout = Duration::from_secs(2);
        c
    })
    .await;
    rust_node::start_echo(&node, "echo");
    let b = beam("b_bystander");
    let r = common::atom(node.name());
    let check = format!(
        "lists:all(fun(I) -> gen_server:call({{echo, {r}}}, I) =:= I end, lists:seq(1, 100))"
    );
    assert_eq!(b.eval_ok(&check), "true");
    let node2 = node.clone();
    let hostile = tokio::task::spawn_blocking(move || {
        // Garbage after a good handshake.
        let mut s = rust_node::raw_connect(&node2, "evil1@127.0.0.1");
        s.write_all(&[0, 0, 0, 5, 112, 1, 2, 3, 4]).unwrap();
        assert_closed_by_peer(s, "garbage frame");
        // An oversized frame: the length alone is enough to refuse it.
        let mut s = rust_node::raw_connect(&node2, "evil2@127.0.0.1");
        s.write_all(&(64u32 << 20).to_be_bytes()).unwrap();
        assert_closed_by_peer(s, "oversized frame");
        // A term nested far too deep, and a list claiming 4 G elements.
        let mut s = rust_node::raw_connect(&node2, "evil3@127.0.0.1");
        let mut body = vec![112, 131];
        body.extend(std::iter::repeat_n([104u8, 1], 100_000).flatten());
        body.push(106);
        s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
        s.write_all(&body).unwrap();
        assert_closed_by_peer(s, "deep term");
        let mut s = rust_node::raw_connect(&node2, "evil4@127.0.0.1");
        s.write_all(&[0, 0, 0, 8, 112, 131, 108, 255, 255, 255, 255, 106])
            .unwrap();
        assert_closed_by_peer(s, "huge list count");
        // A truncated handshake is dropped after the handshake timeout.
        let mut s = TcpStream::connect(("127.0.0.1", node2.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&[0, 20, b'N', 0, 0]).unwrap();
        assert_closed_by_peer(s, "truncated handshake");
        // Random bytes instead of a handshake.
        let mut s = TcpStream::connect(("127.0.0.1", node2.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_closed_by_peer(s, "http request");
    });
    // The bystander keeps being served while all that happens.
    assert_eq!(b.eval_ok(&check), "true");
    hostile.await.expect("hostile peers");
    assert_eq!(b.eval_ok(&check), "true");
    assert!(node
        .connected_nodes()
        .iter()
        .all(|n| !n.starts_with("evil")));
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_replaces_its_stale_connection_only_with_the_cookie() {
    let node = rust_node::start("rs_alive").await;
    let name = format!("{}@127.0.0.1", common::unique_name("dup"));
    let node2 = node.clone();
    let name2 = name.clone();
    tokio::task::spawn_blocking(move || {
        let first = rust_node::raw_connect(&node2, &name2);
        rust_node::wait_connected(&node2, &name2);
        // Someone claiming the same name without the cookie changes nothing.
        assert!(rust_node::raw_connect_with(&node2, &name2, "wrong").is_err());
        assert!(node2.connected_nodes().contains(&name2));
        // The same name with the cookie (a restarted node): `alive`, then the
        // old connection is dropped and the new one kept.
        let second = rust_node::raw_connect(&node2, &name2);
        assert_closed_by_peer(first, "stale connection");
        rust_node::wait_connected(&node2, &name2);
        drop(second);
    })
    .await
    .unwrap();
    rust_node::wait_until(
        "the second connection to close",
        Duration::from_secs(5),
        || !node.connected_nodes().contains(&name),
    )
    .await;
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_connects_settle_on_one_connection() {
    let node = rust_node::start("rs_simul").await;
    let b = std::sync::Arc::new(beam("b_simul"));
    b.eval_ok("eq_peer:start_sink(sink)");
    let r = common::atom(node.name());
    for round in 0..5 {
        let beam_side = {
            let b = b.clone();
            let r = r.clone();
            tokio::task::spawn_blocking(move || b.eval_ok(&format!("net_kernel:connect_node({r})")))
        };
        let rust_side = node.connect(b.node_name());
        let (beam_result, rust_result) = tokio::join!(beam_side, rust_side);
        assert_eq!(beam_result.unwrap(), "true", "round {round}");
        rust_result.unwrap_or_else(|e| panic!("round {round}: {e}"));
        // Whichever connection won, traffic flows both ways over it.
        assert_eq!(b.eval_ok(&format!("net_adm:ping({r})")), "pong");
        let p = node.spawn_process();
        p.send(("sink", b.node_name()), erl_quorum::term::int(round));
        b.eval_ok(&format!(
            "eq_peer:wait_until(fun() -> length(eq_peer:sink_messages(sink)) =:= {} end, 5000)",
            round + 1
        ));
        b.eval_ok(&format!("erlang:disconnect_node({r})"));
        let bname = b.node_name().to_owned();
        rust_node::wait_until("the disconnect", Duration::from_secs(5), || {
            !node.connected_nodes().contains(&bname)
        })
        .await;
    }
    node.shutdown();
}

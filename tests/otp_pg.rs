//! Rust processes in native OTP `pg` scopes: plain BEAM nodes run
//! `pg:start(Scope)` (no erl_quorum code on them), a Rust node runs an
//! `OtpPgScope` of the same name, and each side sees the other's members
//! through pg's own scope protocol. Run on OTP 25 (default) and 27
//! (`EQ_OTP=27`). Figures are printed as `FIGURE ...` lines
//! (`cargo test --test otp_pg -- --nocapture`).

mod common;
mod rust_node;

use common::BeamNode;
use erl_quorum::process::{Mail, Process};
use erl_quorum::services::{OtpPgConfig, OtpPgScope};
use erl_quorum::term::{atom, binary, int, list, tuple, Pid, Term};
use erl_quorum::Node;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SCOPE: &str = "eq_native_scope";
/// What the tests allow for a change to show on the other side: far above
/// the milliseconds measured, below anything a timer of ours would explain.
const VISIBLE_WITHIN: Duration = Duration::from_secs(2);

fn beam(prefix: &str) -> BeamNode {
    BeamNode::start(&common::unique_name(prefix), rust_node::COOKIE, &[]).expect("start erl")
}

fn start_scope(b: &BeamNode) {
    b.eval_ok(&format!("eq_otp_pg:start_scope({SCOPE})"));
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Members of `group` (an Erlang literal) on `node`, as the BEAM node's pg sees them.
fn beam_count(b: &BeamNode, group: &str, node: &str) -> usize {
    b.eval_ok(&format!(
        "eq_otp_pg:remote_members({SCOPE}, {group}, {})",
        common::atom(node)
    ))
    .parse()
    .expect("a count")
}

/// Polls the BEAM node until `group` has `n` members of `node`; how long it took.
fn wait_beam_count(b: &BeamNode, group: &str, node: &str, n: usize, within: Duration) -> Duration {
    let start = std::time::Instant::now();
    loop {
        let got = beam_count(b, group, node);
        if got == n {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{}: {group} has {got} members of {node}, not {n}, after {within:?}",
            b.node_name()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn on_node(pids: &[Pid], node: &str) -> usize {
    pids.iter().filter(|p| p.node.name == node).count()
}

async fn wait_rust_count(scope: &OtpPgScope, group: &Term, node: &str, n: usize, within: Duration) {
    rust_node::wait_until(
        &format!("{n} members of {node} in the Rust view"),
        within,
        || on_node(&scope.get_members(group), node) == n,
    )
    .await;
}

async fn greeting(p: &mut Process) -> Term {
    match p.recv_timeout(Duration::from_secs(5)).await {
        Ok(Some(Mail::Message(t))) => t,
        other => panic!("expected a greeting, got {other:?}"),
    }
}

/// Microseconds (a BEAM timestamp) from the first `verb` event of `node`'s
/// pids the BEAM watcher recorded after `since`.
fn first_event_after(b: &BeamNode, verb: &str, node: &str, since: i64) -> i64 {
    let t = b.eval_ok(&format!(
        "lists:min([T || {{T, {verb}, Ns}} <- eq_otp_pg:events(), lists:member({}, Ns), T >= {since}] ++ [never])",
        common::atom(node)
    ));
    t.parse()
        .unwrap_or_else(|_| panic!("no {verb} of {node} seen by pg:monitor: {t}"))
}

/// Rust members seen by `pg:get_members/2`, `pg:monitor/2` and a send from
/// the BEAM; BEAM members seen by the Rust API; joins, leaves and exits
/// both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_beam_members_meet_in_a_native_scope() {
    let b = beam("pg_b");
    start_scope(&b);
    b.eval_ok(&format!("Bs = eq_otp_pg:spawn_members({SCOPE}, g, 2), ok"));
    b.eval_ok(&format!(
        "{{_, _}} = eq_otp_pg:watch({SCOPE}, g), Pg = whereis({SCOPE}), ok"
    ));
    let node = rust_node::start("pg_r").await;
    let me = node.name().to_owned();
    node.connect(b.node_name()).await.unwrap();
    let scope = OtpPgScope::start(&node, SCOPE, &[b.node_name()]).unwrap();
    let g = atom("g");
    wait_rust_count(&scope, &g, b.node_name(), 2, VISIBLE_WITHIN).await;

    // Joins: pg:get_members and pg:monitor on the BEAM node list them.
    let mut p1 = node.spawn_process();
    let mut p2 = node.spawn_process();
    let t_join = now_us();
    scope.join(g.clone(), p1.pid()).unwrap();
    scope.join(g.clone(), p2.pid()).unwrap();
    scope.join(atom("h"), p2.pid()).unwrap();
    wait_beam_count(&b, "g", &me, 2, VISIBLE_WITHIN);
    wait_beam_count(&b, "h", &me, 1, VISIBLE_WITHIN);
    let seen = first_event_after(&b, "join", &me, t_join);
    eprintln!(
        "FIGURE join visible to pg:monitor on the BEAM node after {} us",
        seen - t_join
    );
    // They are the real processes: a BEAM send reaches them.
    assert_eq!(
        b.eval_ok(&format!(
            "eq_otp_pg:greet({SCOPE}, g, {{{}, hi}})",
            common::atom(&me)
        )),
        "2"
    );
    for p in [&mut p1, &mut p2] {
        assert_eq!(greeting(p).await, tuple(vec![atom("greeting"), atom("hi")]));
    }
    assert_eq!(scope.get_members(&g).len(), 4);
    assert_eq!(scope.get_local_members(&g).len(), 2);
    assert_eq!(scope.which_local_groups().len(), 2);
    assert!(scope.which_groups().contains(&g));
    assert_eq!(
        b.eval_ok(&format!("length(pg:get_members({SCOPE}, g))")),
        "4"
    );

    // Leave through the API; `not_joined` the second time.
    assert!(scope.leave(atom("h"), p2.pid()).unwrap());
    assert!(!scope.leave(atom("h"), p2.pid()).unwrap());
    wait_beam_count(&b, "h", &me, 0, VISIBLE_WITHIN);
    assert_eq!(b.eval_ok(&format!("pg:which_groups({SCOPE})")), "[g]");

    // A Rust member that exits leaves.
    let t_exit = now_us();
    drop(p1);
    let waited = wait_beam_count(&b, "g", &me, 1, VISIBLE_WITHIN);
    let seen = first_event_after(&b, "leave", &me, t_exit);
    eprintln!(
        "FIGURE exit of a Rust member seen by pg:monitor after {} us (polled: {waited:?})",
        seen - t_exit
    );

    // BEAM members that exit leave the Rust view; a BEAM join shows up.
    b.eval_ok("[exit(P, kill) || P <- Bs], ok");
    wait_rust_count(&scope, &g, b.node_name(), 0, VISIBLE_WITHIN).await;
    let mut changes = scope.changes();
    changes.borrow_and_update();
    b.eval_ok(&format!("Cs = eq_otp_pg:spawn_members({SCOPE}, g, 3), ok"));
    tokio::time::timeout(VISIBLE_WITHIN, changes.changed())
        .await
        .expect("a BEAM join wakes the Rust watcher")
        .unwrap();
    wait_rust_count(&scope, &g, b.node_name(), 3, VISIBLE_WITHIN).await;
    drop(p2);
    wait_beam_count(&b, "g", &me, 0, VISIBLE_WITHIN);
    assert_eq!(scope.peers().len(), 1);
    assert_eq!(
        b.eval_ok(&format!("whereis({SCOPE}) =:= Pg")),
        "true",
        "pg never crashed"
    );
}

/// The Rust node going away: pg's own monitor of our scope process fires
/// (`noconnection`, a hidden node's connection like any other) and every
/// Rust member leaves every group on the BEAM node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_node_going_away_takes_its_members_along() {
    let b = beam("pg_gone_b");
    start_scope(&b);
    let node = rust_node::start("pg_gone_r").await;
    let me = node.name().to_owned();
    let scope = OtpPgScope::start(&node, SCOPE, &[b.node_name()]).unwrap();
    let members: Vec<Process> = (0..3).map(|_| node.spawn_process()).collect();
    for (i, p) in members.iter().enumerate() {
        scope.join(atom("g"), p.pid()).unwrap();
        scope.join(int(i as i64), p.pid()).unwrap();
    }
    wait_beam_count(&b, "g", &me, 3, Duration::from_secs(5));
    let pg = b.eval_ok(&format!("whereis({SCOPE})"));

    // The connection drops: pg forgets us; the scope dials back (a
    // configured node) and discovers it again.
    assert!(node.disconnect(b.node_name()));
    let gone = wait_beam_count(&b, "g", &me, 0, VISIBLE_WITHIN);
    eprintln!("FIGURE connection closed: Rust members gone from pg after {gone:?} (polled)");
    let back = wait_beam_count(&b, "g", &me, 3, Duration::from_secs(5));
    eprintln!("FIGURE then back in pg after {back:?} (polled)");
    assert_eq!(
        b.eval_ok(&format!("whereis({SCOPE})")),
        pg,
        "pg never crashed"
    );

    let start = std::time::Instant::now();
    node.shutdown();
    let gone = wait_beam_count(&b, "g", &me, 0, VISIBLE_WITHIN);
    eprintln!("FIGURE Rust node shut down: its members gone from pg after {gone:?} (polled)");
    assert_eq!(b.eval_ok(&format!("pg:which_groups({SCOPE})")), "[]");
    assert!(start.elapsed() < VISIBLE_WITHIN);
    drop(members);
}

/// A BEAM node that restarts (same name, a new incarnation) and a BEAM
/// scope process that restarts on a live connection: both are discovered
/// again, although no BEAM pg ever discovers a hidden node by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_beam_nodes_and_scopes_are_discovered_again() {
    let name = common::unique_name("pg_restart_b");
    let mut b = BeamNode::start(&name, rust_node::COOKIE, &[]).unwrap();
    let bname = b.node_name().to_owned();
    start_scope(&b);
    b.eval_ok(&format!("Bs = eq_otp_pg:spawn_members({SCOPE}, g, 2), ok"));
    let node = rust_node::start("pg_restart_r").await;
    let me = node.name().to_owned();
    let scope = OtpPgScope::start_with(
        &node,
        OtpPgConfig {
            scope: SCOPE.into(),
            nodes: vec![bname.clone()],
            follow_connections: false,
        },
    )
    .unwrap();
    let p = node.spawn_process();
    scope.join(atom("g"), p.pid()).unwrap();
    let g = atom("g");
    wait_rust_count(&scope, &g, &bname, 2, Duration::from_secs(5)).await;
    wait_beam_count(&b, "g", &me, 1, Duration::from_secs(5));

    // The scope process alone restarts; the connection stays.
    b.eval_ok(&format!(
        "exit(whereis({SCOPE}), kill), timer:sleep(50), eq_otp_pg:start_scope({SCOPE}), ok"
    ));
    wait_rust_count(&scope, &g, &bname, 0, VISIBLE_WITHIN).await;
    let again = wait_beam_count(&b, "g", &me, 1, Duration::from_secs(5));
    eprintln!("FIGURE BEAM scope restarted: Rust member back in pg after {again:?} (polled)");

    // The whole node restarts under the same name.
    b.kill9();
    drop(b);
    wait_rust_count(&scope, &g, &bname, 0, VISIBLE_WITHIN).await;
    let b = BeamNode::start(&name, rust_node::COOKIE, &[]).unwrap();
    start_scope(&b);
    b.eval_ok(&format!("Bs = eq_otp_pg:spawn_members({SCOPE}, g, 1), ok"));
    let start = std::time::Instant::now();
    wait_beam_count(&b, "g", &me, 1, Duration::from_secs(10));
    eprintln!("FIGURE BEAM node restarted: Rust member in its pg after {:?} (polled; discover backoff at most {:?})",
        start.elapsed(), erl_quorum::services::otp_pg::MAX_RETRY);
    wait_rust_count(&scope, &g, &bname, 1, Duration::from_secs(5)).await;
    assert_eq!(scope.peers().len(), 1);
    drop(p);
}

/// Following connections: a BEAM node that connects (here: pings the Rust
/// node) is discovered without being configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_connects_is_discovered() {
    let b = beam("pg_follow_b");
    start_scope(&b);
    let node = rust_node::start("pg_follow_r").await;
    let me = node.name().to_owned();
    let scope = OtpPgScope::start(&node, SCOPE, &[]).unwrap();
    let p = node.spawn_process();
    scope.join(atom("g"), p.pid()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(beam_count(&b, "g", &me), 0, "not connected yet");
    assert_eq!(
        b.eval_ok(&format!("net_adm:ping({})", common::atom(&me))),
        "pong"
    );
    wait_beam_count(&b, "g", &me, 1, VISIBLE_WITHIN);

    // A stray exit signal does not end the scope.
    let stray = node.spawn_process();
    stray.exit_signal(scope.pid(), atom("boom"));
    std::thread::sleep(Duration::from_millis(100));
    assert!(node.is_process_alive(scope.pid()));
    assert_eq!(beam_count(&b, "g", &me), 1);
    // Stopping it ends its process: pg drops what it announced, and the
    // Rust side knows nothing any more.
    scope.stop();
    wait_beam_count(&b, "g", &me, 0, VISIBLE_WITHIN);
    rust_node::wait_until("the scope's table emptied", VISIBLE_WITHIN, || {
        scope.which_groups().is_empty()
    })
    .await;
    assert!(node.whereis(SCOPE).is_none());
    assert_eq!(
        scope.join(atom("g"), p.pid()),
        Err(erl_quorum::services::OtpPgError::Stopped)
    );
}

// ---- a hostile peer ---------------------------------------------------------

fn encode(t: &Term) -> Vec<u8> {
    let mut out = Vec::new();
    t.encode(&mut out).unwrap();
    out
}

/// A pass-through REG_SEND frame of `message` from `from` to `to`.
fn reg_send(from: &Pid, to: &str, message: &Term) -> Vec<u8> {
    let control = encode(&tuple(vec![
        int(6),
        Term::from(from.clone()),
        atom(""),
        atom(to),
    ]));
    let payload = encode(message);
    let len = 1 + control.len() + payload.len();
    let mut frame = (len as u32).to_be_bytes().to_vec();
    frame.push(112);
    frame.extend_from_slice(&control);
    frame.extend_from_slice(&payload);
    frame
}

fn sync(peer: &Pid, groups: Vec<Term>) -> Term {
    tuple(vec![
        atom("$gen_cast"),
        tuple(vec![atom("sync"), peer.clone().into(), list(groups)]),
    ])
}

/// A raw peer playing a scope: oversized and malformed pg messages, pids
/// of other nodes, a peer named on a node nobody connected: none crashes,
/// bloats or makes the scope dial; a real BEAM node is served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_neither_crashes_nor_bloats_the_scope() {
    let node = rust_node::start("pg_hostile_r").await;
    let scope = OtpPgScope::start_with(
        &node,
        OtpPgConfig {
            scope: SCOPE.into(),
            nodes: vec![],
            follow_connections: false,
        },
    )
    .unwrap();
    let peer_name = format!("{}@127.0.0.1", common::unique_name("pg_hostile"));
    let mut s = rust_node::raw_connect(&node, &peer_name);
    let peer = Pid::new(peer_name.as_str(), 1, 0, 1);
    let other = Pid::new("elsewhere@127.0.0.1", 5, 0, 1);
    let far = Pid::new("far_away@10.255.255.1", 1, 0, 1);
    let mine = |i: u32| Term::from(Pid::new(peer_name.as_str(), 100 + i, 0, 1));
    let messages = vec![
        tuple(vec![atom("discover"), peer.clone().into()]),
        // Accepted: 2000 groups of one pid each.
        sync(
            &peer,
            (0..2000)
                .map(|i| tuple(vec![int(i), list(vec![mine(i as u32)])]))
                .collect(),
        ),
        // Refused whole: more groups than any sync may list.
        sync(
            &peer,
            (0..10_001)
                .map(|i| tuple(vec![int(-i), list(vec![])]))
                .collect(),
        ),
        // Malformed, or naming pids of other nodes, or a huge group term.
        tuple(vec![
            atom("join"),
            peer.clone().into(),
            atom("x"),
            list(vec![atom("notapid")]),
        ]),
        tuple(vec![
            atom("join"),
            peer.clone().into(),
            atom("x"),
            other.clone().into(),
        ]),
        tuple(vec![
            atom("join"),
            peer.clone().into(),
            binary(vec![7u8; 5000]),
            mine(1),
        ]),
        tuple(vec![
            atom("leave"),
            peer.clone().into(),
            mine(1),
            list(vec![atom("never_joined")]),
        ]),
        tuple(vec![
            atom("leave"),
            peer.clone().into(),
            mine(1),
            atom("notalist"),
        ]),
        tuple(vec![atom("discover"), atom("notapid")]),
        tuple(vec![
            atom("$gen_call"),
            tuple(vec![peer.clone().into(), atom("tag")]),
            atom("x"),
        ]),
        tuple(vec![atom("discover"), far.clone().into()]),
        binary(vec![0u8; 100_000]),
        // A join from a pid that never discovered: ignored.
        tuple(vec![
            atom("join"),
            other.clone().into(),
            atom("y"),
            other.clone().into(),
        ]),
    ];
    for m in &messages {
        s.write_all(&reg_send(&peer, SCOPE, m)).unwrap();
    }
    rust_node::wait_until("the accepted sync", VISIBLE_WITHIN, || {
        scope.which_groups().len() == 2000
    })
    .await;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        scope.which_groups().len(),
        2000,
        "only the accepted sync's groups"
    );
    assert!(scope.get_members(&atom("x")).is_empty());
    assert!(scope.get_members(&atom("y")).is_empty());
    assert_eq!(scope.peers(), vec![peer.clone()]);
    assert!(node.is_process_alive(scope.pid()));
    assert!(
        !node
            .connected_nodes()
            .iter()
            .any(|n| n.starts_with("far_away") || n.starts_with("elsewhere")),
        "the scope dialled a node only the peer named"
    );
    // The hostile peer leaves: everything it announced goes.
    drop(s);
    rust_node::wait_until("the peer forgotten", VISIBLE_WITHIN, || {
        scope.which_groups().is_empty()
    })
    .await;

    // A real BEAM node is served as before.
    let b = beam("pg_hostile_b");
    start_scope(&b);
    let p = node.spawn_process();
    scope.join(atom("g"), p.pid()).unwrap();
    assert_eq!(
        b.eval_ok(&format!("net_adm:ping({})", common::atom(node.name()))),
        "pong"
    );
    let me = node.name().to_owned();
    // follow_connections is off: this node is not discovered...
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(beam_count(&b, "g", &me), 0);
    // ...until it discovers us: pg answers a discover from anyone.
    b.eval_ok(&format!(
        "{{{SCOPE}, {}}} ! {{discover, whereis({SCOPE})}}, ok",
        common::atom(&me)
    ));
    wait_beam_count(&b, "g", &me, 1, VISIBLE_WITHIN);
    drop(p);
    let _ = Node::clone(&node);
}

/// OTP's default scope (`pg`, started by `-kernel start_pg true`): BEAM code
/// calling `pg:get_members/1` sees the Rust member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_scope_works_too() {
    let b = BeamNode::start(
        &common::unique_name("pg_default_b"),
        rust_node::COOKIE,
        &["-kernel", "start_pg", "true"],
    )
    .expect("start erl");
    b.eval_ok("ok = pg:join(g, spawn(fun() -> receive stop -> ok end end))");
    let node = rust_node::start("pg_default_r").await;
    let scope = OtpPgScope::start(&node, "pg", &[b.node_name()]).unwrap();
    let p = node.spawn_process();
    scope.join(atom("g"), p.pid()).unwrap();
    let me = common::atom(node.name());
    rust_node::wait_until(
        "the Rust member in pg:get_members/1",
        VISIBLE_WITHIN,
        || {
            b.eval_ok(&format!(
                "[node(P) || P <- pg:get_members(g), node(P) =:= {me}]"
            )) == format!("[{me}]")
        },
    )
    .await;
    wait_rust_count(&scope, &atom("g"), b.node_name(), 1, VISIBLE_WITHIN).await;
}

/// Two Rust nodes in one scope (no BEAM node): the same protocol between
/// two Rust scopes, one of them configured to follow the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rust_scopes_meet() {
    let a = rust_node::start("pg_rr_a").await;
    let b = rust_node::start("pg_rr_b").await;
    let sa = OtpPgScope::start(&a, SCOPE, &[b.name()]).unwrap();
    let sb = OtpPgScope::start(&b, SCOPE, &[]).unwrap();
    let pa = a.spawn_process();
    let pb = b.spawn_process();
    sa.join(atom("g"), pa.pid()).unwrap();
    sb.join(atom("g"), pb.pid()).unwrap();
    for s in [&sa, &sb] {
        rust_node::wait_until("both members on both sides", VISIBLE_WITHIN, || {
            s.get_members(&atom("g")).len() == 2
        })
        .await;
    }
    drop(pa);
    rust_node::wait_until("a's member gone at b", VISIBLE_WITHIN, || {
        sb.get_members(&atom("g")).to_vec() == vec![pb.pid().clone()]
    })
    .await;
}

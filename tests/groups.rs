//! Process groups (issue 14): `eq_pg`, OTP `pg`'s API served across BEAM and
//! Rust nodes by the `eq_groups` hubs, against three Rust serving nodes in
//! this process (locker + erl_quorum + the hub, W=2) and real Erlang and
//! Elixir nodes running the `rebar_fixture` application
//! (`erlang_test/eq_groups.erl` has the helpers).
//!
//! What each test shows:
//! - `eq_pg_answers_as_pg_and_members_cross_beam_and_rust`: one sequence of
//!   calls (multiple joins of one pid, a leave of a non-member,
//!   `not_joined`, `nolocal` errors, an exit, `monitor/2` and
//!   `monitor_scope/1` messages, `demonitor`) gives the same answers and
//!   the same messages on OTP's `pg` and on `eq_pg`, on an Erlang and an
//!   Elixir node; a BEAM member is seen by the other BEAM nodes and by
//!   every Rust node, a Rust member by every BEAM node (and a BEAM
//!   `eq_pg:monitor/2` gets its join); a Rust monitor gets a BEAM member's
//!   join and leave; Elixir `Sworm.join` and a `use Sworm` module's
//!   `join/1` are read by Erlang's `eq_sworm:members`; a member that exits (BEAM or Rust) leaves every
//!   other node's table within the bound.
//! - `members_of_a_lost_node_leave_within_the_bound_and_a_lost_hub_changes_nothing`:
//!   a node stopped with `init:stop`, one sent SIGTERM and one killed with
//!   `kill -9`: each node's members leave every other table within the
//!   bound (times printed), and after the bound no table, BEAM or Rust,
//!   serves one of their pids. Then the hub a BEAM node subscribes to is
//!   killed: that node subscribes to another, the killed node's Rust
//!   member leaves, the others stay, and new joins are seen everywhere.

mod common;
mod quorum_support;
mod rust_node;
mod services_support;

use common::BeamNode;
use erl_quorum::quorum::service::{self as locker, ServiceConfig};
use erl_quorum::services::groups::{GroupEvent, Groups, Left};
use erl_quorum::services::{self, ServicesConfig};
use erl_quorum::term::{atom, Pid};
use erl_quorum::{Node, Process};
use services_support::{beval, start_app_node, term_expr, wait_on, Lang};
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long after a member's exit, or its node's loss (exit, `init:stop`,
/// SIGTERM, `kill -9`), no table serves it any more (README: the bounds).
const BOUND: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(10);
const SCOPE: &str = "eq_pg";

struct RustServer {
    node: Node,
    groups: Groups,
    runtime: Option<tokio::runtime::Runtime>,
}

impl RustServer {
    fn name(&self) -> &str {
        self.node.name()
    }

    async fn run<T, F>(&self, f: impl FnOnce(Node) -> F) -> T
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let runtime = self.runtime.as_ref().expect("the node was aborted");
        runtime
            .spawn(f(self.node.clone()))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// A process of this node, joined to `group` of the default scope.
    async fn member(&self, group: &str) -> Process {
        let groups = self.groups.clone();
        let group = atom(group);
        self.run(|node| async move {
            let p = node.spawn_process();
            groups
                .join(SCOPE, group, &[p.pid().clone()])
                .await
                .expect("join");
            p
        })
        .await
    }

    /// As `kill -9`: connections close first, then every task ends.
    fn abort(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            self.node.shutdown();
            runtime.shutdown_background();
        }
    }
}

impl Drop for RustServer {
    fn drop(&mut self) {
        self.abort();
    }
}

async fn start_servers(prefix: &str) -> Vec<RustServer> {
    let mut nodes = Vec::new();
    for i in 0..3 {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let prefix = format!("{prefix}{i}");
        let node = runtime
            .spawn(async move { rust_node::start(&prefix).await })
            .await
            .expect("start the node");
        nodes.push((node, runtime));
    }
    let masters: Vec<String> = nodes.iter().map(|(n, _)| n.name().to_owned()).collect();
    let mut servers = Vec::new();
    for (node, runtime) in nodes {
        let (masters, on) = (masters.clone(), node.clone());
        runtime
            .spawn(async move {
                let config = ServiceConfig {
                    masters: masters.clone(),
                    w: 2,
                    fresh_cluster: true,
                    ..ServiceConfig::default()
                };
                locker::start(&on, config).expect("start locker");
                let config = ServicesConfig {
                    masters,
                    w: 2,
                    ..ServicesConfig::default()
                };
                services::start(&on, config).expect("start erl_quorum");
            })
            .await
            .expect("start the services");
        let groups = Groups::new(&node).expect("the hub runs");
        servers.push(RustServer {
            node,
            groups,
            runtime: Some(runtime),
        });
    }
    servers
}

fn masters(servers: &[RustServer]) -> Vec<String> {
    servers.iter().map(|s| s.name().to_owned()).collect()
}

fn rotated(v: &[String], k: usize) -> Vec<String> {
    services_support::rotated(v, k)
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros()
}

/// Waits until `f` holds, polling every 5 ms; panics after `WAIT`.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The pid `expr` (an Erlang expression on `from`) bound to `var` on `to`.
fn bind(to: &BeamNode, var: &str, from: &BeamNode, expr: &str) {
    beval(to, &format!("{var} = {}, ok", term_expr(from, expr)));
}

/// An Erlang expression rebuilding a Rust pid.
fn pid_expr(pid: &Pid) -> String {
    let bytes = eetf::Term::from(pid.clone());
    let mut buf = Vec::new();
    bytes.encode(&mut buf).expect("encode a pid");
    let list: Vec<String> = buf.iter().map(u8::to_string).collect();
    format!("binary_to_term(<<{}>>)", list.join(","))
}

fn members_of(server: &RustServer, group: &str) -> Vec<Pid> {
    server.groups.members(SCOPE, &atom(group))
}

/// Milliseconds until none of `pids` (an Erlang list expression bound on
/// `node`) is a member of `group` there, from `t0_us` (system time).
fn gone_after(node: &BeamNode, group: &str, pids: &str, t0_us: u128) -> f64 {
    let ms = beval(
        node,
        &format!("eq_groups:wait_gone(eq_pg, {group}, {{{pids}, {t0_us}}})"),
    );
    ms.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}: {group} still holds them: {ms}", node.node_name()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eq_pg_answers_as_pg_and_members_cross_beam_and_rust() {
    let servers = start_servers("gm").await;
    let m = masters(&servers);
    let (a, b, c) = tokio::join!(
        start_app_node("ga", Lang::Erlang, &rotated(&m, 0)),
        start_app_node("gb", Lang::Erlang, &rotated(&m, 1)),
        start_app_node("gc", Lang::Elixir, &rotated(&m, 2)),
    );

    // The contract: the same answers and messages from pg and eq_pg.
    for node in [&a, &c] {
        let pg = beval(node, "eq_groups:contract(pg, contract_pg)");
        let ours = beval(node, "eq_groups:contract(eq_pg, contract_eq)");
        assert!(!pg.contains("crashed"), "{pg}");
        assert_eq!(pg, ours, "{}: pg and eq_pg differ", node.node_name());
    }

    // A BEAM member, seen by the other BEAM nodes and by every Rust node.
    beval(
        &a,
        "P = eq_groups:member(), ok = eq_pg:join(g_beam, P), ok = eq_pg:join(g_beam, P)",
    );
    for node in [&b, &c] {
        bind(node, "P", &a, "P");
        wait_on(node, "eq_pg:get_members(g_beam) =:= [P, P]", WAIT);
        assert_eq!(beval(node, "eq_pg:get_local_members(g_beam)"), "[]");
        assert_eq!(
            beval(node, "lists:member(g_beam, eq_pg:which_groups())"),
            "true"
        );
    }
    let p_beam = beval(&a, "pid_to_list(P)");
    for s in &servers {
        until("a BEAM member seen from Rust", || {
            let ms = members_of(s, "g_beam");
            ms.len() == 2 && format!("{:?}", ms[0]).contains(a.node_name())
        })
        .await;
    }
    assert!(!p_beam.is_empty());

    // A BEAM monitor on a group a Rust process joins.
    beval(&a, "{MRef, []} = eq_pg:monitor(g_rust), ok");
    let r = servers[1].member("g_rust").await;
    let r_expr = pid_expr(r.pid());
    for node in [&a, &b, &c] {
        beval(node, &format!("R = {r_expr}, ok"));
        wait_on(node, "eq_pg:get_members(g_rust) =:= [R]", WAIT);
    }
    assert_eq!(
        beval(
            &a,
            "receive {MRef, join, g_rust, [R]} -> ok after 5000 -> timeout end"
        ),
        "ok"
    );
    for s in &servers {
        until("a Rust member seen from Rust", || {
            members_of(s, "g_rust") == vec![r.pid().clone()]
        })
        .await;
    }
    assert_eq!(
        servers[1].groups.local_members(SCOPE, &atom("g_rust")),
        vec![r.pid().clone()]
    );
    assert!(servers[0]
        .groups
        .local_members(SCOPE, &atom("g_rust"))
        .is_empty());
    assert!(servers[1]
        .groups
        .which_local_groups(SCOPE)
        .contains(&atom("g_rust")));

    // A Rust monitor sees a BEAM member join and leave.
    let (now, mut mon) = servers[2]
        .groups
        .monitor(SCOPE, &atom("g_mon"))
        .expect("monitor");
    assert!(now.is_empty());
    beval(
        &b,
        "Q = eq_groups:member(), ok = eq_pg:join(g_mon, Q), ok = eq_pg:leave(g_mon, Q)",
    );
    let q = beval(&b, "pid_to_list(Q)");
    for want in ["join", "leave"] {
        let event = tokio::time::timeout(WAIT, mon.next())
            .await
            .expect("a monitor event")
            .expect("the stream goes on");
        let (verb, group, pids) = match event {
            GroupEvent::Join { group, pids } => ("join", group, pids),
            GroupEvent::Leave { group, pids } => ("leave", group, pids),
        };
        assert_eq!((verb, group), (want, atom("g_mon")));
        assert_eq!(pids.len(), 1, "{q}");
    }

    // Rust leave: ok, then not_joined.
    let g = servers[1].groups.clone();
    let pid = r.pid().clone();
    let (l1, l2) = servers[1]
        .run(|_| async move {
            let l1 = g
                .leave(SCOPE, atom("g_rust"), std::slice::from_ref(&pid))
                .await;
            let l2 = g.leave(SCOPE, atom("g_rust"), &[pid]).await;
            (l1, l2)
        })
        .await;
    assert_eq!((l1, l2), (Ok(Left::Ok), Ok(Left::NotJoined)));
    for node in [&a, &b, &c] {
        wait_on(node, "eq_pg:get_members(g_rust) =:= []", WAIT);
    }
    assert_eq!(
        beval(
            &a,
            "receive {MRef, leave, g_rust, [R]} -> ok after 5000 -> timeout end"
        ),
        "ok"
    );

    // Sworm's shape, from Elixir, read from Erlang.
    services_support::ex(&c, "Sworm.join(:sw, :grp, self())", &[]);
    bind(&a, "S", &c, "self()");
    wait_on(&a, "eq_sworm:members(sw, grp) =:= [S]", WAIT);
    assert_eq!(
        services_support::ex(&c, "Sworm.leave(:sw, :grp, self())", &[]),
        "ok"
    );
    assert_eq!(
        services_support::ex(&c, "Sworm.leave(:sw, :grp, self())", &[]),
        "not_joined"
    );
    wait_on(&a, "eq_sworm:members(sw, grp) =:= []", WAIT);
    // And through a `use Sworm` module.
    services_support::ex(
        &c,
        "defmodule GroupsSworm do use Sworm end; GroupsSworm.join(:workers)",
        &[],
    );
    assert_eq!(
        services_support::ex(&c, "GroupsSworm.members(:workers) == [self()]", &[]),
        "true"
    );
    wait_on(
        &a,
        "eq_sworm:members('Elixir.GroupsSworm', workers) =:= [S]",
        WAIT,
    );
    assert_eq!(
        services_support::ex(&c, "GroupsSworm.leave(:workers)", &[]),
        "ok"
    );
    wait_on(
        &a,
        "eq_sworm:members('Elixir.GroupsSworm', workers) =:= []",
        WAIT,
    );

    // Exits: a BEAM member and a Rust member leave every table in the bound.
    beval(&a, "X = eq_groups:member(), ok = eq_pg:join(g_exit, X)");
    bind(&b, "X", &a, "X");
    wait_on(&b, "eq_pg:get_members(g_exit) =:= [X]", WAIT);
    let t0 = now_us();
    beval(&a, "exit(X, kill)");
    let ms = gone_after(&b, "g_exit", "[X]", t0);
    println!("a BEAM member's exit: gone from another BEAM node after {ms:.1} ms");
    assert!(ms < BOUND.as_secs_f64() * 1000.0, "{ms} ms");

    let y = servers[0].member("g_exit").await;
    let y_expr = pid_expr(y.pid());
    beval(&c, &format!("Y = {y_expr}, ok"));
    wait_on(&c, "eq_pg:get_members(g_exit) =:= [Y]", WAIT);
    let t0 = now_us();
    servers[0].run(move |_| async move { drop(y) }).await;
    let ms = gone_after(&c, "g_exit", "[Y]", t0);
    println!("a Rust member's exit: gone from a BEAM node after {ms:.1} ms");
    assert!(ms < BOUND.as_secs_f64() * 1000.0, "{ms} ms");
    until("a Rust member's exit seen from Rust", || {
        members_of(&servers[2], "g_exit").is_empty()
    })
    .await;

    // Malformed hub data (review14 P9) never crashes the scope: its
    // local members stay and it subscribes again.
    let sub = "[P9Sub] = [P9E || P9E <- tuple_to_list(sys:get_state(eq_pg)), \
               is_tuple(P9E), tuple_size(P9E) =:= 4, element(1, P9E) =:= subscribed]";
    beval(
        &a,
        &format!(
            "P9Z = eq_groups:member(), ok = eq_pg:join(g_p9, P9Z), P9S0 = whereis(eq_pg), \
             {sub}, {{subscribed, _, P9H, P9Sq}} = P9Sub, \
             eq_pg ! {{eq_groups, update, eq_pg, P9H, P9Sq + 1, bogus, g_p9, [P9H]}}, \
             eq_pg ! {{eq_groups, update, eq_pg, P9H, P9Sq + 1, join, g_p9, [P9H | x]}}, \
             eq_pg ! {{eq_groups, snapshot, eq_pg, P9H, 0, [{{g_p9, [1]}} | x]}}, \
             eq_pg ! {{eq_groups, refused, eq_pg, not_a_pid, x}}, ok"
        ),
    );
    wait_on(
        &a,
        "whereis(eq_pg) =:= P9S0 andalso eq_pg:get_local_members(g_p9) =:= [P9Z] \
         andalso [] =/= [P9E || P9E <- tuple_to_list(sys:get_state(eq_pg)), \
         is_tuple(P9E), tuple_size(P9E) =:= 4, element(1, P9E) =:= subscribed]",
        WAIT,
    );
    drop(r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_of_a_lost_node_leave_within_the_bound_and_a_lost_hub_changes_nothing() {
    let mut servers = start_servers("gl").await;
    let m = masters(&servers);
    let (mut a, b, c, d, e) = tokio::join!(
        start_app_node("la", Lang::Erlang, &rotated(&m, 0)),
        start_app_node("lb", Lang::Erlang, &rotated(&m, 1)),
        start_app_node("lc", Lang::Elixir, &rotated(&m, 2)),
        start_app_node("ld", Lang::Erlang, &rotated(&m, 0)),
        start_app_node("le", Lang::Erlang, &rotated(&m, 1)),
    );
    // Members on every node: three on a, d and e (the victims), one on c.
    for (node, var) in [(&a, "Pa"), (&c, "Pc"), (&d, "Pd"), (&e, "Pe")] {
        beval(
            node,
            &format!("{var} = eq_groups:members(3), ok = eq_pg:join(g, {var}), ok = eq_pg:join(other, {var})"),
        );
        for other in [&a, &b, &c, &d, &e] {
            if !std::ptr::eq(other, node) {
                bind(other, var, node, var);
            }
        }
    }
    let r0 = servers[0].member("g").await;
    let r1 = servers[1].member("g").await;
    let (r0_expr, r1_expr) = (pid_expr(r0.pid()), pid_expr(r1.pid()));
    for node in [&a, &b, &c, &d, &e] {
        beval(node, &format!("R0 = {r0_expr}, R1 = {r1_expr}, ok"));
        wait_on(
            node,
            "lists:sort(eq_pg:get_members(g)) =:= lists:sort(Pa ++ Pc ++ Pd ++ Pe ++ [R0, R1])",
            WAIT,
        );
    }
    for s in &servers {
        until("every member seen from Rust", || {
            members_of(s, "g").len() == 14
        })
        .await;
    }

    let survivors_see_none = |var: &str, survivors: &[&BeamNode]| {
        for node in survivors {
            for group in ["g", "other"] {
                let cond =
                    format!("[P || P <- eq_pg:get_members({group}), lists:member(P, {var})]");
                assert_eq!(
                    beval(node, &cond),
                    "[]",
                    "{} still serves {var}",
                    node.node_name()
                );
            }
        }
    };

    // init:stop of d.
    let t0: u128 = beval(
        &d,
        "T0 = erlang:system_time(microsecond), spawn(init, stop, []), T0",
    )
    .trim()
    .parse()
    .expect("T0");
    let ms = gone_after(&b, "g", "Pd", t0);
    println!("init:stop: a node's members gone after {ms:.1} ms");
    assert!(ms < BOUND.as_secs_f64() * 1000.0, "{ms} ms");

    // SIGTERM of e.
    let t0 = now_us();
    common::signal::send(e.os_pid(), 15).expect("SIGTERM");
    let ms = gone_after(&b, "g", "Pe", t0);
    println!("SIGTERM: a node's members gone after {ms:.1} ms");
    assert!(ms < BOUND.as_secs_f64() * 1000.0, "{ms} ms");

    // kill -9 of a.
    let t0 = now_us();
    a.kill9();
    let ms = gone_after(&c, "g", "Pa", t0);
    println!("kill -9: a node's members gone after {ms:.1} ms");
    assert!(ms < BOUND.as_secs_f64() * 1000.0, "{ms} ms");

    // After the bound, no table serves a dead pid.
    tokio::time::sleep(BOUND).await;
    for var in ["Pa", "Pd", "Pe"] {
        survivors_see_none(var, &[&b, &c]);
    }
    let live = |s: &RustServer| {
        let mut names: Vec<String> = members_of(s, "g")
            .iter()
            .map(|p| p.node.name.clone())
            .collect();
        names.sort();
        names
    };
    let mut want = vec![c.node_name().to_owned(); 3];
    want.push(servers[0].name().to_owned());
    want.push(servers[1].name().to_owned());
    want.sort();
    for s in &servers {
        assert_eq!(live(s), want, "{} serves a dead pid", s.name());
    }

    // The hub b subscribes to dies (b's rust_nodes start at m[1]).
    let sub = beval(&b, "maps:get(subscription, gen_server:call(eq_pg, status))");
    assert!(sub.contains(servers[1].name()), "{sub}");
    let t0 = now_us();
    servers[1].abort();
    // Its Rust member is gone with it; the others stay.
    for node in [&b, &c] {
        wait_on(node, "not lists:member(R1, eq_pg:get_members(g))", WAIT);
    }
    println!(
        "a Rust node's member gone after its node's loss: {:.1} ms",
        (now_us() - t0) as f64 / 1000.0
    );
    for node in [&b, &c] {
        wait_on(
            node,
            "lists:sort(eq_pg:get_members(g)) =:= lists:sort(Pc ++ [R0])",
            WAIT,
        );
    }
    wait_on(
        &b,
        "element(1, maps:get(subscription, gen_server:call(eq_pg, status))) =:= subscribed",
        WAIT,
    );
    let sub = beval(&b, "maps:get(subscription, gen_server:call(eq_pg, status))");
    assert!(!sub.contains(servers[1].name()), "{sub}");
    // New joins still reach everyone.
    beval(&c, "N = eq_groups:member(), ok = eq_pg:join(g_new, N)");
    bind(&b, "N", &c, "N");
    wait_on(&b, "eq_pg:get_members(g_new) =:= [N]", WAIT);
    let r2 = servers[2].member("g_new").await;
    beval(&b, &format!("R2 = {}, ok", pid_expr(r2.pid())));
    wait_on(
        &b,
        "lists:sort(eq_pg:get_members(g_new)) =:= lists:sort([N, R2])",
        WAIT,
    );
    until("the new members seen from Rust", || {
        members_of(&servers[0], "g_new").len() == 2
    })
    .await;
    drop((r0, r1, r2, d, e));
}

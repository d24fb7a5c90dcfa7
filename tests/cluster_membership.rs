//! eq_cluster (gen_cluster's membership behaviour on process groups) with
//! real nodes:
//!
//! - three Erlang nodes and an Elixir one (`use EqCluster`), members joining
//!   through every kind of seed, every member's callbacks checked (the lists
//!   they were handed, in one consistent sequence), then a member that exits
//!   and a node killed with SIGKILL reported to the others through
//!   `handle_leave` with the exit reason and `noconnection`;
//! - seeds that answer nothing, missing scopes, clusters and scopes kept
//!   apart, options from a map;
//! - pg's join counting, a hand-made leave (`left`), and a cut connection
//!   (leave with `noconnection`, then a join again on reconnection);
//! - a Rust process watching the cluster (`services::membership::ClusterWatch`).
//!
//! The group module here is whatever `?PG` in eq_cluster.erl names (OTP
//! `pg` until eq_pg is merged): every node runs its default scope, started
//! by the test. The sample callback module is `erlang_test/eq_cluster_test.erl`;
//! the Elixir member's module is defined on its node by the test.

mod common;
mod rust_node;

use common::BeamNode;
use erl_quorum::services::membership::{ClusterWatch, LeaveInfo, MembershipEvent};
use erl_quorum::term::{atom, Pid};
use std::time::Duration;

/// How long a membership change may take to reach every member here: one
/// message hop, or the distribution noticing a closed connection; generous
/// for a loaded 2-core machine.
const PROPAGATION: Duration = Duration::from_secs(10);

fn node(prefix: &str) -> BeamNode {
    BeamNode::start(&common::unique_name(prefix), common::DEFAULT_COOKIE, &[]).expect("start erl")
}

/// Starts the default scope of the group module eq_cluster uses, unlinked
/// from the evaluator.
fn start_scope(n: &BeamNode, scope: &str) {
    n.eval_ok(&format!("{{ok, _}} = eq_cluster_test:start_scope({scope})"));
}

/// The group module (`pg` or `eq_pg`): its name is its default scope's.
fn group_module(n: &BeamNode) -> String {
    n.eval_ok("eq_cluster:group_module()")
}

#[track_caller]
fn wait_on(n: &BeamNode, cond: &str) {
    let expr = format!(
        "ok = eq_peer:wait_until(fun() -> {cond} end, {})",
        PROPAGATION.as_millis()
    );
    if let Err(e) = n.eval_timeout(&expr, PROPAGATION + Duration::from_secs(5)) {
        panic!("{}: `{cond}` did not become true: {e}", n.node_name());
    }
}

/// The Elixir callback module (`use EqCluster`, rebar_fixture/lib): the
/// same log as eq_cluster_test, kept in Elixir.
const EX_MEMBER: &str = "defmodule EqClusterEx do \
  use EqCluster; \
  def init(_args), do: {:ok, []}; \
  def handle_node_joined(me, pids, log), do: {:ok, [{:joined, me, pids} | log]}; \
  def handle_join(pid, pids, log), do: {:ok, [{:join, pid, pids} | log]}; \
  def handle_leave(pid, pids, info, log), do: {:ok, [{:leave, pid, pids, info} | log]}; \
  def handle_call(:eq_log, _from, log), do: {:reply, Enum.reverse(log), log} \
end";

#[test]
fn members_join_through_any_seed_and_see_leaves() {
    let a = node("cla");
    let mut b = node("clb");
    let c = node("clc");
    let e = BeamNode::start_elixir(&common::unique_name("cle"), common::DEFAULT_COOKIE, &[])
        .expect("start elixir");
    for n in [&a, &b, &c, &e] {
        start_scope(n, &group_module(n));
    }
    let (na, nb, nc, ne) = (a.node_atom(), b.node_atom(), c.node_atom(), e.node_atom());

    // A starts the cluster alone.
    a.eval_ok("{ok, _} = eq_cluster_test:start(m_a, [])");
    // B joins through A's member, named {Name, Node}.
    b.eval_ok(&format!(
        "{{ok, _}} = eq_cluster_test:start(m_b, [{{seed, {{m_a, {na}}}}}])"
    ));
    // C joins through B's node, then through C's own member by local name.
    c.eval_ok(&format!(
        "{{ok, _}} = eq_cluster_test:start(m_c, [{{seed, {nb}}}])"
    ));
    c.eval_ok("{ok, _} = eq_cluster_test:start(m_c2, [{seed, m_c}])");
    // The Elixir member joins through B's member's pid.
    e.eval_ok(&format!(
        "_ = 'Elixir.Code':eval_string(<<\"{EX_MEMBER}\">>), \
         true = erlang:function_exported('Elixir.EqClusterEx', handle_join, 3)"
    ));
    e.eval_ok(&format!(
        "P = rpc:call({nb}, erlang, whereis, [m_b]), true = is_pid(P), \
         {{ok, _}} = 'Elixir.EqCluster':start('Elixir.EqClusterEx', [{{seed, P}}], [{{name, m_e}}])"
    ));

    let refs = [
        ("m_a", &na),
        ("m_b", &nb),
        ("m_c", &nc),
        ("m_c2", &nc),
        ("m_e", &ne),
    ];
    let list: Vec<String> = refs.iter().map(|(l, n)| format!("{{{l}, {n}}}")).collect();
    let all = list.join(", ");
    // Every member sees all five; then the labels (pids as A sees them).
    for r in &list {
        wait_on(
            &a,
            &format!("length(rpc:call(element(2, {r}), eq_cluster, members, [{r}])) =:= 5"),
        );
    }
    a.eval_ok(&format!("Labels = eq_cluster_test:labels([{all}])"));
    let log = |r: &str| format!("eq_cluster_test:log({r}, Labels)");

    // The joiner's first callback: handle_node_joined with every member its
    // seed knew (joins were sequential, so exactly those before it).
    let firsts = [
        "{joined,m_a,[m_a]}",
        "{joined,m_b,[m_a,m_b]}",
        "{joined,m_c,[m_a,m_b,m_c]}",
        "{joined,m_c2,[m_a,m_b,m_c,m_c2]}",
        "{joined,m_e,[m_a,m_b,m_c,m_c2,m_e]}",
    ];
    let labels = ["m_a", "m_b", "m_c", "m_c2", "m_e"];
    for (i, r) in list.iter().enumerate() {
        assert_eq!(a.eval_ok(&format!("hd({})", log(r))), firsts[i], "{r}");
        assert_eq!(
            a.eval_ok(&format!("eq_cluster_test:check({})", log(r))),
            "ok",
            "{r}: {}",
            a.eval_ok(&log(r))
        );
        // Then handle_join once for each later member, and nothing else.
        let later = format!("[{}]", labels[i + 1..].join(","));
        assert_eq!(
            a.eval_ok(&format!(
                "lists:sort([element(1, E) =:= join andalso element(2, E) || E <- tl({})])",
                log(r)
            )),
            later,
            "{r}"
        );
        assert_eq!(
            a.eval_ok(&format!("eq_cluster_test:members({r}, Labels)")),
            "[m_a,m_b,m_c,m_c2,m_e]"
        );
    }
    // gen_cluster's plist shape: the cluster is named after the module.
    assert_eq!(
        a.eval_ok(&format!(
            "{{ok, [{{eq_cluster_test, Ps}}]}} = eq_cluster:plist({{m_e, {ne}}}), \
             lists:sort([maps:get(P, Labels) || P <- Ps])"
        )),
        "[m_a,m_b,m_c,m_c2,m_e]"
    );

    // A member exits: handle_leave with its exit reason on the four others.
    c.eval_ok("exit(whereis(m_c2), boom)");
    let four = ["m_a", "m_b", "m_c", "m_e"];
    for (l, n) in refs.iter().filter(|(l, _)| *l != "m_c2") {
        let r = format!("{{{l}, {n}}}");
        wait_on(
            &a,
            &format!(
                "eq_cluster_test:members({r}, Labels) =:= [{}]",
                four.join(",")
            ),
        );
        assert_eq!(
            a.eval_ok(&format!("lists:last({})", log(&r))),
            "{leave,m_c2,[m_a,m_b,m_c,m_e],boom}",
            "{r}"
        );
    }

    // B's node is killed: handle_leave(m_b, _, noconnection) on the others.
    b.kill9();
    for (l, n) in [("m_a", &na), ("m_c", &nc), ("m_e", &ne)] {
        let r = format!("{{{l}, {n}}}");
        wait_on(
            &a,
            &format!("eq_cluster_test:members({r}, Labels) =:= [m_a,m_c,m_e]"),
        );
        let events = a.eval_ok(&log(&r));
        assert_eq!(
            a.eval_ok(&format!("lists:last({})", log(&r))),
            "{leave,m_b,[m_a,m_c,m_e],noconnection}",
            "{r}: {events}"
        );
        assert_eq!(
            a.eval_ok(&format!("eq_cluster_test:check({})", log(&r))),
            "ok",
            "{r}: {events}"
        );
        // Each departure reported exactly once.
        assert_eq!(
            a.eval_ok(&format!(
                "lists:sort([element(2, E) || E <- {}, element(1, E) =:= leave])",
                log(&r)
            )),
            "[m_b,m_c2]",
            "{r}: {events}"
        );
    }
}

#[test]
fn seeds_clusters_and_scopes() {
    let a = node("clsa");
    let b = node("clsb");
    let pg = group_module(&a);
    for n in [&a, &b] {
        start_scope(n, &pg);
        start_scope(n, "other");
    }
    let (na, nb) = (a.node_atom(), b.node_atom());
    // A seed that answers nothing: the start fails, no silent lone cluster.
    assert_eq!(
        b.eval_ok(&format!(
            "eq_cluster_test:start(m_x, [{{seed, {{nobody, {na}}}}}, {{join_timeout, 500}}])"
        )),
        format!("{{error,{{no_seed,[{{nobody,{na}}}]}}}}")
    );
    // No scope of that name on this node.
    assert_eq!(
        b.eval_ok("eq_cluster_test:start(m_x, [{scope, nope}])"),
        "{error,{no_scope,nope}}"
    );
    // Seeds that are the process's own node count only when nothing else
    // answers (gen_cluster users give every node the same list).
    assert_eq!(
        b.eval_ok(&format!(
            "{{ok, P}} = eq_cluster_test:start(m_y, [{{seed, [node(), {{nobody, {na}}}]}}, \
             {{cluster, solo}}, {{join_timeout, 500}}]), eq_cluster:members(P) =:= [P]"
        )),
        "true"
    );
    // Two clusters in one scope, and a cluster in a scope of its own: each
    // sees only its members, whatever the seed.
    a.eval_ok("{ok, _} = eq_cluster_test:start(r1, [{cluster, red}])");
    a.eval_ok("{ok, _} = eq_cluster_test:start(g1, [{cluster, green}])");
    a.eval_ok("{ok, _} = eq_cluster_test:start(o1, [{cluster, red}, {scope, other}])");
    // Through a member: its cluster and scope, whatever the joiner's options.
    b.eval_ok(&format!(
        "{{ok, _}} = eq_cluster_test:start(r2, [{{seed, {{r1, {na}}}}}, {{cluster, green}}])"
    ));
    // Options in a map work too.
    b.eval_ok(&format!(
        "{{ok, _}} = eq_cluster_test:start(r3, #{{seed => {{r1, {na}}}}})"
    ));
    // Through a node: the joiner's own cluster and scope.
    b.eval_ok(&format!(
        "{{ok, _}} = eq_cluster_test:start(g2, [{{seed, {na}}}, {{cluster, green}}])"
    ));
    b.eval_ok(&format!(
        "{{ok, _}} = eq_cluster_test:start(o2, [{{seed, {na}}}, {{cluster, red}}, {{scope, other}}])"
    ));
    a.eval_ok(&format!(
        "Labels = eq_cluster_test:labels([{{r1, {na}}}, {{g1, {na}}}, {{o1, {na}}}, \
         {{r2, {nb}}}, {{r3, {nb}}}, {{g2, {nb}}}, {{o2, {nb}}}])"
    ));
    for (r, want) in [("r1", "[r1,r2,r3]"), ("g1", "[g1,g2]"), ("o1", "[o1,o2]")] {
        wait_on(
            &a,
            &format!("eq_cluster_test:members({r}, Labels) =:= {want}"),
        );
    }
    assert_eq!(
        b.eval_ok("{eq_cluster:cluster(r2), eq_cluster:cluster(o2)}"),
        format!("{{{{red,{pg}}},{{red,other}}}}")
    );
    assert_eq!(
        a.eval_ok(&format!("hd(eq_cluster_test:log({{g2, {nb}}}, Labels))")),
        "{joined,g2,[g1,g2]}"
    );
}

/// The member list follows the group exactly: a pid joined twice (by hand,
/// pg allows it) stays a member until it has left twice, and then leaves
/// with `left` (it is alive); a connection cut gives `noconnection` on both
/// sides, and the group's re-sync when the nodes reconnect gives a
/// handle_join again.
#[test]
fn group_bookkeeping_and_reconnection() {
    let a = node("clra");
    let b = node("clrb");
    let pg = group_module(&a);
    for n in [&a, &b] {
        start_scope(n, &pg);
    }
    let (na, nb) = (a.node_atom(), b.node_atom());
    a.eval_ok("{ok, _} = eq_cluster_test:start(m_a, [])");
    b.eval_ok(&format!(
        "{{ok, _}} = eq_cluster_test:start(m_b, [{{seed, {{m_a, {na}}}}}])"
    ));
    let labels = format!("Labels = eq_cluster_test:labels([{{m_a, {na}}}, {{m_b, {nb}}}])");
    a.eval_ok(&labels);
    b.eval_ok(&labels);
    wait_on(&a, "eq_cluster_test:members(m_a, Labels) =:= [m_a,m_b]");
    let group = format!("{pg}, {{'$eq_cluster', eq_cluster_test}}");

    // A second join of m_b, then one leave: still a member, no callback.
    b.eval_ok(&format!("ok = {pg}:join({group}, whereis(m_b))"));
    b.eval_ok(&format!("ok = {pg}:leave({group}, whereis(m_b))"));
    // The last leave: m_a is told, with `left` (m_b is alive).
    b.eval_ok(&format!("ok = {pg}:leave({group}, whereis(m_b))"));
    wait_on(&a, "eq_cluster_test:members(m_a, Labels) =:= [m_a]");
    // Back in by hand: a join again.
    b.eval_ok(&format!("ok = {pg}:join({group}, whereis(m_b))"));
    wait_on(&a, "eq_cluster_test:members(m_a, Labels) =:= [m_a,m_b]");
    assert_eq!(
        a.eval_ok("tl(eq_cluster_test:log(m_a, Labels))"),
        "[{join,m_b,[m_a,m_b]},{leave,m_b,[m_a],left},{join,m_b,[m_a,m_b]}]"
    );

    // Cut the connection: each side sees the other leave (noconnection),
    // then, reconnected, join again.
    a.eval_ok(&format!("true = erlang:disconnect_node({nb})"));
    wait_on(&a, "eq_cluster_test:members(m_a, Labels) =:= [m_a]");
    wait_on(&b, "eq_cluster_test:members(m_b, Labels) =:= [m_b]");
    a.eval_ok(&format!("true = net_kernel:connect_node({nb})"));
    wait_on(&a, "eq_cluster_test:members(m_a, Labels) =:= [m_a,m_b]");
    wait_on(&b, "eq_cluster_test:members(m_b, Labels) =:= [m_a,m_b]");
    assert_eq!(
        a.eval_ok("lists:nthtail(4, eq_cluster_test:log(m_a, Labels))"),
        "[{leave,m_b,[m_a],noconnection},{join,m_b,[m_a,m_b]}]"
    );
    assert_eq!(
        b.eval_ok("eq_cluster_test:log(m_b, Labels)"),
        "[{joined,m_b,[m_a,m_b]},{leave,m_a,[m_b],noconnection},{join,m_a,[m_a,m_b]}]"
    );
    for (n, r) in [(&a, "m_a"), (&b, "m_b")] {
        assert_eq!(
            n.eval_ok(&format!(
                "eq_cluster_test:check(eq_cluster_test:log({r}, Labels))"
            )),
            "ok"
        );
    }
}

/// `{Id, Serial}` of the pid registered as `name` on `n`, to compare with a
/// Rust `Pid` (no variables: an eval's bindings persist).
fn pid_numbers(n: &BeamNode, name: &str) -> (u32, u32) {
    let v = n.eval_ok(&format!(
        "list_to_tuple([list_to_integer(X) || \
         X <- tl(string:lexemes(pid_to_list(whereis({name})), \"<.>\"))])"
    ));
    let (i, s) = v
        .trim_matches(|c| c == '{' || c == '}')
        .split_once(',')
        .expect("{I,S}");
    (i.parse().expect("id"), s.parse().expect("serial"))
}

fn is_pid_of(pid: &Pid, n: &BeamNode, name: &str) -> bool {
    pid.node.name == n.node_name() && (pid.id, pid.serial) == pid_numbers(n, name)
}

async fn next_event(w: &mut ClusterWatch) -> MembershipEvent {
    tokio::time::timeout(PROPAGATION, w.next())
        .await
        .expect("a membership change in time")
        .expect("the watch goes on")
}

/// A Rust process watches a cluster of BEAM members through the pg scope of
/// one node: the members at once, then a join, an exit (with its reason)
/// and a killed node, as eq_cluster's callbacks see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_process_watches_the_cluster() {
    let a = node("clwa");
    let mut b = node("clwb");
    let pg = group_module(&a);
    for n in [&a, &b] {
        start_scope(n, &pg);
    }
    let na = a.node_atom();
    a.eval_ok("{ok, _} = eq_cluster_test:start(m_a, [])");
    b.eval_ok(&format!(
        "{{ok, _}} = eq_cluster_test:start(m_b, [{{seed, {{m_a, {na}}}}}])"
    ));
    wait_on(&a, "length(eq_cluster:members(m_a)) =:= 2");

    let rust = rust_node::start("clwr").await;
    let mut w = ClusterWatch::pg(
        rust.spawn_process(),
        &pg,
        a.node_name(),
        atom("eq_cluster_test"),
        Duration::from_secs(5),
    )
    .await
    .expect("watch");
    let members = w.members();
    assert_eq!(members.len(), 2, "{members:?}");
    assert!(members.iter().any(|p| is_pid_of(p, &a, "m_a")));
    assert!(members.iter().any(|p| is_pid_of(p, &b, "m_b")));

    b.eval_ok(&format!(
        "{{ok, _}} = eq_cluster_test:start(m_c, [{{seed, {{m_a, {na}}}}}])"
    ));
    match next_event(&mut w).await {
        MembershipEvent::Joined { pid, members } => {
            assert!(is_pid_of(&pid, &b, "m_c"), "{pid:?}");
            assert_eq!(members.len(), 3);
            assert!(members.contains(&pid));
        }
        other => panic!("expected m_c joining, got {other:?}"),
    }
    let m_c = pid_numbers(&b, "m_c");

    b.eval_ok("exit(whereis(m_c), boom)");
    match next_event(&mut w).await {
        MembershipEvent::Left { pid, members, info } => {
            assert_eq!((pid.id, pid.serial), m_c);
            assert_eq!(members.len(), 2);
            assert_eq!(info, LeaveInfo::Exit(atom("boom")));
        }
        other => panic!("expected m_c leaving, got {other:?}"),
    }

    let m_b = pid_numbers(&b, "m_b");
    b.kill9();
    match next_event(&mut w).await {
        MembershipEvent::Left { pid, members, info } => {
            assert_eq!((pid.id, pid.serial), m_b);
            assert!(members.len() == 1 && is_pid_of(&members[0], &a, "m_a"));
            // Its own monitor's reason, whether pg's leave for the lost
            // node came first or not.
            assert_eq!(info, LeaveInfo::Exit(atom("noconnection")));
        }
        other => panic!("expected m_b leaving, got {other:?}"),
    }
    assert_eq!(w.members().len(), 1);
    rust.shutdown();
}

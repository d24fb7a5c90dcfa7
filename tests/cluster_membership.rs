//! eq_cluster (gen_cluster's membership behaviour on `eq_pg` process
//! groups) with real nodes: three Rust masters (`erl_quorum serve`, each a
//! groups hub) and BEAM nodes running the erl_quorum application against
//! them (its default scope `eq_pg`):
//!
//! - three Erlang nodes and an Elixir one (`use EqCluster`), members joining
//!   through every kind of seed, every member's callbacks checked (the lists
//!   they were handed, in one consistent sequence), then a member that exits
//!   and a node killed with SIGKILL reported to the others through
//!   `handle_leave` with the exit reason and `noconnection` (the time from
//!   the SIGKILL to each member's `handle_leave` is printed);
//! - seeds that answer nothing, missing scopes, clusters and scopes kept
//!   apart (a second `eq_pg` scope), options from a map;
//! - join counting, a hand-made leave (`left`), and a connection cut between
//!   two BEAM nodes (leave with `noconnection` on both sides; eq_pg's group
//!   keeps them, the hubs still reach both; a join again when the nodes
//!   reconnect);
//! - Rust processes in the cluster (`services::membership::ClusterWatch`) on
//!   a fourth Rust node in this process, listed last in the BEAM nodes'
//!   `rust_nodes` (so its hub holds their members): a Rust member seen by
//!   the BEAM members (`handle_join`, `handle_leave`) and used as a BEAM
//!   joiner's seed; a Rust watcher on its own node's hub, and one on a BEAM
//!   node's `eq_pg` scope (`ClusterWatch::pg`), seeing BEAM joins, an exit
//!   and a `kill -9`ed node.
//!
//! The sample callback module is `erlang_test/eq_cluster_test.erl`; the
//! Elixir member's module is defined on its node by the test.

mod common;
mod quorum_support;
mod rust_node;
mod services_support;

use common::BeamNode;
use erl_quorum::services::membership::{ClusterWatch, LeaveInfo, MembershipEvent};
use erl_quorum::services::{self, Groups, ServicesConfig};
use erl_quorum::term::{atom, Pid};
use erl_quorum::Node;
use quorum_support::Cluster;
use services_support::{start_app_nodes, start_cluster, Lang};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a membership change may take to reach every member here: one
/// message hop, or the distribution noticing a closed connection; generous
/// for a loaded 2-core machine.
const PROPAGATION: Duration = Duration::from_secs(10);
/// The group scope: eq_cluster's default, started by the application.
const SCOPE: &str = "eq_pg";

/// The masters and the BEAM nodes of one test; the runtime that started
/// them stays (dropping `cluster` kills the masters).
struct Env {
    _cluster: Cluster,
}

async fn start_env(prefix: &str, langs: &[Lang], extra: &[String]) -> (Env, Vec<BeamNode>) {
    let cluster = start_cluster(prefix, None).await;
    let masters: Vec<String> = cluster
        .masters
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let nodes = start_app_nodes_with(prefix, langs, &masters, extra).await;
    (Env { _cluster: cluster }, nodes)
}

/// `start_app_nodes`, with `extra` Rust nodes appended to every node's
/// `rust_nodes` (after the masters, so never the one it calls first).
async fn start_app_nodes_with(
    prefix: &str,
    langs: &[Lang],
    masters: &[String],
    extra: &[String],
) -> Vec<BeamNode> {
    if extra.is_empty() {
        return start_app_nodes(prefix, langs, masters).await;
    }
    let mut nodes = Vec::new();
    for (i, &lang) in langs.iter().enumerate() {
        let mut rust_nodes = services_support::rotated(masters, i);
        rust_nodes.extend(extra.iter().cloned());
        nodes.push(tokio::spawn(services_support::start_app_node(
            &format!("{prefix}{i}"),
            lang,
            &rust_nodes,
        )));
    }
    let mut out = Vec::new();
    for n in nodes {
        out.push(
            n.await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
        );
    }
    out
}

/// A sync test's setup: masters and BEAM nodes, on a runtime of its own.
fn sync_env(prefix: &str, langs: &[Lang]) -> (tokio::runtime::Runtime, Env, Vec<BeamNode>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (env, nodes) = rt.block_on(start_env(prefix, langs, &[]));
    (rt, env, nodes)
}

/// The group module (`eq_pg`): its name is its default scope's.
fn group_module(n: &BeamNode) -> String {
    n.eval_ok("eq_cluster:group_module()")
}

#[track_caller]
fn wait_on(n: &BeamNode, cond: &str) {
    let expr = format!(
        "ok = eq_peer:wait_until(fun() -> {cond} end, {})",
        PROPAGATION.as_millis()
    );
    let result = match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(|| {
            n.eval_timeout(&expr, PROPAGATION + Duration::from_secs(5))
        }),
        Err(_) => n.eval_timeout(&expr, PROPAGATION + Duration::from_secs(5)),
    };
    if let Err(e) = result {
        panic!("{}: `{cond}` did not become true: {e}", n.node_name());
    }
}

/// `eval_ok` from sync or async tests.
#[track_caller]
fn ev(n: &BeamNode, expr: &str) -> String {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(|| n.eval_ok(expr)),
        Err(_) => n.eval_ok(expr),
    }
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros()
}

/// The Elixir callback module (`use EqCluster`, rebar_fixture/lib): the
/// same log (and leave times) as eq_cluster_test, kept in Elixir.
const EX_MEMBER: &str = "defmodule EqClusterEx do \
  use EqCluster; \
  def init(_args), do: {:ok, []}; \
  def handle_node_joined(me, pids, log), do: {:ok, [{:joined, me, pids} | log]}; \
  def handle_join(pid, pids, log), do: {:ok, [{:join, pid, pids} | log]}; \
  def handle_leave(pid, pids, info, log) do \
    Process.put({:left_at, pid}, :erlang.system_time(:microsecond)); \
    {:ok, [{:leave, pid, pids, info} | log]} \
  end; \
  def handle_call(:eq_log, _from, log), do: {:reply, Enum.reverse(log), log}; \
  def handle_call({:left_at, pid}, _from, log), do: {:reply, Process.get({:left_at, pid}), log} \
end";

#[test]
fn members_join_through_any_seed_and_see_leaves() {
    let (_rt, _env, nodes) = sync_env(
        "cl",
        &[Lang::Erlang, Lang::Erlang, Lang::Erlang, Lang::Elixir],
    );
    let mut nodes = nodes.into_iter();
    let (a, mut b, c, e) = (
        nodes.next().expect("a"),
        nodes.next().expect("b"),
        nodes.next().expect("c"),
        nodes.next().expect("e"),
    );
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
    a.eval_ok(&format!("MB = rpc:call({nb}, erlang, whereis, [m_b])"));
    let t0 = now_us();
    b.kill9();
    let mut after = Vec::new();
    for (l, n) in [("m_a", &na), ("m_c", &nc), ("m_e", &ne)] {
        let r = format!("{{{l}, {n}}}");
        wait_on(
            &a,
            &format!("eq_cluster_test:members({r}, Labels) =:= [m_a,m_c,m_e]"),
        );
        after.push(format!(
            "{l} {} ms",
            a.eval_ok(&format!("eq_cluster_test:left_after({r}, MB, {t0})"))
        ));
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
    println!(
        "kill -9 of a member's node -> handle_leave: {}",
        after.join(", ")
    );
}

#[test]
fn seeds_clusters_and_scopes() {
    let (_rt, _env, nodes) = sync_env("cls", &[Lang::Erlang, Lang::Erlang]);
    let mut nodes = nodes.into_iter();
    let (a, b) = (nodes.next().expect("a"), nodes.next().expect("b"));
    let pg = group_module(&a);
    assert_eq!(pg, SCOPE);
    // A second eq_pg scope, under a holder that outlives the evaluator.
    for n in [&a, &b] {
        n.eval_ok("{ok, _} = eq_cluster_test:start_scope(other)");
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
    let (_rt, _env, nodes) = sync_env("clr", &[Lang::Erlang, Lang::Erlang]);
    let mut nodes = nodes.into_iter();
    let (a, b) = (nodes.next().expect("a"), nodes.next().expect("b"));
    let pg = group_module(&a);
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

/// An Erlang expression rebuilding a Rust pid.
fn pid_expr(pid: &Pid) -> String {
    let term = eetf::Term::from(pid.clone());
    let mut buf = Vec::new();
    term.encode(&mut buf).expect("encode a pid");
    let bytes: Vec<String> = buf.iter().map(u8::to_string).collect();
    format!("binary_to_term(<<{}>>)", bytes.join(","))
}

#[track_caller]
fn expect_joined(event: MembershipEvent, is_it: impl Fn(&Pid) -> bool, n: usize, who: &str) {
    match event {
        MembershipEvent::Joined { pid, members } => {
            assert!(is_it(&pid), "{who}: {pid:?} joined");
            assert_eq!(members.len(), n, "{who}: {members:?}");
            assert!(members.contains(&pid));
        }
        other => panic!("{who}: expected a join, got {other:?}"),
    }
}

#[track_caller]
fn expect_left(
    event: MembershipEvent,
    is_it: impl Fn(&Pid) -> bool,
    n: usize,
    reason: &str,
    who: &str,
) {
    match event {
        MembershipEvent::Left { pid, members, info } => {
            assert!(is_it(&pid), "{who}: {pid:?} left");
            assert_eq!(members.len(), n, "{who}: {members:?}");
            assert!(!members.contains(&pid));
            assert_eq!(info, LeaveInfo::Exit(atom(reason)), "{who}");
        }
        other => panic!("{who}: expected a leave, got {other:?}"),
    }
}

/// A Rust node in this process serving the groups hub (and erl_quorum)
/// against the masters.
async fn rust_hub(prefix: &str, masters: &[String]) -> (Node, Groups) {
    let rust = rust_node::start(prefix).await;
    let config = ServicesConfig {
        masters: masters.to_vec(),
        w: services_support::W,
        ..ServicesConfig::default()
    };
    services::start(&rust, config).expect("start the services");
    let groups = Groups::new(&rust).expect("the hub runs");
    (rust, groups)
}

/// Rust processes in a cluster of BEAM members: a Rust member (a seed for a
/// BEAM joiner; the BEAM members get handle_join and handle_leave for it),
/// a Rust watcher on its own node's hub and one on node A's eq_pg scope,
/// both seeing every join, exit and the `kill -9` of node B, with the
/// reasons eq_cluster's callbacks get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_members_and_watchers() {
    let cluster = start_cluster("clw", None).await;
    let masters: Vec<String> = cluster
        .masters
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let (rust, groups) = rust_hub("clwr", &masters).await;
    let nodes = start_app_nodes_with(
        "clw",
        &[Lang::Erlang, Lang::Erlang],
        &masters,
        &[rust.name().to_owned()],
    )
    .await;
    let mut nodes = nodes.into_iter();
    let (a, mut b) = (nodes.next().expect("a"), nodes.next().expect("b"));
    let (na, nb) = (a.node_atom(), b.node_atom());
    ev(&a, "{ok, _} = eq_cluster_test:start(m_a, [])");
    ev(
        &b,
        &format!("{{ok, _}} = eq_cluster_test:start(m_b, [{{seed, {{m_a, {na}}}}}])"),
    );
    let cluster_name = atom("eq_cluster_test");
    let group = erl_quorum::term::tuple(vec![atom("$eq_cluster"), cluster_name.clone()]);
    wait_on(&a, "length(eq_cluster:members(m_a)) =:= 2");
    rust_node::wait_until("the hub has both BEAM members", PROPAGATION, || {
        groups.members(SCOPE, &group).len() == 2
    })
    .await;

    // Two watchers: this node's hub, and node A's eq_pg scope server.
    let mut hub_watch =
        ClusterWatch::watch(rust.spawn_process(), &groups, SCOPE, cluster_name.clone())
            .await
            .expect("watch through the hub");
    let mut pg_watch = ClusterWatch::pg(
        rust.spawn_process(),
        SCOPE,
        a.node_name(),
        cluster_name.clone(),
        Duration::from_secs(5),
    )
    .await
    .expect("watch through A's eq_pg scope");
    for (w, who) in [(&hub_watch, "hub"), (&pg_watch, "pg")] {
        let members = w.members();
        assert_eq!(members.len(), 2, "{who}: {members:?}");
        assert!(members.iter().any(|p| is_pid_of(p, &a, "m_a")));
        assert!(members.iter().any(|p| is_pid_of(p, &b, "m_b")));
    }

    // A Rust member joins; its events go to `member_events`, until stopped
    // (then its process exits: it leaves).
    let member = ClusterWatch::join(rust.spawn_process(), &groups, SCOPE, cluster_name.clone())
        .await
        .expect("join");
    let rp = member.pid().clone();
    assert_eq!(member.members().len(), 3, "{:?}", member.members());
    let (events_tx, mut member_events) = tokio::sync::mpsc::unbounded_channel();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let driver = tokio::spawn(async move {
        let mut member = member;
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                event = member.next() => match event {
                    Ok(event) => { let _ = events_tx.send(event); }
                    Err(e) => panic!("the member's watch ended: {e}"),
                },
            }
        }
    });
    let is_rp = |p: &Pid| *p == rp;
    for (w, who) in [(&mut hub_watch, "hub"), (&mut pg_watch, "pg")] {
        expect_joined(next_event(w).await, is_rp, 3, who);
    }
    let labels = format!(
        "Labels = (eq_cluster_test:labels([{{m_a, {na}}}, {{m_b, {nb}}}]))#{{{} => rust}}",
        pid_expr(&rp)
    );
    for (n, r) in [(&a, "m_a"), (&b, "m_b")] {
        ev(n, &labels);
        wait_on(
            n,
            &format!("eq_cluster_test:members({r}, Labels) =:= [m_a,m_b,rust]"),
        );
        assert_eq!(
            ev(n, &format!("lists:last(eq_cluster_test:log({r}, Labels))")),
            "{join,rust,[m_a,m_b,rust]}"
        );
    }

    // A BEAM member joins through the Rust member (the hello call).
    ev(
        &b,
        &format!(
            "{{ok, _}} = eq_cluster_test:start(m_c, [{{seed, {}}}])",
            pid_expr(&rp)
        ),
    );
    assert_eq!(
        ev(
            &b,
            "hd(eq_cluster_test:log(m_c, Labels#{whereis(m_c) => m_c}))"
        ),
        "{joined,m_c,[m_a,m_b,m_c,rust]}"
    );
    let m_c = pid_numbers(&b, "m_c");
    let is_m_c = |p: &Pid| (p.id, p.serial) == m_c && p.node.name == b.node_name();
    for (w, who) in [(&mut hub_watch, "hub"), (&mut pg_watch, "pg")] {
        expect_joined(next_event(w).await, is_m_c, 4, who);
    }
    let event = tokio::time::timeout(PROPAGATION, member_events.recv()).await;
    expect_joined(
        event.expect("in time").expect("an event"),
        is_m_c,
        4,
        "member",
    );

    // It exits: every watcher and the Rust member see its reason.
    ev(&b, "exit(whereis(m_c), boom)");
    for (w, who) in [(&mut hub_watch, "hub"), (&mut pg_watch, "pg")] {
        expect_left(next_event(w).await, is_m_c, 3, "boom", who);
    }
    let event = tokio::time::timeout(PROPAGATION, member_events.recv()).await;
    expect_left(
        event.expect("in time").expect("an event"),
        is_m_c,
        3,
        "boom",
        "member",
    );

    // The Rust member exits: the BEAM members get handle_leave (normal).
    stop.send(()).expect("the member runs");
    driver.await.expect("the member's driver");
    for (w, who) in [(&mut hub_watch, "hub"), (&mut pg_watch, "pg")] {
        expect_left(next_event(w).await, is_rp, 2, "normal", who);
    }
    for (n, r) in [(&a, "m_a"), (&b, "m_b")] {
        wait_on(
            n,
            &format!("eq_cluster_test:members({r}, Labels) =:= [m_a,m_b]"),
        );
        assert_eq!(
            ev(n, &format!("lists:last(eq_cluster_test:log({r}, Labels))")),
            "{leave,rust,[m_a,m_b],normal}"
        );
    }

    // B's node is killed: noconnection everywhere.
    let m_b = pid_numbers(&b, "m_b");
    let nb_name = b.node_name().to_owned();
    let is_m_b = |p: &Pid| (p.id, p.serial) == m_b && p.node.name == nb_name;
    ev(&a, &format!("MB = rpc:call({nb}, erlang, whereis, [m_b])"));
    let (t0, t0_us) = (std::time::Instant::now(), now_us());
    b.kill9();
    let mut figures = Vec::new();
    for (w, who) in [(&mut hub_watch, "hub"), (&mut pg_watch, "pg")] {
        expect_left(next_event(w).await, is_m_b, 1, "noconnection", who);
        figures.push(format!(
            "Rust watcher ({who}) {:.1} ms",
            t0.elapsed().as_secs_f64() * 1e3
        ));
        assert!(w.members().len() == 1 && is_pid_of(&w.members()[0], &a, "m_a"));
    }
    wait_on(&a, "eq_cluster_test:members(m_a, Labels) =:= [m_a]");
    assert_eq!(
        ev(&a, "lists:last(eq_cluster_test:log(m_a, Labels))"),
        "{leave,m_b,[m_a],noconnection}"
    );
    figures.push(format!(
        "m_a {} ms",
        ev(&a, &format!("eq_cluster_test:left_after(m_a, MB, {t0_us})"))
    ));
    println!(
        "kill -9 of a member's node -> leave: {}",
        figures.join(", ")
    );
    drop(cluster);
    rust.shutdown();
}

//! Singletons and supervised names (issue 13) as BEAM code sees them: real
//! Erlang and Elixir nodes running the `rebar_fixture` application (Paxtor's
//! `name`/`lookup`/`alive?`/`whereis`, `eq_sworm` and Elixir `Sworm`,
//! `ErlQuorum.Server`) against three `erl_quorum serve` masters with W=2, a
//! 5 s session lease and a 500 ms release margin (`SINGLETONS-SPEC.md`).
//! The nodes run `erlang_test/eq_singletons.erl`: a counter gen_server that
//! reports every start (from its init) and end (terminate, and a monitor)
//! to a history recorder on a node the test never kills; the history
//! checker (`singletons_support`) reads that log.
//!
//! What each test shows:
//! - `first_use_starts_one_instance_and_every_node_agrees`: 3 BEAM nodes (one
//!   Elixir, each served by another master) call a `:temporary` counter
//!   singleton at one instant, 8 processes each: exactly one init, and the
//!   24 replies are 1..24 (one counter); its state carries across calls
//!   from every node (`GenServer.call` through the via tuple on Elixir);
//!   `lookup`, `alive?`/`is_alive`, `whereis` and the registry table agree
//!   on every node, and `lookup` never starts anything; killed, it is not
//!   restarted (nil/false everywhere) until the next call starts a fresh
//!   one. Then Sworm: a scope used from Erlang (`eq_sworm`) and Elixir (`use
//!   Sworm`): supervised and plain names, `whereis_or_register_name`,
//!   metadata, `registered/1` lists every name once, the same on every node,
//!   `unregister_name` stops the supervised process for good.
//! - `bad_input_gets_the_documented_error_and_the_registry_stays_consistent`:
//!   `start_name` with a start that returns `{error, R}`, `ignore`, raises, or
//!   crashes in init; a name taken with another spec, or registered plainly;
//!   a malformed request: each gets the documented reply, nothing stays
//!   registered (or the first holder keeps the name), and the name then
//!   starts normally. The same through the APIs as rebar_fixture documents
//!   them: a call through a Paxtor via tuple whose start fails exits
//!   `noproc` and `paxtor:whereis` raises `{start_failed, R}`, a via tuple
//!   with another spec for a running key resolves to the running process;
//!   `eq_sworm`/`Sworm` return `{error, {start_failed, R}}` and `{error,
//!   {already_registered, Pid}}`.
//! - `a_permanent_singleton_and_a_sworm_name_fail_over_after_kill9`: a
//!   `:permanent` singleton killed with `exit(P, kill)` is restarted on its
//!   node; after `kill -9` of that node, it and the Sworm names the node ran
//!   are restarted on survivors within the session lease + 1 s (measured
//!   times printed); names on other nodes keep their pids; `registered/1`
//!   agrees on every survivor; and the recorded history shows no two
//!   instances of a name alive at any moment (the checker is shown to catch
//!   an overlap in the same history, stretched).
//! - `a_leased_server_stops_when_its_lease_cannot_be_kept`: an
//!   `ErlQuorum.Server` started under a name, called by name from an Erlang
//!   node; SIGSTOP of the master that keeps its name: it stops with
//!   `{name_lost, Name}` within the session lease, the name is then free and
//!   the server starts again; one that traps exits stops the same way when
//!   every master is killed.
//! - `a_cut_off_node_stops_its_singleton_before_it_runs_elsewhere`: the
//!   node running a `:permanent` singleton and a Sworm name loses every
//!   master (a cookie they do not have) but stays up and connected to the
//!   other BEAM nodes and the recorder: its instances stop with
//!   `{name_lost, Name}` at once, the new ones start on survivors no sooner
//!   than the lease after the cut and within the lease + 1 s, its keepers
//!   start nothing more, and the history checker finds no overlap (and
//!   does in the same history, stretched).
//! - `history_checker_finds_overlaps`: the checker on known histories.
//!
//! Every time compared across nodes is CLOCK_REALTIME in microseconds
//! (`os:system_time(microsecond)` on the nodes, `SystemTime` here): one clock
//! for every process on this host.

mod common;
mod quorum_support;
mod rust_node;
mod services_support;
mod singletons_support;

use common::BeamNode;
use erl_quorum::term::{as_int, as_tuple, list_elements, parse_term};
use quorum_support::start_beam;
use services_support::{
    beval, ex, ex_expr, start_app_nodes, start_cluster_with, term_expr, wait_on, ClusterOpts,
    Lang::Elixir, Lang::Erlang,
};
use singletons_support::{
    binary_text, history, lives, lives_of, overlapping, parse_history, show, wait_lives, Life,
};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The masters' `--session-lease-ms`: the binary's minimum.
const LEASE_MS: u64 = 5_000;
/// The masters' `--release-margin-ms`.
const MARGIN_MS: u64 = 500;
/// The issue's bound on a failover after `kill -9`: the lease plus 1 s.
const FAILOVER_BOUND_MS: i64 = LEASE_MS as i64 + 1_000;
const SECOND: Duration = Duration::from_secs(1);

async fn start_masters(prefix: &str) -> quorum_support::Cluster {
    start_cluster_with(
        prefix,
        ClusterOpts {
            session_lease_ms: Some(LEASE_MS),
            release_margin_ms: Some(MARGIN_MS),
        },
    )
    .await
}

/// Now on CLOCK_REALTIME, in microseconds, as `os:system_time(microsecond)`.
fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64
}

/// Evaluates `expr` on `node` and asserts it prints as `want`.
#[track_caller]
fn check(node: &BeamNode, expr: &str, want: &str) {
    let got = beval(node, expr);
    assert_eq!(got, want, "{}: `{expr}`", node.node_name());
}

/// Elixir `code` on `node` (bindings as in [`ex`]) must print as `want`.
#[track_caller]
fn check_ex(node: &BeamNode, code: &str, bindings: &[(&str, &str)], want: &str) {
    let got = ex(node, code, bindings);
    assert_eq!(got, want, "{}: `{code}`", node.node_name());
}

/// Binds Erlang variable `var` on every node of `nodes` to the value `expr`
/// has on `from` (a pid, typically).
fn share(from: &BeamNode, expr: &str, var: &str, nodes: &[&BeamNode]) {
    let value = term_expr(from, expr);
    for n in nodes {
        beval(n, &format!("{var} = {value}"));
    }
}

/// The counter singleton's child spec, an Elixir shorthand `{Module, Arg}`:
/// `eq_singletons:child_spec({counter, Key, Rec})`, reporting to the
/// recorder on `rec`.
fn counter_spec(key: &str, rec: &BeamNode) -> String {
    format!("{{eq_singletons, {{counter, {key}, {}}}}}", rec.node_atom())
}

/// The integers of a printed Erlang list of integers.
fn ints(printed: &str) -> Vec<i64> {
    let term = parse_term(printed).unwrap_or_else(|e| panic!("{e}"));
    list_elements(&term)
        .unwrap_or_else(|| panic!("not a list: {printed}"))
        .iter()
        .map(|t| as_int(t).unwrap_or_else(|| panic!("not an integer in {printed}")))
        .collect()
}

#[test]
fn history_checker_finds_overlaps() {
    let printed = "[{100,started,<<\"k\">>,<<\"a@h/1/0\">>,<<\"undefined\">>},\
                   {200,ended,<<\"k\">>,<<\"a@h/1/0\">>,<<\"{name_lost,k}\">>},\
                   {260,down,<<\"k\">>,<<\"a@h/1/0\">>,<<\"noconnection\">>},\
                   {210,down,<<\"k\">>,<<\"a@h/1/0\">>,<<\"{name_lost,k}\">>},\
                   {300,started,<<\"k\">>,<<\"b@h/2/0\">>,<<\"undefined\">>},\
                   {150,started,<<\"j\">>,<<\"b@h/3/0\">>,<<\"undefined\">>}]";
    let all = lives(&parse_history(printed));
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].end_us, Some(210));
    assert_eq!(all[0].why, "{name_lost,k}");
    assert_eq!(all[0].node(), "a@h");
    assert_eq!(all[1].end_us, None);
    assert!(overlapping(&all).is_empty(), "{:?}", overlapping(&all));
    // The second instance starting before the first one's monitor fired.
    let mut early = all.clone();
    early[1].start_us = 205;
    assert_eq!(overlapping(&early).len(), 1);
    // A first instance still alive overlaps any later one.
    let mut alive = all.clone();
    alive[0].end_us = None;
    assert_eq!(overlapping(&alive).len(), 1);
    // Touching is not overlapping; and the checker compares with the life
    // that reaches furthest, here the second, not the first.
    let three = vec![
        Life {
            end_us: Some(1000),
            ..all[0].clone()
        },
        Life {
            start_us: 1000,
            end_us: Some(1100),
            ..all[1].clone()
        },
        Life {
            id: "c@h/4/0".into(),
            start_us: 1050,
            end_us: None,
            ..all[1].clone()
        },
    ];
    let bad = overlapping(&three);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!((bad[0].0.start_us, bad[0].1.start_us), (1000, 1050));
}

// ---- 1. first use, state, agreement, :temporary, Sworm -----------------------

/// The scoped registry name of Paxtor singleton `key`.
fn paxtor_name(key: &str) -> String {
    format!("{{'$eq_scope', paxtor, {key}}}")
}

/// An Elixir scope for Sworm, defined on the Elixir node only (the Erlang
/// nodes use it through `eq_sworm` with the module atom as the scope).
const EX_SWORM: &str = r#"
defmodule EqSw do
  use Sworm
end
:ok
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_use_starts_one_instance_and_every_node_agrees() {
    let started = Instant::now();
    let cluster = start_masters("s1").await;
    let nodes = start_app_nodes("s1_", &[Erlang, Erlang, Elixir], &cluster.master_names()).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let all = [a, b, c];
    let erlang = [a, b];
    beval(a, "eq_singletons:start_recorder()");
    let rec_atom = a.node_atom();
    let rec = [("rec", rec_atom.as_str())];
    for n in all {
        beval(
            n,
            &format!(
                "Spec = {spec}, Via = paxtor:name(race, Spec), \
                 U = paxtor:name(unused, {unused})",
                spec = counter_spec("race", a),
                unused = counter_spec("unused", a)
            ),
        );
    }
    // Elixir code gets the same via tuple from Paxtor.name/2.
    check_ex(
        c,
        "Paxtor.name(:race, {:eq_singletons, {:counter, :race, rec}}) == via",
        &[rec[0], ("via", "Via")],
        "true",
    );

    // First use from three nodes at once, 8 callers each (Elixir's through
    // GenServer.call): one init, one counter.
    let at = now_us() + 2_000_000;
    for (n, var) in [(a, "RA"), (b, "RB")] {
        beval(
            n,
            &format!(
                "{var} = eq_singletons:race_start(fun() -> gen_server:call(Via, incr) end, 8, {at})"
            ),
        );
    }
    beval(
        c,
        &format!(
            "RC = {}",
            ex_expr(
                &format!(
                    ":eq_singletons.race_start(fn -> GenServer.call(via, :incr) end, 8, {at})"
                ),
                &[("via", "Via")]
            )
        ),
    );
    let mut replies: Vec<i64> = Vec::new();
    for (n, var) in [(a, "RA"), (b, "RB"), (c, "RC")] {
        let got = beval(
            n,
            &format!("lists:sort(eq_singletons:race_result({var}, 30000))"),
        );
        let mine = ints(&got);
        assert_eq!(mine.len(), 8, "{}: {got}", n.node_name());
        replies.extend(mine);
    }
    replies.sort();
    assert_eq!(
        replies,
        (1..=24).collect::<Vec<i64>>(),
        "24 callers of one counter{}",
        cluster.logs()
    );
    check(a, "eq_singletons:starts(race)", "1");

    // The state carries across calls from every node.
    check(a, "gen_server:call(Via, incr)", "25");
    check_ex(c, "GenServer.call(via, :incr)", &[("via", "Via")], "26");
    check(b, "gen_server:call(Via, get)", "26");

    // lookup / alive? / whereis / the table agree on every node.
    beval(a, "P = paxtor:lookup(Via)");
    check(a, "is_pid(P)", "true");
    share(a, "P", "P", &[b, c]);
    let agree = "{paxtor:lookup(Via) =:= P, paxtor:is_alive(Via), paxtor:'alive?'(Via), \
                 paxtor:whereis(Via) =:= P, rust_registry:whereis_name(Name) =:= P, \
                 'Elixir.Paxtor':lookup(Via) =:= P, gen_server:call(Via, where) =:= {P, node(P)}}";
    for n in all {
        beval(n, &format!("Name = {}", paxtor_name("race")));
        wait_on(n, "paxtor:lookup(Via) =:= P", 5 * SECOND);
    }
    for n in erlang {
        check(n, agree, "{true,true,true,true,true,true,true}");
    }
    check_ex(
        c,
        "{Paxtor.lookup(via) == p, Paxtor.alive?(via), Paxtor.whereis(via) == p, \
          GenServer.whereis(via) == p}",
        &[("via", "Via"), ("p", "P")],
        "{true,true,true,true}",
    );
    // lookup and alive? never start anything.
    for n in erlang {
        check(
            n,
            "{paxtor:lookup(U), paxtor:is_alive(U)}",
            "{undefined,false}",
        );
    }
    check_ex(
        c,
        "{Paxtor.lookup(u), Paxtor.alive?(u)}",
        &[("u", "U")],
        "{nil,false}",
    );

    // :temporary: killed, it stays gone (nil/false everywhere) ...
    check(b, "exit(P, kill)", "true");
    for n in erlang {
        wait_on(n, "paxtor:lookup(Via) =:= undefined", 5 * SECOND);
        check(
            n,
            "{paxtor:is_alive(Via), rust_registry:whereis_name(Name)}",
            "{false,undefined}",
        );
    }
    wait_on(c, "'Elixir.Paxtor':lookup(Via) =:= nil", 5 * SECOND);
    check_ex(
        c,
        "{Paxtor.lookup(via), Paxtor.alive?(via)}",
        &[("via", "Via")],
        "{nil,false}",
    );
    // ... longer than a :permanent one takes to come back on its node ...
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    check(
        a,
        "{eq_singletons:starts(race), paxtor:lookup(Via)}",
        "{1,undefined}",
    );
    // ... until the next use starts a fresh one.
    check_ex(c, "GenServer.call(via, :incr)", &[("via", "Via")], "1");
    check(a, "eq_singletons:starts(race)", "2");
    for n in erlang {
        wait_on(
            n,
            "is_pid(paxtor:lookup(Via)) andalso paxtor:lookup(Via) =/= P",
            5 * SECOND,
        );
    }
    check(b, "gen_server:call(Via, get)", "1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h = history(a);
    assert!(overlapping(&h).is_empty(), "overlap:{}", show(&h));
    assert_eq!(
        lives_of(&h, "unused").len(),
        0,
        "lookup started one:{}",
        show(&h)
    );

    // ---- Sworm: one scope from Erlang (eq_sworm) and Elixir (use Sworm).
    check_ex(c, EX_SWORM, &[], "ok");
    // A supervised name from Elixir, one from Erlang, the second one
    // again through whereis_or_register_name (no second start), and a
    // plain pid with metadata.
    beval(
        c,
        &format!(
            "{{ok, N1}} = {}",
            ex_expr(
                "EqSw.register_name(:n1, :eq_singletons, :start_link, [{:counter, :n1, rec}])",
                &rec
            )
        ),
    );
    let mfa = |key: &str| {
        format!(
            "eq_singletons, start_link, [{{counter, {key}, {}}}]",
            a.node_atom()
        )
    };
    beval(
        a,
        &format!(
            "{{ok, N2}} = eq_sworm:register_name('Elixir.EqSw', n2, {})",
            mfa("n2")
        ),
    );
    share(a, "N2", "N2", &[b, c]);
    check(
        b,
        &format!(
            "eq_sworm:whereis_or_register_name('Elixir.EqSw', n2, {}) =:= {{ok, N2}}",
            mfa("n2")
        ),
        "true",
    );
    beval(
        b,
        "{_, H3} = eq_services:holder(fun() -> ok end), \
         yes = eq_sworm:register_name('Elixir.EqSw', n3, H3, #{role => plain})",
    );
    share(b, "H3", "H3", &[a, c]);
    share(c, "N1", "N1", &[a, b]);
    check(
        a,
        "{eq_singletons:starts(n1), eq_singletons:starts(n2)}",
        "{1,1}",
    );
    let want = "lists:sort([{n1, N1}, {n2, N2}, {n3, H3}])";
    for n in all {
        wait_on(
            n,
            &format!("lists:sort(eq_sworm:registered('Elixir.EqSw')) =:= {want}"),
            5 * SECOND,
        );
    }
    for n in erlang {
        check(
            n,
            "{eq_sworm:whereis_name('Elixir.EqSw', n1) =:= N1, \
              eq_sworm:lookup('Elixir.EqSw', n3) =:= {H3, #{role => plain}}, \
              eq_sworm:lookup('Elixir.EqSw', n2) =:= {N2, undefined}, \
              eq_sworm:whereis_name('Elixir.EqSw', nope), \
              gen_server:call({via, eq_sworm, {'Elixir.EqSw', n2}}, get)}",
            "{true,true,true,undefined,0}",
        );
    }
    check(
        b,
        "gen_server:call({via, eq_sworm, {'Elixir.EqSw', n2}}, incr)",
        "1",
    );
    check_ex(
        c,
        "{EqSw.whereis_name(:n2) == n2, EqSw.lookup(:n3) == {h3, %{role: :plain}}, \
          EqSw.whereis_name(:nope), Enum.sort(EqSw.registered()) == \
          Enum.sort([{:n1, n1}, {:n2, n2}, {:n3, h3}]), \
          GenServer.call({:via, :eq_sworm, {EqSw, :n1}}, :incr)}",
        &[("n1", "N1"), ("n2", "N2"), ("h3", "H3")],
        "{true,true,nil,true,1}",
    );
    // unregister_name stops a supervised process for good.
    check(a, "eq_sworm:unregister_name('Elixir.EqSw', n1)", "ok");
    for n in all {
        wait_on(
            n,
            "lists:sort(eq_sworm:registered('Elixir.EqSw')) =:= lists:sort([{n2, N2}, {n3, H3}])",
            5 * SECOND,
        );
    }
    wait_on(a, "eq_singletons:alive_ids(n1) =:= []", 5 * SECOND);
    // Longer than a restart takes.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let h = history(a);
    let n1 = lives_of(&h, "n1");
    assert_eq!(
        n1.len(),
        1,
        "n1 restarted after unregister_name:{}",
        show(&h)
    );
    assert!(
        n1[0].why.contains("shutdown"),
        "n1 ended with {:?}, not shutdown",
        n1[0].why
    );
    for n in erlang {
        check(n, "eq_sworm:whereis_name('Elixir.EqSw', n1)", "undefined");
    }
    check_ex(c, "EqSw.whereis_name(:n1)", &[], "nil");
    assert!(overlapping(&h).is_empty(), "overlap:{}", show(&h));
    eprintln!(
        "first_use_starts_one_instance_and_every_node_agrees: {:?}",
        started.elapsed()
    );
}

// ---- 2. bad input --------------------------------------------------------------

/// `rust_quorum:call({start_name, Name, Start, Opts})`, as written.
fn start_name(name: &str, start: &str, opts: &str) -> String {
    format!("rust_quorum:call({{start_name, {name}, {start}, {opts}}})")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_documented_error_and_the_registry_stays_consistent() {
    let started = Instant::now();
    let cluster = start_masters("s2").await;
    let nodes = start_app_nodes("s2_", &[Erlang, Elixir], &cluster.master_names()).await;
    let (a, c) = (&nodes[0], &nodes[1]);
    beval(a, "eq_singletons:start_recorder()");
    let good = |key: &str| format!("{{beam, {}}}", counter_spec(key, a));
    // Free on both nodes' tables and in the Rust node's view (a round trip).
    let free = |name: &str| {
        for n in [a, c] {
            wait_on(
                n,
                &format!("rust_registry:whereis_name({name}) =:= undefined"),
                5 * SECOND,
            );
        }
        check(
            a,
            &format!("rust_quorum:call({{whereis_meta, {name}}})"),
            "undefined",
        );
    };

    // Starts that fail: the reason comes back, nothing stays registered or
    // recorded, and the name then starts normally.
    let failing = [
        (
            "{bad, 1}",
            "{beam, {eq_singletons, start_error, [nope]}}",
            "{error,{start_failed,nope}}",
        ),
        (
            "{bad, 2}",
            "{beam, {eq_singletons, start_ignore, []}}",
            "{error,{start_failed,ignore}}",
        ),
        (
            "{bad, 3}",
            "{beam, {eq_singletons, start_raise, [boom]}}",
            "{error,{start_failed,{error,boom}}}",
        ),
        (
            "{bad, 4}",
            "{beam, #{id => x, start => {eq_singletons, start_error, [in_a_map]}}}",
            "{error,{start_failed,in_a_map}}",
        ),
        (
            "{bad, 5}",
            "{beam, {x, {eq_singletons, start_error, [old_tuple]}, permanent, 5000, worker, []}}",
            "{error,{start_failed,old_tuple}}",
        ),
    ];
    for (name, start, want) in failing {
        check(a, &start_name(name, start, "#{}"), want);
        free(name);
    }
    // An MFA that crashes in init: gen_server's {error, {Reason, Stack}}.
    check(
        a,
        &format!(
            "case {} of {{error, {{start_failed, {{boom, [_ | _]}}}}}} -> crashed_in_init; Other -> Other end",
            start_name(
                "{bad, 6}",
                "{beam, {eq_singletons, {crash_in_init, boom}}}",
                "#{restart => permanent}"
            )
        ),
        "crashed_in_init",
    );
    free("{bad, 6}");
    for i in 1..=6 {
        let name = format!("{{bad, {i}}}");
        check(
            c,
            &format!(
                "case {} of {{started, P{i}}} when is_pid(P{i}) -> started; Other -> Other end",
                start_name(&name, &good(&format!("bad{i}")), "#{}")
            ),
            "started",
        );
    }
    check(
        a,
        "[eq_singletons:starts(K) || K <- [bad1, bad2, bad3, bad4, bad5, bad6]]",
        "[1,1,1,1,1,1]",
    );

    // A name held: the same start again is already_started, another start
    // a conflict; the first holder keeps it.
    beval(
        a,
        &format!(
            "{{started, G}} = {}",
            start_name("good", &good("good"), "#{meta => #{id => 7}}")
        ),
    );
    share(a, "G", "G", &[c]);
    check(
        c,
        &format!(
            "{} =:= {{already_started, G}}",
            start_name("good", &good("good"), "#{}")
        ),
        "true",
    );
    check(
        c,
        &format!(
            "{} =:= {{conflict, G}}",
            start_name("good", &good("other"), "#{}")
        ),
        "true",
    );
    check(
        a,
        "{eq_singletons:starts(good), eq_singletons:starts(other), \
          rust_quorum:call({whereis_meta, good}) =:= {G, #{id => 7}}}",
        "{1,0,true}",
    );
    wait_on(c, "rust_registry:whereis_name(good) =:= G", 5 * SECOND);
    // A name registered plainly is a conflict too.
    beval(
        c,
        "{yes, Plain} = eq_services:holder(fun() -> rust_registry:register_name(plain, self()) end)",
    );
    share(c, "Plain", "Plain", &[a]);
    check(
        a,
        &format!(
            "{} =:= {{conflict, Plain}}",
            start_name("plain", &good("plain"), "#{}")
        ),
        "true",
    );
    check(a, "eq_singletons:starts(plain)", "0");
    // Metadata through register_name/4 and whereis_meta.
    check(
        a,
        "{_, H} = eq_services:holder(fun() -> rust_quorum:call({register_name, metaname, self(), {some, meta}}) end), \
         {rust_quorum:call({whereis_meta, metaname}) =:= {H, {some, meta}}, \
          rust_quorum:call({whereis_meta, plain}) =:= {Plain, undefined}}",
        "{true,true}",
    );

    // Malformed requests.
    for req in [
        "{start_name, x, not_a_start, #{}}",
        "{start_name, x, {beam, {eq_singletons, start_ignore, []}}, not_a_map}",
        "{start_name, x, {beam, {eq_singletons, start_ignore, []}}, #{restart => sometimes}}",
        "{start_name, x, {alien, y}, #{}}",
        "{start_name, x, {beam, {eq_singletons, start_ignore, []}}}",
    ] {
        check(
            a,
            &format!(
                "case rust_quorum:call({req}) of {{error, {{badarg, _}}}} -> badarg; Other -> Other end"
            ),
            "badarg",
        );
    }
    free("x");

    // The same through the APIs (rebar_fixture's docs): a call through a
    // Paxtor via tuple whose start fails exits noproc, whereis raises the
    // reason, and the name stays free; a via tuple with another spec for a
    // running key resolves to the running process (the key names a
    // singleton, as in the real Paxtor); eq_sworm and Sworm return errors.
    beval(
        a,
        "Bad = paxtor:name(bad_api, {eq_singletons, start_error, [nope]}), \
         Crash = paxtor:name(crash_api, {eq_singletons, {crash_in_init, boom}}, [{restart, permanent}])",
    );
    for via in ["Bad", "Crash"] {
        check(
            a,
            &format!(
                "case catch gen_server:call({via}, incr) of {{'EXIT', {{noproc, _}}}} -> noproc; Other -> Other end"
            ),
            "noproc",
        );
        check(
            a,
            &format!("{{paxtor:lookup({via}), paxtor:is_alive({via})}}"),
            "{undefined,false}",
        );
    }
    check(
        a,
        "case catch paxtor:whereis(Bad) of {'EXIT', {{start_failed, nope}, _}} -> raised; Other -> Other end",
        "raised",
    );
    check(
        a,
        "case catch paxtor:whereis(Crash) of {'EXIT', {{start_failed, {boom, _}}, _}} -> raised; Other -> Other end",
        "raised",
    );
    free(&paxtor_name("bad_api"));
    free(&paxtor_name("crash_api"));
    beval(
        a,
        &format!(
            "Running = paxtor:name(running, {}), R1 = paxtor:whereis(Running)",
            counter_spec("running", a)
        ),
    );
    check(
        a,
        &format!(
            "{{paxtor:whereis(paxtor:name(running, {})) =:= R1, \
              paxtor:lookup(paxtor:name(running, whatever)) =:= R1, \
              eq_singletons:starts(running), eq_singletons:starts(other_running)}}",
            counter_spec("other_running", a)
        ),
        "{true,true,1,0}",
    );
    check_ex(
        c,
        "case Sworm.register_name(EqSwBad, :n, :eq_singletons, :start_error, [:nope]) do \
           {:error, {:start_failed, :nope}} -> :start_failed; other -> other end",
        &[],
        "start_failed",
    );
    free("{'$eq_scope', 'Elixir.EqSwBad', n}");
    check(
        a,
        "case eq_sworm:register_name(s2, n, eq_singletons, start_link, [{crash_in_init, boom}]) of \
           {error, {start_failed, {boom, _}}} -> start_failed; Other -> Other end",
        "start_failed",
    );
    free("{'$eq_scope', s2, n}");
    check(a, "eq_sworm:registered(s2)", "[]");
    beval(
        a,
        &format!(
            "{{ok, W}} = eq_sworm:register_name(s2, w, eq_singletons, start_link, [{{counter, w, {}}}])",
            a.node_atom()
        ),
    );
    check(
        a,
        &format!(
            "{{eq_sworm:register_name(s2, w, eq_singletons, start_link, [{{counter, w2, {rec}}}]) =:= {{error, {{already_registered, W}}}}, \
              eq_sworm:register_name(s2, w, eq_singletons, start_link, [{{counter, w, {rec}}}]) =:= {{error, {{already_registered, W}}}}, \
              eq_sworm:register_name(s2, w, self()), \
              eq_sworm:whereis_name(s2, w) =:= W, \
              eq_singletons:starts(w), eq_singletons:starts(w2)}}",
            rec = a.node_atom()
        ),
        "{true,true,no,true,1,0}",
    );
    let h = history(a);
    assert!(overlapping(&h).is_empty(), "overlap:{}", show(&h));
    eprintln!(
        "bad_input_gets_the_documented_error_and_the_registry_stays_consistent: {:?}",
        started.elapsed()
    );
}

// ---- 3. failover after kill -9 -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_singleton_and_a_sworm_name_fail_over_after_kill9() {
    let started = Instant::now();
    let cluster = start_masters("s3").await;
    let m = cluster.master_names();
    // The recorder runs on a node without erl_quorum: no host, never killed.
    let (mut nodes, r) = tokio::join!(
        start_app_nodes("s3_", &[Erlang, Erlang, Elixir], &m),
        start_beam("r_s3")
    );
    beval(&r, "eq_singletons:start_recorder()");
    let rec_atom = r.node_atom();
    for n in &nodes {
        beval(
            n,
            &format!(
                "Via = paxtor:name(fo, {}, [{{restart, permanent}}])",
                counter_spec("fo", &r)
            ),
        );
    }
    let via = [("via", "Via")];
    check_ex(
        &nodes[2],
        "Paxtor.name(:fo, {:eq_singletons, {:counter, :fo, rec}}, restart: :permanent) == via",
        &[("rec", rec_atom.as_str()), via[0]],
        "true",
    );
    // First use from Elixir; then from Erlang.
    check_ex(&nodes[2], "GenServer.call(via, :incr)", &via, "1");
    check(&nodes[0], "gen_server:call(Via, incr)", "2");

    // Killed (not its node): restarted, on its node's host first.
    beval(&nodes[1], "{P1, _} = gen_server:call(Via, where)");
    share(&nodes[1], "P1", "P1", &[&nodes[0], &nodes[2]]);
    let t_exit = now_us();
    check(&nodes[1], "exit(P1, kill)", "true");
    let fo = wait_lives(&r, "fo", 2, 10 * SECOND);
    assert_eq!(
        fo.len(),
        2,
        "not restarted after a kill:{}{}",
        show(&fo),
        cluster.logs()
    );
    let restart_ms = (fo[1].start_us - t_exit) / 1000;
    assert_eq!(fo[0].why, "killed");
    assert_eq!(
        fo[1].node(),
        fo[0].node(),
        "restarted on another node:{}",
        show(&fo)
    );
    eprintln!("permanent singleton killed: restarted on its node {restart_ms} ms after the kill");
    assert!(restart_ms < 3_000, "restarted only after {restart_ms} ms");
    for n in &nodes {
        wait_on(
            n,
            "is_pid(paxtor:lookup(Via)) andalso paxtor:lookup(Via) =/= P1",
            5 * SECOND,
        );
    }
    check(&nodes[0], "gen_server:call(Via, incr)", "1");

    // The node that runs it is the victim. Sworm names (started on the
    // caller's node's host first): two registered from the victim, one
    // from a survivor; and a plain pid with metadata on a survivor.
    let victim_node = fo[1].node().to_owned();
    let victim = nodes
        .iter()
        .position(|n| n.node_name() == victim_node)
        .unwrap_or_else(|| panic!("the instance runs on {victim_node}, no node of ours"));
    let survivors: Vec<usize> = (0..nodes.len()).filter(|&i| i != victim).collect();
    let mut sworm_keys: Vec<(String, String)> = Vec::new(); // (key, its node)
    for (key, from) in [("sw1", victim), ("sw2", victim), ("sw3", survivors[0])] {
        let node = beval(
            &nodes[from],
            &format!(
                "{{ok, S_{key}}} = eq_sworm:register_name(s3, {key}, eq_singletons, start_link, \
                 [{{counter, {key}, {rec_atom}}}]), atom_to_list(node(S_{key}))"
            ),
        );
        sworm_keys.push((key.to_owned(), node.trim_matches('"').to_owned()));
    }
    assert_eq!(
        sworm_keys.iter().filter(|(_, n)| *n == victim_node).count(),
        2,
        "not started on the caller's node: {sworm_keys:?}"
    );
    let keeper = survivors[0];
    beval(
        &nodes[keeper],
        "{_, Plain} = eq_services:holder(fun() -> ok end), \
         yes = eq_sworm:register_name(s3, plain, Plain, {meta, 1})",
    );
    let n_names = sworm_keys.len() + 1;
    for &i in &survivors {
        wait_on(
            &nodes[i],
            &format!("length(eq_sworm:registered(s3)) =:= {n_names}"),
            5 * SECOND,
        );
    }
    let before = beval(&nodes[keeper], "eq_singletons:registered_sorted(s3)");

    // kill -9 of the node running the singleton (and some Sworm names).
    let t_kill = now_us();
    tokio::task::block_in_place(|| nodes[victim].kill9());
    let bound = Duration::from_millis(FAILOVER_BOUND_MS as u64);
    let fo = wait_lives(&r, "fo", 3, bound + 10 * SECOND);
    assert_eq!(
        fo.len(),
        3,
        "not restarted after kill -9:{}{}",
        show(&fo),
        cluster.logs()
    );
    let failover_ms = (fo[2].start_us - t_kill) / 1000;
    eprintln!(
        "permanent singleton: restarted on {} {failover_ms} ms after kill -9 \
         (lease {LEASE_MS} ms, margin {MARGIN_MS} ms, bound {FAILOVER_BOUND_MS} ms)",
        fo[2].node()
    );
    assert_ne!(fo[2].node(), victim_node);
    assert_eq!(fo[1].why, "noconnection", "{}", show(&fo));
    let mut moved = Vec::new();
    for (key, node) in &sworm_keys {
        let want = if *node == victim_node { 2 } else { 1 };
        let l = wait_lives(&r, key, want, bound + 5 * SECOND);
        assert_eq!(l.len(), want, "{key} (on {node}):{}", show(&l));
        if want == 2 {
            assert_ne!(l[1].node(), victim_node);
            let ms = (l[1].start_us - t_kill) / 1000;
            eprintln!(
                "sworm name {key}: restarted on {} {ms} ms after kill -9",
                l[1].node()
            );
            moved.push((key.clone(), ms));
        } else {
            assert_eq!(l[0].end_us, None, "{key} on a survivor ended:{}", show(&l));
        }
    }
    assert!(
        failover_ms <= FAILOVER_BOUND_MS,
        "failover took {failover_ms} ms, more than the lease + 1 s{}",
        cluster.logs()
    );
    for (key, ms) in &moved {
        assert!(*ms <= FAILOVER_BOUND_MS, "{key}: failover took {ms} ms");
    }

    // Every survivor agrees: the singleton, and every name listed once.
    let new_id = &fo[2].id;
    for &i in &survivors {
        wait_on(
            &nodes[i],
            &format!("eq_singletons:pid_id(paxtor:lookup(Via)) =:= <<\"{new_id}\">>"),
            5 * SECOND,
        );
    }
    let listing = |i: usize| beval(&nodes[i], "eq_singletons:registered_sorted(s3)");
    for &i in &survivors {
        wait_on(
            &nodes[i],
            &format!(
                "[N || {{N, Id}} <- eq_singletons:registered_sorted(s3), \
                  binary:match(Id, <<\"{victim_node}\">>) =/= nomatch] =:= [] \
                 andalso length(eq_sworm:registered(s3)) =:= {n_names}"
            ),
            5 * SECOND,
        );
    }
    let after = listing(survivors[0]);
    assert_eq!(after, listing(survivors[1]), "the survivors disagree");
    // Names that were not on the victim keep their pids.
    let parse_listing = |printed: &str| -> Vec<(String, String)> {
        list_elements(&parse_term(printed).expect("listing"))
            .expect("a list")
            .iter()
            .map(|t| match as_tuple(t) {
                Some([n, id]) => (binary_text(n).expect("name"), binary_text(id).expect("id")),
                _ => panic!("listing entry {t}"),
            })
            .collect()
    };
    let (before, after) = (parse_listing(&before), parse_listing(&after));
    assert_eq!(before.len(), n_names, "{before:?}");
    assert_eq!(after.len(), n_names, "{after:?}");
    for ((name, id0), (name1, id1)) in before.iter().zip(&after) {
        assert_eq!(name, name1);
        if id0.starts_with(&victim_node) {
            assert!(!id1.starts_with(&victim_node), "{name} still on the victim");
        } else {
            assert_eq!(id0, id1, "{name} moved though its node lived");
        }
    }
    check(
        &nodes[keeper],
        "eq_sworm:lookup(s3, plain) =:= {Plain, {meta, 1}}",
        "true",
    );
    // Calls reach the new instance from every survivor (a fresh state).
    for (k, &i) in survivors.iter().enumerate() {
        check(
            &nodes[i],
            "gen_server:call(Via, incr)",
            &(k + 1).to_string(),
        );
    }

    // No two instances of a name were ever alive at once; and the checker
    // would have seen it in this very history had the dead one lived on.
    let h = history(&r);
    let bad = overlapping(&h);
    assert!(
        bad.is_empty(),
        "two instances alive at once: {bad:?}{}",
        show(&h)
    );
    let mut stretched = h.clone();
    for l in stretched.iter_mut().filter(|l| l.node() == victim_node) {
        l.end_us = l.end_us.map(|e| e + 2 * FAILOVER_BOUND_MS * 1000);
    }
    assert!(
        !overlapping(&stretched).is_empty(),
        "the checker misses an overlap:{}",
        show(&stretched)
    );
    eprintln!(
        "a_permanent_singleton_and_a_sworm_name_fail_over_after_kill9: {:?}",
        started.elapsed()
    );
}

// ---- 4. ErlQuorum.Server -------------------------------------------------------

/// A server under a leased name: `init({trap, n})` traps exits if asked.
const EX_LEASED: &str = r#"
defmodule EqLeased do
  use ErlQuorum.Server
  def init({trap, n}) do
    if trap, do: Process.flag(:trap_exit, true)
    {:ok, n}
  end
  def handle_call(:get, _from, n), do: {:reply, n, n}
  def handle_call(:whoami, _from, n), do: {:reply, self(), n}
end
:ok
"#;

/// On the Elixir node `c`: starts EqLeased under `name` inside a holder
/// (start_link links to it), binds `var` to it there and on `a`, has `a`'s
/// recorder watch it (as `var` in lower case), and calls it by name from
/// `a`.
fn start_leased(c: &BeamNode, a: &BeamNode, var: &str, name: &str, trap: bool, n: u32) {
    beval(
        c,
        &format!(
            "{{{{ok, {var}}}, _}} = eq_services:holder(fun() -> \
               'Elixir.EqLeased':start_link({name}, {{{trap}, {n}}}, []) end)"
        ),
    );
    share(c, var, var, &[a]);
    beval(
        a,
        &format!("eq_singletons:watch({}, {var})", var.to_lowercase()),
    );
    wait_on(
        a,
        &format!("rust_registry:whereis_name({name}) =:= {var}"),
        5 * SECOND,
    );
    check(
        a,
        &format!("gen_server:call({{via, rust_registry, {name}}}, get)"),
        &n.to_string(),
    );
}

/// Waits until the server `a`'s recorder watches as `key` is down; its
/// life.
fn wait_leased_down(a: &BeamNode, key: &str, timeout: Duration) -> Life {
    let gone = tokio::task::block_in_place(|| {
        a.eval_timeout(
            &format!(
                "eq_peer:wait_until(fun() -> eq_singletons:alive_ids({key}) =:= [] end, {})",
                timeout.as_millis()
            ),
            timeout + 5 * SECOND,
        )
    });
    let h = history(a);
    let l = lives_of(&h, key);
    assert!(
        gone.is_ok() && l.len() == 1,
        "{key} still running after {timeout:?}:{}",
        show(&h)
    );
    l[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_server_stops_when_its_lease_cannot_be_kept() {
    let started = Instant::now();
    let mut cluster = start_masters("s4").await;
    let m = cluster.master_names();
    let nodes = start_app_nodes("s4_", &[Erlang, Elixir], &m).await;
    let (a, c) = (&nodes[0], &nodes[1]);
    beval(a, "eq_singletons:start_recorder()");
    check_ex(c, EX_LEASED, &[], "ok");
    start_leased(c, a, "S1", "{leased, 1}", false, 7);

    // SIGSTOP the master that keeps its name: told within the lease.
    let keeper = beval(c, "eq_singletons:owner_node_of(S1)");
    let k = m
        .iter()
        .position(|n| common::atom(n) == keeper)
        .unwrap_or_else(|| {
            panic!(
                "S1's name is kept by {keeper}: {:?}",
                beval(c, "rust_quorum:status()")
            )
        });
    let t_stop = now_us();
    cluster.masters[k].sigstop();
    let life = wait_leased_down(a, "s1", Duration::from_millis(LEASE_MS + 2_000));
    cluster.masters[k].sigcont();
    let told_ms = (life.end_us.expect("ended") - t_stop) / 1000;
    eprintln!(
        "leased server: stopped {told_ms} ms after its master was SIGSTOPped ({})",
        life.why
    );
    assert_eq!(life.why, "{name_lost,{leased,1}}");
    assert!(told_ms < LEASE_MS as i64, "told after {told_ms} ms");
    // The name is free again, on both nodes, and the server starts again.
    for n in [a, c] {
        wait_on(
            n,
            "rust_registry:whereis_name({leased, 1}) =:= undefined",
            Duration::from_millis(LEASE_MS + MARGIN_MS + 5_000),
        );
    }
    start_leased(c, a, "S1b", "{leased, 1}", false, 9);

    // One that traps exits stops the same way when every master is gone.
    start_leased(c, a, "S2", "{leased, 2}", true, 8);
    let t_kill = now_us();
    for master in cluster.masters.iter_mut() {
        master.kill9();
    }
    let life = wait_leased_down(a, "s2", Duration::from_millis(LEASE_MS + 2_000));
    let told_ms = (life.end_us.expect("ended") - t_kill) / 1000;
    eprintln!(
        "leased server (trapping exits): stopped {told_ms} ms after every master died ({})",
        life.why
    );
    assert_eq!(life.why, "{name_lost,{leased,2}}");
    assert!(told_ms < LEASE_MS as i64, "told after {told_ms} ms");
    let life = wait_leased_down(a, "s1b", SECOND);
    assert_eq!(life.why, "{name_lost,{leased,1}}");
    eprintln!(
        "a_leased_server_stops_when_its_lease_cannot_be_kept: {:?}",
        started.elapsed()
    );
}

// ---- 5. a node cut off from every master ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_node_stops_its_singleton_before_it_runs_elsewhere() {
    let started = Instant::now();
    let cluster = start_masters("s5").await;
    let m = cluster.master_names();
    let (nodes, r) = tokio::join!(
        start_app_nodes("s5_", &[Erlang, Elixir, Erlang], &m),
        start_beam("r_s5")
    );
    beval(&r, "eq_singletons:start_recorder()");
    let rec_atom = r.node_atom();
    // A :permanent singleton and a Sworm name, both started on node 0 (its
    // host first); node 1 calls the singleton through the via tuple.
    beval(
        &nodes[0],
        &format!(
            "Via = paxtor:name(cut, {}, [{{restart, permanent}}]), 1 = gen_server:call(Via, incr), \
             {{ok, _}} = eq_sworm:register_name(s5, swc, eq_singletons, start_link, \
                                                [{{counter, swc, {rec_atom}}}])",
            counter_spec("cut", &r)
        ),
    );
    check_ex(
        &nodes[1],
        "via = Paxtor.name(:cut, {:eq_singletons, {:counter, :cut, rec}}, restart: :permanent); \
         GenServer.call(via, :incr)",
        &[("rec", rec_atom.as_str())],
        "2",
    );
    let h = history(&r);
    for key in ["cut", "swc"] {
        let l = lives_of(&h, key);
        assert!(
            l.len() == 1 && l[0].node() == nodes[0].node_name(),
            "{key} not on {}:{}",
            nodes[0].node_name(),
            show(&h)
        );
    }

    // Node 0 loses every master for good (a cookie they do not have), but
    // stays connected to the other BEAM nodes and the recorder: its
    // instances live on, and must stop before they run anywhere else.
    let masters: Vec<String> = m.iter().map(|n| common::atom(n)).collect();
    let t_cut = now_us();
    beval(
        &nodes[0],
        &format!(
            "[eq_services_faults:cut(M) || M <- [{}]]",
            masters.join(",")
        ),
    );
    let bound = Duration::from_millis(FAILOVER_BOUND_MS as u64);
    let mut moved = Vec::new();
    for key in ["cut", "swc"] {
        let l = wait_lives(&r, key, 2, bound + 10 * SECOND);
        assert_eq!(
            l.len(),
            2,
            "{key} not restarted:{}{}",
            show(&l),
            cluster.logs()
        );
        let (old, new) = (&l[0], &l[1]);
        let told_ms = (old.end_us.expect("the cut-off one ended") - t_cut) / 1000;
        let moved_ms = (new.start_us - t_cut) / 1000;
        eprintln!(
            "{key}: the cut-off instance stopped {told_ms} ms after the cut ({}), \
             the new one started on {} {moved_ms} ms after the cut",
            old.why,
            new.node()
        );
        assert!(
            old.why.starts_with("{name_lost,"),
            "{key}: the cut-off instance ended with {}",
            old.why
        );
        assert_ne!(new.node(), nodes[0].node_name());
        // The serving node holds a lost owner's name for the lease (and
        // the margin): the guard on the owner's node must have told it.
        assert!(
            moved_ms >= LEASE_MS as i64,
            "{key}: restarted {moved_ms} ms after the cut, within the lease"
        );
        moved.push((key, moved_ms));
    }
    // Nothing more: the cut-off keeper's own restart attempts reach no one.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let h = history(&r);
    for key in ["cut", "swc"] {
        assert_eq!(lives_of(&h, key).len(), 2, "{key}:{}", show(&h));
    }
    let bad = overlapping(&h);
    assert!(
        bad.is_empty(),
        "two instances alive at once: {bad:?}{}",
        show(&h)
    );
    // The same history with the cut-off instances ending later than they
    // did (past the new ones' start): the checker sees the overlap.
    let mut stretched = h.clone();
    for l in stretched
        .iter_mut()
        .filter(|l| l.node() == nodes[0].node_name())
    {
        l.end_us = l.end_us.map(|e| e + 2 * FAILOVER_BOUND_MS * 1000);
    }
    assert_eq!(overlapping(&stretched).len(), 2, "{}", show(&stretched));
    // The survivors reach the new instance.
    check(
        &nodes[2],
        "gen_server:call(paxtor:lookup(paxtor:name(cut, x, [{restart, permanent}])), incr)",
        "1",
    );
    check_ex(
        &nodes[1],
        "GenServer.call({:via, :eq_sworm, {:s5, :swc}}, :incr)",
        &[],
        "1",
    );
    for (key, ms) in moved {
        assert!(
            ms <= FAILOVER_BOUND_MS,
            "{key}: restarted {ms} ms after the cut, more than the lease + 1 s"
        );
    }
    eprintln!(
        "a_cut_off_node_stops_its_singleton_before_it_runs_elsewhere: {:?}",
        started.elapsed()
    );
}

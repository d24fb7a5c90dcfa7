//! Leader election (issue 14, `eq_leader`, locks_leader's callbacks and
//! API) with real Erlang and Elixir nodes against three `erl_quorum serve`
//! masters (W=2, a 5 s session lease, a 500 ms release margin). The members
//! run `erlang_test/eq_election.erl`, which logs every term (`elected`,
//! each leader action, `surrendered`) to a recorder on a node the test
//! never kills; `election_support` checks that history.
//!
//! - `five_candidates_elect_one_leader_and_fail_over_after_kill9`: 5
//!   candidates on 3 BEAM nodes (one Elixir) and a worker: exactly one
//!   leader, every other member surrendered with its sync; leader_call
//!   (from Erlang and Elixir), leader_cast, broadcast/from_leader,
//!   candidates/workers; a candidate joining later gets the sync through
//!   `elected(State, Info, Pid)`; a Rust candidate (`services::election::
//!   Election` on a Rust node in this process) joins, is synced, calls the
//!   BEAM leader, is called from BEAM code and gets broadcasts; `kill -9` of
//!   the leader's node elects a new leader within the lease + 1 s
//!   (measured); when the BEAM candidates stop, the Rust candidate leads
//!   and a BEAM worker joining then is synced by it and calls it; the
//!   history shows never two leaders, and fencing tokens on every term that
//!   only grow.
//! - `a_leader_frozen_past_its_lease_surrenders`: SIGSTOP of the leader's
//!   node for longer than the lease: another leader is elected meanwhile;
//!   on SIGCONT the frozen leader surrenders without acting on the
//!   leader_call waiting in its mailbox (forwarded to the new leader), and
//!   follows the new leader; the history checker agrees.
//! - `history_checker_finds_overlaps`: the checker on known histories.

mod common;
mod election_support;
mod quorum_support;
mod rust_node;
mod services_support;

use common::BeamNode;
use election_support::{check, parse_history, show, Record};
use erl_quorum::services::election::{Callbacks, Elected, Election, Info, LeaderReply, Role};
use erl_quorum::term::{as_atom, as_tuple, atom, int, tuple, Pid, Term};
use erl_quorum::Node;
use quorum_support::start_beam;
use services_support::{
    beval, ex, start_app_nodes, start_cluster_with, wait_on, ClusterOpts, Lang::Elixir,
    Lang::Erlang,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LEASE_MS: u64 = 5_000;
const MARGIN_MS: u64 = 500;
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

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[track_caller]
fn check_eq(node: &BeamNode, expr: &str, want: &str) {
    let got = beval(node, expr);
    assert_eq!(got, want, "{}: `{expr}`", node.node_name());
}

fn history(r: &BeamNode) -> Vec<Record> {
    parse_history(&beval(r, "eq_election:history()"))
}

/// Waits until the history has an `elected` after `after_us`; its record.
fn wait_elected(r: &BeamNode, after_us: i64, timeout: Duration) -> Option<Record> {
    let until = Instant::now() + timeout;
    loop {
        let h = history(r);
        if let Some(e) = h.iter().find(|e| e.event == "elected" && e.t_us > after_us) {
            return Some(e.clone());
        }
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every member (node, name) settled on one leader; that leader's
/// `{Node, Name}` as printed.
fn wait_settled(nodes: &[BeamNode], members: &[(usize, &str)], timeout: Duration) -> String {
    let until = Instant::now() + timeout;
    loop {
        let seen: Vec<String> = members
            .iter()
            .map(|(i, name)| beval(&nodes[*i], &format!("eq_election:settled({name})")))
            .collect();
        if seen[0] != "unsettled" && seen.iter().all(|s| *s == seen[0]) {
            return seen[0].clone();
        }
        if Instant::now() > until {
            panic!("members did not settle on one leader: {seen:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many members lead (their callback state says `leading`).
fn leading_count(nodes: &[BeamNode], members: &[(usize, &str)]) -> usize {
    members
        .iter()
        .filter(|(i, name)| {
            beval(
                &nodes[*i],
                &format!("maps:get(leading, eq_election:state({name}))"),
            ) == "true"
        })
        .count()
}

/// The Rust candidate's callbacks: eq_election's, in Rust (the same
/// history records, the same sync and answers).
struct RustMember {
    sender: erl_quorum::process::Process,
    rec: String,
    node: String,
    leading: bool,
    got: Arc<Mutex<Vec<Term>>>,
}

impl RustMember {
    fn log(&self, info: &Info, event: &str) {
        let token = info.token.map_or(atom("undefined"), |t| int(t as i64));
        let record = tuple(vec![
            int(now_us()),
            atom(&self.node),
            Term::from(info.me.clone()),
            atom(event),
            token,
        ]);
        self.sender.send(
            ("eq_elect_rec", self.rec.as_str()),
            tuple(vec![atom("log"), record]),
        );
    }

    fn sync(info: &Info) -> Term {
        let token = info.token.map_or(atom("undefined"), |t| int(t as i64));
        tuple(vec![atom("sync_from"), Term::from(info.me.clone()), token])
    }
}

impl Callbacks for RustMember {
    fn elected(&mut self, info: &Info, joiner: Option<&Pid>) -> Elected {
        match joiner {
            None => {
                self.log(info, "elected");
                self.leading = true;
                Elected::All(Self::sync(info))
            }
            Some(_) => Elected::Reply(Self::sync(info)),
        }
    }
    fn surrendered(&mut self, _sync: Option<&Term>, info: &Info) {
        if self.leading {
            self.log(info, "surrendered");
            self.leading = false;
        }
    }
    fn handle_leader_call(&mut self, request: &Term, info: &Info) -> LeaderReply {
        let (reply, broadcast) = match as_tuple(request) {
            Some([what, x]) if as_atom(what) == Some("echo") => {
                self.log(info, "acted");
                (tuple(vec![Term::from(info.me.clone()), x.clone()]), None)
            }
            Some([what, m]) if as_atom(what) == Some("bcast") => {
                self.log(info, "acted");
                (atom("ok"), Some(m.clone()))
            }
            _ => (atom("pong"), None),
        };
        LeaderReply { reply, broadcast }
    }
    fn handle_leader_cast(&mut self, msg: &Term, info: &Info) -> Option<Term> {
        self.log(info, "acted");
        match as_tuple(msg) {
            Some([what, m]) if as_atom(what) == Some("bcast") => Some(m.clone()),
            _ => None,
        }
    }
    fn from_leader(&mut self, msg: &Term, _info: &Info) {
        self.got.lock().expect("got").push(msg.clone());
    }
    fn handle_down(&mut self, _member: &Pid, _info: &Info) -> Option<Term> {
        None
    }
}

/// A Rust candidate of group `eq_election` on `node`, logging to the
/// recorder on `rec`; its pid is put on the recorder as `rust`.
fn start_rust_member(
    node: &Node,
    rec: &BeamNode,
    masters: &[String],
) -> (Election, Arc<Mutex<Vec<Term>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let cb = RustMember {
        sender: node.spawn_process(),
        rec: rec.node_name().to_owned(),
        node: node.name().to_owned(),
        leading: false,
        got: got.clone(),
    };
    let e = Election::start(
        node,
        atom("eq_election"),
        Role::Candidate,
        masters.to_vec(),
        cb,
    )
    .expect("serving nodes given");
    let put = tuple(vec![atom("put"), atom("rust"), Term::from(e.pid().clone())]);
    node.spawn_process()
        .send(("eq_elect_rec", rec.node_name()), put);
    (e, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_candidates_elect_one_leader_and_fail_over_after_kill9() {
    let cluster = start_masters("el1").await;
    let m = cluster.master_names();
    let (mut nodes, r) = tokio::join!(
        start_app_nodes("el1_", &[Erlang, Erlang, Elixir], &m),
        start_beam("r_el1")
    );
    beval(&r, "eq_election:start_recorder()");
    let rec = r.node_atom();
    // 5 candidates: two on each Erlang node, one on the Elixir node
    // (started from Elixir), and a worker.
    for (i, name) in [(0, "c1"), (0, "c2"), (1, "c3"), (1, "c4")] {
        beval(
            &nodes[i],
            &format!("is_pid(eq_election:start({name}, {rec}, candidate))"),
        );
    }
    let started = ex(
        &nodes[2],
        "{:ok, pid} = :eq_leader.start_link(:c5, :eq_election, rec, role: :candidate, resource: :eq_election)\n\
         Process.unlink(pid)",
        &[("rec", rec.as_str())],
    );
    assert_eq!(started, "true");
    beval(
        &nodes[1],
        &format!("is_pid(eq_election:start(w1, {rec}, worker))"),
    );
    let members: Vec<(usize, &str)> = vec![
        (0, "c1"),
        (0, "c2"),
        (1, "c3"),
        (1, "c4"),
        (2, "c5"),
        (1, "w1"),
    ];
    let leader = wait_settled(&nodes, &members, 20 * SECOND);
    assert_eq!(leading_count(&nodes, &members), 1, "leader {leader}");
    eprintln!("elected: {leader}");
    // The worker never leads.
    assert!(!leader.contains("w1"), "a worker leads: {leader}");

    // candidates/1 and workers/1 agree everywhere (5 and 1).
    for (i, name) in &members {
        wait_on(
            &nodes[*i],
            &format!(
                "length(eq_leader:candidates({name})) =:= 5 andalso length(eq_leader:workers({name})) =:= 1"
            ),
            5 * SECOND,
        );
    }
    // leader_call from Erlang (a follower) and from Elixir.
    check_eq(
        &nodes[1],
        "{L3, 7} = eq_leader:leader_call(c3, {echo, 7}), L3 =:= eq_leader:leader(c3)",
        "true",
    );
    assert_eq!(
        ex(
            &nodes[2],
            "{l, 8} = :eq_leader.leader_call(:c5, {:echo, 8}, 5000)\nl == :eq_leader.leader(:c5)",
            &[]
        ),
        "true"
    );
    // noreply + eq_leader:reply/2.
    check_eq(
        &nodes[0],
        "{later, L1} = eq_leader:leader_call(c1, later), L1 =:= eq_leader:leader(c1)",
        "true",
    );
    // broadcast from handle_leader_call, and from handle_leader_cast.
    check_eq(&nodes[1], "eq_leader:leader_call(c4, {bcast, hello})", "ok");
    check_eq(&nodes[0], "eq_leader:leader_cast(c2, {bcast, hi})", "ok");
    check_eq(&nodes[0], "eq_leader:leader_cast(c2, {set, 42})", "ok");
    for (i, name) in &members {
        let n = &nodes[*i];
        let me_leads = beval(n, &format!("maps:get(leading, eq_election:state({name}))"));
        let cond = if me_leads == "true" {
            format!("maps:get(val, eq_election:state({name})) =:= 42")
        } else {
            format!("lists:sort(maps:get(got, eq_election:state({name}))) =:= [hello, hi]")
        };
        wait_on(n, &cond, 5 * SECOND);
    }

    // A candidate joining later: synced through elected(State, Info, Pid).
    beval(
        &nodes[2],
        &format!("is_pid(eq_election:start(c6, {rec}, candidate))"),
    );
    let mut all = members.clone();
    all.push((2, "c6"));
    assert_eq!(wait_settled(&nodes, &all, 10 * SECOND), leader);
    check_eq(
        &nodes[2],
        "{sync_from, L6, _} = maps:get(sync, eq_election:state(c6)), L6 =:= eq_leader:leader(c6)",
        "true",
    );
    for (i, name) in &all {
        wait_on(
            &nodes[*i],
            &format!("length(eq_leader:candidates({name})) =:= 6"),
            5 * SECOND,
        );
    }
    assert_eq!(leading_count(&nodes, &all), 1);

    // A Rust candidate joins the group: synced by the BEAM leader; a
    // leader_call through it, and through it from BEAM code; broadcasts
    // reach it.
    let rust = rust_node::start("el1_rust").await;
    let (member, rust_got) = start_rust_member(&rust, &r, &m);
    let rec_q = r.node_atom();
    // (The pid travels Rust node -> recorder, the get another way.)
    wait_on(
        &nodes[1],
        &format!("is_pid(eq_election:get({rec_q}, rust))"),
        5 * SECOND,
    );
    check_eq(
        &nodes[1],
        &format!("Rust = eq_election:get({rec_q}, rust), is_pid(Rust)"),
        "true",
    );
    wait_on(
        &nodes[1],
        "eq_leader:leader(Rust) =:= eq_leader:leader(c3) andalso length(eq_leader:candidates(c3)) =:= 7",
        10 * SECOND,
    );
    let reply = member
        .leader_call(tuple(vec![atom("echo"), int(11)]), 5 * SECOND)
        .await
        .expect("leader_call through the Rust member");
    let info = member.info().await.expect("info");
    assert_eq!(
        reply,
        tuple(vec![
            Term::from(info.leader.clone().expect("a leader")),
            int(11)
        ])
    );
    assert_eq!(info.candidates.len(), 7, "{info:?}");
    check_eq(
        &nodes[1],
        "{L11, 12} = eq_leader:leader_call(Rust, {echo, 12}), L11 =:= eq_leader:leader(c3)",
        "true",
    );
    check_eq(
        &nodes[1],
        "eq_leader:leader_call(c3, {bcast, to_rust})",
        "ok",
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        rust_got.lock().expect("got").contains(&atom("to_rust")),
        "the Rust member got no broadcast"
    );

    // kill -9 of the leader's node.
    let victim = nodes
        .iter()
        .position(|n| leader.contains(n.node_name()))
        .unwrap_or_else(|| panic!("leader {leader} on no node of ours"));
    let victim_name = nodes[victim].node_name().to_owned();
    let t_kill = now_us();
    tokio::task::block_in_place(|| nodes[victim].kill9());
    let bound = Duration::from_millis(FAILOVER_BOUND_MS as u64);
    let next = tokio::task::block_in_place(|| wait_elected(&r, t_kill, bound + 10 * SECOND))
        .unwrap_or_else(|| panic!("no new leader after kill -9{}", cluster.logs()));
    let failover_ms = (next.t_us - t_kill) / 1000;
    eprintln!(
        "kill -9 of {victim_name}: {} elected {failover_ms} ms later (bound {FAILOVER_BOUND_MS})",
        next.node
    );
    assert!(
        failover_ms <= FAILOVER_BOUND_MS,
        "failover took {failover_ms} ms"
    );
    assert_ne!(next.node, victim_name);
    let survivors: Vec<(usize, &str)> = all.iter().filter(|(i, _)| *i != victim).cloned().collect();
    let new_leader = wait_settled(&nodes, &survivors, 10 * SECOND);
    assert_ne!(new_leader, leader);
    assert_eq!(leading_count(&nodes, &survivors), 1);
    // The dead are gone from the lists; leader_call reaches the new leader.
    // (+1: the Rust candidate.)
    let alive_cands = survivors.iter().filter(|(_, n)| n.starts_with('c')).count() + 1;
    for (i, name) in &survivors {
        let n = &nodes[*i];
        wait_on(
            n,
            &format!("length(eq_leader:candidates({name})) =:= {alive_cands}"),
            10 * SECOND,
        );
        check_eq(
            n,
            &format!("{{L, 9}} = eq_leader:leader_call({name}, {{echo, 9}}), L =:= eq_leader:leader({name})"),
            "true",
        );
    }

    // The BEAM candidates left stop: the Rust candidate leads, and a BEAM
    // worker joining now is synced by it and calls it.
    // The followers first (so the lock passes once, leader to Rust), then
    // the leader, timed when its monitor fired (its term's end).
    let mut leader_at = None;
    for (i, name) in &survivors {
        if name.starts_with('c') {
            let leads = beval(
                &nodes[*i],
                &format!("maps:get(leading, eq_election:state({name}))"),
            );
            if leads == "true" {
                leader_at = Some((*i, *name));
            } else {
                beval(&nodes[*i], &format!("exit(whereis({name}), kill)"));
            }
        }
    }
    let (li, lname) = leader_at.expect("a BEAM leader among the survivors");
    let t_stop_beam: i64 = beval(
        &nodes[li],
        &format!(
            "P = whereis({lname}), M = monitor(process, P), exit(P, kill), \
             receive {{'DOWN', M, _, _, _}} -> erlang:system_time(microsecond) end"
        ),
    )
    .parse()
    .expect("a time");
    let me = member.pid().clone();
    let until = Instant::now() + 10 * SECOND;
    while member.info().await.expect("info").leader.as_ref() != Some(&me) {
        assert!(Instant::now() < until, "the Rust candidate did not lead");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (wi, _) = survivors[0];
    beval(
        &nodes[wi],
        &format!("is_pid(eq_election:start(w9, {rec}, worker))"),
    );
    wait_on(
        &nodes[wi],
        "case maps:get(sync, eq_election:state(w9)) of {sync_from, L9, _} -> node(L9) =/= node(); _ -> false end",
        10 * SECOND,
    );
    check_eq(
        &nodes[wi],
        &format!(
            "{{L99, 99}} = eq_leader:leader_call(w9, {{echo, 99}}), node(L99) =:= '{}'",
            rust.name()
        ),
        "true",
    );

    let h = history(&r);
    let killed = [
        (victim_name.clone(), t_kill),
        (nodes[li].node_name().to_owned(), t_stop_beam),
    ];
    let terms = check(&h, &killed).unwrap_or_else(|e| panic!("{e}{}", show(&h)));
    assert_eq!(terms.len(), 3, "{}", show(&h));
    assert_eq!(terms[2].node, rust.name(), "{}", show(&h));
    // The serving nodes give fencing tokens: every term has one (and
    // `check` saw them grow).
    assert!(terms.iter().all(|t| t.token.is_some()), "{terms:?}");
    eprintln!("terms: {terms:?}");
    drop(member);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_past_its_lease_surrenders() {
    let cluster = start_masters("el2").await;
    let m = cluster.master_names();
    let (nodes, r) = tokio::join!(
        start_app_nodes("el2_", &[Erlang, Erlang, Erlang], &m),
        start_beam("r_el2")
    );
    beval(&r, "eq_election:start_recorder()");
    let rec = r.node_atom();
    for n in &nodes {
        beval(
            n,
            &format!("is_pid(eq_election:start(c, {rec}, candidate))"),
        );
    }
    // Review E1: members of a module without a catch-all handle_info/3
    // (group eq_strict) must survive winning and finding: eq_leader's
    // helpers' {'EXIT', _, normal} must not reach the callback module.
    for n in &nodes[..2] {
        beval(n, "is_pid(eq_election_strict:start(s))");
    }
    let members: Vec<(usize, &str)> = (0..nodes.len()).map(|i| (i, "c")).collect();
    let leader = wait_settled(&nodes, &members, 20 * SECOND);
    for n in &nodes[..2] {
        wait_on(n, "is_pid(catch eq_leader:leader(s))", 20 * SECOND);
    }
    tokio::time::sleep(SECOND).await;
    for n in &nodes[..2] {
        check_eq(
            n,
            "{is_pid(whereis(s)), catch eq_leader:leader_call(s, ping, 5000)}",
            "{true,pong}",
        );
    }
    let victim = nodes
        .iter()
        .position(|n| leader.contains(n.node_name()))
        .expect("leader node");
    let other = (victim + 1) % nodes.len();
    let victim_atom = nodes[victim].node_atom();

    let t_stop = now_us();
    nodes[victim].sigstop();
    let next = tokio::task::block_in_place(|| {
        wait_elected(&r, t_stop, Duration::from_millis(LEASE_MS + 10_000))
    });
    // A leader_call sent to the frozen leader, waiting in its mailbox.
    beval(
        &nodes[other],
        &format!(
            "persistent_term:put(late, none), \
             is_pid(spawn(fun() -> persistent_term:put(late, catch eq_leader:leader_call({{c, {victim_atom}}}, {{echo, late}}, 30000)) end))"
        ),
    );
    tokio::time::sleep(Duration::from_millis(
        (LEASE_MS + 2_000).saturating_sub(((now_us() - t_stop) / 1000).max(0) as u64),
    ))
    .await;
    nodes[victim].sigcont();
    let next = next.unwrap_or_else(|| panic!("no new leader while frozen{}", cluster.logs()));
    let elected_ms = (next.t_us - t_stop) / 1000;
    eprintln!(
        "SIGSTOP of the leader's node: {} elected {elected_ms} ms later",
        next.node
    );
    assert_ne!(next.node, nodes[victim].node_name());

    // The late call is answered by the new leader, not the frozen one.
    wait_on(
        &nodes[other],
        "persistent_term:get(late) =/= none",
        20 * SECOND,
    );
    check_eq(
        &nodes[other],
        &format!(
            "{{L, late}} = persistent_term:get(late), \
             L =:= eq_leader:leader(c) andalso node(L) =/= {victim_atom}"
        ),
        "true",
    );
    let new_leader = wait_settled(&nodes, &members, 20 * SECOND);
    assert_ne!(new_leader, leader);
    assert_eq!(leading_count(&nodes, &members), 1);
    let h = history(&r);
    let surrendered = h
        .iter()
        .find(|e| e.event == "surrendered" && e.node == nodes[victim].node_name());
    assert!(
        surrendered.is_some(),
        "the frozen leader did not surrender:{}",
        show(&h)
    );
    let terms = check(&h, &[]).unwrap_or_else(|e| panic!("{e}{}{}", show(&h), cluster.logs()));
    assert!(terms.iter().all(|t| t.token.is_some()), "{terms:?}");
    eprintln!("terms: {terms:?}");
}

fn rec(t: i64, node: &str, pid: &str, ev: &str, tok: Option<i64>) -> Record {
    Record {
        t_us: t,
        node: node.into(),
        pid: pid.into(),
        event: ev.into(),
        token: tok,
    }
}

#[test]
fn history_checker_finds_overlaps() {
    let good = vec![
        rec(10, "a", "p1", "elected", Some(1)),
        rec(15, "a", "p1", "acted", Some(1)),
        rec(20, "a", "p1", "surrendered", Some(1)),
        rec(30, "b", "p2", "elected", Some(2)),
        rec(35, "b", "p2", "acted", Some(2)),
    ];
    assert_eq!(check(&good, &[]).map(|t| t.len()), Ok(2));
    // The killed node's open term ends at the kill.
    let killed = vec![
        rec(10, "a", "p1", "elected", Some(1)),
        rec(30, "b", "p2", "elected", Some(2)),
    ];
    assert!(check(&killed, &[("a".into(), 25)]).is_ok());
    assert!(check(&killed, &[("a".into(), 31)]).is_err());
    assert!(check(&killed, &[]).is_err());
    // An action after the surrender; a token that does not grow.
    let mut late = good.clone();
    late.push(rec(25, "a", "p1", "acted", Some(1)));
    assert!(check(&late, &[]).is_err());
    let mut same_token = good.clone();
    same_token[3].token = Some(1);
    assert!(check(&same_token, &[]).is_err());
    // One pid's next term after a reentrant re-grant keeps its token.
    let mut regrant = good.clone();
    regrant[3].pid = "p1".into();
    regrant[3].node = "a".into();
    regrant[4].pid = "p1".into();
    regrant[3].token = Some(1);
    regrant[4].token = Some(1);
    assert!(check(&regrant, &[]).is_ok());
    // No tokens (serving nodes without fencing): only the order is checked.
    let untokened: Vec<Record> = good
        .iter()
        .cloned()
        .map(|mut r| {
            r.token = None;
            r
        })
        .collect();
    assert!(check(&untokened, &[]).is_ok());
}

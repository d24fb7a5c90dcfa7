//! Election benchmark (`eq_leader`, issue 14): the failover time after
//! `kill -9` of the leader's node, until the next candidate's `elected`,
//! as a distribution over several runs; and `eq_leader:leader_call`
//! against a plain `gen_server:call` to a server on the same node as the
//! leader, from the same caller node in the same run (ratio, CPU per op).
//!
//! ```text
//! cargo bench --bench election                   # OTP 25, about 1 min
//! EQ_OTP=27 cargo bench --bench election
//! EQ_ELBENCH_FAILOVERS=1 EQ_BENCH_ROUNDS=1 cargo bench --bench election   # smoke run
//! ```
//!
//! Knobs: `EQ_BENCH_ROUNDS` (5), `EQ_ELBENCH_CALLS` calls per measurement
//! (5000), `EQ_ELBENCH_FAILOVERS` kill -9 runs (5), `EQ_ELBENCH_LEASE_MS`
//! the masters' `--session-lease-ms` (5000), `EQ_ELBENCH_MARGIN_MS` their
//! `--release-margin-ms` (500).
//!
//! One process tree: three `erl_quorum serve` masters (W = 2); a caller
//! node g1 (a worker member `w` of group `bench`, and the recorder), a
//! leader node g2 (the candidate that leads `bench`, and a plain
//! gen_server `eq_elect_plain`). A leader_call from g1 goes to the local
//! member `w`, which forwards it to the leader on g2, which answers the
//! caller directly: one local hop more than the plain call. For each
//! failover run, a fresh node leads group `fo{i}` with a candidate on g2
//! queued behind it, and is killed with SIGKILL.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/masters.rs"]
mod masters;
#[path = "support/setup.rs"]
mod setup;
#[path = "support/stats.rs"]
mod stats;

use common::BeamNode;
use cpu::{cpu_ticks, loadavg, CLOCK_TICKS_PER_S};
use masters::MasterProcs;
use setup::{env_parse, eval_for, parse_ints};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const COOKIE: &str = "eq_elbench_cookie";
const EVAL_TIMEOUT: Duration = common::EVAL_TIMEOUT.saturating_mul(4);

fn eval(node: &BeamNode, expr: &str) -> String {
    eval_for(node, expr, EVAL_TIMEOUT)
}

fn start_app_node(prefix: &str, rust_nodes: &str) -> BeamNode {
    let node = BeamNode::start(&common::unique_name(prefix), COOKIE, &[])
        .unwrap_or_else(|e| panic!("start BEAM node {prefix}: {e}"));
    eval(
        &node,
        &format!(
            "Sub = eq_services:start_app({rust_nodes}, 20000), \
             ok = eq_services:wait_status(Sub, 20000), Sub"
        ),
    );
    node
}

fn system_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Waits until `cond` (an Erlang expression) is true on `node`.
fn wait(node: &BeamNode, cond: &str, timeout_ms: u64) {
    eval(
        node,
        &format!("ok = eq_peer:wait_until(fun() -> {cond} end, {timeout_ms})"),
    );
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    let started = Instant::now();
    let otp = common::Otp::from_env();
    let rounds: usize = env_parse("EQ_BENCH_ROUNDS").unwrap_or(5);
    let calls: u64 = env_parse("EQ_ELBENCH_CALLS").unwrap_or(5000);
    let failovers: usize = env_parse("EQ_ELBENCH_FAILOVERS").unwrap_or(5);
    let lease_ms: u64 = env_parse("EQ_ELBENCH_LEASE_MS").unwrap_or(5000);
    let margin_ms: u64 = env_parse("EQ_ELBENCH_MARGIN_MS").unwrap_or(500);
    eprintln!(
        "election bench: OTP {}, {rounds} rounds of {calls} calls, {failovers} failovers, \
         lease {lease_ms} ms, margin {margin_ms} ms, load average {}",
        otp.release(),
        loadavg()
    );
    common::ensure_epmd().expect("epmd");
    let extra = [
        "--session-lease-ms".to_string(),
        lease_ms.to_string(),
        "--release-margin-ms".to_string(),
        margin_ms.to_string(),
    ];
    let masters = MasterProcs::start_with_args("el_m", COOKIE, Some(1), 3, &[], &extra);
    let names: Vec<String> = masters.names().iter().map(|n| common::atom(n)).collect();
    let rust_nodes = format!("[{}]", names.join(","));
    let g1 = start_app_node("el_g1", &rust_nodes);
    let g2 = start_app_node("el_g2", &rust_nodes);
    let release = eval(&g1, "erlang:system_info(otp_release)");
    eval(&g1, "eq_election:start_recorder()");
    let rec = g1.node_atom();

    // The leader on g2 first, then the worker on g1.
    eval(&g2, "is_pid(eq_election:start(l, none, candidate, bench))");
    wait(&g2, "eq_leader:leader(l) =:= whereis(l)", 20_000);
    eval(&g2, "is_pid(eq_election:plain_server())");
    eval(&g1, "is_pid(eq_election:start(w, none, worker, bench))");
    wait(&g1, "is_pid(eq_leader:leader(w))", 20_000);
    let g2_atom = g2.node_atom();
    // Warm-up.
    eval(&g1, "eq_election:leader_calls(w, 500, x)");
    eval(&g1, &format!("eq_election:plain_calls({g2_atom}, 500, x)"));

    let ours = [g1.os_pid(), g2.os_pid()];
    let ticks = || ours.iter().map(|p| cpu_ticks(*p).unwrap_or(0)).sum::<u64>();
    let measure = |expr: &str| -> (f64, f64) {
        let t0 = ticks();
        let out = eval(&g1, expr);
        let t1 = ticks();
        let v = parse_ints(expr, &out);
        let us_per_op = v[0] as f64 / calls as f64;
        let cpu_us_per_op = (t1 - t0) as f64 / CLOCK_TICKS_PER_S * 1e6 / calls as f64;
        (us_per_op, cpu_us_per_op)
    };
    let leader_expr = format!("eq_election:leader_calls(w, {calls}, x)");
    let plain_expr = format!("eq_election:plain_calls({g2_atom}, {calls}, x)");
    let (mut ours_us, mut plain_us, mut ours_cpu, mut plain_cpu, mut ratios) =
        (vec![], vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let (l, p) = if round % 2 == 0 {
            let l = measure(&leader_expr);
            (l, measure(&plain_expr))
        } else {
            let p = measure(&plain_expr);
            (measure(&leader_expr), p)
        };
        eprintln!(
            "round {}: leader_call {:.1} µs/op, gen_server:call {:.1} µs/op",
            round + 1,
            l.0,
            p.0
        );
        ours_us.push(l.0);
        plain_us.push(p.0);
        ours_cpu.push(l.1);
        plain_cpu.push(p.1);
        ratios.push(p.0 / l.0);
    }

    // Failovers.
    let mut times = Vec::new();
    for i in 0..failovers {
        let mut v = start_app_node(&format!("el_v{i}"), &rust_nodes);
        let group = format!("fo{i}");
        eval(
            &v,
            &format!("is_pid(eq_election:start(fo, {rec}, candidate, {group}))"),
        );
        wait(&v, "eq_leader:leader(fo) =:= whereis(fo)", 20_000);
        let name = format!("fo{i}");
        eval(
            &g2,
            &format!("is_pid(eq_election:start({name}, {rec}, candidate, {group}))"),
        );
        wait(
            &g2,
            &format!("is_pid(eq_leader:leader({name})) andalso eq_leader:leader({name}) =/= whereis({name})"),
            20_000,
        );
        let t_kill = system_us();
        v.kill9();
        let until = Instant::now() + Duration::from_secs(30);
        let g2_name = g2.node_name().to_owned();
        let mut got = None;
        while Instant::now() < until {
            let h = eval(
                &g1,
                &format!(
                    "[T || {{T, N, _, elected, _}} <- eq_election:history(), T > {t_kill}, N =:= '{g2_name}']"
                ),
            );
            let first = h
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .next()
                .and_then(|t| t.trim().parse::<i64>().ok());
            if let Some(t) = first {
                got = Some((t - t_kill) as f64 / 1000.0);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match got {
            Some(ms) => {
                eprintln!("failover {}: {ms:.0} ms", i + 1);
                times.push(ms);
            }
            None => eprintln!("failover {}: no new leader within 30 s", i + 1),
        }
        eval(&g2, &format!("exit(whereis({name}), kill)"));
    }

    let med = stats::median;
    println!("\n## Election (OTP {release}, {rounds} rounds of {calls} calls; medians)\n");
    println!("| case | µs per call | CPU µs per call (caller + leader node) |");
    println!("|---|---|---|");
    println!(
        "| `eq_leader:leader_call` (via the local member) | {:.1} | {:.1} |",
        med(ours_us.clone()),
        med(ours_cpu.clone())
    );
    println!(
        "| `gen_server:call` to the leader's node | {:.1} | {:.1} |",
        med(plain_us.clone()),
        med(plain_cpu.clone())
    );
    let (lo, hi) = stats::range(&ratios);
    println!(
        "\nratio (gen_server:call time / leader_call time, > 1: leader_call faster): \
         {:.2} (rounds {lo:.2}–{hi:.2})",
        med(ratios.clone())
    );
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    println!(
        "\nfailover after kill -9 of the leader's node ({} runs, lease {lease_ms} ms + margin \
         {margin_ms} ms): min {:.0} ms, p50 {:.0} ms, max {:.0} ms (bound: lease + 1 s = {} ms)",
        sorted.len(),
        pct(&sorted, 0.0),
        pct(&sorted, 0.5),
        pct(&sorted, 1.0),
        lease_ms + 1000
    );
    println!("\ntotal run time {:.1} s", started.elapsed().as_secs_f64());
    drop(masters);
    let _ = g1.stop();
    let _ = g2.stop();
}

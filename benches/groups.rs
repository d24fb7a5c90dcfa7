//! Process groups benchmark: `eq_pg` (rebar_fixture, kept current by the
//! `eq_groups` hubs of the Rust nodes) against OTP's `pg`, on the same BEAM
//! node in the same run.
//!
//! ```text
//! cargo bench --bench groups                  # OTP 25
//! EQ_OTP=27 cargo bench --bench groups        # OTP 27
//! EQ_BENCH_SCALE=0.3 EQ_BENCH_ROUNDS=2 cargo bench --bench groups   # a quick smoke run
//! ```
//!
//! One process tree: three `erl_quorum serve` masters (each with its hub),
//! a Rust serving node in this process (a fourth hub, whose `Groups` is read
//! from Rust), and two connected BEAM nodes g1 and g2 running the
//! `erl_quorum` application and a `pg` scope. The measured group has the
//! same 10 BEAM members (5 on g1, 5 on g2) in `pg` and in `eq_pg`, and 2 Rust
//! members more in `eq_pg`.
//!
//! Per round (`EQ_BENCH_ROUNDS`, 5), each pair back to back, the order
//! flipping every round; figures are medians over the rounds, ratios the
//! median of the rounds' ratios, > 1 meaning eq_pg is better:
//! - `get_members` on g1, calls per second (and CPU per call), and of a
//!   group with no member;
//! - `join` + `leave` of one member on g1, one after the other, latency of
//!   the pair and the CPU all our processes spent per pair (g1, g2, the
//!   masters: `pg` tells g2 directly, eq_pg tells every hub, which tells g2);
//! - propagation: from the start of a `join` on g1 until a monitor on g2
//!   is told of it (median and 90th percentile of 50).
//!
//! And once: `Groups::members` from Rust, per second.

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
use cpu::{cpu_ticks, loadavg, CpuMeter, CLOCK_TICKS_PER_S};
use erl_quorum::services::{self, Groups, ServicesConfig};
use erl_quorum::term::atom;
use erl_quorum::Node;
use masters::MasterProcs;
use setup::{env_parse, eval_for, parse_ints, runtime};
use stats::{median, ratio_summary, Better};
use std::time::{Duration, Instant};

const COOKIE: &str = "eq_gbench_cookie";
const EVAL_TIMEOUT: Duration = common::EVAL_TIMEOUT.saturating_mul(4);
/// The group both measure: the same 10 BEAM members in `pg` and `eq_pg`.
const GROUP: &str = "{bench, g}";
/// eq_pg only: the same 10 and 2 Rust members.
const MIXED: &str = "{bench, mixed}";

fn eval(node: &BeamNode, expr: &str) -> String {
    eval_for(node, expr, EVAL_TIMEOUT)
}

/// Every OS process of ours: their CPU ticks summed.
fn ticks(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|p| cpu_ticks(*p)).sum()
}

/// One measured loop on g1: (operations, wall microseconds, CPU
/// microseconds of all our processes).
fn measure(g1: &BeamNode, ours: &[u32], expr: &str) -> (f64, f64, f64) {
    let t0 = ticks(ours);
    let out = parse_ints(expr, &eval(g1, expr));
    let cpu_us = (ticks(ours) - t0) as f64 / CLOCK_TICKS_PER_S * 1e6;
    (out[0] as f64, out[1] as f64, cpu_us)
}

fn percentile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

#[derive(Default)]
struct Figures {
    /// Per round: calls/s, CPU µs per call.
    reads: [Vec<f64>; 2],
    read_cpu: [Vec<f64>; 2],
    /// Per round: calls/s of get_members of a group with no member.
    reads_empty: [Vec<f64>; 2],
    /// Per round: µs per join+leave, CPU µs per join+leave.
    cycle: [Vec<f64>; 2],
    cycle_cpu: [Vec<f64>; 2],
    /// The part of `cycle_cpu` spent by the Rust nodes.
    cycle_rust_cpu: [Vec<f64>; 2],
    /// Every sample: µs from join to sight on g2.
    propagation: [Vec<f64>; 2],
}

fn main() {
    let rounds: usize = env_parse("EQ_BENCH_ROUNDS").unwrap_or(5).max(1);
    let scale: f64 = env_parse("EQ_BENCH_SCALE").unwrap_or(1.0);
    let ms = ((700.0 * scale).round() as u64).max(50);
    let otp = common::Otp::from_env();
    eprintln!(
        "groups bench: OTP {} (EQ_OTP), {rounds} rounds of {ms} ms, load average {}",
        otp.release(),
        loadavg()
    );
    common::ensure_epmd().expect("epmd");

    let masters = MasterProcs::start("gb_m", COOKIE, Some(1));
    let names = masters.names().to_vec();
    let rt = runtime(Some(1));
    let (node, groups) = rt.block_on(async {
        let name = format!("{}@127.0.0.1", common::unique_name("gb_rust"));
        let node = Node::start(setup::node_config(name, COOKIE))
            .await
            .expect("start the Rust node");
        let mut all = names.clone();
        all.push(node.name().to_owned());
        // Not a master (no locker here): it serves on the three masters'
        // quorum, and its hub pushes to theirs.
        let config = ServicesConfig {
            masters: names.clone(),
            w: 2,
            peers: all,
            ..ServicesConfig::default()
        };
        services::start(&node, config).expect("start the services");
        let groups = Groups::new(&node).expect("the hub");
        (node, groups)
    });

    let start_beam = |prefix: &str| {
        BeamNode::start(&common::unique_name(prefix), COOKIE, &[])
            .unwrap_or_else(|e| panic!("start BEAM node {prefix}: {e}"))
    };
    let g1 = start_beam("gb_g1");
    let g2 = start_beam("gb_g2");
    let mut rust_nodes = names.clone();
    rust_nodes.push(node.name().to_owned());
    let list = format!(
        "[{}]",
        rust_nodes
            .iter()
            .map(|n| common::atom(n))
            .collect::<Vec<_>>()
            .join(",")
    );
    for g in [&g1, &g2] {
        eval(g, &format!("eq_services:start_app({list}, 20000)"));
        eval(g, "{ok, _} = pg:start(pg), ok");
    }
    eval(
        &g1,
        &format!("pong = net_adm:ping({})", common::atom(g2.node_name())),
    );
    let release = eval(&g1, "erlang:system_info(otp_release)");

    // The members: 5 on each BEAM node in both, 2 Rust ones in eq_pg.
    for g in [&g1, &g2] {
        eval(
            g,
            &format!(
                "M = eq_groups:members(5), ok = pg:join(pg, {GROUP}, M), \
                 ok = eq_pg:join(eq_pg, {GROUP}, M), ok = eq_pg:join(eq_pg, {MIXED}, M)"
            ),
        );
    }
    let rust_members: Vec<_> = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..2 {
            let p = node.spawn_process();
            let group = erl_quorum::term::tuple(vec![atom("bench"), atom("mixed")]);
            groups
                .join("eq_pg", group, &[p.pid().clone()])
                .await
                .expect("join");
            v.push(p);
        }
        v
    });
    let lengths = format!(
        "{{length(pg:get_members(pg, {GROUP})), length(eq_pg:get_members(eq_pg, {GROUP})), \
         length(eq_pg:get_members(eq_pg, {MIXED}))}}"
    );
    let settled = g1.eval_timeout(
        &format!("eq_peer:wait_until(fun() -> {lengths} =:= {{10, 10, 12}} end, 20000)"),
        EVAL_TIMEOUT,
    );
    if settled.is_err() {
        panic!("the groups did not settle: {}", eval(&g1, &lengths));
    }
    let mut ours = masters.os_pids();
    ours.extend([g1.os_pid(), g2.os_pid(), std::process::id()]);
    // The Rust nodes alone: the masters and this process.
    let mut rust_pids = masters.os_pids();
    rust_pids.push(std::process::id());

    let mods = ["pg", "eq_pg"];
    let mut f = Figures::default();
    let meter = CpuMeter::start(&ours);
    for round in 0..rounds {
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for &i in &order {
            let m = mods[i];
            let (n, us, cpu) = measure(
                &g1,
                &ours,
                &format!("eq_groups:bench_reads({m}, {{{m}, {GROUP}}}, {ms})"),
            );
            f.reads[i].push(n / us * 1e6);
            f.read_cpu[i].push(cpu / n);
        }
        for &i in &order {
            let m = mods[i];
            let expr = format!("eq_groups:bench_reads({m}, {{{m}, {{bench, nobody}}}}, {ms})");
            let (n, us, _) = measure(&g1, &ours, &expr);
            f.reads_empty[i].push(n / us * 1e6);
        }
        for &i in &order {
            let m = mods[i];
            let group = format!("{{bench, cycle, {round}}}");
            let rust0 = ticks(&rust_pids);
            let (n, us, cpu) = measure(
                &g1,
                &ours,
                &format!("eq_groups:bench_join_leave({m}, {{{m}, {group}}}, {ms})"),
            );
            let rust_cpu = (ticks(&rust_pids) - rust0) as f64 / CLOCK_TICKS_PER_S * 1e6;
            f.cycle[i].push(us / n);
            f.cycle_cpu[i].push(cpu / n);
            f.cycle_rust_cpu[i].push(rust_cpu / n);
        }
        for &i in &order {
            let m = mods[i];
            let group = format!("{{bench, prop, {round}}}");
            let g1_self = eval(&g1, "term_to_binary(self())");
            eval(
                &g2,
                &format!("W{round}_{i} = eq_groups:start_watcher({m}, {{{m}, {group}}}, binary_to_term({g1_self})), ok"),
            );
            let times = eval(
                &g1,
                &format!("eq_groups:propagation({m}, {{{m}, {group}}}, 50, undefined)"),
            );
            eval(&g2, &format!("W{round}_{i} ! stop, ok"));
            let parsed: Vec<f64> = times
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .filter_map(|t| t.trim().parse().ok())
                .collect();
            f.propagation[i].extend(parsed);
        }
    }
    let foreign = meter.foreign_share(&ours);
    let expr = format!("eq_groups:bench_reads(eq_pg, {{eq_pg, {MIXED}}}, {ms})");
    let (n, us, _) = measure(&g1, &ours, &expr);
    let mixed_reads = n / us;

    // Rust reads of the mixed group.
    let group = erl_quorum::term::tuple(vec![atom("bench"), atom("mixed")]);
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_millis(ms) {
        for _ in 0..100 {
            std::hint::black_box(groups.members("eq_pg", &group));
        }
        n += 100;
    }
    let rust_reads = n as f64 / t.elapsed().as_secs_f64();
    let rust_len = groups.members("eq_pg", &group).len();

    println!(
        "\n## groups bench: OTP {release}, {rounds} rounds of {ms} ms, load {}",
        loadavg()
    );
    if let Some(share) = foreign {
        println!(
            "CPU used by other processes during the measurements: {:.0}%",
            share * 100.0
        );
    }
    println!("| case | pg | eq_pg | ratio (median, range; >1: eq_pg better) |");
    println!("|---|---|---|---|");
    let row = |label: &str, unit: &str, better: Better, v: &[Vec<f64>; 2]| {
        let (r, lo, hi) = ratio_summary(better, &v[0], &v[1]);
        println!(
            "| {label} | {:.3} {unit} | {:.3} {unit} | {r:.2} ({lo:.2}..{hi:.2}) |",
            median(v[0].clone()),
            median(v[1].clone())
        );
    };
    let scaled = |v: &[Vec<f64>; 2], k: f64| -> [Vec<f64>; 2] {
        [
            v[0].iter().map(|x| x * k).collect(),
            v[1].iter().map(|x| x * k).collect(),
        ]
    };
    row(
        "get_members (the same 10 members)",
        "M calls/s",
        Better::Higher,
        &scaled(&f.reads, 1e-6),
    );
    row(
        "get_members of a group with no member",
        "M calls/s",
        Better::Higher,
        &scaled(&f.reads_empty, 1e-6),
    );
    row(
        "get_members, CPU per call",
        "µs",
        Better::Lower,
        &f.read_cpu,
    );
    row("join + leave, latency", "µs", Better::Lower, &f.cycle);
    row(
        "join + leave, CPU of all our processes",
        "µs",
        Better::Lower,
        &f.cycle_cpu,
    );
    println!(
        "join + leave, CPU of the Rust nodes alone: pg {:.3} µs, eq_pg {:.3} µs",
        median(f.cycle_rust_cpu[0].clone()),
        median(f.cycle_rust_cpu[1].clone())
    );
    for (i, m) in mods.iter().enumerate() {
        let v = f.propagation[i].clone();
        println!(
            "propagation {m}: join on g1 seen by a monitor on g2: median {:.0} µs, p90 {:.0} µs ({} samples)",
            median(v.clone()),
            percentile(v.clone(), 0.9),
            v.len()
        );
    }
    println!("eq_pg:get_members of 10 BEAM + 2 Rust members: {mixed_reads:.2} M calls/s");
    println!(
        "Rust Groups::members ({rust_len} members): {:.2} M calls/s",
        rust_reads / 1e6
    );
    drop(rust_members);
    drop(masters);
}

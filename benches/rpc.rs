//! rpc benchmark: `rpc:call` and `erpc:call` from a BEAM client into the
//! Rust node against the same calls into a BEAM node, in the same run.
//!
//! ```text
//! cargo bench --bench rpc                  # OTP 25
//! EQ_OTP=27 cargo bench --bench rpc        # OTP 27
//! EQ_BENCH_SCALE=0.1 EQ_BENCH_ROUNDS=1 cargo bench --bench rpc   # a smoke run
//! ```
//!
//! Client A runs `erlang_test/eq_rpc_bench.erl` against server B (a BEAM
//! node) and against the Rust node, alternating per round (the order flips
//! every round); each figure is the median over the rounds. The call is
//! `erlang:node/0`, which both answer at once, so the figure is the cost of
//! the rpc machinery itself: a `SPAWN_REQUEST`, a process, its exit and the
//! monitor's `DOWN`. Above 1.0: the Rust node is faster. CPU per call is
//! each peer's OS process time over the calls it served.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/setup.rs"]
mod setup;
#[path = "support/stats.rs"]
mod stats;

use common::{BeamNode, Otp};
use cpu::{cpu_ticks, CLOCK_TICKS_PER_S};
use setup::{env_parse, env_workers, eval_for, node_config, parse_ints, runtime};
use stats::{median, ratio_summary, Better};
use std::time::Duration;

const COOKIE: &str = "eq_bench_cookie";
const EVAL_TIMEOUT: Duration = common::EVAL_TIMEOUT.saturating_mul(6);

/// One measurement: the rpc flavour, and sequential or 50 callers.
#[derive(Clone, Copy)]
struct Row {
    label: &'static str,
    expr: fn(&str, u64) -> String,
    ops: u64,
}

struct Peer {
    node_atom: String,
    os_pid: u32,
    /// Calls per second, per row, per round.
    rates: Vec<Vec<f64>>,
    /// CPU ticks and calls, per row, summed over the rounds.
    ticks: Vec<u64>,
    calls: Vec<u64>,
}

impl Peer {
    fn new(node_atom: String, os_pid: u32, rows: usize) -> Peer {
        Peer {
            node_atom,
            os_pid,
            rates: vec![Vec::new(); rows],
            ticks: vec![0; rows],
            calls: vec![0; rows],
        }
    }

    fn measure(&mut self, client: &BeamNode, i: usize, row: &Row) {
        let before = cpu_ticks(self.os_pid).unwrap_or(0);
        let expr = (row.expr)(&self.node_atom, row.ops);
        let printed = eval_for(client, &expr, EVAL_TIMEOUT);
        let after = cpu_ticks(self.os_pid).unwrap_or(0);
        let v = parse_ints(&expr, &printed);
        let (ops, us) = (v[0], v[1].max(1));
        self.rates[i].push(ops as f64 * 1e6 / us as f64);
        self.ticks[i] += after.saturating_sub(before);
        self.calls[i] += ops;
    }

    fn cpu_us(&self, i: usize) -> f64 {
        self.ticks[i] as f64 * 1e6 / CLOCK_TICKS_PER_S / self.calls[i].max(1) as f64
    }
}

fn main() {
    let scale: f64 = env_parse("EQ_BENCH_SCALE").unwrap_or(1.0);
    let n = |base: f64| ((base * scale).round() as u64).max(1);
    let rounds: usize = env_parse("EQ_BENCH_ROUNDS").unwrap_or(7).max(1);
    let otp = Otp::from_env();
    let rows = [
        Row {
            label: "rpc:call, sequential",
            expr: |node, ops| format!("eq_rpc_bench:seq(rpc, {node}, {ops}, 200)"),
            ops: n(5_000.0),
        },
        Row {
            label: "rpc:call, 50 callers",
            expr: |node, ops| format!("eq_rpc_bench:par(rpc, {node}, 50, {}, 200)", ops / 50),
            ops: n(20_000.0),
        },
        Row {
            label: "erpc:call, sequential",
            expr: |node, ops| format!("eq_rpc_bench:seq(erpc, {node}, {ops}, 200)"),
            ops: n(5_000.0),
        },
        Row {
            label: "erpc:call, 50 callers",
            expr: |node, ops| format!("eq_rpc_bench:par(erpc, {node}, 50, {}, 200)", ops / 50),
            ops: n(20_000.0),
        },
    ];

    let rt = runtime(env_workers("EQ_BENCH_WORKERS", Some(1)));
    let name = format!("{}@127.0.0.1", common::unique_name("bench_rpc_rs"));
    let node = rt
        .block_on(erl_quorum::Node::start(node_config(name, COOKIE)))
        .expect("start the Rust node");
    common::ensure_epmd().expect("epmd");
    let client = BeamNode::start(&common::unique_name("bench_rpc_a"), COOKIE, &[]).expect("A");
    let server = BeamNode::start(&common::unique_name("bench_rpc_b"), COOKIE, &[]).expect("B");
    let release = eval_for(&client, "erlang:system_info(otp_release)", EVAL_TIMEOUT);
    eprintln!("rpc bench: OTP {} (EQ_OTP), {rounds} rounds", otp.release());

    let mut beam = Peer::new(server.node_atom(), server.os_pid(), rows.len());
    let mut rust = Peer::new(common::atom(node.name()), std::process::id(), rows.len());
    for round in 0..rounds {
        for (i, row) in rows.iter().enumerate() {
            if round % 2 == 0 {
                beam.measure(&client, i, row);
                rust.measure(&client, i, row);
            } else {
                rust.measure(&client, i, row);
                beam.measure(&client, i, row);
            }
        }
    }

    println!("\n## rpc into the node (OTP {release}), calls/s, median of {rounds} rounds\n");
    println!(
        "| measurement | BEAM | Rust | ratio (min-max) | CPU µs/call BEAM | CPU µs/call Rust |"
    );
    println!("|---|---|---|---|---|---|");
    for (i, row) in rows.iter().enumerate() {
        let (ratio, lo, hi) = ratio_summary(Better::Higher, &beam.rates[i], &rust.rates[i]);
        println!(
            "| {} | {:.0} | {:.0} | **{ratio:.2}** ({lo:.2}-{hi:.2}) | {:.1} | {:.1} |",
            row.label,
            median(beam.rates[i].clone()),
            median(rust.rates[i].clone()),
            beam.cpu_us(i),
            rust.cpu_us(i),
        );
    }
    node.shutdown();
    drop(client);
    drop(server);
}

//! Distribution benchmark: the Rust node against the BEAM, measured in the
//! same run.
//!
//! ```text
//! cargo bench --bench dist                 # OTP 25
//! EQ_OTP=27 cargo bench --bench dist       # OTP 27 (erl27 chroot, root only)
//! EQ_BENCH_SCALE=0.1 EQ_BENCH_ROUNDS=1 cargo bench --bench dist   # a quick smoke run
//! EQ_BENCH_WORKERS=0 cargo bench --bench dist   # the Rust node on one tokio worker per core
//! EQ_DBENCH_ONLY=par,oneway cargo bench --bench dist   # only these measurements (for profiling)
//! ```
//!
//! One process tree: this binary runs the Rust node (echo gen_server `echo`
//! and counting sink `sink`) and starts two BEAM nodes through the test
//! harness: a client A that runs the measuring loops of
//! `erlang_test/eq_bench.erl`, and a server B with the same `echo` and `sink`
//! written in Erlang. A runs every measurement against B and against the
//! Rust node alike, addressing them only by node name, so the peer is the
//! only difference. Measurements alternate between the two targets (the
//! order flips every round) and each figure is the median over the rounds.
//!
//! The output is a markdown table of BEAM figure, Rust figure and their
//! ratio, where a ratio above 1.0 means the Rust node is the faster peer,
//! and a second table of the CPU time each peer's OS process spent per
//! call or message. On a 2-core machine node A saturates the cores in the
//! throughput tests, so a peer's efficiency shows mostly as CPU it leaves
//! to A; the second table measures it directly and is far less noisy.

#[path = "../tests/common/mod.rs"]
mod common;
// The tests' Echo server: the same contract as `eq_peer:start_echo/1`.
#[path = "../tests/rust_node/mod.rs"]
mod rust_node;
// Not `mod report;`: that would be benches/report.rs, which cargo would
// take for a bench target of its own.
#[path = "support/cpu.rs"]
mod cpu;
#[path = "dist/report.rs"]
mod report;
#[path = "support/setup.rs"]
mod setup;
#[path = "support/stats.rs"]
mod stats;

use common::{BeamNode, Otp};
use erl_quorum::process::{Mail, Process};
use erl_quorum::term::{as_tuple, atom, int, is_atom, tuple, Term};
use erl_quorum::Node;
use report::{cpu_ticks, CpuMeter, CLOCK_TICKS_PER_S};
use setup::{env_parse, env_workers, eval_for, parse_ints};
use std::time::{Duration, Instant};

const COOKIE: &str = "eq_bench_cookie";
/// How long one measuring expression may take before the run is abandoned:
/// a round's loops take seconds, far more than the harness's default allows.
const EVAL_TIMEOUT: Duration = common::EVAL_TIMEOUT.saturating_mul(6);

/// Sizes of one round; `EQ_BENCH_SCALE` multiplies the counts,
/// `EQ_BENCH_ROUNDS` sets the number of rounds and `EQ_BENCH_WORKERS` the
/// Rust node's worker threads.
#[derive(Debug, Clone, Copy)]
struct Params {
    rounds: usize,
    /// Worker threads of the Rust node's runtime; None: one per core.
    workers: Option<usize>,
    seq_calls: u64,
    seq_warmup: u64,
    callers: u64,
    calls_per_caller: u64,
    oneway_msgs: u64,
    /// `EQ_DBENCH_ONLY`: the measurements to run (comma-separated `seq`,
    /// `par`, `oneway`); all when unset.
    only: Option<&'static str>,
}

impl Params {
    fn from_env() -> Params {
        let scale: f64 = env_parse("EQ_BENCH_SCALE").unwrap_or(1.0);
        let n = |base: f64| ((base * scale).round() as u64).max(1);
        // Short rounds and many of them: a pair of back-to-back
        // measurements a second apart rarely straddles a change in the
        // machine's load, and the median of many pairs shrugs off the few
        // that do. About 4 s per round at scale 1.
        Params {
            rounds: env_parse("EQ_BENCH_ROUNDS").unwrap_or(9).max(1),
            // One worker by default: on a 2-core machine the BEAM client
            // needs the other core, and a second worker only adds cross-thread
            // wakeups (measured: fewer context switches and less CPU per
            // message with one). EQ_BENCH_WORKERS=0 means one per core.
            workers: env_workers("EQ_BENCH_WORKERS", Some(1)),
            seq_calls: n(10_000.0),
            seq_warmup: n(1_000.0),
            callers: 50,
            calls_per_caller: n(1_000.0),
            oneway_msgs: n(250_000.0),
            only: std::env::var("EQ_DBENCH_ONLY")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .map(|s| &*s.leak()),
        }
    }

    /// Whether `kind` is measured in this run.
    fn measures(&self, kind: Kind) -> bool {
        self.only
            .is_none_or(|only| only.split(',').any(|w| w.trim() == kind.label()))
    }
}

/// The figures of one measurement round against one target.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    seq_mean_us: f64,
    seq_p50_us: f64,
    seq_p99_us: f64,
    calls_per_s: f64,
    msgs_per_s: f64,
}

/// A peer that node A measures; `node_atom` is the quoted node name.
struct Target {
    label: &'static str,
    node_atom: String,
    /// The OS process of the peer, whose CPU time is charged to it.
    os_pid: u32,
    rounds: Vec<Figures>,
    /// CPU clock ticks the peer used during each kind of measurement, and
    /// the operations (calls or messages) it handled meanwhile, summed over
    /// the rounds (indexed by `Kind as usize`).
    cpu_ticks: [u64; 3],
    ops: [u64; 3],
    /// CPU clock ticks client A used meanwhile: a peer that makes A work
    /// harder per operation (more wakeups, more reads) costs throughput
    /// even when it is frugal itself.
    client_cpu_ticks: [u64; 3],
}

impl Target {
    fn new(label: &'static str, node_atom: String, os_pid: u32) -> Target {
        Target {
            label,
            node_atom,
            os_pid,
            rounds: Vec::new(),
            cpu_ticks: [0; 3],
            ops: [0; 3],
            client_cpu_ticks: [0; 3],
        }
    }

    /// Microseconds of CPU the peer spent per operation of `kind`.
    fn cpu_us_per_op(&self, kind: Kind) -> f64 {
        self.us_per_op(self.cpu_ticks, kind)
    }

    /// Microseconds of CPU client A spent per operation of `kind` against this peer.
    fn client_cpu_us_per_op(&self, kind: Kind) -> f64 {
        self.us_per_op(self.client_cpu_ticks, kind)
    }

    fn us_per_op(&self, ticks: [u64; 3], kind: Kind) -> f64 {
        let k = kind as usize;
        ticks[k] as f64 * 1e6 / CLOCK_TICKS_PER_S / self.ops[k].max(1) as f64
    }
}

fn main() {
    let started = Instant::now();
    let params = Params::from_env();
    let otp = Otp::from_env();
    eprintln!("dist bench: OTP {} (EQ_OTP), {params:?}", otp.release());

    // The Rust node runs on its own runtime, and this thread stays outside
    // it: the harness's evals block, and a blocked worker would stall the
    // node while it is being measured.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = params.workers {
        builder.worker_threads(workers);
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    let node = runtime.block_on(start_rust_node());

    common::ensure_epmd().expect("epmd");
    // The harness compiles every erlang_test/*.erl, eq_bench.erl included,
    // into the directory it puts on each node's code path.
    let client =
        BeamNode::start(&common::unique_name("bench_a"), COOKIE, &[]).expect("start node A");
    let server =
        BeamNode::start(&common::unique_name("bench_b"), COOKIE, &[]).expect("start node B");
    eval(
        &server,
        "{ok, _} = eq_peer:start_echo(echo), is_pid(eq_bench:start_sink(sink))",
    );
    let release = eval(&client, "erlang:system_info(otp_release)");
    let erts = eval(&client, "erlang:system_info(version)");

    // The Rust node's CPU time is this whole process's: besides the node,
    // only the harness's threads run here, and they are idle while A measures.
    let mut rust = Target::new("Rust", common::atom(node.name()), std::process::id());
    let mut beam = Target::new("BEAM", server.node_atom(), server.os_pid());

    // Warm-up: connects A to both targets and gets both past their first,
    // slower calls (code loading, allocator growth) before anything counts.
    for target in [&rust, &beam] {
        warm_up(&client, target, &params);
    }
    let ours = [std::process::id(), client.os_pid(), server.os_pid()];
    let meter = CpuMeter::start(&ours);
    // The machine is shared and its load drifts, so the two peers are
    // measured back to back for each kind of measurement rather than one
    // after the other for a whole round; the order flips every round so
    // neither always runs right after the other has left garbage behind.
    for round in 0..params.rounds {
        rust.rounds.push(Figures::default());
        beam.rounds.push(Figures::default());
        for kind in Kind::ALL.into_iter().filter(|&k| params.measures(k)) {
            let order: [&mut Target; 2] = if round % 2 == 0 {
                [&mut rust, &mut beam]
            } else {
                [&mut beam, &mut rust]
            };
            for target in order {
                measure(&client, target, kind, &params);
            }
        }
        for target in [&rust, &beam] {
            let f = target.rounds.last().expect("pushed above");
            eprintln!("round {}: {:>4} {f:.1?}", round + 1, target.label);
        }
    }

    let foreign = meter.foreign_share(&ours);
    report::print_report(&release, &erts, &params, &beam, &rust);
    if let Some(share) = foreign {
        println!(
            "Other processes used {:.0}% of the machine's CPU during the measurements{}.",
            share * 100.0,
            if share > 0.1 {
                " (figures are noisy; rerun on a quieter machine)"
            } else {
                ""
            }
        );
    }

    node.shutdown();
    let _ = client.stop();
    let _ = server.stop();
    runtime.shutdown_timeout(Duration::from_secs(2));
    println!("\ntotal run time {:.1} s", started.elapsed().as_secs_f64());
}

// ---- the Rust side -------------------------------------------------------

async fn start_rust_node() -> Node {
    let name = format!("bench_rust_{}@127.0.0.1", std::process::id());
    let node = Node::start(setup::node_config(name, COOKIE))
        .await
        .expect("start the Rust node");
    rust_node::start_echo(&node, "echo");
    let sink = node.spawn_process();
    sink.register("sink").expect("register sink");
    tokio::spawn(run_sink(sink));
    node
}

/// The Rust sink, the counterpart of `eq_bench:start_sink/1`: receives and
/// counts every message; `{done, From}` gets `{count, N}` back and resets
/// the count.
async fn run_sink(mut process: Process) {
    let mut count: i64 = 0;
    while let Ok(mail) = process.recv().await {
        let Mail::Message(message) = mail else {
            continue;
        };
        match as_tuple(&message) {
            Some([kind, Term::Pid(from)]) if is_atom(kind, "done") => {
                let from = from.clone();
                process.send(from, tuple(vec![atom("count"), int(count)]));
                count = 0;
            }
            _ => count += 1,
        }
    }
}

// ---- the BEAM side -------------------------------------------------------

fn eval(node: &BeamNode, expr: &str) -> String {
    eval_for(node, expr, EVAL_TIMEOUT)
}

/// Evaluates `expr` and parses its answer, a flat tuple of integers.
fn eval_ints(node: &BeamNode, expr: &str) -> Vec<u64> {
    parse_ints(expr, &eval(node, expr))
}

fn warm_up(client: &BeamNode, target: &Target, p: &Params) {
    let node = &target.node_atom;
    let calls = p.seq_warmup;
    eval_ints(
        client,
        &format!("eq_bench:seq_call({node}, {calls}, {calls})"),
    );
    eval_ints(
        client,
        &format!(
            "eq_bench:par_call({node}, {}, {})",
            p.callers,
            calls / 10 + 1
        ),
    );
    eval_ints(
        client,
        &format!("eq_bench:oneway({node}, {})", p.oneway_msgs / 10 + 1),
    );
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Sequential calls: latency.
    Seq,
    /// Concurrent callers: throughput.
    Par,
    /// One-way messages: throughput.
    Oneway,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Seq, Kind::Par, Kind::Oneway];

    /// Its name in `EQ_DBENCH_ONLY`.
    fn label(self) -> &'static str {
        match self {
            Kind::Seq => "seq",
            Kind::Par => "par",
            Kind::Oneway => "oneway",
        }
    }
}

/// Runs one measurement from A against `target`, fills in its part of the
/// round's figures and charges the target the CPU time it used.
fn measure(client: &BeamNode, target: &mut Target, kind: Kind, p: &Params) {
    let node = target.node_atom.clone();
    let label = target.label;
    let cpu_before = cpu_ticks(target.os_pid);
    let client_before = cpu_ticks(client.os_pid());
    let figures = target.rounds.last_mut().expect("a round has begun");
    let ops = match kind {
        Kind::Seq => {
            let expr = format!(
                "eq_bench:seq_call({node}, {}, {})",
                p.seq_calls, p.seq_warmup
            );
            let result = eval_ints(client, &expr);
            let [n, total_ns, p50, p99, _max] = result[..] else {
                panic!("{expr} returned {result:?}")
            };
            figures.seq_mean_us = total_ns as f64 / n as f64 / 1e3;
            figures.seq_p50_us = p50 as f64 / 1e3;
            figures.seq_p99_us = p99 as f64 / 1e3;
            // The peer's CPU time covers the warm-up calls too.
            n + p.seq_warmup
        }
        Kind::Par => {
            let expr = format!(
                "eq_bench:par_call({node}, {}, {})",
                p.callers, p.calls_per_caller
            );
            let result = eval_ints(client, &expr);
            let [calls, ns] = result[..] else {
                panic!("{expr} returned {result:?}")
            };
            figures.calls_per_s = calls as f64 / (ns as f64 / 1e9);
            calls
        }
        Kind::Oneway => {
            let expr = format!("eq_bench:oneway({node}, {})", p.oneway_msgs);
            let result = eval_ints(client, &expr);
            let [sent, counted, ns] = result[..] else {
                panic!("{expr} returned {result:?}")
            };
            // A sink that lost messages would look faster than it is.
            assert_eq!(
                sent, counted,
                "the {label} sink counted {counted} of {sent} messages"
            );
            figures.msgs_per_s = sent as f64 / (ns as f64 / 1e9);
            sent
        }
    };
    if let (Some(before), Some(after)) = (cpu_before, cpu_ticks(target.os_pid)) {
        target.cpu_ticks[kind as usize] += after - before;
        target.ops[kind as usize] += ops;
    }
    if let (Some(before), Some(after)) = (client_before, cpu_ticks(client.os_pid())) {
        target.client_cpu_ticks[kind as usize] += after - before;
    }
}

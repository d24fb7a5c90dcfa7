//! Distribution benchmark: the Rust node against the BEAM, measured in the
//! same run.
//!
//! ```text
//! cargo bench --bench dist                 # OTP 25
//! EQ_OTP=27 cargo bench --bench dist       # OTP 27 (erl27 chroot, root only)
//! EQ_BENCH_SCALE=0.1 EQ_BENCH_ROUNDS=1 cargo bench --bench dist   # a quick smoke run
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
//! ratio, where a ratio above 1.0 means the Rust node is the faster peer.

#[path = "../tests/common/mod.rs"]
mod common;
// The tests' Echo server: the same contract as `eq_peer:start_echo/1`.
#[path = "../tests/rust_node/mod.rs"]
mod rust_node;

use common::{BeamNode, Otp};
use erl_quorum::process::{Mail, Process};
use erl_quorum::term::{as_tuple, atom, int, is_atom, tuple, Term};
use erl_quorum::{Node, NodeConfig};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const COOKIE: &str = "eq_bench_cookie";
/// How long one measuring expression may take before the run is abandoned:
/// a round's loops take seconds, far more than the harness's default allows.
const EVAL_TIMEOUT: Duration = common::EVAL_TIMEOUT.saturating_mul(6);

/// Sizes of one round; `EQ_BENCH_SCALE` multiplies the counts and
/// `EQ_BENCH_ROUNDS` sets the number of rounds.
#[derive(Debug, Clone, Copy)]
struct Params {
    rounds: usize,
    seq_calls: u64,
    seq_warmup: u64,
    callers: u64,
    calls_per_caller: u64,
    oneway_msgs: u64,
}

impl Params {
    fn from_env() -> Params {
        let scale: f64 = env_parse("EQ_BENCH_SCALE").unwrap_or(1.0);
        let n = |base: f64| ((base * scale).round() as u64).max(1);
        Params {
            rounds: env_parse("EQ_BENCH_ROUNDS").unwrap_or(5).max(1),
            seq_calls: n(20_000.0),
            seq_warmup: n(1_000.0),
            callers: 50,
            calls_per_caller: n(2_000.0),
            oneway_msgs: n(500_000.0),
        }
    }
}

fn env_parse<T: std::str::FromStr>(var: &str) -> Option<T> {
    let value = std::env::var(var).ok()?;
    match value.trim().parse() {
        Ok(v) => Some(v),
        Err(_) => panic!("{var}={value:?} is not a valid number"),
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
    rounds: Vec<Figures>,
}

fn main() {
    let started = Instant::now();
    let params = Params::from_env();
    let otp = Otp::from_env();
    eprintln!("dist bench: OTP {} (EQ_OTP), {params:?}", otp.release());

    // The Rust node runs on its own multi-threaded runtime (one worker per
    // core, tokio's default), and this thread stays outside it: the
    // harness's evals block, and a blocked worker would leave the node one
    // core short while it is being measured.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let node = runtime.block_on(start_rust_node());

    common::ensure_epmd().expect("epmd");
    let ebin = compile_eq_bench(otp);
    let extra = ["-pa", ebin.to_str().expect("UTF-8 path")];
    let client =
        BeamNode::start(&common::unique_name("bench_a"), COOKIE, &extra).expect("start node A");
    let server =
        BeamNode::start(&common::unique_name("bench_b"), COOKIE, &extra).expect("start node B");
    eval(
        &server,
        "{ok, _} = eq_peer:start_echo(echo), is_pid(eq_bench:start_sink(sink))",
    );
    let release = eval(&client, "erlang:system_info(otp_release)");
    let erts = eval(&client, "erlang:system_info(version)");

    let mut rust = Target {
        label: "Rust",
        node_atom: common::atom(node.name()),
        rounds: Vec::new(),
    };
    let mut beam = Target {
        label: "BEAM",
        node_atom: server.node_atom(),
        rounds: Vec::new(),
    };

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
        for kind in [Kind::Seq, Kind::Par, Kind::Oneway] {
            let order: [&mut Target; 2] = if round % 2 == 0 {
                [&mut rust, &mut beam]
            } else {
                [&mut beam, &mut rust]
            };
            for target in order {
                let figures = target.rounds.last_mut().expect("pushed above");
                measure(
                    &client,
                    &target.node_atom,
                    target.label,
                    kind,
                    &params,
                    figures,
                );
            }
        }
        for target in [&rust, &beam] {
            let f = target.rounds.last().expect("pushed above");
            eprintln!("round {}: {:>4} {f:.1?}", round + 1, target.label);
        }
    }

    let foreign = meter.foreign_share(&ours);
    print_report(&release, &erts, &params, &beam, &rust);
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
    let node = Node::start(NodeConfig::new(name, COOKIE))
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

/// Compiles `erlang_test/eq_bench.erl` into `target/erlang_test/bench-otpNN`
/// (under the repo root, which the erl27 chroot can see; one directory per
/// release because OTP 27 .beam files don't load on 25) and returns it.
fn compile_eq_bench(otp: Otp) -> PathBuf {
    let root = common::repo_root();
    let out = root
        .join("target")
        .join("erlang_test")
        .join(format!("bench-otp{}", otp.release()));
    std::fs::create_dir_all(&out).expect("create the eq_bench output directory");
    // erlc27 runs in a chroot that only sees the current directory.
    let result = Command::new(otp.erlc())
        .current_dir(root)
        .arg("-o")
        .arg(&out)
        .arg(root.join("erlang_test").join("eq_bench.erl"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", otp.erlc()));
    assert!(
        result.status.success(),
        "{} eq_bench.erl failed:\n{}{}",
        otp.erlc(),
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

fn eval(node: &BeamNode, expr: &str) -> String {
    node.eval_timeout(expr, EVAL_TIMEOUT)
        .unwrap_or_else(|e| panic!("`{expr}` on {} failed: {e}", node.node_name()))
}

/// Evaluates `expr` and parses its answer, a flat tuple of integers.
fn eval_ints(node: &BeamNode, expr: &str) -> Vec<u64> {
    let printed = eval(node, expr);
    let ints: Option<Vec<u64>> = printed
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .map(|body| body.split(',').map(|n| n.trim().parse().ok()).collect())
        .unwrap_or(None);
    ints.unwrap_or_else(|| panic!("`{expr}` returned {printed}, expected a tuple of integers"))
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

/// Runs one measurement from A against the peer `node` and fills in its
/// part of `figures`.
fn measure(
    client: &BeamNode,
    node: &str,
    label: &str,
    kind: Kind,
    p: &Params,
    figures: &mut Figures,
) {
    match kind {
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
        }
    }
}

// ---- noise ----------------------------------------------------------------

/// How busy the machine was with processes other than ours: the 2-core
/// machines this runs on are shared, and a compile next door skews the
/// figures far more than anything in the code under test.
struct CpuMeter {
    start: Option<(u64, u64, u64)>,
}

impl CpuMeter {
    fn start(ours: &[u32]) -> CpuMeter {
        CpuMeter {
            start: Self::sample(ours),
        }
    }

    /// The share of all CPU time since `start` that other processes used.
    fn foreign_share(&self, ours: &[u32]) -> Option<f64> {
        let (busy0, total0, ours0) = self.start?;
        let (busy1, total1, ours1) = Self::sample(ours)?;
        let foreign = (busy1 - busy0).saturating_sub(ours1 - ours0);
        Some(foreign as f64 / (total1 - total0).max(1) as f64)
    }

    /// (busy, total) clock ticks of the whole machine from /proc/stat, and
    /// the ticks the processes `ours` used (all their threads), or None
    /// where /proc is not Linux's.
    fn sample(ours: &[u32]) -> Option<(u64, u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal ...
        let total: u64 = cpu.iter().take(8).sum();
        let busy = total - cpu.get(3)? - cpu.get(4)?;
        let mut ours_ticks = 0;
        for pid in ours {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the ")" that ends the command name: utime and
            // stime are the 12th and 13th.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            ours_ticks +=
                fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        }
        Some((busy, total, ours_ticks))
    }
}

// ---- the report ----------------------------------------------------------

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// How one figure is read: for latencies lower is better, so the ratio
/// is BEAM/Rust; for throughputs it is Rust/BEAM. Either way >1 means Rust
/// is better.
#[derive(Clone, Copy, PartialEq)]
enum Better {
    Lower,
    Higher,
}

struct Row {
    what: String,
    unit: &'static str,
    better: Better,
    /// Whether the row counts towards the "every ratio >= 1.0" target
    /// (the percentiles are shown for context only).
    target: bool,
    get: fn(&Figures) -> f64,
}

fn print_report(release: &str, erts: &str, p: &Params, beam: &Target, rust: &Target) {
    let rows = [
        Row {
            what: "`gen_server:call`, sequential, mean".into(),
            unit: "µs/call",
            better: Better::Lower,
            target: true,
            get: |f| f.seq_mean_us,
        },
        Row {
            what: "`gen_server:call`, sequential, p50".into(),
            unit: "µs/call",
            better: Better::Lower,
            target: false,
            get: |f| f.seq_p50_us,
        },
        Row {
            what: "`gen_server:call`, sequential, p99".into(),
            unit: "µs/call",
            better: Better::Lower,
            target: false,
            get: |f| f.seq_p99_us,
        },
        Row {
            what: format!("`gen_server:call`, {} concurrent callers", p.callers),
            unit: "calls/s",
            better: Better::Higher,
            target: true,
            get: |f| f.calls_per_s,
        },
        Row {
            what: "one-way `{I, payload_atom}` to a registered sink".into(),
            unit: "msg/s",
            better: Better::Higher,
            target: true,
            get: |f| f.msgs_per_s,
        },
    ];
    let release = release.trim_matches('"');
    let erts = erts.trim_matches('"');
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "Erlang/OTP {release} (erts {erts}), {cores} cores, loopback; median of {} rounds; \
         {} sequential calls, {}×{} concurrent calls, {} one-way messages per round.",
        p.rounds, p.seq_calls, p.callers, p.calls_per_caller, p.oneway_msgs
    );
    println!(
        "Figures: median over rounds. Ratio: median of the rounds' ratios (each round \
         measures both peers back to back); > 1.0 means the Rust node is the faster peer."
    );
    println!();
    println!("| BEAM node A → peer | unit | BEAM peer | Rust peer | ratio | ratio range |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut missed = Vec::new();
    for row in &rows {
        let b = median(beam.rounds.iter().map(row.get).collect());
        let r = median(rust.rounds.iter().map(row.get).collect());
        let ratios: Vec<f64> = beam
            .rounds
            .iter()
            .zip(&rust.rounds)
            .map(|(b, r)| match row.better {
                Better::Lower => (row.get)(b) / (row.get)(r),
                Better::Higher => (row.get)(r) / (row.get)(b),
            })
            .collect();
        let lowest = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let highest = ratios.iter().copied().fold(0.0, f64::max);
        let ratio = median(ratios);
        let (b, r) = (format_figure(b, row.unit), format_figure(r, row.unit));
        let note = if row.target { "" } else { " (info)" };
        println!(
            "| {}{note} | {} | {b} | {r} | **{ratio:.2}** | {lowest:.2}–{highest:.2} |",
            row.what, row.unit
        );
        if row.target && ratio < 1.0 {
            missed.push(row.what.clone());
        }
    }
    println!();
    if missed.is_empty() {
        println!("Target (every ratio ≥ 1.0): met.");
    } else {
        println!(
            "Target (every ratio ≥ 1.0): NOT met for {}.",
            missed.join("; ")
        );
    }
}

fn format_figure(value: f64, unit: &str) -> String {
    if unit.starts_with("µs") {
        format!("{value:.1}")
    } else if value >= 1e6 {
        format!("{:.2} M", value / 1e6)
    } else {
        format!("{:.1} k", value / 1e3)
    }
}

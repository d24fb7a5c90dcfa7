//! TLS distribution benchmark: `gen_server:call` over TLS to the Rust node
//! against the same call to a BEAM node over TLS, in the same run.
//!
//! ```text
//! cargo bench --bench tls                  # OTP 25
//! EQ_OTP=27 cargo bench --bench tls        # OTP 27 (erl27 chroot, root only)
//! EQ_BENCH_SCALE=0.1 EQ_BENCH_ROUNDS=1 cargo bench --bench tls   # a quick smoke run
//! ```
//!
//! As `benches/dist.rs`, with every node speaking `inet_tls` (TLS 1.3,
//! mutual authentication with certificates generated here): this binary
//! runs the Rust node (echo gen_server `echo`); a BEAM client A runs the
//! loops of `erlang_test/eq_bench.erl` against the Rust node and against a
//! BEAM server B with the same `echo`, alternating (the order flips every
//! round); each figure is the median over the rounds. Measured: sequential
//! calls (latency) and 50 concurrent callers (throughput). A ratio above
//! 1.0 means the Rust node is the faster peer; the CPU table gives each
//! peer's (and A's) CPU time per call.

#[path = "../tests/tls_support/certs.rs"]
mod certs;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/cpu.rs"]
mod cpu;
#[path = "../tests/rust_node/mod.rs"]
mod rust_node;
#[path = "support/setup.rs"]
mod setup;
#[path = "support/stats.rs"]
mod stats;

use common::{BeamNode, Otp};
use cpu::{cpu_ticks, CpuMeter, CLOCK_TICKS_PER_S};
use setup::{env_parse, env_workers, eval_for, parse_ints};
use stats::{median, ratio_summary, Better};
use std::time::{Duration, Instant};

const COOKIE: &str = "eq_bench_cookie";
const EVAL_TIMEOUT: Duration = common::EVAL_TIMEOUT.saturating_mul(6);

#[derive(Debug, Clone, Copy)]
struct Params {
    rounds: usize,
    workers: Option<usize>,
    seq_calls: u64,
    seq_warmup: u64,
    callers: u64,
    calls_per_caller: u64,
}

impl Params {
    fn from_env() -> Params {
        let scale: f64 = env_parse("EQ_BENCH_SCALE").unwrap_or(1.0);
        let n = |base: f64| ((base * scale).round() as u64).max(1);
        Params {
            rounds: env_parse("EQ_BENCH_ROUNDS").unwrap_or(9).max(1),
            workers: env_workers("EQ_BENCH_WORKERS", Some(1)),
            seq_calls: n(10_000.0),
            seq_warmup: n(1_000.0),
            callers: 50,
            calls_per_caller: n(1_000.0),
        }
    }
}

/// One peer A measures, and what it measured of it.
struct Target {
    label: &'static str,
    node_atom: String,
    os_pid: u32,
    seq_mean_us: Vec<f64>,
    seq_p99_us: Vec<f64>,
    calls_per_s: Vec<f64>,
    /// CPU ticks of the peer, of A, and calls, for [seq, par].
    cpu: [u64; 2],
    client_cpu: [u64; 2],
    calls: [u64; 2],
}

impl Target {
    fn new(label: &'static str, node_atom: String, os_pid: u32) -> Target {
        Target {
            label,
            node_atom,
            os_pid,
            seq_mean_us: Vec::new(),
            seq_p99_us: Vec::new(),
            calls_per_s: Vec::new(),
            cpu: [0; 2],
            client_cpu: [0; 2],
            calls: [0; 2],
        }
    }

    fn us_per_call(&self, ticks: [u64; 2], k: usize) -> f64 {
        ticks[k] as f64 * 1e6 / CLOCK_TICKS_PER_S / self.calls[k].max(1) as f64
    }
}

fn main() {
    let started = Instant::now();
    let params = Params::from_env();
    let otp = Otp::from_env();
    eprintln!("tls bench: OTP {} (EQ_OTP), {params:?}", otp.release());

    // Certificates under the repo root: the erl27 chroot sees only that.
    let dir = common::repo_root()
        .join("target")
        .join("tls_bench")
        .join(common::unique_name("pki"));
    let pki = certs::generate(&dir).expect("generate certificates");
    let good = pki.good();
    let optfile = pki.optfile("ssl_dist.conf", &good, &good).expect("optfile");
    let tls_args = [
        "-proto_dist",
        "inet_tls",
        "-ssl_dist_optfile",
        optfile.to_str().expect("utf-8 path"),
    ];

    let runtime = setup::runtime(params.workers);
    let tls = erl_quorum::node::TlsOptions::from_optfile(&optfile)
        .and_then(|o| o.build())
        .expect("TLS config");
    let node = runtime.block_on(async {
        let name = format!("bench_tls_rust_{}@127.0.0.1", std::process::id());
        let node = erl_quorum::Node::start(setup::node_config(name, COOKIE).with_tls(tls))
            .await
            .expect("start the Rust node");
        rust_node::start_echo(&node, "echo");
        node
    });

    common::ensure_epmd().expect("epmd");
    let client = BeamNode::start(&common::unique_name("tls_bench_a"), COOKIE, &tls_args)
        .expect("start node A");
    let server = BeamNode::start(&common::unique_name("tls_bench_b"), COOKIE, &tls_args)
        .expect("start node B");
    eval(&server, "{ok, _} = eq_peer:start_echo(echo), ok");
    let release = eval(&client, "erlang:system_info(otp_release)");

    let mut rust = Target::new("Rust", common::atom(node.name()), std::process::id());
    let mut beam = Target::new("BEAM", server.node_atom(), server.os_pid());
    for target in [&rust, &beam] {
        let n = &target.node_atom;
        let w = params.seq_warmup;
        eval(&client, &format!("eq_bench:seq_call({n}, {w}, {w})"));
        eval(
            &client,
            &format!("eq_bench:par_call({n}, 50, {})", w / 10 + 1),
        );
        // Proof that A reaches the peer over TLS: its connection's module.
        let proto = eval(
            &client,
            &format!("proplists:get_value(address, element(2, net_kernel:node_info({n})))"),
        );
        assert!(
            proto.contains("tls"),
            "{} not over TLS: {proto}",
            target.label
        );
    }
    let ours = [std::process::id(), client.os_pid(), server.os_pid()];
    let meter = CpuMeter::start(&ours);
    for round in 0..params.rounds {
        for k in 0..2 {
            let order: [&mut Target; 2] = if round % 2 == 0 {
                [&mut rust, &mut beam]
            } else {
                [&mut beam, &mut rust]
            };
            for target in order {
                measure(&client, target, k, &params);
            }
        }
        for t in [&rust, &beam] {
            eprintln!(
                "round {}: {:>4} seq {:.1} µs, {:.0} calls/s",
                round + 1,
                t.label,
                t.seq_mean_us.last().unwrap_or(&0.0),
                t.calls_per_s.last().unwrap_or(&0.0)
            );
        }
    }
    let foreign = meter.foreign_share(&ours);

    println!(
        "\n## gen_server:call over TLS distribution (OTP {}, TLS 1.3, mutual auth)\n",
        release.trim_matches('"')
    );
    println!("| measurement | BEAM | Rust | ratio (median, range) |");
    println!("|---|---|---|---|");
    let row = |name: &str, better, b: &[f64], r: &[f64], unit: &str| {
        let (m, lo, hi) = ratio_summary(better, b, r);
        println!(
            "| {name} | {:.1} {unit} | {:.1} {unit} | **{m:.2}** ({lo:.2}-{hi:.2}) |",
            median(b.to_vec()),
            median(r.to_vec())
        );
    };
    row(
        "sequential call, mean",
        Better::Lower,
        &beam.seq_mean_us,
        &rust.seq_mean_us,
        "µs",
    );
    row(
        "sequential call, p99",
        Better::Lower,
        &beam.seq_p99_us,
        &rust.seq_p99_us,
        "µs",
    );
    row(
        &format!("{} callers, throughput", params.callers),
        Better::Higher,
        &beam.calls_per_s,
        &rust.calls_per_s,
        "calls/s",
    );
    println!("\n| CPU per call | BEAM peer | Rust peer | client A vs BEAM | client A vs Rust |");
    println!("|---|---|---|---|---|");
    for (k, name) in ["sequential", "50 callers"].iter().enumerate() {
        println!(
            "| {name} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs |",
            beam.us_per_call(beam.cpu, k),
            rust.us_per_call(rust.cpu, k),
            beam.us_per_call(beam.client_cpu, k),
            rust.us_per_call(rust.client_cpu, k),
        );
    }
    if let Some(share) = foreign {
        println!(
            "\nOther processes used {:.0}% of the machine's CPU during the measurements.",
            share * 100.0
        );
    }
    node.shutdown();
    let _ = client.stop();
    let _ = server.stop();
    runtime.shutdown_timeout(Duration::from_secs(2));
    let _ = std::fs::remove_dir_all(&dir);
    println!("\ntotal run time {:.1} s", started.elapsed().as_secs_f64());
}

fn eval(node: &BeamNode, expr: &str) -> String {
    eval_for(node, expr, EVAL_TIMEOUT)
}

/// One measurement from A against `target`: `k` 0 sequential, 1 parallel.
fn measure(client: &BeamNode, target: &mut Target, k: usize, p: &Params) {
    let node = target.node_atom.clone();
    let cpu_before = cpu_ticks(target.os_pid);
    let client_before = cpu_ticks(client.os_pid());
    let calls = if k == 0 {
        let expr = format!(
            "eq_bench:seq_call({node}, {}, {})",
            p.seq_calls, p.seq_warmup
        );
        let r = parse_ints(&expr, &eval(client, &expr));
        let [n, total_ns, _p50, p99, _max] = r[..] else {
            panic!("{expr} returned {r:?}")
        };
        target.seq_mean_us.push(total_ns as f64 / n as f64 / 1e3);
        target.seq_p99_us.push(p99 as f64 / 1e3);
        n + p.seq_warmup
    } else {
        let expr = format!(
            "eq_bench:par_call({node}, {}, {})",
            p.callers, p.calls_per_caller
        );
        let r = parse_ints(&expr, &eval(client, &expr));
        let [calls, ns] = r[..] else {
            panic!("{expr} returned {r:?}")
        };
        target.calls_per_s.push(calls as f64 / (ns as f64 / 1e9));
        calls
    };
    if let (Some(b), Some(a)) = (cpu_before, cpu_ticks(target.os_pid)) {
        target.cpu[k] += a - b;
        target.calls[k] += calls;
    }
    if let (Some(b), Some(a)) = (client_before, cpu_ticks(client.os_pid())) {
        target.client_cpu[k] += a - b;
    }
}

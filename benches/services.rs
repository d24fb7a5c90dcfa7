//! Services benchmark: erl_quorum's BEAM API (`paxtor` locks and the
//! `rust_registry` names of `rebar_fixture`, served by Rust nodes) against
//! what OTP ships (`global`), measured from the same BEAM node in the same
//! run, plus the memory a serving node spends per registered name.
//!
//! ```text
//! cargo bench --bench services                 # OTP 25, 1 M names for the memory figures
//! EQ_OTP=27 cargo bench --bench services       # OTP 27 (erl27 chroot, root only)
//! EQ_BENCH_SCALE=0.3 EQ_BENCH_ROUNDS=1 EQ_BENCH_NAMES=20000 cargo bench --bench services   # a quick smoke run
//! EQ_BENCH_NAMES=0 cargo bench --bench services   # no memory figures
//! ```
//!
//! Knobs: `EQ_BENCH_SCALE` multiplies the time each measurement runs (700 ms),
//! `EQ_BENCH_ROUNDS` sets the rounds (7), `EQ_OTP` the Erlang/OTP release
//! (25), `EQ_BENCH_NAMES` the names registered for the memory figures
//! (1 000 000; 0 skips them), `EQ_SBENCH_GLOBAL_NAMES` the `global` names
//! registered for comparison (20 000; 0 skips), `EQ_SBENCH_CLIENTS` the
//! concurrent BEAM processes (16), `EQ_SBENCH_REGISTRARS` the concurrent
//! Rust `Registry` clients that register the names (64),
//! `EQ_SBENCH_OWNERS` the processes owning them (8), `EQ_SBENCH_SPREAD=1`
//! spreads the shards over the three masters and `EQ_SBENCH_ROUTE=0` turns
//! g1's shard map off (see main), `EQ_SBENCH_ONLY`
//! measures only the pairs whose labels contain one of its comma-separated
//! words (e.g. `paxtor cycle`, for profiling), `EQ_BENCH_WORKERS` the tokio
//! workers of the Rust node in this process (1; 0: one per core),
//! `EQ_QBENCH_MASTER_WORKERS` the masters' (1, as `erl_quorum serve`; 0: one per core).
//!
//! One process tree:
//! - three Rust masters, W = 2, each an `erl_quorum serve --fresh` child
//!   process: each runs `locker` and the `erl_quorum` service;
//! - three BEAM nodes connected to each other, for `global`; each loads the
//!   `erl_quorum` application (rebar_fixture) with `rust_nodes` set to the
//!   masters and starts it, so each keeps the `rust_registry` table and
//!   subscribes to the first master's registry, as in a deployment. The first
//!   one (g1) runs every measuring loop (`erlang_test/eq_services_bench.erl`);
//!   its calls go to the first master, the serving node;
//! - a Rust node in this process, on its own runtime: the echo gen_server
//!   that g1 calls through `{via, rust_registry, Name}` (registered by Rust
//!   code with `Registry::register`), and the `Registry` clients that
//!   register the names of the memory figures. The `global` echo server runs
//!   on g2, so both calls cross one network hop.
//!
//! One pair is not against `global`: `paxtor:lock(K, [fencing])` against
//! `paxtor:lock(K)` (both fresh process + fresh key), to show what the
//! fencing token costs (`EQ_SBENCH_ONLY=fencing` measures only that pair).
//!
//! Cases are measured in pairs (erl_quorum and its `global` counterpart)
//! back to back within a round, the order flipping every round; each figure
//! is the median over the rounds, and each ratio the median of the rounds'
//! ratios, oriented so that > 1 means erl_quorum is better. The machine is
//! shared: the CPU other processes used during the measurements is reported,
//! and the CPU our own processes spent per operation, which moves far less
//! with the load than wall-clock figures do.
//!
//! The memory figures come last: `EQ_BENCH_NAMES` names registered from
//! Rust against the first master, owned by `EQ_SBENCH_OWNERS` long-lived
//! Rust processes;
//! the growth of each `erl_quorum serve` process's VmRSS (/proc/PID/status)
//! divided by the names.

#[path = "../tests/common/mod.rs"]
mod common;
// Not `mod report;`: that would be benches/report.rs, which cargo would take
// for a bench target of its own.
#[path = "support/cpu.rs"]
mod cpu;
// The tests' Echo server (`call X -> X`), as in the dist bench.
#[path = "support/masters.rs"]
mod masters;
#[path = "services/report.rs"]
mod report;
#[path = "../tests/rust_node/mod.rs"]
mod rust_node;
#[path = "services/rust_side.rs"]
mod rust_side;
#[path = "support/setup.rs"]
mod setup;
#[path = "support/stats.rs"]
mod stats;

use common::BeamNode;
use cpu::{cpu_ticks, loadavg, CpuMeter};
use erl_quorum::term::atom;
use erl_quorum::Node;
use masters::MasterProcs;
use setup::{env_parse, env_workers, eval_for, parse_ints, runtime};
use std::time::{Duration, Instant};

const COOKIE: &str = "eq_sbench_cookie";
/// How long one measuring expression may take before the run is abandoned.
const EVAL_TIMEOUT: Duration = common::EVAL_TIMEOUT.saturating_mul(4);
/// The echo servers' name, in both registries.
const ECHO: &str = "eq_services_echo";
/// The name whereis looks up, in both registries.
const WHERE: &str = "eq_services_where";

/// See the module docs for the environment variables.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub rounds: usize,
    pub duration: Duration,
    pub clients: usize,
    pub client_workers: Option<usize>,
    pub master_workers: Option<usize>,
    pub names: u64,
    pub global_names: u64,
    pub registrars: usize,
    pub owners: usize,
    /// `EQ_SBENCH_ONLY`: measure only the pairs whose labels contain one
    /// of these (comma-separated), e.g. `paxtor cycle` (for profiling).
    pub only: Option<&'static str>,
}

impl Params {
    fn from_env() -> Params {
        let scale: f64 = env_parse("EQ_BENCH_SCALE").unwrap_or(1.0);
        Params {
            rounds: env_parse("EQ_BENCH_ROUNDS").unwrap_or(7).max(1),
            duration: Duration::from_millis(((700.0 * scale).round() as u64).max(50)),
            clients: env_parse("EQ_SBENCH_CLIENTS").unwrap_or(16).max(2),
            // One worker, as in the quorum bench: the other core is left to
            // the masters and the BEAM nodes.
            client_workers: env_workers("EQ_BENCH_WORKERS", Some(1)),
            master_workers: env_workers("EQ_QBENCH_MASTER_WORKERS", Some(1)),
            names: env_parse("EQ_BENCH_NAMES").unwrap_or(1_000_000),
            global_names: env_parse("EQ_SBENCH_GLOBAL_NAMES").unwrap_or(20_000),
            registrars: env_parse("EQ_SBENCH_REGISTRARS").unwrap_or(64).max(1),
            owners: env_parse("EQ_SBENCH_OWNERS").unwrap_or(8).max(1),
            only: std::env::var("EQ_SBENCH_ONLY")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .map(|s| &*s.leak()),
        }
    }
}

/// What is measured, in pairs: `global`'s case, then erl_quorum's. The
/// discriminants index a round's `Vec<Run>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    GlobalLatency,
    PaxtorLatency,
    GlobalCycle1,
    PaxtorCycle1,
    GlobalCycleN,
    PaxtorCycleN,
    GlobalReg1,
    RustReg1,
    GlobalRegN,
    RustRegN,
    GlobalWhereis,
    RustWhereis,
    GlobalCall1,
    ViaCall1,
    GlobalCallN,
    ViaCallN,
    /// `paxtor:lock(Key)` again, measured beside the fenced lock (the
    /// pair's first case stands where `global` stands elsewhere).
    PlainLatency,
    FencedLatency,
}

const CASES: usize = 18;

impl Case {
    /// The pairs to measure, `(global, ours)`: all of them, or those
    /// `only` names.
    fn selected(only: Option<&str>) -> Vec<(Case, Case)> {
        Case::pairs()
            .into_iter()
            .filter(|(g, o)| {
                only.is_none_or(|only| {
                    only.split(',')
                        .map(str::trim)
                        .any(|want| [g, o].iter().any(|c| c.label().contains(want)))
                })
            })
            .collect()
    }

    /// The pairs, `(global, ours)`.
    fn pairs() -> [(Case, Case); CASES / 2] {
        use Case::*;
        [
            (GlobalLatency, PaxtorLatency),
            (GlobalCycle1, PaxtorCycle1),
            (GlobalCycleN, PaxtorCycleN),
            (GlobalReg1, RustReg1),
            (GlobalRegN, RustRegN),
            (GlobalWhereis, RustWhereis),
            (GlobalCall1, ViaCall1),
            (GlobalCallN, ViaCallN),
            (PlainLatency, FencedLatency),
        ]
    }

    fn label(self) -> &'static str {
        use Case::*;
        match self {
            GlobalLatency => "global lock",
            PaxtorLatency => "paxtor lock",
            GlobalCycle1 => "global cycle 1",
            PaxtorCycle1 => "paxtor cycle 1",
            GlobalCycleN => "global cycle N",
            PaxtorCycleN => "paxtor cycle N",
            GlobalReg1 => "global reg 1",
            RustReg1 => "rust_registry reg 1",
            GlobalRegN => "global reg N",
            RustRegN => "rust_registry reg N",
            GlobalWhereis => "global whereis",
            RustWhereis => "rust_registry whereis",
            GlobalCall1 => "global call 1",
            ViaCall1 => "via call 1",
            GlobalCallN => "global call N",
            ViaCallN => "via call N",
            PlainLatency => "paxtor lock, no fencing",
            FencedLatency => "paxtor lock, fencing",
        }
    }

    /// The expression g1 evaluates (GN: the BEAM nodes).
    fn expr(self, n: usize, ms: u128) -> String {
        use Case::*;
        let b = "eq_services_bench";
        let via = format!("{{via, rust_registry, {ECHO}}}");
        let global = format!("{{global, {ECHO}}}");
        match self {
            GlobalLatency => format!("{b}:lock_latency({{global, GN}}, 1, {ms})"),
            PaxtorLatency => format!("{b}:lock_latency(paxtor, 1, {ms})"),
            GlobalCycle1 => format!("{b}:lock_cycles({{global, GN}}, 1, {ms})"),
            PaxtorCycle1 => format!("{b}:lock_cycles(paxtor, 1, {ms})"),
            GlobalCycleN => format!("{b}:lock_cycles({{global, GN}}, {n}, {ms})"),
            PaxtorCycleN => format!("{b}:lock_cycles(paxtor, {n}, {ms})"),
            GlobalReg1 => format!("{b}:reg_pairs(global, 1, {ms})"),
            RustReg1 => format!("{b}:reg_pairs(rust_registry, 1, {ms})"),
            GlobalRegN => format!("{b}:reg_pairs(global, {n}, {ms})"),
            RustRegN => format!("{b}:reg_pairs(rust_registry, {n}, {ms})"),
            GlobalWhereis => format!("{b}:whereis(global, {WHERE}, {ms})"),
            RustWhereis => format!("{b}:whereis(rust_registry, {WHERE}, {ms})"),
            GlobalCall1 => format!("{b}:calls({global}, 1, {ms})"),
            ViaCall1 => format!("{b}:calls({via}, 1, {ms})"),
            GlobalCallN => format!("{b}:calls({global}, {n}, {ms})"),
            ViaCallN => format!("{b}:calls({via}, {n}, {ms})"),
            PlainLatency => format!("{b}:lock_latency(paxtor, 1, {ms})"),
            FencedLatency => format!("{b}:lock_latency(paxtor_fenced, 1, {ms})"),
        }
    }
}

/// CPU clock ticks each group of our processes used during one measurement.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// The three `erl_quorum serve` processes.
    pub masters: u64,
    /// This process: the Rust node with the echo server.
    pub bench: u64,
    /// The BEAM node that runs the loops.
    pub g1: u64,
    /// The other two BEAM nodes.
    pub g23: u64,
}

/// The figures of one measurement.
#[derive(Debug, Clone, Copy, Default)]
pub struct Run {
    pub ops: u64,
    pub elapsed_ns: f64,
    pub mean_ns: f64,
    pub p50_ns: f64,
    pub p99_ns: f64,
    pub cpu: Cpu,
    /// Share of the machine's CPU other processes used meanwhile.
    pub foreign: Option<f64>,
}

impl Run {
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / (self.elapsed_ns / 1e9)
    }
}

/// Everything the measurements need.
struct Bench {
    p: Params,
    masters: MasterProcs,
    g1: BeamNode,
    g23: [BeamNode; 2],
    /// Every OS process of ours: this one, the masters, the BEAM nodes.
    ours: Vec<u32>,
}

fn main() {
    let started = Instant::now();
    let p = Params::from_env();
    let otp = common::Otp::from_env();
    eprintln!(
        "services bench: OTP {} (EQ_OTP), {p:?}, load average {}",
        otp.release(),
        loadavg()
    );
    common::ensure_epmd().expect("epmd");

    // The Rust node runs on a runtime of its own, and this thread stays
    // outside it: the harness's evals block.
    let rt = runtime(p.client_workers);
    let node = rt.block_on(async {
        let name = format!("{}@127.0.0.1", common::unique_name("sb_rust"));
        Node::start(setup::node_config(name, COOKIE))
            .await
            .expect("start the Rust node")
    });
    let masters = MasterProcs::start("sb_m", COOKIE, p.master_workers);
    let serving = masters.names()[0].clone();

    let start_beam = |prefix: &str| {
        BeamNode::start(&common::unique_name(prefix), COOKIE, &[])
            .unwrap_or_else(|e| panic!("start BEAM node {prefix}: {e}"))
    };
    let g1 = start_beam("sb_g1");
    let g23 = [start_beam("sb_g2"), start_beam("sb_g3")];
    let release = eval(&g1, "erlang:system_info(otp_release)");
    let erts = eval(&g1, "erlang:system_info(version)");
    let list = |names: &mut dyn Iterator<Item = &str>| {
        format!(
            "[{}]",
            names.map(common::atom).collect::<Vec<_>>().join(",")
        )
    };
    let beam_nodes = list(&mut [&g1, &g23[0], &g23[1]].into_iter().map(|n| n.node_name()));
    let rust_nodes = list(&mut masters.names().iter().map(String::as_str));
    eval(&g1, &format!("GN = {beam_nodes}"));
    let connected = eval(
        &g1,
        &format!(
            "eq_quorum_bench:connect({})",
            list(&mut g23.iter().map(|n| n.node_name()))
        ),
    );
    eprintln!(
        "BEAM nodes for global: {connected} (and {})",
        g1.node_name()
    );
    for g in [&g1, &g23[0], &g23[1]] {
        let sub = eval(g, &format!("eq_services_bench:start_app({rust_nodes})"));
        assert_eq!(
            sub,
            common::atom(&serving),
            "{} subscribed elsewhere",
            g.node_name()
        );
    }

    // `EQ_SBENCH_SPREAD=1`: the shards spread over the three masters (shard
    // S on master S rem 3, as rebalancing leaves them) instead of all on the
    // first, which takes every shard it is asked for first. Then
    // `EQ_SBENCH_ROUTE=0` turns g1's shard map off (calls start at the node
    // that answered last, as before routing by shard), to compare.
    if env_parse::<u8>("EQ_SBENCH_SPREAD") == Some(1) {
        let seeded = eval(&g1, &format!("eq_routing:seed({rust_nodes})"));
        assert_eq!(seeded, "ok", "spreading the shards");
    }
    if env_parse::<u8>("EQ_SBENCH_ROUTE") == Some(0) {
        eval(
            &g1,
            "application:set_env(erl_quorum, route_by_shard, false)",
        );
    }
    eprintln!(
        "rust_quorum_shard:shard/2 on g1, ns per call: {}",
        eval(&g1, "eq_routing:shard_cost()")
    );

    // The names the cases use: the Rust echo server (registered by Rust
    // code), the BEAM one on g2, and a name for whereis, owned by a process
    // on g1 in both registries.
    let echo = rt.block_on(rust_side::start_echo(&node, &serving, atom(ECHO)));
    eval(&g23[0], &format!("eq_services_bench:start_echo({ECHO})"));
    eval(&g1, "WhereOwner = eq_services_bench:spawn_owner()");
    eval(
        &g1,
        &format!("yes = global:register_name({WHERE}, WhereOwner)"),
    );
    eval(
        &g1,
        &format!("yes = rust_registry:register_name({WHERE}, WhereOwner)"),
    );
    let seen = eval(
        &g1,
        &format!(
            "eq_peer:wait_until(fun() -> is_pid(rust_registry:whereis_name({ECHO})) end, 10000), \
             {{rust_registry:whereis_name({ECHO}), global:whereis_name({ECHO})}}"
        ),
    );
    eprintln!("echo servers as g1 sees them: {seen} (the Rust one is {echo})");

    let mut ours = vec![
        std::process::id(),
        g1.os_pid(),
        g23[0].os_pid(),
        g23[1].os_pid(),
    ];
    ours.extend(masters.os_pids());
    let bench = Bench {
        p,
        masters,
        g1,
        g23,
        ours,
    };

    // Warm-up: every path past its first, slower calls before anything
    // counts.
    let warm = Duration::from_millis(200);
    let selected = Case::selected(p.only);
    for &(g, o) in &selected {
        bench.measure(g, warm);
        bench.measure(o, warm);
    }

    let meter = CpuMeter::start(&bench.ours);
    let mut rounds: Vec<Vec<Run>> = Vec::new();
    for round in 0..p.rounds {
        let mut runs = vec![Run::default(); CASES];
        for &(g, o) in &selected {
            let order = if round % 2 == 0 { [g, o] } else { [o, g] };
            for case in order {
                runs[case as usize] = bench.measure(case, p.duration);
            }
        }
        let line: Vec<String> = selected
            .iter()
            .flat_map(|&(g, o)| [g, o])
            .map(|c| {
                let r = &runs[c as usize];
                format!("{} {:.1}k", c.label(), r.ops_per_s() / 1e3)
            })
            .collect();
        let foreign: Vec<String> = runs
            .iter()
            .filter_map(|r| r.foreign)
            .map(|f| format!("{:.0}", f * 100.0))
            .collect();
        eprintln!(
            "round {}: {} ops/s; foreign CPU % per case: {}",
            round + 1,
            line.join(", "),
            foreign.join(" ")
        );
        rounds.push(runs);
    }
    let foreign = meter.foreign_share(&bench.ours);
    let redirects = eval(&bench.g1, &format!("eq_routing:redirects({rust_nodes})"));
    let per_case: Vec<f64> = rounds.iter().flatten().filter_map(|r| r.foreign).collect();

    let memory = bench.memory(&rt, &node, &serving);

    report::print_report(&release, &erts, &p, &rounds);
    report::print_memory(&p, &memory);
    println!();
    println!("Redirects the masters sent during the run (warm-up included): {redirects}.");
    if let Some(share) = foreign {
        let lo = per_case.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = per_case.iter().copied().fold(0.0, f64::max);
        println!(
            "Other processes used {:.0}% of the machine's CPU during the timed measurements \
             ({:.0}–{:.0}% per measurement){}; load average {} at the end.",
            share * 100.0,
            lo * 100.0,
            hi * 100.0,
            if share > 0.1 {
                " (figures are noisy; rerun on a quieter machine)"
            } else {
                ""
            },
            loadavg()
        );
    }

    let Bench {
        masters, g1, g23, ..
    } = bench;
    node.shutdown();
    drop(masters);
    let _ = g1.stop();
    for g in g23 {
        let _ = g.stop();
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    println!("\ntotal run time {:.1} s", started.elapsed().as_secs_f64());
}

fn eval(node: &BeamNode, expr: &str) -> String {
    eval_for(node, expr, EVAL_TIMEOUT)
}

/// VmRSS of `pid` in bytes, from /proc/PID/status.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// One process whose memory the memory figures follow.
#[derive(Debug, Clone)]
pub struct Rss {
    pub what: String,
    pub before: u64,
    pub after: u64,
}

/// What the memory part measured.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// erl_quorum: names registered, how long it took, and the processes.
    pub names: u64,
    pub took: Duration,
    pub rust: Vec<Rss>,
    /// `names` each master's service knew at the end.
    pub known: Vec<i64>,
    /// `global`: names registered, how long it took, the BEAM nodes.
    pub global_names: u64,
    pub global_took: Duration,
    pub global: Vec<Rss>,
}

impl Bench {
    fn cpu(&self) -> Cpu {
        let ticks = |pid: u32| cpu_ticks(pid).unwrap_or(0);
        Cpu {
            masters: self.masters.os_pids().into_iter().map(ticks).sum(),
            bench: ticks(std::process::id()),
            g1: ticks(self.g1.os_pid()),
            g23: self.g23.iter().map(|g| ticks(g.os_pid())).sum(),
        }
    }

    /// Runs `case` for `duration` and returns its figures.
    fn measure(&self, case: Case, duration: Duration) -> Run {
        let meter = CpuMeter::start(&self.ours);
        let before = self.cpu();
        let expr = case.expr(self.p.clients, duration.as_millis());
        let result = parse_ints(&expr, &eval(&self.g1, &expr));
        let [ops, failed, ns, mean, p50, p99] = result[..] else {
            panic!("{expr} returned {result:?}")
        };
        let after = self.cpu();
        assert!(ops > 0 && failed == 0, "{case:?}: {result:?}");
        Run {
            ops,
            elapsed_ns: ns as f64,
            mean_ns: mean as f64,
            p50_ns: p50 as f64,
            p99_ns: p99 as f64,
            cpu: Cpu {
                masters: after.masters - before.masters,
                bench: after.bench - before.bench,
                g1: after.g1 - before.g1,
                g23: after.g23 - before.g23,
            },
            foreign: meter.foreign_share(&self.ours),
        }
    }

    fn beams(&self) -> [(&str, &BeamNode); 3] {
        [("g1", &self.g1), ("g2", &self.g23[0]), ("g3", &self.g23[1])]
    }

    /// The memory figures: `global`'s names first (on the BEAM nodes), then
    /// erl_quorum's (on the masters).
    fn memory(&self, rt: &tokio::runtime::Runtime, node: &Node, serving: &str) -> Memory {
        let mut m = Memory::default();
        let settle = || std::thread::sleep(Duration::from_secs(2));
        let beam_rss = |what: &str, g: &BeamNode| Rss {
            what: what.to_owned(),
            before: rss_bytes(g.os_pid()).unwrap_or(0),
            after: 0,
        };

        if self.p.global_names > 0 {
            let count = self.p.global_names;
            eprintln!("registering {count} global names from g1 ...");
            // global takes one name per process: an owner per name, spawned
            // before the "before" figure, so their own memory is not counted.
            eval(
                &self.g1,
                &format!(
                    "GOwners = [eq_services_bench:spawn_owner() || _ <- lists:seq(1, {count})], ok"
                ),
            );
            settle();
            m.global = self.beams().iter().map(|(w, g)| beam_rss(w, g)).collect();
            let expr = format!(
                "eq_services_bench:register_many(global, eq_services_gmem, {count}, GOwners, 1)"
            );
            let out = parse_ints(&expr, &eval_for(&self.g1, &expr, Duration::from_secs(3600)));
            m.global_names = out[0];
            m.global_took = Duration::from_nanos(out[1]);
            settle();
            for (rss, (_, g)) in m.global.iter_mut().zip(self.beams()) {
                rss.after = rss_bytes(g.os_pid()).unwrap_or(0);
            }
            // The owners' exits take their names along.
            eval(&self.g1, "[exit(P, kill) || P <- GOwners], ok");
        }

        if self.p.names > 0 {
            let count = self.p.names;
            let mut owners = Vec::new();
            for _ in 0..self.p.owners {
                owners.push(node.spawn_process());
            }
            let owner_pids: Vec<_> = owners.iter().map(|o| o.pid().clone()).collect();
            let mut probe = node.spawn_process();
            let all_masters = self.masters.names().to_vec();
            settle();
            let labels = ["serving master", "master 2", "master 3"];
            m.rust = self
                .masters
                .os_pids()
                .into_iter()
                .zip(labels)
                .map(|(pid, what)| Rss {
                    what: format!("{what} (erl_quorum serve)"),
                    before: rss_bytes(pid).unwrap_or(0),
                    after: 0,
                })
                .collect();
            m.rust.extend(
                self.beams()
                    .iter()
                    .map(|(w, g)| beam_rss(&format!("{w} (BEAM, rust_registry table)"), g)),
            );
            let bench_before = rss_bytes(std::process::id()).unwrap_or(0);
            eprintln!(
                "registering {count} names on {serving} with {} Registry clients, {} owners ...",
                self.p.registrars, self.p.owners
            );
            m.took = rt.block_on(rust_side::register_names(
                node,
                serving,
                count,
                self.p.registrars,
                &owner_pids,
            ));
            m.names = count;
            // The other masters follow the serving node's names: wait until
            // they (and the BEAM tables) have them all.
            let expect = count as i64;
            m.known = rt.block_on(rust_side::wait_names(
                &mut probe,
                &all_masters,
                expect,
                Duration::from_secs(120),
            ));
            for (_, g) in self.beams() {
                let _ = g.eval_timeout(
                    &format!(
                        "eq_peer:wait_until(fun() -> ets:info(rust_registry, size) >= {expect} end, 120000)"
                    ),
                    Duration::from_secs(130),
                );
            }
            settle();
            let pids: Vec<u32> = self
                .masters
                .os_pids()
                .into_iter()
                .chain(self.beams().iter().map(|(_, g)| g.os_pid()))
                .collect();
            for (rss, pid) in m.rust.iter_mut().zip(pids) {
                rss.after = rss_bytes(pid).unwrap_or(0);
            }
            m.rust.push(Rss {
                what: "this process (Registry clients, owners)".into(),
                before: bench_before,
                after: rss_bytes(std::process::id()).unwrap_or(0),
            });
            drop(owners);
        }
        m
    }
}

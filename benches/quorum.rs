//! Quorum benchmark: lock + release pairs on erl_quorum's locker masters
//! against `global:set_lock/del_lock` on BEAM nodes, measured in the same
//! run.
//!
//! ```text
//! cargo bench --bench quorum                 # OTP 25
//! EQ_OTP=27 cargo bench --bench quorum       # OTP 27 (erl27 chroot, root only)
//! EQ_BENCH_SCALE=0.3 EQ_BENCH_ROUNDS=1 cargo bench --bench quorum   # a quick smoke run
//! EQ_QBENCH_MASTER_WORKERS=0 cargo bench --bench quorum   # masters on a worker per core
//! EQ_QBENCH_FAN_OUT=all cargo bench --bench quorum   # every master a round (or `idle`: all when idle)
//! EQ_BUSY_POLL_US=0 cargo bench --bench quorum   # nodes sleep between rounds (no busy polling)
//! ```
//!
//! One process tree:
//! - three Rust masters, W = 2, each an `erl_quorum serve --fresh` child
//!   process (as in production: a process, a runtime and sockets of its
//!   own);
//! - a Rust client node in this process, on its own runtime: one
//!   [`LockerClient`](erl_quorum::quorum::client::LockerClient) (a Rust
//!   process) per client task, so the client pays the network like any
//!   other client;
//! - three BEAM nodes connected to each other, for `global`; the first one
//!   also runs the BEAM client (`eq_locker_client`, the calls wooga/locker's
//!   client makes) against the Rust masters. The BEAM loops are in
//!   `erlang_test/eq_quorum_bench.erl`.
//!
//! - unless `EQ_QBENCH_COLOC=0`, `global`'s layout for the Rust side too:
//!   a client node in this process that is also one of three masters (the
//!   other two are `erl_quorum serve` child processes), as `global`'s
//!   client runs on one of its three nodes. Its client reaches its own
//!   master without a socket, as `global:set_lock` takes the local lock.
//!
//! Every master is a process of its own (in the layout above, the client's
//! node is one), as in production: its own runtime and its own share of the
//! machine.
//!
//! Every case runs for a fixed time with 1 and with 16 client processes,
//! each on a key of its own (global locks on different ids never contend),
//! plus a contended variant: 16 processes on one key. Cases are measured
//! back to back within a round, the order flipping every round, and each
//! figure is the median over the rounds; ratios are medians of the rounds'
//! ratios. The machine is shared: the CPU other processes used during the
//! measurements is reported, with the CPU our own processes spent per pair,
//! which moves far less with the load than wall-clock figures do.

#[path = "../tests/common/mod.rs"]
mod common;
// Not `mod report;`: that would be benches/report.rs, which cargo would take
// for a bench target of its own.
#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/masters.rs"]
mod masters;
#[path = "quorum/report.rs"]
mod report;
#[path = "quorum/rust_side.rs"]
mod rust_side;
#[path = "support/setup.rs"]
mod setup;
#[path = "support/stats.rs"]
mod stats;

use common::BeamNode;
use erl_quorum::Node;
use report::{cpu_ticks, CpuMeter};
use rust_side::MasterProcs;
use setup::{env_parse, env_workers, eval_for, parse_ints, runtime};
use std::time::{Duration, Instant};

const COOKIE: &str = "eq_qbench_cookie";
/// How long one measuring expression may take before the run is abandoned.
const EVAL_TIMEOUT: Duration = common::EVAL_TIMEOUT.saturating_mul(4);

/// `EQ_BENCH_SCALE` multiplies the time each measurement runs,
/// `EQ_BENCH_ROUNDS` sets the rounds, `EQ_BENCH_WORKERS` the Rust client
/// node's worker threads (default 1; 0: one per core),
/// `EQ_QBENCH_MASTER_WORKERS` the masters' (default 1, as `erl_quorum serve`; 0: one per core),
/// `EQ_QBENCH_CLIENTS` the concurrent clients (16), `EQ_QBENCH_COLOC=0`
/// skips the cases with the client on a master node.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub rounds: usize,
    pub duration: Duration,
    pub clients: usize,
    pub client_workers: Option<usize>,
    pub master_workers: Option<usize>,
    pub coloc: bool,
}

impl Params {
    fn from_env() -> Params {
        let scale: f64 = env_parse("EQ_BENCH_SCALE").unwrap_or(1.0);
        // Short measurements and many rounds: back-to-back cases rarely
        // straddle a change in the machine's load, and the median of the
        // rounds shrugs off the few that do. About 8 s per round.
        Params {
            rounds: env_parse("EQ_BENCH_ROUNDS").unwrap_or(7).max(1),
            duration: Duration::from_millis(((700.0 * scale).round() as u64).max(50)),
            clients: env_parse("EQ_QBENCH_CLIENTS").unwrap_or(16).max(2),
            // One worker: the other core is left to the masters, and on a
            // 2-core machine a second one mostly adds cross-thread wakeups.
            client_workers: env_workers("EQ_BENCH_WORKERS", Some(1)),
            master_workers: env_workers("EQ_QBENCH_MASTER_WORKERS", Some(1)),
            coloc: env_parse::<u8>("EQ_QBENCH_COLOC").unwrap_or(1) != 0,
        }
    }
}

/// What is measured. The discriminants index a round's `Vec<Run>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    GlobalSeq,
    GlobalPar,
    GlobalShared,
    RustSeq,
    RustPar,
    RustShared,
    BeamSeq,
    BeamPar,
    ColocSeq,
    ColocPar,
}

const CASES: usize = 10;

impl Case {
    fn all() -> [Case; CASES] {
        use Case::*;
        [
            GlobalSeq,
            GlobalPar,
            GlobalShared,
            RustSeq,
            RustPar,
            RustShared,
            BeamSeq,
            BeamPar,
            ColocSeq,
            ColocPar,
        ]
    }

    fn label(self) -> &'static str {
        match self {
            Case::GlobalSeq => "global 1",
            Case::GlobalPar => "global N",
            Case::GlobalShared => "global shared",
            Case::RustSeq => "rust 1",
            Case::RustPar => "rust N",
            Case::RustShared => "rust shared",
            Case::BeamSeq => "beam->rust 1",
            Case::BeamPar => "beam->rust N",
            Case::ColocSeq => "coloc 1",
            Case::ColocPar => "coloc N",
        }
    }

    fn coloc(self) -> bool {
        matches!(self, Case::ColocSeq | Case::ColocPar)
    }
}

/// CPU clock ticks each group of our processes used during one measurement.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// The three `erl_quorum serve` processes.
    masters: u64,
    /// The two `erl_quorum serve` processes beside the client's own master.
    coloc_masters: u64,
    /// This process: the Rust client nodes (one of them also a master).
    bench: u64,
    /// The BEAM node that runs the BEAM-side loops.
    g1: u64,
    /// The other two BEAM nodes.
    g23: u64,
}

impl Cpu {
    /// (servers, client) ticks for `case`.
    pub fn split(&self, case: Case) -> (u64, u64) {
        match case {
            Case::GlobalSeq | Case::GlobalPar | Case::GlobalShared => (self.g1 + self.g23, 0),
            Case::RustSeq | Case::RustPar | Case::RustShared => (self.masters, self.bench),
            Case::BeamSeq | Case::BeamPar => (self.masters, self.g1),
            // As for global: the client's node is one of the servers.
            Case::ColocSeq | Case::ColocPar => (self.bench + self.coloc_masters, 0),
        }
    }
}

/// The figures of one measurement.
#[derive(Debug, Clone, Copy, Default)]
pub struct Run {
    pub pairs: u64,
    pub failed: u64,
    pub elapsed_ns: f64,
    pub mean_ns: f64,
    pub p50_ns: f64,
    pub p99_ns: f64,
    pub cpu: Cpu,
    /// Share of the machine's CPU other processes used meanwhile.
    pub foreign: Option<f64>,
}

impl Run {
    pub fn pairs_per_s(&self) -> f64 {
        self.pairs as f64 / (self.elapsed_ns / 1e9)
    }
}

/// `global`'s layout for the Rust side: a client node that is also a
/// master (on a runtime of its own), and the two masters beside it.
struct Coloc {
    rt: tokio::runtime::Runtime,
    node: Node,
    procs: MasterProcs,
    /// The three masters, the client's own node first.
    cluster: Vec<String>,
}

impl Coloc {
    fn start(workers: Option<usize>, master_workers: Option<usize>) -> Coloc {
        let rt = runtime(workers);
        let node = rt.block_on(async {
            let name = format!("{}@127.0.0.1", common::unique_name("qb_cm0"));
            Node::start(setup::node_config(name, COOKIE))
                .await
                .expect("start the client-and-master node")
        });
        let procs = MasterProcs::start_with(
            "qb_cm",
            COOKIE,
            master_workers,
            2,
            &[node.name().to_owned()],
        );
        let cluster: Vec<String> = std::iter::once(node.name().to_owned())
            .chain(procs.names().iter().cloned())
            .collect();
        {
            let _guard = rt.enter();
            rust_side::start_master(&node, &cluster);
        }
        Coloc {
            rt,
            node,
            procs,
            cluster,
        }
    }

    fn shutdown(self) {
        self.node.shutdown();
        drop(self.procs);
        self.rt.shutdown_timeout(Duration::from_secs(2));
    }
}

/// Everything the measurements need.
struct Bench {
    p: Params,
    client_rt: tokio::runtime::Runtime,
    client_node: Node,
    masters: MasterProcs,
    coloc: Option<Coloc>,
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
        "quorum bench: OTP {} (EQ_OTP), {p:?}, load average {}",
        otp.release(),
        report::loadavg()
    );
    common::ensure_epmd().expect("epmd");

    // The Rust client nodes run on runtimes of their own, and this thread
    // stays outside them: the harness's evals block.
    let client_rt = runtime(p.client_workers);
    let client_node = client_rt.block_on(async {
        let name = format!("{}@127.0.0.1", common::unique_name("qb_client"));
        Node::start(setup::node_config(name, COOKIE))
            .await
            .expect("start the client node")
    });
    let coloc = p
        .coloc
        .then(|| Coloc::start(p.client_workers, p.master_workers));
    let masters = MasterProcs::start("qb_m", COOKIE, p.master_workers);

    let start_beam = |prefix: &str| {
        BeamNode::start(&common::unique_name(prefix), COOKIE, &[])
            .unwrap_or_else(|e| panic!("start BEAM node {prefix}: {e}"))
    };
    let g1 = start_beam("qb_g1");
    let g23 = [start_beam("qb_g2"), start_beam("qb_g3")];
    let release = eval(&g1, "erlang:system_info(otp_release)");
    let erts = eval(&g1, "erlang:system_info(version)");
    let list = |names: &mut dyn Iterator<Item = &str>| {
        format!(
            "[{}]",
            names.map(common::atom).collect::<Vec<_>>().join(",")
        )
    };
    let beam_nodes = list(&mut [&g1, &g23[0], &g23[1]].into_iter().map(|n| n.node_name()));
    eval(&g1, &format!("GN = {beam_nodes}"));
    eval(
        &g1,
        &format!(
            "QM = {}",
            list(&mut masters.names().iter().map(String::as_str))
        ),
    );
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

    let mut ours = vec![
        std::process::id(),
        g1.os_pid(),
        g23[0].os_pid(),
        g23[1].os_pid(),
    ];
    ours.extend(masters.os_pids());
    if let Some(coloc) = &coloc {
        ours.extend(coloc.procs.os_pids());
    }
    let bench = Bench {
        p,
        client_rt,
        client_node,
        masters,
        coloc,
        g1,
        g23,
        ours,
    };

    // Warm-up: connects every client to every master and gets every path
    // past its first, slower calls before anything counts.
    let warm = Duration::from_millis(200);
    for case in Case::all() {
        if case.coloc() && !p.coloc {
            continue;
        }
        bench.measure(case, warm);
    }

    let meter = CpuMeter::start(&bench.ours);
    let groups: [&[Case]; 3] = [
        &[
            Case::GlobalSeq,
            Case::RustSeq,
            Case::BeamSeq,
            Case::ColocSeq,
        ],
        &[
            Case::GlobalPar,
            Case::RustPar,
            Case::BeamPar,
            Case::ColocPar,
        ],
        &[Case::GlobalShared, Case::RustShared],
    ];
    let mut rounds: Vec<Vec<Run>> = Vec::new();
    for round in 0..p.rounds {
        let mut runs = vec![Run::default(); CASES];
        for group in groups {
            let mut order: Vec<Case> = group
                .iter()
                .copied()
                .filter(|c| p.coloc || !c.coloc())
                .collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for case in order {
                runs[case as usize] = bench.measure(case, p.duration);
            }
        }
        let line: Vec<String> = Case::all()
            .iter()
            .filter(|c| p.coloc || !c.coloc())
            .map(|&c| {
                let r = &runs[c as usize];
                format!("{} {:.1}k", c.label(), r.pairs_per_s() / 1e3)
            })
            .collect();
        let foreign: Vec<String> = runs
            .iter()
            .filter_map(|r| r.foreign)
            .map(|f| format!("{:.0}", f * 100.0))
            .collect();
        eprintln!(
            "round {}: {} pairs/s; foreign CPU % per case: {}",
            round + 1,
            line.join(", "),
            foreign.join(" ")
        );
        rounds.push(runs);
    }
    let foreign = meter.foreign_share(&bench.ours);
    let per_case: Vec<f64> = rounds.iter().flatten().filter_map(|r| r.foreign).collect();

    report::print_report(&release, &erts, &p, &rounds);
    println!();
    if let Some(share) = foreign {
        let lo = per_case.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = per_case.iter().copied().fold(0.0, f64::max);
        println!(
            "Other processes used {:.0}% of the machine's CPU during the measurements \
             ({:.0}–{:.0}% per measurement){}; load average {} at the end.",
            share * 100.0,
            lo * 100.0,
            hi * 100.0,
            if share > 0.1 {
                " (figures are noisy; rerun on a quieter machine)"
            } else {
                ""
            },
            report::loadavg()
        );
    }

    let Bench {
        client_rt,
        client_node,
        masters,
        coloc,
        g1,
        g23,
        ..
    } = bench;
    client_node.shutdown();
    drop(masters);
    if let Some(coloc) = coloc {
        coloc.shutdown();
    }
    let _ = g1.stop();
    for g in g23 {
        let _ = g.stop();
    }
    client_rt.shutdown_timeout(Duration::from_secs(2));
    println!("\ntotal run time {:.1} s", started.elapsed().as_secs_f64());
}

fn eval(node: &BeamNode, expr: &str) -> String {
    eval_for(node, expr, EVAL_TIMEOUT)
}

/// Evaluates `expr` and parses its answer, a flat tuple of integers.
fn eval_ints(node: &BeamNode, expr: &str) -> Vec<u64> {
    parse_ints(expr, &eval(node, expr))
}

impl Bench {
    fn cpu(&self) -> Cpu {
        let ticks = |pid: u32| cpu_ticks(pid).unwrap_or(0);
        Cpu {
            masters: self.masters.os_pids().into_iter().map(ticks).sum(),
            coloc_masters: self
                .coloc
                .iter()
                .flat_map(|c| c.procs.os_pids())
                .map(ticks)
                .sum(),
            bench: ticks(std::process::id()),
            g1: ticks(self.g1.os_pid()),
            g23: self.g23.iter().map(|g| ticks(g.os_pid())).sum(),
        }
    }

    /// Runs `case` for `duration` and returns its figures.
    fn measure(&self, case: Case, duration: Duration) -> Run {
        let meter = CpuMeter::start(&self.ours);
        let before = self.cpu();
        let n = self.p.clients;
        let ms = duration.as_millis();
        let mut run = match case {
            Case::GlobalSeq => self.beam(&format!(
                "eq_quorum_bench:global_pairs(GN, 1, {ms}, distinct)"
            )),
            Case::GlobalPar => self.beam(&format!(
                "eq_quorum_bench:global_pairs(GN, {n}, {ms}, distinct)"
            )),
            Case::GlobalShared => self.beam(&format!(
                "eq_quorum_bench:global_pairs(GN, {n}, {ms}, shared)"
            )),
            Case::BeamSeq => self.beam(&format!(
                "eq_quorum_bench:locker_pairs(QM, 2, 1, {ms}, distinct)"
            )),
            Case::BeamPar => self.beam(&format!(
                "eq_quorum_bench:locker_pairs(QM, 2, {n}, {ms}, distinct)"
            )),
            Case::RustSeq | Case::RustPar | Case::RustShared | Case::ColocSeq | Case::ColocPar => {
                let clients = if matches!(case, Case::RustSeq | Case::ColocSeq) {
                    1
                } else {
                    n
                };
                let shared = case == Case::RustShared;
                match (&self.coloc, case.coloc()) {
                    (Some(c), true) => {
                        self.rust(&c.rt, &c.node, &c.cluster, clients, duration, shared)
                    }
                    (_, false) => self.rust(
                        &self.client_rt,
                        &self.client_node,
                        self.masters.names(),
                        clients,
                        duration,
                        shared,
                    ),
                    (None, true) => unreachable!("coloc cases run only with a coloc node"),
                }
            }
        };
        let after = self.cpu();
        run.cpu = Cpu {
            masters: after.masters - before.masters,
            coloc_masters: after.coloc_masters - before.coloc_masters,
            bench: after.bench - before.bench,
            g1: after.g1 - before.g1,
            g23: after.g23 - before.g23,
        };
        run.foreign = meter.foreign_share(&self.ours);
        // On the shared key a short, loaded run may complete nothing; on
        // distinct keys that means something is broken.
        let shared = matches!(case, Case::GlobalShared | Case::RustShared);
        assert!(shared || run.pairs > 0, "{case:?}: no pair completed");
        run
    }

    fn beam(&self, expr: &str) -> Run {
        let result = eval_ints(&self.g1, expr);
        let [pairs, failed, ns, mean, p50, p99] = result[..] else {
            panic!("{expr} returned {result:?}")
        };
        Run {
            pairs,
            failed,
            elapsed_ns: ns as f64,
            mean_ns: mean as f64,
            p50_ns: p50 as f64,
            p99_ns: p99 as f64,
            ..Run::default()
        }
    }

    fn rust(
        &self,
        rt: &tokio::runtime::Runtime,
        node: &Node,
        masters: &[String],
        clients: usize,
        duration: Duration,
        shared: bool,
    ) -> Run {
        let mut outcome = rt.block_on(rust_side::client_pairs(
            node, masters, clients, duration, shared,
        ));
        outcome.samples.sort_unstable();
        let s = &outcome.samples;
        // Nearest rank, as eq_quorum_bench's percentile/2.
        let pct = |p: usize| -> f64 {
            if s.is_empty() {
                return 0.0;
            }
            s[((p * s.len()).div_ceil(100)).max(1) - 1] as f64
        };
        Run {
            pairs: outcome.pairs,
            failed: outcome.failed,
            elapsed_ns: outcome.elapsed_ns as f64,
            mean_ns: s.iter().sum::<u64>() as f64 / s.len().max(1) as f64,
            p50_ns: pct(50),
            p99_ns: pct(99),
            ..Run::default()
        }
    }
}

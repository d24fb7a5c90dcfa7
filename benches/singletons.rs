//! Singletons benchmark: Paxtor singletons (`paxtor:name/2,3` in
//! `rebar_fixture`: a via tuple whose first use starts the process on one
//! BEAM host, held as a name by the Rust nodes) against what a BEAM user
//! writes with OTP alone, a `global`-registered gen_server started on demand
//! (`case global:whereis_name(K) of undefined -> gen_server:start({global,
//! K}, ...)`), measured from the same BEAM node in the same run; and the
//! failover time after `kill -9` of the node running a `:permanent`
//! singleton, as a distribution over several runs.
//!
//! ```text
//! cargo bench --bench singletons                          # OTP 25, about 2 min
//! EQ_OTP=27 cargo bench --bench singletons                # OTP 27 (erl27 chroot, root only)
//! EQ_BENCH_SCALE=0.3 EQ_BENCH_ROUNDS=1 EQ_SGBENCH_FAILOVERS=1 cargo bench --bench singletons   # smoke run
//! ```
//!
//! Knobs: `EQ_BENCH_SCALE` multiplies the time each measurement runs (700
//! ms; lookups half of it), `EQ_BENCH_ROUNDS` sets the rounds (5), `EQ_OTP`
//! the Erlang/OTP release (25), `EQ_SGBENCH_CLIENTS` the concurrent callers
//! (16), `EQ_SGBENCH_FAILOVERS` the kill -9 runs (5; 0 skips them),
//! `EQ_SGBENCH_LEASE_MS` the masters' `--session-lease-ms` (5000),
//! `EQ_SGBENCH_MARGIN_MS` their `--release-margin-ms` (500; passed only when
//! the binary has the flag), `EQ_SGBENCH_ONLY` measures only the cases whose
//! labels contain one of its comma-separated words (e.g. `lookup`),
//! `EQ_QBENCH_MASTER_WORKERS` the masters' tokio workers (1, as `erl_quorum
//! serve`; 0: one per core).
//!
//! One process tree:
//! - three Rust masters, W = 2, each an `erl_quorum serve --fresh` child
//!   process with the session lease and release margin above;
//! - three BEAM nodes connected to each other, for `global`, each running the
//!   `erl_quorum` application (rebar_fixture) with `rust_nodes` = the
//!   masters, so each is a host for singletons and keeps the `rust_registry`
//!   table. The first (g1) runs every measuring loop
//!   (`erlang_test/eq_singletons_bench.erl`); the steady-state singletons of
//!   both kinds are started from g2 (so calls from g1 cross one hop), the
//!   local-lookup ones from g1;
//! - for each failover run, one more such node (the victim), also connected
//!   for `global`, which starts a `:permanent` Paxtor singleton and a global
//!   one and is then killed with SIGKILL; g1 calls both until each answers
//!   from a live process again.
//!
//! Cases are measured in groups (the `global` case and erl_quorum's) back to
//! back within a round, the order flipping every round; each figure is the
//! median over the rounds and each ratio the median of the rounds' ratios,
//! oriented so that > 1 means erl_quorum is better. The CPU other processes
//! used during the measurements is reported, and the CPU our processes spent
//! per operation. Without `paxtor:name/2` in the fixture (before the feature
//! lands) the bench measures the `global` side alone.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/masters.rs"]
mod masters;
// Not `mod report;`: that would be benches/report.rs, which cargo would take
// for a bench target of its own.
#[path = "singletons/report.rs"]
mod report;
#[path = "support/setup.rs"]
mod setup;
#[path = "support/stats.rs"]
mod stats;

use common::BeamNode;
use cpu::{cpu_ticks, loadavg, CpuMeter};
use masters::MasterProcs;
use setup::{env_parse, env_workers, eval_for, parse_ints};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const COOKIE: &str = "eq_sgbench_cookie";
/// How long one measuring expression may take before the run is abandoned.
const EVAL_TIMEOUT: Duration = common::EVAL_TIMEOUT.saturating_mul(4);
/// The key of the steady-state singletons (started from g2).
const STEADY: &str = "eq_sb_steady";
/// The key of the singletons started from g1, for the local lookups.
const LOCAL: &str = "eq_sb_local";
/// How long a failover probe waits for the singleton to come back.
const FAILOVER_TIMEOUT_MS: u64 = 30_000;
/// A victim's Paxtor singleton must run on the victim: fresh keys tried.
const PLACEMENT_TRIES: usize = 8;

/// See the module docs for the environment variables.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub rounds: usize,
    pub duration: Duration,
    pub clients: usize,
    pub master_workers: Option<usize>,
    pub failovers: usize,
    pub lease_ms: u64,
    pub margin_ms: u64,
    pub only: Option<&'static str>,
}

impl Params {
    fn from_env() -> Params {
        let scale: f64 = env_parse("EQ_BENCH_SCALE").unwrap_or(1.0);
        Params {
            rounds: env_parse("EQ_BENCH_ROUNDS").unwrap_or(5).max(1),
            duration: Duration::from_millis(((700.0 * scale).round() as u64).max(50)),
            clients: env_parse("EQ_SGBENCH_CLIENTS").unwrap_or(16).max(2),
            master_workers: env_workers("EQ_QBENCH_MASTER_WORKERS", Some(1)),
            failovers: env_parse("EQ_SGBENCH_FAILOVERS").unwrap_or(5),
            lease_ms: env_parse("EQ_SGBENCH_LEASE_MS").unwrap_or(5_000),
            margin_ms: env_parse("EQ_SGBENCH_MARGIN_MS").unwrap_or(500),
            only: std::env::var("EQ_SGBENCH_ONLY")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .map(|s| &*s.leak()),
        }
    }
}

/// What is measured. The discriminants index a round's `Vec<Run>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    GlobalFirst,
    PaxtorFirst,
    GlobalCall1,
    ViaCall1,
    GlobalCallN,
    ViaCallN,
    GlobalLookup,
    GlobalEtsLookup,
    PaxtorLookup,
    RegistryLookup,
    RegistryPlainLookup,
    EtsLookup,
    GlobalLookupLocal,
    PaxtorLookupLocal,
}

const CASES: usize = 14;

impl Case {
    /// The groups measured back to back, the `global` case first.
    fn groups() -> Vec<Vec<Case>> {
        use Case::*;
        vec![
            vec![GlobalFirst, PaxtorFirst],
            vec![GlobalCall1, ViaCall1],
            vec![GlobalCallN, ViaCallN],
            vec![
                GlobalLookup,
                GlobalEtsLookup,
                PaxtorLookup,
                RegistryLookup,
                RegistryPlainLookup,
                EtsLookup,
            ],
            vec![GlobalLookupLocal, PaxtorLookupLocal],
        ]
    }

    /// The groups with the cases this run measures: those `only` names, and
    /// the `global` ones alone when the fixture has no Paxtor singletons.
    fn selected(only: Option<&str>, paxtor: bool) -> Vec<Vec<Case>> {
        Case::groups()
            .into_iter()
            .map(|group| {
                group
                    .into_iter()
                    .filter(|c| paxtor || c.is_global())
                    .filter(|c| {
                        only.is_none_or(|only| {
                            only.split(',').any(|w| c.label().contains(w.trim()))
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|group| !group.is_empty())
            .collect()
    }

    fn is_global(self) -> bool {
        use Case::*;
        matches!(
            self,
            GlobalFirst
                | GlobalCall1
                | GlobalCallN
                | GlobalLookup
                | GlobalEtsLookup
                | GlobalLookupLocal
        )
    }

    pub fn label(self) -> &'static str {
        use Case::*;
        match self {
            GlobalFirst => "global first use",
            PaxtorFirst => "paxtor first use",
            GlobalCall1 => "global call 1",
            ViaCall1 => "via call 1",
            GlobalCallN => "global call N",
            ViaCallN => "via call N",
            GlobalLookup => "global lookup",
            GlobalEtsLookup => "global_names ets lookup",
            PaxtorLookup => "paxtor lookup",
            RegistryLookup => "rust_registry lookup",
            RegistryPlainLookup => "rust_registry plain lookup",
            EtsLookup => "rust_registry ets lookup",
            GlobalLookupLocal => "global lookup local",
            PaxtorLookupLocal => "paxtor lookup local",
        }
    }

    /// The expression g1 evaluates.
    fn expr(self, n: usize, ms: u128) -> String {
        use Case::*;
        let b = "eq_singletons_bench";
        let calls = "eq_services_bench:calls";
        let via = format!("{b}:via({STEADY})");
        let global = format!("{{global, {STEADY}}}");
        // A lookup costs nanoseconds: half the time gives plenty of batches.
        let lms = (ms / 2).max(25);
        match self {
            GlobalFirst => format!("{b}:first_use(global, 1, {ms})"),
            PaxtorFirst => format!("{b}:first_use(paxtor, 1, {ms})"),
            GlobalCall1 => format!("{calls}({global}, 1, {ms})"),
            ViaCall1 => format!("{calls}({via}, 1, {ms})"),
            GlobalCallN => format!("{calls}({global}, {n}, {ms})"),
            ViaCallN => format!("{calls}({via}, {n}, {ms})"),
            GlobalLookup => format!("{b}:lookups(global, {STEADY}, {lms})"),
            PaxtorLookup => format!("{b}:lookups(paxtor, {STEADY}, {lms})"),
            GlobalEtsLookup => format!("{b}:lookups(global_ets, {STEADY}, {lms})"),
            RegistryLookup => format!("{b}:lookups(rust_registry, {STEADY}, {lms})"),
            RegistryPlainLookup => {
                format!("{b}:lookups(rust_registry_plain, {STEADY}, {lms})")
            }
            EtsLookup => format!("{b}:lookups(ets, {STEADY}, {lms})"),
            GlobalLookupLocal => format!("{b}:lookups(global, {LOCAL}, {lms})"),
            PaxtorLookupLocal => format!("{b}:lookups(paxtor, {LOCAL}, {lms})"),
        }
    }
}

/// CPU clock ticks each group of our processes used during one measurement.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// The three `erl_quorum serve` processes.
    pub masters: u64,
    /// The BEAM node that runs the loops.
    pub g1: u64,
    /// The other two BEAM nodes (hosts of singletons).
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

/// One kill -9 run: milliseconds from the kill until a call answered from
/// a live process again, seen from g1.
#[derive(Debug, Clone, Copy, Default)]
pub struct Failover {
    pub paxtor_ms: Option<f64>,
    pub global_ms: Option<f64>,
    /// Calls that failed (noconnection, noproc, timeout) before that.
    pub paxtor_failed: u64,
    pub global_failed: u64,
    /// The Paxtor singleton came back on g1 (else on g2 or g3).
    pub paxtor_on_g1: bool,
}

/// How the run was set up, for the report's header.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub release: String,
    pub erts: String,
    /// False: the fixture has no `paxtor:name/2` yet; `global` alone.
    pub paxtor: bool,
    /// `--release-margin-ms` passed (the binary has the flag).
    pub margin_flag: bool,
    /// Where the steady-state singletons run: (Paxtor's node, global's).
    pub steady_nodes: String,
    pub local_nodes: String,
    /// Of the first-use Paxtor singletons started from g1, how many ran on g1.
    pub first_here: String,
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
        "singletons bench: OTP {} (EQ_OTP), {p:?}, load average {}",
        otp.release(),
        loadavg()
    );
    common::ensure_epmd().expect("epmd");

    let mut setup = Setup {
        margin_flag: serve_has_flag("--release-margin-ms"),
        ..Setup::default()
    };
    let mut extra = vec!["--session-lease-ms".to_string(), p.lease_ms.to_string()];
    if setup.margin_flag {
        extra.extend(["--release-margin-ms".to_string(), p.margin_ms.to_string()]);
    } else {
        eprintln!("`erl_quorum serve` has no --release-margin-ms: the masters keep their default");
    }
    let masters = MasterProcs::start_with_args("sg_m", COOKIE, p.master_workers, 3, &[], &extra);
    let rust_nodes = erl_list(masters.names().iter().map(String::as_str));

    let g1 = start_app_node("sg_g1", &rust_nodes);
    let g23 = [
        start_app_node("sg_g2", &rust_nodes),
        start_app_node("sg_g3", &rust_nodes),
    ];
    setup.release = eval(&g1, "erlang:system_info(otp_release)");
    setup.erts = eval(&g1, "erlang:system_info(version)");
    let connected = eval(
        &g1,
        &format!(
            "eq_quorum_bench:connect({})",
            erl_list(g23.iter().map(|n| n.node_name()))
        ),
    );
    eprintln!(
        "BEAM nodes for global: {connected} (and {})",
        g1.node_name()
    );
    setup.paxtor = eval(
        &g1,
        "code:ensure_loaded(paxtor), erlang:function_exported(paxtor, name, 2)",
    ) == "true";
    if !setup.paxtor {
        eprintln!("rebar_fixture has no paxtor:name/2 yet: measuring the global side alone");
    }

    // The singletons the steady-state cases call and look up.
    let (place, place_local) = if setup.paxtor {
        (
            format!("eq_singletons_bench:place({STEADY})"),
            format!("eq_singletons_bench:place({LOCAL})"),
        )
    } else {
        let global = |k| format!("{{none, node(eq_singletons_bench:ensure_global({k}))}}");
        (global(STEADY), global(LOCAL))
    };
    setup.steady_nodes = eval(&g23[0], &place);
    setup.local_nodes = eval(&g1, &place_local);
    if setup.paxtor {
        setup.first_here = eval(&g1, "eq_singletons_bench:placements(20)");
        // The same process under a plain name, for the plain lookup.
        eval(
            &g23[0],
            &format!("eq_singletons_bench:plain_name({STEADY})"),
        );
        let name = eval(&g1, &format!("eq_singletons_bench:registry_name({STEADY})"));
        eprintln!("the steady singleton's name in the rust_registry table: {name}");
    }
    eprintln!(
        "singletons (Paxtor's node, global's): steady {}, local {}; first-use Paxtor singletons \
         on g1: {}",
        setup.steady_nodes, setup.local_nodes, setup.first_here
    );

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

    let groups = Case::selected(p.only, setup.paxtor);
    // Warm-up: every path past its first, slower calls before anything
    // counts.
    let warm = Duration::from_millis(200);
    for case in groups.iter().flatten() {
        bench.measure(*case, warm);
    }

    let meter = CpuMeter::start(&bench.ours);
    let mut rounds: Vec<Vec<Run>> = Vec::new();
    for round in 0..p.rounds {
        let mut runs = vec![Run::default(); CASES];
        for group in &groups {
            let mut order = group.clone();
            if round % 2 == 1 {
                order.reverse();
            }
            for case in order {
                runs[case as usize] = bench.measure(case, p.duration);
            }
        }
        let line: Vec<String> = groups
            .iter()
            .flatten()
            .map(|&c| {
                let r = &runs[c as usize];
                format!("{} {:.0} µs p50", c.label(), r.p50_ns / 1e3)
            })
            .collect();
        eprintln!("round {}: {}", round + 1, line.join(", "));
        rounds.push(runs);
    }
    let foreign = meter.foreign_share(&bench.ours);
    let per_case: Vec<f64> = rounds.iter().flatten().filter_map(|r| r.foreign).collect();

    let failovers: Vec<Failover> = (0..p.failovers)
        .filter_map(|i| bench.failover(i, &rust_nodes, setup.paxtor))
        .collect();

    report::print_report(&setup, &p, &rounds);
    report::print_failovers(&setup, &p, &failovers);
    println!();
    if let Some(share) = foreign {
        let (lo, hi) = stats::range(&per_case);
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
    drop(masters);
    let _ = g1.stop();
    for g in g23 {
        let _ = g.stop();
    }
    println!("\ntotal run time {:.1} s", started.elapsed().as_secs_f64());
}

fn eval(node: &BeamNode, expr: &str) -> String {
    eval_for(node, expr, EVAL_TIMEOUT)
}

/// `[a, b]` as an Erlang list of quoted atoms.
fn erl_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let atoms: Vec<String> = names.into_iter().map(common::atom).collect();
    format!("[{}]", atoms.join(","))
}

/// Whether `erl_quorum serve --help` lists `flag`.
fn serve_has_flag(flag: &str) -> bool {
    std::process::Command::new(env!("CARGO_BIN_EXE_erl_quorum"))
        .args(["serve", "--help"])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(flag))
}

/// A BEAM node named `{prefix}_…` running the erl_quorum application
/// against `rust_nodes` (an Erlang list), subscribed and with a confirmed
/// session, so it hosts singletons at once.
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

/// Microseconds since the Unix epoch: the clock os:system_time reads.
fn system_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Bench {
    fn cpu(&self) -> Cpu {
        let ticks = |pid: u32| cpu_ticks(pid).unwrap_or(0);
        Cpu {
            masters: self.masters.os_pids().into_iter().map(ticks).sum(),
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
                g1: after.g1 - before.g1,
                g23: after.g23 - before.g23,
            },
            foreign: meter.foreign_share(&self.ours),
        }
    }

    /// Failover run `i`: a fresh victim node joins (erl_quorum host, and
    /// `global` through g1..g3), starts a `:permanent` Paxtor singleton
    /// (fresh keys until one runs on the victim) and a global one, and is
    /// killed with SIGKILL; g1 then calls both until each answers from a
    /// live process. None when no Paxtor singleton could be placed on it.
    fn failover(&self, i: usize, rust_nodes: &str, paxtor: bool) -> Option<Failover> {
        let mut victim = start_app_node(&format!("sg_v{i}"), rust_nodes);
        let victim_atom = common::atom(victim.node_name());
        let beams = erl_list([&self.g1, &self.g23[0], &self.g23[1]].map(|g| g.node_name()));
        eval(&victim, &format!("eq_quorum_bench:connect({beams})"));
        let mut key = None;
        for t in 0..PLACEMENT_TRIES {
            let k = format!("{{eq_sb_failover, {i}, {t}}}");
            let placed = if paxtor {
                eval(
                    &victim,
                    &format!("eq_singletons_bench:place_permanent({k})"),
                )
            } else {
                eval(
                    &victim,
                    &format!("{{{victim_atom}, node(eq_singletons_bench:ensure_global({k}))}}"),
                )
            };
            if placed.starts_with(&format!("{{{victim_atom},")) {
                key = Some(k);
                break;
            }
            eprintln!("failover {i}: {k} placed at {placed}, not on the victim; another key");
        }
        let Some(key) = key else {
            eprintln!("failover {i}: no Paxtor singleton ran on the victim; run skipped");
            return None;
        };
        // g1 knows both where they are, as a caller would before the kill.
        let mut check = format!("{victim_atom} = node(global:whereis_name({key}))");
        if paxtor {
            check += &format!(
                ", {victim_atom} = node(gen_server:call(\
                 eq_singletons_bench:via({key}, [{{restart, permanent}}]), whoami))"
            );
        }
        eval(&self.g1, &check);

        let impls = if paxtor {
            "[paxtor, global]"
        } else {
            "[global]"
        };
        let killed_at = system_us();
        victim.kill9();
        let expr = format!(
            "eq_singletons_bench:failover_probe({key}, {victim_atom}, {FAILOVER_TIMEOUT_MS}, {impls})"
        );
        let out = parse_ints(
            &expr,
            &eval_for(
                &self.g1,
                &expr,
                Duration::from_millis(FAILOVER_TIMEOUT_MS + 10_000),
            ),
        );
        let [pax_at, glob_at, pax_failed, glob_failed, here] = out[..] else {
            panic!("{expr} returned {out:?}")
        };
        let ms = |at: u64| (at > 0).then(|| at.saturating_sub(killed_at) as f64 / 1e3);
        let run = Failover {
            paxtor_ms: ms(pax_at),
            global_ms: ms(glob_at),
            paxtor_failed: pax_failed,
            global_failed: glob_failed,
            paxtor_on_g1: here == 1,
        };
        eprintln!("failover {}: {run:?}", i + 1);
        Some(run)
    }
}

//! The services bench's report: the markdown tables (the CPU accounting
//! behind them is `benches/support/cpu.rs`).

use super::{Case, Memory, Params, Run};
use crate::cpu::CLOCK_TICKS_PER_S;
use crate::stats::{median, ratio_summary, Better};

fn kilo(v: f64) -> String {
    format!("{:.2} k", v / 1e3)
}

#[derive(Clone, Copy)]
enum Unit {
    PerS,
    Us,
    Ns,
}

impl Unit {
    fn fmt(self, v: f64) -> String {
        match self {
            Unit::PerS => kilo(v),
            Unit::Us => format!("{v:.0}"),
            Unit::Ns => format!("{v:.0}"),
        }
    }
}

struct Row {
    what: String,
    unit: Unit,
    unit_text: &'static str,
    better: Better,
    /// The target for the ratio, if this row has one.
    target: Option<f64>,
    global: Case,
    ours: Case,
    get: fn(&Run) -> f64,
}

/// The figure of `case` in every round.
fn per_round(rounds: &[Vec<Run>], case: Case, get: fn(&Run) -> f64) -> Vec<f64> {
    rounds.iter().map(|r| get(&r[case as usize])).collect()
}

/// Whether `case` was measured (EQ_SBENCH_ONLY may leave it out).
fn measured(rounds: &[Vec<Run>], case: Case) -> bool {
    rounds.iter().any(|r| r[case as usize].ops > 0)
}

fn rows(n: usize) -> Vec<Row> {
    let ops: fn(&Run) -> f64 = Run::ops_per_s;
    let mean_us: fn(&Run) -> f64 = |r| r.mean_ns / 1e3;
    let p50_us: fn(&Run) -> f64 = |r| r.p50_ns / 1e3;
    let p99_us: fn(&Run) -> f64 = |r| r.p99_ns / 1e3;
    let row = |what: &str, unit, unit_text, better, target, global, ours, get| Row {
        what: what.to_owned(),
        unit,
        unit_text,
        better,
        target,
        global,
        ours,
        get,
    };
    use Better::*;
    use Case::*;
    vec![
        row(
            "1. lock acquire latency, fresh process + fresh key: mean",
            Unit::Us,
            "µs/lock",
            Lower,
            Some(1.5),
            GlobalLatency,
            PaxtorLatency,
            mean_us,
        ),
        row(
            "1. lock acquire latency: p50",
            Unit::Us,
            "µs/lock",
            Lower,
            None,
            GlobalLatency,
            PaxtorLatency,
            p50_us,
        ),
        row(
            "1. lock acquire latency: p99",
            Unit::Us,
            "µs/lock",
            Lower,
            None,
            GlobalLatency,
            PaxtorLatency,
            p99_us,
        ),
        row(
            "1. locks by fresh processes on fresh keys, 1 looper",
            Unit::PerS,
            "locks/s",
            Higher,
            None,
            GlobalLatency,
            PaxtorLatency,
            ops,
        ),
        row(
            "1. lock cycle (spawn owner, lock own key, exit), 1 looper",
            Unit::PerS,
            "cycles/s",
            Higher,
            None,
            GlobalCycle1,
            PaxtorCycle1,
            ops,
        ),
        row(
            "1. lock cycle, 1 looper: mean",
            Unit::Us,
            "µs/cycle",
            Lower,
            None,
            GlobalCycle1,
            PaxtorCycle1,
            mean_us,
        ),
        row(
            &format!("2. lock cycle, {n} loopers"),
            Unit::PerS,
            "cycles/s",
            Higher,
            Some(1.5),
            GlobalCycleN,
            PaxtorCycleN,
            ops,
        ),
        row(
            "3. register + unregister, 1 process",
            Unit::PerS,
            "pairs/s",
            Higher,
            Some(10.0),
            GlobalReg1,
            RustReg1,
            ops,
        ),
        row(
            "3. register + unregister, 1 process: mean",
            Unit::Us,
            "µs/pair",
            Lower,
            None,
            GlobalReg1,
            RustReg1,
            mean_us,
        ),
        row(
            &format!("3. register + unregister, {n} processes"),
            Unit::PerS,
            "pairs/s",
            Higher,
            Some(10.0),
            GlobalRegN,
            RustRegN,
            ops,
        ),
        row(
            "4. whereis_name, registered name, tight loop",
            Unit::Ns,
            "ns/call",
            Lower,
            Some(1.0),
            GlobalWhereis,
            RustWhereis,
            |r| r.mean_ns,
        ),
        row(
            "5. gen_server:call by name, sequential, 1 caller",
            Unit::PerS,
            "calls/s",
            Higher,
            Some(0.9),
            GlobalCall1,
            ViaCall1,
            ops,
        ),
        row(
            "5. gen_server:call by name, 1 caller: p50",
            Unit::Us,
            "µs/call",
            Lower,
            None,
            GlobalCall1,
            ViaCall1,
            p50_us,
        ),
        row(
            &format!("5. gen_server:call by name, {n} callers"),
            Unit::PerS,
            "calls/s",
            Higher,
            None,
            GlobalCallN,
            ViaCallN,
            ops,
        ),
        // Not against `global`: the same lock with and without its token.
        row(
            "6. paxtor:lock(K, [fencing]) (`global` column: paxtor:lock(K)), fresh process + key: mean",
            Unit::Us,
            "µs/lock",
            Lower,
            None,
            PlainLatency,
            FencedLatency,
            mean_us,
        ),
        row(
            "6. paxtor:lock with fencing (`global` column: without): p50",
            Unit::Us,
            "µs/lock",
            Lower,
            None,
            PlainLatency,
            FencedLatency,
            p50_us,
        ),
    ]
}

pub fn print_report(release: &str, erts: &str, p: &Params, rounds: &[Vec<Run>]) {
    let n = p.clients;
    let release = release.trim_matches('"');
    let erts = erts.trim_matches('"');
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let workers = |w: Option<usize>| w.map_or("one per core".to_string(), |w| w.to_string());
    println!();
    println!(
        "Erlang/OTP {release} (erts {erts}), {cores} cores, loopback. Every loop runs on BEAM \
         node g1 of three connected for `global`. erl_quorum: 3 masters, W=2, as \
         `erl_quorum serve --fresh` processes (tokio workers: {}), all three BEAM nodes running \
         the erl_quorum application (rebar_fixture) with `rust_nodes` = the masters; g1 calls \
         the first master. The `global` echo server runs on g2, the Rust one on a Rust node in \
         the bench process (workers: {}), registered by Rust code. Each measurement runs {} ms; \
         median of {} rounds.",
        workers(p.master_workers),
        workers(p.client_workers),
        p.duration.as_millis(),
        p.rounds
    );
    println!(
        "Ratio: median of the rounds' ratios (each round measures each pair back to back, the \
         order flipping every round); > 1.0 means erl_quorum is better (global/ours for \
         latencies, ours/global for rates)."
    );
    println!();
    println!("| measurement | unit | global | erl_quorum | ratio | ratio range | target |");
    println!("|---|---|---:|---:|---:|---:|---|");
    let mut verdicts = Vec::new();
    for row in rows(n) {
        if !measured(rounds, row.global) || !measured(rounds, row.ours) {
            continue; // left out by EQ_SBENCH_ONLY
        }
        let g = per_round(rounds, row.global, row.get);
        let o = per_round(rounds, row.ours, row.get);
        let (ratio, lo, hi) = ratio_summary(row.better, &g, &o);
        let target = match row.target {
            Some(t) => {
                let met = if ratio >= t { "met" } else { "NOT met" };
                verdicts.push((row.what.clone(), t, ratio, met));
                format!("≥ {t} ({met})")
            }
            None => "info".to_string(),
        };
        println!(
            "| {} | {} | {} | {} | **{ratio:.2}** | {lo:.2}–{hi:.2} | {target} |",
            row.what,
            row.unit_text,
            row.unit.fmt(median(g)),
            row.unit.fmt(median(o)),
        );
    }
    print_cpu_table(p, rounds);
    println!();
    for (what, t, ratio, met) in verdicts {
        println!("Target ≥ {t}×, {what}: {met} ({ratio:.2}).");
    }
}

/// CPU time per operation, over all rounds, per group of processes.
fn print_cpu_table(p: &Params, rounds: &[Vec<Run>]) {
    println!();
    println!(
        "CPU time (user + system, all threads, from /proc) per operation, summed over the \
         rounds, in µs. g1 runs the loops (and, for erl_quorum, the guard and its registry \
         table); g2, g3 are the other `global` nodes (erl_quorum: registry subscribers); \
         \"bench\" is this process (the Rust echo server)."
    );
    println!();
    println!(
        "| CPU per operation | masters | g1 | g2 + g3 | bench | total | ratio (global/this) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let n = p.clients;
    let per_op = |case: Case| {
        let mut sums = [0u64; 4];
        let mut ops = 0u64;
        for round in rounds {
            let r = &round[case as usize];
            sums[0] += r.cpu.masters;
            sums[1] += r.cpu.g1;
            sums[2] += r.cpu.g23;
            sums[3] += r.cpu.bench;
            ops += r.ops;
        }
        sums.map(|t| t as f64 * 1e6 / CLOCK_TICKS_PER_S / ops.max(1) as f64)
    };
    for (g, o) in Case::pairs() {
        if g == Case::GlobalWhereis || !measured(rounds, g) || !measured(rounds, o) {
            // whereis: nanoseconds, all on g1, below the tick's resolution.
            continue;
        }
        let gt: f64 = per_op(g).iter().sum();
        for case in [g, o] {
            let c = per_op(case);
            let total: f64 = c.iter().sum();
            let what = case.label().replace(" N", &format!(" {n}"));
            println!(
                "| {what} | {:.0} | {:.0} | {:.0} | {:.0} | {total:.0} | {:.2}× |",
                c[0],
                c[1],
                c[2],
                c[3],
                gt / total
            );
        }
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.1}", bytes / (1024.0 * 1024.0))
}

pub fn print_memory(p: &Params, m: &Memory) {
    if m.names == 0 && m.global_names == 0 {
        println!("\n(memory figures skipped: EQ_BENCH_NAMES=0 and EQ_SBENCH_GLOBAL_NAMES=0)");
        return;
    }
    println!();
    println!(
        "6. Memory: VmRSS (/proc/PID/status) before and after registering names \
         `{{eq_services_mem, I}}`, each owned by one of {} long-lived processes.",
        p.owners
    );
    if m.names > 0 {
        println!();
        println!(
            "erl_quorum: {} names registered from Rust (`Registry::register`, {} concurrent \
             clients on the Rust node in this process, owners there too) against the serving \
             master in {:.1} s ({:.1} k names/s); the masters' services then knew {:?} names.",
            m.names,
            p.registrars,
            m.took.as_secs_f64(),
            m.names as f64 / m.took.as_secs_f64() / 1e3,
            m.known
        );
        print_rss(&m.rust, m.names);
        if let Some(serving) = m.rust.first() {
            let per = (serving.after as f64 - serving.before as f64) / m.names as f64;
            let met = if per < 300.0 { "met" } else { "NOT met" };
            println!();
            println!("Target < 300 B/name in the serving node: {met} ({per:.0} B/name).");
        }
    }
    if m.global_names > 0 {
        println!();
        println!(
            "global, for comparison: {} names registered with `global:register_name/2` from one \
             process on g1 (concurrent registrars contend for global's lock and back off for \
             seconds) in {:.1} s ({:.1} k names/s); global takes one name per process, so \
             each name has an owner of its own, spawned on g1 before the \"before\" figure.",
            m.global_names,
            m.global_took.as_secs_f64(),
            m.global_names as f64 / m.global_took.as_secs_f64() / 1e3
        );
        print_rss(&m.global, m.global_names);
    }
}

fn print_rss(rows: &[super::Rss], names: u64) {
    println!();
    println!("| process | RSS before MiB | after MiB | growth MiB | bytes/name |");
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        let growth = r.after as f64 - r.before as f64;
        println!(
            "| {} | {} | {} | {} | {:.0} |",
            r.what,
            mib(r.before as f64),
            mib(r.after as f64),
            mib(growth),
            growth / names as f64
        );
    }
}

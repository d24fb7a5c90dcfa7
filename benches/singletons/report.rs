//! The singletons bench's report: markdown tables ready for the README.

use super::{Case, Failover, Params, Run, Setup};
use crate::cpu::CLOCK_TICKS_PER_S;
use crate::stats::{median, range, ratio_summary, Better};

struct Row {
    what: String,
    unit: &'static str,
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

/// Whether `case` was measured (EQ_SGBENCH_ONLY, or a fixture without
/// Paxtor singletons, may leave it out).
fn measured(rounds: &[Vec<Run>], case: Case) -> bool {
    rounds.iter().any(|r| r[case as usize].ops > 0)
}

fn rows(n: usize) -> Vec<Row> {
    let rate: fn(&Run) -> f64 = Run::ops_per_s;
    let mean_us: fn(&Run) -> f64 = |r| r.mean_ns / 1e3;
    let p50_us: fn(&Run) -> f64 = |r| r.p50_ns / 1e3;
    let p99_us: fn(&Run) -> f64 = |r| r.p99_ns / 1e3;
    // Lookups: the median batch, robust to a batch the scheduler interrupted.
    let p50_ns: fn(&Run) -> f64 = |r| r.p50_ns;
    let row = |what: &str, unit, better, target, global, ours, get| Row {
        what: what.to_owned(),
        unit,
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
            "1. first use (start + first call), fresh key: p50",
            "µs",
            Lower,
            None,
            GlobalFirst,
            PaxtorFirst,
            p50_us,
        ),
        row(
            "1. first use: p99",
            "µs",
            Lower,
            None,
            GlobalFirst,
            PaxtorFirst,
            p99_us,
        ),
        row(
            "1. first use: mean",
            "µs",
            Lower,
            None,
            GlobalFirst,
            PaxtorFirst,
            mean_us,
        ),
        row(
            "2. call through the name, sequential",
            "calls/s",
            Higher,
            None,
            GlobalCall1,
            ViaCall1,
            rate,
        ),
        row(
            "2. call, sequential: p50",
            "µs",
            Lower,
            None,
            GlobalCall1,
            ViaCall1,
            p50_us,
        ),
        row(
            "2. call, sequential: p99",
            "µs",
            Lower,
            None,
            GlobalCall1,
            ViaCall1,
            p99_us,
        ),
        row(
            &format!("3. call, {n} concurrent callers"),
            "calls/s",
            Higher,
            None,
            GlobalCallN,
            ViaCallN,
            rate,
        ),
        row(
            &format!("3. call, {n} callers: p99"),
            "µs",
            Lower,
            None,
            GlobalCallN,
            ViaCallN,
            p99_us,
        ),
        row(
            "4. lookup, holder on g2: `paxtor:lookup(Via)` vs `global:whereis_name(K)`",
            "ns/call",
            Lower,
            Some(1.0),
            GlobalLookup,
            PaxtorLookup,
            p50_ns,
        ),
        row(
            "4. lookup, holder on g2: `rust_registry:whereis_name({'$eq_scope', paxtor, K})`",
            "ns/call",
            Lower,
            Some(1.0),
            GlobalLookup,
            RegistryLookup,
            p50_ns,
        ),
        row(
            "4. lookup, holder on g2: `rust_registry:whereis_name(K)`, a plain name",
            "ns/call",
            Lower,
            None,
            GlobalLookup,
            RegistryPlainLookup,
            p50_ns,
        ),
        row(
            "4. floor: bare `ets:lookup`, rust_registry (scoped key) vs global_names (atom key)",
            "ns/call",
            Lower,
            None,
            GlobalEtsLookup,
            EtsLookup,
            p50_ns,
        ),
        row(
            "5. lookup, holder on g1 (both check is_process_alive): `paxtor:lookup(Via)`",
            "ns/call",
            Lower,
            Some(1.0),
            GlobalLookupLocal,
            PaxtorLookupLocal,
            p50_ns,
        ),
    ]
}

fn fmt(unit: &str, v: f64) -> String {
    match unit {
        "calls/s" => format!("{:.2} k", v / 1e3),
        _ => format!("{v:.0}"),
    }
}

pub fn print_report(s: &Setup, p: &Params, rounds: &[Vec<Run>]) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let workers = p
        .master_workers
        .map_or("one per core".to_string(), |w| w.to_string());
    println!();
    println!(
        "Erlang/OTP {} (erts {}), {cores} cores, loopback. Every loop runs on BEAM node g1 of \
         three connected for `global`, all three running the erl_quorum application \
         (rebar_fixture, hosts of singletons) against 3 `erl_quorum serve --fresh` masters, W=2 \
         (tokio workers: {workers}). Singletons (Paxtor's node, global's): steady-state {}, \
         local-lookup {}; first-use Paxtor singletons started from g1 that ran on g1: {} (the \
         global ones always run on g1). Each measurement runs {} ms (lookups half); median of {} \
         rounds.",
        s.release.trim_matches('"'),
        s.erts.trim_matches('"'),
        s.steady_nodes,
        s.local_nodes,
        if s.first_here.is_empty() {
            "-"
        } else {
            &s.first_here
        },
        p.duration.as_millis(),
        p.rounds
    );
    println!(
        "`global`: `case global:whereis_name(K) of undefined -> gen_server:start({{global, K}}, \
         ...)` then `gen_server:call({{global, K}}, ...)`; erl_quorum: `gen_server:call(\
         paxtor:name(K, Spec), ...)`. First use stops the singleton after each sample (not \
         timed). Ratio: median of the rounds' ratios, > 1.0 means erl_quorum is better."
    );
    println!();
    println!("| measurement | unit | global | erl_quorum | ratio | ratio range | target |");
    println!("|---|---|---:|---:|---:|---:|---|");
    let mut verdicts = Vec::new();
    for row in rows(p.clients) {
        let (have_g, have_o) = (measured(rounds, row.global), measured(rounds, row.ours));
        if !have_g && !have_o {
            continue;
        }
        let g = per_round(rounds, row.global, row.get);
        let o = per_round(rounds, row.ours, row.get);
        let show = |have, v: Vec<f64>| {
            if have {
                fmt(row.unit, median(v))
            } else {
                "-".into()
            }
        };
        let (ratio_text, range_text, target) = if have_g && have_o {
            let (ratio, lo, hi) = ratio_summary(row.better, &g, &o);
            let target = match row.target {
                Some(t) => {
                    let met = if ratio >= t { "met" } else { "NOT met" };
                    verdicts.push((row.what.clone(), t, ratio, met));
                    format!("≥ {t} ({met})")
                }
                None => "info".into(),
            };
            (
                format!("**{ratio:.2}**"),
                format!("{lo:.2}–{hi:.2}"),
                target,
            )
        } else {
            ("-".into(), "-".into(), "-".into())
        };
        println!(
            "| {} | {} | {} | {} | {ratio_text} | {range_text} | {target} |",
            row.what,
            row.unit,
            show(have_g, g),
            show(have_o, o)
        );
    }
    print_lookup_costs(rounds);
    print_cpu_table(p, rounds);
    println!();
    for (what, t, ratio, met) in verdicts {
        println!("Target ≥ {t}×, {what}: {met} ({ratio:.2}).");
    }
}

/// What each layer of a lookup costs: the differences between the lookup
/// cases' medians. Single differences of a few ns move from run to run;
/// the one that does not is the key's (same function, same table).
fn print_lookup_costs(rounds: &[Vec<Run>]) {
    use Case::*;
    let cases = [
        GlobalEtsLookup,
        GlobalLookup,
        EtsLookup,
        RegistryPlainLookup,
        RegistryLookup,
        PaxtorLookup,
    ];
    if !cases.iter().all(|&c| measured(rounds, c)) {
        return;
    }
    let [g0, g1, r0, plain, r1, pax] = cases.map(|c| median(per_round(rounds, c, |r| r.p50_ns)));
    println!();
    println!(
        "Where a lookup's time goes (medians, ns per call, each including the bench loop's \
         dynamic `M:F(Arg)` call). The key: `rust_registry:whereis_name/1` takes {r1:.0} on \
         the scoped name `{{'$eq_scope', paxtor, K}}` and {plain:.0} on the plain atom `K` \
         (same function, same table): {:+.0} for hashing and comparing a 3-tuple key instead \
         of an atom. `paxtor:lookup(Via)` adds {:+.0} on top (lookup_via/1's via-module \
         match, paxtor_singleton:lookup/1 -> eq_singleton:holder/1 -> scoped/2, which builds \
         the key tuple on every call). The bare reads: `ets:lookup(rust_registry, Scoped)` \
         {r0:.0}, `ets:lookup(global_names, K)` {g0:.0} (global's entry, {{K, Pid, Method, \
         Ref}}, is bigger to copy out), `global:whereis_name/1` {g1:.0} in all.",
        r1 - plain,
        pax - r1,
    );
}

/// CPU time per operation, over all rounds, per group of processes.
fn print_cpu_table(p: &Params, rounds: &[Vec<Run>]) {
    println!();
    println!(
        "CPU time (user + system, all threads, from /proc) per operation, summed over the \
         rounds, in µs: masters (the 3 `erl_quorum serve`), g1 (the loops, the caller's \
         registry table), g2 + g3 (the other `global` nodes; hosts of singletons). First use \
         includes stopping the singleton."
    );
    println!();
    println!("| CPU per operation | masters | g1 | g2 + g3 | total | ratio (global/this) |");
    println!("|---|---:|---:|---:|---:|---:|");
    let per_op = |case: Case| {
        let (mut sums, mut ops) = ([0u64; 3], 0u64);
        for round in rounds {
            let r = &round[case as usize];
            sums[0] += r.cpu.masters;
            sums[1] += r.cpu.g1;
            sums[2] += r.cpu.g23;
            ops += r.ops;
        }
        sums.map(|t| t as f64 * 1e6 / CLOCK_TICKS_PER_S / ops.max(1) as f64)
    };
    use Case::*;
    // Lookups: nanoseconds, all on g1, below the tick's resolution.
    for [g, o] in [
        [GlobalFirst, PaxtorFirst],
        [GlobalCall1, ViaCall1],
        [GlobalCallN, ViaCallN],
    ] {
        let gt: f64 = per_op(g).iter().sum();
        for case in [g, o] {
            if !measured(rounds, case) {
                continue;
            }
            let c = per_op(case);
            let total: f64 = c.iter().sum();
            let what = case.label().replace(" N", &format!(" {}", p.clients));
            let ratio = if measured(rounds, g) {
                format!("{:.2}×", gt / total)
            } else {
                "-".into()
            };
            println!(
                "| {what} | {:.0} | {:.0} | {:.0} | {total:.0} | {ratio} |",
                c[0], c[1], c[2]
            );
        }
    }
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(v: &[f64], pct: usize) -> f64 {
    let rank = (pct * v.len()).div_ceil(100).max(1);
    v[rank - 1]
}

pub fn print_failovers(s: &Setup, p: &Params, runs: &[Failover]) {
    println!();
    if runs.is_empty() {
        println!("(failover runs skipped: EQ_SGBENCH_FAILOVERS=0, or none could be set up)");
        return;
    }
    let margin = if s.margin_flag {
        format!("`--release-margin-ms {}`", p.margin_ms)
    } else {
        "the default release margin (the binary has no `--release-margin-ms`)".into()
    };
    println!(
        "6. Failover: time from `kill -9` of the node running a `:permanent` Paxtor singleton \
         (and a global one started on demand there) until a `gen_server:call` through the via \
         tuple (`paxtor:name(K, Spec, [{{restart, permanent}}])`) from g1 answers from a live \
         process again; g1 retries every 5 ms. Masters: `--session-lease-ms {}`, {margin}. \
         `global` (info): the survivors drop the dead node's names at once (its connections \
         close), and the next call starts a new one; it has no lease and no guarantee that the \
         old instance is gone (it only looks gone from here), which is what erl_quorum's wait \
         buys.",
        p.lease_ms
    );
    println!();
    println!("| run | erl_quorum (ms) | global on demand (ms) | failed calls (erl_quorum / global) | restarted on |");
    println!("|---:|---:|---:|---|---|");
    let show = |v: Option<f64>| v.map_or("timeout".into(), |ms| format!("{ms:.0}"));
    for (i, r) in runs.iter().enumerate() {
        println!(
            "| {} | {} | {} | {} / {} | {} |",
            i + 1,
            if s.paxtor {
                show(r.paxtor_ms)
            } else {
                "-".into()
            },
            show(r.global_ms),
            r.paxtor_failed,
            r.global_failed,
            if !s.paxtor {
                "-"
            } else if r.paxtor_on_g1 {
                "g1"
            } else {
                "g2/g3"
            }
        );
    }
    let summary = |what: &str, v: Vec<f64>| {
        if v.is_empty() {
            return;
        }
        let mut v = v;
        v.sort_by(f64::total_cmp);
        let (lo, hi) = range(&v);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "{what}: min {lo:.0} ms, p50 {:.0} ms, p90 {:.0} ms, max {hi:.0} ms, mean {mean:.0} ms \
             over {} runs.",
            median(v.clone()),
            percentile(&v, 90),
            v.len()
        );
    };
    println!();
    if s.paxtor {
        let pax: Vec<f64> = runs.iter().filter_map(|r| r.paxtor_ms).collect();
        summary("erl_quorum", pax.clone());
        let bound = (p.lease_ms + 1_000) as f64;
        let within = pax.iter().filter(|&&ms| ms <= bound).count();
        let timeouts = runs.len() - pax.len();
        println!(
            "Target: back within session lease + 1 s ({bound:.0} ms) of the kill: {} ({within} \
             of {} runs{}).",
            if within == runs.len() {
                "met"
            } else {
                "NOT met"
            },
            runs.len(),
            if timeouts > 0 {
                format!(", {timeouts} timed out")
            } else {
                String::new()
            }
        );
    }
    summary(
        "global on demand",
        runs.iter().filter_map(|r| r.global_ms).collect(),
    );
}

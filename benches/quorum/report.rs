//! The quorum bench's report: the markdown tables (the CPU accounting
//! behind them is `benches/support/cpu.rs`, shared with the dist bench).

use super::{Case, Params, Run};
pub use crate::cpu::{cpu_ticks, loadavg, CpuMeter, CLOCK_TICKS_PER_S};
use crate::stats::{median, ratio_summary, Better};

// ---- the report ----------------------------------------------------------------

fn kilo(v: f64) -> String {
    format!("{:.1} k", v / 1e3)
}

struct Row {
    what: String,
    unit: &'static str,
    better: Better,
    /// The target: Rust/global ≥ 2 on pairs per second.
    target: bool,
    global: Case,
    ours: Case,
    get: fn(&Run) -> f64,
}

/// The figure of `case` in every round.
fn per_round(rounds: &[Vec<Run>], case: Case, get: fn(&Run) -> f64) -> Vec<f64> {
    rounds.iter().map(|r| get(&r[case as usize])).collect()
}

pub fn print_report(release: &str, erts: &str, p: &Params, rounds: &[Vec<Run>]) {
    let n = p.clients;
    let pps: fn(&Run) -> f64 = Run::pairs_per_s;
    let mut rows = vec![
        Row {
            what: "Rust client → Rust masters, 1 process".into(),
            unit: "pairs/s",
            better: Better::Higher,
            target: true,
            global: Case::GlobalSeq,
            ours: Case::RustSeq,
            get: pps,
        },
        Row {
            what: format!("Rust client → Rust masters, {n} processes"),
            unit: "pairs/s",
            better: Better::Higher,
            target: true,
            global: Case::GlobalPar,
            ours: Case::RustPar,
            get: pps,
        },
        Row {
            what: "BEAM client (locker's calls) → Rust masters, 1 process".into(),
            unit: "pairs/s",
            better: Better::Higher,
            target: true,
            global: Case::GlobalSeq,
            ours: Case::BeamSeq,
            get: pps,
        },
        Row {
            what: format!("BEAM client (locker's calls) → Rust masters, {n} processes"),
            unit: "pairs/s",
            better: Better::Higher,
            target: true,
            global: Case::GlobalPar,
            ours: Case::BeamPar,
            get: pps,
        },
    ];
    if p.coloc {
        rows.push(Row {
            what: "Rust client on a master node (global's layout), 1 process".into(),
            unit: "pairs/s",
            better: Better::Higher,
            target: false,
            global: Case::GlobalSeq,
            ours: Case::ColocSeq,
            get: pps,
        });
        rows.push(Row {
            what: format!("Rust client on a master node (global's layout), {n} processes"),
            unit: "pairs/s",
            better: Better::Higher,
            target: false,
            global: Case::GlobalPar,
            ours: Case::ColocPar,
            get: pps,
        });
    }
    rows.extend([
        Row {
            what: "latency, Rust client, 1 process: mean".into(),
            unit: "µs/pair",
            better: Better::Lower,
            target: false,
            global: Case::GlobalSeq,
            ours: Case::RustSeq,
            get: |r| r.mean_ns / 1e3,
        },
        Row {
            what: "latency, Rust client, 1 process: p50".into(),
            unit: "µs/pair",
            better: Better::Lower,
            target: false,
            global: Case::GlobalSeq,
            ours: Case::RustSeq,
            get: |r| r.p50_ns / 1e3,
        },
        Row {
            what: "latency, Rust client, 1 process: p99".into(),
            unit: "µs/pair",
            better: Better::Lower,
            target: false,
            global: Case::GlobalSeq,
            ours: Case::RustSeq,
            get: |r| r.p99_ns / 1e3,
        },
        Row {
            what: "latency, BEAM client, 1 process: mean".into(),
            unit: "µs/pair",
            better: Better::Lower,
            target: false,
            global: Case::GlobalSeq,
            ours: Case::BeamSeq,
            get: |r| r.mean_ns / 1e3,
        },
        Row {
            what: format!("one shared key, {n} processes retrying at once, Rust client (info)"),
            unit: "pairs/s",
            better: Better::Higher,
            target: false,
            global: Case::GlobalShared,
            ours: Case::RustShared,
            get: pps,
        },
    ]);

    let release = release.trim_matches('"');
    let erts = erts.trim_matches('"');
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let workers = |w: Option<usize>| w.map_or("one per core".to_string(), |w| w.to_string());
    println!();
    println!(
        "Erlang/OTP {release} (erts {erts}), {cores} cores, loopback. global: \
         `global:set_lock({{Key, self()}}, Nodes)` + `global:del_lock/2` on 3 BEAM nodes, \
         run from one of them. erl_quorum: 3 masters, W=2, as `erl_quorum serve` processes \
         (tokio workers: {}), the Rust client on a node of its own in the bench process \
         (workers: {}), the BEAM client on one of the BEAM nodes (`eq_locker_client`: \
         `gen_server:multi_call`s, as locker does). Each measurement runs {} ms; median of \
         {} rounds.",
        workers(p.master_workers),
        workers(p.client_workers),
        p.duration.as_millis(),
        p.rounds
    );
    println!(
        "Ratio: median of the rounds' ratios (each round measures all cases back to back); \
         > 1.0 means erl_quorum is better. Distinct keys per process unless said otherwise."
    );
    println!();
    println!(
        "| lock + release pairs | unit | global (3 BEAM nodes) | erl_quorum | ratio | ratio range |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    let mut verdicts = Vec::new();
    for row in &rows {
        let g = per_round(rounds, row.global, row.get);
        let o = per_round(rounds, row.ours, row.get);
        let (ratio, lo, hi) = ratio_summary(row.better, &g, &o);
        let (gm, om) = (median(g), median(o));
        let fmt = |v: f64| {
            if row.unit.starts_with("µs") {
                format!("{v:.0}")
            } else {
                kilo(v)
            }
        };
        println!(
            "| {} | {} | {} | {} | **{ratio:.2}** | {lo:.2}–{hi:.2} |",
            row.what,
            row.unit,
            fmt(gm),
            fmt(om)
        );
        if row.target {
            verdicts.push((row.what.clone(), ratio));
        }
    }
    let tries = |case: Case| {
        median(per_round(rounds, case, |r| {
            r.failed as f64 / (r.elapsed_ns / 1e9)
        }))
    };
    println!();
    println!(
        "On the shared key, refused lock attempts: global {}/s (`set_lock/3` with 0 retries \
         refuses from the local node's lock table, without a message), Rust client {}/s \
         (each a promise round to the 3 masters and an abort round).",
        kilo(tries(Case::GlobalShared)),
        kilo(tries(Case::RustShared))
    );
    print_cpu_table(p, rounds);
    println!();
    for (what, ratio) in verdicts {
        let met = if ratio >= 2.0 { "met" } else { "NOT met" };
        println!("Target (≥ 2.0× global's pairs/s), {what}: {met} ({ratio:.2}).");
    }
}

/// CPU time per completed pair, over all rounds: what the servers (the
/// masters; for global the three BEAM nodes, the client among them) and the
/// client used. On a 2-core machine this moves far less with the machine's
/// load than the wall-clock figures do.
fn print_cpu_table(p: &Params, rounds: &[Vec<Run>]) {
    println!();
    println!(
        "CPU time (user + system, all threads, from /proc) per completed pair, summed over \
         the rounds. For global the client process runs on one of the three nodes, so \
         everything is under \"servers\". The Rust client's column is this whole bench \
         process (the harness threads idle meanwhile)."
    );
    println!();
    println!("| CPU per pair | servers µs | client µs | total µs | ratio (global/this) |");
    println!("|---|---:|---:|---:|---:|");
    let n = p.clients;
    let mut cases = vec![
        (
            Case::GlobalSeq,
            "global, 1 process".to_string(),
            Case::GlobalSeq,
        ),
        (
            Case::GlobalPar,
            format!("global, {n} processes"),
            Case::GlobalPar,
        ),
        (
            Case::RustSeq,
            "Rust client → Rust masters, 1".to_string(),
            Case::GlobalSeq,
        ),
        (
            Case::RustPar,
            format!("Rust client → Rust masters, {n}"),
            Case::GlobalPar,
        ),
        (
            Case::BeamSeq,
            "BEAM client → Rust masters, 1".to_string(),
            Case::GlobalSeq,
        ),
        (
            Case::BeamPar,
            format!("BEAM client → Rust masters, {n}"),
            Case::GlobalPar,
        ),
    ];
    if p.coloc {
        cases.push((
            Case::ColocSeq,
            "Rust client on a master node (all under servers), 1".to_string(),
            Case::GlobalSeq,
        ));
        cases.push((
            Case::ColocPar,
            format!("Rust client on a master node (all under servers), {n}"),
            Case::GlobalPar,
        ));
    }
    let per_pair = |case: Case| {
        let (mut servers, mut client, mut pairs) = (0u64, 0u64, 0u64);
        for round in rounds {
            let r = &round[case as usize];
            let (s, c) = r.cpu.split(case);
            servers += s;
            client += c;
            pairs += r.pairs;
        }
        let us = |ticks: u64| ticks as f64 * 1e6 / CLOCK_TICKS_PER_S / pairs.max(1) as f64;
        (us(servers), us(client))
    };
    for (case, what, global) in cases {
        let (s, c) = per_pair(case);
        let (gs, gc) = per_pair(global);
        let total = s + c;
        println!(
            "| {what} | {s:.0} | {c:.0} | {total:.0} | {:.2}× |",
            (gs + gc) / total
        );
    }
}

//! The bench's report: the markdown tables, and the CPU accounting behind
//! the "peer CPU" table and the noise warning.

use super::{Figures, Kind, Params, Target};
pub use crate::cpu::{cpu_ticks, CpuMeter, CLOCK_TICKS_PER_S};
use crate::stats::{median, ratio_summary, Better};

// ---- the report ----------------------------------------------------------

struct Row {
    kind: Kind,
    what: String,
    unit: &'static str,
    better: Better,
    /// Whether the row counts towards the "every ratio >= 1.0" target
    /// (the percentiles are shown for context only).
    target: bool,
    get: fn(&Figures) -> f64,
}

pub fn print_report(release: &str, erts: &str, p: &Params, beam: &Target, rust: &Target) {
    let rows = [
        Row {
            kind: Kind::Seq,
            what: "`gen_server:call`, sequential, mean".into(),
            unit: "µs/call",
            better: Better::Lower,
            target: true,
            get: |f| f.seq_mean_us,
        },
        Row {
            kind: Kind::Seq,
            what: "`gen_server:call`, sequential, p50".into(),
            unit: "µs/call",
            better: Better::Lower,
            target: false,
            get: |f| f.seq_p50_us,
        },
        Row {
            kind: Kind::Seq,
            what: "`gen_server:call`, sequential, p99".into(),
            unit: "µs/call",
            better: Better::Lower,
            target: false,
            get: |f| f.seq_p99_us,
        },
        Row {
            kind: Kind::Par,
            what: format!("`gen_server:call`, {} concurrent callers", p.callers),
            unit: "calls/s",
            better: Better::Higher,
            target: true,
            get: |f| f.calls_per_s,
        },
        Row {
            kind: Kind::Oneway,
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
    let workers = p
        .workers
        .map_or("one per core".to_string(), |w| w.to_string());
    println!(
        "Erlang/OTP {release} (erts {erts}), {cores} cores, loopback; Rust node on tokio \
         multi-thread, workers: {workers}; median of {} rounds; {} sequential calls, {}×{} \
         concurrent calls, {} one-way messages per round.",
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
    for row in rows.iter().filter(|row| p.measures(row.kind)) {
        let b = median(beam.rounds.iter().map(row.get).collect());
        let r = median(rust.rounds.iter().map(row.get).collect());
        let per_round = |t: &Target| t.rounds.iter().map(row.get).collect::<Vec<f64>>();
        let (ratio, lowest, highest) =
            ratio_summary(row.better, &per_round(beam), &per_round(rust));
        let (b, r) = (format_figure(b, row.unit), format_figure(r, row.unit));
        let note = if row.target { "" } else { " (info)" };
        println!(
            "| {}{note} | {} | {b} | {r} | **{ratio:.2}** | {lowest:.2}–{highest:.2} |",
            row.what, row.unit
        );
        if row.target && ratio < 1.0 {
            missed.push(format!("{} ({ratio:.3})", row.what));
        }
    }
    print_cpu_table(p, beam, rust);
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

/// What each peer's process spent in CPU per operation, over all rounds.
/// On a 2-core machine the client node A is the bottleneck of every
/// throughput figure, so a peer shows its efficiency mainly through the CPU
/// it leaves to A; this table measures that directly, and moves far less
/// with the machine's load than the wall-clock figures do.
fn print_cpu_table(p: &Params, beam: &Target, rust: &Target) {
    println!();
    println!(
        "CPU time the peer's OS process used (user + system, all threads) per operation, \
         over all rounds. Ratio: BEAM/Rust; > 1.0 means the Rust node used less CPU."
    );
    println!();
    println!(
        "| peer CPU per operation | unit | BEAM peer | Rust peer | ratio | client A's, with BEAM / Rust peer |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    let rows = [
        (
            "sequential `gen_server:call`".to_string(),
            "µs/call",
            Kind::Seq,
        ),
        (
            format!("`gen_server:call`, {} callers", p.callers),
            "µs/call",
            Kind::Par,
        ),
        ("one-way message".to_string(), "µs/msg", Kind::Oneway),
    ];
    for (what, unit, kind) in rows.into_iter().filter(|&(_, _, k)| p.measures(k)) {
        let (b, r) = (beam.cpu_us_per_op(kind), rust.cpu_us_per_op(kind));
        let (ab, ar) = (
            beam.client_cpu_us_per_op(kind),
            rust.client_cpu_us_per_op(kind),
        );
        println!(
            "| {what} | {unit} | {b:.2} | {r:.2} | **{:.2}** | {ab:.2} / {ar:.2} |",
            b / r
        );
    }
}

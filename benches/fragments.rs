//! Fragments benchmark: how much 50 MiB messages streaming through a
//! connection delay a small `gen_server:call` on the same connection, for
//! the Rust node and for a BEAM node in the same run.
//!
//! ```text
//! cargo bench --bench fragments                       # OTP 25
//! EQ_OTP=27 cargo bench --bench fragments             # OTP 27
//! EQ_BENCH_ROUNDS=1 EQ_FRAG_BIG=2 cargo bench --bench fragments   # a quick run
//! EQ_BENCH_WORKERS=2 cargo bench --bench fragments    # Rust node on 2 workers (default 1, 0: one per core)
//! ```
//!
//! A BEAM client node A measures two peers alike, addressed only by node
//! name: the Rust node in this process (the tests' echo server `echo`) and
//! a BEAM node B (`eq_peer:start_echo(echo)`, the same contract). Against
//! each, A first times sequential small calls to `echo` alone (the
//! baseline), then again while another process of A sends `echo` a 50 MiB
//! binary and waits for it to come back, `EQ_FRAG_BIG` times in a row, on
//! the same connection: the calls' latency is then what a large message
//! costs the others. One call per millisecond, timed in A. Rounds alternate
//! the order of the peers; the report gives each figure's median over the
//! rounds and the CPU each peer's OS process spent per 50 MiB round trip.

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
use stats::median;
use std::time::{Duration, Instant};

const COOKIE: &str = "eq_bench_cookie";
const EVAL_TIMEOUT: Duration = Duration::from_secs(600);
/// Calls of the baseline, per round and peer.
const BASELINE_CALLS: u64 = 1000;

/// One peer's figures of one round, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Latency {
    calls: u64,
    p50: f64,
    p99: f64,
    max: f64,
}

struct Target {
    label: &'static str,
    node_atom: String,
    os_pid: u32,
    idle: Vec<Latency>,
    loaded: Vec<Latency>,
    /// Calls while 50 MiB messages go one way, to the peer.
    one_way: Vec<Latency>,
    /// Wall time of one 50 MiB round trip, per round (ms).
    trip_ms: Vec<f64>,
    cpu_ticks: u64,
    trips: u64,
}

impl Target {
    fn new(label: &'static str, node_atom: String, os_pid: u32) -> Target {
        Target {
            label,
            node_atom,
            os_pid,
            idle: Vec::new(),
            loaded: Vec::new(),
            one_way: Vec::new(),
            trip_ms: Vec::new(),
            cpu_ticks: 0,
            trips: 0,
        }
    }
}

fn main() {
    let started = Instant::now();
    let rounds: usize = env_parse("EQ_BENCH_ROUNDS").unwrap_or(3).max(1);
    let big_per_round: u64 = env_parse("EQ_FRAG_BIG").unwrap_or(4).max(1);
    let otp = Otp::from_env();
    eprintln!(
        "fragments bench: OTP {}, {rounds} rounds of {big_per_round} x 50 MiB",
        otp.release()
    );

    let workers = env_workers("EQ_BENCH_WORKERS", Some(1));
    eprintln!("Rust node workers: {workers:?} (EQ_BENCH_WORKERS)");
    let runtime = setup::runtime(workers);
    let node = runtime.block_on(async {
        let name = format!("bench_frag_{}@127.0.0.1", std::process::id());
        let node = erl_quorum::Node::start(setup::node_config(name, COOKIE))
            .await
            .expect("start the Rust node");
        rust_node::start_echo(&node, "echo");
        node
    });
    common::ensure_epmd().expect("epmd");
    let client = BeamNode::start(&common::unique_name("fbench_a"), COOKIE, &[]).expect("node A");
    let server = BeamNode::start(&common::unique_name("fbench_b"), COOKIE, &[]).expect("node B");
    eval_for(
        &server,
        "{ok, _} = eq_peer:start_echo(echo), ok",
        EVAL_TIMEOUT,
    );
    let release = eval_for(&client, "erlang:system_info(otp_release)", EVAL_TIMEOUT);

    let mut rust = Target::new("Rust", common::atom(node.name()), std::process::id());
    let mut beam = Target::new("BEAM", server.node_atom(), server.os_pid());
    for target in [&rust, &beam] {
        // Connects, and gets past first-call costs.
        calls(&client, target, 200);
        big_trips(&client, target, 1);
    }
    let ours = [std::process::id(), client.os_pid(), server.os_pid()];
    let meter = CpuMeter::start(&ours);
    for round in 0..rounds {
        let order: [&mut Target; 2] = if round % 2 == 0 {
            [&mut rust, &mut beam]
        } else {
            [&mut beam, &mut rust]
        };
        for target in order {
            let idle = calls(&client, target, BASELINE_CALLS);
            target.idle.push(idle);
            let before = cpu_ticks(target.os_pid);
            let (loaded, trip_ms) = big_trips(&client, target, big_per_round);
            if let (Some(b), Some(a)) = (before, cpu_ticks(target.os_pid)) {
                target.cpu_ticks += a - b;
                target.trips += big_per_round;
            }
            target.loaded.push(loaded);
            target.trip_ms.push(trip_ms);
            let one_way = big_sends(&client, target, big_per_round);
            target.one_way.push(one_way);
            eprintln!(
                "round {}: {:>4} idle {idle:.0?} loaded {loaded:.0?} trip {trip_ms:.0} ms one-way {one_way:.0?}",
                round + 1,
                target.label
            );
        }
    }
    let foreign = meter.foreign_share(&ours);
    report(&release, &beam, &rust);
    if let Some(share) = foreign {
        println!(
            "Other processes used {:.0}% of the machine's CPU during the measurements.",
            share * 100.0
        );
    }
    node.shutdown();
    let _ = client.stop();
    let _ = server.stop();
    runtime.shutdown_timeout(Duration::from_secs(2));
    println!("\ntotal run time {:.1} s", started.elapsed().as_secs_f64());
}

/// The Erlang that times calls to `E` from A, one per millisecond, until
/// `stop` (an expression that may use the count `N`) is true; leaves
/// `{Count, P50, P99, Max}` (µs) in `Lat`.
fn call_loop(stop: &str) -> String {
    format!(
        "Loop~ = fun L(N, Acc) -> \
             case {stop} of true -> Acc; false -> \
                 T0 = erlang:monotonic_time(microsecond), \
                 {{s, N}} = gen_server:call(E~, {{s, N}}, 600000), \
                 T1 = erlang:monotonic_time(microsecond), \
                 timer:sleep(1), L(N + 1, [T1 - T0 | Acc]) end end, \
         S~ = lists:sort(Loop~(0, [])), Len~ = length(S~), \
         P~ = fun(Q) -> lists:nth(max(1, round(Q * Len~)), S~) end, \
         Lat~ = {{Len~, P~(0.5), P~(0.99), lists:last(S~)}}"
    )
}

/// `expr` with every `~` (which marks the top-level variables) replaced by
/// a suffix of its own: the evaluator keeps its bindings from one
/// evaluation to the next, and a bound variable would only match.
fn fresh(expr: String) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let k = NEXT.fetch_add(1, Ordering::Relaxed);
    expr.replace('~', &format!("_{k}"))
}

fn latency(ints: &[u64]) -> Latency {
    Latency {
        calls: ints[0],
        p50: ints[1] as f64,
        p99: ints[2] as f64,
        max: ints[3] as f64,
    }
}

/// `n` calls with nothing else on the connection.
fn calls(client: &BeamNode, target: &Target, n: u64) -> Latency {
    let expr = format!(
        "E~ = {{echo, {}}}, {}, Lat~",
        target.node_atom,
        call_loop(&format!("(N >= {n})"))
    );
    let expr = fresh(expr);
    latency(&parse_ints(&expr, &eval_for(client, &expr, EVAL_TIMEOUT)))
}

/// `n` 50 MiB round trips to `echo` in a row, with calls timed meanwhile;
/// returns the calls' latency and the mean round trip (ms).
fn big_trips(client: &BeamNode, target: &Target, n: u64) -> (Latency, f64) {
    let expr = format!(
        "E~ = {{echo, {node}}}, Self~ = self(), Big~ = rand:bytes(50 bsl 20), \
         Streamer~ = spawn_link(fun() -> \
             T0 = erlang:monotonic_time(microsecond), \
             [begin E~ ! {{self(), Big~}}, receive {{echo, B}} -> B = Big~ end end \
              || _ <- lists:seq(1, {n})], \
             Self~ ! {{trips_done, erlang:monotonic_time(microsecond) - T0}} end), \
         {calls}, \
         receive {{trips_done, Us~}} -> ok end, unlink(Streamer~), \
         {{element(1, Lat~), element(2, Lat~), element(3, Lat~), element(4, Lat~), Us~}}",
        node = target.node_atom,
        calls = call_loop("(receive {trips_done, _} = D -> self() ! D, true after 0 -> false end)"),
    );
    let expr = fresh(expr);
    let ints = parse_ints(&expr, &eval_for(client, &expr, EVAL_TIMEOUT));
    (latency(&ints), ints[4] as f64 / 1e3 / n as f64)
}

/// `n` 50 MiB messages to `echo` (which drops a message that is not
/// `{Pid, X}`), each followed by a call from the same sender (so the
/// sender waits until the peer has taken it), with calls timed meanwhile
/// by another process: what a large message *to* the peer costs others.
fn big_sends(client: &BeamNode, target: &Target, n: u64) -> Latency {
    let expr = format!(
        "E~ = {{echo, {node}}}, Self~ = self(), Big~ = rand:bytes(50 bsl 20), \
         Sender~ = spawn_link(fun() -> \
             [begin E~ ! Big~, {{s, I}} = gen_server:call(E~, {{s, I}}, 600000) end \
              || I <- lists:seq(1, {n})], \
             Self~ ! {{trips_done, 0}} end), \
         {calls}, \
         receive {{trips_done, _}} -> ok end, unlink(Sender~), Lat~",
        node = target.node_atom,
        calls = call_loop("(receive {trips_done, _} = D -> self() ! D, true after 0 -> false end)"),
    );
    let expr = fresh(expr);
    latency(&parse_ints(&expr, &eval_for(client, &expr, EVAL_TIMEOUT)))
}

/// One figure of every round of a peer.
type Column = fn(&Target) -> Vec<f64>;

fn report(release: &str, beam: &Target, rust: &Target) {
    println!("\n## Fragments: small calls while 50 MiB messages stream (OTP {release})\n");
    println!("Median over the rounds; latency of one gen_server:call from node A, µs.\n");
    println!("| figure | BEAM | Rust | ratio (BEAM/Rust, >1: Rust better) |");
    println!("|---|---:|---:|---:|");
    let rows: [(&str, Column); 11] = [
        ("idle p50", |t| t.idle.iter().map(|l| l.p50).collect()),
        ("idle p99", |t| t.idle.iter().map(|l| l.p99).collect()),
        ("idle max", |t| t.idle.iter().map(|l| l.max).collect()),
        ("loaded p50", |t| t.loaded.iter().map(|l| l.p50).collect()),
        ("loaded p99", |t| t.loaded.iter().map(|l| l.p99).collect()),
        ("loaded max", |t| t.loaded.iter().map(|l| l.max).collect()),
        ("calls while loaded", |t| {
            t.loaded.iter().map(|l| l.calls as f64).collect()
        }),
        ("50 MiB round trip (ms)", |t| t.trip_ms.clone()),
        ("one-way p50", |t| t.one_way.iter().map(|l| l.p50).collect()),
        ("one-way p99", |t| t.one_way.iter().map(|l| l.p99).collect()),
        ("one-way max", |t| t.one_way.iter().map(|l| l.max).collect()),
    ];
    for (label, f) in rows {
        let (b, r) = (median(f(beam)), median(f(rust)));
        println!("| {label} | {b:.0} | {r:.0} | {:.2} |", b / r);
    }
    let cpu = |t: &Target| t.cpu_ticks as f64 * 1e3 / CLOCK_TICKS_PER_S / t.trips.max(1) as f64;
    println!(
        "| peer CPU per 50 MiB round trip (ms) | {:.0} | {:.0} | {:.2} |",
        cpu(beam),
        cpu(rust),
        cpu(beam) / cpu(rust)
    );
}

//! Native OTP pg scopes benchmark: a Rust node's `OtpPgScope` against a
//! BEAM node's own `pg`, in the same run, on the same scope.
//!
//! ```text
//! cargo bench --bench otp_pg                 # OTP 25
//! EQ_OTP=27 cargo bench --bench otp_pg       # OTP 27
//! EQ_BENCH_ROUNDS=1 EQ_PGBENCH_SAMPLES=10 cargo bench --bench otp_pg   # smoke run
//! ```
//!
//! Two BEAM nodes, b1 and b2, connected to each other and to the Rust node,
//! all running scope `eq_bench_scope`. Per round:
//! - propagation: a member joins on b2 (`pg:join/3`), or on the Rust node
//!   (`OtpPgScope::join`), and `pg:monitor/2` on b1 records when it sees
//!   the join (same machine, one clock): median over the samples;
//! - `get_members` of a group of 10 (5 on b2, 5 on the Rust node): b1's
//!   `pg:get_members/2` against the Rust scope's, per call;
//! - a `join` + `leave` pair through each API (b1's `pg`, the Rust scope),
//!   each broadcasting to two peers.
//!
//! Figures are medians over the rounds (`EQ_BENCH_ROUNDS`, default 5);
//! ratios are oriented so that above 1 means the Rust side is better.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/setup.rs"]
mod setup;
#[path = "support/stats.rs"]
mod stats;

use common::BeamNode;
use erl_quorum::process::Process;
use erl_quorum::services::OtpPgScope;
use erl_quorum::term::atom;
use setup::{env_parse, eval_for, node_config, runtime};
use stats::{median, ratio_summary, Better};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const COOKIE: &str = "eq_pgbench_cookie";
const SCOPE: &str = "eq_bench_scope";
const EVAL: Duration = Duration::from_secs(60);

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn int(s: &str) -> i64 {
    s.trim()
        .parse()
        .unwrap_or_else(|_| panic!("expected an integer, got {s}"))
}

fn main() {
    let rounds: usize = env_parse("EQ_BENCH_ROUNDS").unwrap_or(5);
    let samples: usize = env_parse("EQ_PGBENCH_SAMPLES").unwrap_or(40);
    let calls: usize = env_parse("EQ_PGBENCH_CALLS").unwrap_or(100_000);
    let pairs: usize = env_parse("EQ_PGBENCH_PAIRS").unwrap_or(5_000);
    let rt = runtime(Some(2));
    rt.block_on(async move {
        let b1 = BeamNode::start(&common::unique_name("pgb1"), COOKIE, &[]).unwrap();
        let b2 = BeamNode::start(&common::unique_name("pgb2"), COOKIE, &[]).unwrap();
        let name = format!("{}@127.0.0.1", common::unique_name("pgbr"));
        let node = erl_quorum::Node::start(node_config(name, COOKIE)).await.unwrap();
        let me = common::atom(node.name());
        let b2n = b2.node_atom();
        assert_eq!(eval_for(&b1, &format!("net_adm:ping({b2n})"), EVAL), "pong");
        for b in [&b1, &b2] {
            eval_for(b, &format!("eq_otp_pg:start_scope({SCOPE})"), EVAL);
        }
        let scope = OtpPgScope::start(&node, SCOPE, &[b1.node_name(), b2.node_name()]).unwrap();
        eval_for(&b1, &format!("{{_, _}} = eq_otp_pg:watch({SCOPE}, lat), ok"), EVAL);
        // The group of 10 for get_members.
        eval_for(&b2, &format!("eq_otp_pg:spawn_members({SCOPE}, ten, 5), ok"), EVAL);
        let ten: Vec<Process> = (0..5).map(|_| node.spawn_process()).collect();
        for p in &ten {
            scope.join(atom("ten"), p.pid()).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while eval_for(&b1, &format!("length(pg:get_members({SCOPE}, ten))"), EVAL) != "10"
            || scope.get_members(&atom("ten")).len() != 10
        {
            assert!(Instant::now() < deadline, "the group of 10 never formed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let (mut lat_beam, mut lat_rust) = (Vec::new(), Vec::new());
        let (mut gm_beam, mut gm_rust) = (Vec::new(), Vec::new());
        let (mut jl_beam, mut jl_rust) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let (mut beam, mut rust) = (Vec::new(), Vec::new());
            for _ in 0..samples {
                let t0 = int(&eval_for(&b2, &format!("eq_otp_pg:timed_join({SCOPE}, lat)"), EVAL));
                let t1 = int(&eval_for(&b1, &format!("eq_otp_pg:wait_event(join, {b2n}, {t0}, 5000)"), EVAL));
                beam.push((t1 - t0) as f64);
                let p = node.spawn_process();
                let t0 = now_us();
                scope.join(atom("lat"), p.pid()).unwrap();
                let t1 = int(&eval_for(&b1, &format!("eq_otp_pg:wait_event(join, {me}, {t0}, 5000)"), EVAL));
                rust.push((t1 - t0) as f64);
                drop(p);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            lat_beam.push(median(beam));
            lat_rust.push(median(rust));

            let us = int(&eval_for(&b1, &format!("eq_otp_pg:time_get_members({SCOPE}, ten, {calls})"), EVAL));
            gm_beam.push(us as f64 * 1000.0 / calls as f64);
            let group = atom("ten");
            let start = Instant::now();
            for _ in 0..calls {
                std::hint::black_box(scope.get_members(&group));
            }
            gm_rust.push(start.elapsed().as_nanos() as f64 / calls as f64);

            let us = int(&eval_for(&b1, &format!("eq_otp_pg:time_join_leave({SCOPE}, jl, {pairs})"), EVAL));
            jl_beam.push(us as f64 * 1000.0 / pairs as f64);
            let p = node.spawn_process();
            let group = atom("jl");
            let start = Instant::now();
            for _ in 0..pairs {
                scope.join(group.clone(), p.pid()).unwrap();
                scope.leave(group.clone(), p.pid()).unwrap();
            }
            jl_rust.push(start.elapsed().as_nanos() as f64 / pairs as f64);
            drop(p);
            eprintln!("round {}/{rounds} done", round + 1);
        }

        let otp = common::Otp::from_env().release();
        println!("otp_pg bench, OTP {otp}, {rounds} rounds");
        let report = |what: &str, unit: &str, beam: &[f64], rust: &[f64]| {
            let (r, lo, hi) = ratio_summary(Better::Lower, beam, rust);
            println!(
                "{what:<48} BEAM pg {:>10.1} {unit}  Rust {:>10.1} {unit}  ratio {r:.2} ({lo:.2}..{hi:.2})",
                median(beam.to_vec()),
                median(rust.to_vec())
            );
        };
        report("join visible to pg:monitor on b1 (from b2 / Rust)", "us", &lat_beam, &lat_rust);
        report("get_members, group of 10 (b1 / Rust)", "ns", &gm_beam, &gm_rust);
        report("join + leave pair, 2 peers (b1 / Rust)", "ns", &jl_beam, &jl_rust);
        drop(ten);
        drop(scope);
    });
}

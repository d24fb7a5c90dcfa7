//! A rolling restart of the three Rust serving nodes (also the masters)
//! under a steady load from two Erlang nodes (`erlang_test/eq_rolling.erl`):
//! each node in turn gets SIGTERM, hands its shards, holds, names and
//! waiters over to the others (`services::core::handoff`), exits, and is
//! started again before the next goes. The history checker then finds no
//! key granted to two owners at once, no `lock_lost` / `name_lost`, no
//! `no_quorum` or failed call by name, and reports the longest time any
//! uncontended lock, registration or call by name took (the gap a caller
//! saw).
//!
//! The restarted nodes start without `--fresh`: each master catches up
//! from its peers (`quorum::catch_up`) instead of waiting out its guard.
//! The test prints, per kind, the p99 and longest gap and the slowest
//! requests with the phase they began in and the path they took (which
//! Rust node answered what, how fast: `rust_quorum`'s hop trace), so a
//! long gap can be attributed; it asserts only a safety bound.

mod common;
mod quorum_support;
mod rust_node;
mod services_support;

use quorum_support::beval;
use services_support::{start_app_node, start_cluster, Lang};
use std::time::Duration;

fn atoms(nodes: &[String]) -> String {
    let quoted: Vec<String> = nodes.iter().map(|n| format!("'{n}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The checker's verdict, as `eq_rolling:check_history/1` prints it.
#[derive(Debug)]
struct Verdict {
    grants: u64,
    overlaps: String,
    errors: u64,
    lost: String,
    calls: u64,
    max_wait_ms: u64,
    max_call_ms: u64,
    /// The checker's output as printed (shown on a failure).
    #[allow(dead_code)]
    raw: String,
}

fn verdict(raw: &str) -> Verdict {
    // {Grants,Overlaps,FirstErrors,Errors,Lost,Calls,MaxWaitMs,MaxCallMs}:
    // the numbers are read off the ends; the lists are kept as text.
    let inner = raw.trim().trim_start_matches('{').trim_end_matches('}');
    let tail: Vec<&str> = inner.rsplitn(4, ',').collect();
    let n = |s: &str| s.trim().parse::<u64>().unwrap_or(u64::MAX);
    let head = tail[3];
    let grants = n(head.split(',').next().unwrap_or(""));
    let lists = &head[head.find(',').map_or(0, |i| i + 1)..];
    let (before_lost, lost) = lists.split_at(lists.rfind(",[").map_or(0, |i| i + 1));
    let errors = before_lost
        .trim_end_matches(',')
        .rsplit(',')
        .next()
        .map_or(u64::MAX, n);
    Verdict {
        grants,
        overlaps: lists.split("],").next().unwrap_or("").to_owned() + "]",
        errors,
        lost: lost.to_owned(),
        calls: n(tail[2]),
        max_wait_ms: n(tail[1]),
        max_call_ms: n(tail[0]),
        raw: raw.to_owned(),
    }
}

/// One rolling restart under load: each serving node in turn gets SIGTERM
/// (`kill`: SIGKILL instead, the comparison without handoff) and comes
/// back before the next goes. The checker's verdict, the nodes' logs.
async fn rolling(kill: bool) -> (Verdict, String) {
    let mut cluster = start_cluster("roll", None).await;
    let names: Vec<String> = cluster
        .masters
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let order2 = vec![names[1].clone(), names[2].clone(), names[0].clone()];
    let (b1, b2) = tokio::join!(
        start_app_node("roll_a", Lang::Erlang, &names),
        start_app_node("roll_b", Lang::Erlang, &order2),
    );
    let beams = vec![b1.node_name().to_owned(), b2.node_name().to_owned()];
    for b in [&b1, &b2] {
        assert_eq!(beval(b, "eq_rolling:start_holders()"), "ok");
    }
    for b in [&b1, &b2] {
        assert_eq!(
            beval(b, &format!("eq_rolling:start({})", atoms(&beams))),
            "ok"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut drains = Vec::new();
    // What the test did when (os:system_time(microsecond), the clock of
    // the history): the checker names the phase each slow request began in.
    let mut events: Vec<String> = Vec::new();
    let mut event = |what: &str, node: &str| {
        let us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let short = node.split('@').next().unwrap_or(node);
        events.push(format!("{{'{what} {short}', {us}}}"));
    };
    for m in cluster.masters.iter_mut() {
        event("stop", m.name());
        if kill {
            m.kill9();
        } else {
            let took = m.sigterm(Duration::from_secs(10)).await;
            let took = took.unwrap_or_else(|| panic!("{} did not stop{}", m.name(), m.log_tail()));
            drains.push(took);
        }
        event("gone", m.name());
        m.restart(false, None).await;
        event("serving", m.name());
        // Back and subscribed to by its peers before the next goes.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for b in [&b1, &b2] {
        beval(b, "eq_rolling:stop()");
    }
    let raw = beval(&b1, &format!("eq_rolling:check({})", atoms(&beams)));
    let gaps = beval(
        &b1,
        &format!(
            "eq_rolling:gaps({}, [{}])",
            atoms(&beams),
            events.join(", ")
        ),
    );
    eprintln!("gaps ({{kind, count, p99 ms, max ms}}, then the slowest):\n{gaps}");
    let v = verdict(&raw);
    eprintln!(
        "rolling restart ({}): drains {drains:?}; {} grants, {} calls by name; \
         longest uncontended lock/registration {} ms, call by name {} ms; {} errors",
        if kill { "kill -9" } else { "SIGTERM" },
        v.grants,
        v.calls,
        v.max_wait_ms,
        v.max_call_ms,
        v.errors
    );
    let mut logs: String = cluster.masters.iter().map(|m| m.log_tail()).collect();
    for b in [&b1, &b2] {
        logs.push_str(&format!(
            "\n--- {} ---\n{}",
            b.node_name(),
            b.recent_output().join("\n")
        ));
    }
    (v, logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_no_hold_and_grants_no_key_twice() {
    let (v, logs) = rolling(false).await;
    assert!(v.grants > 100 && v.calls > 100, "{v:?}{logs}");
    assert_eq!(v.overlaps, "[]", "{v:?}");
    assert_eq!(v.lost, "[]", "an owner lost its hold: {v:?}{logs}");
    assert_eq!(v.errors, 0, "{v:?}{logs}");
    // A safety bound, not a speed claim (the figure is printed, ~0.1-0.2 s
    // on a loaded host): far under a session lease.
    assert!(v.max_wait_ms < 2_000 && v.max_call_ms < 2_000, "{v:?}");
}

/// The same with `kill -9` instead of SIGTERM (what a stop cost before the
/// handoff, and what a crash still costs): run by hand for the figures
/// (`cargo test --test rolling_restart -- --ignored --nocapture`). Only
/// exclusion is checked: holds are lost and callers wait a session lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_the_same_restart_with_kill_9() {
    let (v, logs) = rolling(true).await;
    assert_eq!(v.overlaps, "[]", "{v:?}{logs}");
}

/// The checker sees an overlap and a loss in a history that has them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_overlaps_and_losses() {
    let b = quorum_support::start_beam("roll_chk").await;
    let raw = beval(
        &b,
        "eq_rolling:check_history([{grant, k, a, 10, 20}, {grant, k, b, 30, 40}, \
         {grant, k, c, 35, 50}, {grant, j, d, 36, 37}, {lost, 5, {lock_lost, k}}, \
         {call, 1, 2000}, {wait, 1, 7000}])",
    );
    let v = verdict(&raw);
    assert_eq!(v.grants, 4, "{v:?}");
    assert!(v.overlaps.contains("{k,b,c}"), "{v:?}");
    assert!(v.lost.contains("lock_lost"), "{v:?}");
    assert_eq!((v.max_wait_ms, v.max_call_ms, v.calls), (7, 2, 1), "{v:?}");
}

//! The metrics endpoint and `erl_quorum status`, against three real
//! `erl_quorum serve` masters (W=2, each with `--metrics-addr
//! 127.0.0.1:0`) and a real Erlang node running the `erl_quorum`
//! application.
//!
//! - `scrapes_follow_a_beam_lock`: the scrape answers in the text format;
//!   the BEAM node's lock shows as one slot then none, its connection's
//!   bytes and messages grow, session renewals and quorum rounds are
//!   counted with latencies; other paths and methods get 404/405.
//! - `status_prints_one_row_per_master`: the table (and `--format terms`)
//!   for the three Rust masters and one node that does not exist.

mod common;
mod quorum_support;
mod rust_node;
mod services_support;

use quorum_support::{node_name, MasterProcess, ServeOpts, COOKIE};
use services_support::{beval, start_app_node, wait_on, Lang::Erlang};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_erl_quorum");

/// Three masters with a metrics endpoint each, and their addresses.
async fn start_masters(prefix: &str) -> (Vec<MasterProcess>, Vec<SocketAddr>) {
    let names: Vec<String> = (0..3)
        .map(|i| node_name(&format!("m{i}_{prefix}")))
        .collect();
    let opts = ServeOpts {
        masters: names.clone(),
        replicas: Vec::new(),
        w: 2,
        fresh: true,
        no_catch_up: false,
        max_lease_ms: None,
        session_lease_ms: Some(5_000),
        release_margin_ms: Some(500),
    };
    let extra = || vec!["--metrics-addr".to_owned(), "127.0.0.1:0".to_owned()];
    let (a, b, c) = tokio::join!(
        MasterProcess::start_with_args(&names[0], opts.clone(), extra()),
        MasterProcess::start_with_args(&names[1], opts.clone(), extra()),
        MasterProcess::start_with_args(&names[2], opts.clone(), extra()),
    );
    let masters = vec![a, b, c];
    let addrs = masters.iter().map(metrics_addr).collect();
    (masters, addrs)
}

/// The address a master printed (`metrics on http://ADDR/metrics`).
fn metrics_addr(m: &MasterProcess) -> SocketAddr {
    let log = m.log_tail();
    let line = log
        .lines()
        .find_map(|l| l.split("metrics on http://").nth(1))
        .unwrap_or_else(|| panic!("no metrics address printed{log}"));
    line.trim_end_matches("/metrics")
        .parse()
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// One HTTP/1.1 exchange: the status line and the body.
fn http(addr: SocketAddr, request: &[u8]) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).expect("send the request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap_or("").to_owned();
    (status, body.to_owned())
}

/// The samples of one scrape: `name{labels}` -> value.
fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let (status, body) =
        tokio::task::block_in_place(|| http(addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n"));
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample line");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// The value of `series`, 0 when absent.
fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

/// Scrapes until `series` satisfies `ok` (5 s at most); the last scrape.
async fn scrape_until(
    addr: SocketAddr,
    series: &str,
    ok: impl Fn(f64) -> bool,
) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let samples = scrape(addr);
        if ok(value(&samples, series)) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "{series} = {} after 5 s:\n{samples:#?}",
            value(&samples, series)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_follow_a_beam_lock() {
    let (masters, addrs) = start_masters("mx").await;
    let names: Vec<String> = masters.iter().map(|m| m.name().to_owned()).collect();
    let m0 = addrs[0];

    // Serving: both services answer, the other masters are connected.
    scrape_until(m0, "erl_quorum_service_up{service=\"erl_quorum\"}", |v| {
        v == 1.0
    })
    .await;
    let first = scrape_until(m0, "erl_quorum_connections{state=\"up\"}", |v| v >= 2.0).await;
    assert_eq!(
        value(&first, "erl_quorum_service_up{service=\"locker\"}"),
        1.0
    );
    assert_eq!(
        value(&first, "erl_quorum_locker_role{role=\"master\"}"),
        1.0
    );
    assert_eq!(value(&first, "erl_quorum_locker_w"), 2.0);
    assert_eq!(value(&first, "erl_quorum_locker_guard_remaining_ms"), 0.0);
    let peer = |series: &str, node: &str| format!("{series}{{peer=\"{node}\"}}");
    for other in &names[1..] {
        assert!(
            value(&first, &peer("erl_quorum_peer_received_bytes_total", other)) > 0.0,
            "{first:#?}"
        );
    }

    // A BEAM node that calls m0 first takes a lock: one slot on m0.
    let e = start_app_node("e_mx", Erlang, &names).await;
    let beam = e.node_name().to_owned();
    beval(&e, "K = {mx, lock}");
    assert_eq!(
        beval(
            &e,
            "{R, H} = eq_services:holder(fun() -> paxtor:lock(K) end), R"
        ),
        "acquired"
    );
    let held = scrape_until(m0, "erl_quorum_services_slots", |v| v == 1.0).await;
    let bytes_in =
        |s: &HashMap<String, f64>| value(s, &peer("erl_quorum_peer_received_bytes_total", &beam));
    let messages_in = |s: &HashMap<String, f64>| {
        value(s, &peer("erl_quorum_peer_received_messages_total", &beam))
    };
    assert!(
        bytes_in(&held) > 0.0 && messages_in(&held) > 0.0,
        "{held:#?}"
    );
    assert!(value(&held, &peer("erl_quorum_peer_sent_bytes_total", &beam)) > 0.0);
    assert_eq!(value(&held, &peer("erl_quorum_peer_hidden", &beam)), 0.0);
    assert!(value(&held, "erl_quorum_connections{state=\"up\"}") >= 3.0);
    assert!(
        value(&held, "erl_quorum_services_shards_held") >= 1.0 || {
            // The lock's shard may be held by another master, which m0 asked.
            let others: f64 = addrs[1..]
                .iter()
                .map(|a| value(&scrape(*a), "erl_quorum_services_shards_held"))
                .sum();
            others >= 1.0
        }
    );

    // Its holder exits: the slot goes, and the connection carried more.
    beval(&e, "normal = eq_services:stop(H, normal)");
    wait_on(
        &e,
        "paxtor:whereis(K) =:= undefined",
        Duration::from_secs(5),
    );
    let freed = scrape_until(m0, "erl_quorum_services_slots", |v| v == 0.0).await;
    assert!(bytes_in(&freed) > bytes_in(&held), "{freed:#?}");
    assert!(messages_in(&freed) > messages_in(&held));

    // Rounds are counted with their latency; renewals extend the session.
    let renewals =
        "erl_quorum_quorum_round_seconds_count{op=\"erl_quorum_session\",outcome=\"quorum\"}";
    let before = value(&freed, renewals);
    let later = scrape_until(m0, renewals, |v| v > before).await;
    let sum = value(
        &later,
        "erl_quorum_quorum_round_seconds_sum{op=\"erl_quorum_session\",outcome=\"quorum\"}",
    );
    assert!(
        sum > 0.0 && sum < value(&later, renewals) * 5.0,
        "{later:#?}"
    );
    assert!(
        value(
            &later,
            "erl_quorum_session_renewals_total{outcome=\"extended\"}"
        ) >= 2.0
    );
    assert!(value(&later, "erl_quorum_session_renewal_margin_seconds_count") >= 1.0);
    assert!(value(&later, "erl_quorum_services_session_valid_ms") > 0.0);
    let shard_rounds: f64 = addrs
        .iter()
        .map(|a| {
            value(
                &scrape(*a),
                "erl_quorum_quorum_round_seconds_count{op=\"erl_quorum_lock\",outcome=\"quorum\"}",
            )
        })
        .sum();
    assert!(shard_rounds >= 1.0, "some master took the lock's shard");

    // The endpoint answers what is not a scrape, and still scrapes after.
    tokio::task::block_in_place(|| {
        let (status, _) = http(m0, b"GET /other HTTP/1.1\r\n\r\n");
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        let (status, _) = http(m0, b"POST /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    });
    scrape(m0);
}

/// Runs `erl_quorum status` with `args`: its exit success and stdout.
fn status(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(BIN)
        .arg("status")
        .args(args)
        .args(["--cookie", COOKIE])
        .env("NO_COLOR", "1")
        .output()
        .expect("run erl_quorum status");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_one_row_per_master() {
    let (masters, addrs) = start_masters("st").await;
    let names: Vec<String> = masters.iter().map(|m| m.name().to_owned()).collect();
    // Every master serving (its session confirmed) before the table.
    for a in &addrs {
        scrape_until(*a, "erl_quorum_services_session_valid_ms", |v| v > 0.0).await;
    }
    let list = names.join(",");
    let (ok, table) = tokio::task::block_in_place(|| status(&["--masters", &list]));
    assert!(ok, "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let header = lines[0];
    let cell = |line: &str, column: &str| {
        let at = header
            .find(column)
            .unwrap_or_else(|| panic!("no {column}: {table}"));
        line[at..]
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    for (line, name) in lines[1..].iter().zip(&names) {
        assert_eq!(cell(line, "NODE"), *name, "{table}");
        assert_eq!(cell(line, "KIND"), "rust");
        assert_eq!(cell(line, "UP"), "yes");
        assert_eq!(cell(line, "ROLE"), "master");
        assert_eq!(cell(line, "W"), "2");
        assert_eq!(cell(line, "MASTERS"), "3");
        assert_eq!(cell(line, "GUARD"), "serving");
        let sessions: u64 = cell(line, "SESSIONS").parse().unwrap();
        assert!(
            (1..=3).contains(&sessions),
            "the serving nodes' sessions: {table}"
        );
        assert!(cell(line, "SESSION_MS").parse::<u64>().unwrap() > 0);
        assert!(cell(line, "SLOTS").parse::<u64>().is_ok());
    }

    // A node that is not there: a row that says so, the error below, and
    // a failing exit; the terms form says the same for scripts.
    let gone = node_name("gone_st");
    let with_gone = format!("{list},{gone}");
    let (ok, table) = tokio::task::block_in_place(|| status(&["--masters", &with_gone]));
    assert!(!ok);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    assert_eq!(cell(lines[4], "UP"), "no", "{table}");
    // (Not by column: a node name longer than its column shifts the row.)
    assert!(lines[4].split_whitespace().any(|c| c == "?"), "{table}");
    assert!(lines[5].starts_with(&format!("{gone}: ")), "{table}");
    let (_, terms) =
        tokio::task::block_in_place(|| status(&["--masters", &with_gone, "--format", "terms"]));
    let lines: Vec<&str> = terms.lines().collect();
    assert_eq!(lines.len(), 4, "{terms}");
    assert!(
        lines[0].starts_with(&format!(
            "{{'{}',[{{kind,rust}},{{reachable,true}},{{locker,[{{role,master}}",
            names[0]
        )),
        "{terms}"
    );
    assert!(lines[0].contains("{erl_quorum,[{slots,"), "{terms}");
    assert!(lines[3].starts_with(&format!(
        "{{'{gone}',[{{kind,'?'}},{{reachable,false}},{{error,\""
    )));
}

//! The history of singleton instances that `erlang_test/eq_singletons.erl`
//! records, and the checker of tests/singletons.rs: no two instances of a
//! name alive at any moment.
//!
//! The recorder (`eq_singletons:history/0`) logs, per instance, when its
//! init ran (`started`), its terminate (`ended`) and each monitor on it
//! firing (`down`: the one on its own node and the recorder's), in
//! CLOCK_REALTIME microseconds, one clock for every node on the host. A
//! [`Life`] runs from the init to the first `down`: its work starts in init,
//! and a monitor never fires before the process is gone, so a correct
//! cluster never produces two overlapping lives of one name.
//!
//! Needs `mod common; mod quorum_support; mod rust_node; mod services_support;`
//! next to it in the test crate.

#![allow(dead_code)]

use super::common::BeamNode;
use super::services_support::beval;
use erl_quorum::term::{as_atom, as_int, as_tuple, list_elements, parse_term, Term};
use std::time::Duration;

/// One line of the recorder's log (`eq_singletons:history/0`).
#[derive(Clone, Debug)]
pub struct Event {
    pub t_us: i64,
    pub kind: String,
    pub key: String,
    pub id: String,
    pub why: String,
}

/// One instance's life on the test's time line. `start_us` is when its
/// init ran (its work starts there); `end_us` when the first monitor on it
/// fired, never earlier than its real end (`None`: still alive).
#[derive(Clone, Debug, PartialEq)]
pub struct Life {
    pub key: String,
    pub id: String,
    pub start_us: i64,
    pub end_us: Option<i64>,
    /// The exit reason the monitor saw (`noconnection` for a dead node).
    pub why: String,
}

impl Life {
    /// The node the instance ran on (its id is `Node/Id/Serial`).
    pub fn node(&self) -> &str {
        self.id.split('/').next().unwrap_or("")
    }
}

pub fn binary_text(t: &Term) -> Option<String> {
    match t {
        Term::Binary(b) => Some(String::from_utf8_lossy(&b.bytes).into_owned()),
        _ => None,
    }
}

/// Parses the printed `eq_singletons:history()`.
pub fn parse_history(printed: &str) -> Vec<Event> {
    let term = parse_term(printed).unwrap_or_else(|e| panic!("history: {e}"));
    list_elements(&term)
        .unwrap_or_else(|| panic!("history is not a list: {printed}"))
        .iter()
        .map(|e| match as_tuple(e) {
            Some([t, kind, key, id, why]) => Event {
                t_us: as_int(t).expect("time"),
                kind: as_atom(kind).expect("kind").to_owned(),
                key: binary_text(key).expect("key"),
                id: binary_text(id).expect("id"),
                why: binary_text(why).expect("why"),
            },
            _ => panic!("history line {e}"),
        })
        .collect()
}

/// Each `started` with the earliest `down` of the same instance.
pub fn lives(events: &[Event]) -> Vec<Life> {
    events
        .iter()
        .filter(|e| e.kind == "started")
        .map(|s| {
            // The earliest monitor that fired (the instance's node's, or
            // the recorder's).
            let down = events
                .iter()
                .filter(|e| e.kind == "down" && e.id == s.id && e.key == s.key)
                .min_by_key(|e| e.t_us);
            Life {
                key: s.key.clone(),
                id: s.id.clone(),
                start_us: s.t_us,
                end_us: down.map(|d| d.t_us),
                why: down.map(|d| d.why.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

/// Pairs of lives of the same key that overlap: one starts before another
/// that started earlier has ended. Empty when no two instances of a key
/// were ever alive at once.
pub fn overlapping(lives: &[Life]) -> Vec<(Life, Life)> {
    let mut sorted: Vec<&Life> = lives.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key).then(a.start_us.cmp(&b.start_us)));
    let end = |l: &Life| l.end_us.unwrap_or(i64::MAX);
    let mut bad = Vec::new();
    // Per key: the life seen so far that reaches furthest.
    let mut reach: Option<&Life> = None;
    for l in sorted {
        match reach {
            Some(r) if r.key == l.key => {
                if l.start_us < end(r) {
                    bad.push((r.clone(), l.clone()));
                }
                if end(l) > end(r) {
                    reach = Some(l);
                }
            }
            _ => reach = Some(l),
        }
    }
    bad
}

/// The recorder's history on `rec`, as lives.
pub fn history(rec: &BeamNode) -> Vec<Life> {
    lives(&parse_history(&beval(rec, "eq_singletons:history()")))
}

/// The lives of `key` (its text as the recorder prints it), by start.
pub fn lives_of<'a>(all: &'a [Life], key: &str) -> Vec<&'a Life> {
    let mut v: Vec<&Life> = all.iter().filter(|l| l.key == key).collect();
    v.sort_by_key(|l| l.start_us);
    v
}

pub fn show(lives: &[Life]) -> String {
    lives
        .iter()
        .map(|l| {
            format!(
                "\n  {} {} start {} end {:?} ({})",
                l.key, l.id, l.start_us, l.end_us, l.why
            )
        })
        .collect()
}

/// Waits until the recorder on `rec` has seen `n` starts of `key` (up to
/// `timeout`); the lives of `key` then, by start.
pub fn wait_lives(rec: &BeamNode, key: &str, n: usize, timeout: Duration) -> Vec<Life> {
    beval_timeout(
        rec,
        &format!(
            "eq_singletons:wait_starts({key}, {n}, {})",
            timeout.as_millis()
        ),
        timeout + Duration::from_secs(5),
    );
    let h = history(rec);
    lives_of(&h, key).into_iter().cloned().collect()
}

/// `eval` with a timeout of our own (the harness's is 30 s).
fn beval_timeout(b: &BeamNode, expr: &str, timeout: Duration) -> String {
    tokio::task::block_in_place(|| b.eval_timeout(expr, timeout))
        .unwrap_or_else(|e| panic!("{}: `{expr}` failed: {e}", b.node_name()))
}

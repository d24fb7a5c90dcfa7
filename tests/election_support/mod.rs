//! The history of leadership terms that `erlang_test/eq_election.erl`
//! records, and the checker of tests/election.rs: never two leaders at
//! once, every leader action inside its own term, tokens that never decrease.
//!
//! Each record is `{Time, Node, Pid, elected | acted | surrendered, Token}`
//! (`erlang:system_time(microsecond)`: every node runs on this host, one
//! clock). A term runs from its `elected` to the `surrendered` of the same
//! pid that follows it (logged at the end of the term's validity), or to
//! the moment the test killed its node, or is still running.

#![allow(dead_code)]

use erl_quorum::term::{as_atom, as_int, as_tuple, list_elements, parse_term, Term};

/// One line of `eq_election:history()`.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub t_us: i64,
    pub node: String,
    pub pid: String,
    pub event: String,
    pub token: Option<i64>,
}

/// One leadership term.
#[derive(Clone, Debug, PartialEq)]
pub struct Term_ {
    pub node: String,
    pub pid: String,
    pub token: Option<i64>,
    pub start_us: i64,
    /// `None`: still leading at the end of the history.
    pub end_us: Option<i64>,
}

fn text(t: &Term) -> String {
    match t {
        Term::Binary(b) => String::from_utf8_lossy(&b.bytes).into_owned(),
        other => as_atom(other).map(str::to_owned).unwrap_or_default(),
    }
}

/// Parses the printed `eq_election:history()`.
pub fn parse_history(printed: &str) -> Vec<Record> {
    let term = parse_term(printed).unwrap_or_else(|e| panic!("history: {e}"));
    list_elements(&term)
        .unwrap_or_else(|| panic!("history is not a list: {printed}"))
        .iter()
        .map(|e| match as_tuple(e) {
            Some([t, node, pid, event, token]) => Record {
                t_us: as_int(t).expect("time"),
                node: text(node),
                pid: text(pid),
                event: text(event),
                token: as_int(token),
            },
            _ => panic!("history line {e}"),
        })
        .collect()
}

/// The terms of `records`; `killed` gives, per node, when the test killed
/// it (a term running there ends then).
pub fn terms(records: &[Record], killed: &[(String, i64)]) -> Vec<Term_> {
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by_key(|r| r.t_us);
    let mut out: Vec<Term_> = Vec::new();
    for r in &sorted {
        match r.event.as_str() {
            "elected" => out.push(Term_ {
                node: r.node.clone(),
                pid: r.pid.clone(),
                token: r.token,
                start_us: r.t_us,
                end_us: None,
            }),
            "surrendered" => {
                if let Some(t) = out
                    .iter_mut()
                    .rev()
                    .find(|t| t.pid == r.pid && t.end_us.is_none())
                {
                    t.end_us = Some(r.t_us);
                }
            }
            _ => {}
        }
    }
    for t in out.iter_mut().filter(|t| t.end_us.is_none()) {
        if let Some((_, k)) = killed.iter().find(|(n, _)| *n == t.node) {
            t.end_us = Some(*k);
        }
    }
    out
}

/// Checks the history: no two terms overlap, every `acted` lies within a
/// term of its pid, and integer tokens grow from term to term (equal
/// only for one pid's consecutive terms: a reentrant re-grant).
pub fn check(records: &[Record], killed: &[(String, i64)]) -> Result<Vec<Term_>, String> {
    let ts = terms(records, killed);
    for (i, a) in ts.iter().enumerate() {
        for b in &ts[i + 1..] {
            let a_end = a.end_us.unwrap_or(i64::MAX);
            let b_end = b.end_us.unwrap_or(i64::MAX);
            if a.start_us < b_end && b.start_us < a_end {
                return Err(format!("two leaders at once: {a:?} and {b:?}"));
            }
        }
    }
    for r in records.iter().filter(|r| r.event == "acted") {
        let inside = ts.iter().any(|t| {
            t.pid == r.pid && t.start_us <= r.t_us && r.t_us <= t.end_us.unwrap_or(i64::MAX)
        });
        if !inside {
            return Err(format!(
                "a leader action outside its term: {r:?} (terms {ts:?})"
            ));
        }
    }
    if ts.iter().all(|t| t.token.is_some()) {
        for w in ts.windows(2) {
            // The same token only for the same pid's next term: a
            // reentrant re-grant after a guard-side loss (review S3).
            let regrant = w[1].token == w[0].token && w[1].pid == w[0].pid;
            if w[1].token < w[0].token || (w[1].token == w[0].token && !regrant) {
                return Err(format!("token did not grow: {:?} then {:?}", w[0], w[1]));
            }
        }
    }
    Ok(ts)
}

/// Shows a history, one record a line.
pub fn show(records: &[Record]) -> String {
    records
        .iter()
        .map(|r| {
            format!(
                "\n  {} {} {} {} {:?}",
                r.t_us, r.node, r.pid, r.event, r.token
            )
        })
        .collect()
}

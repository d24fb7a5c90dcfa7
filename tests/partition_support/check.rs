//! The history of a partition run and its checker.
//!
//! Safety: two holds of one key by different owners never overlap. A hold
//! starts at its `ok` and ends at its `release` or `lost` (the worker
//! prints `release` before it exits, and its exit is what releases the
//! key); a hold with no end lasts to the end of the run.
//!
//! Availability: per phase, the longest stretch in which no client on the
//! majority side acquired a key (per key; the largest over the keys), from
//! the phase's start to its end.

use std::collections::BTreeMap;

/// One `EQP` line of a client (see `erlang_test/eq_partition.erl`).
#[derive(Debug, Clone)]
pub struct Event {
    pub at_us: i64,
    pub node: String,
    pub what: String,
    pub kind: String,
    pub key: String,
    pub pid: String,
}

impl Event {
    /// `EQP <us> <event> <kind> <key> <pid>`; `None` for any other line.
    pub fn parse(node: &str, line: &str) -> Option<Event> {
        let mut it = line.split_whitespace();
        if it.next()? != "EQP" {
            return None;
        }
        let at_us = it.next()?.parse().ok()?;
        let what = it.next()?.to_owned();
        let kind = it.next()?.to_owned();
        let key = it.next()?.to_owned();
        let pid = it.next()?.to_owned();
        Some(Event {
            at_us,
            node: node.to_owned(),
            what,
            kind,
            key,
            pid,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Hold {
    pub node: String,
    pub pid: String,
    pub from: i64,
    pub until: i64,
}

/// The holds of every key (`kind key`), in start order.
pub fn holds(events: &[Event], end_us: i64) -> BTreeMap<String, Vec<Hold>> {
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.at_us);
    let mut open: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<Hold>> = BTreeMap::new();
    for e in sorted {
        let key = format!("{} {}", e.kind, e.key);
        let owner = (e.node.clone(), e.pid.clone(), key.clone());
        match e.what.as_str() {
            "ok" => {
                let list = out.entry(key).or_default();
                list.push(Hold {
                    node: e.node.clone(),
                    pid: e.pid.clone(),
                    from: e.at_us,
                    until: end_us,
                });
                open.insert(owner, list.len() - 1);
            }
            "release" | "lost" => {
                if let Some(i) = open.remove(&owner) {
                    if let Some(h) = out.get_mut(&key).and_then(|l| l.get_mut(i)) {
                        h.until = e.at_us;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Every pair of overlapping holds of one key (by different owners).
pub fn overlaps(holds: &BTreeMap<String, Vec<Hold>>) -> Vec<String> {
    let mut found = Vec::new();
    for (key, list) in holds {
        let mut sorted = list.clone();
        sorted.sort_by_key(|h| h.from);
        // The latest end among the holds so far, and whose it is.
        let mut reach: Option<&Hold> = None;
        for h in &sorted {
            if let Some(r) = reach {
                if h.from < r.until && (r.node != h.node || r.pid != h.pid) {
                    found.push(format!(
                        "{key}: {} {} held {}..{} and {} {} from {}",
                        r.node, r.pid, r.from, r.until, h.node, h.pid, h.from
                    ));
                }
            }
            if reach.is_none_or(|r| h.until > r.until) {
                reach = Some(h);
            }
        }
    }
    found
}

/// The longest stretch in `[from, to]` without an `ok` of any key by a
/// node in `majority`: `(gap in ms, key)`, the largest over the keys.
pub fn longest_gap(
    events: &[Event],
    majority: &[String],
    keys: &[String],
    from: i64,
    to: i64,
) -> (f64, String) {
    let mut worst = (0.0, String::new());
    for key in keys {
        let mut oks: Vec<i64> = events
            .iter()
            .filter(|e| e.what == "ok" && &format!("{} {}", e.kind, e.key) == key)
            .filter(|e| majority.contains(&e.node))
            .filter(|e| e.at_us >= from && e.at_us <= to)
            .map(|e| e.at_us)
            .collect();
        oks.sort_unstable();
        let mut last = from;
        let mut gap = 0;
        for t in oks.into_iter().chain(std::iter::once(to)) {
            gap = gap.max(t - last);
            last = t;
        }
        let ms = gap as f64 / 1000.0;
        if ms > worst.0 {
            worst = (ms, key.clone());
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at: i64, node: &str, what: &str, pid: &str) -> Event {
        Event {
            at_us: at,
            node: node.into(),
            what: what.into(),
            kind: "lock".into(),
            key: "k".into(),
            pid: pid.into(),
        }
    }

    #[test]
    fn overlaps_and_gaps_are_found() {
        let events = vec![
            ev(0, "a", "ok", "<1>"),
            ev(10, "a", "release", "<1>"),
            ev(11, "b", "ok", "<2>"),
            ev(20, "a", "ok", "<3>"),
            ev(30, "b", "lost", "<2>"),
        ];
        let h = holds(&events, 100);
        assert_eq!(overlaps(&h).len(), 1);
        let keys = vec!["lock k".to_string()];
        let (gap, _) = longest_gap(&events, &["b".into()], &keys, 0, 100);
        assert_eq!(gap, 0.089);
    }
}

//! What is due when: one heap of deadlines instead of a task per timer.

use crate::services::slots::SlotId;
use crate::term::{Pid, Term};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Timer {
    /// Check the session, start a renewal, ask peers (every 100 ms).
    Tick,
    /// A slot refused for now tries again.
    SlotRetry(SlotId),
    /// The hold of an owner whose node lost us is released now: its guard
    /// has told it.
    ReleaseDue(SlotId, Pid),
    /// A shard round refused for now (or not yet allowed) is due again.
    ShardRetry(u32),
    /// A refused repair is due again.
    RepairAgain(String),
    /// A lost peer's grace period is over: forget its names.
    PeerGone(String),
    /// A host's keeper had its time to answer start attempt `id`.
    StartDeadline(u64),
    /// A restart that found no host tries again.
    StartRetry(Term),
    /// A start attempt given up may be followed now.
    StartResume(u64),
    /// Handoff `id` (given by this node) is due: unanswered, resend, or
    /// given up (`core::handoff`).
    Handoff(u64),
    /// The state of handoff `id` of node `from` for shard `shard` was due.
    Receive(u32, String, u64),
}

#[derive(Debug)]
struct Due {
    at: Instant,
    /// Arrival order, so timers due at one instant fire in order.
    seq: u64,
    timer: Timer,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Debug, Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<Due>>,
    seq: u64,
}

impl Timers {
    pub(super) fn at(&mut self, at: Instant, timer: Timer) {
        self.seq += 1;
        self.heap.push(Reverse(Due {
            at,
            seq: self.seq,
            timer,
        }));
    }

    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(d)| d.at)
    }

    /// The earliest timer due at `now`, if any.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(d)| d.timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_fire_in_deadline_then_arrival_order() {
        let mut t = Timers::default();
        let t0 = Instant::now();
        t.at(t0 + Duration::from_millis(20), Timer::ShardRetry(2));
        t.at(t0 + Duration::from_millis(10), Timer::ShardRetry(1));
        t.at(t0 + Duration::from_millis(20), Timer::ShardRetry(3));
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(t.pop_due(t0), None);
        let at = t0 + Duration::from_millis(20);
        let fired: Vec<Timer> = std::iter::from_fn(|| t.pop_due(at)).collect();
        assert_eq!(
            fired,
            vec![
                Timer::ShardRetry(1),
                Timer::ShardRetry(2),
                Timer::ShardRetry(3)
            ]
        );
        assert_eq!(t.next(), None);
    }
}

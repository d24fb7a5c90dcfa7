//! Fencing tokens: every grant of a lock (and of a name) carries a number
//! that only grows per key, across grants by one serving node, across a
//! shard's move to another serving node, and across a node's restart, so
//! that a resource guarded by it can refuse a stale holder.
//!
//! A key is granted only by the node holding its shard (see
//! [`crate::services::shards`]), so tokens are counted per shard: each
//! grant takes the shard's next number. When this node takes a shard, the
//! count jumps to at least `wall_ms << GRANT_BITS`, `wall_ms` being the
//! wall clock when the shard round started (stamped by the driver on
//! `Event::ShardTaken`: the core itself reads no clock). A token is thus
//! `base << 20 | n` with `base` the ms of the take and `n` the grants since,
//! a full `n` carrying into `base + 1`; and the count never goes back while
//! the node runs (a clock stepped back changes nothing until restart).
//!
//! Why a later holder's tokens are larger: a shard changes hands only after
//! the old holder's session lapsed on the masters, and the old holder
//! granted nothing after that (every grant needs more than `lost_margin`
//! of the session left, by this node's conservative count). It started its
//! take round only with more than `lost_margin` + 0.5 s of the session
//! left (`may_grant`), so the masters accept the new holder's round, in
//! real time, more than `lost_margin` + 0.5 s after the old holder's round
//! started (3.5 s by default; normally about a session lease, as renewals
//! run every second), and the new round started at most a one-way delay
//! before that acceptance. (Stamped at the round's start, not its end: a
//! slow round, up to the 2 s call timeout, would eat into the gap.) The
//! new base is then larger provided
//!
//! - **the serving nodes' wall clocks differ by less than that gap** (the
//!   assumption: less than `lost_margin`, 3 s by default; NTP keeps them
//!   within milliseconds), and
//! - the old holding granted fewer than 2^20 keys of the shard per ms of
//!   that gap on average (a million per ms: far beyond any node).
//!
//! A restarted node takes its shards with a fresh count, but only once its
//! old session lapsed: the same argument on one clock (which must not be
//! stepped back by more than the gap across the restart).
//!
//! Tokens stay below 2^62 (the wall clock is capped at 2^42 ms, the year
//! 2109), so they travel as small enough integers.

use crate::services::shards::SHARDS;

/// Bits of a token counting grants within one ms of a holding's base.
pub(crate) const GRANT_BITS: u32 = 20;
/// The wall clock in ms is capped here (2^42 ms: the year 2109).
const MAX_WALL_MS: u64 = (1 << 42) - 1;

/// The next token of every shard at this node (0: never held).
#[derive(Debug)]
pub(super) struct Fences {
    next: Vec<u64>,
}

impl Default for Fences {
    fn default() -> Self {
        Fences {
            next: vec![0; SHARDS as usize],
        }
    }
}

impl Fences {
    /// This node took `shard`; `wall_ms`: the wall clock (ms since the
    /// Unix epoch) when the round started (stamped by the driver: a slow
    /// round must not eat into the gap the module comment relies on).
    pub(super) fn taken(&mut self, shard: u32, wall_ms: u64) {
        if let Some(next) = self.next.get_mut(shard as usize) {
            let base = wall_ms.min(MAX_WALL_MS) << GRANT_BITS;
            *next = (*next).max(base).max(1);
        }
    }

    /// The next token of `shard` (handed to the node taking it over).
    pub(super) fn next(&self, shard: u32) -> u64 {
        self.next.get(shard as usize).copied().unwrap_or(0)
    }

    /// `shard` came from a node whose next token was `next`: none of ours
    /// goes below it.
    pub(super) fn adopt(&mut self, shard: u32, next: u64) {
        if let Some(mine) = self.next.get_mut(shard as usize) {
            *mine = (*mine).max(next).max(1);
        }
    }

    /// The token of a grant in `shard`, which this node holds.
    pub(super) fn grant(&mut self, shard: u32) -> u64 {
        match self.next.get_mut(shard as usize) {
            Some(next) => {
                let token = (*next).max(1);
                *next = token + 1;
                token
            }
            None => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_grow_within_a_holding_and_from_the_clock_at_each_take() {
        let mut f = Fences::default();
        f.taken(3, 1_000);
        let a = f.grant(3);
        assert_eq!(a, 1_000 << GRANT_BITS);
        assert_eq!(f.grant(3), a + 1);
        // Taken again, the clock stepped back: the count goes on.
        f.taken(3, 900);
        assert_eq!(f.grant(3), a + 2);
        // Taken later: the base jumps.
        f.taken(3, 5_000);
        assert_eq!(f.grant(3), 5_000 << GRANT_BITS);
        // Other shards count apart; out of range is harmless.
        f.taken(4, 2_000);
        assert_eq!(f.grant(4), 2_000 << GRANT_BITS);
        assert_eq!(f.grant(SHARDS + 7), 1);
        f.taken(SHARDS + 7, 1);
    }

    #[test]
    fn a_full_count_carries_into_the_next_ms_and_tokens_stay_below_2_62() {
        let mut f = Fences::default();
        f.taken(0, 7);
        for _ in 0..(1 << GRANT_BITS) {
            f.grant(0);
        }
        assert_eq!(f.grant(0), 8 << GRANT_BITS);
        f.taken(1, u64::MAX);
        let t = f.grant(1);
        assert!(t < 1 << 62 && t > 0);
        // A node whose clock reads 0 still gives positive tokens.
        f.taken(2, 0);
        assert_eq!(f.grant(2), 1);
        assert_eq!(f.grant(2), 2);
    }

    #[test]
    fn a_new_holder_a_gap_later_starts_above_the_old_holders_tokens() {
        // Old holder took at 10_000 and granted 3 million keys; the new
        // one takes 3 s later with its clock 2.9 s behind.
        let mut old = Fences::default();
        old.taken(9, 10_000);
        let mut last = 0;
        for _ in 0..3_000_000 {
            last = old.grant(9);
        }
        let mut new = Fences::default();
        new.taken(9, 10_000 + 3_000 - 2_900);
        assert!(new.grant(9) > last);
    }
}

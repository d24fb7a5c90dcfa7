//! What a peer earns by sending what we refuse (sans-IO: `now` in,
//! verdicts out): a few log lines, then silence, then the connection.
//!
//! Logging every refused message lets a peer turn a few bytes into far more
//! log; ignoring them silently hides a broken or hostile peer. So each
//! peer has a token bucket of log lines ([`LOG_BURST`], refilled at one per
//! [`LOG_EVERY`]), and a peer refused more than [`MAX_REFUSED`] times within
//! [`WINDOW`] is dropped (the BEAM drops a connection on its first invalid
//! message; we are as lenient as OTP's "ignored" cases need, no more).

use std::time::{Duration, Instant};

/// Refusals tolerated within [`WINDOW`] before the connection is dropped.
pub(crate) const MAX_REFUSED: u32 = 100;
/// The window [`MAX_REFUSED`] counts in.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// Log lines a peer may cause at once.
pub(crate) const LOG_BURST: u32 = 5;
/// One more log line is allowed per this much time.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(1);

/// What to do about one refused message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Log it, saying how many were refused silently since the last line.
    Log { suppressed: u32 },
    /// Refuse it without a log line.
    Quiet,
    /// Too many: drop the connection (one log line, by the caller).
    Drop,
}

/// One peer's record of refused messages.
#[derive(Debug, Clone)]
pub(crate) struct Refusals {
    window_start: Instant,
    in_window: u32,
    tokens: u32,
    refilled: Instant,
    suppressed: u32,
}

impl Refusals {
    pub(crate) fn new(now: Instant) -> Self {
        Refusals {
            window_start: now,
            in_window: 0,
            tokens: LOG_BURST,
            refilled: now,
            suppressed: 0,
        }
    }

    /// A message was refused at `now`.
    pub(crate) fn refuse(&mut self, now: Instant) -> Verdict {
        // Time may be read on several threads: never go backwards.
        let now = now.max(self.refilled).max(self.window_start);
        if now.duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window += 1;
        if self.in_window > MAX_REFUSED {
            return Verdict::Drop;
        }
        let earned = now.duration_since(self.refilled).as_nanos() / LOG_EVERY.as_nanos();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(LOG_BURST);
            // Keep the fraction of a period already elapsed.
            self.refilled = if self.tokens == LOG_BURST {
                now
            } else {
                self.refilled + LOG_EVERY * earned
            };
        }
        if self.tokens == 0 {
            self.suppressed += 1;
            return Verdict::Quiet;
        }
        self.tokens -= 1;
        Verdict::Log {
            suppressed: std::mem::take(&mut self.suppressed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(v: Verdict) -> bool {
        matches!(v, Verdict::Log { .. })
    }

    #[test]
    fn a_burst_is_logged_then_silenced_then_refilled() {
        let t0 = Instant::now();
        let mut r = Refusals::new(t0);
        let first: Vec<_> = (0..8).map(|_| r.refuse(t0)).collect();
        assert_eq!(
            first.iter().filter(|v| logged(**v)).count(),
            LOG_BURST as usize
        );
        assert_eq!(first[7], Verdict::Quiet);
        // One period later: one line, which counts the three kept quiet.
        assert_eq!(r.refuse(t0 + LOG_EVERY), Verdict::Log { suppressed: 3 });
        assert_eq!(r.refuse(t0 + LOG_EVERY), Verdict::Quiet);
        // A long silence refills the bucket, never above its burst.
        let later = t0 + WINDOW * 3;
        let next: Vec<_> = (0..7).map(|_| r.refuse(later)).collect();
        assert_eq!(
            next.iter().filter(|v| logged(**v)).count(),
            LOG_BURST as usize
        );
    }

    #[test]
    fn too_many_within_the_window_drop_the_peer() {
        let t0 = Instant::now();
        let mut r = Refusals::new(t0);
        for i in 0..MAX_REFUSED {
            assert_ne!(
                r.refuse(t0 + Duration::from_millis(u64::from(i))),
                Verdict::Drop
            );
        }
        assert_eq!(r.refuse(t0 + Duration::from_millis(500)), Verdict::Drop);
    }

    #[test]
    fn a_slow_trickle_is_never_dropped() {
        // 90 per window, window after window (time jumps a window at a time).
        let t0 = Instant::now();
        let mut r = Refusals::new(t0);
        for w in 0..20u32 {
            let start = t0 + WINDOW * w;
            for i in 0..90u64 {
                let v = r.refuse(start + Duration::from_millis(i));
                assert_ne!(v, Verdict::Drop, "window {w}, refusal {i}");
            }
        }
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(60);
        let mut r = Refusals::new(t0);
        let earlier = t0 - Duration::from_secs(30);
        for _ in 0..MAX_REFUSED {
            assert_ne!(r.refuse(earlier), Verdict::Drop);
        }
        assert_eq!(r.refuse(earlier), Verdict::Drop);
    }
}

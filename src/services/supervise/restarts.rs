//! Restart intensity, as an OTP supervisor counts it: more than
//! [`MAX_RESTARTS`] restarts within [`PERIOD`] and the supervisor gives up.

use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

pub(crate) const MAX_RESTARTS: usize = 5;
pub(crate) const PERIOD: Duration = Duration::from_secs(10);

/// The recent restarts of one name.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Intensity {
    recent: VecDeque<Instant>,
}

impl Intensity {
    /// Counts a restart at `now`; `false` when it is one too many.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= PERIOD)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        self.recent.len() <= MAX_RESTARTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sixth_restart_within_the_period_is_refused_and_old_ones_age_out() {
        let t0 = Instant::now();
        let mut i = Intensity::default();
        for n in 0..MAX_RESTARTS as u64 {
            assert!(i.allow(t0 + Duration::from_secs(n)));
        }
        assert!(!i.allow(t0 + Duration::from_secs(5)));
        let mut j = Intensity::default();
        for n in 0..MAX_RESTARTS as u64 {
            assert!(j.allow(t0 + Duration::from_secs(n)));
        }
        // The first has aged out by t0 + 10 s.
        assert!(j.allow(t0 + PERIOD));
    }
}

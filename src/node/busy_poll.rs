//! When a connection's reader spins on its socket instead of sleeping.
//!
//! A loopback round trip between two sleeping processes costs 50-70 µs on
//! the 2-core machines this runs on, nearly all of it the kernel waking the
//! other side; with the reader spinning it is under 10 µs. The BEAM spins
//! for the same reason (scheduler busy wait). Spinning only pays in a
//! conversation: a few frames came in, we answered on the same connection, and
//! the peer will likely answer back soon. In a stream of frames (one-way
//! traffic, or many callers at once) the reader instead lets data pile up
//! and reads it in one go, and spinning would only burn the CPU the sender
//! needs. This is the decision, kept apart from the socket.

use std::time::{Duration, Instant};

/// At most this many frames in one read still look like one exchange: a
/// `gen_server:call` arrives as a monitor and a send, plus the previous
/// call's demonitor.
const CONVERSATION_FRAMES: usize = 4;
/// Polls allowed before the frames just read are answered: the handler
/// runs while the reader yields, so no answer by then means one-way traffic.
const REPLY_GRACE_POLLS: u32 = 2;

/// What the reader saw at its last read.
#[derive(Debug, Clone, Copy)]
pub(super) struct BusyPoll {
    /// The last read ends this long after it.
    window: Duration,
    read_at: Instant,
    /// Frames handled from the last read (ticks excluded).
    frames: usize,
    /// The connection's sent-frame count at the last read.
    sent_at_read: u64,
    /// Polls since the last read.
    polls: u32,
}

impl BusyPoll {
    pub(super) fn new(window: Duration, now: Instant) -> Self {
        Self {
            window,
            read_at: now,
            frames: 0,
            sent_at_read: 0,
            polls: 0,
        }
    }

    /// A read of fresh data at `now`, when the connection had sent `sent` frames.
    pub(super) fn read(&mut self, now: Instant, sent: u64) {
        self.read_at = now;
        self.frames = 0;
        self.sent_at_read = sent;
        self.polls = 0;
    }

    /// One frame of the last read was handled.
    pub(super) fn frame(&mut self) {
        self.frames += 1;
    }

    /// Whether the reader should poll its socket once more rather than
    /// sleep, at `now`, with `sent` frames sent so far.
    pub(super) fn spin(&mut self, now: Instant, sent: u64) -> bool {
        let since = now.saturating_duration_since(self.read_at);
        if self.window.is_zero()
            || !(1..=CONVERSATION_FRAMES).contains(&self.frames)
            || since >= self.window
        {
            return false;
        }
        self.polls += 1;
        sent != self.sent_at_read || self.polls <= REPLY_GRACE_POLLS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_micros(50);

    fn after_one_frame() -> (BusyPoll, Instant) {
        let t0 = Instant::now();
        let mut p = BusyPoll::new(WINDOW, t0);
        p.read(t0, 7);
        p.frame();
        (p, t0)
    }

    #[test]
    fn spins_through_a_conversation_until_the_window_ends() {
        let (mut p, t0) = after_one_frame();
        assert!(
            p.spin(t0 + Duration::from_micros(5), 7),
            "handler still has time to answer"
        );
        assert!(
            p.spin(t0 + Duration::from_micros(40), 8),
            "answered: the peer will reply"
        );
        assert!(!p.spin(t0 + WINDOW, 8), "window over");
    }

    #[test]
    fn does_not_spin_on_one_way_traffic() {
        let (mut p, t0) = after_one_frame();
        for _ in 0..REPLY_GRACE_POLLS {
            assert!(p.spin(t0, 7));
        }
        assert!(!p.spin(t0, 7));
    }

    #[test]
    fn does_not_spin_after_a_burst_or_when_off() {
        let (mut p, t0) = after_one_frame();
        for _ in 0..CONVERSATION_FRAMES {
            p.frame();
        }
        assert!(!p.spin(t0, 8), "a stream of frames in one read");
        let mut off = BusyPoll::new(Duration::ZERO, t0);
        off.read(t0, 0);
        off.frame();
        assert!(!off.spin(t0, 1));
        let mut fresh = BusyPoll::new(WINDOW, t0);
        assert!(!fresh.spin(t0, 0), "nothing read yet");
    }
}

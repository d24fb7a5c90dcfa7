//! How a connection's reader paces its reads, sans-IO: when it polls its
//! socket instead of sleeping, and when it lets data pile up before it
//! reads. These are the decisions, kept apart from the socket
//! (`socket_read` acts on them).
//!
//! **Polling.** A loopback round trip between two sleeping processes costs
//! 50-70 µs on the 2-core machines this runs on, nearly all of it the kernel
//! waking the other side; with the reader polling it is under 10 µs. The
//! BEAM spins for the same reason (scheduler busy wait). Polling only pays
//! in a conversation: a few frames came in, we answered on the same
//! connection, and the peer will likely answer back soon. With many calls
//! in flight, frames arrive while we work anyway, and polling would only
//! burn the CPU the peer needs.
//!
//! **Coalescing.** In a one-way stream (frames keep coming, we answer none)
//! a reader that wakes for every arriving segment does a wakeup, a read and
//! a pass through its loop for every few messages. Waiting a moment after
//! the wakeup lets a batch gather: measured on the one-way dist benchmark,
//! the reader's CPU per message fell from 2.9 to 1.6 µs, and the sender's
//! from 4.2 to 3.5 (it wakes us less often).

use std::time::{Duration, Instant};

/// At most this many frames in one read still look like one exchange: a
/// `gen_server:call` arrives as a monitor and a send, plus the previous
/// call's demonitor.
const CONVERSATION_FRAMES: usize = 4;
/// Polls allowed before the frames just read are answered: the handler
/// runs while the reader yields, so no answer by then means one-way traffic.
const REPLY_GRACE_POLLS: u32 = 2;
/// A read of more frames than a conversation's keeps polling off for this
/// many reads: with many calls in flight most reads still hold a single
/// call, and only the occasional larger one gives the crowd away.
const BURST_MEMORY: u8 = 16;
/// Reads closer together than this are one stream; a frame after a longer
/// silence is read at once.
const STREAM_GAP: Duration = Duration::from_micros(200);
/// Unanswered reads in a row that make a one-way stream. A conversation
/// has lone unanswered reads too (a caller's demonitor after our reply),
/// and waiting there would delay its next request.
const ONE_WAY_READS: u8 = 4;

/// What the reader saw at its last read.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadPacing {
    /// How long after a read the reader may poll (zero: never).
    poll_window: Duration,
    /// How long a reader in a one-way stream waits after a wakeup (zero: never).
    coalesce: Duration,
    read_at: Instant,
    /// Frames handled from the last read (ticks excluded).
    frames: usize,
    /// The connection's sent-frame count at the last read.
    sent_at_read: u64,
    /// Polls since the last read.
    polls: u32,
    /// Reads left before polling is allowed again after a burst.
    burst_memory: u8,
    /// Reads in a row, each soon after the one before, that brought frames
    /// and got no answer.
    unanswered: u8,
}

impl ReadPacing {
    pub(super) fn new(poll_window: Duration, coalesce: Duration, now: Instant) -> Self {
        Self {
            poll_window,
            coalesce,
            read_at: now,
            frames: 0,
            sent_at_read: 0,
            polls: 0,
            burst_memory: 0,
            unanswered: 0,
        }
    }

    /// A read of fresh data at `now`, when the connection had sent `sent` frames.
    pub(super) fn read(&mut self, now: Instant, sent: u64) {
        // Counted up to what makes a stream, no further: a stream lasts.
        self.unanswered = if self.one_way(now, sent) {
            (self.unanswered + 1).min(ONE_WAY_READS)
        } else {
            0
        };
        self.burst_memory = if self.frames > CONVERSATION_FRAMES {
            BURST_MEMORY
        } else {
            self.burst_memory.saturating_sub(1)
        };
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
        if self.poll_window.is_zero()
            || !(1..=CONVERSATION_FRAMES).contains(&self.frames)
            || self.burst_memory > 0
            || since >= self.poll_window
        {
            return false;
        }
        self.polls += 1;
        sent != self.sent_at_read || self.polls <= REPLY_GRACE_POLLS
    }

    /// The reader slept until data arrived at `now`, with `sent` frames
    /// sent so far: how long to let more gather before reading, if at all.
    /// Only in a one-way stream: this read and the ones before it brought
    /// frames, none was answered, and each came right after the last.
    pub(super) fn coalesce(&self, now: Instant, sent: u64) -> Option<Duration> {
        let stream = self.unanswered + 1 >= ONE_WAY_READS && self.one_way(now, sent);
        // (`unanswered` stays at most ONE_WAY_READS, so the sum cannot overflow.)
        (!self.coalesce.is_zero() && stream).then_some(self.coalesce)
    }

    /// Whether the last read brought frames that got no answer by `sent`,
    /// and `now` is soon after it.
    fn one_way(&self, now: Instant, sent: u64) -> bool {
        self.frames > 0
            && sent == self.sent_at_read
            && now.saturating_duration_since(self.read_at) < STREAM_GAP
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_micros(50);
    const COALESCE: Duration = Duration::from_micros(20);

    fn after_frames(n: usize) -> (ReadPacing, Instant) {
        let t0 = Instant::now();
        let mut p = ReadPacing::new(WINDOW, COALESCE, t0);
        p.read(t0, 7);
        for _ in 0..n {
            p.frame();
        }
        (p, t0)
    }

    #[test]
    fn spins_through_a_conversation_until_the_window_ends() {
        let (mut p, t0) = after_frames(1);
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
        let (mut p, t0) = after_frames(1);
        for _ in 0..REPLY_GRACE_POLLS {
            assert!(p.spin(t0, 7));
        }
        assert!(!p.spin(t0, 7));
    }

    #[test]
    fn does_not_spin_after_a_burst_or_when_off() {
        let (mut p, t0) = after_frames(CONVERSATION_FRAMES + 1);
        assert!(!p.spin(t0, 8), "a stream of frames in one read");
        let mut off = ReadPacing::new(Duration::ZERO, COALESCE, t0);
        off.read(t0, 0);
        off.frame();
        assert!(!off.spin(t0, 1));
        let mut fresh = ReadPacing::new(WINDOW, COALESCE, t0);
        assert!(!fresh.spin(t0, 0), "nothing read yet");
    }

    #[test]
    fn a_burst_keeps_polling_off_for_a_while() {
        let (mut p, t0) = after_frames(CONVERSATION_FRAMES + 1);
        for i in 0..BURST_MEMORY {
            p.read(t0, 7);
            p.frame();
            assert!(!p.spin(t0, 8), "read {i} after the burst");
        }
        p.read(t0, 7);
        p.frame();
        assert!(p.spin(t0, 8), "calm again");
    }

    /// `n` more reads of one frame each, 10 µs apart, none answered.
    fn unanswered_reads(p: &mut ReadPacing, t: &mut Instant, n: u8) {
        for _ in 0..n {
            *t += Duration::from_micros(10);
            p.read(*t, 7);
            p.frame();
        }
    }

    #[test]
    fn coalesces_only_a_one_way_stream() {
        let (mut p, t0) = after_frames(1);
        let mut t = t0;
        unanswered_reads(&mut p, &mut t, ONE_WAY_READS - 2);
        let soon = t + Duration::from_micros(30);
        assert_eq!(p.coalesce(soon, 7), None, "not yet a stream");
        unanswered_reads(&mut p, &mut t, 1);
        let soon = t + Duration::from_micros(30);
        assert_eq!(p.coalesce(soon, 7), Some(COALESCE));
        assert_eq!(p.coalesce(soon, 8), None, "we answered: a conversation");
        assert_eq!(p.coalesce(t + STREAM_GAP, 7), None, "after a silence");
        // A long stream stays one.
        for _ in 0..4 {
            unanswered_reads(&mut p, &mut t, 250);
        }
        assert_eq!(p.coalesce(t + Duration::from_micros(30), 7), Some(COALESCE));
        let mut off = ReadPacing::new(WINDOW, Duration::ZERO, t0);
        unanswered_reads(&mut off, &mut t, ONE_WAY_READS);
        assert_eq!(off.coalesce(t + Duration::from_micros(30), 7), None);
    }

    #[test]
    fn a_conversation_with_lone_unanswered_frames_is_no_stream() {
        // Request (answered), then the caller's demonitor (not), and so on.
        let (mut p, t0) = after_frames(1);
        let (mut t, mut sent) = (t0, 7);
        for _ in 0..10 {
            sent += 1; // our reply to the request just read
            t += Duration::from_micros(10);
            p.read(t, sent); // the demonitor
            p.frame();
            t += Duration::from_micros(10);
            assert_eq!(p.coalesce(t, sent), None);
            p.read(t, sent); // the next request
            p.frame();
        }
    }
}

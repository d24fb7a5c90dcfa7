//! The sending half of a connection: each frame's wire form (distribution
//! header with atom cache references, or pass-through), large messages in
//! fragments when the peer takes them ([`Fragmenter`]), and ticks when we
//! have been quiet.

use super::fragmenter::{Fragmenter, Route};
use crate::dist::atom_cache::AtomCacheWriter;
use crate::dist::frame::{OutFrame, TICK};
use std::time::{Duration, Instant};

/// The wire form's scratch space is kept between frames up to this size.
const SCRATCH_KEEP: usize = 64 << 10;
/// Shortest tick interval, so a zero `net_ticktime` cannot make the driver spin.
const MIN_TICK_INTERVAL: Duration = Duration::from_millis(1);

/// What we send the peer, from frames to bytes.
///
/// Every byte this half returns must reach the socket, in the order it was
/// returned: the peer's copy of our atom cache changes only through the
/// headers it reads (see [`AtomCacheWriter`]).
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// The sending side of the atom cache, when the peer negotiated
    /// distribution headers; without it frames go in pass-through form.
    atoms: Option<AtomCacheWriter>,
    /// Large messages in fragments, when the peer negotiated fragments
    /// (and distribution headers, which fragments carry).
    fragments: Option<Fragmenter>,
    /// The last frame's wire form.
    scratch: Vec<u8>,
    /// Frames released after a message's last fragment, and their wire form.
    released: Vec<OutFrame>,
    released_wire: Vec<u8>,
    tick_interval: Duration,
    last_write: Instant,
}

impl Outgoing {
    pub(super) fn new(
        atom_cache: bool,
        fragments: bool,
        net_ticktime: Duration,
        now: Instant,
    ) -> Self {
        Outgoing {
            atoms: atom_cache.then(AtomCacheWriter::new),
            fragments: (atom_cache && fragments).then(Fragmenter::default),
            scratch: Vec::new(),
            released: Vec::new(),
            released_wire: Vec::new(),
            tick_interval: (net_ticktime / 4).max(MIN_TICK_INTERVAL),
            last_write: now,
        }
    }

    /// The wire form of `frame`, written at `now`. Write all of it before
    /// anything this half returns later. Empty when the frame goes out
    /// later through [`Outgoing::next_fragment`] (a large message, or one
    /// that waits behind its sender's large message).
    pub(crate) fn send(&mut self, frame: OutFrame, now: Instant) -> &[u8] {
        self.wrote(now);
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
        let frame = match &mut self.fragments {
            None => frame,
            Some(f) => match f.push(frame) {
                Route::Now(frame) => frame,
                Route::Queued => {
                    self.scratch.clear();
                    return &self.scratch;
                }
            },
        };
        match &mut self.atoms {
            Some(atoms) => atoms.write(&frame, &mut self.scratch),
            // The frame's own buffer becomes the scratch space.
            None => self.scratch = frame.into_pass_through(),
        }
        &self.scratch
    }

    /// The next fragment to write at `now` (messages in fragments take
    /// turns), followed by the frames that waited for its message to end;
    /// `None` when no message is in fragments. Call it after writing what
    /// [`Outgoing::send`] returned, so frames pushed meanwhile go between
    /// two fragments.
    pub(crate) fn next_fragment(&mut self, now: Instant) -> Option<&[u8]> {
        let fragments = self.fragments.as_mut()?;
        self.scratch.clear();
        if !fragments.next_fragment(&mut self.scratch, &mut self.released) {
            return None;
        }
        self.wrote(now);
        let atoms = self.atoms.as_mut().expect("fragments need the atom cache");
        for frame in self.released.drain(..) {
            atoms.write(&frame, &mut self.released_wire);
            self.scratch.extend_from_slice(&self.released_wire);
        }
        if self.released_wire.capacity() > SCRATCH_KEEP {
            self.released_wire = Vec::new();
        }
        Some(&self.scratch)
    }

    /// Bytes kept for later ([`Outgoing::next_fragment`]): large messages
    /// not yet fragmented and the frames waiting behind them.
    pub(crate) fn held(&self) -> usize {
        self.fragments.as_ref().map_or(0, Fragmenter::held)
    }

    /// When a tick is due unless something is written first.
    pub(crate) fn poll_timeout(&self) -> Instant {
        self.last_write + self.tick_interval
    }

    /// Time passed: the tick to write when nothing was written for a
    /// quarter of `net_ticktime`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Option<&'static [u8]> {
        if now < self.poll_timeout() {
            return None;
        }
        // Quiet for a while: a large last frame need not stay around.
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
        self.wrote(now);
        Some(&TICK)
    }

    fn wrote(&mut self, now: Instant) {
        // Senders on other threads take `now` before the lock: keep the latest.
        self.last_write = self.last_write.max(now);
    }
}

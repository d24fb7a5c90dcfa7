//! Cutting large outgoing messages into fragments (`DFLAG_FRAGMENTS`),
//! sans-IO, so a tick or another process's message never waits for a whole
//! large message to be written: the driver asks for one fragment at a time
//! ([`Fragmenter::next_fragment`]) and writes the frames queued meanwhile
//! between two fragments.
//!
//! Like the BEAM (`ERTS_DIST_FRAGMENT_SIZE`), a message is cut into pieces
//! of 64 KiB of terms; the first fragment is `131 69 SequenceId FragmentId`
//! and a distribution header, the others `131 70 SequenceId FragmentId`;
//! FragmentId counts down to 1. Messages being fragmented take turns, one
//! fragment each.
//!
//! Atom cache: a fragmented message lists no atom cache references (its
//! header is `NumberOfAtomCacheRefs = 0`), so its atoms go as text. The
//! cache state the peer holds then never depends on where the frames
//! between its fragments fall; the cost is a few bytes per atom in a
//! message of more than 64 KiB.
//!
//! Order: Erlang keeps the signals from one process to another in order.
//! A frame whose sender has a message still in fragments waits behind it
//! (the sender is the first pid in the control tuple: the `From` of every
//! signal that has one; for a plain `SEND`, which names none, the
//! receiver, so a message to the same pid stays in order too).

use crate::dist::frame::{OutFrame, DIST_FRAG_CONT, DIST_FRAG_HEADER, VERSION};
use eetf::{Pid, Term};
use std::collections::VecDeque;

/// Bytes of terms per fragment (the BEAM's `ERTS_DIST_FRAGMENT_SIZE`);
/// larger messages are fragmented.
pub(crate) const FRAGMENT_SIZE: usize = 64 << 10;

/// A message being sent in fragments, and what waits behind it.
#[derive(Debug)]
struct Stream {
    seq: u64,
    frame: OutFrame,
    /// Bytes of its terms already sent.
    sent: usize,
    /// The id of its next fragment (the first one's is the count).
    next_id: u64,
    sender: Option<Pid>,
    /// Frames of the same sender pushed after it, in order.
    behind: VecDeque<OutFrame>,
}

/// The messages of one connection being sent in fragments.
#[derive(Debug, Default)]
pub(crate) struct Fragmenter {
    streams: VecDeque<Stream>,
    next_seq: u64,
    /// Bytes of terms held: what is left of the messages in fragments and
    /// the frames waiting behind them (the outbox's bound counts them).
    held: usize,
}

/// What [`Fragmenter::push`] did with a frame.
#[derive(Debug)]
pub(crate) enum Route {
    /// Send it now, whole.
    Now(OutFrame),
    /// It goes out later, through [`Fragmenter::next_fragment`].
    Queued,
}

impl Fragmenter {
    /// A frame to send: large ones are fragmented, and one whose sender has
    /// a message still in fragments waits behind it.
    pub(crate) fn push(&mut self, frame: OutFrame) -> Route {
        let large = frame.terms().len() > FRAGMENT_SIZE;
        if !large && self.streams.is_empty() {
            return Route::Now(frame);
        }
        let sender = sender(&frame);
        if let Some(s) = sender.as_ref().and_then(|p| {
            self.streams
                .iter_mut()
                .find(|s| s.sender.as_ref() == Some(p))
        }) {
            self.held += frame.terms().len();
            s.behind.push_back(frame);
            return Route::Queued;
        }
        if !large {
            return Route::Now(frame);
        }
        self.held += frame.terms().len();
        self.start(frame, sender, VecDeque::new());
        Route::Queued
    }

    /// Bytes of terms held for later fragments or behind them.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    fn start(&mut self, frame: OutFrame, sender: Option<Pid>, behind: VecDeque<OutFrame>) {
        let count = frame.terms().len().div_ceil(FRAGMENT_SIZE).max(1) as u64;
        self.next_seq += 1;
        self.streams.push_back(Stream {
            seq: self.next_seq,
            frame,
            sent: 0,
            next_id: count,
            sender,
            behind,
        });
    }

    /// Appends the next fragment (a whole frame, length included) to
    /// `out`, taking turns between messages; when that was a message's
    /// last fragment, the frames that waited behind it and can go whole
    /// now are appended to `released`, in order. False when there is none.
    pub(crate) fn next_fragment(
        &mut self,
        out: &mut Vec<u8>,
        released: &mut Vec<OutFrame>,
    ) -> bool {
        let Some(mut s) = self.streams.pop_front() else {
            return false;
        };
        let terms = s.frame.terms();
        let end = terms.len().min(s.sent + FRAGMENT_SIZE);
        let chunk = &terms[s.sent..end];
        let first = s.sent == 0;
        // Tag, sequence, id, and for the first one a header without refs.
        let body_len = 2 + 16 + usize::from(first) + chunk.len();
        out.reserve(4 + body_len);
        out.extend_from_slice(&(body_len as u32).to_be_bytes());
        let tag = if first {
            DIST_FRAG_HEADER
        } else {
            DIST_FRAG_CONT
        };
        out.extend_from_slice(&[VERSION, tag]);
        out.extend_from_slice(&s.seq.to_be_bytes());
        out.extend_from_slice(&s.next_id.to_be_bytes());
        if first {
            out.push(0);
        }
        out.extend_from_slice(chunk);
        self.held -= chunk.len();
        s.sent = end;
        s.next_id -= 1;
        if s.next_id > 0 {
            self.streams.push_back(s);
            return true;
        }
        // Done: what waited goes now, up to the next large message, which
        // starts its own fragments with the rest behind it.
        let mut behind = s.behind;
        while let Some(frame) = behind.pop_front() {
            if frame.terms().len() > FRAGMENT_SIZE {
                let sender = sender(&frame);
                self.start(frame, sender, behind);
                break;
            }
            self.held -= frame.terms().len();
            released.push(frame);
        }
        true
    }
}

/// The process whose order a frame must keep: the first pid in its control
/// tuple. Our own encoding, so decoding it cannot fail on a good frame;
/// `None` (no ordering) otherwise.
fn sender(frame: &OutFrame) -> Option<Pid> {
    let control = frame.control();
    let mut bytes = Vec::with_capacity(1 + control.len());
    bytes.push(VERSION);
    bytes.extend_from_slice(control);
    match Term::decode(&mut &bytes[..]).ok()? {
        Term::Tuple(t) => t.elements.into_iter().find_map(|e| match e {
            Term::Pid(p) => Some(p),
            _ => None,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use erl_dist::message::Message;

    fn frame(from: u32, len: usize) -> OutFrame {
        let pid = |id| Pid::new("a@h", id, 0, 7);
        let payload = Term::from(eetf::Binary {
            bytes: vec![1; len],
        });
        crate::dist::control::encode(Message::send_sender(pid(from), pid(1000), payload)).unwrap()
    }

    /// The outbox bounds a connection by what the fragmenter holds too:
    /// every byte kept is counted until its fragment is written.
    #[test]
    fn held_counts_what_waits_for_fragments_until_written() {
        let mut f = Fragmenter::default();
        let (big_a, big_b, small_a) = (
            frame(1, 3 * FRAGMENT_SIZE),
            frame(2, FRAGMENT_SIZE + 1),
            frame(1, 10),
        );
        let total = big_a.terms().len() + big_b.terms().len() + small_a.terms().len();
        assert!(matches!(f.push(big_a), Route::Queued));
        assert!(matches!(f.push(big_b), Route::Queued));
        assert!(matches!(f.push(small_a), Route::Queued));
        assert_eq!(f.held(), total);
        let (mut out, mut released) = (Vec::new(), Vec::new());
        let mut last = f.held();
        while f.next_fragment(&mut out, &mut released) {
            assert!(f.held() < last);
            last = f.held();
        }
        assert_eq!(f.held(), 0);
        assert_eq!(released.len(), 1);
    }
}

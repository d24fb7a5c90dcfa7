//! Reassembly of fragmented messages (`DFLAG_FRAGMENTS`), sans-IO.
//!
//! A message too large for one go comes as fragments: the first is
//! `131 69 SequenceId:64 FragmentId:64` with the distribution header (atom
//! cache references) and the start of the terms; the others are
//! `131 70 SequenceId:64 FragmentId:64` and the next bytes. FragmentId
//! counts down to 1, so the first fragment says how many there are; the
//! fragments of one sequence come in order, but sequences interleave (the
//! BEAM fragments each sending process's messages separately, at 64 KiB).
//!
//! The peer chooses every number here, so all of them are bounded: the
//! bytes of one message (the frame limit), the bytes held in all partial
//! messages, and how many are partial at once. Anything out of protocol
//! (a fragment for a sequence that is not open, a fragment id that is not
//! the next one, a second first fragment) is an error that closes the
//! connection, as the BEAM does.

use crate::dist::atom_cache::{AtomCache, AtomCacheError};
use crate::dist::frame::{DIST_FRAG_HEADER, FRAGMENT_PREFIX};
use std::collections::HashMap;
use thiserror::Error;

/// At most this many messages of one peer may be partial at once. The BEAM
/// has one per process that is sending a large message right now.
pub(crate) const MAX_PARTIAL_MESSAGES: usize = 64;

/// Why a fragment was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum FragmentError {
    #[error("fragment shorter than its 18-byte prefix")]
    Truncated,
    #[error("fragment id 0 in sequence {seq} (ids count down to 1)")]
    ZeroId { seq: u64 },
    #[error("first fragment for sequence {seq}, which is already open")]
    SequenceOpen { seq: u64 },
    #[error("fragment for sequence {seq}, which is not open")]
    UnknownSequence { seq: u64 },
    #[error("fragment {found} of sequence {seq}, expected fragment {expected}")]
    OutOfOrder { seq: u64, expected: u64, found: u64 },
    #[error("more than {max} messages partially received at once")]
    TooManyPartial { max: usize },
    #[error("fragmented message of more than {max} bytes")]
    MessageTooLarge { max: usize },
    #[error("partial messages hold more than {max} bytes")]
    TooMuchHeld { max: usize },
    #[error("first fragment: {0}")]
    Header(#[from] AtomCacheError),
}

/// A message received whole: its terms (without version bytes) and the
/// atoms its references name.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Reassembled {
    pub atoms: Vec<Vec<u8>>,
    pub terms: Vec<u8>,
}

#[derive(Debug)]
struct Partial {
    /// The fragment id expected next.
    next: u64,
    message: Reassembled,
    /// Bytes counted against the peer's bound.
    held: usize,
}

/// The partial messages of one connection.
#[derive(Debug)]
pub(crate) struct Reassembly {
    open: HashMap<u64, Partial>,
    held: usize,
    max_message: usize,
    max_held: usize,
    max_open: usize,
}

impl Reassembly {
    /// `max_message`: the bytes one message may reach; `max_held`: the
    /// bytes all partial messages may hold together; `max_open`: how many
    /// may be partial at once.
    pub(crate) fn new(max_message: usize, max_held: usize, max_open: usize) -> Self {
        Reassembly {
            open: HashMap::new(),
            held: 0,
            max_message,
            max_held,
            max_open,
        }
    }

    /// Takes one fragment (`body` starts `131 69` or `131 70`); returns the
    /// message when this was its last fragment. The first fragment's atom
    /// cache header goes through `atoms` now, in stream order.
    pub(crate) fn handle(
        &mut self,
        body: &[u8],
        atoms: &mut AtomCache,
    ) -> Result<Option<Reassembled>, FragmentError> {
        let prefix = body
            .get(..FRAGMENT_PREFIX)
            .ok_or(FragmentError::Truncated)?;
        let seq = u64::from_be_bytes(prefix[2..10].try_into().expect("8 bytes"));
        let id = u64::from_be_bytes(prefix[10..18].try_into().expect("8 bytes"));
        if id == 0 {
            return Err(FragmentError::ZeroId { seq });
        }
        if prefix[1] == DIST_FRAG_HEADER {
            self.first(seq, id, body, atoms)
        } else {
            self.next(seq, id, &body[FRAGMENT_PREFIX..])
        }
    }

    fn first(
        &mut self,
        seq: u64,
        id: u64,
        body: &[u8],
        atoms: &mut AtomCache,
    ) -> Result<Option<Reassembled>, FragmentError> {
        if self.open.contains_key(&seq) {
            return Err(FragmentError::SequenceOpen { seq });
        }
        let mut message = Reassembled::default();
        let start = atoms.read_fragment_header(body, &mut message.atoms)?;
        let data = &body[start..];
        if data.len() > self.max_message {
            return Err(FragmentError::MessageTooLarge {
                max: self.max_message,
            });
        }
        if id == 1 {
            message.terms.extend_from_slice(data);
            return Ok(Some(message));
        }
        if self.open.len() >= self.max_open {
            return Err(FragmentError::TooManyPartial { max: self.max_open });
        }
        // Room for the whole message as the peer announces it (fragments
        // the size of this one), so it is not copied as it grows; never
        // more than the bytes partial messages may still hold.
        let announced = usize::try_from(id)
            .unwrap_or(usize::MAX)
            .saturating_mul(data.len());
        let room = self.max_held.saturating_sub(self.held);
        message
            .terms
            .reserve_exact(announced.min(self.max_message).min(room));
        message.terms.extend_from_slice(data);
        let held = data.len() + message.atoms.iter().map(Vec::len).sum::<usize>();
        self.hold(held)?;
        let partial = Partial {
            next: id - 1,
            message,
            held,
        };
        self.open.insert(seq, partial);
        Ok(None)
    }

    fn next(
        &mut self,
        seq: u64,
        id: u64,
        data: &[u8],
    ) -> Result<Option<Reassembled>, FragmentError> {
        let Some(partial) = self.open.get_mut(&seq) else {
            return Err(FragmentError::UnknownSequence { seq });
        };
        if id != partial.next {
            let expected = partial.next;
            return Err(FragmentError::OutOfOrder {
                seq,
                expected,
                found: id,
            });
        }
        if partial.message.terms.len() + data.len() > self.max_message {
            return Err(FragmentError::MessageTooLarge {
                max: self.max_message,
            });
        }
        if self.held + data.len() > self.max_held {
            return Err(FragmentError::TooMuchHeld { max: self.max_held });
        }
        self.held += data.len();
        partial.held += data.len();
        partial.message.terms.extend_from_slice(data);
        partial.next -= 1;
        if id > 1 {
            return Ok(None);
        }
        let done = self.open.remove(&seq).expect("the partial is open");
        self.held -= done.held;
        Ok(Some(done.message))
    }

    fn hold(&mut self, bytes: usize) -> Result<(), FragmentError> {
        if self.held + bytes > self.max_held {
            return Err(FragmentError::TooMuchHeld { max: self.max_held });
        }
        self.held += bytes;
        Ok(())
    }
}

//! Receiving distribution headers with atom cache references
//! (`DFLAG_DIST_HDR_ATOM_CACHE`), sans-IO; [`AtomCacheWriter`] sends them.
//!
//! Once both nodes set `DFLAG_DIST_HDR_ATOM_CACHE` in the handshake, every
//! non-tick frame in *both* directions is `131, 68, NumberOfAtomCacheRefs,
//! Flags, AtomCacheRefs` followed by the control message and the optional
//! payload, and those terms carry *no* 131 version byte (OTP's
//! `erts_prepare_dist_ext` refuses a pass-through 112 frame on such a
//! connection, and `erts_decode_dist_ext` refuses a term after a header that
//! starts with 131). Inside the terms, `ATOM_CACHE_REF` (82, index) may stand
//! wherever an atom may, node names of pids, ports and references and fun
//! modules included; the index points into the list of references in this
//! frame's header, each naming a slot of the connection's 2048-entry cache:
//! slot = `SegmentIndex` (low 3 bits of the reference's flag nibble) * 256 +
//! `InternalSegmentIndex` (the reference's first byte). A reference whose
//! nibble has the `NewCacheEntryFlag` (8) set also carries the atom's text
//! (length in 1 byte, or 2 when the `LongAtoms` bit is set) and overwrites
//! the slot; one without refers to the slot's atom from an earlier frame.
//! The text is always UTF-8 (`UTF8_ATOMS` is mandatory).
//!
//! [`AtomCache::expand_checked`] turns such a frame body into the plain form
//! the rest of the crate reads: `131, control, 131, payload`, every
//! reference replaced by the atom itself, ready for
//! [`control::decode_checked`].
//!
//! It does so in one pass: the walk that finds the references (without
//! trusting any length) checks everything [`etf::check_term`] checks as it
//! copies, structure and contents (UTF-8 of plain atoms, float values,
//! reference word counts), under the same limits applied to each term. The
//! atoms it puts in were checked when their header entry arrived. So the
//! output needs no second walk before `eetf` decodes it.
//!
//! [`etf::check_term`]: crate::dist::etf::check_term
//! [`control::decode_checked`]: crate::dist::control::decode_checked

use super::control::CheckedBody;
use super::etf::{
    Frame, Limits, Scanner, TermError, ATOM_UTF8_EXT, DIST_HEADER, MAX_ATOM_CHARS,
    SMALL_ATOM_UTF8_EXT, VERSION,
};
use budget::ExpansionBudget;
use thiserror::Error;
use walk::Expander;

/// Entries in the cache of one connection (OTP's `ERTS_ATOM_CACHE_SIZE`).
pub(crate) const CACHE_SIZE: usize = 2048;

/// Default for [`AtomCache::with_max_output`]: twice the node's default
/// `max_frame_bytes`.
pub(crate) const DEFAULT_MAX_OUTPUT: usize = 128 << 20;

use crate::dist::frame::{DIST_FRAG_CONT, DIST_FRAG_HEADER, FRAGMENT_PREFIX};

/// The most references one header can hold (its count is one byte).
const MAX_REFS: usize = 255;
const NEW_ENTRY: u8 = 8;
const SEGMENT: u8 = 7;
const LONG_ATOMS: u8 = 1;

/// Why a frame body was refused. Offsets count from the start of the body
/// (its 131 byte).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum AtomCacheError {
    #[error("frame truncated: it needs more bytes than remain after byte {offset}")]
    Truncated { offset: usize },
    #[error("frame starts with byte {found}, expected 131 and a distribution header (a pass-through 112 frame is not allowed once the atom cache is negotiated)")]
    BadVersion { found: u8 },
    #[error("distribution header tag {tag}, expected 68 ({why})")]
    UnsupportedHeader { tag: u8, why: &'static str },
    #[error("atom text at byte {offset} in the distribution header {why}")]
    BadAtomText { offset: usize, why: &'static str },
    #[error("reference at byte {offset} in the distribution header names cache slot {slot}, which holds no atom")]
    UnsetSlot { offset: usize, slot: usize },
    #[error("reference at byte {offset} in the distribution header names cache slot {slot} a second time")]
    DuplicateSlot { offset: usize, slot: usize },
    #[error("ATOM_CACHE_REF at byte {offset} has index {index}, but the header lists {listed} references")]
    UnknownRef {
        offset: usize,
        index: usize,
        listed: usize,
    },
    #[error("tag {tag} at byte {offset} is not accepted: {why}")]
    RejectedTag {
        tag: u8,
        offset: usize,
        why: &'static str,
    },
    #[error("malformed term at byte {offset}: {why}")]
    Malformed { offset: usize, why: &'static str },
    #[error("term nests deeper than {max_depth} levels at byte {offset}")]
    TooDeep { offset: usize, max_depth: usize },
    #[error("term has more than {max_terms} nodes (found at byte {offset})")]
    TooManyTerms { offset: usize, max_terms: usize },
    #[error("frame expands to more than {max} bytes (at byte {offset})")]
    TooLarge { offset: usize, max: usize },
    #[error("frame expands to more than {max} bytes (at byte {offset}): atom cache references may add at most {} times what the peer sent, plus {} MiB", budget::PER_BYTE, budget::BURST >> 20)]
    OverBudget { offset: usize, max: usize },
    #[error("{count} trailing bytes after the control message and payload (from byte {offset})")]
    TrailingBytes { offset: usize, count: usize },
}

type Result<T> = std::result::Result<T, AtomCacheError>;

/// The errors the term walk ([`Scanner`]) reports, with the same offsets.
impl From<TermError> for AtomCacheError {
    fn from(e: TermError) -> Self {
        match e {
            TermError::Truncated { offset } => AtomCacheError::Truncated { offset },
            TermError::RejectedTag { tag, offset, why } => {
                AtomCacheError::RejectedTag { tag, offset, why }
            }
            TermError::Malformed { offset, why } => AtomCacheError::Malformed { offset, why },
            TermError::TooDeep { offset, max_depth } => {
                AtomCacheError::TooDeep { offset, max_depth }
            }
            TermError::TooManyTerms { offset, max_terms } => {
                AtomCacheError::TooManyTerms { offset, max_terms }
            }
            // The walk reports none of these (no version byte, no eetf).
            _ => AtomCacheError::Malformed {
                offset: 0,
                why: "unexpected term error",
            },
        }
    }
}

/// The receive-side atom cache of one connection.
///
/// Each slot holds its atom already encoded as `SMALL_ATOM_UTF8_EXT` or
/// `ATOM_UTF8_EXT`, so a reference costs one copy; a slot's buffer is reused
/// when the peer replaces its atom.
#[derive(Clone)]
pub(crate) struct AtomCache {
    /// Encoded atoms; an empty buffer is an unset slot (an encoded atom is
    /// never empty).
    slots: Box<[Vec<u8>]>,
    /// The slots the current header has named.
    seen: FrameMarks,
    /// Open containers of the term being walked (kept for its capacity).
    stack: Vec<Frame<usize>>,
    max_output: usize,
    /// What expansion may add to the bytes received, over the connection's life.
    budget: ExpansionBudget,
}

impl Default for AtomCache {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for AtomCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.slots.iter().filter(|s| !s.is_empty()).count();
        f.debug_struct("AtomCache")
            .field("set_slots", &set)
            .field("max_output", &self.max_output)
            .finish()
    }
}

impl AtomCache {
    /// An empty cache, as at the start of a connection.
    pub(crate) fn new() -> Self {
        AtomCache {
            slots: vec![Vec::new(); CACHE_SIZE].into_boxed_slice(),
            seen: FrameMarks::new(),
            stack: Vec::new(),
            max_output: DEFAULT_MAX_OUTPUT,
            budget: ExpansionBudget::default(),
        }
    }

    /// Bounds what one frame may expand to (control and payload, version
    /// bytes included). A 2-byte reference can stand for an atom of up to
    /// 1023 bytes, so without a bound a frame could grow 500-fold.
    pub(crate) fn with_max_output(mut self, max: usize) -> Self {
        self.max_output = max;
        self
    }

    #[cfg(test)] // only the tests use it
    /// The atom in `slot`, encoded as `SMALL_ATOM_UTF8_EXT` or
    /// `ATOM_UTF8_EXT`, if the peer has set it.
    pub(crate) fn slot(&self, slot: usize) -> Option<&[u8]> {
        self.slots
            .get(slot)
            .filter(|s| !s.is_empty())
            .map(|s| &s[..])
    }

    #[cfg(test)] // only the tests use it
    /// `body` is a frame body that starts with the distribution header
    /// (131, 68, ...), i.e. everything after the 4-byte frame length.
    ///
    /// Updates the cache from the header's new entries, then appends to
    /// `out` the control message followed by the payload (if any), each as a
    /// complete external term starting with 131, with every ATOM_CACHE_REF
    /// replaced by its atom as SMALL_ATOM_UTF8_EXT (ATOM_UTF8_EXT when longer
    /// than 255 bytes). The walk checks what `etf::check_term` checks,
    /// applying `limits` to each term separately, so `control::decode` of
    /// `out[start..]` would accept it; see [`AtomCache::expand_checked`].
    ///
    /// On error `out` is left as it was; the cache may hold the header's new
    /// entries (OTP updates its cache the same way, then drops the
    /// connection, which is all a caller should do after an error).
    pub(crate) fn expand(&mut self, body: &[u8], limits: &Limits, out: &mut Vec<u8>) -> Result<()> {
        self.expand_checked(body, limits, out).map(|_| ())
    }

    /// [`AtomCache::expand`], returning what it appended as a
    /// [`CheckedBody`], ready for `control::decode_checked`.
    pub(crate) fn expand_checked<'o>(
        &mut self,
        body: &[u8],
        limits: &Limits,
        out: &'o mut Vec<u8>,
    ) -> Result<CheckedBody<'o>> {
        let start = out.len();
        match self.expand_inner(body, limits, out, start) {
            // The walk checked contents as it copied (`Expander::CONTENTS`).
            Ok(()) => Ok(CheckedBody::vouched(&out[start..])),
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    fn expand_inner(
        &mut self,
        body: &[u8],
        limits: &Limits,
        out: &mut Vec<u8>,
        start: usize,
    ) -> Result<()> {
        let mut table = [0u16; MAX_REFS];
        let (pos, listed) = self.read_header(body, &mut table)?;
        let limit = self.output_limit(start, body.len());
        let walked = walk_terms(
            body,
            pos,
            limits,
            out,
            limit,
            &table[..listed],
            &self.slots,
            &mut self.stack,
            Terms::Both,
        );
        self.spent(walked, out.len() - start)
    }

    /// Where the output of a frame of `input` bytes, appended from
    /// `start`, must stop: the configured bound or the budget, the lower.
    fn output_limit(&mut self, start: usize, input: usize) -> Output {
        let max = self.max_output.min(self.budget.earn(input));
        Output {
            limit: start.saturating_add(max),
            max,
        }
    }

    /// Spends `output` bytes of the budget; a frame stopped by the budget
    /// rather than the configured bound says so.
    fn spent(&mut self, walked: Result<()>, output: usize) -> Result<()> {
        match walked {
            Ok(()) => {
                self.budget.spend(output);
                Ok(())
            }
            Err(AtomCacheError::TooLarge { offset, max }) if max < self.max_output => {
                Err(AtomCacheError::OverBudget { offset, max })
            }
            Err(e) => Err(e),
        }
    }

    /// The header of a fragmented message's first fragment (`body` starts
    /// `131 69 SequenceId FragmentId`), read now, updating the cache: the
    /// BEAM resolves a fragmented message's references when its first
    /// fragment arrives, so frames between its fragments may reuse those
    /// slots. Fills `atoms` with the listed atoms, encoded, and returns
    /// where the terms start.
    pub(crate) fn read_fragment_header(
        &mut self,
        body: &[u8],
        atoms: &mut Vec<Vec<u8>>,
    ) -> Result<usize> {
        let mut r = Reader {
            bytes: body,
            pos: FRAGMENT_PREFIX,
        };
        if body.len() < FRAGMENT_PREFIX {
            return Err(AtomCacheError::Truncated { offset: 0 });
        }
        let mut table = [0u16; MAX_REFS];
        let listed = self.read_refs(&mut r, &mut table)?;
        atoms.clear();
        atoms.extend(
            table[..listed]
                .iter()
                .map(|&s| self.slots[usize::from(s)].clone()),
        );
        Ok(r.pos)
    }

    /// Expands a reassembled message: `terms` (control message and
    /// optional payload without version bytes) whose references name
    /// `atoms` (from [`AtomCache::read_fragment_header`]), as
    /// [`AtomCache::expand_checked`] does for one frame.
    pub(crate) fn expand_resolved<'o>(
        &mut self,
        atoms: &[Vec<u8>],
        terms: &[u8],
        limits: &Limits,
        out: &'o mut Vec<u8>,
    ) -> Result<CheckedBody<'o>> {
        self.expand_resolved_terms(atoms, terms, limits, out, Terms::Both)
    }

    /// Expands only the control message of a reassembled message (a few
    /// dozen bytes, naming the sender), leaving its payload unread: what
    /// the driver needs to keep a sender's order while the payload of a
    /// large message is decoded elsewhere.
    pub(crate) fn expand_resolved_control<'o>(
        &mut self,
        atoms: &[Vec<u8>],
        terms: &[u8],
        limits: &Limits,
        out: &'o mut Vec<u8>,
    ) -> Result<CheckedBody<'o>> {
        self.expand_resolved_terms(atoms, terms, limits, out, Terms::ControlOnly)
    }

    fn expand_resolved_terms<'o>(
        &mut self,
        atoms: &[Vec<u8>],
        terms: &[u8],
        limits: &Limits,
        out: &'o mut Vec<u8>,
        which: Terms,
    ) -> Result<CheckedBody<'o>> {
        let start = out.len();
        let mut table = [0u16; MAX_REFS];
        for (i, t) in table.iter_mut().enumerate() {
            *t = i as u16;
        }
        let limit = self.output_limit(start, terms.len());
        let listed = atoms.len().min(MAX_REFS);
        let walked = walk_terms(
            terms,
            0,
            limits,
            out,
            limit,
            &table[..listed],
            atoms,
            &mut self.stack,
            which,
        );
        match self.spent(walked, out.len() - start) {
            Ok(()) => Ok(CheckedBody::vouched(&out[start..])),
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Reads the distribution header, updating the cache; fills `table`
    /// with the slot of each listed reference. Returns where the control
    /// message starts and how many references there are.
    fn read_header(&mut self, body: &[u8], table: &mut [u16; MAX_REFS]) -> Result<(usize, usize)> {
        let mut r = Reader {
            bytes: body,
            pos: 0,
        };
        let found = r.u8()?;
        if found != VERSION {
            return Err(AtomCacheError::BadVersion { found });
        }
        match r.u8()? {
            DIST_HEADER => {}
            tag => {
                let why = match tag {
                    DIST_FRAG_HEADER | DIST_FRAG_CONT => "a fragment is reassembled first",
                    _ => "unknown header",
                };
                return Err(AtomCacheError::UnsupportedHeader { tag, why });
            }
        }
        let count = self.read_refs(&mut r, table)?;
        Ok((r.pos, count))
    }

    /// Reads `NumberOfAtomCacheRefs, Flags, AtomCacheRefs` at `r`, updating
    /// the cache; fills `table` with the slot of each listed reference and
    /// returns how many there are.
    fn read_refs(&mut self, r: &mut Reader<'_>, table: &mut [u16; MAX_REFS]) -> Result<usize> {
        let count = usize::from(r.u8()?);
        if count == 0 {
            // No flags and no references follow.
            return Ok(0);
        }
        // One nibble per reference, then one more whose low bit is LongAtoms.
        let flags = r.take(count / 2 + 1)?;
        let nibble = |i: usize| (flags[i / 2] >> ((i & 1) * 4)) & 0x0f;
        let long_atoms = nibble(count) & LONG_ATOMS != 0;

        self.seen.next_frame();
        for (i, entry) in table.iter_mut().enumerate().take(count) {
            let offset = r.pos;
            let flag = nibble(i);
            let slot = usize::from(flag & SEGMENT) << 8 | usize::from(r.u8()?);
            // The BEAM lists each slot at most once per header; refusing a
            // repeat keeps every listed reference meaning one atom.
            if self.seen.is_marked(slot) {
                return Err(AtomCacheError::DuplicateSlot { offset, slot });
            }
            self.seen.mark(slot);
            if flag & NEW_ENTRY != 0 {
                let len = if long_atoms {
                    r.u16()?
                } else {
                    usize::from(r.u8()?)
                };
                let text_at = r.pos;
                let text = r.take(len)?;
                let bad = |why| AtomCacheError::BadAtomText {
                    offset: text_at,
                    why,
                };
                let name = std::str::from_utf8(text).map_err(|_| bad("is not valid UTF-8"))?;
                if len > MAX_ATOM_CHARS && name.chars().count() > MAX_ATOM_CHARS {
                    return Err(bad("is longer than 255 characters"));
                }
                let encoded = &mut self.slots[slot];
                encoded.clear();
                if len <= 255 {
                    encoded.extend_from_slice(&[SMALL_ATOM_UTF8_EXT, len as u8]);
                } else {
                    encoded.push(ATOM_UTF8_EXT);
                    encoded.extend_from_slice(&(len as u16).to_be_bytes());
                }
                encoded.extend_from_slice(text);
            } else if self.slots[slot].is_empty() {
                return Err(AtomCacheError::UnsetSlot { offset, slot });
            }
            *entry = slot as u16;
        }
        Ok(count)
    }
}

/// Where the expanded output must stop growing.
struct Output {
    /// `out` may not grow past this length.
    limit: usize,
    /// The configured bound, for the error.
    max: usize,
}

/// Walks the control message and the optional payload in `body` from
/// `pos`, copying them to `out` with version bytes and every reference
/// (an index into `table`, which names entries of `slots`) replaced.
#[allow(clippy::too_many_arguments)] // the fields of two callers, split for the borrows
/// Which terms of a message a walk expands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Terms {
    /// The control message and the payload, and nothing after them.
    Both,
    /// The control message only.
    ControlOnly,
}

// The walk's inputs and outputs are all distinct borrows; a struct to
// carry them would only be unpacked again here.
#[allow(clippy::too_many_arguments)]
fn walk_terms(
    body: &[u8],
    pos: usize,
    limits: &Limits,
    out: &mut Vec<u8>,
    limit: Output,
    table: &[u16],
    slots: &[Vec<u8>],
    stack: &mut Vec<Frame<usize>>,
    which: Terms,
) -> Result<()> {
    if which == Terms::Both {
        out.reserve(body.len().saturating_sub(pos) + 2);
    }
    let sink = Expander {
        input: body,
        copied: pos,
        out,
        out_limit: limit.limit,
        max_output: limit.max,
        table,
        slots,
    };
    let mut w = Scanner::new(body, pos, limits, sink);
    // The control message, then the payload if any bytes are left.
    for _ in 0..2 {
        w.sink.out.push(VERSION);
        w.walk(stack)?;
        w.sink.flush(w.pos);
        if w.pos == body.len() || which == Terms::ControlOnly {
            return w.sink.check_size(w.pos);
        }
    }
    Err(AtomCacheError::TrailingBytes {
        offset: w.pos,
        count: body.len() - w.pos,
    })
}

/// The cache slots one frame's header lists, on both sides: a stamp per
/// slot, so starting a frame bumps a counter instead of clearing 2048 marks.
#[derive(Clone)]
struct FrameMarks {
    /// `stamp[slot] == generation`: the current frame lists `slot`.
    stamp: Box<[u32]>,
    generation: u32,
}

impl FrameMarks {
    fn new() -> Self {
        FrameMarks {
            stamp: vec![0; CACHE_SIZE].into_boxed_slice(),
            generation: 0,
        }
    }

    /// Forgets the marks of the previous frame.
    fn next_frame(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamp.fill(0);
            self.generation = 1;
        }
    }

    fn is_marked(&self, slot: usize) -> bool {
        self.stamp[slot] == self.generation
    }

    fn mark(&mut self, slot: usize) {
        self.stamp[slot] = self.generation;
    }
}

/// A bounds-checked cursor over the header.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let rest = &self.bytes[self.pos..];
        if rest.len() < n {
            return Err(AtomCacheError::Truncated { offset: self.pos });
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
}

mod budget;
mod walk;
mod writer;

pub(crate) use writer::AtomCacheWriter;

#[cfg(test)]
mod tests;

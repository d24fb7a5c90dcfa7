//! Receiving distribution headers with atom cache references
//! (`DFLAG_DIST_HDR_ATOM_CACHE`), sans-IO.
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
//! [`AtomCache::expand`] turns such a frame body into the plain form the rest
//! of the crate reads: `131, control, 131, payload`, every reference replaced
//! by the atom itself, ready for [`crate::dist::control::decode`].
//!
//! It checks the structure of the terms only (lengths, counts, nesting,
//! term count), the way [`etf::check_term`] does, so it can find every
//! reference without trusting any length. It does not validate contents
//! (UTF-8 of plain atoms, float values, reference word counts): the output
//! must still go through `control::decode`, which does.
//!
//! [`etf::check_term`]: crate::dist::etf::check_term

use super::etf::Limits;
use thiserror::Error;

/// Entries in the cache of one connection (OTP's `ERTS_ATOM_CACHE_SIZE`).
pub const CACHE_SIZE: usize = 2048;

/// Default for [`AtomCache::with_max_output`]: twice the node's default
/// `max_frame_bytes`.
pub const DEFAULT_MAX_OUTPUT: usize = 128 << 20;

const VERSION: u8 = 131;
const DIST_HEADER: u8 = 68;
const DIST_FRAG_HEADER: u8 = 69;
const DIST_FRAG_CONT: u8 = 70;
const NEW_FLOAT_EXT: u8 = 70;
const BIT_BINARY_EXT: u8 = 77;
const ATOM_CACHE_REF: u8 = 82;
const NEW_PID_EXT: u8 = 88;
const NEW_PORT_EXT: u8 = 89;
const NEWER_REFERENCE_EXT: u8 = 90;
const SMALL_INTEGER_EXT: u8 = 97;
const INTEGER_EXT: u8 = 98;
const ATOM_EXT: u8 = 100;
const REFERENCE_EXT: u8 = 101;
const PORT_EXT: u8 = 102;
const PID_EXT: u8 = 103;
const SMALL_TUPLE_EXT: u8 = 104;
const LARGE_TUPLE_EXT: u8 = 105;
const NIL_EXT: u8 = 106;
const STRING_EXT: u8 = 107;
const LIST_EXT: u8 = 108;
const BINARY_EXT: u8 = 109;
const SMALL_BIG_EXT: u8 = 110;
const LARGE_BIG_EXT: u8 = 111;
const NEW_FUN_EXT: u8 = 112;
const EXPORT_EXT: u8 = 113;
const NEW_REFERENCE_EXT: u8 = 114;
const SMALL_ATOM_EXT: u8 = 115;
const MAP_EXT: u8 = 116;
const ATOM_UTF8_EXT: u8 = 118;
const SMALL_ATOM_UTF8_EXT: u8 = 119;
const V4_PORT_EXT: u8 = 120;

/// The most references one header can hold (its count is one byte).
const MAX_REFS: usize = 255;
/// The BEAM refuses atoms longer than this many characters.
const MAX_ATOM_CHARS: usize = 255;
const NEW_ENTRY: u8 = 8;
const SEGMENT: u8 = 7;
const LONG_ATOMS: u8 = 1;

/// Why a frame body was refused. Offsets count from the start of the body
/// (its 131 byte).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AtomCacheError {
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
    #[error("{count} trailing bytes after the control message and payload (from byte {offset})")]
    TrailingBytes { offset: usize, count: usize },
}

type Result<T> = std::result::Result<T, AtomCacheError>;

/// The receive-side atom cache of one connection.
///
/// Each slot holds its atom already encoded as `SMALL_ATOM_UTF8_EXT` or
/// `ATOM_UTF8_EXT`, so a reference costs one copy; a slot's buffer is reused
/// when the peer replaces its atom.
pub struct AtomCache {
    /// Encoded atoms; an empty buffer is an unset slot (an encoded atom is
    /// never empty).
    slots: Box<[Vec<u8>]>,
    /// `seen[slot] == generation` if the current header already named it.
    seen: Box<[u32]>,
    generation: u32,
    /// Open containers of the term being walked (kept for its capacity).
    stack: Vec<Open>,
    max_output: usize,
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
    pub fn new() -> Self {
        AtomCache {
            slots: vec![Vec::new(); CACHE_SIZE].into_boxed_slice(),
            seen: vec![0; CACHE_SIZE].into_boxed_slice(),
            generation: 0,
            stack: Vec::new(),
            max_output: DEFAULT_MAX_OUTPUT,
        }
    }

    /// Bounds what one frame may expand to (control and payload, version
    /// bytes included). A 2-byte reference can stand for an atom of up to
    /// 1023 bytes, so without a bound a frame could grow 500-fold.
    pub fn with_max_output(mut self, max: usize) -> Self {
        self.max_output = max;
        self
    }

    /// The atom in `slot`, encoded as `SMALL_ATOM_UTF8_EXT` or
    /// `ATOM_UTF8_EXT`, if the peer has set it.
    pub fn slot(&self, slot: usize) -> Option<&[u8]> {
        self.slots
            .get(slot)
            .filter(|s| !s.is_empty())
            .map(|s| &s[..])
    }

    /// `body` is a frame body that starts with the distribution header
    /// (131, 68, ...), i.e. everything after the 4-byte frame length.
    ///
    /// Updates the cache from the header's new entries, then appends to
    /// `out` the control message followed by the payload (if any), each as a
    /// complete external term starting with 131, with every ATOM_CACHE_REF
    /// replaced by its atom as SMALL_ATOM_UTF8_EXT (ATOM_UTF8_EXT when longer
    /// than 255 bytes), so that `control::decode(&out[start..], limits)` can
    /// decode it. The walk applies `limits` as `etf::check_term` does, to
    /// each term separately.
    ///
    /// On error `out` is left as it was; the cache may hold the header's new
    /// entries (OTP updates its cache the same way, then drops the
    /// connection, which is all a caller should do after an error).
    pub fn expand(&mut self, body: &[u8], limits: &Limits, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        let result = self.expand_inner(body, limits, out, start);
        if result.is_err() {
            out.truncate(start);
        }
        result
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
        out.reserve(body.len() - pos + 2);
        let mut w = Walker {
            input: body,
            pos,
            copied: pos,
            out,
            out_limit: start.saturating_add(self.max_output),
            max_output: self.max_output,
            table: &table[..listed],
            slots: &self.slots,
            limits,
            terms: 0,
            pending: 0,
        };
        let stack = &mut self.stack;
        // The control message, then the payload if any bytes are left.
        for _ in 0..2 {
            w.out.push(VERSION);
            w.walk(stack)?;
            w.flush();
            if w.pos == body.len() {
                return w.check_size();
            }
        }
        Err(AtomCacheError::TrailingBytes {
            offset: w.pos,
            count: body.len() - w.pos,
        })
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
                    DIST_FRAG_HEADER | DIST_FRAG_CONT => "fragments are not negotiated",
                    _ => "unknown header",
                };
                return Err(AtomCacheError::UnsupportedHeader { tag, why });
            }
        }
        let count = usize::from(r.u8()?);
        if count == 0 {
            // No flags and no references follow.
            return Ok((r.pos, 0));
        }
        // One nibble per reference, then one more whose low bit is LongAtoms.
        let flags = r.take(count / 2 + 1)?;
        let nibble = |i: usize| (flags[i / 2] >> ((i & 1) * 4)) & 0x0f;
        let long_atoms = nibble(count) & LONG_ATOMS != 0;

        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.seen.fill(0);
            self.generation = 1;
        }
        for (i, entry) in table.iter_mut().enumerate().take(count) {
            let offset = r.pos;
            let flag = nibble(i);
            let slot = usize::from(flag & SEGMENT) << 8 | usize::from(r.u8()?);
            // The BEAM lists each slot at most once per header; refusing a
            // repeat keeps every listed reference meaning one atom.
            if self.seen[slot] == self.generation {
                return Err(AtomCacheError::DuplicateSlot { offset, slot });
            }
            self.seen[slot] = self.generation;
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
        Ok((r.pos, count))
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

/// An open container: how many child terms it still expects, and for
/// NEW_FUN_EXT where its size field is.
#[derive(Clone, Copy)]
struct Open {
    left: usize,
    fun: Option<FunSize>,
}

/// A NEW_FUN_EXT's size counts its own bytes, so it changes when references
/// inside the fun expand; it is rewritten when the fun ends.
#[derive(Clone, Copy)]
struct FunSize {
    /// Input offset of the size field; the fun must end at `at + size`.
    at: usize,
    size: usize,
    /// Output offset of the size field.
    out_at: usize,
}

/// Copies terms from `input` to `out`, replacing references. Bytes from
/// `copied` to `pos` are still to be copied; they are copied in one go at
/// the next reference or at the end, so plain stretches cost one memcpy.
struct Walker<'a> {
    input: &'a [u8],
    pos: usize,
    copied: usize,
    out: &'a mut Vec<u8>,
    /// `out` may not grow past this length.
    out_limit: usize,
    max_output: usize,
    table: &'a [u16],
    slots: &'a [Vec<u8>],
    limits: &'a Limits,
    terms: usize,
    /// Children announced by open containers and not yet started; each
    /// needs a byte of input, as in `etf::check_term`.
    pending: usize,
}

impl<'a> Walker<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let rest = &self.input[self.pos..];
        if rest.len() < n {
            return Err(AtomCacheError::Truncated { offset: self.pos });
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    fn skip(&mut self, n: usize) -> Result<()> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Result<usize> {
        let b = self.take(4)?;
        usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .map_err(|_| AtomCacheError::Truncated { offset: self.pos })
    }

    fn malformed(&self, why: &'static str) -> AtomCacheError {
        AtomCacheError::Malformed {
            offset: self.pos,
            why,
        }
    }

    /// Copies the bytes walked since the last copy.
    fn flush(&mut self) {
        self.out
            .extend_from_slice(&self.input[self.copied..self.pos]);
        self.copied = self.pos;
    }

    fn check_size(&self) -> Result<()> {
        if self.out.len() > self.out_limit {
            let (offset, max) = (self.pos, self.max_output);
            return Err(AtomCacheError::TooLarge { offset, max });
        }
        Ok(())
    }

    /// Reads a tag and counts it as one node of the term tree.
    fn tag(&mut self) -> Result<u8> {
        let offset = self.pos;
        let tag = self.u8()?;
        self.terms += 1;
        if self.terms > self.limits.max_terms {
            let max_terms = self.limits.max_terms;
            return Err(AtomCacheError::TooManyTerms { offset, max_terms });
        }
        Ok(tag)
    }

    /// Something `levels` containers deep (counting itself) starts here.
    fn depth(&self, levels: usize) -> Result<()> {
        if levels > self.limits.max_depth {
            let (offset, max_depth) = (self.pos, self.limits.max_depth);
            return Err(AtomCacheError::TooDeep { offset, max_depth });
        }
        Ok(())
    }

    fn open(&mut self, stack: &mut Vec<Open>, n: usize, fun: Option<FunSize>) -> Result<()> {
        self.depth(stack.len() + 1)?;
        let need = self.pending.saturating_add(n);
        if need > self.input.len() - self.pos {
            return Err(AtomCacheError::Truncated { offset: self.pos });
        }
        if need.saturating_add(self.terms) > self.limits.max_terms {
            let (offset, max_terms) = (self.pos, self.limits.max_terms);
            return Err(AtomCacheError::TooManyTerms { offset, max_terms });
        }
        self.pending += n;
        stack.push(Open { left: n, fun });
        Ok(())
    }

    /// Replaces the ATOM_CACHE_REF whose tag is at `offset` (its index byte
    /// not yet read) by the atom.
    fn cache_ref(&mut self, offset: usize) -> Result<()> {
        let index = usize::from(self.u8()?);
        let Some(&slot) = self.table.get(index) else {
            let listed = self.table.len();
            return Err(AtomCacheError::UnknownRef {
                offset,
                index,
                listed,
            });
        };
        self.out.extend_from_slice(&self.input[self.copied..offset]);
        self.out.extend_from_slice(&self.slots[usize::from(slot)]);
        self.copied = self.pos;
        self.check_size()
    }

    /// The rest of an atom whose tag was read.
    fn atom_body(&mut self, tag: u8, offset: usize) -> Result<()> {
        match tag {
            ATOM_CACHE_REF => self.cache_ref(offset),
            ATOM_EXT | ATOM_UTF8_EXT => {
                let n = self.u16()?;
                self.skip(n)
            }
            _ => {
                let n = self.u8()?.into();
                self.skip(n)
            }
        }
    }

    /// A node or module name: must be an atom, at nesting level `levels`.
    fn atom(&mut self, levels: usize) -> Result<()> {
        self.depth(levels)?;
        let offset = self.pos;
        match self.tag()? {
            tag @ (ATOM_CACHE_REF | ATOM_EXT | SMALL_ATOM_EXT | ATOM_UTF8_EXT
            | SMALL_ATOM_UTF8_EXT) => self.atom_body(tag, offset),
            _ => Err(self.malformed("node, module and function names must be atoms")),
        }
    }

    /// An integer field that must be SMALL_INTEGER_EXT or INTEGER_EXT.
    fn int(&mut self) -> Result<()> {
        match self.tag()? {
            SMALL_INTEGER_EXT => self.skip(1),
            INTEGER_EXT => self.skip(4),
            _ => Err(self.malformed("expected SMALL_INTEGER_EXT or INTEGER_EXT")),
        }
    }

    fn pid_body(&mut self, tag: u8, levels: usize) -> Result<()> {
        self.atom(levels)?;
        self.skip(if tag == PID_EXT { 9 } else { 12 })
    }

    /// One complete term (without version byte) at `pos`, copied to `out`.
    fn walk(&mut self, stack: &mut Vec<Open>) -> Result<()> {
        stack.clear();
        self.terms = 0;
        self.pending = 0;
        loop {
            self.term(stack)?;
            // Close finished containers until one still expects a child.
            loop {
                let Some(top) = stack.last_mut() else {
                    return Ok(());
                };
                if top.left > 0 {
                    top.left -= 1;
                    self.pending -= 1;
                    break;
                }
                if let Some(fun) = top.fun {
                    self.close_fun(fun)?;
                }
                stack.pop();
            }
        }
    }

    /// The fun's children are done: check its size against the input and
    /// rewrite it for the output.
    fn close_fun(&mut self, fun: FunSize) -> Result<()> {
        if fun.at + fun.size != self.pos {
            return Err(self.malformed("NEW_FUN_EXT size does not match its contents"));
        }
        self.flush();
        let size = u32::try_from(self.out.len() - fun.out_at).map_err(|_| {
            let (offset, max) = (self.pos, self.max_output);
            AtomCacheError::TooLarge { offset, max }
        })?;
        self.out[fun.out_at..fun.out_at + 4].copy_from_slice(&size.to_be_bytes());
        Ok(())
    }

    /// Walks one term; a container pushes a frame for its children.
    fn term(&mut self, stack: &mut Vec<Open>) -> Result<()> {
        let offset = self.pos;
        let inner = stack.len() + 1;
        let tag = self.tag()?;
        let reject = |why| Err(AtomCacheError::RejectedTag { tag, offset, why });
        match tag {
            SMALL_INTEGER_EXT => self.skip(1)?,
            INTEGER_EXT => self.skip(4)?,
            NEW_FLOAT_EXT => self.skip(8)?,
            ATOM_CACHE_REF | ATOM_EXT | SMALL_ATOM_EXT | ATOM_UTF8_EXT | SMALL_ATOM_UTF8_EXT => {
                self.atom_body(tag, offset)?
            }
            NIL_EXT => {}
            STRING_EXT => {
                let n = self.u16()?;
                self.skip(n)?;
            }
            BINARY_EXT => {
                let n = self.u32()?;
                self.skip(n)?;
            }
            BIT_BINARY_EXT => {
                let n = self.u32()?;
                self.skip(n.saturating_add(1))?;
            }
            SMALL_BIG_EXT => {
                let n = usize::from(self.u8()?);
                self.skip(n + 1)?;
            }
            LARGE_BIG_EXT => {
                let n = self.u32()?;
                self.skip(n.saturating_add(1))?;
            }
            PID_EXT | NEW_PID_EXT => self.pid_body(tag, inner)?,
            PORT_EXT | NEW_PORT_EXT | V4_PORT_EXT | REFERENCE_EXT => {
                self.atom(inner)?;
                self.skip(match tag {
                    PORT_EXT | REFERENCE_EXT => 5,
                    NEW_PORT_EXT => 8,
                    _ => 12,
                })?;
            }
            NEW_REFERENCE_EXT | NEWER_REFERENCE_EXT => {
                let words = self.u16()?;
                self.atom(inner)?;
                let creation = if tag == NEW_REFERENCE_EXT { 1 } else { 4 };
                self.skip(creation + 4 * words)?;
            }
            EXPORT_EXT => {
                self.atom(inner)?;
                self.atom(inner)?;
                self.int()?;
            }
            SMALL_TUPLE_EXT => {
                let n = usize::from(self.u8()?);
                self.open(stack, n, None)?;
            }
            LARGE_TUPLE_EXT => {
                let n = self.u32()?;
                self.open(stack, n, None)?;
            }
            LIST_EXT => {
                // The elements, then the tail (NIL_EXT for a proper list).
                let n = self.u32()?;
                self.open(stack, n.saturating_add(1), None)?;
            }
            MAP_EXT => {
                let n = self.u32()?;
                self.open(stack, n.saturating_mul(2), None)?;
            }
            NEW_FUN_EXT => {
                // Size counts itself and everything after it.
                let at = self.pos;
                let size = self.u32()?;
                if size > self.input.len() - at {
                    return Err(AtomCacheError::Truncated { offset: at });
                }
                // Nothing after `copied` has been copied, so this is where
                // the size field lands in the output.
                let out_at = self.out.len() + (at - self.copied);
                self.depth(inner + 1)?; // the node atom of its creator pid
                self.skip(1 + 16 + 4)?;
                let free = self.u32()?;
                self.atom(inner)?;
                self.int()?;
                self.int()?;
                match self.tag()? {
                    t @ (PID_EXT | NEW_PID_EXT) => self.pid_body(t, inner + 1)?,
                    _ => return Err(self.malformed("fun creator must be a pid")),
                }
                self.open(stack, free, Some(FunSize { at, size, out_at }))?;
            }
            VERSION => return reject("version byte inside a distribution frame's term"),
            DIST_HEADER => return reject("distribution header inside a term"),
            _ => return reject("unknown or unsupported tag"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

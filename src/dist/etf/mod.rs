//! Safe use of the Erlang external term format on top of `eetf` 0.11.
//!
//! Every byte from the network is untrusted, and `eetf` is not hardened:
//! its decoder passes counts straight to `Vec::with_capacity` and `vec![0; n]`
//! (a huge count aborts the process), recurses once per nesting level (and so
//! do `Drop`, `Clone`, `Eq` and `Debug` of `Term`), hits `unimplemented!()` on
//! tags 68 and 82, reads FLOAT_EXT as `f32`, inflates COMPRESSED terms without
//! bound, shifts by 8 on BIT_BINARY_EXT with 0 tail bits, and decodes Latin-1
//! atoms as UTF-8. So [`check_term`] walks the bytes first, without recursion
//! and without trusting any length, and [`decode_term`] hands eetf only what
//! passed. Its encoder has bugs too (negative integers sent as STRING_EXT
//! bytes, STRING_EXT lengths truncated to u16, the same bit shift), which
//! [`encode_term`] works around.

use crate::term::canon::Canon;
use eetf::{Atom, Binary, ByteList, ImproperList, InternalFun, List, Map, Pid, Port, Term};
use std::collections::{HashMap, HashSet};

/// Bounds applied to untrusted external-format terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of containers accepted (tuples, lists, maps, funs,
    /// and the node atoms inside pids/ports/refs count as a level).
    pub max_depth: usize,
    /// Most terms (nodes of the term tree) one encoded term may contain.
    pub max_terms: usize,
}

/// Measured on a 2 MiB thread stack in a debug build (eetf 0.11, rustc 1.95),
/// the deepest nesting that did not overflow was: decode 2089 for tuples,
/// 1210 for lists (and for list tails), 1240 for maps, 668 for NEW_FUN_EXT
/// free variables; drop >= 3515; encode 639 for funs, >= 2167 otherwise;
/// clone >= 1024; `==` >= 1161; `{:?}` >= 1357. 128 leaves 5x margin on the
/// worst case (nested funs) and 9x on everything else, and is far deeper than
/// real traffic. Release builds use much smaller frames.
const DEFAULT_MAX_DEPTH: usize = 128;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: DEFAULT_MAX_DEPTH,
            // Kept at 4 M, but it is the real memory bound: a node costs eetf
            // 56 bytes (size_of::<Term>()) and more inside maps. Measured peak
            // RSS at this cap (release): 225 MB for a 4 MB list of 4 M NILs,
            // 710 MB for a 12 MB map of 2 M integer keys. Each node needs an
            // input byte, so the frame-size limit governs smaller frames.
            max_terms: 4_000_000,
        }
    }
}

/// Why a term was refused; offsets count from the version byte.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TermError {
    #[error("term truncated: it needs more bytes than remain after byte {offset}")]
    Truncated { offset: usize },
    #[error("external format version byte is {found}, expected 131")]
    BadVersion { found: u8 },
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
    #[error("term contains a map with duplicate keys")]
    DuplicateMapKeys,
    #[error("eetf failed to decode the term: {0}")]
    Decode(#[from] eetf::DecodeError),
    #[error("eetf failed to encode the term: {0}")]
    Encode(#[from] eetf::EncodeError),
    #[error("term cannot be sent to an Erlang node: {0}")]
    Unencodable(String),
    /// Refused by the encoder for its depth alone (a variant of its own, so
    /// a reply can say `{too_deep, N}` without reading the text).
    #[error("term cannot be sent to an Erlang node: term nests deeper than {max_depth} levels")]
    UnencodableDepth { max_depth: usize },
}

pub(crate) const VERSION: u8 = 131;
pub(crate) const DIST_HEADER: u8 = 68;
const NEW_FLOAT_EXT: u8 = 70;
const BIT_BINARY_EXT: u8 = 77;
const COMPRESSED: u8 = 80;
pub(crate) const ATOM_CACHE_REF: u8 = 82;
const NEW_PID_EXT: u8 = 88;
const NEW_PORT_EXT: u8 = 89;
const NEWER_REFERENCE_EXT: u8 = 90;
const SMALL_INTEGER_EXT: u8 = 97;
const INTEGER_EXT: u8 = 98;
const FLOAT_EXT: u8 = 99;
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
const FUN_EXT: u8 = 117;
pub(crate) const ATOM_UTF8_EXT: u8 = 118;
pub(crate) const SMALL_ATOM_UTF8_EXT: u8 = 119;
const V4_PORT_EXT: u8 = 120;

/// The BEAM refuses atoms longer than this many characters.
pub(crate) const MAX_ATOM_CHARS: usize = 255;
/// The BEAM accepts references of 1 to 5 id words (ERTS_MAX_REF_NUMBERS).
const MAX_REF_WORDS: usize = 5;

/// Checks that `bytes` starts with one complete, well-formed term in external
/// format, beginning with the version byte 131, that eetf can decode safely
/// within `limits`. Returns the number of bytes the term occupies (version
/// byte included); bytes after it are left to the caller. Never panics,
/// never allocates more than O(max_depth), never recurses.
pub(crate) fn check_term(bytes: &[u8], limits: &Limits) -> Result<usize, TermError> {
    scan(bytes, limits).map(|(len, _)| len)
}

/// [`check_term`], then decode exactly those bytes with eetf. Returns the
/// term and the bytes consumed. Also refuses maps with duplicate keys.
pub(crate) fn decode_term(bytes: &[u8], limits: &Limits) -> Result<(Term, usize), TermError> {
    let (len, map_pairs) = scan(bytes, limits)?;
    let mut input = &bytes[..len];
    let term = Term::decode(&mut input)?;
    if !input.is_empty() {
        let why = "eetf stopped before the end of the checked term";
        return Err(TermError::Malformed {
            offset: len - input.len(),
            why,
        });
    }
    // eetf's HashMap silently keeps the last of duplicate keys; the BEAM
    // refuses such maps, so we do too: fewer entries than pairs sent. Keys
    // eetf tells apart can still be equal in Erlang (`[3]` as a LIST_EXT and
    // as a STRING_EXT; found by fuzzing): `map_entries` counts keys by their
    // canonical forms, on every decode path.
    if map_pairs > 0 && map_entries(&term) != map_pairs {
        return Err(TermError::DuplicateMapKeys);
    }
    Ok((term, len))
}

/// How many key-value pairs the maps of `bytes` declare: the terms there
/// one after another, each with its version byte, as a check accepted them
/// (rescanned without limits: they were applied the first time).
pub(crate) fn declared_map_pairs(bytes: &[u8]) -> Result<usize, TermError> {
    const ANY: Limits = Limits {
        max_depth: usize::MAX,
        max_terms: usize::MAX,
    };
    let (mut rest, mut pairs) = (bytes, 0);
    while !rest.is_empty() {
        let (len, found) = scan(rest, &ANY)?;
        pairs += found;
        rest = &rest[len..];
    }
    Ok(pairs)
}

/// How many distinct keys (by Erlang's `=:=`) the maps inside `term` hold,
/// without recursion. Fewer than the pairs declared on the wire means
/// duplicate keys, which eetf's `HashMap` merges (or keeps apart when only
/// Erlang finds them equal) and the BEAM refuses.
pub(crate) fn map_entries(term: &Term) -> usize {
    let mut entries = 0;
    let mut keys = HashSet::new();
    let _ = walk(term, |t, _| {
        if let Term::Map(m) = t {
            keys.clear();
            // Keys equal in Erlang count once. A key without a canonical
            // form (checked terms have one) counts as distinct.
            entries += m
                .map
                .keys()
                .filter(|k| Canon::of(k).map_or(true, |c| keys.insert(c)))
                .count();
        }
        Ok(())
    });
    entries
}

/// Appends the external format (version byte 131 first) of `term` to `out`,
/// working around eetf's encoder bugs. The term is walked once (without
/// recursion) and cloned only if some node needs rewriting. Returns an
/// error, leaving `out` as it was, for terms the BEAM cannot accept or eetf
/// cannot encode correctly, including terms deeper than the default
/// `max_depth` (eetf's encoder recurses, and we could not decode them).
pub(crate) fn encode_term(term: &Term, out: &mut Vec<u8>) -> Result<(), TermError> {
    encode(term, out, true)
}

/// [`encode_term`] without the version byte, as terms follow a distribution
/// header (the header's own 131 stands for all of them).
pub(crate) fn encode_term_body(term: &Term, out: &mut Vec<u8>) -> Result<(), TermError> {
    encode(term, out, false)
}

fn encode(term: &Term, out: &mut Vec<u8>, version: bool) -> Result<(), TermError> {
    let mut rewrite = false;
    walk(term, |t, level| {
        rewrite |= validate_for_encode(t, level)?;
        Ok(())
    })?;
    let start = out.len();
    let mut sink = VersionSink {
        out: &mut *out,
        skip_version: !version,
    };
    let result = if rewrite {
        let mut fixed = term.clone();
        fix_up(&mut fixed)?;
        fixed.encode(&mut sink)
    } else {
        term.encode(&mut sink)
    };
    result.map_err(|e| {
        out.truncate(start);
        e.into()
    })
}

/// Passes eetf's output on, dropping the version byte it always writes first
/// when `skip_version` is set.
struct VersionSink<'a> {
    out: &'a mut Vec<u8>,
    skip_version: bool,
}

impl std::io::Write for VersionSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut bytes = buf;
        if self.skip_version && !bytes.is_empty() {
            self.skip_version = false;
            bytes = &bytes[1..];
        }
        self.out.extend_from_slice(bytes);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a [`Scanner`] does besides checking the structure of a term.
/// [`check_term`] uses [`Check`]; the atom cache uses a sink that copies the
/// term and expands ATOM_CACHE_REF (`crate::dist::atom_cache`).
pub(crate) trait ScanSink {
    /// Errors of the sink; the scanner's own come as [`TermError`].
    type Error: From<TermError>;
    /// Kept in the frame of an open NEW_FUN_EXT until its children are done.
    type FunMark: Copy;
    /// Also check contents eetf relies on (atom text, float values, tail
    /// bits, sign bytes, reference words, export arity), not only structure.
    const CONTENTS: bool;
    /// ATOM_CACHE_REF may stand wherever an atom may; otherwise it is
    /// rejected.
    const CACHE_REFS: bool;

    /// Why a tag the scanner does not accept is rejected.
    fn rejection(tag: u8) -> &'static str {
        match tag {
            DIST_HEADER => "distribution header inside a term (eetf: unimplemented!)",
            ATOM_CACHE_REF => "atom cache reference (eetf: unimplemented!)",
            COMPRESSED => "compressed term (unbounded inflation; dist never sends it)",
            FLOAT_EXT => "FLOAT_EXT (eetf parses it as f32)",
            FUN_EXT => "FUN_EXT (removed in OTP 23)",
            _ => "unknown tag",
        }
    }

    /// An ATOM_CACHE_REF (only with `CACHE_REFS`): its tag is at
    /// `tag_offset`, its index byte right after it.
    fn cache_ref(&mut self, tag_offset: usize, index: u8) -> Result<(), Self::Error>;

    /// A plain atom (not a cache reference): its tag is at `tag_offset`,
    /// its text (Latin-1 for ATOM_EXT and SMALL_ATOM_EXT, else UTF-8) spans
    /// `text`. The outgoing atom cache collects these.
    #[inline]
    fn atom(&mut self, _tag_offset: usize, _text: std::ops::Range<usize>) {}

    /// A NEW_FUN_EXT whose size field is at `size_offset` starts.
    fn fun_start(&mut self, size_offset: usize) -> Self::FunMark;

    /// That fun's children are done, and it ends at `end` as its size says.
    fn fun_end(&mut self, mark: Self::FunMark, end: usize) -> Result<(), Self::Error>;
}

/// The sink of [`check_term`]: checks contents, refuses cache references.
struct Check;

impl ScanSink for Check {
    type Error = TermError;
    type FunMark = ();
    const CONTENTS: bool = true;
    const CACHE_REFS: bool = false;

    fn cache_ref(&mut self, offset: usize, _: u8) -> Result<(), TermError> {
        // Not reached: without CACHE_REFS the tag is rejected before.
        let (tag, why) = (ATOM_CACHE_REF, Self::rejection(ATOM_CACHE_REF));
        Err(TermError::RejectedTag { tag, offset, why })
    }

    fn fun_start(&mut self, _: usize) {}

    fn fun_end(&mut self, (): (), _: usize) -> Result<(), TermError> {
        Ok(())
    }
}

/// An open container: how many child terms it still expects and, for
/// NEW_FUN_EXT, the offset where its declared size says it ends.
#[derive(Clone)]
pub(crate) struct Frame<M> {
    left: usize,
    fun: Option<(usize, M)>,
}

/// Walks terms without recursion and without trusting any length, applying
/// [`Limits`]; what else happens is up to its [`ScanSink`].
pub(crate) struct Scanner<'a, S> {
    bytes: &'a [u8],
    pub(crate) pos: usize,
    limits: &'a Limits,
    terms: usize,
    /// Children announced by open containers and not yet started. Each needs
    /// at least one byte, so this never exceeds the bytes left; that bounds
    /// the sum of eetf's `with_capacity` calls by the input length.
    pending: usize,
    map_pairs: usize,
    pub(crate) sink: S,
}

/// Returns the term's length and how many key-value pairs its maps declare.
fn scan(bytes: &[u8], limits: &Limits) -> Result<(usize, usize), TermError> {
    let mut c = Scanner::new(bytes, 0, limits, Check);
    let found = c.u8()?;
    if found != VERSION {
        return Err(TermError::BadVersion { found });
    }
    c.walk(&mut Vec::new())?;
    Ok((c.pos, c.map_pairs))
}

impl<'a, S: ScanSink> Scanner<'a, S> {
    /// A scanner of `bytes` whose first term starts at `pos`.
    pub(crate) fn new(bytes: &'a [u8], pos: usize, limits: &'a Limits, sink: S) -> Self {
        Scanner {
            bytes,
            pos,
            limits,
            terms: 0,
            pending: 0,
            map_pairs: 0,
            sink,
        }
    }

    /// One complete term (without version byte) from `pos`, with its own
    /// count of terms. `stack` is only kept for its capacity.
    pub(crate) fn walk(&mut self, stack: &mut Vec<Frame<S::FunMark>>) -> Result<(), S::Error> {
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
                if let Some((end, mark)) = top.fun {
                    if end != self.pos {
                        return Err(self.malformed("NEW_FUN_EXT size does not match its contents"));
                    }
                    self.sink.fun_end(mark, end)?;
                }
                stack.pop();
            }
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], S::Error> {
        let rest = &self.bytes[self.pos..];
        if rest.len() < n {
            return Err(TermError::Truncated { offset: self.pos }.into());
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    fn skip(&mut self, n: usize) -> Result<(), S::Error> {
        self.take(n).map(|_| ())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], S::Error> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, S::Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, S::Error> {
        Ok(u16::from_be_bytes(self.array()?).into())
    }

    fn u32(&mut self) -> Result<usize, S::Error> {
        usize::try_from(u32::from_be_bytes(self.array()?))
            .map_err(|_| TermError::Truncated { offset: self.pos }.into())
    }

    fn malformed(&self, why: &'static str) -> S::Error {
        TermError::Malformed {
            offset: self.pos,
            why,
        }
        .into()
    }

    /// Reads a tag and counts it as one node of the term tree.
    fn tag(&mut self) -> Result<u8, S::Error> {
        let offset = self.pos;
        let tag = self.u8()?;
        self.terms += 1;
        if self.terms > self.limits.max_terms {
            let max_terms = self.limits.max_terms;
            return Err(TermError::TooManyTerms { offset, max_terms }.into());
        }
        Ok(tag)
    }

    /// Something `levels` containers deep (counting itself) starts here.
    fn depth(&self, levels: usize) -> Result<(), S::Error> {
        if levels > self.limits.max_depth {
            let (offset, max_depth) = (self.pos, self.limits.max_depth);
            return Err(TermError::TooDeep { offset, max_depth }.into());
        }
        Ok(())
    }

    #[inline]
    fn open(
        &mut self,
        stack: &mut Vec<Frame<S::FunMark>>,
        n: usize,
        fun: Option<(usize, S::FunMark)>,
    ) -> Result<(), S::Error> {
        self.depth(stack.len() + 1)?;
        // Saturating: a long binary may have left `pending` above the bytes
        // left (the input is then bad), and pid nodes count as terms too.
        let need = self.pending.saturating_add(n);
        if need > self.bytes.len() - self.pos {
            return Err(TermError::Truncated { offset: self.pos }.into());
        }
        if need.saturating_add(self.terms) > self.limits.max_terms {
            let (offset, max_terms) = (self.pos, self.limits.max_terms);
            return Err(TermError::TooManyTerms { offset, max_terms }.into());
        }
        self.pending += n;
        stack.push(Frame { left: n, fun });
        Ok(())
    }

    /// The rest of an atom whose tag, at `offset`, was read.
    fn atom_body(&mut self, tag: u8, offset: usize) -> Result<(), S::Error> {
        if tag == ATOM_CACHE_REF {
            let index = self.u8()?;
            return self.sink.cache_ref(offset, index);
        }
        let utf8 = matches!(tag, ATOM_UTF8_EXT | SMALL_ATOM_UTF8_EXT);
        let len = match tag {
            ATOM_EXT | ATOM_UTF8_EXT => self.u16()?,
            _ => self.u8()?.into(),
        };
        let name = self.take(len)?;
        self.sink.atom(offset, self.pos - len..self.pos);
        if !S::CONTENTS {
            return Ok(());
        }
        let chars = if utf8 {
            let s = std::str::from_utf8(name);
            s.map_err(|_| self.malformed("atom is not valid UTF-8"))?
                .chars()
                .count()
        } else if name.is_ascii() {
            len
        } else {
            return Err(
                self.malformed("Latin-1 atom with non-ASCII bytes (eetf reads them as UTF-8)")
            );
        };
        if chars > MAX_ATOM_CHARS {
            return Err(self.malformed("atom longer than 255 characters"));
        }
        Ok(())
    }

    /// A node or module name: must be an atom, at nesting level `levels`.
    fn atom(&mut self, levels: usize) -> Result<(), S::Error> {
        self.depth(levels)?;
        let offset = self.pos;
        match self.tag()? {
            ATOM_CACHE_REF if S::CACHE_REFS => self.atom_body(ATOM_CACHE_REF, offset),
            tag @ (ATOM_EXT | SMALL_ATOM_EXT | ATOM_UTF8_EXT | SMALL_ATOM_UTF8_EXT) => {
                self.atom_body(tag, offset)
            }
            _ => Err(self.malformed("node, module and function names must be atoms")),
        }
    }

    /// An integer field eetf insists on decoding as a FixInteger.
    fn int(&mut self) -> Result<i64, S::Error> {
        match self.tag()? {
            SMALL_INTEGER_EXT => Ok(self.u8()?.into()),
            INTEGER_EXT => Ok(i32::from_be_bytes(self.array()?).into()),
            _ => Err(self.malformed("expected SMALL_INTEGER_EXT or INTEGER_EXT")),
        }
    }

    fn pid_body(&mut self, tag: u8, levels: usize) -> Result<(), S::Error> {
        self.atom(levels)?;
        self.skip(if tag == PID_EXT { 9 } else { 12 })?;
        Ok(())
    }

    /// A length, then a byte (tail bits, sign) only checked with
    /// `CONTENTS`, then `n` bytes.
    fn prefixed(
        &mut self,
        n: usize,
        bad: impl Fn(u8) -> bool,
        why: &'static str,
    ) -> Result<(), S::Error> {
        if !S::CONTENTS {
            return self.skip(n.saturating_add(1));
        }
        if bad(self.u8()?) {
            return Err(self.malformed(why));
        }
        self.skip(n)
    }

    /// Checks one term; a container pushes a frame for its children.
    fn term(&mut self, stack: &mut Vec<Frame<S::FunMark>>) -> Result<(), S::Error> {
        let offset = self.pos;
        let inner = stack.len() + 1;
        let tag = self.tag()?;
        match tag {
            SMALL_INTEGER_EXT => self.skip(1)?,
            INTEGER_EXT => self.skip(4)?,
            NEW_FLOAT_EXT => {
                let value = f64::from_be_bytes(self.array()?);
                if S::CONTENTS && !value.is_finite() {
                    return Err(self.malformed("float is NaN or infinite"));
                }
            }
            ATOM_CACHE_REF if S::CACHE_REFS => self.atom_body(tag, offset)?,
            ATOM_EXT | SMALL_ATOM_EXT | ATOM_UTF8_EXT | SMALL_ATOM_UTF8_EXT => {
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
                let why = "bit binary needs 1 or more bytes and 1..=8 tail bits";
                self.prefixed(n, |bits| n == 0 || !(1..=8).contains(&bits), why)?;
            }
            SMALL_BIG_EXT | LARGE_BIG_EXT => {
                let n = if tag == SMALL_BIG_EXT {
                    self.u8()?.into()
                } else {
                    self.u32()?
                };
                let why = "big integer sign byte must be 0 or 1";
                self.prefixed(n, |sign| sign > 1, why)?;
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
                if S::CONTENTS && !(1..=MAX_REF_WORDS).contains(&words) {
                    return Err(self.malformed("reference must have 1..=5 id words"));
                }
                self.atom(inner)?;
                let creation = if tag == NEW_REFERENCE_EXT { 1 } else { 4 };
                self.skip(creation + 4 * words)?;
            }
            EXPORT_EXT => {
                self.atom(inner)?;
                self.atom(inner)?;
                let arity = self.int()?;
                if S::CONTENTS && !(0..=255).contains(&arity) {
                    return Err(self.malformed("export arity must be 0..=255"));
                }
            }
            SMALL_TUPLE_EXT => {
                let n = self.u8()?.into();
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
                self.map_pairs += n;
            }
            NEW_FUN_EXT => {
                // Size counts itself and everything after it; eetf ignores it.
                let size_at = self.pos;
                let size = self.u32()?;
                // A wrong size is caught when the fun's frame closes.
                if size > self.bytes.len() - size_at {
                    return Err(TermError::Truncated { offset: size_at }.into());
                }
                let mark = self.sink.fun_start(size_at);
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
                self.open(stack, free, Some((size_at + size, mark)))?;
            }
            _ => {
                let why = S::rejection(tag);
                return Err(TermError::RejectedTag { tag, offset, why }.into());
            }
        }
        Ok(())
    }
}

/// Visits every node of `term` (with the number of containers around it)
/// without recursion, so it is safe on terms of any depth.
fn walk<'t>(
    term: &'t Term,
    mut visit: impl FnMut(&'t Term, usize) -> Result<(), TermError>,
) -> Result<(), TermError> {
    let mut stack = vec![(term, 0)];
    while let Some((t, level)) = stack.pop() {
        visit(t, level)?;
        let inner = level + 1;
        match t {
            Term::List(x) => stack.extend(x.elements.iter().map(|e| (e, inner))),
            Term::Tuple(x) => stack.extend(x.elements.iter().map(|e| (e, inner))),
            Term::ImproperList(x) => {
                stack.extend(x.elements.iter().map(|e| (e, inner)));
                stack.push((&x.last, inner));
            }
            Term::Map(x) => {
                for (k, v) in &x.map {
                    stack.extend([(k, inner), (v, inner)]);
                }
            }
            Term::InternalFun(f) => match &**f {
                InternalFun::New { free_vars, .. } | InternalFun::Old { free_vars, .. } => {
                    stack.extend(free_vars.iter().map(|e| (e, inner)))
                }
            },
            _ => {}
        }
    }
    Ok(())
}

fn unencodable<T>(why: impl Into<String>) -> Result<T, TermError> {
    Err(TermError::Unencodable(why.into()))
}

fn check_atom(atom: &Atom) -> Result<(), TermError> {
    // Only count characters when the byte length says it could be too long.
    if atom.name.len() > MAX_ATOM_CHARS && atom.name.chars().count() > MAX_ATOM_CHARS {
        return unencodable(format!(
            "atom of {} characters (max 255)",
            atom.name.chars().count()
        ));
    }
    Ok(())
}

fn fits_u32(len: usize) -> Result<(), TermError> {
    if u32::try_from(len).is_err() {
        return unencodable(format!("{len} elements do not fit a 32-bit length"));
    }
    Ok(())
}

/// Would eetf encode this node wrongly unless it is rewritten first?
fn needs_rewrite(t: &Term) -> bool {
    match t {
        // eetf sends these as STRING_EXT, and a negative value as its low byte.
        Term::List(l) => {
            let mut negative = false;
            let all_small = l.elements.iter().all(|e| match e {
                Term::FixInteger(i) if i.value < 0x100 => {
                    negative |= i.value < 0;
                    true
                }
                _ => false,
            });
            all_small && negative && l.elements.len() <= usize::from(u16::MAX)
        }
        // eetf writes the length of STRING_EXT as `len as u16`.
        Term::ByteList(b) => b.bytes.len() > usize::from(u16::MAX),
        Term::BitBinary(b) => b.bytes.is_empty(),
        _ => false,
    }
}

/// Refuses what the BEAM or eetf cannot handle; `Ok(true)` if the node
/// must be rewritten before eetf encodes it.
fn validate_for_encode(t: &Term, level: usize) -> Result<bool, TermError> {
    // Whatever we send must be decodable by us, and eetf's encoder recurses.
    let depth = |levels: usize| {
        if level + levels > DEFAULT_MAX_DEPTH {
            return Err(TermError::UnencodableDepth {
                max_depth: DEFAULT_MAX_DEPTH,
            });
        }
        Ok(())
    };
    match t {
        Term::Atom(a) => check_atom(a)?,
        Term::Float(f) if !f.value.is_finite() => return unencodable("float is NaN or infinite"),
        Term::Pid(Pid { node, .. }) | Term::Port(Port { node, .. }) => {
            depth(1)?;
            check_atom(node)?;
        }
        Term::Reference(r) => {
            depth(1)?;
            check_atom(&r.node)?;
            if !(1..=MAX_REF_WORDS).contains(&r.id.len()) {
                return unencodable(format!("reference with {} id words (1..=5)", r.id.len()));
            }
        }
        Term::ExternalFun(f) => {
            depth(1)?;
            check_atom(&f.module)?;
            check_atom(&f.function)?;
        }
        Term::InternalFun(f) => match &**f {
            InternalFun::Old { .. } => return unencodable("FUN_EXT funs (removed in OTP 23)"),
            InternalFun::New {
                module,
                pid,
                free_vars,
                ..
            } => {
                depth(2)?;
                check_atom(module)?;
                check_atom(&pid.node)?;
                fits_u32(free_vars.len())?;
            }
        },
        Term::Binary(b) => fits_u32(b.bytes.len())?,
        Term::BitBinary(b) if !b.bytes.is_empty() => {
            if !(1..=8).contains(&b.tail_bits_size) {
                let bits = b.tail_bits_size;
                return unencodable(format!("bit binary with {bits} tail bits (1..=8)"));
            }
            fits_u32(b.bytes.len())?;
        }
        Term::List(List { elements })
        | Term::ImproperList(ImproperList { elements, .. })
        | Term::Tuple(eetf::Tuple { elements }) => {
            // A nil List is NIL_EXT, a leaf.
            if !elements.is_empty() || !matches!(t, Term::List(_)) {
                depth(1)?;
            }
            fits_u32(elements.len())?;
        }
        Term::Map(m) => {
            depth(1)?;
            fits_u32(m.map.len())?;
        }
        _ => {}
    }
    Ok(needs_rewrite(t))
}

/// Rewrites, in a clone, every node eetf would encode wrongly. Only map keys
/// are handled by recursion (bounded by the depth `encode_term` checked).
fn fix_up(root: &mut Term) -> Result<(), TermError> {
    let mut stack = vec![root];
    while let Some(t) = stack.pop() {
        if needs_rewrite(t) {
            *t = match t {
                // A LIST_EXT ending in NIL_EXT: eetf writes it as given.
                Term::List(l) => Term::from(ImproperList::from((
                    std::mem::take(&mut l.elements),
                    Term::from(List::nil()),
                ))),
                // Longer than 65535 elements, so eetf picks LIST_EXT itself.
                Term::ByteList(b) => {
                    Term::from(List::from(ByteList::from(std::mem::take(&mut b.bytes))))
                }
                // An empty BitBinary: eetf would write its bogus tail bits.
                _ => Term::from(Binary::from(Vec::new())),
            };
        }
        match t {
            Term::List(x) => stack.extend(x.elements.iter_mut()),
            Term::Tuple(x) => stack.extend(x.elements.iter_mut()),
            Term::ImproperList(x) => {
                stack.extend(x.elements.iter_mut());
                stack.push(&mut x.last);
            }
            Term::Map(m) => {
                fix_map_keys(m)?;
                stack.extend(m.map.values_mut());
            }
            Term::InternalFun(f) => {
                if let InternalFun::New { free_vars, .. } = &mut **f {
                    stack.extend(free_vars.iter_mut());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Keys cannot be changed in place (their hash changes), so rebuild the map.
fn fix_map_keys(m: &mut Map) -> Result<(), TermError> {
    let mut any = false;
    for k in m.map.keys() {
        walk(k, |t, _| {
            any |= needs_rewrite(t);
            Ok(())
        })?;
    }
    if !any {
        return Ok(());
    }
    let old = std::mem::take(&mut m.map);
    let n = old.len();
    let mut map = HashMap::with_capacity(n);
    for (mut k, v) in old {
        fix_up(&mut k)?;
        map.insert(k, v);
    }
    if map.len() != n {
        return unencodable("map keys that differ in eetf are equal in Erlang");
    }
    m.map = map;
    Ok(())
}

pub(crate) mod peek;
#[cfg(test)]
mod tests;

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

mod encode;
mod scan;

pub(crate) use encode::{encode_term, encode_term_body};
use encode::{validate_for_encode, walk};
use scan::{scan, Check};
pub(crate) use scan::{Frame, ScanSink, Scanner};

pub(crate) mod peek;
#[cfg(test)]
mod tests;

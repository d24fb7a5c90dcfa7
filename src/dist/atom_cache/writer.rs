//! The sending side of the atom cache, sans-IO: frames whose atoms go out
//! as ATOM_CACHE_REF, as the BEAM sends them.
//!
//! A frame with plain atoms is valid, but the receiving BEAM then looks
//! every atom up in its atom table by its text (a hash of the whole node
//! name, under a lock), on the connection's single input path. With the
//! cache, an atom it has seen before costs it an array index, and a frame
//! shrinks by the text of every repeated atom: a `gen_server` reply names
//! the caller's node twice and ours once, about half its bytes.
//!
//! Each connection direction has its own cache of [`CACHE_SIZE`] slots; the
//! receiver's copy of ours changes only through our headers, so this side
//! only has to remember what it told the peer, and the frames must reach
//! the socket in the order they were written here.

use super::{FrameMarks, CACHE_SIZE, MAX_REFS, NEW_ENTRY};
use crate::dist::etf::{
    Frame, Limits, ScanSink, Scanner, TermError, ATOM_CACHE_REF, ATOM_UTF8_EXT, DIST_HEADER,
    SMALL_ATOM_UTF8_EXT, VERSION,
};
use crate::dist::frame::OutFrame;
use std::ops::Range;

/// Atom sites kept allocated between frames, at most.
const SCRATCH_SITES: usize = 4096;

/// What this connection's peer holds in each slot of our cache, and
/// scratch space reused from frame to frame.
pub(crate) struct AtomCacheWriter {
    /// The text of the atom the peer has in each slot, if any ('' is an atom).
    slots: Box<[Option<Vec<u8>>]>,
    /// The slots the frame being written lists, each at reference
    /// `listed[slot]`.
    marks: FrameMarks,
    listed: Box<[u8]>,
    sites: Vec<Site>,
    refs: Vec<Ref>,
    stack: Vec<Frame<()>>,
}

/// A plain atom found in the frame's terms.
struct Site {
    tag: usize,
    text: Range<usize>,
    /// The header reference that replaces it, if any.
    reference: Option<u8>,
}

/// One entry of the header.
struct Ref {
    slot: usize,
    new: bool,
    text: Range<usize>,
}

impl Default for AtomCacheWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for AtomCacheWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.slots.iter().filter(|s| s.is_some()).count();
        f.debug_struct("AtomCacheWriter")
            .field("set_slots", &set)
            .finish()
    }
}

impl AtomCacheWriter {
    /// An empty cache, as at the start of a connection.
    pub(crate) fn new() -> Self {
        AtomCacheWriter {
            slots: vec![None; CACHE_SIZE].into_boxed_slice(),
            marks: FrameMarks::new(),
            listed: vec![0; CACHE_SIZE].into_boxed_slice(),
            sites: Vec::new(),
            refs: Vec::new(),
            stack: Vec::new(),
        }
    }

    /// Writes `frame` to `out` (replacing its contents) in header form,
    /// every atom it can cache replaced by a reference, and records what
    /// the peer will hold once it reads the frame. The frame must reach the
    /// peer, and after every frame written here before it.
    ///
    /// Atoms inside funs (whose size field would change), atoms over 255
    /// bytes, Latin-1 atoms that are not ASCII, an atom whose slot this
    /// frame already lists for another atom, and atoms past the 255th
    /// reference stay as they are. A frame that does not scan (never one
    /// of `control::encode`'s) goes out with no references at all.
    pub(crate) fn write(&mut self, frame: &OutFrame, out: &mut Vec<u8>) {
        let terms = frame.terms();
        out.clear();
        out.extend_from_slice(&[0, 0, 0, 0, VERSION, DIST_HEADER]);
        if self.find_sites(terms).is_err() {
            tracing::debug!("outgoing frame does not scan; sent without atom cache references");
            self.sites.clear();
        }
        self.assign_refs(terms);
        self.write_header(terms, out);
        let mut copied = 0;
        for site in &self.sites {
            if let Some(index) = site.reference {
                out.extend_from_slice(&terms[copied..site.tag]);
                out.extend_from_slice(&[ATOM_CACHE_REF, index]);
                copied = site.text.end;
            }
        }
        out.extend_from_slice(&terms[copied..]);
        let len = (out.len() - 4) as u32;
        out[..4].copy_from_slice(&len.to_be_bytes());
        // One huge frame must not leave its scratch space behind.
        if self.sites.capacity() > SCRATCH_SITES {
            self.sites = Vec::new();
            self.refs = Vec::new();
        }
    }

    /// Fills `sites` with the plain atoms of the control message and the
    /// payload, in order.
    fn find_sites(&mut self, terms: &[u8]) -> Result<(), TermError> {
        self.sites.clear();
        let limits = Limits::default();
        let sink = Sites {
            sites: &mut self.sites,
            funs: 0,
        };
        let mut scanner = Scanner::new(terms, 0, &limits, sink);
        while scanner.pos < terms.len() {
            scanner.walk(&mut self.stack)?;
        }
        Ok(())
    }

    /// Gives each cacheable site a reference, listing each slot once.
    fn assign_refs(&mut self, terms: &[u8]) {
        self.refs.clear();
        self.marks.next_frame();
        for site in &mut self.sites {
            let text = &terms[site.text.clone()];
            let utf8 = matches!(terms[site.tag], ATOM_UTF8_EXT | SMALL_ATOM_UTF8_EXT);
            if text.len() > 255 || !(utf8 || text.is_ascii()) {
                continue;
            }
            let slot = slot_of(text);
            if self.marks.is_marked(slot) {
                // Listed already: by this atom, or by another that hashes
                // alike (which then stays plain).
                let listed = self.listed[slot];
                let r = &self.refs[usize::from(listed)];
                if terms[r.text.clone()] == *text {
                    site.reference = Some(listed);
                }
                continue;
            }
            if self.refs.len() == MAX_REFS {
                continue;
            }
            let index = self.refs.len() as u8;
            let held = &mut self.slots[slot];
            let new = held.as_deref() != Some(text);
            if new {
                let held = held.get_or_insert_with(Vec::new);
                held.clear();
                held.extend_from_slice(text);
            }
            self.marks.mark(slot);
            self.listed[slot] = index;
            self.refs.push(Ref {
                slot,
                new,
                text: site.text.clone(),
            });
            site.reference = Some(index);
        }
    }

    /// NumberOfAtomCacheRefs, Flags (a nibble per reference and one for
    /// LongAtoms, never set: cached atoms are at most 255 bytes) and the
    /// references, each with its text when it sets its slot.
    fn write_header(&self, terms: &[u8], out: &mut Vec<u8>) {
        let count = self.refs.len();
        out.push(count as u8);
        if count == 0 {
            return;
        }
        let flags_at = out.len();
        out.resize(flags_at + count / 2 + 1, 0);
        for (i, r) in self.refs.iter().enumerate() {
            let nibble = (r.slot >> 8) as u8 | if r.new { NEW_ENTRY } else { 0 };
            out[flags_at + i / 2] |= nibble << ((i & 1) * 4);
        }
        for r in &self.refs {
            out.push(r.slot as u8);
            if r.new {
                out.push(r.text.len() as u8);
                out.extend_from_slice(&terms[r.text.clone()]);
            }
        }
    }
}

/// The slot an atom goes to (FNV-1a of its text).
fn slot_of(text: &[u8]) -> usize {
    let mut hash: u32 = 0x811c_9dc5;
    for &b in text {
        hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    hash as usize % CACHE_SIZE
}

/// The sink that collects plain atoms outside funs.
struct Sites<'a> {
    sites: &'a mut Vec<Site>,
    /// Funs open around the walk's position.
    funs: usize,
}

impl ScanSink for Sites<'_> {
    type Error = TermError;
    type FunMark = ();
    const CONTENTS: bool = false;
    const CACHE_REFS: bool = false;

    fn cache_ref(&mut self, offset: usize, _: u8) -> Result<(), TermError> {
        // Not reached: without CACHE_REFS the tag is rejected before.
        let why = "atom cache reference in a frame being written";
        Err(TermError::RejectedTag {
            tag: ATOM_CACHE_REF,
            offset,
            why,
        })
    }

    #[inline]
    fn atom(&mut self, tag: usize, text: Range<usize>) {
        if self.funs == 0 {
            self.sites.push(Site {
                tag,
                text,
                reference: None,
            });
        }
    }

    fn fun_start(&mut self, _: usize) {
        self.funs += 1;
    }

    fn fun_end(&mut self, (): (), _: usize) -> Result<(), TermError> {
        self.funs -= 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::atom_cache::AtomCache;
    use crate::dist::control::{self, ControlMessage as Message};
    use crate::dist::frame::{parse_frame, Frame as WireFrame};
    use eetf::{Atom, InternalFun, List, Pid, Term, Tuple};

    fn pid(node: &str, id: u32) -> Pid {
        Pid::new(node, id, 0, 7)
    }

    fn atom(name: &str) -> Term {
        Term::from(Atom::from(name))
    }

    /// Writes `message` through `writer`, reads it back through `reader`
    /// as the peer would; returns the wire frame and what was decoded.
    fn through(w: &mut AtomCacheWriter, r: &mut AtomCache, message: Message) -> (Vec<u8>, Message) {
        let limits = Limits::default();
        let frame = control::encode(message).unwrap();
        let mut wire = Vec::new();
        w.write(&frame, &mut wire);
        let Some((WireFrame::WithHeader(body), used)) = parse_frame(&wire, 1 << 24).unwrap() else {
            panic!("not a header frame")
        };
        assert_eq!(used, wire.len());
        let mut expanded = Vec::new();
        r.expand(body, &limits, &mut expanded).unwrap();
        (wire.clone(), control::decode(&expanded, &limits).unwrap())
    }

    fn reply(to: &str, from: &str, payload: Term) -> Message {
        Message::reg_send(pid(from, 1), Atom::from("echo"), {
            Term::from(Tuple::from(vec![Term::from(pid(to, 2)), payload]))
        })
    }

    #[test]
    fn atoms_are_sent_once_then_referenced() {
        let (mut w, mut r) = (AtomCacheWriter::new(), AtomCache::new());
        let message = reply("caller@host", "us@host", atom("hello"));
        let (first, decoded) = through(&mut w, &mut r, message.clone());
        assert_eq!(decoded, message);
        let (second, decoded) = through(&mut w, &mut r, message.clone());
        assert_eq!(decoded, message);
        // The second frame lists the same slots without their text.
        let text: usize = ["caller@host", "us@host", "echo", "hello", ""]
            .iter()
            .map(|a| a.len() + 1)
            .sum();
        assert_eq!(first.len() - second.len(), text);
        assert!(second.windows(11).all(|w| w != b"caller@host"));
        let plain = control::encode(message).unwrap().into_header_form();
        assert!(
            second.len() < plain.len(),
            "{} vs {}",
            second.len(),
            plain.len()
        );
    }

    #[test]
    fn a_fresh_peer_cache_reads_the_plain_form_alike() {
        // What goes through the writer decodes to what the plain form does,
        // for every kind of atom position, over a run of frames.
        let (mut w, mut r) = (AtomCacheWriter::new(), AtomCache::new());
        let long = "é".repeat(200); // 400 bytes: stays plain
        let fun = Term::from(InternalFun::New {
            module: Atom::from("mod"),
            arity: 1,
            pid: pid("n@h", 3),
            free_vars: vec![atom("inside"), Term::from(pid("n@h", 4))],
            index: 3,
            uniq: [9; 16],
            old_index: 4,
            old_uniq: 5,
        });
        let payloads = [
            atom(""),
            atom(&long),
            Term::from(List::from(vec![fun, atom("mod"), atom("n@h")])),
            Term::from(List::from(
                (0..600)
                    .map(|i| atom(&format!("a{}", i % 300)))
                    .collect::<Vec<_>>(),
            )),
            atom("caller@host"),
        ];
        for round in 0..3 {
            for (i, p) in payloads.iter().enumerate() {
                let message = reply("caller@host", &format!("n{round}@h"), p.clone());
                let (_, decoded) = through(&mut w, &mut r, message.clone());
                assert_eq!(decoded, message, "payload {i} in round {round}");
            }
        }
    }

    #[test]
    fn atoms_that_share_a_slot_take_turns() {
        // Two names with the same slot: within a frame the second stays
        // plain; across frames each takes the slot over.
        let first = "k0".to_string();
        let other = (1..)
            .map(|i| format!("k{i}"))
            .find(|n| slot_of(n.as_bytes()) == slot_of(first.as_bytes()))
            .unwrap();
        let (mut w, mut r) = (AtomCacheWriter::new(), AtomCache::new());
        let both = Term::from(Tuple::from(vec![atom(&first), atom(&other), atom(&first)]));
        for message in [
            reply("a@h", "b@h", both.clone()),
            reply("a@h", "b@h", atom(&other)),
            reply("a@h", "b@h", both),
            reply("a@h", "b@h", atom(&first)),
        ] {
            let (_, decoded) = through(&mut w, &mut r, message.clone());
            assert_eq!(decoded, message);
        }
    }

    #[test]
    fn a_peer_that_missed_nothing_never_sees_an_unset_slot() {
        // Many distinct atoms over many frames: slots are overwritten over
        // and over, and every reference still names what the peer holds.
        let (mut w, mut r) = (AtomCacheWriter::new(), AtomCache::new());
        for i in 0..300 {
            let atoms = (0..40).map(|j| atom(&format!("x{}", (i * 7 + j * 13) % 5000)));
            let message = reply(
                "a@h",
                "b@h",
                Term::from(List::from(atoms.collect::<Vec<_>>())),
            );
            let (_, decoded) = through(&mut w, &mut r, message.clone());
            assert_eq!(decoded, message);
        }
    }
}

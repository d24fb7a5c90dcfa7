//! The sink of the term walk after a distribution header: copies the terms
//! to the output, replacing each ATOM_CACHE_REF by its atom. The walk itself
//! (structure, lengths, limits, contents) is `etf`'s [`Scanner`].

use super::*;
use crate::dist::etf::ScanSink;

/// Copies terms from `input` to `out`, replacing references. Bytes from
/// `copied` to the scanner's position are still to be copied; they are
/// copied in one go at the next reference or at the end, so plain stretches
/// cost one memcpy.
pub(super) struct Expander<'a> {
    pub(super) input: &'a [u8],
    pub(super) copied: usize,
    pub(super) out: &'a mut Vec<u8>,
    /// `out` may not grow past this length.
    pub(super) out_limit: usize,
    pub(super) max_output: usize,
    pub(super) table: &'a [u16],
    pub(super) slots: &'a [Vec<u8>],
}

impl Expander<'_> {
    /// Copies the bytes walked since the last copy, up to `pos`.
    pub(super) fn flush(&mut self, pos: usize) {
        self.out.extend_from_slice(&self.input[self.copied..pos]);
        self.copied = pos;
    }

    /// `offset`: where the walk is, for the error.
    pub(super) fn check_size(&self, offset: usize) -> Result<()> {
        if self.out.len() > self.out_limit {
            let max = self.max_output;
            return Err(AtomCacheError::TooLarge { offset, max });
        }
        Ok(())
    }
}

impl ScanSink for Expander<'_> {
    type Error = AtomCacheError;
    /// Output offset of a fun's size field.
    type FunMark = usize;
    // Contents are checked in the same pass, so the output goes to eetf
    // without a second walk (`AtomCache::expand_checked`). Atoms put in for
    // references were checked when their header entry arrived.
    const CONTENTS: bool = true;
    const CACHE_REFS: bool = true;

    fn rejection(tag: u8) -> &'static str {
        match tag {
            VERSION => "version byte inside a distribution frame's term",
            DIST_HEADER => "distribution header inside a term",
            _ => "unknown or unsupported tag",
        }
    }

    /// Replaces the reference (tag and index byte) by the atom.
    #[inline]
    fn cache_ref(&mut self, offset: usize, index: u8) -> Result<()> {
        let index = usize::from(index);
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
        self.copied = offset + 2;
        self.check_size(self.copied)
    }

    /// Nothing after `copied` has been copied, so this is where the size
    /// field lands in the output.
    fn fun_start(&mut self, size_offset: usize) -> usize {
        self.out.len() + (size_offset - self.copied)
    }

    /// A NEW_FUN_EXT's size counts its own bytes, so it changes when
    /// references inside the fun expand: rewrite it for the output.
    fn fun_end(&mut self, out_at: usize, end: usize) -> Result<()> {
        self.flush(end);
        let size = u32::try_from(self.out.len() - out_at).map_err(|_| {
            let (offset, max) = (end, self.max_output);
            AtomCacheError::TooLarge { offset, max }
        })?;
        self.out[out_at..out_at + 4].copy_from_slice(&size.to_be_bytes());
        Ok(())
    }
}

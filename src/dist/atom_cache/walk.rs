//! The walk over the terms after a distribution header: copies them to the
//! output, replacing each ATOM_CACHE_REF by its atom.

use super::*;

/// An open container: how many child terms it still expects, and for
/// NEW_FUN_EXT where its size field is.
#[derive(Clone, Copy)]
pub(super) struct Open {
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
pub(super) struct Walker<'a> {
    pub(super) input: &'a [u8],
    pub(super) pos: usize,
    pub(super) copied: usize,
    pub(super) out: &'a mut Vec<u8>,
    /// `out` may not grow past this length.
    pub(super) out_limit: usize,
    pub(super) max_output: usize,
    pub(super) table: &'a [u16],
    pub(super) slots: &'a [Vec<u8>],
    pub(super) limits: &'a Limits,
    pub(super) terms: usize,
    /// Children announced by open containers and not yet started; each
    /// needs a byte of input, as in `etf::check_term`.
    pub(super) pending: usize,
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
    pub(super) fn flush(&mut self) {
        self.out
            .extend_from_slice(&self.input[self.copied..self.pos]);
        self.copied = self.pos;
    }

    pub(super) fn check_size(&self) -> Result<()> {
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
    pub(super) fn walk(&mut self, stack: &mut Vec<Open>) -> Result<()> {
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

//! The structural walk over untrusted external-format bytes: no
//! recursion, no trusted lengths, a [`ScanSink`] for what else is done.

use super::*;

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
pub(super) struct Check;

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
pub(super) fn scan(bytes: &[u8], limits: &Limits) -> Result<(usize, usize), TermError> {
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

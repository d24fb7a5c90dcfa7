//! Encoding terms for the BEAM: every node checked without recursion,
//! and the nodes eetf would encode wrongly rewritten in a clone first.

use super::*;

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

/// Visits every node of `term` (with the number of containers around it)
/// without recursion, so it is safe on terms of any depth.
pub(super) fn walk<'t>(
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
pub(super) fn validate_for_encode(t: &Term, level: usize) -> Result<bool, TermError> {
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

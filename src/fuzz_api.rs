//! Entry points into every decoder fed by the network, for the fuzz targets
//! in `fuzz/` (feature `fuzzing`) and for the unit test that replays
//! `fuzz/regressions/<target>/*` (so every crash the fuzzer found stays a
//! test without the fuzzer installed).
//!
//! Each function takes arbitrary bytes and must return normally whatever
//! they are: a panic (including an `assert!` of an invariant below, an
//! arithmetic overflow, an out-of-bounds index) is a bug the fuzzer reports.
//! Inputs that need several messages (the handshake, a connection's stream)
//! are cut into chunks by the input's first byte, so the fuzzer also tries
//! every way a stream can be split across reads.

use crate::dist::atom_cache::AtomCache;
use crate::dist::connection::{Connection, ConnectionConfig, Polled};
use crate::dist::control;
use crate::dist::etf::{self, Limits};
use crate::dist::flags;
use crate::dist::frame::{self, Frame};
use crate::dist::handshake::{Event, Handshake, LocalIdentity, PeerInfo, ServerStatus};
use crate::quorum::store::Store;
use crate::quorum::StoreConfig;
use crate::services::protocol::{
    GuardNotice, HostMsg, MasterReply, NameChange, PeerMsg, Reply, Request,
};
use crate::term::canon::Canon;
use eetf::Term;
use std::time::{Duration, Instant};

/// The largest frame the fuzz targets accept: small, so that a length field
/// the fuzzer flips is refused or waited for rather than buffered at 128 MiB.
const MAX_FRAME: usize = 1 << 16;

/// The target names, one per entry point: `fuzz/fuzz_targets/<name>.rs`,
/// `fuzz/corpus/<name>/`, `fuzz/regressions/<name>/`.
pub const TARGETS: &[&str] = &[
    "frame",
    "handshake",
    "atom_cache",
    "term",
    "control",
    "incoming",
    "services",
    "locker",
];

/// Runs the entry point called `target` (one of [`TARGETS`]) on `data`.
/// Returns false for an unknown name.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "frame" => frame(data),
        "handshake" => handshake(data),
        "atom_cache" => atom_cache(data),
        "term" => term(data),
        "control" => control(data),
        "incoming" => incoming(data),
        "services" => services(data),
        "locker" => locker(data),
        _ => return false,
    }
    true
}

/// The frame parser (`dist/frame.rs`): frames read one after another from
/// `data`, as the connection's reader does, until more input is needed or
/// an error.
pub fn frame(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((frame, used))) = frame::parse_frame(rest, MAX_FRAME) {
        assert!(used >= 4 && used <= rest.len(), "frame used {used} bytes");
        let body_len = match frame {
            Frame::Tick => 0,
            Frame::PassThrough(b) => b.len() + 1,
            Frame::WithHeader(b) | Frame::Fragment(b) => b.len(),
        };
        assert_eq!(used, 4 + body_len);
        rest = &rest[used..];
    }
}

/// The handshake state machine (`dist/handshake`) with the input as what the
/// peer sends. The first byte picks our role (bit 0: client or server) and
/// the status we answer a name with (bits 1-3); the second the size of the
/// chunks the rest arrives in.
pub fn handshake(data: &[u8]) {
    let [mode, chunk, input @ ..] = data else {
        return;
    };
    let local = LocalIdentity {
        name: "fuzz@127.0.0.1".into(),
        flags: flags::ADVERTISED,
        creation: 7,
        cookie: "cookie".into(),
    };
    let mut hs = if mode & 1 == 0 {
        Handshake::client(local, "peer@127.0.0.1", 0x0102_0304)
    } else {
        Handshake::server(local, 0x0506_0708)
    };
    let status = match (mode >> 1) & 7 {
        0 => ServerStatus::Ok,
        1 => ServerStatus::OkSimultaneous,
        2 => ServerStatus::Nok,
        3 => ServerStatus::NotAllowed,
        _ => ServerStatus::Alive,
    };
    let mut inbox = Vec::new();
    for piece in input.chunks(usize::from(*chunk).max(1)) {
        inbox.extend_from_slice(piece);
        // Driven as the node drives it: receive while it makes progress.
        loop {
            match hs.receive(&inbox) {
                Ok((used, event)) => {
                    assert!(used <= inbox.len(), "used {used} of {}", inbox.len());
                    inbox.drain(..used);
                    let _ = hs.take_output();
                    match event {
                        Some(Event::NameReceived { .. }) => {
                            let _ = hs.set_status(status);
                        }
                        Some(Event::Established(_)) => return,
                        Some(_) => {}
                        None if used == 0 => break,
                        None => {}
                    }
                }
                Err(_) => return,
            }
            if hs.is_done() || hs.is_failed() {
                return;
            }
        }
    }
}

/// The atom-cache header reader and expander (`dist/atom_cache.rs`): `data`
/// is a series of frame bodies, each prefixed by a 2-byte length, read by
/// one cache (so later headers see the slots earlier ones set). A body that
/// starts `131 68` is expanded and its output decoded as a control message
/// (the expansion vouches that the decoder accepts it); one that starts
/// `131 69` has its fragment header read.
pub fn atom_cache(data: &[u8]) {
    let mut cache = AtomCache::new().with_max_output(1 << 20);
    let limits = Limits::default();
    let mut out = Vec::new();
    let mut atoms = Vec::new();
    for body in length_prefixed(data) {
        match body {
            [etf::VERSION, etf::DIST_HEADER, ..] => {
                out.clear();
                if let Ok(checked) = cache.expand_checked(body, &limits, &mut out) {
                    let _ = control::decode_checked(checked);
                }
            }
            [etf::VERSION, frame::DIST_FRAG_HEADER, ..] => {
                if let Ok(pos) = cache.read_fragment_header(body, &mut atoms) {
                    assert!(pos <= body.len());
                    out.clear();
                    if let Ok(checked) =
                        cache.expand_resolved(&atoms, &body[pos..], &limits, &mut out)
                    {
                        let _ = control::decode_checked(checked);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The term scanner and decoder (`dist/etf`): `check_term` and
/// `decode_term` agree on what they accept and its length, and a decoded
/// term that encodes decodes back to itself.
pub fn term(data: &[u8]) {
    let limits = Limits::default();
    let checked = etf::check_term(data, &limits);
    let Ok((term, len)) = etf::decode_term(data, &limits) else {
        return;
    };
    match checked {
        Ok(checked_len) => assert_eq!(checked_len, len, "check_term and decode_term disagree"),
        Err(e) => panic!("decode_term accepted what check_term refused: {e}"),
    }
    let mut bytes = Vec::new();
    if etf::encode_term(&term, &mut bytes).is_ok() {
        match etf::decode_term(&bytes, &limits) {
            Ok((again, used)) => {
                assert_eq!(used, bytes.len());
                assert!(
                    same(&again, &term),
                    "decode(encode(t)) != t: {term} became {again}"
                );
            }
            Err(e) => panic!("our own encoding of {term} is refused: {e}"),
        }
    }
}

/// Control messages (`dist/control.rs`): a pass-through body decoded; a
/// message that decodes, encoded again, is accepted and carries the same
/// payload.
pub fn control(data: &[u8]) {
    let limits = Limits::default();
    let Ok(message) = control::decode(data, &limits) else {
        return;
    };
    let Ok(mut out) = control::encode(message.clone()) else {
        return;
    };
    out.finish();
    let bytes = out.into_pass_through();
    // Length prefix and the pass-through byte 112.
    let ours = &bytes[5..];
    if let Err(e) = control::decode(ours, &limits) {
        panic!("our own encoding of {message:?} is refused: {e}");
    }
    // The same payload (as `=:=` sees it) as received. (Fields of the
    // control term may be normalized, such as SEND's unused one, and the
    // payload after a control message that takes none is ignored.)
    let (theirs, ours) = (terms_of(data, &limits), terms_of(ours, &limits));
    if let (Some(a), Some(b)) = (theirs.get(1), ours.get(1)) {
        assert!(same(a, b), "{message:?}: payload {a} was sent as {b}");
    }
}

/// The terms of a checked pass-through body, one after another.
fn terms_of(mut body: &[u8], limits: &Limits) -> Vec<Term> {
    let mut terms = Vec::new();
    while let Ok((t, used)) = etf::decode_term(body, limits) {
        terms.push(t);
        body = &body[used..];
    }
    terms
}

/// Erlang's `=:=`: `eetf`'s `==` tells a byte list from the same list of
/// small integers, and a small from a big integer (see `term::canon`).
fn same(a: &Term, b: &Term) -> bool {
    match (Canon::of(a), Canon::of(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The connection's reader (`dist/connection/incoming.rs`): frames, ticks,
/// the atom cache and fragments reassembled, on a stream cut into chunks of
/// the size the first byte gives. Both the atom cache and fragments are
/// negotiated; the reader is polled until it needs input after each chunk,
/// and large messages are decoded as the driver decodes them.
pub fn incoming(data: &[u8]) {
    let [chunk, stream @ ..] = data else {
        return;
    };
    let config = ConnectionConfig {
        net_ticktime: Duration::from_secs(60),
        max_frame_bytes: MAX_FRAME,
        term_limits: Limits::default(),
    };
    let peer = PeerInfo {
        name: "peer@127.0.0.1".into(),
        flags: flags::ADVERTISED,
        creation: 1,
    };
    let now = Instant::now();
    let conn = Connection::new(&peer, flags::ADVERTISED, &config, Vec::new(), now);
    let (mut incoming, _outgoing) = conn.split();
    for piece in stream.chunks(usize::from(*chunk).max(1)) {
        incoming.read_buffer().extend_from_slice(piece);
        incoming.handle_read(now);
        loop {
            match incoming.poll() {
                Ok(None) => break,
                Ok(Some(Polled::Message(_))) => {}
                // The error answer to a call too deep to deliver must be
                // sendable.
                Ok(Some(Polled::Answer(answer))) => {
                    if let Err(e) = crate::dist::control::encode(answer) {
                        panic!("the answer to a deep call cannot be sent: {e}");
                    }
                }
                Ok(Some(Polled::Large { message, .. })) => {
                    if let Err(e) = message.decode() {
                        let _ = incoming.fail_large(e);
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }
}

/// The services protocol decoders (`services/protocol`): the first byte
/// picks the decoder, the rest is a term. A request that decodes, encoded
/// again, decodes to itself; so does a peer message.
pub fn services(data: &[u8]) {
    let [which, rest @ ..] = data else {
        return;
    };
    let Ok((term, _)) = etf::decode_term(rest, &Limits::default()) else {
        return;
    };
    match which % 8 {
        0 => {
            if let Ok(request) = Request::decode(&term) {
                let again = Request::decode(&request.encode());
                assert!(
                    again.as_ref() == Ok(&request),
                    "{request:?} became {again:?}"
                );
            }
        }
        1 => {
            if let Ok(message) = PeerMsg::decode(&term) {
                let again = PeerMsg::decode(&message.encode());
                assert!(
                    again.as_ref() == Ok(&message),
                    "{message:?} became {again:?}"
                );
            }
        }
        2 => {
            let _ = HostMsg::decode(&term);
        }
        3 => {
            let _ = GuardNotice::decode(&term);
            let _ = NameChange::decode(&term);
        }
        4 => {
            let _ = MasterReply::decode(&term);
        }
        _ => {
            // A reply to a request: the term is `{Request, Reply}`.
            if let Term::Tuple(t) = &term {
                if let [request, reply] = &t.elements[..] {
                    if let Ok(request) = Request::decode(request) {
                        let _ = Reply::decode(&request, reply);
                    }
                }
            }
        }
    }
}

/// The locker store's request decoder (`quorum/store/parse.rs`) and what
/// the store does with what it accepts (each term is also tried as a
/// catch-up answer, `quorum/store/snapshot.rs`): `data` is a series of terms, each
/// after a byte that picks a call (even) or a cast (odd) and advances the
/// clock by its value in milliseconds times 100. Ends with a sweep far in the
/// future, which must leave no waiter behind.
pub fn locker(data: &[u8]) {
    let limits = Limits::default();
    let mut store = Store::new(StoreConfig::default(), 0, "rust@127.0.0.1");
    store.mark_caught_up();
    let mut now = 0u64;
    let mut rest = data;
    while let [op, more @ ..] = rest {
        let Ok((term, used)) = etf::decode_term(more, &limits) else {
            break;
        };
        rest = &more[used..];
        now += u64::from(*op) * 100;
        if op & 1 == 0 {
            let _ = store.call(now, &term);
        } else {
            let _ = store.cast(now, &term);
        }
        // Also a peer's catch-up answer: decoded within its bounds, merged.
        if let Ok(answer) = crate::quorum::store::CatchUpReply::decode(&term) {
            let _ = store.merge_catch_up(now, &answer);
        }
        let _ = store.sweep(now);
    }
    let _ = store.sweep(now + (1 << 40));
    let _ = store.stats(now + (1 << 40));
}

/// Bodies of a stream where each is preceded by its length in 2 bytes.
fn length_prefixed(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let [a, b, rest @ ..] = data else {
            return None;
        };
        let len = usize::from(u16::from_be_bytes([*a, *b])).min(rest.len());
        let (body, tail) = rest.split_at(len);
        data = tail;
        Some(body)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every crash the fuzzer found, kept in `fuzz/regressions/<target>/`,
    /// and every seed in `fuzz/corpus/<target>/`, run through its entry
    /// point: none may panic.
    #[test]
    fn fuzz_regressions_and_seeds_do_not_panic() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut ran = 0;
        for dir in ["regressions", "corpus"] {
            for target in TARGETS {
                let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.unwrap().path();
                    let data = std::fs::read(&path).unwrap();
                    let outcome = std::panic::catch_unwind(|| run(target, &data));
                    assert!(outcome.is_ok(), "{target} panics on {}", path.display());
                    ran += 1;
                }
            }
        }
        assert!(ran > 0, "no inputs found under {}", root.display());
    }

    /// Found by the `term` target: `#{[3,3] => [], "\x03\x03" => []}`, a
    /// map whose keys eetf tells apart (a list and a byte list) but Erlang
    /// does not, was accepted; the BEAM refuses it, and our own encoder
    /// refused to send it back.
    #[test]
    fn a_map_whose_keys_are_equal_in_erlang_is_refused() {
        let bytes = [
            131, 116, 0, 0, 0, 2, // MAP_EXT, 2 pairs
            108, 0, 0, 0, 2, 97, 3, 97, 3, 106, 106, // [3,3] => []
            107, 0, 2, 3, 3, 106, // "\x03\x03" => []
        ];
        let result = etf::decode_term(&bytes, &Limits::default());
        assert!(
            matches!(result, Err(etf::TermError::DuplicateMapKeys)),
            "{result:?}"
        );
    }
}

#[cfg(test)]
mod seeds;

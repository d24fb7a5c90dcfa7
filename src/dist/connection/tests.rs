//! Two connections wired back to back, without sockets: what one's
//! [`Outgoing`] writes, the other's [`Incoming`] reads. Time is passed in.

use super::*;
use crate::dist::control;
use eetf::{Atom, FixInteger, Pid, Term, Tuple};

const TICKTIME: Duration = Duration::from_secs(60);

fn config() -> ConnectionConfig {
    ConnectionConfig {
        net_ticktime: TICKTIME,
        max_frame_bytes: 1 << 20,
        term_limits: Limits::default(),
    }
}

fn peer(atom_cache: bool) -> PeerInfo {
    let cache = if atom_cache {
        flags::DIST_HDR_ATOM_CACHE
    } else {
        0
    };
    PeerInfo {
        name: "peer@host".into(),
        flags: flags::REQUIRED | cache,
        creation: 1,
    }
}

fn connection(atom_cache: bool, now: Instant) -> Connection {
    Connection::new(
        &peer(atom_cache),
        flags::ADVERTISED,
        &config(),
        Vec::new(),
        now,
    )
}

fn atom(name: &str) -> Term {
    Term::from(Atom::from(name))
}

fn pid(node: &str, id: u32) -> Pid {
    Pid::new(node, id, 0, 7)
}

fn reg_send(node: &str, payload: Term) -> ControlMessage {
    ControlMessage::reg_send(pid(node, 1), Atom::from("echo"), payload)
}

/// A run of messages with repeated and fresh atoms, every body form.
fn messages() -> Vec<ControlMessage> {
    let mut v = vec![
        ControlMessage::link(pid("a@h", 1), pid("peer@host", 2)),
        reg_send("a@h", atom("hello")),
        reg_send("a@h", atom("hello")),
    ];
    for i in 0..5 {
        let tuple = Tuple::from(vec![atom(&format!("x{i}")), atom("hello"), atom("")]);
        v.push(ControlMessage::send(pid("b@h", i), Term::from(tuple)));
    }
    v.push(reg_send("a@h", Term::from(FixInteger::from(-7))));
    v
}

/// The byte stream a fresh connection writes for `messages`, with a tick
/// between each two frames.
fn stream(atom_cache: bool, messages: &[ControlMessage]) -> Vec<u8> {
    let now = Instant::now();
    let mut writer = connection(atom_cache, now);
    let mut wire = Vec::new();
    for m in messages {
        let frame = control::encode(m.clone()).unwrap();
        wire.extend_from_slice(writer.send(frame, now));
        wire.extend_from_slice(&[0, 0, 0, 0]);
    }
    wire
}

/// Everything `c` can decode now.
fn drain(c: &mut Connection) -> Vec<ControlMessage> {
    let mut out = Vec::new();
    while let Some(m) = c.poll_message().unwrap() {
        out.push(m);
    }
    out
}

#[test]
fn messages_cross_in_both_body_forms() {
    let sent = messages();
    for atom_cache in [true, false] {
        let wire = stream(atom_cache, &sent);
        let mut reader = connection(atom_cache, Instant::now());
        reader.handle_input(&wire, Instant::now());
        assert_eq!(drain(&mut reader), sent, "atom cache {atom_cache}");
    }
    // With the cache, repeated atoms go as references: fewer bytes.
    let calls = vec![reg_send("caller@a.long.host.name", atom("hello")); 10];
    assert!(stream(true, &calls).len() < stream(false, &calls).len());
}

#[test]
fn frames_split_at_every_byte_boundary() {
    let sent = messages();
    for atom_cache in [true, false] {
        let wire = stream(atom_cache, &sent);
        for cut in 0..=wire.len() {
            let now = Instant::now();
            let mut reader = connection(atom_cache, now);
            reader.handle_input(&wire[..cut], now);
            let mut got = drain(&mut reader);
            reader.handle_input(&wire[cut..], now);
            got.extend(drain(&mut reader));
            assert_eq!(got, sent, "atom cache {atom_cache}, cut at {cut}");
        }
        // And one byte at a time.
        let mut reader = connection(atom_cache, Instant::now());
        let mut got = Vec::new();
        for b in &wire {
            reader.handle_input(std::slice::from_ref(b), Instant::now());
            got.extend(drain(&mut reader));
        }
        assert_eq!(got, sent);
    }
}

#[test]
fn a_truncated_frame_waits_for_the_rest() {
    let sent = [reg_send("a@h", atom("hello"))];
    let wire = stream(true, &sent);
    let frame_len = wire.len() - 4; // the trailing tick
    let mut reader = connection(true, Instant::now());
    reader.handle_input(&wire[..frame_len - 1], Instant::now());
    for _ in 0..3 {
        assert!(reader.poll_message().unwrap().is_none());
    }
    reader.handle_input(&wire[frame_len - 1..], Instant::now());
    assert_eq!(drain(&mut reader), sent);
}

#[test]
fn the_leftover_of_the_handshake_is_read_first() {
    let sent = messages();
    let wire = stream(true, &sent);
    let (head, tail) = wire.split_at(7);
    let now = Instant::now();
    let mut reader = Connection::new(&peer(true), flags::ADVERTISED, &config(), head.into(), now);
    reader.handle_input(tail, now);
    assert_eq!(drain(&mut reader), sent);
}

#[test]
fn atom_cache_slots_churn_across_frames() {
    // 400 frames of 30 atoms out of 5000 names: slots are set, reused
    // for other atoms and referenced again, frame after frame.
    let sent: Vec<_> = (0..400)
        .map(|i| {
            let atoms = (0..30).map(|j| atom(&format!("n{}", (i * 11 + j * 37) % 5000)));
            reg_send(
                "a@h",
                Term::from(eetf::List::from(atoms.collect::<Vec<_>>())),
            )
        })
        .collect();
    let wire = stream(true, &sent);
    let mut reader = connection(true, Instant::now());
    // Fed in odd-sized pieces.
    for piece in wire.chunks(1013) {
        reader.handle_input(piece, Instant::now());
    }
    assert_eq!(drain(&mut reader), sent);
}

/// A header frame (the BEAM's form) for `message` whose payload atom
/// `PLACEHOLDER` is sent as reference 0, naming `slot` with `text` if
/// given (a new entry: `LongAtoms` when over 255 bytes) or else the atom
/// the slot already holds.
fn frame_with_ref(message: ControlMessage, slot: u8, text: Option<&str>) -> Vec<u8> {
    let frame = control::encode(message).unwrap();
    let terms = frame.terms();
    let placeholder = [&[119u8, 11][..], b"PLACEHOLDER"].concat();
    let at = terms
        .windows(placeholder.len())
        .position(|w| w == placeholder)
        .unwrap();
    let mut body = vec![131, 68, 1];
    match text {
        Some(t) if t.len() > 255 => {
            // Nibble 0: a new entry in segment 0; nibble 1: LongAtoms.
            body.extend_from_slice(&[0x18, slot]);
            body.extend_from_slice(&(t.len() as u16).to_be_bytes());
            body.extend_from_slice(t.as_bytes());
        }
        Some(t) => {
            body.extend_from_slice(&[0x08, slot, t.len() as u8]);
            body.extend_from_slice(t.as_bytes());
        }
        None => body.extend_from_slice(&[0x00, slot]),
    }
    body.extend_from_slice(&terms[..at]);
    body.extend_from_slice(&[82, 0]);
    body.extend_from_slice(&terms[at + placeholder.len()..]);
    let mut wire = (body.len() as u32).to_be_bytes().to_vec();
    wire.extend(body);
    wire
}

#[test]
fn long_atoms_and_reused_slots_from_the_peer() {
    let long = "€".repeat(255); // 765 bytes: the LongAtoms form
    let with = |a: &str| reg_send("a@h", atom(a));
    let placeholder = || with("PLACEHOLDER");
    let mut reader = connection(true, Instant::now());
    let frames = [
        (frame_with_ref(placeholder(), 9, Some(&long)), with(&long)),
        (frame_with_ref(placeholder(), 9, None), with(&long)),
        (
            frame_with_ref(placeholder(), 9, Some("short")),
            with("short"),
        ),
        (frame_with_ref(placeholder(), 9, None), with("short")),
    ];
    for (i, (wire, expected)) in frames.into_iter().enumerate() {
        reader.handle_input(&wire, Instant::now());
        assert_eq!(drain(&mut reader), [expected], "frame {i}");
    }
    // A slot never set closes the connection.
    reader.handle_input(&frame_with_ref(placeholder(), 10, None), Instant::now());
    assert!(matches!(
        reader.poll_message(),
        Err(ConnectionError::Header(AtomCacheError::UnsetSlot {
            slot: 10,
            ..
        }))
    ));
    assert!(matches!(
        reader.poll_message(),
        Err(ConnectionError::Closed)
    ));
}

#[test]
fn ticks_are_sent_only_after_a_quiet_quarter_ticktime() {
    let t0 = Instant::now();
    let quarter = TICKTIME / 4;
    let mut c = connection(true, t0);
    let (_, mut out) = connection(true, t0).split();
    assert_eq!(out.poll_timeout(), t0 + quarter);
    assert_eq!(
        out.handle_timeout(t0 + quarter - Duration::from_millis(1)),
        None
    );
    assert_eq!(out.handle_timeout(t0 + quarter), Some(&[0, 0, 0, 0][..]));
    // The tick counts as a write: the next one is a quarter later.
    assert_eq!(out.poll_timeout(), t0 + 2 * quarter);
    // A frame written meanwhile puts the tick off.
    let frame = control::encode(reg_send("a@h", atom("x"))).unwrap();
    out.send(frame, t0 + quarter + Duration::from_secs(10));
    assert_eq!(out.handle_timeout(t0 + 2 * quarter), None);
    assert_eq!(
        out.poll_timeout(),
        t0 + 2 * quarter + Duration::from_secs(10)
    );
    // A jump far ahead sends one tick, not one per missed quarter.
    let later = t0 + 100 * quarter;
    assert!(out.handle_timeout(later).is_some());
    assert_eq!(out.handle_timeout(later), None);
    // Through the whole connection, with the peer ticking meanwhile.
    for q in 1..=8u32 {
        let now = t0 + q * quarter;
        c.handle_input(&[0, 0, 0, 0], now);
        assert!(c.poll_message().unwrap().is_none());
        assert_eq!(c.handle_timeout(now).unwrap(), Some(&[0, 0, 0, 0][..]));
    }
}

#[test]
fn a_peer_silent_for_net_ticktime_is_gone() {
    let t0 = Instant::now();
    let mut c = connection(false, t0);
    assert_eq!(c.poll_timeout(), t0 + TICKTIME / 4); // our tick comes first
    let (mut incoming, _) = connection(false, t0).split();
    assert_eq!(incoming.poll_timeout(), t0 + TICKTIME);
    assert!(incoming
        .handle_timeout(t0 + TICKTIME - Duration::from_millis(1))
        .is_ok());
    // A tick from the peer counts.
    incoming.handle_input(&[0, 0, 0, 0], t0 + Duration::from_secs(30));
    assert!(incoming.poll_message().unwrap().is_none());
    assert!(incoming.handle_timeout(t0 + TICKTIME).is_ok());
    assert_eq!(
        incoming.poll_timeout(),
        t0 + Duration::from_secs(30) + TICKTIME
    );
    // Then a long silence: gone, and stays gone.
    let late = t0 + Duration::from_secs(30) + TICKTIME;
    assert!(matches!(
        incoming.handle_timeout(late),
        Err(ConnectionError::TickTimeout { silent }) if silent == TICKTIME
    ));
    assert!(matches!(
        incoming.poll_message(),
        Err(ConnectionError::Closed)
    ));
    // The whole connection: a jump past the deadline is an error.
    assert!(c.handle_timeout(t0 + 2 * TICKTIME).is_err());
}

#[test]
fn oversized_frames_are_refused_before_their_body() {
    let mut c = connection(true, Instant::now());
    let len = (config().max_frame_bytes as u32 + 1).to_be_bytes();
    c.handle_input(&len, Instant::now());
    assert!(matches!(
        c.poll_message(),
        Err(ConnectionError::Frame(FrameError::TooLarge { .. }))
    ));
    assert!(matches!(c.poll_message(), Err(ConnectionError::Closed)));
}

#[test]
fn bad_bodies_and_headers_close_the_connection() {
    let bad: [&[u8]; 6] = [
        // Neither pass-through nor a distribution header.
        &[0, 0, 0, 3, 68, 0, 0],
        // A fragment header (fragments are never negotiated).
        &[0, 0, 0, 3, 131, 69, 0],
        // A header with a version byte after it.
        &[0, 0, 0, 5, 131, 68, 0, 131, 106],
        // Trailing bytes after control and payload.
        &[0, 0, 0, 6, 131, 68, 0, 106, 106, 106],
        // A pass-through control message that is not a tuple.
        &[0, 0, 0, 3, 112, 131, 106],
        // A payload atom that is not UTF-8, after a header: the one pass
        // that expands also checks contents.
        &[0, 0, 0, 9, 131, 68, 0, 104, 1, 97, 2, 119, 1],
    ];
    for (i, frame) in bad.iter().enumerate() {
        let mut c = connection(true, Instant::now());
        let mut frame = frame.to_vec();
        if i == 5 {
            frame.push(0xff);
            frame[3] = (frame.len() - 4) as u8;
        }
        c.handle_input(&frame, Instant::now());
        let e = c.poll_message().unwrap_err();
        assert!(!matches!(e, ConnectionError::Closed), "frame {i}: {e}");
        if i == 5 {
            let utf8 = "atom is not valid UTF-8";
            assert!(
                matches!(&e, ConnectionError::Header(AtomCacheError::Malformed { why, .. }) if *why == utf8),
                "{e}"
            );
        }
        assert!(matches!(c.poll_message(), Err(ConnectionError::Closed)));
        assert!(matches!(
            c.handle_timeout(Instant::now()),
            Err(ConnectionError::Closed)
        ));
    }
}

/// A frame of `message` (whose payload must end in the atom `y`) with that
/// `y` replaced by `levels` nested 1-tuples around `x`, built by hand: our
/// encoder refuses what we could not decode.
fn deep_frame(atom_cache: bool, message: ControlMessage, levels: usize) -> Vec<u8> {
    let mut payload = [104, 1].repeat(levels);
    payload.extend_from_slice(&[119, 1, b'x']);
    let frame = control::encode(message).unwrap();
    let mut body = if atom_cache {
        let mut body = vec![131, 68, 0];
        body.extend_from_slice(frame.terms());
        body
    } else {
        frame.into_pass_through()[4..].to_vec()
    };
    body.truncate(body.len() - 3);
    body.extend_from_slice(&payload);
    let mut wire = (body.len() as u32).to_be_bytes().to_vec();
    wire.extend(body);
    wire
}

#[test]
fn a_message_nesting_too_deep_is_dropped_alone() {
    let after = reg_send("a@h", atom("next"));
    for atom_cache in [true, false] {
        let mut wire = deep_frame(atom_cache, reg_send("a@h", atom("y")), 200);
        wire.extend(stream(atom_cache, std::slice::from_ref(&after)));
        let mut c = connection(atom_cache, Instant::now());
        c.handle_input(&wire, Instant::now());
        assert_eq!(
            drain(&mut c),
            vec![after.clone()],
            "atom cache {atom_cache}"
        );
    }
}

#[test]
fn a_call_nesting_too_deep_is_answered_with_an_error() {
    let caller = pid("peer@host", 5);
    let tag = atom("tag");
    let from = Term::from(Tuple::from(vec![caller.clone().into(), tag.clone()]));
    let call = |from: Term| {
        let request = Tuple::from(vec![atom("$gen_call"), from, atom("y")]);
        reg_send("peer@host", Term::from(request))
    };
    let limit = Limits::default().max_depth as i64;
    let error = crate::term::tuple(vec![
        atom("error"),
        crate::term::tuple(vec![atom("too_deep"), crate::term::int(limit)]),
    ]);
    let expected = ControlMessage::send(caller, crate::term::tuple(vec![tag.clone(), error]));
    for atom_cache in [true, false] {
        // The deep request sits in the last element: `y` is at the end.
        let wire = deep_frame(atom_cache, call(from.clone()), 200);
        let mut c = connection(atom_cache, Instant::now());
        c.handle_input(&wire, Instant::now());
        match c.incoming.poll().unwrap() {
            Some(Polled::Answer(m)) => assert_eq!(m, expected),
            other => panic!("expected an answer, got {other:?}"),
        }
        assert!(c.incoming.poll().unwrap().is_none());
        // A caller on a third node is never answered (nor dialled).
        let stranger = Term::from(Tuple::from(vec![pid("third@h", 1).into(), tag.clone()]));
        let wire = deep_frame(atom_cache, call(stranger), 200);
        let mut c = connection(atom_cache, Instant::now());
        c.handle_input(&wire, Instant::now());
        assert!(c.incoming.poll().unwrap().is_none());
    }
}

#[test]
fn a_terms_limits_still_apply_past_the_deep_payload_bound() {
    for atom_cache in [true, false] {
        // Deeper than DEEP_PAYLOAD_DEPTH: the connection goes, as before.
        let levels = super::incoming::DEEP_PAYLOAD_DEPTH + 1;
        let wire = deep_frame(atom_cache, reg_send("a@h", atom("y")), levels);
        let mut c = connection(atom_cache, Instant::now());
        c.handle_input(&wire, Instant::now());
        let e = c.poll_message().unwrap_err();
        assert!(e.to_string().contains("deeper"), "{e}");
        // A deep payload that is not a message (an exit reason) too.
        let exit = ControlMessage::payload_exit(pid("peer@host", 1), pid("me@h", 2), atom("y"));
        let wire = deep_frame(atom_cache, exit, 200);
        let mut c = connection(atom_cache, Instant::now());
        c.handle_input(&wire, Instant::now());
        assert!(c.poll_message().is_err());
    }
}

#[test]
fn spawn_replies_and_requests_pass_to_the_node() {
    let reference = eetf::Reference {
        node: Atom::from("a@h"),
        id: vec![1, 2, 3],
        creation: 7,
    };
    let reply = ControlMessage::spawn_reply(
        reference.clone(),
        pid("a@h", 1),
        FixInteger::from(0),
        erl_dist::term::PidOrAtom::Atom(Atom::from("ok")),
    );
    let request = ControlMessage::spawn_request(
        reference,
        pid("a@h", 1),
        pid("a@h", 2),
        erl_dist::term::Mfa {
            module: Atom::from("m"),
            function: Atom::from("f"),
            arity: FixInteger::from(1),
        },
        eetf::List::nil(),
        eetf::List::from(vec![atom("arg")]),
    );
    let after = reg_send("a@h", atom("next"));
    for atom_cache in [true, false] {
        let wire = stream(atom_cache, &[reply.clone(), request.clone(), after.clone()]);
        let mut reader = connection(atom_cache, Instant::now());
        reader.handle_input(&wire, Instant::now());
        // The node refuses the reply (node::dispatch, with the peer's
        // refusal budget); the connection only decodes.
        assert_eq!(
            drain(&mut reader),
            vec![reply.clone(), request.clone(), after.clone()]
        );
    }
}

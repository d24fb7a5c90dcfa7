//! Fragments in memory: large messages cut by one connection's
//! [`Outgoing`] and reassembled by another's [`Incoming`], and hand-made
//! fragment streams a peer could send, good and bad.

use super::fragmenter::FRAGMENT_SIZE;
use super::reassembly::MAX_PARTIAL_MESSAGES;
use super::*;
use crate::dist::control;
use eetf::{Atom, Binary, Pid, Term};

const MAX_FRAME: usize = 1 << 20;

fn config() -> ConnectionConfig {
    ConnectionConfig {
        net_ticktime: Duration::from_secs(60),
        max_frame_bytes: MAX_FRAME,
        term_limits: Limits::default(),
    }
}

fn peer(fragments: bool) -> PeerInfo {
    let frag = if fragments { flags::FRAGMENTS } else { 0 };
    PeerInfo {
        name: "peer@host".into(),
        flags: flags::REQUIRED | flags::DIST_HDR_ATOM_CACHE | frag,
        creation: 1,
    }
}

fn connection(fragments: bool) -> Connection {
    Connection::new(
        &peer(fragments),
        flags::ADVERTISED,
        &config(),
        Vec::new(),
        Instant::now(),
    )
}

fn pid(id: u32) -> Pid {
    Pid::new("a@h", id, 0, 7)
}

fn binary(len: usize, seed: u8) -> Term {
    let bytes = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    Term::from(Binary { bytes })
}

fn message(from: u32, payload: Term) -> ControlMessage {
    ControlMessage::send_sender(pid(from), pid(1000), payload)
}

fn frame(m: &ControlMessage) -> OutFrame {
    control::encode(m.clone()).unwrap()
}

/// Every message `c` decodes now.
fn drain(c: &mut Connection) -> Vec<ControlMessage> {
    let mut out = Vec::new();
    while let Some(m) = c.poll_message().unwrap() {
        out.push(m);
    }
    out
}

/// Every fragment `c` has to write, each a whole frame.
fn fragments(c: &mut Connection) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(f) = c.next_fragment(Instant::now()) {
        out.push(f.to_vec());
    }
    out
}

#[test]
fn a_large_message_goes_in_64_kib_fragments_and_comes_back_whole() {
    let mut writer = connection(true);
    let big = message(1, binary(5 * FRAGMENT_SIZE + 10, 1));
    let terms = frame(&big).terms().len();
    assert!(writer.send(frame(&big), Instant::now()).is_empty());
    let frags = fragments(&mut writer);
    assert_eq!(frags.len(), terms.div_ceil(FRAGMENT_SIZE));
    assert!(frags.iter().all(|f| f.len() <= FRAGMENT_SIZE + 4 + 19));
    assert_eq!(&frags[0][4..6], &[131, 69]);
    assert_eq!(&frags[1][4..6], &[131, 70]);
    let mut reader = connection(true);
    for f in &frags[..frags.len() - 1] {
        reader.handle_input(f, Instant::now());
        assert!(drain(&mut reader).is_empty());
    }
    reader.handle_input(frags.last().unwrap(), Instant::now());
    assert_eq!(drain(&mut reader), [big]);
}

#[test]
fn without_the_flag_a_large_message_goes_whole() {
    let mut writer = connection(false);
    let big = message(1, binary(2 * FRAGMENT_SIZE, 1));
    let wire = writer.send(frame(&big), Instant::now()).to_vec();
    assert!(writer.next_fragment(Instant::now()).is_none());
    let mut reader = connection(false);
    reader.handle_input(&wire, Instant::now());
    assert_eq!(drain(&mut reader), [big]);
}

#[test]
fn other_senders_pass_between_fragments_and_the_same_sender_waits() {
    let mut writer = connection(true);
    let now = Instant::now();
    let big_a = message(1, binary(3 * FRAGMENT_SIZE, 1));
    let big_b = message(2, binary(2 * FRAGMENT_SIZE, 2));
    let small_a = message(1, Term::from(Atom::from("after_big_a")));
    let small_c = message(3, Term::from(Atom::from("from_c")));
    let mut wire = Vec::new();
    assert!(writer.send(frame(&big_a), now).is_empty());
    assert!(writer.send(frame(&big_b), now).is_empty());
    // A's next message waits for A's large one; C's goes now.
    assert!(writer.send(frame(&small_a), now).is_empty());
    wire.extend_from_slice(writer.send(frame(&small_c), now));
    assert!(!wire.is_empty());
    // The two large messages take turns.
    let frags = fragments(&mut writer);
    let seqs: Vec<u64> = frags
        .iter()
        .map(|f| u64::from_be_bytes(f[6..14].try_into().unwrap()))
        .collect();
    assert_eq!(seqs[..4], [seqs[0], seqs[1], seqs[0], seqs[1]]);
    assert_ne!(seqs[0], seqs[1]);
    for f in &frags {
        wire.extend_from_slice(f);
    }
    let mut reader = connection(true);
    reader.handle_input(&wire, now);
    assert_eq!(drain(&mut reader), [small_c, big_b, big_a, small_a]);
}

#[test]
fn a_large_message_behind_a_large_one_of_the_same_sender_follows_it() {
    let mut writer = connection(true);
    let now = Instant::now();
    let first = message(1, binary(2 * FRAGMENT_SIZE, 1));
    let second = message(1, binary(2 * FRAGMENT_SIZE, 2));
    let third = message(1, Term::from(Atom::from("third")));
    for m in [&first, &second, &third] {
        assert!(writer.send(frame(m), now).is_empty());
    }
    let wire: Vec<u8> = fragments(&mut writer).concat();
    let mut reader = connection(true);
    reader.handle_input(&wire, now);
    assert_eq!(drain(&mut reader), [first, second, third]);
}

#[test]
fn fragments_split_at_any_byte_are_reassembled() {
    let mut writer = connection(true);
    let big = message(1, binary(FRAGMENT_SIZE + 100, 9));
    writer.send(frame(&big), Instant::now());
    let wire = fragments(&mut writer).concat();
    for cut in [1, 5, 20, FRAGMENT_SIZE, wire.len() - 1] {
        let mut reader = connection(true);
        reader.handle_input(&wire[..cut], Instant::now());
        let mut got = drain(&mut reader);
        reader.handle_input(&wire[cut..], Instant::now());
        got.extend(drain(&mut reader));
        assert_eq!(got, std::slice::from_ref(&big), "cut at {cut}");
    }
}

// Hand-made streams, as a peer could send them.

/// A fragment frame: length, `131 tag seq id`, then `rest`.
fn frag(tag: u8, seq: u64, id: u64, rest: &[u8]) -> Vec<u8> {
    let mut body = vec![131, tag];
    body.extend_from_slice(&seq.to_be_bytes());
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(rest);
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// The terms of `SEND_SENDER` to pid 1000 with the payload `payload`
/// (without version byte).
fn terms_with_payload(payload: &[u8]) -> Vec<u8> {
    let m = message(1, Term::from(Atom::from("x")));
    let f = frame(&m);
    let mut terms = f.control().to_vec();
    terms.extend_from_slice(payload);
    terms
}

/// A header naming one new atom `text` in cache slot 5.
fn header_defining_slot_5(text: &str) -> Vec<u8> {
    let mut h = vec![1, 0x08, 5, text.len() as u8];
    h.extend_from_slice(text.as_bytes());
    h
}

fn payload_atom(m: &ControlMessage) -> Term {
    match m {
        ControlMessage::SendSender(s) => s.message.clone(),
        other => panic!("unexpected {other:?}"),
    }
}

/// The first fragment of `terms` in `n` fragments, with `header`, and the
/// rest as continuation frames.
fn split(seq: u64, header: &[u8], terms: &[u8], n: usize) -> Vec<Vec<u8>> {
    let size = terms.len().div_ceil(n);
    let chunks: Vec<&[u8]> = terms.chunks(size).collect();
    assert_eq!(chunks.len(), n);
    let mut out = Vec::new();
    let mut first = header.to_vec();
    first.extend_from_slice(chunks[0]);
    out.push(frag(69, seq, n as u64, &first));
    for (i, c) in chunks[1..].iter().enumerate() {
        out.push(frag(70, seq, (n - 1 - i) as u64, c));
    }
    out
}

#[test]
fn a_message_in_one_fragment_with_atom_cache_refs() {
    let terms = terms_with_payload(&[82, 0]);
    let mut reader = connection(true);
    reader.handle_input(
        &split(7, &header_defining_slot_5("foo"), &terms, 1)[0],
        Instant::now(),
    );
    let got = drain(&mut reader);
    assert_eq!(got.len(), 1);
    assert_eq!(payload_atom(&got[0]), Term::from(Atom::from("foo")));
}

#[test]
fn references_are_resolved_when_the_first_fragment_arrives() {
    // Sequence 1 names slot 5 = foo; a frame between its fragments sets
    // slot 5 = bar; sequence 1 still means foo, and the cache keeps bar.
    let terms = terms_with_payload(&[82, 0]);
    let frags = split(1, &header_defining_slot_5("foo"), &terms, 3);
    let mut between = vec![131, 68];
    between.extend(header_defining_slot_5("bar"));
    between.extend(terms_with_payload(&[82, 0]));
    let mut between_frame = (between.len() as u32).to_be_bytes().to_vec();
    between_frame.extend(between);
    // A later frame that refers to slot 5 without redefining it.
    let mut after = vec![131, 68, 1, 0x00, 5];
    after.extend(terms_with_payload(&[82, 0]));
    let mut after_frame = (after.len() as u32).to_be_bytes().to_vec();
    after_frame.extend(after);

    let mut reader = connection(true);
    for bytes in [
        &frags[0],
        &between_frame,
        &frags[1],
        &frags[2],
        &after_frame,
    ] {
        reader.handle_input(bytes, Instant::now());
    }
    let atoms: Vec<Term> = drain(&mut reader).iter().map(payload_atom).collect();
    let a = |s: &str| Term::from(Atom::from(s));
    assert_eq!(atoms, [a("bar"), a("foo"), a("bar")]);
}

#[test]
fn interleaved_sequences_are_reassembled_apart() {
    let one = terms_with_payload(&[119, 3, b'o', b'n', b'e']);
    let two = terms_with_payload(&[119, 3, b't', b'w', b'o']);
    let a = split(1, &[0], &one, 3);
    let b = split(u64::MAX, &[0], &two, 2);
    let mut reader = connection(true);
    for bytes in [&a[0], &b[0], &a[1], &b[1], &a[2]] {
        reader.handle_input(bytes, Instant::now());
    }
    let atoms: Vec<Term> = drain(&mut reader).iter().map(payload_atom).collect();
    assert_eq!(
        atoms,
        [Term::from(Atom::from("two")), Term::from(Atom::from("one"))]
    );
}

/// The error `input` closes a fresh connection with.
fn refused(input: &[Vec<u8>]) -> ConnectionError {
    let mut reader = connection(true);
    for bytes in input {
        reader.handle_input(bytes, Instant::now());
        match reader.poll_message() {
            Ok(_) => {}
            Err(e) => {
                assert!(matches!(
                    reader.poll_message(),
                    Err(ConnectionError::Closed)
                ));
                return e;
            }
        }
    }
    panic!("accepted");
}

fn fragment_error(input: &[Vec<u8>]) -> FragmentError {
    match refused(input) {
        ConnectionError::Fragment(e) => e,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn out_of_protocol_fragments_close_the_connection() {
    let terms = terms_with_payload(&[106]);
    let good = split(4, &[0], &terms, 3);
    assert_eq!(
        fragment_error(&[frag(70, 9, 1, &[1, 2])]),
        FragmentError::UnknownSequence { seq: 9 }
    );
    assert_eq!(
        fragment_error(&[good[0].clone(), good[2].clone()]),
        FragmentError::OutOfOrder {
            seq: 4,
            expected: 2,
            found: 1
        }
    );
    assert_eq!(
        fragment_error(&[good[0].clone(), frag(70, 4, 7, &[1])]),
        FragmentError::OutOfOrder {
            seq: 4,
            expected: 2,
            found: 7
        }
    );
    assert_eq!(
        fragment_error(&[good[0].clone(), good[0].clone()]),
        FragmentError::SequenceOpen { seq: 4 }
    );
    assert_eq!(
        fragment_error(&[frag(69, 4, 0, &[0])]),
        FragmentError::ZeroId { seq: 4 }
    );
    assert_eq!(
        fragment_error(&[vec![0, 0, 0, 5, 131, 70, 0, 0, 0]]),
        FragmentError::Truncated
    );
    // A continuation after the message completed.
    let mut done = split(4, &[0], &terms, 2);
    done.push(frag(70, 4, 1, &[1]));
    assert_eq!(
        fragment_error(&done),
        FragmentError::UnknownSequence { seq: 4 }
    );
    // A bad header in a first fragment.
    assert!(matches!(
        fragment_error(&[frag(69, 4, 2, &[1, 0x00, 5])]),
        FragmentError::Header(_)
    ));
}

#[test]
fn a_reassembled_message_is_checked_like_a_frame() {
    // Garbage terms pass reassembly and fail the term walk.
    let e = refused(&split(1, &[0], &[255, 1, 2, 3], 2));
    assert!(matches!(e, ConnectionError::Header(_)), "{e:?}");
}

#[test]
fn limits_bound_partial_messages() {
    // Too many open at once.
    let open: Vec<Vec<u8>> = (0..=MAX_PARTIAL_MESSAGES as u64)
        .map(|seq| frag(69, seq, 2, &[0]))
        .collect();
    assert_eq!(
        fragment_error(&open),
        FragmentError::TooManyPartial {
            max: MAX_PARTIAL_MESSAGES
        }
    );
    // One message past the frame limit, in fragments each under it.
    let chunk = vec![0u8; MAX_FRAME / 2];
    let mut big = vec![frag(69, 1, 10, &[0])];
    big.extend((0..3).map(|i| frag(70, 1, 9 - i, &chunk)));
    assert_eq!(
        fragment_error(&big),
        FragmentError::MessageTooLarge { max: MAX_FRAME }
    );
    // Several messages, each under the limit, holding too much together.
    let mut many = Vec::new();
    for seq in 0..3 {
        many.push(frag(69, seq, 10, &[0]));
        many.push(frag(70, seq, 9, &chunk));
        many.push(frag(70, seq, 8, &chunk[1..]));
    }
    assert_eq!(
        fragment_error(&many),
        FragmentError::TooMuchHeld { max: 2 * MAX_FRAME }
    );
}

/// A reassembled message of `LARGE_MESSAGE_BYTES` or more comes out of
/// `poll` undecoded, naming its sender, for the driver to decode off the
/// reader; decoded, it is the message sent. Smaller ones, and a `SEND`
/// (which names no sender), are decoded in place.
#[test]
fn large_reassembled_messages_come_out_for_decoding_elsewhere() {
    use super::incoming::{Polled, LARGE_MESSAGE_BYTES};
    let config = ConnectionConfig {
        max_frame_bytes: 4 * LARGE_MESSAGE_BYTES,
        ..config()
    };
    let conn = |c: &ConnectionConfig| {
        Connection::new(
            &peer(true),
            flags::ADVERTISED,
            c,
            Vec::new(),
            Instant::now(),
        )
    };
    let big = message(3, binary(LARGE_MESSAGE_BYTES + 10, 2));
    let small = message(4, binary(2 * FRAGMENT_SIZE, 3));
    let anonymous = ControlMessage::send(pid(1000), binary(LARGE_MESSAGE_BYTES + 10, 4));
    let mut writer = conn(&config);
    let mut wire = Vec::new();
    for m in [&big, &small, &anonymous] {
        assert!(writer.send(frame(m), Instant::now()).is_empty());
        wire.extend(fragments(&mut writer).concat());
    }
    let mut reader = conn(&config);
    reader.handle_input(&wire, Instant::now());
    match reader.incoming.poll().unwrap() {
        Some(Polled::Large { sender, message }) => {
            assert_eq!(sender, pid(3));
            assert_eq!(message.decode().unwrap(), big);
        }
        other => panic!("expected the large message, got {other:?}"),
    }
    assert!(matches!(reader.incoming.poll().unwrap(), Some(Polled::Message(m)) if m == small));
    assert!(matches!(reader.incoming.poll().unwrap(), Some(Polled::Message(m)) if m == anonymous));
    assert!(reader.incoming.poll().unwrap().is_none());
}

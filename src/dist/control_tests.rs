//! The control message decoder and encoder: every operation, the limits,
//! and the checks the BEAM makes (senders, 64-bit ids, duplicate map keys).

use super::*;
use crate::dist::atom_cache::AtomCache;
use crate::dist::frame::{parse_frame, Frame};
use eetf::{List, Pid, Reference};

fn pid(id: u32) -> Pid {
    Pid::new("a@127.0.0.1", id, 0, 7)
}

/// Encodes, then decodes both wire forms; they must agree.
/// The BEAM sends `spawn_request(N, m, f, [1, 2], [])`'s arguments as a
/// `STRING_EXT`; erl_dist alone would refuse the message.
#[test]
fn spawn_requests_with_string_encoded_arguments_decode() {
    let reference = eetf::Reference {
        node: Atom::from("a@h"),
        id: vec![1, 2, 3],
        creation: 7,
    };
    let control = Term::from(Tuple::from(vec![
        op(29),
        reference.clone().into(),
        pid(1).into(),
        pid(2).into(),
        Term::from(Tuple::from(vec![
            Atom::from("m").into(),
            Atom::from("f").into(),
            FixInteger::from(2).into(),
        ])),
        Term::from(eetf::List::nil()),
    ]));
    let mut body = Vec::new();
    control.encode(&mut body).unwrap();
    Term::from(eetf::ByteList::from(vec![1u8, 2]))
        .encode(&mut body)
        .unwrap();
    let Message::SpawnRequest(m) = decode(&body, &Limits::default()).unwrap() else {
        panic!("not a spawn request");
    };
    assert_eq!(m.req_id, reference);
    assert_eq!(m.mfa.arity.value, 2);
    assert_eq!(
        m.arg_list.elements,
        vec![FixInteger::from(1).into(), FixInteger::from(2).into()]
    );
    // A malformed one is refused, not half-read.
    let mut bad = Vec::new();
    Term::from(Tuple::from(vec![op(29), Atom::from("x").into()]))
        .encode(&mut bad)
        .unwrap();
    Term::from(eetf::List::nil()).encode(&mut bad).unwrap();
    assert!(decode(&bad, &Limits::default()).is_err());
}

fn roundtrip(message: Message) -> Message {
    let limits = Limits::default();
    let frame = encode(message).unwrap();
    let pass_through = frame.clone().into_pass_through();
    let Some((Frame::PassThrough(body), used)) = parse_frame(&pass_through, 1 << 20).unwrap()
    else {
        panic!("not a pass-through frame")
    };
    assert_eq!(used, pass_through.len());
    let plain = decode(body, &limits).unwrap();
    let with_header = frame.into_header_form();
    let Some((Frame::WithHeader(body), _)) = parse_frame(&with_header, 1 << 20).unwrap() else {
        panic!("not a header frame")
    };
    let mut expanded = Vec::new();
    AtomCache::new()
        .expand(body, &limits, &mut expanded)
        .unwrap();
    assert_eq!(decode(&expanded, &limits).unwrap(), plain);
    plain
}

#[test]
fn every_message_we_send_round_trips() {
    let reference = Reference {
        node: Atom::from("a@127.0.0.1"),
        id: vec![1, 2, 3],
        creation: 7,
    };
    let negatives = Term::from(List::from(vec![
        Term::from(FixInteger::from(-1)),
        Term::from(FixInteger::from(2)),
    ]));
    let messages = vec![
        Message::link(pid(1), pid(2)),
        Message::send(pid(1), negatives.clone()),
        Message::exit(pid(1), pid(2), negatives.clone()),
        Message::reg_send(pid(1), Atom::from("echo"), negatives.clone()),
        Message::exit2(pid(1), pid(2), Atom::from("kill").into()),
        Message::monitor_p(
            pid(1),
            erl_dist::term::PidOrAtom::Atom(Atom::from("x")),
            reference.clone(),
        ),
        Message::demonitor_p(
            pid(1),
            erl_dist::term::PidOrAtom::Pid(pid(3)),
            reference.clone(),
        ),
        Message::monitor_p_exit(
            erl_dist::term::PidOrAtom::Pid(pid(3)),
            pid(1),
            reference.clone(),
            Atom::from("noproc").into(),
        ),
        Message::unlink_id(FixInteger::from(9).into(), pid(1), pid(2)),
        Message::unlink_id_ack(FixInteger::from(9).into(), pid(2), pid(1)),
        Message::alias_send(pid(1), reference.clone(), negatives.clone()),
        Message::payload_exit(pid(1), pid(2), negatives),
    ];
    for message in messages {
        assert_eq!(roundtrip(message.clone()), message);
    }
}

#[test]
fn error_text_from_a_huge_term_is_bounded() {
    // A control "tuple" that is a list of 100 000 atoms: erl_dist's
    // error prints the term; the error keeps its first bytes only.
    let list = List::from(vec![Term::from(Atom::from("abcdefgh")); 100_000]);
    let mut body = Vec::new();
    etf::encode_term(&Term::from(list), &mut body).unwrap();
    let Err(ControlError::Malformed(text)) = decode(&body, &Limits::default()) else {
        panic!("accepted a list as a control message")
    };
    assert!(text.len() <= MAX_ERROR_TEXT + 3, "{} bytes", text.len());
    assert!(text.ends_with("..."));
    assert_eq!(bounded_text(&"é".repeat(10), 5), "éé...");
    assert_eq!(bounded_text(&"abc", 5), "abc");
}

/// `{1 => 2, 1 => 3}` without its version byte.
const DUPLICATE_KEYS: [u8; 13] = [116, 0, 0, 0, 2, 97, 1, 97, 2, 97, 1, 97, 3];

#[test]
fn duplicate_map_keys_are_refused_in_the_control_message_and_the_payload() {
    let refused = |body: &[u8]| {
        matches!(
            decode(body, &Limits::default()),
            Err(ControlError::Term(TermError::DuplicateMapKeys))
        )
    };
    // SEND with the map as its payload.
    let mut body = Vec::new();
    etf::encode_term(
        &Tuple::from(vec![op(2), empty_atom(), pid(2).into()]).into(),
        &mut body,
    )
    .unwrap();
    let mut send = body.clone();
    send.push(131);
    send.extend_from_slice(&DUPLICATE_KEYS);
    assert!(refused(&send));
    // EXIT with the map as its reason, inside the control tuple.
    let mut exit = Vec::new();
    etf::encode_term(
        &Tuple::from(vec![op(3), pid(1).into(), pid(2).into()]).into(),
        &mut exit,
    )
    .unwrap();
    assert_eq!(exit[1..3], [104, 3]);
    exit[2] = 4;
    exit.extend_from_slice(&DUPLICATE_KEYS);
    assert!(refused(&exit));
    // The same map with distinct keys passes, both ways.
    let mut fine = send.clone();
    *fine.last_mut().unwrap() = 3;
    let n = fine.len();
    fine[n - 3] = 4; // keys 1 and 4
    assert!(decode(&fine, &Limits::default()).is_ok());
    // Through the atom cache (the path of header, fragmented and large
    // messages): the same check, since all of them end in decode_checked.
    let frame = encode(Message::exit(pid(1), pid(2), Atom::from("x").into()))
        .unwrap()
        .into_header_form();
    let Some((Frame::WithHeader(header_body), _)) = parse_frame(&frame, 1 << 20).unwrap() else {
        panic!("not a header frame")
    };
    let mut expanded = Vec::new();
    AtomCache::new()
        .expand(header_body, &Limits::default(), &mut expanded)
        .unwrap();
    // Replace the reason 'x' (the last term) with the map.
    let x = expanded
        .iter()
        .rposition(|&b| b == 119 || b == 100)
        .unwrap();
    expanded.truncate(x);
    expanded.extend_from_slice(&DUPLICATE_KEYS);
    assert!(matches!(
        decode_checked(CheckedBody::vouched(&expanded)),
        Err(ControlError::Term(TermError::DuplicateMapKeys))
    ));
}

#[test]
fn unlink_ids_must_be_integers_of_64_bits() {
    let unlink = |id: Term| {
        let mut body = Vec::new();
        etf::encode_term(
            &Tuple::from(vec![op(35), id, pid(1).into(), pid(2).into()]).into(),
            &mut body,
        )
        .unwrap();
        decode(&body, &Limits::default())
    };
    let big = |shift: usize, minus_one: bool| {
        let mut value = eetf::BigInteger::from(1i64).value;
        value <<= shift;
        if minus_one {
            value -= 1;
        }
        Term::from(eetf::BigInteger { value })
    };
    assert!(unlink(FixInteger::from(7).into()).is_ok());
    assert!(unlink(big(64, true)).is_ok());
    for bad in [
        big(64, false),
        big(200, false),
        FixInteger::from(-1).into(),
        Atom::from("x").into(),
    ] {
        assert!(matches!(unlink(bad), Err(ControlError::Malformed(_))));
    }
}

#[test]
fn rejects_trailing_garbage_and_bad_shapes() {
    let out = encode(Message::link(pid(1), pid(2)))
        .unwrap()
        .into_pass_through();
    let mut body = out[5..].to_vec();
    body.extend_from_slice(&[131, 106, 0]);
    assert!(matches!(
        decode(&body, &Limits::default()),
        Err(ControlError::TrailingBytes(1))
    ));
    // {999} is not an operation we know.
    let mut body = Vec::new();
    etf::encode_term(&Tuple::from(vec![op(999)]).into(), &mut body).unwrap();
    assert!(matches!(
        decode(&body, &Limits::default()),
        Err(ControlError::Malformed(_))
    ));
    // Not a tuple at all.
    assert!(decode(&[131, 106], &Limits::default()).is_err());
}

/// `SEND_TT` as the BEAM sends it, `{12, '', ToPid, TraceToken}` and the
/// message: `erl_dist` 0.8 reads the last two elements swapped, refusing
/// it when the token is not a pid (found by the `control` fuzz target:
/// our own encoding of it was refused).
#[test]
fn send_tt_decodes_in_the_order_the_beam_sends_it() {
    let token = Term::from(Tuple::from(vec![Atom::from("token").into(), op(1)]));
    let control = Term::from(Tuple::from(vec![
        op(12),
        Atom::from("").into(),
        pid(1).into(),
        token.clone(),
    ]));
    let mut body = Vec::new();
    control.encode(&mut body).unwrap();
    Term::from(Atom::from("hello")).encode(&mut body).unwrap();
    let Message::SendTt(m) = decode(&body, &Limits::default()).unwrap() else {
        panic!("not a SEND_TT");
    };
    assert_eq!((m.to_pid, m.trace_token), (pid(1), token));
    assert_eq!(m.message, Term::from(Atom::from("hello")));
}

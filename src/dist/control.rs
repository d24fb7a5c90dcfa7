//! Control messages: bounded decoding of a frame body into an
//! `erl_dist::message::Message`, and encoding of one into frame bytes.
//!
//! Decoding checks both terms of the body with [`etf::check_term`] before
//! `erl_dist` (through `eetf`) sees them, because `eetf` aborts or overflows
//! its stack on hostile input: only a [`CheckedBody`] reaches `eetf`, and
//! only a full check makes one (here, or the atom cache's expansion, which
//! checks while it copies). Encoding goes through [`etf::encode_term`]
//! instead of `Message::write_into`, because `eetf`'s encoder corrupts lists
//! of small integers that contain negatives.

use super::etf::{self, Limits, TermError};
use super::frame::OutFrame;
use crate::term::brief::bounded_text;
use eetf::{Atom, FixInteger, Term, Tuple};
use erl_dist::message::{Message, RecvError};
use thiserror::Error;

pub(crate) use erl_dist::message::Message as ControlMessage;

#[derive(Debug, Error)]
pub(crate) enum ControlError {
    #[error("bad term in control message: {0}")]
    Term(#[from] TermError),
    #[error("{0} trailing bytes after the control message and payload")]
    TrailingBytes(usize),
    #[error("malformed control message: {0}")]
    Malformed(String),
}

/// Longest text of an `erl_dist` error kept in [`ControlError::Malformed`]:
/// its messages can print the offending term, which the peer chose.
const MAX_ERROR_TEXT: usize = 200;

/// A control message and optional payload, each with its 131 version byte,
/// that passed the full check ([`etf::check_term`]'s, contents included)
/// within the connection's limits, with nothing after them: bytes `eetf`
/// can decode safely.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckedBody<'a>(&'a [u8]);

impl<'a> CheckedBody<'a> {
    /// Only for bytes that a contents-checking walk with the connection's
    /// limits has just accepted whole (`check_body`, or the atom cache's
    /// expansion, which writes them).
    pub(crate) fn vouched(bytes: &'a [u8]) -> Self {
        CheckedBody(bytes)
    }
}

/// Decodes a frame body (the bytes after the pass-through byte).
pub(crate) fn decode(body: &[u8], limits: &Limits) -> Result<Message, ControlError> {
    decode_checked(check_body(body, limits)?)
}

/// Checks a pass-through body: the control message, then the payload if
/// any bytes are left, and nothing after it.
pub(crate) fn check_body<'a>(
    body: &'a [u8],
    limits: &Limits,
) -> Result<CheckedBody<'a>, ControlError> {
    let control_len = etf::check_term(body, limits)?;
    let rest = &body[control_len..];
    if !rest.is_empty() {
        let payload_len = etf::check_term(rest, limits)?;
        if payload_len != rest.len() {
            return Err(ControlError::TrailingBytes(rest.len() - payload_len));
        }
    }
    Ok(CheckedBody(body))
}

/// Decodes a checked body with `erl_dist`: the operation and the shape of
/// its tuple are all that is left to refuse.
pub(crate) fn decode_checked(body: CheckedBody<'_>) -> Result<Message, ControlError> {
    let message = match decoded_here(body.0)? {
        Some(message) => message,
        None => Message::read_from(&mut &body.0[..]).map_err(|e| match e {
            RecvError::UnsupportedOp { op } => {
                ControlError::Malformed(format!("unsupported operation {op}"))
            }
            other => ControlError::Malformed(bounded_text(&other, MAX_ERROR_TEXT)),
        })?,
    };
    refuse_what_the_beam_refuses(&message, body)?;
    Ok(message)
}

/// What `erl_dist` accepts and the BEAM treats as an invalid message (which
/// drops the connection): an `UNLINK_ID(_ACK)` id that is not an integer of
/// 64 bits, and a map with duplicate keys anywhere in the message. Every
/// decoding path (plain, atom cache, fragments, large messages) ends here.
fn refuse_what_the_beam_refuses(
    message: &Message,
    body: CheckedBody<'_>,
) -> Result<(), ControlError> {
    if let Message::UnlinkId(erl_dist::message::UnlinkId { id, .. })
    | Message::UnlinkIdAck(erl_dist::message::UnlinkIdAck { id, .. }) = message
    {
        if !fits_u64(id) {
            return Err(ControlError::Malformed(
                "UNLINK_ID id is not an integer of 64 bits".into(),
            ));
        }
    }
    // eetf merged duplicate keys: fewer entries than the wire's pairs. The
    // bytes are rescanned only when the message holds a map at all.
    let entries: usize = with_terms(message, etf::map_entries);
    if entries > 0 && etf::declared_map_pairs(body.0)? != entries {
        return Err(TermError::DuplicateMapKeys.into());
    }
    Ok(())
}

/// An integer in 0..2^64, as `UNLINK_ID` ids are (erts' `term_to_Uint64`).
fn fits_u64(id: &Term) -> bool {
    match id {
        Term::FixInteger(i) => i.value >= 0,
        Term::BigInteger(b) => u64::try_from(&b.value).is_ok(),
        _ => false,
    }
}

/// The sum of `f` over the terms of `message` that can hold a map (pids,
/// references and atoms cannot).
fn with_terms(message: &Message, f: impl Fn(&Term) -> usize) -> usize {
    use Message as M;
    let list = |l: &eetf::List| l.elements.iter().map(&f).sum::<usize>();
    match message {
        M::Send(m) => f(&m.message),
        M::SendTt(m) => f(&m.message) + f(&m.trace_token),
        M::SendSender(m) => f(&m.message),
        M::SendSenderTt(m) => f(&m.message) + f(&m.trace_token),
        M::RegSend(m) => f(&m.message),
        M::RegSendTt(m) => f(&m.message) + f(&m.trace_token),
        M::AliasSend(m) => f(&m.message),
        M::AliasSendTt(m) => f(&m.message) + f(&m.trace_token),
        M::Exit(m) => f(&m.reason),
        M::ExitTt(m) => f(&m.reason) + f(&m.trace_token),
        M::Exit2(m) => f(&m.reason),
        M::Exit2Tt(m) => f(&m.reason) + f(&m.trace_token),
        M::PayloadExit(m) => f(&m.reason),
        M::PayloadExitTt(m) => f(&m.reason) + f(&m.trace_token),
        M::PayloadExit2(m) => f(&m.reason),
        M::PayloadExit2Tt(m) => f(&m.reason) + f(&m.trace_token),
        M::MonitorPExit(m) => f(&m.reason),
        M::PayloadMonitorPExit(m) => f(&m.reason),
        M::SpawnRequest(m) => list(&m.opt_list) + list(&m.arg_list),
        M::SpawnRequestTt(m) => list(&m.opt_list) + list(&m.arg_list) + f(&m.trace_token),
        M::SpawnReplyTt(m) => f(&m.trace_token),
        M::UnlinkId(m) => f(&m.id),
        M::UnlinkIdAck(m) => f(&m.id),
        M::Link(_)
        | M::Unlink(_)
        | M::NodeLink(_)
        | M::GroupLeader(_)
        | M::MonitorP(_)
        | M::DemonitorP(_)
        | M::SpawnReply(_)
        | M::Tick => 0,
    }
}

/// The control message alone (the first term of `body`), as a term.
pub(crate) fn decode_control_term(body: CheckedBody<'_>) -> Result<Term, ControlError> {
    Term::decode(&mut &body.0[..])
        .map_err(|e| ControlError::Malformed(bounded_text(&e, MAX_ERROR_TEXT)))
}

/// `SPAWN_REQUEST(_TT)`, decoded here rather than by `erl_dist`, which
/// wants its argument list as a `LIST_EXT`: the BEAM sends a list of small
/// integers (`[1, 2]`) as a `STRING_EXT`; and `SEND_TT` (see [`send_tt`]).
/// `None` for every other operation.
fn decoded_here(body: &[u8]) -> Result<Option<Message>, ControlError> {
    use erl_dist::message::{SpawnRequest, SpawnRequestTt};
    use erl_dist::term::Mfa;
    let malformed = || ControlError::Malformed("bad SPAWN_REQUEST".into());
    let mut reader = body;
    let control = Term::decode(&mut reader).map_err(|_| malformed())?;
    let Term::Tuple(Tuple { elements }) = control else {
        return Ok(None);
    };
    let op = match elements.first() {
        Some(Term::FixInteger(FixInteger {
            value: op @ (12 | 29 | 30),
        })) => *op,
        _ => return Ok(None),
    };
    if op == 12 {
        return send_tt(elements, reader).map(Some);
    }
    let args = Term::decode(&mut reader).map_err(|_| malformed())?;
    let as_list = |t: Term| match t {
        Term::List(l) => Ok(l),
        Term::ByteList(b) => Ok(eetf::List::from(
            b.bytes
                .iter()
                .map(|&x| Term::from(FixInteger::from(i32::from(x))))
                .collect::<Vec<_>>(),
        )),
        _ => Err(malformed()),
    };
    let mut e = elements.into_iter().skip(1);
    let mut next = || e.next().ok_or_else(malformed);
    let req_id = match next()? {
        Term::Reference(r) => *r,
        _ => return Err(malformed()),
    };
    let from_pid = match next()? {
        Term::Pid(p) => p,
        _ => return Err(malformed()),
    };
    let group_leader = match next()? {
        Term::Pid(p) => p,
        _ => return Err(malformed()),
    };
    let mfa = match next()? {
        Term::Tuple(t) => match <[Term; 3]>::try_from(t.elements) {
            Ok([Term::Atom(module), Term::Atom(function), Term::FixInteger(arity)]) => Mfa {
                module,
                function,
                arity,
            },
            _ => return Err(malformed()),
        },
        _ => return Err(malformed()),
    };
    let opt_list = as_list(next()?)?;
    let arg_list = as_list(args)?;
    Ok(Some(if op == 29 {
        Message::SpawnRequest(SpawnRequest {
            req_id,
            from_pid,
            group_leader,
            mfa,
            opt_list,
            arg_list,
        })
    } else {
        Message::SpawnRequestTt(SpawnRequestTt {
            req_id,
            from_pid,
            group_leader,
            mfa,
            opt_list,
            arg_list,
            trace_token: next()?,
        })
    }))
}

/// `SEND_TT`, `{12, Unused, ToPid, TraceToken}` (its `elements`) and the
/// message (next in `reader`): decoded here because `erl_dist` 0.8 reads
/// its last two elements swapped (its writer has them right), so a BEAM's
/// `SEND_TT` under `seq_trace` was refused as "not a pid" (found by the
/// `control` fuzz target, which checks that our own encoding decodes).
fn send_tt(elements: Vec<Term>, mut reader: &[u8]) -> Result<Message, ControlError> {
    use erl_dist::message::SendTt;
    let malformed = || ControlError::Malformed("bad SEND_TT".into());
    let Ok([_, _, Term::Pid(to_pid), trace_token]) = <[Term; 4]>::try_from(elements) else {
        return Err(malformed());
    };
    let message = Term::decode(&mut reader).map_err(|_| malformed())?;
    Ok(Message::SendTt(SendTt {
        to_pid,
        trace_token,
        message,
    }))
}

/// Encodes one frame, in distribution-header form (see [`OutFrame`]).
/// Ticks are not messages: see [`frame::write_tick`].
pub(crate) fn encode(message: Message) -> Result<OutFrame, TermError> {
    if matches!(message, Message::Tick) {
        return Err(TermError::Unencodable(
            "a tick is not a control message".into(),
        ));
    }
    let mut frame = OutFrame::begin();
    let (control, payload) = split(message);
    etf::encode_term_body(&Term::from(Tuple::from(control)), frame.buf())?;
    frame.end_control();
    if let Some(p) = payload {
        etf::encode_term_body(&p, frame.buf())?;
    }
    frame.finish();
    Ok(frame)
}

fn op(n: i32) -> Term {
    Term::from(FixInteger::from(n))
}

fn empty_atom() -> Term {
    Term::from(Atom::from(""))
}

/// The control tuple's elements and the payload term, per OTP's
/// "Protocol between connected nodes" table.
fn split(message: Message) -> (Vec<Term>, Option<Term>) {
    use Message as M;
    match message {
        M::Link(m) => (vec![op(1), m.from_pid.into(), m.to_pid.into()], None),
        M::Send(m) => (vec![op(2), empty_atom(), m.to_pid.into()], Some(m.message)),
        M::Exit(m) => (
            vec![op(3), m.from_pid.into(), m.to_pid.into(), m.reason],
            None,
        ),
        M::Unlink(m) => (vec![op(4), m.from_pid.into(), m.to_pid.into()], None),
        M::NodeLink(_) => (vec![op(5)], None),
        M::RegSend(m) => (
            vec![op(6), m.from_pid.into(), empty_atom(), m.to_name.into()],
            Some(m.message),
        ),
        M::GroupLeader(m) => (vec![op(7), m.from_pid.into(), m.to_pid.into()], None),
        M::Exit2(m) => (
            vec![op(8), m.from_pid.into(), m.to_pid.into(), m.reason],
            None,
        ),
        M::SendTt(m) => (
            vec![op(12), empty_atom(), m.to_pid.into(), m.trace_token],
            Some(m.message),
        ),
        M::ExitTt(m) => (
            vec![
                op(13),
                m.from_pid.into(),
                m.to_pid.into(),
                m.trace_token,
                m.reason,
            ],
            None,
        ),
        M::RegSendTt(m) => (
            vec![
                op(16),
                m.from_pid.into(),
                empty_atom(),
                m.to_name.into(),
                m.trace_token,
            ],
            Some(m.message),
        ),
        M::Exit2Tt(m) => (
            vec![
                op(18),
                m.from_pid.into(),
                m.to_pid.into(),
                m.trace_token,
                m.reason,
            ],
            None,
        ),
        M::MonitorP(m) => (
            vec![
                op(19),
                m.from_pid.into(),
                m.to_proc.into(),
                m.reference.into(),
            ],
            None,
        ),
        M::DemonitorP(m) => (
            vec![
                op(20),
                m.from_pid.into(),
                m.to_proc.into(),
                m.reference.into(),
            ],
            None,
        ),
        M::MonitorPExit(m) => (
            vec![
                op(21),
                m.from_proc.into(),
                m.to_pid.into(),
                m.reference.into(),
                m.reason,
            ],
            None,
        ),
        M::SendSender(m) => (
            vec![op(22), m.from_pid.into(), m.to_pid.into()],
            Some(m.message),
        ),
        M::SendSenderTt(m) => (
            vec![op(23), m.from_pid.into(), m.to_pid.into(), m.trace_token],
            Some(m.message),
        ),
        M::PayloadExit(m) => (
            vec![op(24), m.from_pid.into(), m.to_pid.into()],
            Some(m.reason),
        ),
        M::PayloadExitTt(m) => (
            vec![op(25), m.from_pid.into(), m.to_pid.into(), m.trace_token],
            Some(m.reason),
        ),
        M::PayloadExit2(m) => (
            vec![op(26), m.from_pid.into(), m.to_pid.into()],
            Some(m.reason),
        ),
        M::PayloadExit2Tt(m) => (
            vec![op(27), m.from_pid.into(), m.to_pid.into(), m.trace_token],
            Some(m.reason),
        ),
        M::PayloadMonitorPExit(m) => (
            vec![
                op(28),
                m.from_proc.into(),
                m.to_pid.into(),
                m.reference.into(),
            ],
            Some(m.reason),
        ),
        M::SpawnRequest(m) => (
            vec![
                op(29),
                m.req_id.into(),
                m.from_pid.into(),
                m.group_leader.into(),
                m.mfa.into(),
                m.opt_list.into(),
            ],
            Some(m.arg_list.into()),
        ),
        M::SpawnRequestTt(m) => (
            vec![
                op(30),
                m.req_id.into(),
                m.from_pid.into(),
                m.group_leader.into(),
                m.mfa.into(),
                m.opt_list.into(),
                m.trace_token,
            ],
            Some(m.arg_list.into()),
        ),
        M::SpawnReply(m) => (
            vec![
                op(31),
                m.req_id.into(),
                m.to_pid.into(),
                m.flags.into(),
                m.result.into(),
            ],
            None,
        ),
        M::SpawnReplyTt(m) => (
            vec![
                op(32),
                m.req_id.into(),
                m.to_pid.into(),
                m.flags.into(),
                m.result.into(),
                m.trace_token,
            ],
            None,
        ),
        M::UnlinkId(m) => (vec![op(35), m.id, m.from_pid.into(), m.to_pid.into()], None),
        M::UnlinkIdAck(m) => (vec![op(36), m.id, m.from_pid.into(), m.to_pid.into()], None),
        M::AliasSend(m) => (
            vec![op(33), m.from_pid.into(), m.alias.into()],
            Some(m.message),
        ),
        M::AliasSendTt(m) => (
            vec![op(34), m.from_pid.into(), m.alias.into(), m.trace_token],
            Some(m.message),
        ),
        M::Tick => unreachable!("encode() refuses ticks before split()"),
    }
}

// In its own file for length; a child module, so it sees the private items.
#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;

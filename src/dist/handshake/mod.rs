//! The distribution handshake (protocol version 6, OTP 23+) as a sans-IO
//! state machine.
//!
//! Why not `erl_dist::handshake`: it is async and owns the socket, so it
//! cannot be driven from our own task with our own buffering and timeouts,
//! and it has defects that bite against real clusters: the client's answer
//! to an `alive` status is never flushed, the server cannot take the `alive`
//! path at all (after `salive` it must read the client's `strue`/`sfalse`),
//! and there is no way to answer `nok` to settle a simultaneous connect.
//!
//! Like quinn-proto or rustls, this module does no I/O and knows no clocks.
//! The driver reads socket bytes into a buffer and passes them to
//! [`Handshake::receive`], writes whatever [`Handshake::take_output`] returns,
//! and applies its own timeout. Every handshake message is a 2-byte
//! big-endian length followed by a body; each state knows the largest body
//! it can legitimately get, so an oversized length prefix is refused before
//! we wait for (and buffer) its bytes.
//!
//! On errors: once a call returns an error the handshake is over, but the
//! output may still hold a last status for the peer (`snot_allowed`, `snok`).
//! Write it before closing the socket.

use super::flags;

/// Node names are atoms: at most 255 characters, sent as latin-1 or UTF-8.
/// We take UTF-8 and cap the bytes, which is what bounds every message.
const MAX_NAME: usize = 255;
/// The only version number an old-format (`n`, pre-OTP-23) message carries.
const OLD_VERSION: u16 = 5;

// Largest body per message, so a peer cannot make us buffer 64 KiB of junk.
/// `N` flags:8 creation:4 len:2 name (the old `n` form is shorter).
const MAX_NAME_MSG: usize = 1 + 8 + 4 + 2 + MAX_NAME;
/// `s` + the longest status: `named:` len:2 name creation:4. We never ask
/// for a dynamic name, but reading the answer lets us say so clearly.
const MAX_STATUS_MSG: usize = 1 + 6 + 2 + MAX_NAME + 4;
/// `s` + `true` or `false`.
const MAX_ALIVE_REPLY_MSG: usize = 1 + 5;
/// `N` flags:8 challenge:4 creation:4 len:2 name.
const MAX_CHALLENGE_MSG: usize = 1 + 8 + 4 + 4 + 2 + MAX_NAME;
const COMPLEMENT_MSG: usize = 1 + 4 + 4;
const REPLY_MSG: usize = 1 + 4 + 16;
const ACK_MSG: usize = 1 + 16;

/// OTP 25+ may send the single `MANDATORY_25_DIGEST` bit instead of each of
/// these (`MANDATORY_DFLAGS_25` in kernel's dist.hrl) and expands it on
/// receipt; so do we, or we would refuse such peers for "missing" flags.
const MANDATORY_DFLAGS_25: u64 = flags::EXTENDED_REFERENCES
    | flags::FUN_TAGS
    | flags::EXTENDED_PIDS_PORTS
    | flags::NEW_FUN_TAGS
    | flags::EXPORT_PTR_TAG
    | flags::BIT_BINARIES
    | flags::NEW_FLOATS
    | flags::UTF8_ATOMS
    | flags::MAP_TAG
    | flags::BIG_CREATION
    | flags::HANDSHAKE_23;

// Peers without HANDSHAKE_23 would need old-format challenges we never send.
const _: () = assert!(flags::REQUIRED & flags::HANDSHAKE_23 != 0);

/// Who we are, as told to the peer.
#[derive(Clone)]
pub struct LocalIdentity {
    /// Full node name, `name@host`.
    pub name: String,
    /// Flags we advertise; normally [`flags::ADVERTISED`].
    pub flags: u64,
    /// Our creation (incarnation) number, as registered with EPMD; pids,
    /// ports and references we make carry it.
    pub creation: u32,
    /// The shared secret (`erlang:get_cookie/0`); never sent, only digested.
    pub cookie: String,
}

// Hand-written so the cookie never lands in a log line.
impl std::fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIdentity")
            .field("name", &self.name)
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("creation", &self.creation)
            .finish_non_exhaustive()
    }
}

/// The peer as it described itself. `flags` are the peer's own (with
/// `MANDATORY_25_DIGEST` expanded); usable features are `flags & ours`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Full node name, `name@host`.
    pub name: String,
    /// The peer's distribution flags (see [`flags`]).
    pub flags: u64,
    /// 0 if the peer never sent one (pre-OTP-23 formats only).
    pub creation: u32,
}

/// Status the server side answers to a peer's name (the driver decides it
/// after [`Event::NameReceived`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStatus {
    /// Go on.
    Ok,
    /// Go on; we had our own attempt to this peer pending and drop it.
    OkSimultaneous,
    /// Simultaneous connect and our own attempt wins: refuse this one.
    Nok,
    /// Refuse for policy reasons.
    NotAllowed,
    /// We already have a connection to this node name: ask the peer whether
    /// it is a new incarnation (it answers `strue`/`sfalse`).
    Alive,
}

impl ServerStatus {
    fn wire(self) -> &'static [u8] {
        match self {
            ServerStatus::Ok => b"ok",
            ServerStatus::OkSimultaneous => b"ok_simultaneous",
            ServerStatus::Nok => b"nok",
            ServerStatus::NotAllowed => b"not_allowed",
            ServerStatus::Alive => b"alive",
        }
    }
}

/// What [`Handshake`] tells its driver besides bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Server side: the peer said who it is. The driver must call
    /// [`Handshake::set_status`] next. From an OTP 23/24 peer using the old
    /// name format, `flags` has only the low 32 bits and `creation` is 0;
    /// `Established` carries the full values.
    NameReceived {
        /// The peer's full node name, `name@host`.
        name: String,
        /// The peer's distribution flags (see [`flags`]).
        flags: u64,
        /// The peer's creation, 0 in the old name format.
        creation: u32,
    },
    /// Server side, after [`ServerStatus::Alive`]: the peer answered `strue`
    /// (it is a new incarnation) *and* proved it has the cookie. The driver
    /// must drop its old connection to that node, then call `receive` again
    /// (no new input needed) to get `Established` and the final ack.
    ///
    /// Deliberately not raised on `strue` alone (OTP 25 also checks the
    /// cookie before waiting out the old connection): otherwise anyone who
    /// can reach our port could kill a live connection by claiming its name.
    AliveConfirmed,
    /// Handshake finished. Input bytes beyond the final handshake message
    /// were not consumed: they belong to the distribution stream.
    Established(PeerInfo),
}

/// Why a handshake failed; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The peer's challenge digest does not match ours: different cookies.
    #[error("cookie mismatch with {peer}")]
    CookieMismatch {
        /// The peer's node name.
        peer: String,
    },
    /// The peer answered `nok`: its own connection attempt to us wins. Not a
    /// real failure; the connection comes up the other way.
    #[error("peer answered nok: its simultaneous connection attempt wins")]
    PeerRefused,
    /// The peer answered `not_allowed`: it refuses us by policy.
    #[error("peer answered not_allowed")]
    NotAllowed,
    /// The peer answered `sfalse` to our `salive`: its old connection stands.
    #[error("peer says its existing connection to us is the live one")]
    AlreadyConnected,
    /// The peer does not offer every flag in [`flags::REQUIRED`].
    #[error("peer lacks required distribution flags {missing:#x}")]
    MissingFlags {
        /// The required flags the peer lacks.
        missing: u64,
    },
    /// Server side: the peer asked us to name it (`NAME_ME`); we answered
    /// `not_allowed`.
    #[error("peer on {host:?} asked for a dynamic node name, which we do not grant")]
    DynamicNameRefused {
        /// The host part the peer sent.
        host: String,
    },
    /// Client side: the peer answered `named:`, but we never ask for a name.
    #[error("peer assigned us a dynamic name we never asked for")]
    UnexpectedDynamicName,
    /// Server side: we answered `nok` or `not_allowed` as told.
    #[error("we refused the peer with status {status:?}")]
    Refused {
        /// The status we sent.
        status: ServerStatus,
    },
    /// Client side: the peer's name is not the node we dialled.
    #[error("connected to {expected} but the peer calls itself {got}")]
    WrongPeer {
        /// The node name we connected to.
        expected: String,
        /// The name the peer sent.
        got: String,
    },
    /// Client side: the server answered a status we do not know.
    #[error("unknown handshake status {status:?}")]
    UnknownStatus {
        /// The status text as received.
        status: String,
    },
    /// A handshake message is longer than we accept.
    #[error("{message} message of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Which handshake message.
        message: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A message arrived with a tag the current state does not expect.
    #[error("unexpected tag {tag:#04x} while waiting for {expected}")]
    UnexpectedMessage {
        /// The message we were waiting for.
        expected: &'static str,
        /// The tag byte received.
        tag: u8,
    },
    /// A handshake message does not parse.
    #[error("malformed {message} message: {reason}")]
    Malformed {
        /// Which handshake message.
        message: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A node name (ours or the peer's) is not a valid `name@host`.
    #[error("invalid node name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The driver called a method the current state does not allow.
    #[error("handshake misuse: {0}")]
    Misuse(&'static str),
}

/// MD5(cookie ++ decimal string of challenge), as OTP's `gen_digest/2`.
pub fn digest(challenge: u32, cookie: &str) -> [u8; 16] {
    let mut ctx = md5::Context::new();
    ctx.consume(cookie.as_bytes());
    ctx.consume(challenge.to_string().as_bytes());
    ctx.finalize().0
}

#[derive(Debug)]
enum State {
    ClientStatus,
    ClientChallenge,
    ClientAck,
    ServerName,
    /// Waiting for the driver's `set_status`.
    ServerDecide,
    /// Sent `salive`, waiting for `strue`/`sfalse`.
    ServerAliveReply,
    /// Waiting for the `c` complement that follows an old-format name.
    ServerComplement,
    ServerReply,
    /// Reply verified after `alive`; the ack for this challenge of the
    /// peer's waits until the driver has seen `AliveConfirmed`.
    ServerAliveConfirmed(u32),
    Established,
    /// Every later call returns this error again.
    Failed(HandshakeError),
}

impl State {
    /// The message this state waits for and its largest legitimate body.
    fn expects(&self) -> Option<(&'static str, usize)> {
        Some(match self {
            State::ClientStatus => ("status", MAX_STATUS_MSG),
            State::ClientChallenge => ("challenge", MAX_CHALLENGE_MSG),
            State::ClientAck => ("challenge_ack", ACK_MSG),
            State::ServerName => ("name", MAX_NAME_MSG),
            State::ServerAliveReply => ("alive reply", MAX_ALIVE_REPLY_MSG),
            State::ServerComplement => ("complement", COMPLEMENT_MSG),
            State::ServerReply => ("challenge_reply", REPLY_MSG),
            _ => return None,
        })
    }
}

/// Debug output is safe to log: `LocalIdentity` hides the cookie.
#[derive(Debug)]
pub struct Handshake {
    local: LocalIdentity,
    our_challenge: u32,
    /// Client: `name` is who we dialled, the rest comes from the challenge.
    /// Server: filled from the name message and complement.
    peer: PeerInfo,
    /// Server: the peer sent an old-format `n` name, so with `HANDSHAKE_23` its
    /// creation and high flags arrive in a complement after our challenge.
    peer_sent_old_name: bool,
    /// Server: we answered `alive` and the peer said `strue`.
    alive_confirmed: bool,
    state: State,
    out: Vec<u8>,
}

impl Handshake {
    /// Client side (we connected out to `peer_name`). Queues our `send_name`
    /// as the first output. An invalid local name is reported by the first
    /// `receive` call (even with empty input) and nothing is queued.
    pub fn client(local: LocalIdentity, peer_name: &str, our_challenge: u32) -> Self {
        let mut hs = Self::new(local, our_challenge, peer_name, State::ClientStatus);
        if !hs.is_failed() {
            // We never ask for a dynamic name: with NAME_ME the peer would
            // read our full name as a bare host name.
            let flags = hs.local.flags & !flags::NAME_ME;
            let name = hs.local.name.clone();
            let creation = hs.local.creation.to_be_bytes();
            hs.push_message(&[
                b"N",
                &flags.to_be_bytes(),
                &creation,
                &name_len(&name),
                name.as_bytes(),
            ]);
        }
        hs
    }

    /// Server side (we accepted a connection). An invalid local name is
    /// reported by the first `receive` call.
    pub fn server(local: LocalIdentity, our_challenge: u32) -> Self {
        Self::new(local, our_challenge, "", State::ServerName)
    }

    fn new(local: LocalIdentity, our_challenge: u32, peer_name: &str, state: State) -> Self {
        // Our name goes into length-prefixed fields, so check it up front.
        let state = match check_name(local.name.as_bytes(), true) {
            Ok(_) => state,
            Err(e) => State::Failed(e),
        };
        let peer = PeerInfo {
            name: peer_name.to_owned(),
            flags: 0,
            creation: 0,
        };
        Handshake {
            local,
            our_challenge,
            peer,
            peer_sent_old_name: false,
            alive_confirmed: false,
            state,
            out: Vec::new(),
        }
    }

    /// Feeds input. Consumes as many complete handshake messages as it can
    /// use now and returns how many bytes it consumed plus at most one event.
    /// Call again with the rest while it keeps consuming or returns events.
    /// Bytes after the final message are left unconsumed. `Ok((0, None))`
    /// means "need more input" (or, on the server, that `set_status` is due).
    pub fn receive(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), HandshakeError> {
        let mut used = 0;
        loop {
            match self.state {
                State::Failed(ref e) => return Err(e.clone()),
                State::ServerAliveConfirmed(their_challenge) => {
                    return Ok((used, Some(self.finish_server(their_challenge))));
                }
                _ => {}
            }
            let Some((message, max)) = self.state.expects() else {
                break;
            };
            let rest = input.get(used..).unwrap_or_default();
            let (body, len) = match frame(rest, message, max) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return Err(self.fail(e)),
            };
            used += len;
            match self.handle(body) {
                Ok(None) => {}
                Ok(Some(event)) => return Ok((used, Some(event))),
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok((used, None))
    }

    /// Bytes to write to the peer now (empties the internal output buffer).
    /// Also call it after an error: a final refusal status may be pending.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Server side only, after [`Event::NameReceived`]. `Nok` and
    /// `NotAllowed` queue the status, then end the handshake with
    /// [`HandshakeError::Refused`]: write the output, then close.
    pub fn set_status(&mut self, status: ServerStatus) -> Result<(), HandshakeError> {
        match &self.state {
            State::ServerDecide => {}
            State::Failed(e) => return Err(e.clone()),
            _ => return Err(HandshakeError::Misuse("set_status outside of NameReceived")),
        }
        self.push_message(&[b"s", status.wire()]);
        match status {
            ServerStatus::Ok | ServerStatus::OkSimultaneous => self.send_challenge(),
            ServerStatus::Alive => self.state = State::ServerAliveReply,
            ServerStatus::Nok | ServerStatus::NotAllowed => {
                return Err(self.fail(HandshakeError::Refused { status }));
            }
        }
        Ok(())
    }

    /// True once the handshake is established.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Established)
    }

    /// True once the handshake has failed; every further call errors.
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    fn fail(&mut self, e: HandshakeError) -> HandshakeError {
        self.state = State::Failed(e.clone());
        e
    }

    fn handle(&mut self, body: &[u8]) -> Result<Option<Event>, HandshakeError> {
        match self.state {
            State::ClientStatus => self.on_status(body),
            State::ClientChallenge => self.on_challenge(body),
            State::ClientAck => self.on_ack(body),
            State::ServerName => self.on_name(body),
            State::ServerAliveReply => self.on_alive_reply(body),
            State::ServerComplement => self.on_complement(body),
            State::ServerReply => self.on_reply(body),
            // `receive` frames no message in the other states.
            _ => Err(HandshakeError::Misuse("no message expected")),
        }
    }

    // ---- client side ----

    fn on_status(&mut self, body: &[u8]) -> Result<Option<Event>, HandshakeError> {
        match status_text(body, "status")? {
            b"ok" | b"ok_simultaneous" => {}
            b"nok" => return Err(HandshakeError::PeerRefused),
            b"not_allowed" => return Err(HandshakeError::NotAllowed),
            // The peer thinks an older connection from us is still up. We
            // only dial when we have no connection, so we are the new
            // incarnation: say so (erl_dist never flushed this answer).
            b"alive" => self.push_message(&[b"strue"]),
            s if s.starts_with(b"named:") => return Err(HandshakeError::UnexpectedDynamicName),
            s => return Err(unknown_status(s)),
        }
        self.state = State::ClientChallenge;
        Ok(None)
    }

    fn on_challenge(&mut self, body: &[u8]) -> Result<Option<Event>, HandshakeError> {
        let mut r = Reader::new(body, "challenge");
        let (flags, challenge, creation, raw_name) = match r.u8()? {
            b'N' => {
                let (flags, challenge, creation) = (r.u64()?, r.u32()?, r.u32()?);
                let len = r.u16()?;
                (flags, challenge, creation, r.take(usize::from(len))?)
            }
            // The old format comes from pre-OTP-23 peers, which lack
            // REQUIRED flags; an OTP 23+ peer must answer our `N` with `N`
            // (OTP refuses the mix too). Either way the handshake ends, and
            // we never owe a complement: only the side that sent an
            // old-format *name* sends one, and we always send `N`.
            b'n' => {
                r.version()?;
                let flags = u64::from(r.u32()?);
                if flags & (flags::HANDSHAKE_23 | flags::MANDATORY_25_DIGEST) != 0 {
                    return Err(r.malformed("old format from an OTP 23+ peer"));
                }
                // REQUIRED holds HANDSHAKE_23, which this peer lacks.
                let missing = flags::REQUIRED & !flags;
                return Err(HandshakeError::MissingFlags { missing });
            }
            tag => {
                return Err(HandshakeError::UnexpectedMessage {
                    expected: "challenge",
                    tag,
                });
            }
        };
        let name = check_name(raw_name, true)?;
        if name != self.peer.name {
            let expected = self.peer.name.clone();
            return Err(HandshakeError::WrongPeer {
                expected,
                got: name,
            });
        }
        let flags = expand(flags);
        check_required(flags, u64::MAX)?;
        self.peer.flags = flags;
        self.peer.creation = creation;
        let answer = digest(challenge, &self.local.cookie);
        self.push_message(&[b"r", &self.our_challenge.to_be_bytes(), &answer]);
        self.state = State::ClientAck;
        Ok(None)
    }

    fn on_ack(&mut self, body: &[u8]) -> Result<Option<Event>, HandshakeError> {
        self.check_digest(fixed(body, b'a', ACK_MSG, "challenge_ack")?)?;
        self.state = State::Established;
        Ok(Some(Event::Established(self.peer.clone())))
    }

    // ---- server side ----

    fn on_name(&mut self, body: &[u8]) -> Result<Option<Event>, HandshakeError> {
        let mut r = Reader::new(body, "name");
        let (flags, creation, raw_name, old) = match r.u8()? {
            b'N' => {
                let (flags, creation) = (r.u64()?, r.u32()?);
                let len = r.u16()?;
                (flags, creation, r.take(usize::from(len))?, false)
            }
            // OTP 23/24 still send this form when EPMD reports version 5
            // (OTP 25 always sends `N`).
            b'n' => {
                r.version()?;
                (u64::from(r.u32()?), 0, r.rest(), true)
            }
            tag => {
                return Err(HandshakeError::UnexpectedMessage {
                    expected: "name",
                    tag,
                });
            }
        };
        let flags = expand(flags);
        if flags & flags::NAME_ME != 0 {
            // With NAME_ME the name field holds only the host.
            let host = check_name(raw_name, false)?;
            self.push_message(&[b"s", ServerStatus::NotAllowed.wire()]);
            return Err(HandshakeError::DynamicNameRefused { host });
        }
        let name = check_name(raw_name, true)?;
        // The old format carries only the low 32 flag bits; the rest is
        // checked when the complement arrives.
        let known = if old { u64::from(u32::MAX) } else { u64::MAX };
        if let Err(e) = check_required(flags, known) {
            // As OTP does: tell the peer before hanging up.
            self.push_message(&[b"s", ServerStatus::NotAllowed.wire()]);
            return Err(e);
        }
        self.peer = PeerInfo {
            name: name.clone(),
            flags,
            creation,
        };
        self.peer_sent_old_name = old;
        self.state = State::ServerDecide;
        Ok(Some(Event::NameReceived {
            name,
            flags,
            creation,
        }))
    }

    fn on_alive_reply(&mut self, body: &[u8]) -> Result<Option<Event>, HandshakeError> {
        match status_text(body, "alive reply")? {
            b"true" => {
                self.alive_confirmed = true;
                self.send_challenge();
                Ok(None)
            }
            b"false" => Err(HandshakeError::AlreadyConnected),
            s => Err(unknown_status(s)),
        }
    }

    /// Always the new `N` form: `REQUIRED` holds `HANDSHAKE_23` (asserted at
    /// compile time near the top), so every peer that gets this far can read it.
    fn send_challenge(&mut self) {
        let name = self.local.name.clone();
        let flags = self.local.flags.to_be_bytes();
        let challenge = self.our_challenge.to_be_bytes();
        let creation = self.local.creation.to_be_bytes();
        let len = name_len(&name);
        self.push_message(&[b"N", &flags, &challenge, &creation, &len, name.as_bytes()]);
        self.state = if self.peer_sent_old_name {
            State::ServerComplement
        } else {
            State::ServerReply
        };
    }

    fn on_complement(&mut self, body: &[u8]) -> Result<Option<Event>, HandshakeError> {
        let mut r = Reader::new(
            fixed(body, b'c', COMPLEMENT_MSG, "complement")?,
            "complement",
        );
        let high = u64::from(r.u32()?);
        self.peer.creation = r.u32()?;
        self.peer.flags = expand(self.peer.flags | (high << 32));
        check_required(self.peer.flags, u64::MAX)?;
        self.state = State::ServerReply;
        Ok(None)
    }

    fn on_reply(&mut self, body: &[u8]) -> Result<Option<Event>, HandshakeError> {
        let mut r = Reader::new(
            fixed(body, b'r', REPLY_MSG, "challenge_reply")?,
            "challenge_reply",
        );
        let their_challenge = r.u32()?;
        // A wrong cookie ends it here, before the ack: nothing more is sent.
        self.check_digest(r.rest())?;
        if self.alive_confirmed {
            self.state = State::ServerAliveConfirmed(their_challenge);
            return Ok(Some(Event::AliveConfirmed));
        }
        Ok(Some(self.finish_server(their_challenge)))
    }

    fn finish_server(&mut self, their_challenge: u32) -> Event {
        self.push_message(&[b"a", &digest(their_challenge, &self.local.cookie)]);
        self.state = State::Established;
        Event::Established(self.peer.clone())
    }

    // ---- shared ----

    fn check_digest(&self, got: &[u8]) -> Result<(), HandshakeError> {
        let want = digest(self.our_challenge, &self.local.cookie);
        // Constant-time compare: the digest is the one cookie-derived value
        // a peer gets to probe.
        let diff = want
            .iter()
            .zip(got)
            .fold(u8::from(got.len() != want.len()), |acc, (a, b)| {
                acc | (a ^ b)
            });
        if diff == 0 {
            Ok(())
        } else {
            Err(HandshakeError::CookieMismatch {
                peer: self.peer.name.clone(),
            })
        }
    }

    fn push_message(&mut self, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        // At most MAX_CHALLENGE_MSG: our name is checked to be at most
        // MAX_NAME bytes before anything is built.
        self.out.extend_from_slice(&(len as u16).to_be_bytes());
        for p in parts {
            self.out.extend_from_slice(p);
        }
    }
}

fn name_len(name: &str) -> [u8; 2] {
    // Checked names are at most MAX_NAME bytes.
    (name.len() as u16).to_be_bytes()
}

fn expand(flags: u64) -> u64 {
    if flags & flags::MANDATORY_25_DIGEST != 0 {
        flags | MANDATORY_DFLAGS_25
    } else {
        flags
    }
}

fn check_required(flags: u64, known: u64) -> Result<(), HandshakeError> {
    match flags::REQUIRED & known & !flags {
        0 => Ok(()),
        missing => Err(HandshakeError::MissingFlags { missing }),
    }
}

fn unknown_status(status: &[u8]) -> HandshakeError {
    HandshakeError::UnknownStatus {
        status: String::from_utf8_lossy(status).into_owned(),
    }
}

/// Splits one length-prefixed message off `input`: `Ok(None)` if it is not
/// all there yet. The length is judged before waiting for the body.
fn frame<'a>(
    input: &'a [u8],
    message: &'static str,
    max: usize,
) -> Result<Option<(&'a [u8], usize)>, HandshakeError> {
    let &[hi, lo, ..] = input else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > max {
        return Err(HandshakeError::Oversized { message, len, max });
    }
    if len == 0 {
        return Err(HandshakeError::Malformed {
            message,
            reason: "empty message",
        });
    }
    Ok(input.get(2..2 + len).map(|body| (body, 2 + len)))
}

/// The first byte of a (non-empty, framed) message body.
fn tag_of<'a>(body: &'a [u8], expected: &'static str) -> Result<(u8, &'a [u8]), HandshakeError> {
    match body.split_first() {
        Some((&tag, rest)) => Ok((tag, rest)),
        None => Err(HandshakeError::Malformed {
            message: expected,
            reason: "empty message",
        }),
    }
}

/// A fixed-size message: checks the tag and exact size, returns the payload.
fn fixed<'a>(
    body: &'a [u8],
    tag: u8,
    size: usize,
    message: &'static str,
) -> Result<&'a [u8], HandshakeError> {
    match tag_of(body, message)? {
        (t, rest) if t == tag && body.len() == size => Ok(rest),
        (t, _) if t == tag => Err(HandshakeError::Malformed {
            message,
            reason: "wrong length",
        }),
        (t, _) => Err(HandshakeError::UnexpectedMessage {
            expected: message,
            tag: t,
        }),
    }
}

/// The text of an `s` status message.
fn status_text<'a>(body: &'a [u8], message: &'static str) -> Result<&'a [u8], HandshakeError> {
    match tag_of(body, message)? {
        (b's', text) => Ok(text),
        (tag, _) => Err(HandshakeError::UnexpectedMessage {
            expected: message,
            tag,
        }),
    }
}

/// A node name: at most 255 bytes of UTF-8 and, unless it is a bare host
/// (`NAME_ME`), `name@host` with exactly one '@' and both parts non-empty
/// (OTP's `dist_util:is_node_name/1`).
fn check_name(raw: &[u8], full: bool) -> Result<String, HandshakeError> {
    let bad = |reason| HandshakeError::InvalidName {
        name: String::from_utf8_lossy(raw).into_owned(),
        reason,
    };
    if raw.len() > MAX_NAME {
        return Err(bad("longer than 255 bytes"));
    }
    let name = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8"))?;
    let ok = match name.split_once('@') {
        _ if !full => !name.is_empty(),
        Some((alive, host)) => !alive.is_empty() && !host.is_empty() && !host.contains('@'),
        None => false,
    };
    if ok {
        Ok(name.to_owned())
    } else {
        Err(bad("not of the form name@host"))
    }
}

/// Big-endian reads from a message body; running short is `Malformed`.
struct Reader<'a> {
    buf: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], message: &'static str) -> Self {
        Reader { buf, message }
    }

    fn malformed(&self, reason: &'static str) -> HandshakeError {
        HandshakeError::Malformed {
            message: self.message,
            reason,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], HandshakeError> {
        if self.buf.len() < n {
            return Err(self.malformed("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], HandshakeError> {
        let bytes = self.take(N)?;
        bytes.try_into().map_err(|_| self.malformed("truncated"))
    }

    fn u8(&mut self) -> Result<u8, HandshakeError> {
        let [byte] = self.array()?;
        Ok(byte)
    }

    fn u16(&mut self) -> Result<u16, HandshakeError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, HandshakeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, HandshakeError> {
        self.array().map(u64::from_be_bytes)
    }

    /// The version field of an old-format message, which must be 5.
    fn version(&mut self) -> Result<(), HandshakeError> {
        match self.u16()? {
            OLD_VERSION => Ok(()),
            _ => Err(self.malformed("old-format version is not 5")),
        }
    }

    /// Everything left: old-format names run to the end of the message.
    /// (Bytes after a length-prefixed name are ignored, as OTP does.)
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests;

use super::*;

const CLIENT: &str = "client@127.0.0.1";
const SERVER: &str = "server@127.0.0.1";
const CLIENT_CHALLENGE: u32 = 0xC0FF_EE01;
const SERVER_CHALLENGE: u32 = 0x5E4F_E402;
/// Our flags without the `MANDATORY_25_DIGEST` shorthand, so that
/// dropping one of the flags it stands for is noticed.
const OLD_STYLE: u64 = flags::ADVERTISED & !flags::MANDATORY_25_DIGEST;

fn ident(name: &str, creation: u32, cookie: &str) -> LocalIdentity {
    LocalIdentity {
        name: name.into(),
        flags: flags::ADVERTISED,
        creation,
        cookie: cookie.into(),
    }
}

fn client_with(cookie: &str) -> Handshake {
    Handshake::client(ident(CLIENT, 11, cookie), SERVER, CLIENT_CHALLENGE)
}

fn server_with(cookie: &str) -> Handshake {
    Handshake::server(ident(SERVER, 22, cookie), SERVER_CHALLENGE)
}

/// Frames a body the way the wire does.
fn msg(body: &[u8]) -> Vec<u8> {
    let mut m = (body.len() as u16).to_be_bytes().to_vec();
    m.extend_from_slice(body);
    m
}

/// One end of an in-memory connection, driven the way the real driver
/// drives it: buffer input, call `receive` while it makes progress, answer
/// `NameReceived` with a fixed status.
struct Side {
    hs: Handshake,
    inbox: Vec<u8>,
    events: Vec<Event>,
    status: ServerStatus,
    result: Result<(), HandshakeError>,
}

impl Side {
    fn new(hs: Handshake) -> Self {
        Side {
            hs,
            inbox: Vec::new(),
            events: Vec::new(),
            status: ServerStatus::Ok,
            result: Ok(()),
        }
    }

    fn step(&mut self) {
        while self.result.is_ok() {
            match self.hs.receive(&self.inbox) {
                Ok((n, event)) => {
                    self.inbox.drain(..n);
                    let Some(event) = event else {
                        if n == 0 {
                            return;
                        }
                        continue;
                    };
                    if matches!(event, Event::NameReceived { .. }) {
                        self.result = self.hs.set_status(self.status);
                    }
                    self.events.push(event);
                }
                Err(e) => self.result = Err(e),
            }
        }
    }

    fn deliver(&mut self, bytes: &[u8], byte_by_byte: bool) {
        if byte_by_byte {
            for &b in bytes {
                self.inbox.push(b);
                self.step();
            }
        } else {
            self.inbox.extend_from_slice(bytes);
            self.step();
        }
    }
}

/// Shuttles output between the two ends until both fall silent; returns
/// everything each one wrote.
fn run(client: &mut Side, server: &mut Side, byte_by_byte: bool) -> (Vec<u8>, Vec<u8>) {
    let (mut from_client, mut from_server) = (Vec::new(), Vec::new());
    loop {
        let c = client.hs.take_output();
        let s = server.hs.take_output();
        if c.is_empty() && s.is_empty() {
            return (from_client, from_server);
        }
        from_client.extend_from_slice(&c);
        from_server.extend_from_slice(&s);
        server.deliver(&c, byte_by_byte);
        client.deliver(&s, byte_by_byte);
    }
}

fn pair(client_cookie: &str, server_cookie: &str) -> (Side, Side) {
    (
        Side::new(client_with(client_cookie)),
        Side::new(server_with(server_cookie)),
    )
}

fn established(name: &str, creation: u32) -> Event {
    Event::Established(PeerInfo {
        name: name.into(),
        flags: flags::ADVERTISED,
        creation,
    })
}

#[test]
fn client_and_server_complete_in_memory() {
    for byte_by_byte in [false, true] {
        let (mut c, mut s) = pair("cookie", "cookie");
        run(&mut c, &mut s, byte_by_byte);
        assert_eq!(c.result, Ok(()));
        assert_eq!(s.result, Ok(()));
        assert_eq!(c.events, vec![established(SERVER, 22)]);
        let name_received = Event::NameReceived {
            name: CLIENT.into(),
            flags: flags::ADVERTISED,
            creation: 11,
        };
        assert_eq!(s.events, vec![name_received, established(CLIENT, 11)]);
        assert!(c.hs.is_done() && s.hs.is_done());
        assert!(c.inbox.is_empty() && s.inbox.is_empty());
        // Done means done: further input belongs to the dist stream.
        assert_eq!(c.hs.receive(&[0, 0, 0, 0]), Ok((0, None)));
    }
}

#[test]
fn ok_simultaneous_continues() {
    let (mut c, mut s) = pair("k", "k");
    s.status = ServerStatus::OkSimultaneous;
    let (_, from_server) = run(&mut c, &mut s, false);
    assert!(from_server.starts_with(&msg(b"sok_simultaneous")));
    assert!(c.hs.is_done() && s.hs.is_done());
}

#[test]
fn wrong_cookie_is_caught_by_server_and_no_ack_is_sent() {
    let (mut c, mut s) = pair("alpha", "beta");
    let (_, from_server) = run(&mut c, &mut s, false);
    let mismatch = HandshakeError::CookieMismatch {
        peer: CLIENT.into(),
    };
    assert_eq!(s.result, Err(mismatch.clone()));
    assert!(!from_server.windows(3).any(|w| w == [0, 17, b'a']));
    assert!(s.hs.take_output().is_empty());
    // Still waiting for the ack that never comes; the driver times out.
    assert_eq!(c.result, Ok(()));
    assert!(!c.hs.is_done());
    // The failed machine keeps reporting why.
    assert_eq!(s.hs.receive(&[]), Err(mismatch));
    assert!(s.hs.is_failed());
}

#[test]
fn client_rejects_bad_ack() {
    let mut c = client_with("alpha");
    c.take_output();
    let mut input = msg(b"sok");
    let mut challenge = vec![b'N'];
    challenge.extend_from_slice(&flags::ADVERTISED.to_be_bytes());
    challenge.extend_from_slice(&7u32.to_be_bytes());
    challenge.extend_from_slice(&22u32.to_be_bytes());
    challenge.extend_from_slice(&(SERVER.len() as u16).to_be_bytes());
    challenge.extend_from_slice(SERVER.as_bytes());
    input.extend(msg(&challenge));
    assert_eq!(c.receive(&input), Ok((input.len(), None)));
    let mut reply = vec![b'r'];
    reply.extend_from_slice(&CLIENT_CHALLENGE.to_be_bytes());
    reply.extend_from_slice(&digest(7, "alpha"));
    assert_eq!(c.take_output(), msg(&reply));
    // A server with another cookie answers with its own digest.
    let mut ack = vec![b'a'];
    ack.extend_from_slice(&digest(CLIENT_CHALLENGE, "beta"));
    let err = HandshakeError::CookieMismatch {
        peer: SERVER.into(),
    };
    assert_eq!(c.receive(&msg(&ack)), Err(err));
}

#[test]
fn nok_refuses_both_ends() {
    let (mut c, mut s) = pair("k", "k");
    s.status = ServerStatus::Nok;
    let (_, from_server) = run(&mut c, &mut s, false);
    assert_eq!(from_server, msg(b"snok"));
    assert_eq!(c.result, Err(HandshakeError::PeerRefused));
    let refused = HandshakeError::Refused {
        status: ServerStatus::Nok,
    };
    assert_eq!(s.result, Err(refused));
}

#[test]
fn not_allowed_reaches_client() {
    let (mut c, mut s) = pair("k", "k");
    s.status = ServerStatus::NotAllowed;
    run(&mut c, &mut s, false);
    assert_eq!(c.result, Err(HandshakeError::NotAllowed));
}

#[test]
fn alive_path_completes() {
    for byte_by_byte in [false, true] {
        let (mut c, mut s) = pair("k", "k");
        s.status = ServerStatus::Alive;
        let (from_client, from_server) = run(&mut c, &mut s, byte_by_byte);
        assert!(from_server.starts_with(&msg(b"salive")));
        assert!(from_client.windows(7).any(|w| w == msg(b"strue")));
        assert!(c.hs.is_done() && s.hs.is_done());
        assert_eq!(s.events[1], Event::AliveConfirmed);
        assert_eq!(s.events[2], established(CLIENT, 11));
    }
}

#[test]
fn alive_is_confirmed_only_with_the_cookie() {
    let (mut c, mut s) = pair("alpha", "beta");
    s.status = ServerStatus::Alive;
    run(&mut c, &mut s, false);
    let mismatch = HandshakeError::CookieMismatch {
        peer: CLIENT.into(),
    };
    assert_eq!(s.result, Err(mismatch));
    assert!(!s.events.contains(&Event::AliveConfirmed));
}

#[test]
fn ack_after_alive_waits_for_the_driver() {
    let (mut c, mut s) = pair("k", "k");
    s.status = ServerStatus::Alive;
    c.deliver(&[], false);
    let mut input = c.hs.take_output();
    let (n, event) = s.hs.receive(&input).unwrap();
    input.drain(..n);
    assert!(matches!(event, Some(Event::NameReceived { .. })));
    s.hs.set_status(ServerStatus::Alive).unwrap();
    c.deliver(&s.hs.take_output(), false);
    input.extend(c.hs.take_output());
    let (n, event) = s.hs.receive(&input).unwrap();
    assert_eq!(n, input.len());
    assert_eq!(event, None);
    c.deliver(&s.hs.take_output(), false);
    let reply = c.hs.take_output();
    assert_eq!(
        s.hs.receive(&reply),
        Ok((21 + 2, Some(Event::AliveConfirmed)))
    );
    assert!(
        s.hs.take_output().is_empty(),
        "no ack before the driver acts"
    );
    assert!(!s.hs.is_done());
    let (n, event) = s.hs.receive(&[]).unwrap();
    assert_eq!((n, event), (0, Some(established(CLIENT, 11))));
    c.deliver(&s.hs.take_output(), false);
    assert!(c.hs.is_done());
}

#[test]
fn mandatory_25_digest_stands_for_the_old_flags() {
    let mut s = server_with("k");
    let compact = (flags::ADVERTISED & !MANDATORY_DFLAGS_25) | flags::MANDATORY_25_DIGEST;
    let (_, event) = s.receive(&client_name_message(compact)).unwrap();
    let Some(Event::NameReceived { flags, .. }) = event else {
        panic!("{event:?}");
    };
    assert_eq!(flags & flags::REQUIRED, flags::REQUIRED);
}

#[test]
fn alive_answered_false_means_already_connected() {
    let mut s = server_with("k");
    let name = client_name_message(flags::ADVERTISED);
    assert!(s.receive(&name).is_ok());
    s.set_status(ServerStatus::Alive).unwrap();
    assert_eq!(s.take_output(), msg(b"salive"));
    let err = HandshakeError::AlreadyConnected;
    assert_eq!(s.receive(&msg(b"sfalse")), Err(err));
    assert!(s.take_output().is_empty());
}

fn client_name_message(flags: u64) -> Vec<u8> {
    let mut body = vec![b'N'];
    body.extend_from_slice(&flags.to_be_bytes());
    body.extend_from_slice(&11u32.to_be_bytes());
    body.extend_from_slice(&(CLIENT.len() as u16).to_be_bytes());
    body.extend_from_slice(CLIENT.as_bytes());
    msg(&body)
}

#[test]
fn server_refuses_missing_required_flags() {
    let mut s = server_with("k");
    let input = client_name_message(OLD_STYLE & !flags::BIG_CREATION);
    let err = HandshakeError::MissingFlags {
        missing: flags::BIG_CREATION,
    };
    assert_eq!(s.receive(&input), Err(err));
    assert_eq!(s.take_output(), msg(b"snot_allowed"));
}

#[test]
fn client_refuses_missing_required_flags() {
    let mut c = Side::new(client_with("k"));
    let mut server_ident = ident(SERVER, 22, "k");
    server_ident.flags = OLD_STYLE & !flags::MAP_TAG;
    let mut s = Side::new(Handshake::server(server_ident, SERVER_CHALLENGE));
    let (from_client, _) = run(&mut c, &mut s, false);
    let err = HandshakeError::MissingFlags {
        missing: flags::MAP_TAG,
    };
    assert_eq!(c.result, Err(err));
    // The client hung up without answering the challenge.
    assert!(!from_client.windows(3).any(|w| w == [0, 21, b'r']));
}

#[test]
fn server_refuses_name_me() {
    let mut s = server_with("k");
    let mut body = vec![b'N'];
    body.extend_from_slice(&(flags::ADVERTISED | flags::NAME_ME).to_be_bytes());
    body.extend_from_slice(&0u32.to_be_bytes());
    body.extend_from_slice(&9u16.to_be_bytes());
    body.extend_from_slice(b"127.0.0.1");
    let err = HandshakeError::DynamicNameRefused {
        host: "127.0.0.1".into(),
    };
    assert_eq!(s.receive(&msg(&body)), Err(err));
    assert_eq!(s.take_output(), msg(b"snot_allowed"));
}

#[test]
fn client_never_asks_for_a_dynamic_name() {
    let mut local = ident(CLIENT, 11, "k");
    local.flags |= flags::NAME_ME;
    let mut c = Handshake::client(local, SERVER, 1);
    assert_eq!(c.take_output(), client_name_message(flags::ADVERTISED));
    let named = msg(b"snamed:\x00\x10client@127.0.0.1\x00\x00\x00\x01");
    let err = HandshakeError::UnexpectedDynamicName;
    assert_eq!(c.receive(&named), Err(err));
}

#[test]
fn client_refuses_impostor() {
    let mut c = Side::new(Handshake::client(
        ident(CLIENT, 11, "k"),
        "other@127.0.0.1",
        1,
    ));
    let mut s = Side::new(server_with("k"));
    run(&mut c, &mut s, false);
    let err = HandshakeError::WrongPeer {
        expected: "other@127.0.0.1".into(),
        got: SERVER.into(),
    };
    assert_eq!(c.result, Err(err));
}

#[test]
fn server_accepts_old_name_with_complement() {
    let mut s = server_with("k");
    let mut name = vec![b'n', 0, 5];
    name.extend_from_slice(&(flags::ADVERTISED as u32).to_be_bytes());
    name.extend_from_slice(CLIENT.as_bytes());
    let (_, event) = s.receive(&msg(&name)).unwrap();
    let expected = Event::NameReceived {
        name: CLIENT.into(),
        flags: flags::ADVERTISED & 0xFFFF_FFFF,
        creation: 0,
    };
    assert_eq!(event, Some(expected));
    s.set_status(ServerStatus::Ok).unwrap();
    let out = s.take_output();
    assert!(out.starts_with(&msg(b"sok")));
    assert_eq!(out[7], b'N', "a HANDSHAKE_23 peer gets the new challenge");
    let mut input = vec![b'c'];
    input.extend_from_slice(&((flags::ADVERTISED >> 32) as u32).to_be_bytes());
    input.extend_from_slice(&11u32.to_be_bytes());
    let mut input = msg(&input);
    let mut reply = vec![b'r'];
    reply.extend_from_slice(&99u32.to_be_bytes());
    reply.extend_from_slice(&digest(SERVER_CHALLENGE, "k"));
    input.extend(msg(&reply));
    let (n, event) = s.receive(&input).unwrap();
    assert_eq!(n, input.len());
    assert_eq!(event, Some(established(CLIENT, 11)));
    let mut ack = vec![b'a'];
    ack.extend_from_slice(&digest(99, "k"));
    assert_eq!(s.take_output(), msg(&ack));
}

#[test]
fn old_formats_without_handshake_23_are_refused() {
    let old_flags = (OLD_STYLE & !flags::HANDSHAKE_23) as u32;
    let mut s = server_with("k");
    let mut name = vec![b'n', 0, 5];
    name.extend_from_slice(&old_flags.to_be_bytes());
    name.extend_from_slice(CLIENT.as_bytes());
    let err = HandshakeError::MissingFlags {
        missing: flags::HANDSHAKE_23,
    };
    assert_eq!(s.receive(&msg(&name)), Err(err.clone()));
    assert_eq!(s.take_output(), msg(b"snot_allowed"));

    let challenge = |f: u32| {
        let mut body = vec![b'n', 0, 5];
        body.extend_from_slice(&f.to_be_bytes());
        body.extend_from_slice(&7u32.to_be_bytes());
        body.extend_from_slice(SERVER.as_bytes());
        let mut input = msg(b"sok");
        input.extend(msg(&body));
        client_with("k").receive(&input)
    };
    assert_eq!(challenge(old_flags), Err(err));
    assert!(matches!(
        challenge(flags::ADVERTISED as u32),
        Err(HandshakeError::Malformed { .. })
    ));
}

#[test]
fn digest_matches_erlang() {
    // erlang:md5(["cookie", integer_to_list(12345)]) on OTP 25.
    let want = [
        85, 99, 54, 14, 228, 127, 53, 159, 193, 203, 16, 126, 1, 5, 45, 8,
    ];
    assert_eq!(digest(12345, "cookie"), want);
    // The challenge is printed unsigned: erlang:md5(["c", "4294967295"]).
    let want = [
        182, 185, 66, 142, 240, 121, 252, 137, 234, 4, 187, 38, 187, 241, 160, 218,
    ];
    assert_eq!(digest(u32::MAX, "c"), want);
}

/// Splits a byte stream into its length-prefixed messages.
fn split(mut wire: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while wire.len() >= 2 {
        let len = 2 + usize::from(u16::from_be_bytes([wire[0], wire[1]]));
        out.push(&wire[..len]);
        wire = &wire[len..];
    }
    out
}

/// Feeds `wire` message by message, first checking that every proper
/// prefix of each message asks for more input.
fn check_truncations(hs: &mut Handshake, wire: &[u8], status: ServerStatus) {
    for m in split(wire) {
        for k in 0..m.len() {
            assert_eq!(hs.receive(&m[..k]), Ok((0, None)), "prefix {k} of {m:?}");
        }
        let (n, event) = hs.receive(m).unwrap();
        assert_eq!(n, m.len());
        match event {
            Some(Event::NameReceived { .. }) => hs.set_status(status).unwrap(),
            Some(Event::AliveConfirmed) => {
                let (n, event) = hs.receive(&[]).unwrap();
                assert_eq!(n, 0);
                assert!(matches!(event, Some(Event::Established(_))));
            }
            _ => {}
        }
    }
}

#[test]
fn truncated_messages_need_more_input() {
    for status in [ServerStatus::Ok, ServerStatus::Alive] {
        let (mut c, mut s) = pair("k", "k");
        s.status = status;
        let (from_client, from_server) = run(&mut c, &mut s, false);
        let mut client = client_with("k");
        check_truncations(&mut client, &from_server, status);
        assert!(client.is_done());
        let mut server = server_with("k");
        check_truncations(&mut server, &from_client, status);
        assert!(server.is_done());
    }
}

#[test]
fn leftover_bytes_after_ack_are_not_consumed() {
    let (mut c, mut s) = pair("k", "k");
    let (_, from_server) = run(&mut c, &mut s, false);
    let dist = [0, 0, 0, 0, 0, 0, 0, 3, 112, 1, 2];
    let mut client = client_with("k");
    let mut input = from_server.clone();
    input.extend_from_slice(&dist);
    let (n, event) = client.receive(&input).unwrap();
    assert_eq!(n, from_server.len());
    assert_eq!(event, Some(established(SERVER, 22)));
    assert_eq!(client.receive(&input[n..]), Ok((0, None)));
}

#[test]
fn oversized_prefixes_are_refused_before_buffering() {
    let mut c = client_with("k");
    let err = c.receive(&[0x01, 0x0D]).unwrap_err();
    assert!(matches!(err, HandshakeError::Oversized { len: 269, .. }));
    let mut s = server_with("k");
    let err = s.receive(&[0xFF, 0xFF]).unwrap_err();
    assert!(matches!(err, HandshakeError::Oversized { len: 65535, .. }));
    let err = server_with("k").receive(&[0, 0]).unwrap_err();
    assert!(matches!(err, HandshakeError::Malformed { .. }));
    // An ack is exactly 17 bytes.
    let mut c = client_with("k");
    let mut ch = vec![b'N'];
    ch.extend_from_slice(&flags::ADVERTISED.to_be_bytes());
    ch.extend_from_slice(&[0; 8]);
    ch.extend_from_slice(&(SERVER.len() as u16).to_be_bytes());
    ch.extend_from_slice(SERVER.as_bytes());
    let mut input = msg(b"sok");
    input.extend(msg(&ch));
    c.receive(&input).unwrap();
    let err = c.receive(&[0, 18]).unwrap_err();
    assert!(matches!(err, HandshakeError::Oversized { max: 17, .. }));
}

#[test]
fn bad_names_and_tags_are_typed_errors() {
    let name_msg = |name: &[u8]| {
        let mut body = vec![b'N'];
        body.extend_from_slice(&flags::ADVERTISED.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&(name.len() as u16).to_be_bytes());
        body.extend_from_slice(name);
        server_with("k").receive(&msg(&body))
    };
    for bad in [
        &b"\xff\xfe@host"[..],
        b"nohost",
        b"a@b@c",
        b"@host",
        b"name@",
    ] {
        assert!(
            matches!(name_msg(bad), Err(HandshakeError::InvalidName { .. })),
            "{bad:?}"
        );
    }
    // Name length field pointing past the end of the message.
    let mut body = vec![b'N'];
    body.extend_from_slice(&[0; 12]);
    body.extend_from_slice(&200u16.to_be_bytes());
    body.extend_from_slice(b"a@b");
    let err = server_with("k").receive(&msg(&body)).unwrap_err();
    assert!(matches!(err, HandshakeError::Malformed { .. }));
    let err = server_with("k").receive(&msg(b"Xjunk")).unwrap_err();
    let unexpected = HandshakeError::UnexpectedMessage {
        expected: "name",
        tag: b'X',
    };
    assert_eq!(err, unexpected);
    let err = client_with("k").receive(&msg(b"swhatever")).unwrap_err();
    assert!(matches!(err, HandshakeError::UnknownStatus { .. }));
    let err = client_with("k").receive(&msg(b"aok")).unwrap_err();
    assert!(matches!(err, HandshakeError::UnexpectedMessage { .. }));
}

#[test]
fn invalid_local_name_and_misuse_are_errors() {
    let mut c = Handshake::client(ident("nohost", 1, "k"), SERVER, 1);
    assert!(c.take_output().is_empty());
    let err = c.receive(&[]).unwrap_err();
    assert!(matches!(err, HandshakeError::InvalidName { .. }));
    let long = format!("{}@h", "x".repeat(300));
    let mut s = Handshake::server(ident(&long, 1, "k"), 1);
    assert!(s.receive(&[]).is_err());
    let mut c = client_with("k");
    let err = c.set_status(ServerStatus::Ok).unwrap_err();
    assert!(matches!(err, HandshakeError::Misuse(_)));
}

#[test]
fn debug_hides_the_cookie() {
    let text = format!("{:?}", ident(CLIENT, 1, "s3cret"));
    assert!(!text.contains("s3cret"));
}

/// Feeds `input` to the machine like a driver would; must never panic.
fn chew(hs: &mut Handshake, input: &[u8]) {
    let mut at = 0;
    while let Ok((n, event)) = hs.receive(&input[at..]) {
        if let Some(Event::NameReceived { .. }) = event {
            let _ = hs.set_status(ServerStatus::Ok);
        }
        if n == 0 && event.is_none() {
            break;
        }
        at += n;
    }
}

#[test]
fn random_input_never_panics() {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        // xorshift64
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut c, mut s) = pair("k", "k");
    let (from_client, from_server) = run(&mut c, &mut s, false);
    let (cm, sm) = (split(&from_client), split(&from_server));
    for i in 0..10_000 {
        let len = (next() % 300) as usize;
        let mut junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 1 && len >= 3 {
            // A plausible frame with a real tag, so parsing goes deeper.
            let body = (len - 2) as u16;
            junk[..2].copy_from_slice(&body.to_be_bytes());
            junk[2] = b"Nnsrac"[(next() % 6) as usize];
        }
        // Start each machine at a random valid point of the exchange.
        let depth = (next() % 4) as usize;
        let mut client = client_with("k");
        for m in sm.iter().take(depth.min(sm.len() - 1)) {
            chew(&mut client, m);
        }
        chew(&mut client, &junk);
        let mut server = server_with("k");
        for m in cm.iter().take(depth.min(cm.len() - 1)) {
            chew(&mut server, m);
        }
        chew(&mut server, &junk);
    }
}

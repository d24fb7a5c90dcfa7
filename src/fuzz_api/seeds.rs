//! Seeds for `fuzz/corpus/`, built with the node's own encoders (real
//! frames, headers, fragments and handshakes, as a BEAM peer sends them):
//! `cargo test --features fuzzing --lib fuzz_api::seeds -- --ignored`.

use super::*;
use crate::dist::control::ControlMessage;
use crate::dist::handshake::HandshakeError;
use crate::term::parse_term;
use eetf::{Atom, Pid, Reference};
use std::path::Path;

fn pid(id: u32) -> Pid {
    Pid::new("peer@127.0.0.1", id, 0, 1)
}

fn reference(n: u32) -> Reference {
    Reference::from(("peer@127.0.0.1", vec![n, 7, 9]))
}

fn terms() -> Vec<Term> {
    let literals = [
        "ok",
        "{ok, 1, -2, 3.5, \"abc\", <<\"bin\">>, <<1,2,3>>}",
        "[a, b | c]",
        "[1, [2, [3, []]], {}, 'Quoted atom']",
        "123456789012345678901234567890",
        "{lock, key, [x], 5000}",
    ];
    let mut out: Vec<Term> = literals.iter().map(|s| parse_term(s).unwrap()).collect();
    out.push(Term::from(pid(5)));
    out.push(Term::from(reference(3)));
    let mut map = std::collections::HashMap::new();
    map.insert(crate::term::atom("k"), crate::term::int(1));
    map.insert(crate::term::int(2), Term::from(pid(6)));
    out.push(Term::from(eetf::Map::from(map)));
    out
}

fn messages() -> Vec<ControlMessage> {
    let t = terms();
    vec![
        ControlMessage::send_sender(pid(1), pid(1000), t[1].clone()),
        ControlMessage::reg_send(pid(2), Atom::from("locker"), t[5].clone()),
        ControlMessage::send(pid(1000), t[3].clone()),
        ControlMessage::link(pid(3), pid(1000)),
        ControlMessage::exit(pid(3), pid(1000), t[0].clone()),
        ControlMessage::unlink_id(crate::term::int(9), pid(3), pid(1000)),
        ControlMessage::alias_send(pid(4), reference(1), t[2].clone()),
        ControlMessage::send_sender(pid(1), pid(1000), t[8].clone()),
    ]
}

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

/// `112 Control [Payload]` bodies of `messages()`.
fn pass_through_bodies() -> Vec<Vec<u8>> {
    messages()
        .into_iter()
        .map(|m| {
            let mut f = control::encode(m).unwrap();
            f.finish();
            f.into_pass_through()[5..].to_vec()
        })
        .collect()
}

/// The frames an outgoing half with the atom cache writes for `messages()`.
fn cached_frames() -> Vec<u8> {
    let peer = PeerInfo {
        name: "peer@127.0.0.1".into(),
        flags: flags::ADVERTISED,
        creation: 1,
    };
    let config = ConnectionConfig {
        net_ticktime: Duration::from_secs(60),
        max_frame_bytes: MAX_FRAME,
        term_limits: Limits::default(),
    };
    let now = Instant::now();
    let (_, mut out) = Connection::new(&peer, flags::ADVERTISED, &config, Vec::new(), now).split();
    let mut stream = Vec::new();
    for m in messages().into_iter().chain(messages()) {
        stream.extend_from_slice(out.send(control::encode(m).unwrap(), now));
    }
    stream
}

/// A message in three fragments, sequence `seq`, with a header that
/// defines cache slot 5 as `text`.
fn fragments(seq: u64) -> Vec<u8> {
    let m = ControlMessage::send_sender(pid(1), pid(1000), terms()[1].clone());
    let f = control::encode(m).unwrap();
    let terms = f.terms().to_vec();
    let size = terms.len().div_ceil(3);
    let mut stream = Vec::new();
    for (i, chunk) in terms.chunks(size).enumerate() {
        let first = i == 0;
        let mut body = vec![131, if first { 69 } else { 70 }];
        body.extend_from_slice(&seq.to_be_bytes());
        body.extend_from_slice(&(3 - i as u64).to_be_bytes());
        if first {
            body.extend_from_slice(&[1, 0x08, 5, 3]);
            body.extend_from_slice(b"abc");
        }
        body.extend_from_slice(chunk);
        stream.extend_from_slice(&(body.len() as u32).to_be_bytes());
        stream.extend_from_slice(&body);
    }
    stream
}

/// What each side of a complete handshake receives, as `mode`+chunk
/// inputs for the `handshake` target.
fn handshakes() -> Vec<(String, Vec<u8>)> {
    // As the server we are fuzz@ and receive what peer@ (the client)
    // sends; as the client we are fuzz@ and receive what peer@ sends.
    let (_, to_us_as_server) = handshake_between("peer@127.0.0.1", "fuzz@127.0.0.1");
    let (to_us_as_client, _) = handshake_between("fuzz@127.0.0.1", "peer@127.0.0.1");
    let mut out = Vec::new();
    for (chunk, name) in [(255u8, "whole"), (3, "chunks3")] {
        let mut s = vec![1, chunk];
        s.extend_from_slice(&to_us_as_server);
        out.push((format!("server_{name}"), s));
        let mut c = vec![0, chunk];
        c.extend_from_slice(&to_us_as_client);
        out.push((format!("client_{name}"), c));
    }
    out
}

/// A complete handshake in memory, with the challenges the `handshake`
/// target uses: what the client received, what the server received.
fn handshake_between(client_name: &str, server_name: &str) -> (Vec<u8>, Vec<u8>) {
    let ident = |name: &str| LocalIdentity {
        name: name.into(),
        flags: flags::ADVERTISED,
        creation: 3,
        cookie: "cookie".into(),
    };
    let mut client = Handshake::client(ident(client_name), server_name, 0x0102_0304);
    let mut server = Handshake::server(ident(server_name), 0x0506_0708);
    let (mut to_server, mut to_client) = (client.take_output(), Vec::new());
    let (mut got_server, mut got_client) = (Vec::new(), Vec::new());
    let step = |hs: &mut Handshake, inbox: &mut Vec<u8>| -> Result<Vec<u8>, HandshakeError> {
        loop {
            let (used, event) = hs.receive(inbox)?;
            inbox.drain(..used);
            if let Some(Event::NameReceived { .. }) = event {
                hs.set_status(ServerStatus::Ok)?;
            }
            if used == 0 && event.is_none() {
                break;
            }
        }
        Ok(hs.take_output())
    };
    for _ in 0..10 {
        got_server.extend_from_slice(&to_server);
        got_client.extend_from_slice(&to_client);
        let next_client = step(&mut client, &mut to_client).unwrap();
        let next_server = step(&mut server, &mut to_server).unwrap();
        to_server = next_client;
        to_client = next_server;
    }
    assert!(client.is_done() && server.is_done());
    (got_client, got_server)
}

#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn write_seeds() {
    // term: each term alone.
    for (i, t) in terms().iter().enumerate() {
        let mut b = Vec::new();
        etf::encode_term(t, &mut b).unwrap();
        write("term", &format!("term{i}"), &b);
    }
    // control: pass-through bodies.
    for (i, b) in pass_through_bodies().iter().enumerate() {
        write("control", &format!("msg{i}"), b);
    }
    // frame and incoming: whole streams (incoming: a chunk byte first).
    let mut pass = Vec::new();
    for b in pass_through_bodies() {
        pass.extend_from_slice(&(b.len() as u32 + 1).to_be_bytes());
        pass.push(112);
        pass.extend_from_slice(&b);
        pass.extend_from_slice(&frame::TICK);
    }
    let cached = cached_frames();
    let mut frag = fragments(1);
    frag.extend_from_slice(&cached);
    frag.extend_from_slice(&fragments(2));
    for (name, stream) in [("pass", &pass), ("cached", &cached), ("fragments", &frag)] {
        write("frame", name, stream);
        for chunk in [255u8, 7] {
            let mut s = vec![chunk];
            s.extend_from_slice(stream);
            write("incoming", &format!("{name}_{chunk}"), &s);
        }
    }
    // atom_cache: the bodies of the cached frames and of a first
    // fragment, each after a 2-byte length.
    let mut bodies = Vec::new();
    for stream in [&cached, &fragments(3)] {
        let mut rest = &stream[..];
        while rest.len() >= 4 {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let body = &rest[4..4 + len];
            if body.starts_with(&[131, 68]) || body.starts_with(&[131, 69]) {
                bodies.extend_from_slice(&(len as u16).to_be_bytes());
                bodies.extend_from_slice(body);
            }
            rest = &rest[4 + len..];
        }
    }
    write("atom_cache", "frames", &bodies);
    // handshake.
    for (name, input) in handshakes() {
        write("handshake", &name, &input);
    }
    // services: requests (decoder 0) and peer/host messages.
    let p = Term::from(pid(9));
    let services = [
        (
            0u8,
            crate::term::tuple(vec![
                crate::term::atom("lock"),
                crate::term::atom("k"),
                p.clone(),
                crate::term::atom("true"),
            ]),
        ),
        (
            0,
            crate::term::tuple(vec![
                crate::term::atom("register_name"),
                crate::term::atom("n"),
                p.clone(),
            ]),
        ),
        (
            0,
            crate::term::tuple(vec![
                crate::term::atom("whereis_name"),
                crate::term::atom("n"),
            ]),
        ),
        (
            0,
            crate::term::tuple(vec![
                crate::term::atom("subscribe_peer"),
                p.clone(),
                crate::term::int(2),
            ]),
        ),
        (
            0,
            crate::term::tuple(vec![
                crate::term::atom("started"),
                crate::term::int(4),
                p.clone(),
            ]),
        ),
        (0, crate::term::atom("keepalive")),
        (
            1,
            crate::term::tuple(vec![
                crate::term::atom("rust_registry"),
                crate::term::atom("peer@127.0.0.1"),
                crate::term::list(vec![]),
            ]),
        ),
        (
            2,
            crate::term::tuple(vec![
                crate::term::atom("start"),
                crate::term::int(1),
                crate::term::atom("svc"),
            ]),
        ),
        (
            4,
            crate::term::tuple(vec![crate::term::atom("ok"), p.clone()]),
        ),
    ];
    for (i, (which, t)) in services.iter().enumerate() {
        let mut b = vec![*which];
        etf::encode_term(t, &mut b).unwrap();
        write("services", &format!("msg{i}"), &b);
    }
    for (i, r) in [
        Request::WhereisName {
            name: crate::term::atom("n"),
        },
        Request::Subscribe { subscriber: pid(2) },
        Request::Status,
    ]
    .iter()
    .enumerate()
    {
        let mut b = vec![0];
        etf::encode_term(&r.encode(), &mut b).unwrap();
        write("services", &format!("req{i}"), &b);
    }
    // locker: a call sequence (even op bytes) and a trans_log cast (odd).
    let tag = Term::from(reference(1));
    let key = crate::term::atom("k");
    let v = crate::term::atom("v");
    let calls = [
        (
            0u8,
            crate::term::tuple(vec![
                crate::term::atom("get_write_lock"),
                key.clone(),
                crate::term::atom("not_found"),
                tag.clone(),
            ]),
        ),
        (
            2,
            crate::term::tuple(vec![
                crate::term::atom("write"),
                tag.clone(),
                key.clone(),
                v.clone(),
                crate::term::int(2000),
            ]),
        ),
        (
            2,
            crate::term::tuple(vec![
                crate::term::atom("wait_for_release"),
                key.clone(),
                crate::term::int(500),
            ]),
        ),
        (
            4,
            crate::term::tuple(vec![
                crate::term::atom("extend_lease"),
                tag.clone(),
                key.clone(),
                v.clone(),
                crate::term::int(3000),
            ]),
        ),
        (
            6,
            crate::term::tuple(vec![
                crate::term::atom("release"),
                key.clone(),
                v.clone(),
                tag.clone(),
            ]),
        ),
        (
            1,
            crate::term::tuple(vec![
                crate::term::atom("trans_log"),
                crate::term::atom("m@h"),
                crate::term::list(vec![
                    crate::term::tuple(vec![
                        crate::term::atom("write"),
                        key.clone(),
                        v.clone(),
                        crate::term::int(100),
                    ]),
                    crate::term::tuple(vec![crate::term::atom("release"), key.clone()]),
                ]),
            ]),
        ),
        (
            8,
            crate::term::tuple(vec![
                crate::term::atom("wait_for"),
                key.clone(),
                crate::term::int(0),
            ]),
        ),
        (0, crate::term::atom("summary")),
    ];
    let mut seq = Vec::new();
    for (op, t) in &calls {
        seq.push(*op);
        etf::encode_term(t, &mut seq).unwrap();
    }
    write("locker", "sequence", &seq);
    // locker: a catch-up request, then a peer's answer (merged).
    let mut peer = crate::quorum::store::Store::new(Default::default(), 0, "m@h");
    peer.mark_caught_up();
    let mut seq = Vec::new();
    for (op, t) in &calls[..2] {
        let _ = peer.call(0, t);
        seq.push(*op);
        etf::encode_term(t, &mut seq).unwrap();
    }
    let ask = crate::quorum::store::catch_up_request("m@h");
    seq.push(0);
    etf::encode_term(&ask, &mut seq).unwrap();
    seq.push(2);
    etf::encode_term(&peer.catch_up_reply(10).encode(), &mut seq).unwrap();
    write("locker", "catch_up", &seq);
}

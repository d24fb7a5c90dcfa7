//! A peer that sends and never reads what we send back: the bytes the node
//! queues for it stay bounded (busy limit, hard limit), a Rust sender is
//! slowed rather than failed, and atom-cache references cannot make the
//! node hold hundreds of times what the peer sent.
//!
//! The hostile peer completes a real handshake (the node's own sans-IO
//! handshake, as a client) and then writes raw frames.

mod common;
mod rust_node;

use common::BeamNode;
use erl_quorum::process::Mail;
use erl_quorum::term::{atom, binary, int, tuple, Atom, Pid, Term};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const BUSY: usize = 64 << 10;
const MAX: usize = 1 << 20;

async fn node(prefix: &str) -> erl_quorum::Node {
    rust_node::start_with(prefix, |c| c.with_outgoing_limits(BUSY, MAX)).await
}

fn pid_of(peer: &str, id: u32) -> Pid {
    Pid::new(Atom::from(peer), id, 0, 1)
}

fn encode(term: &Term) -> Vec<u8> {
    let mut out = Vec::new();
    term.encode(&mut out).expect("encode");
    out
}

/// A `REG_SEND` in pass-through form: `{6, From, '', To}` and `message`.
fn reg_send(from: &Pid, to: &str, message: &Term) -> Vec<u8> {
    let control = tuple(vec![int(6), Term::Pid(from.clone()), atom(""), atom(to)]);
    let mut body = vec![112];
    body.extend(encode(&control));
    body.extend(encode(message));
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

/// `{'$gen_call', {From, Ref}, Request}` from `from`.
fn gen_call(from: &Pid, peer: &str, n: u32, request: Term) -> Term {
    let reference = erl_quorum::term::Reference {
        node: Atom::from(peer),
        id: vec![n, 0, 0],
        creation: 1,
    };
    tuple(vec![
        atom("$gen_call"),
        tuple(vec![
            Term::Pid(from.clone()),
            Term::Reference(Box::new(reference)),
        ]),
        request,
    ])
}

/// Polls the node's queue for `peer` for `how_long`; the largest seen.
async fn largest_queued(node: &erl_quorum::Node, peer: &str, how_long: Duration) -> usize {
    let deadline = Instant::now() + how_long;
    let mut largest = 0;
    while Instant::now() < deadline {
        largest = largest.max(node.queued_bytes(peer).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    largest
}

fn beam_bystander(node: &erl_quorum::Node) -> (BeamNode, String) {
    let b = BeamNode::start(&common::unique_name("b_bystander"), rust_node::COOKIE, &[])
        .expect("start the BEAM node");
    let r = common::atom(node.name());
    let check = format!(
        "lists:all(fun(I) -> gen_server:call({{other, {r}}}, I) =:= I end, lists:seq(1, 50))"
    );
    (b, check)
}

/// (a) A peer calls a Rust gen_server with large requests (replies as
/// large) and never reads: the server is slowed at the busy limit, so the
/// queue stays below busy limit + one reply; a sender that cannot wait
/// (a burst of sends in one go) takes it past the hard limit and the
/// connection is dropped. A BEAM node connected meanwhile is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_is_bounded_then_dropped() {
    let node = node("rs_noread").await;
    rust_node::start_echo(&node, "echo");
    rust_node::start_echo(&node, "other");
    // Sends `N` binaries of `Size` bytes to `From` in one go for `{From, N, Size}`.
    let mut burst = node.spawn_process();
    burst.register("burst").unwrap();
    tokio::spawn(async move {
        while let Ok(mail) = burst.recv().await {
            if let Mail::Message(Term::Tuple(t)) = mail {
                if let [Term::Pid(from), Term::FixInteger(n), Term::FixInteger(size)] =
                    &t.elements[..]
                {
                    for _ in 0..n.value {
                        burst.send(from, binary(vec![7u8; size.value as usize]));
                    }
                }
            }
        }
    });
    let (b, check) = beam_bystander(&node);
    assert_eq!(b.eval_ok(&check), "true");

    let peer = "evil_noread@127.0.0.1";
    let mut s = rust_node::raw_connect(&node, peer);
    let from = pid_of(peer, 1);
    const REPLY: usize = 128 << 10;
    // 200 calls of 128 KiB: 25 MiB of replies, never read.
    let calls: Vec<u8> = (0..200)
        .flat_map(|n| {
            reg_send(
                &from,
                "echo",
                &gen_call(&from, peer, n, binary(vec![1u8; REPLY])),
            )
        })
        .collect();
    let writer = std::thread::spawn({
        let mut s = s.try_clone().unwrap();
        move || s.write_all(&calls)
    });
    let largest = largest_queued(&node, peer, Duration::from_secs(3)).await;
    eprintln!("calls never read: at most {largest} bytes queued");
    // The bystander is served while the echo server waits on the peer.
    assert_eq!(b.eval_ok(&check), "true");
    assert!(
        largest > BUSY && largest <= BUSY + 2 * REPLY,
        "queued {largest} bytes for a peer that does not read (busy limit {BUSY})"
    );
    assert!(node.connected_nodes().iter().any(|n| n == peer));

    // A burst from a sender that cannot wait: 4 MiB past a 1 MiB hard limit.
    s.write_all(&reg_send(
        &from,
        "burst",
        &tuple(vec![Term::Pid(from.clone()), int(64), int(64 << 10)]),
    ))
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut largest = 0;
    while node.connected_nodes().iter().any(|n| n == peer) {
        largest = largest.max(node.queued_bytes(peer).unwrap_or(0));
        assert!(
            Instant::now() < deadline,
            "a peer that never reads was kept"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        largest <= MAX + REPLY,
        "queued {largest} bytes, hard limit {MAX}"
    );
    drop(s);
    let _ = writer.join();
    // The bystander never noticed.
    assert_eq!(b.eval_ok(&check), "true");
    node.shutdown();
}

/// (c) A Rust process sending many large messages with `send_paced` to a
/// peer that does not read is slowed, not failed: the connection stays up
/// with its queue near the busy limit, and every message arrives once the
/// peer reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_to_a_busy_peer_is_slowed_and_resumes() {
    let node = node("rs_slowed").await;
    let peer = "evil_slow@127.0.0.1";
    let s = rust_node::raw_connect(&node, peer);
    const COUNT: usize = 200;
    const SIZE: usize = 128 << 10;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut sender = node.spawn_process();
    let to = pid_of(peer, 7);
    let task = tokio::spawn({
        let sent = sent.clone();
        async move {
            for _ in 0..COUNT {
                sender.send_paced(&to, binary(vec![3u8; SIZE])).await;
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            sender
        }
    });
    let largest = largest_queued(&node, peer, Duration::from_secs(2)).await;
    let so_far = sent.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("paced sender: {so_far} of {COUNT} sent in 2 s, at most {largest} bytes queued");
    assert!(so_far < COUNT, "the sender was never slowed");
    assert!(
        largest <= BUSY + 2 * SIZE,
        "queued {largest} bytes, busy limit {BUSY}"
    );
    assert!(node.connected_nodes().iter().any(|n| n == peer));
    // The peer reads: the sender resumes and everything arrives.
    let reader = std::thread::spawn(move || {
        let mut s = s;
        let mut total = 0usize;
        let mut chunk = vec![0u8; 1 << 16];
        while total < COUNT * SIZE {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        (total, s)
    });
    let sender = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the sender never resumed")
        .unwrap();
    let (total, _s) = reader.join().unwrap();
    assert!(total >= COUNT * SIZE);
    assert!(node.connected_nodes().iter().any(|n| n == peer));
    drop(sender);
    node.shutdown();
}

/// A frame with a distribution header listing one atom cache reference to
/// slot 0, new (with `text`) or not; `terms` follow (control message and
/// payload, without version bytes).
fn header_frame(text: Option<&str>, terms: &[u8]) -> Vec<u8> {
    // One reference: its nibble (8 = new entry, segment 0), then the
    // LongAtoms bit in the nibble after it: 2-byte lengths.
    let mut body = vec![131, 68, 1, if text.is_some() { 0x18 } else { 0x10 }, 0];
    if let Some(text) = text {
        body.extend((text.len() as u16).to_be_bytes());
        body.extend(text.as_bytes());
    }
    body.extend(terms);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb << 10
}

/// (b) The atom-cache amplification: a peer defines one atom of 255
/// four-byte characters (1020 bytes) and then sends messages whose payload
/// is a list of 2-byte references to it, to a process that never reads its
/// mail. The node must not hold hundreds of times what the peer sent: the
/// expansion budget (16 MiB + 16 x bytes received) stops it and the
/// connection is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atom_cache_references_cannot_amplify_memory() {
    let node = rust_node::start("rs_amplify").await;
    let sink = node.spawn_process();
    sink.register("sink").unwrap();
    let mut marker = node.spawn_process();
    marker.register("marker").unwrap();
    let peer = "evil_atoms@127.0.0.1";
    let mut s = rust_node::raw_connect(&node, peer);
    let from = pid_of(peer, 1);
    let control = |to: &str| {
        let c = encode(&tuple(vec![
            int(6),
            Term::Pid(from.clone()),
            atom(""),
            atom(to),
        ]));
        c[1..].to_vec()
    };
    const REFS: usize = 8000;
    const FRAMES: usize = 120;
    let mut payload = vec![108];
    payload.extend((REFS as u32).to_be_bytes());
    payload.extend(std::iter::repeat_n([82u8, 0], REFS).flatten());
    payload.push(106);
    let long = "\u{1F600}".repeat(255);
    let mut attack = header_frame(Some(&long), &[control("sink"), payload.clone()].concat());
    for _ in 1..FRAMES {
        attack.extend(header_frame(
            None,
            &[control("sink"), payload.clone()].concat(),
        ));
    }
    // Then a small message: it arrives only if the connection survived.
    let mut done = control("marker");
    done.extend(&encode(&atom("done"))[1..]);
    attack.extend(header_frame(None, &done));
    let sent = attack.len();
    let before = resident_bytes();
    let writer = std::thread::spawn(move || {
        let _ = s.write_all(&attack);
        s
    });
    // Until the marker arrives or the connection is dropped.
    let deadline = Instant::now() + Duration::from_secs(30);
    let arrived = loop {
        if marker
            .recv_timeout(Duration::from_millis(20))
            .await
            .unwrap()
            .is_some()
        {
            break true;
        }
        if !node.connected_nodes().iter().any(|n| n == peer) || Instant::now() > deadline {
            break false;
        }
    };
    // What the sink's mail holds now (the process is alive and never reads).
    let held = resident_bytes().saturating_sub(before);
    eprintln!(
        "sent {sent} bytes; resident grew by {held} bytes ({}x); marker arrived: {arrived}",
        held / sent
    );
    // Expansion bounded by 16 MiB + 16 x 1.9 MB of ETF, plus what the
    // decoded terms cost over their ETF (a Term per element): well under
    // 200 MB, where the unbounded node held about 1 GB.
    assert!(held < 200 << 20, "held {held} bytes after {sent} sent");
    assert!(
        !arrived,
        "a connection that amplified {sent} bytes was kept"
    );
    drop(writer.join());
    drop(sink);
    node.shutdown();
}

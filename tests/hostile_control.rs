//! Hostile peers on the control path: a peer that completes a real
//! handshake, then sends what the BEAM would refuse. Each must cost the node
//! a bounded log and, where OTP drops the connection, the connection; none
//! may make the node dial a node only the peer named. A real BEAM node
//! still links, monitors and unlinks as before.

mod common;
mod rust_node;

use common::BeamNode;
use erl_quorum::term::{as_tuple, atom, binary, int, list, tuple, Pid, Reference, Term};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

// ---- captured log -------------------------------------------------------

/// Everything the node logs in this test binary (one subscriber for all).
#[derive(Clone, Default)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Keep the count honest but the memory bounded.
        if log.len() < 256 << 20 {
            log.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn sink() -> &'static LogSink {
    static SINK: OnceLock<LogSink> = OnceLock::new();
    SINK.get_or_init(|| {
        let sink = LogSink::default();
        let writer = sink.clone();
        // Installed before rust_node's own (which then stays out).
        tracing_subscriber::fmt()
            .with_env_filter("erl_quorum=info")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        sink
    })
}

/// The log written from now on, for one test at a time (the tests here
/// share the subscriber, so they run one after another).
struct LogWindow {
    start: usize,
    _serial: MutexGuard<'static, ()>,
}

impl LogWindow {
    fn open() -> Self {
        static SERIAL: Mutex<()> = Mutex::new(());
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let start = sink().0.lock().unwrap().len();
        LogWindow {
            start,
            _serial: serial,
        }
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&sink().0.lock().unwrap()[self.start..]).into_owned()
    }
}

// ---- a raw peer ---------------------------------------------------------

/// Reads until the node closes the connection (panics if it is still open
/// after 10 s); returns what it sent.
fn closed_by_node(mut stream: TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(_) => {}
        }
        assert!(Instant::now() < deadline, "{what}: connection not closed");
    }
}

fn encode(t: &Term) -> Vec<u8> {
    let mut out = Vec::new();
    t.encode(&mut out).unwrap();
    out
}

/// A pass-through frame of the given encoded terms (each with its 131).
fn pass_through(terms: &[&[u8]]) -> Vec<u8> {
    let len: usize = 1 + terms.iter().map(|t| t.len()).sum::<usize>();
    let mut frame = (len as u32).to_be_bytes().to_vec();
    frame.push(112);
    for t in terms {
        frame.extend_from_slice(t);
    }
    frame
}

/// The same terms as fragments of `chunk` bytes each (no atom cache refs;
/// after a distribution header, terms come without their 131).
fn fragments(terms: &[&[u8]], chunk: usize, sequence: u64) -> Vec<u8> {
    let body: Vec<u8> = terms.iter().flat_map(|t| &t[1..]).copied().collect();
    let parts: Vec<&[u8]> = body.chunks(chunk).collect();
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let fragment_id = (parts.len() - i) as u64;
        let mut f = vec![131, if i == 0 { 69 } else { 70 }];
        f.extend_from_slice(&sequence.to_be_bytes());
        f.extend_from_slice(&fragment_id.to_be_bytes());
        if i == 0 {
            f.push(0); // no atom cache references
        }
        f.extend_from_slice(part);
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(&f);
    }
    out
}

fn op(n: i64) -> Term {
    int(n)
}

fn pid_on(node: &str, id: u32) -> Term {
    Term::from(Pid::new(node, id, 0, 1))
}

fn reference_on(node: &str) -> Term {
    Term::from(Reference {
        node: node.into(),
        id: vec![1, 2, 3],
        creation: 1,
    })
}

/// `{1 => a, 1 => b}`: a map with duplicate keys (131 first).
fn duplicate_key_map() -> Vec<u8> {
    vec![
        131, 116, 0, 0, 0, 2, 97, 1, 100, 0, 1, b'a', 97, 1, 100, 0, 1, b'b',
    ]
}

fn hostile_name(prefix: &str) -> String {
    format!("{}@127.0.0.1", common::unique_name(prefix))
}

// ---- the tests ------------------------------------------------------------

/// Hole 2: SPAWN_REPLYs nobody asked for, and a SPAWN_REQUEST with a
/// million arguments: a few short log lines, then the peer is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_messages_are_logged_briefly_and_a_flooding_peer_is_dropped() {
    let log = LogWindow::open();
    let node = rust_node::start("rs_flood").await;
    let peer = hostile_name("hostile_flood");
    let mut s = rust_node::raw_connect(&node, &peer);
    let local = node.spawn_process();

    // A million arguments to a function nobody registered.
    let request = encode(&tuple(vec![
        op(29),
        reference_on(&peer),
        pid_on(&peer, 1),
        pid_on(&peer, 1),
        tuple(vec![atom("nosuch"), atom("fun"), int(1_000_000)]),
        list(vec![]),
    ]));
    let args = encode(&list(vec![atom("abcdefgh"); 1_000_000]));
    let mut sent = 0;
    let frame = pass_through(&[&request, &args]);
    sent += frame.len();
    s.write_all(&frame).unwrap();

    // SPAWN_REPLY to requests we never made, with a large trace token.
    let token = binary(vec![7u8; 60_000]);
    let reply = encode(&tuple(vec![
        op(32),
        reference_on(&peer),
        Term::from(local.pid().clone()),
        int(0),
        atom("ok"),
        token,
    ]));
    let frame = pass_through(&[&reply]);
    let mut writes = 0;
    for _ in 0..1000 {
        if s.write_all(&frame).is_err() {
            break; // dropped already
        }
        sent += frame.len();
        writes += 1;
    }
    closed_by_node(s, "a peer flooding refused messages");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = log.text();
    eprintln!(
        "sent {sent} bytes ({writes} replies); logged {} bytes",
        text.len()
    );
    assert!(
        text.contains("peer keeps sending messages we refuse; disconnecting"),
        "{text}"
    );
    assert!(text.len() < 8 << 10, "{} bytes of log", text.len());
}

/// Hole 4: LINK and MONITOR_P from a third node's pid drop the connection,
/// and the local process's exit dials nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_forged_for_a_third_node_drop_the_peer_and_dial_nobody() {
    let log = LogWindow::open();
    let node = rust_node::start("rs_forged").await;
    // A node nobody runs: a dial would end in a "cannot connect" line.
    let third = hostile_name("third_party");
    let target = node.spawn_process();
    let to = Term::from(target.pid().clone());

    let peer = hostile_name("hostile_link");
    let mut s = rust_node::raw_connect(&node, &peer);
    let link = encode(&tuple(vec![op(1), pid_on(&third, 5), to.clone()]));
    s.write_all(&pass_through(&[&link])).unwrap();
    let linker = s;

    let peer = hostile_name("hostile_monitor");
    let mut s = rust_node::raw_connect(&node, &peer);
    let monitor = encode(&tuple(vec![
        op(19),
        pid_on(&third, 6),
        to.clone(),
        reference_on(&third),
    ]));
    s.write_all(&pass_through(&[&monitor])).unwrap();
    let monitorer = s;

    // An EXIT from the peer's own pid is still accepted: only the sender's
    // node is checked.
    let peer = hostile_name("hostile_exit");
    let mut s = rust_node::raw_connect(&node, &peer);
    let other = node.spawn_process();
    let exit = encode(&tuple(vec![
        op(3),
        pid_on(&peer, 7),
        Term::from(other.pid().clone()),
        atom("normal"),
    ]));
    s.write_all(&pass_through(&[&exit])).unwrap();

    target.exit(atom("boom"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        node.connected_nodes().contains(&peer),
        "a valid EXIT dropped the peer"
    );
    let text = log.text();
    let dialed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&third) && !l.contains("disconnecting"))
        .collect();
    assert!(dialed.is_empty(), "the third node was dialed: {dialed:?}");
    assert!(!node.connected_nodes().contains(&third));
    closed_by_node(linker, "a LINK from a third node's pid");
    closed_by_node(monitorer, "a MONITOR_P from a third node's pid");
    drop(s);
}

/// Hole 5: a map with duplicate keys is refused whichever way it comes,
/// as the payload or inside the control message, whole or in fragments,
/// small or large (a large one is decoded off the reader).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_map_keys_are_refused_on_every_path() {
    let log = LogWindow::open();
    let node = rust_node::start("rs_dupkeys").await;
    let mut target = node.spawn_process();
    let to = Term::from(target.pid().clone());
    let duplicate = duplicate_key_map();
    // The same map with distinct keys: {1 => a, 2 => b}.
    let mut distinct = duplicate.clone();
    distinct[13] = 2;
    let message = |case: usize, peer: &str, map: &[u8]| match case {
        0 => {
            let control = encode(&tuple(vec![op(2), atom(""), to.clone()]));
            pass_through(&[&control, map])
        }
        1 => {
            // EXIT2 {8, From, To, Reason} with the map as the reason.
            let mut control = encode(&tuple(vec![op(8), pid_on(peer, 1), to.clone()]));
            assert_eq!(control[1..3], [104, 3]);
            control[2] = 4;
            control.extend_from_slice(&map[1..]);
            pass_through(&[&control])
        }
        2 => {
            let control = encode(&tuple(vec![op(22), pid_on(peer, 1), to.clone()]));
            fragments(&[&control, map], 7, 1)
        }
        _ => {
            // {Blob, Map}: over the 1 MiB of a large message.
            let control = encode(&tuple(vec![op(22), pid_on(peer, 1), to.clone()]));
            let blob = encode(&binary(vec![1u8; 1_200_000]));
            let mut payload = vec![131, 104, 2];
            payload.extend_from_slice(&blob[1..]);
            payload.extend_from_slice(&map[1..]);
            fragments(&[&control, &payload], 300_000, 2)
        }
    };
    for (case, what) in [
        "pass-through payload",
        "pass-through control",
        "fragmented payload",
        "large fragmented payload",
    ]
    .into_iter()
    .enumerate()
    {
        // With distinct keys the message arrives (so the frames are right):
        // not for EXIT2, which would kill the target.
        if case != 1 {
            let peer = hostile_name("fine_map");
            let mut s = rust_node::raw_connect(&node, &peer);
            s.write_all(&message(case, &peer, &distinct)).unwrap();
            let got = match target.recv_timeout(Duration::from_secs(10)).await {
                Ok(Some(erl_quorum::process::Mail::Message(t))) => t,
                other => panic!("{what}: {other:?}; log:\n{}", log.text()),
            };
            let map_arrived = matches!(&got, Term::Map(m) if m.map.len() == 2)
                || matches!(as_tuple(&got), Some([_, Term::Map(m)]) if m.map.len() == 2);
            assert!(map_arrived, "{what}: the map did not arrive");
            assert!(node.connected_nodes().contains(&peer), "{what}");
        }
        let peer = hostile_name("hostile_dup");
        let mut s = rust_node::raw_connect(&node, &peer);
        s.write_all(&message(case, &peer, &duplicate)).unwrap();
        closed_by_node(s, what);
    }
}

/// Hole 5: an UNLINK_ID whose id needs more than 64 bits is refused (the
/// connection drops) and never acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlink_id_beyond_64_bits_is_refused_and_not_echoed() {
    let _log = LogWindow::open();
    let node = rust_node::start("rs_unlinkid").await;
    let target = node.spawn_process();
    let peer = hostile_name("hostile_unlink");
    let mut s = rust_node::raw_connect(&node, &peer);
    let mut id = eetf::BigInteger::from(1i64).value;
    id <<= 70usize;
    let unlink = encode(&tuple(vec![
        op(35),
        Term::from(eetf::BigInteger { value: id }),
        pid_on(&peer, 1),
        Term::from(target.pid().clone()),
    ]));
    s.write_all(&pass_through(&[&unlink])).unwrap();
    let got = closed_by_node(s, "an UNLINK_ID with a 71-bit id");
    // No {36, ...} (UNLINK_ID_ACK) came back.
    assert!(
        !got.windows(4).any(|w| w == [104, 4, 97, 36]),
        "the id was echoed"
    );
}

/// A real BEAM node links, unlinks and monitors as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beam_node_still_links_monitors_and_unlinks() {
    // Every test here installs the capturing subscriber first.
    let _log = LogWindow::open();
    common::ensure_epmd().expect("epmd");
    let node = rust_node::start("rs_beam_sig").await;
    let b =
        BeamNode::start(&common::unique_name("b_sig"), rust_node::COOKIE, &[]).expect("start erl");
    let r = common::atom(node.name());
    let linked = node.spawn_process();
    let unlinked = node.spawn_process();
    for (tag, p) in [("linked", &linked), ("unlinked", &unlinked)] {
        p.send(
            ("eq_peer", b.node_name()),
            tuple(vec![atom(tag), p.pid().clone().into()]),
        );
    }
    b.eval_ok(&format!(
        "process_flag(trap_exit, true), \
         {{linked, P}} = eq_peer:recv(5000), {{unlinked, Q}} = eq_peer:recv(5000), \
         link(P), M = erlang:monitor(process, P), \
         link(Q), true = unlink(Q), MQ = erlang:monitor(process, Q), \
         pong = net_adm:ping({r})"
    ));
    linked.exit(atom("boom"));
    unlinked.exit(atom("bang"));
    assert_eq!(
        b.eval_ok("receive {'EXIT', P, W} -> W after 5000 -> timeout end"),
        "boom"
    );
    assert_eq!(
        b.eval_ok("receive {'DOWN', M, process, P, W2} -> W2 after 5000 -> timeout end"),
        "boom"
    );
    assert_eq!(
        b.eval_ok("receive {'DOWN', MQ, process, Q, W3} -> W3 after 5000 -> timeout end"),
        "bang"
    );
    assert_eq!(
        b.eval_ok("receive {'EXIT', Q, _} -> linked after 500 -> unlinked end"),
        "unlinked"
    );
    // The BEAM's connection is still up.
    assert!(node.connected_nodes().iter().any(|n| n == b.node_name()));
}

/// A connection the node judges gone while the peer may come back (a
/// silent client of the services) is reset, not closed: what is still
/// unsent or unacknowledged is discarded, never delivered after a heal. A
/// plain disconnect still closes: the peer reads everything, then the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_connection_discards_what_is_in_flight_and_a_disconnect_closes() {
    // The log sink must be installed before any node starts (see `sink`).
    let _log = LogWindow::open();
    let node = rust_node::start("rs_reset").await;
    // The peer reads nothing until the node has given up on it, so the
    // node's socket holds unsent bytes (the peer's window is full).
    let ends = |mut stream: TcpStream| {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut chunk = [0u8; 65536];
        let mut read = 0usize;
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return ("closed", read),
                Ok(n) => read += n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return ("reset", read)
                }
                Err(e) => panic!("read after {read} bytes: {e}"),
            }
        }
    };
    let process = node.spawn_process();
    let payload = binary(vec![7u8; 1 << 20]);
    let mut outcomes = Vec::new();
    for reset in [true, false] {
        let peer = hostile_name(if reset { "reset_me" } else { "close_me" });
        let stream = rust_node::raw_connect(&node, &peer);
        let Term::Pid(to) = pid_on(&peer, 1) else {
            unreachable!()
        };
        for _ in 0..16 {
            process.send(to.clone(), payload.clone());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if reset {
            assert!(node.reset_connection(&peer));
        } else {
            assert!(node.disconnect(&peer));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        outcomes.push(
            tokio::task::spawn_blocking(move || ends(stream))
                .await
                .unwrap(),
        );
    }
    eprintln!("reset, then disconnect: {outcomes:?}");
    assert_eq!(outcomes[0].0, "reset", "{outcomes:?}");
    assert_eq!(outcomes[1].0, "closed", "{outcomes:?}");
    node.shutdown();
}

//! Starting Rust nodes inside a test, next to the BEAM nodes of `common`.

#![allow(dead_code)]

use erl_quorum::process::{spawn_server, CallReply, Caller, Flow, GenServer, Mail, Process};
use erl_quorum::term::{as_tuple, atom, tuple, Term};
use erl_quorum::{Node, NodeConfig};
use std::time::Duration;

pub const COOKIE: &str = "eq_test_cookie";

/// A Rust node named `{prefix}_…@127.0.0.1` with the test cookie.
pub async fn start(prefix: &str) -> Node {
    start_with(prefix, |c| c).await
}

pub async fn start_with(prefix: &str, adjust: impl FnOnce(NodeConfig) -> NodeConfig) -> Node {
    // Logs show up in a failing test's output (RUST_LOG=erl_quorum=debug for more).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "erl_quorum=info".into()),
        )
        .with_test_writer()
        .try_init();
    let name = format!("{}@127.0.0.1", super::common::unique_name(prefix));
    let config = adjust(NodeConfig::new(name, COOKIE));
    Node::start(config).await.expect("start the Rust node")
}

/// The same contract as `eq_peer:start_echo/1` and examples/echo.rs.
pub struct Echo;

impl GenServer for Echo {
    async fn handle_call(
        &mut self,
        request: Term,
        _from: &Caller,
        _process: &mut Process,
    ) -> CallReply {
        match as_tuple(&request) {
            Some([kind, reason]) if erl_quorum::term::is_atom(kind, "stop") => CallReply::Stop {
                reason: reason.clone(),
                reply: Some(atom("stopping")),
            },
            _ => CallReply::Reply(request),
        }
    }

    /// `{Pid, X}` cast gets `{cast, X}` back.
    async fn handle_cast(&mut self, request: Term, process: &mut Process) -> Flow {
        if let Some([Term::Pid(pid), x]) = as_tuple(&request) {
            process.send(pid, tuple(vec![atom("cast"), x.clone()]));
        }
        Flow::Continue
    }

    async fn handle_info(&mut self, mail: Mail, process: &mut Process) -> Flow {
        if let Mail::Message(message) = mail {
            if let Some([Term::Pid(pid), x]) = as_tuple(&message) {
                process.send(pid, tuple(vec![atom("echo"), x.clone()]));
            }
        }
        Flow::Continue
    }
}

pub fn start_echo(node: &Node, name: &str) {
    spawn_server(node, Some(name), Echo).expect("register echo");
}

/// Polls `check` every 20 ms until true; panics with `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next message (not DOWN/EXIT) within 10 s.
pub async fn next_message(process: &mut Process) -> Term {
    match process.recv_timeout(Duration::from_secs(10)).await {
        Ok(Some(Mail::Message(t))) => t,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Which node opens the connection between a Rust node and a BEAM node:
/// the conformance matrix's two directions.
#[derive(Clone, Copy, Debug)]
pub enum Dialer {
    /// The BEAM node pings the Rust node.
    Beam,
    /// The Rust node connects first; the BEAM node then uses that connection.
    Rust,
}

/// Opens the connection from `dialer`'s side; checks that the BEAM node
/// then sees the Rust node as a hidden node.
pub async fn open_connection(node: &Node, b: &super::common::BeamNode, dialer: Dialer) {
    let r = super::common::atom(node.name());
    match dialer {
        Dialer::Beam => assert_eq!(b.eval_ok(&format!("net_adm:ping({r})")), "pong"),
        Dialer::Rust => node.connect(b.node_name()).await.expect("connect"),
    }
    assert_eq!(
        b.eval_ok(&format!("lists:member({r}, nodes(hidden))")),
        "true"
    );
}

// ---- raw peers --------------------------------------------------------------

/// Completes a real handshake with `node` as `peer_name` (the test cookie)
/// and waits until `node` lists it; returns the socket, for a peer that
/// then sends raw frames (a hostile peer a BEAM node cannot play).
pub fn raw_connect(node: &Node, peer_name: &str) -> std::net::TcpStream {
    let stream = raw_connect_with(node, peer_name, COOKIE).expect("handshake");
    wait_connected(node, peer_name);
    stream
}

/// The handshake of [`raw_connect`] with any cookie, without waiting.
pub fn raw_connect_with(
    node: &Node,
    peer_name: &str,
    cookie: &str,
) -> Result<std::net::TcpStream, String> {
    use erl_quorum::dist::flags;
    use erl_quorum::dist::handshake::{Event, Handshake, LocalIdentity};
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", node.port())).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let identity = LocalIdentity {
        name: peer_name.to_owned(),
        flags: flags::ADVERTISED,
        creation: 1,
        cookie: cookie.to_owned(),
    };
    let mut hs = Handshake::client(identity, node.name(), 42);
    let mut buf = Vec::new();
    loop {
        stream
            .write_all(&hs.take_output())
            .map_err(|e| e.to_string())?;
        let (used, event) = hs.receive(&buf).map_err(|e| e.to_string())?;
        buf.drain(..used);
        match event {
            Some(Event::Established(_)) => {
                stream
                    .write_all(&hs.take_output())
                    .map_err(|e| e.to_string())?;
                return Ok(stream);
            }
            Some(_) => continue,
            None if used > 0 => continue,
            None => {
                let mut chunk = [0u8; 512];
                let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("closed during handshake".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// Waits until `node` lists `peer` as connected: it installs a connection
/// just after sending the final handshake ack, so a raw client may be a
/// moment ahead of it.
pub fn wait_connected(node: &Node, peer: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !node.connected_nodes().iter().any(|n| n == peer) {
        assert!(std::time::Instant::now() < deadline, "{peer} never came up");
        std::thread::sleep(Duration::from_millis(10));
    }
}

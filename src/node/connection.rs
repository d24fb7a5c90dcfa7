//! Connections: accepting and dialing (driving the sans-IO handshake over
//! TCP, or inside TLS when the node has a TLS config), then the thin tokio driver of the sans-IO `dist::Connection`: a
//! reader task that feeds its receiving half and dispatches what comes
//! out, and a writer task that drains the outbox (which holds the sending
//! half) and asks for ticks at the connection's deadlines.

use super::handshake_io::drive;
use super::outbox::{Outbox, OutboxLimits, Pushed};
use super::peers::{ConnHandle, Peer};
use super::read_pacing::ReadPacing;
use super::socket_read::{read_some, read_tls};
use super::traffic::Traffic;
use super::transport::{ReadHalf, Stream};
use super::NodeInner;
use crate::dist::connection::{sender_of, Connection, Incoming, Polled, SenderOrder};
use crate::dist::flags;
use crate::dist::handshake::{Event, Handshake, HandshakeError, PeerInfo, ServerStatus};
use crate::term::Atom;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::Instrument;

/// Large messages one connection decodes away from its reader at once
/// (each up to the frame limit); past it the reader decodes them itself.
const MAX_LARGE_DECODING: usize = 2;

/// The writer keeps at most this much scratch space between bursts.
const WRITE_SCRATCH_MAX: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub(super) enum ConnError {
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer closed the connection during the handshake")]
    Closed,
    #[error("{0}")]
    Other(String),
    #[error("TLS handshake with {addr} failed: {error}")]
    Tls { addr: String, error: std::io::Error },
}

/// The peer ended the TLS handshake or the connection during it: the
/// refusal (bad certificate, none, unknown CA) is then in `error`.
fn tls_error(addr: impl std::fmt::Display, error: std::io::Error) -> ConnError {
    ConnError::Tls {
        addr: addr.to_string(),
        error,
    }
}

// ---- accepting ----------------------------------------------------------

pub(super) async fn accept_loop(node: Arc<NodeInner>, listener: TcpListener) {
    let mut shutdown = node.shutdown_signal();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    tokio::spawn(accept_one(node.clone(), stream, addr));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn accept_one(node: Arc<NodeInner>, stream: TcpStream, addr: std::net::SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut stream = match &node.config.tls {
        None => Stream::Tcp(stream),
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
            match timeout(node.config.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) => Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(s))),
                Ok(Err(e)) => {
                    // One line per refused peer: a wrong or missing
                    // certificate, or a peer speaking in clear.
                    tracing::warn!(peer = %addr, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::warn!(peer = %addr, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let attempt = node.peers.next_attempt();
    let mut hs = Handshake::server(node.identity(), rand::random());
    let mut claimed: Option<Atom> = None;
    let mut buf = Vec::new();
    let result = timeout(
        node.config.handshake_timeout,
        drive(&mut stream, &mut hs, &mut buf, |event, hs| match event {
            Event::NameReceived { name, .. } => {
                let status = decide_status(&node, &name, attempt);
                if matches!(status, ServerStatus::Ok | ServerStatus::OkSimultaneous) {
                    claimed = Some(Atom::from(name.as_str()));
                }
                if status == ServerStatus::Alive {
                    claimed = Some(Atom::from(name.as_str()));
                }
                hs.set_status(status).map_err(ConnError::from)
            }
            Event::AliveConfirmed => {
                // The peer restarted: our old connection to it is stale.
                if let Some(peer) = &claimed {
                    replace_stale(&node, peer, attempt);
                }
                Ok(())
            }
            Event::Established(_) => Ok(()),
        }),
    )
    .await;
    match result {
        Ok(Ok(peer)) => install(node, peer, attempt, stream, buf),
        Ok(Err(e)) => {
            log_handshake_failure(&e, &addr.to_string(), claimed.as_ref());
            if let Some(peer) = claimed {
                abandon(&node, &peer, attempt);
            }
        }
        Err(_) => {
            tracing::warn!(peer = %addr, "incoming handshake timed out");
            if let Some(peer) = claimed {
                abandon(&node, &peer, attempt);
            }
        }
    }
}

fn log_handshake_failure(e: &ConnError, addr: &str, peer: Option<&Atom>) {
    let peer = peer.map(|p| p.name.as_str()).unwrap_or("?");
    match e {
        ConnError::Handshake(HandshakeError::PeerRefused | HandshakeError::Refused { .. }) => {
            tracing::debug!(%addr, peer, error = %e, "simultaneous connect resolved")
        }
        _ => tracing::warn!(%addr, peer, error = %e, "handshake failed"),
    }
}

/// OTP's rules for an incoming connection from `name`.
fn decide_status(node: &Arc<NodeInner>, name: &str, attempt: u64) -> ServerStatus {
    if name == node.name.name {
        return ServerStatus::NotAllowed;
    }
    let peer = Atom::from(name);
    let mut peers = node.peers.lock();
    match peers.get_mut(&peer) {
        None => {
            // Claim the entry so sends made meanwhile queue instead of dialing.
            peers.insert(
                peer,
                Peer::Connecting {
                    attempt,
                    queue: Vec::new(),
                },
            );
            ServerStatus::Ok
        }
        Some(Peer::Connecting { attempt: a, .. }) => {
            // Both sides are dialing: the node with the greater name keeps its own attempt.
            if node.name.name.as_str() > name {
                ServerStatus::Nok
            } else {
                *a = attempt;
                ServerStatus::OkSimultaneous
            }
        }
        Some(Peer::Up(_)) => ServerStatus::Alive,
    }
}

fn replace_stale(node: &Arc<NodeInner>, peer: &Atom, attempt: u64) {
    let old = node.peers.lock().insert(
        peer.clone(),
        Peer::Connecting {
            attempt,
            queue: Vec::new(),
        },
    );
    if let Some(Peer::Up(h)) = old {
        let _ = h.close.send(true);
        h.outbox.close();
        tracing::info!(peer = %peer.name, "peer reconnected as a new incarnation; old connection dropped");
        node.connection_lost(peer);
    }
}

/// A handshake for `peer` failed: forget the pending entry if it is ours.
fn abandon(node: &Arc<NodeInner>, peer: &Atom, attempt: u64) {
    let removed = {
        let mut peers = node.peers.lock();
        match peers.get(peer) {
            Some(Peer::Connecting { attempt: a, .. }) if *a == attempt => peers.remove(peer),
            _ => None,
        }
    };
    if let Some(Peer::Connecting { queue, .. }) = removed {
        if !queue.is_empty() {
            tracing::debug!(peer = %peer.name, dropped = queue.len(), "connection failed; queued messages dropped");
        }
        node.connection_lost(peer);
    }
}

// ---- dialing ------------------------------------------------------------

/// Starts a connection attempt to `node` unless one exists.
pub(super) fn ensure_connecting(node: &Arc<NodeInner>, peer: &Atom) {
    let attempt = {
        let mut peers = node.peers.lock();
        if peers.contains_key(peer) {
            return;
        }
        let attempt = node.peers.next_attempt();
        peers.insert(
            peer.clone(),
            Peer::Connecting {
                attempt,
                queue: Vec::new(),
            },
        );
        attempt
    };
    tokio::spawn(dial(node.clone(), peer.clone(), attempt));
}

pub(super) async fn dial(node: Arc<NodeInner>, peer: Atom, attempt: u64) {
    let result = timeout(node.config.handshake_timeout, dial_handshake(&node, &peer)).await;
    match result {
        Ok(Ok((stream, info, leftover))) => install(node, info, attempt, stream, leftover),
        Ok(Err(ConnError::Handshake(HandshakeError::PeerRefused))) => {
            // The peer's own connection to us wins; give our accept side a
            // moment to take the entry over before giving up on it.
            let deadline = Instant::now() + node.config.handshake_timeout;
            while node.peers.is_attempt(&peer, attempt) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            abandon(&node, &peer, attempt);
        }
        Ok(Err(e)) => {
            tracing::warn!(peer = %peer.name, error = %e, "cannot connect");
            abandon(&node, &peer, attempt);
        }
        Err(_) => {
            tracing::warn!(peer = %peer.name, "connection attempt timed out");
            abandon(&node, &peer, attempt);
        }
    }
}

async fn dial_handshake(
    node: &Arc<NodeInner>,
    peer: &Atom,
) -> Result<(Stream, PeerInfo, Vec<u8>), ConnError> {
    let (name, host) =
        super::config::split_node_name(&peer.name).map_err(|e| ConnError::Other(e.to_string()))?;
    let port = super::epmd::lookup_port(host, node.config.epmd_port, name)
        .await
        .map_err(|e| ConnError::Other(e.to_string()))?;
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let mut stream = match &node.config.tls {
        None => Stream::Tcp(tcp),
        Some(tls) => {
            // As inet_tls_dist: the host part of the node name is the
            // server name its certificate must carry.
            let name =
                super::tls::server_name(host).map_err(|e| ConnError::Other(e.to_string()))?;
            let addr = tcp.peer_addr()?;
            let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
            let s = connector
                .connect(name, tcp)
                .await
                .map_err(|e| tls_error(addr, e))?;
            Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(s)))
        }
    };
    let mut hs = Handshake::client(node.identity(), &peer.name, rand::random());
    let mut buf = Vec::new();
    let info = drive(&mut stream, &mut hs, &mut buf, |_, _| Ok(())).await?;
    Ok((stream, info, buf))
}

// ---- connected ----------------------------------------------------------

/// The handshake succeeded: make the connection the peer's entry, flush
/// what was queued, and start its reader and writer.
fn install(node: Arc<NodeInner>, info: PeerInfo, attempt: u64, stream: Stream, leftover: Vec<u8>) {
    let peer = Atom::from(info.name.as_str());
    let conn = Connection::new(
        &info,
        flags::ADVERTISED,
        &node.config.connection(),
        leftover,
        std::time::Instant::now(),
    );
    let (incoming, outgoing) = conn.split();
    let (read, write) = stream.into_split();
    let limits = OutboxLimits {
        busy: node.config.busy_limit_bytes,
        max: node.config.max_queued_bytes,
        stall: node.config.net_ticktime.max(Duration::from_secs(1)),
    };
    let traffic = Arc::new(Traffic::default());
    let outbox = Arc::new(Outbox::new(write, outgoing, limits, traffic.clone()));
    let (close, closed) = watch::channel(false);
    {
        let mut peers = node.peers.lock();
        match peers.get_mut(&peer) {
            Some(Peer::Connecting { attempt: a, queue }) if *a == attempt => {
                // What was sent while connecting, under the same bound: past
                // the hard limit the outbox closes and the writer takes the
                // new connection down.
                for frame in queue.drain(..) {
                    if let Pushed::Overflow { queued } = outbox.push_frame(frame) {
                        tracing::warn!(peer = %peer.name, queued, max_queued = node.config.max_queued_bytes, "sent more than the outgoing limit while connecting; connection dropped");
                        break;
                    }
                }
            }
            _ => {
                // Another connection to this peer won meanwhile.
                tracing::debug!(peer = %peer.name, "duplicate connection dropped");
                return;
            }
        }
        peers.insert(
            peer.clone(),
            Peer::Up(ConnHandle {
                id: attempt,
                outbox: outbox.clone(),
                close,
                published: info.flags & flags::PUBLISHED != 0,
                traffic: traffic.clone(),
            }),
        );
    }
    tracing::info!(peer = %peer.name, hidden = info.flags & flags::PUBLISHED == 0, "connection up");
    // Every line the connection's tasks log (dispatch and the dist layer
    // included) names the peer. A debug span: the info and warn lines name
    // it themselves, and an enabled span costs ~30 ns a poll of each task.
    let span = tracing::debug_span!("conn", peer = %peer.name);
    tokio::spawn(
        reader(
            node.clone(),
            peer.clone(),
            attempt,
            read,
            (outbox.clone(), traffic),
            incoming,
            closed.clone(),
        )
        .instrument(span.clone()),
    );
    tokio::spawn(writer(node, peer, attempt, outbox, closed).instrument(span));
}

/// Removes `peer`'s connection if it is still connection `id`, and fails
/// everything tied to it. Safe to call from both tasks and from outside.
pub(super) fn connection_down(node: &Arc<NodeInner>, peer: &Atom, id: u64, reason: &str) {
    let removed = {
        let mut peers = node.peers.lock();
        match peers.get(peer) {
            Some(Peer::Up(h)) if h.id == id => peers.remove(peer),
            _ => None,
        }
    };
    if let Some(Peer::Up(h)) = removed {
        let _ = h.close.send(true);
        h.outbox.close();
        tracing::info!(peer = %peer.name, reason, "connection closed");
        node.connection_lost(peer);
    }
}

/// Closes whatever connection `peer` has; true if there was one.
pub(super) fn close_peer(node: &Arc<NodeInner>, peer: &Atom, reason: &str) -> bool {
    let id = match node.peers.lock().get(peer) {
        Some(Peer::Up(h)) => h.id,
        _ => return false,
    };
    connection_down(node, peer, id, reason);
    true
}

/// [`close_peer`] with a TCP reset: nothing queued or in flight reaches the
/// peer afterwards.
pub(super) fn reset_peer(node: &Arc<NodeInner>, peer: &Atom, reason: &str) -> bool {
    let id = match node.peers.lock().get(peer) {
        Some(Peer::Up(h)) => {
            h.outbox.reset_on_close();
            h.id
        }
        _ => return false,
    };
    connection_down(node, peer, id, reason);
    true
}

/// Drains what direct sends could not write, and ticks when idle.
async fn writer(
    node: Arc<NodeInner>,
    peer: Atom,
    id: u64,
    outbox: Arc<Outbox>,
    mut closed: watch::Receiver<bool>,
) {
    // Fires at the connection's tick deadline; a write meanwhile moves the
    // deadline, which the connection says when asked at the old one.
    let first = outbox.tick_if_idle(std::time::Instant::now());
    let mut tick = std::pin::pin!(sleep_until(Instant::from_std(first)));
    let mut scratch = Vec::new();
    let reason = loop {
        tokio::select! {
            _ = outbox.wait() => {
                if outbox.is_closed() {
                    break "connection closed";
                }
                // A connection taken down meanwhile stops writing at once
                // (and a reset one sends its reset now, not after the rest).
                let drained = tokio::select! {
                    r = outbox.drain(&mut scratch) => r,
                    _ = closed.changed() => break "connection closed",
                };
                if let Err(e) = drained {
                    if e.kind() == std::io::ErrorKind::TimedOut {
                        tracing::warn!(peer = %peer.name, queued = outbox.queued(), "{}; connection dropped", super::outbox::STALLED);
                        break "peer does not read";
                    }
                    tracing::debug!(peer = %peer.name, error = %e, "write failed");
                    break "write failed";
                }
                if scratch.capacity() > WRITE_SCRATCH_MAX {
                    scratch = Vec::new();
                }
            }
            _ = &mut tick => {
                let next = outbox.tick_if_idle(std::time::Instant::now());
                tick.as_mut().reset(Instant::from_std(next));
            }
            _ = closed.changed() => break "connection closed",
        }
    };
    outbox.close();
    connection_down(&node, &peer, id, reason);
}

/// Why a reader stopped when the connection has logged the error itself:
/// the error, which may quote the peer's input, is logged once.
const LOGGED: &str = "refused the peer's input (logged above)";

/// Feeds what the socket holds to the connection's receiving half and
/// dispatches the messages that come out.
async fn reader(
    node: Arc<NodeInner>,
    peer: Atom,
    id: u64,
    mut read: ReadHalf,
    // Paired to keep the argument count clippy allows.
    (outbox, traffic): (Arc<Outbox>, Arc<Traffic>),
    mut incoming: Incoming,
    mut closed: watch::Receiver<bool>,
) {
    let config = &node.config;
    let mut pacing = ReadPacing::new(
        config.busy_poll,
        config.coalesce_reads,
        std::time::Instant::now(),
    );
    // Fires at the peer's silence deadline; a read meanwhile moves it,
    // which the connection says when asked at the old one.
    let deadline = Instant::from_std(incoming.poll_timeout());
    let mut silence = std::pin::pin!(sleep_until(deadline));
    // Large messages decoded on blocking threads, and what waits behind
    // them from the same senders (Erlang's order between two processes).
    let mut order = SenderOrder::default();
    let (decoded_tx, mut decoded) = tokio::sync::mpsc::unbounded_channel();
    let dispatch = |message| super::dispatch::dispatch(&node, &peer, message);
    let reason: String = 'outer: loop {
        // Handle every complete message in the buffer.
        loop {
            match incoming.poll() {
                Ok(Some(Polled::Message(message))) => {
                    pacing.frame();
                    traffic.message_in();
                    if order.decoding() == 0 {
                        dispatch(message);
                    } else {
                        let sender = sender_of(&message).cloned();
                        if let Some(message) = order.decoded(sender.as_ref(), message) {
                            dispatch(message);
                        }
                    }
                }
                Ok(Some(Polled::Answer(message))) => node.send_remote(&peer, message),
                Ok(Some(Polled::Large { sender, message })) => {
                    pacing.frame();
                    traffic.message_in();
                    if order.decoding() >= MAX_LARGE_DECODING {
                        // Enough memory in flight: decode here, in order.
                        match message.decode() {
                            Ok(m) => {
                                if let Some(m) = order.decoded(Some(&sender), m) {
                                    dispatch(m);
                                }
                            }
                            Err(e) => {
                                let _ = incoming.fail_large(e);
                                break 'outer LOGGED.into();
                            }
                        }
                    } else {
                        let ticket = order.defer(sender.clone());
                        let tx = decoded_tx.clone();
                        tokio::task::spawn_blocking(move || {
                            let _ = tx.send((sender, ticket, message.decode()));
                        });
                    }
                }
                Ok(None) => break,
                // The connection has logged why.
                Err(_) => break 'outer LOGGED.into(),
            }
        }
        tokio::select! {
            Some((sender, ticket, result)) = decoded.recv() => match result {
                Ok(message) => {
                    for message in order.complete(&sender, ticket, message) {
                        dispatch(message);
                    }
                }
                Err(e) => {
                    let _ = incoming.fail_large(e);
                    break LOGGED.into();
                }
            },
            n = read_from(&mut read, incoming.read_buffer(), &mut pacing, &outbox) => match n {
                Ok(0) => break "peer closed the connection".into(),
                Ok(n) => {
                    traffic.read(n);
                    let now = std::time::Instant::now();
                    incoming.handle_read(now);
                    pacing.read(now, outbox.pushed());
                }
                Err(e) => break format!("read failed: {e}"),
            },
            _ = &mut silence => {
                if incoming.handle_timeout(std::time::Instant::now()).is_err() {
                    break LOGGED.into();
                }
                silence.as_mut().reset(Instant::from_std(incoming.poll_timeout()));
            }
            _ = closed.changed() => break "connection closed".into(),
        }
    };
    connection_down(&node, &peer, id, &reason);
}

/// Reads what the connection's stream holds into `buf`.
async fn read_from(
    read: &mut ReadHalf,
    buf: &mut Vec<u8>,
    pacing: &mut ReadPacing,
    outbox: &Outbox,
) -> std::io::Result<usize> {
    match read {
        ReadHalf::Tcp(r) => read_some(r, buf, pacing, outbox).await,
        ReadHalf::Tls(r) => read_tls(r, buf).await,
    }
}

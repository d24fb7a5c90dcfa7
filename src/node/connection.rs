//! Connections: accepting and dialing (driving the sans-IO handshake over
//! TCP), then one reader and one writer task per peer.

use super::outbox::Outbox;
use super::peers::{ConnHandle, Peer};
use super::read_pacing::ReadPacing;
use super::socket_read::read_some;
use super::NodeInner;
use crate::dist::atom_cache::AtomCache;
use crate::dist::frame::{self, Frame, OutFrame};
use crate::dist::handshake::{Event, Handshake, HandshakeError, PeerInfo, ServerStatus};
use crate::dist::{control, flags};
use crate::term::Atom;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

/// The writer keeps at most this much scratch space between bursts.
const WRITE_SCRATCH_MAX: usize = 1 << 20;
const READ_CHUNK: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer closed the connection during the handshake")]
    Closed,
    #[error("{0}")]
    Other(String),
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

async fn accept_one(node: Arc<NodeInner>, mut stream: TcpStream, addr: std::net::SocketAddr) {
    let _ = stream.set_nodelay(true);
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

/// Queues one encoded frame for `peer`, dialing first when needed. As in
/// Erlang, a message to a node that cannot be reached is dropped.
pub(crate) fn send_frame(node: &Arc<NodeInner>, peer: &Atom, frame: OutFrame) {
    let attempt = {
        let mut peers = node.peers.lock();
        match peers.get_mut(peer) {
            Some(Peer::Up(h)) => {
                // Write outside the table's lock: other peers' senders go on.
                let outbox = h.outbox.clone();
                drop(peers);
                outbox.push_frame(frame);
                return;
            }
            Some(Peer::Connecting { queue, .. }) => {
                queue.push(frame);
                return;
            }
            None => {
                let attempt = node.peers.next_attempt();
                peers.insert(
                    peer.clone(),
                    Peer::Connecting {
                        attempt,
                        queue: vec![frame],
                    },
                );
                attempt
            }
        }
    };
    tokio::spawn(dial(node.clone(), peer.clone(), attempt));
}

async fn dial(node: Arc<NodeInner>, peer: Atom, attempt: u64) {
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
) -> Result<(TcpStream, PeerInfo, Vec<u8>), ConnError> {
    let (name, host) =
        super::config::split_node_name(&peer.name).map_err(|e| ConnError::Other(e.to_string()))?;
    let port = super::epmd::lookup_port(host, node.config.epmd_port, name)
        .await
        .map_err(|e| ConnError::Other(e.to_string()))?;
    let mut stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    let mut hs = Handshake::client(node.identity(), &peer.name, rand::random());
    let mut buf = Vec::new();
    let info = drive(&mut stream, &mut hs, &mut buf, |_, _| Ok(())).await?;
    Ok((stream, info, buf))
}

/// Runs a handshake to completion: writes its output, feeds it input,
/// hands events to `on_event`. Leaves unconsumed input in `buf`.
async fn drive(
    stream: &mut TcpStream,
    hs: &mut Handshake,
    buf: &mut Vec<u8>,
    mut on_event: impl FnMut(Event, &mut Handshake) -> Result<(), ConnError>,
) -> Result<PeerInfo, ConnError> {
    let result = drive_inner(stream, hs, buf, &mut on_event).await;
    if result.is_err() {
        // A refusal (`snok`, `snot_allowed`) is queued output: the peer should see it.
        let out = hs.take_output();
        if !out.is_empty() {
            let _ = stream.write_all(&out).await;
        }
    }
    result
}

async fn drive_inner(
    stream: &mut TcpStream,
    hs: &mut Handshake,
    buf: &mut Vec<u8>,
    on_event: &mut impl FnMut(Event, &mut Handshake) -> Result<(), ConnError>,
) -> Result<PeerInfo, ConnError> {
    let out = hs.take_output();
    stream.write_all(&out).await?;
    loop {
        loop {
            let (used, event) = hs.receive(buf)?;
            buf.drain(..used);
            match event {
                Some(Event::Established(info)) => {
                    let out = hs.take_output();
                    if !out.is_empty() {
                        stream.write_all(&out).await?;
                    }
                    return Ok(info);
                }
                Some(event) => {
                    on_event(event, hs)?;
                    let out = hs.take_output();
                    if !out.is_empty() {
                        stream.write_all(&out).await?;
                    }
                }
                None if used == 0 => break,
                None => {}
            }
        }
        let out = hs.take_output();
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ConnError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

// ---- connected ----------------------------------------------------------

/// The handshake succeeded: make the connection the peer's entry, flush
/// what was queued, and start its reader and writer.
fn install(
    node: Arc<NodeInner>,
    info: PeerInfo,
    attempt: u64,
    stream: TcpStream,
    leftover: Vec<u8>,
) {
    let peer = Atom::from(info.name.as_str());
    let header_form = info.flags & flags::ADVERTISED & flags::DIST_HDR_ATOM_CACHE != 0;
    let (read, write) = stream.into_split();
    let outbox = Arc::new(Outbox::new(write, header_form));
    let (close, closed) = watch::channel(false);
    {
        let mut peers = node.peers.lock();
        match peers.get_mut(&peer) {
            Some(Peer::Connecting { attempt: a, queue }) if *a == attempt => {
                for frame in queue.drain(..) {
                    outbox.push_frame(frame);
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
            }),
        );
    }
    tracing::info!(peer = %peer.name, hidden = info.flags & flags::PUBLISHED == 0, "connection up");
    tokio::spawn(reader(
        node.clone(),
        peer.clone(),
        attempt,
        read,
        outbox.clone(),
        leftover,
        closed.clone(),
    ));
    tokio::spawn(writer(node, peer, attempt, outbox, closed));
}

/// Removes `peer`'s connection if it is still connection `id`, and fails
/// everything tied to it. Safe to call from both tasks and from outside.
fn connection_down(node: &Arc<NodeInner>, peer: &Atom, id: u64, reason: &str) {
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

/// Drains what direct sends could not write, and ticks when idle.
async fn writer(
    node: Arc<NodeInner>,
    peer: Atom,
    id: u64,
    outbox: Arc<Outbox>,
    mut closed: watch::Receiver<bool>,
) {
    let tick_every = node.config.net_ticktime / 4;
    let mut ticker = tokio::time::interval(tick_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = outbox.pushed();
    let mut scratch = Vec::new();
    let reason = loop {
        tokio::select! {
            _ = outbox.wait() => {
                if outbox.is_closed() {
                    break "connection closed";
                }
                if let Err(e) = outbox.drain(&mut scratch).await {
                    tracing::debug!(peer = %peer.name, error = %e, "write failed");
                    break "write failed";
                }
                if scratch.capacity() > WRITE_SCRATCH_MAX {
                    scratch = Vec::new();
                }
            }
            _ = ticker.tick() => {
                // Tick only when nothing was sent during the last interval.
                if outbox.pushed() == seen {
                    let mut tick = Vec::new();
                    frame::write_tick(&mut tick);
                    outbox.push(&tick);
                }
                seen = outbox.pushed();
            }
            _ = closed.changed() => break "connection closed",
        }
    };
    outbox.close();
    connection_down(&node, &peer, id, reason);
}

async fn reader(
    node: Arc<NodeInner>,
    peer: Atom,
    id: u64,
    read: OwnedReadHalf,
    outbox: Arc<Outbox>,
    leftover: Vec<u8>,
    mut closed: watch::Receiver<bool>,
) {
    let ticktime = node.config.net_ticktime;
    let mut check = tokio::time::interval(ticktime / 4);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_read = Instant::now();
    let config = &node.config;
    let mut pacing = ReadPacing::new(
        config.busy_poll,
        config.coalesce_reads,
        last_read.into_std(),
    );
    let mut buf = leftover;
    let mut start = 0;
    let limits = node.config.term_limits;
    // Atom references can expand a frame; never beyond twice the frame limit.
    let mut atom_cache = AtomCache::new().with_max_output(node.config.max_frame_bytes * 2);
    let mut expanded = Vec::new();
    let reason: String = 'outer: loop {
        // Handle every complete frame in the buffer.
        loop {
            let parsed = frame::parse_frame(&buf[start..], node.config.max_frame_bytes);
            let decoded = match parsed {
                Ok(Some((Frame::Tick, used))) => {
                    start += used;
                    continue;
                }
                Ok(Some((Frame::PassThrough(body), used))) => {
                    start += used;
                    control::decode(body, &limits).map_err(|e| e.to_string())
                }
                Ok(Some((Frame::WithHeader(body), used))) => {
                    start += used;
                    expanded.clear();
                    match atom_cache.expand(body, &limits, &mut expanded) {
                        Ok(()) => control::decode(&expanded, &limits).map_err(|e| e.to_string()),
                        Err(e) => Err(format!("distribution header: {e}")),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(peer = %peer.name, error = %e, "bad frame; disconnecting");
                    break 'outer format!("bad frame: {e}");
                }
            };
            pacing.frame();
            match decoded {
                Ok(message) => super::dispatch::dispatch(&node, &peer, message),
                Err(e) => {
                    tracing::warn!(peer = %peer.name, error = %e, "bad control message; disconnecting");
                    break 'outer format!("bad control message: {e}");
                }
            }
            if expanded.capacity() > READ_CHUNK * 4 {
                expanded = Vec::new();
            }
        }
        // Compact, then read more.
        if start > 0 {
            buf.drain(..start);
            start = 0;
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            n = read_some(&read, &mut buf, &mut pacing, &outbox) => match n {
                Ok(0) => break "peer closed the connection".into(),
                Ok(_) => {
                    last_read = Instant::now();
                    pacing.read(last_read.into_std(), outbox.pushed());
                }
                Err(e) => break format!("read failed: {e}"),
            },
            _ = check.tick() => {
                if last_read.elapsed() > ticktime {
                    tracing::warn!(peer = %peer.name, "no ticks within net_ticktime; disconnecting");
                    break "net_tick_timeout".into();
                }
            }
            _ = closed.changed() => break "connection closed".into(),
        }
        if buf.capacity() > 4 * READ_CHUNK && buf.len() < READ_CHUNK {
            buf.shrink_to(READ_CHUNK);
        }
    };
    connection_down(&node, &peer, id, &reason);
}

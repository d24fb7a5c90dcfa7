//! Talking to EPMD: start it if needed, register this node, look up peers.
//!
//! The protocol itself is `erl_dist::epmd`; this module adapts tokio
//! streams to it and bounds every exchange with a timeout.

use erl_dist::epmd::{EpmdClient, NodeEntry};
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

const EPMD_TIMEOUT: Duration = Duration::from_secs(5);

/// Why talking to EPMD failed (registering this node, or looking a peer up).
#[derive(Debug, Error)]
pub enum EpmdError {
    /// No EPMD listens there (the node starts `epmd -daemon` when none runs
    /// locally).
    #[error("cannot reach EPMD at {host}:{port}: {source}")]
    Unreachable {
        /// The host asked.
        host: String,
        /// EPMD's port (4369 unless `ERL_EPMD_PORT` says otherwise).
        port: u16,
        /// The connect error.
        source: std::io::Error,
    },
    /// EPMD would not register this node.
    #[error(
        "EPMD refused to register {name:?} (is a node of that name already running?): {detail}"
    )]
    RegisterRefused {
        /// This node's short name.
        name: String,
        /// What EPMD answered.
        detail: String,
    },
    /// The peer is not registered there (not running, or another host).
    #[error("EPMD at {host} has no node named {name:?}")]
    UnknownNode {
        /// The host asked.
        host: String,
        /// The peer's short name.
        name: String,
    },
    /// EPMD did not answer within 5 s.
    #[error("EPMD at {0} did not answer in time")]
    Timeout(String),
    /// EPMD answered something that is not its protocol.
    #[error("EPMD protocol error: {0}")]
    Protocol(String),
}

async fn connect(host: &str, port: u16) -> Result<TcpStream, EpmdError> {
    let unreachable = |source| EpmdError::Unreachable {
        host: host.to_owned(),
        port,
        source,
    };
    match timeout(EPMD_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(unreachable(e)),
        Err(_) => Err(EpmdError::Timeout(host.to_owned())),
    }
}

/// Starts `epmd -daemon` when nothing answers on the local EPMD port, as `erl` does.
pub(crate) async fn ensure_local_epmd(port: u16) -> Result<(), EpmdError> {
    if connect("127.0.0.1", port).await.is_ok() {
        return Ok(());
    }
    tracing::info!(port, "no EPMD running; starting `epmd -daemon`");
    let status = tokio::process::Command::new("epmd")
        .arg("-daemon")
        .env("ERL_EPMD_PORT", port.to_string())
        .status()
        .await
        .map_err(|source| EpmdError::Unreachable {
            host: "127.0.0.1 (could not run epmd)".into(),
            port,
            source,
        })?;
    if !status.success() {
        tracing::warn!(?status, "epmd -daemon exited with an error");
    }
    for _ in 0..50 {
        match connect("127.0.0.1", port).await {
            Ok(_) => return Ok(()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    connect("127.0.0.1", port).await.map(|_| ())
}

/// Registers `short_name` as a hidden node listening on `listen_port`.
/// The returned stream must stay open: EPMD forgets the node when it closes.
pub(crate) async fn register(
    epmd_port: u16,
    short_name: &str,
    listen_port: u16,
) -> Result<(Compat<TcpStream>, u32), EpmdError> {
    let stream = connect("127.0.0.1", epmd_port).await?;
    let client = EpmdClient::new(stream.compat());
    let entry = NodeEntry::new_hidden(short_name, listen_port);
    match timeout(EPMD_TIMEOUT, client.register(entry)).await {
        Ok(Ok((stream, creation))) => Ok((stream, creation.get())),
        Ok(Err(e)) => Err(EpmdError::RegisterRefused {
            name: short_name.to_owned(),
            detail: e.to_string(),
        }),
        Err(_) => Err(EpmdError::Timeout("127.0.0.1".into())),
    }
}

/// The distribution port of node `name` on `host`.
pub(crate) async fn lookup_port(host: &str, epmd_port: u16, name: &str) -> Result<u16, EpmdError> {
    let stream = connect(host, epmd_port).await?;
    let client = EpmdClient::new(stream.compat());
    match timeout(EPMD_TIMEOUT, client.get_node(name)).await {
        Ok(Ok(Some(entry))) => Ok(entry.port),
        Ok(Ok(None)) => Err(EpmdError::UnknownNode {
            host: host.to_owned(),
            name: name.to_owned(),
        }),
        Ok(Err(e)) => Err(EpmdError::Protocol(e.to_string())),
        Err(_) => Err(EpmdError::Timeout(host.to_owned())),
    }
}

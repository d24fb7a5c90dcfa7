//! How a node is configured: its name, cookie, ticks, input bounds and TLS.

use crate::dist::connection::ConnectionConfig;
use crate::dist::etf::Limits;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// Why a node's configuration is unusable.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The name has no `@host` part, or an empty one.
    #[error("node name {0:?} is not of the form name@host")]
    BadNodeName(String),
    /// Neither `--cookie`, `$ERLANG_COOKIE` nor `~/.erlang.cookie` gave one.
    #[error("no cookie: pass --cookie, set ERLANG_COOKIE, or create ~/.erlang.cookie ({0})")]
    NoCookie(String),
    /// `-sname` style without a host, and the host's name is unknown.
    #[error("cannot determine this host's name for {0}")]
    NoHostName(String),
}

/// Settings of one node. Build with [`NodeConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Full node name, `name@host`.
    pub name: String,
    /// The magic cookie both sides of a handshake must share.
    pub cookie: String,
    /// A peer that sends nothing for this long is dropped; we tick every quarter of it.
    pub net_ticktime: Duration,
    /// Where to listen for BEAM nodes; port 0 picks a free port.
    pub listen: SocketAddr,
    /// EPMD's port on every host (4369 unless ERL_EPMD_PORT says otherwise).
    pub epmd_port: u16,
    /// Largest distribution frame accepted from a peer.
    pub max_frame_bytes: usize,
    /// Bounds on every term received.
    pub term_limits: Limits,
    /// A handshake that takes longer than this is abandoned.
    pub handshake_timeout: Duration,
    /// After a short exchange with a peer, its reader polls the socket this
    /// long before sleeping, while the machine has a core to spare (as the
    /// BEAM's schedulers busy-wait). Zero turns it off.
    pub busy_poll: Duration,
    /// A reader woken in a one-way stream from a peer waits this long (plus
    /// the OS's timer slack) before reading, so that it reads a batch. It
    /// blocks the reader's worker thread meanwhile. Zero turns it off.
    pub coalesce_reads: Duration,
    /// TLS distribution (`inet_tls_dist`): when set, every connection,
    /// accepted or dialed, runs inside TLS and none in clear. Build it with
    /// [`super::TlsOptions`] (from an `ssl_dist.conf` or certificate files).
    pub tls: Option<super::TlsConfig>,
    /// Bytes queued for one peer (not yet written to its socket, large
    /// messages waiting for their fragments included) past which the
    /// connection is busy, as the BEAM's `+zdbbl` (1 MiB by default): a
    /// Rust process that sends to it then waits, at its next receive, until
    /// the queue drains below this (as the BEAM suspends the sender).
    pub busy_limit_bytes: usize,
    /// Bytes queued for one peer past which the connection is dropped (a
    /// peer that does not read while senders that cannot wait go on):
    /// 64 MiB by default. A frame pushed below it is accepted whole, so
    /// the queue holds at most this plus one message.
    pub max_queued_bytes: usize,
}

impl NodeConfig {
    /// A configuration with OTP's defaults (net_ticktime 60 s).
    pub fn new(name: impl Into<String>, cookie: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            cookie: cookie.into(),
            net_ticktime: Duration::from_secs(60),
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            epmd_port: std::env::var("ERL_EPMD_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(4369),
            max_frame_bytes: 64 << 20,
            term_limits: Limits::default(),
            handshake_timeout: Duration::from_secs(7),
            busy_poll: Duration::from_micros(50),
            coalesce_reads: Duration::from_micros(20),
            tls: None,
            busy_limit_bytes: 1 << 20,
            max_queued_bytes: 64 << 20,
        }
    }

    /// What each connection needs of this configuration.
    pub(crate) fn connection(&self) -> ConnectionConfig {
        ConnectionConfig {
            net_ticktime: self.net_ticktime,
            max_frame_bytes: self.max_frame_bytes,
            term_limits: self.term_limits,
        }
    }

    /// Sets `net_ticktime` (OTP's default is 60 s).
    pub fn with_ticktime(mut self, ticktime: Duration) -> Self {
        self.net_ticktime = ticktime;
        self
    }

    /// How long a reader polls its socket after a short exchange (50 µs by
    /// default, zero turns it off; see the README's Performance).
    pub fn with_busy_poll(mut self, busy_poll: Duration) -> Self {
        self.busy_poll = busy_poll;
        self
    }

    /// Runs every distribution connection inside TLS (see [`super::TlsOptions`]).
    pub fn with_tls(mut self, tls: super::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the busy limit and the hard limit of each connection's queue of
    /// outgoing bytes (see [`NodeConfig::busy_limit_bytes`] and
    /// [`NodeConfig::max_queued_bytes`]).
    pub fn with_outgoing_limits(mut self, busy: usize, max: usize) -> Self {
        self.busy_limit_bytes = busy;
        self.max_queued_bytes = max.max(busy);
        self
    }

    /// How long a reader woken in a one-way stream waits to read a batch
    /// (20 µs by default, zero turns it off).
    pub fn with_coalesce_reads(mut self, wait: Duration) -> Self {
        self.coalesce_reads = wait;
        self
    }
}

/// Splits `name@host`, checking both parts are there.
pub(super) fn split_node_name(full: &str) -> Result<(&str, &str), ConfigError> {
    match full.split_once('@') {
        Some((name, host)) if !name.is_empty() && !host.is_empty() && full.len() <= 255 => {
            Ok((name, host))
        }
        _ => Err(ConfigError::BadNodeName(full.to_owned())),
    }
}

/// Turns an `erl -name` or `-sname` argument into a full node name, adding
/// this host's name when the argument has no `@host`, as `erl` does.
pub fn full_node_name(arg: &str, long: bool) -> Result<String, ConfigError> {
    if arg.contains('@') {
        split_node_name(arg)?;
        return Ok(arg.to_owned());
    }
    let host = hostname().ok_or_else(|| ConfigError::NoHostName(arg.to_owned()))?;
    let host = if long {
        if !host.contains('.') {
            // erl refuses a long name without a domain; so do we, but say what to do.
            return Err(ConfigError::NoHostName(format!(
                "{arg}: host {host:?} has no domain; use --name {arg}@127.0.0.1 or a fully qualified name"
            )));
        }
        host
    } else {
        host.split('.').next().unwrap_or(&host).to_owned()
    };
    let full = format!("{arg}@{host}");
    split_node_name(&full)?;
    Ok(full)
}

fn hostname() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let h = raw.trim();
    (!h.is_empty()).then(|| h.to_owned())
}

/// The cookie as `erl` would find it: the explicit value, else
/// `$ERLANG_COOKIE`, else the first line of `~/.erlang.cookie`, which is
/// created with a random cookie (mode 0400) when it does not exist, as `erl`
/// does.
pub fn resolve_cookie(explicit: Option<&str>) -> Result<String, ConfigError> {
    if let Some(c) = explicit {
        return Ok(c.to_owned());
    }
    if let Ok(c) = std::env::var("ERLANG_COOKIE") {
        if !c.is_empty() {
            return Ok(c);
        }
    }
    cookie_from_file(&cookie_path())
}

fn cookie_from_file(path: &std::path::Path) -> Result<String, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.lines().next().unwrap_or("").trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_cookie_file(path),
        Err(e) => Err(ConfigError::NoCookie(format!("{}: {e}", path.display()))),
    }
}

fn create_cookie_file(path: &std::path::Path) -> Result<String, ConfigError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let cookie: String = (0..20)
        .map(|_| char::from(b'A' + rand::random_range(0..26u8)))
        .collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)
        .map_err(|e| ConfigError::NoCookie(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(cookie.as_bytes())
        .map_err(|e| ConfigError::NoCookie(format!("cannot write {}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), "created a new random cookie file, as erl does");
    Ok(cookie)
}

fn cookie_path() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".erlang.cookie")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_need_both_parts() {
        assert!(split_node_name("a@b").is_ok());
        for bad in ["a", "@b", "a@", ""] {
            assert!(split_node_name(bad).is_err(), "{bad}");
        }
        assert_eq!(full_node_name("x@127.0.0.1", true).unwrap(), "x@127.0.0.1");
        let short = full_node_name("x", false).unwrap();
        assert!(short.starts_with("x@") && !short[2..].contains('.'));
    }

    #[test]
    fn explicit_cookie_wins() {
        assert_eq!(resolve_cookie(Some("c")).unwrap(), "c");
    }

    #[test]
    fn a_missing_cookie_file_is_created_and_then_read() {
        let dir = std::env::temp_dir().join(format!("eq_cookie_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".erlang.cookie");
        let _ = std::fs::remove_file(&path);
        let created = cookie_from_file(&path).unwrap();
        assert_eq!(created.len(), 20);
        assert!(created.bytes().all(|b| b.is_ascii_uppercase()));
        assert_eq!(cookie_from_file(&path).unwrap(), created);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o400);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The `erl_quorum` command: run a node (a locker master or replica), or
//! inspect and use a running cluster from a shell, in the spirit of etcdctl.

mod ops;

use clap::{Args, Parser, Subcommand};
use erl_quorum::node::TlsOptions;
use erl_quorum::node::{full_node_name, resolve_cookie};
use erl_quorum::quorum::service::{self, ServiceConfig};
use erl_quorum::{Node, NodeConfig};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "erl_quorum",
    version,
    about = "A Rust node for Erlang clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct NodeArgs {
    /// Long node name (name@host), as `erl -name`.
    #[arg(long, conflicts_with = "sname")]
    name: Option<String>,
    /// Short node name (name or name@host), as `erl -sname`.
    #[arg(long)]
    sname: Option<String>,
    /// Cookie; defaults to $ERLANG_COOKIE, then ~/.erlang.cookie.
    #[arg(long)]
    cookie: Option<String>,
    /// Seconds of silence after which a peer is dropped (OTP's net_ticktime).
    #[arg(long, default_value_t = 60)]
    net_ticktime: u64,
    /// Microseconds a connection's reader polls its socket after a short
    /// exchange before it sleeps, while a core is spare (0: never).
    #[arg(long, default_value_t = 50)]
    busy_poll_us: u64,
    /// Microseconds a connection's reader, woken in a one-way stream, waits
    /// before reading so that it reads a batch (0: never).
    #[arg(long, default_value_t = 20)]
    coalesce_us: u64,
    /// Threads of the node's runtime. One is the default: a reader that
    /// polls its socket works best on the thread that polls for I/O, and the
    /// services are each one process.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// TLS distribution, as `erl -proto_dist inet_tls -ssl_dist_optfile
    /// FILE`: an ssl_dist.conf (`[{server, [...]}, {client, [...]}].`).
    /// Every connection then runs inside TLS; none in clear.
    #[arg(
        long,
        value_name = "FILE",
        env = "ERL_QUORUM_SSL_DIST_OPTFILE",
        conflicts_with = "tls_cert"
    )]
    ssl_dist_optfile: Option<std::path::PathBuf>,
    /// TLS distribution with mutual authentication: this node's certificate
    /// (PEM), with --tls-key and --tls-ca (both sides verify_peer, and
    /// fail_if_no_peer_cert on the server side).
    #[arg(long, value_name = "PEM", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<std::path::PathBuf>,
    /// This node's private key (PEM), with --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// The CA certificates a peer's chain must lead to (PEM), with --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_ca: Option<std::path::PathBuf>,
}

impl NodeArgs {
    fn config(&self, default_name: &str) -> Result<NodeConfig, Box<dyn std::error::Error>> {
        let name = match (&self.name, &self.sname) {
            (Some(n), _) => full_node_name(n, true)?,
            (None, Some(n)) => full_node_name(n, false)?,
            (None, None) => default_name.to_owned(),
        };
        let cookie = resolve_cookie(self.cookie.as_deref())?;
        let config = NodeConfig::new(name, cookie)
            .with_ticktime(Duration::from_secs(self.net_ticktime.max(1)))
            .with_busy_poll(Duration::from_micros(self.busy_poll_us))
            .with_coalesce_reads(Duration::from_micros(self.coalesce_us));
        let tls = match (
            &self.ssl_dist_optfile,
            &self.tls_cert,
            &self.tls_key,
            &self.tls_ca,
        ) {
            (Some(file), ..) => Some(TlsOptions::from_optfile(file)?),
            (None, Some(cert), Some(key), Some(ca)) => Some(TlsOptions::mutual(cert, key, ca)),
            _ => None,
        };
        Ok(match tls {
            Some(tls) => config.with_tls(tls.build()?),
            None => config,
        })
    }
}

/// Which locker cluster a client command talks to.
#[derive(Args, Clone)]
struct ClusterArgs {
    /// Master nodes, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    masters: Vec<String>,
    /// Replica nodes, comma-separated (they also get `release`).
    #[arg(long, value_delimiter = ',')]
    replicas: Vec<String>,
    /// Quorum size; defaults to a majority of the masters.
    #[arg(long)]
    w: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node with the locker service and the erl_quorum service
    /// (Paxtor locks, the registry) until interrupted. With no --masters it
    /// is a cluster of itself with W=1.
    Serve {
        #[command(flatten)]
        node: NodeArgs,
        /// Master nodes, comma-separated (may include this node).
        #[arg(long, value_delimiter = ',')]
        masters: Vec<String>,
        /// Replica nodes, comma-separated.
        #[arg(long, value_delimiter = ',')]
        replicas: Vec<String>,
        /// Quorum size (default: a majority of the masters).
        #[arg(long)]
        w: Option<usize>,
        /// The longest lease granted, in ms; a restarted master refuses
        /// promises for this long (plus the promise time).
        #[arg(long, default_value_t = 60_000)]
        max_lease_ms: u64,
        /// How long a vote (promise) holds a key, in ms (locker's 10 s).
        #[arg(long, default_value_t = 10_000)]
        promise_ms: u64,
        /// Not needed (kept for compatibility): a master catches up from its
        /// peers at start, and a brand-new cluster serves at once. Skips the
        /// restart guard and the catch-up; never use it for a master that may
        /// have granted leases before a crash.
        #[arg(long)]
        fresh: bool,
        /// Wait out the whole restart guard instead of catching up from
        /// peers (for tests of the guard).
        #[arg(long, hide = true)]
        no_catch_up: bool,
        /// The erl_quorum service's session lease, in ms: how long every
        /// lock and name it serves outlives its last renewal, and (plus
        /// --release-margin-ms) how long a hold outlives the loss of its
        /// owner's node. At least 5000: owners are told when less than 3 s
        /// remain.
        #[arg(long, default_value_t = 10_000)]
        session_lease_ms: u64,
        /// How long past the session lease the hold of an owner whose node
        /// was lost is kept, in ms (then it is released, and a supervised
        /// name restarted elsewhere). The BEAM guard tells such an owner
        /// 2 s before the lease ends, so tests may use 500; the default of
        /// 2000 also covers a guard run with a smaller `margin_ms`, owners
        /// told by message (`on_lost = message`), and late timers.
        #[arg(long, default_value_t = RELEASE_MARGIN_MS)]
        release_margin_ms: u64,
        /// Serve Prometheus metrics on this address (`GET /metrics`), e.g.
        /// 127.0.0.1:9568; port 0 picks a free port (printed at start).
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
        /// Do not spread the shards over the live serving nodes: a shard
        /// stays with the first node asked for it while that node lives,
        /// and moves only on a graceful stop. (By default each shard is
        /// handed, gracefully, to the live node it is preferred on.)
        #[arg(long)]
        no_rebalance: bool,
        /// Where a master keeps its marker `<node>.served` (created if
        /// missing; default $HOME/.erl_quorum): a master restarted with its
        /// marker never takes a cluster of starting masters, or itself
        /// alone, for a new cluster, and waits out its guard instead.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<std::path::PathBuf>,
    },
    /// Run a hidden node until interrupted (answers net_adm:ping).
    Run(NodeArgs),
    /// Ping a node, as net_adm:ping/1 does: prints pong or pang.
    Ping {
        /// The node to ping, name@host.
        target: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Show each node's role, W, counts, guard and erl_quorum service, one
    /// row per node (Rust or BEAM locker).
    Status {
        /// `table` for people, `terms` (one Erlang term per node) for scripts.
        #[arg(long, value_enum, default_value = "table")]
        format: ops::StatusFormat,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Take KEY with VALUE for a lease (both Erlang terms, e.g. '{job,1}').
    Lock {
        key: String,
        value: String,
        #[arg(long, default_value_t = 2000)]
        lease_ms: u64,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Read KEY from the first master that answers (no quorum).
    Read {
        key: String,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Release KEY if it holds VALUE.
    Release {
        key: String,
        value: String,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
}

impl Command {
    fn node_args(&self) -> &NodeArgs {
        match self {
            Command::Serve { node, .. }
            | Command::Run(node)
            | Command::Ping { node, .. }
            | Command::Status { node, .. }
            | Command::Lock { node, .. }
            | Command::Read { node, .. }
            | Command::Release { node, .. } => node,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Servers log what happens to them; one-shot commands only problems.
    let default_level = match cli.command {
        Command::Serve { .. } | Command::Run(_) => "erl_quorum=info",
        _ => "erl_quorum=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.command.node_args().workers.max(1))
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("erl_quorum: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("erl_quorum: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A node name for a short-lived command-line client.
fn client_name() -> String {
    format!("erl_quorum_cli_{}@127.0.0.1", std::process::id())
}

/// The default of `--release-margin-ms`.
///
/// A serving node releases the hold of an owner whose node it lost (and
/// restarts a supervised name elsewhere) `session_lease + margin` after
/// its `DOWN noconnection`. The owner must have been told by then. On the
/// keepalive path it always is, with no node-side margin at all: the
/// guard's last answered keepalive was sent (`SentAt`) before the
/// connection went, its `ValidMs` is at most the session lease, and the
/// guard tells its owners at `SentAt + ValidMs - margin_ms` (2 s) plus one
/// tick (200 ms), or at once on `nodedown`; before its first keepalive,
/// at the first `eq_owned` plus 1 s. So a node-side margin of 500 ms, as
/// the singleton tests use, leaves 2.3 s to spare.
///
/// The default still stays 2 s, because the argument does not hold on
/// every path: `margin_ms` is the guard's application setting, which an
/// operator may lower (to 0 the node-side margin is all that is left);
/// with `on_lost = message` the owner is only sent a message and stops
/// in its own time; and the guard's timer may run late on a loaded BEAM
/// (the 2 s also cover clock rates drifting apart over a lease). The
/// default keeps each of those safe on its own.
const RELEASE_MARGIN_MS: u64 = 2_000;
/// How long a stop waits, after the drain, for the queued messages to be
/// written before closing the connections.
const FLUSH_BEFORE_STOP: Duration = Duration::from_secs(1);

/// `$HOME/.erl_quorum`, beside `~/.erlang.cookie` (`.` without a HOME).
fn default_state_dir() -> std::path::PathBuf {
    std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("."))
        .join(".erl_quorum")
}

async fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Serve {
            node: args,
            masters,
            replicas,
            w,
            max_lease_ms,
            promise_ms,
            fresh,
            no_catch_up,
            session_lease_ms,
            release_margin_ms,
            metrics_addr,
            no_rebalance,
            state_dir,
        } => {
            let node = Node::start(args.config("erl_quorum@127.0.0.1")?).await?;
            let w = w.unwrap_or(masters.len().max(1) / 2 + 1);
            let config = ServiceConfig {
                masters,
                replicas,
                w,
                fresh_cluster: fresh,
                catch_up: !no_catch_up,
                state_dir: Some(state_dir.unwrap_or_else(default_state_dir)),
                store: erl_quorum::quorum::StoreConfig {
                    max_lease_ms,
                    promise_ms,
                    w,
                },
                ..ServiceConfig::default()
            };
            let defaults = erl_quorum::services::ServicesConfig::default();
            // Owners are told 3 s before the session could lapse; renew
            // often enough that a couple of lost rounds never get there.
            let session_lease = Duration::from_millis(session_lease_ms.max(5_000));
            // The masters refuse any lease over --max-lease-ms, sessions too.
            let session_lease = if session_lease.as_millis() as u64 > max_lease_ms {
                tracing::warn!(
                    session_lease_ms = session_lease.as_millis() as u64,
                    max_lease_ms,
                    "session lease cut to --max-lease-ms; below 5 s owners are told of a lapse with little time to spare"
                );
                Duration::from_millis(max_lease_ms)
            } else {
                session_lease
            };
            let services = erl_quorum::services::ServicesConfig {
                masters: config.masters.clone(),
                w,
                session_lease,
                renew_every: (session_lease / 8).min(defaults.renew_every),
                margin: Duration::from_millis(release_margin_ms),
                rebalance: !no_rebalance,
                ..defaults
            };
            service::start(&node, config)?;
            let stopper = erl_quorum::services::start_stoppable(&node, services)?;
            if let Some(addr) = metrics_addr {
                let bound = erl_quorum::metrics::serve(&node, addr).await?;
                println!("metrics on http://{bound}/metrics");
            }
            println!(
                "{} serving locker and erl_quorum (locks, names; W={w}); Ctrl-C stops it",
                node.name()
            );
            wait_for_signal().await;
            // Hand the shards over first; a second signal stops at once.
            let drain = stopper.drain(erl_quorum::services::DRAIN_TIMEOUT);
            tokio::select! {
                drained = drain => tracing::info!(drained, "erl_quorum: stopping"),
                _ = wait_for_signal() => {}
            }
            // The last handoff's `eq_moved` notices may still be queued:
            // closing first would leave their owners to a nodedown.
            if !node.flushed(FLUSH_BEFORE_STOP).await {
                tracing::warn!("erl_quorum: stopping with messages still queued");
            }
            node.shutdown();
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let node = Node::start(args.config("erl_quorum@127.0.0.1")?).await?;
            println!("{} running (hidden); Ctrl-C stops it", node.name());
            wait_for_signal().await;
            node.shutdown();
            Ok(ExitCode::SUCCESS)
        }
        Command::Ping { target, node: args } => {
            let node = Node::start(args.config(&client_name())?).await?;
            let pong = ops::ping(&node, &target).await;
            println!("{}", if pong { "pong" } else { "pang" });
            node.shutdown();
            Ok(if pong {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Status {
            format,
            cluster,
            node: args,
        } => {
            let node = Node::start(args.config(&client_name())?).await?;
            let ok = ops::status(&node, &cluster.masters, &cluster.replicas, format).await;
            node.shutdown();
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Lock {
            key,
            value,
            lease_ms,
            cluster,
            node: args,
        } => {
            let node = Node::start(args.config(&client_name())?).await?;
            let mut client = ops::client(&node, &cluster.masters, &cluster.replicas, cluster.w);
            let result = client
                .lock(
                    ops::term(&key)?,
                    ops::term(&value)?,
                    Duration::from_millis(lease_ms),
                )
                .await;
            node.shutdown();
            ops::report(result)
        }
        Command::Read {
            key,
            cluster,
            node: args,
        } => {
            let node = Node::start(args.config(&client_name())?).await?;
            let mut client = ops::client(&node, &cluster.masters, &cluster.replicas, cluster.w);
            let result = ops::read(&mut client, &cluster.masters, ops::term(&key)?).await;
            node.shutdown();
            result
        }
        Command::Release {
            key,
            value,
            cluster,
            node: args,
        } => {
            let node = Node::start(args.config(&client_name())?).await?;
            let mut client = ops::client(&node, &cluster.masters, &cluster.replicas, cluster.w);
            let result = client.release(ops::term(&key)?, ops::term(&value)?).await;
            node.shutdown();
            ops::report(result)
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

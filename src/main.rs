//! The `erl_quorum` command: run a hidden node, or poke a cluster from a shell.

use clap::{Args, Parser, Subcommand};
use erl_quorum::node::{full_node_name, resolve_cookie};
use erl_quorum::term::atom;
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
}

impl NodeArgs {
    fn config(&self, default_name: &str) -> Result<NodeConfig, Box<dyn std::error::Error>> {
        let name = match (&self.name, &self.sname) {
            (Some(n), _) => full_node_name(n, true)?,
            (None, Some(n)) => full_node_name(n, false)?,
            (None, None) => default_name.to_owned(),
        };
        let cookie = resolve_cookie(self.cookie.as_deref())?;
        Ok(NodeConfig::new(name, cookie)
            .with_ticktime(Duration::from_secs(self.net_ticktime.max(1))))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a hidden node until interrupted (answers net_adm:ping).
    Run(NodeArgs),
    /// Ping a node, as net_adm:ping/1 does: prints pong or pang.
    Ping {
        /// The node to ping, name@host.
        target: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "erl_quorum=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("erl_quorum: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Run(args) => {
            let node = Node::start(args.config("erl_quorum@127.0.0.1")?).await?;
            println!("{} running (hidden); Ctrl-C stops it", node.name());
            tokio::signal::ctrl_c().await?;
            node.shutdown();
            Ok(ExitCode::SUCCESS)
        }
        Command::Ping { target, node: args } => {
            let name = format!("erl_quorum_ping_{}@127.0.0.1", std::process::id());
            let node = Node::start(args.config(&name)?).await?;
            let mut process = node.spawn_process();
            let request = erl_quorum::term::tuple(vec![atom("is_auth"), atom(node.name())]);
            let answer = process
                .call(
                    ("net_kernel", target.as_str()),
                    request,
                    Duration::from_secs(5),
                )
                .await;
            let pong = matches!(answer, Ok(ref t) if erl_quorum::term::is_atom(t, "yes"));
            println!("{}", if pong { "pong" } else { "pang" });
            node.shutdown();
            Ok(if pong {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

//! The README's first command runs this: a local cluster of three Rust
//! nodes (locker masters, W=2, each serving locks and names), one Erlang
//! node and one Elixir node. Erlang, Elixir and Rust processes take turns
//! on one Paxtor lock, `job_42`, and each, while holding it, calls the next
//! language's server by its registered name (`{via, rust_registry, Name}`).
//!
//! ```text
//! scripts/demo.sh        # builds rebar_fixture with rebar3, then runs this
//! scripts/demo.sh --tls  # the same with every node on TLS distribution
//! ```
//!
//! With `--tls` it first writes a CA and a node certificate (rcgen) and an
//! `ssl_dist.conf` into `target/demo_tls/`; the Rust nodes read that file
//! as `erl_quorum --ssl-dist-optfile` would, and the BEAM nodes start with
//! `-proto_dist inet_tls -ssl_dist_optfile` on it (mutual authentication,
//! `verify_peer`, `fail_if_no_peer_cert`).
//! It needs `erl`, `elixir` and the compiled `rebar_fixture` (its ebin
//! directory in `EQ_FIXTURE_EBIN`).

use erl_quorum::process::{spawn_server, CallReply, Caller, GenServer, Process};
use erl_quorum::quorum::service::{self, ServiceConfig};
use erl_quorum::services::{self, LockReply, Registry, ServicesConfig};
use erl_quorum::term::{atom, tuple, Term};
use erl_quorum::{Node, NodeConfig};
use std::process::Stdio;

#[path = "../tests/tls_support/certs.rs"]
mod certs;
use std::time::Duration;

const COOKIE: &str = "erl_quorum_demo";
const TURNS: usize = 3;

/// A Rust gen_server that Erlang and Elixir reach by its registered name.
struct Greeter;

impl GenServer for Greeter {
    async fn handle_call(&mut self, request: Term, _: &Caller, _: &mut Process) -> CallReply {
        CallReply::Reply(tuple(vec![atom("hello_from_rust"), request]))
    }
}

/// The Erlang node: registers `erlang_greeter`, then takes its turns.
const ERLANG_SCRIPT: &str = r#"
    Nodes = [list_to_atom(N) || N <- string:tokens(os:getenv("RUST_NODES"), ",")],
    ok = application:load(erl_quorum),
    ok = application:set_env(erl_quorum, rust_nodes, Nodes),
    {ok, _} = application:ensure_all_started(erl_quorum),
    Greeter = spawn(fun Loop() ->
        receive {'$gen_call', From, Req} -> gen_server:reply(From, {hello_from_erlang, Req}), Loop() end
    end),
    yes = rust_registry:register_name(erlang_greeter, Greeter),
    WaitFor = fun W(Name) -> case rust_registry:whereis_name(Name) of undefined -> timer:sleep(50), W(Name); P -> P end end,
    WaitFor(elixir_greeter),
    Turn = fun(I) ->
        {_, Ref} = spawn_monitor(fun() ->
            acquired = paxtor:lock(job_42),
            io:format("  [erlang] ~p holds job_42 (turn ~p)~n", [self(), I]),
            Reply = gen_server:call({via, rust_registry, elixir_greeter}, {hi, from_erlang}),
            io:format("  [erlang]   elixir_greeter replied ~p~n", [Reply]),
            timer:sleep(200)
        end),
        receive {'DOWN', Ref, _, _, _} -> ok end
    end,
    lists:foreach(Turn, lists:seq(1, 3)),
    timer:sleep(3000),
    halt().
"#;

/// The Elixir node: an Elixir GenServer under a via name, then its turns.
const ELIXIR_SCRIPT: &str = r#"
nodes = System.get_env("RUST_NODES") |> String.split(",") |> Enum.map(&String.to_atom/1)
:ok = Application.load(:erl_quorum)
Application.put_env(:erl_quorum, :rust_nodes, nodes)
{:ok, _} = Application.ensure_all_started(:erl_quorum)
defmodule ElixirGreeter do
  use GenServer
  def init(state), do: {:ok, state}
  def handle_call(req, _from, state), do: {:reply, {:hello_from_elixir, req}, state}
end
{:ok, _} = GenServer.start_link(ElixirGreeter, nil, name: {:via, :rust_registry, :elixir_greeter})
for i <- 1..3 do
  {_, ref} = spawn_monitor(fn ->
    :acquired = Paxtor.lock(:job_42)
    IO.puts("  [elixir] #{inspect(self())} holds job_42 (turn #{i})")
    reply = GenServer.call({:via, :rust_registry, :rust_greeter}, {:hi, :from_elixir})
    IO.puts("  [elixir]   rust_greeter replied #{inspect(reply)}")
    Process.sleep(200)
  end)
  receive do
    {:DOWN, ^ref, _, _, _} -> :ok
  end
end
Process.sleep(3000)
"#;

async fn start_rust_node(
    name: &str,
    masters: &[String],
    tls: Option<&erl_quorum::node::TlsConfig>,
) -> Result<Node, Box<dyn std::error::Error>> {
    let mut config = NodeConfig::new(name.to_owned(), COOKIE);
    if let Some(tls) = tls {
        config = config.with_tls(tls.clone());
    }
    let node = Node::start(config).await?;
    // A brand-new cluster: no restart guard to wait out.
    service::start(
        &node,
        ServiceConfig {
            masters: masters.to_vec(),
            w: 2,
            fresh_cluster: true,
            ..ServiceConfig::default()
        },
    )?;
    services::start(
        &node,
        ServicesConfig {
            masters: masters.to_vec(),
            w: 2,
            ..ServicesConfig::default()
        },
    )?;
    Ok(node)
}

fn spawn_beam(
    program: &str,
    args: &[&str],
    rust_nodes: &str,
) -> Result<tokio::process::Child, Box<dyn std::error::Error>> {
    Ok(tokio::process::Command::new(program)
        .args(args)
        .env("RUST_NODES", rust_nodes)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program} (scripts/demo.sh installs it): {e}"))?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ebin = std::env::var("EQ_FIXTURE_EBIN")
        .map_err(|_| "set EQ_FIXTURE_EBIN to rebar_fixture's ebin (scripts/demo.sh does)")?;
    let stamp = std::process::id();
    let optfile = if std::env::args().any(|a| a == "--tls") {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/demo_tls");
        let pki = certs::generate(&dir)?;
        let good = pki.good();
        let file = pki.optfile("ssl_dist.conf", &good, &good)?;
        println!(
            "TLS distribution: certificates and {} written",
            file.display()
        );
        Some(file)
    } else {
        None
    };
    let tls = match &optfile {
        Some(f) => Some(erl_quorum::node::TlsOptions::from_optfile(f)?.build()?),
        None => None,
    };
    let tls_erl: Vec<String> = match &optfile {
        Some(f) => vec![
            "-proto_dist".into(),
            "inet_tls".into(),
            "-ssl_dist_optfile".into(),
            f.display().to_string(),
        ],
        None => Vec::new(),
    };
    let masters: Vec<String> = (1..=3)
        .map(|i| format!("demo_rust{i}_{stamp}@127.0.0.1"))
        .collect();
    let mut nodes = Vec::new();
    for name in &masters {
        nodes.push(start_rust_node(name, &masters, tls.as_ref()).await?);
    }
    println!(
        "Rust nodes up: {} (locker masters, W=2)",
        masters.join(", ")
    );

    // A Rust server registered on the shared registry.
    let greeter = spawn_server(&nodes[0], None, Greeter)?;
    let mut registry = Registry::new(nodes[0].spawn_process());
    let registered = registry.register(atom("rust_greeter"), &greeter).await?;
    println!("  [rust] registered rust_greeter -> {registered}");

    let rust_nodes = masters.join(",");
    let erlang_name = format!("demo_erlang_{stamp}@127.0.0.1");
    let elixir_name = format!("demo_elixir_{stamp}@127.0.0.1");
    let mut erl_args = vec![
        "-noshell",
        "-name",
        &erlang_name,
        "-setcookie",
        COOKIE,
        "-pa",
        &ebin,
    ];
    erl_args.extend(tls_erl.iter().map(String::as_str));
    erl_args.extend(["-eval", ERLANG_SCRIPT]);
    let mut erlang = spawn_beam("erl", &erl_args, &rust_nodes)?;
    let elixir_erl = tls_erl.join(" ");
    let mut elixir_args = vec!["--name", &elixir_name, "--cookie", COOKIE, "-pa", &ebin];
    if !elixir_erl.is_empty() {
        elixir_args.extend(["--erl", &elixir_erl]);
    }
    elixir_args.extend(["-e", ELIXIR_SCRIPT]);
    let mut elixir = spawn_beam("elixir", &elixir_args, &rust_nodes)?;
    println!("Started Erlang node {erlang_name} and Elixir node {elixir_name}");

    // Rust's turns: each turn a fresh process that holds the lock until it ends.
    let mut lookup = Registry::new(nodes[1].spawn_process()).with_server(&masters[1]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // Wait until both BEAM nodes are up and serving, so the turns interleave.
    for name in ["erlang_greeter", "elixir_greeter"] {
        while lookup.whereis(atom(name)).await?.is_none() {
            if tokio::time::Instant::now() > deadline {
                return Err(format!("{name} was never registered").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for turn in 1..=TURNS {
        let mut owner = Registry::new(nodes[1].spawn_process()).with_server(&masters[1]);
        match owner.lock(atom("job_42"), true).await? {
            LockReply::Acquired => {}
            other => return Err(format!("lock job_42: {other:?}").into()),
        }
        println!(
            "  [rust] {} holds job_42 (turn {turn})",
            owner.process().pid()
        );
        let reply = owner
            .call_name(
                atom("erlang_greeter"),
                tuple(vec![atom("hi"), atom("from_rust")]),
                Duration::from_secs(5),
            )
            .await?;
        println!("  [rust]   erlang_greeter replied {reply}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(owner); // the process ends: the lock goes to the next in line
    }
    erlang.wait().await?;
    elixir.wait().await?;
    for node in nodes {
        node.shutdown();
    }
    println!("Demo finished: {TURNS} turns each for Erlang, Elixir and Rust on job_42.");
    Ok(())
}

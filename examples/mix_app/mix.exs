defmodule MixApp.MixProject do
  # A user project that depends on erl_quorum (the BEAM side of the Rust
  # nodes) by path. rebar_fixture has a mix.exs, so mix builds it as a mix
  # dependency: its Erlang modules and its Elixir ones (`Sworm`,
  # `ErlQuorum.Server`), offline, without rebar3 or Hex. A real project
  # uses `{:erl_quorum, git: "https://…/erl_quorum.git", sparse: "rebar_fixture"}`.
  use Mix.Project

  def project do
    [
      app: :mix_app,
      version: "0.1.0",
      elixir: "~> 1.14",
      deps: [{:erl_quorum, path: "../../rebar_fixture"}]
    ]
  end

  # erl_quorum is started before this application (mix infers that from
  # deps); its `rust_nodes` is set in config/runtime.exs or before start.
  def application do
    [extra_applications: [:logger]]
  end
end

defmodule ErlQuorum.MixProject do
  # For mix projects that depend on erl_quorum by path or git without
  # `manager: :rebar3`: mix then compiles the Erlang modules (src/) and the
  # Elixir ones (lib/: `Sworm`, `ErlQuorum.Server`), which rebar3 does not.
  #
  # The application's description, version, environment and callback module
  # are read from src/erl_quorum.app.src, the one place they are written.
  use Mix.Project

  @app_src Path.join([__DIR__, "src", "erl_quorum.app.src"])
  @external_resource @app_src
  {:ok, [{:application, :erl_quorum, props}]} = :file.consult(@app_src)
  @props props

  def project do
    [
      app: :erl_quorum,
      version: to_string(@props[:vsn]),
      description: to_string(@props[:description]),
      elixir: "~> 1.14",
      erlc_paths: ["src"],
      erlc_options: [:debug_info, :warnings_as_errors],
      elixirc_paths: ["lib"],
      deps: []
    ]
  end

  def application do
    [
      mod: @props[:mod],
      registered: @props[:registered],
      env: @props[:env],
      extra_applications: [:logger]
    ]
  end
end

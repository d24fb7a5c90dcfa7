defmodule MixApp do
  @moduledoc "The sample's API: what a user project does with erl_quorum."

  @doc """
  Starts a greeter that takes the cluster-wide lock `key` (Paxtor's: held
  until the greeter exits) and registers under `name` on the Rust nodes, so
  any Erlang, Elixir or Rust process in the cluster can call it by name.
  """
  def start(name, key) do
    GenServer.start(MixApp.Greeter, key, name: {:via, :rust_registry, name})
  end

  @doc "Calls whatever process is registered under `name` (BEAM or Rust)."
  def call(name, request) do
    GenServer.call({:via, :rust_registry, name}, request, 5000)
  end

  @doc """
  Who holds the lock `key`, as any node sees it (`:undefined` if nobody).
  Through the lock's via module: `Paxtor.whereis/1` resolves process names,
  as in the real Paxtor, not lock keys.
  """
  def holder(key), do: Paxtor.Lock.whereis_name(key)
end

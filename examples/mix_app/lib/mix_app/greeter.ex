defmodule MixApp.Greeter do
  @moduledoc "A GenServer that owns a cluster-wide lock and answers calls by name."
  use GenServer

  @impl true
  def init(key) do
    # Blocks until the lock is ours; `:no_quorum` is retried by default.
    :acquired = Paxtor.lock(key)
    {:ok, key}
  end

  @impl true
  def handle_call({:hello, who}, _from, key) do
    {:reply, {:hello, who, :from, node(), :holding, key}, key}
  end

  def handle_call(_other, _from, key), do: {:reply, {:error, :unknown_call}, key}
end

defmodule EqCluster do
  @moduledoc """
  gen_cluster's membership callbacks for Elixir (the work is `:eq_cluster`'s):
  a process joins a cluster through any member and is called back as
  members join and leave.

      defmodule MyMember do
        use EqCluster

        def init(args), do: {:ok, %{args: args}}
        def handle_join(pid, members, state), do: {:ok, state}
        def handle_leave(pid, members, info, state), do: {:ok, state}
        # optional: handle_node_joined/3 (once, on the joiner), handle_call/3,
        # handle_cast/2, handle_info/2, terminate/2, seed_nodes/1
      end

      {:ok, pid} = EqCluster.start_link(MyMember, [seed: {:my_member, :"a@host"}], name: :my_member)
      EqCluster.members(pid)   #=> sorted member pids

  `members` is the sorted list after the change (the joiner included, the
  leaver excluded); `info` is the leaver's exit reason, `:noconnection` when
  its node was lost, or `:left`. Options in `args` (a keyword list): `seed:`
  (a member's pid or name, `{name, node}`, or a node; one or a list),
  `cluster:` (default: the module), `scope:`, `join_timeout:`. See
  `eq_cluster.erl` for the order and delivery guarantees.
  """

  defmacro __using__(_opts) do
    quote do
      @behaviour :eq_cluster

      @doc false
      def child_spec(args) do
        %{id: __MODULE__, start: {EqCluster, :start_link, [__MODULE__, args]}}
      end

      @doc false
      def handle_node_joined(_self, _members, state), do: {:ok, state}

      @doc false
      def handle_call(request, _from, state), do: {:stop, {:bad_call, request}, state}

      @doc false
      def handle_cast(request, state), do: {:stop, {:bad_cast, request}, state}

      @doc false
      def handle_info(_msg, state), do: {:noreply, state}

      defoverridable child_spec: 1,
                     handle_node_joined: 3,
                     handle_call: 3,
                     handle_cast: 2,
                     handle_info: 2
    end
  end

  @doc """
  Starts a member running `module` (linked). `opts`: `name:` (an atom,
  `{:global, term}` or `{:via, module, term}`) and gen_server's options.
  """
  @spec start_link(module(), term(), keyword()) :: GenServer.on_start()
  def start_link(module, args, opts \\ []) do
    case Keyword.pop(opts, :name) do
      {nil, opts} -> :eq_cluster.start_link(module, args, opts)
      {name, opts} -> :eq_cluster.start_link(server_name(name), module, args, opts)
    end
  end

  @doc "As `start_link/3`, not linked."
  @spec start(module(), term(), keyword()) :: GenServer.on_start()
  def start(module, args, opts \\ []) do
    case Keyword.pop(opts, :name) do
      {nil, opts} -> :eq_cluster.start(module, args, opts)
      {name, opts} -> :eq_cluster.start(server_name(name), module, args, opts)
    end
  end

  @doc "The sorted member pids as `server` sees them."
  @spec members(GenServer.server()) :: [pid()]
  def members(server), do: :eq_cluster.members(server)

  @doc "`{cluster, scope}` of `server`."
  @spec cluster(GenServer.server()) :: {term(), atom()}
  def cluster(server), do: :eq_cluster.cluster(server)

  defdelegate call(server, request), to: :eq_cluster
  defdelegate call(server, request, timeout), to: :eq_cluster
  defdelegate cast(server, request), to: :eq_cluster

  defp server_name(name) when is_atom(name), do: {:local, name}
  defp server_name({:global, _} = name), do: name
  defp server_name({:via, _, _} = name), do: name
end

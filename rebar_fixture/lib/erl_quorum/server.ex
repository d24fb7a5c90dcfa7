defmodule ErlQuorum.Server do
  @moduledoc """
  A GenServer registered under a cluster-wide leased name (`{:via,
  :rust_registry, name}`), in the spirit of the locker wrapper's
  `Locker.Server`. `use ErlQuorum.Server` instead of `use GenServer`:

      defmodule Counter do
        use ErlQuorum.Server

        def init(n), do: {:ok, n}
        def handle_call(:next, _from, n), do: {:reply, n, n + 1}
      end

      {:ok, pid} = Counter.start_link(:counter, 0)
      GenServer.call({:via, :rust_registry, :counter}, :next)

  The guard (`:rust_quorum`) keeps the name's lease while the process runs.
  When it cannot (the serving Rust node is gone or cannot renew it), the
  process stops with reason `{:name_lost, name}` before anyone else can take
  the name: by the guard's exit signal, and also when the module traps exits
  or the application runs with `on_lost: :message` (the `handle_info/2`
  below the module's own catches those and stops; the module's
  `handle_info/2` never sees them).

  `start_link(name, arg, opts \\\\ [])`: `opts` are GenServer's (`:name` is
  set here). A taken name gives `{:error, {:already_started, pid}}`.
  `child_spec({name, arg})` or `child_spec({name, arg, opts})` (overridable)
  so that `{Counter, {:counter, 0}}` goes in a supervisor's children.
  """

  @doc false
  defmacro __using__(opts) do
    quote location: :keep do
      use GenServer, unquote(opts)
      @before_compile ErlQuorum.Server

      @doc "Starts the server registered as `{:via, :rust_registry, name}`."
      def start_link(name, arg, opts \\ []) do
        GenServer.start_link(
          __MODULE__,
          {:"$erl_quorum_server", name, arg},
          Keyword.put(opts, :name, {:via, :rust_registry, name})
        )
      end

      def child_spec({name, arg}), do: child_spec({name, arg, []})

      def child_spec({name, arg, opts}) do
        %{id: {__MODULE__, name}, start: {__MODULE__, :start_link, [name, arg, opts]}}
      end

      defoverridable child_spec: 1
    end
  end

  @doc false
  defmacro __before_compile__(env) do
    init =
      if Module.defines?(env.module, {:init, 1}) do
        quote do
          defoverridable init: 1

          # start_link wraps the user's argument to pass the name along: the
          # process keeps it to recognise its own {:name_lost, name}.
          def init({:"$erl_quorum_server", name, arg}) do
            Process.put(:"$erl_quorum_name", name)
            super(arg)
          end

          def init(arg), do: super(arg)
        end
      end

    # GenServer's default handle_info/2 carries its context; calling super
    # on it is deprecated, so it is replaced rather than called.
    {:v1, _kind, meta, _clauses} = Module.get_definition(env.module, {:handle_info, 2})

    fallback =
      if meta[:context] != GenServer do
        quote do: super(msg, state)
      else
        # What GenServer's default handle_info/2 does.
        quote do
          :logger.error(
            ~c"~p ~p received unexpected message in handle_info/2: ~p~n",
            [__MODULE__, self(), msg]
          )

          {:noreply, state}
        end
      end

    quote do
      unquote(init)

      defoverridable handle_info: 2

      def handle_info(msg, state) do
        case ErlQuorum.Server.__lost__(msg) do
          {:stop, reason} -> {:stop, reason, state}
          :no -> unquote(fallback)
        end
      end
    end
  end

  @doc false
  # Whether msg tells this server it lost its name: the guard's exit signal,
  # delivered as a message because the process traps exits, or (on_lost =
  # message) the same news as a plain message. Stop as an untrapped exit
  # would have.
  def __lost__({:EXIT, from, {:name_lost, _} = reason}) do
    if from == Process.whereis(:rust_quorum), do: {:stop, reason}, else: :no
  end

  def __lost__({:name_lost, name} = reason) do
    if Process.get(:"$erl_quorum_name") == name, do: {:stop, reason}, else: :no
  end

  def __lost__(_msg), do: :no
end

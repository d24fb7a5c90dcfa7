defmodule Sworm do
  @moduledoc """
  A Sworm-shaped distributed registry with supervised names, served by the
  erl_quorum Rust nodes (the work is `:eq_sworm`'s).

  Each sworm is a separate set of names. Define one as in Sworm:

      defmodule MyProcesses do
        use Sworm
      end

      {:ok, pid} = MyProcesses.register_name("worker 1", MyWorker, :start_link, [arg])
      MyProcesses.whereis_name("worker 1")   #=> pid
      MyProcesses.registered()               #=> [{"worker 1", pid}]

  A name registered with an MFA is started on a BEAM node running
  erl_quorum, restarted when it fails and, when its node goes down, on a
  surviving node (`restart: :transient` by default; `use Sworm, restart:
  :permanent` changes it). A name registered with a pid is neither moved nor
  restarted.

  No process tree is needed: `child_spec/1` and `start_link/1` exist so that
  a sworm listed among a supervisor's children, as Sworm requires, starts
  nothing (`:ignore`).

  Errors: `{:error, {:already_registered, pid}}` for a taken name,
  `{:error, {:start_failed, reason}}` when the MFA returns `{:error,
  reason}`, `:ignore` or crashes (nothing stays registered), `{:error,
  :no_host}`, `{:error, :no_quorum}`, `{:error, {:badarg, term}}` for an MFA
  holding funs, references or ports.
  """

  @doc "A child spec that starts nothing: sworms need no process here."
  @spec child_spec(atom(), keyword()) :: Supervisor.child_spec()
  def child_spec(sworm, opts \\ []) do
    %{id: sworm, start: {__MODULE__, :start_link, [sworm, opts]}, type: :worker}
  end

  @doc "Returns `:ignore`: a sworm has no process of its own."
  @spec start_link(atom(), keyword()) :: :ignore
  def start_link(_sworm, _opts \\ []), do: :ignore

  @doc """
  Starts `apply(m, f, a)` as `name` of `sworm`, supervised; `{:ok, pid}` or
  an error (see the module doc). `opts`: `restart:` (`:transient` default,
  `:permanent`, `:temporary`), `meta:` (see `lookup/2`).
  """
  @spec register_name(term(), term(), module(), atom(), [term()], keyword()) ::
          {:ok, pid()} | {:error, term()}
  def register_name(sworm, name, m, f, a, opts \\ []) do
    :eq_sworm.register_name(sworm, name, m, f, a, opts)
  end

  @doc "Registers an existing process (default `self()`): `:yes` or `:no`."
  @spec register_name(term(), term(), pid()) :: :yes | :no
  def register_name(sworm, name, pid \\ self()) do
    :eq_sworm.register_name(sworm, name, pid)
  end

  @doc "As `register_name/3`, keeping `meta` with the name while `pid` holds it."
  @spec register_name(term(), term(), pid(), term()) :: :yes | :no
  def register_name(sworm, name, pid, meta) do
    :eq_sworm.register_name(sworm, name, pid, meta)
  end

  @doc "The holder of `name`, started from the MFA if there is none: `{:ok, pid}` or an error."
  @spec whereis_or_register_name(term(), term(), module(), atom(), [term()], keyword()) ::
          {:ok, pid()} | {:error, term()}
  def whereis_or_register_name(sworm, name, m, f, a, opts \\ []) do
    :eq_sworm.whereis_or_register_name(sworm, name, m, f, a, opts)
  end

  @doc "Releases `name`; a supervised process is stopped and not restarted."
  @spec unregister_name(term(), term()) :: :ok
  def unregister_name(sworm, name), do: :eq_sworm.unregister_name(sworm, name)

  @doc "The pid holding `name`, or `nil` (a local read, no round trip)."
  @spec whereis_name(term(), term()) :: pid() | nil
  def whereis_name(sworm, name), do: nil_for_undefined(:eq_sworm.whereis_name(sworm, name))

  @doc "`{pid, meta}` of `name` (`meta` is `:undefined` when none was given), or `nil`."
  @spec lookup(term(), term()) :: {pid(), term()} | nil
  def lookup(sworm, name), do: nil_for_undefined(:eq_sworm.lookup(sworm, name))

  @doc "`[{name, pid}]` of every name of `sworm`, each once (a local read)."
  @spec registered(term()) :: [{term(), pid()}]
  def registered(sworm), do: :eq_sworm.registered(sworm)

  @doc """
  `pid` (a process of this node, default `self()`) joins `group` of
  `sworm`: `:ok`. As in `:pg`, joins count: a pid joined twice is a member
  twice until it leaves twice. It leaves every group when it exits.
  """
  @spec join(term(), term(), pid()) :: :ok
  def join(sworm, group, pid \\ self()), do: :eq_sworm.join(sworm, group, pid)

  @doc "`pid` leaves `group` of `sworm` (one join): `:ok` or `:not_joined`."
  @spec leave(term(), term(), pid()) :: :ok | :not_joined
  def leave(sworm, group, pid \\ self()), do: :eq_sworm.leave(sworm, group, pid)

  @doc "The members of `group` of `sworm` on every node, BEAM and Rust (a local read)."
  @spec members(term(), term()) :: [pid()]
  def members(sworm, group), do: :eq_sworm.members(sworm, group)

  defp nil_for_undefined(:undefined), do: nil
  defp nil_for_undefined(other), do: other

  @doc false
  defmacro __using__(opts) do
    quote bind_quoted: [opts: opts] do
      @sworm_start_opts Keyword.take(opts, [:restart])

      @doc false
      def child_spec(opts \\ []), do: Sworm.child_spec(__MODULE__, opts)
      @doc false
      def start_link(opts \\ []), do: Sworm.start_link(__MODULE__, opts)

      def register_name(name, m, f, a),
        do: Sworm.register_name(__MODULE__, name, m, f, a, @sworm_start_opts)

      def register_name(name, pid \\ self()), do: Sworm.register_name(__MODULE__, name, pid)
      def register_name(name, pid, meta), do: Sworm.register_name(__MODULE__, name, pid, meta)

      def whereis_or_register_name(name, m, f, a),
        do: Sworm.whereis_or_register_name(__MODULE__, name, m, f, a, @sworm_start_opts)

      def unregister_name(name), do: Sworm.unregister_name(__MODULE__, name)
      def whereis_name(name), do: Sworm.whereis_name(__MODULE__, name)
      def lookup(name), do: Sworm.lookup(__MODULE__, name)
      def registered(), do: Sworm.registered(__MODULE__)
      def join(group, pid \\ self()), do: Sworm.join(__MODULE__, group, pid)
      def leave(group, pid \\ self()), do: Sworm.leave(__MODULE__, group, pid)
      def members(group), do: Sworm.members(__MODULE__, group)
    end
  end
end

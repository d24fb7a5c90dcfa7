%% eq_singletons_bench: the BEAM side of `cargo bench --bench singletons`
%% (benches/singletons.rs).
%%
%% Paxtor singletons (rebar_fixture's paxtor:name/2,3: a via tuple whose
%% first use starts the process on one host, served by the Rust nodes)
%% against what a BEAM user writes with OTP alone: a `global`-registered
%% gen_server started on demand,
%%
%%     case global:whereis_name(Key) of
%%         undefined -> gen_server:start({global, Key}, ...);
%%         Pid -> Pid
%%     end
%%
%% then called through `{global, Key}`. Measured from the same node, with
%% the same loops:
%%
%%  * first_use/3: a fresh key per operation, start + first call (the
%%    sample); the singleton is then stopped (outside the sample) so that
%%    the registries do not grow over the run;
%%  * lookups/3: the lookup of a started singleton in a tight loop
%%    (paxtor:lookup/1, rust_registry:whereis_name/1, global:whereis_name/1,
%%    and a bare ets:lookup/2 on the rust_registry table as the floor);
%%  * steady-state calls go through eq_services_bench:calls/3;
%%  * failover_probe/4: after the node running a :permanent singleton (and a
%%    global one) was killed, calls both from here until each answers from a
%%    live process again, and reports when (os:system_time, comparable with
%%    the clock of the bench process that sent the kill).
%%
%% Results are flat tuples of integers, as eq_quorum_bench's runner gives
%% them: {Ops, Failed, ElapsedNs, MeanNs, P50Ns, P99Ns}.
-module(eq_singletons_bench).

-export([spec/0, via/1, via/2, place/1, place_permanent/1, ensure_global/1,
         registry_name/1, plain_name/1, first_use/3, lookups/3, ets_lookup/1,
         global_ets_lookup/1,
         failover_probe/4, placements/1, start_server/1]).
-export([init/1, handle_call/3, handle_cast/2]).

-define(CALL_TIMEOUT, 10000).
%% lookups/3 times batches of this many calls (a clock read costs as much as
%% a lookup).
-define(BATCH, 1000).
%% Between two failed calls of a failover probe.
-define(PROBE_PAUSE_MS, 5).
%% One probe call: short, so that a call stuck on a dead node does not hide
%% the moment the singleton is back.
-define(PROBE_CALL_MS, 1000).

now_native() ->
    erlang:monotonic_time().

to_ns(Native) ->
    erlang:convert_time_unit(Native, native, nanosecond).

%%% ---------------------------------------------------------------------------
%%% The singleton: a gen_server, `call whoami -> self()`, `call X -> X`
%%% ---------------------------------------------------------------------------

%% The start spec every Paxtor singleton of the bench uses (the keeper runs
%% it; start_link links the server to its keeper).
spec() ->
    {?MODULE, start_server, [paxtor]}.

start_server(Tag) ->
    gen_server:start_link(?MODULE, Tag, []).

init(Tag) -> {ok, Tag}.

handle_call(whoami, _From, State) -> {reply, self(), State};
handle_call(Request, _From, State) -> {reply, Request, State}.

handle_cast(_Msg, State) -> {noreply, State}.

%%% ---------------------------------------------------------------------------
%%% Names
%%% ---------------------------------------------------------------------------

%% The temporary singleton's via tuple ({via, 'Elixir.Paxtor.Spawn', ...}).
via(Key) ->
    paxtor:name(Key, spec()).

%% With paxtor:name/3 options, e.g. [{restart, permanent}].
via(Key, Opts) ->
    paxtor:name(Key, spec(), Opts).

%% The global singleton Key, started here on demand (not linked).
ensure_global(Key) ->
    case global:whereis_name(Key) of
        undefined ->
            case gen_server:start({global, Key}, ?MODULE, global, []) of
                {ok, Pid} -> Pid;
                {error, {already_started, Pid}} -> Pid
            end;
        Pid ->
            Pid
    end.

%% Starts both singletons of Key from this node (the Paxtor one through its
%% via tuple, the global one here) and returns their nodes' names, so the
%% bench can tell where each landed.
place(Key) ->
    place_via(via(Key), Key).

%% As place/1 with a :permanent Paxtor singleton.
place_permanent(Key) ->
    place_via(via(Key, [{restart, permanent}]), Key).

place_via(Via, Key) ->
    ViaPid = gen_server:call(Via, whoami, ?CALL_TIMEOUT),
    GlobalPid = ensure_global(Key),
    GlobalPid = gen_server:call({global, Key}, whoami, ?CALL_TIMEOUT),
    {node(ViaPid), node(GlobalPid)}.

%% Registers Key as a plain rust_registry name of the process that holds the
%% Paxtor singleton Key (so the two lookups find the same pid).
plain_name(Key) ->
    Pid = paxtor:lookup(via(Key)),
    yes = rust_registry:register_name(Key, Pid),
    Pid.

%% The key under which the rust_registry table holds the Paxtor singleton
%% of Key (the bench measures rust_registry:whereis_name/1 on it), found in
%% the table itself rather than assumed.
registry_name(Key) ->
    Pid = paxtor:lookup(via(Key)),
    true = is_pid(Pid),
    %% Not Key itself: plain_name/1 may have given the process that name too.
    Held = fun(Entry, Acc) when element(2, Entry) =:= Pid, element(1, Entry) =/= Key ->
                   [element(1, Entry) | Acc];
              (_, Acc) -> Acc
           end,
    case ets:foldl(Held, [], rust_registry) of
        [Name] -> Name;
        Names -> erlang:error({registry_names, Key, Pid, Names})
    end.

%%% ---------------------------------------------------------------------------
%%% First use: start + first call
%%% ---------------------------------------------------------------------------

%% Procs loopers, each operation on a fresh key: paxtor: gen_server:call
%% through paxtor:name(Key, Spec), which starts the singleton; global:
%% ensure_global(Key), then gen_server:call({global, Key}, ...). The sample
%% is the start and the call; the singleton is stopped afterwards.
first_use(Impl, Procs, DurationMs) ->
    MakeOp = fun(I) ->
                     fun() ->
                             Key = {eq_sb_first, I, erlang:unique_integer([positive])},
                             T0 = now_native(),
                             Pid = first_call(Impl, Key),
                             Took = now_native() - T0,
                             ok = gen_server:stop(Pid, normal, ?CALL_TIMEOUT),
                             {sample, Took}
                     end
             end,
    eq_quorum_bench:run(Procs, DurationMs, MakeOp).

first_call(paxtor, Key) ->
    gen_server:call(via(Key), whoami, ?CALL_TIMEOUT);
first_call(global, Key) ->
    _ = ensure_global(Key),
    gen_server:call({global, Key}, whoami, ?CALL_TIMEOUT).

%%% ---------------------------------------------------------------------------
%%% Lookups
%%% ---------------------------------------------------------------------------

%% The lookup of Key's singleton, M:F(Arg), in a tight loop for DurationMs,
%% timed in batches of ?BATCH; one process. Latencies are per call.
%%   global: global:whereis_name(Key);
%%   paxtor: paxtor:lookup(Via);
%%   rust_registry: rust_registry:whereis_name(Name), Name the table's key;
%%   rust_registry_plain: rust_registry:whereis_name(Key) of a plain name
%%     Key, registered to the same process (plain_name/1);
%%   ets: ets:lookup(rust_registry, Name) alone (ets_lookup/1), our floor;
%%   global_ets: ets:lookup(global_names, Key) alone, global's floor.
%% The differences between them say what each layer costs.
lookups(Impl, Key, DurationMs) ->
    {M, F, Arg} = lookup_mfa(Impl, Key),
    Pid = M:F(Arg),
    true = is_pid(Pid),
    T0 = now_native(),
    Deadline = T0 + erlang:convert_time_unit(DurationMs, millisecond, native),
    Batches = lookup_loop(M, F, Arg, Pid, Deadline, []),
    Elapsed = to_ns(now_native() - T0),
    N = length(Batches),
    Sorted = list_to_tuple(lists:sort(Batches)),
    {N * ?BATCH, 0, Elapsed, to_ns(lists:sum(Batches)) div (N * ?BATCH),
     eq_quorum_bench:percentile(Sorted, 50) div ?BATCH,
     eq_quorum_bench:percentile(Sorted, 99) div ?BATCH}.

lookup_mfa(global, Key) -> {global, whereis_name, Key};
lookup_mfa(paxtor, Key) -> {paxtor, lookup, via(Key)};
lookup_mfa(rust_registry, Key) -> {rust_registry, whereis_name, registry_name(Key)};
lookup_mfa(rust_registry_plain, Key) -> {rust_registry, whereis_name, Key};
lookup_mfa(ets, Key) -> {?MODULE, ets_lookup, registry_name(Key)};
lookup_mfa(global_ets, Key) -> {?MODULE, global_ets_lookup, Key}.

%% What every rust_registry lookup costs at least.
ets_lookup(Name) ->
    case ets:lookup(rust_registry, Name) of
        [Entry] -> element(2, Entry);
        [] -> undefined
    end.

%% What global:whereis_name/1 costs at least (global's table, OTP 25-27:
%% {Name, Pid, Method, Ref}).
global_ets_lookup(Name) ->
    case ets:lookup(global_names, Name) of
        [Entry] -> element(2, Entry);
        [] -> undefined
    end.

lookup_loop(M, F, Arg, Pid, Deadline, Acc) ->
    T0 = now_native(),
    case T0 >= Deadline of
        true ->
            Acc;
        false ->
            ok = lookup_batch(M, F, Arg, Pid, ?BATCH),
            lookup_loop(M, F, Arg, Pid, Deadline, [now_native() - T0 | Acc])
    end.

lookup_batch(_M, _F, _Arg, _Pid, 0) ->
    ok;
lookup_batch(M, F, Arg, Pid, N) ->
    Pid = M:F(Arg),
    lookup_batch(M, F, Arg, Pid, N - 1).

%%% ---------------------------------------------------------------------------
%%% Failover
%%% ---------------------------------------------------------------------------

%% Run right after Victim (the node running the :permanent Paxtor singleton
%% of Key and the global singleton of Key) was killed: one prober per
%% singleton in Impls (paxtor, global) calls it (whoami) every
%% ?PROBE_PAUSE_MS until a process on another node answers. The global
%% prober restarts its singleton on demand (ensure_global/1), as the code it
%% stands for would. Returns
%%
%%     {PaxtorAtUs, GlobalAtUs, PaxtorFailedCalls, GlobalFailedCalls,
%%      PaxtorRestartedHere}
%%
%% the os:system_time(microsecond) of each first good answer (0 if none came
%% within TimeoutMs, or that singleton is not in Impls), and 1 when the
%% Paxtor singleton came back on this node.
failover_probe(Key, Victim, TimeoutMs, Impls) ->
    Deadline = erlang:monotonic_time(millisecond) + TimeoutMs,
    Self = self(),
    _ = [spawn(fun() -> Self ! {probed, Impl, probe(probe_call(Impl, Key), Victim, Deadline, 0)} end)
         || Impl <- Impls],
    Result = fun(Impl) ->
                     case lists:member(Impl, Impls) of
                         true -> receive {probed, Impl, R} -> R end;
                         false -> {0, 0, undefined}
                     end
             end,
    {PaxAt, PaxFails, PaxPid} = Result(paxtor),
    {GlobAt, GlobFails, _} = Result(global),
    {PaxAt, GlobAt, PaxFails, GlobFails, here(PaxPid)}.

probe_call(paxtor, Key) ->
    Via = via(Key, [{restart, permanent}]),
    fun() -> gen_server:call(Via, whoami, ?PROBE_CALL_MS) end;
probe_call(global, Key) ->
    fun() ->
            _ = ensure_global(Key),
            gen_server:call({global, Key}, whoami, ?PROBE_CALL_MS)
    end.

here(Pid) when is_pid(Pid), node(Pid) =:= node() -> 1;
here(_) -> 0.

probe(Call, Victim, Deadline, Fails) ->
    case erlang:monotonic_time(millisecond) >= Deadline of
        true ->
            {0, Fails, undefined};
        false ->
            try Call() of
                Pid when is_pid(Pid), node(Pid) =/= Victim ->
                    {os:system_time(microsecond), Fails, Pid};
                _OldInstance ->
                    %% Not yet known dead here: the kill is under way.
                    timer:sleep(?PROBE_PAUSE_MS),
                    probe(Call, Victim, Deadline, Fails)
            catch
                exit:_ ->
                    timer:sleep(?PROBE_PAUSE_MS),
                    probe(Call, Victim, Deadline, Fails + 1)
            end
    end.

%%% ---------------------------------------------------------------------------
%%% Placement
%%% ---------------------------------------------------------------------------

%% Starts N temporary Paxtor singletons from this node (fresh keys), stops
%% them, and returns how many of them ran here: {Here, N}. The global
%% singletons of first_use/3 always run on the caller's node.
placements(N) ->
    Here = lists:sum([begin
                          Pid = first_call(paxtor, {eq_sb_place, I, erlang:unique_integer([positive])}),
                          ok = gen_server:stop(Pid, normal, ?CALL_TIMEOUT),
                          here(Pid)
                      end || I <- lists:seq(1, N)]),
    {Here, N}.

%% eq_services_bench: the BEAM side of `cargo bench --bench services`
%% (benches/services.rs).
%%
%% Each measurement pits erl_quorum's BEAM API (rebar_fixture: paxtor,
%% rust_registry, served by Rust nodes) against what OTP ships (`global` on
%% the BEAM nodes), from the same node, with the same loop:
%%
%%  * lock_latency/3: a fresh process per lock takes a fresh key and reports
%%    how long the lock call took (paxtor:lock/1 vs global:set_lock/2; the
%%    global owner then calls del_lock, the paxtor owner just exits);
%%  * lock_cycles/3: each of Procs loopers spawns an owner per iteration that
%%    locks the looper's own key and exits (paxtor: the exit releases it; the
%%    next owner's lock waits for that release) or sets, deletes the lock and
%%    exits (global);
%%  * reg_pairs/3: register_name + unregister_name on the process's own name
%%    (rust_registry vs global);
%%  * whereis/3: whereis_name of a registered name in a tight loop;
%%  * calls/3: sequential gen_server:call to an echo server by name
%%    ({via, rust_registry, Name} vs {global, Name});
%%  * register_many/5: many names at once, for the memory figures.
%%
%% Every measurement runs Procs processes for DurationMs: they are spawned
%% and parked first, get the deadline in a `go` message, and each starts new
%% operations until the deadline passes. The clock runs from the `go`
%% broadcast until the last process has reported. The result is a flat tuple
%% of integers, parsed by the Rust side from eq_peer's printed answer:
%%
%%     {Ops, Failed, ElapsedNs, MeanNs, P50Ns, P99Ns}
%%
%% where the latencies are per operation: the whole operation, unless the
%% operation reports its own sample (lock_latency: the lock call alone).
-module(eq_services_bench).
-behaviour(gen_server).

-export([start_app/1, spawn_owner/0, start_echo/1,
         lock_latency/3, lock_cycles/3, reg_pairs/3, whereis/3, calls/3,
         register_many/5, memory/0]).
-export([init/1, handle_call/3, handle_cast/2]).

-define(CALL_TIMEOUT, 10000).
%% whereis/3 times batches of this many calls (a clock read costs as much as
%% a lookup).
-define(BATCH, 1000).

now_native() ->
    erlang:monotonic_time().

to_ns(Native) ->
    erlang:convert_time_unit(Native, native, nanosecond).

%%% ---------------------------------------------------------------------------
%%% Set-up
%%% ---------------------------------------------------------------------------

%% Loads and starts the erl_quorum application with `rust_nodes` set to
%% RustNodes, and waits (up to 10 s) until its guard has subscribed to the
%% registry of one of them. Returns the node it subscribed to.
start_app(RustNodes) when is_list(RustNodes) ->
    eq_services:start_app(RustNodes, 10000).

%% A long-lived process that does nothing (until told `stop`): an owner of
%% names that outlives the expression that made it.
spawn_owner() ->
    spawn(fun() -> receive stop -> ok end end).

%% An echo gen_server registered globally as Name (call X -> X), not linked
%% to the caller.
start_echo(Name) ->
    {ok, Pid} = gen_server:start({global, Name}, ?MODULE, [], []),
    Pid.

init([]) -> {ok, []}.
handle_call(Request, _From, State) -> {reply, Request, State}.
handle_cast(_Msg, State) -> {noreply, State}.

%%% ---------------------------------------------------------------------------
%%% Locks
%%% ---------------------------------------------------------------------------

%% A fresh process per lock, on a fresh key; the sample is the lock call
%% alone. `paxtor`: paxtor:lock(Key), then exit (which releases it);
%% `paxtor_fenced`: the same with paxtor:lock(Key, [fencing]);
%% `{global, Nodes}`: global:set_lock({Key, self()}, Nodes), then
%% global:del_lock and exit. The looper waits for the owner's report, not
%% for the release.
lock_latency(Impl, Procs, DurationMs) ->
    MakeOp = fun(_I) ->
                     fun() ->
                             Key = {eq_services_fresh, erlang:unique_integer()},
                             {sample, owner(Impl, Key, latency)}
                     end
             end,
    eq_quorum_bench:run(Procs, DurationMs, MakeOp).

%% Procs loopers, each on its own key, each iteration a fresh owner that
%% locks it and exits; the sample is the whole iteration. `paxtor`: the
%% owner's exit releases the lock, and the next owner's lock waits for that
%% release. `{global, Nodes}`: the owner deletes its lock before it reports
%% (a set_lock on a lock still held would back off and sleep).
lock_cycles(Impl, Procs, DurationMs) ->
    MakeOp = fun(I) ->
                     Key = {eq_services_own, I},
                     fun() -> _ = owner(Impl, Key, cycle), true end
             end,
    eq_quorum_bench:run(Procs, DurationMs, MakeOp).

%% Spawns the owner of one lock and waits for its report: the lock call's
%% duration in native units.
owner(Impl, Key, Mode) ->
    Parent = self(),
    {Pid, Mref} =
        spawn_monitor(
          fun() ->
                  T0 = now_native(),
                  case Impl of
                      paxtor ->
                          acquired = paxtor:lock(Key),
                          Parent ! {locked, self(), now_native() - T0};
                      paxtor_fenced ->
                          {acquired, Token} = paxtor:lock(Key, [fencing]),
                          true = is_integer(Token),
                          Parent ! {locked, self(), now_native() - T0};
                      {global, Nodes} ->
                          Id = {Key, self()},
                          true = global:set_lock(Id, Nodes),
                          T1 = now_native(),
                          case Mode of
                              latency ->
                                  Parent ! {locked, self(), T1 - T0},
                                  true = global:del_lock(Id, Nodes);
                              cycle ->
                                  true = global:del_lock(Id, Nodes),
                                  Parent ! {locked, self(), T1 - T0}
                          end
                  end
          end),
    receive
        {locked, Pid, Took} ->
            erlang:demonitor(Mref, [flush]),
            Took;
        {'DOWN', Mref, process, Pid, Reason} ->
            erlang:error({owner_failed, Impl, Key, Reason})
    after ?CALL_TIMEOUT ->
            erlang:error({owner_timeout, Impl, Key})
    end.

%%% ---------------------------------------------------------------------------
%%% Names
%%% ---------------------------------------------------------------------------

%% register_name(Name, self()) + unregister_name(Name), Name the process's
%% own, with Mod = rust_registry or global.
reg_pairs(Mod, Procs, DurationMs) ->
    MakeOp = fun(I) ->
                     Name = {eq_services_name, I},
                     fun() ->
                             yes = Mod:register_name(Name, self()),
                             _ = Mod:unregister_name(Name),
                             true
                     end
             end,
    eq_quorum_bench:run(Procs, DurationMs, MakeOp).

%% Mod:whereis_name(Name) in a tight loop, timed in batches of ?BATCH; Name
%% must be registered (to a live process). One process. The latencies are
%% per call (a batch's time / ?BATCH).
whereis(Mod, Name, DurationMs) ->
    Pid = Mod:whereis_name(Name),
    true = is_pid(Pid),
    T0 = now_native(),
    Deadline = T0 + erlang:convert_time_unit(DurationMs, millisecond, native),
    Batches = whereis_loop(Mod, Name, Pid, Deadline, []),
    Elapsed = to_ns(now_native() - T0),
    N = length(Batches),
    Sorted = list_to_tuple(lists:sort(Batches)),
    {N * ?BATCH, 0, Elapsed, to_ns(lists:sum(Batches)) div (N * ?BATCH),
     eq_quorum_bench:percentile(Sorted, 50) div ?BATCH,
     eq_quorum_bench:percentile(Sorted, 99) div ?BATCH}.

whereis_loop(Mod, Name, Pid, Deadline, Acc) ->
    T0 = now_native(),
    case T0 >= Deadline of
        true ->
            Acc;
        false ->
            ok = whereis_batch(Mod, Name, Pid, ?BATCH),
            whereis_loop(Mod, Name, Pid, Deadline, [now_native() - T0 | Acc])
    end.

whereis_batch(_Mod, _Name, _Pid, 0) ->
    ok;
whereis_batch(Mod, Name, Pid, N) ->
    Pid = Mod:whereis_name(Name),
    whereis_batch(Mod, Name, Pid, N - 1).

%% gen_server:call(Dest, Request) to an echo server, Procs callers one call
%% at a time each.
calls(Dest, Procs, DurationMs) ->
    MakeOp = fun(I) ->
                     Request = {eq_services_echo, I, <<"payload">>},
                     fun() ->
                             Request = gen_server:call(Dest, Request, ?CALL_TIMEOUT),
                             true
                     end
             end,
    eq_quorum_bench:run(Procs, DurationMs, MakeOp).

%% Registers the names {Prefix, 1..Count} with Mod (rust_registry or global)
%% from Procs processes at once, name I owned by the (I rem length(Owners))th
%% of Owners, long-lived processes (global takes one name per process: give
%% it Count owners). Returns {Registered, ElapsedNs}.
register_many(Mod, Prefix, Count, Owners, Procs) ->
    OwnersT = list_to_tuple(Owners),
    T0 = now_native(),
    Workers = [spawn_monitor(fun() ->
                                     exit({registered, register_range(Mod, Prefix, P, Count,
                                                                      Procs, OwnersT, 0)})
                             end) || P <- lists:seq(1, Procs)],
    Total = lists:sum([receive
                           {'DOWN', Mref, process, Pid, {registered, N}} -> N;
                           {'DOWN', Mref, process, Pid, Reason} ->
                               erlang:error({register_many_failed, Reason})
                       end || {Pid, Mref} <- Workers]),
    {Total, to_ns(now_native() - T0)}.

register_range(_Mod, _Prefix, I, Count, _Step, _Owners, Done) when I > Count ->
    Done;
register_range(Mod, Prefix, I, Count, Step, Owners, Done) ->
    Owner = element(1 + I rem tuple_size(Owners), Owners),
    case Mod:register_name({Prefix, I}, Owner) of
        yes -> ok;
        Other -> erlang:error({register_name, Mod, {Prefix, I}, Owner, Other})
    end,
    register_range(Mod, Prefix, I + Step, Count, Step, Owners, Done + 1).

%% erlang:memory(total), bytes.
memory() ->
    erlang:garbage_collect(),
    erlang:memory(total).

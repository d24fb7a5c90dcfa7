%%% The workload of tests/partition.rs on one BEAM client node: for every
%%% key, a loop of worker processes that each take the key (a lock or a
%%% name), hold it a moment and exit. Every step is printed to stdout as one
%%% line, timestamped with os:system_time(microsecond) (one clock for every
%%% node on the machine):
%%%
%%%   EQP <us> <event> <lock|name> <key> <pid>
%%%
%%% Events: invoke, ok (held from here), fail (no grant: `no`, `no_quorum`,
%%% `{no_rust_node, _}`), release (printed before the worker exits, which
%%% is what releases it), lost (`lock_lost` / `name_lost` arrived: the hold
%%% ends here). The guard tells owners with a message (`on_lost` message).
-module(eq_partition).
-export([run/3]).

%% RustNodes: the erl_quorum nodes in call order; Keys: [{lock | name, K}];
%% HoldMs: how long a worker holds what it got.
run(RustNodes, Keys, HoldMs) ->
    ok = logger:set_primary_config(level, error),
    case application:load(erl_quorum) of
        ok -> ok;
        {error, {already_loaded, erl_quorum}} -> ok
    end,
    ok = application:set_env(erl_quorum, rust_nodes, RustNodes),
    ok = application:set_env(erl_quorum, on_lost, message),
    {ok, _} = application:ensure_all_started(erl_quorum),
    io:format("EQP ~b ready~n", [os:system_time(microsecond)]),
    [spawn(fun() -> loop(Key, HoldMs) end) || Key <- Keys],
    receive stop -> ok end.

loop(Key, HoldMs) ->
    {Pid, Mref} = spawn_monitor(fun() -> worker(Key, HoldMs) end),
    receive {'DOWN', Mref, process, Pid, _} -> ok end,
    loop(Key, HoldMs).

worker({Kind, K}, HoldMs) ->
    emit(invoke, Kind, K),
    Got = try take(Kind, K)
          catch exit:Reason -> {exit, Reason}
          end,
    case Got of
        true ->
            emit(ok, Kind, K),
            receive
                {lock_lost, _} -> emit(lost, Kind, K);
                {name_lost, _} -> emit(lost, Kind, K)
            after HoldMs ->
                emit(release, Kind, K)
            end;
        _ ->
            emit(fail, Kind, K),
            timer:sleep(20)
    end.

take(lock, K) -> rust_quorum:call({lock, {eqp, K}, self(), true}) =:= acquired;
take(name, K) -> rust_registry:register_name({eqp, K}, self()) =:= yes.

emit(Event, Kind, K) ->
    io:format("EQP ~b ~s ~s ~p ~s~n",
              [os:system_time(microsecond), Event, Kind, K, pid_to_list(self())]).

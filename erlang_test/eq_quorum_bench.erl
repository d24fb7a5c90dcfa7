%% eq_quorum_bench: the BEAM side of `cargo bench --bench quorum`
%% (benches/quorum.rs).
%%
%% Lock + release pairs, measured on BEAM nodes:
%%  * global_pairs/4: `global:set_lock/2` + `global:del_lock/2` on a set of
%%    BEAM nodes (the yardstick: global ships with OTP);
%%  * locker_pairs/5: the calls wooga/locker's client makes
%%    (`eq_locker_client:lock/5` + `release/5`) against a set of masters
%%    (here: Rust masters).
%%
%% Every measurement runs Procs processes for DurationMs: they are spawned
%% and parked first, get the deadline in a `go` message, and each starts new
%% pairs until the deadline passes. The clock runs from the `go` broadcast
%% until the last process has reported. Every function returns a flat tuple
%% of integers, which the Rust side parses from eq_peer's printed answer:
%%
%%     {Pairs, Failed, ElapsedNs, MeanNs, P50Ns, P99Ns}
%%
%% Pairs counts completed lock + release pairs; Failed counts lock attempts
%% that did not get the lock (only in the `shared` variants, where every
%% process contends for one key and retries at once); the latencies are per
%% completed pair (from the start of its successful lock attempt to the end
%% of its release).
-module(eq_quorum_bench).

-export([connect/1, global_pairs/4, locker_pairs/5]).
%% The runner, also eq_services_bench's.
-export([run/3, percentile/2]).

%% A lease long enough never to run out during a measurement: every pair
%% releases its key.
-define(LEASE_MS, 10000).

now_native() ->
    erlang:monotonic_time().

to_ns(Native) ->
    erlang:convert_time_unit(Native, native, nanosecond).

%% Connects this node to Nodes (visible connections, so `global` sees them)
%% and waits until global has synchronised with them. Returns the sorted
%% list of the nodes that are up.
connect(Nodes) ->
    _ = [true = net_kernel:connect_node(N) || N <- Nodes],
    ok = global:sync(),
    lists:sort(nodes()).

%%% ---------------------------------------------------------------------------
%%% global
%%% ---------------------------------------------------------------------------

%% `global:set_lock({Key, self()}, Nodes)` + `global:del_lock` by Procs
%% processes. `distinct`: each process has its own key (global locks on
%% different ids never contend); `shared`: one key for all, tried once with
%% `set_lock/3` and retries 0, and tried again at once when it is taken.
global_pairs(Nodes, Procs, DurationMs, Mode) when is_list(Nodes) ->
    Pair = fun(I) ->
                   Key = case Mode of
                             distinct -> {eq_quorum_bench, I};
                             shared -> eq_quorum_bench_shared
                         end,
                   Id = {Key, self()},
                   fun() ->
                           Locked = case Mode of
                                        distinct -> global:set_lock(Id, Nodes);
                                        shared -> global:set_lock(Id, Nodes, 0)
                                    end,
                           case Locked of
                               true ->
                                   true = global:del_lock(Id, Nodes),
                                   true;
                               false when Mode =:= shared ->
                                   false
                           end
                   end
           end,
    run(Procs, DurationMs, Pair).

%%% ---------------------------------------------------------------------------
%%% locker's client calls, against any masters
%%% ---------------------------------------------------------------------------

%% `eq_locker_client:lock/5` + `release/5` against Masters with quorum W.
%% A lock counts only when at least W masters acknowledged the write (as
%% the Rust client counts it); a release must succeed.
locker_pairs(Masters, W, Procs, DurationMs, Mode) when is_list(Masters) ->
    Pair = fun(I) ->
                   Key = case Mode of
                             distinct -> {eq_quorum_bench, I};
                             shared -> eq_quorum_bench_shared
                         end,
                   Value = self(),
                   fun() ->
                           case eq_locker_client:lock(Masters, W, Key, Value, ?LEASE_MS) of
                               {ok, W, _Votes, Acks} when Acks >= W ->
                                   release(Masters, W, Key, Value, 5),
                                   true;
                               {error, no_quorum} when Mode =:= shared ->
                                   false
                           end
                   end
           end,
    run(Procs, DurationMs, Pair).

%% A release can fall short of W votes only while a contender's aborted
%% promise is still in flight on two masters; try again a few times.
release(Masters, W, Key, Value, Tries) ->
    case eq_locker_client:release({Masters, []}, W, Key, Value, x) of
        {ok, W, _Votes, Acks} when Acks >= W ->
            ok;
        Other when Tries =:= 0 ->
            erlang:error({release_failed, Key, Other});
        _ ->
            release(Masters, W, Key, Value, Tries - 1)
    end.

%%% ---------------------------------------------------------------------------
%%% The runner
%%% ---------------------------------------------------------------------------

%% MakePair(I) is called in process I (1..Procs) and returns the fun that
%% does one attempt: true when a pair completed (the runner times it),
%% {sample, Native} when the attempt timed itself, false when the lock was
%% taken by someone else (counted as failed).
run(Procs, DurationMs, MakePair) when Procs > 0, DurationMs > 0 ->
    Self = self(),
    %% Not linked: eq_peer's evaluator traps exits, and every normal exit
    %% would leave an 'EXIT' message in its mailbox. A worker that fails
    %% reports the failure instead.
    Pids = [spawn(fun() -> worker(Self, MakePair(I)) end) || I <- lists:seq(1, Procs)],
    T0 = now_native(),
    Deadline = T0 + erlang:convert_time_unit(DurationMs, millisecond, native),
    _ = [Pid ! {go, Deadline} || Pid <- Pids],
    {Samples, Failed} = collect(Pids, [], 0),
    Elapsed = to_ns(now_native() - T0),
    Pairs = length(Samples),
    case Pairs of
        0 ->
            {0, Failed, Elapsed, 0, 0, 0};
        _ ->
            Sorted = list_to_tuple(lists:sort(Samples)),
            {Pairs, Failed, Elapsed, to_ns(lists:sum(Samples)) div Pairs,
             percentile(Sorted, 50), percentile(Sorted, 99)}
    end.

worker(Parent, Pair) ->
    receive {go, Deadline} -> ok end,
    Result = try
                 {ok, loop(Pair, Deadline, [], 0)}
             catch
                 Class:Reason:Stack -> {Class, Reason, Stack}
             end,
    Parent ! {worker_done, self(), Result}.

loop(Pair, Deadline, Samples, Failed) ->
    T0 = now_native(),
    case T0 >= Deadline of
        true ->
            {Samples, Failed};
        false ->
            case Pair() of
                true -> loop(Pair, Deadline, [now_native() - T0 | Samples], Failed);
                {sample, S} -> loop(Pair, Deadline, [S | Samples], Failed);
                false -> loop(Pair, Deadline, Samples, Failed + 1)
            end
    end.

collect([], Samples, Failed) ->
    {Samples, Failed};
collect([Pid | Rest], Samples, Failed) ->
    receive
        {worker_done, Pid, {ok, {S, F}}} -> collect(Rest, S ++ Samples, Failed + F);
        {worker_done, Pid, Error} -> erlang:error({worker_failed, Error})
    end.

%% Nearest-rank percentile of a sorted tuple of native-unit samples, in ns.
percentile(Sorted, P) ->
    Rank = max(1, (P * tuple_size(Sorted) + 99) div 100),
    to_ns(element(Rank, Sorted)).

%% eq_bench: the BEAM side of `cargo bench --bench dist` (benches/dist.rs).
%%
%% The measuring loops run on one client BEAM node and are pointed in turn at
%% a Rust node and at a second BEAM node, by node name only: both targets
%% have an echo gen_server registered as `echo` (call X -> X) and a counting
%% sink registered as `sink`, so the peer is the only thing that differs.
%%
%% Every function returns a flat tuple of integers (nanoseconds and counts),
%% which the Rust side parses from eq_peer's printed answer. Times come from
%% erlang:monotonic_time/0 in native units converted to nanoseconds.
-module(eq_bench).

-export([seq_call/3, par_call/3, oneway/2, start_sink/1]).

%% A small request, the same for every call and both targets.
-define(REQUEST, {bench, 12345, <<"payload">>}).
%% gen_server:call's timeout: generous, a late reply should fail the run
%% loudly rather than quietly skew the figures.
-define(CALL_TIMEOUT, 10000).

now_ns() ->
    erlang:convert_time_unit(erlang:monotonic_time(), native, nanosecond).

%%% ---------------------------------------------------------------------------
%%% Sequential calls
%%% ---------------------------------------------------------------------------

%% Warmup calls (not measured), then N calls one after the other to
%% {echo, Node}, each timed on its own.
%% Returns {N, TotalNs, P50Ns, P99Ns, MaxNs}.
seq_call(Node, N, Warmup) when is_atom(Node), N > 0 ->
    Dest = {echo, Node},
    _ = [call(Dest) || _ <- lists:seq(1, Warmup)],
    T0 = now_ns(),
    Samples = timed_calls(Dest, N, []),
    Total = now_ns() - T0,
    Sorted = list_to_tuple(lists:sort(Samples)),
    {N, Total, percentile(Sorted, 50), percentile(Sorted, 99), percentile(Sorted, 100)}.

timed_calls(_Dest, 0, Acc) ->
    Acc;
timed_calls(Dest, Left, Acc) ->
    T0 = erlang:monotonic_time(),
    call(Dest),
    T1 = erlang:monotonic_time(),
    timed_calls(Dest, Left - 1, [T1 - T0 | Acc]).

call(Dest) ->
    Request = ?REQUEST,
    %% A wrong answer must not be mistaken for a fast one.
    Request = gen_server:call(Dest, Request, ?CALL_TIMEOUT).

%% Nearest-rank percentile of a sorted tuple of native-unit samples, in ns.
percentile(Sorted, P) ->
    Rank = max(1, (P * tuple_size(Sorted) + 99) div 100),
    erlang:convert_time_unit(element(Rank, Sorted), native, nanosecond).

%%% ---------------------------------------------------------------------------
%%% Concurrent calls
%%% ---------------------------------------------------------------------------

%% Callers processes each make M calls to {echo, Node}. They are spawned and
%% parked first, so the clock covers only the calls, from the `go` broadcast
%% until the last caller reports.
%% Returns {Calls, TotalNs}.
par_call(Node, Callers, M) when is_atom(Node), Callers > 0, M > 0 ->
    Dest = {echo, Node},
    Self = self(),
    %% Not linked: eq_peer's evaluator traps exits, so every normal exit
    %% would leave an 'EXIT' message behind in its mailbox. A caller that
    %% fails reports the failure instead.
    Pids = [spawn(fun() -> caller(Self, Dest, M) end) || _ <- lists:seq(1, Callers)],
    T0 = now_ns(),
    _ = [Pid ! go || Pid <- Pids],
    ok = collect(Pids),
    {Callers * M, now_ns() - T0}.

caller(Parent, Dest, M) ->
    receive go -> ok end,
    Result = try
                 _ = [call(Dest) || _ <- lists:seq(1, M)],
                 ok
             catch
                 Class:Reason -> {Class, Reason}
             end,
    Parent ! {caller_done, self(), Result}.

collect([]) ->
    ok;
collect([Pid | Rest]) ->
    receive
        {caller_done, Pid, ok} -> collect(Rest);
        {caller_done, Pid, Error} -> erlang:error({caller_failed, Error})
    end.

%%% ---------------------------------------------------------------------------
%%% One-way messages
%%% ---------------------------------------------------------------------------

%% Sends K small tuples to {sink, Node} as fast as possible, then
%% {done, self()}, and waits for the sink's {count, N}: the clock runs from
%% the first send until the sink has received (and counted) everything.
%% Returns {K, N, TotalNs}; N =/= K means messages were lost.
oneway(Node, K) when is_atom(Node), K > 0 ->
    Dest = {sink, Node},
    T0 = now_ns(),
    send_loop(Dest, K),
    Dest ! {done, self()},
    receive
        {count, N} -> {K, N, now_ns() - T0}
    after 120000 ->
        erlang:error({sink_timeout, Node})
    end.

send_loop(_Dest, 0) ->
    ok;
send_loop(Dest, I) ->
    Dest ! {I, payload_atom},
    send_loop(Dest, I - 1).

%% The BEAM sink, the counterpart of the Rust sink in benches/dist.rs: a
%% plain process that counts every message and, on {done, From}, answers
%% {count, N} and starts counting from zero again. Not linked to the
%% caller (eq_peer's evaluator), so it outlives the expression.
start_sink(Name) when is_atom(Name) ->
    Pid = spawn(fun() -> sink(0) end),
    true = register(Name, Pid),
    Pid.

sink(N) ->
    receive
        {done, From} ->
            From ! {count, N},
            sink(0);
        _ ->
            sink(N + 1)
    end.

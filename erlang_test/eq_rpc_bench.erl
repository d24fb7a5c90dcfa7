%% The measuring loops of benches/rpc.rs, run on client node A against a
%% BEAM node and against the Rust node alike (addressed by node name only).
%% Each returns {Ops, Microseconds}.
-module(eq_rpc_bench).
-export([seq/4, par/5]).

%% N sequential calls of Kind (rpc | erpc) of erlang:node/0 on Node.
seq(Kind, Node, N, Warmup) when is_atom(Node), N > 0 ->
    [call(Kind, Node) || _ <- lists:seq(1, Warmup)],
    T0 = erlang:monotonic_time(microsecond),
    [call(Kind, Node) || _ <- lists:seq(1, N)],
    {N, erlang:monotonic_time(microsecond) - T0}.

%% Callers processes making M calls each, started together.
par(Kind, Node, Callers, M, Warmup) when is_atom(Node), Callers > 0, M > 0 ->
    [call(Kind, Node) || _ <- lists:seq(1, Warmup)],
    Self = self(),
    Pids = [spawn_link(fun() ->
                               receive go -> ok end,
                               [call(Kind, Node) || _ <- lists:seq(1, M)],
                               Self ! {done, self()}
                       end) || _ <- lists:seq(1, Callers)],
    T0 = erlang:monotonic_time(microsecond),
    [P ! go || P <- Pids],
    [receive {done, P} -> ok end || P <- Pids],
    {Callers * M, erlang:monotonic_time(microsecond) - T0}.

call(rpc, Node) ->
    Node = rpc:call(Node, erlang, node, []);
call(erpc, Node) ->
    Node = erpc:call(Node, erlang, node, []).

%% eq_cluster_test: the BEAM side of tests/cluster_membership.rs.
%%
%% A sample eq_cluster callback module that logs every membership callback
%% in its state ({joined, Self, Pids}, {join, Pid, Pids},
%% {leave, Pid, Pids, Info}, oldest first, answered to the call `eq_log`),
%% and helpers that turn such logs into labels (the members' registered
%% names), so the test can compare them as text whichever node reads them,
%% and check that each entry's list is the previous one plus or minus the
%% pid it names. The Elixir member of the test answers `eq_log` the same way.
-module(eq_cluster_test).
%% A callback module of eq_cluster. (No -behaviour(eq_cluster) attribute: the
%% harness compiles erlang_test/ before rebar_fixture/, so erlc would warn
%% that the behaviour is undefined.)

-export([start/2, start_scope/1, labels/1, log/2, check/1, members/2, left_after/3]).
-export([init/1, handle_node_joined/3, handle_join/3, handle_leave/4,
         handle_call/3, handle_cast/2, handle_info/2]).

%% Starts a member registered locally as Label (not linked to the caller:
%% the test's evaluator must not take it down). Opts are eq_cluster's
%% options ({seed, _}, {cluster, _}, {scope, _}); they are also init's Args.
start(Label, Opts) ->
    eq_cluster:start({local, Label}, ?MODULE, Opts, []).

%% Starts Scope of eq_cluster's group module (pg or eq_pg) under a holder
%% process that outlives the caller: {ok, ScopePid} | {error, _}.
start_scope(Scope) ->
    Pg = eq_cluster:group_module(),
    Parent = self(),
    Holder = spawn(fun() ->
                           Parent ! {self(), Pg:start_link(Scope)},
                           receive after infinity -> ok end
                   end),
    receive {Holder, Result} -> Result after 5000 -> {error, timeout} end.

init(_Args) ->
    {ok, []}.

handle_node_joined(Self, Pids, Log) ->
    {ok, [{joined, Self, Pids} | Log]}.

handle_join(Pid, Pids, Log) ->
    {ok, [{join, Pid, Pids} | Log]}.

%% Also notes when (system time, us) each leave was reported, for the
%% test's figures (the call {left_at, Pid}).
handle_leave(Pid, Pids, Info, Log) ->
    put({left_at, Pid}, erlang:system_time(microsecond)),
    {ok, [{leave, Pid, Pids, Info} | Log]}.

handle_call(eq_log, _From, Log) ->
    {reply, lists:reverse(Log), Log};
handle_call({left_at, Pid}, _From, Log) ->
    {reply, get({left_at, Pid}), Log}.

handle_cast(_Msg, Log) ->
    {noreply, Log}.

handle_info(_Msg, Log) ->
    {noreply, Log}.

%% #{Pid => Label} for [{Label, Node}]: the pids as this node sees them.
labels(Members) ->
    maps:from_list([{rpc:call(Node, erlang, whereis, [Label]), Label}
                    || {Label, Node} <- Members]).

%% The log of the member Ref, with pids replaced by their labels (lists
%% sorted by label); a pid with no label stays a pid.
log(Ref, Labels) ->
    L = fun(P) -> maps:get(P, Labels, P) end,
    Ls = fun(Ps) -> lists:sort([L(P) || P <- Ps]) end,
    [case E of
         {joined, P, Ps} -> {joined, L(P), Ls(Ps)};
         {join, P, Ps} -> {join, L(P), Ls(Ps)};
         {leave, P, Ps, Info} -> {leave, L(P), Ls(Ps), Info}
     end || E <- eq_cluster:call(Ref, eq_log)].

%% Milliseconds (float) from T0Us (system time, us) until member Ref was
%% told Pid left; undefined if it was not.
left_after(Ref, Pid, T0Us) ->
    case eq_cluster:call(Ref, {left_at, Pid}) of
        T when is_integer(T) -> (T - T0Us) / 1000;
        undefined -> undefined
    end.

%% The member list of Ref as labels.
members(Ref, Labels) ->
    lists:sort([maps:get(P, Labels, P) || P <- eq_cluster:members(Ref)]).

%% ok when a labelled log is one consistent sequence: it starts with
%% joined(Self, List) where List holds Self; each join adds a pid not in the
%% previous list, each leave removes one that was; every list is sorted and
%% holds the member itself. {bad, Why} otherwise.
check([{joined, Self, List} | Rest]) ->
    case lists:member(Self, List) of
        true -> check(Rest, Self, List);
        false -> {bad, {self_missing, Self, List}}
    end;
check(Log) ->
    {bad, {no_joined_first, Log}}.

check([], _Self, _Prev) ->
    ok;
check([{join, P, List} = E | Rest], Self, Prev) ->
    case not lists:member(P, Prev) andalso List =:= lists:sort([P | Prev]) of
        true -> check(Rest, Self, List);
        false -> {bad, {E, Prev}}
    end;
check([{leave, P, List, _} = E | Rest], Self, Prev) ->
    case P =/= Self andalso lists:member(P, Prev)
        andalso List =:= lists:delete(P, Prev) of
        true -> check(Rest, Self, List);
        false -> {bad, {E, Prev}}
    end;
check([E | _], _Self, Prev) ->
    {bad, {E, Prev}}.

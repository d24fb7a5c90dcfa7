%% eq_otp_pg: helpers tests/otp_pg.rs calls on plain BEAM nodes running a
%% native OTP pg scope (no erl_quorum application): start the scope, spawn
%% members, watch a group with pg:monitor/2, and greet the members of
%% another node so the test proves those pids are real processes.
%%
%% Timestamps are os:system_time(microsecond): the Rust side compares them
%% with its own clock on the same machine.
-module(eq_otp_pg).

-export([start_scope/1, spawn_members/3, watch/2, events/0,
         greet/3, remote_members/3, now_us/0]).

%% Starts Scope unlinked (the eval process that calls this is short-lived).
start_scope(Scope) ->
    {ok, Pid} = pg:start(Scope),
    Pid.

%% N processes that join Group in Scope and wait until killed.
spawn_members(Scope, Group, N) ->
    Parent = self(),
    Pids = [spawn(fun() ->
                          ok = pg:join(Scope, Group, self()),
                          Parent ! {joined, self()},
                          receive stop -> ok end
                  end) || _ <- lists:seq(1, N)],
    [receive {joined, P} -> ok end || P <- Pids],
    Pids.

%% A process registered as eq_otp_pg_watch that calls pg:monitor(Scope,
%% Group) and records every notification with its arrival time.
watch(Scope, Group) ->
    Parent = self(),
    Pid = spawn(fun() ->
                        register(eq_otp_pg_watch, self()),
                        {Ref, Initial} = pg:monitor(Scope, Group),
                        Parent ! {watching, Initial},
                        watch_loop(Ref, [])
                end),
    receive {watching, Initial} -> {Pid, Initial} after 5000 -> timeout end.

watch_loop(Ref, Events) ->
    receive
        {Ref, Verb, _Group, Pids} ->
            watch_loop(Ref, [{now_us(), Verb, Pids} | Events]);
        {events, From} ->
            From ! {events, lists:reverse(Events)},
            watch_loop(Ref, Events)
    end.

%% [{TimeUs, join | leave, [Node]}]: the nodes of the pids, so the test
%% needs no pid syntax.
events() ->
    eq_otp_pg_watch ! {events, self()},
    receive
        {events, Events} -> [{T, V, [node(P) || P <- Ps]} || {T, V, Ps} <- Events]
    after 5000 -> timeout
    end.

%% Sends {greeting, Tag} to each member of Group on Node; how many.
greet(Scope, Group, {Node, Tag}) ->
    Ps = [P || P <- pg:get_members(Scope, Group), node(P) =:= Node],
    [P ! {greeting, Tag} || P <- Ps],
    length(Ps).

%% How many members of Group live on Node.
remote_members(Scope, Group, Node) ->
    length([P || P <- pg:get_members(Scope, Group), node(P) =:= Node]).

now_us() ->
    os:system_time(microsecond).

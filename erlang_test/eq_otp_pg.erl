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
%% For benches/otp_pg.rs.
-export([wait_event/4, timed_join/2, time_get_members/3, time_join_leave/3]).

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

%% The arrival time of the first Verb event of a pid of Node at or after
%% SinceUs, waiting up to TimeoutMs; timeout if none.
wait_event(Verb, Node, SinceUs, TimeoutMs) ->
    Deadline = erlang:monotonic_time(millisecond) + TimeoutMs,
    wait_event_loop(Verb, Node, SinceUs, Deadline).

wait_event_loop(Verb, Node, SinceUs, Deadline) ->
    case [T || {T, V, Ns} <- events(), V =:= Verb, T >= SinceUs, lists:member(Node, Ns)] of
        [T | _] -> T;
        [] ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> timeout;
                false -> timer:sleep(1), wait_event_loop(Verb, Node, SinceUs, Deadline)
            end
    end.

%% A process that takes the time, joins Group, and exits 20 ms later;
%% returns the time taken just before its pg:join.
timed_join(Scope, Group) ->
    Parent = self(),
    spawn(fun() ->
                  T0 = now_us(),
                  ok = pg:join(Scope, Group, self()),
                  Parent ! {t0, T0},
                  timer:sleep(20)
          end),
    receive {t0, T0} -> T0 after 5000 -> timeout end.

%% Microseconds for N calls of pg:get_members(Scope, Group).
time_get_members(Scope, Group, N) ->
    {Us, _} = timer:tc(fun() -> get_members_loop(Scope, Group, N) end),
    Us.

get_members_loop(_, _, 0) -> ok;
get_members_loop(Scope, Group, N) ->
    _ = pg:get_members(Scope, Group),
    get_members_loop(Scope, Group, N - 1).

%% Microseconds for N pg:join + pg:leave pairs of one process.
time_join_leave(Scope, Group, N) ->
    P = spawn(fun() -> receive stop -> ok end end),
    {Us, _} = timer:tc(fun() -> join_leave_loop(Scope, Group, P, N) end),
    P ! stop,
    Us.

join_leave_loop(_, _, _, 0) -> ok;
join_leave_loop(Scope, Group, P, N) ->
    ok = pg:join(Scope, Group, P),
    ok = pg:leave(Scope, Group, P),
    join_leave_loop(Scope, Group, P, N - 1).

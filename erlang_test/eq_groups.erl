%% Helpers for tests/groups.rs and benches/groups.rs: the pg-mirror contract
%% (one sequence of calls run on OTP's pg and on eq_pg, answers compared),
%% members to join, and timing loops.
-module(eq_groups).

-export([contract/2, member/0, members/1, wait_gone/3, bench_reads/3, bench_join_leave/3,
         start_watcher/3, propagation/4]).

%% A process that waits until killed.
member() ->
    spawn(fun() -> receive stop -> ok end end).

%% N members.
members(N) ->
    [member() || _ <- lists:seq(1, N)].

%% Runs the contract's sequence on Mod (pg | eq_pg) in a fresh scope Scope;
%% returns every answer and every monitor message, with pids and refs
%% replaced by their order of appearance, so two runs compare with =:=.
contract(Mod, Scope) ->
    Self = self(),
    {Pid, Mon} = spawn_monitor(fun() -> Self ! {self(), run_contract(Mod, Scope)} end),
    receive
        {Pid, Result} -> erlang:demonitor(Mon, [flush]), Result;
        {'DOWN', Mon, _, _, Reason} -> {crashed, Reason}
    end.

run_contract(Mod, Scope) ->
    {ok, _} = Mod:start(Scope),
    [P1, P2, P3] = members(3),
    {GRef, []} = Mod:monitor(Scope, g1),
    {SRef, Empty} = Mod:monitor_scope(Scope),
    R = [Empty,
         Mod:join(Scope, g1, P1),
         Mod:join(Scope, g1, [P1, P2]),
         Mod:join(Scope, {g, 2}, P3),
         Mod:get_members(Scope, g1),
         Mod:get_local_members(Scope, g1),
         lists:sort(Mod:which_groups(Scope)),
         lists:sort(Mod:which_local_groups(Scope)),
         Mod:leave(Scope, g1, P2),
         Mod:leave(Scope, g1, P2),
         Mod:leave(Scope, nogroup, P1),
         Mod:leave(Scope, g1, [P2, P3]),
         Mod:get_members(Scope, g1),
         Mod:leave(Scope, g1, P1),
         Mod:get_members(Scope, g1),
         catch Mod:join(Scope, g1, notapid),
         catch Mod:join(Scope, g1, [P1, notapid]),
         catch Mod:leave(Scope, g1, [notapid]),
         Mod:get_members(Scope, nogroup),
         Mod:get_local_members(Scope, nogroup)],
    %% An exit leaves every group.
    Mon = erlang:monitor(process, P1),
    exit(P1, kill),
    receive {'DOWN', Mon, _, _, _} -> ok end,
    ok = eq_peer:wait_until(fun() -> Mod:get_members(Scope, g1) =:= [] end, 5000),
    R2 = [Mod:get_members(Scope, g1), Mod:get_members(Scope, {g, 2}),
          lists:sort(Mod:which_groups(Scope))],
    {_, Map} = Mod:monitor_scope(Scope),
    timer:sleep(200),
    Msgs = drain([]),
    R3 = [Mod:demonitor(Scope, GRef), Mod:demonitor(Scope, GRef), Mod:demonitor(Scope, SRef)],
    [exit(P, kill) || P <- [P2, P3]],
    gen_server:stop(Scope),
    normalize({R, R2, Map, Msgs, R3, {GRef, SRef}}).

drain(Acc) ->
    receive
        {Ref, Verb, G, Ps} when is_reference(Ref) -> drain([{Ref, Verb, G, Ps} | Acc])
    after 0 -> lists:reverse(Acc)
    end.

%% Pids and refs as {pid, I} / {ref, I} in order of first appearance.
normalize(Term) ->
    {T, _} = norm(Term, #{}),
    T.

norm({'EXIT', {Reason, Stack}}, Seen) when is_list(Stack) ->
    norm({'EXIT', Reason}, Seen);
norm(P, Seen) when is_pid(P); is_reference(P) ->
    Kind = case is_pid(P) of true -> pid; false -> ref end,
    case maps:find(P, Seen) of
        {ok, I} -> {{Kind, I}, Seen};
        error -> I = map_size(Seen), {{Kind, I}, Seen#{P => I}}
    end;
norm(T, Seen) when is_tuple(T) ->
    {L, S} = norm(tuple_to_list(T), Seen),
    {list_to_tuple(L), S};
norm([H | T], Seen) ->
    {H1, S1} = norm(H, Seen),
    {T1, S2} = norm(T, S1),
    {[H1 | T1], S2};
norm(M, Seen) when is_map(M) ->
    {L, S} = norm(lists:sort(maps:to_list(M)), Seen),
    {maps:from_list(L), S};
norm(X, Seen) ->
    {X, Seen}.

%% Milliseconds (from StartUs, erlang:system_time(microsecond) on any node
%% of this host) until none of Pids is a member of Group in the eq_pg scope
%% Scope here; polled every millisecond; {still_members, Pids} after 10 s.
wait_gone(Scope, Group, {Pids, StartUs}) ->
    wait_gone(Scope, Group, Pids, StartUs).

wait_gone(Scope, Group, Pids, StartUs) ->
    Members = eq_pg:get_members(Scope, Group),
    case [P || P <- Pids, lists:member(P, Members)] of
        [] -> (erlang:system_time(microsecond) - StartUs) / 1000;
        Left ->
            case erlang:system_time(microsecond) - StartUs > 10000000 of
                true -> {still_members, Left};
                false -> timer:sleep(1), wait_gone(Scope, Group, Pids, StartUs)
            end
    end.

%% {Calls, Micros, CpuMicros}: Mod:get_members(Scope, Group) in a loop for
%% about Ms milliseconds (CPU: the runtime of the whole node).
bench_reads(Mod, {Scope, Group}, Ms) ->
    statistics(runtime),
    T0 = erlang:monotonic_time(microsecond),
    Deadline = T0 + Ms * 1000,
    N = reads(Mod, Scope, Group, Deadline, 0),
    T1 = erlang:monotonic_time(microsecond),
    {_, CpuMs} = statistics(runtime),
    {N, T1 - T0, CpuMs * 1000}.

reads(Mod, Scope, Group, Deadline, N) ->
    _ = Mod:get_members(Scope, Group), _ = Mod:get_members(Scope, Group),
    _ = Mod:get_members(Scope, Group), _ = Mod:get_members(Scope, Group),
    _ = Mod:get_members(Scope, Group), _ = Mod:get_members(Scope, Group),
    _ = Mod:get_members(Scope, Group), _ = Mod:get_members(Scope, Group),
    _ = Mod:get_members(Scope, Group), _ = Mod:get_members(Scope, Group),
    case erlang:monotonic_time(microsecond) < Deadline of
        true -> reads(Mod, Scope, Group, Deadline, N + 10);
        false -> N + 10
    end.

%% {Cycles, Micros, CpuMicros}: join then leave of one member, in a loop for
%% about Ms milliseconds.
bench_join_leave(Mod, {Scope, Group}, Ms) ->
    P = member(),
    statistics(runtime),
    T0 = erlang:monotonic_time(microsecond),
    N = cycles(Mod, Scope, Group, P, T0 + Ms * 1000, 0),
    T1 = erlang:monotonic_time(microsecond),
    {_, CpuMs} = statistics(runtime),
    exit(P, kill),
    {N, T1 - T0, CpuMs * 1000}.

cycles(Mod, Scope, Group, P, Deadline, N) ->
    ok = Mod:join(Scope, Group, P),
    ok = Mod:leave(Scope, Group, P),
    case erlang:monotonic_time(microsecond) < Deadline of
        true -> cycles(Mod, Scope, Group, P, Deadline, N + 1);
        false -> N + 1
    end.

%% A process on this node that monitors Group of Scope with Mod (pg or
%% eq_pg) and answers every join it is told of with {seen, Pids, SystemUs}
%% to ReplyTo.
start_watcher(Mod, {Scope, Group}, ReplyTo) ->
    Self = self(),
    W = spawn(fun() ->
                      {Ref, _} = Mod:monitor(Scope, Group),
                      Self ! {watching, self()},
                      watch(Ref, ReplyTo)
              end),
    receive {watching, W} -> W after 5000 -> exit(no_watcher) end.

watch(Ref, ReplyTo) ->
    receive
        {Ref, join, _Group, Pids} ->
            ReplyTo ! {seen, Pids, erlang:system_time(microsecond)},
            watch(Ref, ReplyTo);
        {Ref, leave, _, _} ->
            watch(Ref, ReplyTo);
        stop ->
            ok
    end.

%% N joins of a fresh member on this node, each waited for until the
%% watcher on another node (started with this process as ReplyTo) saw it:
%% the microseconds from each join's start to its sight there.
propagation(Mod, {Scope, Group}, N, _Watcher) ->
    P = member(),
    Times = [begin
                 T0 = erlang:system_time(microsecond),
                 ok = Mod:join(Scope, Group, P),
                 T1 = receive {seen, [P], T} -> T after 5000 -> exit(not_seen) end,
                 ok = Mod:leave(Scope, Group, P),
                 T1 - T0
             end || _ <- lists:seq(1, N)],
    exit(P, kill),
    Times.

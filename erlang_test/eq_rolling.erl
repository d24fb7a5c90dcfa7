%%% Steady load for tests/rolling_restart.rs, and its history checker.
%%%
%%% start(Nodes) on each BEAM node (Nodes: every BEAM node of the test):
%%% - holders: each takes a lock and registers a name, then serves calls
%%%   by that name until stopped; a lock_lost / name_lost (trapped) is
%%%   recorded;
%%% - lockers on keys of their own (never contended: their call time is the
%%%   service's, so its longest is the gap a caller saw) and on two shared
%%%   keys (contended across nodes: the grants are checked for overlap);
%%%   each grant is a process that locks, holds 10 ms, records and exits;
%%% - a registrar registering and unregistering names of its own;
%%% - callers calling every holder of every node by name.
%%% Every event carries os:system_time(microsecond): one clock for every
%%% node on the host. check(Nodes) gathers the histories and judges them.
-module(eq_rolling).
-export([start_holders/0, start/1, stop/0, history/0, check/1, check_history/1,
         gaps/2]).

-define(REC, eq_rolling_rec).
-define(HOLDERS, 2).

now_us() -> os:system_time(microsecond).

note(E) -> ?REC ! {note, E}.

%% The holders and the recorder: on every node before any start/1.
start_holders() ->
    Rec = spawn(fun() -> rec_loop([]) end),
    true = register(?REC, Rec),
    Holders = [spawn(fun() -> holder(I) end) || I <- lists:seq(1, ?HOLDERS)],
    persistent_term:put({?MODULE, holders}, Holders),
    ok.

%% The load, once every node's holders are registered.
start(Nodes) ->
    Names = [{roll_name, N, I} || N <- Nodes, I <- lists:seq(1, ?HOLDERS)],
    ok = eq_peer:wait_until(fun() ->
            lists:all(fun(N) -> rust_registry:whereis_name(N) =/= undefined end, Names)
         end, 20000),
    Workers = [spawn(fun() -> locker({own, node(), I}, own) end) || I <- lists:seq(1, 3)]
        ++ [spawn(fun() -> locker({shared, I rem 2}, shared) end) || I <- lists:seq(1, 2)]
        ++ [spawn(fun() -> registrar(0) end)]
        ++ [spawn(fun() -> caller(Names) end) || _ <- lists:seq(1, 2)],
    persistent_term:put(?MODULE, Workers),
    ok.

%% Stops the load (the holders stay: callers elsewhere may still call them).
stop() ->
    [exit(P, kill) || P <- persistent_term:get(?MODULE)],
    ok.

history() ->
    ?REC ! {get, self()},
    receive {history, H} -> H after 5000 -> timeout end.

rec_loop(Events) ->
    receive
        {note, E} -> rec_loop([E | Events]);
        {get, From} -> From ! {history, lists:reverse(Events)}, rec_loop(Events)
    end.

holder(I) ->
    process_flag(trap_exit, true),
    acquired = paxtor:lock({roll_hold, node(), I}),
    yes = rust_registry:register_name({roll_name, node(), I}, self()),
    holder_loop().

holder_loop() ->
    receive
        {'$gen_call', From, ping} ->
            gen_server:reply(From, pong),
            holder_loop();
        {'EXIT', _, Reason} ->
            note({lost, now_us(), Reason}),
            holder_loop()
    end.

locker(Key, Kind) ->
    T0 = now_us(),
    Parent = self(),
    {Pid, Ref} = spawn_monitor(fun() ->
        put(rust_quorum_hops, []),
        Got = paxtor:lock(Key, [{no_quorum, return}]),
        Parent ! {hops, self(), get(rust_quorum_hops)},
        case Got of
            acquired ->
                T1 = now_us(),
                timer:sleep(10),
                note({grant, Key, self(), T1, now_us()});
            Other ->
                note({error, now_us(), {lock, Key, Other}})
        end
    end),
    receive {'DOWN', Ref, process, Pid, Reason} -> ok end,
    %% Sent before the process exited: here by now if at all.
    Hops = receive {hops, Pid, H} -> H after 0 -> [] end,
    Reason =:= normal orelse note({error, now_us(), {locker, Key, Reason}}),
    %% Uncontended: the whole call, less the 10 ms hold, is the service's.
    Kind =:= own andalso note({wait, T0, now_us() - T0 - 10000, {lock, lists:reverse(Hops)}}),
    timer:sleep(20),
    locker(Key, Kind).

registrar(N) ->
    Name = {roll_reg, node(), N},
    T0 = now_us(),
    put(rust_quorum_hops, []),
    case rust_registry:register_name(Name, self()) of
        yes -> ok;
        no -> note({error, now_us(), {register, Name}})
    end,
    _ = rust_registry:unregister_name(Name),
    note({wait, T0, now_us() - T0, {reg, lists:reverse(get(rust_quorum_hops))}}),
    timer:sleep(20),
    registrar(N + 1).

caller(Names) ->
    lists:foreach(fun(Name) ->
        T0 = now_us(),
        try gen_server:call({via, rust_registry, Name}, ping, 2000) of
            pong -> note({call, T0, now_us() - T0, element(2, Name)})
        catch
            C:_ -> note({error, now_us(), {call, node(), Name, C}})
        end
    end, Names),
    timer:sleep(20),
    caller(Names).

%% Gathers every node's history and judges it.
check(Nodes) ->
    check_history(lists:append([rpc:call(N, ?MODULE, history, []) || N <- Nodes])).

%% {Grants, Overlaps, Errors, Lost, Calls, MaxWaitMs, MaxCallMs}: no two
%% grants of one key may overlap in time; errors and losses are listed.
check_history(H) ->
    Grants = [{K, P, A, B} || {grant, K, P, A, B} <- H],
    ByKey = maps:groups_from_list(fun({K, _, _, _}) -> K end, Grants),
    Overlaps = lists:append([overlaps(lists:keysort(3, Gs)) || Gs <- maps:values(ByKey)]),
    Errors = [{T, E} || {error, T, E} <- H],
    Lost = [R || {lost, _, R} <- H],
    Calls = [D || {call, _, D} <- H] ++ [D || {call, _, D, _} <- H],
    Waits = [D || {wait, _, D} <- H] ++ [D || {wait, _, D, _} <- H],
    Max = fun([]) -> 0; (L) -> lists:max(L) div 1000 end,
    {length(Grants), Overlaps, lists:sublist(Errors, 5), length(Errors), Lost,
     length(Calls), Max(Waits), Max(Calls)}.

overlaps(Sorted) ->
    %% Against the latest end so far, not only the grant before.
    {_, Found} = lists:foldl(
        fun({_, P, _, B}, {none, Acc}) -> {{P, B}, Acc};
           ({K, P, A, B}, {{Pp, Bp}, Acc}) ->
                Acc1 = case A < Bp of true -> [{K, Pp, P} | Acc]; false -> Acc end,
                {case B > Bp of true -> {P, B}; false -> {Pp, Bp} end, Acc1}
        end, {none, []}, Sorted),
    Found.

%% Where the time went: per kind (lock, reg, call) {Kind, Count, P99Ms,
%% MaxMs}, then the Slowest of each kind as {Kind, Ms, Phase, Info}: Phase
%% is {Label, MsSince} of the latest of Events ([{Label, SystemTimeUs}],
%% what the test did when) before the request started; Info, for a lock or
%% registration, the path of its calls ([{RustNode, Outcome, Ms}], see
%% rust_quorum's trace), for a call by name the callee's node.
gaps(Nodes, Events) ->
    H = lists:append([rpc:call(N, ?MODULE, history, []) || N <- Nodes]),
    Reqs = [{K, T0, D, I} || {wait, T0, D, {K, I}} <- H]
        ++ [{call, T0, D, N} || {call, T0, D, N} <- H],
    Sorted = lists:sort(fun({_, _, A, _}, {_, _, B, _}) -> A >= B end, Reqs),
    Kinds = [lock, reg, call],
    Stats = [stats(K, [D || {K1, _, D, _} <- Sorted, K1 =:= K]) || K <- Kinds],
    Slow = lists:append(
             [[{K, D div 1000, phase(T0, Events), I}
               || {_, T0, D, I} <- lists:sublist([R || {K1, _, _, _} = R <- Sorted, K1 =:= K], 4)]
              || K <- Kinds]),
    {Stats, Slow}.

stats(Kind, []) -> {Kind, 0, 0, 0};
stats(Kind, Desc) ->
    N = length(Desc),
    P99 = lists:nth(max(1, N div 100), Desc),
    {Kind, N, P99 div 1000, hd(Desc) div 1000}.

phase(T0, Events) ->
    case [{L, (T0 - T) div 1000} || {L, T} <- Events, T =< T0] of
        [] -> start;
        Before -> lists:last(Before)
    end.

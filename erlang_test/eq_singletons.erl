%% eq_singletons: the BEAM side of tests/singletons.rs (Paxtor singletons,
%% Sworm-supervised names and leased servers served by the Rust nodes).
%%
%% Three parts:
%%
%%  * The instance: a counter gen_server started as a singleton (through a
%%    Paxtor via tuple, eq_sworm:register_name/5 or a raw start_name). Every
%%    instance reports its start to a history recorder from init/1 (a
%%    synchronous round, so the recorder monitors it before init returns),
%%    and its terminate/2 (it traps exits) and the recorder's monitor
%%    report its end. child_spec/1 makes `{eq_singletons, Arg}` an Elixir
%%    child spec shorthand; the start_* functions are the bad child specs.
%%
%%  * The recorder (registered `eq_sing_rec`), started by the test on a
%%    node it never kills: a log of {Time, Kind, Key, Id, Why}, where Time
%%    is os:system_time(microsecond) (CLOCK_REALTIME: one clock for every
%%    node of a test, all on one host), Kind is started | ended | down, Key
%%    and Why are binaries (the terms printed), Id names the instance's pid
%%    the same way on every node. A `down` is a monitor firing, never
%%    earlier than the instance's real end; there are two: the recorder's
%%    own (for an instance whose node died: the moment its connection
%%    went) and one on the instance's node (a watcher, registered
%%    `eq_sing_watch`, that the first instance on a node starts), which
%%    fires at once where the recorder's waits for the distribution: a
%%    restart on the same node can begin before the recorder hears of the
%%    death. The Rust test takes the earlier of the two as the end and
%%    checks the log (no two instances of a key alive at once).
%%
%%  * race/3: N processes on this node that call a fun at one given
%%    CLOCK_REALTIME moment, for "first use from several nodes at once".
-module(eq_singletons).

%% The instance.
-export([child_spec/1, start_link/1, start_error/1, start_ignore/0,
         start_raise/1]).
%% The recorder.
-export([start_recorder/0, history/0, starts/1, alive_ids/1, wait_starts/3,
         pid_id/1, now_us/0, watch/2]).
%% Races.
-export([race_start/3, race_result/2]).
%% Small things.
-export([same/2, registered_sorted/1, host_pid/0, owner_node_of/1]).
%% gen_server callbacks.
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(REC, eq_sing_rec).

%%% ---------------------------------------------------------------------------
%%% The instance
%%% ---------------------------------------------------------------------------

%% Arg is {counter, Key, RecorderNode} (a counter that reports to the
%% recorder on RecorderNode) or {crash_in_init, Why} (init raises Why).
child_spec(Arg) ->
    #{id => ?MODULE, start => {?MODULE, start_link, [Arg]}}.

start_link(Arg) ->
    gen_server:start_link(?MODULE, Arg, []).

%% Start functions that fail the documented ways.
start_error(Why) -> {error, Why}.
start_ignore() -> ignore.
start_raise(Why) -> erlang:error(Why).

init({counter, Key, Rec}) ->
    process_flag(trap_exit, true),
    report(Rec, {started, Key, self(), now_us()}),
    watch_here(Key, Rec),
    {ok, #{key => Key, rec => Rec, n => 0}};
init({crash_in_init, Why}) ->
    erlang:error(Why).

%%   incr -> N + 1 (and keeps it);  get -> N;  where -> {self(), node()};
%%   {stop, Reason} -> ok, then stops with Reason.
handle_call(incr, _From, #{n := N} = S) -> {reply, N + 1, S#{n := N + 1}};
handle_call(get, _From, #{n := N} = S) -> {reply, N, S};
handle_call(where, _From, S) -> {reply, {self(), node()}, S};
handle_call({stop, Reason}, _From, S) -> {stop, Reason, ok, S};
handle_call(Other, _From, S) -> {reply, {unknown_call, Other}, S}.

handle_cast(_Msg, S) -> {noreply, S}.

%% The guard tells an owner that lost its name with an exit signal (it
%% arrives as a message here, as the instance traps exits): stop, as an
%% instance that does not trap exits would.
handle_info({'EXIT', _From, {name_lost, _} = Why}, S) -> {stop, Why, S};
handle_info({'EXIT', _From, Why}, S) -> {stop, Why, S};
handle_info(_Msg, S) -> {noreply, S}.

terminate(Why, #{key := Key, rec := Rec}) ->
    {?REC, Rec} ! {ended, Key, self(), Why, now_us()},
    ok.

%% Reports the start and waits until the recorder monitors us. A recorder
%% that does not answer is no reason to fail the start: the test then
%% misses the instance and says so.
report(Rec, {started, Key, Pid, T}) ->
    Ref = make_ref(),
    {?REC, Rec} ! {started, Key, Pid, T, {self(), Ref}},
    receive {Ref, ok} -> ok after 5000 -> ok end.

now_us() -> os:system_time(microsecond).

%% Has this node's watcher monitor the caller (starting the watcher if
%% there is none yet), and waits until it does.
watch_here(Key, Rec) ->
    Watcher = case whereis(eq_sing_watch) of
                  undefined ->
                      W = spawn(fun() -> watch_loop(#{}) end),
                      try register(eq_sing_watch, W), W
                      catch error:badarg -> exit(W, kill), whereis(eq_sing_watch)
                      end;
                  W ->
                      W
              end,
    Ref = make_ref(),
    Watcher ! {watch, Key, Rec, self(), {self(), Ref}},
    receive {Ref, ok} -> ok after 5000 -> ok end.

watch_loop(Watched) ->
    receive
        {watch, Key, Rec, Pid, {From, Ref}} ->
            Mref = erlang:monitor(process, Pid),
            From ! {Ref, ok},
            watch_loop(Watched#{Mref => {Key, Rec}});
        {'DOWN', Mref, process, Pid, Why} ->
            T = now_us(),
            {Key, Rec} = maps:get(Mref, Watched),
            {?REC, Rec} ! {down, Key, Pid, Why, T},
            watch_loop(maps:remove(Mref, Watched))
    end.

%%% ---------------------------------------------------------------------------
%%% The recorder
%%% ---------------------------------------------------------------------------

%% Starts the recorder on this node (unlinked), unless it runs already.
start_recorder() ->
    case whereis(?REC) of
        undefined ->
            Pid = spawn(fun() -> rec_loop([], #{}) end),
            true = register(?REC, Pid),
            ok;
        _ ->
            ok
    end.

rec_loop(Log, Watched) ->
    receive
        {started, Key, Pid, T, {From, Ref}} ->
            Mref = erlang:monitor(process, Pid),
            From ! {Ref, ok},
            rec_loop([{T, started, Key, Pid, undefined} | Log],
                     Watched#{Mref => Key});
        {watch, Key, Pid, {From, Ref}} ->
            Mref = erlang:monitor(process, Pid),
            From ! {Ref, ok},
            rec_loop([{now_us(), started, Key, Pid, undefined} | Log],
                     Watched#{Mref => Key});
        {ended, Key, Pid, Why, T} ->
            rec_loop([{T, ended, Key, Pid, Why} | Log], Watched);
        {down, Key, Pid, Why, T} ->
            rec_loop([{T, down, Key, Pid, Why} | Log], Watched);
        {'DOWN', Mref, process, Pid, Why} ->
            T = now_us(),
            Key = maps:get(Mref, Watched, unknown),
            rec_loop([{T, down, Key, Pid, Why} | Log], maps:remove(Mref, Watched));
        {log, From, Ref} ->
            From ! {Ref, lists:reverse(Log)},
            rec_loop(Log, Watched)
    end.

log() ->
    Ref = make_ref(),
    ?REC ! {log, self(), Ref},
    receive {Ref, Log} -> Log after 5000 -> erlang:error(recorder_timeout) end.

%% Records Pid (not an instance: a process the test made, e.g. a leased
%% server) as started now under Key, and watches it. Call on the
%% recorder's node.
watch(Key, Pid) ->
    Ref = make_ref(),
    ?REC ! {watch, Key, Pid, {self(), Ref}},
    receive {Ref, ok} -> ok after 5000 -> erlang:error(recorder_timeout) end.

%% The log, oldest first, as flat terms the Rust test parses:
%% [{Time, Kind, KeyText, Id, WhyText}], texts as binaries.
history() ->
    [{T, Kind, text(Key), pid_id(Pid), text(Why)} || {T, Kind, Key, Pid, Why} <- log()].

%% How many instances of Key have started so far.
starts(Key) ->
    length([x || {_, started, K, _, _} <- log(), K =:= Key]).

%% Waits (up to TimeoutMs) until Key has started at least N times; returns
%% the count.
wait_starts(Key, N, TimeoutMs) ->
    _ = (catch eq_peer:wait_until(fun() -> starts(Key) >= N end, TimeoutMs)),
    starts(Key).

%% The ids of Key's instances that started and have not gone down.
alive_ids(Key) ->
    Log = log(),
    Down = [P || {_, down, K, P, _} <- Log, K =:= Key],
    [pid_id(P) || {_, started, K, P, _} <- Log, K =:= Key, not lists:member(P, Down)].

text(Term) ->
    iolist_to_binary(io_lib:format("~0p", [Term])).

%% A pid as a binary that reads the same on every node: <<"Node/Id/Serial">>.
pid_id(Pid) when is_pid(Pid) ->
    [_, Id, Serial] = string:tokens(pid_to_list(Pid), "<.>"),
    iolist_to_binary([atom_to_list(node(Pid)), "/", Id, "/", Serial]);
pid_id(Other) ->
    text(Other).

%%% ---------------------------------------------------------------------------
%%% Races
%%% ---------------------------------------------------------------------------

%% Spawns a collector and N workers; each worker waits until CLOCK_REALTIME
%% reaches AtUs, then runs Fun() (an exception becomes {caught, Class,
%% Reason}). Returns the collector at once; race_result/2 gets the results.
race_start(Fun, N, AtUs) when is_function(Fun, 0) ->
    Parent = self(),
    Ref = make_ref(),
    Coll = spawn(fun() ->
                         Self = self(),
                         [spawn(fun() ->
                                        sleep_until(AtUs),
                                        R = try Fun() catch C:E -> {caught, C, E} end,
                                        Self ! {Ref, R}
                                end) || _ <- lists:seq(1, N)],
                         Parent ! {Ref, ready},
                         Results = [receive {Ref, R} -> R after 60000 -> timeout end
                                    || _ <- lists:seq(1, N)],
                         receive {result, From} -> From ! {result, Self, Results} end
                 end),
    receive {Ref, ready} -> Coll after 10000 -> erlang:error(race_timeout) end.

sleep_until(AtUs) ->
    case AtUs - now_us() of
        Us when Us > 1000 -> timer:sleep(Us div 1000), sleep_until(AtUs);
        _ -> ok
    end.

%% The race's results (in no particular order), or `timeout`.
race_result(Coll, TimeoutMs) ->
    Coll ! {result, self()},
    receive {result, Coll, Results} -> Results after TimeoutMs -> timeout end.

%%% ---------------------------------------------------------------------------
%%% Small things
%%% ---------------------------------------------------------------------------

%% Whether two lists hold the same elements (as multisets).
same(A, B) -> lists:sort(A) =:= lists:sort(B).

%% eq_sworm:registered(Scope) sorted, pids as ids: comparable across nodes.
registered_sorted(Scope) ->
    lists:sort([{text(N), pid_id(P)} || {N, P} <- eq_sworm:registered(Scope)]).

%% The erl_quorum_host of this node (the Host of a start_name's options).
host_pid() -> whereis(erl_quorum_host).

%% The Rust node whose keepalives keep Pid's name (or lock), as this
%% node's guard knows it; undefined if none.
owner_node_of(Pid) ->
    Owners = maps:get(owners, rust_quorum:status(), #{}),
    case [N || {N, Entries} <- maps:to_list(Owners),
               lists:keymember(Pid, 1, Entries)] of
        [N | _] -> N;
        [] -> undefined
    end.

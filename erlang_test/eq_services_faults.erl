%% eq_services_faults: the BEAM side of tests/services_faults.rs, fault
%% injection against the erl_quorum service (Paxtor locks, rust_registry).
%%
%% Every time here is os:system_time(microsecond): CLOCK_REALTIME of the one
%% host every node of a test runs on, the clock the Rust test reads with
%% SystemTime too. That puts the events of several BEAM nodes (each with its
%% own monotonic clock) and of the test itself on one time line.
%%
%% A registered recorder (`eqsf_rec`) on each node keeps a log of events
%% {Time, Event}; test processes are known by a Tag (an atom) and watched
%% by it (a monitor), so their exit reason and its time are in the log too:
%%
%%   {acquired, Tag, Reply}    paxtor:lock/2 returned Reply (taken just after)
%%   {registered, Tag, Reply}  rust_registry:register_name/2 returned Reply
%%   {exiting, Tag}            the process is about to exit normally
%%   {down, Tag, Reason}       its monitor fired (lock_lost, killed, ...)
%%
%% Results go back as flat terms of integers and atoms, easy to parse from
%% eq_peer's printed answer.
-module(eq_services_faults).

-export([start/1, now_us/0, events/0, event/2, wait_event/3,
         locker/3, locker/4, owner/2, owner/3, namer/2, pid_of/1, stop/1,
         kill/1, pid_id/1, deep/1, cut/1, connected/1, fake_pid/1]).
-export([contend/3, contend_go/1, contend_result/2, storm/3, quorum_view/2]).

-define(REC, eqsf_rec).

%%% ---------------------------------------------------------------------------
%%% Setup
%%% ---------------------------------------------------------------------------

%% Starts the recorder, then the erl_quorum application with RustNodes as
%% its `rust_nodes` (eq_services:start_app/2); returns the Rust node its
%% guard subscribed to.
start(RustNodes) ->
    case whereis(?REC) of
        undefined ->
            Rec = spawn(fun() -> rec_loop([], #{}, #{}) end),
            true = register(?REC, Rec);
        _ ->
            ok
    end,
    eq_services:start_app(RustNodes, 15000).

now_us() ->
    os:system_time(microsecond).

%%% ---------------------------------------------------------------------------
%%% The recorder
%%% ---------------------------------------------------------------------------

rec_loop(Events, Refs, Tags) ->
    receive
        {note, T, E} ->
            rec_loop([{T, E} | Events], Refs, Tags);
        {watch, Pid, Tag, From} ->
            Ref = erlang:monitor(process, Pid),
            From ! {watching, Pid},
            rec_loop(Events, maps:put(Ref, Tag, Refs), maps:put(Tag, Pid, Tags));
        {'DOWN', Ref, process, _, Reason} ->
            T = now_us(),
            Tag = maps:get(Ref, Refs, unknown),
            rec_loop([{T, {down, Tag, Reason}} | Events], maps:remove(Ref, Refs), Tags);
        {events, From} ->
            From ! {events, lists:reverse(Events)},
            rec_loop(Events, Refs, Tags);
        {pid_of, Tag, From} ->
            From ! {pid_of, maps:get(Tag, Tags, undefined)},
            rec_loop(Events, Refs, Tags)
    end.

rec_call(Msg) ->
    ?REC ! Msg,
    receive
        {Tag, Reply} when Tag =:= element(1, Msg) -> Reply
    after 5000 -> erlang:error({recorder_timeout, Msg})
    end.

events() ->
    rec_call({events, self()}).

%% The first event of Kind about Tag: {Time, Data} (Data is the reply,
%% the exit reason, or `true`), or `none`.
event(Kind, Tag) ->
    first(Kind, Tag, events()).

first(_Kind, _Tag, []) -> none;
first(Kind, Tag, [{T, {Kind, Tag}} | _]) -> {T, true};
first(Kind, Tag, [{T, {Kind, Tag, Data}} | _]) -> {T, Data};
first(Kind, Tag, [_ | Rest]) -> first(Kind, Tag, Rest).

%% event/2, waiting up to TimeoutMs for it: {Time, Data} or `timeout`.
wait_event(Kind, Tag, TimeoutMs) ->
    Deadline = erlang:monotonic_time(millisecond) + TimeoutMs,
    wait_event_until(Kind, Tag, Deadline).

wait_event_until(Kind, Tag, Deadline) ->
    case event(Kind, Tag) of
        none ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true -> timeout;
                false -> timer:sleep(10), wait_event_until(Kind, Tag, Deadline)
            end;
        Found ->
            Found
    end.

pid_of(Tag) ->
    rec_call({pid_of, Tag, self()}).

%%% ---------------------------------------------------------------------------
%%% Test processes
%%% ---------------------------------------------------------------------------

%% Spawns Tag: it calls paxtor:lock(Key, Opts), logs `acquired` with the
%% reply, holds for HoldMs (`infinity`: until stop/1), logs `exiting` and
%% exits normally. Returns its pid at once (it may still be waiting).
locker(Tag, Key, HoldMs) ->
    locker(Tag, Key, [], HoldMs).

locker(Tag, Key, Opts, HoldMs) ->
    spawn_watched(Tag, fun() ->
                               R = paxtor:lock(Key, Opts),
                               ?REC ! {note, now_us(), {acquired, Tag, R}},
                               hold(HoldMs),
                               ?REC ! {note, now_us(), {exiting, Tag}}
                       end).

%% locker/3 holding until stopped, and waiting (up to 10 s) until it holds:
%% returns the lock reply (or `timeout`).
owner(Tag, Key) ->
    owner(Tag, Key, []).

owner(Tag, Key, Opts) ->
    _ = locker(Tag, Key, Opts, infinity),
    case wait_event(acquired, Tag, 10000) of
        {_, R} -> R;
        timeout -> timeout
    end.

%% Spawns Tag, which registers Name for itself and stays until stopped;
%% returns the register_name reply (waits for it).
namer(Tag, Name) ->
    _ = spawn_watched(Tag, fun() ->
                                   R = rust_registry:register_name(Name, self()),
                                   ?REC ! {note, now_us(), {registered, Tag, R}},
                                   hold(infinity)
                           end),
    case wait_event(registered, Tag, 10000) of
        {_, R} -> R;
        timeout -> timeout
    end.

spawn_watched(Tag, Body) ->
    Pid = spawn(fun() -> receive go -> Body() end end),
    ?REC ! {watch, Pid, Tag, self()},
    receive {watching, Pid} -> ok after 5000 -> erlang:error(recorder_timeout) end,
    Pid ! go,
    Pid.

hold(infinity) -> receive stop -> ok end;
hold(Ms) -> timer:sleep(Ms).

stop(Tag) ->
    pid_of(Tag) ! stop,
    ok.

%% Kills Tag (exit(Pid, kill)); returns the time just before.
kill(Tag) ->
    Pid = pid_of(Tag),
    T = now_us(),
    exit(Pid, kill),
    T.

%% A pid as a string that reads the same on every node: "Node/Id/Serial".
pid_id(Pid) when is_pid(Pid) ->
    [_, Id, Serial] = string:tokens(pid_to_list(Pid), "<.>"),
    atom_to_list(node(Pid)) ++ "/" ++ Id ++ "/" ++ Serial;
pid_id(Other) ->
    lists:flatten(io_lib:format("~0p", [Other])).

%% A term nested Depth tuples deep.
deep(Depth) ->
    lists:foldl(fun(_, Acc) -> {Acc} end, deep, lists:seq(1, Depth)).

%% Cuts this node off Node for good: a cookie Node does not have (so no
%% connection in either direction passes the handshake again), then the
%% current connection goes. Returns the time just before the disconnect.
cut(Node) ->
    true = erlang:set_cookie(Node, eqsf_wrong_cookie),
    T = now_us(),
    _ = erlang:disconnect_node(Node),
    T.

connected(Node) ->
    lists:member(Node, nodes(connected)).

%%% ---------------------------------------------------------------------------
%%% Contention: N processes, one key, each locks once
%%% ---------------------------------------------------------------------------

%% Spawns a collector with N workers parked on `go`. Each worker, on go,
%% calls paxtor:lock(Key), takes T0 just after it returns, holds for HoldMs,
%% takes T1 and reports {grant, I, Reply, T0, T1}, then exits normally.
contend(Key, N, HoldMs) ->
    start_collector(N, fun(Coll, I) -> worker(Coll, I, Key, HoldMs) end).

start_collector(N, Worker) ->
    Parent = self(),
    Coll = spawn(fun() -> collector(Parent, N, Worker) end),
    receive {ready, Coll} -> Coll after 10000 -> erlang:error(collector_timeout) end.

contend_go(Coll) ->
    Coll ! go,
    ok.

collector(Parent, N, Worker) ->
    Self = self(),
    Workers = [begin
                   {Pid, _} = spawn_monitor(fun() -> Worker(Self, I) end),
                   Pid
               end || I <- lists:seq(1, N)],
    Parent ! {ready, Self},
    receive go -> ok end,
    [W ! go || W <- Workers],
    collect(N, [], []).

worker(Coll, I, Key, HoldMs) ->
    receive go -> ok end,
    R = (catch paxtor:lock(Key)),
    T0 = now_us(),
    timer:sleep(HoldMs),
    T1 = now_us(),
    Coll ! {grant, I, R, T0, T1}.

collect(0, Grants, Downs) ->
    receive
        {result, From} -> From ! {result, self(), lists:reverse(Grants), Downs}
    end;
collect(Left, Grants, Downs) ->
    receive
        {grant, _, _, _, _} = G -> collect(Left, [G | Grants], Downs);
        {'DOWN', _, process, _, Reason} -> collect(Left - 1, Grants, [Reason | Downs])
    end.

%% Waits for every worker to exit: {Exited, Acquired, Distinct, BadReplies,
%% BadExits, Text}, where Acquired counts `acquired` replies, Distinct the
%% distinct workers that reported, BadReplies and BadExits list (up to 5)
%% other replies and exit reasons, and Text is "I,T0,T1;..." for every
%% grant. `timeout` if the workers are not all gone within TimeoutMs.
contend_result(Coll, TimeoutMs) ->
    Coll ! {result, self()},
    receive
        {result, Coll, Grants, Downs} ->
            Acquired = length([x || {grant, _, acquired, _, _} <- Grants]),
            Distinct = length(lists:usort([I || {grant, I, _, _, _} <- Grants])),
            BadReplies = [R || {grant, _, R, _, _} <- Grants, R =/= acquired],
            BadExits = [R || R <- Downs, R =/= normal],
            Text = lists:flatten([io_lib:format("~b,~b,~b;", [I, T0, T1])
                                  || {grant, I, acquired, T0, T1} <- Grants]),
            {length(Downs), Acquired, Distinct, lists:sublist(BadReplies, 5),
             lists:sublist(BadExits, 5), Text}
    after TimeoutMs ->
            timeout
    end.

%% A pid of Node, which need not exist (nor the node): NEW_PID_EXT.
fake_pid(Node) ->
    Bin = atom_to_binary(Node, utf8),
    binary_to_term(<<131, 88, 119, (byte_size(Bin)), Bin/binary, 1:32, 0:32, 1:32>>).

%%% ---------------------------------------------------------------------------
%%% A storm of non-blocking attempts
%%% ---------------------------------------------------------------------------

%% Spawns a collector with N workers parked on `go` (contend_go/1 starts
%% them), spread over Keys. Each worker calls paxtor:lock(Key, [{block, false}]) again and
%% again (0-2 ms apart) until it gets the lock, which it then lets go of at
%% once by exiting, or until DurationMs have passed since go, when it gives
%% up and exits. contend_result/2 reports them: a worker that gave up counts
%% as a bad reply `{gave_up, Attempts}`, one that crashed as a bad exit.
storm(Keys, N, DurationMs) when is_list(Keys) ->
    start_collector(N, fun(Coll, I) ->
                               Key = lists:nth(I rem length(Keys) + 1, Keys),
                               storm_worker(Coll, I, Key, DurationMs)
                       end).

storm_worker(Coll, I, Key, DurationMs) ->
    receive go -> ok end,
    Deadline = erlang:monotonic_time(millisecond) + DurationMs,
    storm_loop(Coll, I, Key, Deadline, 1).

storm_loop(Coll, I, Key, Deadline, Attempt) ->
    case paxtor:lock(Key, [{block, false}]) of
        acquired ->
            T = now_us(),
            Coll ! {grant, I, acquired, T, T};
        {held_by, Pid} when is_pid(Pid) ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true ->
                    Coll ! {grant, I, {gave_up, Attempt}, 0, 0};
                false ->
                    timer:sleep(rand:uniform(3) - 1),
                    storm_loop(Coll, I, Key, Deadline, Attempt + 1)
            end
    end.

%% Who each Rust node says holds lock Key: [{Node, Pid | undefined | Other}],
%% Pid's liveness where it is local.
quorum_view(Nodes, Key) ->
    [{N, case catch gen_server:call({erl_quorum, N}, {whereis_lock, Key}, 2000) of
             Pid when is_pid(Pid), node(Pid) =:= node() ->
                 {Pid, alive, is_process_alive(Pid)};
             Other -> Other
         end} || N <- Nodes].

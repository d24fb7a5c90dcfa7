%% eq_election: the BEAM side of tests/election.rs and benches/election.rs.
%%
%%  * An eq_leader callback module that records its terms: every
%%    `elected` (its own term, not a joiner's sync), every leader action
%%    (a leader_call or leader_cast it handled) and the end of a term
%%    (`surrendered` with Sync undefined: the term was lost) go to a
%%    history recorder as {Time, Node, Pid, elected | acted | surrendered,
%%    Token}, Time in erlang:system_time(microsecond) (all nodes run on one
%%    host: one clock). A surrendered term is logged at the end of its
%%    validity (eq_leader:term_end_us/1), or now if earlier: the moment it
%%    stopped being allowed to act, which for a node frozen past its lease
%%    lies before it wakes up to log it.
%%  * The recorder (registered `eq_elect_rec`, on a node the test never
%%    kills or stops).
%%  * start/3: a candidate or worker, unlinked from the eval.
-module(eq_election).
-behaviour(eq_leader).

-export([start/3, start/4, state/1, view/1, start_recorder/0, history/0,
         leader_calls/3, plain_server/0, plain_calls/3, leader_name/1, settled/1, get/2]).
-export([init/1, elected/3, surrendered/3, handle_DOWN/3, handle_leader_call/4,
         handle_leader_cast/3, from_leader/3, handle_call/4, handle_cast/3,
         handle_info/3, terminate/2, code_change/4]).

-define(REC, eq_elect_rec).

%%% ---------------------------------------------------------------------------
%%% Members
%%% ---------------------------------------------------------------------------

%% Starts a member registered as Name in group `eq_election`, reporting
%% to the recorder on RecNode (or nowhere: `none`); Role candidate|worker.
start(Name, RecNode, Role) ->
    start(Name, RecNode, Role, eq_election).

start(Name, RecNode, Role, Group) ->
    {ok, P} = eq_leader:start_link(Name, ?MODULE, RecNode, [{role, Role}, {resource, Group}]),
    unlink(P),
    P.

%% The callback state of member Name (a map).
state(Name) -> eq_leader:call(Name, '$state').

%% What member Name sees: {Leader, Candidates, Workers, Token}.
view(Name) ->
    {eq_leader:leader(Name), lists:sort(eq_leader:candidates(Name)),
     lists:sort(eq_leader:workers(Name)), eq_leader:token(Name)}.

init(RecNode) ->
    {ok, #{rec => RecNode, leading => false, sync => none, got => [], downs => [],
           val => undefined, syncs => 0}}.

elected(S, Info, undefined) ->
    log(S, elected, Info),
    {ok, {sync_from, self(), eq_leader:token(Info)}, S#{leading := true}};
elected(S, Info, _Joiner) ->
    {reply, {sync_from, self(), eq_leader:token(Info)}, S}.

surrendered(#{leading := true} = S, Sync, Info) ->
    %% Our term ended: told at once (Sync undefined) or by the next
    %% leader's sync (we were frozen or cut off past the term).
    log(S, surrendered, Info, eq_leader:term_end_us(Info)),
    surrendered(S#{leading := false, sync := lost}, Sync, Info);
surrendered(S, undefined, _Info) ->
    {ok, S};
surrendered(#{syncs := N} = S, Sync, _Info) ->
    {ok, S#{leading := false, sync := Sync, syncs := N + 1}}.

handle_DOWN(Pid, #{downs := D} = S, _Info) ->
    {ok, S#{downs := [Pid | D]}}.

handle_leader_call({echo, X}, _From, S, Info) ->
    log(S, acted, Info),
    {reply, {self(), X}, S};
handle_leader_call({bcast, M}, _From, S, Info) ->
    log(S, acted, Info),
    {reply, ok, M, S};
handle_leader_call(ping, _From, S, _Info) ->
    %% The benchmark's call: no log.
    {reply, pong, S};
handle_leader_call(later, From, S, Info) ->
    log(S, acted, Info),
    eq_leader:reply(From, {later, self()}),
    {noreply, S}.

handle_leader_cast({set, V}, S, Info) ->
    log(S, acted, Info),
    {ok, S#{val := V}};
handle_leader_cast({bcast, M}, S, Info) ->
    log(S, acted, Info),
    {ok, M, S}.

from_leader(M, #{got := G} = S, _Info) ->
    {ok, S#{got := [M | G]}}.

handle_call('$state', _From, S, _Info) ->
    {reply, S, S};
handle_call(_, _From, S, _Info) ->
    {reply, {error, unknown}, S}.

handle_cast(_, S, _Info) -> {ok, S}.
handle_info(_, S, _Info) -> {ok, S}.
terminate(_, _) -> ok.
code_change(_, S, _, _) -> {ok, S}.

log(S, Event, Info) ->
    log(S, Event, Info, erlang:system_time(microsecond)).

log(#{rec := none}, _Event, _Info, _T) -> ok;
log(#{rec := Rec}, Event, Info, T) ->
    {?REC, Rec} ! {log, {T, node(), self(), Event, eq_leader:token(Info)}},
    ok.

%%% ---------------------------------------------------------------------------
%%% The recorder
%%% ---------------------------------------------------------------------------

start_recorder() ->
    case whereis(?REC) of
        undefined ->
            P = spawn(fun() -> recorder([]) end),
            register(?REC, P),
            ok;
        _ -> ok
    end.

recorder(Log) ->
    receive
        {log, E} -> recorder([E | Log]);
        {history, From, Ref} -> From ! {Ref, lists:reverse(Log)}, recorder(Log);
        %% A value handed over between nodes (the Rust member's pid).
        {put, K, V} -> put(K, V), recorder(Log);
        {get, From, Ref, K} -> From ! {Ref, get(K)}, recorder(Log)
    end.

%% A value put on the recorder (on node RecNode) by `{put, K, V}`.
get(RecNode, K) ->
    Ref = make_ref(),
    {?REC, RecNode} ! {get, self(), Ref, K},
    receive {Ref, V} -> V after 5000 -> erlang:error(recorder_timeout) end.

%% The log, oldest first, on the recorder's node.
history() ->
    Ref = make_ref(),
    ?REC ! {history, self(), Ref},
    receive
        {Ref, Log} ->
            %% Printable for the test: pids as binaries (as this node names them).
            [{T, N, list_to_binary(pid_to_list(P)), E, Tok} || {T, N, P, E, Tok} <- Log]
    after 5000 -> erlang:error(recorder_timeout)
    end.

%%% ---------------------------------------------------------------------------
%%% Benchmark helpers
%%% ---------------------------------------------------------------------------

%% N leader_calls `ping` through member Name: {Micros, CpuMicros}.
leader_calls(Name, N, _) ->
    timed(fun() -> pong = eq_leader:leader_call(Name, ping) end, N).

%% A plain gen_server registered `eq_elect_plain` on this node (an
%% eq_leader callback cannot also be a gen_server callback: init/1).
plain_server() ->
    {ok, P} = gen_server:start({local, eq_elect_plain}, eq_election_plain, [], []),
    P.

%% N gen_server:calls to {eq_elect_plain, Node}.
plain_calls(Node, N, _) ->
    timed(fun() -> pong = gen_server:call({eq_elect_plain, Node}, ping) end, N).

timed(F, N) ->
    {R0, _} = erlang:statistics(runtime),
    T0 = erlang:monotonic_time(microsecond),
    [F() || _ <- lists:seq(1, N)],
    T1 = erlang:monotonic_time(microsecond),
    {R1, _} = erlang:statistics(runtime),
    {T1 - T0, (R1 - R0) * 1000}.

%%% ---------------------------------------------------------------------------
%%% What the test reads
%%% ---------------------------------------------------------------------------

%% The leader member Name follows, as {Node, RegisteredName} (the same text
%% on every node), or undefined.
leader_name(Name) ->
    case eq_leader:leader(Name) of
        undefined -> undefined;
        L -> {node(L), reg_name(L)}
    end.

reg_name(P) when node(P) =:= node() ->
    element(2, erlang:process_info(P, registered_name));
reg_name(P) ->
    case erpc:call(node(P), erlang, process_info, [P, registered_name], 2000) of
        {registered_name, N} -> N;
        _ -> undefined
    end.

%% leader_name/1 once member Name is settled: it leads (and knows it), or
%% it got the sync of the leader it follows; `unsettled` otherwise.
settled(Name) ->
    S = state(Name),
    L = eq_leader:leader(Name),
    Me = whereis(Name),
    case S of
        #{leading := true} when L =:= Me -> leader_name(Name);
        #{leading := false, sync := {sync_from, L, _}} when is_pid(L), L =/= Me -> leader_name(Name);
        _ -> unsettled
    end.

%%% erl_quorum_keeper: keeps one child that a serving Rust node had this
%%% node's host start for a supervised name (SINGLETONS-SPEC.md, "Keeper
%%% duties"). One keeper per `eq_start`, under erl_quorum_keeper_sup; it lives
%%% as long as its child.
%%%
%%% 1. Runs the start spec (its init has returned by then: a slow start holds
%%%    up neither the host nor other starts), traps exits so a start_link
%%%    links the child to it.
%%% 2. Tells the Rust node `{started, Id, Pid}` or `{start_failed, Id,
%%%    Reason}`. On `no` (abandoned, timed out, the name got taken) it kills
%%%    the child and ends.
%%%    On `yes` it reads the name's metadata (whereis_meta), which eq_start
%%%    does not carry, for the re-request below.
%%% 3. When the child exits: with `{name_lost, Name}` (the guard: the serving
%%%    node lost the name or cannot renew it) and restart permanent or
%%%    transient, it asks for the name again with a fresh `start_name` (the
%%%    serving node's view of the owner is gone with the lease, so nobody
%%%    else would). Otherwise it just ends: the serving node monitors the
%%%    owner and restarts it as its restart says.
%%%
%%% The guard also tells the keeper (name_lost/2) when it tells the child: a
%%% child that traps exits, or runs with `on_lost = message`, and does not
%%% stop within a short grace is killed, so that it never overlaps with the
%%% instance the serving node starts elsewhere.
-module(erl_quorum_keeper).
-behaviour(gen_server).

-export([start_link/1, name_lost/2, run_spec/1, start_mfa/1]).
-export([init/1, handle_continue/2, handle_call/3, handle_cast/2,
         handle_info/2, terminate/2]).

-include_lib("kernel/include/logger.hrl").

-define(TABLE, erl_quorum_keepers).
%% The reply to `started` / `start_failed`: the serving node answers at once;
%% past this the keeper takes it for a `no`.
-define(CONFIRM_TIMEOUT_MS, 30000).
%% How long a child told to stop (shutdown) gets before it is killed.
-define(SHUTDOWN_MS, 5000).
%% Re-requests after a lost name: a pause of 100-300 ms, retried on no_quorum
%% or no_host for up to 60 s.
-define(PAUSE_MS, 100).
-define(PAUSE_JITTER_MS, 200).
-define(RETRY_FOR_MS, 60000).

%% Start: #{rust_node, id, name, start, restart, host}.
-spec start_link(map()) -> {ok, pid()}.
start_link(Start) ->
    gen_server:start_link(?MODULE, Start, []).

%% Called by the guard when it tells Owner it lost Name; a no-op unless a
%% keeper keeps Owner.
-spec name_lost(pid(), term()) -> ok.
name_lost(Owner, Name) ->
    try ets:lookup(?TABLE, Owner) of
        [{_, Keeper}] -> Keeper ! {eq_keeper_name_lost, Owner, Name}, ok;
        [] -> ok
    catch
        error:badarg -> ok
    end.

%%%===================================================================
%%% Start specs
%%%===================================================================

%% Runs a BEAM start spec: {ok, Pid} or {error, Reason}, Reason as the
%% protocol's start_failed wants it: R of `{error, R}`, `ignore`,
%% `{Class, Reason}` of a crash, `{bad_return_value, Other}`.
-spec run_spec(term()) -> {ok, pid()} | {error, term()}.
run_spec(Spec) ->
    try start_mfa(Spec) of
        {M, F, A} ->
            try apply(M, F, A) of
                {ok, Pid} when is_pid(Pid) -> {ok, Pid};
                {ok, Pid, _Info} when is_pid(Pid) -> {ok, Pid};
                ignore -> {error, ignore};
                {error, Reason} -> {error, Reason};
                Other -> {error, {bad_return_value, Other}}
            catch
                Class:Reason -> {error, {Class, Reason}}
            end
    catch
        %% A child_spec/1 that crashed, or a spec of no known shape.
        Class:Reason -> {error, {Class, Reason}}
    end.

%% The {M, F, Args} a spec starts with (raises on anything else):
%% {M, F, Args}; an OTP child spec map (#{start := MFA}) or tuple ({Id, MFA,
%% Restart, Shutdown, Type, Modules}); Elixir's shorthands Module
%% (Module:child_spec([])) and {Module, Arg} (Module:child_spec(Arg)).
-spec start_mfa(term()) -> {module(), atom(), list()}.
start_mfa({beam, Spec}) ->
    start_mfa(Spec);
start_mfa({rust, _} = Start) ->
    %% A Rust service: for a Rust host, never a BEAM one.
    erlang:error({badarg, Start});
start_mfa(Spec) ->
    case child_start(Spec) of
        {ok, MFA} ->
            MFA;
        error when is_atom(Spec) ->
            from_child_spec(Spec, Spec:child_spec([]));
        error when is_tuple(Spec), tuple_size(Spec) =:= 2, is_atom(element(1, Spec)) ->
            {Module, Arg} = Spec,
            from_child_spec(Spec, Module:child_spec(Arg));
        error ->
            erlang:error({badarg, Spec})
    end.

from_child_spec(Spec, ChildSpec) ->
    case child_start(ChildSpec) of
        {ok, MFA} -> MFA;
        error -> erlang:error({bad_child_spec, Spec, ChildSpec})
    end.

child_start({M, F, A} = MFA) when is_atom(M), is_atom(F), is_list(A) ->
    {ok, MFA};
child_start(#{start := {M, F, A} = MFA}) when is_atom(M), is_atom(F), is_list(A) ->
    {ok, MFA};
child_start({_Id, {M, F, A} = MFA, _Restart, _Shutdown, _Type, _Modules})
  when is_atom(M), is_atom(F), is_list(A) ->
    {ok, MFA};
child_start(_) ->
    error.

%%%===================================================================
%%% gen_server callbacks
%%%===================================================================

init(#{rust_node := _, id := _, name := _, start := _, restart := _} = Start) ->
    process_flag(trap_exit, true),
    {ok, Start#{child => undefined, lost => false}, {continue, start}}.

handle_continue(start, #{start := Spec, id := Id} = S) ->
    case run_spec(Spec) of
        {ok, Child} ->
            Mref = erlang:monitor(process, Child),
            remember(Child),
            S1 = S#{child => Child, mref => Mref},
            case confirm(S, {started, Id, Child}) of
                yes ->
                    {noreply, S1, {continue, meta}};
                Other ->
                    ?LOG_INFO("erl_quorum: start of ~0p answered ~0p; stopping ~p",
                              [maps:get(name, S), Other, Child]),
                    kill(S1),
                    {stop, normal, S1#{child => undefined}}
            end;
        {error, Reason} ->
            _ = confirm(S, {start_failed, Id, Reason}),
            {stop, normal, S}
    end;
handle_continue(meta, #{name := Name} = S) ->
    %% eq_start does not carry the name's metadata, and a fresh start_name
    %% after a lost name must not drop it: read it once, now that the name
    %% is held.
    Meta = try rust_registry:whereis_meta(Name) of
               {_Pid, M} -> M;
               undefined -> undefined
           catch
               _:_ -> undefined
           end,
    {noreply, S#{meta => Meta}}.

handle_call(_Request, _From, S) ->
    {reply, {error, unknown_request}, S}.

handle_cast(_Msg, S) ->
    {noreply, S}.

handle_info({'DOWN', Mref, process, Child, Reason},
            #{mref := Mref, child := Child, name := Name, restart := Restart} = S) ->
    forget(Child),
    S1 = S#{child => undefined},
    Lost = Reason =:= {name_lost, Name} orelse maps:get(lost, S),
    case Lost andalso (Restart =:= permanent orelse Restart =:= transient) of
        true ->
            Deadline = erlang:monotonic_time(millisecond) + ?RETRY_FOR_MS,
            pause(),
            {noreply, S1#{retry_until => Deadline}};
        false ->
            {stop, normal, S1}
    end;
handle_info({eq_keeper_name_lost, Child, Name}, #{child := Child, name := Name} = S) ->
    %% The guard told the child too; give it a moment to stop on its own
    %% (terminate callbacks run), no more than a quarter of the guard's
    %% margin, which is what stands between now and a start elsewhere.
    Grace = case application:get_env(erl_quorum, margin_ms, 2000) of
                Margin when is_integer(Margin), Margin >= 0 -> min(500, Margin div 4);
                _ -> 500
            end,
    erlang:send_after(Grace, self(), {eq_keeper_kill, Child}),
    {noreply, S#{lost => true}};
handle_info({eq_keeper_kill, Child}, #{child := Child} = S) ->
    exit(Child, kill),
    {noreply, S};
handle_info(restart, #{name := Name, start := Spec, restart := Restart,
                       retry_until := Deadline} = S) ->
    Start = case Spec of
                {beam, _} -> Spec;
                _ -> {beam, Spec}
            end,
    Opts0 = case maps:get(meta, S, undefined) of
                undefined -> #{restart => Restart};
                Meta -> #{restart => Restart, meta => Meta}
            end,
    Opts = case erlang:whereis(erl_quorum_host) of
               Host when is_pid(Host) -> Opts0#{host => Host};
               undefined -> Opts0
           end,
    Request = {start_name, Name, Start, Opts},
    Reply = try rust_quorum:call(Request)
            catch exit:{no_rust_node, _} -> no_quorum
            end,
    Unsettled = Reply =:= no_quorum orelse Reply =:= {error, no_host},
    case Unsettled andalso erlang:monotonic_time(millisecond) < Deadline of
        true ->
            pause(),
            {noreply, S};
        false ->
            ?LOG_INFO("erl_quorum: ~0p lost its name; start_name again: ~0p",
                      [Name, Reply]),
            {stop, normal, S}
    end;
handle_info(_Msg, S) ->
    %% EXITs of the child (its DOWN is what counts) and of processes its start
    %% linked us to; late replies; stale kill timers.
    {noreply, S}.

terminate(_Reason, #{child := Child} = S) when is_pid(Child) ->
    %% Stopped by our supervisor (the application is stopping): the child
    %% goes with us, as a supervisor's child would.
    exit(Child, shutdown),
    receive
        {'DOWN', _, process, Child, _} -> ok
    after ?SHUTDOWN_MS ->
            kill(S)
    end,
    forget(Child);
terminate(_Reason, _S) ->
    ok.

%%%===================================================================
%%% Internals
%%%===================================================================

%% The reply of the serving node that sent eq_start; a node that is gone or
%% does not answer is a `no`.
confirm(#{rust_node := Node}, Msg) ->
    try
        gen_server:call({erl_quorum, Node}, Msg, ?CONFIRM_TIMEOUT_MS)
    catch
        exit:{Reason, _} -> {error, Reason}
    end.

kill(#{child := Child} = S) when is_pid(Child) ->
    exit(Child, kill),
    Mref = maps:get(mref, S),
    receive
        {'DOWN', Mref, process, Child, _} -> ok
    after ?SHUTDOWN_MS ->
            ok
    end,
    forget(Child);
kill(_S) ->
    ok.

remember(Child) ->
    try ets:insert(?TABLE, {Child, self()})
    catch error:badarg -> true
    end.

forget(Child) ->
    try ets:delete(?TABLE, Child)
    catch error:badarg -> true
    end.

pause() ->
    erlang:send_after(?PAUSE_MS + rand:uniform(?PAUSE_JITTER_MS + 1) - 1, self(), restart).

%%% rust_registry: the via module of the erl_quorum name registry.
%%%
%%% Use `{via, rust_registry, Name}` as a process name in gen_server,
%%% gen_statem, supervisor or Elixir's GenServer. Names are cluster-wide and
%%% held by the Rust nodes; registering and unregistering are round trips to
%%% one of them, while whereis_name/1 (which gen calls on every call, cast and
%%% stop) reads only the local ETS table `rust_registry` that rust_quorum keeps
%%% in sync. A name is released when its owner exits or on unregister_name/1.
-module(rust_registry).

-export([register_name/2, unregister_name/1, whereis_name/1, send/2]).
%% Not part of the via contract: a registration that carries metadata.
-export([register_name/3, whereis_meta/1, cache/2]).

-define(TABLE, rust_registry).
%% A local holder that is already dead is a name whose release the Rust node
%% has not processed yet (a supervisor restarting a child under the same name
%% gets there first): register again, for up to about 2 s.
-define(DEAD_HOLDER_RETRIES, 200).
-define(DEAD_HOLDER_SLEEP_MS, 10).
%% A `no` while nobody holds the name is no quorum: the masters cannot be
%% reached, or the Rust node that granted the name's shard is gone and its
%% session (default 10 s) has not lapsed yet, so nobody may grant the name.
%% Retried every 100 ms for up to 30 s before the `no` is believed: a
%% supervisor restarting a child then waits instead of failing.
-define(UNSETTLED_SLEEP_MS, 100).
-define(UNSETTLED_RETRIES, 300).

%% yes when Name now belongs to Pid, no when another process holds it. On
%% no, the table knows the holder before this returns, so gen's whereis_name
%% right after can put it in `{error, {already_started, Pid}}`.
-spec register_name(term(), pid()) -> yes | no.
register_name(Name, Pid) when is_pid(Pid) ->
    try_register({register_name, Name, Pid}, Name, Pid,
             {?DEAD_HOLDER_RETRIES, ?UNSETTLED_RETRIES}).

%% As register_name/2, and the serving node keeps Meta for Name while Pid
%% holds it (whereis_meta/1 reads it back).
-spec register_name(term(), pid(), term()) -> yes | no.
register_name(Name, Pid, Meta) when is_pid(Pid) ->
    try_register({register_name, Name, Pid, Meta}, Name, Pid,
             {?DEAD_HOLDER_RETRIES, ?UNSETTLED_RETRIES}).

%% {Pid, Meta} of Name (Meta `undefined` when it was registered without),
%% or undefined. A round trip: metadata is not cached locally.
-spec whereis_meta(term()) -> {pid(), term()} | undefined.
whereis_meta(Name) ->
    case rust_quorum:call({whereis_meta, Name}) of
        {Pid, _Meta} = Found when is_pid(Pid) -> Found;
        undefined -> undefined;
        Other -> erlang:error({unexpected_reply, {whereis_meta, Name}, Other})
    end.

%% Retries: {for a dead local holder, for no quorum}.
try_register(Request, Name, Pid, Retries) ->
    case rust_quorum:call(Request) of
        yes ->
            %% Before returning: the caller's next whereis must see it.
            cache(Name, Pid),
            yes;
        no ->
            taken(Request, Name, Pid, Retries);
        {error, {badarg, Why}} ->
            %% A name or metadata over the serving node's bounds (too deep or
            %% too large: see PROTOCOL.md): refused, as a bad argument.
            erlang:error({badarg, Why});
        Other ->
            erlang:error({unexpected_reply, Request, Other})
    end.

%% The Rust node said no. Trust the table if it names a plausible holder;
%% otherwise ask the Rust node once who holds the name.
taken(Request, Name, Pid, Retries) ->
    case whereis_name(Name) of
        Holder when is_pid(Holder), Holder =/= Pid ->
            case dead_local(Holder) of
                false -> no;
                true -> ask(Request, Name, Pid, Retries)
            end;
        _ ->
            ask(Request, Name, Pid, Retries)
    end.

ask(Request, Name, Pid, Retries) ->
    case rust_quorum:call({whereis_name, Name}) of
        Pid ->
            %% Already ours: a register whose reply was lost when its node
            %% went down, retried by rust_quorum:call/1 on another node.
            cache(Name, Pid),
            yes;
        Holder when is_pid(Holder) ->
            case {dead_local(Holder), Retries} of
                {true, {Dead, Unsettled}} when Dead > 0 ->
                    timer:sleep(?DEAD_HOLDER_SLEEP_MS),
                    try_register(Request, Name, Pid, {Dead - 1, Unsettled});
                _ ->
                    cache(Name, Holder),
                    no
            end;
        undefined when element(2, Retries) > 0 ->
            %% Released between the two calls, or no quorum: try again.
            {Dead, Unsettled} = Retries,
            timer:sleep(?UNSETTLED_SLEEP_MS),
            try_register(Request, Name, Pid, {Dead, Unsettled - 1});
        _ ->
            no
    end.

%% Releases Name whoever holds it, and drops it from the local table.
-spec unregister_name(term()) -> ok.
unregister_name(Name) ->
    _ = rust_quorum:call({unregister_name, Name}),
    try ets:delete(?TABLE, Name)
    catch error:badarg -> true
    end,
    ok.

%% The holder of Name according to the local table: no round trip, so it may
%% lag the Rust nodes by the time a change takes to arrive. undefined also
%% when erl_quorum is not started (there is no table).
-spec whereis_name(term()) -> pid() | undefined.
whereis_name(Name) ->
    try ets:lookup(?TABLE, Name) of
        %% A dead local holder is as good as gone: its release is on its
        %% way, and gen's start (a supervisor restarting it) must not take
        %% it for a live one ({already_started, DeadPid}).
        [{_, Pid}] ->
            case dead_local(Pid) of
                true -> undefined;
                false -> Pid
            end;
        [] -> undefined
    catch
        error:badarg -> undefined
    end.

-spec send(term(), term()) -> pid().
send(Name, Msg) ->
    case whereis_name(Name) of
        undefined ->
            exit({badarg, {Name, Msg}});
        Pid ->
            Pid ! Msg,
            Pid
    end.

%% Also for eq_singleton, which learns a holder from start_name's reply.
cache(Name, Pid) ->
    try ets:insert(?TABLE, {Name, Pid})
    catch error:badarg -> true
    end.

dead_local(Pid) ->
    node(Pid) =:= node() andalso not is_process_alive(Pid).

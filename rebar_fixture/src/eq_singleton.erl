%%% eq_singleton: names with a start spec (supervised names), the part that
%%% paxtor's singletons and eq_sworm share.
%%%
%%% A singleton is an ordinary name of the registry (so it is read from the
%%% local table `rust_registry` like any other) that a serving Rust node also
%%% knows how to start: `{start_name, Name, {beam, ChildSpec}, Opts}` asks
%%% it to, and it has a BEAM host (erl_quorum_host) start the child, by
%%% default the host of this node (see SINGLETONS-SPEC.md and PROTOCOL.md).
%%% Scoped names are `{'$eq_scope', Scope, Name}`.
-module(eq_singleton).

-export([scoped/2, holder/1, ensure/3, start/3, check_spec/1, registered/1]).

-type restart() :: permanent | transient | temporary.
-type start_error() :: {start_failed, term()} | no_host | no_quorum
                     | {badarg, term()}.
-export_type([restart/0, start_error/0]).

-define(TABLE, rust_registry).
%% How long a start waits out `no_quorum` and `{error, no_host}` (a serving
%% node whose shard is changing hands, a host not announced yet at boot):
%% as long as rust_registry waits for an unsettled name, which covers a
%% session lapse at the default lease.
-define(UNSETTLED_MS, 30000).
%% A holder that is a dead local process is a name whose release the Rust
%% node has not processed yet (a temporary singleton used again right after
%% it exited): asked again every 10 ms, for up to about 2 s, as
%% rust_registry does for a dead local holder.
-define(DEAD_HOLDER_SLEEP_MS, 10).
-define(DEAD_HOLDER_RETRIES, 200).

-spec scoped(term(), term()) -> {'$eq_scope', term(), term()}.
scoped(Scope, Name) ->
    {'$eq_scope', Scope, Name}.

%% The holder of Name from the local table (no round trip, never starts).
-spec holder(term()) -> pid() | undefined.
holder(Name) ->
    rust_registry:whereis_name(Name).

%% The pid of the singleton Name, started from ChildSpec with Restart if
%% nobody holds Name: the table first (the fast path of every call through
%% a via tuple), then `start_name`.
%% {error, {conflict, Pid}}: Name is held by Pid, registered plainly or with
%% another spec (the caller decides whether that is good enough).
-spec ensure(term(), term(), restart()) ->
          {ok, pid()} | {error, {conflict, pid()} | start_error()}.
ensure(Name, ChildSpec, Restart) ->
    case holder(Name) of
        Pid when is_pid(Pid) ->
            {ok, Pid};
        undefined ->
            case start(Name, ChildSpec, #{restart => Restart}) of
                {started, Pid} -> {ok, Pid};
                {already_started, Pid} -> {ok, Pid};
                {conflict, Pid} -> {error, {conflict, Pid}};
                {error, _} = Error -> Error
            end
    end.

%% One `start_name` for Name, whatever the table says; Opts as in the
%% protocol (restart, meta, host), host defaulting to this node's host.
%% Waits out no_quorum and no_host for up to 30 s. The holder it reports is
%% put in the local table at once, so the caller's next whereis sees it.
-spec start(term(), term(), map()) ->
          {started, pid()} | {already_started, pid()} | {conflict, pid()}
              | {error, start_error()}.
start(Name, ChildSpec, Opts0) ->
    case check_spec(ChildSpec) of
        ok ->
            Opts = case {maps:is_key(host, Opts0), erlang:whereis(erl_quorum_host)} of
                       {false, Host} when is_pid(Host) -> Opts0#{host => Host};
                       _ -> Opts0
                   end,
            Deadline = erlang:monotonic_time(millisecond) + ?UNSETTLED_MS,
            start_loop({start_name, Name, {beam, ChildSpec}, Opts}, Name, Deadline,
                       ?DEAD_HOLDER_RETRIES);
        {error, _} = Error ->
            Error
    end.

start_loop(Request, Name, Deadline, DeadRetries) ->
    Reply = try rust_quorum:call(Request)
            catch exit:{no_rust_node, _} -> no_quorum
            end,
    case Reply of
        {Held, Pid} when (Held =:= already_started orelse Held =:= conflict),
                         node(Pid) =:= node(), DeadRetries > 0 ->
            case is_process_alive(Pid) of
                true ->
                    rust_registry:cache(Name, Pid),
                    Reply;
                false ->
                    timer:sleep(?DEAD_HOLDER_SLEEP_MS),
                    start_loop(Request, Name, Deadline, DeadRetries - 1)
            end;
        {Held, Pid} when (Held =:= started orelse Held =:= already_started
                          orelse Held =:= conflict), is_pid(Pid) ->
            rust_registry:cache(Name, Pid),
            Reply;
        {error, {start_failed, _}} ->
            Reply;
        {error, {badarg, _}} ->
            Reply;
        Unsettled when Unsettled =:= no_quorum; Unsettled =:= {error, no_host} ->
            case erlang:monotonic_time(millisecond) < Deadline of
                true ->
                    timer:sleep(50 + rand:uniform(151) - 1),
                    start_loop(Request, Name, Deadline, DeadRetries);
                false when Unsettled =:= no_quorum ->
                    {error, no_quorum};
                false ->
                    Unsettled
            end;
        Other ->
            erlang:error({unexpected_reply, Request, Other})
    end.

%% A spec is sent to a Rust node and from there to a host on any BEAM node:
%% funs, references and ports cannot make that trip (or mean nothing on the
%% other side), so they are refused here, before anything is sent.
-spec check_spec(term()) -> ok | {error, {badarg, term()}}.
check_spec(ChildSpec) ->
    case portable(ChildSpec) of
        true -> ok;
        false -> {error, {badarg, ChildSpec}}
    end.

portable(T) when is_function(T); is_reference(T); is_port(T) -> false;
portable(T) when is_tuple(T) -> lists:all(fun portable/1, tuple_to_list(T));
portable(T) when is_map(T) ->
    lists:all(fun({K, V}) -> portable(K) andalso portable(V) end, maps:to_list(T));
portable([H | T]) -> portable(H) andalso portable(T);
portable(_) -> true.

%% [{Name, Pid}] of every name of Scope in the local table (no round trip),
%% each name once; dead local holders (released any moment) left out.
-spec registered(term()) -> [{term(), pid()}].
registered(Scope) ->
    %% Scope compared with =:= in a guard, not put in the pattern: a scope
    %% such as '_' or '$1' would be read as a wildcard there.
    Spec = [{{{'$eq_scope', '$3', '$1'}, '$2'},
             [{'=:=', '$3', {const, Scope}}],
             [{{'$1', '$2'}}]}],
    Found = try ets:select(?TABLE, Spec)
            catch error:badarg -> []
            end,
    [{Name, Pid} || {Name, Pid} <- Found,
                    not (node(Pid) =:= node() andalso not is_process_alive(Pid))].

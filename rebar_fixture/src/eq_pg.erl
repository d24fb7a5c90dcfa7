%%% eq_pg: process groups with the API of OTP's `pg` (OTP 25/27), kept
%%% current across BEAM and Rust nodes by the erl_quorum Rust nodes. Code
%%% moves over by changing the module name: same functions, same return
%%% values, same errors, same monitor messages `{Ref, join, Group, Pids}`
%%% and `{Ref, leave, Group, Pids}`.
%%%
%%% A scope is a process registered under the scope's name (eq_pg_scope)
%%% owning an ETS table of the same name, laid out as pg's
%%% (`{Group, AllPids, LocalPids}`), so reads are local (no round trip).
%%% The default scope `eq_pg` is started by the erl_quorum application.
%%% A node cannot run a native pg scope and an eq_pg scope of one name
%%% (both register the name and create the table).
%%%
%%% Differences from pg, on purpose:
%%% - remote members come from one Rust hub (see eq_pg_scope), so every
%%%   BEAM node served by that hub sees the changes in one order;
%%% - a group whose external form is over 1000 bytes, or a join of more
%%%   than 10000 pids at once, raises {badarg, ...} (the Rust hubs bound
%%%   what they keep).
-module(eq_pg).

-export([start_link/0, start_link/1, start/1,
         join/2, join/3, leave/2, leave/3,
         get_members/1, get_members/2, get_local_members/1, get_local_members/2,
         which_groups/0, which_groups/1, which_local_groups/0, which_local_groups/1,
         monitor_scope/0, monitor_scope/1, monitor/1, monitor/2,
         demonitor/1, demonitor/2]).

-define(DEFAULT_SCOPE, ?MODULE).

%% Reads cost what pg's do: no extra call.
-compile({inline, [lookup/3]}).

-type group() :: any().
-export_type([group/0]).

-spec start_link() -> {ok, pid()} | {error, any()}.
start_link() ->
    start_link(?DEFAULT_SCOPE).

-spec start_link(Scope :: atom()) -> {ok, pid()} | {error, any()}.
start_link(Scope) when is_atom(Scope) ->
    eq_pg_scope:start_link(Scope).

-spec start(Scope :: atom()) -> {ok, pid()} | {error, any()}.
start(Scope) when is_atom(Scope) ->
    eq_pg_scope:start(Scope).

-spec join(Group :: group(), PidOrPids :: pid() | [pid()]) -> ok.
join(Group, PidOrPids) ->
    join(?DEFAULT_SCOPE, Group, PidOrPids).

-spec join(Scope :: atom(), Group :: group(), PidOrPids :: pid() | [pid()]) -> ok.
join(Scope, Group, PidOrPids) when is_pid(PidOrPids); is_list(PidOrPids) ->
    ok = ensure_local(PidOrPids),
    ok = ensure_bounded(Group, PidOrPids),
    gen_server:call(Scope, {join_local, Group, PidOrPids}, infinity).

-spec leave(Group :: group(), PidOrPids :: pid() | [pid()]) -> ok | not_joined.
leave(Group, PidOrPids) ->
    leave(?DEFAULT_SCOPE, Group, PidOrPids).

-spec leave(Scope :: atom(), Group :: group(), PidOrPids :: pid() | [pid()]) -> ok | not_joined.
leave(Scope, Group, PidOrPids) when is_pid(PidOrPids); is_list(PidOrPids) ->
    ok = ensure_local(PidOrPids),
    gen_server:call(Scope, {leave_local, Group, PidOrPids}, infinity).

-spec monitor_scope() -> {reference(), #{group() => [pid()]}}.
monitor_scope() ->
    monitor_scope(?DEFAULT_SCOPE).

-spec monitor_scope(Scope :: atom()) -> {reference(), #{group() => [pid()]}}.
monitor_scope(Scope) ->
    gen_server:call(Scope, monitor, infinity).

-spec monitor(Group :: group()) -> {reference(), [pid()]}.
monitor(Group) ->
    ?MODULE:monitor(?DEFAULT_SCOPE, Group).

-spec monitor(Scope :: atom(), Group :: group()) -> {reference(), [pid()]}.
monitor(Scope, Group) ->
    gen_server:call(Scope, {monitor, Group}, infinity).

-spec demonitor(Ref :: reference()) -> ok | false.
demonitor(Ref) ->
    ?MODULE:demonitor(?DEFAULT_SCOPE, Ref).

-spec demonitor(Scope :: atom(), Ref :: reference()) -> ok | false.
demonitor(Scope, Ref) ->
    gen_server:call(Scope, {demonitor, Ref}, infinity) =:= ok andalso flush(Ref).

-spec get_members(Group :: group()) -> [pid()].
get_members(Group) ->
    get_members(?DEFAULT_SCOPE, Group).

-spec get_members(Scope :: atom(), Group :: group()) -> [pid()].
get_members(Scope, Group) ->
    lookup(Scope, Group, 2).

-spec get_local_members(Group :: group()) -> [pid()].
get_local_members(Group) ->
    get_local_members(?DEFAULT_SCOPE, Group).

-spec get_local_members(Scope :: atom(), Group :: group()) -> [pid()].
get_local_members(Scope, Group) ->
    lookup(Scope, Group, 3).

-spec which_groups() -> [Group :: group()].
which_groups() ->
    which_groups(?DEFAULT_SCOPE).

-spec which_groups(Scope :: atom()) -> [Group :: group()].
which_groups(Scope) when is_atom(Scope) ->
    [G || [G] <- ets:match(Scope, {'$1', '_', '_'})].

-spec which_local_groups() -> [Group :: group()].
which_local_groups() ->
    which_local_groups(?DEFAULT_SCOPE).

-spec which_local_groups(Scope :: atom()) -> [Group :: group()].
which_local_groups(Scope) when is_atom(Scope) ->
    ets:select(Scope, [{{'$1', '_', '$2'}, [{'=/=', '$2', []}], ['$1']}]).

%%%===================================================================
%%% Internals
%%%===================================================================

%% Element Pos of Group's row, [] when there is none (or no such scope).
%% On OTP 26+ a missing group costs no exception (lookup_element/4), which
%% pg pays on every read of an empty group.
-if(?OTP_RELEASE >= 26).
lookup(Scope, Group, Pos) ->
    try
        ets:lookup_element(Scope, Group, Pos, [])
    catch
        error:badarg ->
            []
    end.
-else.
lookup(Scope, Group, Pos) ->
    try
        ets:lookup_element(Scope, Group, Pos)
    catch
        error:badarg ->
            []
    end.
-endif.

ensure_local(Pid) when is_pid(Pid), node(Pid) =:= node() ->
    ok;
ensure_local(Pids) when is_list(Pids) ->
    lists:foreach(
        fun
            (Pid) when is_pid(Pid), node(Pid) =:= node() ->
                ok;
            (Bad) ->
                erlang:error({nolocal, Bad})
        end, Pids);
ensure_local(Bad) ->
    erlang:error({nolocal, Bad}).

%% The Rust hubs refuse groups over 1024 canonical bytes and joins of more
%% than 10000 pids; refused here first, with margin.
ensure_bounded(Group, Pids) ->
    case byte_size(term_to_binary(Group)) > 1000 of
        true -> erlang:error({badarg, {group_too_large, Group}});
        false -> ok
    end,
    case is_list(Pids) andalso length(Pids) > 10000 of
        true -> erlang:error({badarg, too_many_pids});
        false -> ok
    end.

flush(Ref) ->
    receive
        {Ref, Verb, _Group, _Pids} when Verb =:= join; Verb =:= leave ->
            flush(Ref)
    after 0 ->
        ok
    end.

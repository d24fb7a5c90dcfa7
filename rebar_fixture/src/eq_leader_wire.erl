%%% eq_leader_wire: the messages between the members of an eq_leader
%%% election group (PROTOCOL.md, "Leader election"), encoded and decoded
%%% in this one place. The Rust side has the same shapes in
%%% src/services/election/wire.rs.
%%%
%%% Every message is a 2-tuple `{'$eq_leader', Body}` sent with `!` to a
%%% member's pid; Body names the group first, so a member of two groups
%%% (or a stray message) is never taken for another group's.
-module(eq_leader_wire).

-export([encode/1, decode/1]).

-type group() :: term().
-type token() :: non_neg_integer() | undefined.
-type msg() ::
        %% member -> leader: I am here (Role candidate | worker).
        {join, group(), pid(), candidate | worker}
        %% leader -> members: the term's sync (elected/3's Sync), and whom
        %% the leader knows.
      | {sync, group(), pid(), token(), term(), [pid()], [pid()]}
        %% leader -> members: the member lists changed (join or DOWN).
      | {members, group(), pid(), token(), [pid()], [pid()]}
        %% leader -> members: broadcast/2.
      | {from_leader, group(), pid(), token(), term()}
        %% member -> leader: a leader_call forwarded (From as gen_server's).
      | {leader_call, group(), {pid(), term()}, term()}
        %% member -> leader: a leader_cast forwarded.
      | {leader_cast, group(), term()}.
-export_type([msg/0]).

-define(TAG, '$eq_leader').

-spec encode(msg()) -> {'$eq_leader', tuple()}.
encode({join, _G, Pid, Role} = M) when is_pid(Pid), (Role =:= candidate orelse Role =:= worker) -> {?TAG, M};
encode({sync, _G, L, T, _Sync, C, W} = M) when is_pid(L), is_list(C), is_list(W) -> check_token(T), {?TAG, M};
encode({members, _G, L, T, C, W} = M) when is_pid(L), is_list(C), is_list(W) -> check_token(T), {?TAG, M};
encode({from_leader, _G, L, T, _Msg} = M) when is_pid(L) -> check_token(T), {?TAG, M};
encode({leader_call, _G, {P, _Tag}, _Req} = M) when is_pid(P) -> {?TAG, M};
encode({leader_cast, _G, _Msg} = M) -> {?TAG, M};
encode(M) -> erlang:error({badarg, M}).

check_token(undefined) -> ok;
check_token(T) when is_integer(T), T >= 0 -> ok;
check_token(T) -> erlang:error({badarg, {token, T}}).

%% The message, or `error` for anything that is not a well-formed member
%% message (dropped by the caller: a member never crashes on input).
-spec decode(term()) -> {ok, msg()} | error.
decode({?TAG, Body}) ->
    case valid(Body) of
        true -> {ok, Body};
        false -> error
    end;
decode(_) ->
    error.

valid({join, _G, Pid, Role}) -> is_pid(Pid) andalso (Role =:= candidate orelse Role =:= worker);
valid({sync, _G, L, T, _Sync, C, W}) -> is_pid(L) andalso token(T) andalso pids(C) andalso pids(W);
valid({members, _G, L, T, C, W}) -> is_pid(L) andalso token(T) andalso pids(C) andalso pids(W);
valid({from_leader, _G, L, T, _Msg}) -> is_pid(L) andalso token(T);
valid({leader_call, _G, {P, _Tag}, _Req}) -> is_pid(P);
valid({leader_cast, _G, _Msg}) -> true;
valid(_) -> false.

token(undefined) -> true;
token(T) -> is_integer(T) andalso T >= 0.

pids(L) when is_list(L) -> lists:all(fun is_pid/1, L);
pids(_) -> false.

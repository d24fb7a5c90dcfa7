%%% rust_quorum_tombs: the guard's tombstones of released holds.
%%%
%%% In a graceful handoff the taker's eq_owned and eq_released can both reach
%%% the guard before the giver's eq_moved (sent on another connection, after
%%% the taker's `done`). The guard remembers here which {Node, Entry} a node
%%% said released (or lost), so that a late eq_moved naming that node as the
%%% taker does not guard again a hold nobody has (PROTOCOL.md, "Upgrades").
%%%
%%% Bounded: two generations, rotated every ?GEN_MS (on the guard's tick) or
%%% when the new one holds ?MAX, so a tombstone lives ?GEN_MS to 2 * ?GEN_MS
%%% and at most 2 * ?MAX are kept; under a storm of releases the oldest go
%%% first (bounded memory beats the rare late eq_moved).
-module(rust_quorum_tombs).

-export([new/1, bury/3, buried/3, tick/2]).

%% 5 s per generation: the giver resends its state for up to 5 s (GIVE_UP)
%% before its eq_moved, so a late one comes within that.
-define(GEN_MS, 5000).
-define(MAX, 20000).

-record(tombs, {
    new = #{} :: #{{node(), tuple()} => []},
    old = #{} :: #{{node(), tuple()} => []},
    %% Monotonic ms of the last rotation.
    rotated :: integer()
}).

-opaque tombs() :: #tombs{}.
-export_type([tombs/0]).

-spec new(integer()) -> tombs().
new(NowMs) ->
    #tombs{rotated = NowMs}.

%% Node no longer holds Entry ({Owner, Kind, Key}).
-spec bury(node(), tuple(), tombs()) -> tombs().
bury(Node, Entry, #tombs{new = New} = T0) ->
    T = case map_size(New) >= ?MAX of
            true -> rotate(T0, erlang:monotonic_time(millisecond));
            false -> T0
        end,
    T#tombs{new = maps:put({Node, Entry}, [], T#tombs.new)}.

%% Whether Node said it released Entry lately.
-spec buried(node(), tuple(), tombs()) -> boolean().
buried(Node, Entry, #tombs{new = New, old = Old}) ->
    maps:is_key({Node, Entry}, New) orelse maps:is_key({Node, Entry}, Old).

%% On the guard's tick: the oldest generation goes when its time is up.
-spec tick(integer(), tombs()) -> tombs().
tick(NowMs, #tombs{rotated = At} = T) when NowMs - At >= ?GEN_MS ->
    rotate(T, NowMs);
tick(_NowMs, T) ->
    T.

rotate(#tombs{new = New} = T, NowMs) ->
    T#tombs{old = New, new = #{}, rotated = NowMs}.

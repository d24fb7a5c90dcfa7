%%% rust_quorum_route: where rust_quorum:call/1 sends a request first.
%%%
%%% A Rust node grants a lock or a name only in the shards it holds and
%%% redirects the rest (PROTOCOL.md, "Redirects"). This module keeps, per
%%% BEAM node, which Rust node was last seen holding each shard, and puts
%%% that node first for a request whose key's shard it knows
%%% (rust_quorum_shard), so that in steady state no call pays a redirect.
%%%
%%% The map is learned from answers only: `{erl_quorum_redirect, To}` says
%%% To holds the shard; a grant or refusal (not `no_quorum`) says the node
%%% that answered does. A stale entry costs one redirect, which corrects
%%% it; a node that fails a call loses its entries.
%%%
%%% The table: named, public (callers read and write it from their own
%%% process, like rust_registry), owned by the rust_quorum process, at most
%%% 64 rows {Shard, Node}. Without the table (rust_quorum not running)
%%% calls go in the configured order, as before.
-module(rust_quorum_route).

-export([new_table/0, shard/1, order/3, learn/3, learned/4, forget_node/1,
         holders/0]).

-define(TABLE, rust_quorum_shards).

%% Creates the table in the calling process (rust_quorum's init/1).
-spec new_table() -> ok.
new_table() ->
    ?TABLE = ets:new(?TABLE, [named_table, public, set, {read_concurrency, true}]),
    ok.

%% The shard of the key a request is routed by, or `unknown`: not a keyed
%% request, a key whose shard the BEAM cannot compute, or routing turned
%% off (application env `route_by_shard`, default true; false gives the
%% order of before, for comparison).
-spec shard(term()) -> 0..63 | unknown.
shard(Request) ->
    case application:get_env(erl_quorum, route_by_shard, true) of
        false -> unknown;
        _ -> key_shard(Request)
    end.

key_shard({lock, Key, _, _}) -> rust_quorum_shard:shard(lock, Key);
key_shard({lock, Key, _, _, _}) -> rust_quorum_shard:shard(lock, Key);
key_shard({whereis_lock, Key}) -> rust_quorum_shard:shard(lock, Key);
key_shard({register_name, Name, _}) -> rust_quorum_shard:shard(name, Name);
key_shard({register_name, Name, _, _}) -> rust_quorum_shard:shard(name, Name);
key_shard({start_name, Name, _, _}) -> rust_quorum_shard:shard(name, Name);
key_shard({whereis_meta, Name}) -> rust_quorum_shard:shard(name, Name);
key_shard({unregister_name, Name}) -> rust_quorum_shard:shard(name, Name);
key_shard(_) -> unknown.

%% The nodes to try, in order: the shard's holder, when known, then
%% Default (the usual order) without it.
-spec order(0..63 | unknown, [node()], [node()]) -> [node()].
order(unknown, _Nodes, Default) ->
    Default;
order(Shard, _Nodes, Default) ->
    case holder(Shard) of
        undefined -> Default;
        Node -> [Node | lists:delete(Node, Default)]
    end.

holder(Shard) ->
    try ets:lookup(?TABLE, Shard) of
        [{_, Node}] -> Node;
        [] -> undefined
    catch
        error:badarg -> undefined
    end.

%% Node answered Request (whose key is in Shard) with Reply, not a
%% redirect: learns that Node holds Shard when the reply says it served
%% the key.
-spec learned(0..63 | unknown, term(), node(), term()) -> ok.
learned(unknown, _Request, _Node, _Reply) ->
    ok;
learned(Shard, Request, Node, Reply) ->
    case served(Request, Reply) of
        true -> learn(Shard, Node, served);
        false -> ok
    end.

%% Records that Node holds Shard (Why: `redirect` or `served`, for the
%% trace). Writes only when the entry changes: reading is all a call in
%% steady state does.
-spec learn(0..63 | unknown, node(), redirect | served) -> ok.
learn(unknown, _Node, _Why) ->
    ok;
learn(Shard, Node, _Why) when is_integer(Shard), Shard >= 0, Shard < 64, is_atom(Node) ->
    case holder(Shard) of
        Node -> ok;
        _ -> try ets:insert(?TABLE, {Shard, Node}), ok catch error:badarg -> ok end
    end;
learn(_Shard, _Node, _Why) ->
    ok.

%% Whether a reply shows the node holds the request's shard: it granted,
%% refused for a holder, or reported one. Not `no_quorum` or `undefined`
%% (a node that could not take the shard answers so), not an error, and
%% not whereis_lock or unregister_name (any node answers those: it asks
%% the quorum or passes the request on).
served({lock, _, _, _}, Reply) -> lock_served(Reply);
served({lock, _, _, _, _}, Reply) -> lock_served(Reply);
served({register_name, _, _}, Reply) -> Reply =:= yes;
served({register_name, _, _, _}, Reply) -> Reply =:= yes;
served({start_name, _, _, _}, {Tag, Pid}) when is_pid(Pid) ->
    lists:member(Tag, [started, already_started, conflict]);
served({whereis_meta, _}, {Pid, _Meta}) -> is_pid(Pid);
served(_Request, _Reply) -> false.

lock_served(acquired) -> true;
lock_served({acquired, _Token}) -> true;
lock_served({held_by, _Pid}) -> true;
lock_served(_) -> false.

%% Node failed a call: it holds nothing we know of any more.
-spec forget_node(node()) -> ok.
forget_node(Node) ->
    try ets:match_delete(?TABLE, {'_', Node}), ok catch error:badarg -> ok end.

%% The map, for tests and operators: [{Shard, Node}] sorted.
-spec holders() -> [{0..63, node()}].
holders() ->
    try lists:sort(ets:tab2list(?TABLE)) catch error:badarg -> [] end.

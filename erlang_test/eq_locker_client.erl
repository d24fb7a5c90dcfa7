%% The calls wooga/locker's client functions make, with the masters, W and
%% replicas passed in instead of read from the local locker's meta table.
%% Tests run these on real BEAM nodes against Rust masters: the Rust node
%% must answer exactly what a locker master answers.
-module(eq_locker_client).
-export([lock/5, update/5, extend_lease/5, release/5, set_nodes/3, set_w/2,
         wait_for/3, wait_for_release/3]).

-define(TIMEOUT, 5000).

%% locker:lock/4: a promise on every master, then the write once W promised.
lock(Masters, W, Key, Value, LeaseMs) ->
    Tag = make_ref(),
    Votes = ok_votes(Masters, {get_write_lock, Key, not_found, Tag}),
    case Votes >= W of
        true ->
            Acks = ok_votes(Masters, {write, Tag, Key, Value, LeaseMs}),
            {ok, W, Votes, Acks};
        false ->
            abort(Masters, Tag),
            {error, no_quorum}
    end.

%% locker:update/4.
update(Masters, W, Key, Value, NewValue) ->
    Tag = make_ref(),
    Votes = ok_votes(Masters, {get_write_lock, Key, Value, Tag}),
    case Votes >= W of
        true ->
            Acks = ok_votes(Masters, {update, Tag, Key, NewValue}),
            {ok, W, Votes, Acks};
        false ->
            abort(Masters, Tag),
            {error, no_quorum}
    end.

%% locker:extend_lease/4.
extend_lease(Masters, W, Key, Value, LeaseMs) ->
    Tag = make_ref(),
    Votes = ok_votes(Masters, {get_write_lock, Key, Value, Tag}),
    case Votes >= W of
        true ->
            _ = ok_votes(Masters, {extend_lease, Tag, Key, Value, LeaseMs}),
            ok;
        false ->
            abort(Masters, Tag),
            {error, no_quorum}
    end.

%% locker:release/3: phase 2 goes to masters and replicas.
release({Masters, Replicas}, W, Key, Value, _) ->
    Tag = make_ref(),
    Votes = ok_votes(Masters, {get_write_lock, Key, Value, Tag}),
    case Votes >= W of
        true ->
            {Replies, _} = gen_server:multi_call(Masters ++ Replicas, locker,
                                                 {release, Key, Value, Tag}, ?TIMEOUT),
            Acks = length([ok || {N, ok} <- Replies, lists:member(N, Masters)]),
            {ok, W, Votes, Acks};
        false ->
            abort(Masters, Tag),
            {error, no_quorum}
    end.

set_nodes(Cluster, Masters, Replicas) ->
    {_, []} = gen_server:multi_call(Cluster, locker, {set_nodes, Masters, Replicas}, ?TIMEOUT),
    ok.

set_w(Cluster, W) ->
    {_, []} = gen_server:multi_call(Cluster, locker, {set_w, W}, ?TIMEOUT),
    ok.

wait_for(Node, Key, TimeoutMs) ->
    gen_server:call({locker, Node}, {wait_for, Key, TimeoutMs}, TimeoutMs + 1000).

wait_for_release(Node, Key, TimeoutMs) ->
    gen_server:call({locker, Node}, {wait_for_release, Key, TimeoutMs}, TimeoutMs + 1000).

ok_votes(Masters, Request) ->
    {Replies, _BadNodes} = gen_server:multi_call(Masters, locker, Request, ?TIMEOUT),
    length([ok || {_Node, ok} <- Replies]).

abort(Masters, Tag) ->
    gen_server:multi_call(Masters, locker, {release_write_lock, Tag}, ?TIMEOUT).

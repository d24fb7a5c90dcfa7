%%% rust_quorum: the BEAM node's link to the erl_quorum Rust nodes.
%%%
%%% Two halves:
%%%
%%% - call/1, run by the caller's own process: sends one request to the
%%%   `erl_quorum` process of a Rust node (see PROTOCOL.md), failing over
%%%   along the `rust_nodes` list when a node is gone. It never goes through
%%%   the rust_quorum process, so a blocking lock call holds up nobody else.
%%%
%%% - the rust_quorum gen_server (one per BEAM node, registered under that
%%%   name, because the Rust nodes send it messages by name):
%%%   * owns the ETS table `rust_quorum_shards` of rust_quorum_route (which
%%%     Rust node holds which shard; call/1 reads and writes it);
%%%   * owns the ETS table `rust_registry` ({Name, Pid}), the local copy of
%%%     the name registry that rust_registry:whereis_name/1 reads, kept in
%%%     sync by a subscription to one Rust node;
%%%   * is the guard of PROTOCOL.md: it learns which local processes own a
%%%     lock or a name on which serving node (eq_owned / eq_released /
%%%     eq_lost), renews their lease with keepalives, and tells the owners
%%%     they lost it before anyone else can take it over: when the lease
%%%     deadline passes, when the serving node goes down, or on eq_lost.
%%%
%%% All state that matters lives in the Rust nodes; this process holds only
%%% a cache (the table) and the deadlines.
-module(rust_quorum).
-behaviour(gen_server).

%% Client API.
-export([start_link/0, call/1, nodes/0, current_node/0, status/0, valid_until/3]).
%% gen_server callbacks.
-export([init/1, handle_continue/2, handle_call/3, handle_cast/2,
         handle_info/2, terminate/2]).

-include_lib("kernel/include/logger.hrl").

-define(APP, erl_quorum).
-define(SERVER, erl_quorum).
-define(TABLE, rust_registry).
%% Where call/1 remembers the Rust node that answered last. An atom: replacing
%% it does not trigger the global GC that replacing a compound term would.
-define(CURRENT, {?MODULE, current_node}).
-define(TICK_MS, 200).
%% Deepest request sent to a Rust node; it accepts 128, and the call's own
%% wrapping ({'$gen_call', From, Request} in a control message) takes a few.
-define(MAX_DEPTH, 120).
%% Redirects followed for one call (PROTOCOL.md: a node sends the caller to
%% the one holding the key's shard; one hop unless views are changing).
-define(MAX_REDIRECTS, 3).
-define(RESUBSCRIBE_MS, 500).
-define(SUBSCRIBE_TIMEOUT_MS, 5000).
%% PROTOCOL.md: the validity assumed on a node's first eq_owned, until its
%% first keepalive answers.
-define(FIRST_VALID_MS, 3000).

%% What the guard knows about one serving Rust node that has owners here.
-record(serving, {
    %% {Owner, Kind, Key} => [] (a set).
    owners = #{} :: #{{pid(), lock | name, term()} => []},
    %% Monotonic ms; past it the owners' leases may have ended.
    deadline :: integer(),
    %% When the last keepalive went out, monotonic ms.
    last_sent :: integer() | undefined,
    %% The keepalive in flight: {RequestId, SentAt}. At most one per node:
    %% every request ends in a reply or a DOWN, so there is no need for more.
    pending :: {term(), integer()} | undefined
}).

-record(state, {
    %% The registry subscription:
    %%   {waiting, TRef}: no node answered; `resubscribe` fires in 500 ms;
    %%   {subscribing, Node, ReqId, TRef, Rest, Buffer}: request in flight,
    %%     Rest are the nodes to try next in this round, Buffer the change
    %%     lists that arrived from Node before its reply (newest first);
    %%   {subscribed, Node, Mref}: Mref monitors {erl_quorum, Node}.
    sub = {waiting, undefined} :: tuple(),
    %% Whether "no Rust node answers" was logged since the last subscription,
    %% so a long outage logs once, not every 500 ms.
    sub_warned = false :: boolean(),
    serving = #{} :: #{node() => #serving{}},
    %% Nodes we hold a monitor_node on. One monitor per node, kept until its
    %% nodedown, so a nodedown always means that node went down.
    monitored = #{} :: #{node() => []},
    %% Entries nodes said released or lost, for a late eq_moved
    %% (rust_quorum_tombs).
    tombs :: rust_quorum_tombs:tombs()
}).

%%%===================================================================
%%% Client API
%%%===================================================================

start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% Sends Request to `{erl_quorum, Node}` and returns the reply, trying the
%% nodes of `rust_nodes` in order from the one that answered last. A node
%% that is down, or whose erl_quorum process is gone, is skipped, so no call
%% is lost while any node is up; when every node failed: exit
%% `{no_rust_node, Nodes}`. Runs in the calling process.
%%
%% A node that does not answer within `call_timeout_ms` (1.5 s) may be cut
%% off or paused, which the BEAM notices only after net_ticktime (60 s): it
%% is asked for a `keepalive`; if that does not come back in time either,
%% the next node is tried, otherwise (a blocking lock waiting its turn) the
%% request is sent again. Every request is safe to send twice: a lock is
%% reentrant (and the node answers an owner's repeated waits together); a
%% register_name answered `no` after a retry is checked with whereis_name.
%% A call given up drops its late reply (the reply goes to an alias that
%% is gone), which the Rust node relies on: it may drop a node that stays
%% silent after a grant, and the grant must not count then (see
%% src/services/core/silence.rs).
-spec call(term()) -> term().
call(Request) ->
    %% A Rust node treats a term nested deeper than it accepts (128) as a
    %% broken peer and drops the connection, which would cost every owner
    %% on this node its locks (and the next node the same on failover):
    %% refuse such a request here instead.
    case deeper_than(Request, ?MAX_DEPTH) of
        true -> erlang:error({badarg, {too_deep, Request}});
        false -> ok
    end,
    Nodes = ?MODULE:nodes(),
    %% The node known to hold the key's shard first (rust_quorum_route), so
    %% that a call pays no redirect in steady state.
    Shard = rust_quorum_route:shard(Request),
    Order = rust_quorum_route:order(Shard, Nodes, rotate(Nodes, current_node())),
    call(Request, Order, Nodes, [], {Shard, ?MAX_REDIRECTS}).

%% Whether Term nests deeper than Depth, counted as the Rust node counts:
%% the elements of a tuple, list or map are one level down (a long list is
%% not deep).
deeper_than(_Term, Depth) when Depth < 0 -> true;
deeper_than(Term, Depth) when is_tuple(Term) ->
    lists:any(fun(E) -> deeper_than(E, Depth - 1) end, tuple_to_list(Term));
deeper_than([_ | _] = Term, Depth) ->
    deeper_list(Term, Depth - 1);
deeper_than(Term, Depth) when is_map(Term) ->
    lists:any(fun({K, V}) -> deeper_than(K, Depth - 1) orelse deeper_than(V, Depth - 1) end,
              maps:to_list(Term));
deeper_than(_Term, _Depth) -> false.

deeper_list([H | T], Depth) -> deeper_than(H, Depth) orelse deeper_list(T, Depth);
deeper_list([], _Depth) -> false;
deeper_list(Tail, Depth) -> deeper_than(Tail, Depth).

%% The configured Rust nodes (application env `rust_nodes`), read on every
%% call so that application:set_env/3 takes effect at once.
-spec nodes() -> [node()].
nodes() ->
    case application:get_env(?APP, rust_nodes, []) of
        Nodes when is_list(Nodes) -> Nodes;
        _ -> []
    end.

%% The node call/1 tries first: the last one that answered, or the first
%% configured one; `undefined` when none is configured.
-spec current_node() -> node() | undefined.
current_node() ->
    Nodes = ?MODULE:nodes(),
    Cached = persistent_term:get(?CURRENT, undefined),
    case lists:member(Cached, Nodes) of
        true -> Cached;
        false when Nodes =/= [] -> hd(Nodes);
        false -> undefined
    end.

%% What the guard knows, for tests and operators:
%% #{subscribed => Node | undefined, owners => #{Node => [{Owner, Kind, Key}]}}.
-spec status() -> map().
status() ->
    gen_server:call(?MODULE, status).

%% Until when (monotonic ms) the guard holds Owner's Kind Key valid: the
%% deadline of the serving node that granted it, past which the owner is
%% told it lost it; `undefined` when the guard knows no such hold or its
%% deadline passed. eq_leader checks it before each leader action.
-spec valid_until(pid(), lock | name, term()) -> integer() | undefined.
valid_until(Owner, Kind, Key) ->
    gen_server:call(?MODULE, {valid_until, Owner, Kind, Key}).

%% Hops: {Shard, RedirectsLeft}; Shard is the key's (or `unknown`), the map
%% learns who holds it from the answers.
call(_Request, [], Nodes, _Failed, _Hops) ->
    %% Not logged: the caller gets the reason and decides (paxtor retries
    %% many times a second while no node is up).
    exit({no_rust_node, Nodes});
call(Request, [Node | Rest], Nodes, Failed, {Shard, Redirects} = Hops) ->
    T0 = erlang:monotonic_time(millisecond),
    try gen_server:call({?SERVER, Node}, Request, call_timeout_ms()) of
        %% Another Rust node grants this key (it holds the key's shard):
        %% ask it, and fall back on the nodes left if it is gone.
        {erl_quorum_redirect, To} = Redirect ->
            hop(Node, {redirect, To}, T0),
            case is_atom(To) andalso Redirects > 0
                andalso not lists:keymember(To, 1, Failed) of
                true ->
                    rust_quorum_route:learn(Shard, To, redirect),
                    call(Request, [To, Node | Rest], Nodes, Failed, {Shard, Redirects - 1});
                false ->
                    unsettled(Request, Redirect)
            end;
        Reply ->
            hop(Node, outcome(Reply), T0),
            rust_quorum_route:learned(Shard, Request, Node, Reply),
            %% A node answering after a redirect, or chosen for the key's
            %% shard, holds that shard, not necessarily the others': not
            %% worth calling first for keys whose shard is unknown.
            Redirects =:= ?MAX_REDIRECTS andalso Shard =:= unknown andalso remember(Node),
            case [F || {_, _} = F <- Failed] of
                [] -> ok;
                Gone -> ?LOG_WARNING("erl_quorum: Rust node(s) ~p unavailable, "
                                     "now calling ~p", [lists:reverse(Gone), Node])
            end,
            retried(Request, Node, Failed, Reply)
    catch
        exit:{timeout, {gen_server, call, _}} ->
            hop(Node, timeout, T0),
            case responsive(Node) of
                %% (`retried`: a marker, not a failed node.)
                true -> call(Request, [Node | Rest], Nodes, [retried | Failed -- [retried]], Hops);
                false ->
                    rust_quorum_route:forget_node(Node),
                    call(Request, Rest, Nodes, [{Node, timeout} | Failed], Hops)
            end;
        exit:{Reason, {gen_server, call, _}} = Exit:Stack ->
            hop(Node, {exit, outcome(Reason)}, T0),
            case gone(Reason) of
                true ->
                    rust_quorum_route:forget_node(Node),
                    call(Request, Rest, Nodes, [{Node, Reason} | Failed], Hops);
                false -> erlang:raise(exit, Exit, Stack)
            end
    end.

%% An opt-in trace of the path calls take, to attribute a slow one (the
%% rolling restart test): a process that did put(rust_quorum_hops, [])
%% finds there [{Node, Outcome, Ms}] of its calls since, newest first, at
%% most ?MAX_HOPS of them. Everyone else pays one get/1 per hop.
-define(MAX_HOPS, 16).
hop(Node, Outcome, T0) ->
    case get(rust_quorum_hops) of
        Hops when is_list(Hops), length(Hops) < ?MAX_HOPS ->
            Ms = erlang:monotonic_time(millisecond) - T0,
            put(rust_quorum_hops, [{Node, Outcome, Ms} | Hops]),
            ok;
        _ ->
            ok
    end.

%% A reply or exit reason cut to its tag: the trace stays small.
outcome(Atom) when is_atom(Atom) -> Atom;
outcome(Tuple) when is_tuple(Tuple), tuple_size(Tuple) > 0, is_atom(element(1, Tuple)) ->
    element(1, Tuple);
outcome(Pid) when is_pid(Pid) -> pid;
outcome(_) -> other.

%% Whether Node answers a keepalive within the call timeout: it is there,
%% and a request it did not answer is waiting its turn there.
responsive(Node) ->
    try gen_server:call({?SERVER, Node}, keepalive, call_timeout_ms()) of
        {ok, _} -> true;
        _ -> false
    catch
        exit:_ -> false
    end.

%% A register_name sent more than once may have been granted by an earlier
%% try whose reply was given up: then the name is ours, and `no` means yes.
retried({register_name, Name, Pid}, Node, [_ | _], no) -> ours(Node, Name, Pid);
retried({register_name, Name, Pid, _}, Node, [_ | _], no) -> ours(Node, Name, Pid);
retried(_Request, _Node, _Failed, Reply) -> Reply.

ours(Node, Name, Pid) ->
    try gen_server:call({?SERVER, Node}, {whereis_name, Name}, call_timeout_ms()) of
        Pid -> yes;
        _ -> no
    catch
        exit:_ -> no
    end.

%% Redirected too often, or to a node that just failed: the Rust nodes'
%% views of the key's shard are changing (a shard changes hands only when
%% its node's session lapses, so until then nobody can grant the key). To
%% the caller that is a quorum not reached yet: PROTOCOL.md.
unsettled({lock, _, _, _}, _Redirect) -> no_quorum;
unsettled({lock, _, _, _, _}, _Redirect) -> no_quorum;
unsettled({register_name, _, _}, _Redirect) -> no;
unsettled({register_name, _, _, _}, _Redirect) -> no;
unsettled({start_name, _, _, _}, _Redirect) -> no_quorum;
unsettled({whereis_lock, _}, _Redirect) -> undefined;
unsettled({whereis_meta, _}, _Redirect) -> undefined;
unsettled(Request, Redirect) -> erlang:error({unexpected_reply, Request, Redirect}).

%% Exit reasons of gen_server:call meaning the server is not there (or died
%% while serving us), as opposed to a bug worth crashing the caller for.
gone(noproc) -> true;
gone(noconnection) -> true;
gone({nodedown, _}) -> true;
gone(normal) -> true;
gone(shutdown) -> true;
gone({shutdown, _}) -> true;
gone(killed) -> true;
gone(_) -> false.

remember(Node) ->
    case persistent_term:get(?CURRENT, undefined) of
        Node -> ok;
        _ -> persistent_term:put(?CURRENT, Node)
    end.

%% Nodes in order starting at Start (all of them, wrapping around).
rotate(Nodes, Start) ->
    case lists:splitwith(fun(N) -> N =/= Start end, Nodes) of
        {Before, [Start | After]} -> [Start | After] ++ Before;
        {_, []} -> Nodes
    end.

%%%===================================================================
%%% gen_server callbacks
%%%===================================================================

init([]) ->
    %% Public: rust_registry:register_name/2 inserts from the caller's process
    %% so that its own whereis right after sees the name.
    ?TABLE = ets:new(?TABLE, [named_table, public, set, {read_concurrency, true}]),
    ok = rust_quorum_route:new_table(),
    erlang:send_after(?TICK_MS, self(), tick),
    %% Subscribing may start a connection: not in init, which blocks the
    %% supervisor.
    {ok, #state{tombs = rust_quorum_tombs:new(now_ms())}, {continue, subscribe}}.

handle_continue(subscribe, State) ->
    {noreply, start_round(State)}.

handle_call(status, _From, State) ->
    Subscribed = case State#state.sub of
                     {subscribed, Node, _} -> Node;
                     _ -> undefined
                 end,
    Owners = maps:map(fun(_, #serving{owners = O}) -> maps:keys(O) end,
                      State#state.serving),
    {reply, #{subscribed => Subscribed, owners => Owners}, State};
handle_call({valid_until, Owner, Kind, Key}, _From, #state{serving = Serving} = State) ->
    Now = now_ms(),
    Found = [D || #serving{owners = O, deadline = D} <- maps:values(Serving),
                  maps:is_key({Owner, Kind, Key}, O), D > Now],
    {reply, case Found of [D | _] -> D; [] -> undefined end, State};
handle_call(Request, _From, State) ->
    {reply, {error, {unknown_request, Request}}, State}.

handle_cast(_Msg, State) ->
    {noreply, State}.

%% The guard's messages from serving nodes (PROTOCOL.md).
handle_info({eq_owned, Node, Owner, Kind, Key}, State) when is_atom(Node) ->
    {noreply, owned(Node, {Owner, Kind, Key}, State)};
handle_info({eq_released, Node, Owner, Kind, Key}, State) when is_atom(Node) ->
    Entry = {Owner, Kind, Key},
    {noreply, bury(Node, Entry, released(Node, Entry, State))};
%% The hold went on to serving node To (graceful handoff): guarded under To
%% from now on (To's own eq_owned, on another connection, may come later),
%% forgotten for Node, nobody told, the name kept in the table (eq_released
%% would delete it). Unless To already released it: To's eq_owned and
%% eq_released can both overtake this message (it is sent by Node only
%% after To's `done`), and re-adding the entry would make the guard keep a
%% hold nobody has and tell its owner lost when To goes.
handle_info({eq_moved, Node, Owner, Kind, Key, To}, State)
  when is_atom(Node), is_atom(To) ->
    Entry = {Owner, Kind, Key},
    State1 = case rust_quorum_tombs:buried(To, Entry, State#state.tombs) of
                 true -> State;
                 false -> owned(To, Entry, State)
             end,
    {noreply, forget(Node, Entry, State1)};
handle_info({eq_lost, Node, Owner, Kind, Key}, State) when is_atom(Node) ->
    ?LOG_WARNING("erl_quorum: Rust node ~p could not renew ~p ~0p of ~p; "
                 "telling the owner", [Node, Kind, Key, Owner]),
    tell(Owner, Kind, Key),
    Entry = {Owner, Kind, Key},
    {noreply, bury(Node, Entry, forget(Node, Entry, State))};
handle_info(tick, State) ->
    erlang:send_after(?TICK_MS, self(), tick),
    Tombs = rust_quorum_tombs:tick(now_ms(), State#state.tombs),
    {noreply, check_deadlines(State#state{tombs = Tombs})};
handle_info({nodedown, Node}, State) ->
    {noreply, nodedown(Node, State)};
%% Registry changes: applied only from the node we subscribed to, in order.
handle_info({rust_registry, Node, Changes}, State) ->
    {noreply, registry_changes(Node, Changes, State)};
handle_info(resubscribe, #state{sub = {waiting, _}} = State) ->
    {noreply, start_round(State)};
handle_info({subscribe_timeout, ReqId},
            #state{sub = {subscribing, Node, ReqId, _, _, _}} = State) ->
    %% receive_response/2 with 0 abandons the request: a late reply is dropped
    %% (or taken, if it arrived just now).
    case gen_server:receive_response(ReqId, 0) of
        timeout ->
            ?LOG_WARNING("erl_quorum: Rust node ~p did not answer subscribe "
                         "within ~p ms", [Node, ?SUBSCRIBE_TIMEOUT_MS]),
            {noreply, subscribe_failed(State)};
        Response ->
            {noreply, subscribe_response(Response, State)}
    end;
handle_info({'DOWN', Mref, process, _, Reason},
            #state{sub = {subscribed, Node, Mref}} = State) ->
    %% The subscribed erl_quorum process is gone, and with it our
    %% subscription: another node must feed the table.
    ?LOG_WARNING("erl_quorum: registry subscription on ~p lost (~p)",
                 [Node, Reason]),
    {noreply, try_subscribe(next_nodes(Node), State)};
handle_info(Msg, State) ->
    {noreply, response(Msg, State)}.

terminate(_Reason, _State) ->
    ok.

%%%===================================================================
%%% The guard
%%%===================================================================

owned(Node, Entry, #state{serving = Serving0} = State0) ->
    Now = now_ms(),
    %% A deadline that passed between two ticks is acted on first: a new
    %% owner must not extend the time of owners that are due to be told.
    State1 = case maps:find(Node, Serving0) of
                 {ok, #serving{deadline = Passed, owners = Os} = Due}
                   when Passed =< Now, map_size(Os) > 0 ->
                     lose_node(Node, Due, "its lease deadline passed", State0);
                 _ ->
                     State0
             end,
    #state{serving = Serving} = State = watch_node(Node, State1),
    First = Now + ?FIRST_VALID_MS - margin_ms(),
    Srv0 = case maps:find(Node, Serving) of
               %% An idle record (no owners for a moment) keeps the deadline
               %% of its last keepalive while that is ahead: it covers the
               %% node's session, so every hold in it, this new one too.
               {ok, #serving{deadline = D} = Found} when D > Now -> Found;
               {ok, Found} -> Found#serving{deadline = First};
               error -> #serving{deadline = First}
           end,
    Srv = Srv0#serving{owners = maps:put(Entry, [], Srv0#serving.owners)},
    %% A node just gaining owners gets its first keepalive now, to replace the
    %% assumed ValidMs0 with a real one early.
    State#state{serving = maps:put(Node, maybe_keepalive(Node, Srv, Now), Serving)}.

released(Node, {Owner, Kind, Key} = Entry, State) ->
    case Kind of
        %% Matches the pid too: a newer holder of the name must stay.
        name -> ets:delete_object(?TABLE, {Key, Owner});
        _ -> ok
    end,
    forget(Node, Entry, State).

%% Drops one entry. A node left without owners keeps its record, idle, for
%% a while (see check_deadlines/1): a process that locks again and again
%% would otherwise cost a keepalive call per lock.
forget(Node, Entry, #state{serving = Serving} = State) ->
    case maps:find(Node, Serving) of
        {ok, #serving{owners = Owners0} = Srv} ->
            Owners = maps:remove(Entry, Owners0),
            State#state{serving = maps:put(Node, Srv#serving{owners = Owners}, Serving)};
        error ->
            State
    end.

%% Node no longer holds Entry: a late eq_moved to Node must not revive it.
bury(Node, Entry, #state{tombs = Tombs} = State) ->
    State#state{tombs = rust_quorum_tombs:bury(Node, Entry, Tombs)}.

%% Every tick: tells the owners of nodes whose deadline passed, and sends the
%% keepalives that are due.
check_deadlines(#state{serving = Serving} = State) ->
    Now = now_ms(),
    Idle = 2 * keepalive_ms(),
    maps:fold(
      fun(Node, #serving{owners = Owners, last_sent = Last} = Srv,
          #state{serving = S} = Acc) when map_size(Owners) =:= 0 ->
              %% Nobody to tell and nothing to keep alive; forgotten when
              %% idle for long.
              case Last =:= undefined orelse Now - Last > Idle of
                  true ->
                      abandon(Srv),
                      Acc#state{serving = maps:remove(Node, S)};
                  false ->
                      Acc
              end;
         (Node, #serving{deadline = Deadline} = Srv, Acc) when Now >= Deadline ->
              lose_node(Node, Srv, "its lease deadline passed", Acc);
         (Node, Srv, #state{serving = S} = Acc) ->
              Acc#state{serving = maps:put(Node, maybe_keepalive(Node, Srv, Now), S)}
      end, State, Serving).

maybe_keepalive(Node, #serving{pending = undefined, last_sent = Last} = Srv, Now) ->
    case Last =:= undefined orelse Now - Last >= keepalive_ms() of
        true ->
            %% Never blocks: the reply (or a DOWN) comes back as a message.
            ReqId = gen_server:send_request({?SERVER, Node}, keepalive),
            Srv#serving{pending = {ReqId, Now}, last_sent = Now};
        false ->
            Srv
    end;
maybe_keepalive(_Node, Srv, _Now) ->
    Srv.

keepalive_response(_Node, {reply, {ok, ValidMs}}, SentAt, Srv) when is_integer(ValidMs) ->
    %% The lease holds for ValidMs from when the node got the keepalive, which
    %% was after SentAt: counting from SentAt errs on the safe side.
    Deadline = max(Srv#serving.deadline, SentAt + ValidMs - margin_ms()),
    Srv#serving{pending = undefined, deadline = Deadline};
keepalive_response(Node, {reply, Other}, _SentAt, Srv) ->
    ?LOG_WARNING("erl_quorum: Rust node ~p answered keepalive with ~0p",
                 [Node, Other]),
    Srv#serving{pending = undefined};
keepalive_response(Node, {error, {Reason, _}}, _SentAt, Srv) ->
    %% No new deadline: if the node stays unreachable, the current one passes
    %% and the owners are told. A nodedown, if any, comes separately.
    ?LOG_WARNING("erl_quorum: keepalive to Rust node ~p failed: ~p",
                 [Node, Reason]),
    Srv#serving{pending = undefined}.

%% Tells every owner of Node, then forgets the node.
lose_node(Node, #serving{owners = Owners} = Srv, _Why, #state{serving = Serving} = State)
  when map_size(Owners) =:= 0 ->
    abandon(Srv),
    State#state{serving = maps:remove(Node, Serving)};
lose_node(Node, #serving{owners = Owners} = Srv, Why, #state{serving = Serving} = State) ->
    Entries = maps:keys(Owners),
    ?LOG_WARNING("erl_quorum: lost Rust node ~p (~s); telling ~p owner(s): ~0p",
                 [Node, Why, length(Entries), Entries]),
    [tell(Owner, Kind, Key) || {Owner, Kind, Key} <- Entries],
    abandon(Srv),
    State#state{serving = maps:remove(Node, Serving)}.

%% Tells one owner it lost Key, the way `on_lost` says. A name also leaves
%% the local table at once: its holder is no longer to be reached by it; and
%% its keeper, if any, makes sure it stops (erl_quorum_keeper).
tell(Owner, Kind, Key) ->
    Reason = case Kind of
                 name -> ets:delete_object(?TABLE, {Key, Owner}),
                         erl_quorum_keeper:name_lost(Owner, Key),
                         {name_lost, Key};
                 _ -> {lock_lost, Key}
             end,
    case on_lost() of
        message when is_pid(Owner) -> Owner ! Reason;
        exit when is_pid(Owner) -> exit(Owner, Reason);
        _ -> ok
    end,
    ok.

%% Forgets the keepalive in flight, so its late reply is dropped.
abandon(#serving{pending = undefined}) -> ok;
abandon(#serving{pending = {ReqId, _}}) -> _ = gen_server:receive_response(ReqId, 0), ok.

nodedown(Node, #state{monitored = Monitored, serving = Serving} = State0) ->
    State1 = State0#state{monitored = maps:remove(Node, Monitored)},
    State2 = case maps:find(Node, Serving) of
                 {ok, Srv} -> lose_node(Node, Srv, "nodedown", State1);
                 error -> State1
             end,
    case State2#state.sub of
        {subscribed, Node, Mref} ->
            erlang:demonitor(Mref, [flush]),
            ?LOG_WARNING("erl_quorum: Rust node ~p down; resubscribing the "
                         "registry elsewhere", [Node]),
            try_subscribe(next_nodes(Node), State2);
        _ ->
            %% A request in flight to Node ends in its own DOWN.
            State2
    end.

watch_node(Node, #state{monitored = Monitored} = State) ->
    case maps:is_key(Node, Monitored) of
        true ->
            State;
        false ->
            try erlang:monitor_node(Node, true)
            catch error:notalive -> self() ! {nodedown, Node}
            end,
            State#state{monitored = maps:put(Node, [], Monitored)}
    end.

%% A message that is none of the above: maybe the answer to the subscribe
%% request or to a keepalive. Anything else (late replies of abandoned
%% requests, stray monitors) is dropped.
response(Msg, #state{sub = {subscribing, _, ReqId, TRef, _, _}} = State) ->
    case gen_server:check_response(Msg, ReqId) of
        no_reply ->
            keepalive_msg(Msg, State);
        Response ->
            _ = erlang:cancel_timer(TRef),
            subscribe_response(Response, State)
    end;
response(Msg, State) ->
    keepalive_msg(Msg, State).

keepalive_msg(Msg, #state{serving = Serving} = State) ->
    keepalive_msg(Msg, maps:to_list(Serving), State).

keepalive_msg(_Msg, [], State) ->
    State;
keepalive_msg(Msg, [{Node, #serving{pending = {ReqId, SentAt}} = Srv} | Rest], State) ->
    case gen_server:check_response(Msg, ReqId) of
        no_reply ->
            keepalive_msg(Msg, Rest, State);
        Response ->
            Serving = State#state.serving,
            State#state{serving = maps:put(Node, keepalive_response(Node, Response, SentAt, Srv), Serving)}
    end;
keepalive_msg(Msg, [_ | Rest], State) ->
    keepalive_msg(Msg, Rest, State).

%%%===================================================================
%%% The registry subscription
%%%===================================================================

%% A round tries every configured node once, from the current one.
start_round(State) ->
    Nodes = ?MODULE:nodes(),
    try_subscribe(rotate(Nodes, current_node()), State).

%% The nodes after Node in the configured order, Node itself excluded (it
%% just failed; the next round tries it again).
next_nodes(Node) ->
    case rotate(?MODULE:nodes(), Node) of
        [Node | Rest] -> Rest;
        All -> All
    end.

try_subscribe([], #state{sub_warned = Warned} = State) ->
    case Warned of
        true -> ok;
        false -> ?LOG_WARNING("erl_quorum: no Rust node of ~p answers; "
                              "retrying every ~p ms",
                              [?MODULE:nodes(), ?RESUBSCRIBE_MS])
    end,
    TRef = erlang:send_after(?RESUBSCRIBE_MS, self(), resubscribe),
    State#state{sub = {waiting, TRef}, sub_warned = true};
try_subscribe([Node | Rest], State0) ->
    State = watch_node(Node, State0),
    %% Asynchronous, with our own timeout: the guard keeps serving eq_* and
    %% ticks while a node is slow to answer.
    ReqId = gen_server:send_request({?SERVER, Node}, {subscribe, self()}),
    TRef = erlang:send_after(?SUBSCRIBE_TIMEOUT_MS, self(), {subscribe_timeout, ReqId}),
    State#state{sub = {subscribing, Node, ReqId, TRef, Rest, []}}.

subscribe_failed(#state{sub = {subscribing, _, _, _, Rest, _}} = State) ->
    try_subscribe(Rest, State).

subscribe_response({reply, {ok, Pairs}},
                   #state{sub = {subscribing, Node, _, _, _, Buffer}} = State)
  when is_list(Pairs) ->
    replace_table(Pairs, State),
    %% Changes sent after the snapshot that overtook the reply.
    lists:foreach(fun apply_changes/1, lists:reverse(Buffer)),
    Mref = erlang:monitor(process, {?SERVER, Node}),
    %% Callers still pointed at a node that is gone would each pay a failed
    %% call (maybe a connection attempt) before failing over: point them here.
    case lists:member(current_node(), erlang:nodes(connected)) of
        true -> ok;
        false -> remember(Node)
    end,
    ?LOG_INFO("erl_quorum: registry subscribed on ~p (~p names)",
              [Node, length(Pairs)]),
    State#state{sub = {subscribed, Node, Mref}, sub_warned = false};
subscribe_response({reply, Other}, #state{sub = {subscribing, Node, _, _, _, _}} = State) ->
    ?LOG_WARNING("erl_quorum: Rust node ~p answered subscribe with ~0p",
                 [Node, Other]),
    subscribe_failed(State);
subscribe_response({error, {Reason, _}}, #state{sub = {subscribing, Node, _, _, _, _}} = State) ->
    ?LOG_DEBUG("erl_quorum: subscribe to ~p failed: ~p", [Node, Reason]),
    subscribe_failed(State).

registry_changes(Node, Changes, #state{sub = {subscribed, Node, _}} = State) ->
    apply_changes(Changes),
    State;
registry_changes(Node, Changes,
                 #state{sub = {subscribing, Node, ReqId, TRef, Rest, Buffer}} = State) ->
    State#state{sub = {subscribing, Node, ReqId, TRef, Rest, [Changes | Buffer]}};
registry_changes(_Node, _Changes, State) ->
    %% From a node we no longer (or not yet) follow, e.g. a subscription whose
    %% reply came after we had given up on it. The protocol has no
    %% unsubscribe; the node stops when this process exits.
    State.

apply_changes(Changes) when is_list(Changes) ->
    lists:foreach(fun({Name, undefined}) -> ets:delete(?TABLE, Name);
                     ({_Name, Pid} = Pair) when is_pid(Pid) -> ets:insert(?TABLE, Pair);
                     (_) -> ok
                  end, Changes);
apply_changes(_) ->
    ok.

%% Makes the table equal to the snapshot, without emptying it first (a
%% whereis in between must not miss names that stay). Names owned by local
%% processes that the snapshot lacks stay too: their owner may have
%% registered after the snapshot was taken, and their change is on its way.
replace_table(Pairs, #state{serving = Serving}) ->
    New = maps:from_list([P || {_, Pid} = P <- Pairs, is_pid(Pid)]),
    LocalNames = maps:from_list(
                   [{{Name, Owner}, []} || #serving{owners = Owners} <- maps:values(Serving),
                                           {Owner, name, Name} <- maps:keys(Owners)]),
    Stale = ets:foldl(
              fun({Name, Pid}, Acc) ->
                      case maps:is_key(Name, New) orelse maps:is_key({Name, Pid}, LocalNames) of
                          true -> Acc;
                          false -> [Name | Acc]
                      end
              end, [], ?TABLE),
    lists:foreach(fun(Name) -> ets:delete(?TABLE, Name) end, Stale),
    ets:insert(?TABLE, maps:to_list(New)).

%%%===================================================================
%%% Configuration
%%%===================================================================

now_ms() ->
    erlang:monotonic_time(millisecond).

keepalive_ms() ->
    int_env(keepalive_ms, 1000).

margin_ms() ->
    int_env(margin_ms, 2000).

%% Below the 2 s a Rust node lets a node with holds stay silent (its
%% `SILENCE`): a grant it makes to a caller that went silent comes after
%% the caller gave the call up.
call_timeout_ms() ->
    case int_env(call_timeout_ms, 1500) of
        0 -> 1500;
        N -> N
    end.

on_lost() ->
    case application:get_env(?APP, on_lost, exit) of
        message -> message;
        _ -> exit
    end.

int_env(Key, Default) ->
    case application:get_env(?APP, Key, Default) of
        N when is_integer(N), N >= 0 -> N;
        _ -> Default
    end.

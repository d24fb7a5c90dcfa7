%%% eq_pg_scope: the server of one eq_pg scope (see eq_pg), registered under
%%% the scope's name and owning the ETS table of that name.
%%%
%%% - For local members it is what pg's scope process is: it monitors them
%%%   and keeps the table. It is also their authority towards the Rust hubs
%%%   (`eq_groups` on every node of `rust_quorum:nodes()`): a `sync` of all
%%%   local members, then numbered join / leave deltas (PROTOCOL.md,
%%%   "Process groups"). A hub that goes is tried again every 500 ms and
%%%   gets a new sync.
%%% - Remote members (other BEAM nodes', Rust processes) come from one hub,
%%%   which it subscribes to (the node rust_quorum calls first): a snapshot,
%%%   then numbered updates. A gap resubscribes; the hub's loss subscribes
%%%   to another hub, and the new snapshot's difference is applied (and
%%%   notified). Members of this node in the hub's messages are skipped:
%%%   this process knows them first.
-module(eq_pg_scope).
-behaviour(gen_server).

-export([start_link/1, start/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-include_lib("kernel/include/logger.hrl").

-define(HUB, eq_groups).
-define(RETRY_MS, 500).
-define(REFUSED_RETRY_MS, 5000).

-record(state, {
    scope :: atom(),
    local = #{} :: #{pid() => {reference(), [eq_pg:group()]}},
    %% Members of other nodes, as the subscribed hub reported them.
    remote = #{} :: #{eq_pg:group() => [pid()]},
    scope_monitors = #{} :: #{reference() => pid()},
    group_monitors = #{} :: #{reference() => {pid(), eq_pg:group()}},
    monitored_groups = #{} :: #{eq_pg:group() => [{pid(), reference()}]},
    %% The number of the last delta pushed to the hubs.
    seq = 0 :: non_neg_integer(),
    %% Hubs pushed to: Node => monitor of {eq_groups, Node}.
    hubs = #{} :: #{node() => reference()},
    %% The subscription: none | {subscribing, Node} | {subscribed, Node, HubPid, Seq}.
    sub = none :: none | {subscribing, node()} | {subscribed, node(), pid(), non_neg_integer()},
    %% The linked process that sends our syncs and deltas to the hubs, in
    %% the order given: a join or leave is answered without waiting for
    %% the remote sends (one per hub).
    pusher :: pid() | undefined
}).

start_link(Scope) when is_atom(Scope) ->
    gen_server:start_link({local, Scope}, ?MODULE, [Scope], []).

start(Scope) when is_atom(Scope) ->
    gen_server:start({local, Scope}, ?MODULE, [Scope], []).

init([Scope]) ->
    Scope = ets:new(Scope, [set, protected, named_table, {read_concurrency, true}]),
    Pusher = spawn_link(fun pusher/0),
    self() ! connect,
    {ok, #state{scope = Scope, pusher = Pusher}}.

%%%===================================================================
%%% Calls: as pg's
%%%===================================================================

%% The caller is answered once the table holds the change, before the hubs
%% are told: the order of changes is this process's either way.
handle_call({join_local, Group, PidOrPids}, From, #state{local = Local} = State) ->
    Pids = as_list(PidOrPids),
    NewLocal = join_local(Pids, Group, Local),
    join_update_ets(State, Group, Pids, true),
    gen_server:reply(From, ok),
    {noreply, push(join, Group, Pids, State#state{local = NewLocal})};

handle_call({leave_local, Group, PidOrPids}, From, #state{local = Local} = State) ->
    Pids = as_list(PidOrPids),
    case leave_local(Pids, Group, Local) of
        Local ->
            {reply, not_joined, State};
        NewLocal ->
            %% As pg: every pid named leaves once (those joined), and the
            %% monitors are told the pids named.
            Joined = [P || P <- Pids, joined(P, Group, Local)],
            leave_update_ets(State, Group, Pids, true),
            gen_server:reply(From, ok),
            {noreply, push(leave, Group, Joined, State#state{local = NewLocal})}
    end;

handle_call(monitor, {Pid, _Tag}, #state{scope = Scope, scope_monitors = ScopeMon} = State) ->
    Groups = maps:from_list([{G, P} || [G, P] <- ets:match(Scope, {'$1', '$2', '_'})]),
    MRef = erlang:monitor(process, Pid),
    {reply, {MRef, Groups}, State#state{scope_monitors = ScopeMon#{MRef => Pid}}};

handle_call({monitor, Group}, {Pid, _Tag}, #state{scope = Scope, group_monitors = GM,
                                                  monitored_groups = MG} = State) ->
    Members = eq_pg:get_members(Scope, Group),
    MRef = erlang:monitor(process, Pid),
    NewMG = maps:update_with(Group, fun(Ex) -> [{Pid, MRef} | Ex] end, [{Pid, MRef}], MG),
    {reply, {MRef, Members}, State#state{group_monitors = GM#{MRef => {Pid, Group}},
                                         monitored_groups = NewMG}};

handle_call({demonitor, Ref}, _From, #state{scope_monitors = ScopeMon, group_monitors = GM,
                                            monitored_groups = MG} = State) ->
    case maps:take(Ref, ScopeMon) of
        {_, NewMons} ->
            erlang:demonitor(Ref),
            {reply, ok, State#state{scope_monitors = NewMons}};
        error ->
            case maps:take(Ref, GM) of
                {{Pid, Group}, NewGM} ->
                    erlang:demonitor(Ref),
                    {reply, ok, State#state{group_monitors = NewGM,
                                            monitored_groups = demonitor_group({Pid, Ref}, Group, MG)}};
                error ->
                    {reply, false, State}
            end
    end;

handle_call(status, _From, #state{hubs = Hubs, sub = Sub, seq = Seq} = State) ->
    {reply, #{hubs => lists:sort(maps:keys(Hubs)), subscription => Sub, seq => Seq}, State};

handle_call(_Request, _From, State) ->
    {reply, {error, badarg}, State}.

handle_cast(_Request, State) ->
    {noreply, State}.

%%%===================================================================
%%% Hubs, subscription, downs
%%%===================================================================

handle_info(connect, State) ->
    erlang:send_after(?RETRY_MS, self(), connect),
    {noreply, subscribe(connect(State))};

handle_info({?HUB, resync, Scope, Hub}, #state{scope = Scope} = State) when is_pid(Hub) ->
    send_out([Hub], sync_msg(State), State),
    {noreply, State};

handle_info({?HUB, refused, Scope, Hub, Reason},
            #state{scope = Scope, sub = {subscribing, Node}} = State)
  when is_pid(Hub), node(Hub) =:= Node,
       (Reason =:= subscribers orelse Reason =:= subscriber_scopes) ->
    %% The hub is full of subscribers: subscribe again on a later
    %% `connect` tick rather than wait for a snapshot that never comes.
    ?LOG_WARNING("eq_pg ~p: the groups hub on ~p refused our subscription: ~p", [Scope, Node, Reason]),
    {noreply, State#state{sub = none}};

handle_info({?HUB, refused, Scope, Hub, Reason}, #state{scope = Scope} = State) when is_pid(Hub) ->
    %% The hub dropped our members (a bound): tell the operator, and push
    %% them again later (some may have left by then).
    ?LOG_WARNING("eq_pg ~p: the groups hub on ~p refused our members: ~p", [Scope, node(Hub), Reason]),
    erlang:send_after(?REFUSED_RETRY_MS, self(), {resync_hub, Hub}),
    {noreply, State};

handle_info({resync_hub, Hub}, State) ->
    send_out([Hub], sync_msg(State), State),
    {noreply, State};

handle_info({?HUB, snapshot, Scope, Hub, Seq, Groups},
            #state{scope = Scope, sub = {subscribing, Node}} = State)
  when is_pid(Hub), node(Hub) =:= Node, is_integer(Seq) ->
    case valid_groups(Groups) of
        true ->
            Remote = remote_of(Groups),
            State1 = apply_snapshot(Remote, State),
            {noreply, State1#state{sub = {subscribed, Node, Hub, Seq}}};
        false ->
            %% Never crash on hub data (the table holds our local members):
            %% drop it and subscribe again on the next `connect` tick.
            ?LOG_WARNING("eq_pg ~p: malformed snapshot from the groups hub on ~p, ignored", [Scope, Node]),
            {noreply, State#state{sub = none}}
    end;

handle_info({?HUB, update, Scope, Hub, Seq, Op, Group, Pids},
            #state{scope = Scope, sub = {subscribed, Node, Hub, Last}} = State) ->
    Valid = (Op =:= join orelse Op =:= leave) andalso is_integer(Seq) andalso valid_pids(Pids),
    if
        not Valid ->
            ?LOG_WARNING("eq_pg ~p: malformed update from the groups hub on ~p, resubscribing", [Scope, Node]),
            Hub ! {?HUB, subscribe, Scope, self()},
            {noreply, State#state{sub = {subscribing, Node}}};
        Seq =:= Last + 1 ->
            State1 = apply_update(Op, Group, [P || P <- Pids, node(P) =/= node()], State),
            {noreply, State1#state{sub = {subscribed, Node, Hub, Seq}}};
        Seq =< Last ->
            {noreply, State};
        true ->
            %% A gap: ask again (the snapshot's difference is applied).
            Hub ! {?HUB, subscribe, Scope, self()},
            {noreply, State#state{sub = {subscribing, Node}}}
    end;

handle_info({?HUB, _, _, _, _, _} = _Stale, State) ->
    {noreply, State};
handle_info({?HUB, _, _, _, _, _, _, _} = _Stale, State) ->
    {noreply, State};

handle_info({'DOWN', MRef, process, Pid, _Info}, #state{local = Local} = State)
  when is_pid(Pid), node(Pid) =:= node() ->
    case maps:take(Pid, Local) of
        {{MRef, Groups}, NewLocal} ->
            State1 = State#state{local = NewLocal},
            State2 = lists:foldl(
                       fun(Group, S) ->
                               leave_update_ets(S, Group, [Pid], true),
                               push(leave, Group, [Pid], S)
                       end, State1, Groups),
            {noreply, State2};
        _ ->
            {noreply, maybe_drop_monitor(MRef, State)}
    end;

handle_info({'DOWN', MRef, process, _Object, _Info}, #state{hubs = Hubs, sub = Sub} = State) ->
    case [N || {N, R} <- maps:to_list(Hubs), R =:= MRef] of
        [Node] ->
            State1 = State#state{hubs = maps:remove(Node, Hubs)},
            case sub_node(Sub) of
                Node -> {noreply, subscribe(State1#state{sub = none})};
                _ -> {noreply, State1}
            end;
        [] ->
            {noreply, maybe_drop_monitor(MRef, State)}
    end;

handle_info(_Info, State) ->
    {noreply, State}.

%% The pusher goes too (a `normal` stop does not take a linked process):
%% what it still holds no longer matters, the hubs drop our members when
%% we go.
terminate(_Reason, #state{scope = Scope, pusher = Pusher}) ->
    unlink(Pusher),
    exit(Pusher, kill),
    true = ets:delete(Scope).

%% Monitors and syncs every configured hub not yet connected. A hub that is
%% not there answers with a DOWN, and is tried again on the next `connect`.
connect(#state{hubs = Hubs} = State) ->
    New = [N || N <- rust_quorum:nodes(), not maps:is_key(N, Hubs)],
    Added = maps:from_list([{N, erlang:monitor(process, {?HUB, N})} || N <- New]),
    New =/= [] andalso send_out([{?HUB, N} || N <- New], sync_msg(State), State),
    State#state{hubs = maps:merge(Hubs, Added)}.

%% Subscribes to a hub if not subscribed: the one rust_quorum calls first
%% if it is connected, else any connected one.
subscribe(#state{sub = none, hubs = Hubs, scope = Scope} = State) when map_size(Hubs) > 0 ->
    Preferred = rust_quorum:current_node(),
    Node = case maps:is_key(Preferred, Hubs) of
               true -> Preferred;
               false -> hd(lists:sort(maps:keys(Hubs)))
           end,
    erlang:send({?HUB, Node}, {?HUB, subscribe, Scope, self()}, [noconnect]),
    State#state{sub = {subscribing, Node}};
subscribe(State) ->
    State.

sub_node({subscribing, Node}) -> Node;
sub_node({subscribed, Node, _, _}) -> Node;
sub_node(none) -> undefined.

sync_msg(#state{scope = Scope, seq = Seq, local = Local}) ->
    {?HUB, sync, Scope, self(), Seq, all_local_pids(Local)}.

%% Sends a delta to every hub (none for an empty change: leaves of
%% pids that were not members).
push(_Op, _Group, [], State) ->
    State;
push(Op, Group, Pids, #state{scope = Scope, seq = Seq0, hubs = Hubs} = State) ->
    Seq = Seq0 + 1,
    Msg = {?HUB, Op, Scope, self(), Seq, Group, Pids},
    send_out([{?HUB, N} || N <- maps:keys(Hubs)], Msg, State),
    State#state{seq = Seq}.

send_out(Dests, Msg, #state{pusher = Pusher}) ->
    Pusher ! {push, Dests, Msg},
    ok.

%% Sends what it is given, in order. (A hub's busy connection suspends this
%% process, not the scope server; the queue here then grows until it
%% drains.)
pusher() ->
    receive
        {push, Dests, Msg} ->
            _ = [erlang:send(D, Msg, [noconnect]) || D <- Dests],
            pusher()
    end.

%%%===================================================================
%%% Remote members
%%%===================================================================

%% Hub data is checked before use: a proper list of {Group, [pid()]}.
valid_groups(Groups) ->
    try lists:all(fun({_, Pids}) -> valid_pids(Pids); (_) -> false end, Groups)
    catch error:_ -> false
    end.

valid_pids(Pids) ->
    try lists:all(fun erlang:is_pid/1, Pids)
    catch error:_ -> false
    end.

remote_of(Groups) ->
    lists:foldl(fun({Group, Pids}, Acc) ->
                        case [P || P <- Pids, node(P) =/= node()] of
                            [] -> Acc;
                            Remote -> Acc#{Group => Remote ++ maps:get(Group, Acc, [])}
                        end
                end, #{}, Groups).

%% Applies the difference between the members we had and a hub's snapshot.
apply_snapshot(New, #state{remote = Old} = State) ->
    Groups = lists:usort(maps:keys(Old) ++ maps:keys(New)),
    lists:foreach(
      fun(Group) ->
              OldPids = maps:get(Group, Old, []),
              NewPids = maps:get(Group, New, []),
              case OldPids -- NewPids of
                  [] -> ok;
                  Gone -> leave_update_ets(State, Group, Gone, false)
              end,
              case NewPids -- OldPids of
                  [] -> ok;
                  Came -> join_update_ets(State, Group, Came, false)
              end
      end, Groups),
    State#state{remote = New}.

apply_update(_Op, _Group, [], State) ->
    State;
apply_update(join, Group, Pids, #state{remote = Remote} = State) ->
    join_update_ets(State, Group, Pids, false),
    State#state{remote = maps:update_with(Group, fun(L) -> Pids ++ L end, Pids, Remote)};
apply_update(leave, Group, Pids, #state{remote = Remote} = State) ->
    case maps:get(Group, Remote, []) of
        [] ->
            State;
        Old ->
            Gone = Old -- (Old -- Pids),
            leave_update_ets(State, Group, Gone, false),
            NewRemote = case Old -- Pids of
                            [] -> maps:remove(Group, Remote);
                            Left -> Remote#{Group => Left}
                        end,
            State#state{remote = NewRemote}
    end.

%%%===================================================================
%%% The table and the monitors (pg's logic)
%%%===================================================================

%% Pids join Group; IsLocal: they are this node's.
join_update_ets(#state{scope = Scope} = State, Group, Pids, IsLocal) ->
    case ets:lookup(Scope, Group) of
        [{Group, All, Local}] when IsLocal ->
            ets:insert(Scope, {Group, Pids ++ All, Pids ++ Local});
        [{Group, All, Local}] ->
            ets:insert(Scope, {Group, Pids ++ All, Local});
        [] when IsLocal ->
            ets:insert(Scope, {Group, Pids, Pids});
        [] ->
            ets:insert(Scope, {Group, Pids, []})
    end,
    notify_group(State, join, Group, Pids).

leave_update_ets(#state{scope = Scope} = State, Group, Pids, IsLocal) ->
    case ets:lookup(Scope, Group) of
        [{Group, All, Local}] ->
            NewLocal = case IsLocal of
                           true -> Local -- Pids;
                           false -> Local
                       end,
            case All -- Pids of
                [] -> ets:delete(Scope, Group);
                NewAll -> ets:insert(Scope, {Group, NewAll, NewLocal})
            end,
            notify_group(State, leave, Group, Pids);
        [] ->
            true
    end.

notify_group(#state{scope_monitors = ScopeMon, monitored_groups = MG}, Action, Group, Pids) ->
    maps:foreach(
      fun(Ref, Pid) ->
              erlang:send(Pid, {Ref, Action, Group, Pids}, [noconnect])
      end, ScopeMon),
    case maps:find(Group, MG) of
        error ->
            ok;
        {ok, Monitors} ->
            [erlang:send(Pid, {Ref, Action, Group, Pids}, [noconnect]) || {Pid, Ref} <- Monitors],
            ok
    end.

as_list(Pid) when is_pid(Pid) -> [Pid];
as_list(Pids) -> Pids.

joined(Pid, Group, Local) ->
    case maps:find(Pid, Local) of
        {ok, {_, Groups}} -> lists:member(Group, Groups);
        error -> false
    end.

join_local([], _Group, Local) ->
    Local;
join_local([Pid | Tail], Group, Local) ->
    NewLocal = case maps:find(Pid, Local) of
                   {ok, {MRef, Groups}} ->
                       Local#{Pid => {MRef, [Group | Groups]}};
                   error ->
                       MRef = erlang:monitor(process, Pid),
                       Local#{Pid => {MRef, [Group]}}
               end,
    join_local(Tail, Group, NewLocal).

leave_local([], _Group, Local) ->
    Local;
leave_local([Pid | Tail], Group, Local) ->
    NewLocal = case maps:find(Pid, Local) of
                   {ok, {MRef, [Group]}} ->
                       erlang:demonitor(MRef),
                       maps:remove(Pid, Local);
                   {ok, {MRef, Groups}} ->
                       case lists:member(Group, Groups) of
                           true -> Local#{Pid => {MRef, lists:delete(Group, Groups)}};
                           false -> Local
                       end;
                   error ->
                       Local
               end,
    leave_local(Tail, Group, NewLocal).

all_local_pids(Local) ->
    maps:to_list(maps:fold(
                   fun(Pid, {_Ref, Groups}, Acc) ->
                           lists:foldl(
                             fun(Group, Acc1) ->
                                     Acc1#{Group => [Pid | maps:get(Group, Acc1, [])]}
                             end, Acc, Groups)
                   end, #{}, Local)).

maybe_drop_monitor(MRef, #state{scope_monitors = ScopeMon, group_monitors = GMs,
                                monitored_groups = MG} = State) ->
    case maps:take(MRef, ScopeMon) of
        error ->
            case maps:take(MRef, GMs) of
                error ->
                    State;
                {{Pid, Group}, NewGM} ->
                    State#state{group_monitors = NewGM,
                                monitored_groups = demonitor_group({Pid, MRef}, Group, MG)}
            end;
        {_Pid, NewScopeMon} ->
            State#state{scope_monitors = NewScopeMon}
    end.

demonitor_group(Tag, Group, MG) ->
    case maps:find(Group, MG) of
        {ok, [Tag]} -> maps:remove(Group, MG);
        {ok, Tags} -> maps:put(Group, Tags -- [Tag], MG);
        error -> MG
    end.

%%% erl_quorum_host: this BEAM node as a host of supervised names (one per
%%% node, registered as erl_quorum_host, under erl_quorum_sup).
%%%
%%% It tells every serving Rust node of `rust_nodes` that it can start BEAM
%%% children (`{host, self(), beam}`, reply `ok`) and tells it again whenever
%%% it sees that node come back: on nodeup, and when the node's erl_quorum
%%% process, which it monitors once announced, goes down (retried every
%%% second until it answers). The serving nodes then send it
%%% `{eq_start, RustNode, Id, Name, Start, Restart}`; for each it starts a
%%% keeper (erl_quorum_keeper) and returns at once, so a slow init holds up
%%% no other start. Everything else (running the start, answering the Rust
%%% node, the child's life) is the keeper's.
-module(erl_quorum_host).
-behaviour(gen_server).

-export([start_link/0, status/0]).
-export([init/1, handle_continue/2, handle_call/3, handle_cast/2,
         handle_info/2, terminate/2]).

-include_lib("kernel/include/logger.hrl").

-define(SERVER, erl_quorum).
%% How often the configured nodes are checked: an announcement that failed
%% is retried, and nodes added to `rust_nodes` at run time are announced.
-define(TICK_MS, 1000).

%% Per configured Rust node:
%%   {asking, ReqId}: `host` sent, reply pending;
%%   {announced, Mref}: it answered (Mref monitors its erl_quorum process);
%%   waiting: to be announced at the next tick or nodeup.
-record(state, {nodes = #{} :: #{node() => {asking, term()} | {announced, reference()} | waiting},
                %% Nodes that answered `host` with anything but ok (older
                %% releases: unknown_request), logged once each.
                unsupported = #{} :: #{node() => []}}).

start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% #{Node => announced | asking | waiting}, for tests and operators.
-spec status() -> #{node() => announced | asking | waiting}.
status() ->
    gen_server:call(?MODULE, status).

init([]) ->
    %% All node types: a Rust node may connect as a hidden node.
    _ = (catch net_kernel:monitor_nodes(true, [{node_type, all}])),
    erlang:send_after(?TICK_MS, self(), tick),
    %% Announcing may start connections: not in init, which blocks the
    %% supervisor.
    {ok, #state{}, {continue, announce}}.

handle_continue(announce, State) ->
    {noreply, announce_all(State)}.

handle_call(status, _From, #state{nodes = Nodes} = State) ->
    {reply, maps:map(fun(_, {Tag, _}) -> Tag; (_, waiting) -> waiting end, Nodes), State};
handle_call(Request, _From, State) ->
    {reply, {error, {unknown_request, Request}}, State}.

handle_cast(_Msg, State) ->
    {noreply, State}.

handle_info({eq_start, RustNode, Id, _Name, _Start, Restart} = Msg, State)
  when is_atom(RustNode), is_integer(Id) ->
    case valid_restart(Restart) of
        true -> keeper(Msg);
        false -> ?LOG_WARNING("erl_quorum: eq_start with a bad restart dropped: ~0p", [Msg])
    end,
    {noreply, State};
handle_info({eq_start, _, _, _, _, _} = Msg, State) ->
    ?LOG_WARNING("erl_quorum: malformed eq_start dropped: ~0p", [Msg]),
    {noreply, State};
handle_info(tick, State) ->
    erlang:send_after(?TICK_MS, self(), tick),
    {noreply, announce_all(State)};
handle_info({nodeup, Node, _Info}, #state{nodes = Nodes} = State) ->
    case maps:find(Node, Nodes) of
        {ok, waiting} -> {noreply, announce(Node, State)};
        _ -> {noreply, State}
    end;
handle_info({nodedown, _Node, _Info}, State) ->
    %% The monitor of its erl_quorum process says so too (noconnection).
    {noreply, State};
handle_info({'DOWN', Mref, process, {?SERVER, Node}, _Reason} = Msg,
            #state{nodes = Nodes} = State) ->
    case maps:find(Node, Nodes) of
        {ok, {announced, Mref}} ->
            %% Its erl_quorum will forget us (it monitored us); announce
            %% again once it is back, which the next tick or nodeup tries.
            {noreply, State#state{nodes = Nodes#{Node => waiting}}};
        _ ->
            %% Maybe the end of a `host` request in flight (its monitor).
            {noreply, response(Msg, State)}
    end;
handle_info(Msg, State) ->
    {noreply, response(Msg, State)}.

terminate(_Reason, _State) ->
    ok.

%%%===================================================================
%%% Internals
%%%===================================================================

valid_restart(R) -> R =:= permanent orelse R =:= transient orelse R =:= temporary.

keeper({eq_start, RustNode, Id, Name, Start, Restart}) ->
    Args = #{rust_node => RustNode, id => Id, name => Name, start => Start,
             restart => Restart},
    case catch erl_quorum_keeper_sup:start_keeper(Args) of
        {ok, _Keeper} ->
            ok;
        Error ->
            %% No keeper, no child: say so rather than leave the serving node
            %% waiting out its 30 s.
            ?LOG_WARNING("erl_quorum: cannot start a keeper for ~0p: ~0p", [Name, Error]),
            _ = gen_server:send_request({?SERVER, RustNode},
                                        {start_failed, Id, {no_keeper, Error}}),
            ok
    end.

%% Announces to every configured node that has not answered yet, and forgets
%% nodes no longer configured.
announce_all(#state{nodes = Nodes0} = State0) ->
    Configured = rust_quorum:nodes(),
    Nodes = maps:filter(fun(Node, Entry) ->
                                lists:member(Node, Configured) orelse drop(Entry)
                        end, Nodes0),
    State = State0#state{nodes = Nodes},
    lists:foldl(fun(Node, Acc) ->
                        case maps:get(Node, Nodes, waiting) of
                            waiting -> announce(Node, Acc);
                            _ -> Acc
                        end
                end, State, Configured).

drop({announced, Mref}) -> erlang:demonitor(Mref, [flush]), false;
drop({asking, ReqId}) -> _ = gen_server:receive_response(ReqId, 0), false;
drop(waiting) -> false.

announce(Node, #state{nodes = Nodes} = State) ->
    case node() of
        nonode@nohost ->
            %% Not distributed: nobody to announce to (yet).
            State#state{nodes = Nodes#{Node => waiting}};
        _ ->
            ReqId = gen_server:send_request({?SERVER, Node}, {host, self(), beam}),
            State#state{nodes = Nodes#{Node => {asking, ReqId}}}
    end.

%% A reply to one of the `host` requests in flight (anything else dropped).
response(Msg, #state{nodes = Nodes} = State) ->
    Asking = [{Node, ReqId} || {Node, {asking, ReqId}} <- maps:to_list(Nodes)],
    response(Msg, Asking, State).

response(_Msg, [], State) ->
    State;
response(Msg, [{Node, ReqId} | Rest], #state{nodes = Nodes} = State) ->
    case gen_server:check_response(Msg, ReqId) of
        no_reply ->
            response(Msg, Rest, State);
        {reply, ok} ->
            Mref = erlang:monitor(process, {?SERVER, Node}),
            State#state{nodes = Nodes#{Node => {announced, Mref}}};
        {reply, Other} ->
            %% A serving node without supervised names (unknown_request: an
            %% older release) or one refusing us: nothing to host for it
            %% until it is replaced (its erl_quorum process goes down). Not
            %% asked again every tick, and logged once.
            Mref = erlang:monitor(process, {?SERVER, Node}),
            Unsupported = State#state.unsupported,
            case maps:is_key(Node, Unsupported) of
                true -> ok;
                false -> ?LOG_WARNING("erl_quorum: Rust node ~p answered host with ~0p; "
                                      "it will not start children here", [Node, Other])
            end,
            State#state{nodes = Nodes#{Node => {announced, Mref}},
                        unsupported = Unsupported#{Node => []}};
        {error, _} ->
            %% Down or not running erl_quorum: the next tick or nodeup.
            State#state{nodes = Nodes#{Node => waiting}}
    end.

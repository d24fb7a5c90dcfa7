%%% eq_leader: leader election with locks_leader's callbacks and API, backed
%%% by the quorum of the erl_quorum Rust nodes.
%%%
%%% Leadership of election group G is the Paxtor lock `{'$eq_leader', G}`,
%%% owned by the candidate process itself. Every candidate queues for it
%%% (through a helper process, so the candidate keeps serving while it
%%% waits); the Rust node grants it in arrival order, and the holder's exit
%%% releases it. So the next leader is simply the next in the queue.
%%%
%%% At most one leader at a time: a leader acts (answers a leader_call,
%%% handles a leader_cast, broadcasts, syncs a joiner) only while its term
%%% is valid: before the deadline the guard (rust_quorum) keeps for the hold
%%% from the serving node's keepalives, which ends before anyone else can be
%%% granted the lock. Past it the leader surrenders without acting, whatever
%%% its mailbox holds (a node frozen past its lease wakes up to a backlog).
%%% The guard's `{lock_lost, Key}` exit signal is trapped and also ends the
%%% term. A leader that lost its term is called `surrendered(State,
%%% undefined, Info)` at once, then queues again, and gets the next
%%% leader's sync as every other candidate does.
%%%
%%% Members find the leader by its syncs (a new leader sends one to every
%%% member it knows: every sync carries the member lists) and by asking the
%%% Rust nodes for the lock's holder (`whereis_lock`, with backoff) when
%%% they have none, then joining it. The messages between members are
%%% eq_leader_wire's (PROTOCOL.md, "Leader election").
-module(eq_leader).
-behaviour(gen_server).

-export([start_link/2, start_link/3, start_link/4,
         leader_call/2, leader_call/3, leader_cast/2, call/2, call/3, cast/2,
         candidates/1, workers/1, leader/1, broadcast/2, token/1, reply/2,
         term_end_us/1, group/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2,
         code_change/3]).

-type mod_state() :: term().
-type election() :: tuple().
-export_type([election/0]).

-callback init(term()) -> {ok, mod_state()} | {stop, term()} | ignore.
-callback elected(mod_state(), election(), undefined | pid()) ->
    {ok, term(), mod_state()} | {reply, term(), mod_state()} | {stop, term(), mod_state()}.
-callback surrendered(mod_state(), term(), election()) -> {ok, mod_state()} | {stop, term(), mod_state()}.
-callback handle_DOWN(pid(), mod_state(), election()) -> {ok, mod_state()} | {ok, term(), mod_state()}.
-callback handle_leader_call(term(), {pid(), term()}, mod_state(), election()) ->
    {reply, term(), mod_state()} | {reply, term(), term(), mod_state()}
  | {noreply, mod_state()} | {stop, term(), term(), mod_state()}.
-callback handle_leader_cast(term(), mod_state(), election()) -> {ok, mod_state()} | {ok, term(), mod_state()}.
-callback from_leader(term(), mod_state(), election()) -> {ok, mod_state()}.
-callback handle_call(term(), {pid(), term()}, mod_state(), election()) ->
    {reply, term(), mod_state()} | {noreply, mod_state()} | {stop, term(), term(), mod_state()}.
-callback handle_cast(term(), mod_state(), election()) -> {ok, mod_state()} | {noreply, mod_state()}.
-callback handle_info(term(), mod_state(), election()) -> {ok, mod_state()} | {noreply, mod_state()}.
-callback terminate(term(), mod_state()) -> term().
-callback code_change(term(), mod_state(), election(), term()) -> {ok, mod_state()}.
-optional_callbacks([terminate/2, code_change/4]).

%% How often a leader refreshes its validity deadline from the guard.
-define(REFRESH_MS, 250).
%% whereis_lock backoff, while a member has no leader.
-define(FIND_MIN_MS, 50).
-define(FIND_MAX_MS, 1000).
%% How long a member waits for the sync of a holder it joined.
-define(JOIN_WAIT_MS, 2000).

-record(st, {
    mod :: module(),
    mstate :: term(),
    group :: term(),
    key :: term(),
    role = candidate :: candidate | worker,
    %% The leader as this member knows it (self() while leading).
    leader :: pid() | undefined,
    leader_mon :: reference() | undefined,
    token :: non_neg_integer() | undefined,
    %% Leading: the term's deadline (monotonic ms), from the guard.
    valid_until :: integer() | undefined,
    %% The end of this process's last term, system time in microseconds.
    term_end_us :: integer() | undefined,
    candidates = [] :: [pid()],
    workers = [] :: [pid()],
    %% Members the leader monitors: Pid => Mref.
    mons = #{} :: #{pid() => reference()},
    locker :: pid() | undefined,
    finder :: pid() | undefined,
    %% The tag of the running refresh timer chain (one per term).
    refresh :: reference() | undefined,
    find_ms = ?FIND_MIN_MS :: pos_integer(),
    %% A holder we joined and wait for: {Pid, Mref, TRef}.
    joining :: {pid(), reference(), reference()} | undefined,
    %% leader_calls and leader_casts waiting for a leader (newest first).
    pending = [] :: list()
}).

%%%===================================================================
%%% API
%%%===================================================================

start_link(Mod, Arg) -> start_link(Mod, Arg, []).

%% Options: {role, candidate | worker} (default candidate), {resource, G}
%% (the election group; default Mod), {registered_name, Atom}.
start_link(Mod, Arg, Opts) when is_atom(Mod), is_list(Opts) ->
    case lists:keyfind(registered_name, 1, Opts) of
        {_, Reg} when is_atom(Reg) -> gen_server:start_link({local, Reg}, ?MODULE, {Mod, Arg, Opts}, []);
        false -> gen_server:start_link(?MODULE, {Mod, Arg, Opts}, []);
        Bad -> erlang:error({badarg, Bad})
    end;
start_link(Mod, Arg, Opts) ->
    erlang:error({badarg, {Mod, Arg, Opts}}).

start_link(Reg, Mod, Arg, Opts) when is_atom(Reg), is_list(Opts) ->
    start_link(Mod, Arg, [{registered_name, Reg} | Opts]).

%% A call handled by the leader's handle_leader_call/4 (forwarded by the
%% member Name). Exits as gen_server:call does (timeout: 5000).
leader_call(Name, Req) -> leader_call(Name, Req, 5000).
leader_call(Name, Req, Timeout) ->
    case gen_server:call(Name, {'$eq_leader_call', Req}, Timeout) of
        {'$eq_leader_reply', Reply} -> Reply
    end.

leader_cast(Name, Msg) -> gen_server:cast(Name, {'$eq_leader_cast', Msg}).

call(Name, Req) -> gen_server:call(Name, Req).
call(Name, Req, Timeout) -> gen_server:call(Name, Req, Timeout).
cast(Name, Msg) -> gen_server:cast(Name, Msg).

%% For handle_leader_call/4 returning noreply.
reply(From, Reply) -> gen_server:reply(From, {'$eq_leader_reply', Reply}).

%% candidates/1, workers/1, leader/1, token/1: from the election info the
%% callbacks get, or from a running member (a pid or name).
candidates(#st{candidates = C}) -> C;
candidates(Name) -> info(Name, candidates).
workers(#st{workers = W}) -> W;
workers(Name) -> info(Name, workers).
leader(#st{leader = L}) -> L;
leader(Name) -> info(Name, leader).
%% The fencing token of the current term (the lock grant's), `undefined`
%% when the serving nodes give none.
token(#st{token = T}) -> T;
token(Name) -> info(Name, token).
group(#st{group = G}) -> G;
group(Name) -> info(Name, group).
%% When this member's last term as leader ended (or will end, if it still
%% leads): the validity deadline, in erlang:system_time(microsecond).
term_end_us(#st{term_end_us = E}) -> E;
term_end_us(Name) -> info(Name, term_end_us).

info(Name, Item) -> gen_server:call(Name, {'$eq_leader_info', Item}).

%% Sends Msg to every member's from_leader/3. Only from the leader, within
%% its term: ok, or error(not_leader).
broadcast(Msg, #st{} = St) ->
    case leading(St) of
        true -> do_broadcast(Msg, St);
        false -> erlang:error(not_leader)
    end;
broadcast(Msg, Info) ->
    erlang:error({badarg, {Msg, Info}}).

%%%===================================================================
%%% gen_server
%%%===================================================================

init({Mod, Arg, Opts}) ->
    process_flag(trap_exit, true),
    Role = proplists:get_value(role, Opts, candidate),
    (Role =:= candidate orelse Role =:= worker) orelse erlang:error({badarg, {role, Role}}),
    Group = proplists:get_value(resource, Opts, Mod),
    case Mod:init(Arg) of
        {ok, MS} ->
            St0 = #st{mod = Mod, mstate = MS, group = Group, key = {'$eq_leader', Group},
                      role = Role},
            St1 = add_member(self(), Role, St0),
            St2 = case Role of
                      candidate -> St1#st{locker = start_locker(St1, 0)};
                      worker -> St1
                  end,
            {ok, start_finder(St2)};
        {stop, R} -> {stop, R};
        ignore -> ignore;
        Other -> {stop, {bad_return_value, Other}}
    end.

handle_call({'$eq_leader_info', Item}, _From, St) ->
    {reply, info_item(Item, St), St};
handle_call({'$eq_leader_call', Req}, From, St) ->
    {noreply, leader_call_in(Req, From, St)};
handle_call(Req, From, #st{mod = Mod, mstate = MS} = St) ->
    case Mod:handle_call(Req, From, MS, St) of
        {reply, R, MS1} -> {reply, R, St#st{mstate = MS1}};
        {noreply, MS1} -> {noreply, St#st{mstate = MS1}};
        {stop, Why, R, MS1} -> {stop, Why, R, St#st{mstate = MS1}}
    end.

handle_cast({'$eq_leader_cast', Msg}, St) ->
    {noreply, leader_cast_in(Msg, St)};
handle_cast(Msg, #st{mod = Mod, mstate = MS} = St) ->
    {noreply, St#st{mstate = ok_state(Mod:handle_cast(Msg, MS, St))}}.

handle_info({'$eq_leader', _} = Wire, St) ->
    case eq_leader_wire:decode(Wire) of
        {ok, Msg} when element(2, Msg) =:= St#st.group -> wire_in(Msg, St);
        _ -> {noreply, St}
    end;
handle_info({'$eq_leader_locked', Locker, Token}, #st{locker = Locker} = St) ->
    reap(Locker),
    {noreply, won(Token, St#st{locker = undefined})};
handle_info({'$eq_leader_refused', Locker, Why}, #st{locker = Locker} = St) ->
    reap(Locker),
    {stop, {lock_refused, Why}, St#st{locker = undefined}};
handle_info({'$eq_leader_found', Finder, Pid}, #st{finder = Finder} = St) ->
    reap(Finder),
    {noreply, found(Pid, St#st{finder = undefined})};
handle_info({refresh, TRef}, #st{refresh = TRef} = St) ->
    {noreply, refresh(St#st{refresh = undefined})};
handle_info({refresh, _}, St) ->
    %% A chain from an earlier term (the timer was cancelled too late).
    {noreply, St};
handle_info({join_timeout, TRef}, #st{joining = {_, Mref, TRef}} = St) ->
    erlang:demonitor(Mref, [flush]),
    {noreply, start_finder(St#st{joining = undefined})};
handle_info({'EXIT', _, {lock_lost, Key}}, #st{key = Key} = St) ->
    {noreply, lost(St)};
handle_info({lock_lost, Key}, #st{key = Key} = St) ->
    {noreply, lost(St)};
handle_info({'EXIT', Pid, Why}, #st{locker = Pid} = St) ->
    %% The locker only ends by sending its result; anything else is a bug
    %% worth restarting it for.
    error_logger:warning_msg("eq_leader ~p: locker exited ~p; queuing again", [St#st.group, Why]),
    {noreply, St#st{locker = start_locker(St)}};
handle_info({'EXIT', Pid, _}, #st{finder = Pid} = St) ->
    {noreply, start_finder(St#st{finder = undefined})};
handle_info({'DOWN', Mref, process, Pid, _}, #st{leader_mon = Mref} = St) ->
    {noreply, leader_down(Pid, St)};
handle_info({'DOWN', Mref, process, _, _}, #st{joining = {_, Mref, TRef}} = St) ->
    _ = erlang:cancel_timer(TRef),
    {noreply, start_finder(St#st{joining = undefined})};
handle_info({'DOWN', Mref, process, Pid, _} = Down, #st{mons = Mons} = St) ->
    case maps:find(Pid, Mons) of
        {ok, Mref} -> {noreply, member_down(Pid, St#st{mons = maps:remove(Pid, Mons)})};
        _ -> user_info(Down, St)
    end;
handle_info(Msg, St) ->
    user_info(Msg, St).

%% A helper sent its result and is about to exit normal: its 'EXIT' must
%% not reach the user's handle_info/3 (trap_exit is on).
reap(Helper) ->
    unlink(Helper),
    receive {'EXIT', Helper, _} -> ok after 0 -> ok end.

user_info(Msg, #st{mod = Mod, mstate = MS} = St) ->
    {noreply, St#st{mstate = ok_state(Mod:handle_info(Msg, MS, St))}}.

terminate(Why, #st{mod = Mod, mstate = MS}) ->
    case erlang:function_exported(Mod, terminate, 2) of
        true -> Mod:terminate(Why, MS);
        false -> ok
    end.

code_change(Old, #st{mod = Mod, mstate = MS} = St, Extra) ->
    case erlang:function_exported(Mod, code_change, 4) of
        true -> {ok, MS1} = Mod:code_change(Old, MS, St, Extra), {ok, St#st{mstate = MS1}};
        false -> {ok, St}
    end.

info_item(candidates, St) -> St#st.candidates;
info_item(workers, St) -> St#st.workers;
info_item(leader, St) -> St#st.leader;
info_item(token, St) -> St#st.token;
info_item(group, St) -> St#st.group;
info_item(term_end_us, St) -> St#st.term_end_us;
info_item(Other, _) -> {error, {badarg, Other}}.

ok_state({ok, MS}) -> MS;
ok_state({noreply, MS}) -> MS;
ok_state(Other) -> erlang:error({bad_return_value, Other}).

%%%===================================================================
%%% Winning and losing the term
%%%===================================================================

%% The locker's grant: this candidate holds the group's lock.
won(Token, #st{mod = Mod, mstate = MS} = St0) ->
    St1 = forget_leader(St0),
    St2 = St1#st{leader = self(), token = Token, valid_until = undefined},
    St3 = refresh_validity(St2),
    case leading(St3) of
        false ->
            %% Granted, but the guard already gave up on the hold: no
            %% term started (elected/3 was not called), so no surrendered/3.
            start_finder(end_term(St3));
        true ->
            St4 = arm_refresh(St3#st{term_end_us = system_us(St3#st.valid_until)}),
            %% Members the old leader knew get the new one's sync.
            St5 = lists:foldl(fun(P, A) -> monitor_member(P, A) end, St4,
                              (St4#st.candidates ++ St4#st.workers) -- [self()]),
            case Mod:elected(MS, St5, undefined) of
                {ok, Sync, MS1} -> after_elected(Sync, all, St5#st{mstate = MS1});
                {reply, Sync, MS1} -> after_elected(Sync, all, St5#st{mstate = MS1});
                {stop, Why, MS1} -> exit_now(Why, St5#st{mstate = MS1})
            end
    end.

after_elected(Sync, To, St) ->
    send_sync(Sync, To, St),
    drain_pending(St).

%% The term ended (the guard's deadline passed, or it told us): surrender
%% at once, queue again, and look for the next leader.
lost(#st{leader = Self, mod = Mod, mstate = MS} = St0) when Self =:= self() ->
    St1 = end_term(St0),
    St2 = case Mod:surrendered(MS, undefined, St1) of
              {ok, MS1} -> St1#st{mstate = MS1};
              {stop, Why, MS1} -> exit_now(Why, St1#st{mstate = MS1})
          end,
    start_finder(St2);
lost(St) ->
    %% Not leading: a late signal for a term already given up. The locker
    %% may still hold a grant we have not heard of yet; it stays queued.
    St.

%% Stops leading (no callback): the term's end is noted, the members are
%% no longer monitored, and the candidate queues again.
end_term(St0) ->
    St1 = St0#st{leader = undefined, valid_until = undefined,
                 term_end_us = min(erlang:system_time(microsecond), end_or_now(St0))},
    maps:foreach(fun(_, M) -> erlang:demonitor(M, [flush]) end, St1#st.mons),
    St2 = cancel_refresh(St1#st{mons = #{}}),
    St2#st{locker = case St2#st.locker of
                        undefined -> start_locker(St2);
                        L -> L
                    end}.

end_or_now(#st{term_end_us = undefined}) -> erlang:system_time(microsecond);
end_or_now(#st{term_end_us = E}) -> E.

exit_now(Why, St) -> exit({stop, Why, St#st.group}).

%% Whether this member may act as leader now.
leading(#st{leader = L, valid_until = V}) when L =:= self(), is_integer(V) ->
    erlang:monotonic_time(millisecond) < V;
leading(_) ->
    false.

%% Before each leader action: refreshed from the guard when the cached
%% deadline passed (a keepalive may have extended it); false means lost.
check_leading(St) ->
    case leading(St) of
        true -> {true, St};
        false when St#st.leader =:= self() ->
            St1 = refresh_validity(St),
            case leading(St1) of
                true -> {true, St1};
                false -> {false, lost(St1)}
            end;
        false -> {false, St}
    end.

refresh(#st{leader = L} = St) when L =:= self() ->
    St1 = refresh_validity(St),
    case leading(St1) of
        true ->
            arm_refresh(St1#st{term_end_us = system_us(St1#st.valid_until)});
        false ->
            lost(St1)
    end;
refresh(St) ->
    St.

%% One refresh chain per term: the timer's ref tags its message, and
%% end_term/1 cancels it, so a quick re-grant doesn't start a second chain.
arm_refresh(St0) ->
    St = cancel_refresh(St0),
    TRef = make_ref(),
    erlang:send_after(?REFRESH_MS, self(), {refresh, TRef}),
    St#st{refresh = TRef}.

cancel_refresh(St) -> St#st{refresh = undefined}.

refresh_validity(#st{key = Key} = St) ->
    V = try rust_quorum:valid_until(self(), lock, Key)
        catch exit:_ -> undefined
        end,
    St#st{valid_until = V}.

system_us(undefined) -> undefined;
system_us(MonoMs) -> erlang:convert_time_unit(MonoMs, millisecond, microsecond) + erlang:time_offset(microsecond).

%%%===================================================================
%%% Leader actions
%%%===================================================================

leader_call_in(Req, From, St0) ->
    case check_leading(St0) of
        {true, St} -> do_leader_call(Req, From, St);
        {false, St} -> forward_or_queue({call, From, Req}, St)
    end.

leader_cast_in(Msg, St0) ->
    case check_leading(St0) of
        {true, St} -> do_leader_cast(Msg, St);
        {false, St} -> forward_or_queue({cast, Msg}, St)
    end.

do_leader_call(Req, From, #st{mod = Mod, mstate = MS} = St) ->
    case Mod:handle_leader_call(Req, From, MS, St) of
        {reply, R, MS1} -> reply(From, R), St#st{mstate = MS1};
        {reply, R, Bcast, MS1} -> reply(From, R), St1 = St#st{mstate = MS1}, do_broadcast(Bcast, St1), St1;
        {noreply, MS1} -> St#st{mstate = MS1};
        {stop, Why, R, MS1} -> reply(From, R), exit_now(Why, St#st{mstate = MS1})
    end.

do_leader_cast(Msg, #st{mod = Mod, mstate = MS} = St) ->
    case Mod:handle_leader_cast(Msg, MS, St) of
        {ok, MS1} -> St#st{mstate = MS1};
        {ok, Bcast, MS1} -> St1 = St#st{mstate = MS1}, do_broadcast(Bcast, St1), St1;
        {noreply, MS1} -> St#st{mstate = MS1}
    end.

forward_or_queue(Item, #st{leader = L, group = G} = St) when is_pid(L), L =/= self() ->
    case Item of
        {call, From, Req} -> L ! eq_leader_wire:encode({leader_call, G, From, Req});
        {cast, Msg} -> L ! eq_leader_wire:encode({leader_cast, G, Msg})
    end,
    St;
forward_or_queue(Item, #st{pending = P} = St) ->
    %% Bounded: the oldest are dropped (their callers time out).
    St#st{pending = lists:sublist([Item | P], 1000)}.

drain_pending(#st{pending = []} = St) -> St;
drain_pending(#st{pending = P} = St0) ->
    lists:foldl(fun({call, From, Req}, A) -> leader_call_in(Req, From, A);
                   ({cast, Msg}, A) -> leader_cast_in(Msg, A)
                end, St0#st{pending = []}, lists:reverse(P)).

do_broadcast(Msg, #st{group = G, token = T} = St) ->
    W = eq_leader_wire:encode({from_leader, G, self(), T, Msg}),
    [P ! W || P <- others(St)],
    ok.

send_sync(Sync, To, #st{group = G, token = T, candidates = C, workers = W} = St) ->
    M = eq_leader_wire:encode({sync, G, self(), T, Sync, C, W}),
    Targets = case To of
                  all -> others(St);
                  Pid -> [Pid]
              end,
    [P ! M || P <- Targets],
    ok.

send_members(Except, #st{group = G, token = T, candidates = C, workers = W} = St) ->
    M = eq_leader_wire:encode({members, G, self(), T, C, W}),
    [P ! M || P <- others(St) -- [Except]],
    ok.

others(#st{candidates = C, workers = W}) -> (C ++ W) -- [self()].

%%%===================================================================
%%% Membership
%%%===================================================================

wire_in({join, _, Pid, Role}, St0) ->
    case check_leading(St0) of
        {true, St1} ->
            St2 = monitor_member(Pid, add_member(Pid, Role, St1)),
            #st{mod = Mod, mstate = MS} = St2,
            case Mod:elected(MS, St2, Pid) of
                {ok, Sync, MS1} -> St3 = St2#st{mstate = MS1}, send_sync(Sync, all, St3), {noreply, St3};
                {reply, Sync, MS1} ->
                    St3 = St2#st{mstate = MS1}, send_sync(Sync, Pid, St3), send_members(Pid, St3),
                    {noreply, St3};
                {stop, Why, MS1} -> exit_now(Why, St2#st{mstate = MS1})
            end;
        {false, St1} ->
            %% Not the leader (any more): the joiner will look again.
            {noreply, add_member(Pid, Role, St1)}
    end;
wire_in({sync, _, L, T, Sync, C, W}, #st{leader = Self} = St0) when L =/= self(), Self =:= self() ->
    %% Another leader's sync while we lead: a stale one (an earlier term's,
    %% delayed) while our term is valid and its token no newer; otherwise
    %% our term is over (we were frozen or cut off past it).
    St1 = refresh_validity(St0),
    Newer = is_integer(T) andalso is_integer(St1#st.token) andalso T > St1#st.token,
    case leading(St1) andalso not Newer of
        true -> {noreply, St1};
        false -> synced(L, T, Sync, C, W, end_term(St1))
    end;
wire_in({sync, _, L, T, Sync, C, W}, St0) when L =/= self() ->
    case newer_or_same(L, T, St0) of
        false -> {noreply, St0};
        true -> synced(L, T, Sync, C, W, St0)
    end;
wire_in(Msg, St) ->
    wire_in_rest(Msg, St).

synced(L, T, Sync, C, W, St0) ->
            St1 = follow(L, T, St0),
            St2 = St1#st{candidates = union(C, [self() || St1#st.role =:= candidate]),
                         workers = union(W, [self() || St1#st.role =:= worker])},
            #st{mod = Mod, mstate = MS} = St2,
            case Mod:surrendered(MS, Sync, St2) of
                {ok, MS1} -> {noreply, drain_pending(St2#st{mstate = MS1})};
                {stop, Why, MS1} -> {stop, Why, St2#st{mstate = MS1}}
            end.

wire_in_rest({members, _, L, _T, C, W}, #st{leader = L} = St) when L =/= self() ->
    {noreply, St#st{candidates = C, workers = W}};
wire_in_rest({from_leader, _, L, _T, Msg}, #st{leader = L, mod = Mod, mstate = MS} = St) when L =/= self() ->
    case Mod:from_leader(Msg, MS, St) of
        {ok, MS1} -> {noreply, St#st{mstate = MS1}};
        {stop, Why, MS1} -> {stop, Why, St#st{mstate = MS1}}
    end;
wire_in_rest({leader_call, _, From, Req}, St) ->
    {noreply, leader_call_in(Req, From, St)};
wire_in_rest({leader_cast, _, Msg}, St) ->
    {noreply, leader_cast_in(Msg, St)};
wire_in_rest(_, St) ->
    %% A member message from someone who is not our leader (a former one).
    {noreply, St}.

%% Whether a sync from L with token T is for a term at least as new as the
%% one we follow: tokens only grow; without tokens, the latest sync wins
%% (a former leader stops sending before its term ends).
newer_or_same(_L, T, #st{token = Cur}) when is_integer(T), is_integer(Cur) -> T >= Cur;
newer_or_same(_L, _T, _St) -> true.

follow(L, T, #st{leader = L} = St) ->
    St#st{token = T};
follow(L, T, St0) ->
    St1 = forget_leader(St0),
    St2 = case St1#st.joining of
              {L, Mref, TRef} -> _ = erlang:cancel_timer(TRef), erlang:demonitor(Mref, [flush]),
                                 St1#st{joining = undefined};
              _ -> St1
          end,
    St2#st{leader = L, token = T, leader_mon = erlang:monitor(process, L), find_ms = ?FIND_MIN_MS}.

forget_leader(#st{leader_mon = undefined} = St) -> St#st{leader = undefined};
forget_leader(#st{leader_mon = M} = St) ->
    erlang:demonitor(M, [flush]),
    St#st{leader = undefined, leader_mon = undefined}.

leader_down(Pid, St0) ->
    St = St0#st{leader = undefined, leader_mon = undefined,
                candidates = St0#st.candidates -- [Pid], workers = St0#st.workers -- [Pid]},
    start_finder(St).

member_down(Pid, #st{mod = Mod, mstate = MS} = St0) ->
    St1 = St0#st{candidates = St0#st.candidates -- [Pid], workers = St0#st.workers -- [Pid]},
    case check_leading(St1) of
        {true, St2} ->
            send_members(none, St2),
            case Mod:handle_DOWN(Pid, MS, St2) of
                {ok, MS1} -> St2#st{mstate = MS1};
                {ok, Bcast, MS1} -> St3 = St2#st{mstate = MS1}, do_broadcast(Bcast, St3), St3
            end;
        {false, St2} -> St2
    end.

monitor_member(Pid, #st{mons = Mons} = St) when Pid =/= self() ->
    case maps:is_key(Pid, Mons) of
        true -> St;
        false -> St#st{mons = maps:put(Pid, erlang:monitor(process, Pid), Mons)}
    end;
monitor_member(_, St) -> St.

add_member(Pid, candidate, St) -> St#st{candidates = union(St#st.candidates, [Pid])};
add_member(Pid, worker, St) -> St#st{workers = union(St#st.workers, [Pid])}.

union(A, B) -> A ++ [X || X <- B, not lists:member(X, A)].

%% The finder answered: Pid holds the lock (or nobody does yet).
found(Pid, #st{leader = undefined, joining = undefined, role = Role, group = G} = St)
  when is_pid(Pid), Pid =/= self() ->
    Pid ! eq_leader_wire:encode({join, G, self(), Role}),
    Mref = erlang:monitor(process, Pid),
    TRef = make_ref(),
    erlang:send_after(?JOIN_WAIT_MS, self(), {join_timeout, TRef}),
    St#st{joining = {Pid, Mref, TRef}};
found(_Pid, #st{leader = undefined, joining = undefined} = St) ->
    start_finder(St);
found(_Pid, St) ->
    St.

%% While this member has no leader: ask who holds the lock, with backoff.
start_finder(#st{leader = undefined, joining = undefined, finder = undefined,
                 key = Key, find_ms = Ms} = St) ->
    Self = self(),
    Finder = spawn_link(fun() ->
                                timer:sleep(Ms div 2 + rand:uniform(Ms) - 1),
                                Holder = try rust_quorum:call({whereis_lock, Key})
                                         catch exit:_ -> undefined
                                         end,
                                Self ! {'$eq_leader_found', self(), Holder}
                        end),
    St#st{finder = Finder, find_ms = min(2 * Ms, ?FIND_MAX_MS)};
start_finder(St) ->
    St.

%% After a term (or a grant the guard did not confirm) the locker waits
%% 100-300 ms first: a hold the serving node still counts as ours would
%% be granted again at once (locks are reentrant), and the loop must not
%% spin while the guard and the serving node disagree.
start_locker(St) -> start_locker(St, 100 + rand:uniform(200)).

start_locker(#st{key = Key}, DelayMs) ->
    Self = self(),
    spawn_link(fun() -> timer:sleep(DelayMs), eq_leader_locker:run(Key, Self) end).

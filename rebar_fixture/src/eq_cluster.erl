%%% eq_cluster: gen_cluster's behaviour (pid clustering) on process groups.
%%%
%%% A cascading gen_server behaviour with gen_cluster's callbacks and API
%%% (jashmenn/gen_cluster): a process joins a cluster through any member
%%% (its "seed"), keeps the list of current member pids, and is called back
%%% as members join and leave:
%%%
%%%   handle_node_joined(Self, Pidlist, State) -> {ok, State}   (optional)
%%%       once, on the joiner, when it is in (before start_link returns).
%%%   handle_join(JoiningPid, Pidlist, State) -> {ok, State}
%%%       on every member already in, for each member that joins later.
%%%   handle_leave(LeavingPid, Pidlist, Info, State) -> {ok, State}
%%%       on every member, for each member that leaves. Info is the exit
%%%       reason from this member's own monitor of LeavingPid (`noconnection`
%%%       when its node was lost), or `left` when the group reported the
%%%       departure and no DOWN followed within 100 ms (the pid left the
%%%       group while alive).
%%%   seed_nodes(State) -> Seed | [Seed]                          (optional)
%%%       more seeds, asked after init/1 (gen_cluster asks before init/1,
%%%       with an undefined state).
%%% Any callback may also return {stop, Reason, State}. Pidlist is always the
%%% sorted list of current member pids as this member sees them: self()
%%% included, JoiningPid included, LeavingPid excluded.
%%%
%%% Membership of cluster C is the process group {'$eq_cluster', C} in a
%%% scope of eq_pg (?PG), whose API and messages are OTP pg's (join/3,
%%% monitor/2 -> {Ref, Pids}, then {Ref, join | leave, Group, Pids}); its
%%% members come from the Rust hubs, so Rust processes are members too
%%% (services::membership::ClusterWatch::join). The callbacks are driven by
%%% the member's node's view of the group: a group monitor (held by a
%%% linked watcher process that relays its messages unchanged, and the
%%% node-ups), plus one process monitor per member, for the exit reason.
%%%
%%% Delivery and order (what a member can rely on):
%%%  * One sequence per member: handle_node_joined first, then one
%%%    handle_join or handle_leave per change, each with the list after that
%%%    change (the previous list plus or minus exactly that pid).
%%%  * Every change once: a pid is reported joining once and leaving once
%%%    per stay in the group, its join always before its leave. It comes back
%%%    only after a leave: its node was cut off from this one (`noconnection`
%%%    from our monitor) while the group kept it (the Rust hubs still
%%%    reached it) and reconnected (a new handle_join on the nodeup), or it
%%%    was taken out of the group and put back by hand (eq_pg:leave/join).
%%%    A pid already dead
%%%    when its join arrives is reported joining, then leaving with `noproc`.
%%%  * No total order: a member applies changes in the order it learns them,
%%%    so two members can see changes made on different nodes in different
%%%    orders, and even two changes of one node (a join relayed by the group
%%%    servers and a departure its own monitor reports first). Once changes
%%%    stop and the nodes are connected, every member holds the same list:
%%%    the group's.
%%%  * The joiner's first list holds every member its seed knew when asked
%%%    (unless it left meanwhile): it waits for its own node's group server
%%%    to learn of them, for at most join_timeout (default 5000 ms); a member
%%%    not learnt by then is reported later through handle_join.
%%%  * How fast: a member that exits is reported when its DOWN arrives (one
%%%    message hop). When the group's leave comes first, the member waits
%%%    up to 100 ms for the DOWN (for the reason), blocking its later
%%%    changes that long; a pid that left the group alive costs that wait
%%%    (once per leave message, however many pids it names). A member
%%%    whose node is lost is reported when the distribution notices: at once
%%%    when the connection closes (the node crashed, kill -9), within
%%%    net_ticktime (default 60 s) when the network goes silent (or sooner,
%%%    when the hubs drop its members first). Members of another node reach
%%%    this member through a Rust hub (two hops).
%%%  * Bounds: each member holds a map of the members and one monitor each;
%%%    each change costs every member a sorted list (n log n) and a
%%%    callback, so a cluster of n members does O(n^2) work per wave of n
%%%    joins. No cap beyond the group's own: meant for tens to hundreds of
%%%    members, not for tens of thousands. start_link takes at most
%%%    join_timeout per seed asked plus join_timeout of waiting.
%%%
%%% Start: start_link(Mod, Args, Opts) / start_link(Name, Mod, Args, Opts),
%%% as gen_cluster (and gen_server). Args is handed to Mod:init/1 as is;
%%% when it is a proplist (or a map), eq_cluster also reads from it:
%%%   {seed, Seed | [Seed]}  Seed: a member's pid, a registered name, a
%%%       {Name, Node} pair, {global, Name}, {via, Mod, Name}, or a node (an
%%%       atom holding '@'). A member seed tells the joiner the cluster's name
%%%       and scope (they win over the joiner's own options) and its members;
%%%       a node seed is connected to, its group members read with erpc, and
%%%       the cluster and scope are the joiner's own. Seeds are tried in
%%%       order; the first that answers is used. Seeds that are the process
%%%       itself or its node are skipped, and count as an answer only when no
%%%       other seed answers (gen_cluster users give every node one list).
%%%       No seed: the process starts the cluster alone (or joins what its
%%%       node's group already holds).
%%%   {cluster, Name}  the cluster (default: Mod, as gen_cluster's rally
%%%       point name).
%%%   {scope, Scope}  the group scope (default ?PG, the default scope of
%%%       pg and of eq_pg); it must run on every node with members.
%%%   {join_timeout, Ms}  default 5000.
%%% Start errors: {no_seed, Seeds} when seeds are given and none answers
%%% (gen_cluster starts a cluster of its own instead: a silent split),
%%% {no_scope, Scope}, or init/1's and handle_node_joined/3's stops.
%%%
%%% Members leave by exiting; there is no leave call (none in gen_cluster
%%% either), and terminate/2 must not leave the group by hand, or the others
%%% would see `left` instead of the exit reason. Not provided from
%%% gen_cluster: its global "rally point" (leader/1; use the election
%%% behaviour), add_child/3, enter_loop, and its seed sources outside the
%%% code (-gen_cluster_known, GEN_CLUSTER_SEED_CONFIG).
-module(eq_cluster).
-behaviour(gen_server).

%% gen_cluster's API.
-export([start/3, start/4, start_link/3, start_link/4, call/2, call/3,
         cast/2, reply/2, abcast/2, abcast/3, multi_call/2, multi_call/3,
         multi_call/4, plist/1, mod_plist/2]).
%% Ours.
-export([members/1, cluster/1, stop/1, stop/3, group_module/0]).
%% gen_server callbacks.
-export([init/1, handle_call/3, handle_cast/2, handle_info/2,
         handle_continue/2, terminate/2, code_change/3]).

%% The group module (eq_pg; OTP pg's API and messages). This is the only
%% place that names it.
-define(PG, eq_pg).
-define(GROUP(C), {'$eq_cluster', C}).
-define(JOIN_TIMEOUT_MS, 5000).
%% How long a group leave waits for the leaver's DOWN (for its reason).
-define(DOWN_GRACE_MS, 100).

-callback init(Args :: term()) ->
    {ok, State :: term()} | {ok, State :: term(), timeout() | hibernate | {continue, term()}}
        | {stop, Reason :: term()} | ignore.
-callback handle_join(JoiningPid :: pid(), Pidlist :: [pid()], State :: term()) ->
    {ok, NewState :: term()} | {stop, Reason :: term(), NewState :: term()}.
-callback handle_node_joined(Self :: pid(), Pidlist :: [pid()], State :: term()) ->
    {ok, NewState :: term()} | {stop, Reason :: term(), NewState :: term()}.
-callback handle_leave(LeavingPid :: pid(), Pidlist :: [pid()], Info :: term(),
                       State :: term()) ->
    {ok, NewState :: term()} | {stop, Reason :: term(), NewState :: term()}.
-callback seed_nodes(State :: term()) -> term().
-callback handle_call(Request :: term(), From :: gen_server:from(), State :: term()) ->
    term().
-callback handle_cast(Request :: term(), State :: term()) -> term().
-callback handle_info(Info :: term(), State :: term()) -> term().
-callback handle_continue(Info :: term(), State :: term()) -> term().
-callback terminate(Reason :: term(), State :: term()) -> term().
-callback code_change(OldVsn :: term(), State :: term(), Extra :: term()) ->
    {ok, NewState :: term()} | {error, Reason :: term()}.
-optional_callbacks([handle_node_joined/3, seed_nodes/1, handle_info/2,
                     handle_continue/2, terminate/2, code_change/3]).

-record(st, {
    mod :: module(),
    mstate :: term(),
    cluster :: term(),
    scope :: atom(),
    %% The group monitor's reference (pg:monitor/2).
    ref :: reference(),
    %% Our monitor of the scope server: without it, no more changes.
    scope_ref :: reference(),
    %% The process holding the group monitor (see start_watcher/2).
    watcher :: pid(),
    %% Member pid => {MonitorRef | self | {down, Info}, Joins}: a pid may
    %% join a group several times; it stays in the group until as many
    %% leaves. {down, Info}: reported left through our monitor while the
    %% group still lists it (not a member for the callbacks; with Info
    %% `noconnection` it comes back when its node reconnects, see nodeup/2).
    members = #{} :: #{pid() => {reference() | self | {down, term()}, pos_integer()}}
}).

%%% ---------------------------------------------------------------------------
%%% API
%%% ---------------------------------------------------------------------------

start(Mod, Args, Opts) ->
    gen_server:start(?MODULE, {Mod, Args}, Opts).
start(Name, Mod, Args, Opts) ->
    gen_server:start(Name, ?MODULE, {Mod, Args}, Opts).
start_link(Mod, Args, Opts) ->
    gen_server:start_link(?MODULE, {Mod, Args}, Opts).
start_link(Name, Mod, Args, Opts) ->
    gen_server:start_link(Name, ?MODULE, {Mod, Args}, Opts).

call(Ref, Request) -> gen_server:call(Ref, Request).
call(Ref, Request, Timeout) -> gen_server:call(Ref, Request, Timeout).
cast(Ref, Request) -> gen_server:cast(Ref, Request).
reply(From, Reply) -> gen_server:reply(From, Reply).
abcast(Name, Request) -> gen_server:abcast(Name, Request).
abcast(Nodes, Name, Request) -> gen_server:abcast(Nodes, Name, Request).
multi_call(Name, Req) -> gen_server:multi_call(Name, Req).
multi_call(Nodes, Name, Req) -> gen_server:multi_call(Nodes, Name, Req).
multi_call(Nodes, Name, Req, Timeout) -> gen_server:multi_call(Nodes, Name, Req, Timeout).
stop(Ref) -> gen_server:stop(Ref).
stop(Ref, Reason, Timeout) -> gen_server:stop(Ref, Reason, Timeout).

%% gen_cluster's shape: {ok, [{Cluster, Pids}]} (gen_cluster keys it by
%% module; the cluster's default name is the module).
plist(Ref) ->
    call(Ref, {'$eq_cluster', plist}).

%% {ok, Pids} when Cluster is Ref's cluster, {ok, undefined} otherwise.
mod_plist(Cluster, Ref) ->
    call(Ref, {'$eq_cluster', mod_plist, Cluster}).

%% The sorted member pids as Ref sees them.
-spec members(gen_server:server_ref()) -> [pid()].
members(Ref) ->
    call(Ref, {'$eq_cluster', members}).

%% The module serving the groups (pg or eq_pg), for tests and tools.
group_module() ->
    ?PG.

%% {Cluster, Scope} of the member Ref.
cluster(Ref) ->
    call(Ref, {'$eq_cluster', cluster}).

%%% ---------------------------------------------------------------------------
%%% gen_server callbacks
%%% ---------------------------------------------------------------------------

init({Mod, Args}) ->
    case Mod:init(Args) of
        {ok, MState} -> init_join(Mod, Args, MState, []);
        {ok, MState, Extra} -> init_join(Mod, Args, MState, [Extra]);
        {stop, _} = Stop -> Stop;
        ignore -> ignore;
        Other -> {stop, {bad_return_value, Other}}
    end.

handle_call({'$eq_cluster', hello}, _From, St) ->
    {reply, {ok, St#st.cluster, St#st.scope, member_list(St)}, St};
handle_call({'$eq_cluster', members}, _From, St) ->
    {reply, member_list(St), St};
handle_call({'$eq_cluster', plist}, _From, St) ->
    {reply, {ok, [{St#st.cluster, member_list(St)}]}, St};
handle_call({'$eq_cluster', mod_plist, C}, _From, #st{cluster = C} = St) ->
    {reply, {ok, member_list(St)}, St};
handle_call({'$eq_cluster', mod_plist, _}, _From, St) ->
    {reply, {ok, undefined}, St};
handle_call({'$eq_cluster', cluster}, _From, St) ->
    {reply, {St#st.cluster, St#st.scope}, St};
handle_call(Request, From, #st{mod = Mod, mstate = S} = St) ->
    wrap(Mod:handle_call(Request, From, S), St).

handle_cast(Msg, #st{mod = Mod, mstate = S} = St) ->
    wrap(Mod:handle_cast(Msg, S), St).

handle_info({Ref, join, _Group, Pids}, #st{ref = Ref} = St) ->
    changes(fun joined/2, Pids, St);
handle_info({Ref, leave, _Group, Pids}, #st{ref = Ref} = St) ->
    Deadline = erlang:monotonic_time(millisecond) + ?DOWN_GRACE_MS,
    changes(fun(P, S) -> left(P, Deadline, S) end, Pids, St);
handle_info({'DOWN', ScopeRef, process, _, Why}, #st{scope_ref = ScopeRef} = St) ->
    {stop, {scope_down, Why}, St};
handle_info({'EXIT', Watcher, Why}, #st{watcher = Watcher} = St) ->
    {stop, {watcher_down, Why}, St};
handle_info({Watcher, nodeup, Node}, #st{watcher = Watcher} = St) ->
    nodeup(Node, St);
handle_info({'DOWN', MRef, process, Pid, Info} = Msg, #st{members = Ms} = St) ->
    case Ms of
        #{Pid := {MRef, N}} ->
            leave_callback(Pid, Info, St#st{members = Ms#{Pid := {{down, Info}, N}}});
        _ ->
            user_info(Msg, St)
    end;
handle_info(Msg, St) ->
    user_info(Msg, St).

handle_continue(Continue, #st{mod = Mod, mstate = S} = St) ->
    wrap(Mod:handle_continue(Continue, S), St).

terminate(Reason, #st{mod = Mod, mstate = S}) ->
    case erlang:function_exported(Mod, terminate, 2) of
        true -> Mod:terminate(Reason, S);
        false -> ok
    end.

code_change(OldVsn, #st{mod = Mod, mstate = S} = St, Extra) ->
    case erlang:function_exported(Mod, code_change, 3) of
        true ->
            case Mod:code_change(OldVsn, S, Extra) of
                {ok, S1} -> {ok, St#st{mstate = S1}};
                Error -> Error
            end;
        false ->
            {ok, St}
    end.

%%% ---------------------------------------------------------------------------
%%% Joining
%%% ---------------------------------------------------------------------------

init_join(Mod, Args, MState, Extra) ->
    Opt = fun(Key, Default) -> option(Args, Key, Default) end,
    Seeds = seed_list(Opt(seed, [])) ++ extra_seeds(Mod, MState),
    Timeout = Opt(join_timeout, ?JOIN_TIMEOUT_MS),
    Own = {Opt(cluster, Mod), Opt(scope, ?PG)},
    case ask_seeds(Seeds, Own, Timeout) of
        {ok, {Cluster, Scope}, Known} ->
            St0 = #st{mod = Mod, mstate = MState, cluster = Cluster, scope = Scope},
            case join_group(St0, Known, Timeout) of
                {ok, St} ->
                    case callback(handle_node_joined, [self(), member_list(St)], St) of
                        {ok, St1} -> list_to_tuple([ok, St1 | Extra]);
                        {stop, Reason, _} -> {stop, Reason}
                    end;
                {error, Reason} ->
                    {stop, Reason}
            end;
        {error, Reason} ->
            {stop, Reason}
    end.

option(Args, Key, Default) when is_list(Args) ->
    case lists:keyfind(Key, 1, Args) of
        {Key, Value} -> Value;
        false -> Default
    end;
option(Args, Key, Default) when is_map(Args) ->
    maps:get(Key, Args, Default);
option(_Args, _Key, Default) ->
    Default.

%% A seed list: one seed or a list of seeds (a name list of one element is
%% not a seed: `[]` means none).
seed_list(Seeds) when is_list(Seeds) -> Seeds;
seed_list(undefined) -> [];
seed_list(Seed) -> [Seed].

extra_seeds(Mod, MState) ->
    case erlang:function_exported(Mod, seed_nodes, 1) of
        true -> seed_list(Mod:seed_nodes(MState));
        false -> []
    end.

%% The cluster and scope to join, and the members to wait for.
ask_seeds([], Own, _Timeout) ->
    {ok, Own, []};
ask_seeds(Seeds, Own, Timeout) ->
    case first_answer(Seeds, Own, Timeout) of
        {ok, _, _} = Found -> Found;
        none -> {error, {no_seed, Seeds}}
    end.

%% Seeds that are this process or this node (gen_cluster users hand every
%% node the same seed list) are skipped; if nothing else answers, they count
%% as an answer: the process starts the cluster (or joins what its node's
%% group already holds).
first_answer(Seeds, Own, Timeout) ->
    first_answer(Seeds, Own, Timeout, none).

first_answer([], Own, _Timeout, SawSelf) ->
    case SawSelf of
        self -> {ok, Own, []};
        none -> none
    end;
first_answer([Seed | Rest], Own, Timeout, SawSelf) ->
    case ask_seed(Seed, Own, Timeout) of
        {ok, _, _} = Found -> Found;
        self -> first_answer(Rest, Own, Timeout, self);
        error -> first_answer(Rest, Own, Timeout, SawSelf)
    end.

%% A node seed: connect, then read its group members (erpc). Anything
%% else names a member: ask it.
ask_seed(Node, _Own, _Timeout) when Node =:= node() ->
    self;
ask_seed(Node, {Cluster, Scope} = Own, Timeout) when is_atom(Node) ->
    case is_node_name(Node) of
        true ->
            case net_kernel:connect_node(Node) of
                true ->
                    Group = ?GROUP(Cluster),
                    Known = try erpc:call(Node, ?PG, get_members, [Scope, Group], Timeout)
                            catch _:_ -> []
                            end,
                    {ok, Own, pids(Known)};
                _ ->
                    error
            end;
        false ->
            ask_member(Node, Own, Timeout)
    end;
ask_seed(Self, _Own, _Timeout) when Self =:= self() ->
    self;
ask_seed(Seed, Own, Timeout) ->
    ask_member(Seed, Own, Timeout).

%% The member's cluster and scope win over the joiner's options: joining
%% through a member means joining its cluster.
ask_member(Seed, _Own, Timeout) ->
    try gen_server:call(Seed, {'$eq_cluster', hello}, Timeout) of
        {ok, Cluster, Scope, Known} when is_atom(Scope) ->
            {ok, {Cluster, Scope}, pids(Known)};
        _ ->
            error
    catch
        exit:{calling_self, _} -> self;
        _:_ -> error
    end.

is_node_name(Atom) ->
    lists:member($@, atom_to_list(Atom)).

pids(List) when is_list(List) -> [P || P <- List, is_pid(P)];
pids(_) -> [].

%% Monitor the group, join it, and wait (up to Timeout) until the local
%% group server knows every member the seed knew that is still alive.
join_group(#st{scope = Scope, cluster = Cluster} = St0, Known, Timeout) ->
    Group = ?GROUP(Cluster),
    ScopeRef = erlang:monitor(process, Scope),
    case start_watcher(Scope, Group) of
        {ok, Watcher, Ref, Pids} ->
            ok = ?PG:join(Scope, Group, self()),
            St = lists:foldl(fun add/2, St0#st{ref = Ref, scope_ref = ScopeRef,
                                               watcher = Watcher}, Pids),
            Awaited = maps:from_list([{P, erlang:monitor(process, P)}
                                      || P <- lists:usort(Known), P =/= self(),
                                         not maps:is_key(P, St#st.members)]),
            Deadline = erlang:monotonic_time(millisecond) + Timeout,
            {ok, await_known(wait_self(St, Deadline), Awaited, Group, Deadline)};
        {error, _} = Error ->
            Error
    end.

%% The group monitor is held by a watcher process that relays the group's
%% messages to the member unchanged (so in order), and `{Watcher, nodeup,
%% Node}` for every node that connects (net_kernel:monitor_nodes/1 taken
%% here, so the callback module's own node messages are untouched). A
%% separate process keeps group monitors and member monitors apart (OTP pg
%% before 26.2 crashed its scope when one process held both,
%% erlang/otp#7625). Linked: the member goes with it; it exits when the
%% member does.
start_watcher(Scope, Group) ->
    Member = self(),
    Watcher = spawn_link(fun() -> watch(Member, Scope, Group) end),
    receive
        {Watcher, {error, _} = Error} -> Error;
        {Watcher, {Ref, Pids}} -> {ok, Watcher, Ref, Pids}
    end.

%% {error, {no_scope, Scope}} when the scope is not running here.
watch(Member, Scope, Group) ->
    MRef = erlang:monitor(process, Member),
    try ?PG:monitor(Scope, Group) of
        {Ref, Pids} ->
            ok = net_kernel:monitor_nodes(true),
            Member ! {self(), {Ref, Pids}},
            relay(Member, MRef)
    catch
        _:_ -> Member ! {self(), {error, {no_scope, Scope}}}
    end.

relay(Member, MRef) ->
    receive
        {'DOWN', MRef, process, Member, _} -> ok;
        {nodeup, Node} -> Member ! {self(), nodeup, Node}, relay(Member, MRef);
        {nodedown, _} -> relay(Member, MRef);
        Msg -> Member ! Msg, relay(Member, MRef)
    end.

%% Our own join is reported by the group server too (pg notifies before
%% join/3 returns); take it before waiting for others.
wait_self(#st{members = Ms} = St, _Deadline) when is_map_key(self(), Ms) ->
    St;
wait_self(#st{ref = Ref} = St, Deadline) ->
    receive
        {Ref, join, _, Pids} -> wait_self(lists:foldl(fun add/2, St, Pids), Deadline);
        {Ref, leave, _, Pids} -> wait_self(lists:foldl(fun remove/2, St, Pids), Deadline)
    after max(0, Deadline - erlang:monotonic_time(millisecond)) ->
        add(self(), St)
    end.

await_known(St, Awaited, _Group, _Deadline) when map_size(Awaited) =:= 0 ->
    St;
await_known(#st{ref = Ref} = St, Awaited, Group, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {Ref, join, _, Pids} ->
            St1 = lists:foldl(fun add/2, St, Pids),
            await_known(St1, drop_known(Awaited, St1), Group, Deadline);
        {Ref, leave, _, Pids} ->
            await_known(lists:foldl(fun remove/2, St, Pids), Awaited, Group, Deadline);
        {'DOWN', MRef, process, P, _} when is_map_key(P, Awaited),
                                            map_get(P, Awaited) =:= MRef ->
            await_known(St, maps:remove(P, Awaited), Group, Deadline)
    after Left ->
        _ = [erlang:demonitor(M, [flush]) || M <- maps:values(Awaited)],
        St
    end.

drop_known(Awaited, #st{members = Ms}) ->
    maps:filter(fun(P, MRef) ->
                        case maps:is_key(P, Ms) of
                            true -> erlang:demonitor(MRef, [flush]), false;
                            false -> true
                        end
                end, Awaited).

%% Silent bookkeeping (no callback): used while joining.
add(P, #st{members = Ms} = St) ->
    case Ms of
        #{P := {M, N}} -> St#st{members = Ms#{P := {M, N + 1}}};
        _ when P =:= self() -> St#st{members = Ms#{P => {self, 1}}};
        _ -> St#st{members = Ms#{P => {erlang:monitor(process, P), 1}}}
    end.

remove(P, #st{members = Ms} = St) ->
    case Ms of
        #{P := {M, 1}} -> unmonitor(M), St#st{members = maps:remove(P, Ms)};
        #{P := {M, N}} -> St#st{members = Ms#{P := {M, N - 1}}};
        _ -> St
    end.

unmonitor(MRef) when is_reference(MRef) -> erlang:demonitor(MRef, [flush]);
unmonitor(_SelfOrDown) -> true.

%%% ---------------------------------------------------------------------------
%%% Changes once in
%%% ---------------------------------------------------------------------------

%% Applies one group event's pids in order, a callback per real change;
%% stops at the first {stop, ...}.
changes(_Fun, [], St) ->
    {noreply, St};
changes(Fun, [P | Ps], St) ->
    case Fun(P, St) of
        {ok, St1} -> changes(Fun, Ps, St1);
        {stop, Reason, St1} -> {stop, Reason, St1}
    end.

%% Our own pid is a member from handle_node_joined on, whatever is done to
%% the group by hand (see left/2).
joined(P, St) when P =:= self() ->
    {ok, St};
joined(P, #st{members = Ms} = St) ->
    case maps:is_key(P, Ms) of
        true -> {ok, add(P, St)};   % one more join (or of a pid reported left)
        false -> callback(handle_join, [P, member_list(add(P, St))], add(P, St))
    end.

%% The group says P left. If that was its last join, its DOWN, when it
%% died, is usually here already (one hop against the group's several);
%% when it is not, wait for it until Deadline (one grace per leave message,
%% whatever its length): a lost connection, for one, reaches the group
%% server and our monitor in either order. The DOWN's reason is the Info;
%% none by then: `left`.
left(P, Deadline, #st{members = Ms} = St) ->
    case Ms of
        #{P := {self, _}} ->
            {ok, St};   % someone made us leave by hand: we stay in our view
        #{P := {{down, _}, _}} ->
            {ok, remove(P, St)};   % reported already, through its DOWN
        #{P := {MRef, 1}} ->
            Wait = max(0, Deadline - erlang:monotonic_time(millisecond)),
            Info = receive {'DOWN', MRef, process, P, Why} -> Why after Wait -> left end,
            erlang:demonitor(MRef, [flush]),
            leave_callback_(P, Info, St#st{members = maps:remove(P, Ms)});
        #{P := _} ->
            {ok, remove(P, St)};
        _ ->
            {ok, St}    % already gone through its DOWN
    end.

leave_callback(P, Info, St) ->
    case leave_callback_(P, Info, St) of
        {ok, St1} -> {noreply, St1};
        {stop, _, _} = Stop -> Stop
    end.

leave_callback_(P, Info, St) ->
    callback(handle_leave, [P, member_list(St), Info], St).

member_list(#st{members = Ms}) ->
    lists:sort([P || {P, {M, _}} <- maps:to_list(Ms), not is_tuple(M)]).

%% Node is connected (again). Members of it that our monitor reported
%% gone with `noconnection` while the group kept them (eq_pg's members come
%% from the Rust hubs, which still reached that node: a cut between two
%% BEAM nodes only) are members again: a handle_join each, sorted. A pid
%% whose node really went is dropped by the group's leave meanwhile.
nodeup(Node, #st{members = Ms} = St) ->
    Back = lists:sort([P || {P, {{down, noconnection}, _}} <- maps:to_list(Ms),
                             node(P) =:= Node]),
    changes(fun rejoined/2, Back, St).

rejoined(P, #st{members = Ms} = St) ->
    case Ms of
        #{P := {{down, noconnection}, N}} ->
            St1 = St#st{members = Ms#{P := {erlang:monitor(process, P), N}}},
            callback(handle_join, [P, member_list(St1)], St1);
        _ ->
            {ok, St}
    end.

%% Calls Mod:Fun(Args ++ [MState]); {ok, St} | {stop, Reason, St}.
callback(handle_node_joined = Fun, Args, #st{mod = Mod} = St) ->
    case erlang:function_exported(Mod, Fun, 3) of
        true -> callback_(Fun, Args, St);
        false -> {ok, St}
    end;
callback(Fun, Args, St) ->
    callback_(Fun, Args, St).

callback_(Fun, Args, #st{mod = Mod, mstate = S} = St) ->
    case apply(Mod, Fun, Args ++ [S]) of
        {ok, S1} -> {ok, St#st{mstate = S1}};
        {stop, Reason, S1} -> {stop, Reason, St#st{mstate = S1}};
        Other -> {stop, {bad_return_value, Other}, St}
    end.

user_info(Msg, #st{mod = Mod, mstate = S} = St) ->
    case erlang:function_exported(Mod, handle_info, 2) of
        true -> wrap(Mod:handle_info(Msg, S), St);
        false -> {noreply, St}
    end.

%% A gen_server return of the callback module, with our state around its.
wrap({reply, R, S}, St) -> {reply, R, St#st{mstate = S}};
wrap({reply, R, S, X}, St) -> {reply, R, St#st{mstate = S}, X};
wrap({noreply, S}, St) -> {noreply, St#st{mstate = S}};
wrap({noreply, S, X}, St) -> {noreply, St#st{mstate = S}, X};
wrap({stop, Why, S}, St) -> {stop, Why, St#st{mstate = S}};
wrap({stop, Why, R, S}, St) -> {stop, Why, R, St#st{mstate = S}};
wrap(Other, St) -> {stop, {bad_return_value, Other}, St}.

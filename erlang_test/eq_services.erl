%% eq_services: helpers that tests/services_contract.rs (and the erl_quorum
%% fault tests) call on BEAM nodes running the erl_quorum application.
%%
%% One module plays every part a test needs, so a test reads as a list of
%% plain calls:
%%
%%  * an echo gen_server, a gen_statem and a supervisor that start under any
%%    name (`{via, rust_registry, Name}`, `{via, paxtor_lock, Key}`, ...);
%%    init/1 tells them apart by its argument (no -behaviour attributes: the
%%    three behaviours share init/1, which the compiler would flag);
%%  * holders: unlinked processes that run a fun (take a lock, register a
%%    name), keep its result, collect the messages they get and stay alive
%%    until stopped or killed;
%%  * fifo/3: blocked lockers queued in a known order, with monotonic
%%    timestamps of when each one got the lock and let it go;
%%  * loop workers that repeat a call until told to stop, for failover runs.
%%
%% All timestamps are erlang:monotonic_time(microsecond) on the node.
-module(eq_services).

%% The echo gen_server.
-export([start_server/2, start_server_link/2, via/1]).
%% The gen_statem.
-export([start_statem/2]).
%% The supervisor.
-export([start_sup/2, start_child/1]).
%% Holders.
-export([holder/1, spawn_holder/1, result/1, run_in/2, messages/1,
         stop/2, kill/1, is_blocked/1]).
%% Contention.
-export([fifo/3, lock_once/1]).
%% Loops.
-export([start_loop/2, loop_calls/1, stop_loop/2]).
%% Small things.
-export([wait_status/2, status_of/1, start_app/2]).
%% Callbacks (gen_server, gen_statem, supervisor).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2,
         callback_mode/0, handle_event/4]).

-define(RESULT, '$eq_services_result').

%%% ---------------------------------------------------------------------------
%%% The echo gen_server
%%% ---------------------------------------------------------------------------

%% `{via, rust_registry, Name}`.
via(Name) -> {via, rust_registry, Name}.

%% Starts the echo server (not linked) under ServerName, any name gen
%% accepts. Its state starts as State.
%%   call {echo, X} -> X;  call get -> State;  call whoami -> self();
%%   cast {set, X}: State := X;  info {From, X} with a pid From: From ! {echo, X}.
start_server(ServerName, State) ->
    gen_server:start(server_name(ServerName), ?MODULE, {server, State}, []).

start_server_link(ServerName, State) ->
    gen_server:start_link(server_name(ServerName), ?MODULE, {server, State}, []).

%% A bare term is taken as a rust_registry name.
server_name({via, _, _} = Name) -> Name;
server_name({local, _} = Name) -> Name;
server_name({global, _} = Name) -> Name;
server_name(Name) -> via(Name).

%%% ---------------------------------------------------------------------------
%%% The gen_statem
%%% ---------------------------------------------------------------------------

%% Starts (not linked) a gen_statem in state `idle` with Data.
%%   call get -> {StateName, Data};  cast {go, S}: moves to state S.
start_statem(Name, Data) ->
    gen_statem:start(server_name(Name), ?MODULE, {statem, Data}, []).

callback_mode() -> handle_event_function.

handle_event({call, From}, get, State, Data) ->
    {keep_state_and_data, [{reply, From, {State, Data}}]};
handle_event({call, From}, whoami, _State, _Data) ->
    {keep_state_and_data, [{reply, From, self()}]};
handle_event(cast, {go, State}, _OldState, Data) ->
    {next_state, State, Data};
handle_event(_Type, _Event, _State, _Data) ->
    keep_state_and_data.

%%% ---------------------------------------------------------------------------
%%% The supervisor
%%% ---------------------------------------------------------------------------

%% Starts a one_for_one supervisor under SupName whose one child, id
%% `child`, is the echo server started with start_link under ChildName
%% (state `child`). Not linked to the caller. Returns what supervisor
%% start_link returns.
start_sup(SupName, ChildName) ->
    case supervisor:start_link(server_name(SupName), ?MODULE, {sup, ChildName}) of
        {ok, Pid} = Ok -> unlink(Pid), Ok;
        Other -> Other
    end.

start_child(ChildName) ->
    start_server_link(ChildName, child).

%%% ---------------------------------------------------------------------------
%%% Callbacks
%%% ---------------------------------------------------------------------------

init({server, State}) ->
    {ok, State};
init({statem, Data}) ->
    {ok, idle, Data};
init({sup, ChildName}) ->
    Flags = #{strategy => one_for_one, intensity => 10, period => 10},
    Child = #{id => child, start => {?MODULE, start_child, [ChildName]},
              restart => permanent, type => worker},
    {ok, {Flags, [Child]}}.

handle_call({echo, X}, _From, State) -> {reply, X, State};
handle_call(get, _From, State) -> {reply, State, State};
handle_call(whoami, _From, State) -> {reply, self(), State};
handle_call(Other, _From, State) -> {reply, {unknown_call, Other}, State}.

handle_cast({set, X}, _State) -> {noreply, X};
handle_cast(_Other, State) -> {noreply, State}.

handle_info({From, X}, State) when is_pid(From) ->
    From ! {echo, X},
    {noreply, State};
handle_info(_Other, State) ->
    {noreply, State}.

%%% ---------------------------------------------------------------------------
%%% Holders
%%% ---------------------------------------------------------------------------

%% Spawns an unlinked process that runs Fun() (an exception becomes
%% {caught, Class, Reason}), keeps the result and then stays alive,
%% collecting the messages it gets, until stop/2 or kill/1. Returns its pid
%% at once; result/1 tells when Fun has returned.
spawn_holder(Fun) when is_function(Fun, 0) ->
    spawn(fun() ->
                  R = try Fun() catch C:E -> {caught, C, E} end,
                  put(?RESULT, {done, R, erlang:monotonic_time(microsecond)}),
                  holder_loop([])
          end).

%% spawn_holder/1 and wait (up to 30 s) for Fun: returns {Result, Pid}.
holder(Fun) ->
    Pid = spawn_holder(Fun),
    ok = eq_peer:wait_until(fun() -> result(Pid) =/= pending end, 30000),
    {done, R, _} = result(Pid),
    {R, Pid}.

%% pending (Fun has not returned), {done, Result, DoneAtUs}, or dead. Read from the holder's process dictionary: works while
%% the holder is still inside Fun (blocked in a lock, say).
result(Pid) ->
    case erlang:process_info(Pid, dictionary) of
        undefined -> dead;
        {dictionary, D} -> proplists:get_value(?RESULT, D, pending)
    end.

%% Runs Fun() inside the holder (after its first fun returned) and returns
%% its result (an exception becomes {caught, Class, Reason}).
run_in(Pid, Fun) ->
    call_holder(Pid, {run, Fun}).

%% The messages the holder got (besides ours), oldest first.
messages(Pid) ->
    call_holder(Pid, messages).

%% Stops the holder with Reason (normal, shutdown, ...) and waits until it
%% is gone; returns the reason its monitor saw.
stop(Pid, Reason) ->
    Mref = erlang:monitor(process, Pid),
    Pid ! {?RESULT, stop, Reason},
    wait_down(Mref).

kill(Pid) ->
    Mref = erlang:monitor(process, Pid),
    exit(Pid, kill),
    wait_down(Mref).

wait_down(Mref) ->
    receive {'DOWN', Mref, process, _, Why} -> Why
    after 10000 -> erlang:demonitor(Mref, [flush]), still_alive
    end.

%% Whether Pid is waiting in a receive: for a process inside
%% rust_quorum:call/1 that means its request has been sent (gen:do_call
%% monitors, sends and only then receives).
is_blocked(Pid) ->
    erlang:process_info(Pid, status) =:= {status, waiting}.

call_holder(Pid, Request) ->
    Mref = erlang:monitor(process, Pid),
    Pid ! {?RESULT, {self(), Mref}, Request},
    receive
        {Mref, Reply} -> erlang:demonitor(Mref, [flush]), Reply;
        {'DOWN', Mref, process, _, Why} -> {holder_down, Why}
    after 10000 -> erlang:demonitor(Mref, [flush]), timeout
    end.

holder_loop(Msgs) ->
    receive
        {?RESULT, stop, Reason} ->
            exit(Reason);
        {?RESULT, {From, Tag}, {run, Fun}} ->
            R = try Fun() catch C:E -> {caught, C, E} end,
            From ! {Tag, R},
            holder_loop(Msgs);
        {?RESULT, {From, Tag}, messages} ->
            From ! {Tag, lists:reverse(Msgs)},
            holder_loop(Msgs);
        Msg ->
            holder_loop([Msg | Msgs])
    end.

%%% ---------------------------------------------------------------------------
%%% Contention: blocked lockers served in arrival order
%%% ---------------------------------------------------------------------------

%% A holder takes the paxtor lock Key; then N lockers call paxtor:lock(Key)
%% one after another, each started only once the one before it is blocked
%% in its call (so their requests reach the Rust node in the order 1..N).
%% Then the holder exits. Each locker, once it has the lock, records
%% {I, AcquiredAtUs, ReleasedAtUs} after holding it HoldMs, and exits.
%% Returns {HolderReleasedAtUs, Records} with Records in the order the
%% lockers got the lock (by AcquiredAtUs), or {error, Why}.
fifo(Key, N, HoldMs) ->
    Self = self(),
    Tag = make_ref(),
    {acquired, Holder} = holder(fun() -> paxtor:lock(Key) end),
    Lockers = [begin
                   P = spawn(fun() ->
                                     acquired = paxtor:lock(Key),
                                     T1 = erlang:monotonic_time(microsecond),
                                     timer:sleep(HoldMs),
                                     %% Taken just before the exit that
                                     %% releases the lock.
                                     T2 = erlang:monotonic_time(microsecond),
                                     Self ! {Tag, I, T1, T2}
                             end),
                   ok = eq_peer:wait_until(fun() -> is_blocked(P) end, 5000),
                   P
               end || I <- lists:seq(1, N)],
    %% Every locker is still waiting: the holder holds the lock.
    true = lists:all(fun is_blocked/1, Lockers),
    receive {Tag, _, _, _} = Early -> erlang:error({got_the_lock_early, Early})
    after 0 -> ok
    end,
    ReleasedAt = erlang:monotonic_time(microsecond),
    _ = stop(Holder, normal),
    Records = [receive {Tag, I, T1, T2} -> {I, T1, T2}
               after 30000 -> {I, timeout, timeout}
               end || I <- lists:seq(1, N)],
    {ReleasedAt, lists:keysort(2, Records)}.

%% paxtor:lock(Key) in a new process that exits (releasing the lock) as
%% soon as it has the answer: returns the answer, or {down, Why} if that
%% process died first.
lock_once(Key) ->
    {Pid, Mref} = spawn_monitor(fun() -> exit({'$eq_lock_once', paxtor:lock(Key)}) end),
    receive
        {'DOWN', Mref, process, Pid, {'$eq_lock_once', R}} -> R;
        {'DOWN', Mref, process, Pid, Why} -> {down, Why}
    end.

%%% ---------------------------------------------------------------------------
%%% Loops for failover runs
%%% ---------------------------------------------------------------------------

%% Starts an unlinked process that calls Fun(I) for I = 1, 2, ... (pausing
%% PauseMs between calls) until stop_loop/2, recording for each call
%% {I, Result, rust_quorum:current_node()} (an exception becomes
%% {caught, Class, Reason}). Returns its pid.
start_loop(Fun, PauseMs) when is_function(Fun, 1) ->
    spawn(fun() -> loop(Fun, PauseMs, 1, []) end).

loop(Fun, PauseMs, I, Acc) ->
    receive
        {?RESULT, {From, Tag}, stop} ->
            From ! {Tag, lists:reverse(Acc)}
    after 0 ->
            R = try Fun(I) catch C:E -> {caught, C, E} end,
            Rec = {I, R, rust_quorum:current_node()},
            put(?RESULT, I),
            timer:sleep(PauseMs),
            loop(Fun, PauseMs, I + 1, [Rec | Acc])
    end.

%% How many calls the loop has finished so far.
loop_calls(Pid) ->
    case erlang:process_info(Pid, dictionary) of
        {dictionary, Dict} -> proplists:get_value(?RESULT, Dict, 0);
        undefined -> 0
    end.

%% Stops the loop after the call it is in, and returns its records (or
%% timeout after TimeoutMs).
stop_loop(Pid, TimeoutMs) ->
    Mref = erlang:monitor(process, Pid),
    Pid ! {?RESULT, {self(), Mref}, stop},
    receive
        {Mref, Records} -> erlang:demonitor(Mref, [flush]), Records;
        {'DOWN', Mref, process, _, Why} -> {loop_down, Why}
    after TimeoutMs -> erlang:demonitor(Mref, [flush]), timeout
    end.

%%% ---------------------------------------------------------------------------
%%% Small things
%%% ---------------------------------------------------------------------------

%% Loads the erl_quorum application (first: loading resets an environment
%% set before it), sets `rust_nodes` to RustNodes, starts it, and waits up
%% to TimeoutMs until its guard has subscribed to one of them. Returns the
%% node it subscribed to.
start_app(RustNodes, TimeoutMs) when is_list(RustNodes) ->
    case application:load(erl_quorum) of
        ok -> ok;
        {error, {already_loaded, erl_quorum}} -> ok
    end,
    ok = application:set_env(erl_quorum, rust_nodes, RustNodes),
    {ok, _} = application:ensure_all_started(erl_quorum),
    Subscribed = fun() -> maps:get(subscribed, rust_quorum:status()) end,
    ok = eq_peer:wait_until(fun() -> Subscribed() =/= undefined end, TimeoutMs),
    Subscribed().

%% The status proplist of the erl_quorum service on Rust node Node.
status_of(Node) ->
    gen_server:call({erl_quorum, Node}, status, 5000).

%% Waits until the erl_quorum service on Node has a confirmed session.
wait_status(Node, TimeoutMs) ->
    eq_peer:wait_until(
      fun() -> proplists:get_value(session_valid_ms, status_of(Node), 0) > 0 end,
      TimeoutMs).

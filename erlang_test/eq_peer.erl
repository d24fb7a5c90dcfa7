%% eq_peer: a BEAM node that the Rust tests drive over stdin.
%%
%% Started as
%%     erl -noshell -name NAME -setcookie COOKIE -pa DIR -run eq_peer main
%% it reads Erlang expressions from stdin, one per line (the trailing `.` is
%% optional), evaluates each in a persistent binding environment (so `X = 1.`
%% and then `X + 1.` works) and answers every line with exactly one framed line
%% on stdout:
%%
%%     <<EQ>>SEQ ok TERM<<END>>        the value, printed with ~0p (one line, no truncation)
%%     <<EQ>>SEQ error TERM<<END>>     {Class, Reason, Stacktrace} | {syntax_error, Text} | ...
%%
%% SEQ is the 1-based number of the input line (every line counts, blank ones
%% too, and gets an answer), so the Rust side can tell a late answer to an
%% expression it already gave up on from the answer it is waiting for. At
%% startup, before any input, the node prints
%%
%%     <<EQ>>0 ok {eq_peer_ready,OsPid,Node,OtpRelease}<<END>>
%%
%% which tells the Rust side the real beam.smp pid (the erl27 wrapper goes
%% through unshare + chroot, so the child pid it spawned is not a safe guess)
%% and the full node name (needed for -sname nodes).
%%
%% Two processes do the work:
%%  * the reader blocks in io:get_line/2; on EOF (the Rust test dropped the
%%    node or died) the node halts once the queued lines are answered, and
%%    after at most EOF_GRACE_MS even if an evaluation hangs, so test runs
%%    never leak BEAM nodes;
%%  * the evaluator (registered as `eq_peer`) evaluates the lines in its own
%%    process, so processes spawned by expressions stay alive between lines and
%%    `self()` is stable. It traps exits, so a linked process that dies does not
%%    take the loop down; the 'EXIT' messages stay in its mailbox for tests to
%%    inspect with recv/1 or flush/0.
%%
%% Helpers for tests: wait_until/2, start_echo/1, start_sink/1,
%% sink_messages/1, recv/1, flush/0.
-module(eq_peer).
-behaviour(gen_server).

-export([main/0, main/1]).
-export([wait_until/2, start_echo/1, start_sink/1, sink_messages/1, recv/1, flush/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

%% The tag the reader uses when it hands a line to the evaluator. recv/1 and
%% flush/0 skip these so a test cannot swallow a queued input line.
-define(LINE_TAG, '$eq_peer_line').

%% How long a node whose stdin closed may go on finishing queued lines.
-define(EOF_GRACE_MS, 2000).

%%% ---------------------------------------------------------------------------
%%% Entry point and the two loops
%%% ---------------------------------------------------------------------------

%% `-run eq_peer main` calls main/0 (or main/1 with [] on some releases);
%% `-s eq_peer main` calls main/0. Both return at once so that init can go on
%% with any later -s/-eval flags; the loops live in their own processes.
main(_Args) -> main().

main() ->
    %% Unicode in and out: input lines arrive as UTF-8 binaries and the output
    %% is UTF-8 on every release (OTP 25 defaults stdout to latin1, 26+ to
    %% unicode, which would make the same term print differently).
    ok = io:setopts(standard_io, [binary, {encoding, unicode}]),
    Ready = {eq_peer_ready, os:getpid(), node(), erlang:system_info(otp_release)},
    reply(0, ok, Ready),
    Evaluator = spawn(fun() -> evaluator_init() end),
    _Reader = spawn(fun() -> reader(Evaluator, 1) end),
    ok.

reader(Evaluator, Seq) ->
    case io:get_line(standard_io, "") of
        Line when is_binary(Line) ->
            Evaluator ! {?LINE_TAG, Seq, Line},
            reader(Evaluator, Seq + 1);
        _EofOrError ->
            %% stdin closed: the test that owns this node is gone or done.
            %% The evaluator answers the lines already queued and then halts;
            %% if it hangs in an expression, halt anyway after a grace period.
            Evaluator ! {?LINE_TAG, eof, eof},
            timer:sleep(?EOF_GRACE_MS),
            erlang:halt(0)
    end.

evaluator_init() ->
    true = register(eq_peer, self()),
    process_flag(trap_exit, true),
    evaluator(erl_eval:new_bindings()).

evaluator(Bindings0) ->
    receive
        {?LINE_TAG, eof, eof} ->
            erlang:halt(0);
        {?LINE_TAG, Seq, Line} ->
            Bindings = case eval_line(Line, Bindings0) of
                           {ok, Value, B} -> reply(Seq, ok, Value), B;
                           {error, Why} -> reply(Seq, error, Why), Bindings0
                       end,
            evaluator(Bindings)
    end.

%% One line may hold several dot-terminated forms ("X = 1. X + 1."); they are
%% evaluated in order and the last value is the answer. A missing final dot is
%% added, so "1 + 1" and "1 + 1." are the same.
eval_line(Line, Bindings) ->
    Text = unicode:characters_to_list(Line),
    case erl_scan:string(Text) of
        {ok, [], _} ->
            {error, no_expression};
        {ok, Tokens, EndLoc} ->
            eval_forms(split_forms(add_dot(Tokens, EndLoc)), Bindings);
        {error, {_Loc, Mod, Desc}, _} ->
            {error, {syntax_error, lists:flatten(Mod:format_error(Desc))}}
    end.

add_dot(Tokens, EndLoc) ->
    case lists:last(Tokens) of
        {dot, _} -> Tokens;
        _ -> Tokens ++ [{dot, EndLoc}]
    end.

split_forms(Tokens) -> split_forms(Tokens, [], []).

split_forms([], [], Acc) -> lists:reverse(Acc);
split_forms([{dot, _} = Dot | Rest], Cur, Acc) ->
    split_forms(Rest, [], [lists:reverse([Dot | Cur]) | Acc]);
split_forms([T | Rest], Cur, Acc) ->
    split_forms(Rest, [T | Cur], Acc).

eval_forms([Form | More], Bindings) ->
    case erl_parse:parse_exprs(Form) of
        {ok, Exprs} ->
            try erl_eval:exprs(Exprs, Bindings) of
                {value, Value, NewBindings} when More =:= [] ->
                    {ok, Value, NewBindings};
                {value, _Value, NewBindings} ->
                    eval_forms(More, NewBindings)
            catch
                Class:Reason:Stack ->
                    {error, {Class, Reason, Stack}}
            end;
        {error, {_Loc, Mod, Desc}} ->
            {error, {syntax_error, lists:flatten(Mod:format_error(Desc))}}
    end.

%% One io request per answer, so the frame is never interleaved with output
%% from other processes (it may still follow text another process printed
%% without a newline; the Rust side looks for <<EQ>> anywhere in a line).
%% ~0p prints on one line and, unlike ~P, never truncates.
reply(Seq, Status, Term) ->
    Printed = io_lib:format("~0p", [Term]),
    io:put_chars(standard_io,
                 ["<<EQ>>", integer_to_list(Seq), " ", atom_to_list(Status), " ",
                  Printed, "<<END>>\n"]).

%%% ---------------------------------------------------------------------------
%%% Helpers for tests
%%% ---------------------------------------------------------------------------

%% Polls Fun() every 20 ms until it returns true; returns ok. After TimeoutMs
%% it raises error({wait_until_timeout, TimeoutMs, Last}) where Last is the
%% last value (or {Class, Reason} exception) Fun produced, so the Rust side
%% gets an Err that says what was seen instead of a bare `false`.
wait_until(Fun, TimeoutMs) when is_function(Fun, 0), is_integer(TimeoutMs) ->
    Deadline = erlang:monotonic_time(millisecond) + TimeoutMs,
    wait_until(Fun, TimeoutMs, Deadline).

wait_until(Fun, TimeoutMs, Deadline) ->
    Last = try Fun() catch Class:Reason -> {Class, Reason} end,
    case Last of
        true ->
            ok;
        _ ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true -> erlang:error({wait_until_timeout, TimeoutMs, Last});
                false -> timer:sleep(20), wait_until(Fun, TimeoutMs, Deadline)
            end
    end.

%% A locally registered echo gen_server, not linked to the caller:
%%   gen_server:call({Name, Node}, X) -> X
%%   {Name, Node} ! {Pid, X}           -> Pid ! {echo, X}
%% the same contract as the crate's Rust example echo server, so tests and
%% benchmarks can treat the two alike.
start_echo(Name) when is_atom(Name) ->
    gen_server:start({local, Name}, ?MODULE, echo, []).

%% A registered process that keeps every message it receives, in order;
%% sink_messages(Name) returns them. For checking what a Rust node sent.
start_sink(Name) when is_atom(Name) ->
    gen_server:start({local, Name}, ?MODULE, sink, []).

sink_messages(Name) ->
    gen_server:call(Name, '$eq_sink_messages').

%% Receives one message sent to the evaluator process (`eq_peer` on this node,
%% or self() in an expression): the message, or `timeout` after TimeoutMs.
recv(TimeoutMs) ->
    receive
        Msg when not is_tuple(Msg); tuple_size(Msg) =/= 3; element(1, Msg) =/= ?LINE_TAG ->
            Msg
    after TimeoutMs -> timeout
    end.

%% Everything now in the evaluator's mailbox (except queued input lines).
flush() ->
    case recv(0) of
        timeout -> [];
        Msg -> [Msg | flush()]
    end.

%%% gen_server callbacks shared by the echo server and the sink.

init(echo) -> {ok, echo};
init(sink) -> {ok, {sink, []}}.

handle_call('$eq_sink_messages', _From, {sink, Msgs} = S) ->
    {reply, lists:reverse(Msgs), S};
handle_call(X, _From, echo) ->
    {reply, X, echo};
handle_call(X, _From, {sink, Msgs}) ->
    {reply, ok, {sink, [{call, X} | Msgs]}}.

handle_cast(X, {sink, Msgs}) -> {noreply, {sink, [{cast, X} | Msgs]}};
handle_cast(_X, echo) -> {noreply, echo}.

handle_info({Pid, X}, echo) when is_pid(Pid) ->
    Pid ! {echo, X},
    {noreply, echo};
handle_info(_Other, echo) ->
    {noreply, echo};
handle_info(X, {sink, Msgs}) ->
    {noreply, {sink, [X | Msgs]}}.

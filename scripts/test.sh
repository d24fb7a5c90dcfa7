#!/usr/bin/env bash
# The project's test command (the one the README names; CI runs it via .ci/run).
#
#   scripts/test.sh                   install what's missing, then run every test
#   scripts/test.sh -- FILTER...      same, passing FILTER... to both cargo runs
#   scripts/test.sh --harness-only    only tests/harness_smoke.rs, compiled with
#                                     rustc directly, without the crate: checks
#                                     the Erlang setup and the harness while src/
#                                     doesn't build
#
# On a fresh machine it installs Debian's Erlang/OTP 25, Elixir, rebar3 (the
# escript alone: see scripts/lib.sh) and iproute2, sets up OTP 27 from
# ../shared/tools/otp27 and starts epmd. Then:
#   pass 1: EQ_OTP=25 cargo test            unit, integration and doc tests
#   pass 2: EQ_OTP=27 cargo test --test '*' the integration tests again (tests/*.rs:
#           the only tests that start BEAM nodes, through tests/common; unit and
#           doc tests don't look at EQ_OTP, so running them twice proves nothing)
#   pass 3: scripts/fuzz.sh -t 10           every fuzz target for 10 s (EQ_FUZZ_SECS;
#           0 skips it); longer runs: scripts/fuzz.sh --long HOURS
# To run one test against OTP 27 by hand:
#   EQ_OTP=27 cargo test --test harness_smoke sname_node_starts
#
# Without ../shared the OTP 27 pass is skipped with a warning, unless CI is set,
# in which case that counts as a failure. The last line is "N passed, N failed",
# summed over cargo's "test result:" lines; a pass that fails without a failing
# test (a build error, a crashed test binary) counts as one failure, so a red run
# never reports "0 failed". Exit status: 0 only if everything passed.
set -uo pipefail # no -e: every pass runs, and the summary reports them all

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$REPO" || exit 1
SHARED=${EQ_SHARED_DIR:-$REPO/../shared}

HARNESS_ONLY=0
CARGO_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --harness-only) HARNESS_ONLY=1 ;;
    --) shift; CARGO_ARGS=("$@"); break ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "==> test.sh: $*"; }
warn() { echo "==> test.sh: WARNING: $*" >&2; }
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

# ---------------------------------------------------------------------------
# 1. Tools
# ---------------------------------------------------------------------------
command -v cargo >/dev/null 2>&1 || { warn "cargo not found on PATH"; exit 1; }
ensure_erlang || exit 1

otp27_works() {
  command -v erl27 >/dev/null 2>&1 && erl27 -noshell -eval 'halt().' >/dev/null 2>&1 </dev/null
}
OTP27=1
if ! otp27_works; then
  if [ -f "$SHARED/tools/otp27/setup" ]; then
    log "setting up OTP 27 with $SHARED/tools/otp27/setup"
    as_root sh "$SHARED/tools/otp27/setup" || warn "OTP 27 setup failed"
  fi
  otp27_works || OTP27=0
fi
if [ "$OTP27" = 0 ]; then
  if [ -n "${CI:-}" ]; then
    warn "OTP 27 (erl27) is not available and CI is set: the OTP 27 pass FAILS"
  else
    warn "OTP 27 (erl27) is not available (no $SHARED/tools/otp27/setup, or not root): skipping the OTP 27 pass"
  fi
fi

ensure_test_tools
ensure_epmd

# Tests run in parallel threads within a test binary, and many start several
# BEAM nodes. libtest defaults to one thread per core: 2 here, 16+ on a big dev
# box, where tick/timeout-sensitive tests would then compete with dozens of
# nodes. Most of a distribution test is waiting (handshakes, ticks, timeouts),
# so 4 overlaps that waiting while keeping ~4 tests' nodes alive at once on a
# 2-core machine. Fixed so CI and dev boxes behave alike; override by setting it.
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-4}

# ---------------------------------------------------------------------------
# 2. Passes
# ---------------------------------------------------------------------------
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/eq-test.XXXXXX")
trap 'rm -rf "$LOGDIR"' EXIT
TOTAL_PASSED=0
TOTAL_FAILED=0
STATUS=0
SUMMARY=()

# run_pass NAME CMD...: runs CMD with its output visible and logged, then adds
# up the "test result:" lines it printed.
run_pass() {
  local name=$1; shift
  local logf; logf="$LOGDIR/pass$(( ${#SUMMARY[@]} + 1 )).log"
  log "$name: $*"
  local start=$SECONDS
  "$@" 2>&1 | tee "$logf"
  local rc=${PIPESTATUS[0]}
  local counts passed failed
  counts=$(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$logf" |
    awk '{p += $1; f += $2} END {print p + 0, f + 0}')
  read -r passed failed <<<"$counts"
  if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then
    failed=1
    warn "$name exited with $rc without a failing test: a build error or a crashed test binary (counted as 1 failure)"
    [ "$HARNESS_ONLY" = 1 ] || warn "to check the Erlang setup and the harness without the crate: scripts/test.sh --harness-only"
  fi
  [ "$rc" = 0 ] || STATUS=1
  TOTAL_PASSED=$((TOTAL_PASSED + passed))
  TOTAL_FAILED=$((TOTAL_FAILED + failed))
  SUMMARY+=("$name: $passed passed, $failed failed, exit $rc, $((SECONDS - start)) s")
}

skip_otp27() {
  if [ -n "${CI:-}" ]; then
    SUMMARY+=("OTP 27: not run, erl27 unavailable (counted as 1 failure because CI is set)")
    TOTAL_FAILED=$((TOTAL_FAILED + 1)); STATUS=1
  else
    SUMMARY+=("OTP 27: SKIPPED, erl27 unavailable")
  fi
}

if [ "$HARNESS_ONLY" = 1 ]; then
  # The smoke test uses only std and tests/common, so rustc can build it
  # without Cargo and the crate. CARGO_MANIFEST_DIR is read at compile time.
  edition=$(sed -n 's/^edition *= *"\([0-9]*\)".*/\1/p' Cargo.toml | head -n1)
  bin="$REPO/target/harness-only/harness_smoke"
  mkdir -p "$(dirname "$bin")"
  log "building tests/harness_smoke.rs with rustc (edition ${edition:-2021}), without the crate"
  if CARGO_MANIFEST_DIR="$REPO" rustc --edition "${edition:-2021}" --test -o "$bin" tests/harness_smoke.rs; then
    run_pass "OTP 25 harness only" env EQ_OTP=25 "$bin" "${CARGO_ARGS[@]}"
    if [ "$OTP27" = 1 ]; then
      run_pass "OTP 27 harness only" env EQ_OTP=27 "$bin" "${CARGO_ARGS[@]}"
    else
      skip_otp27
    fi
  else
    SUMMARY+=("harness build: FAILED"); TOTAL_FAILED=$((TOTAL_FAILED + 1)); STATUS=1
  fi
else
  run_pass "OTP 25 (all targets + doc tests)" env EQ_OTP=25 cargo test --no-fail-fast -- "${CARGO_ARGS[@]}"
  if [ "$OTP27" = 1 ]; then
    run_pass "OTP 27 (integration tests)" env EQ_OTP=27 cargo test --no-fail-fast --test '*' -- "${CARGO_ARGS[@]}"
  else
    skip_otp27
  fi
  # A short coverage-guided run of every network decoder (libFuzzer on
  # stable); a crash fails the run. EQ_FUZZ_SECS=0 skips it.
  if [ "${EQ_FUZZ_SECS:-10}" != 0 ]; then
    run_pass "fuzz (${EQ_FUZZ_SECS:-10} s per target)" bash scripts/fuzz.sh -t "${EQ_FUZZ_SECS:-10}"
  fi
fi

# Nodes halt when their test process's stdin pipe closes (at most 2 s later), so
# anything still running after a short grace period leaked, or belongs to a
# test run someone else started on this machine.
sleep 1
if pgrep -f -- '-run eq_peer main' >/dev/null 2>&1; then
  sleep 3
  leaked=$(pgrep -af -- '-run eq_peer main' || true)
  [ -z "$leaked" ] || warn "eq_peer BEAM nodes still running (leaked, or another test run's):
$leaked"
fi

echo
log "summary (RUST_TEST_THREADS=$RUST_TEST_THREADS):"
for line in "${SUMMARY[@]}"; do echo "    $line"; done
[ "$TOTAL_FAILED" = 0 ] || STATUS=1
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
exit "$STATUS"

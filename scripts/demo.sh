#!/usr/bin/env bash
# The README's first command: installs Erlang/OTP if missing, then runs the
# demo: three Rust nodes (locker masters, W=2) with an Erlang node and an Elixir
# node; processes of all three languages take turns on one Paxtor lock and call
# each other by registered name. The BEAM side is rebar_fixture, built here
# with rebar3 as a project depending on it would. `--tls`: every node on TLS
# distribution (inet_tls_dist), with certificates the demo generates.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$REPO"
log() { echo "==> demo.sh: $*"; }
warn() { echo "==> demo.sh: WARNING: $*" >&2; }
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
command -v cargo >/dev/null 2>&1 || { warn "cargo not found on PATH"; exit 1; }
ensure_erlang
ensure_epmd
log "building rebar_fixture with rebar3"
(cd rebar_fixture && rebar3 compile) || { warn "rebar3 compile failed"; exit 1; }
export EQ_FIXTURE_EBIN="$REPO/rebar_fixture/_build/default/lib/erl_quorum/ebin"
exec cargo run --release --example demo -- "$@"

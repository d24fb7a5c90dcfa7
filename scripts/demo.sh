#!/usr/bin/env bash
# The README's first command: installs Erlang/OTP if missing, then runs the
# demo (a Rust node and a real BEAM node calling each other).
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
exec cargo run --release --example demo

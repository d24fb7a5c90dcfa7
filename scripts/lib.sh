# Shared by scripts/test.sh and scripts/demo.sh: install what a fresh machine
# lacks. Sourced; expects log and warn to be defined by the caller.

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else warn "need root for: $*"; return 1
  fi
}

# apt may be busy (another install running on the machine): wait for its lock
# rather than fail.
apt_install() {
  local i
  for i in $(seq 1 60); do
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -q update && break
    [ "$i" = 60 ] && return 1
    log "apt-get update failed (lock held?), retrying in 10 s"; sleep 10
  done
  for i in $(seq 1 6); do
    as_root env DEBIAN_FRONTEND=noninteractive \
      apt-get -q -y --no-install-recommends -o DPkg::Lock::Timeout=600 install "$@" && return 0
    log "apt-get install failed, retrying in 10 s"; sleep 10
  done
  return 1
}

# Erlang/OTP, Elixir and rebar3 from Debian's packages, when any is missing.
# Without their recommends (wx GUI, X11, media codecs: several hundred MB),
# which nothing here uses; what a test needs on top is named here.
ensure_erlang() {
  local missing=() tool
  for tool in erl erlc epmd elixir rebar3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "missing ${missing[*]}: installing Debian's erlang-nox erlang-dev elixir rebar3"
  apt_install erlang-nox erlang-dev elixir rebar3 || { warn "installing Erlang failed"; return 1; }
}

# The BEAM nodes and ours register with the host's epmd. Null stdio, so the
# daemon doesn't hold a pipe the caller reads.
ensure_epmd() {
  epmd -names >/dev/null 2>&1 || epmd -daemon </dev/null >/dev/null 2>&1 || warn "could not start epmd"
}

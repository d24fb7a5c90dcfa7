# Shared by scripts/test.sh and scripts/demo.sh: install what a fresh machine
# lacks. Sourced; expects log and warn to be defined by the caller.

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else warn "need root for: $*"; return 1
  fi
}

# apt may be busy (another install running on the machine): wait for its lock
# rather than fail. Once per script run.
APT_UPDATED=0
apt_update() {
  local i
  [ "$APT_UPDATED" = 1 ] && return 0
  for i in $(seq 1 60); do
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -q update && { APT_UPDATED=1; return 0; }
    [ "$i" = 60 ] && return 1
    log "apt-get update failed (lock held?), retrying in 10 s"; sleep 10
  done
}

# Installs packages without their recommends: what a script needs on top of a
# package's dependencies is named where it is installed.
apt_install() {
  local i
  apt_update || return 1
  for i in $(seq 1 6); do
    as_root env DEBIAN_FRONTEND=noninteractive \
      apt-get -q -y --no-install-recommends -o DPkg::Lock::Timeout=600 install "$@" && return 0
    log "apt-get install failed, retrying in 10 s"; sleep 10
  done
  return 1
}

# Erlang/OTP and Elixir from Debian's packages, when any is missing, without
# their recommends (the `erlang` metapackage: wx GUI, X11, media codecs),
# which nothing here uses; then rebar3 (below). On a fresh Debian 12
# (debootstrap --variant=minbase): 32 packages, 30 MB to download, 56 MB
# installed, 25 s with the rebar3 escript.
ensure_erlang() {
  local missing=() tool
  for tool in erl erlc epmd elixir mix; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "missing ${missing[*]}: installing Debian's erlang-nox erlang-dev elixir"
    apt_install erlang-nox erlang-dev elixir || { warn "installing Erlang failed"; return 1; }
  fi
  ensure_rebar3
}

# rebar3 is one self-contained escript, but Debian's rebar3 package depends on
# erlang-common-test, erlang-dialyzer and erlang-reltool, and through them on
# erlang-wx: GTK, WebKit, GStreamer (233 more packages, 169 MB to download,
# 639 MB installed, 2 min 45 s on that fresh Debian 12, with or without
# recommends). So the escript is taken out of that package (apt-get download,
# dpkg-deb -x) and installed alone into /usr/local/bin. `rebar3 compile` needs
# no more than erlang-nox: on that fresh Debian 12 it built examples/rebar3_app
# (and mix examples/mix_app), and the OTP 27 chroot, which has no more either,
# runs it in tests/packaging.rs. rebar3's ct, dialyzer and release commands
# would need the missing packages.
ensure_rebar3() {
  command -v rebar3 >/dev/null 2>&1 && return 0
  log "missing rebar3: installing the escript from Debian's rebar3 package"
  apt_update && install_rebar3_escript /usr/local/bin || { warn "installing rebar3 failed"; return 1; }
}

# install_rebar3_escript DIR: Debian's /usr/bin/rebar3, alone, as DIR/rebar3.
install_rebar3_escript() {
  local dir=$1 tmp rc
  tmp=$(mktemp -d) || return 1
  # As root, apt-get would hand the download to user _apt, who cannot write
  # into a private temporary directory: keep it root.
  (cd "$tmp" && apt-get -q -o APT::Sandbox::User=root download rebar3 &&
    dpkg-deb -x rebar3_*.deb root) &&
    as_root install -D -m 0755 "$tmp/root/usr/bin/rebar3" "$dir/rebar3"
  rc=$?
  rm -rf "$tmp"
  return $rc
}

# The partition test (tests/partition.rs, root only) makes network namespaces
# with `ip`, which a minimal Debian lacks.
ensure_test_tools() {
  command -v ip >/dev/null 2>&1 && return 0
  log "missing ip: installing iproute2"
  apt_install iproute2 || warn "installing iproute2 failed: tests/partition.rs will fail"
}

# The BEAM nodes and ours register with the host's epmd. Null stdio, so the
# daemon doesn't hold a pipe the caller reads.
ensure_epmd() {
  epmd -names >/dev/null 2>&1 || epmd -daemon </dev/null >/dev/null 2>&1 || warn "could not start epmd"
}

# shellcheck shell=bash
# Booted Debian hosts with systemd as PID 1, on one machine (see ../shared/HOSTS.md and
# docs/hosts.md): a cached bookworm root file system, one overlay per host (persistent across
# its reboots), systemd-nspawn in a cgroup of its own, a bridge in a private range, and a
# "release" network namespace on that bridge from which bundles are published.
# Sourced by tests/hosts/run.sh and scripts/demo-hosts.sh. Needs root.
#
# Settings (environment):
#   DLH_CACHE   where the root file system is cached   (/var/tmp/driftless-hosts)
#   DLH_NET     the /24 used on the bridge, first three octets   (10.231.7)
#   DRIFTLESS_BIN  the driftless binary   (/var/tmp/driftless-target/release/driftless)

DLH_CACHE=${DLH_CACHE:-/var/tmp/driftless-hosts}
DLH_SUITE=bookworm
# What the hosts need beyond minbase: systemd as init (systemd, systemd-sysv, dbus).
# minbase already has passwd (useradd), dpkg and apt; systemd brings systemd-networkd.
DLH_INCLUDE=systemd,systemd-sysv,dbus
# Bump when the preparation of the root file system below changes.
DLH_ROOTFS_REV=2
DLH_ROOTFS="$DLH_CACHE/rootfs-$DLH_SUITE-r$DLH_ROOTFS_REV"
DLH_NET=${DLH_NET:-10.231.7}
DRIFTLESS_BIN=${DRIFTLESS_BIN:-/var/tmp/driftless-target/release/driftless}
DLH_T0=${DLH_T0:-$(date +%s.%N)}

# Filled by dlh_setup.
DLH_ID=""
DLH_RUN=""
DLH_BRIDGE=""
DLH_RELEASE_NS=""
DLH_HOSTS=()

dlh_now() { date +%s.%N; }
# Seconds since $1 (a dlh_now value), one decimal... or three with $2=3.
dlh_since() { awk -v a="$1" -v b="$(dlh_now)" -v p="${2:-1}" 'BEGIN{printf "%.*f", p, b-a}'; }
dlh_say() { printf '[%6ss] %s\n' "$(dlh_since "$DLH_T0")" "$*"; }
dlh_die() {
  printf '[%6ss] FAILED: %s\n' "$(dlh_since "$DLH_T0")" "$*" >&2
  exit 1
}

# debootstrap, systemd-nspawn, jq, dpkg-deb: installed when missing.
dlh_tools() {
  [ "$(id -u)" = 0 ] || dlh_die "needs root (namespaces, bridges, nspawn)"
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
  command -v jq >/dev/null || missing+=(jq)
  command -v dpkg-deb >/dev/null || missing+=(dpkg)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v nsenter >/dev/null || missing+=(util-linux)
  if [ "${#missing[@]}" -gt 0 ]; then
    dlh_say "installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  fi
  [ -x "$DRIFTLESS_BIN" ] || dlh_die "no driftless binary at $DRIFTLESS_BIN (cargo build --release -p driftless, or set DRIFTLESS_BIN)"
}

# The root file system, built once and cached (a second run reuses it).
dlh_rootfs() {
  if [ -f "$DLH_ROOTFS/.driftless-complete" ]; then
    return 0
  fi
  local mirror tmp t
  mirror=${DLH_MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)}
  [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  [ -n "$mirror" ] || dlh_die "no Debian mirror found in /etc/apt (set DLH_MIRROR)"
  mkdir -p "$DLH_CACHE"
  tmp="$DLH_CACHE/.rootfs-build.$$"
  rm -rf "$tmp"
  t=$(dlh_now)
  dlh_say "building the $DLH_SUITE root file system (once; cached as $DLH_ROOTFS) from $mirror"
  if ! debootstrap --variant=minbase --include="$DLH_INCLUDE" "$DLH_SUITE" "$tmp" "$mirror" \
    >"$DLH_CACHE/debootstrap.log" 2>&1; then
    tail -5 "$DLH_CACHE/debootstrap.log" >&2
    rm -rf "$tmp"
    dlh_die "debootstrap failed (log: $DLH_CACHE/debootstrap.log)"
  fi
  # Every host gets its own machine id and hostname (written into its overlay).
  rm -f "$tmp/etc/machine-id" "$tmp/etc/hostname" "$tmp/var/lib/dbus/machine-id"
  touch "$tmp/.driftless-complete"
  rm -rf "$DLH_ROOTFS"
  mv "$tmp" "$DLH_ROOTFS"
  dlh_say "root file system built in $(dlh_since "$t") s ($(du -sm "$DLH_ROOTFS" | cut -f1) MB)"
}

# A run: its directory, the bridge and the release namespace. Registers the cleanup.
dlh_setup() {
  DLH_ID=$(printf '%04x' $((RANDOM % 65536)))
  DLH_RUN="$DLH_CACHE/run-$DLH_ID"
  DLH_BRIDGE="dlb$DLH_ID"
  DLH_RELEASE_NS="dlrel$DLH_ID"
  mkdir -p "$DLH_RUN"
  trap dlh_cleanup EXIT
  trap 'exit 130' INT TERM HUP PIPE
  # The bridge has no address on this machine: hosts talk among themselves and with the
  # release namespace only.
  ip link add "$DLH_BRIDGE" type bridge
  ip link set "$DLH_BRIDGE" up
  ip netns add "$DLH_RELEASE_NS"
  ip link add "dlr$DLH_ID" type veth peer name eth0 netns "$DLH_RELEASE_NS"
  ip link set "dlr$DLH_ID" master "$DLH_BRIDGE" up
  ip -n "$DLH_RELEASE_NS" addr add "$DLH_NET.1/24" dev eth0
  ip -n "$DLH_RELEASE_NS" link set eth0 up
  ip -n "$DLH_RELEASE_NS" link set lo up
}

# The release host's material in $1: a key (release.key) and the trust directory every host
# gets (trust/: release.pub, fleet "hosts"). dlh_sign VERSION DEFINITION.toml OUT signs.
dlh_release_keys() {
  mkdir -p "$1/trust"
  "$DRIFTLESS_BIN" keygen --out "$1/release" >/dev/null
  cp "$1/release.pub" "$1/trust/"
  echo 'fleet = "hosts"' >"$1/trust/trust.toml"
  DLH_KEY="$1/release.key"
}
dlh_sign() {
  "$DRIFTLESS_BIN" sign "$2" --key "$DLH_KEY" --version "$1" --fleet hosts --out "$3" >/dev/null
}

# The test service's package, built with dpkg-deb from tests/hosts/package into $1.
dlh_build_deb() {
  local src
  src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/package
  rm -rf "$1/pkg"
  cp -r "$src" "$1/pkg"
  chmod -R u=rwX,go=rX "$1/pkg"
  chmod 0755 "$1/pkg/usr/bin/driftless-hello"
  dpkg-deb --root-owner-group --build "$1/pkg" "$1/driftless-hello_1.0_all.deb" >/dev/null
  rm -rf "$1/pkg"
}

# The index (1..) of a host name.
dlh_index() {
  local i
  for i in "${!DLH_HOSTS[@]}"; do
    [ "${DLH_HOSTS[$i]}" = "$1" ] && { echo $((i + 1)); return; }
  done
  return 1
}
dlh_addr() { echo "$DLH_NET.$((10 + $(dlh_index "$1")))"; }
dlh_dir() { echo "$DLH_RUN/$1"; }

# Create host N's overlay and write what makes it a driftless host, as an operator would
# install it: the binary at /usr/bin/driftless, the project's own unit and agent.toml (from
# dist/, with this fleet's peers, labels and re-check interval), the trust directory.
# dlh_add_host NAME TRUSTDIR LABELS PEERS REAPPLY
dlh_add_host() {
  local name=$1 trust=$2 labels=$3 peers=$4 reapply=$5 d m addr repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  DLH_HOSTS+=("$name")
  d=$(dlh_dir "$name")
  m="$d/merged"
  addr=$(dlh_addr "$name")
  mkdir -p "$d/upper" "$d/work" "$m"
  mount -t overlay overlay -o "lowerdir=$DLH_ROOTFS,upperdir=$d/upper,workdir=$d/work" "$m"
  echo "$name" >"$m/etc/hostname"
  # The address comes from systemd-networkd (a .network file), so a host that reboots has it
  # back with no help, and network-online.target (which the agent's unit waits for) means
  # host0 is configured. Timers that would reach for a mirror are masked, and no getty runs
  # on the console (a pipe here).
  systemctl --root="$m" enable systemd-networkd.service systemd-networkd-wait-online.service >/dev/null 2>&1 ||
    dlh_die "cannot enable systemd-networkd in $name"
  systemctl --root="$m" mask apt-daily.timer apt-daily-upgrade.timer fstrim.timer \
    e2scrub_all.timer e2scrub_reap.service console-getty.service getty.target >/dev/null 2>&1 || true
  od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$m/etc/machine-id"
  echo >>"$m/etc/machine-id"
  mkdir -p "$m/etc/systemd/network"
  printf '[Match]\nName=host0\n\n[Network]\nAddress=%s/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
    "$addr" >"$m/etc/systemd/network/10-host0.network"
  # The binary is copied in as a package would put it, or (DLH_BIND_BIN=1, for a large
  # debug build) bind-mounted read-only at boot.
  [ -n "${DLH_BIND_BIN:-}" ] || install -m 0755 "$DRIFTLESS_BIN" "$m/usr/bin/driftless"
  install -m 0644 "$repo/dist/driftless.service" "$m/etc/systemd/system/driftless.service"
  mkdir -p "$m/etc/driftless"
  cp -r "$trust" "$m/etc/driftless/trust"
  # dist/agent.toml with this fleet's settings put in its commented examples' places.
  sed -e "s|^# peers = .*|peers = [$peers]|" \
    -e "s|^# labels = .*|labels = $labels|" \
    -e "s|^reapply_interval = .*|reapply_interval = \"$reapply\"|" \
    "$repo/dist/agent.toml" >"$m/etc/driftless/agent.toml"
  if ! grep -q "^peers = \[" "$m/etc/driftless/agent.toml" ||
    ! grep -q "^labels = " "$m/etc/driftless/agent.toml" ||
    ! grep -q "^reapply_interval = \"$reapply\"" "$m/etc/driftless/agent.toml"; then
    dlh_die "dist/agent.toml no longer has the lines this harness fills in (peers, labels, reapply_interval)"
  fi
}

# N hosts dl<ID>-1..N, labels role=web and n=I, each with the next two hosts as bootstrap
# peers; a .deb given as $4 is put in each host's apt cache (there is no mirror inside).
# dlh_make_fleet N TRUSTDIR REAPPLY [DEB]
dlh_make_fleet() {
  local n=$1 i p1 p2 name
  for i in $(seq "$n"); do
    name="dl$DLH_ID-$i"
    p1=$((i % n + 1))
    p2=$(((i + 1) % n + 1))
    dlh_add_host "$name" "$2" "{ role = \"web\", n = \"$i\" }" \
      "\"/ip4/$DLH_NET.$((10 + p1))/tcp/7400\", \"/ip4/$DLH_NET.$((10 + p2))/tcp/7400\"" "$3"
    [ -z "${4:-}" ] || cp "$4" "$(dlh_dir "$name")/merged/var/cache/apt/archives/"
  done
}

# Boot every host and wait until systemd runs in each.
dlh_boot_all() {
  local h
  for h in "${DLH_HOSTS[@]}"; do dlh_boot "$h"; done
  for h in "${DLH_HOSTS[@]}"; do dlh_wait_booted "$h"; done
}

# What an operator does on each host: systemctl enable --now driftless; then wait until
# every agent has a peer.
dlh_start_agents() {
  local h
  for h in "${DLH_HOSTS[@]}"; do dlh_x "$h" systemctl enable --now driftless 2>/dev/null; done
  dlh_wait_for 30 "every agent to have a peer" dlh_all_have_peers
}
dlh_all_have_peers() {
  local h
  for h in "${DLH_HOSTS[@]}"; do
    [ "$(dlh_status "$h" | jq -r '.peers.active')" -ge 1 ] 2>/dev/null || return 1
  done
}

# Boot a host (again): systemd-nspawn in a cgroup of its own, on the bridge.
dlh_boot() {
  local name=$1 d i
  d=$(dlh_dir "$name")
  # After a hard kill the kernel removes the host's veth a moment later; nspawn cannot
  # create it again while it exists.
  for i in $(seq 50); do
    ip link show "vb-$name" >/dev/null 2>&1 || break
    sleep 0.1
  done
  ip link del "vb-$name" 2>/dev/null || true
  # The wrapper of HOSTS.md: move into ns-NAME in both hierarchies, then become nspawn.
  # shellcheck disable=SC2016
  setsid bash -c '
    for h in systemd unified; do
      [ -d /sys/fs/cgroup/$h ] || continue
      mkdir -p /sys/fs/cgroup/$h/ns-$1 && echo $$ > /sys/fs/cgroup/$h/ns-$1/cgroup.procs
    done
    exec systemd-nspawn -D "$2" --machine="$1" --boot --register=no --keep-unit \
      --console=pipe --network-bridge="$3" ${4:+--bind-ro="$4":/usr/bin/driftless} </dev/null' \
    _ "$name" "$d/merged" "$DLH_BRIDGE" "${DLH_BIND_BIN:+$DRIFTLESS_BIN}" \
    >>"$d/console.log" 2>&1 &
  echo $! >"$d/pid"
  disown $!
}

dlh_pid() { cat "$(dlh_dir "$1")/pid"; }

# The host's PID 1, as seen from this machine (the child of its nspawn).
dlh_init() {
  local pid i init
  pid=$(dlh_pid "$1")
  # nspawn's first child sets the container up and is replaced by the host's init, which
  # execs systemd: wait for that.
  for i in $(seq 400); do
    init=$(pgrep -P "$pid" | head -1)
    if [ -n "$init" ] && [ "$(cat "/proc/$init/comm" 2>/dev/null)" = systemd ]; then
      echo "$init"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.025
  done
  return 1
}

# Run a command inside a host (all its namespaces).
dlh_x() {
  local name=$1 init
  shift
  init=$(dlh_init "$name") || dlh_die "host $name is not running (console: $(dlh_dir "$name")/console.log)"
  nsenter -t "$init" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
}

# Wait until the host's systemd has finished booting (running or degraded).
dlh_wait_booted() {
  local name=$1 state init
  init=$(dlh_init "$name") || dlh_die "host $name is not running (console: $(dlh_dir "$name")/console.log)"
  # Right after exec, systemd does not answer yet (no /run/systemd/private): retry.
  for _ in $(seq 600); do
    state=$(timeout 60 nsenter -t "$init" -a systemctl is-system-running --wait 2>/dev/null) || true
    case "$state" in
      running | degraded | maintenance | stopping) break ;;
    esac
    sleep 0.1
  done
  case "$state" in
    running | degraded) return 0 ;;
    *) dlh_die "host $name did not boot (state: ${state:-none}; console: $(dlh_dir "$name")/console.log)" ;;
  esac
}

# The agent's control socket, reached from this machine through the host's root.
dlh_sock() { echo "/proc/$(dlh_init "$1")/root/run/driftless/control.sock"; }
dlh_status() { "$DRIFTLESS_BIN" status --control "$(dlh_sock "$1")" --json 2>/dev/null; }
dlh_fleet() { "$DRIFTLESS_BIN" fleet --control "$(dlh_sock "$1")" --json 2>/dev/null; }

# Publish a bundle over the network, from the release namespace, to a host's agent.
dlh_publish() {
  ip netns exec "$DLH_RELEASE_NS" "$DRIFTLESS_BIN" publish "$1" --to "/ip4/$(dlh_addr "$2")/tcp/7400"
}

# Poll CMD... every 0.1 s until it succeeds, for at most $1 seconds; then fail naming $2.
dlh_wait_for() {
  local secs=$1 what=$2 t
  shift 2
  t=$(dlh_now)
  until "$@"; do
    if awk -v a="$t" -v b="$(dlh_now)" -v s="$secs" 'BEGIN{exit !(b-a>s)}'; then
      dlh_diagnose
      dlh_die "timed out after ${secs}s waiting for $what"
    fi
    sleep 0.1
  done
}

# Each host's status and the end of its agent's journal, to stderr.
dlh_diagnose() {
  local h
  for h in "${DLH_HOSTS[@]}"; do
    echo "--- $h: $(dlh_status "$h" | jq -c '{channels, peers, drift}' 2>/dev/null || echo 'no status')" >&2
    dlh_x "$h" journalctl -u driftless -n 8 --no-pager -o cat 2>/dev/null | sed 's/^/    /' >&2 || true
  done
}

# "VERSION STATE" of a channel on a host: dlh_channel HOST CHANNEL
dlh_channel() { dlh_status "$1" | jq -r --arg c "$2" '.channels[$c] // {} | "\(.version) \(.state)"'; }
# dlh_applied CHANNEL VERSION HOST...: every one of them applied it.
dlh_applied() {
  local c=$1 v=$2 h
  shift 2
  for h in "$@"; do [ "$(dlh_channel "$h" "$c")" = "$v applied" ] || return 1; done
}

# Seconds from $2 (epoch) to the first line after it of host $1's agent journal containing $3.
dlh_journal_after() {
  dlh_x "$1" journalctl -u driftless -o short-unix --no-pager --since "@${2%.*}" |
    awk -v a="$2" -v p="$3" '$1 >= a && index($0, p) { printf "%.3f", $1 - a; found = 1; exit }
      END { if (!found) printf "?" }'
}

# Stop a host cleanly (SIGTERM to nspawn halts it), or hard (SIGKILL).
dlh_stop() {
  local pid i
  pid=$(dlh_pid "$1" 2>/dev/null) || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
}
# A power cut: SIGKILL to the host's nspawn does not end the host (its init lives on,
# orphaned), so its init, PID 1 of the host's PID namespace, is killed with it, which ends
# every process of the host at once. Returns when none is left.
dlh_kill() {
  local pid init
  pid=$(dlh_pid "$1")
  init=$(dlh_init "$1") || true
  kill -KILL "$pid" ${init:+"$init"} 2>/dev/null
  while kill -0 "$pid" 2>/dev/null || [ -n "$(dlh_cg_procs "$1")" ]; do sleep 0.05; done
}

# Every process in a host's cgroups (this machine's PIDs).
dlh_cg_procs() {
  local h
  for h in systemd unified; do
    [ -d "/sys/fs/cgroup/$h/ns-$1" ] || continue
    find "/sys/fs/cgroup/$h/ns-$1" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -u
}

# Remove a host's cgroups (depth first: its systemd made sub-groups).
dlh_rm_cgroups() {
  local h
  for h in systemd unified; do
    [ -d "/sys/fs/cgroup/$h/ns-$1" ] || continue
    find "/sys/fs/cgroup/$h/ns-$1" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

dlh_cleanup() {
  local rc=$? name pid pids i
  trap - EXIT INT TERM HUP PIPE
  set +e
  [ -n "$DLH_RUN" ] || exit "$rc"
  if [ "$rc" = 130 ]; then
    dlh_say "interrupted: halting the hosts, removing the bridge, the namespace and the files"
  elif [ "$rc" != 0 ]; then
    dlh_say "cleaning up after a failure (logs were in $DLH_RUN, now removed; set DLH_KEEP_LOGS=1 to keep them)"
  fi
  for name in "${DLH_HOSTS[@]}"; do
    pid=$(dlh_pid "$name" 2>/dev/null)
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
  done
  for name in "${DLH_HOSTS[@]}"; do
    pid=$(dlh_pid "$name" 2>/dev/null)
    [ -n "$pid" ] || continue
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  done
  for name in "${DLH_HOSTS[@]}"; do
    # Whatever outlived its nspawn (see dlh_kill) goes with the host's cgroups.
    for i in $(seq 50); do
      pids=$(dlh_cg_procs "$name")
      [ -n "$pids" ] || break
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null
      sleep 0.1
    done
    umount "$(dlh_dir "$name")/merged" 2>/dev/null || umount -l "$(dlh_dir "$name")/merged" 2>/dev/null
    for i in $(seq 20); do
      dlh_rm_cgroups "$name"
      [ -d "/sys/fs/cgroup/systemd/ns-$name" ] || [ -d "/sys/fs/cgroup/unified/ns-$name" ] || break
      sleep 0.1
    done
  done
  ip netns del "$DLH_RELEASE_NS" 2>/dev/null
  ip link del "dlr$DLH_ID" 2>/dev/null
  ip link del "$DLH_BRIDGE" 2>/dev/null
  if [ -n "${DLH_KEEP_LOGS:-}" ]; then
    for name in "${DLH_HOSTS[@]}"; do rm -rf "$(dlh_dir "$name")/upper" "$(dlh_dir "$name")/work"; done
    dlh_say "logs kept in $DLH_RUN"
  else
    rm -rf "$DLH_RUN"
  fi
  exit "$rc"
}

#!/usr/bin/env bash
# The demo on booted Debian hosts with systemd as PID 1, instead of processes on loopback
# (`driftless demo --hosts` runs this; so can you: sudo bash scripts/demo-hosts.sh).
#
# Boots DLH_NODES (5) hosts with systemd-nspawn on a bridge of their own, installs driftless
# in each as a systemd service (dist/driftless.service, dist/agent.toml), publishes
# definitions/base.toml from a release network namespace to one host, shows every host
# converging, undoes a hand edit, then publishes a service (a user, a package from a local
# .deb, a config file, a unit) and shows a `systemctl stop` of it undone by the re-check and
# seen from another host. Halts the hosts and removes everything at the end, also on Ctrl-C;
# DLH_DEMO_KEEP=1 (`demo --hosts --keep`) leaves them running until Ctrl-C.
#
# Needs root; the first run builds a Debian root file system from the mirror apt uses
# (about 1.5 minutes, cached under /var/tmp/driftless-hosts). Uses $DRIFTLESS_BIN or the
# release build in /var/tmp/driftless-target.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DLH_T0=$(date +%s.%N)
# shellcheck source=tests/hosts/lib.sh
source "$REPO/tests/hosts/lib.sh"

N=${DLH_NODES:-5}
REAPPLY=5s
[ "$N" -ge 3 ] || dlh_die "DLH_NODES: at least 3 hosts"

dlh_tools
dlh_rootfs
dlh_setup
W="$DLH_RUN/release"
dlh_release_keys "$W"
dlh_build_deb "$W"
dlh_make_fleet "$N" "$W/trust" "$REAPPLY" "$W/driftless-hello_1.0_all.deb"
first=${DLH_HOSTS[0]}
second=${DLH_HOSTS[1]}
middle=${DLH_HOSTS[$((N / 2))]}
last=${DLH_HOSTS[$((N - 1))]}
dlh_say "a fleet of $N Debian $DLH_SUITE hosts, booted with systemd-nspawn (systemd is PID 1 in each),"
dlh_say "on bridge $DLH_BRIDGE ($DLH_NET.0/24); the release host is network namespace $DLH_RELEASE_NS ($DLH_NET.1)"
t=$(dlh_now)
dlh_boot_all
dlh_say "$N hosts booted in $(dlh_since "$t" 2)s"
t=$(dlh_now)
dlh_start_agents
dlh_say "on each host: systemctl enable --now driftless; every agent ready and connected in $(dlh_since "$t" 2)s"
dlh_x "$first" systemctl status driftless --no-pager -n 0 2>/dev/null | sed -n '1,6p' | sed 's/^/          /'

# Poll until every host applied CHANNEL VERSION; print each host's time from the journal.
publish() { # CHANNEL VERSION BUNDLE
  local c=$1 v=$2 h t
  t=$(dlh_now)
  dlh_say "published to $first only, over TCP: $(dlh_publish "$3" "$first")"
  dlh_wait_for 60 "every host to apply $c v$v" dlh_applied "$c" "$v" "${DLH_HOSTS[@]}"
  for h in "${DLH_HOSTS[@]}"; do
    printf '          %s applied %s v%s %6s s after publish\n' "$h" "$c" "$v" \
      "$(dlh_journal_after "$h" "$t" "converged channel=$c version=$v why=NewVersion")"
  done
}

dlh_sign 1 "$REPO/definitions/base.toml" "$W/base-1.bundle"
dlh_say "signed definitions/base.toml as base v1"
publish base 1 "$W/base-1.bundle"
dlh_say "every host converged, fetching the bundle from its peers"

t=$(dlh_now)
dlh_x "$middle" sh -c 'echo "hand-edited: someone logged in and changed this" >/etc/motd'
dlh_say "someone edits /etc/motd by hand on $middle"
motd_back() { grep -q "is managed by driftless" "$(dlh_dir "$middle")/merged/etc/motd"; }
dlh_wait_for 10 "/etc/motd to be restored on $middle" motd_back
dlh_say "drift undone on $middle $(dlh_journal_after "$middle" "$t" "drift found channel=base resource=file:/etc/motd") s later (inotify saw the write)"

mkdir -p "$W/hello"
sed "s/@RELEASE@/1/" "$REPO/tests/hosts/definition/hello.toml" >"$W/hello/hello.toml"
cp "$REPO/tests/hosts/definition/hello.service.j2" "$W/hello/"
dlh_sign 1 "$W/hello/hello.toml" "$W/hello-1.bundle"
dlh_say "signed a service definition as hello v1: user hello, package driftless-hello (a local"
dlh_say "  .deb in apt's cache: no mirror here), /etc/hello/hello.conf and a unit file that notify"
dlh_say "  service hello, which must run and be enabled"
publish hello 1 "$W/hello-1.bundle"
dlh_x "$second" systemctl status hello --no-pager -n 0 2>/dev/null | sed -n '1,5p' | sed 's/^/          /'
echo "          $second:/run/hello/current: $(cat "/proc/$(dlh_init "$second")/root/run/hello/current")"

t=$(dlh_now)
dlh_x "$second" systemctl stop hello
dlh_say "someone runs \`systemctl stop hello\` on $second"
hello_up() { [ "$(dlh_x "$second" systemctl is-active hello)" = active ]; }
dlh_wait_for 20 "hello to run again on $second" hello_up
dlh_say "hello running again on $second after $(dlh_since "$t" 1)s (the re-check, every $REAPPLY here, started it)"
id=$(dlh_status "$second" | jq -r .node)
seen() { dlh_fleet "$last" | jq -e --arg n "$id" '.nodes[] | select(.node == $n) | .drift.corrected >= 1' >/dev/null; }
dlh_wait_for 20 "the drift to show in $last's fleet view" seen
dlh_say "$last sees the drift in its fleet view (the audit-only sshd file counts as drift found, never corrected):"
"$DRIFTLESS_BIN" fleet --control "$(dlh_sock "$last")" | sed 's/^/          /'

if [ -n "${DLH_DEMO_KEEP:-}" ]; then
  echo
  echo "the hosts keep running; try:"
  for h in "${DLH_HOSTS[@]}"; do
    echo "  nsenter -t $(dlh_init "$h") -a bash    # a shell on $h (then: driftless status, systemctl status hello)"
  done
  echo "  driftless fleet --control $(dlh_sock "$first")"
  echo "Ctrl-C halts the hosts and removes $DLH_RUN, the bridge and the namespace"
  sleep infinity &
  wait $! || true
fi
dlh_say "done: halting the hosts, removing the bridge, the namespace and the files"

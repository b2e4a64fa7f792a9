#!/usr/bin/env bash
# The agent on a fleet of booted Debian hosts with systemd as PID 1 (issue 7).
#
# Boots DLH_NODES (5) hosts with systemd-nspawn on a bridge of their own (10.231.7.0/24,
# no address on this machine), installs the release binary, dist/driftless.service and
# dist/agent.toml into each as an operator would, `systemctl enable --now driftless`, and
# then, publishing from a release network namespace on the bridge:
#   1. a definition with a user, a package from a local .deb, a config file and a unit file
#      that notify a service → every host converges, the service runs with that config;
#   2. a new release changing both notifying files → one restart per host, new config;
#   3. `systemctl stop` + `disable` of the service on one host → running and enabled again
#      after the next re-check, and the drift shows in another host's `fleet --json`;
#   4. `systemctl restart driftless` → same node, same version, re-check changes nothing;
#   5. SIGKILL to one host's nspawn, a newer release published, host booted again → catches up;
#   6. one host cut from the bridge during a publish → converges once the link is back;
#   7. a one-shot `apply` on a host: missing unit and failing unit are named failures, the
#      rest converges, an audit-only service is reported, not touched; apply exits 1;
# and checks `systemd-analyze verify` of the unit prints nothing. Prints wall times.
#
# Needs root and, the first time, a Debian mirror (the root file system is cached under
# /var/tmp/driftless-hosts). Uses $DRIFTLESS_BIN or the release build in
# /var/tmp/driftless-target. Cleans up hosts, bridge, namespaces and cgroups on exit.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DLH_T0=$(date +%s.%N)
# shellcheck source=tests/hosts/lib.sh
source "$HERE/lib.sh"

N=${DLH_NODES:-5}
REAPPLY=${DLH_REAPPLY:-5s}
[ "$N" -ge 5 ] || dlh_die "DLH_NODES must be at least 5 (hosts 2..5 each play a part)"

check() { "$@" || dlh_die "check failed: $*"; }

applied() { dlh_applied hello "$2" "$1"; }
all_applied() {
  local v=$1
  shift
  dlh_applied hello "$v" "$@"
}
except() {
  local skip=$1 h
  for h in "${DLH_HOSTS[@]}"; do [ "$h" = "$skip" ] || echo "$h"; done
}

# Publish CHANNEL's release VERSION (bundle $W/CHANNEL-VERSION.bundle) to host TO; wait until
# every host named after it applied it. Prints and records the figures (from the agents'
# journals: accepted = verified and stored, applied = the apply finished).
# publish_and_wait CHANNEL VERSION TO HOST...
publish_and_wait() {
  local c=$1 v=$2 to=$3 t h max=0 accepted applied_s ms line="" wall
  shift 3
  t=$(dlh_now)
  dlh_publish "$W/$c-$v.bundle" "$to" >/dev/null
  dlh_wait_for 60 "$c v$v applied on $*" dlh_applied "$c" "$v" "$@"
  wall=$(dlh_since "$t" 2)
  for h in "$@"; do
    accepted=$(dlh_journal_after "$h" "$t" "accepted a new version channel=$c version=$v ")
    applied_s=$(dlh_journal_after "$h" "$t" "converged channel=$c version=$v why=NewVersion")
    ms=$(dlh_x "$h" journalctl -u driftless -o cat --no-pager | grep -F "converged channel=$c version=$v why=NewVersion" | head -1 | sed -n 's/.* ms=\([0-9]*\).*/\1/p')
    line+=" ${h##*-}:$accepted/$applied_s/${ms}ms"
    max=$(awk -v m="$max" -v x="$applied_s" 'BEGIN{print (x+0>m+0)?x:m}')
  done
  dlh_say "$c v$v: publish -> every host applied in ${max}s (polled: ${wall}s); host:accepted s/applied s/apply took:$line"
  FIG_PUBLISH+=("$c-v$v ${max}s")
}

service_ok() { # HOST RELEASE: hello active, enabled, running with that release's config
  local h=$1 v=$2 cur
  [ "$(dlh_x "$h" systemctl is-active hello)" = active ] || return 1
  [ "$(dlh_x "$h" systemctl is-enabled hello)" = enabled ] || return 1
  cur=$(cat "/proc/$(dlh_init "$h")/root/run/hello/current" 2>/dev/null) || return 1
  [ "$cur" = "greeting = hello from $h, release $v" ]
}
starts() { wc -l <"$(dlh_dir "$1")/merged/var/lib/hello/starts"; }
node_id() { dlh_status "$1" | jq -r .node; }

dlh_say "driftless on $N booted Debian hosts (binary: $DRIFTLESS_BIN)"
dlh_tools
dlh_rootfs
dlh_setup
W="$DLH_RUN/release"
FIG_PUBLISH=()

# --- the release host's material: key, trust directory, package, signed releases ---------
dlh_release_keys "$W"
dlh_build_deb "$W"
sign() { dlh_sign "$1" "$2/$3.toml" "$W/$3-$1.bundle"; } # RELEASE DEFINITION-DIR NAME
for v in 1 2 3 4; do
  mkdir -p "$W/def-$v"
  sed "s/@RELEASE@/$v/" "$HERE/definition/hello.toml" >"$W/def-$v/hello.toml"
  cp "$HERE/definition/hello.service.j2" "$W/def-$v/"
  sign "$v" "$W/def-$v" hello
done
sign 1 "$HERE/definition" probe
sign 1 "$REPO/definitions" base

# --- hosts ---------------------------------------------------------------------------------
dlh_make_fleet "$N" "$W/trust" "$REAPPLY" "$W/driftless-hello_1.0_all.deb"
H1=${DLH_HOSTS[0]} H2=${DLH_HOSTS[1]} H3=${DLH_HOSTS[2]} H4=${DLH_HOSTS[3]} H5=${DLH_HOSTS[4]}

t=$(dlh_now)
dlh_boot_all
FIG_BOOT=$(dlh_since "$t" 2)
dlh_say "$N hosts booted (systemd running) in ${FIG_BOOT}s"

out=$(dlh_x "$H1" systemd-analyze verify /etc/systemd/system/driftless.service 2>&1) ||
  dlh_die "systemd-analyze verify failed: $out"
[ -z "$out" ] || dlh_die "systemd-analyze verify printed findings: $out"
dlh_say "systemd-analyze verify dist/driftless.service: no findings"

t=$(dlh_now)
dlh_start_agents
FIG_AGENTS=$(dlh_since "$t" 2)
check [ "$(dlh_x "$H1" systemctl show -p Type,WatchdogUSec --value driftless | tr '\n' ' ')" = "notify 30s " ]
dlh_say "agents started with systemctl (Type=notify, watchdog 30s) and connected in ${FIG_AGENTS}s"
dlh_say "  $(dlh_x "$H1" systemctl show -p StatusText --value driftless)"

# --- 0. files only: the loopback demo's definition, and a hand edit undone --------------------
publish_and_wait base 1 "$H1" "${DLH_HOSTS[@]}"
t=$(dlh_now)
dlh_x "$H4" sh -c 'echo "hand-edited" > /etc/motd'
motd_back() { grep -q "is managed by driftless" "$(dlh_dir "$H4")/merged/etc/motd"; }
dlh_wait_for 10 "/etc/motd restored on $H4" motd_back
FIG_MOTD=$(dlh_journal_after "$H4" "$t" "drift found channel=base resource=file:/etc/motd")
dlh_say "hand edit of /etc/motd on $H4 undone ${FIG_MOTD}s later (inotify)"
if awk -v x="$FIG_MOTD" 'BEGIN{exit !(x+0 > 1)}'; then
  dlh_say "that is slow for inotify (the periodic re-check may have undone it); $H4's journal:"
  dlh_x "$H4" journalctl -u driftless -o short-unix --no-pager --since "@$(( ${t%.*} - 3 ))" | tail -25 | cut -c1-220
fi

# --- 1. first release: user, package, files, service ----------------------------------------
t_conv=$(dlh_now)
publish_and_wait hello 1 "$H1" "${DLH_HOSTS[@]}"
FIG_CONVERGE=$(dlh_since "$t_conv" 2)
for h in "${DLH_HOSTS[@]}"; do
  dlh_wait_for 5 "hello running with release 1 on $h" service_ok "$h" 1
  check dlh_x "$h" getent passwd hello >/dev/null
  # shellcheck disable=SC2016
  check [ "$(dlh_x "$h" dpkg-query -W -f '${Status}' driftless-hello)" = "install ok installed" ]
  check [ "$(starts "$h")" = 1 ]
done
dlh_say "every host: user hello, package driftless-hello (local .deb), hello.service enabled and running with its release-1 config"

# --- 2. a release changing both files that notify the service: one restart ------------------
publish_and_wait hello 2 "$H1" "${DLH_HOSTS[@]}"
for h in "${DLH_HOSTS[@]}"; do
  dlh_wait_for 5 "hello running with release 2 on $h" service_ok "$h" 2
  check [ "$(starts "$h")" = 2 ]
  check [ "$(dlh_x "$h" systemctl show -p NeedDaemonReload --value hello)" = no ]
  check [ "$(dlh_x "$h" systemctl show -p Description --value hello)" = "driftless host test service (release 2)" ]
done
dlh_say "release 2 changed the config and the unit file: daemon-reload, then exactly one restart per host"

# --- 3. drift: the service stopped and disabled by hand --------------------------------------
dlh_x "$H2" systemctl disable --now hello 2>/dev/null
t=$(dlh_now)
dlh_say "on $H2: systemctl disable --now hello"
dlh_wait_for 30 "hello enabled and running again on $H2" service_ok "$H2" 2
FIG_DRIFT=$(dlh_since "$t" 2)
check [ "$(starts "$H2")" = 3 ]
corrected() { [ "$(dlh_status "$1" | jq '.drift.corrected')" -ge 1 ]; }
dlh_wait_for 10 "the drift counted in $H2's status" corrected "$H2"
id2=$(node_id "$H2")
drift_seen() {
  dlh_fleet "$H5" | jq -e --arg n "$id2" '.nodes[] | select(.node == $n) | .drift.corrected >= 1' >/dev/null
}
dlh_wait_for 20 "$H2's drift in $H5's fleet view" drift_seen
FIG_DRIFT_SEEN=$(dlh_since "$t" 2)
dlh_say "re-enabled and restarted by the re-check after ${FIG_DRIFT}s (re-apply interval $REAPPLY); $H5's fleet --json shows it after ${FIG_DRIFT_SEEN}s: $(dlh_fleet "$H5" | jq -c --arg n "$id2" '.nodes[] | select(.node == $n) | .drift')"

# --- 4. systemctl restart driftless: nothing lost, nothing re-applied ------------------------
id3=$(node_id "$H3")
s3=$(starts "$H3")
t=$(dlh_now)
dlh_x "$H3" systemctl restart driftless
rechecks() { dlh_x "$H3" journalctl -u driftless --since "@${t%.*}" -o cat --no-pager | grep "why=Recheck"; }
recheck_done() { rechecks | grep -q "channel=hello version=2" && rechecks | grep -q "channel=base version=1"; }
dlh_wait_for 30 "the re-check of both channels after the restart on $H3" recheck_done
for c in "hello version=2" "base version=1"; do
  line=$(rechecks | grep "converged channel=$c " | head -1)
  [[ "$line" == *" changed=0 "* && "$line" == *" failed=0 "* ]] || dlh_die "re-check after restart changed something: $line"
done
line=$(rechecks | grep "converged channel=hello" | head -1)
check [ "$(node_id "$H3")" = "$id3" ]
check applied "$H3" 2
check [ "$(starts "$H3")" = "$s3" ]
check dlh_applied base 1 "$H3"
dlh_say "systemctl restart driftless on $H3: same node id, hello v2 and base v1 kept, re-check after $(dlh_since "$t" 2)s changed nothing (${line#*converged })"

# --- 5. a host killed hard while a newer release is published --------------------------------
id4=$(node_id "$H4")
dlh_kill "$H4"
dlh_rm_cgroups "$H4"
dlh_say "$H4 killed hard (SIGKILL to its nspawn and its init); publishing release 3 to the others"
mapfile -t rest < <(except "$H4")
publish_and_wait hello 3 "$H1" "${rest[@]}"
t=$(dlh_now)
dlh_boot "$H4"
dlh_wait_booted "$H4"
dlh_wait_for 60 "$H4 to catch up to hello v3" applied "$H4" 3
FIG_CATCHUP_KILL=$(dlh_since "$t" 2)
dlh_wait_for 5 "hello running with release 3 on $H4" service_ok "$H4" 3
check [ "$(node_id "$H4")" = "$id4" ]
dlh_say "$H4 booted again: same node id, caught up to v3 ${FIG_CATCHUP_KILL}s after boot started"

# --- 6. a host cut from the bridge during a publish ------------------------------------------
ip link set "vb-$H5" down
dlh_say "$H5 cut from the bridge (ip link set vb-$H5 down); publishing release 4"
mapfile -t rest < <(except "$H5")
publish_and_wait hello 4 "$H1" "${rest[@]}"
check applied "$H5" 3
ip link set "vb-$H5" up
t=$(dlh_now)
dlh_wait_for 90 "$H5 to converge to hello v4 after the link is back" applied "$H5" 4
FIG_CATCHUP_CUT=$(dlh_since "$t" 2)
dlh_wait_for 5 "hello running with release 4 on $H5" service_ok "$H5" 4
dlh_say "$H5 back on the bridge: converged to v4 after ${FIG_CATCHUP_CUT}s"

# --- 7. named failures of the service resource, on a real systemd host -----------------------
cp "$W/probe-1.bundle" "$(dlh_dir "$H1")/merged/root/probe.bundle"
plan=$(dlh_x "$H1" driftless plan /root/probe.bundle --trust /etc/driftless/trust --json) || true
res() { jq -r --arg r "$2" '.resources[] | select(.resource == $r) | '"$3" <<<"$1"; }
check grep -q "not loaded yet, its unit file is written by this apply" <<<"$(res "$plan" service:driftless-broken '.changes[]')"
check grep -q "state: active (running) -> stopped (stop)" <<<"$(res "$plan" service:hello '.changes[]')"
set +e
applied_json=$(dlh_x "$H1" driftless apply /root/probe.bundle --trust /etc/driftless/trust \
  --state-dir /root/probe-state --json)
rc=$?
set -e
[ "$rc" = 1 ] || dlh_die "apply of the probe exited $rc, wanted 1"
check [ "$(res "$applied_json" file:/etc/probe/converged .result)" = changed ]
check [ "$(res "$applied_json" service:driftless-no-such-unit .result)" = failed ]
check grep -q "unit driftless-no-such-unit.service not found" <<<"$(res "$applied_json" service:driftless-no-such-unit .error)"
check [ "$(res "$applied_json" file:/etc/probe/needs-missing-unit .result)" = skipped ]
check [ "$(res "$applied_json" service:driftless-broken .result)" = failed ]
check grep -q "driftless-broken.service failed to start" <<<"$(res "$applied_json" service:driftless-broken .error)"
check [ "$(res "$applied_json" service:hello .result)" = drift ]
check [ "$(dlh_x "$H1" systemctl is-active hello)" = active ]
check [ "$(res "$applied_json" file:/etc/systemd/system/hello.service.d/probe.conf .result)" = changed ]
check [ "$(dlh_x "$H1" systemctl show -p NeedDaemonReload --value hello)" = no ]
check grep -qF "man:driftless-probe(1)" <<<"$(dlh_x "$H1" systemctl show -p Documentation --value hello)"
dlh_say "one-shot apply on $H1 exits 1, the rest converged; named failures:"
echo "          service:driftless-no-such-unit: $(res "$applied_json" service:driftless-no-such-unit .error | cut -c1-110)..."
echo "          service:driftless-broken: $(res "$applied_json" service:driftless-broken .error)"
echo "          service:hello (audit): $(res "$applied_json" service:hello '.changes | join("; ")') (reported, still running)"
echo "          a drop-in with no service resource: daemon-reload at the end of the apply"

# --- the fleet, as one host sees it -----------------------------------------------------------
fleet_complete() { [ "$(dlh_fleet "$H3" | jq '[.nodes[] | select(.channels.hello.version == 4)] | length')" = "$N" ]; }
dlh_wait_for 30 "$H3's fleet view to show every host at v4" fleet_complete
dlh_say "the fleet as $H3 sees it:"
"$DRIFTLESS_BIN" fleet --control "$(dlh_sock "$H3")" | sed 's/^/          /'

echo
echo "figures ($N hosts, re-apply interval $REAPPLY):"
echo "  boot (all hosts, systemd running)            ${FIG_BOOT}s"
echo "  agents enabled, started, connected           ${FIG_AGENTS}s"
echo "  publish -> every host applied                ${FIG_PUBLISH[*]}"
echo "    (base: files only, as in \`driftless demo\`; hello v1 installs the package, adds the"
echo "    user, starts the service; v2..v4 restart it; v3/v4 on the hosts still up)"
echo "  hand edit of a managed file undone           ${FIG_MOTD}s"
echo "  first converge (publish v1 -> all checked)   ${FIG_CONVERGE}s"
echo "  stopped+disabled service back (re-check)     ${FIG_DRIFT}s; in another host's fleet view ${FIG_DRIFT_SEEN}s"
echo "  killed host: boot -> caught up               ${FIG_CATCHUP_KILL}s"
echo "  cut host: link up -> caught up               ${FIG_CATCHUP_CUT}s"
echo "  whole test                                   $(dlh_since "$DLH_T0" 1)s"
echo "PASS"

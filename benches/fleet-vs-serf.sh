#!/usr/bin/env bash
# Spread benchmark on one machine: N driftless agents (release build) on 127.0.0.1, a ~6 KB
# definition published to one of them, seconds until each has *applied* it; side by side, in
# the same run, N Serf agents spreading one user event (seconds until each handler ran), and
# the simulator's prediction for the same N. Also: idle resident memory and CPU per agent and
# idle bytes per node per second. Prints figures; asserts nothing about speed.
#
#   benches/fleet-vs-serf.sh [N]        (default 100; SKIP_SERF=1 to skip Serf;
#                                       DRIFTLESS=path to use that binary, no build;
#                                       WORKDIR=dir for the agents' files, default /var/tmp;
#                                       PERF=file to record a system-wide profile of the spread;
#                                       KEEP=1 to keep the agents' logs and files;
#                                       GOSSIPSUB=path of shared/peers/gossipsub-probe/run.sh
#                                       to run libp2p gossipsub's probe in the same run too)
set -euo pipefail
N=${1:-100}
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/driftless-target}"
if [ -n "${DRIFTLESS:-}" ]; then
  BIN=$DRIFTLESS
else
  cargo build --release --quiet -p driftless
  BIN="$CARGO_TARGET_DIR/release/driftless"
fi
# WORKDIR=/dev/shm puts every agent's state and root on a tmpfs: 100 agents share one disk
# here (on a fleet each has its own), and on this machine's ext4 the creation of files slows
# down after many deletions (the inode allocator skips recently deleted inodes), so the disk
# figure says as much about the machine as about the agent. Both are worth printing.
W=$(mktemp -d "${WORKDIR:-/var/tmp}/driftless-fleetbench.XXXXXX")
cleanup() {
  pkill -P $$ 2>/dev/null || true
  [ -n "${SERF_PIDS:-}" ] && kill $SERF_PIDS 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then log "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
log() { echo "[fleet-vs-serf] $*" >&2; }
# Wait (up to $4 s) until every node's log $1/n1..n$2/log holds $3. One process polling every
# 20 ms and reading only what was appended: a loop of grep and sleep processes would take
# CPU from the agents being measured (on 2 cores, ~10% of it during a spread).
wait_logs() {
  python3 - "$@" <<'PY'
import os, sys, time
w, n, what, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), float(sys.argv[4])
left = {i: 0 for i in range(1, n + 1)}
end = time.monotonic() + limit
while left and time.monotonic() < end:
    for i, off in list(left.items()):
        start = max(0, off - len(what))  # a match may straddle two reads
        with open(f"{w}/n{i}/log", "rb") as f:
            f.seek(start)
            data = f.read()
        if what in data:
            del left[i]
        else:
            left[i] = start + len(data)
    time.sleep(0.02)
sys.exit(1 if left else 0)
PY
}
pct() { python3 -c "
import sys; v=sorted(float(x) for x in sys.argv[2:]); q=float(sys.argv[1])
print(f'{v[min(len(v)-1,int(q*len(v)))]*1000:.0f}')" "$@"; }

# ---------------------------------------------------------------- driftless
log "starting $N driftless agents"
"$BIN" keygen --out "$W/keys/release" >/dev/null
mkdir -p "$W/trust" && cp "$W/keys/release.pub" "$W/trust/"
base=$((30000 + RANDOM % 10000))
for i in $(seq 1 "$N"); do
  d="$W/n$i"; mkdir -p "$d/root"
  peers=()
  # each node bootstraps through one of the first three, so no single node is everyone's door
  [ "$i" -gt 1 ] && peers=(--peer "/ip4/127.0.0.1/tcp/$((base + (i % 3 == 0 || i < 4 ? 0 : i % 3)))")
  metrics=(); [ "$i" -le 3 ] && metrics=(--metrics "127.0.0.1:$((base + 20000 + i))")
  "$BIN" agent --listen "/ip4/127.0.0.1/tcp/$((base + i - 1))" "${peers[@]}" "${metrics[@]}" \
    --state-dir "$d/state" --root "$d/root" --trust "$W/trust" --control "$d/ctl.sock" \
    --labels "n=$i" >"$d/log" 2>&1 &
done
for i in $(seq 1 "$N"); do until [ -S "$W/n$i/ctl.sock" ]; do sleep 0.05; done; done
# let the overlay settle (HyParView joins, shuffles) before measuring
sleep "${SETTLE:-8}"
python3 - "$W/def.toml" <<'PY'
import sys
lines = ['name = "bench"']
for i in range(60):
    lines.append(f'[[resource]]\ntype = "file"\npath = "/etc/bench/f{i:03d}.conf"\ncontent = "{"x" * 80}\\n"\nmode = "0644"')
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
"$BIN" sign "$W/def.toml" --key "$W/keys/release.key" --version 1 --out "$W/b.bundle" >/dev/null
bundle_bytes=$(stat -c %s "$W/b.bundle")
pids=$(pgrep -P $$ -f "$BIN agent" || true)
ticks() { for p in $pids; do awk '{print $14+$15}' /proc/$p/stat; done | awk '{s+=$1} END{print s}'; }
hz=$(getconf CLK_TCK)
if [ -n "${PERF:-}" ]; then
  perf record -a ${PERF_OPTS:--g} -o "$PERF" >/dev/null 2>&1 & perf_pid=$!
  sleep 0.5
fi
w0=$(ticks)
t0=$(date +%s.%N)
"$BIN" publish "$W/b.bundle" --to "$W/n1/ctl.sock" >/dev/null
if ! wait_logs "$W" "$N" "why=NewVersion" 60; then
  for i in $(seq 1 "$N"); do
    grep -q "why=NewVersion" "$W/n$i/log" && continue
    log "node $i never applied; the end of its log:"
    tail -n 30 "$W/n$i/log" >&2
    exit 1
  done
fi
w1=$(ticks)
[ -n "${PERF:-}" ] && { kill -INT $perf_pid; wait $perf_pid || true; }
spread_cpu=$(python3 -c "print(f'{($w1-$w0)/$hz:.2f}')")
# seconds from publish to each node's first line holding $1 in its log
times() {
  python3 - "$W" "$N" "$t0" "$1" <<'PY'
import sys, datetime
w, n, t0, what = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
for i in range(1, n + 1):
    for l in open(f"{w}/n{i}/log"):
        if what in l:
            print(datetime.datetime.fromisoformat(l.split()[0].replace("Z", "+00:00")).timestamp() - t0)
            break
PY
}
mapfile -t dl < <(times "why=NewVersion")
mapfile -t acc < <(times "accepted a new version")
acc_p50=$(pct 0.5 "${acc[@]}"); acc_p99=$(pct 0.99 "${acc[@]}")
dl_p50=$(pct 0.5 "${dl[@]}"); dl_p99=$(pct 0.99 "${dl[@]}"); dl_max=$(pct 1.0 "${dl[@]}")

log "measuring idle cost for 10 s"
sleep 5
rss_kb=$(for p in $pids; do awk '/VmRSS/{print $2}' /proc/$p/status; done | awk '{s+=$1;n++} END{printf "%.1f", s/n/1024}')
sent() { curl -s "127.0.0.1:$((base + 20001))/metrics" | awk '/^driftless_sent_bytes_total/{print $2}'; }
c0=$(ticks); b0=$(sent); sleep 10; c1=$(ticks); b1=$(sent)
cpu=$(python3 -c "print(f'{($c1-$c0)/$hz/10/$N*100:.3f}')")
idle_bps=$(python3 -c "print(f'{(${b1:-0}-${b0:-0})/10:.0f}')")
pkill -P $$ -f "$BIN agent" || true
wait 2>/dev/null || true

# ---------------------------------------------------------------- simulator
log "simulator prediction for $N nodes"
sed -e "s/^nodes = .*/nodes = $N/" -e 's/^latency = .*/latency = "0ms..1ms"/' -e 's/^apply = .*/apply = "5ms..15ms"/' \
  -e "s/^bundle_bytes = .*/bundle_bytes = $bundle_bytes/" simulations/lan-1k.toml | sed '/^expect = \[/,/^\]/d' >"$W/sim.toml"
"$BIN" simulate "$W/sim.toml" >"$W/sim.out" 2>&1 || true
sim_p50=$(awk '/v2_ms_to_50pct/{print $2}' "$W/sim.out")
sim_p99=$(awk '/v2_ms_to_99pct/{print $2}' "$W/sim.out")
sim_all=$(awk '/v2_ms_to_100pct/{print $2}' "$W/sim.out")

# ---------------------------------------------------------------- serf
serf_p50=-; serf_p99=-; serf_max=-
if [ "${SKIP_SERF:-0}" != 1 ]; then
  command -v serf >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q serf >/dev/null; }
  log "starting $N serf agents"
  mkdir -p "$W/serf/hits"
  cat >"$W/serf/handler.sh" <<EOF2
#!/bin/sh
date +%s.%N > "$W/serf/hits/\$SERF_SELF_NAME"
EOF2
  chmod +x "$W/serf/handler.sh"
  sbase=$((base + 1000))
  SERF_PIDS=""
  for i in $(seq 1 "$N"); do
    serf agent -node="n$i" -bind="127.0.0.1:$((sbase + 2 * i))" -rpc-addr="127.0.0.1:$((sbase + 2 * i + 1))" \
      -event-handler="user:deploy=$W/serf/handler.sh" >"$W/serf/log$i" 2>&1 &
    SERF_PIDS="$SERF_PIDS $!"
  done
  sleep 2
  for i in $(seq 2 "$N"); do
    # an agent not yet listening: try again a few times rather than end the run
    for _ in 1 2 3 4 5; do
      serf join -rpc-addr="127.0.0.1:$((sbase + 2 * i + 1))" "127.0.0.1:$((sbase + 2))" >/dev/null 2>&1 && break
      sleep 0.5
    done
  done
  deadline=$(( $(date +%s) + 60 ))
  until [ "$(serf members -rpc-addr="127.0.0.1:$((sbase + 3))" 2>/dev/null | grep -c alive || true)" -ge "$N" ]; do
    [ "$(date +%s)" -gt "$deadline" ] && { log "serf: not every agent joined within 60 s"; exit 1; }
    sleep 0.2
  done
  sleep 3
  s0=$(date +%s.%N)
  serf event -coalesce=false -rpc-addr="127.0.0.1:$((sbase + 3))" deploy "$(head -c 400 /dev/zero | tr '\0' x)" >/dev/null
    python3 - "$W/serf/hits" "$N" <<'PY' || log "serf: not every handler ran within 30 s"
import os, sys, time
end = time.monotonic() + 30
while len(os.listdir(sys.argv[1])) < int(sys.argv[2]) and time.monotonic() < end:
    time.sleep(0.02)
PY
  mapfile -t sl < <(for f in "$W"/serf/hits/*; do python3 -c "print($(cat "$f") - $s0)"; done)
  serf_p50=$(pct 0.5 "${sl[@]}"); serf_p99=$(pct 0.99 "${sl[@]}"); serf_max=$(pct 1.0 "${sl[@]}")
  serf_rss=$(for p in $SERF_PIDS; do awk '/VmRSS/{print $2}' /proc/$p/status; done | awk '{s+=$1;n++} END{printf "%.1f", s/n/1024}')
fi

gs_p50=-; gs_p99=-; gs_max=-
if [ -n "${GOSSIPSUB:-}" ]; then
  log "running libp2p gossipsub's probe on $N processes"
  gs=$(bash "$GOSSIPSUB" "$N" | tail -1)
  gs_p50=$(python3 -c "import re,sys; print(f\"{float(re.search(r'p50=([0-9.]+)', sys.argv[1]).group(1))*1000:.0f}\")" "$gs" 2>/dev/null || echo -)
  gs_p99=$(python3 -c "import re,sys; print(f\"{float(re.search(r'p99=([0-9.]+)', sys.argv[1]).group(1))*1000:.0f}\")" "$gs" 2>/dev/null || echo -)
  gs_max=$(python3 -c "import re,sys; print(f\"{float(re.search(r'max=([0-9.]+)', sys.argv[1]).group(1))*1000:.0f}\")" "$gs" 2>/dev/null || echo -)
fi

echo
echo "spread to $N agents on one machine (ms from publish/event; files under $(df --output=fstype "$W" | tail -1) $W)"
echo "                                                                  p50     p99     max"
printf "  driftless: publish -> applied (%5d B bundle)            %6s  %6s  %6s\n" "$bundle_bytes" "$dl_p50" "$dl_p99" "$dl_max"
printf "    of which publish -> accepted (verified, forwarded)       %6s  %6s\n" "$acc_p50" "$acc_p99"
echo "    CPU used by all $N agents from publish until the last applied: ${spread_cpu} s (2 cores here)"
printf "  serf: event -> handler ran (400 B payload)                %6s  %6s  %6s\n" "$serf_p50" "$serf_p99" "$serf_max"
printf "  gossipsub: publish -> received (6000 B, mesh D=6)         %6s  %6s  %6s\n" "$gs_p50" "$gs_p99" "$gs_max"
printf "  simulator prediction (driftless, same N, loopback model)  %6s  %6s  %6s\n" "${sim_p50:--}" "${sim_p99:--}" "${sim_all:--}"
echo "    (the simulator models links, not CPU: 100 agents on 2 cores queue for it, so it predicts"
echo "     the spread of a fleet of separate hosts, not of this one-machine run)"
echo "  targets: driftless p99 <= 1/2 of serf's p99; <= 2x gossipsub's p99 (29-58 ms at 100 processes, PEERS.md)"
echo
echo "idle agent: resident ${rss_kb} MB (target < 15, aim < 8; serf ${serf_rss:--} MB), CPU ${cpu}% of a core (target < 0.5), ${idle_bps} B/s sent by node 1"

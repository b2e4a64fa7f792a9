#!/bin/bash
# Runs every scenario of simulations/ (but the 10k and 100k ones) with its own seed, then the
# seed sweeps of the scenarios whose outcome depends most on the seed (liars, bad releases,
# the 1k spread). One line per scenario, and one per failing seed, go to OUTFILE; it ends with
# DONE. A release build of the simulator is assumed:
#   cargo build --release -p driftless-sim --example simulate
#   scripts/scenarios.sh $CARGO_TARGET_DIR/release/examples/simulate /tmp/scen.txt
set -u
B=${1:?usage: scenarios.sh SIMULATE_BIN OUTFILE}
O=${2:?usage: scenarios.sh SIMULATE_BIN OUTFILE}
T=$(mktemp)
trap 'rm -f "$T"' EXIT
: >"$O"
for f in simulations/*.toml; do
  case $f in *10k* | *100k*) continue ;; esac
  /usr/bin/time -f "%e s" "$B" "$f" >"$T" 2>&1
  rc=$?
  echo "$f rc=$rc $(tail -1 "$T")" >>"$O"
  [ $rc != 0 ] && grep -iE "fail" "$T" | head -5 >>"$O"
done
sweep() { # scenario, seeds...
  local f=$1
  shift
  for s in "$@"; do
    "$B" "$f" --seed "$s" >"$T" 2>&1 || echo "$f seed $s FAIL" >>"$O"
  done
}
sweep simulations/rollout-liar.toml $(seq 1 20)
sweep simulations/rollout-liar-zones.toml $(seq 1 20)
sweep simulations/lan-1k.toml 2 3 4 5 6
sweep simulations/rollout-bad.toml $(seq 1 10)
sweep simulations/rollout-liar-stall.toml 1 2 3 4 5
sweep simulations/rollout-liar-stall-inflated.toml $(seq 1 10)
sweep simulations/groups-rollout-liar.toml 2 3
sweep simulations/groups-rollout-liar-stall.toml 2 3
echo DONE >>"$O"

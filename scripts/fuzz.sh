#!/usr/bin/env bash
# Build and run every fuzz target of fuzz/ briefly (fuzz/README.md says what each decodes).
#
#   scripts/fuzz.sh            60 s per target
#   scripts/fuzz.sh 15         15 s per target
#   scripts/fuzz.sh --runs N   N executions per target
#
# Installs cargo-fuzz from crates.io if it is missing. Uses the nightly toolchain with
# AddressSanitizer when rustup has nightly installed, and otherwise stable with
# `--sanitizer none` (libFuzzer and its coverage need no nightly; only the sanitizer does;
# the targets' own heap meter still enforces the allocation caps). Nothing is downloaded
# for nightly. The `frame` target needs the agent library (libp2p, tokio: about ten minutes
# to build instrumented the first time); DRIFTLESS_FUZZ_AGENT=0 leaves it out.
# DRIFTLESS_FUZZ_TOOLCHAIN=stable|nightly overrides the choice of toolchain.
#
# New inputs go to a scratch directory, so the committed corpus (fuzz/corpus/<target>) is
# only read; a crash is saved under fuzz/artifacts/<target>/ and fails the script. The build
# lives in $DRIFTLESS_FUZZ_TARGET_DIR (/var/tmp/driftless-fuzz-target). With CI=true, a
# machine that cannot get cargo-fuzz or has no C++ compiler skips with a message and exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=(-max_total_time=60)
case "${1:-}" in
  "") ;;
  --runs) mode=(-runs="${2:?--runs needs a number}") ;;
  *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET|--runs N]" >&2; exit 2 ;;
  *) mode=(-max_total_time="$1") ;;
esac

skip() {
  if [ "${CI:-}" = true ]; then
    echo "SKIPPED: fuzzing: $1"
    exit 0
  fi
  echo "fuzz.sh: $1" >&2
  exit 1
}

command -v c++ >/dev/null || skip "no C++ compiler (libFuzzer is C++): install g++"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked || skip "cargo-fuzz could not be installed"
fi
want="${DRIFTLESS_FUZZ_TOOLCHAIN:-}"
if [ -z "$want" ]; then
  want=stable
  rustup toolchain list 2>/dev/null | grep -q '^nightly' && want=nightly
fi
if [ "$want" = nightly ]; then
  toolchain=(+nightly)
  sanitizer=()
  limits=(-rss_limit_mb=2048 -malloc_limit_mb=64)
  echo "== nightly with AddressSanitizer"
else
  toolchain=()
  sanitizer=(--sanitizer none)
  limits=(-rss_limit_mb=2048)
  echo "== stable without a sanitizer (with a nightly toolchain installed: AddressSanitizer)"
fi
export CARGO_TARGET_DIR="${DRIFTLESS_FUZZ_TARGET_DIR:-/var/tmp/driftless-fuzz-target}"

features=(--features agent)
[ "${DRIFTLESS_FUZZ_AGENT:-1}" = 0 ] && features=()
targets=$(cargo "${toolchain[@]}" fuzz list)
[ "${#features[@]}" -eq 0 ] && targets=$(grep -vx frame <<<"$targets")

echo "== building: $(tr "\n" " " <<<"$targets")"
cargo "${toolchain[@]}" fuzz build "${sanitizer[@]}" "${features[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in $targets; do
  mkdir -p "$scratch/$t" "fuzz/corpus/$t"
  log="$scratch/$t.log"
  start=$(date +%s)
  if cargo "${toolchain[@]}" fuzz run "${sanitizer[@]}" "${features[@]}" "$t" \
      "$scratch/$t" "fuzz/corpus/$t" -- \
      "${mode[@]}" "${limits[@]}" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "$t: ok, $runs runs, $rate exec/s, $(( $(date +%s) - start )) s, $cov"
  else
    echo "$t: FAILED (log below; the input is under fuzz/artifacts/$t/)"
    tail -40 "$log"
    failed+=("$t")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found failures in: ${failed[*]}"
  exit 1
fi

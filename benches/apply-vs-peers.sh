#!/usr/bin/env bash
# Converge N small files with `driftless apply`, CFEngine 3 (`cf-agent -K`) and Puppet 7
# (`puppet apply`), first on an empty root and then again with nothing to do, and print the
# medians, the peak RSS and the ratios against the targets of SPEC.md ("Targets").
#
# Usage: benches/apply-vs-peers.sh [N...]            (default: 1000 10000)
#
# Environment:
#   RUNS=3             alternating repetitions per N; medians are reported
#   SKIP_PUPPET=1      leave Puppet out (it is slow: about 75 s per first apply at N=10000)
#   SKIP_DRIFTLESS=1   measure the peers only (no cargo build; the ratios print as "-")
#   DRIFTLESS=PATH     use this driftless binary instead of building one
#   CARGO_TARGET_DIR   where cargo builds (default /var/tmp/driftless-target)
#   KEEP=1             keep the work directory (policies, logs) instead of removing it
#
# Progress goes to stderr, result tables to stdout. The script exits non-zero when a tool
# fails or leaves the files wrong, never because a ratio misses its target: a benchmark
# reports, it does not assert (these shared machines vary 2x from run to run).
#
# Needs root: it installs cfengine3/puppet/time with apt-get when they are missing (Debian 12),
# and cf-agent and puppet behave differently as an ordinary user.
set -euo pipefail
# '.' as the decimal separator everywhere (EPOCHREALTIME, awk, printf).
export LC_ALL=C

RUNS=${RUNS:-3}
SKIP_PUPPET=${SKIP_PUPPET:-0}
SKIP_DRIFTLESS=${SKIP_DRIFTLESS:-0}
KEEP=${KEEP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/driftless-target}

if (($# > 0)); then SIZES=("$@"); else SIZES=(1000 10000); fi

log() { printf '%s\n' "$*" >&2; }
die() { log "apply-vs-peers: error: $*"; exit 1; }

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
for n in "${SIZES[@]}"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, not '$n'"
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

TOOLS=()
[[ $SKIP_DRIFTLESS == 1 ]] || TOOLS+=(driftless)
TOOLS+=(cfengine)
[[ $SKIP_PUPPET == 1 ]] || TOOLS+=(puppet)

# --- prerequisites --------------------------------------------------------------------------
# Install only what is missing, so a second run costs nothing and needs no network.
missing=()
command -v cf-agent >/dev/null 2>&1 || missing+=(cfengine3)
[[ $SKIP_PUPPET == 1 ]] || command -v puppet >/dev/null 2>&1 || missing+=(puppet)
# GNU time, not the shell keyword: it reports the peak RSS (%M) of the command and its children.
[[ -x /usr/bin/time ]] || missing+=(time)
if ((${#missing[@]} > 0)); then
    [[ $(id -u) == 0 ]] || die "need root to install: ${missing[*]}"
    log "installing ${missing[*]} ..."
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; } >&2
fi
CF_PROMISES=$(command -v cf-promises) || die "cf-promises not found (package cfengine3)"

# --- work directory ---------------------------------------------------------------------------
# Under /var/tmp, not /tmp: /tmp may be a tmpfs, which would flatter every tool's writes.
W=$(mktemp -d /var/tmp/apply-vs-peers.XXXXXX)
cleanup() {
    if [[ $KEEP == 1 ]]; then log "kept work directory $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$W/log"

if [[ $SKIP_DRIFTLESS != 1 ]]; then
    if [[ -n ${DRIFTLESS:-} ]]; then
        [[ -x $DRIFTLESS ]] || die "DRIFTLESS=$DRIFTLESS is not an executable"
        DRIFTLESS_DESC=$DRIFTLESS
    else
        log "building driftless (cargo build --release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR) ..."
        (cd "$REPO" && cargo build --release >&2) || die "cargo build --release failed"
        # Run a copy: a concurrent build into the same target dir must not swap the binary
        # between two runs of one benchmark.
        cp "$CARGO_TARGET_DIR/release/driftless" "$W/driftless"
        DRIFTLESS=$W/driftless
        DRIFTLESS_DESC="built from $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo "$REPO")"
    fi
fi

if [[ $SKIP_DRIFTLESS != 1 ]]; then
    # One release key for the whole run. The trust directory holds only the public key: by
    # SPEC.md that means "all are release keys, threshold 1, fleet default", with no guessing
    # about a private key lying beside it.
    mkdir -p "$W/keys" "$W/trust"
    "$DRIFTLESS" keygen --out "$W/keys/release" >"$W/log/keygen.log" 2>&1 ||
        { cat "$W/log/keygen.log" >&2; die "driftless keygen failed"; }
    cp "$W/keys/release.pub" "$W/trust/release.pub"
fi

# --- timing -----------------------------------------------------------------------------------
# timed LABEL OK_CODES CMD...: run CMD once, output to $W/log/LABEL.log. Sets ELAPSED (seconds,
# wall clock), RSS_KB (peak resident set of CMD and its children) and CODE. Dies unless CODE is
# one of the space-separated OK_CODES.
timed() {
    local label=$1 ok=$2
    shift 2
    local out=$W/log/$label.log rss=$W/log/$label.rss t0 t1
    # Flush what earlier runs left dirty, so a tool that syncs does not pay for another's writes.
    sync
    # EPOCHREALTIME (bash 5) is date +%s.%N without a fork: microseconds, read right around the
    # command. /usr/bin/time's own %e has only 10 ms resolution, too coarse for a fast no-op.
    t0=$EPOCHREALTIME
    CODE=0
    /usr/bin/time -f '%M' -o "$rss" "$@" >"$out" 2>&1 || CODE=$?
    t1=$EPOCHREALTIME
    if [[ " $ok " != *" $CODE "* ]]; then
        log "---- last lines of $out ----"
        tail -n 20 "$out" >&2 || true
        die "$label: '$*' exited with $CODE (expected one of: $ok)"
    fi
    ELAPSED=$(awk -v us=$((${t1/./} - ${t0/./})) 'BEGIN { printf "%.4f", us / 1e6 }')
    # With a non-zero exit, GNU time writes a "Command exited ..." line before the figure.
    RSS_KB=$(tail -n 1 "$rss")
}

# --- verification -----------------------------------------------------------------------------
# verify TOOL ROOT N: ROOT/bench holds exactly the N expected files, byte for byte, mode 0644.
# This is what catches a tool that exits 0 having done nothing (or half of it).
verify() {
    local tool=$1 dir=$2/bench n=$3 count bad
    [[ -d $dir ]] || die "$tool: $dir was not created"
    count=$(find "$dir" -type f | wc -l)
    ((count == n)) || die "$tool: $count files under $dir, expected $n"
    # diff -r also reports files missing on either side and names the first differences.
    if ! diff -rq "$REF" "$dir" >"$W/log/diff.out" 2>&1; then
        head -n 5 "$W/log/diff.out" >&2
        die "$tool: files under $dir differ from the expected content"
    fi
    bad=$(find "$dir" -type f ! -perm 0644 | head -n 3)
    [[ -z $bad ]] || die "$tool: mode is not 0644 on: $bad"
}

# snapshot ROOT: inode and mtime of every file, to tell whether a "no-op" run rewrote anything.
snapshot() { find "$1/bench" -type f -printf '%i %T@ %p\n' | sort -k3; }

# --- inputs per N -----------------------------------------------------------------------------
# setup N [DIR]: write the reference tree and each tool's description of the same N files into
# $NW = DIR (default $W/nN). Each tool converges its own root per repetition, $NW/TOOL/rootREP,
# with absolute paths (driftless: paths inside --root). A new root per repetition, rather than
# deleting the last one, keeps the deletion of thousands of files (and the discards it queues
# on this filesystem) out of the timed runs. File i is fIIIII.conf, content "key=1<i>\n", 0644.
setup() {
    local n=$1 rep
    NW=${2:-$W/n$n}
    REF=$NW/ref
    mkdir -p "$REF"
    awk -v n="$n" -v d="$REF" 'BEGIN {
        for (i = 0; i < n; i++) { f = sprintf("%s/f%05d.conf", d, i); printf "key=1%d\n", i > f; close(f) }
    }'

    if [[ $SKIP_DRIFTLESS != 1 ]]; then
        mkdir -p "$NW/driftless"
        # TOML basic strings: the two characters \n in the file become a newline.
        awk -v n="$n" 'BEGIN {
            print "name = \"bench\""
            for (i = 0; i < n; i++) {
                print ""
                print "[[resource]]"
                print "type = \"file\""
                printf "path = \"/bench/f%05d.conf\"\n", i
                printf "content = \"key=1%d\\n\"\n", i
                print "mode = \"0644\""
            }
        }' >"$NW/driftless/def.toml"
        # Signing is set-up, not part of what is compared: it happens once, untimed.
        "$DRIFTLESS" sign "$NW/driftless/def.toml" --key "$W/keys/release.key" --version 1 \
            --out "$NW/driftless/bench.bundle" >"$W/log/${NW##*/}-sign.log" 2>&1 ||
            { cat "$W/log/${NW##*/}-sign.log" >&2; die "driftless sign failed (N=$n)"; }
    fi

    # CFEngine wants a key pair and a cf-promises beside its work directory, else it refuses to
    # run. cf-key has no -w; it honours the same override variable that cf-agent's -w sets.
    local cf=$NW/cfengine
    mkdir -p "$cf/work/bin"
    ln -s "$CF_PROMISES" "$cf/work/bin/cf-promises"
    CFENGINE_TEST_OVERRIDE_WORKDIR=$cf/work cf-key >"$W/log/${NW##*/}-cf-key.log" 2>&1 ||
        { cat "$W/log/${NW##*/}-cf-key.log" >&2; die "cf-key failed"; }
    for ((rep = 1; rep <= RUNS; rep++)); do
        cf_policy "$n" "$cf/root$rep" >"$cf/policy$rep.cf"
        # cf-agent refuses a policy file that is group- or world-writable.
        chmod 0600 "$cf/policy$rep.cf"
    done

    if [[ $SKIP_PUPPET != 1 ]]; then
        local pp=$NW/puppet
        mkdir -p "$pp"
        for ((rep = 1; rep <= RUNS; rep++)); do
            puppet_manifest "$n" "$pp/root$rep" >"$pp/site$rep.pp"
        done
    fi
}

# cf_policy N ROOT: a CFEngine policy with one files promise per file.
# skipidentify: no name lookups; rxdirs false: no warning per file; $(const.n) is a newline.
cf_policy() {
    awk -v n="$1" -v r="$2" 'BEGIN {
        print "body common control\n{\n  bundlesequence => { \"bench\" };\n}"
        print "body agent control\n{\n  skipidentify => \"true\";\n}"
        print "body perms m644\n{\n  mode => \"0644\";\n  rxdirs => \"false\";\n}"
        print "bundle agent bench\n{\n  files:"
        for (i = 0; i < n; i++)
            printf "    \"%s/bench/f%05d.conf\" create => \"true\", perms => m644, content => \"key=1%d$(const.n)\";\n", r, i, i
        print "}"
    }'
}

# puppet_manifest N ROOT: a site.pp with one file resource per file. Puppet does not create
# missing parents, so the directory is a resource of its own.
puppet_manifest() {
    awk -v n="$1" -v r="$2" -v q="'" 'BEGIN {
        printf "file { %s%s/bench%s: ensure => directory }\n", q, r, q
        for (i = 0; i < n; i++)
            printf "file { %s%s/bench/f%05d.conf%s: ensure => file, content => \"key=1%d\\n\", mode => %s0644%s }\n", q, r, i, q, i, q, q
    }'
}

# command_for TOOL REP: the apply command, in the array CMD; the accepted exit codes of a first
# and of a no-op run in OK_FIRST / OK_NOOP.
command_for() {
    local t=$NW/$1 rep=$2
    case $1 in
    driftless)
        CMD=("$DRIFTLESS" apply "$t/bench.bundle" --trust "$W/trust" --root "$t/root$rep"
            --state-dir "$t/state$rep")
        OK_FIRST=0 OK_NOOP=0
        ;;
    cfengine)
        # -K: ignore promise locks, or a run within a minute of the last skips promises.
        CMD=(cf-agent -K -w "$t/work" -f "$t/policy$rep.cf")
        OK_FIRST=0 OK_NOOP=0
        ;;
    puppet)
        # Own conf/var/code dirs, off the system's; --no-report drops a 0.7 MB YAML per run.
        # --detailed-exitcodes: 2 = changes, 0 = none, 4/6 = failures (plain exit 0 hides them).
        CMD=(puppet apply --detailed-exitcodes --color=false --no-report
            --confdir "$t/conf" --vardir "$t/var" --codedir "$t/code" --logdir "$t/log"
            --rundir "$t/run" "$t/site$rep.pp")
        OK_FIRST="0 2" OK_NOOP="0 2"
        ;;
    esac
}

declare -A FIRST NOOP RSS
# run_tool TOOL N REP: a first apply on a fresh empty root, then the same command again.
run_tool() {
    local tool=$1 n=$2 rep=$3 root=$NW/$1/root$3 first rss_max
    command_for "$tool" "$rep"
    # An empty root, and for driftless a state directory not yet there (state$rep), so its first
    # apply is a real first apply. The peers keep their work dirs between repetitions, as on a
    # real host (that can only help them).
    mkdir -p "$root"

    timed "${NW##*/}-$tool-$rep-first" "$OK_FIRST" "${CMD[@]}"
    first=$ELAPSED rss_max=$RSS_KB
    verify "$tool" "$root" "$n"

    snapshot "$root" >"$W/log/before"
    timed "${NW##*/}-$tool-$rep-noop" "$OK_NOOP" "${CMD[@]}"
    verify "$tool" "$root" "$n"
    snapshot "$root" >"$W/log/after"
    if ! cmp -s "$W/log/before" "$W/log/after"; then
        log "warning: $tool rewrote files on the no-op run (N=$n, run $rep)"
    fi
    if [[ $tool == puppet && $CODE == 2 ]]; then
        log "warning: puppet reported changes on the no-op run (N=$n, run $rep)"
    fi

    if ((RSS_KB > rss_max)); then rss_max=$RSS_KB; fi
    FIRST[$tool]+="$first "
    NOOP[$tool]+="$ELAPSED "
    if ((rss_max > ${RSS[$tool]:-0})); then RSS[$tool]=$rss_max; fi
    log "  [${PHASE:-N=$n run $rep/$RUNS}] $(printf '%-9s first %8.3f s  no-op %8.3f s  peak %6.1f MB' \
        "$tool" "$first" "$ELAPSED" "$(awk -v k="$rss_max" 'BEGIN { print k / 1024 }')")"
}

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ a[NR] = $1 }
    END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# ratio PEER COLUMN TARGET: "12.3x (target >= 5x: met)"; "-" without driftless figures.
ratio() {
    local peer=$1 col=$2 target=$3 p d
    if [[ $SKIP_DRIFTLESS == 1 || -z ${MED["$peer-$col"]:-} ]]; then printf -- '-'; return; fi
    p=${MED["$peer-$col"]} d=${MED["driftless-$col"]}
    awk -v p="$p" -v d="$d" -v t="$target" 'BEGIN {
        if (d <= 0) { printf "n/a"; exit }
        r = p / d
        printf "%.1fx", r
        if (t != "") printf " (target >= %sx: %s)", t, (r >= t ? "met" : "MISSED")
    }'
}

declare -A MED
report() {
    local n=$1 tool
    MED=()
    printf '\n== N = %d files: median of %d alternating runs (first apply on an empty root, then the same again) ==\n' "$n" "$RUNS"
    printf '%-10s %15s %12s %13s\n' tool "first apply s" "no-op s" "peak RSS MB"
    for tool in "${TOOLS[@]}"; do
        MED[$tool-first]=$(median "${FIRST[$tool]}")
        MED[$tool-noop]=$(median "${NOOP[$tool]}")
        printf '%-10s %15.3f %12.3f %13.1f\n' "$tool" "${MED[$tool-first]}" "${MED[$tool-noop]}" \
            "$(awk -v k="${RSS[$tool]}" 'BEGIN { print k / 1024 }')"
    done
    printf '\n%-20s %-32s %s\n' ratio "first apply" "no-op"
    printf '%-20s %-32s %s\n' cfengine/driftless "$(ratio cfengine first 5)" "$(ratio cfengine noop 10)"
    if [[ $SKIP_PUPPET != 1 ]]; then
        printf '%-20s %-32s %s\n' puppet/driftless "$(ratio puppet first 50)" "$(ratio puppet noop '')"
    fi
    printf '\nraw seconds (first apply | no-op), in run order:\n'
    for tool in "${TOOLS[@]}"; do
        printf '  %-10s %s| %s\n' "$tool" "${FIRST[$tool]}" "${NOOP[$tool]}"
    done
}

log "work directory $W; tools: ${TOOLS[*]}; N: ${SIZES[*]}; RUNS=$RUNS"
printf '# apply-vs-peers: %s, %s core(s), %s\n' "$(uname -srm)" "$(nproc)" "$(date -u +%FT%TZ)"
printf '# CFEngine %s; ' "$(cf-agent --version | awk '{ print $3; exit }')"
[[ $SKIP_PUPPET == 1 ]] || printf 'Puppet %s; ' "$(puppet --version)"
[[ $SKIP_DRIFTLESS == 1 ]] || printf 'driftless %s' "$DRIFTLESS_DESC"
printf '\n# SPEC.md targets: first apply >= 5x faster than CFEngine and >= 50x than Puppet;'
printf ' no-op re-check (stated for 10,000 files) >= 10x faster than CFEngine\n'

# Warm-up, untimed: the first run of each tool after a build or an idle spell loads its
# binary, libraries and (Puppet) Ruby code from disk and was seen 2-3x slower than the next;
# that is start-up luck, not convergence, so each tool does one small round first.
log "warm-up (discarded): each tool on 10 files ..."
setup 10 "$W/warmup"
for tool in "${TOOLS[@]}"; do
    PHASE=warm-up run_tool "$tool" 10 1
done
[[ $KEEP == 1 ]] || rm -rf "$NW"

for n in "${SIZES[@]}"; do
    log "N=$n: generating inputs ..."
    setup "$n"
    FIRST=() NOOP=() RSS=()
    # Tools alternate within each repetition: machine speed drifts 2x over minutes here, and
    # alternating spreads that drift over all tools instead of landing on one.
    for ((rep = 1; rep <= RUNS; rep++)); do
        for tool in "${TOOLS[@]}"; do
            run_tool "$tool" "$n" "$rep"
        done
    done
    report "$n"
    # The roots of this N are no longer needed; keep the disk small before the next N.
    [[ $KEEP == 1 ]] || rm -rf "$NW"
done

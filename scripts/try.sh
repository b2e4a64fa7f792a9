#!/usr/bin/env bash
# The whole single-server flow on the example definitions, under a throw-away root:
# keygen -> sign -> verify -> plan -> apply -> re-apply (nothing to do) -> hand edit ->
# apply undoes it -> a tampered bundle and a rollback are refused. Touches nothing outside
# a temporary directory (removed at exit unless KEEP=1).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/driftless-target}"
if [ -z "${DRIFTLESS_BIN:-}" ]; then
  cargo build --release --quiet
fi
bin="${DRIFTLESS_BIN:-$CARGO_TARGET_DIR/release/driftless}"
work=$(mktemp -d /tmp/driftless-try.XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root/etc"
# accounts are managed inside the root's own etc/passwd and etc/group
printf 'root:x:0:0:root:/root:/bin/bash\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

if [ -t 1 ]; then b=$'\033[1m'; n=$'\033[0m'; else b=''; n=''; fi
step() { printf '\n%s== %s%s\n' "$b" "$*" "$n"; }
run() { printf '$ %s\n' "$*" | sed "s#$work#\$WORK#g; s#$bin#driftless#g"; "$@"; }

step "a release key (the private half stays on the release host, mode 0600)"
run "$bin" keygen --out "$work/keys/release"
step "sign the example definitions into bundles"
run "$bin" sign definitions/base.toml --key "$work/keys/release.key" --version 1 --out "$work/base-1.bundle"
run "$bin" sign definitions/web.toml --key "$work/keys/release.key" --version 1 --out "$work/web-1.bundle"
step "verify: signatures, threshold, fleet, expiry"
run "$bin" verify "$work/web-1.bundle" --trust "$work/keys"
step "plan: what apply would change (changes nothing)"
run "$bin" plan "$work/web-1.bundle" --trust "$work/keys" --root "$root" --labels role=web,dc=a
step "apply both channels"
run "$bin" apply "$work/base-1.bundle" --trust "$work/keys" --root "$root" --labels role=web,dc=a
run "$bin" apply "$work/web-1.bundle" --trust "$work/keys" --root "$root" --labels role=web,dc=a
step "apply again: nothing to do"
run "$bin" apply "$work/web-1.bundle" --trust "$work/keys" --root "$root" --labels role=web,dc=a
step "someone edits a managed file by hand (drift)"
echo "workers = 64" >>"$root/etc/webapp/webapp.conf"
run "$bin" plan "$work/web-1.bundle" --trust "$work/keys" --root "$root" --labels role=web,dc=a
run "$bin" apply "$work/web-1.bundle" --trust "$work/keys" --root "$root" --labels role=web,dc=a
step "a tampered bundle is refused, and nothing changes"
cp "$work/web-1.bundle" "$work/tampered.bundle"
printf 'X' | dd of="$work/tampered.bundle" bs=1 seek=200 conv=notrunc status=none
if run "$bin" apply "$work/tampered.bundle" --trust "$work/keys" --root "$root" --labels role=web,dc=a; then
  echo "tampered bundle was accepted" >&2; exit 1
fi
step "version 2, then an attempt to roll back to version 1"
run "$bin" sign definitions/web.toml --key "$work/keys/release.key" --version 2 --out "$work/web-2.bundle"
run "$bin" apply "$work/web-2.bundle" --trust "$work/keys" --root "$root" --labels role=web,dc=a
if run "$bin" apply "$work/web-1.bundle" --trust "$work/keys" --root "$root" --labels role=web,dc=a; then
  echo "rollback was accepted" >&2; exit 1
fi
step "done: the converged root"
(cd "$root" && find . -path ./var/lib -prune -o -type f -print -o -type l -print | sort)
[ "${KEEP:-0}" = 1 ] && echo "kept in $work"
exit 0

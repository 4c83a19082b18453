#!/usr/bin/env bash
# Builds the Debian package: the binary (unless --no-build), then the man pages and shell
# completions from that very binary, then `cargo deb --no-build`.
#
#   packaging/build-deb.sh                 # release build, target/debian/authmilter_*.deb
#   packaging/build-deb.sh --no-build      # package the release binary already built
#   PROFILE=dev packaging/build-deb.sh --no-build --fast   # the tests: the debug binary
#
# Further arguments go to cargo deb (e.g. --output DIR, --fast).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${PROFILE:-release}
build=1
args=()
for arg in "$@"; do
    if [ "$arg" = --no-build ]; then build=; else args+=("$arg"); fi
done
target=${CARGO_TARGET_DIR:-target}
case "$profile" in
    release) out="$target/release" ;;
    dev) out="$target/debug" ;;
    *) out="$target/$profile" ;;
esac
if [ -n "$build" ]; then
    cargo build --locked --profile "$profile" --bin authmilter
fi
bin="$out/authmilter"
[ -x "$bin" ] || { echo "build-deb: $bin missing (build it, or drop --no-build)" >&2; exit 1; }

gen="$out/packaging"
rm -rf "$gen"
mkdir -p "$gen/man" "$gen/completions"
"$bin" man "$gen/man"
# Debian policy: man pages compressed with gzip -9, reproducibly (-n: no name or time).
gzip -9n "$gen"/man/*
"$bin" completions bash >"$gen/completions/authmilter"
"$bin" completions zsh >"$gen/completions/_authmilter"
"$bin" completions fish >"$gen/completions/authmilter.fish"

cargo deb --no-build --profile "$profile" "${args[@]}"

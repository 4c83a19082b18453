#!/usr/bin/env bash
# Builds the fuzz targets and runs one for a bounded time (README, "Fuzzing").
#
#   fuzz/run.sh TARGET SECONDS [libFuzzer options...]   run TARGET for SECONDS (0: no limit)
#   fuzz/run.sh build                                   only build every target
#   fuzz/run.sh list                                    the targets
#
# Harness: libFuzzer (libfuzzer-sys) on stable rustc. cargo-fuzz's sanitizers need nightly
# (-Zsanitizer), but its coverage instrumentation is rustc's stable sancov pass, selected
# by codegen flags: rustc-wrapper.sh adds them to authmilter and the parsers under it only;
# every crate gets --cfg fuzzing, debug assertions and overflow checks; --target keeps the
# flags off build scripts and proc macros.
# The run starts from the committed seeds (fuzz/corpus/TARGET, read only) plus a working
# corpus under the target directory; a crash, a panic (libfuzzer-sys aborts on one), an
# allocation over the limits of fuzz/src/lib.rs, RSS over 2 GiB or an input taking over
# 10 s fails the run, and libFuzzer leaves the input in fuzz/artifacts/TARGET/.
set -euo pipefail
fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
cd "$fuzz_dir"

targets=(milter_session smtp_session config policy spf_record dkim_arc_tags message_verify
    auth_results dmarc_report smtp_auth)

host="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${AUTHMILTER_FUZZ_TARGET_DIR:-$fuzz_dir/target}"
export RUSTFLAGS="--cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export AUTHMILTER_SANCOV="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"
export RUSTC_WRAPPER="$fuzz_dir/rustc-wrapper.sh"

build() {
    cargo build --locked --release --target "$host" --bins
}

case "${1:-}" in
    list)
        printf '%s\n' "${targets[@]}"
        exit 0
        ;;
    build)
        build
        exit 0
        ;;
    "" | -h | --help)
        sed -n '2,14p' "$0"
        exit 2
        ;;
esac

target="$1"
seconds="${2:?usage: fuzz/run.sh TARGET SECONDS}"
shift 2
if [[ ! " ${targets[*]} " == *" $target "* ]]; then
    echo "unknown target $target (fuzz/run.sh list)" >&2
    exit 2
fi
build
work="$CARGO_TARGET_DIR/corpus/$target"
artifacts="$fuzz_dir/artifacts/$target"
mkdir -p "$work" "$artifacts"
# -max_len: 64 KiB lets a whole message, conversation or report fit; records, fields and
# SASL lines get 4 KiB (longer inputs only slow those targets down), TOML files 16 KiB.
# -timeout: an input that takes over 10 s is a finding; -rss_limit_mb: memory that grows
# across inputs is one too.
case "$target" in
    spf_record | dkim_arc_tags | auth_results | smtp_auth) max_len=4096 ;;
    config | policy) max_len=16384 ;;
    *) max_len=65536 ;;
esac
exec "$CARGO_TARGET_DIR/$host/release/$target" \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$@" \
    "$work" "$fuzz_dir/corpus/$target"

#!/usr/bin/env bash
# Side-by-side A/B of two authmilter binaries (say, before and after a change): verify mode,
# the message and DNS fixtures of bench/compare.sh (dnsmasq on 127.0.0.1:PORT_BASE, the two
# daemons on the next two ports; by default a base chosen from the script's PID), each binary
# started fresh per run, 300 warm-up messages, then DURATION seconds of
# `bench-milter -c C`; A and B alternate ROUNDS times so both see the same machine.
# Prints one line per run: msgs/s, p99 ms, daemon CPU (user + system) per message in us, the
# load generator's CPU per message, and what the daemon's CPU per message would give with
# the machine's cores to itself (`capacity`: cores x 1 s / CPU per message, i.e. msgs/s with
# the load generator's CPU subtracted). The load generator is binary A's bench-milter for
# every run. RATE=N paces the load at N msgs/s in all (light load: how a filter fares when
# each message wakes it from idle, as behind a real MTA). UNIX=1 runs both over a Unix socket instead of TCP; A_ARGS / B_ARGS add `serve`
# options for one side (e.g. `-c policy.toml`, to compare settings with one binary). PERF=1 also records
# `perf record -g` of each daemon into $W/perf-A.data / perf-B.data (PERF_ARGS replaces
# `-F 2000 -g`, e.g. `--call-graph dwarf`). After each A/B pair, the floor: `bench-floor`
# (one ring RSA-2048 verification plus SHA-256 of the same message, CPU time of one thread,
# 2 s) of binary B (or A, or FLOOR_BIN, whichever has the command). At the end, the medians,
# and each binary's median CPU per message as a ratio to the median floor.
#
# Usage:   bench/ab.sh OLD_BINARY NEW_BINARY      (ROUNDS=3 DURATION=6 C=16 by default)
# Needs:   dnsmasq; perf for PERF=1.
set -euo pipefail
A=$1; B=$2; ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-6}; C=${C:-16}
ROOT=$(cd "$(dirname "$0")/.." && pwd); W=${W:-$(mktemp -d)}; mkdir -p $W
# Loopback ports of this run (dnsmasq, A, B), apart from another ab.sh running at the same time.
BASE=${PORT_BASE:-$((20000 + $$ % 4000 * 3))}
GEN=$A
FLOOR=
for f in ${FLOOR_BIN:-} $B $A; do
    if $f bench-floor --help >/dev/null 2>&1; then FLOOR=$f; break; fi
done
{
    printf 'From: Alice <alice@example.com>\r\nTo: Bob <bob@example.net>\r\n'
    printf 'Subject: Quarterly figures\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n'
    printf 'Message-ID: <bench-1@example.com>\r\nMIME-Version: 1.0\r\n'
    printf 'Content-Type: text/plain; charset=utf-8\r\n\r\n'
    for _ in $(seq 30); do printf 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n'; done
} >$W/unsigned.eml
cp $ROOT/testdata/keys/rsa2048.pem $W/k.pem; chmod 600 $W/k.pem
$GEN sign --domain example.com --selector rsa --key $W/k.pem $W/unsigned.eml > $W/signed.eml
mapfile -t TXT < <(awk '$1 ~ /(^|\.)example\.com$/ && toupper($2) == "TXT" {
    v = $0; sub(/^[ \t]*[^ \t]+[ \t]+[^ \t]+[ \t]+/, "", v); sub(/[ \t]+$/, "", v)
    out = "--txt-record=" $1
    while (length(v) > 0) { out = out "," substr(v, 1, 255); v = substr(v, 256) }
    print out }' $ROOT/testdata/dns/main.zone)
dnsmasq --keep-in-foreground --conf-file=/dev/null --port=$BASE --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts --pid-file= \
    --auth-server=ns.bench.test,127.0.0.1 --auth-zone=com --auth-zone=net --auth-ttl=3600 --neg-ttl=3600 --local-ttl=3600 \
    "${TXT[@]}" > $W/dnsmasq.log 2>&1 &
DNS=$!
trap 'kill $DNS 2>/dev/null; kill $(jobs -p) 2>/dev/null || true' EXIT
sleep 0.5
CORES=$(nproc)
run() {
    local label=$1 bin=$2 port=$3 extra=$4
    local listen=127.0.0.1:$port target=127.0.0.1:$port
    if [ -n "${UNIX:-}" ]; then
        listen=unix:$W/$label.sock target=unix:$W/$label.sock
        rm -f $W/$label.sock
    fi
    AUTHMILTER_LOG=info $bin serve $extra --milter $listen --nameserver 127.0.0.1:$BASE --authserv-id mx.bench.example > /dev/null 2>$W/$label.log &
    local pid=$!
    for _ in $(seq 100); do
        if [ -n "${UNIX:-}" ]; then [ -S $W/$label.sock ] && break
        else (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; fi
        sleep 0.05
    done
    $GEN bench-milter --target $target -c $C -n 300 --ip 192.0.2.10 --message $W/signed.eml >/dev/null
    local c0=$(awk '{ print $14 + $15 }' /proc/$pid/stat)
    if [ -n "${PERF:-}" ]; then perf record ${PERF_ARGS:--F 2000 -g} -p $pid -o $W/perf-$label.data -- sleep 4 >/dev/null 2>&1 & fi
    local TIMEFORMAT='%U %S'
    local json
    { time $GEN bench-milter --target $target -c $C -d $DURATION ${RATE:+--rate $RATE} --ip 192.0.2.10 --message $W/signed.eml --json >$W/out.json; } 2>$W/gen-time
    json=$(cat $W/out.json)
    local c1=$(awk '{ print $14 + $15 }' /proc/$pid/stat)
    kill $pid; wait $pid 2>/dev/null || true
    local n=$(sed -n 's/.*"messages":\([0-9]*\).*/\1/p' <<<"$json")
    local mps=$(sed -n 's/.*"msgs_per_sec":\([0-9.]*\).*/\1/p' <<<"$json")
    local p99=$(sed -n 's/.*"p99_ms":\([0-9.]*\).*/\1/p' <<<"$json")
    local err=$(sed -n 's/.*"errors":\([0-9]*\).*/\1/p' <<<"$json")
    local cpu=$(awk -v t=$((c1 - c0)) -v hz=$(getconf CLK_TCK) -v n=$n 'BEGIN { printf "%.1f", t / hz * 1000000 / n }')
    local gen=$(awk -v n=$n '{ printf "%d", ($1 + $2) * 1000000 / n }' $W/gen-time)
    local capacity=$(awk -v c=$cpu -v k=$CORES 'BEGIN { printf "%d", (c > 0) ? k * 1000000 / c : 0 }')
    echo "$label mps=$mps p99=$p99 cpu_us_per_msg=$cpu gen_cpu_us_per_msg=$gen capacity=$capacity errors=$err" | tee -a $W/runs
}
: >$W/runs
floor() {
    [ -n "$FLOOR" ] || return 0
    local us=$($FLOOR bench-floor --key $W/k.pem --message $W/signed.eml -d 2 --json | sed -n 's/.*"cpu_us_per_op":\([0-9.]*\).*/\1/p')
    echo "floor cpu_us_per_op=$us" | tee -a $W/runs
}
for r in $(seq $ROUNDS); do
    run A $A $((BASE + 1)) "${A_ARGS:-}"
    run B $B $((BASE + 2)) "${B_ARGS:-}"
    floor
done
# Medians per binary, field by field.
for label in A B; do
    printf '%s median:' $label
    for key in mps p99 cpu_us_per_msg gen_cpu_us_per_msg capacity; do
        grep "^$label " $W/runs | tr ' ' '\n' | sed -n "s/^$key=//p" | sort -g |
            awk -v k=$key '{ v[NR] = $1 } END { printf " %s=%s", k, (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
    done
    echo
done
if [ -n "$FLOOR" ]; then
    median() { grep "^$1 " $W/runs | tr ' ' '\n' | sed -n "s/^$2=//p" | sort -g |
        awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
    fl=$(median floor cpu_us_per_op)
    printf 'floor median: cpu_us_per_op=%.1f (ring RSA-2048 verify + SHA-256, %s)\n' "$fl" "$FLOOR"
    for label in A B; do
        awk -v l=$label -v c="$(median $label cpu_us_per_msg)" -v f="$fl" \
            'BEGIN { printf "%s cpu_us_per_msg / floor = %.2f\n", l, c / f }'
    done
else
    echo "floor: neither binary has bench-floor (set FLOOR_BIN)"
fi

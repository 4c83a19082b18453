#!/usr/bin/env bash
# Side-by-side A/B of two authmilter binaries (say, before and after a change): verify mode,
# the message and DNS fixtures of bench/compare.sh (dnsmasq on 127.0.0.1:5399), each binary
# started fresh per run, 300 warm-up messages, then DURATION seconds of
# `bench-milter -c C`; A and B alternate ROUNDS times so both see the same machine.
# Prints one line per run: msgs/s, p99 ms, daemon CPU (user + system) per message in us.
# The load generator is binary A's bench-milter for every run. PERF=1 also records
# `perf record -g` of each daemon into $W/perf-A.data / perf-B.data.
#
# Usage:   bench/ab.sh OLD_BINARY NEW_BINARY      (ROUNDS=3 DURATION=6 C=16 by default)
# Needs:   dnsmasq; perf for PERF=1.
set -euo pipefail
A=$1; B=$2; ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-6}; C=${C:-16}
ROOT=$(cd "$(dirname "$0")/.." && pwd); W=${W:-$(mktemp -d)}; mkdir -p $W
GEN=$A
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
dnsmasq --keep-in-foreground --conf-file=/dev/null --port=5399 --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts --pid-file= \
    --auth-server=ns.bench.test,127.0.0.1 --auth-zone=com --auth-zone=net --auth-ttl=3600 --neg-ttl=3600 --local-ttl=3600 \
    "${TXT[@]}" > $W/dnsmasq.log 2>&1 &
DNS=$!
trap 'kill $DNS 2>/dev/null; kill $(jobs -p) 2>/dev/null || true' EXIT
sleep 0.5
run() {
    local label=$1 bin=$2 port=$3
    AUTHMILTER_LOG=info $bin serve --milter 127.0.0.1:$port --nameserver 127.0.0.1:5399 --authserv-id mx.bench.example > /dev/null 2>$W/$label.log &
    local pid=$!
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
    $GEN bench-milter --target 127.0.0.1:$port -c $C -n 300 --ip 192.0.2.10 --message $W/signed.eml >/dev/null
    local c0=$(awk '{ print $14 + $15 }' /proc/$pid/stat)
    if [ -n "${PERF:-}" ]; then perf record -F 2000 -g -p $pid -o $W/perf-$label.data -- sleep 4 >/dev/null 2>&1 & fi
    local json=$($GEN bench-milter --target 127.0.0.1:$port -c $C -d $DURATION --ip 192.0.2.10 --message $W/signed.eml --json)
    local c1=$(awk '{ print $14 + $15 }' /proc/$pid/stat)
    kill $pid; wait $pid 2>/dev/null || true
    local n=$(sed -n 's/.*"messages":\([0-9]*\).*/\1/p' <<<"$json")
    local mps=$(sed -n 's/.*"msgs_per_sec":\([0-9.]*\).*/\1/p' <<<"$json")
    local p99=$(sed -n 's/.*"p99_ms":\([0-9.]*\).*/\1/p' <<<"$json")
    local err=$(sed -n 's/.*"errors":\([0-9]*\).*/\1/p' <<<"$json")
    echo "$label mps=$mps p99=$p99 cpu_us_per_msg=$(( (c1 - c0) * 10000000 / n / 1000 )) errors=$err"
}
for r in $(seq $ROUNDS); do
    run A $A 18901
    run B $B 18902
done

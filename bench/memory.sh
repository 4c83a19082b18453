#!/usr/bin/env bash
# Peak memory of one milter message (issue 27 item 3): a fresh `serve` with a SQLite verdict
# store per run; just before the message its peak RSS is reset (`echo 5 > clear_refs`); one
# message is sent by `bench-milter -n 1`; then the growth of VmHWM over the RSS at the reset,
# and that growth over the message's size. Two messages: a 25 MB body (DKIM-signed, so the
# body hash runs over it) and 30 header fields of 1 MB each (folded every 998 characters).
# limits.max_message_size is raised to 64 MiB so that both are kept and verified.
#
# Usage:   bench/memory.sh [BINARY]      (default target/release/authmilter; RUNS=3)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release/authmilter}; RUNS=${RUNS:-3}
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf $W' EXIT
python3 - "$W" <<'EOF'
import sys
w = sys.argv[1]
head = (b"From: Alice <alice@example.com>\r\nTo: Bob <bob@example.net>\r\n"
        b"Subject: Large\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
        b"Message-ID: <mem-1@example.com>\r\n")
line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n"
open(f"{w}/body.eml", "wb").write(head + b"\r\n" + line * (25_000_000 // len(line)))
chunk = b"x" * 998
value = b"\r\n\t".join([chunk] * (1_000_000 // 998))
fields = b"".join(b"X-Big-%d: %s\r\n" % (i, value) for i in range(30))
open(f"{w}/headers.eml", "wb").write(head + fields + b"\r\n" + line)
EOF
cp "$ROOT/testdata/keys/rsa2048.pem" $W/k.pem; chmod 600 $W/k.pem
"$BIN" sign --domain example.com --selector rsa --key $W/k.pem $W/body.eml > $W/body-signed.eml
printf '[limits]\nmax_message_size = 67108864\n' > $W/config.toml
kib() { awk -v k="$1:" '$1 == k { print $2 }' /proc/$2/status; }
echo "binary: $BIN"
printf '%-22s %12s %12s %12s %7s\n' message size_MiB rss_MiB peak+_MiB ratio
for msg in body-signed headers; do
    size=$(stat -c %s $W/$msg.eml)
    for run in $(seq "$RUNS"); do
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        rm -f $W/v.sqlite*
        AUTHMILTER_LOG=warn "$BIN" serve --config $W/config.toml --milter 127.0.0.1:$port \
            --nameserver 127.0.0.1:9 --store $W/v.sqlite >/dev/null 2>$W/serve.log &
        pid=$!
        for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
        sleep 0.3
        echo 5 > /proc/$pid/clear_refs
        rss=$(kib VmRSS $pid)
        timeout 120 "$BIN" bench-milter --target 127.0.0.1:$port -n 1 --ip 192.0.2.10 \
            --message $W/$msg.eml --timeout 60 > $W/gen.log || { cat $W/gen.log $W/serve.log >&2; exit 1; }
        hwm=$(kib VmHWM $pid)
        kill $pid; wait $pid 2>/dev/null || true
        awk -v m="$msg" -v s="$size" -v r="$rss" -v h="$hwm" 'BEGIN {
            printf "%-22s %12.1f %12.1f %12.1f %7.2f\n", m, s/1048576, r/1024, (h-r)/1024, (h-r)*1024/s }'
    done
done

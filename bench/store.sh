#!/usr/bin/env bash
# Verdict-writer throughput, SQLite next to PostgreSQL, in one run (benches/store.rs):
# starts a private PostgreSQL 15 cluster on a free loopback port (Debian `postgresql`; as the
# postgres user when run as root, since the server refuses to run as root), with the server's
# default durability (fsync on), then runs `cargo bench --bench store` against it and a
# SQLite file, and stops the cluster.
#
# Usage:   bench/store.sh            (AUTHMILTER_BENCH_RECORDS=N to change the record count;
#          BENCH=reads runs benches/reads.rs against the same kind of cluster: bench/reads.sh)
# Needs:   /usr/lib/postgresql/15/bin (Debian postgresql).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=/usr/lib/postgresql/15/bin
[ -x "$bin/initdb" ] || { echo "PostgreSQL 15 is not installed (apt-get install postgresql)" >&2; exit 1; }
dir=$(mktemp -d)
chmod 755 "$dir"
as=()
if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
    as=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stop() { "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap stop EXIT
"${as[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C >/dev/null
"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
"$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -c 'CREATE DATABASE bench'
echo "PostgreSQL 15 on 127.0.0.1:$port (fsync on); SQLite in a temporary file (WAL, synchronous=NORMAL)"
AUTHMILTER_BENCH_PG_URL="postgres://postgres@127.0.0.1:$port/bench?sslmode=disable" \
    cargo bench --bench "${BENCH:-store}"

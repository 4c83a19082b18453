#!/usr/bin/env bash
# Reads over a day of verdicts (24 h overview, /v1/stats) and pruning that day, SQLite next to
# PostgreSQL, in one run (benches/reads.rs): fills each store (untimed), then times the reads.
# The private PostgreSQL 15 cluster (fsync on) is bench/store.sh's.
#
# Usage:   bench/reads.sh            (AUTHMILTER_BENCH_ROWS=N to change the row count)
# Needs:   /usr/lib/postgresql/15/bin (Debian postgresql).
set -euo pipefail
BENCH=reads exec "$(dirname "$0")/store.sh"

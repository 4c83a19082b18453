#!/usr/bin/env bash
# authmilter against the filters people run today, on one machine, in one run, with the same
# message and the same load generator (`authmilter bench-milter` / `bench-smtp`):
#
#   1. verify: authmilter (SPF + DKIM + ARC + DMARC) vs OpenDKIM (verify mode) vs OpenDMARC
#      (its own SPF + DMARC) vs rspamd (SPF, DKIM, ARC and DMARC modules only), at 1, 16 and
#      64 milter connections;
#   2. sign: authmilter RSA-2048 and Ed25519 vs OpenDKIM RSA-2048 vs rspamd's dkim_signing
#      RSA-2048 (the same key);
#   3. Postfix end to end: concurrent SMTP sessions (XCLIENT from 192.0.2.10) into a private
#      Postfix instance with no milter, with authmilter, with OpenDKIM + OpenDMARC;
#   4. memory: peak RSS with 1,000 idle milter connections (authmilter, OpenDKIM, rspamd).
#
# and prints one table: messages/s, p50/p99 latency, filter CPU seconds per 1,000 messages
# (utime + stime from /proc/PID/stat of the filter and its child processes, before/after),
# the load generator's CPU (it shares the machine), peak RSS (VmHWM of a filter process
# started fresh for that row; for rspamd, whose workers share the pages of the master they
# were forked from, the sum of the PSS of all its processes right after the load), DNS
# queries per message, and the ratio to the peer. Extra rows: authmilter on a Unix socket,
# authmilter at half its measured load (latency), and `openssl speed rsa2048` for the signing
# ceiling.
#
# Before each row's warm-up, one message goes through the fresh filter with `bench-milter
# --edited`, and the script stops unless the filter really did its job on it: verify rows
# need the filter's Authentication-Results to say dkim=pass (OpenDKIM), spf=pass and
# dmarc=pass (OpenDMARC), all three (authmilter, rspamd); sign rows need a DKIM-Signature
# (d=example.com, s=rsa) that `authmilter check` then verifies against the zone.
#
# rspamd (Debian's 3.4) runs from a configuration written here ($B/rspamd.conf: nothing from
# /etc/rspamd, DBDIR/RUNDIR/LOGDIR and the temp directory under $B, as user _rspamd): one
# rspamd_proxy worker type in milter mode scanning itself (self_scan, no normal worker, no
# controller), $RSPAMD_WORKERS processes of it; modules dkim (C), spf, arc, dmarc,
# dkim_signing and milter_headers (only its authentication-results routine, the header the
# other filters add); Debian's scores for their symbols and its actions; no Redis, fuzzy,
# neural, RBL, URL, regexp rules or statistics (rspamd enables a Lua module only when its
# section exists). DNS from dnsmasq, rspamd's own resolver. dkim_signing signs mail from
# local addresses (sign_local; the generator's client is 127.0.0.1 in the sign rows).
#
# The message: ~3 KB, signed by example.com with RSA-2048 (selector rsa, the test key in
# testdata/keys/), sent from 192.0.2.10, which example.com's SPF authorizes; example.com
# publishes DMARC p=reject. DNS: dnsmasq on 127.0.0.1:53, authoritative for com and net
# (negative answers carry an SOA, so resolvers may cache them as on the Internet), loaded
# with example.com's records from testdata/dns/main.zone. authmilter and OpenDKIM (libunbound,
# `Nameservers`) query it directly; OpenDMARC uses the system resolver, so it runs in a private
# mount namespace where /etc/resolv.conf says `nameserver 127.0.0.1`.
#
# Usage:   cargo build --release && sudo bench/compare.sh [--quick]
# Needs:   root (Postfix, port 53, unshare), Debian packages opendkim opendkim-tools opendmarc
#          rspamd dnsmasq postfix, util-linux (unshare). Runs in about 8 minutes (--quick:
#          about 5; rspamd takes 10-30 s to start for each of its rows).
# Tuning:  DURATION (seconds per row, default 8), CONNS ("1 16 64"), SIGN_CONNS (16: the
#          signing, Unix-socket and half-load rows), ONLY (a list of peers among opendkim,
#          opendmarc, rspamd and postfix: only their rows and authmilter's rows next to them,
#          without the Unix-socket, half-load, Ed25519 and openssl extras; e.g. ONLY=rspamd),
#          RSPAMD_WORKERS (rspamd_proxy processes, default: one per core),
#          SMTP_CONNS (8), E2E_ROUNDS (2), PEERS_E2E=0 (no OpenDKIM + OpenDMARC row behind
#          Postfix, and neither needs to be installed for ONLY=postfix), AUTHMILTER_OLD (a second authmilter binary, e.g.
#          the previous commit's: one more Postfix row, its rounds alternating with the others,
#          so a tuning step's end-to-end effect is measured side by side), IDLE_CONNS (1000), AUTHMILTER (binary, default target/release),
#          OUT (also write the table and the raw JSON lines to this directory), KEEP=1 (keep
#          the scratch directory).
#
# Everything listens on 127.0.0.1; every process started here is stopped on exit (trap).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
AM=${AUTHMILTER:-$ROOT/target/release/authmilter}
AM_OLD=${AUTHMILTER_OLD:-}
PEERS_E2E=${PEERS_E2E:-1}
DURATION=${DURATION:-8}
CONNS=${CONNS:-"1 16 64"}
SIGN_CONNS=${SIGN_CONNS:-16}
SMTP_CONNS=${SMTP_CONNS:-8}
E2E_ROUNDS=${E2E_ROUNDS:-2}
IDLE_CONNS=${IDLE_CONNS:-1000}
OUT=${OUT:-}
KEEP=${KEEP:-0}
ONLY=${ONLY:-}
RSPAMD_WORKERS=${RSPAMD_WORKERS:-$(nproc)}
if [ "${1:-}" = "--quick" ]; then
    DURATION=3
fi
WARMUP=200          # messages before each measured row (caches, connections, page faults)
CLIENT_IP=192.0.2.10
AUTHSERV=mx.bench.example

# want PEER: that peer's rows are part of this run. full: every row (no ONLY).
want() { [ -z "$ONLY" ] || [[ " ${ONLY//,/ } " == *" $1 "* ]]; }
full() { [ -z "$ONLY" ]; }

die() {
    echo "compare.sh: $*" >&2
    exit 2
}
note() { echo "# $*" >&2; }

# ---------------------------------------------------------------- preflight

[ "$(id -u)" = 0 ] || die "needs root (private Postfix instance, DNS on port 53, unshare)"
[ -x "$AM" ] || die "no authmilter binary at $AM (cargo build --release, or set AUTHMILTER)"
"$AM" bench-milter --help >/dev/null 2>&1 || die "$AM has no bench-milter command (rebuild)"
for w in $ONLY; do
    case $w in opendkim | opendmarc | rspamd | postfix) ;; *) die "ONLY: unknown peer $w (opendkim, opendmarc, rspamd, postfix)" ;; esac
done
tools=(dnsmasq unshare mount awk sed)
want opendkim && tools+=(opendkim)
want opendmarc && tools+=(opendmarc)
want rspamd && tools+=(rspamd)
want postfix && tools+=(postfix postconf)
if want postfix && [ "$PEERS_E2E" != 0 ]; then tools+=(opendkim opendmarc); fi
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool not found: apt-get install -y --no-install-recommends opendkim opendkim-tools opendmarc rspamd dnsmasq postfix"
done
if want rspamd; then
    id _rspamd >/dev/null 2>&1 || die "no user _rspamd (Debian's rspamd package creates it)"
fi
for f in testdata/dns/main.zone testdata/keys/rsa2048.pem testdata/keys/ed25519.pem; do
    [ -r "$ROOT/$f" ] || die "missing $ROOT/$f"
done
TICK=$(getconf CLK_TCK)
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS * 2 + 256)) ]; then
    ulimit -n $((IDLE_CONNS * 2 + 256)) 2>/dev/null || die "ulimit -n too low for $IDLE_CONNS connections"
fi

B=$(mktemp -d /tmp/authmilter-bench.XXXXXX)
chmod 755 "$B"
PIDS=()
POSTFIX_UP=0
PF_CLEAN=

cleanup() {
    local pid
    set +e
    if [ "$POSTFIX_UP" = 1 ]; then
        postfix -c "$PF/etc" stop >/dev/null 2>&1
    fi
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$pid" 2>/dev/null
    done
    if [ "$KEEP" = 1 ]; then
        echo "scratch directory kept: $B ${PF_CLEAN:-}" >&2
    else
        rm -rf "$B"
        # Only the Postfix instance this run created (its name carries our PID).
        case ${PF_CLEAN:-} in
        */authmilter-bench-pf.$$) rm -rf "$PF_CLEAN" ;;
        esac
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a command in the background, logging to $B/NAME.log; sets $LAST_PID.
start_bg() {
    local name=$1
    shift
    "$@" >"$B/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# Stops one process started by start_bg (by its id), waits for it, and forgets it. Its child
# processes (rspamd's workers) go with it: what is left of them after 5 s is killed.
stop_pid() {
    local pid=$1 i p tree
    for i in "${!PIDS[@]}"; do
        [ "${PIDS[$i]}" != "$pid" ] || unset 'PIDS[i]'
    done
    tree=$(tree_pids "$pid")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    for p in $tree; do
        kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
    done
    return 0
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # PORT PID NAME [SECONDS]
    local port=$1 pid=$2 name=$3
    for _ in $(seq $((${4:-10} * 10))); do
        port_open "$port" && return 0
        kill -0 "$pid" 2>/dev/null || die "$name exited at start: $(tail -5 "$B/$name.log")"
        sleep 0.1
    done
    die "$name does not listen on 127.0.0.1:$port: $(tail -5 "$B/$name.log")"
}

# Sets PORT to a loopback port nobody listens on (not in a subshell: the counter must move).
NEXT_PORT=17100
free_port() {
    while port_open "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
    PORT=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
}

# A process and all its descendants (rspamd's master and the workers it forked).
tree_pids() {
    ps -e -o pid=,ppid= | awk -v root="$1" '{ parent[$1] = $2 } END {
        keep[root] = 1
        do {
            more = 0
            for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; more = 1 }
        } while (more)
        for (p in keep) print p }'
}
# utime + stime of the process tree (fields 14 and 15, counted after the command name).
cpu_ticks() {
    local p t=0
    for p in $(tree_pids "$1"); do
        t=$((t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# Proportional set size of the process tree: pages shared by forked workers counted once.
pss_kb() {
    local p
    for p in $(tree_pids "$1"); do cat "/proc/$p/smaps_rollup" 2>/dev/null; done |
        awk '/^Pss:/ { k += $2 } END { print k + 0 }'
}
# The memory figure of a filter: peak RSS of its one process; for rspamd, the PSS of all its
# processes (a sum of the workers' peak RSS would count the master's pages once per worker).
mem_kb() { # KIND PID
    case $1 in rspamd*) pss_kb "$2" ;; *) hwm_kb "$2" ;; esac
}
# A number from the generator's one-line JSON.
jnum() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<<"$2"; }

# ---------------------------------------------------------------- machine, versions

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr)"
versions="$("$AM" --version)"
want opendkim && versions+=", $(opendkim -V 2>&1 | head -1 | sed 's/^opendkim: //')"
want opendmarc && versions+=", $(opendmarc -V 2>&1 | head -1 | sed 's/^opendmarc: //')"
want rspamd && versions+=", rspamd $(rspamd --version 2>&1 | sed -n 's/.*version //p' | head -1)"
want postfix && versions+=", Postfix $(postconf -d -h mail_version)"
echo "versions: $versions, $(dnsmasq --version | head -1 | sed 's/ Copyright.*//')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
busy=$(ps -eo comm= | grep -cE '^(rustc|cargo|cc1|cc1plus|ld)$' || true)
[ "${busy:-0}" = 0 ] || note "warning: $busy compiler processes running; figures will be low and noisy"

# ---------------------------------------------------------------- fixtures

mkdir -p "$B/keys"
cp "$ROOT/testdata/keys/rsa2048.pem" "$ROOT/testdata/keys/ed25519.pem" "$B/keys/"
chmod 600 "$B/keys/"*.pem
{
    printf 'From: Alice <alice@example.com>\r\nTo: Bob <bob@example.net>\r\n'
    printf 'Subject: Quarterly figures\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n'
    printf 'Message-ID: <bench-1@example.com>\r\nMIME-Version: 1.0\r\n'
    printf 'Content-Type: text/plain; charset=utf-8\r\n\r\n'
    for _ in $(seq 30); do
        printf 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n'
    done
} >"$B/unsigned.eml"
"$AM" sign --domain example.com --selector rsa --key "$B/keys/rsa2048.pem" \
    "$B/unsigned.eml" >"$B/signed.eml" || die "authmilter sign failed"
echo "message: $(wc -c <"$B/signed.eml") bytes signed (rsa-sha256, relaxed/relaxed), $(wc -c <"$B/unsigned.eml") bytes unsigned for the signing rows"

# example.com's records from the test zone, as dnsmasq options (TXT strings of <= 255 bytes).
mapfile -t TXT < <(awk '$1 ~ /(^|\.)example\.com$/ && toupper($2) == "TXT" {
    v = $0; sub(/^[ \t]*[^ \t]+[ \t]+[^ \t]+[ \t]+/, "", v); sub(/[ \t]+$/, "", v)
    out = "--txt-record=" $1
    while (length(v) > 0) { out = out "," substr(v, 1, 255); v = substr(v, 256) }
    print out }' "$ROOT/testdata/dns/main.zone")
[ "${#TXT[@]}" -ge 3 ] || die "no example.com TXT records in testdata/dns/main.zone"
port_open 53 && die "127.0.0.1:53 is taken: stop the DNS server there (OpenDMARC's resolver can only use port 53)"
start_bg dnsmasq dnsmasq --keep-in-foreground --conf-file=/dev/null --port=53 \
    --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts --pid-file= \
    --auth-server=ns.bench.test,127.0.0.1 --auth-zone=com --auth-zone=net \
    --auth-ttl=3600 --neg-ttl=3600 --local-ttl=3600 --log-facility="$B/dnsmasq.stats" \
    "${TXT[@]}" "--txt-record=mail.example.com,v=spf1 ip4:192.0.2.0/24 -all"
DNSMASQ=$LAST_PID
sleep 0.5
kill -0 "$DNSMASQ" 2>/dev/null || die "dnsmasq did not start: $(tail -3 "$B/dnsmasq.log" "$B/dnsmasq.stats" 2>/dev/null)"
echo "nameserver 127.0.0.1" >"$B/resolv.conf"

# dnsmasq's count of authoritative answers so far (it logs its statistics on SIGUSR1).
dns_queries() {
    kill -USR1 "$DNSMASQ"
    sleep 0.2
    awk '/queries for authoritative zones/ { n = $NF } END { print n + 0 }' "$B/dnsmasq.stats"
}

# ---------------------------------------------------------------- filters

write_opendkim_conf() { # NAME PORT MODE
    {
        echo "Syslog no"
        echo "Socket inet:$2@127.0.0.1"
        echo "AuthservID $AUTHSERV"
        echo "Canonicalization relaxed/relaxed"
        echo "Nameservers 127.0.0.1"
        echo "Mode $3"
        if [ "$3" = s ]; then
            echo "Domain example.com"
            echo "Selector rsa"
            echo "KeyFile $B/keys/rsa2048.pem"
            # The key is ours (0600) but lives under /tmp, which OpenDKIM calls unsafe.
            echo "RequireSafeKeys no"
            echo "SignatureAlgorithm rsa-sha256"
        fi
    } >"$B/$1.conf"
}

# rspamd's private tree: its databases, run and temp directories, and its own copy of the
# signing key, all owned by the user its workers run as.
mkdir -p "$B/rspamd/db" "$B/rspamd/run" "$B/rspamd/tmp"
cp "$B/keys/rsa2048.pem" "$B/rspamd/rsa2048.pem"
chmod 600 "$B/rspamd/rsa2048.pem"
if want rspamd; then chown -R _rspamd:_rspamd "$B/rspamd"; fi

write_rspamd_conf() { # NAME BIND_SOCKET
    local r=$B/rspamd s
    cat >"$B/$1.conf" <<EOF
# Only what SPF, DKIM, ARC and DMARC need; see the header of bench/compare.sh.
options {
    pidfile = "$r/run/$1.pid";
    filters = "dkim";
    dns { nameserver = ["127.0.0.1:53"]; timeout = 1s; retransmits = 2; }
    url_tld = "\${SHAREDIR}/effective_tld_names.dat";
    cache_file = "$r/db/symbols.cache";
    hs_cache_dir = "$r/db/";
    tempdir = "$r/tmp";
}
logging { type = "file"; filename = "$B/$1.rspamd.log"; level = "info"; }
modules { path = "\${PLUGINSDIR}"; }
worker "rspamd_proxy" {
    bind_socket = "$2";
    milter = yes;
    timeout = 120s;
    count = $RSPAMD_WORKERS;
    upstream "local" { default = yes; self_scan = yes; }
}
dkim { dkim_cache_size = 2k; dkim_cache_expire = 1d; time_jitter = 6h; }
spf { spf_cache_size = 2k; spf_cache_expire = 1d; }
arc { }
dmarc { }
dkim_signing {
    sign_local = true;
    domain { example.com { path = "$r/rsa2048.pem"; selector = "rsa"; } }
}
milter_headers { use = ["authentication-results"]; }
actions { reject = 15; add_header = 6; greylist = 4; }
# Debian's scores for these modules' symbols (scores.d/policies_group.conf).
group "policies" {
    symbols {
EOF
    for s in R_SPF_FAIL:1.0 R_SPF_SOFTFAIL:0.0 R_SPF_NEUTRAL:0.0 R_SPF_ALLOW:-0.2 \
        R_SPF_DNSFAIL:0.0 R_SPF_NA:0.0 R_SPF_PERMFAIL:0.0 R_DKIM_REJECT:1.0 R_DKIM_TEMPFAIL:0.0 \
        R_DKIM_PERMFAIL:0.0 R_DKIM_ALLOW:-0.2 R_DKIM_NA:0.0 DMARC_POLICY_ALLOW:-0.5 \
        DMARC_POLICY_ALLOW_WITH_FAILURES:-0.5 DMARC_POLICY_REJECT:2.0 DMARC_POLICY_QUARANTINE:1.5 \
        DMARC_POLICY_SOFTFAIL:0.1 DMARC_NA:0.0 ARC_ALLOW:-1.0 ARC_REJECT:1.0 ARC_INVALID:0.5 \
        ARC_DNSFAIL:0.0 ARC_NA:0.0; do
        echo "        \"${s%%:*}\" { weight = ${s#*:}; }"
    done >>"$B/$1.conf"
    printf '    }\n}\n' >>"$B/$1.conf"
}

write_opendmarc_conf() { # NAME PORT
    cat >"$B/$1.conf" <<EOF
Syslog false
Socket inet:$2@127.0.0.1
AuthservID $AUTHSERV
TrustedAuthservIDs $AUTHSERV
SPFSelfValidate true
RejectFailures true
PublicSuffixList /usr/share/publicsuffix/public_suffix_list.dat
EOF
}

# start_filter KIND PORT -> FILTER_PID. KIND: am-verify am-rsa am-ed dkim-verify dkim-sign dmarc
start_filter() {
    local kind=$1 port=$2
    case $kind in
    am-verify) start_bg "$kind" "$AM" serve --milter "127.0.0.1:$port" \
        --nameserver 127.0.0.1:53 --authserv-id "$AUTHSERV" ;;
    am-verify-old) start_bg "$kind" "$AM_OLD" serve --milter "127.0.0.1:$port" \
        --nameserver 127.0.0.1:53 --authserv-id "$AUTHSERV" ;;
    am-verify-unix) start_bg "$kind" "$AM" serve --milter "unix:$B/am-$port.sock" \
        --nameserver 127.0.0.1:53 --authserv-id "$AUTHSERV" ;;
    am-rsa) start_bg "$kind" "$AM" serve --milter "127.0.0.1:$port" \
        --nameserver 127.0.0.1:53 --authserv-id "$AUTHSERV" \
        --sign "example.com:rsa:$B/keys/rsa2048.pem" ;;
    am-ed) start_bg "$kind" "$AM" serve --milter "127.0.0.1:$port" \
        --nameserver 127.0.0.1:53 --authserv-id "$AUTHSERV" \
        --sign "example.com:ed:$B/keys/ed25519.pem" ;;
    dkim-verify | dkim-sign)
        write_opendkim_conf "$kind" "$port" "$([ "$kind" = dkim-sign ] && echo s || echo v)"
        start_bg "$kind" opendkim -f -x "$B/$kind.conf" ;;
    dmarc)
        write_opendmarc_conf "$kind" "$port"
        # The system resolver, pointed at dnsmasq in this process's own mount namespace.
        start_bg "$kind" unshare -m sh -c \
            "mount --bind '$B/resolv.conf' /etc/resolv.conf && exec opendmarc -f -c '$B/$kind.conf'" ;;
    rspamd | rspamd-unix)
        if [ "$kind" = rspamd ]; then
            write_rspamd_conf "$kind" "127.0.0.1:$port"
        else
            write_rspamd_conf "$kind" "$B/rspamd-$port.sock mode=0666"
        fi
        # Its master stays in the foreground (-f) as this script's child; the workers drop to
        # _rspamd. Every default path (databases, pid file, logs) points into $B.
        start_bg "$kind" rspamd -f -c "$B/$kind.conf" -u _rspamd -g _rspamd \
            --var "DBDIR=$B/rspamd/db" --var "RUNDIR=$B/rspamd/run" --var "LOGDIR=$B/rspamd" ;;
    *) die "unknown filter $kind" ;;
    esac
    FILTER_PID=$LAST_PID
    # rspamd's master loads its configuration (and compiles the public suffix list, when its
    # cache in $B/rspamd/db is cold) before it listens: up to a minute on a busy machine.
    local secs=10
    [[ $kind != rspamd* ]] || secs=120
    local sock=
    case $kind in
    am-verify-unix) sock=$B/am-$port.sock ;;
    rspamd-unix) sock=$B/rspamd-$port.sock ;;
    esac
    if [ -n "$sock" ]; then
        FILTER_TARGET=unix:$sock
        for _ in $(seq $((secs * 10))); do
            [ -S "$sock" ] && return 0
            kill -0 "$FILTER_PID" 2>/dev/null || die "$kind exited at start: $(tail -5 "$B/$kind.log")"
            sleep 0.1
        done
        die "$kind did not create its socket: $(tail -5 "$B/$kind.log")"
    fi
    FILTER_TARGET=127.0.0.1:$port
    wait_port "$port" "$FILTER_PID" "$kind" "$secs"
}

RESULTS="$B/results.jsonl"
TABLE="$B/table.txt"
: >"$RESULTS"
declare -A MPS P50 P99 CPU GEN RSS DNSQ

# One message through the filter just started, waiting as long as it takes to come up (rspamd
# compiles its list of public suffixes first), kept as the filter left it (bench-milter
# --edited). Stops the run unless the filter did the row's work on it: Authentication-Results
# with the verdicts it is meant to give (verify rows), a DKIM-Signature that verifies (sign
# rows), so no row measures a filter that does nothing.
first_reply() { # LABEL KIND IP MESSAGE
    local label=$1 kind=$2 ip=$3 out=$B/first-$2-$3.eml head ar need n sel check
    "$AM" bench-milter --target "$FILTER_TARGET" -c 1 -n 1 --timeout 120 --ip "$ip" \
        --message "$4" --edited "$out" >/dev/null 2>"$B/first.log" ||
        die "$label: the first message failed: $(cat "$B/first.log") $(tail -3 "$B/$kind.log")"
    note "$label: $(cat "$B/first.log")"
    # The header, one field per line (folded lines joined).
    head=$(awk '{ sub(/\r$/, "") } /^$/ { exit }
        /^[ \t]/ { sub(/^[ \t]+/, " "); printf "%s", $0; next }
        { if (NR > 1) print ""; printf "%s", $0 } END { print "" }' "$out")
    case $label in
    verify*)
        ar=$(grep -i '^Authentication-Results:' <<<"$head" || true)
        case $kind in
        dkim-verify) need="dkim=pass" ;;
        dmarc) need="spf=pass dmarc=pass" ;;
        *) need="spf=pass dkim=pass dmarc=pass" ;;
        esac
        for n in $need; do
            grep -qi "$n" <<<"$ar" || die "$label: no $n in the filter's Authentication-Results: ${ar:-none}"
        done
        note "$label: ${ar//$'\n'/ | }" ;;
    sign*)
        sel=rsa
        [[ $label != *Ed25519* ]] || sel=ed
        grep -i '^DKIM-Signature:' <<<"$head" | grep -qiE "(^|[; ])d=example\.com;.*(^|[; ])s=$sel;|(^|[; ])s=$sel;.*(^|[; ])d=example\.com;" ||
            die "$label: no DKIM-Signature with d=example.com s=$sel: $(grep -i '^DKIM-Signature:' <<<"$head" || echo none)"
        # Checked by our verifier against the zone (SPF from the client that was signing for).
        check=$("$AM" check --nameserver 127.0.0.1:53 --ip "$CLIENT_IP" --json "$out" | tr -d ' \n')
        grep -q "\"result\":\"pass\",\"domain\":\"example.com\",\"selector\":\"$sel\"" <<<"$check" ||
            die "$label: the signature does not verify: $check"
        note "$label: DKIM-Signature d=example.com s=$sel verifies (authmilter check)" ;;
    esac
}

# measure LABEL KIND CONNS IP MESSAGE [extra bench args]: one row, filter started fresh.
measure() {
    local label=$1 kind=$2 conns=$3 ip=$4 msg=$5
    shift 5
    local port json c0 c1 q0 q1 g0 g1
    free_port
    port=$PORT
    start_filter "$kind" "$port"
    first_reply "$label" "$kind" "$ip" "$msg"
    "$AM" bench-milter --target "$FILTER_TARGET" -c "$conns" -n "$WARMUP" -d 30 --timeout 10 \
        --ip "$ip" --message "$msg" >/dev/null || note "$label: errors during warm-up"
    q0=$(dns_queries)
    c0=$(cpu_ticks "$FILTER_PID")
    times >"$B/times0.txt"
    "$AM" bench-milter --target "$FILTER_TARGET" -c "$conns" -d "$DURATION" --timeout 10 \
        --ip "$ip" --message "$msg" --json "$@" >"$B/run.json" || true
    times >"$B/times1.txt"
    c1=$(cpu_ticks "$FILTER_PID")
    q1=$(dns_queries)
    json=$(cat "$B/run.json")
    record "$label" "$json" $((c1 - c0)) "$(mem_kb "$kind" "$FILTER_PID")" $((q1 - q0)) "$(gen_cpu)"
    stop_pid "$FILTER_PID"
}

# The generator's CPU seconds between times0.txt and times1.txt (children of this shell).
gen_cpu() {
    awk 'function secs(t, a) { split(t, a, "m"); sub(/s$/, "", a[2]); return a[1] * 60 + a[2] }
         FNR == 2 { v[FILENAME] = secs($1) + secs($2) }
         END { printf "%.3f", v[ARGV[2]] - v[ARGV[1]] }' "$B/times0.txt" "$B/times1.txt"
}

# record LABEL JSON CPU_TICKS HWM_KB DNS_QUERIES GEN_CPU_SECONDS
record() {
    local label=$1 json=$2 ticks=$3 hwm=$4 queries=$5 gen=$6 msgs errors
    [ -n "$json" ] || die "$label: the load generator printed nothing"
    echo "{\"row\":\"$label\",\"cpu_ticks\":$ticks,\"clk_tck\":$TICK,\"vmhwm_kb\":$hwm,\"dns_queries\":$queries,\"generator_cpu_s\":$gen,\"run\":$json}" >>"$RESULTS"
    msgs=$(jnum messages "$json")
    MPS[$label]=$(awk -v v="$(jnum msgs_per_sec "$json")" 'BEGIN { printf "%.0f", v }')
    P50[$label]=$(jnum p50_ms "$json")
    P99[$label]=$(jnum p99_ms "$json")
    RSS[$label]=$(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }')
    CPU[$label]=$(awk -v t="$ticks" -v hz="$TICK" -v m="$msgs" \
        'BEGIN { if (m > 0) printf "%.3f", t / hz / m * 1000; else print "n/a" }')
    GEN[$label]=$(awk -v g="$gen" -v m="$msgs" 'BEGIN { if (m > 0) printf "%.3f", g / m * 1000; else print "n/a" }')
    DNSQ[$label]=$(awk -v q="$queries" -v m="$msgs" 'BEGIN { if (m > 0) printf "%.2f", q / m; else print "n/a" }')
    errors=$(jnum errors "$json")
    [ "${errors:-0}" = 0 ] || note "$label: $errors errors: $(sed -n 's/.*"error_kinds":\({[^}]*}\).*/\1/p' <<<"$json")"
    note "$label: $msgs messages, ${MPS[$label]}/s, p50 ${P50[$label]} p99 ${P99[$label]} ms, CPU ${CPU[$label]} s/1k (generator ${GEN[$label]}), RSS ${RSS[$label]} MB, $queries DNS queries, replies $(sed -n 's/.*"replies":\({[^}]*}\).*/\1/p' <<<"$json")"
}

# ---------------------------------------------------------------- 1. verify

if want rspamd; then
    # An installed rspamd compiled its public suffix list (hyperscan) long ago and keeps it in
    # its database directory: one start and one message fill $B/rspamd/db here, so that no
    # row measures the compilation (its CPU, or the memory it leaves in the master).
    free_port
    start_filter rspamd "$PORT"
    "$AM" bench-milter --target "$FILTER_TARGET" -c 1 -n 1 --timeout 120 --ip "$CLIENT_IP" \
        --message "$B/signed.eml" >/dev/null || note "rspamd: the first message failed"
    stop_pid "$FILTER_PID"
fi

for c in $CONNS; do
    measure "verify authmilter c=$c" am-verify "$c" "$CLIENT_IP" "$B/signed.eml"
    if want opendkim; then measure "verify OpenDKIM c=$c" dkim-verify "$c" "$CLIENT_IP" "$B/signed.eml"; fi
    if want opendmarc; then measure "verify OpenDMARC c=$c" dmarc "$c" "$CLIENT_IP" "$B/signed.eml"; fi
    if want rspamd; then measure "verify rspamd c=$c" rspamd "$c" "$CLIENT_IP" "$B/signed.eml"; fi
done
# The same on a Unix socket (no TCP: no Nagle, no ACKs, less kernel work). For a filter that
# stalls on delayed ACKs behind Postfix's TCP write pattern (rspamd), this row shows what its
# CPU alone would allow.
if full || want rspamd; then
    measure "verify authmilter unix c=$SIGN_CONNS" am-verify-unix "$SIGN_CONNS" "$CLIENT_IP" "$B/signed.eml"
fi
if want rspamd; then
    measure "verify rspamd unix c=$SIGN_CONNS" rspamd-unix "$SIGN_CONNS" "$CLIENT_IP" "$B/signed.eml"
fi
if full; then
    # Latency at half the throughput measured at $SIGN_CONNS connections (paced, not flat out).
    full=${MPS["verify authmilter c=$SIGN_CONNS"]:-}
    if [ -n "$full" ] && [ "$full" -gt 0 ] 2>/dev/null; then
        HALF_RATE=$((full / 2))
        measure "verify authmilter c=$SIGN_CONNS at $HALF_RATE msgs/s" am-verify "$SIGN_CONNS" \
            "$CLIENT_IP" "$B/signed.eml" --rate "$HALF_RATE"
    fi
fi

# ---------------------------------------------------------------- 2. sign (client 127.0.0.1: trusted)

measure "sign authmilter RSA-2048 c=$SIGN_CONNS" am-rsa "$SIGN_CONNS" 127.0.0.1 "$B/unsigned.eml"
if full; then measure "sign authmilter Ed25519 c=$SIGN_CONNS" am-ed "$SIGN_CONNS" 127.0.0.1 "$B/unsigned.eml"; fi
if want opendkim; then measure "sign OpenDKIM RSA-2048 c=$SIGN_CONNS" dkim-sign "$SIGN_CONNS" 127.0.0.1 "$B/unsigned.eml"; fi
# rspamd signs what comes from a local address (sign_local), and verifies it too as it would.
if want rspamd; then measure "sign rspamd RSA-2048 c=$SIGN_CONNS" rspamd "$SIGN_CONNS" 127.0.0.1 "$B/unsigned.eml"; fi

# ---------------------------------------------------------------- 3. idle connections (RSS)

idle() { # LABEL KIND
    local port base mem
    free_port
    port=$PORT
    start_filter "$2" "$port"
    # One message first: rspamd starts its workers only once its master has loaded (and
    # every filter should have seen mail before its memory is taken).
    "$AM" bench-milter --target "$FILTER_TARGET" -c 1 -n 1 --timeout 120 --ip "$CLIENT_IP" \
        --message "$B/signed.eml" >/dev/null || note "$1: the first message failed"
    base=$(mem_kb "$2" "$FILTER_PID")
    json=$("$AM" bench-milter --target "$FILTER_TARGET" -c "$IDLE_CONNS" --idle 5 --timeout 10 --json) || true
    note "$1: RSS $((base / 1024)) MB before, sessions $(jnum sessions "$json"), errors $(jnum errors "$json")"
    mem=$(mem_kb "$2" "$FILTER_PID")
    RSS[$1]=$(awk -v k="$mem" 'BEGIN { printf "%.1f", k / 1024 }')
    echo "{\"row\":\"$1\",\"vmhwm_kb\":$mem,\"rss_before_kb\":$base,\"run\":$json}" >>"$RESULTS"
    stop_pid "$FILTER_PID"
}
idle "idle authmilter c=$IDLE_CONNS" am-verify
if want opendkim; then idle "idle OpenDKIM c=$IDLE_CONNS" dkim-verify; fi
if want rspamd; then idle "idle rspamd c=$IDLE_CONNS" rspamd; fi

# ---------------------------------------------------------------- 4. Postfix end to end

if want postfix; then
    free_port; P_AM=$PORT
    free_port; P_DKIM=$PORT
    free_port; P_DMARC=$PORT
    free_port; S_NONE=$PORT
    free_port; S_AM=$PORT
    free_port; S_PEERS=$PORT
    S_OLD=
    if [ -n "$AM_OLD" ]; then
        free_port; P_OLD=$PORT
        free_port; S_OLD=$PORT
    fi
    # The instance lives in memory (/dev/shm) when it can: the rows compare what the filters cost
    # Postfix, and a virtual disk's fsync and discard latencies would drown that (measured here:
    # the same configuration varying by 40 % from one round to the next on ext4). PF_DIR overrides.
    if [ -n "${PF_DIR:-}" ]; then
        PF=$PF_DIR/authmilter-bench-pf.$$
    elif [ -d /dev/shm ] && [ -w /dev/shm ]; then
        PF=/dev/shm/authmilter-bench-pf.$$
    else
        PF=$B/pf
    fi
    PF_CLEAN=$PF
    mkdir -p "$PF/etc" "$PF/spool" "$PF/data" "$PF/mail"
    chown postfix:postfix "$PF/data"
    chown 65534:65534 "$PF/mail"
    chmod 755 "$PF"
    cp /etc/postfix/master.cf "$PF/etc/"
    cat >"$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
myhostname = $AUTHSERV
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = $PF/maillog
maillog_file_prefixes = $PF
biff = no
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
alias_maps =
alias_database =
local_recipient_maps =
smtpd_authorized_xclient_hosts = 127.0.0.0/8
virtual_mailbox_domains = example.com example.net example.org
virtual_mailbox_base = $PF/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
milter_default_action = tempfail
milter_protocol = 6
EOF
    postconf -c "$PF/etc" -M# smtp/inet
    postconf -c "$PF/etc" -F '*/*/chroot = n'
    {
        echo "127.0.0.1:$S_NONE inet n - n - - smtpd"
        echo "127.0.0.1:$S_AM inet n - n - - smtpd -o smtpd_milters=inet:127.0.0.1:$P_AM"
        echo "127.0.0.1:$S_PEERS inet n - n - - smtpd -o smtpd_milters=inet:127.0.0.1:$P_DKIM,inet:127.0.0.1:$P_DMARC"
        [ -z "$S_OLD" ] || echo "127.0.0.1:$S_OLD inet n - n - - smtpd -o smtpd_milters=inet:127.0.0.1:$P_OLD"
    } >>"$PF/etc/master.cf"
    postfix -c "$PF/etc" check || die "postfix check failed"
    postfix -c "$PF/etc" start >"$B/postfix-start.log" 2>&1 || die "postfix start: $(cat "$B/postfix-start.log") $(tail -3 "$PF/maillog" 2>/dev/null)"
    POSTFIX_UP=1
    for p in $S_NONE $S_AM $S_PEERS $S_OLD; do
        for _ in $(seq 100); do
            port_open "$p" && break
            sleep 0.1
        done
        port_open "$p" || die "postfix does not listen on 127.0.0.1:$p: $(tail -5 "$PF/maillog" 2>/dev/null)"
    done

    queue_empty() { [ -z "$(find "$PF/spool/incoming" "$PF/spool/active" "$PF/spool/deferred" -type f 2>/dev/null | head -1)" ]; }
    DELIVERED=0
    # Waits (at most 60 s) for Postfix to deliver what it accepted, then empties the mailbox so
    # every round starts with the same small Maildir.
    drain() {
        local n
        for _ in $(seq 600); do
            queue_empty && break
            sleep 0.1
        done
        queue_empty || note "queue not empty after 60 s; going on"
        n=$(find "$PF/mail/inbox/new" -type f 2>/dev/null | wc -l)
        DELIVERED=$((DELIVERED + n))
        find "$PF/mail/inbox/new" -type f -delete 2>/dev/null || true
    }

    # e2e LABEL SMTP_PORT FILTER_PIDS...: one round of one configuration. Rounds of all three
    # configurations alternate, so disk (fsync) and background-delivery noise spreads evenly;
    # the table combines the rounds (messages / seconds; CPU / messages; p50 mean; p99 worst).
    declare -A E_MSGS E_SECS E_TICKS E_GEN E_P50 E_P99 E_HWM E_ROUNDS
    e2e() {
        local label=$1 port=$2 json c0=0 c1=0 hwm=0 pid
        shift 2
        "$AM" bench-smtp --target "127.0.0.1:$port" -c "$SMTP_CONNS" -n "$WARMUP" -d 30 --timeout 10 --xclient \
            --ip "$CLIENT_IP" --message "$B/signed.eml" >/dev/null || note "$label: errors during warm-up"
        drain
        for pid in "$@"; do c0=$((c0 + $(cpu_ticks "$pid"))); done
        times >"$B/times0.txt"
        "$AM" bench-smtp --target "127.0.0.1:$port" -c "$SMTP_CONNS" -d "$DURATION" --timeout 10 \
            --xclient --ip "$CLIENT_IP" --message "$B/signed.eml" --json >"$B/run.json" || true
        times >"$B/times1.txt"
        for pid in "$@"; do
            c1=$((c1 + $(cpu_ticks "$pid")))
            hwm=$((hwm + $(hwm_kb "$pid")))
        done
        json=$(cat "$B/run.json")
        E_ROUNDS[$label]=$((${E_ROUNDS[$label]:-0} + 1))
        record "$label (round ${E_ROUNDS[$label]})" "$json" $((c1 - c0)) "$hwm" 0 "$(gen_cpu)"
        E_MSGS[$label]=$((${E_MSGS[$label]:-0} + $(jnum messages "$json")))
        E_SECS[$label]=$(awk -v a="${E_SECS[$label]:-0}" -v b="$(jnum seconds "$json")" 'BEGIN { print a + b }')
        E_TICKS[$label]=$((${E_TICKS[$label]:-0} + c1 - c0))
        E_GEN[$label]=$(awk -v a="${E_GEN[$label]:-0}" -v b="$(gen_cpu)" 'BEGIN { print a + b }')
        E_P50[$label]=$(awk -v a="${E_P50[$label]:-0}" -v b="$(jnum p50_ms "$json")" 'BEGIN { print a + b }')
        E_P99[$label]=$(awk -v a="${E_P99[$label]:-0}" -v b="$(jnum p99_ms "$json")" 'BEGIN { print ((b > a) ? b : a) }')
        E_HWM[$label]=$hwm
        drain
    }

    # Combines the rounds of LABEL into the table's arrays.
    e2e_combine() {
        local l=$1 m=${E_MSGS[$1]:-0}
        MPS[$l]=$(awk -v m="$m" -v s="${E_SECS[$l]:-0}" 'BEGIN { printf "%.0f", (s > 0) ? m / s : 0 }')
        P50[$l]=$(awk -v p="${E_P50[$l]:-0}" -v r="${E_ROUNDS[$l]:-1}" 'BEGIN { printf "%.3f", p / r }')
        P99[$l]=${E_P99[$l]:-}
        CPU[$l]=$(awk -v t="${E_TICKS[$l]:-0}" -v hz="$TICK" -v m="$m" 'BEGIN { if (m > 0 && t > 0) printf "%.3f", t / hz / m * 1000; else print "n/a" }')
        GEN[$l]=$(awk -v g="${E_GEN[$l]:-0}" -v m="$m" 'BEGIN { if (m > 0) printf "%.3f", g / m * 1000; else print "n/a" }')
        RSS[$l]=$(awk -v k="${E_HWM[$l]:-0}" 'BEGIN { if (k > 0) printf "%.1f", k / 1024; else print "n/a" }')
        DNSQ[$l]=-
    }

    start_filter am-verify "$P_AM"
    AMP=$FILTER_PID
    if [ "$PEERS_E2E" != 0 ]; then
        start_filter dkim-verify "$P_DKIM"
        DKP=$FILTER_PID
        start_filter dmarc "$P_DMARC"
        DMP=$FILTER_PID
    fi
    E2E_NONE="postfix no milter c=$SMTP_CONNS"
    E2E_AM="postfix + authmilter c=$SMTP_CONNS"
    E2E_PEERS="postfix + OpenDKIM + OpenDMARC c=$SMTP_CONNS"
    E2E_OLD="postfix + authmilter (AUTHMILTER_OLD) c=$SMTP_CONNS"
    if [ -n "$S_OLD" ]; then
        start_filter am-verify-old "$P_OLD"
        OLDP=$FILTER_PID
    fi
    # Spin up Postfix's daemons (smtpd, cleanup, trivial-rewrite, qmgr, virtual) before measuring:
    # the first thousand messages through a fresh instance are much slower than the rest.
    "$AM" bench-smtp --target "127.0.0.1:$S_NONE" -c "$SMTP_CONNS" -n 1000 -d 30 --timeout 10 --xclient \
        --ip "$CLIENT_IP" --message "$B/signed.eml" >/dev/null || note "errors while warming Postfix up"
    drain
    for _ in $(seq "$E2E_ROUNDS"); do
        e2e "$E2E_NONE" "$S_NONE"
        [ -z "$S_OLD" ] || e2e "$E2E_OLD" "$S_OLD" "$OLDP"
        e2e "$E2E_AM" "$S_AM" "$AMP"
        [ "$PEERS_E2E" = 0 ] || e2e "$E2E_PEERS" "$S_PEERS" "$DKP" "$DMP"
    done
    e2e_combine "$E2E_NONE"
    e2e_combine "$E2E_AM"
    [ "$PEERS_E2E" = 0 ] || e2e_combine "$E2E_PEERS"
    if [ -n "$S_OLD" ]; then
        e2e_combine "$E2E_OLD"
        stop_pid "$OLDP"
    fi
    stop_pid "$AMP"
    if [ "$PEERS_E2E" != 0 ]; then
        stop_pid "$DKP"
        stop_pid "$DMP"
    fi
    note "Postfix delivered $DELIVERED messages; held/deferred: $(find "$PF/spool/hold" "$PF/spool/deferred" -type f | wc -l)"
fi

# ---------------------------------------------------------------- openssl speed (signing ceiling)

OPENSSL_SIGN=
if full && command -v openssl >/dev/null 2>&1; then
    # Sign operations per second on all cores (-multi), the ceiling for RSA-2048 signing.
    OPENSSL_SIGN=$(openssl speed -seconds 3 -multi "$(nproc)" rsa2048 2>/dev/null |
        awk '/^rsa 2048 bits/ { s = $(NF - 1) } END { if (s != "") printf "%.0f", s }')
    note "openssl speed -seconds 3 -multi $(nproc) rsa2048: ${OPENSSL_SIGN:-?} signs/s"
fi

# ---------------------------------------------------------------- the table

ratio() { # A B -> A/B as "x.x×"
    awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "n/a" && b != "n/a") printf "%.1f×", a / b; else printf "-" }'
}
pct() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.0f %%", 100 * a / b; else printf "-" }'
}
# vs OURS NAME THEIRS [NAME THEIRS]...: "NAME a×; b× · ..." (throughput ratio; CPU per
# message ratio) for each peer row measured in this run.
vs() {
    local ours=$1 out=
    shift
    [ -n "${MPS[$ours]:-}" ] || return 0
    while [ $# -ge 2 ]; do
        [ -z "${MPS[$2]:-}" ] ||
            out+=" · $1 $(ratio "${MPS[$ours]}" "${MPS[$2]}"); $(ratio "${CPU[$2]}" "${CPU[$ours]}")"
        shift 2
    done
    printf '%s' "${out# · }"
}
row() { # LABEL VS: rows not measured in this run (ONLY) are left out
    [ -n "${MPS[$1]:-}" ] || return 0
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "${MPS[$1]:--}" "${P50[$1]:--}" \
        "${P99[$1]:--}" "${CPU[$1]:--}" "${GEN[$1]:--}" "${RSS[$1]:--}" "${DNSQ[$1]:--}" "$2"
}
{
    echo
    echo "| test | msgs/s | p50 ms | p99 ms | filter CPU s/1k msgs | generator CPU s/1k msgs | peak RSS MB | DNS queries/msg | vs peer: msgs/s; CPU per msg |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for c in $CONNS; do
        a="verify authmilter c=$c" k="verify OpenDKIM c=$c" m="verify OpenDMARC c=$c" r="verify rspamd c=$c"
        row "$a" "$(vs "$a" OpenDKIM "$k" OpenDMARC "$m" rspamd "$r")"
        row "$k" ""
        row "$m" ""
        row "$r" ""
    done
    a="verify authmilter unix c=$SIGN_CONNS" r="verify rspamd unix c=$SIGN_CONNS"
    row "$a" "$(vs "$a" rspamd "$r")"
    row "$r" ""
    [ -z "${HALF_RATE:-}" ] || row "verify authmilter c=$SIGN_CONNS at $HALF_RATE msgs/s" "half load"
    k="sign OpenDKIM RSA-2048 c=$SIGN_CONNS" r="sign rspamd RSA-2048 c=$SIGN_CONNS"
    for a in "sign authmilter RSA-2048 c=$SIGN_CONNS" "sign authmilter Ed25519 c=$SIGN_CONNS"; do
        row "$a" "$(vs "$a" "OpenDKIM RSA" "$k" "rspamd RSA" "$r")"
    done
    row "$k" ""
    row "$r" ""
    if want postfix; then
        n=$E2E_NONE a=$E2E_AM p=$E2E_PEERS
        row "$n" ""
        if [ -n "${MPS[$p]:-}" ]; then
            row "$a" "$(pct "${MPS[$a]}" "${MPS[$n]}") of no milter · OpenDKIM+OpenDMARC $(ratio "${MPS[$a]}" "${MPS[$p]}"); $(ratio "${CPU[$p]}" "${CPU[$a]}")"
        else
            row "$a" "$(pct "${MPS[$a]}" "${MPS[$n]}") of no milter"
        fi
        row "$p" "$(pct "${MPS[$p]}" "${MPS[$n]}") of no milter"
        [ -z "${S_OLD:-}" ] || row "$E2E_OLD" "$(pct "${MPS[$E2E_OLD]}" "${MPS[$n]}") of no milter"
    fi
    a="idle authmilter c=$IDLE_CONNS" k="idle OpenDKIM c=$IDLE_CONNS" r="idle rspamd c=$IDLE_CONNS"
    cmp=
    [ -z "${RSS[$k]:-}" ] || cmp+=" · $(ratio "${RSS[$a]}" "${RSS[$k]}") of OpenDKIM's"
    [ -z "${RSS[$r]:-}" ] || cmp+=" · $(ratio "${RSS[$a]}" "${RSS[$r]}") of rspamd's"
    printf '| %s | - | - | - | - | - | %s | - | %s |\n' "$a" "${RSS[$a]}" "${cmp# · }"
    [ -z "${RSS[$k]:-}" ] || printf '| %s | - | - | - | - | - | %s | - | |\n' "$k" "${RSS[$k]}"
    [ -z "${RSS[$r]:-}" ] || printf '| %s | - | - | - | - | - | %s | - | PSS of all its processes |\n' "$r" "${RSS[$r]}"
    echo
    a="sign authmilter RSA-2048 c=$SIGN_CONNS"
    if [ -n "$OPENSSL_SIGN" ] && [ "${CPU[$a]}" != n/a ]; then
        echo "RSA-2048 signing: authmilter ${MPS[$a]} msgs/s with the generator on the same cores;" \
            "by CPU, $(awk -v c="${CPU[$a]}" 'BEGIN { printf "%.0f", 1000 / c }') msgs/s per core" \
            "= $(awk -v c="${CPU[$a]}" -v o="$OPENSSL_SIGN" -v n="$(nproc)" 'BEGIN { printf "%.0f %%", 100 * (1000 / c) / (o / n) }')" \
            "of openssl speed rsa2048 ($OPENSSL_SIGN signs/s on $(nproc) cores)."
    fi
    echo "Each milter row: a fresh filter process, $WARMUP warm-up messages, then ${DURATION} s of load"
    echo "(bench-milter, Postfix's write pattern with Nagle on, one generator thread, one message in"
    echo "flight per connection). OpenDMARC evaluates SPF itself and DMARC (no DKIM: in production it"
    echo "reads OpenDKIM's Authentication-Results); authmilter evaluates SPF (MAIL FROM and HELO), DKIM,"
    echo "ARC and DMARC."
    if want rspamd; then
        echo "rspamd: $RSPAMD_WORKERS rspamd_proxy workers scanning themselves (milter, self_scan), modules"
        echo "dkim, spf, arc, dmarc, dkim_signing and milter_headers (authentication-results) only, logging at"
        echo "Debian's level (info); its CPU is that of all its processes, its memory the sum of their PSS"
        echo "after the load (workers share the master's pages)."
    fi
    if want postfix; then
        echo "Postfix rows: bench-smtp, $SMTP_CONNS sessions, XCLIENT from $CLIENT_IP, $E2E_ROUNDS"
        echo "alternating rounds of ${DURATION} s combined (p99: worst round), Postfix's queue and mailboxes in"
        echo "$(dirname "$PF"); CPU and RSS of the filter processes only."
    fi
    echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)."
} | tee "$TABLE"

if [ -n "$OUT" ]; then
    mkdir -p "$OUT"
    stamp=$(date -u +%Y%m%d-%H%M%S)
    cp "$TABLE" "$OUT/compare-$stamp.md"
    cp "$RESULTS" "$OUT/compare-$stamp.jsonl"
    echo "written: $OUT/compare-$stamp.md, $OUT/compare-$stamp.jsonl"
fi

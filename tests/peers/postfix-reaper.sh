#!/bin/sh
# Stops a test's private Postfix instance and removes its scratch folder as soon as the test
# process lets go of this script's standard input: on purpose (the instance was dropped) or
# because the process ended, however it ended (the kernel closes the pipe even on SIGKILL).
# The instance lives in a process-wide static, whose destructor never runs; this is its end.
#
# Usage: sh postfix-reaper.sh POSTFIX_COMMAND SCRATCH_DIR   (configuration in SCRATCH_DIR/etc)
set -u
postfix=$1
dir=$2

cat >/dev/null

# Only ever remove a folder that is a Postfix test instance.
[ -f "$dir/etc/main.cf" ] || exit 0
pid=$(tr -dc 0-9 <"$dir/spool/pid/master.pid" 2>/dev/null)
"$postfix" -c "$dir/etc" stop >/dev/null 2>&1
# `postfix stop` only signals the master; wait (at most 5 s) until it has exited. An exited
# master may linger as a zombie until init reaps it, which `kill -0` would count as running.
running() {
    [ -n "$pid" ] || return 1
    if [ -r "/proc/$pid/stat" ]; then
        [ "$(cut -d' ' -f3 "/proc/$pid/stat")" != Z ]
    else
        kill -0 "$pid" 2>/dev/null
    fi
}
i=0
while [ "$i" -lt 100 ] && running; do
    sleep 0.05
    i=$((i + 1))
done
rm -rf "$dir"

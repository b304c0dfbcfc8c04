#!/usr/bin/env bash
# Stop what slurm/local/up.sh started: slurmd, slurmctld, slurmdbd, mariadbd, munged, each by its pid
# file (never by name). Idempotent; leaves packages, config and accounting data in place.
set -uo pipefail
exec </dev/null

stop() {  # stop <name> <pid file>
    local pid
    [ -s "$2" ] || return 0
    pid=$(cat "$2")
    if kill -0 "$pid" 2>/dev/null; then
        echo "slurm/local/down.sh: stopping $1 ($pid)"
        kill "$pid"
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$2"
}

[ "$(id -u)" = 0 ] || { echo "slurm/local/down.sh: must run as root" >&2; exit 1; }
stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
stop slurmdbd /run/slurmdbd.pid
stop mariadbd /run/mysqld/mysqld.pid
stop munged /run/munge/munged.pid

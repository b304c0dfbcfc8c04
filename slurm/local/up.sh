#!/usr/bin/env bash
# A single-node Slurm with accounting on this machine, for the tests (tests/test_slurm.py).
#
# Idempotent, run as root, reads no stdin: installs the Debian packages when missing, writes
# /etc/slurm/{slurm,slurmdbd}.conf (only if absent or written by this script), then starts
# munged, mariadbd, slurmdbd, slurmctld and slurmd (each unless its pid file names a live process).
# Accounting (slurmdbd) is not optional: without it `sacct` fails and submitit cannot tell
# that a job is gone. Stop everything with slurm/local/down.sh.
set -euo pipefail
exec </dev/null

MARK="# written by ganforge slurm/local/up.sh"
HOST=$(hostname -s)
CLUSTER=ganforge
PARTITION=debug
LOG=/var/log/slurm
STATE=/var/lib/slurm

say() { echo "slurm/local/up.sh: $*"; }
die() { say "error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

# --- packages -------------------------------------------------------------------------------------
export PATH="$PATH:/usr/sbin:/sbin"
need=()
for pair in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client slurmdbd:slurmdbd munged:munge \
    mariadbd:mariadb-server; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- config ---------------------------------------------------------------------------------------
ours() { [ ! -e "$1" ] || head -1 "$1" | grep -qxF "$MARK"; }
for f in /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf; do
    ours "$f" || die "$f exists and was not written by this script; not touching a real cluster's config"
done

read -r CPUS MEM < <(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*RealMemory=\([0-9]*\).*/\1 \2/p')
[ -n "${CPUS:-}" ] || die "slurmd -C did not report CPUs and memory"
MEM=$((MEM * 95 / 100))

mkdir -p /etc/slurm "$LOG" "$STATE/slurmctld" "$STATE/slurmd"
chown slurm:slurm "$LOG" "$STATE/slurmctld"

CHANGED=0
write() {  # write <file> <mode> <owner>: stdin to file, only when the content changes
    local tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1" && CHANGED=1; fi
    chmod "$2" "$1"
    chown "$3" "$1"
}

write /etc/slurm/slurm.conf 644 root:root <<CONF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
# a requeued job may start again after cred_expire seconds (default 120)
AuthInfo=cred_expire=5
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
JobRequeue=1
KillWait=5
InactiveLimit=0
MinJobAge=300
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
EnforcePartLimits=ALL
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobCompType=jobcomp/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

write /etc/slurm/slurmdbd.conf 600 slurm:slurm <<CONF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StorageLoc=slurm_acct_db
CONF

# --- daemons --------------------------------------------------------------------------------------
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # wait_for <what> <seconds> <command...>
    local what=$1 n=$2
    shift 2
    for _ in $(seq $((n * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "$what did not come up within ${n}s (logs: $LOG, /var/log/munge, /var/log/mysql)"
}

# munge: the credentials every Slurm message carries
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    runuser -u munge -- mungekey --create
fi
if ! alive /run/munge/munged.pid; then
    say "starting munged"
    runuser -u munge -- munged --origin=127.0.0.1 --pid-file=/run/munge/munged.pid
fi
wait_for munged 10 munge -n

# mariadb: slurmdbd's store (it does not daemonize, hence setsid and a background job)
mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql >/dev/null
fi
if ! alive /run/mysqld/mysqld.pid; then
    say "starting mariadbd"
    setsid mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid --socket=/run/mysqld/mysqld.sock \
        --bind-address=127.0.0.1 >>"$LOG/mariadbd.log" 2>&1 &
fi
wait_for mariadbd 30 mariadb-admin --socket=/run/mysqld/mysqld.sock ping
# the slurm OS user logs in over the socket, no password
mariadb --socket=/run/mysqld/mysqld.sock <<'SQL'
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

if ! alive /run/slurmdbd.pid; then
    say "starting slurmdbd"
    slurmdbd
fi
wait_for slurmdbd 30 sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qxF "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi

if ! alive /run/slurmctld.pid; then
    say "starting slurmctld"
    slurmctld
elif [ "$CHANGED" = 1 ]; then
    say "config changed: scontrol reconfigure"
    scontrol reconfigure
fi
wait_for slurmctld 30 scontrol ping

if ! alive /run/slurmd.pid; then
    say "starting slurmd"
    slurmd
fi

node_ready() {
    local state
    state=$(sinfo -h -n "$HOST" -o %t)
    case "$state" in
        idle* | mix* | alloc*) return 0 ;;
        down* | drain* | drng*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 ;;
    esac
    return 1
}
wait_for "node $HOST" 30 node_ready
say "up: cluster $CLUSTER, partition $PARTITION, node $HOST ($CPUS CPUs, ${MEM} MB)"

#!/usr/bin/env bash
# A real single-node SLURM on this machine, from Debian packages, to run the
# workflow through profiles/slurm exactly as on a cluster (the tests use it).
#
#   sudo cluster/local-slurm.sh start    install if needed, configure, start, smoke test
#   sudo cluster/local-slurm.sh stop     stop only the daemons `start` started
#   cluster/local-slurm.sh status
#
# Needs root and apt-get (Debian 12: slurm-wlm 22.05, munge 0.5). No
# accounting database: the profile asks squeue for job states instead of
# sacct. What matters and why is in the README ("Run on a cluster") and in
# the comments below. A slurm.conf that this script did not write is kept
# as slurm.conf.before-local-slurm and put back by `stop`.
set -euo pipefail

STATE=/run/ccdreduce-local-slurm     # the daemons this script started
CONF=/etc/slurm/slurm.conf
MARK="# written by ccdreduce cluster/local-slurm.sh"

say() { echo "local-slurm: $*" >&2; }
die() { say "$*"; exit 1; }

wait_for() { # seconds, description, command...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 4))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    die "$what did not happen within ${seconds} s (logs in /var/log/slurm)"
}

install_packages() {
    local missing=()
    for exe in slurmctld slurmd sinfo munged; do
        command -v "$exe" >/dev/null || [ -x "/usr/sbin/$exe" ] || missing+=("$exe")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "no apt-get: install slurmctld, slurmd, slurm-client and munge by hand"
    say "installing slurmctld slurmd slurm-client munge"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
        --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null ||
        { apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null &&
          DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
              --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null; } ||
        die "apt-get could not install the SLURM packages"
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    if running /run/munge/munged.pid; then return 0; fi
    mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
    [ -f /etc/munge/munge.key ] || die "/etc/munge/munge.key is missing (reinstall munge)"
    # munged refuses to run as root: it runs as the owner of the key
    runuser -u munge -- /usr/sbin/munged
    echo /run/munge/munged.pid >>"$STATE"
    wait_for 10 "munge credential round trip" sh -c 'munge -n | unmunge'
}

write_conf() {
    local host cpus sockets cores threads memory
    host=$(hostname -s)
    getent hosts "$host" >/dev/null || die "host name $host does not resolve; add it to /etc/hosts"
    # the node as slurmd sees it; memory 5 % below, or the node is DRAINED
    read -r cpus sockets cores threads memory < <(slurmd -C | awk '
        /NodeName/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END { print v["CPUs"], v["SocketsPerBoard"] ? v["SocketsPerBoard"] : v["Boards"],
                    v["CoresPerSocket"], v["ThreadsPerCore"], int(v["RealMemory"] * 0.95) }')
    if [ -f "$CONF" ] && ! grep -q "^$MARK" "$CONF"; then
        cp -p "$CONF" "$CONF.before-local-slurm"
    fi
    mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    chown slurm:slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    cat >"$CONF" <<EOF
$MARK
ClusterName=localhost
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# portable process tracking; task/affinity because the Snakemake job step
# runs srun --cpu-bind (task/none warns in every job log)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default, a job with no --mem takes the whole node
DefMemPerCPU=1024
# Snakemake reads job states from squeue (no accounting database): keep
# finished jobs visible long enough, or they look as if running forever
MinJobAge=3600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Sockets=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts daemons)"
    install_packages
    touch "$STATE"
    start_munge
    if ! running /run/slurmctld.pid; then
        write_conf
        /usr/sbin/slurmctld
        echo /run/slurmctld.pid >>"$STATE"
    fi
    wait_for 30 "slurmctld answering (scontrol ping)" sh -c 'scontrol ping | grep -q UP'
    if ! running /run/slurmd.pid; then
        /usr/sbin/slurmd
        echo /run/slurmd.pid >>"$STATE"
    fi
    wait_for 30 "the node becoming idle" sh -c 'sinfo -h -N -o %T | grep -qx idle'
    srun -N1 -n1 -t 1 hostname >/dev/null || die "smoke test (srun hostname) failed"
    say "up: $(sinfo -h -N -o '%N %c CPUs %m MB %T')"
}

stop() {
    [ -f "$STATE" ] || { say "nothing started by this script"; return 0; }
    # reverse order: slurmd, slurmctld, munged
    tac "$STATE" | while read -r pidfile; do
        if running "$pidfile"; then
            local pid
            pid=$(cat "$pidfile")
            kill -TERM "$pid"
            for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
            say "stopped $(basename "$pidfile" .pid) (pid $pid)"
        fi
        rm -f "$pidfile" # slurmctld leaves a stale one behind
    done
    rm -f "$STATE"
    if [ -f "$CONF.before-local-slurm" ]; then mv "$CONF.before-local-slurm" "$CONF"; fi
}

status() {
    for pidfile in /run/munge/munged.pid /run/slurmctld.pid /run/slurmd.pid; do
        if running "$pidfile"; then echo "$(basename "$pidfile" .pid): running"; else echo "$(basename "$pidfile" .pid): stopped"; fi
    done
    command -v sinfo >/dev/null && sinfo 2>/dev/null || true
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*) die "usage: $0 start|stop|status" ;;
esac

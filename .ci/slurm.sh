#!/usr/bin/env bash
# A real one-node Slurm cluster for riskbrain's CI (Debian 12, Slurm 22.05, run as root,
# no systemd, no cgroups).
#
#   bash .ci/slurm.sh start    # install if needed, start munged, slurmctld, slurmd; wait for idle
#   bash .ci/slurm.sh status   # exit 0 when the cluster is up and the node answers
#   bash .ci/slurm.sh stop     # stop only the daemons this script started (by pid file)
#
# All state (slurm.conf, state, spool, logs, pid files) lives under one folder,
# $RISKBRAIN_SLURM_DIR (default /tmp/riskbrain-slurm). The config is at
# $RISKBRAIN_SLURM_DIR/etc/slurm.conf; /etc/slurm/slurm.conf is symlinked to it so that plain
# `sbatch`/`squeue`/`scontrol` work from any shell without SLURM_CONF.
#
# `start` is idempotent: when the daemons from the pid files are alive, the node answers and
# slurm.conf would not change, it does nothing; otherwise it (re)starts slurmctld and slurmd.
# Job state is kept across stop/start, as on a real cluster.
#
# Env: RISKBRAIN_SLURM_DIR, RISKBRAIN_SLURM_CPUS (default 2), RISKBRAIN_SLURM_CRED_EXPIRE
# (default 10), RISKBRAIN_SLURM_PMIX=1 (also install PMIx for `srun --mpi=pmix`).
#
# Requeue delay: slurmctld holds a requeued job back (Reason=BeginTime) until the job's old
# step credentials have expired, i.e. for AuthInfo=cred_expire seconds (default 120 s, minimum
# 5 s). On top of that the job waits for the old processes to die (up to KillWait) and for the
# next scheduler pass (sched_interval, default 60 s; bf_interval, default 30 s). Below:
# cred_expire=10, KillWait=10, sched_interval=2, bf_interval=1, so a requeued job runs again
# after roughly 11-15 s instead of 2-3 minutes.
set -euo pipefail

DIR="${RISKBRAIN_SLURM_DIR:-/tmp/riskbrain-slurm}"
CONF="$DIR/etc/slurm.conf"
SYSTEM_CONF=/etc/slurm/slurm.conf
CPUS="${RISKBRAIN_SLURM_CPUS:-2}"
CRED_EXPIRE="${RISKBRAIN_SLURM_CRED_EXPIRE:-10}"
# RISKBRAIN_SLURM_PMIX=1 also installs PMIx so that `srun --mpi=pmix` works. Slurm's pmix plugin
# dlopens .../pmix2/lib/libpmix.so, the unversioned name, which only libpmix-dev ships.
PMIX="${RISKBRAIN_SLURM_PMIX:-0}"
PMIX_LIB=/usr/lib/x86_64-linux-gnu/pmix2/lib/libpmix.so
export SLURM_CONF="$CONF"

log() { echo "[slurm.sh] $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (it writes /etc/slurm and starts daemons)"; }

install_packages() {
    local packages=()
    if ! command -v sbatch >/dev/null || ! command -v slurmctld >/dev/null ||
        ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
        packages+=(munge slurmctld slurmd slurm-client)
    fi
    if [ "$PMIX" = 1 ] && [ ! -e "$PMIX_LIB" ]; then
        packages+=(libpmix2 libpmix-dev)
    fi
    [ "${#packages[@]}" -gt 0 ] || return 0
    log "installing ${packages[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
}

# The pid in a pid file when that process is alive and runs the named program, else nothing.
live_pid() {
    local file="$1" name="$2" pid
    [ -s "$file" ] || return 1
    pid="$(tr -dc 0-9 <"$file")"
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
    [ "$(cat "/proc/$pid/comm")" = "$name" ] || return 1
    echo "$pid"
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_ok; then
        return
    fi
    mkdir -p /run/munge
    chown munge:munge /run/munge
    chmod 0755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating /etc/munge/munge.key"
        mkdir -p /etc/munge
        if ! mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null; then
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    log "starting munged"
    # --force: munged refuses to start over a stale socket or lax log ownership otherwise
    if ! runuser -u munge -- munged --force 2>>"$DIR/log/munged.err"; then
        log "munged as user munge failed (see $DIR/log/munged.err); trying as root"
        munged --force 2>>"$DIR/log/munged.err"
    fi
    for _ in $(seq 50); do
        munge_ok && break
        sleep 0.2
    done
    munge_ok || die "munge -n | unmunge fails; see $DIR/log/munged.err and /var/log/munge/munged.log"
    # remember that we started it, so `stop` stops it and nothing else
    cp /run/munge/munged.pid "$DIR/run/munged.pid"
}

real_memory_mb() {
    # a value below the machine's memory: half of it, at most 8000 MB
    local total
    total="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"
    echo $((total / 2 < 8000 ? total / 2 : 8000))
}

# The slurm.conf this script wants, on stdout.
render_conf() {
    cat <<EOF
# Written by .ci/slurm.sh; a one-node cluster for riskbrain's CI. Edits are overwritten.
ClusterName=riskbrain
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: lifetime of job step credentials AND how long a requeued job waits before it
# may start again (default 120 s, minimum 5 s).
AuthInfo=cred_expire=$CRED_EXPIRE

StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/slurmd
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# no cgroups and no systemd on these machines
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MailProg=/bin/true
# trust the node line below even where the machine differs (e.g. fewer CPUs on a CI runner)
SlurmdParameters=config_overrides

SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1

# short timers so tests are fast; finished jobs stay in scontrol show job for 5 minutes
MinJobAge=300
KillWait=10
InactiveLimit=0
SlurmdTimeout=60
MessageTimeout=10

NodeName=localhost NodeHostname=$(hostname) CPUs=$CPUS RealMemory=$(real_memory_mb) State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

write_conf() {
    render_conf >"$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
    link_system_conf
}

link_system_conf() {
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    if [ -e "$SYSTEM_CONF" ] && [ ! -L "$SYSTEM_CONF" ]; then
        log "moving the existing $SYSTEM_CONF to $SYSTEM_CONF.orig"
        mv "$SYSTEM_CONF" "$SYSTEM_CONF.orig"
    fi
    ln -sfn "$CONF" "$SYSTEM_CONF"
}

node_state() { sinfo -h -N -n localhost -o %t 2>/dev/null | head -n1 | tr -d ' '; }

# Up means: our slurmctld and slurmd are alive and the node answers (idle, mixed or allocated).
cluster_up() {
    live_pid "$DIR/run/slurmctld.pid" slurmctld >/dev/null || return 1
    live_pid "$DIR/run/slurmd.pid" slurmd >/dev/null || return 1
    munge_ok || return 1
    case "$(node_state)" in
    idle | mix | alloc | comp) return 0 ;;
    *) return 1 ;;
    esac
}

show_logs() {
    local f
    for f in "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" "$DIR/log/munged.err"; do
        [ -f "$f" ] || continue
        echo "===== tail -n 60 $f" >&2
        tail -n 60 "$f" >&2
    done
    sinfo -N -l >&2 2>&1 || true
}

print_conf() {
    echo "SLURM_CONF=$CONF (also linked from $SYSTEM_CONF)"
    if [ -n "${GITHUB_ENV:-}" ]; then
        echo "SLURM_CONF=$CONF" >>"$GITHUB_ENV"
    fi
}

start() {
    need_root
    mkdir -p "$DIR"/{etc,state,spool/slurmd,log,run}
    install_packages
    if cluster_up; then
        if render_conf | cmp -s - "$CONF"; then
            link_system_conf
            log "already running and healthy; nothing to do"
            print_conf
            return
        fi
        log "slurm.conf changed; restarting slurmctld and slurmd"
    fi
    # a half-up cluster (one daemon died) is restarted as a whole
    stop_slurm_daemons
    write_conf
    start_munge

    log "starting slurmctld ($(slurmctld -V))"
    slurmctld -f "$CONF" || {
        show_logs
        die "slurmctld failed to start"
    }
    for _ in $(seq 60); do
        scontrol ping 2>/dev/null | grep -q 'is UP' && break
        sleep 0.5
    done
    scontrol ping 2>/dev/null | grep -q 'is UP' || {
        show_logs
        die "slurmctld does not answer scontrol ping"
    }

    log "starting slurmd"
    slurmd -f "$CONF" || {
        show_logs
        die "slurmd failed to start"
    }

    local state=""
    for i in $(seq 120); do
        state="$(node_state)"
        case "$state" in
        idle | mix | alloc) break ;;
        # left DOWN/DRAINED by an earlier run (e.g. a kill that timed out): put it back
        down* | drain* | drng*) [ $((i % 10)) -eq 5 ] && scontrol update NodeName=localhost State=RESUME 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    case "$state" in
    idle | mix | alloc) ;;
    *)
        show_logs
        die "node not idle after 60 s (state: '${state:-none}')"
        ;;
    esac
    log "cluster up: $(sinfo -h -o '%P %a %D %t %N')"
    print_conf
}

# Send TERM to the program in a pid file, wait for it to exit, KILL it after 20 s.
stop_pid_file() {
    local file="$1" name="$2" pid
    if pid="$(live_pid "$file" "$name")"; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            [ -d "/proc/$pid" ] || break
            sleep 0.2
        done
        if [ -d "/proc/$pid" ]; then
            log "$name (pid $pid) did not stop; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$file"
}

stop_slurm_daemons() {
    stop_pid_file "$DIR/run/slurmd.pid" slurmd
    stop_pid_file "$DIR/run/slurmctld.pid" slurmctld
}

stop() {
    need_root
    stop_slurm_daemons
    # munged only when this script started it
    stop_pid_file "$DIR/run/munged.pid" munged
    if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$CONF" ]; then
        rm -f "$SYSTEM_CONF"
        if [ -e "$SYSTEM_CONF.orig" ]; then mv "$SYSTEM_CONF.orig" "$SYSTEM_CONF"; fi
    fi
    log "stopped (state kept in $DIR)"
}

status() {
    if cluster_up; then
        sinfo
        print_conf
    else
        log "not running (or unhealthy); state in $DIR"
        return 1
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac

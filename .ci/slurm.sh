#!/usr/bin/env bash
# A real Slurm cluster on one machine for riskbrain's CI (Debian 12, Slurm 22.05, run as root,
# no systemd, no cgroups): one controller and 1 + N nodes.
#
#   bash .ci/slurm.sh start    # install if needed, start munged, slurmctld, the slurmds; wait for idle
#   bash .ci/slurm.sh status   # exit 0 when the cluster is up and every node answers
#   bash .ci/slurm.sh stop     # stop what this script started: daemons, namespaces, links, processes
#
# Nodes and partitions:
#   debug (default)  node `localhost`: a slurmd on this machine's own network, as before.
#   multi            nodes rb-node1..rb-nodeN (N = RISKBRAIN_SLURM_NODES, default 2): each is a
#                    Linux network namespace of the same name with its own interface (eth0,
#                    $NET.1K/24) on the bridge rb-br0 ($NET.1/24, the controller's address), its
#                    own hostname (a UTS namespace) and its own slurmd. Nodes reach each other
#                    only over that interface, so MPI between them goes over TCP and Ray's head
#                    and workers talk over the bridge. Names resolve through /etc/netns/<node>/hosts,
#                    mounted over /etc/hosts inside the node (`ip netns exec <node>` does the same);
#                    the machine's own /etc/hosts is not touched. Files, users and the munge socket are shared, as
#                    on a cluster with a shared file system. RISKBRAIN_SLURM_NODES=0: no namespaces.
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
# Env: RISKBRAIN_SLURM_DIR, RISKBRAIN_SLURM_CPUS (CPUs of each node, default 2),
# RISKBRAIN_SLURM_NODES (default 2), RISKBRAIN_SLURM_NET (the bridge's /24, default 10.199.0),
# RISKBRAIN_SLURM_CRED_EXPIRE (default 10), RISKBRAIN_SLURM_PMIX=1 (also install PMIx for
# `srun --mpi=pmix`).
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
NODES="${RISKBRAIN_SLURM_NODES:-2}"
NET="${RISKBRAIN_SLURM_NET:-10.199.0}"
BRIDGE=rb-br0
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

node_ip() { echo "$NET.$((10 + $1))"; }

# The nodes in namespaces reach the controller on the bridge; without them, localhost will do.
controller() {
    if [ "$NODES" -gt 0 ]; then echo "localhost($NET.1)"; else echo localhost; fi
}

# The slurm.conf this script wants, on stdout.
render_conf() {
    cat <<EOF
# Written by .ci/slurm.sh; a one-node cluster for riskbrain's CI. Edits are overwritten.
ClusterName=riskbrain
SlurmctldHost=$(controller)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: lifetime of job step credentials AND how long a requeued job waits before it
# may start again (default 120 s, minimum 5 s).
AuthInfo=cred_expire=$CRED_EXPIRE

StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/slurmd-%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
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

EOF
    # The namespace nodes come first: while `localhost` is the only node defined, Slurm 22.05
    # answers every node-name lookup with it, and the next NodeName line is then a "duplicate".
    local k
    for k in $(seq "$NODES"); do
        echo "NodeName=rb-node$k NodeAddr=$(node_ip "$k") CPUs=$CPUS RealMemory=$(real_memory_mb) State=UNKNOWN"
    done
    echo "NodeName=localhost NodeHostname=$(hostname) CPUs=$CPUS RealMemory=$(real_memory_mb) State=UNKNOWN"
    echo "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP"
    [ "$NODES" -gt 0 ] || return 0
    echo "PartitionName=multi Nodes=rb-node[1-$NODES] MaxTime=INFINITE State=UP"
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

# localhost, then rb-node1..rb-nodeN
all_nodes() {
    echo localhost
    [ "$NODES" -gt 0 ] && seq -f 'rb-node%g' "$NODES"
    return 0
}

node_state() { sinfo -h -N -n "$1" -o %t 2>/dev/null | head -n1 | tr -d ' '; }

# Up means: our slurmctld and every slurmd are alive and every node answers.
cluster_up() {
    local node
    live_pid "$DIR/run/slurmctld.pid" slurmctld >/dev/null || return 1
    munge_ok || return 1
    for node in $(all_nodes); do
        live_pid "$DIR/run/slurmd-$node.pid" slurmd >/dev/null || return 1
        case "$(node_state "$node")" in
        idle | mix | alloc | comp) ;;
        *) return 1 ;;
        esac
    done
}

show_logs() {
    local f
    for f in "$DIR/log/slurmctld.log" "$DIR"/log/slurmd-*.log "$DIR/log/munged.err"; do
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

# The bridge, and node k's namespace, interface and hosts file (each only when missing).
make_bridge() {
    ip link show "$BRIDGE" >/dev/null 2>&1 && return 0
    log "creating bridge $BRIDGE ($NET.1/24)"
    ip link add "$BRIDGE" type bridge
    ip addr add "$NET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
}

make_node() {
    local k="$1" node="rb-node$1" ip
    ip="$(node_ip "$k")"
    if ! ip netns list | grep -qx "$node\( .*\)\?"; then
        log "creating node $node: network namespace, eth0 $ip/24 on $BRIDGE"
        ip netns add "$node"
        ip link add "rb-veth$k" type veth peer name eth0 netns "$node"
        ip link set "rb-veth$k" master "$BRIDGE" up
        ip -n "$node" addr add "$ip/24" dev eth0
        ip -n "$node" link set lo up
        ip -n "$node" link set eth0 up
        ip -n "$node" route add default via "$NET.1"
    fi
    [ -d /etc/netns ] || { mkdir /etc/netns && touch "$DIR/run/etc-netns-made"; }
    mkdir -p "/etc/netns/$node"
    {
        echo "127.0.0.1 localhost"
        echo "$NET.1 $(hostname) rb-controller"
        for j in $(seq "$NODES"); do echo "$(node_ip "$j") rb-node$j"; done
    } >"/etc/netns/$node/hosts"
}

# slurmd inside node k: its network namespace; a UTS namespace whose hostname is the node's name,
# which is how slurmd finds its NodeName line (no -N: that needs --enable-multiple-slurmd); a
# mount namespace with the node's hosts file over /etc/hosts. Not `ip netns exec`: it remounts
# /sys, and slurmd then finds no cgroup file system and will not start.
start_node_slurmd() {
    local node="rb-node$1"
    nsenter --net="/var/run/netns/$node" unshare --mount --uts sh -c \
        "mount --bind /etc/netns/$node/hosts /etc/hosts && hostname $node && exec slurmd -f '$CONF'"
}

# Our namespaces, whatever N was when they were made.
our_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -x 'rb-node[0-9]*' || true; }

# Stop node's slurmd, then every process left in its namespace (job steps, Ray, MPI ranks),
# then remove the namespace (its eth0 and the veth peer go with it) and its hosts file.
remove_node() {
    local node="$1" pids
    stop_pid_file "$DIR/run/slurmd-$node.pid" slurmd
    pids="$(ip netns pids "$node" 2>/dev/null | tr '\n' ' ')"
    if [ -n "${pids// /}" ]; then
        log "killing what is left in $node: $pids"
        # shellcheck disable=SC2086
        kill -TERM $pids 2>/dev/null || true
        for _ in $(seq 25); do
            [ -z "$(ip netns pids "$node" 2>/dev/null)" ] && break
            sleep 0.2
        done
        # shellcheck disable=SC2046
        kill -KILL $(ip netns pids "$node" 2>/dev/null) 2>/dev/null || true
    fi
    ip netns del "$node"
    rm -rf "/etc/netns/$node"
}

wait_idle() {
    local node="$1" state="" i
    for i in $(seq 120); do
        state="$(node_state "$node")"
        case "$state" in
        idle | mix | alloc) return 0 ;;
        # left DOWN/DRAINED by an earlier run (e.g. a kill that timed out): put it back
        down* | drain* | drng*) [ $((i % 10)) -eq 5 ] && scontrol update NodeName="$node" State=RESUME 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    show_logs
    die "node $node not idle after 60 s (state: '${state:-none}')"
}

start() {
    need_root
    mkdir -p "$DIR"/{etc,state,spool,log,run}
    install_packages
    if cluster_up; then
        if render_conf | cmp -s - "$CONF"; then
            link_system_conf
            log "already running and healthy; nothing to do"
            print_conf
            return
        fi
        log "slurm.conf changed; restarting slurmctld and the slurmds"
    fi
    # a half-up cluster (one daemon died) is restarted as a whole
    stop_slurm_daemons
    write_conf
    start_munge
    if [ "$NODES" -gt 0 ]; then
        make_bridge
        for k in $(seq "$NODES"); do make_node "$k"; done
    fi

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

    mkdir -p "$DIR/spool/slurmd-localhost"
    log "starting slurmd on localhost"
    slurmd -f "$CONF" || {
        show_logs
        die "slurmd failed to start"
    }
    for node in $(all_nodes); do mkdir -p "$DIR/spool/slurmd-$node"; done
    for k in $(seq "$NODES"); do
        log "starting slurmd on rb-node$k"
        start_node_slurmd "$k" || {
            show_logs
            die "slurmd on rb-node$k failed to start"
        }
    done
    for node in $(all_nodes); do wait_idle "$node"; done
    log "cluster up: $(sinfo -h -o '%P %a %D %t %N' | tr '\n' ';')"
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
    local f
    for f in "$DIR"/run/slurmd-*.pid "$DIR/run/slurmd.pid"; do
        [ -e "$f" ] && stop_pid_file "$f" slurmd
    done
    stop_pid_file "$DIR/run/slurmctld.pid" slurmctld
}

stop() {
    need_root
    local node
    for node in $(our_namespaces); do remove_node "$node"; done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
    if [ -e "$DIR/run/etc-netns-made" ]; then
        rmdir /etc/netns 2>/dev/null || true
        rm -f "$DIR/run/etc-netns-made"
    fi
    stop_slurm_daemons
    # munged only when this script started it
    stop_pid_file "$DIR/run/munged.pid" munged
    if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$CONF" ]; then
        rm -f "$SYSTEM_CONF"
        if [ -e "$SYSTEM_CONF.orig" ]; then mv "$SYSTEM_CONF.orig" "$SYSTEM_CONF"; fi
    fi
    check_stopped
    log "stopped (state kept in $DIR)"
}

# After stop: no namespace, link or daemon of ours is left; else say what is, and fail.
check_stopped() {
    local left=() f pid
    while read -r ns; do [ -n "$ns" ] && left+=("network namespace $ns"); done < <(our_namespaces)
    while read -r link; do [ -n "$link" ] && left+=("link $link"); done < <(
        ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -x "$BRIDGE\|rb-veth[0-9]*" || true)
    for f in "$DIR"/run/*.pid; do
        [ -e "$f" ] || continue
        pid="$(tr -dc 0-9 <"$f")"
        [ -n "$pid" ] && [ -d "/proc/$pid" ] && left+=("$(cat "/proc/$pid/comm") (pid $pid, $f)")
    done
    [ "${#left[@]}" -eq 0 ] && return 0
    log "ERROR: still there after stop:"
    printf '  %s\n' "${left[@]}" >&2
    return 1
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

#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (Debian's slurm-wlm), for tests and local trials.
#
#   slurm/local_cluster.sh start  DIR   install slurm-wlm + munge if missing, write DIR/slurm.conf, start the
#                                       daemons, wait until the node is idle
#   slurm/local_cluster.sh status DIR   daemons alive? what does sinfo say? (exit 0 only when all are alive)
#   slurm/local_cluster.sh stop   DIR   cancel this cluster's jobs, then stop exactly the daemons `start` began
#
# Clients (sbatch, squeue, scontrol, ...) need `export SLURM_CONF=DIR/slurm.conf`; `start` prints it.
# Everything (config, state, spool, logs, munge socket, PIDs) lives under DIR, so several clusters can be started
# in different folders one after the other, and nothing outside DIR is touched except the apt install and the
# munge key (/etc/munge/munge.key, created by the munge package).
# Must run as root: slurmd launches jobs as their owner, and munged is started as the munge user.
# Ports: SLURM_LOCAL_CTLD_PORT (default 6817) and SLURM_LOCAL_SLURMD_PORT (default 6818).
# Exit status 3: slurm-wlm / munge are missing and cannot be installed here (tests skip on it; any other failure is
# an error).
set -euo pipefail

die() { echo "local_cluster.sh: $*" >&2; exit 1; }
cannot_install() { echo "local_cluster.sh: $*" >&2; exit 3; }

usage() {
    sed -n '3,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[[ $# -eq 2 ]] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
conf=$dir/slurm.conf
pids=$dir/pids
export SLURM_CONF=$conf

# The daemons in start order; `stop` goes through them in reverse.
DAEMONS=(munged slurmctld slurmd)

install_if_missing() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || cannot_install \
        "slurm-wlm and munge are not installed and there is no apt-get to install them; install them by hand"
    echo "installing slurm-wlm and munge with apt-get (about 20 s) ..."
    apt-get update -qq >"$dir/apt-install.log" 2>&1 || cannot_install "apt-get update failed; see $dir/apt-install.log"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >>"$dir/apt-install.log" 2>&1 \
        || cannot_install "apt-get install slurm-wlm munge failed; see $dir/apt-install.log"
}

ensure_munge_key() {
    # The Debian package creates the key on install; a hand-made install may not have one.
    local key=/etc/munge/munge.key
    [[ -s $key ]] && return
    echo "creating $key"
    mkdir -p /etc/munge
    dd if=/dev/urandom of=$key bs=1 count=1024 status=none
    chown munge:munge $key
    chmod 400 $key
}

write_conf() {
    # `slurmd -C` reports this node as slurmd itself sees it (hostname, cores, memory); a node line that claims more
    # than that would drain the node, so it is taken as is. The hostname is reached as 127.0.0.1 whatever it
    # resolves to, so the cluster works on machines with no DNS entry for themselves.
    local node_line host
    node_line=$(slurmd -C | head -n 1)
    [[ $node_line == NodeName=* ]] || die "unexpected 'slurmd -C' output: $node_line"
    host=${node_line#NodeName=}
    host=${host%% *}
    cat >"$conf" <<EOF
# Written by slurm/local_cluster.sh for a single-node cluster on $host.
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
# Root runs both daemons: this is a throwaway cluster inside one machine.
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also holds a requeued job back before it may start again: 120 s by default, 10 s is plenty here.
AuthInfo=socket=$dir/munge/munge.socket.2,cred_expire=10
CredType=cred/munge
SlurmctldPort=${SLURM_LOCAL_CTLD_PORT:-6817}
SlurmdPort=${SLURM_LOCAL_SLURMD_PORT:-6818}
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
# No cgroup plugins: containers and CI machines often mix cgroup v1 and v2, which the cgroup plugins refuse.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
# Scheduling passes every few seconds (default 60 s / 30 s), so that a requeued job starts soon after it may.
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# A node that was down comes back by itself when its slurmd registers again.
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

# alive NAME -> 0 when the PID recorded for daemon NAME still runs that daemon.
alive() {
    local pid
    [[ -s $pids/$1.pid ]] || return 1
    pid=$(<"$pids/$1.pid")
    [[ -r /proc/$pid/comm && $(<"/proc/$pid/comm") == "$1" ]]
}

# launch NAME CMD... : start CMD in the background (no terminal, output to DIR/NAME.out), record its PID.
launch() {
    local name=$1; shift
    "$@" </dev/null >"$dir/$name.out" 2>&1 &
    echo $! >"$pids/$name.pid"
}

wait_until_idle() {
    local host state
    host=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$conf")
    for _ in $(seq 1 60); do
        state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
        [[ $state == idle ]] && return
        sleep 1
    done
    echo "the node is not idle after 60 s (sinfo says '${state:-nothing}'); the logs end with:" >&2
    tail -n 5 "$dir"/*.log "$dir"/*.out "$dir/munge/munged.log" >&2 2>/dev/null || true
    return 1
}

start() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (slurmd starts jobs as their owner; munged runs as user munge)"
    if alive munged && alive slurmctld && alive slurmd; then
        echo "already running in $dir"
        echo "export SLURM_CONF=$conf"
        return
    fi
    if alive munged || alive slurmctld || alive slurmd; then die "partly running in $dir; run 'stop $dir' first"; fi
    install_if_missing
    ensure_munge_key
    mkdir -p "$pids" "$dir/state" "$dir/spool" "$dir/munge"
    # munged refuses a socket folder that others cannot enter, and must own it.
    chmod 755 "$dir" "$dir/munge"
    chown munge:munge "$dir/munge"
    setpriv --reuid=munge --regid=munge --init-groups test -x "$dir/munge" \
        || die "user munge cannot enter $dir/munge: a parent folder is not searchable by others (try one in /tmp)"
    write_conf

    # setpriv executes munged in its own place (runuser would fork and keep waiting), so $! is munged's PID.
    launch munged setpriv --reuid=munge --regid=munge --init-groups munged -F \
        --socket="$dir/munge/munge.socket.2" --log-file="$dir/munge/munged.log" \
        --pid-file="$dir/munge/munged.pid" --seed-file="$dir/munge/munged.seed"
    for _ in $(seq 1 50); do [[ -S $dir/munge/munge.socket.2 ]] && break; sleep 0.1; done
    [[ -S $dir/munge/munge.socket.2 ]] || die "munged did not create its socket; see $dir/munge/munged.log"
    # -i: a first start has no state files yet; -D: stay in the foreground so the recorded PID is the daemon.
    launch slurmctld slurmctld -D -i -f "$conf"
    launch slurmd slurmd -D -f "$conf"
    if ! wait_until_idle; then
        stop
        die "could not start the cluster in $dir"
    fi
    echo "single-node SLURM running in $dir"
    echo "export SLURM_CONF=$conf"
}

stop() {
    # Jobs first, so that no job steps outlive the slurmd that watches them.
    if alive slurmctld; then
        local jobs
        jobs=$(squeue -h -o %i 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            # shellcheck disable=SC2086  # one argument per job id
            scancel $jobs || true
            for _ in $(seq 1 20); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.5; done
        fi
    fi
    local i name pid
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        name=${DAEMONS[i]}
        if alive "$name"; then
            pid=$(<"$pids/$name.pid")
            kill "$pid"
            for _ in $(seq 1 50); do alive "$name" || break; sleep 0.1; done
            if alive "$name"; then kill -9 "$pid"; fi
            echo "stopped $name ($pid)"
        fi
        rm -f "$pids/$name.pid"
    done
}

status() {
    local name ok=0
    for name in "${DAEMONS[@]}"; do
        if alive "$name"; then echo "$name: running ($(<"$pids/$name.pid"))"; else echo "$name: not running"; ok=1; fi
    done
    if alive slurmctld; then sinfo; fi
    return $ok
}

case $action in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) usage ;;
esac

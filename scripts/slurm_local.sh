#!/usr/bin/env bash
# A single-node Slurm cluster on this machine (Debian's slurm-wlm + munge), for tests and trying things out.
#
#   bash scripts/slurm_local.sh start    # munged, slurmctld, slurmd on localhost; partition "debug"
#   bash scripts/slurm_local.sh stop     # stops the three daemons this script started (by their PIDs)
#   bash scripts/slurm_local.sh status
#
# As root (slurmd runs jobs as their user). Idempotent: `start` with a running cluster does nothing. The
# daemons run under `nice -n 19`. KillWait is 5 s so that `scancel` sends SIGKILL 5 s after SIGTERM.
# Packages: apt-get install -y slurm-wlm munge (scripts/setup-slurm.sh).
set -euo pipefail
STATE=${PRUNEBENCH_SLURM_STATE:-/var/lib/prunebench-slurm}
CONF=/etc/slurm/slurm.conf

running() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

start() {
  [ "$(id -u)" -eq 0 ] || { echo "slurm_local.sh: run as root (slurmd starts jobs as their user)" >&2; exit 2; }
  command -v slurmctld >/dev/null && command -v munged >/dev/null || {
    echo "slurm_local.sh: slurm-wlm and munge are not installed (apt-get install -y slurm-wlm munge)" >&2; exit 2; }
  mkdir -p "$STATE/ctld" "$STATE/d" /var/log/slurm /run/munge /etc/slurm
  chown munge:munge /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    head -c 1024 /dev/urandom > /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- nice -n 19 /usr/sbin/munged --pid-file=/run/munge/munged.pid
    cp /run/munge/munged.pid "$STATE/munged.pid"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  local hn; hn=$(hostname -s)
  cat > "$CONF.new" <<CONF
ClusterName=pb
SlurmctldHost=$hn
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
MinJobAge=60
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$hn CPUs=$(nproc) RealMemory=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) / 2 )) State=UNKNOWN
PartitionName=debug Nodes=$hn Default=YES MaxTime=INFINITE State=UP
CONF
  mv "$CONF.new" "$CONF"
  running slurmctld || nice -n 19 slurmctld
  running slurmd || nice -n 19 slurmd
  for _ in $(seq 100); do
    sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)' && { sinfo; return 0; }
    sleep 0.2
  done
  echo "slurm_local.sh: the node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
  exit 1
}

stop() {
  for d in slurmd slurmctld munged; do
    if running "$d"; then
      pid=$(cat "$STATE/$d.pid"); kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$STATE/$d.pid"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

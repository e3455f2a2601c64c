#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the `slurm` tests (tests/test_slurm.py) and for trying
# `--executor slurm` without a cluster. Run as root on Debian/Ubuntu; idempotent: a second run with the
# cluster up only checks it. It installs slurm-wlm and munge from the distribution's packages, writes
# /etc/slurm/slurm.conf with this machine's CPUs and memory, and starts munged, slurmctld and slurmd.
# No cgroups are needed (proctrack/linuxproc, task/none); accounting is off, so SLURM's records of
# finished jobs are `scontrol show job` (kept MinJobAge seconds) and the completion log JOBCOMP below.
#   scripts/slurm-local.sh          # install if needed, start, wait until the node is idle
#   scripts/slurm-local.sh stop     # stop the three daemons (the packages stay)
set -euo pipefail

CONF=/etc/slurm/slurm.conf
JOBCOMP=/var/log/slurm/jobcomp.log
NODE=$(hostname -s)

daemon_pid() { pgrep -x "$1" | head -n1 || true; }

if [ "${1:-}" = stop ]; then
    for d in slurmd slurmctld munged; do
        pid=$(daemon_pid "$d"); [ -n "$pid" ] && kill "$pid" && echo "stopped $d ($pid)"
    done
    exit 0
fi

[ "$(id -u)" -eq 0 ] || { echo "slurm-local.sh: run as root (it installs packages and starts daemons)"; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
# munge: the Debian package generates a key; make one if it did not
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key
chown -R munge:munge /etc/munge /run/munge /var/log/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key

CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))   # 10% left to the system
cat > "$CONF.new" <<CONF
# Written by scripts/slurm-local.sh: a one-node cluster on this machine.
ClusterName=opfact-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=3600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$JOBCOMP
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
DefMemPerCPU=$(( MEM_MB / CPUS ))
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
changed=0
if ! cmp -s "$CONF.new" "$CONF"; then mv "$CONF.new" "$CONF"; changed=1; else rm -f "$CONF.new"; fi

[ -n "$(daemon_pid munged)" ] || runuser -u munge -- munged
if [ "$changed" = 1 ]; then      # a new configuration: restart what runs on the old one
    for d in slurmd slurmctld; do pid=$(daemon_pid "$d"); [ -z "$pid" ] || { kill "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done; }; done
fi
[ -n "$(daemon_pid slurmctld)" ] || slurmctld
[ -n "$(daemon_pid slurmd)" ] || slurmd

for _ in $(seq 1 120); do
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
    case "$state" in
        idle|mixed|allocated) echo "slurm-local: node $NODE $state ($CPUS CPUs, ${MEM_MB} MB; partition local; completion log $JOBCOMP)"; exit 0 ;;
        drain*|down*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
done
echo "slurm-local: node $NODE not ready after 60 s (state: ${state:-none}); see /var/log/slurm/slurmctld.log and slurmd.log"
exit 1

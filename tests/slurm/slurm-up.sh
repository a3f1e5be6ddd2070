#!/usr/bin/env bash
# Start a throw-away single-node SLURM cluster on this machine (Debian 12, root, no systemd).
# Usage: slurm-up.sh SCRATCH_DIR          (stop it with: slurm-down.sh SCRATCH_DIR)
#
# Daemon state, spool, logs and pid files live under SCRATCH_DIR. Only slurm.conf (and gres.conf)
# must sit in /etc/slurm: the executor's job step strips SLURM_CONF before its inner `srun`,
# so a configuration anywhere else would not be found there (docs/cluster.md, "Testing").
#
# Environment:
#   SLURM_CPUS=N     CPUs the node advertises (default: nproc). More than nproc is allowed: the
#                    test jobs are light, and it lets threaded jobs run side by side.
#   SLURM_MEM_MB=M   memory the node advertises (default: 80% of RAM). More than RAM is allowed
#                    (nothing enforces it here), so that real-scale requests still fit.
#   SLURM_GPUS=G     GPUs (generic resource `gpu`) the node advertises (default 0). Bookkeeping
#                    only (the device files are stand-ins for /dev/null): enough to test that jobs
#                    ask for GPUs and get them (sbatch --gpus, CUDA_VISIBLE_DEVICES), not to use them.
#
# Exit codes: 0 up; 77 the packages cannot be installed (no apt-get, or no package registry): a
# caller may skip; 78 /etc/slurm holds a configuration this script did not write (a real
# installation: never replaced); anything else is a real failure (the daemon logs are printed).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 SCRATCH_DIR" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
S=$(mkdir -p "$1" && cd "$1" && pwd)
MARKER="# written by crane tests/slurm/slurm-up.sh; scratch="
CONF=/etc/slurm/slurm.conf
GRES_CONF=/etc/slurm/gres.conf
H=$(hostname -s)
CPUS=${SLURM_CPUS:-$(nproc)}
RAM=$(free -m | awk '/^Mem:/{print $2}')
MEM=${SLURM_MEM_MB:-$(( RAM * 8 / 10 ))}
GPUS=${SLURM_GPUS:-0}
mkdir -p "$S"/state "$S"/spool "$S"/log

# --- never replace a real installation's files; stop a crashed earlier run of this script ---
for f in "$CONF" "$GRES_CONF"; do
  [ -e "$f" ] || continue
  previous=$(sed -n "s|^$MARKER||p" "$f" | head -n 1)
  if [ -z "$previous" ]; then
    echo "$f exists and was not written by this script: refusing to replace it" >&2
    exit 78
  fi
  if [ "$previous" != "$S" ] && [ -d "$previous" ]; then "$HERE/slurm-down.sh" "$previous"; fi
done

# --- packages (apt does not start the services: no systemd here; they are started below) ---
pkgs="munge slurmctld slurmd slurm-client"
missing=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null || { echo "no apt-get: cannot install" $missing >&2; exit 77; }
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -qq --no-install-recommends $missing; } >"$S"/log/apt.log 2>&1; then
    echo "apt-get could not install:" $missing >&2; tail -n 5 "$S"/log/apt.log >&2
    exit 77
  fi
fi

# From here on, a failure stops whatever this script already started.
trap 'rc=$?; echo "slurm-up.sh failed ($rc); stopping what it started" >&2
      tail -n 20 "$S"/log/slurm*.log >&2 || true; "$HERE/slurm-down.sh" "$S"; exit $rc' ERR

wait_for() {  # wait_for SECONDS CMD... : poll until CMD succeeds
  local n=$(( $1 * 4 )); shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  echo "timed out waiting for: $*" >&2; return 1
}

# --- munge: reuse a running munged (not ours to stop), else start one and keep its PID ---
[ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
install -d -o munge -g munge -m 0755 /run/munge
if ! { [ -s /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; }; then
  runuser -u munge -- munged                    # forks; pid in /run/munge/munged.pid
  wait_for 10 sh -c 'munge -n | unmunge'
  cp /run/munge/munged.pid "$S"/munged.pid
fi

# --- configuration ---
mkdir -p /etc/slurm
OVERRIDE=""
# slurmd drains a node that advertises more than it has, unless told to trust slurm.conf
if [ "$CPUS" -gt "$(nproc)" ] || [ "$MEM" -gt "$RAM" ]; then
  OVERRIDE="SlurmdParameters=config_overrides"
fi
GRES_TYPES=""; NODE_GRES=""
if [ "$GPUS" -gt 0 ]; then
  # gres/gpu counts the device files it is given: stand-ins pointing at /dev/null
  mkdir -p "$S"/dev
  for i in $(seq 0 $(( GPUS - 1 ))); do ln -sfn /dev/null "$S/dev/gpu$i"; done
  printf '%s\nNodeName=%s Name=gpu File=%s/dev/gpu[0-%s]\n' "$MARKER$S" "$H" "$S" \
    $(( GPUS - 1 )) >"$GRES_CONF"
  GRES_TYPES="GresTypes=gpu"; NODE_GRES="Gres=gpu:$GPUS"
fi

cat >"$CONF.tmp" <<CONF
$MARKER$S
ClusterName=crane-ci
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
# no cgroups on these machines
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
JobCompType=jobcomp/none
# no slurmdbd, so no sacct: the profile's status command is squeue
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
# squeue lists finished jobs this long; the executor's squeue mode needs >= 3 x its first wait
MinJobAge=300
# reject a job that can never fit (sbatch fails at once) instead of letting it pend forever
EnforcePartLimits=ALL
$OVERRIDE
$GRES_TYPES
NodeName=$H NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM $NODE_GRES State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
CONF
mv "$CONF.tmp" "$CONF"

# --- daemons (both fork; their pid files are in the scratch folder) ---
slurmctld -c                                    # -c: ignore any saved state
wait_for 30 test -s "$S"/slurmctld.pid
slurmd
wait_for 30 test -s "$S"/slurmd.pid
wait_for 60 sh -c "sinfo -h -o %T | grep -Eqx 'idle|mixed'"
srun -t 1 true                                  # smoke test: a job step really runs
sinfo -o "%P %a %l %D %T %N %c %m %G"

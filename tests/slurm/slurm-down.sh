#!/usr/bin/env bash
# Stop what slurm-up.sh SCRATCH_DIR started, by PID, in reverse order; cancel jobs first (a killed
# snakemake leaves its jobs queued). Safe to run twice, or after a partial start.
# Usage: slurm-down.sh SCRATCH_DIR
[ $# -eq 1 ] || { echo "usage: $0 SCRATCH_DIR" >&2; exit 2; }
S=$1
MARKER="# written by crane tests/slurm/slurm-up.sh; scratch="
CONF=/etc/slurm/slurm.conf

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if alive "$S"/slurmctld.pid; then
  timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
  # let slurmd see the cancellations before it goes
  for _ in $(seq 20); do
    [ -z "$(timeout 5 squeue -h -t RUNNING,PENDING,COMPLETING 2>/dev/null)" ] && break
    sleep 0.25
  done
fi

stop() {  # stop PIDFILE: TERM, wait up to 15 s, then KILL
  [ -s "$1" ] || return 0
  local p; p=$(cat "$1")
  kill "$p" 2>/dev/null || { rm -f "$1"; return 0; }
  for _ in $(seq 60); do kill -0 "$p" 2>/dev/null || { rm -f "$1"; return 0; }; sleep 0.25; done
  kill -9 "$p" 2>/dev/null || true
  rm -f "$1"
}
stop "$S"/slurmd.pid
stop "$S"/slurmctld.pid
stop "$S"/munged.pid            # present only when slurm-up.sh started munged itself

# our slurm.conf (and gres.conf) go too, so that the machine is left as it was found
for f in "$CONF" /etc/slurm/gres.conf; do
  if [ -e "$f" ] && grep -qxF "$MARKER$S" "$f"; then rm -f "$f"; fi
done
exit 0

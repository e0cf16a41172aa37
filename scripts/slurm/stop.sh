#!/usr/bin/env bash
# Stop the throw-away Slurm cluster of scripts/slurm/start.sh: cancel its jobs, then stop slurmd,
# slurmctld, slurmdbd, MariaDB and munged by their pid files. Leaves the state folder (configs,
# database, logs) for the next start unless --purge is given.
#
#   sudo scripts/slurm/stop.sh [--state-dir DIR] [--purge]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$HERE/common.sh"
# shellcheck source-path=SCRIPTDIR source=nodes.sh
source "$HERE/nodes.sh"

usage() {
  cat <<EOF
usage: $0 [--state-dir DIR] [--purge]

Stops what scripts/slurm/start.sh started with state in DIR (default \$LANMSFF_SLURM_STATE or
/var/lib/lanmsff-slurm); --purge also deletes DIR.
EOF
}

PURGE=0
args=()
for arg in "$@"; do
  if [[ "$arg" == --purge ]]; then PURGE=1; else args+=("$arg"); fi
done

# Jobs of this cluster: slurmstepd processes started by our slurmd carry our SLURM_CONF.
our_stepds() {
  local dir pid
  for dir in /proc/[0-9]*; do
    pid="${dir#/proc/}"
    [[ "$(cat "$dir/comm" 2>/dev/null)" == slurmstepd ]] || continue
    tr '\0' '\n' <"$dir/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$SLURM_CONF" && echo "$pid"
  done
  return 0
}

cancel_jobs() {
  daemon_pid slurmctld >/dev/null || return 0
  local jobs
  jobs="$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')"
  if [[ -n "${jobs// /}" ]]; then
    step "jobs: cancelling $jobs"
    # shellcheck disable=SC2086  # one word per job id
    scancel $jobs 2>/dev/null || true
    # KillWait (30 s) between SIGTERM and SIGKILL, then the epilog
    # shellcheck disable=SC2016  # expanded by wait_for
    wait_for '[[ -z "$(squeue -h -o %A 2>/dev/null)" ]]' 60 || step "jobs: still listed after 60 s: $(squeue -h -o %A | tr '\n' ' ')"
  fi
  # shellcheck disable=SC2016  # expanded by wait_for
  wait_for '[[ -z "$(our_stepds)" ]]' 20 || true
}

stop_daemon() {
  local name="$1" pid
  if ! pid="$(daemon_pid "$name")"; then
    rm -f "$(pid_file "$name")"
    step "$name: not running"
    return
  fi
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_for "! daemon_pid $name" 30; then
    step "$name: still running 30 s after SIGTERM, sending SIGKILL (pid $pid)"
    kill -KILL "$pid" 2>/dev/null || true
    wait_for "! daemon_pid $name" 10 || fail "$name (pid $pid) does not stop"
  fi
  rm -f "$(pid_file "$name")"
  step "$name: stopped (pid $pid)"
}

main() {
  parse_args "${args[@]}"
  ((EUID == 0)) || fail "run as root: the daemons run as root"
  if [[ ! -d "$STATE_DIR" ]]; then
    step "nothing to stop: no state folder $STATE_DIR"
    return
  fi
  step "state folder: $STATE_DIR"
  cancel_jobs
  local i pid
  stop_node2
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    stop_daemon "${DAEMONS[i]}"
  done
  network_down
  for pid in $(our_stepds); do
    step "slurmstepd pid $pid outlived its slurmd: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [[ -L /etc/slurm/slurm.conf && "$(readlink /etc/slurm/slurm.conf)" == "$SLURM_CONF" ]]; then
    rm -f /etc/slurm/slurm.conf
    step "removed the link /etc/slurm/slurm.conf"
  fi
  if ((PURGE)); then
    rm -rf "$STATE_DIR"
    step "purged $STATE_DIR"
  fi
  step "stopped"
}

main

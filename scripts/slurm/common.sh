# Shared by scripts/slurm/start.sh and scripts/slurm/stop.sh (sourced, not run).
# shellcheck shell=bash disable=SC2034  # the settings are used by the scripts that source this file

# Defaults; every one can be changed by the environment (or --state-dir for the first).
STATE_DIR="${LANMSFF_SLURM_STATE:-/var/lib/lanmsff-slurm}"
CLUSTER="${LANMSFF_SLURM_CLUSTER:-lanmsff}"
PARTITION="${LANMSFF_SLURM_PARTITION:-cpu}"
ACCOUNT="${LANMSFF_SLURM_ACCOUNT:-lanmsff}"
CTLD_PORT="${LANMSFF_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${LANMSFF_SLURM_SLURMD_PORT:-6818}"
DBD_PORT="${LANMSFF_SLURM_DBD_PORT:-6819}"
DB_PORT="${LANMSFF_SLURM_DB_PORT:-3307}"
# CPUs advertised: by default the real ones (bound with task/affinity); more is allowed (see slurm.conf.in)
CPUS="${LANMSFF_SLURM_CPUS:-$(nproc)}"
# 1: one node, this machine; 2: a second node in its own network namespace (nodes.sh), for multi-node jobs
NODES="${LANMSFF_SLURM_NODES:-1}"

# The daemons, in start order: name (= /proc/PID/comm) and pid file.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

step() { printf '[slurm] %s\n' "$*"; }
fail() {
  printf '[slurm] error: %s\n' "$*" >&2
  exit 1
}

parse_args() {
  while (($#)); do
    case "$1" in
      --state-dir)
        [[ $# -ge 2 ]] || fail "--state-dir needs a folder"
        STATE_DIR="$2"
        shift 2
        ;;
      --state-dir=*)
        STATE_DIR="${1#--state-dir=}"
        shift
        ;;
      --nodes)
        [[ $# -ge 2 ]] || fail "--nodes needs 1 or 2"
        NODES="$2"
        shift 2
        ;;
      -h | --help)
        usage
        exit 0
        ;;
      *) fail "unknown argument '$1' (see --help)" ;;
    esac
  done
  [[ "$NODES" == 1 || "$NODES" == 2 ]] || fail "--nodes $NODES: 1 or 2"
  [[ "$STATE_DIR" == /* ]] || STATE_DIR="$PWD/$STATE_DIR"
  STATE_DIR="${STATE_DIR%/}"
  export SLURM_CONF="$STATE_DIR/etc/slurm.conf"
}

pid_file() {
  case "$1" in
    munged) echo "$STATE_DIR/munge/munged.pid" ;;
    mariadbd) echo "$STATE_DIR/run/mariadb/mariadbd.pid" ;;
    *) echo "$STATE_DIR/run/$1.pid" ;;
  esac
}

# The pid of daemon $1 if its pid file names a live process of that name (not a zombie), else nothing.
daemon_pid() {
  local file pid comm state
  file="$(pid_file "$1")"
  [[ -r "$file" ]] || return 1
  pid="$(tr -dc '0-9' <"$file")"
  [[ -n "$pid" && -r "/proc/$pid/comm" ]] || return 1
  comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
  [[ "$comm" == "$1" ]] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [[ "$state" != Z && "$state" != X ]] || return 1
  echo "$pid"
}

# Wait up to $2 seconds (default 20) for command "$1" (a function or command name, run with eval) to succeed.
wait_for() {
  local what="$1" seconds="${2:-20}" start=$SECONDS
  until eval "$what" >/dev/null 2>&1; do
    ((SECONDS - start < seconds)) || return 1
    sleep 0.5
  done
}

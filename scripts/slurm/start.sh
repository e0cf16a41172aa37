#!/usr/bin/env bash
# Start a throw-away single-node Slurm cluster with accounting (munge, MariaDB, slurmdbd,
# slurmctld, slurmd) on this machine, for lanmsff's Slurm launcher and tests/test_slurm.py.
#
#   sudo scripts/slurm/start.sh [--state-dir DIR]     # default /var/lib/lanmsff-slurm
#   sudo scripts/slurm/stop.sh  [--state-dir DIR]
#
# Installs the Debian packages when they are missing, writes the configs from the templates
# next to this script, and keeps everything (configs, munge key, database, spool, logs, pid
# files) under the state folder. Idempotent: a second run finds the daemons up and only checks.
# Debian/Ubuntu, root, no systemd or cgroups needed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$HERE/common.sh"
# shellcheck source-path=SCRIPTDIR source=nodes.sh
source "$HERE/nodes.sh"

usage() {
  cat <<EOF
usage: $0 [--state-dir DIR] [--nodes 1|2]

Starts a single-node Slurm cluster with accounting, keeping its state in DIR
(default \$LANMSFF_SLURM_STATE or /var/lib/lanmsff-slurm). --nodes 2 adds a second node, a slurmd
in its own network namespace (scripts/slurm/nodes.sh), for multi-node jobs. Environment:
LANMSFF_SLURM_CPUS (CPUs advertised, default 4), LANMSFF_SLURM_CTLD_PORT / _SLURMD_PORT /
_DBD_PORT / _DB_PORT (6817 / 6818 / 6819 / 3307), LANMSFF_SLURM_CLUSTER / _PARTITION / _ACCOUNT
(lanmsff / cpu / lanmsff).
EOF
}

PACKAGES=(munge slurm-client slurmctld slurmd slurmdbd mariadb-server)
COMMANDS=(munged mungekey munge unmunge slurmctld slurmd slurmdbd sbatch sacct sacctmgr scontrol sinfo mariadbd mariadb mariadb-admin mariadb-install-db)

install_packages() {
  local missing=() cmd start=$SECONDS
  for cmd in "${COMMANDS[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
  done
  if ((${#missing[@]} == 0)); then
    step "packages: installed ($(slurmctld -V))"
    return
  fi
  command -v apt-get >/dev/null 2>&1 || fail "missing ${missing[*]} and no apt-get to install ${PACKAGES[*]}"
  step "packages: installing ${PACKAGES[*]} (missing: ${missing[*]})"
  local log="/tmp/lanmsff-slurm-apt.$$.log"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >"$log" 2>&1; then
    step "packages: apt-get update, then again"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>"$log" 2>&1 ||
      fail "apt-get install ${PACKAGES[*]} failed; see $log"
  fi
  rm -f "$log"
  for cmd in "${COMMANDS[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || fail "$cmd is still missing after installing ${PACKAGES[*]}"
  done
  step "packages: installed in $((SECONDS - start)) s ($(slurmctld -V))"
}

make_layout() {
  mkdir -p "$STATE_DIR"/{etc,run,log,spool/ctld,spool/d,munge,mariadb,run/mariadb}
  chmod 0755 "$STATE_DIR" "$STATE_DIR"/{etc,run,log,spool}
  # munged insists on owning its directories, which others may enter but not write
  local user
  for user in munge mysql; do
    runuser -u "$user" -- test -x "$STATE_DIR" ||
      fail "user $user cannot enter $STATE_DIR: every folder above it needs o+x (private 0700 folders such as pytest's or mktemp -d's do not); choose another --state-dir"
  done
  chown munge:munge "$STATE_DIR/munge"
  chmod 0755 "$STATE_DIR/munge"
  chown mysql:mysql "$STATE_DIR/mariadb" "$STATE_DIR/run/mariadb"
  chmod 0700 "$STATE_DIR/mariadb"
  chmod 0755 "$STATE_DIR/run/mariadb"
  if [[ ! -s "$STATE_DIR/munge/munge.key" ]]; then
    mungekey --create --keyfile="$STATE_DIR/munge/munge.key"
    step "munge: new key $STATE_DIR/munge/munge.key"
  fi
  chown munge:munge "$STATE_DIR/munge/munge.key"
  chmod 0600 "$STATE_DIR/munge/munge.key"
  if [[ ! -s "$STATE_DIR/etc/db.pass" ]]; then
    (umask 077 && head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24 >"$STATE_DIR/etc/db.pass")
  fi
  chmod 0600 "$STATE_DIR/etc/db.pass"
}

# Fill the @NAME@ placeholders of template $1 into file $2 (mode $3); CHANGED+=" $1" when $2 changed.
render() {
  local template="$HERE/$1" target="$2" mode="$3" tmp
  tmp="$(mktemp "$target.XXXXXX")"
  sed -e "s|@STATE@|$STATE_DIR|g" \
    -e "s|@CLUSTER@|$CLUSTER|g" \
    -e "s|@PARTITION@|$PARTITION|g" \
    -e "s|@NODE@|$NODE|g" \
    -e "s|@CTLD_ADDR@|$CTLD_ADDR|g" \
    -e "s|@NODE_LINES@|$NODE_LINES|g" \
    -e "s|@CTLD_PORT@|$CTLD_PORT|g" \
    -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
    -e "s|@DBD_PORT@|$DBD_PORT|g" \
    -e "s|@DB_PORT@|$DB_PORT|g" \
    -e "s|@DB_PASS@|$DB_PASS|g" \
    -e "s|@CPUS@|$CPUS|g" \
    -e "s|@REAL_CPUS@|$REAL_CPUS|g" \
    -e "s|@TASK_PLUGIN@|$TASK_PLUGIN|g" \
    -e "s|@TASK_PLUGIN_WHY@|$TASK_PLUGIN_WHY|g" \
    -e "s|@MEM_MB@|$MEM_MB|g" \
    -e "s|@DEF_MEM_PER_CPU@|$DEF_MEM_PER_CPU|g" \
    "$template" >"$tmp"
  chmod "$mode" "$tmp"
  if [[ -f "$target" ]] && cmp -s "$tmp" "$target"; then
    rm -f "$tmp"
  else
    mv -f "$tmp" "$target"
    CHANGED+=" $1"
  fi
}

write_configs() {
  NODE="$(hostname -s)"
  [[ "$NODE" =~ ^[A-Za-z0-9][A-Za-z0-9-]*$ ]] || fail "host name '$NODE' cannot be a Slurm node name"
  REAL_CPUS="$(nproc)"
  [[ "$CPUS" =~ ^[1-9][0-9]*$ ]] || fail "LANMSFF_SLURM_CPUS=$CPUS is not a positive number"
  if ((CPUS <= REAL_CPUS)); then
    TASK_PLUGIN=task/affinity
    TASK_PLUGIN_WHY="task/affinity binds each task to its CPUs, so torch sees and uses only those (no cgroups needed)"
  else
    TASK_PLUGIN=task/none
    TASK_PLUGIN_WHY="more CPUs advertised than exist: nothing can be bound; jobs must cap their threads (OMP_NUM_THREADS)"
  fi
  local total_mb
  total_mb="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"
  # leave 2 GB (or a quarter) to the system and the daemons
  MEM_MB=$((total_mb - (total_mb / 4 < 2048 ? total_mb / 4 : 2048)))
  DEF_MEM_PER_CPU=$((MEM_MB / CPUS < 1024 ? MEM_MB / CPUS : 1024))
  DB_PASS="$(cat "$STATE_DIR/etc/db.pass")"
  node_lines
  CHANGED=""
  render slurm.conf.in "$STATE_DIR/etc/slurm.conf" 0644
  render slurmdbd.conf.in "$STATE_DIR/etc/slurmdbd.conf" 0600
  render mariadb.sql.in "$STATE_DIR/etc/mariadb.sql" 0600
  : >"$STATE_DIR/etc/plugstack.conf"
  if [[ -n "$CHANGED" ]]; then
    step "configs: written to $STATE_DIR/etc (node $NODE: $CPUS CPUs advertised, $REAL_CPUS real; $MEM_MB MB)"
  else
    step "configs: unchanged in $STATE_DIR/etc"
  fi
}

start_munged() {
  local pid
  if pid="$(daemon_pid munged)"; then
    step "munged: running (pid $pid)"
  else
    rm -f "$STATE_DIR/munge/munge.socket" "$STATE_DIR/munge/munge.socket.lock"
    runuser -u munge -- munged \
      --socket="$STATE_DIR/munge/munge.socket" \
      --key-file="$STATE_DIR/munge/munge.key" \
      --pid-file="$(pid_file munged)" \
      --log-file="$STATE_DIR/munge/munged.log" \
      --seed-file="$STATE_DIR/munge/munged.seed" </dev/null >"$STATE_DIR/log/munged-start.log" 2>&1 ||
      fail "munged did not start: $(tail -n 3 "$STATE_DIR/log/munged-start.log" | tr '\n' ' ')(see $STATE_DIR/munge/munged.log)"
    wait_for "daemon_pid munged" 10 || fail "munged did not start; see $STATE_DIR/munge/munged.log"
    step "munged: started (pid $(daemon_pid munged))"
  fi
  munge -n -S "$STATE_DIR/munge/munge.socket" | unmunge -S "$STATE_DIR/munge/munge.socket" >/dev/null 2>&1 ||
    fail "munge credentials do not round-trip through $STATE_DIR/munge/munge.socket"
}

mariadb_sql() { mariadb --no-defaults --protocol=socket --socket="$STATE_DIR/run/mariadb/mariadb.sock" -u root; }

start_mariadb() {
  local pid data="$STATE_DIR/mariadb"
  if [[ ! -d "$data/mysql" ]]; then
    step "mariadb: initialising $data"
    mariadb-install-db --no-defaults --user=mysql --datadir="$data" --auth-root-authentication-method=socket \
      --skip-test-db >"$STATE_DIR/log/mariadb-install.log" 2>&1 ||
      fail "mariadb-install-db failed; see $STATE_DIR/log/mariadb-install.log"
  fi
  if pid="$(daemon_pid mariadbd)"; then
    step "mariadb: running (pid $pid)"
  else
    # mariadbd does not daemonise itself: detach it (own session, no inherited terminal or pipes)
    setsid mariadbd --no-defaults --user=mysql --datadir="$data" \
      --socket="$STATE_DIR/run/mariadb/mariadb.sock" --pid-file="$(pid_file mariadbd)" \
      --port="$DB_PORT" --bind-address=127.0.0.1 --log-error="$STATE_DIR/log/mariadb.log" \
      --skip-log-bin --innodb-buffer-pool-size=128M --innodb-log-file-size=64M \
      --innodb-lock-wait-timeout=900 --max-connections=64 </dev/null >/dev/null 2>&1 &
    wait_for "mariadb-admin --no-defaults --socket=$STATE_DIR/run/mariadb/mariadb.sock -u root ping" 60 ||
      fail "mariadb did not start; see $STATE_DIR/log/mariadb.log"
    wait_for "daemon_pid mariadbd" 10 || fail "mariadb wrote no pid file $(pid_file mariadbd)"
    step "mariadb: started (pid $(daemon_pid mariadbd), 127.0.0.1:$DB_PORT)"
  fi
  mariadb_sql <"$STATE_DIR/etc/mariadb.sql" || fail "could not create the accounting database and its user"
  step "mariadb: database slurm_acct_db and user slurm ready"
}

# Stop daemon $1 (by its pid file) so that it is started again with a new config.
restart_needed() {
  local pid
  if pid="$(daemon_pid "$1")"; then
    step "$1: config changed, restarting (pid $pid)"
    kill -TERM "$pid"
    wait_for "! daemon_pid $1" 30 || fail "$1 (pid $pid) did not stop"
  fi
}

# Start Slurm daemon $1 unless it runs; restart it when its config ($2) changed; wait until $3 succeeds.
start_slurm_daemon() {
  local name="$1" config="$2" ready="$3" pid
  shift 3
  if [[ " $CHANGED " == *" $config "* ]]; then restart_needed "$name"; fi
  if pid="$(daemon_pid "$name")"; then
    step "$name: running (pid $pid)"
    return
  fi
  # the daemons fork into the background themselves; their stdio goes to /dev/null
  "$name" "$@" </dev/null >/dev/null 2>&1 || fail "$name did not start; see $STATE_DIR/log/$name.log"
  wait_for "daemon_pid $name" 20 || fail "$name did not start; see $STATE_DIR/log/$name.log"
  wait_for "$ready" 60 || fail "$name started but does not answer ($ready); see $STATE_DIR/log/$name.log"
  step "$name: started (pid $(daemon_pid "$name"))"
}

sacctmgr_has() { [[ -n "$(sacctmgr -n -P list "$@" 2>/dev/null)" ]]; }

register_accounting() {
  local user users=(root)
  sacctmgr_has cluster "$CLUSTER" format=cluster ||
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || fail "sacctmgr could not add cluster $CLUSTER"
  sacctmgr_has account "$ACCOUNT" format=account ||
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="lanmsff test jobs" organization=lanmsff \
      >/dev/null || fail "sacctmgr could not add account $ACCOUNT"
  [[ -n "${SUDO_USER:-}" && "${SUDO_USER}" != root ]] && users+=("$SUDO_USER")
  for user in "${users[@]}"; do
    sacctmgr_has association user="$user" account="$ACCOUNT" cluster="$CLUSTER" format=user ||
      sacctmgr -i add user "$user" account="$ACCOUNT" defaultaccount="$ACCOUNT" cluster="$CLUSTER" >/dev/null ||
      fail "sacctmgr could not add user $user to account $ACCOUNT"
  done
  step "accounting: cluster $CLUSTER, account $ACCOUNT, users ${users[*]}"
}

node_state() { sinfo -h -n "${1:-$FIRST_NODE}" -o %T 2>/dev/null | head -n 1; }
node_idle() { [[ "$(node_state)" == idle* || "$(node_state)" == mixed* || "$(node_state)" == allocated* ]]; }

wait_ready() {
  local state
  if ! wait_for node_idle 30; then
    state="$(node_state)"
    case "$state" in
      down* | drain* | fail*)
        step "node $FIRST_NODE is $state: resuming it"
        scontrol update nodename="$FIRST_NODE" state=resume >/dev/null 2>&1 || true
        wait_for node_idle 20 || fail "node $FIRST_NODE stays '$(node_state)'; see $STATE_DIR/log/slurmd.log"
        ;;
      *) fail "node $FIRST_NODE is '$state', not idle; see $STATE_DIR/log/slurmd.log and slurmctld.log" ;;
    esac
  fi
  step "node $FIRST_NODE: $(node_state)"
  if ((NODES == 2)); then
    # shellcheck disable=SC2016  # expanded by wait_for
    wait_for '[[ "$(node_state "$NODE2_NAME")" == idle* ]]' 60 ||
      fail "node $NODE2_NAME is '$(node_state "$NODE2_NAME")'; see $STATE_DIR/log/slurmd-$NODE2_NAME.log"
    step "node $NODE2_NAME: $(node_state "$NODE2_NAME")"
  fi
  wait_for "sacct -n -X --starttime=now-1hour" 30 || fail "sacct does not answer; see $STATE_DIR/log/slurmdbd.log"
  step "sacct: answers"
}

# Point the default config location at ours so that plain sinfo/sbatch find this cluster, but
# never replace a config we did not write.
link_default_config() {
  local default=/etc/slurm/slurm.conf
  mkdir -p /etc/slurm
  if [[ -L "$default" && "$(readlink "$default")" == "$SLURM_CONF" ]]; then
    return
  elif [[ ! -e "$default" && ! -L "$default" ]]; then
    ln -s "$SLURM_CONF" "$default"
    step "linked $default -> $SLURM_CONF"
  else
    step "note: $default is not ours; export SLURM_CONF=$SLURM_CONF to use this cluster"
  fi
}

main() {
  parse_args "$@"
  ((EUID == 0)) || fail "run as root: it installs packages and starts daemons"
  local start=$SECONDS
  step "state folder: $STATE_DIR"
  install_packages
  make_layout
  write_configs
  start_munged
  start_mariadb
  # slurmdbd reads slurmdbd.conf from the folder of $SLURM_CONF
  start_slurm_daemon slurmdbd slurmdbd.conf.in "sacctmgr -n list cluster"
  register_accounting
  if ((NODES == 2)); then network_up; fi  # the controller listens on node 1's address
  start_slurm_daemon slurmctld slurm.conf.in "scontrol ping" -f "$SLURM_CONF"
  start_slurm_daemon slurmd slurm.conf.in "node_state" -f "$SLURM_CONF" -N "$FIRST_NODE"
  if ((NODES == 2)); then start_node2; fi
  wait_ready
  link_default_config
  step "ready in $((SECONDS - start)) s: cluster $CLUSTER, partition $PARTITION (default), account $ACCOUNT, $NODES node(s) ($FIRST_NODE$( ((NODES == 2)) && echo ", $NODE2_NAME"); $CPUS CPUs, $MEM_MB MB each)"
  step "use it:  export SLURM_CONF=$SLURM_CONF   # (plain sinfo/sbatch find it too when /etc/slurm/slurm.conf links here)"
  step "         python train.py -m hydra/launcher=slurm_cpu hydra.launcher.partition=$PARTITION hydra.launcher.account=$ACCOUNT hydra.launcher.cpus_per_task=1 ..."
  step "         (cpus_per_task=1: $CPUS jobs at once; or hydra/launcher=slurm hydra.launcher.gpus_per_node=null hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=2)"
  step "stop it: $HERE/stop.sh${STATE_DIR:+ --state-dir $STATE_DIR}"
}

main "$@"

# The second node of scripts/slurm/start.sh --nodes 2 (sourced by start.sh and stop.sh, not run).
# shellcheck shell=bash disable=SC2034  # the settings are used by the scripts that source this file
#
# Node 1 is this machine, node 2 a slurmd in its own network namespace: a veth pair joins them, each end
# named lanmsff0 (so GLOO_SOCKET_IFNAME=lanmsff0 holds on both), and /etc/hosts names the two ends, so
# that a job reads its nodes (SLURM_NODELIST), and Lightning its MASTER_ADDR, as on a real cluster.

NETNS=lanmsff-n2
NET_IF=lanmsff0
NODE1_NAME=lanmsff-n1
NODE2_NAME=lanmsff-n2
NODE1_ADDR=10.77.0.1
NODE2_ADDR=10.77.0.2
HOSTS_MARK="# lanmsff-slurm second node"

network_up() {
  if ! ip netns list | grep -qw "$NETNS"; then
    ip netns add "$NETNS"
    ip link add "$NET_IF" type veth peer name "$NET_IF-peer"
    ip link set "$NET_IF-peer" netns "$NETNS"
    ip netns exec "$NETNS" ip link set "$NET_IF-peer" name "$NET_IF"
    ip addr add "$NODE1_ADDR/24" dev "$NET_IF"
    ip link set "$NET_IF" up
    ip netns exec "$NETNS" ip addr add "$NODE2_ADDR/24" dev "$NET_IF"
    ip netns exec "$NETNS" ip link set "$NET_IF" up
    ip netns exec "$NETNS" ip link set lo up
    step "network: namespace $NETNS, $NODE1_NAME $NODE1_ADDR <-> $NODE2_NAME $NODE2_ADDR ($NET_IF)"
  else
    step "network: namespace $NETNS exists"
  fi
  if ! grep -qF "$HOSTS_MARK" /etc/hosts; then
    printf '%s %s %s\n%s %s %s\n' "$NODE1_ADDR" "$NODE1_NAME" "$HOSTS_MARK" "$NODE2_ADDR" "$NODE2_NAME" "$HOSTS_MARK" \
      >>/etc/hosts
  fi
}

network_down() {
  if ip netns list 2>/dev/null | grep -qw "$NETNS"; then
    ip netns delete "$NETNS"
    ip link delete "$NET_IF" 2>/dev/null || true
    step "network: namespace $NETNS deleted"
  fi
  if grep -qF "$HOSTS_MARK" /etc/hosts 2>/dev/null; then
    local kept
    kept="$(grep -vF "$HOSTS_MARK" /etc/hosts)"
    printf '%s\n' "$kept" >/etc/hosts
  fi
}

# slurm.conf's node lines and controller address for $NODES nodes.
node_lines() {
  local spec="CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEM_MB State=UNKNOWN"
  if ((NODES == 2)); then
    CTLD_ADDR=$NODE1_ADDR
    FIRST_NODE=$NODE1_NAME
    NODE_LINES="NodeName=$NODE1_NAME NodeAddr=$NODE1_ADDR $spec\\nNodeName=$NODE2_NAME NodeAddr=$NODE2_ADDR $spec"
  else
    CTLD_ADDR=127.0.0.1
    FIRST_NODE=$NODE
    NODE_LINES="NodeName=$NODE NodeAddr=127.0.0.1 $spec"
  fi
}

node2_config() { echo "$STATE_DIR/etc/slurm-$NODE2_NAME.conf"; }
node2_pid() {
  local pid
  pid="$(tr -dc "0-9" 2>/dev/null <"$STATE_DIR/run/slurmd-$NODE2_NAME.pid")" || return 1
  [[ -n "$pid" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == slurmd ]] && echo "$pid"
}

# Node 2's slurmd: in the namespace, with its own pid file, spool and log (the config differs only there).
start_node2() {
  mkdir -p "$STATE_DIR/spool/d-$NODE2_NAME"
  sed -e "s|^SlurmdPidFile=.*|SlurmdPidFile=$STATE_DIR/run/slurmd-$NODE2_NAME.pid|" \
    -e "s|^SlurmdSpoolDir=.*|SlurmdSpoolDir=$STATE_DIR/spool/d-$NODE2_NAME|" \
    -e "s|^SlurmdLogFile=.*|SlurmdLogFile=$STATE_DIR/log/slurmd-$NODE2_NAME.log|" \
    "$SLURM_CONF" >"$(node2_config)"
  if node2_pid >/dev/null; then
    step "slurmd $NODE2_NAME: running (pid $(node2_pid))"
    return
  fi
  # nsenter, not ip netns exec: that remounts /sys, and slurmd needs the cgroup file system under it
  nsenter --net="/var/run/netns/$NETNS" slurmd -f "$(node2_config)" -N "$NODE2_NAME" </dev/null >/dev/null 2>&1 ||
    fail "slurmd $NODE2_NAME did not start; see $STATE_DIR/log/slurmd-$NODE2_NAME.log"
  wait_for node2_pid 20 || fail "slurmd $NODE2_NAME did not start; see $STATE_DIR/log/slurmd-$NODE2_NAME.log"
  step "slurmd $NODE2_NAME: started (pid $(node2_pid)) in namespace $NETNS"
}

stop_node2() {
  local pid
  if pid="$(node2_pid)"; then
    kill -TERM "$pid" 2>/dev/null || true
    wait_for "! node2_pid" 30 || kill -KILL "$pid" 2>/dev/null || true
    step "slurmd $NODE2_NAME: stopped (pid $pid)"
  fi
  rm -f "$STATE_DIR/run/slurmd-$NODE2_NAME.pid"
}

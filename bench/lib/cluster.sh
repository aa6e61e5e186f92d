# shellcheck shell=bash disable=SC2034
# A 3-node beacond cluster on 127.0.0.1 for the bench scripts; sourced after
# lib/common.sh. Node i (1..3): HTTP 127.0.0.1:${HTTP_PORT[i]}, Raft
# 127.0.0.1:${RAFT_PORT[i]}, data in $DATA_DIR/ni, log appended to
# $CLUSTER_LOGS/ni.log (one "==== start #k: <command>" line per start), PID in
# SERVER_PIDS[i] (so bench_cleanup stops it).
#
# The caller sets ELECTION_TIMEOUT and HEARTBEAT (beacond durations) and
# CLUSTER_LOGS (a directory), then calls cluster_start.

NODES=(1 2 3)
HTTP_PORT=()
RAFT_PORT=()
NODE_STARTS=()
CLASH_RETRIES=()
INITIAL_CLUSTER=""
LEADER=""	# node index, set by cluster_wait_ready / cluster_leader

# The server also reads BEACON_* variables; the command line alone defines
# a node here.
while read -r _var; do unset "$_var"; done < <(compgen -e | grep '^BEACON_' || true)
unset _var

node_url() { printf 'http://127.0.0.1:%s\n' "${HTTP_PORT[$1]}"; }

# The command line of node i: the same for every (re)start.
node_cmd() {
	local i=$1
	NODE_CMD=("$BEACOND" --node "n$i" --data-dir "$DATA_DIR/n$i"
		--http-addr "127.0.0.1:${HTTP_PORT[i]}" --raft-addr "127.0.0.1:${RAFT_PORT[i]}"
		--initial-cluster "$INITIAL_CLUSTER" --dns-addr ""
		--raft-election-timeout "$ELECTION_TIMEOUT" --raft-heartbeat "$HEARTBEAT")
}

# Start node i in the background (does not wait for it).
node_start() {
	local i=$1 logf=$CLUSTER_LOGS/n$1.log
	node_cmd "$i"
	NODE_STARTS[i]=$((${NODE_STARTS[i]:-0} + 1))
	mkdir -p "$DATA_DIR/n$i"
	start_logged "$logf" "${NODE_STARTS[i]}" "${NODE_CMD[@]}"
	SERVER_PIDS[i]=$STARTED_PID
}

node_alive() { [[ -n ${SERVER_PIDS[$1]:-} ]] && kill -0 "${SERVER_PIDS[$1]}" 2>/dev/null; }

# Did node i's latest start fail because a port was taken?
node_port_clash() { start_port_clash "$CLUSTER_LOGS/n$1.log" "${NODE_STARTS[$1]}"; }

# kill -9 node i and reap it. Sets KILL_TS (EPOCHREALTIME just before the
# signal).
node_kill9() {
	kill9 "${SERVER_PIDS[$1]}"
	SERVER_PIDS[$1]=""
}

# The leader's raft address as node i sees it, without quotes ("" if none
# or no answer).
node_leader_addr() {
	local l
	l=$(curl -s --max-time 1 "$(node_url "$1")/v1/status/leader" 2>/dev/null || true)
	l=${l//\"/}
	printf '%s\n' "$l"
}

# Map a raft address to a node index ("" if none).
raft_node() {
	local i
	for i in "${NODES[@]}"; do
		[[ $1 == "127.0.0.1:${RAFT_PORT[i]}" ]] && { echo "$i"; return 0; }
	done
	echo ""
}

# Sets LEADER to the node that every running node names as leader, or ""
# when they disagree or any of them knows none.
cluster_leader() {
	local i a first="" n=0
	LEADER=""
	for i in "${NODES[@]}"; do
		node_alive "$i" || continue
		a=$(node_leader_addr "$i")
		[[ -n $a ]] || return 0
		if ((n == 0)); then first=$a; elif [[ $a != "$first" ]]; then return 0; fi
		n=$((n + 1))
	done
	((n > 0)) && LEADER=$(raft_node "$first")
	return 0
}

# PUT key=value to node i; succeeds if it answers `true`.
node_put_true() {
	[[ $(curl -s --max-time 5 -X PUT --data-binary "$3" "$(node_url "$1")/v1/kv/$2" 2>/dev/null || true) == true ]]
}

# Wait (at most $1 s) until every running node names the same leader and the
# leader answers `true` to a PUT; sets LEADER. Fails (with the log tail) if a
# node exits meanwhile.
cluster_wait_ready() {
	server_procs n SERVER_PIDS NODE_STARTS
	wait_ready "$1" cluster_ready_now "no common leader accepting writes" "${PROCS[@]}"
}

cluster_ready_now() {
	cluster_leader
	[[ -n $LEADER ]] && node_put_true "$LEADER" bench/_ready "$(date +%s)"
}

# Pick ports and start the three nodes with fresh data directories; does
# not wait. Sets CLUSTER_LAUNCH_TS (EPOCHREALTIME just before the first start).
cluster_launch() {
	local i
	mkdir -p "$CLUSTER_LOGS"
	pick_port_pairs HTTP_PORT RAFT_PORT
	INITIAL_CLUSTER="n1=127.0.0.1:${RAFT_PORT[1]},n2=127.0.0.1:${RAFT_PORT[2]},n3=127.0.0.1:${RAFT_PORT[3]}"
	log "starting 3 nodes: HTTP ports ${HTTP_PORT[*]}, raft ports ${RAFT_PORT[*]}, data in $DATA_DIR ($DATA_FS), election timeout $ELECTION_TIMEOUT, heartbeat $HEARTBEAT"
	for i in "${NODES[@]}"; do rm -rf -- "${DATA_DIR:?}/n$i"; done
	CLUSTER_LAUNCH_TS=$EPOCHREALTIME
	for i in "${NODES[@]}"; do node_start "$i"; done
}

# Pick ports, start the three nodes and wait until they are ready (sets
# LEADER). Retries with fresh ports (at most 3 times) when a port was taken
# between picking and binding it.
cluster_start() { start_with_retries cluster_launch cluster_wait_ready cluster_port_clash cluster_stop; }

# Did a node exit because a port was taken?
cluster_port_clash() {
	server_procs n SERVER_PIDS NODE_STARTS
	any_port_clash "${PROCS[@]}"
}

# Stop the nodes by PID (their data stays).
cluster_stop() {
	stop_servers "${SERVER_PIDS[@]}"
	SERVER_PIDS=()
}

# For wait loops after a (re)start: succeeds if node i runs; if it exited
# because a port was taken meanwhile, starts it again (at most 5 such
# retries per node, 1 s apart) and succeeds; otherwise prints its log tail and fails.
node_check_started() {
	local i=$1
	node_alive "$i" && return 0
	wait "${SERVER_PIDS[i]}" 2>/dev/null || true
	SERVER_PIDS[i]=""
	if node_port_clash "$i" && ((${CLASH_RETRIES[i]:-0} < 5)); then
		CLASH_RETRIES[i]=$((${CLASH_RETRIES[i]:-0} + 1))
		log "n$i: a port was taken meanwhile; starting it again"
		sleep 1
		node_start "$i"
		return 0
	fi
	log "n$i exited; tail of $CLUSTER_LOGS/n$i.log:"
	tail -n 20 "$CLUSTER_LOGS/n$i.log" >&2
	return 1
}

# Elections won in node i's log ("leader of term N" lines): prints the count.
node_elections() { grep -c 'leader of term' "$CLUSTER_LOGS/n$1.log" || true; }

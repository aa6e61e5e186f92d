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
	printf '==== start #%d at %s: %s\n' "${NODE_STARTS[i]}" "$(date -u +%H:%M:%S.%N)" "${NODE_CMD[*]}" >>"$logf"
	"${NODE_CMD[@]}" </dev/null >>"$logf" 2>&1 &
	SERVER_PIDS[i]=$!
}

node_alive() { [[ -n ${SERVER_PIDS[$1]:-} ]] && kill -0 "${SERVER_PIDS[$1]}" 2>/dev/null; }

# Did node i's latest start fail because a port was taken?
node_port_clash() {
	awk -v k="==== start #${NODE_STARTS[$1]} " 'index($0, k) == 1 {on = 1; next} on' \
		"$CLUSTER_LOGS/n$1.log" | grep -qi 'address already in use\|EADDRINUSE\|address in use'
}

# kill -9 node i and reap it. Sets KILL_TS (EPOCHREALTIME just before the
# signal).
node_kill9() {
	local pid=${SERVER_PIDS[$1]}
	KILL_TS=$EPOCHREALTIME
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null || true
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
	local deadline=$((SECONDS + $1)) i
	while ((SECONDS < deadline)); do
		for i in "${NODES[@]}"; do
			if [[ -n ${SERVER_PIDS[i]:-} ]] && ! kill -0 "${SERVER_PIDS[i]}" 2>/dev/null; then
				log "n$i exited; tail of $CLUSTER_LOGS/n$i.log:"
				tail -n 20 "$CLUSTER_LOGS/n$i.log" >&2
				return 1
			fi
		done
		cluster_leader
		if [[ -n $LEADER ]] && node_put_true "$LEADER" bench/_ready "$(date +%s)"; then
			return 0
		fi
		sleep 0.1
	done
	log "no common leader accepting writes within $1 s; see $CLUSTER_LOGS"
	return 1
}

# Pick ports and start the three nodes with fresh data directories; does
# not wait. Sets CLUSTER_LAUNCH_TS (EPOCHREALTIME just before the first start).
cluster_launch() {
	local i ports
	mkdir -p "$CLUSTER_LOGS"
	read -r -a ports < <(free_ports 6)
	for i in "${NODES[@]}"; do
		HTTP_PORT[i]=${ports[2 * i - 2]}
		RAFT_PORT[i]=${ports[2 * i - 1]}
	done
	INITIAL_CLUSTER="n1=127.0.0.1:${RAFT_PORT[1]},n2=127.0.0.1:${RAFT_PORT[2]},n3=127.0.0.1:${RAFT_PORT[3]}"
	log "starting 3 nodes: HTTP ports ${HTTP_PORT[*]}, raft ports ${RAFT_PORT[*]}, data in $DATA_DIR ($DATA_FS), election timeout $ELECTION_TIMEOUT, heartbeat $HEARTBEAT"
	for i in "${NODES[@]}"; do rm -rf -- "${DATA_DIR:?}/n$i"; done
	CLUSTER_LAUNCH_TS=$EPOCHREALTIME
	for i in "${NODES[@]}"; do node_start "$i"; done
}

# Pick ports, start the three nodes and wait until they are ready (sets
# LEADER). Retries with fresh ports (at most 3 times) when a port was taken
# between picking and binding it.
cluster_start() {
	local attempt i clash
	for attempt in 1 2 3; do
		cluster_launch
		cluster_wait_ready 30 && return 0
		clash=""
		for i in "${NODES[@]}"; do
			node_alive "$i" || { node_port_clash "$i" && clash=1; }
		done
		stop_servers "${SERVER_PIDS[@]}"
		SERVER_PIDS=()
		[[ -n $clash && $attempt -lt 3 ]] || return 1
		log "a port was taken meanwhile; retrying with fresh ports"
	done
	return 1
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

# shellcheck shell=bash disable=SC2034
# A 3-member etcd cluster on 127.0.0.1 for bench/compare.sh; sourced after
# lib/common.sh. Member i (1..3) is "e<i>": client URL (gRPC and the JSON
# gateway) 127.0.0.1:${ETCD_CLIENT_PORT[i]}, peer URL
# 127.0.0.1:${ETCD_PEER_PORT[i]}, data in $DATA_DIR/e<i> (the same disk as
# beacond's), log appended to $CLUSTER_LOGS/e<i>.log (one "==== start #k"
# line per start), PID in ETCD_PIDS[i].
#
# Durability is etcd's default: every raft entry and the bolt backend are
# fsynced before a write is acknowledged. Election timeout and heartbeat
# come from ELECTION_TIMEOUT / HEARTBEAT (the same values as beacond's).
# The caller calls etcd_traps instead of bench_traps, so that the EXIT trap
# stops the members too (by PID).

ETCD_NODES=(1 2 3)
ETCD_CLIENT_PORT=()
ETCD_PEER_PORT=()
ETCD_PIDS=()
ETCD_STARTS=()
ETCD_INITIAL_CLUSTER=""
ETCD_TOKEN=""
ETCD_LEADER=""   # member index, set by etcd_leader / etcd_wait_ready

# etcd reads ETCD_* variables as flags: the command line alone defines a
# member here.
while read -r _var; do unset "$_var"; done < <(compgen -e | grep '^ETCD_' || true)
unset _var

etcd_traps() {
	trap etcd_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# The EXIT trap: hand the members to bench_cleanup with beacond's PIDs
# (keeping the exit status).
etcd_cleanup() {
	local rc=$?
	SERVER_PIDS+=("${ETCD_PIDS[@]}")
	# bench_cleanup exits with the status $? has when it starts (a failing
	# command on the left of || does not trip errexit).
	if ((rc == 0)); then bench_cleanup; else (exit "$rc") || bench_cleanup; fi
}

# "500ms" / "1s" / "1.5s" -> milliseconds (etcd takes plain numbers).
dur_ms() {
	awk -v d="$1" 'BEGIN {
		if (d ~ /^[0-9.]+ms$/) { sub(/ms$/, "", d); printf "%d\n", d + 0.5; exit }
		if (d ~ /^[0-9.]+s$/) { sub(/s$/, "", d); printf "%d\n", d * 1000 + 0.5; exit }
		print "bad duration: " d > "/dev/stderr"; exit 1 }'
}

etcd_url() { printf 'http://127.0.0.1:%s\n' "${ETCD_CLIENT_PORT[$1]}"; }

# The command line of member i: the same for every (re)start (with a data
# directory in place etcd ignores the --initial-* flags).
etcd_cmd() {
	local i=$1
	ETCD_CMD=(etcd --name "e$i" --data-dir "$DATA_DIR/e$i"
		--listen-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORT[i]}"
		--advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORT[i]}"
		--listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT[i]}"
		--initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT[i]}"
		--initial-cluster "$ETCD_INITIAL_CLUSTER" --initial-cluster-state new
		--initial-cluster-token "$ETCD_TOKEN"
		--election-timeout "$ETCD_ELECTION_MS" --heartbeat-interval "$ETCD_HEARTBEAT_MS"
		--logger zap --log-outputs stderr)
}

# Start member i in the background (does not wait for it).
etcd_member_start() {
	local i=$1 logf=$CLUSTER_LOGS/e$1.log
	etcd_cmd "$i"
	ETCD_STARTS[i]=$((${ETCD_STARTS[i]:-0} + 1))
	mkdir -p "$DATA_DIR/e$i"
	chmod 700 "$DATA_DIR/e$i"
	start_logged "$logf" "${ETCD_STARTS[i]}" "${ETCD_CMD[@]}"
	ETCD_PIDS[i]=$STARTED_PID
}

etcd_alive() { [[ -n ${ETCD_PIDS[$1]:-} ]] && kill -0 "${ETCD_PIDS[$1]}" 2>/dev/null; }


# Pick ports and start the three members, fresh data directories; does not
# wait. Sets ETCD_LAUNCH_TS (EPOCHREALTIME just before the first start).
etcd_launch() {
	local i
	mkdir -p "$CLUSTER_LOGS"
	pick_port_pairs ETCD_CLIENT_PORT ETCD_PEER_PORT
	ETCD_INITIAL_CLUSTER="e1=http://127.0.0.1:${ETCD_PEER_PORT[1]},e2=http://127.0.0.1:${ETCD_PEER_PORT[2]},e3=http://127.0.0.1:${ETCD_PEER_PORT[3]}"
	ETCD_TOKEN=bench-$$-$RANDOM
	ETCD_ELECTION_MS=$(dur_ms "$ELECTION_TIMEOUT")
	ETCD_HEARTBEAT_MS=$(dur_ms "$HEARTBEAT")
	log "starting etcd: client ports ${ETCD_CLIENT_PORT[*]}, peer ports ${ETCD_PEER_PORT[*]}, data in $DATA_DIR ($DATA_FS), election timeout $ELECTION_TIMEOUT, heartbeat $HEARTBEAT"
	for i in "${ETCD_NODES[@]}"; do rm -rf -- "${DATA_DIR:?}/e$i"; done
	ETCD_LAUNCH_TS=$EPOCHREALTIME
	for i in "${ETCD_NODES[@]}"; do etcd_member_start "$i"; done
}

# Sets ETCD_LEADER to the member every running member names as leader, or
# "" when they disagree or one knows none.
etcd_leader() {
	local i s=()
	for i in "${ETCD_NODES[@]}"; do
		etcd_alive "$i" && s+=("$i=127.0.0.1:${ETCD_CLIENT_PORT[i]}")
	done
	ETCD_LEADER=$(timeout 10 python3 "$BENCH_DIR/lib/kvapi.py" leader etcd "$(IFS=,; echo "${s[*]}")" || true)
}

# Wait (at most $1 s) until the running members agree on a leader that
# acknowledges a put; sets ETCD_LEADER. Fails (with the log tail) if a
# member exits meanwhile.
etcd_wait_ready() {
	server_procs e ETCD_PIDS ETCD_STARTS
	wait_ready "$1" etcd_ready_now "etcd: no common leader accepting writes" "${PROCS[@]}"
}

etcd_ready_now() {
	etcd_leader
	[[ -n $ETCD_LEADER ]] && timeout 10 python3 "$BENCH_DIR/lib/kvapi.py" put etcd \
		"127.0.0.1:${ETCD_CLIENT_PORT[ETCD_LEADER]}" bench/_ready "$EPOCHREALTIME" >/dev/null 2>&1
}

# Stop the members by PID and delete their data.
etcd_stop() {
	local i
	stop_servers "${ETCD_PIDS[@]}"
	ETCD_PIDS=()
	for i in "${ETCD_NODES[@]}"; do rm -rf -- "${DATA_DIR:?}/e$i"; done
}

# Launch and wait until ready (sets ETCD_LEADER), with fresh ports if one
# was taken meanwhile (see start_with_retries).
etcd_start() { start_with_retries etcd_launch etcd_wait_ready etcd_port_clash etcd_stop; }

# Did a member exit because a port was taken?
etcd_port_clash() {
	server_procs e ETCD_PIDS ETCD_STARTS
	any_port_clash "${PROCS[@]}"
}

# kill -9 member i and reap it. Sets KILL_TS.
etcd_kill9() {
	kill9 "${ETCD_PIDS[$1]}"
	ETCD_PIDS[$1]=""
}

# Elections won, from the members' logs ("became leader at term" lines).
etcd_elections() { grep -c 'became leader at term' "$CLUSTER_LOGS/e$1.log" || true; }

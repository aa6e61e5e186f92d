#!/usr/bin/env bash
# Leader failover of a 3-node beacond cluster under a small write load. See
# bench/README.md.
#
#   bash bench/failover.sh
#   KILLS=10 ELECTION_TIMEOUT=500ms HEARTBEAT=100ms bash bench/failover.sh
#
# Starts three beacond on free 127.0.0.1 ports with fresh data directories
# under build/ and a Python write load (bench/lib/failover.py write); KILLS
# times: kill -9 the leader, measure the time until a write is acknowledged
# again, restart the killed server with its command line and wait until it
# is back. At the end checks that every acknowledged write is on all three
# servers. Writes the report to bench/results/failover-<UTC stamp>.md (and
# stdout); the write log, kill events and server logs go to
# bench/results/raw-failover-<UTC stamp>/ (git-ignored). Exits 1 if a write
# acknowledged `true` is missing anywhere, or a kill was never followed by an
# acknowledged write.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

KILLS=${KILLS:-10}
ELECTION_TIMEOUT=${ELECTION_TIMEOUT:-500ms}
HEARTBEAT=${HEARTBEAT:-100ms}
WRITERS=${WRITERS:-3}           # writer threads of the load
SETTLE=${SETTLE:-2}             # seconds of load on the full cluster before a kill
REQUEST_TIMEOUT=2               # s: a write unanswered by then counts as failed
FAILOVER_TIMEOUT=30             # s: the longest wait for an acknowledged write after a kill
REJOIN_TIMEOUT=60               # s: the longest wait for a restarted server to be back
PY=/usr/bin/python3             # the load's interpreter (stdlib only)
PREFIX=bench/f                  # keys written: bench/f/<thread>/<n>

[[ $KILLS =~ ^[1-9][0-9]*$ ]] || { echo "KILLS must be a positive integer, got '$KILLS'" >&2; exit 2; }
[[ $WRITERS =~ ^[1-9][0-9]*$ ]] || { echo "WRITERS must be a positive integer, got '$WRITERS'" >&2; exit 2; }
[[ $SETTLE =~ ^[0-9]+$ ]] || { echo "SETTLE must be whole seconds, got '$SETTLE'" >&2; exit 2; }

BENCH_NAME=failover
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/cluster.sh
source "$BENCH_DIR/lib/cluster.sh"

require_tools curl python3 timeout
[[ -x $PY ]] || { echo "failover: $PY is required" >&2; exit 2; }
ensure_beacond

STAMP=$(utc_stamp)
RAW=$RESULTS/raw-failover-$STAMP
REPORT=$RESULTS/failover-$STAMP.md
CLUSTER_LOGS=$RAW
WLOG=$RAW/writes.log      # one line per write (see bench/lib/failover.py)
EVENTS=$RAW/kills.txt     # one line per kill: k node kill restart back new-leader
mkdir -p "$RAW"
: >"$WLOG"
: >"$EVENTS"

bench_traps

make_data_dir bench-failover
cluster_start
log "cluster ready: leader n$LEADER (pids ${SERVER_PIDS[*]})"

SERVERS="127.0.0.1:${HTTP_PORT[1]},127.0.0.1:${HTTP_PORT[2]},127.0.0.1:${HTTP_PORT[3]}"
LOAD_SECS=$((KILLS * (SETTLE + FAILOVER_TIMEOUT + REJOIN_TIMEOUT + 70) + 60))
start_bounded $((LOAD_SECS + 30)) "$PY" "$BENCH_DIR/lib/failover.py" write \
	"$SERVERS" "$PREFIX" "$WLOG" "$WRITERS" "$REQUEST_TIMEOUT" "$LOAD_SECS"
WRITER_PID=$!
log "write load started: $WRITERS writer threads (pid $WRITER_PID)"

ms_since() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f", (a - b) * 1000}'; }

ABORT=""
NO_ACK=0
for k in $(seq "$KILLS"); do
	# Steady state: all three agree on a leader that accepts writes.
	cluster_wait_ready 60 || { ABORT="kill $k: the cluster did not settle within 60 s"; break; }
	sleep "$SETTLE"
	kill -0 "$WRITER_PID" 2>/dev/null || { ABORT="the write load exited early"; break; }
	cluster_leader
	[[ -n $LEADER ]] || { cluster_wait_ready 60 || { ABORT="kill $k: no leader"; break; }; }
	victim=$LEADER

	offset=$(stat -c %s "$WLOG")
	node_kill9 "$victim"
	log "kill $k/$KILLS: kill -9 n$victim (the leader)"
	ack_ts="" ack_srv=""
	if run_bounded $((FAILOVER_TIMEOUT + 10)) "$PY" "$BENCH_DIR/lib/failover.py" first-ack \
		"$WLOG" "$offset" "$KILL_TS" "$FAILOVER_TIMEOUT" >"$RAW/first-ack.out"; then
		read -r ack_ts ack_srv <"$RAW/first-ack.out"
		cluster_leader
		new=${LEADER:+n$LEADER}
		log "  first write acknowledged $(ms_since "$ack_ts" "$KILL_TS") ms after the kill, via n$ack_srv; leader now ${new:-unknown}"
	else
		NO_ACK=$((NO_ACK + 1))
		new=""
		log "  no write acknowledged within $FAILOVER_TIMEOUT s of the kill"
	fi

	# Restart it with the same command line; back = it names a leader and
	# serves (?stale) the latest write acknowledged by then.
	restart_ts=$EPOCHREALTIME
	node_start "$victim"
	key=""
	deadline=$((SECONDS + REJOIN_TIMEOUT))
	back=""
	while ((SECONDS < deadline)); do
		node_check_started "$victim" || break
		if [[ -z $key && -n $(node_leader_addr "$victim") ]]; then
			key=$(timeout 10 "$PY" "$BENCH_DIR/lib/failover.py" latest-ack "$WLOG" || true)
		fi
		if [[ -n $key && $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 \
			"$(node_url "$victim")/v1/kv/$key?stale" || true) == 200 ]]; then
			back=$EPOCHREALTIME
			break
		fi
		sleep 0.05
	done
	if [[ -z $back ]]; then
		ABORT="kill $k: n$victim not back within $REJOIN_TIMEOUT s of its restart"
		echo "$k $victim $KILL_TS $restart_ts $EPOCHREALTIME ${new:--}" >>"$EVENTS"
		break
	fi
	log "  n$victim restarted, back after $(ms_since "$back" "$restart_ts") ms"
	echo "$k $victim $KILL_TS $restart_ts $back ${new:--}" >>"$EVENTS"
done

log "stopping the write load"
stop_bounded "$WRITER_PID"

# Convergence, then every acknowledged write must be on every server.
VERIFY_RC=0
if [[ -z $ABORT ]]; then
	cluster_wait_ready 60 || log "WARNING: no common leader before the check"
fi
log "checking every acknowledged write on all three servers (?stale)"
run_bounded 900 "$PY" "$BENCH_DIR/lib/failover.py" verify "$WLOG" "$PREFIX" "$SERVERS" 60 \
	>"$RAW/verify.out" || VERIFY_RC=$?
CHECKED=$(sed -n 's/^CHECKED //p' "$RAW/verify.out")
read -r -a MISSING < <(sed -n 's/^MISSING //p' "$RAW/verify.out")
read -r -a WRONG < <(sed -n 's/^WRONG //p' "$RAW/verify.out")
read -r -a EXTRA < <(sed -n 's/^FAILED_BUT_PRESENT //p' "$RAW/verify.out")
FAILED_WRITES=$(sed -n 's/^FAILED_WRITES //p' "$RAW/verify.out")
MISSING_LIST=$(grep -E '^(missing|wrong value) on ' "$RAW/verify.out" || true)

TABLE=$("$PY" "$BENCH_DIR/lib/failover.py" report "$WLOG" "$EVENTS" "$RAW")

REPORT_TEXT=$(cat <<EOF
# Beacon 3-node failover, $STAMP

- beacond $(beacond_commit), 3 nodes on 127.0.0.1, **election timeout $ELECTION_TIMEOUT, heartbeat $HEARTBEAT**, data dirs on $DATA_FS
- host: $(host_info); the servers and the load share these CPUs
- load: bench/lib/failover.py ($PY), $WRITERS threads doing back-to-back PUTs of unique keys ($PREFIX/<thread>/<n>, value = the key), thread t starting on server t mod 3 and moving to the next server after any failure (5 ms pause); request timeout ${REQUEST_TIMEOUT} s
- $KILLS kills requested; before each, the three agree on a leader that acknowledges a write and the load runs ${SETTLE} s; then \`kill -9\` of the leader; failover = from the kill to the first write sent after it and acknowledged \`true\` (by any server, a follower forwarding to the new leader included); then the killed server restarts with its command line and is "back" once it names a leader and serves (?stale) the latest write acknowledged by then
${ABORT:+- **aborted: $ABORT**
}
$TABLE

- check after the run (convergence: the three agree on a leader that acknowledges a write, then GET $PREFIX/?recurse&stale on each server until complete, at most 60 s): **$CHECKED acknowledged writes checked, missing: n1 ${MISSING[0]:-?}, n2 ${MISSING[1]:-?}, n3 ${MISSING[2]:-?}**; wrong value: n1 ${WRONG[0]:-?}, n2 ${WRONG[1]:-?}, n3 ${WRONG[2]:-?}
- of the $FAILED_WRITES failed writes (errors, timeouts: outcome unknown to the client), present anyway: n1 ${EXTRA[0]:-?}, n2 ${EXTRA[1]:-?}, n3 ${EXTRA[2]:-?}
${MISSING_LIST:+
\`\`\`
$MISSING_LIST
\`\`\`
}- raw data (write log, kills, server logs): bench/results/raw-failover-$STAMP/
EOF
)

printf '%s\n' "$REPORT_TEXT"
printf '%s\n' "$REPORT_TEXT" >"$REPORT"
log "report written to $REPORT"

rc=0
if ((VERIFY_RC != 0)); then
	log "FAILED: acknowledged writes are missing (see $RAW/verify.out)"
	rc=1
fi
if ((NO_ACK > 0)); then
	log "FAILED: $NO_ACK kills were not followed by an acknowledged write within $FAILOVER_TIMEOUT s"
	rc=1
fi
if [[ -n $ABORT ]]; then
	log "FAILED: $ABORT"
	rc=1
fi
exit "$rc"

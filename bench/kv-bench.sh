#!/usr/bin/env bash
# Single-node KV benchmark of beacond, driven by wrk. See bench/README.md.
#
#   bash bench/kv-bench.sh            (or: make bench)
#   DURATION=5 ROUNDS=3 bash bench/kv-bench.sh
#
# Starts one beacond on free 127.0.0.1 ports in a fresh data directory under
# build/, runs each workload ROUNDS times (rounds interleaved), prints a
# Markdown table and writes it to bench/results/single-node-<UTC stamp>.md,
# with the raw wrk outputs in bench/results/raw-<UTC stamp>/ (git-ignored).
# Exits 1 if any request failed (the table shows which workload).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

DURATION=${DURATION:-10}   # seconds per wrk run
ROUNDS=${ROUNDS:-3}
THREADS=2                  # wrk threads
PRELOAD_KEYS=1000          # read workload keys (bench/lua/get.lua knows 1000)

[[ $DURATION =~ ^[1-9][0-9]*$ ]] || { echo "DURATION must be whole seconds, got '$DURATION'" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive integer, got '$ROUNDS'" >&2; exit 2; }

BENCH_NAME=kv-bench
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

require_tools wrk curl python3
ensure_beacond

STAMP=$(utc_stamp)
RAW=$RESULTS/raw-$STAMP
REPORT=$RESULTS/single-node-$STAMP.md
mkdir -p "$RAW"

bench_traps

# Two free loopback ports (bound, then released, by the kernel's choice).
read -r HTTP_PORT RAFT_PORT < <(free_ports 2)
BASE=http://127.0.0.1:$HTTP_PORT

make_data_dir bench-data

log "starting beacond on 127.0.0.1:$HTTP_PORT (raft 127.0.0.1:$RAFT_PORT), data dir $DATA_DIR ($DATA_FS)"
"$BEACOND" --node b1 --data-dir "$DATA_DIR" \
	--http-addr "127.0.0.1:$HTTP_PORT" --raft-addr "127.0.0.1:$RAFT_PORT" --dns-addr "" \
	>"$RAW/beacond.log" 2>&1 &
SERVER_PID=$!
SERVER_PIDS=("$SERVER_PID")

ready=""
for _ in $(seq 300); do
	kill -0 "$SERVER_PID" 2>/dev/null || { log "beacond exited during startup; see $RAW/beacond.log"; exit 1; }
	leader=$(curl -s --max-time 1 "$BASE/v1/status/leader" || true)
	if [[ -n $leader && $leader != '""' ]]; then
		ready=1
		break
	fi
	sleep 0.1
done
[[ -n $ready ]] || { log "beacond not ready after 30 s; see $RAW/beacond.log"; exit 1; }
log "beacond ready (pid $SERVER_PID, leader $leader)"

log "preloading $PRELOAD_KEYS keys"
t0=$(date +%s.%N)
run_bounded 120 python3 "$BENCH_DIR/lib/preload.py" 127.0.0.1 "$HTTP_PORT" "$PRELOAD_KEYS"
log "preloaded in $(python3 -c "print('%.1f' % ($(date +%s.%N) - $t0))") s"

# name:label:connections:script:script-argument
WORKLOADS=(
	"write-c16:write, new key, 256 B value:16:put.lua:"
	"write-c64:write, new key, 256 B value:64:put.lua:"
	"read-c16:read, default consistency:16:get.lua:default"
	"read-c64:read, default consistency:64:get.lua:default"
	"read-stale-c16:read, ?stale:16:get.lua:stale"
	"read-stale-c64:read, ?stale:64:get.lua:stale"
)

# Rounds are interleaved (round 1 of every workload, then round 2, ...) so
# slow drift (data growth, snapshots, a noisy neighbour) spreads over all.
for round in $(seq "$ROUNDS"); do
	for w in "${WORKLOADS[@]}"; do
		IFS=: read -r name _ conns script arg <<<"$w"
		[[ $script == put.lua ]] && arg="$name-r$round"
		out=$RAW/$name-r$round.txt
		cmd=(wrk -t"$THREADS" -c"$conns" -d"${DURATION}s" --timeout 10s --latency
			-s "$BENCH_LUA_DIR/$script" "$BASE" -- "$arg")
		log "round $round/$ROUNDS: $name"
		echo "# ${cmd[*]}" >"$out"
		run_bounded $((DURATION + 30)) "${cmd[@]}" >>"$out" 2>&1 || log "wrk failed for $name round $round (see $out)"
		grep -E '^(Requests/sec|BENCH_RESULT|non-200)' "$out" | sed 's/^/    /' >&2 || true
	done
done

# Memory first (before the key listing below allocates anything).
VMRSS=$(proc_mem "$SERVER_PID" VmRSS)
VMHWM=$(proc_mem "$SERVER_PID" VmHWM)

summarize_runs

# Cross-check: the keys the server holds under bench/w/.
count_keys "$BASE/v1/kv/bench/w/?keys" "$RAW/written-keys.json"
SERVER_KEYS=$KEY_COUNT

COMMIT=$(beacond_commit)

REPORT_TEXT=$(cat <<EOF
# Beacon single-node KV benchmark, $STAMP

- beacond $COMMIT, one node, data dir on $DATA_FS; wrk $(wrk_version), $THREADS threads, --timeout 10s
- host: $(host_info); wrk runs on the same CPUs as beacond
- each run ${DURATION} s, $ROUNDS rounds per workload (interleaved); req/s is median, min and max over the rounds, latencies are medians over the rounds
- writes: a new key per request (bench/lua/put.lua); reads: random key of $PRELOAD_KEYS preloaded (bench/lua/get.lua)

$TABLE

- errors: non-200 responses (or a body other than \`true\` / a JSON array) plus wrk socket errors and timeouts, summed over rounds; must be 0
- keys written: $((OKWRITES + PRELOAD_KEYS)) ($OKWRITES by the write runs, acknowledged \`true\`; server holds $SERVER_KEYS under bench/w/; plus $PRELOAD_KEYS preloaded)
- beacond memory at the end: VmRSS $VMRSS, VmHWM (peak RSS) $VMHWM
- raw wrk outputs: bench/results/raw-$STAMP/
EOF
)

printf '%s\n' "$REPORT_TEXT"
printf '%s\n' "$REPORT_TEXT" >"$REPORT"
log "report written to $REPORT"

# The server may hold a few more keys than wrk counted (writes in flight when
# a run ended), never fewer.
if [[ $SERVER_KEYS == unknown ]]; then
	log "WARNING: could not list the written keys"
elif ((SERVER_KEYS < OKWRITES)); then
	log "FAILED: wrk counted $OKWRITES acknowledged writes but the server holds only $SERVER_KEYS keys"
	exit 1
fi
if [[ $ERRORS != 0 ]]; then
	log "FAILED: $ERRORS requests failed; see the errors column and $RAW"
	exit 1
fi

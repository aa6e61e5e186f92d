#!/usr/bin/env bash
# KV benchmark of a 3-node beacond cluster, driven by wrk. See bench/README.md.
#
#   bash bench/cluster-bench.sh
#   DURATION=5 ROUNDS=3 bash bench/cluster-bench.sh
#
# Starts three beacond on free 127.0.0.1 ports with fresh data directories
# under build/, runs each workload ROUNDS times (rounds interleaved), prints a
# Markdown table and writes it to bench/results/cluster-<UTC stamp>.md, with
# the raw wrk outputs and the server logs in bench/results/raw-cluster-<UTC
# stamp>/ (git-ignored). Exits 1 if any request failed or a server lacks an
# acknowledged write.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

DURATION=${DURATION:-10}   # seconds per wrk run
ROUNDS=${ROUNDS:-3}
ELECTION_TIMEOUT=${ELECTION_TIMEOUT:-500ms}
HEARTBEAT=${HEARTBEAT:-100ms}
THREADS=2                  # wrk threads of a run against the leader
SPREAD_THREADS=1           # wrk threads of each of the 3 parallel wrk processes
PRELOAD_KEYS=1000          # read workload keys (bench/lua/get.lua knows 1000)

[[ $DURATION =~ ^[1-9][0-9]*$ ]] || { echo "DURATION must be whole seconds, got '$DURATION'" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive integer, got '$ROUNDS'" >&2; exit 2; }

BENCH_NAME=cluster-bench
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/cluster.sh
source "$BENCH_DIR/lib/cluster.sh"

require_tools wrk curl python3
ensure_beacond

STAMP=$(utc_stamp)
RAW=$RESULTS/raw-cluster-$STAMP
REPORT=$RESULTS/cluster-$STAMP.md
CLUSTER_LOGS=$RAW
mkdir -p "$RAW"

bench_traps

make_data_dir bench-cluster
cluster_start
START_LEADER=$LEADER
LEADER_CHANGES=()
log "cluster ready: leader n$LEADER (pids ${SERVER_PIDS[*]})"

log "preloading $PRELOAD_KEYS keys through the leader"
t0=$EPOCHREALTIME
run_bounded 120 python3 "$BENCH_DIR/lib/preload.py" 127.0.0.1 "${HTTP_PORT[LEADER]}" "$PRELOAD_KEYS"
log "preloaded in $(python3 -c "print('%.1f' % ($EPOCHREALTIME - $t0))") s"

# name:label:connections:script:script-argument:target
# target "leader": one wrk (THREADS threads) against the leader;
# "all": three wrk processes in parallel (SPREAD_THREADS threads each), one
# per server, with the connections split 1/3 each; their req/s are summed.
WORKLOADS=(
	"write-leader-c16:write → leader:16:put.lua::leader"
	"write-leader-c64:write → leader:64:put.lua::leader"
	"write-all-c16:write → all 3 (followers forward):16:put.lua::all"
	"write-all-c64:write → all 3 (followers forward):64:put.lua::all"
	"read-leader-c16:read, default → leader:16:get.lua:default:leader"
	"read-leader-c64:read, default → leader:64:get.lua:default:leader"
	"read-stale-all-c16:read, ?stale → all 3:16:get.lua:stale:all"
	"read-stale-all-c64:read, ?stale → all 3:64:get.lua:stale:all"
)

# Rounds are interleaved (round 1 of every workload, then round 2, ...) so
# slow drift (data growth, snapshots, a noisy neighbour) spreads over all.
for round in $(seq "$ROUNDS"); do
	for w in "${WORKLOADS[@]}"; do
		IFS=: read -r name _ conns script arg target <<<"$w"
		# The leader may have changed (an election under load): look it up
		# before every run.
		prev=$LEADER
		cluster_leader
		if [[ -z $LEADER ]]; then
			log "no common leader before $name round $round; waiting"
			cluster_wait_ready 60 || exit 1
		fi
		if [[ $LEADER != "$prev" ]]; then
			log "LEADER CHANGED: n$prev -> n$LEADER (before $name round $round)"
			LEADER_CHANGES+=("n$prev → n$LEADER before $name round $round")
		fi
		log "round $round/$ROUNDS: $name (leader n$LEADER)"
		if [[ $target == leader ]]; then
			[[ $script == put.lua ]] && arg="$name-r$round"
			out=$RAW/$name-r$round.txt
			cmd=(wrk -t"$THREADS" -c"$conns" -d"${DURATION}s" --timeout 10s --latency
				-s "$BENCH_LUA_DIR/$script" "$(node_url "$LEADER")" -- "$arg")
			echo "# ${cmd[*]}" >"$out"
			start_bounded $((DURATION + 30)) "${cmd[@]}" >>"$out" 2>&1
			outs=("$out")
		else
			outs=()
			for i in "${NODES[@]}"; do
				c=$((conns / 3 + (i <= conns % 3 ? 1 : 0)))
				[[ $script == put.lua ]] && arg="$name-r$round-n$i"
				out=$RAW/$name-r$round-n$i.txt
				cmd=(env BENCH_QUANTILES=1 wrk -t"$SPREAD_THREADS" -c"$c" -d"${DURATION}s" --timeout 10s --latency
					-s "$BENCH_LUA_DIR/$script" "$(node_url "$i")" -- "$arg")
				echo "# ${cmd[*]}" >"$out"
				start_bounded $((DURATION + 30)) "${cmd[@]}" >>"$out" 2>&1
				outs+=("$out")
			done
		fi
		wait_bounded || log "a wrk failed for $name round $round (see ${outs[*]})"
		for out in "${outs[@]}"; do
			grep -E '^(Requests/sec|BENCH_RESULT|non-200)' "$out" | sed 's/^/    /' >&2 || true
		done
	done
done

# Memory first (before the key listings below allocate anything).
MEM=()
for i in "${NODES[@]}"; do
	if node_alive "$i"; then
		MEM+=("n$i VmRSS $(proc_mem "${SERVER_PIDS[i]}" VmRSS), VmHWM $(proc_mem "${SERVER_PIDS[i]}" VmHWM)")
	else
		MEM+=("n$i not running")
	fi
done

LC_TEXT=none
if ((${#LEADER_CHANGES[@]})); then
	LC_TEXT=$(printf '%s; ' "${LEADER_CHANGES[@]}")
	LC_TEXT=${LC_TEXT%; }
fi
MEM_TEXT=$(printf '%s; ' "${MEM[@]}")
MEM_TEXT=${MEM_TEXT%; }

summarize_runs

# Cross-check: the keys under bench/w/, through the leader (default
# consistency), then on each server locally (?stale), until the followers
# have caught up (at most 60 s).
cluster_leader
END_LEADER=$LEADER
[[ -n $END_LEADER ]] || END_LEADER=$START_LEADER
count_keys "$(node_url "$END_LEADER")/v1/kv/bench/w/?keys" "$RAW/written-keys.json"
LEADER_KEYS=$KEY_COUNT
STALE_KEYS=()
deadline=$((SECONDS + 60))
while :; do
	STALE_KEYS=()
	converged=1
	for i in "${NODES[@]}"; do
		count_keys "$(node_url "$i")/v1/kv/bench/w/?keys&stale" "$RAW/written-keys.json"
		STALE_KEYS+=("$KEY_COUNT")
		[[ $KEY_COUNT == "$LEADER_KEYS" ]] || converged=""
	done
	[[ -n $converged || $SECONDS -ge $deadline || $LEADER_KEYS == unknown ]] && break
	sleep 1
done

ELECTIONS=()
TOTAL_ELECTIONS=0
for i in "${NODES[@]}"; do
	e=$(node_elections "$i")
	ELECTIONS+=("n$i $e")
	TOTAL_ELECTIONS=$((TOTAL_ELECTIONS + e))
done

COMMIT=$(beacond_commit)

REPORT_TEXT=$(cat <<EOF
# Beacon 3-node cluster KV benchmark, $STAMP

- beacond $COMMIT, 3 nodes on 127.0.0.1 (election timeout $ELECTION_TIMEOUT, heartbeat $HEARTBEAT), data dirs on $DATA_FS; wrk $(wrk_version), --timeout 10s
- host: $(host_info); the three servers and wrk share these CPUs
- each run ${DURATION} s, $ROUNDS rounds per workload (interleaved); req/s is median, min and max over the rounds, latencies are medians over the rounds
- "→ leader": one wrk, $THREADS threads, against the leader (looked up before every run; n$START_LEADER at the start). "→ all 3": three wrk processes in parallel, $SPREAD_THREADS thread each, one per server, the connections split 1/3 each (16 = 6+5+5, 64 = 22+21+21); req/s is their sum, p50/p99 are merged from their latency quantiles (conservative within 0.1 %)
- writes: a new key per request (bench/lua/put.lua); reads: random key of $PRELOAD_KEYS preloaded (bench/lua/get.lua); a write to a follower and a default read are answered by the leader, a ?stale read by the server asked

$TABLE

- errors: non-200 responses (or a body other than \`true\` / a JSON array) plus wrk socket errors and timeouts, summed over rounds; must be 0
- keys written: $OKWRITES by the write runs, acknowledged \`true\`; under bench/w/ the leader (n$END_LEADER) holds $LEADER_KEYS, and locally (?stale) n1 ${STALE_KEYS[0]}, n2 ${STALE_KEYS[1]}, n3 ${STALE_KEYS[2]}; plus $PRELOAD_KEYS preloaded
- elections won ("leader of term" log lines): ${ELECTIONS[*]} (total $TOTAL_ELECTIONS; 1 is the initial election, more means leadership changed during the run); leader at the start n$START_LEADER, at the end n$END_LEADER; leader changes seen between runs: $LC_TEXT
- memory at the end: $MEM_TEXT
- raw wrk outputs and server logs: bench/results/raw-cluster-$STAMP/
EOF
)

printf '%s\n' "$REPORT_TEXT"
printf '%s\n' "$REPORT_TEXT" >"$REPORT"
log "report written to $REPORT"

rc=0
for i in "${NODES[@]}"; do
	k=${STALE_KEYS[i - 1]}
	if [[ $k == unknown || $LEADER_KEYS == unknown ]]; then
		log "WARNING: could not list the written keys on n$i or the leader"
	elif ((k < OKWRITES)); then
		log "FAILED: wrk counted $OKWRITES acknowledged writes but n$i holds only $k keys"
		rc=1
	fi
done
if [[ $ERRORS != 0 ]]; then
	log "FAILED: $ERRORS requests failed; see the errors column and $RAW"
	rc=1
fi
exit "$rc"

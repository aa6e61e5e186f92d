#!/usr/bin/env bash
# Service catalog benchmark of a 3-node beacond cluster: registrations, TTL
# heartbeats and blocking-query wake latency. See bench/README.md.
#
#   bash bench/catalog-bench.sh
#   DURATION=5 ROUNDS=3 bash bench/catalog-bench.sh
#
# Starts three beacond on free 127.0.0.1 ports with fresh data directories
# under build/, runs each workload ROUNDS times (rounds interleaved), prints
# Markdown tables and writes them to bench/results/catalog-<UTC stamp>.md,
# with the raw outputs (wrk, CPU samples, metrics, wake latencies) and the
# server logs in bench/results/raw-catalog-<UTC stamp>/ (git-ignored). Exits 1
# if a request failed, a heartbeating service went critical, a blocking query
# missed a change or woke without one, or a server lacks a registration.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

HB_SERVICES=1000           # services registered for the heartbeat runs (hb-0000..)
HB_CONNS=16                # connections of the heartbeat runs, split over the 3 wrk
FLIPS=200                  # web check flips per wake-latency round
FLIP_INTERVAL=0.05         # s between flips
CONTROL_FLIPS=20           # db check flips that must not wake web's watchers
DURATION=${DURATION:-10}   # seconds per wrk run
ROUNDS=${ROUNDS:-3}
ELECTION_TIMEOUT=${ELECTION_TIMEOUT:-500ms}
HEARTBEAT=${HEARTBEAT:-100ms}
THREADS=2 SPREAD_THREADS=1 # wrk threads against the leader / of each of 3 parallel wrk
PY=/usr/bin/python3        # wake_latency.py and catalog_util.py (stdlib only)

for v in DURATION ROUNDS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive whole number, got '${!v}'" >&2; exit 2; }
done

BENCH_NAME=catalog-bench
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/cluster.sh
source "$BENCH_DIR/lib/cluster.sh"

require_tools wrk curl python3 timeout getconf
[[ -x $PY ]] || { echo "$BENCH_NAME: $PY is required" >&2; exit 2; }
ensure_beacond
CLK_TCK=$(getconf CLK_TCK)   # the unit of /proc/<pid>/stat's CPU times

STAMP=$(utc_stamp)
CLUSTER_LOGS=$RESULTS/raw-catalog-$STAMP
RAW=$CLUSTER_LOGS
mkdir -p "$RAW"

bench_traps

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
make_data_dir bench-catalog
cluster_start
START_LEADER=$LEADER
LEADER_CHANGES=()
log "cluster ready: leader n$LEADER (pids ${SERVER_PIDS[*]})"

SERVERS="127.0.0.1:${HTTP_PORT[1]},127.0.0.1:${HTTP_PORT[2]},127.0.0.1:${HTTP_PORT[3]}"
log "registering $HB_SERVICES services with TTL checks, round-robin over the 3 servers"
run_bounded 120 "$PY" "$BENCH_DIR/lib/catalog_util.py" register "$SERVERS" "$HB_SERVICES" hb "$RAW"

# name:label:connections:script:script-argument:target
# target "leader": one wrk (THREADS threads) against the leader; "all": three
# wrk processes in parallel (SPREAD_THREADS threads each), one per server,
# the connections split 1/3 each; "own": the same, each wrk sending the
# heartbeats of the services its server is the agent of (RAW/ids-n<i>.txt).
WORKLOADS=(
	"reg-leader-c16:register → leader:16:register.lua::leader"
	"reg-leader-c64:register → leader:64:register.lua::leader"
	"reg-all-c16:register → all 3 (followers forward):16:register.lua::all"
	"reg-all-c64:register → all 3 (followers forward):64:register.lua::all"
	"hb-same-c$HB_CONNS:TTL heartbeat, status unchanged → each service's agent:$HB_CONNS:heartbeat.lua:pass:own"
	"hb-flip-c$HB_CONNS:TTL heartbeat, pass/warn alternating → each service's agent:$HB_CONNS:heartbeat.lua:alternate:own"
)

# Look the leader up again (an election under load moves it); waits for one
# if the servers disagree. $1 names what comes next, for the log.
refresh_leader() {
	local before=$LEADER
	cluster_leader
	if [[ -z $LEADER ]]; then
		log "no common leader before $1; waiting"
		cluster_wait_ready 60 || exit 1
	fi
	[[ $LEADER == "$before" ]] && return 0
	log "LEADER CHANGED: n$before -> n$LEADER (before $1)"
	LEADER_CHANGES+=("n$before → n$LEADER before $1")
}

# CPU time (utime + stime, clock ticks) of a process; -1 if it is gone.
cpu_ticks() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo -1; return 0; }
	# shellcheck disable=SC2086 # split the fields after "(comm) "
	set -- ${stat##*) }
	echo $((${12} + ${13}))
}

# cpu_begin, then cpu_end FILE: writes "CPU leader=n<i> wall_s=.. n1=.. n2=..
# n3=.." to FILE, each server's CPU time over the wall time between the two
# calls, as a percentage of one core.
cpu_begin() {
	local i
	CPU_T0=$EPOCHREALTIME
	for i in "${NODES[@]}"; do CPU_T0_TICKS[i]=$(cpu_ticks "${SERVER_PIDS[i]}"); done
}
cpu_end() {
	local i t1=$EPOCHREALTIME line
	line=$(awk -v a="$CPU_T0" -v b="$t1" 'BEGIN {printf "wall_s=%.3f", b - a}')
	for i in "${NODES[@]}"; do
		line+=" $(awk -v n="n$i" -v a="${CPU_T0_TICKS[i]}" -v b="$(cpu_ticks "${SERVER_PIDS[i]}")" \
			-v hz="$CLK_TCK" -v t0="$CPU_T0" -v t1="$t1" \
			'BEGIN {printf "%s=%s", n, (a < 0 || b < 0) ? "nan" : sprintf("%.1f", 100 * (b - a) / hz / (t1 - t0))}')"
	done
	echo "CPU leader=n$LEADER $line" >"$1"
}

# The leader's metrics (Prometheus text) to FILE.
leader_metrics() {
	run_bounded 10 curl -s --max-time 5 -o "$1" "$(node_url "$LEADER")/v1/agent/metrics?format=prometheus" ||
		log "could not read the metrics of n$LEADER"
}

# Start a wrk against node $1, output to file $2, $3 threads, $4
# connections, script $5, then the script's arguments; its output file is
# added to OUTS. Every run prints its latency quantiles (BENCH_QUANTILES),
# which summarize.py needs to merge parallel runs.
start_wrk() {
	local node=$1 out=$2 threads=$3 conns=$4 script=$5
	shift 5
	local cmd=(env BENCH_QUANTILES=1 wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 10s
		--latency -s "$BENCH_LUA_DIR/$script" "$(node_url "$node")" -- "$@")
	echo "# ${cmd[*]}" >"$out"
	start_bounded $((DURATION + 30)) "${cmd[@]}" >>"$out" 2>&1
	OUTS+=("$out")
}

# One run of workload $1 (a WORKLOADS entry), round $2.
run_workload() {
	local name conns script arg target round=$2 i base f
	IFS=: read -r name _ conns script arg target <<<"$1"
	refresh_leader "$name round $round"
	log "round $round/$ROUNDS: $name (leader n$LEADER)"
	base=$RAW/$name-r$round
	[[ $target != own ]] || leader_metrics "$RAW/metrics-$name-r$round.before"
	OUTS=()
	cpu_begin
	case $target in
	leader) start_wrk "$LEADER" "$base.txt" "$THREADS" "$conns" "$script" "$name-r$round" ;;
	*)
		# one wrk per server, the connections split 1/3 each
		for i in "${NODES[@]}"; do
			set -- "$i" "$base-n$i.txt" "$SPREAD_THREADS" $((conns / 3 + (i <= conns % 3 ? 1 : 0))) "$script"
			if [[ $target == own ]]; then
				start_wrk "$@" "$RAW/ids-n$i.txt" "$arg"
			else
				start_wrk "$@" "$name-r$round-n$i"
			fi
		done
		;;
	esac
	wait_bounded || log "a wrk failed for $name round $round (see ${OUTS[*]})"
	cpu_end "$RAW/cpu-$name-r$round.txt"
	[[ $target != own ]] || leader_metrics "$RAW/metrics-$name-r$round.after"
	for f in "${OUTS[@]}" "$RAW/cpu-$name-r$round.txt"; do
		grep -E '^(Requests/sec|BENCH_RESULT|non-200|CPU)' "$f" | sed 's/^/    /' >&2 || true
	done
}

# Critical checks now (through the leader) to FILE: "CRITICAL of_prefix=..
# total=..".
critical_to() {
	run_bounded 60 "$PY" "$BENCH_DIR/lib/catalog_util.py" critical "127.0.0.1:${HTTP_PORT[LEADER]}" hb >"$1" 2>&1 ||
		log "could not list the critical checks (see $1)"
	sed 's/^/    /' "$1" >&2
}

# One wake-latency round ($1) against the leader and a follower.
run_wake() {
	local round=$1 i follower="" out=$RAW/wake-r$1.txt
	refresh_leader "wake latency round $round"
	for i in "${NODES[@]}"; do
		[[ $i == "$LEADER" ]] || { follower=$i; break; }
	done
	log "round $round/$ROUNDS: wake latency, $FLIPS flips (leader n$LEADER, follower n$follower)"
	echo "# leader n$LEADER, follower n$follower" >"$out"
	run_bounded $((60 + FLIPS / 2)) "$PY" "$BENCH_DIR/lib/wake_latency.py" \
		"127.0.0.1:${HTTP_PORT[LEADER]}" "127.0.0.1:${HTTP_PORT[follower]}" \
		"$RAW/wake-r$round.csv" "$FLIPS" "$FLIP_INTERVAL" "$CONTROL_FLIPS" >>"$out" 2>&1 ||
		log "wake latency round $round failed (see $out)"
	grep -E '^WAKE_RESULT' "$out" | sed 's/^/    /' >&2 || true
}

# Rounds are interleaved (round 1 of every workload, then round 2, ...) so
# slow drift (catalog growth, snapshots, a noisy neighbour) spreads over all.
for round in $(seq "$ROUNDS"); do
	for w in "${WORKLOADS[@]}"; do
		run_workload "$w" "$round"
	done
	critical_to "$RAW/critical-r$round.txt"
	run_wake "$round"
done

refresh_leader "the final checks"
END_LEADER=$LEADER
critical_to "$RAW/critical-end.txt"

summarize_runs
printf '%s\n' "$TABLE" >"$RAW/wrk-table.md"
specs=()
for w in "${WORKLOADS[@]}"; do specs+=("${w%%:*}"); done
pids=()
for i in "${NODES[@]}"; do pids+=("n$i=${SERVER_PIDS[i]:-}"); done
REPORT_OUT=$(IFS=,; python3 "$BENCH_DIR/lib/catalog_report.py" "$RAW" "$RAW/wrk-table.md" "${pids[*]}" "${specs[@]}")
TRAILERS=(REGISTERED WAKE_ROUNDS WAKE_BAD CRITICAL CRITICAL_MAX ELECTIONS MEMORY)
trailer() { sed -n "s/^$1 //p" <<<"$REPORT_OUT"; }
TABLES=$(grep -v -E "^($(IFS='|'; echo "${TRAILERS[*]}")) " <<<"$REPORT_OUT")
REGISTERED=$(trailer REGISTERED)
read -r WAKE_GOOD WAKE_ALL <<<"$(trailer WAKE_ROUNDS)"
WAKE_BAD=$(trailer WAKE_BAD)
CRIT_MAX=$(trailer CRITICAL_MAX)

# Services in each server's catalog (beacon_catalog_services, local state),
# until the followers have caught up (at most 60 s). Expected: every
# acknowledged registration, the HB_SERVICES, web and db.
EXPECTED=$((REGISTERED + HB_SERVICES + 2))
deadline=$((SECONDS + 60))
while :; do
	SVC=()
	converged=1
	for i in "${NODES[@]}"; do
		n=$(curl -s --max-time 5 "$(node_url "$i")/v1/agent/metrics?format=prometheus" 2>/dev/null |
			awk '$1 == "beacon_catalog_services" {print $2}' || true)
		SVC+=("${n:-unknown}")
		[[ -n $n ]] && ((n >= EXPECTED)) || converged=""
	done
	[[ -n $converged || $SECONDS -ge $deadline ]] && break
	sleep 1
done

LC_TEXT=none
((${#LEADER_CHANGES[@]} == 0)) || LC_TEXT=$(IFS=';'; echo "${LEADER_CHANGES[*]}")

COMMIT=$(beacond_commit)

REPORT_TEXT=$(cat <<EOF
# Beacon 3-node cluster service catalog benchmark, $STAMP

- beacond $COMMIT, 3 nodes on 127.0.0.1 (election timeout $ELECTION_TIMEOUT, heartbeat $HEARTBEAT), data dirs on $DATA_FS; wrk $(wrk_version), --timeout 10s; $("$PY" -c 'import platform; print("Python", platform.python_version())') for the wake latency
- host: $(host_info); the three servers, wrk and Python share these CPUs; load average (1, 5, 15 min) at the start $LOAD_START, at the end $(cut -d' ' -f1-3 /proc/loadavg)
- each run ${DURATION} s, $ROUNDS rounds per workload (interleaved); req/s is median, min and max over the rounds, latencies are medians over the rounds
- registrations (bench/lua/register.lua): PUT /v1/agent/service/register, a new service ID per request, Name one of 50, a TTL check of 30 min starting passing. "→ leader": one wrk, $THREADS threads; "→ all 3": three wrk, $SPREAD_THREADS thread each, one per server, the connections split 1/3 each (16 = 6+5+5, 64 = 22+21+21), req/s summed, p50/p99 merged from their latency quantiles; a follower forwards the registration to the leader, for its own node
- heartbeats (bench/lua/heartbeat.lua): $HB_SERVICES services hb-NNNN registered round-robin through the three servers before the rounds (TTL 30 min, starting critical); three wrk in parallel, $SPREAD_THREADS thread each, $HB_CONNS connections split 1/3 each, each sending PUT /v1/agent/check/pass|warn/service:<id> to the server that is the agent of the service, cycling over its third. "status unchanged": always pass (a write only when a check was not passing: its first heartbeat, or after the alternating run); "pass/warn alternating": every heartbeat changes the status. A follower forwards a heartbeat to the leader
- CPU %: utime + stime of each beacond (/proc/<pid>/stat) over the wall time of the run, percent of one core (200 = both cores), median over the rounds; followers listed lower node first

$TABLES

- errors: non-200 responses plus wrk socket errors and timeouts, summed over rounds; must be 0
- heartbeats: "received by the leader" is the leader's beacon_checks_heartbeats_total delta over the run (includes heartbeats in flight when wrk stopped), "status writes" its beacon_checks_writes_total delta: the status changes proposed to Raft
- heartbeat services (of $HB_SERVICES) critical after each round and at the end (GET /v1/health/state/critical through the leader): $(trailer CRITICAL)
- wake latency: $FLIPS flips per round of web-1's TTL check on the leader (PUT /v1/agent/check/warn|pass, alternating, every ${FLIP_INTERVAL} s, each after both watchers re-armed: their query sent and counted in the leader's beacon_http_blocking_queries), watchers blocking on GET /v1/health/service/web?index=<last>&wait=30s, one on the leader and one on a follower (forwarded to the leader); latency = watcher's answer read − write's 200 read (bench/lib/wake_latency.py, $PY, http.client keep-alive; negative if the watcher got its answer first). Control: $CONTROL_FLIPS flips of db-1's check while web's watchers wait; a web answer meanwhile is a spurious wake
- registrations acknowledged: $REGISTERED; service instances per server (beacon_catalog_services, local state): n1 ${SVC[0]}, n2 ${SVC[1]}, n3 ${SVC[2]} (expected at least $EXPECTED: the registrations, $HB_SERVICES heartbeat services, web and db)
- elections won ("leader of term" log lines): $(trailer ELECTIONS), 1 being the initial election; leader at the start n$START_LEADER, at the end n$END_LEADER; leader changes seen between runs: $LC_TEXT
- memory at the end: $(trailer MEMORY)
- raw wrk outputs, CPU samples, leader metrics, wake latencies (CSV per round) and server logs: bench/results/raw-catalog-$STAMP/
EOF
)

REPORT=$RESULTS/catalog-$STAMP.md
tee "$REPORT" <<<"$REPORT_TEXT"
log "report written to $REPORT"

rc=0
if [[ $ERRORS != 0 ]]; then
	log "FAILED: $ERRORS requests failed; see the errors column and $RAW"
	rc=1
fi
if [[ $CRIT_MAX == unknown ]]; then
	log "FAILED: could not list the critical checks"
	rc=1
elif ((CRIT_MAX > 0)); then
	log "FAILED: up to $CRIT_MAX heartbeating services were critical"
	rc=1
fi
if [[ $WAKE_GOOD != "$WAKE_ALL" || $WAKE_BAD != 0 ]]; then
	log "FAILED: wake latency: $WAKE_GOOD of $WAKE_ALL rounds completed, $WAKE_BAD missed, stale or spurious wakes"
	rc=1
fi
for i in "${NODES[@]}"; do
	n=${SVC[i - 1]}
	if [[ $n == unknown ]]; then
		log "WARNING: could not read beacon_catalog_services of n$i"
	elif ((n < EXPECTED)); then
		log "FAILED: $REGISTERED registrations acknowledged but n$i holds only $n services (expected at least $EXPECTED)"
		rc=1
	fi
done
exit "$rc"

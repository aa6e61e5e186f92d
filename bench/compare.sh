#!/usr/bin/env bash
# Beacon against etcd 3.4 on the same machine, in one run (make bench). See
# bench/README.md, "compare.sh".
#
#   bash bench/compare.sh
#   DURATION=3 ROUNDS=3 KILLS=10 bash bench/compare.sh
#   PROFILE="write-leader-c64 read-leader-c64" bash bench/compare.sh
#
# A 3-node Beacon cluster (build/beacond) and a 3-member etcd cluster (Debian's
# etcd-server 3.4), both on 127.0.0.1 with data directories under build/ (the
# same disk) and their default durability (every write fsynced before it is
# acknowledged), the same election timeout and heartbeat. The workloads run
# against each system in turn, the order alternating from round to round:
# start-up, memory with 100k keys, writes and reads (wrk), watch latency,
# leader failover; then Beacon-only ones (registrations, TTL heartbeats,
# DNS, memory with 10k services). Writes bench/results/<UTC stamp>.md (the
# table: median, min, max over the rounds and the Beacon/etcd ratio), a
# chart bench/results/<UTC stamp>.png, and the raw data in
# bench/results/raw-compare-<UTC stamp>/ (git-ignored). Every load is
# bounded in time and every process is stopped by PID on exit (also on
# Ctrl-C). Exits 1 if a request failed or an acknowledged write was lost.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

DURATION=${DURATION:-5}          # s per wrk run
ROUNDS=${ROUNDS:-3}              # rounds of start-up, wrk and watch workloads
WRITE_CONNS=${WRITE_CONNS:-"16 64"}
READ_CONNS=${READ_CONNS:-64}
KILLS=${KILLS:-10}               # leader kills per system
SETTLE=${SETTLE:-1}              # s of write load before each kill
FAILOVER_RATE=${FAILOVER_RATE:-100}   # writes/s of the open-loop load during kills
MEM_KEYS=${MEM_KEYS:-100000}     # keys loaded before the memory reading
WATCH_EVENTS=${WATCH_EVENTS:-100}     # writes per watch-latency round
WATCH_INTERVAL=${WATCH_INTERVAL:-0.03}
SERVICES=${SERVICES:-10000}      # services registered for the Beacon memory reading and heartbeats
ELECTION_TIMEOUT=${ELECTION_TIMEOUT:-500ms}
HEARTBEAT=${HEARTBEAT:-100ms}
DNS=${DNS:-1}                    # 0: no DNS runs (bench/dns-bench.sh)
PROFILE=${PROFILE:-}             # Beacon workloads to profile with perf after the rounds
PERF_FREQ=${PERF_FREQ:-499}
THREADS=2 SPREAD_THREADS=1       # wrk threads against the leader / of each of 3 parallel wrk
PY=/usr/bin/python3
CLK_TCK=$(getconf CLK_TCK)

for v in DURATION ROUNDS KILLS MEM_KEYS WATCH_EVENTS SERVICES FAILOVER_RATE; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive whole number, got '${!v}'" >&2; exit 2; }
done
[[ $SETTLE =~ ^[0-9]+$ ]] || { echo "SETTLE must be whole seconds, got '$SETTLE'" >&2; exit 2; }
((MEM_KEYS >= 1000)) || { echo "MEM_KEYS must be at least 1000 (the read keys)" >&2; exit 2; }

BENCH_NAME=compare
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/cluster.sh
source "$BENCH_DIR/lib/cluster.sh"
# shellcheck source=lib/etcd.sh
source "$BENCH_DIR/lib/etcd.sh"

bash "$BENCH_DIR/lib/install-deps.sh"
require_tools wrk curl python3 timeout etcd gnuplot
[[ -x $PY ]] || { echo "$BENCH_NAME: $PY is required" >&2; exit 2; }
log "building build/beacond (make build/beacond)"
if ! make -s -C "$REPO" build/beacond >&2; then
	[[ -x $BEACOND ]] || exit 1
	log "WARNING: make build/beacond failed; using the existing build/beacond"
fi

STAMP=$(utc_stamp)
RAW=$RESULTS/raw-compare-$STAMP
REPORT=$RESULTS/$STAMP.md
CHART=$RESULTS/$STAMP.png
CLUSTER_LOGS=$RAW
mkdir -p "$RAW"
T_START=$SECONDS
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

etcd_traps
make_data_dir bench-compare

SYSTEMS=(beacon etcd)
# The systems in the order of round $1: Beacon first in odd rounds.
order() { if (($1 % 2)); then echo beacon etcd; else echo etcd beacon; fi; }

# ---- the two systems behind one set of names -------------------------------

sys_url() { if [[ $1 == beacon ]]; then node_url "$2"; else etcd_url "$2"; fi; }
sys_pid() { if [[ $1 == beacon ]]; then echo "${SERVER_PIDS[$2]:-}"; else echo "${ETCD_PIDS[$2]:-}"; fi; }
sys_servers() {
	local i addrs=()
	for i in 1 2 3; do addrs+=("$(sys_url "$1" "$i")"); done
	addrs=("${addrs[@]#http://}")
	(IFS=,; echo "${addrs[*]}")
}

declare -A PREV_LEADER=()
LEADER_CHANGES=()
# Sets SYS_LEADER to the current leader of system $1, waiting for one if
# the servers disagree; logs a change ($2 names what comes next).
sys_leader() {
	if [[ $1 == beacon ]]; then
		cluster_leader
		[[ -n $LEADER ]] || cluster_wait_ready 60 || exit 1
		SYS_LEADER=$LEADER
	else
		etcd_leader
		[[ -n $ETCD_LEADER ]] || etcd_wait_ready 60 || exit 1
		SYS_LEADER=$ETCD_LEADER
	fi
	local prev=${PREV_LEADER[$1]:-}
	if [[ -n $prev && $prev != "$SYS_LEADER" && -n ${2:-} ]]; then
		log "$1: LEADER CHANGED: $prev -> $SYS_LEADER (before $2)"
		LEADER_CHANGES+=("$1 $prev → $SYS_LEADER before $2")
	fi
	PREV_LEADER[$1]=$SYS_LEADER
}

sys_wait_ready() { if [[ $1 == beacon ]]; then cluster_wait_ready "$2"; else etcd_wait_ready "$2"; fi; }
sys_kill9() { if [[ $1 == beacon ]]; then node_kill9 "$2"; else etcd_kill9 "$2"; fi; }
sys_restart() { if [[ $1 == beacon ]]; then node_start "$2"; else etcd_member_start "$2"; fi; }
sys_launch() {
	if [[ $1 == beacon ]]; then
		cluster_launch
		LAUNCH_TS=$CLUSTER_LAUNCH_TS
	else
		etcd_launch
		LAUNCH_TS=$ETCD_LAUNCH_TS
	fi
}
sys_stop() {
	PREV_LEADER[$1]=""
	if [[ $1 == beacon ]]; then
		stop_servers "${SERVER_PIDS[@]}"
		SERVER_PIDS=()
		rm -rf -- "${DATA_DIR:?}"/n?
	else
		etcd_stop
	fi
}
sys_start() { if [[ $1 == beacon ]]; then cluster_start; else etcd_start; fi; }

# "n<i> VmRSS VmHWM" (kB) of each server of system $1, prefixed by $2.
sys_mem() {
	local i pid
	for i in 1 2 3; do
		pid=$(sys_pid "$1" "$i")
		if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
			echo "MEM $2 $1 $i $(proc_mem "$pid" VmRSS | cut -d' ' -f1) $(proc_mem "$pid" VmHWM | cut -d' ' -f1)"
		fi
	done
}

ms_between() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b - a) * 1000}'; }

# ---- 1. start-up: process start -> the first acknowledged write ---------------

startup_round() {
	local sys=$1 round=$2 out=$RAW/startup-$1-r$2.txt ack
	log "round $round/$ROUNDS: start-up of $sys"
	sys_launch "$sys"
	if run_bounded 45 "$PY" "$BENCH_DIR/lib/kvapi.py" first-write "$sys" "$(sys_servers "$sys")" 30 >"$out.ack"; then
		ack=$(<"$out.ack")
		echo "STARTUP_MS $(ms_between "$LAUNCH_TS" "$ack")" >"$out"
		log "  $sys accepted its first write $(ms_between "$LAUNCH_TS" "$ack") ms after the first process started"
	else
		echo "STARTUP_MS failed" >"$out"
		log "  $sys accepted no write within 30 s"
	fi
	rm -f "$out.ack"
	sys_wait_ready "$sys" 30 || log "WARNING: $sys not ready after its start-up round"
	sys_stop "$sys"
}

for round in $(seq "$ROUNDS"); do
	for sys in $(order "$round"); do startup_round "$sys" "$round"; done
done

# ---- 2. both clusters; memory after MEM_KEYS keys -----------------------------

for sys in "${SYSTEMS[@]}"; do sys_start "$sys"; done
for sys in "${SYSTEMS[@]}"; do sys_leader "$sys"; done
log "clusters ready: Beacon leader n${PREV_LEADER[beacon]} (pids ${SERVER_PIDS[*]}), etcd leader e${PREV_LEADER[etcd]} (pids ${ETCD_PIDS[*]})"

MEMF=$RAW/mem.txt
: >"$MEMF"
for sys in $(order 1); do
	sys_leader "$sys"
	sys_mem "$sys" start >>"$MEMF"
	log "$sys: loading $MEM_KEYS keys (256-byte values, 64 per transaction, 8 connections) through the leader"
	t0=$EPOCHREALTIME
	run_bounded 600 "$PY" "$BENCH_DIR/lib/kvapi.py" load "$sys" "$(sys_url "$sys" "$SYS_LEADER" | sed 's|http://||')" \
		"$MEM_KEYS" 8 64 >"$RAW/load-$sys.txt"
	echo "LOAD_S $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')" >>"$RAW/load-$sys.txt"
	run_bounded 100 "$PY" "$BENCH_DIR/lib/kvapi.py" synced "$sys" "$(sys_servers "$sys")" 90 ||
		log "WARNING: $sys: a server did not catch up within 90 s"
	sleep 1
	sys_mem "$sys" loaded >>"$MEMF"
	grep " loaded $sys " "$MEMF" | sed 's/^/    /' >&2
done

# ---- 3. rounds: wrk workloads and watch latency -------------------------------

# name|label|connections|target|Beacon script and argument|etcd script and argument
# target: "leader" (one wrk, THREADS threads), "all" (one wrk per server,
# SPREAD_THREADS each, the connections split 1/3 each), "own" (the same,
# each wrk sending the heartbeats of the services its server is agent of).
# In the script's arguments "@" stands for a tag distinct per run and wrk process.
WORKLOADS=()
for c in $WRITE_CONNS; do
	WORKLOADS+=("write-leader-c$c|write → leader|$c|leader|put.lua @|put.lua @ etcd"
		"write-all-c$c|write → all 3|$c|all|put.lua @|put.lua @ etcd")
done
for c in $READ_CONNS; do
	WORKLOADS+=("read-leader-c$c|read, Beacon default / etcd linearizable → leader|$c|leader|get.lua default|get.lua linearizable"
		"read-local-all-c$c|read, Beacon ?stale / etcd serializable → all 3|$c|all|get.lua stale|get.lua serializable")
done
WORKLOADS+=("register-leader-c64|service registration → leader (Beacon only)|64|leader|register.lua @|"
	"heartbeat-own-c16|TTL heartbeat, status unchanged → each agent (Beacon only)|16|own|heartbeat.lua pass|")

# One wrk process: system $1, server $2, output $3, threads $4, connections
# $5, script $6, its arguments.
start_wrk() {
	local sys=$1 node=$2 out=$3 threads=$4 conns=$5 script=$6
	shift 6
	local cmd=(env BENCH_QUANTILES=1 wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 10s
		--latency -s "$BENCH_LUA_DIR/$script" "$(sys_url "$sys" "$node")" -- "$@")
	echo "# ${cmd[*]}" >"$out"
	start_bounded $((DURATION + 30)) "${cmd[@]}" >>"$out" 2>&1
	OUTS+=("$out")
}

# Run workload $2 (a WORKLOADS entry) against system $1, round $3; the
# outputs are $RAW/<sys>-<name>-r<round>[-n<i>].txt.
run_workload() {
	local sys=$1 round=$3 name target spec conns base i sargs=()
	IFS='|' read -r name _ conns target bscript escript <<<"$2"
	spec=$bscript
	[[ $sys == beacon ]] || spec=$escript
	sys_leader "$sys" "$name round $round"
	log "round $round/$ROUNDS: $sys $name (leader $SYS_LEADER)"
	base=$RAW/$sys-$name-r$round
	OUTS=()
	local pids=() t0=$EPOCHREALTIME c0
	for i in 1 2 3; do pids+=("$(sys_pid "$sys" "$i")"); done
	c0=$(procs_cpu_ticks "${pids[@]}")
	if [[ $target == leader ]]; then
		read -r -a sargs <<<"${spec//@/$sys-$name-r$round}"
		start_wrk "$sys" "$SYS_LEADER" "$base.txt" "$THREADS" "$conns" "${sargs[@]}"
	else
		for i in 1 2 3; do
			read -r -a sargs <<<"${spec//@/$sys-$name-r$round-n$i}"
			# "own": the IDs of the services this server is the agent of first
			[[ $target != own ]] || sargs=("${sargs[0]}" "$RAW/services/ids-n$i.txt" "${sargs[@]:1}")
			start_wrk "$sys" "$i" "$base-n$i.txt" "$SPREAD_THREADS" $((conns / 3 + (i <= conns % 3 ? 1 : 0))) "${sargs[@]}"
		done
	fi
	wait_bounded || log "a wrk failed for $sys $name round $round (see ${OUTS[*]})"
	echo "CPU ticks=$(($(procs_cpu_ticks "${pids[@]}") - c0)) hz=$CLK_TCK wall_s=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.3f", b - a}')" >"$base.cpu"
	for f in "${OUTS[@]}"; do
		grep -E '^(Requests/sec|non-200)' "$f" | sed 's/^/    /' >&2 || true
	done
}

# Watch latency of system $1, round $2: watchers on the leader and a follower.
run_watch() {
	local sys=$1 round=$2 follower=1 out=$RAW/$1-watch-r$2.txt
	sys_leader "$sys" "watch round $round"
	((follower != SYS_LEADER)) || follower=2
	log "round $round/$ROUNDS: $sys watch latency, $WATCH_EVENTS writes (leader $SYS_LEADER, follower $follower)"
	echo "# leader $SYS_LEADER, follower $follower" >"$out"
	run_bounded $((60 + WATCH_EVENTS)) "$PY" "$BENCH_DIR/lib/watch_latency.py" "$sys" \
		"$(sys_url "$sys" "$SYS_LEADER" | sed 's|http://||')" "$(sys_url "$sys" "$SYS_LEADER" | sed 's|http://||')" \
		"$(sys_url "$sys" "$follower" | sed 's|http://||')" "bench/watch/r$round" \
		"$RAW/$sys-watch-r$round.csv" "$WATCH_EVENTS" "$WATCH_INTERVAL" >>"$out" 2>&1 ||
		log "watch latency of $sys round $round failed (see $out)"
	grep '^WATCH_RESULT' "$out" | sed 's/^/    /' >&2 || true
}

for round in $(seq "$ROUNDS"); do
	for w in "${WORKLOADS[@]}"; do
		IFS='|' read -r _ _ _ _ _ escript <<<"$w"
		[[ -n $escript ]] || continue   # Beacon only: after the failover runs
		for sys in $(order "$round"); do run_workload "$sys" "$w" "$round"; done
	done
	for sys in $(order "$round"); do run_watch "$sys" "$round"; done
done
for sys in "${SYSTEMS[@]}"; do sys_mem "$sys" end >>"$MEMF"; done

# ---- optional: perf profiles of Beacon workloads (not measured) ---------------

# One more run of each workload named in PROFILE that is in WORKLOADS and
# whose etcd script is empty ($1 = "beacon": the Beacon-only ones) or not
# ($1 = "both"), with perf recording every beacond; the reports go to
# $RAW/profile-<name>.txt (flat) and -callers.txt (call graph).
profile_runs() {
	local name w x pdata perf_pid perf_pids escript
	for name in $PROFILE; do
		w=""
		for x in "${WORKLOADS[@]}"; do [[ ${x%%|*} != "$name" ]] || w=$x; done
		[[ -n $w ]] || { [[ $1 == beacon ]] || log "PROFILE: no workload $name"; continue; }
		IFS='|' read -r _ _ _ _ _ escript <<<"$w"
		[[ ($1 == beacon && -z $escript) || ($1 == both && -n $escript) ]] || continue
		command -v perf >/dev/null || { log "PROFILE: perf is not installed"; return 0; }
		perf_pids=$(IFS=,; echo "${SERVER_PIDS[*]:1:3}")
		log "profiling Beacon during $name (perf record -F $PERF_FREQ --call-graph dwarf, pids $perf_pids)"
		pdata=$RAW/profile-$name.data
		start_bounded $((DURATION + 60)) perf record -q -F "$PERF_FREQ" --call-graph dwarf,16384 -p "$perf_pids" \
			-o "$pdata" -- sleep "$DURATION" 2>"$RAW/profile-$name.log"
		perf_pid=$!
		run_workload beacon "$w" profile
		wait "$perf_pid" 2>/dev/null || true
		forget_load "$perf_pid"
		run_bounded 600 perf report -i "$pdata" --no-children --sort pid,dso,symbol --stdio \
			--percent-limit 0.7 -g none >"$RAW/profile-$name.txt" 2>/dev/null || true
		run_bounded 600 perf report -i "$pdata" --children --sort symbol --stdio \
			--percent-limit 3 -g caller,0.5,callee,function,percent >"$RAW/profile-$name-callers.txt" 2>/dev/null || true
		log "  $RAW/profile-$name.txt"
	done
}
profile_runs both

# ---- 4. failover: kill -9 of the leader, the systems alternating ------------

# One kill of system $1 (kill $2): an open-loop write load (FAILOVER_RATE
# writes/s, new keys bench/f/k<k>/<n>, 2 s timeout) for SETTLE s, kill -9 of
# the leader, the first write sent after the kill and acknowledged, the
# killed server restarted with its command line and back.
failover_kill() {
	local sys=$1 k=$2 dir=$RAW/$1-failover load victim offset ack="" srv restart back=""
	mkdir -p "$dir"
	sys_wait_ready "$sys" 60 || { log "$sys: not ready before kill $k"; return 1; }
	start_bounded 200 env FAILOVER_API="$sys" "$PY" "$BENCH_DIR/lib/failover.py" write-open \
		"$(sys_servers "$sys")" "bench/f/k$k" "$dir/writes.log" "$FAILOVER_RATE" 2 150
	load=$!
	sleep "$SETTLE"
	sys_leader "$sys"
	victim=$SYS_LEADER
	offset=$(stat -c %s "$dir/writes.log")
	sys_kill9 "$sys" "$victim"
	if run_bounded 40 env FAILOVER_API="$sys" "$PY" "$BENCH_DIR/lib/failover.py" first-ack \
		"$dir/writes.log" "$offset" "$KILL_TS" 30 >"$dir/first-ack.out"; then
		read -r ack srv <"$dir/first-ack.out"
	fi
	restart=$EPOCHREALTIME
	sys_restart "$sys" "$victim"
	back=$(run_bounded 70 env FAILOVER_API="$sys" "$PY" "$BENCH_DIR/lib/failover.py" back \
		"$(sys_url "$sys" "$victim" | sed 's|http://||')" "$dir/writes.log" 60) || back=""
	stop_bounded "$load"
	echo "$k $victim $KILL_TS ${ack:--} ${srv:--} $restart ${back:--}" >>"$dir/kills.txt"
	log "kill $k/$KILLS: $sys: kill -9 of the leader ($victim): first write acknowledged after $([[ -n $ack ]] && ms_between "$KILL_TS" "$ack" || echo never) ms; restarted server back after $([[ -n $back ]] && ms_between "$restart" "$back" || echo never) ms"
	[[ -n $ack && -n $back ]]
}

FAILOVER_ABORT=()
declare -A FAILOVER_DEAD=()
for k in $(seq "$KILLS"); do
	for sys in $(order "$k"); do
		[[ -z ${FAILOVER_DEAD[$sys]:-} ]] || continue
		if ! failover_kill "$sys" "$k"; then
			FAILOVER_DEAD[$sys]=1
			FAILOVER_ABORT+=("$sys: kill $k was not followed by an acknowledged write or the restarted server did not come back; no further kills")
		fi
	done
done
for sys in "${SYSTEMS[@]}"; do
	[[ -d $RAW/$sys-failover ]] || continue
	sys_wait_ready "$sys" 60 || log "WARNING: $sys: no leader before the check"
	log "$sys: checking every acknowledged write of the failover runs on all three servers"
	run_bounded 300 env FAILOVER_API="$sys" "$PY" "$BENCH_DIR/lib/failover.py" verify "$RAW/$sys-failover/writes.log" \
		bench/f "$(sys_servers "$sys")" 60 >"$RAW/$sys-failover/verify.out" || true
	sed 's/^/    /' "$RAW/$sys-failover/verify.out" | head -5 >&2
done

ELECTIONS=()
for i in 1 2 3; do ELECTIONS+=("n$i $(node_elections "$i")"); done
for i in 1 2 3; do ELECTIONS+=("e$i $(etcd_elections "$i")"); done

# ---- 5. Beacon only: DNS, memory with SERVICES services -----------------------

sys_stop etcd
sys_stop beacon

if [[ $DNS == 1 ]]; then
	log "Beacon DNS: bash bench/dns-bench.sh (DURATION=$DURATION ROUNDS=$ROUNDS, one server)"
	if [[ -x $BENCH_DIR/dns-bench.sh || -f $BENCH_DIR/dns-bench.sh ]]; then
		DURATION=$DURATION ROUNDS=$ROUNDS run_bounded $((ROUNDS * 2 * (DURATION + 35) + 120)) \
			bash "$BENCH_DIR/dns-bench.sh" >"$RAW/dns-bench.out" 2>"$RAW/dns-bench.log" ||
			log "WARNING: dns-bench.sh failed (see $RAW/dns-bench.log)"
		sed -n 's/.*report written to //p' "$RAW/dns-bench.log" >"$RAW/dns-report.txt"
	else
		log "WARNING: bench/dns-bench.sh is missing; no DNS numbers"
	fi
fi

log "Beacon: a fresh cluster, $SERVICES services with TTL checks registered round-robin through the 3 servers"
sys_start beacon
mkdir -p "$RAW/services"
t0=$EPOCHREALTIME
run_bounded 900 "$PY" "$BENCH_DIR/lib/catalog_util.py" register "$(sys_servers beacon)" "$SERVICES" svc "$RAW/services" ||
	log "WARNING: registering $SERVICES services failed"
echo "REGISTER_S $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')" >"$RAW/services/time.txt"
run_bounded 90 "$PY" "$BENCH_DIR/lib/catalog_util.py" wait-services "$(sys_servers beacon)" "$SERVICES" 60 \
	>"$RAW/services/counts.txt" || log "WARNING: a server holds fewer than $SERVICES services after 60 s"
sleep 1
sys_mem beacon services >>"$MEMF"

# The Beacon-only wrk workloads, on this cluster: registrations (new
# services), and heartbeats of the SERVICES services through their agents.
# Their TTL checks start critical: an unmeasured heartbeat run first turns
# them passing, so that the measured heartbeats change nothing.
for w in "${WORKLOADS[@]}"; do
	[[ ${w%%|*} != heartbeat-* ]] || run_workload beacon "$w" warmup
done
for round in $(seq "$ROUNDS"); do
	for w in "${WORKLOADS[@]}"; do
		IFS='|' read -r _ _ _ _ _ escript <<<"$w"
		[[ -n $escript ]] || run_workload beacon "$w" "$round"
	done
done
profile_runs beacon
sys_stop beacon

# ---- report --------------------------------------------------------------------

WL_SPECS=()   # name|label|connections|"etcd" if etcd runs it too
for w in "${WORKLOADS[@]}"; do
	IFS='|' read -r name label conns _ _ escript <<<"$w"
	WL_SPECS+=("$name|$label|$conns|${escript:+etcd}")
done
REPORT_OUT=$(python3 "$BENCH_DIR/lib/compare_report.py" "$RAW" "$(cat "$RAW/dns-report.txt" 2>/dev/null || true)" "${WL_SPECS[@]}")
TRAILERS=(ERRORS LOST)
trailer() { sed -n "s/^$1 //p" <<<"$REPORT_OUT"; }
TABLES=$(grep -v -E "^($(IFS='|'; echo "${TRAILERS[*]}")) " <<<"$REPORT_OUT")
ERRORS=$(trailer ERRORS)
LOST=$(trailer LOST)

if run_bounded 60 gnuplot -e "datadir='$RAW'; out='$CHART'" "$BENCH_DIR/plot.gp" 2>"$RAW/gnuplot.log"; then
	CHART_TEXT="![throughput, p99 latency and server CPU per request]($(basename "$CHART"))"
else
	CHART_TEXT="(gnuplot failed: see raw-compare-$STAMP/gnuplot.log)"
	log "WARNING: gnuplot failed (see $RAW/gnuplot.log)"
fi

DNS_TEXT=""
if [[ -s $RAW/dns-report.txt ]]; then
	DNS_TEXT="- DNS details (CPU shares, latency, lost queries): bench/results/$(basename "$(<"$RAW/dns-report.txt")"), written by bench/dns-bench.sh"
fi
LC_TEXT=none
((${#LEADER_CHANGES[@]} == 0)) || LC_TEXT=$(IFS=';'; echo "${LEADER_CHANGES[*]}")
ABORT_TEXT=""
((${#FAILOVER_ABORT[@]} == 0)) || ABORT_TEXT="- **failover aborted**: $(IFS=';'; echo "${FAILOVER_ABORT[*]}")"
WALL=$((SECONDS - T_START))

REPORT_TEXT=$(cat <<EOF
# Beacon against etcd, $STAMP

- Beacon: beacond $(beacond_commit) (build/beacond), 3 nodes; etcd: $(etcd --version | awk '/^etcd Version/ {print $3}') (Debian etcd-server), 3 members, JSON gateway on the client port; both on 127.0.0.1, election timeout $ELECTION_TIMEOUT, heartbeat $HEARTBEAT, data directories under build/ on $DATA_FS (the same disk), each system's default durability: a write is acknowledged after fsync (libraft's for Beacon; etcd's WAL)
- host: $(host_info); the six servers, wrk and the Python probes share these CPUs, and **other work ran on the machine meanwhile** (load average at the start $LOAD_START, at the end $(cut -d' ' -f1-3 /proc/loadavg)): the numbers are noisy; the systems alternate workload by workload (the order flipping every round) so that drift hits both
- wrk $(wrk_version), ${DURATION} s per run, --timeout 10s, $ROUNDS rounds; "→ leader": one wrk, $THREADS threads; "→ all 3": three wrk (one per server, $SPREAD_THREADS thread each, the connections split 1/3 each), req/s summed, latencies merged from their quantiles; writes: a new key per request, 256-byte value (lua/put.lua; for etcd with lua/etcd.lua); reads: a random one of 1,000 keys (lua/get.lua)
- each cell: median, min and max over the rounds (over the servers for memory, over the kills for failover); ratio = Beacon median / etcd median (for latencies and memory lower is better)
- whole run: $((WALL / 60)) min $((WALL % 60)) s

$TABLES

$CHART_TEXT

- leader changes seen between runs: $LC_TEXT; elections won over the whole run (including the initial ones, the start-up rounds' and one per kill): ${ELECTIONS[*]}
$ABORT_TEXT
$DNS_TEXT
- raw data (wrk outputs, watch CSVs, failover write logs, server logs, profiles): bench/results/raw-compare-$STAMP/ (git-ignored)
- reproduce: \`make bench\`, or \`DURATION=$DURATION ROUNDS=$ROUNDS KILLS=$KILLS bash bench/compare.sh\`
EOF
)

tee "$REPORT" <<<"$REPORT_TEXT"
log "report written to $REPORT, chart $CHART (run took $((WALL / 60)) min $((WALL % 60)) s)"

FAILURES=()
[[ $ERRORS == 0 ]] || FAILURES+=("$ERRORS requests failed or watch events were missed; see the report and $RAW")
[[ $LOST == 0 ]] || FAILURES+=("acknowledged writes lost in the failover runs: $LOST")
((${#FAILOVER_ABORT[@]} == 0)) || FAILURES+=("${FAILOVER_ABORT[@]}")
for f in "${FAILURES[@]}"; do log "FAILED: $f"; done
((${#FAILURES[@]} == 0))

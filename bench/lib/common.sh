# shellcheck shell=bash disable=SC2034
# Shared by the bench/*.sh scripts; sourced, not run. The caller sets
# BENCH_NAME (the prefix of progress lines) and `set -euo pipefail` first,
# then calls bench_traps once.
#
# Process bookkeeping: every process a script starts is remembered by PID
# (SERVER_PIDS: beacond processes, by any index; LOAD_PIDS: load generators
# and other bounded helpers), and bench_cleanup (the EXIT trap) stops them by
# PID and deletes DATA_DIR. Nothing is ever stopped by name.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
BEACOND=$REPO/build/beacond
RESULTS=$BENCH_DIR/results
export BENCH_LUA_DIR=$BENCH_DIR/lua

SERVER_PIDS=()
LOAD_PIDS=()
DATA_DIR=""

log() { printf '[%s] %s\n' "$BENCH_NAME" "$*" >&2; }

require_tools() {
	local tool
	for tool; do
		command -v "$tool" >/dev/null || { echo "$BENCH_NAME: $tool is required" >&2; exit 2; }
	done
}

# Build build/beacond if it is missing.
ensure_beacond() {
	if [[ ! -x $BEACOND ]]; then
		log "building build/beacond"
		make -C "$REPO" build/beacond >&2
	fi
}

utc_stamp() { date -u +%Y-%m-%dT%H%M%SZ; }

# N distinct free loopback ports (bound together, then released: a race with
# another process is possible, the callers retry on "address in use").
free_ports() {
	python3 -c '
import socket, sys
s = [socket.socket() for _ in range(int(sys.argv[1]))]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])
for x in s: x.close()' "$1"
}

# Sets DATA_DIR to a fresh directory build/<prefix>.XXXXXX (on the real
# disk, deleted on exit) and DATA_FS to its file system type.
make_data_dir() {
	mkdir -p "$REPO/build"
	DATA_DIR=$(mktemp -d "$REPO/build/$1.XXXXXX")
	DATA_FS=$(stat -f -c %T "$DATA_DIR")
	if [[ $DATA_FS == tmpfs || $DATA_FS == ramfs ]]; then
		log "WARNING: data directory $DATA_DIR is on $DATA_FS; fsync costs nothing there"
	fi
}

# Stop beacond processes by PID: SIGTERM, up to 10 s, then SIGKILL.
stop_servers() {
	local pid live=() _
	for pid in "$@"; do
		if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
			continue
		fi
		kill -TERM "$pid" 2>/dev/null || true
		live+=("$pid")
	done
	((${#live[@]})) || return 0
	for _ in $(seq 100); do
		local any=""
		for pid in "${live[@]}"; do
			kill -0 "$pid" 2>/dev/null && any=1
		done
		[[ -n $any ]] || break
		sleep 0.1
	done
	for pid in "${live[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			log "beacond (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
}

bench_cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	for pid in "${LOAD_PIDS[@]}"; do
		if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
		fi
	done
	for pid in "${LOAD_PIDS[@]}"; do
		[[ -n $pid ]] && { wait "$pid" 2>/dev/null || true; }
	done
	stop_servers "${SERVER_PIDS[@]}"
	if [[ -n $DATA_DIR ]]; then
		rm -rf -- "$DATA_DIR"
	fi
	exit "$rc"
}

bench_traps() {
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# ---- server processes (lib/cluster.sh, lib/etcd.sh) ----

# Start a server in the background, its output appended to the log file $1
# after a line "==== start #$2 at <time>: <command>"; the command follows.
# Sets STARTED_PID.
start_logged() {
	local logf=$1 n=$2
	shift 2
	printf '==== start #%d at %s: %s\n' "$n" "$(date -u +%H:%M:%S.%N)" "$*" >>"$logf"
	"$@" </dev/null >>"$logf" 2>&1 &
	STARTED_PID=$!
}

# Did start #$2 logged in $1 (see start_logged) fail because a port was taken?
start_port_clash() {
	awk -v k="==== start #$2 " 'index($0, k) == 1 {on = 1; next} on' "$1" |
		grep -qi 'address already in use\|EADDRINUSE\|address in use'
}

# kill -9 a process and reap it. Sets KILL_TS (EPOCHREALTIME just before
# the signal).
kill9() {
	KILL_TS=$EPOCHREALTIME
	kill -KILL "$1"
	wait "$1" 2>/dev/null || true
}

# Servers are named to the two functions below as <name>=<pid>=<starts>:
# the log is $CLUSTER_LOGS/<name>.log (start_logged's), an empty pid means
# not running, <starts> is the number of its latest start.

# Wait at most $1 s, polling every 0.1 s, until the command $2 succeeds; $3
# says what failed, for the log, if it never does. The other arguments are
# the servers: if one of them exits meanwhile, print its log's tail and fail.
wait_ready() {
	local deadline=$((SECONDS + $1)) ready=$2 what=$3 p name pid
	shift 3
	while ((SECONDS < deadline)); do
		for p; do
			IFS='=' read -r name pid _ <<<"$p"
			if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
				log "$name exited; tail of $CLUSTER_LOGS/$name.log:"
				tail -n 20 "$CLUSTER_LOGS/$name.log" >&2
				return 1
			fi
		done
		"$ready" && return 0
		sleep 0.1
	done
	log "$what within $1 s; see $CLUSTER_LOGS"
	return 1
}

# Sets PROCS to servers 1..3 in that form: names $1<i>, PIDs from the array
# named $2, start counts from the array named $3.
server_procs() {
	local -n _pids=$2 _starts=$3
	local i
	PROCS=()
	for i in 1 2 3; do PROCS+=("$1$i=${_pids[i]:-}=${_starts[i]:-0}"); done
}

# Picks two free ports for each of servers 1..3: into the arrays named $1 and
# $2 (indexes 1..3).
pick_port_pairs() {
	local -n _a=$1 _b=$2
	local i ports
	read -r -a ports < <(free_ports 6)
	for i in 1 2 3; do
		_a[i]=${ports[2 * i - 2]}
		_b[i]=${ports[2 * i - 1]}
	done
}

# Succeeds if one of the servers given is not running and its latest start
# failed because a port was taken.
any_port_clash() {
	local p name pid n
	for p; do
		IFS='=' read -r name pid n <<<"$p"
		[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && continue
		start_port_clash "$CLUSTER_LOGS/$name.log" "$n" && return 0
	done
	return 1
}

# Start a cluster, retrying with fresh ports (at most 3 times) when a port
# was taken between picking and binding it: $1 launches it (picks ports,
# starts the servers), $2 SECS waits until it is ready, $3 succeeds if a
# server exited because a port was taken, $4 stops the servers.
start_with_retries() {
	local attempt clash
	for attempt in 1 2 3; do
		"$1"
		"$2" 30 && return 0
		clash=""
		"$3" && clash=1
		"$4"
		[[ -n $clash && $attempt -lt 3 ]] || return 1
		log "a port was taken meanwhile; retrying with fresh ports"
	done
	return 1
}

# ---- bounded helpers ----

# Start a command in the background, bounded by `timeout` (SIGTERM after
# SECS, SIGKILL 5 s later), remembering its PID in LOAD_PIDS. Redirections
# given to the call apply to the command.
start_bounded() {
	local secs=$1
	shift
	timeout -k 5 "$secs" "$@" &
	LOAD_PIDS+=("$!")
}

# Wait for every command started with start_bounded and not yet waited
# for; returns non-zero if any of them failed.
wait_bounded() {
	local pid rc=0
	for pid in "${LOAD_PIDS[@]}"; do
		[[ -n $pid ]] || continue
		wait "$pid" || rc=$?
	done
	LOAD_PIDS=()
	return "$rc"
}

forget_load() {
	local i
	for i in "${!LOAD_PIDS[@]}"; do
		[[ ${LOAD_PIDS[i]} != "$1" ]] || unset 'LOAD_PIDS[i]'
	done
}

# Run one command bounded in time and wait for it (only for it); returns its
# status.
run_bounded() {
	start_bounded "$@"
	local pid=$! rc=0
	wait "$pid" || rc=$?
	forget_load "$pid"
	return "$rc"
}

# Stop a command started with start_bounded (SIGTERM) and wait for it.
stop_bounded() {
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	forget_load "$1"
}

# Sets KEY_COUNT to the number of keys GET URL (a ?keys listing) returns,
# or "unknown". SCRATCH is a file name it may use.
count_keys() {
	local url=$1 scratch=$2
	run_bounded 120 curl -s --max-time 100 -o "$scratch" "$url" || true
	KEY_COUNT=$(python3 -c 'import json,sys
try: print(len(json.load(open(sys.argv[1]))))
except Exception: print("unknown")' "$scratch")
	rm -f "$scratch"
}

# VmRSS / VmHWM ("<n> kB") of a live process.
proc_mem() { awk -v f="$2:" '$1 == f {print $2, $3}' "/proc/$1/status"; }

# utime + stime of the processes given by PID, summed, in clock ticks
# (getconf CLK_TCK per second); a process that is gone counts 0.
procs_cpu_ticks() {
	local pid stat t=0
	for pid; do
		stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
		# shellcheck disable=SC2086 # split the fields after "(comm) "
		set -- ${stat##*) }
		t=$((t + ${12} + ${13}))
	done
	echo "$t"
}

# "<short hash>[ (with uncommitted changes)]": the state of everything but bench/.
beacond_commit() {
	local c
	c=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [[ -n $(git -C "$REPO" status --porcelain -- . ':!bench' 2>/dev/null) ]]; then
		c="$c (with uncommitted changes)"
	fi
	printf '%s\n' "$c"
}

host_info() {
	printf '%s CPUs (%s), Linux %s\n' "$(nproc)" \
		"$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" "$(uname -r)"
}

wrk_version() { wrk -v 2>&1 | awk 'NR==1 {print $2}'; }

# Summarise the wrk runs in $RAW for the workloads in WORKLOADS (entries
# "name:label:conns:..."): sets TABLE, ERRORS and OKWRITES.
summarize_runs() {
	local w name label conns specs=() summary
	for w in "${WORKLOADS[@]}"; do
		IFS=: read -r name label conns _ <<<"$w"
		specs+=("$name:$label:$conns")
	done
	summary=$(python3 "$BENCH_DIR/lib/summarize.py" "$RAW" "${specs[@]}")
	ERRORS=$(sed -n 's/^ERRORS //p' <<<"$summary")
	OKWRITES=$(sed -n 's/^OKWRITES //p' <<<"$summary")
	TABLE=$(grep -v -E '^(ERRORS|OKWRITES) ' <<<"$summary")
}

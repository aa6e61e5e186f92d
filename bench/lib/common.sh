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

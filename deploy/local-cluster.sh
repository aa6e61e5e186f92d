#!/usr/bin/env bash
# A local 3-node Beacon cluster on 127.0.0.1, for trying and developing.
#
#   deploy/local-cluster.sh run    [DIR]   build, start, stay in the
#                                          foreground; Ctrl-C stops all three
#   deploy/local-cluster.sh up     [DIR]   start the servers that are not
#                                          running, wait for a leader
#   deploy/local-cluster.sh down   [DIR]   stop them (by PID)
#   deploy/local-cluster.sh status [DIR]   who runs, who leads
#
# Node i: HTTP 127.0.0.1:850i, DNS 127.0.0.1:860i (UDP and TCP), Raft
# 127.0.0.1:830i, data in DIR/ni
# (DIR defaults to ./build/local-cluster). Logs: DIR/ni.log.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-run}
dir=${2:-$here/build/local-cluster}
bin=${BEACOND:-$here/build/beacond}
initial="n1=127.0.0.1:8301,n2=127.0.0.1:8302,n3=127.0.0.1:8303"

pid_of() { # prints the PID of node $1 if it runs
	local f="$dir/n$1.pid"
	[ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"
	return 0
}

leader() { # prints the leader's raft address as node 1..3 see it
	local i l
	for i in 1 2 3; do
		l=$(curl -sf -m 1 "http://127.0.0.1:850$i/v1/status/leader" 2>/dev/null | tr -d '"') || continue
		[ -n "$l" ] && { echo "$l"; return 0; }
	done
	return 1
}

up() {
	[ -x "$bin" ] || make -C "$here" build/beacond >/dev/null
	mkdir -p "$dir"
	local i started=0
	for i in 1 2 3; do
		if [ -n "$(pid_of $i)" ]; then
			continue
		fi
		"$bin" --node "n$i" --data-dir "$dir/n$i" \
			--http-addr "127.0.0.1:850$i" \
			--dns-addr "127.0.0.1:860$i" \
			--raft-addr "127.0.0.1:830$i" \
			--initial-cluster "$initial" >>"$dir/n$i.log" 2>&1 &
		echo $! >"$dir/n$i.pid"
		started=$((started + 1))
	done
	# Wait (at most 15 s) until the leader acknowledges a write.
	local t l port
	for t in $(seq 1 150); do
		if l=$(leader); then
			port=${l##*:830}
			if [ "$(curl -sf -m 1 -X PUT -d up \
				"http://127.0.0.1:850$port/v1/kv/_local-cluster/ready" 2>/dev/null)" = true ]; then
				echo "local cluster up ($started started): leader $l (HTTP 127.0.0.1:850$port)"
				echo "  HTTP API: http://127.0.0.1:8501 .. :8503   data and logs: $dir"
				echo "  DNS: 127.0.0.1 ports 8601 .. 8603, e.g. dig @127.0.0.1 -p 8601 consul.service.consul SRV"
				echo "  try: curl -X PUT -d hello http://127.0.0.1:850$port/v1/kv/greeting"
				return 0
			fi
		fi
		sleep 0.1
	done
	echo "local cluster: no leader accepted a write within 15 s; see $dir/n*.log" >&2
	return 1
}

down() {
	local i p
	for i in 1 2 3; do
		p=$(pid_of $i)
		if [ -n "$p" ]; then
			kill -TERM "$p"
			for _ in $(seq 1 100); do
				kill -0 "$p" 2>/dev/null || break
				sleep 0.1
			done
			kill -0 "$p" 2>/dev/null && kill -KILL "$p"
		fi
		rm -f "$dir/n$i.pid"
	done
	echo "local cluster stopped"
}

status() {
	local i p
	for i in 1 2 3; do
		p=$(pid_of $i)
		if [ -n "$p" ]; then p="running (pid $p)"; else p=stopped; fi
		echo "n$i: $p  http 127.0.0.1:850$i dns 127.0.0.1:860$i raft 127.0.0.1:830$i"
	done
	echo "leader: $(leader || echo none)"
}

case "$cmd" in
run)
	bash "$here/deploy/install-deps.sh"
	make -C "$here" build/beacond >/dev/null
	trap 'down; exit 0' INT TERM
	up
	echo "running in the foreground; Ctrl-C stops all three"
	while :; do sleep 1; done
	;;
up) up ;;
down) down ;;
status) status ;;
*)
	echo "usage: $0 run|up|down|status [DIR]" >&2
	exit 2
	;;
esac

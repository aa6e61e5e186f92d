#!/bin/sh
# Entrypoint of the Beacon image: fill in the BEACON_* settings a container
# can work out for itself, then exec beacond (same PID, so signals reach it).
# All configuration is by environment (see `beacond --help`); arguments that
# start with "-" are passed to beacond as flags.
#
#   docker-entrypoint.sh [--flag ...]      run beacond
#   docker-entrypoint.sh healthcheck [PATH] curl this server's PATH
#                                          (default /v1/status/live), for
#                                          HEALTHCHECK
#   docker-entrypoint.sh COMMAND ...       run COMMAND instead (e.g. sh)
#
# Defaults it derives (only for variables that are unset or empty):
#   BEACON_NODE       the host name (container or pod name)
#   BEACON_RAFT_ADDR  this node's entry in BEACON_INITIAL_CLUSTER if it has
#                     one, else <container address>:8300
#   BEACON_HTTP_ADDR  <container address>:8500. Not 0.0.0.0: followers
#                     forward requests to the leader's BEACON_HTTP_ADDR, so
#                     it must be an address the other servers can reach.
#   BEACON_DNS_ADDR   0.0.0.0:8600 (answers come from local state: any
#                     address will do). Set it to "" for no DNS.
# The container address is BEACON_ADVERTISE_IP if set, else the first
# non-loopback address of `hostname -i` / `hostname -I` (IPv4 preferred).
#
# Before starting, when BEACON_RAFT_ADDR names a host rather than an IP
# address, it waits (BEACON_RESOLVE_TIMEOUT, default 120 s) until the name
# resolves: beacond binds its Raft listener to that name and exits if it
# cannot. A Kubernetes pod's own DNS name (StatefulSet + headless Service)
# appears only some seconds after the pod starts.
#
# Joining (optional, entrypoint only): BEACON_AUTO_JOIN=<HTTP address of the
# cluster, e.g. a Service>. When the data directory is empty (no Raft
# metadata yet) and a leader answers there, this server joins through it
# (BEACON_JOIN) instead of bootstrapping: that is how a server that lost its
# volume, or one beyond the initial servers, comes back or comes in. Servers
# not named in BEACON_INITIAL_CLUSTER are started without it (they must join).
#
# BEACOND_BIN overrides the binary (default /usr/local/bin/beacond).
set -eu

BEACOND_BIN=${BEACOND_BIN:-/usr/local/bin/beacond}

log() {
	echo "docker-entrypoint: $*" >&2
}

# The address other servers reach this container at.
container_ip() {
	if [ -n "${BEACON_ADVERTISE_IP:-}" ]; then
		echo "$BEACON_ADVERTISE_IP"
		return
	fi
	_v4="" _any=""
	for _ip in $(hostname -i 2>/dev/null || true) $(hostname -I 2>/dev/null || true); do
		case $_ip in
		127.* | ::1 | "") continue ;;
		*:*) [ -n "$_any" ] || _any=$_ip ;;
		*) [ -n "$_v4" ] || _v4=$_ip ;;
		esac
	done
	if [ -n "$_v4" ]; then
		echo "$_v4"
	elif [ -n "$_any" ]; then
		echo "$_any"
	else
		log "no non-loopback address found; using 127.0.0.1 (set BEACON_ADVERTISE_IP)"
		echo 127.0.0.1
	fi
}

# This node's address in BEACON_INITIAL_CLUSTER (NAME=HOST:PORT,...).
initial_entry() {
	_found=1
	_ifs=$IFS
	IFS=,
	set -f
	for _item in ${BEACON_INITIAL_CLUSTER:-}; do
		case $_item in
		"$1="*)
			printf '%s\n' "${_item#*=}"
			_found=0
			break
			;;
		esac
	done
	set +f
	IFS=$_ifs
	return $_found
}

http_addr() {
	if [ -n "${BEACON_HTTP_ADDR:-}" ]; then
		echo "$BEACON_HTTP_ADDR"
	else
		echo "$(container_ip):8500"
	fi
}

# The leader an HTTP address names (empty if none answers).
leader_at() {
	curl -fsS --noproxy '*' --max-time 3 "http://$1/v1/status/leader" 2>/dev/null |
		tr -d '"' || true
}

wait_resolvable() {
	_host=${1%:*}
	case $_host in
	\[*\] | *[!0-9.]*) ;;
	*) return 0 ;; # an IPv4 address
	esac
	case $_host in \[*\]) return 0 ;; esac # an IPv6 address
	_limit=${BEACON_RESOLVE_TIMEOUT:-120}
	_t=0
	until getent hosts "$_host" >/dev/null 2>&1; do
		if [ "$_t" -ge "$_limit" ]; then
			log "$_host (from BEACON_RAFT_ADDR) did not resolve within ${_limit}s"
			exit 1
		fi
		[ "$_t" -eq 0 ] && log "waiting for $_host to resolve"
		sleep 1
		_t=$((_t + 1))
	done
}

pristine() {
	[ -n "${BEACON_DATA_DIR:-}" ] &&
		[ ! -e "$BEACON_DATA_DIR/raft/metadata1" ] &&
		[ ! -e "$BEACON_DATA_DIR/raft/metadata2" ]
}

case "${1:-}" in
healthcheck)
	exec curl -fsS --noproxy '*' --max-time 3 -o /dev/null \
		"http://$(http_addr)${2:-/v1/status/live}"
	;;
beacond)
	shift
	;;
"" | -*) ;;
*)
	exec "$@"
	;;
esac

: "${BEACON_NODE:=$(hostname)}"
export BEACON_NODE

named=no
if [ -n "${BEACON_INITIAL_CLUSTER:-}" ] &&
	entry=$(initial_entry "$BEACON_NODE"); then
	named=yes
fi
if [ -z "${BEACON_RAFT_ADDR:-}" ]; then
	if [ "$named" = yes ]; then
		BEACON_RAFT_ADDR=$entry
	else
		BEACON_RAFT_ADDR="$(container_ip):8300"
	fi
fi
BEACON_HTTP_ADDR=$(http_addr)
BEACON_DNS_ADDR=${BEACON_DNS_ADDR-0.0.0.0:8600}
export BEACON_RAFT_ADDR BEACON_HTTP_ADDR BEACON_DNS_ADDR

case $BEACON_HTTP_ADDR in
0.0.0.0:*)
	if [ -n "${BEACON_INITIAL_CLUSTER:-}${BEACON_JOIN:-}${BEACON_AUTO_JOIN:-}" ]; then
		log "warning: BEACON_HTTP_ADDR=$BEACON_HTTP_ADDR: the other servers cannot forward requests to 0.0.0.0; set a reachable address"
	fi
	;;
esac

# A server that is not one of the initial servers must join.
if [ -n "${BEACON_INITIAL_CLUSTER:-}" ] && [ "$named" = no ]; then
	log "$BEACON_NODE is not in BEACON_INITIAL_CLUSTER: starting without it"
	unset BEACON_INITIAL_CLUSTER
	if pristine && [ -z "${BEACON_JOIN:-}" ] && [ -z "${BEACON_AUTO_JOIN:-}" ]; then
		log "$BEACON_NODE has no data and nothing to join: set BEACON_JOIN or BEACON_AUTO_JOIN"
		exit 1
	fi
	must_join=yes
else
	must_join=no
fi

if [ -n "${BEACON_AUTO_JOIN:-}" ] && [ -z "${BEACON_JOIN:-}" ] && pristine; then
	# Non-initial servers wait for a leader; initial ones ask once (during
	# the first formation nobody answers, and they bootstrap together).
	limit=0
	[ "$must_join" = yes ] && limit=${BEACON_RESOLVE_TIMEOUT:-120}
	t=0
	while :; do
		leader=$(leader_at "$BEACON_AUTO_JOIN")
		if [ -n "$leader" ]; then
			log "empty data directory and $BEACON_AUTO_JOIN knows leader $leader: joining through it"
			BEACON_JOIN=$BEACON_AUTO_JOIN
			export BEACON_JOIN
			unset BEACON_INITIAL_CLUSTER
			break
		fi
		if [ "$t" -ge "$limit" ]; then
			if [ "$must_join" = yes ]; then
				log "no leader at $BEACON_AUTO_JOIN within ${limit}s"
				exit 1
			fi
			break
		fi
		sleep 2
		t=$((t + 2))
	done
fi

wait_resolvable "$BEACON_RAFT_ADDR"
log "starting $BEACOND_BIN: node $BEACON_NODE, raft $BEACON_RAFT_ADDR, http $BEACON_HTTP_ADDR${BEACON_JOIN:+, join $BEACON_JOIN}"
exec "$BEACOND_BIN" "$@"

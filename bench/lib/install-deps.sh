#!/usr/bin/env bash
# Install what bench/compare.sh needs beyond beacond's own build
# dependencies (deploy/install-deps.sh, which `make bench` runs first), from
# Debian's packages: etcd 3.4 (etcd-server, etcd-client), wrk, gnuplot,
# dnsperf, dig, curl, python3, and perf (linux-perf) for PROFILE= runs.
#
# Idempotent and quiet when everything is there. Installing needs root; as
# another user it names what is missing and exits 1. Installing etcd-server
# does not start an etcd (no systemd in containers; on a systemd machine
# the package's etcd.service is stopped again, so it cannot hold ports or
# CPU during the benchmark).
set -euo pipefail

# command:package
NEEDS=(
	etcd:etcd-server etcdctl:etcd-client wrk:wrk gnuplot:gnuplot-nox
	dnsperf:dnsperf dig:dnsutils curl:curl python3:python3 perf:linux-perf
)
OPTIONAL=perf   # the run goes on without it (only PROFILE= needs it)

missing=()
for n in "${NEEDS[@]}"; do
	command -v "${n%%:*}" >/dev/null || missing+=("${n#*:}")
done
[[ -x /usr/bin/python3 ]] || missing+=(python3)
((${#missing[@]})) || exit 0

if [[ $(id -u) -ne 0 ]]; then
	echo "bench: missing packages: ${missing[*]}; install them as root:" >&2
	echo "  sudo apt-get install --no-install-recommends ${missing[*]}" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "bench: installing ${missing[*]}" >&2
apt-get update -qq >/dev/null
for p in "${missing[@]}"; do
	if ! apt-get install -y -qq --no-install-recommends "$p" >/dev/null; then
		if [[ $p == linux-perf && $OPTIONAL == perf ]]; then
			echo "bench: could not install linux-perf; PROFILE= runs will not work" >&2
			continue
		fi
		echo "bench: could not install $p" >&2
		exit 1
	fi
done
if [[ -d /run/systemd/system ]] && systemctl is-active --quiet etcd 2>/dev/null; then
	systemctl disable --now etcd >/dev/null 2>&1 || true
fi
etcd --version | head -1 >&2

#!/usr/bin/env bash
# Install Beacon's build, test and run dependencies from Debian's packages.
#
# Idempotent and quiet when everything is already there. libraft must be
# >= 0.17.1 (0.15.0, bookworm's default, can lose an acknowledged write), so
# on bookworm the bookworm-backports suite is enabled, derived from the
# machine's own configured Debian source rather than a hard-coded mirror.
set -euo pipefail

PKGS=(
	build-essential pkg-config clang llvm libclang-rt-14-dev clang-format
	libuv1-dev libsqlite3-dev libjansson-dev libmicrohttpd-dev check
	libcurl4-openssl-dev libsodium-dev libxxhash-dev libgnutls28-dev openssl
	curl python3 python3-consul python3-requests python3-pytest python3-yaml dnsutils wrk
	python3-dnspython dnsperf
)
RAFT_MIN=0.17.1

have_all() {
	local p
	for p in "${PKGS[@]}"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
			grep -q '^install ok installed$' || return 1
	done
	pkg-config --atleast-version="$RAFT_MIN" raft 2>/dev/null
}

if have_all; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages and not root; run as root:" >&2
	echo "  sudo $0" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")

# Print the URI of the machine's own configured main Debian archive (the one
# that carries "$codename" itself), from either deb822 or one-line sources.
debian_uri() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v cn="$codename" '
			/^[[:space:]]*$/ { if (u != "" && s) { print u; exit } u=""; s=0; next }
			/^URIs:/ { u=$2 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == cn) s=1 }
			END { if (u != "" && s) print u }' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v cn="$codename" '$1 == "deb" && $3 == cn { print $2 }' "$f" |
			grep -v '\[' || true
	done
}

backports_enabled() {
	grep -rqs -- "${codename}-backports" /etc/apt/sources.list \
		/etc/apt/sources.list.d/ 2>/dev/null
}

updated=0
apt_update() {
	if [ "$updated" -eq 0 ]; then
		apt-get update -qq >/dev/null
		updated=1
	fi
}

raft_target=""
if [ "$codename" = "bookworm" ]; then
	if ! backports_enabled; then
		uri=$(debian_uri | head -n 1)
		if [ -z "$uri" ]; then
			echo "install-deps: cannot find this machine's Debian source to derive ${codename}-backports from" >&2
			exit 1
		fi
		echo "install-deps: enabling ${codename}-backports from $uri"
		echo "deb $uri ${codename}-backports main" \
			>/etc/apt/sources.list.d/beacon-backports.list
	fi
	raft_target="-t ${codename}-backports"
fi

apt_update
echo "install-deps: installing ${PKGS[*]} libraft-dev"
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $raft_target libraft-dev >/dev/null

if ! pkg-config --atleast-version="$RAFT_MIN" raft; then
	echo "install-deps: libraft $(pkg-config --modversion raft 2>/dev/null || echo none) installed; Beacon needs >= $RAFT_MIN" >&2
	exit 1
fi

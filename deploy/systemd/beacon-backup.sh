#!/bin/sh
# beacon-backup: save a Beacon backup (GET /v1/snapshot) into a date-stamped
# file and keep only the newest ones. Run by beacon-backup.service (hourly,
# from beacon-backup.timer); usable by hand or from cron too.
#
# Environment (all optional; the unit reads /etc/default/beacond):
#   BEACON_BACKUP_URL   server to ask, default http://$BEACON_HTTP_ADDR
#                       (0.0.0.0 becomes 127.0.0.1), else
#                       http://127.0.0.1:8500. Any server will do: a
#                       follower forwards the request to the leader.
#   BEACON_BACKUP_DIR   default /var/lib/beacon-backups
#   BEACON_BACKUP_KEEP  how many backups to keep, default 48
#   BEACON_BACKUP_TIMEOUT  seconds for the download, default 600
#
# Files are beacon-YYYYmmddTHHMMSSZ.snap (UTC), written to a .part file and
# renamed once complete, so a listing never shows a partial backup. Restore
# one with: curl -X PUT --data-binary @FILE http://SERVER:8500/v1/snapshot
set -eu
export LC_ALL=C

url=${BEACON_BACKUP_URL:-}
if [ -z "$url" ]; then
	addr=${BEACON_HTTP_ADDR:-127.0.0.1:8500}
	case $addr in
	0.0.0.0:*) addr=127.0.0.1:${addr#0.0.0.0:} ;;
	esac
	url=http://$addr
fi
url=${url%/}
dir=${BEACON_BACKUP_DIR:-/var/lib/beacon-backups}
keep=${BEACON_BACKUP_KEEP:-48}
timeout=${BEACON_BACKUP_TIMEOUT:-600}
case $keep in
'' | *[!0-9]* | 0)
	echo "beacon-backup: BEACON_BACKUP_KEEP must be a positive number, not '$keep'" >&2
	exit 2
	;;
esac

mkdir -p "$dir"
file=$dir/beacon-$(date -u +%Y%m%dT%H%M%SZ).snap
tmp=$file.part
trap 'rm -f "$tmp" "$tmp.headers"' EXIT
trap 'exit 1' INT TERM

curl -fsS --noproxy '*' --max-time "$timeout" -D "$tmp.headers" \
	-o "$tmp" "$url/v1/snapshot"
if [ ! -s "$tmp" ]; then
	echo "beacon-backup: $url/v1/snapshot answered with an empty body" >&2
	exit 1
fi
index=$(tr -d '\r' <"$tmp.headers" |
	awk -F': *' 'tolower($1) == "x-consul-index" { i = $2 } END { print i }')
mv -f "$tmp" "$file"
size=$(wc -c <"$file" | tr -d ' ')

# Keep the newest $keep (names sort by time).
set -- "$dir"/beacon-*.snap
n=$#
while [ "$n" -gt "$keep" ] && [ -e "$1" ]; do
	rm -f -- "$1"
	shift
	n=$((n - 1))
done
echo "beacon-backup: wrote $file ($size bytes, index ${index:-?}) from $url; $n kept"

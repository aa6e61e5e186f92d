#!/usr/bin/env bash
# DNS benchmark of one beacond, driven by dnsperf. See bench/README.md.
#
#   bash bench/dns-bench.sh
#   DURATION=5 ROUNDS=1 bash bench/dns-bench.sh
#
# Starts one beacond (build/beacond) on free 127.0.0.1 ports in a fresh data
# directory under build/, registers the service "web" with INSTANCES
# instances (each with an address of its own), then runs dnsperf against
# its DNS port over UDP, ROUNDS times (interleaved) per query file:
#   srv: "web.service.consul SRV"  (INSTANCES SRV answers + as many A)
#   a:   "web.service.consul A"    (INSTANCES A answers)
# Each run is bounded (dnsperf -l DURATION, and `timeout`). CPU shares are
# utime + stime from /proc/<pid>/stat of beacond over the run, and of
# dnsperf from wait4()'s rusage, as a percentage of one core over the run's
# wall time. Prints a Markdown table and writes it to
# bench/results/dns-<UTC stamp>.md, raw dnsperf outputs in
# bench/results/raw-dns-<UTC stamp>/ (git-ignored). Exits 1 if queries were
# lost or answered with an error.
#
# Loopback only; every process it starts is stopped by PID (lib/common.sh).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

DURATION=${DURATION:-10}     # seconds per dnsperf run
ROUNDS=${ROUNDS:-3}
INSTANCES=${INSTANCES:-3}    # instances of "web"; 3 fit the UDP answer limit
CLIENTS=${CLIENTS:-4}        # dnsperf -c (sockets)
OUTSTANDING=${OUTSTANDING:-100} # dnsperf -q

for v in DURATION ROUNDS INSTANCES CLIENTS OUTSTANDING; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive integer, got '${!v}'" >&2; exit 2; }
done

BENCH_NAME=dns-bench
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

require_tools dnsperf dig curl python3
ensure_beacond

STAMP=$(utc_stamp)
RAW=$RESULTS/raw-dns-$STAMP
REPORT=$RESULTS/dns-$STAMP.md
mkdir -p "$RAW"

bench_traps

read -r HTTP_PORT RAFT_PORT DNS_PORT < <(free_ports 3)
BASE=http://127.0.0.1:$HTTP_PORT

make_data_dir dns-bench-data

# The server reads BEACON_* variables: the command line alone defines it.
while read -r _var; do unset "$_var"; done < <(compgen -e | grep '^BEACON_' || true)
log "starting beacond: HTTP 127.0.0.1:$HTTP_PORT, DNS 127.0.0.1:$DNS_PORT, data dir $DATA_DIR ($DATA_FS)"
"$BEACOND" --node b1 --data-dir "$DATA_DIR" \
	--http-addr "127.0.0.1:$HTTP_PORT" --raft-addr "127.0.0.1:$RAFT_PORT" \
	--dns-addr "127.0.0.1:$DNS_PORT" --log-level warn \
	>"$RAW/beacond.log" 2>&1 &
SERVER_PID=$!
SERVER_PIDS=("$SERVER_PID")

ready=""
for _ in $(seq 300); do
	kill -0 "$SERVER_PID" 2>/dev/null || { log "beacond exited during startup; see $RAW/beacond.log"; exit 1; }
	leader=$(curl -s --max-time 1 "$BASE/v1/status/leader" || true)
	if [[ -n $leader && $leader != '""' ]]; then
		ready=1
		break
	fi
	sleep 0.1
done
[[ -n $ready ]] || { log "beacond not ready after 30 s; see $RAW/beacond.log"; exit 1; }

log "registering $INSTANCES instances of web"
for i in $(seq "$INSTANCES"); do
	body=$(printf '{"Name":"web","ID":"web%d","Port":%d,"Address":"10.%d.%d.%d"}' \
		"$i" $((8000 + i)) $((i / 65536 % 256)) $((i / 256 % 256)) $((i % 256)))
	run_bounded 30 curl -sf --max-time 10 -X PUT --data-binary "$body" \
		"$BASE/v1/agent/service/register" >/dev/null
done
answers=""
for _ in $(seq 100); do
	answers=$(timeout 10 dig @127.0.0.1 -p "$DNS_PORT" +short +time=1 +tries=1 +tcp web.service.consul A | grep -c . || true)
	[[ $answers == "$INSTANCES" ]] && break
	sleep 0.1
done
[[ $answers == "$INSTANCES" ]] || { log "DNS shows $answers instances of web, not $INSTANCES"; exit 1; }
{
	echo "# dig web.service.consul SRV (UDP, no EDNS, as dnsperf asks)"
	timeout 10 dig @127.0.0.1 -p "$DNS_PORT" +noedns +time=1 +tries=1 web.service.consul SRV
} >"$RAW/sample-answer.txt" 2>&1 || true

echo "web.service.consul SRV" >"$RAW/query-srv.txt"
echo "web.service.consul A" >"$RAW/query-a.txt"

# utime + stime of a live process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICKS=$(getconf CLK_TCK)

# Run dnsperf for one round; writes $out (dnsperf's report, then a line
# "CPU <beacond %> <dnsperf %> <wall s>").
run_round() {
	local qfile=$1 out=$2 b0 b1
	b0=$(cpu_ticks "$SERVER_PID")
	cmd=(dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$qfile" -l "$DURATION"
		-c "$CLIENTS" -q "$OUTSTANDING" -t 2)
	echo "# ${cmd[*]}" >"$out"
	# wait4() of dnsperf gives its own CPU time; python runs it bounded.
	run_bounded $((DURATION + 30)) python3 -c '
import os, subprocess, sys, time
t0 = time.monotonic()
p = subprocess.Popen(sys.argv[1:])
_, status, ru = os.wait4(p.pid, 0)
wall = time.monotonic() - t0
print("DNSPERF_CPU %.3f %.3f" % (ru.ru_utime + ru.ru_stime, wall), flush=True)
sys.exit(os.waitstatus_to_exitcode(status))' "${cmd[@]}" >>"$out" 2>&1 || log "dnsperf failed (see $out)"
	b1=$(cpu_ticks "$SERVER_PID")
	echo "BEACOND_CPU $(python3 -c "print('%.3f' % (($b1 - $b0) / $TICKS))")" >>"$out"
}

QUERIES=(srv a)
for round in $(seq "$ROUNDS"); do
	for q in "${QUERIES[@]}"; do
		log "round $round/$ROUNDS: $q"
		run_round "$RAW/query-$q.txt" "$RAW/$q-r$round.txt"
		grep -E 'Queries per second|Queries lost|Average Latency|_CPU' "$RAW/$q-r$round.txt" | sed 's/^/    /' >&2 || true
	done
done

VMRSS=$(proc_mem "$SERVER_PID" VmRSS)
VMHWM=$(proc_mem "$SERVER_PID" VmHWM)

SUMMARY=$(python3 - "$RAW" "$ROUNDS" "${QUERIES[@]}" <<'EOF'
import re, statistics, sys
raw, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
labels = {"srv": "web.service.consul SRV", "a": "web.service.consul A"}
bad = 0
print("| query | queries/s (median, min-max) | avg latency | lost | non-NOERROR | beacond CPU | dnsperf CPU |")
print("|---|---|---|---|---|---|---|")
for n in names:
    qps, lat, bcpu, dcpu, lost, errs = [], [], [], [], 0, 0
    for r in range(1, rounds + 1):
        t = open("%s/%s-r%d.txt" % (raw, n, r)).read()
        m = re.search(r"Queries per second:\s+([\d.]+)", t)
        if not m:
            bad += 1
            continue
        qps.append(float(m.group(1)))
        lat.append(float(re.search(r"Average Latency \(s\):\s+([\d.]+)", t).group(1)) * 1000)
        lost += int(re.search(r"Queries lost:\s+(\d+)", t).group(1))
        for code, k in re.findall(r"(\w+) (\d+) \(", re.search(r"Response codes:(.*)", t).group(1)):
            if code != "NOERROR":
                errs += int(k)
        d = re.search(r"DNSPERF_CPU ([\d.]+) ([\d.]+)", t)
        b = re.search(r"BEACOND_CPU ([\d.]+)", t)
        wall = float(d.group(2))
        dcpu.append(100 * float(d.group(1)) / wall)
        bcpu.append(100 * float(b.group(1)) / wall)
    bad += lost + errs
    if not qps:
        print("| %s | failed | | | | | |" % labels[n])
        continue
    print("| %s | %.0f (%.0f-%.0f) | %.3f ms | %d | %d | %.0f%% | %.0f%% |" % (
        labels[n], statistics.median(qps), min(qps), max(qps),
        statistics.median(lat), lost, errs, statistics.median(bcpu),
        statistics.median(dcpu)))
print("BAD %d" % bad)
EOF
)
BAD=$(sed -n 's/^BAD //p' <<<"$SUMMARY")
TABLE=$(grep -v '^BAD ' <<<"$SUMMARY")

REPORT_TEXT=$(cat <<EOF
# Beacon DNS benchmark (one server), $STAMP

- beacond $(beacond_commit) (build/beacond, gcc -O2), one node, log level warn; $(dnsperf -h 2>&1 | awk '/^Version/ {print "dnsperf " $2}'), UDP, no EDNS
- host: $(host_info); dnsperf runs on the same CPUs as beacond (loopback)
- service "web": $INSTANCES instances, each with an address of its own (SRV answer: $INSTANCES SRV + $INSTANCES A additional)
- each run: \`dnsperf -s 127.0.0.1 -p <dns port> -d <query file> -l $DURATION -c $CLIENTS -q $OUTSTANDING -t 2\`, $ROUNDS rounds per query (interleaved); query files hold one line each (see the table)
- CPU: percent of one core over the run's wall time (200% = both cores); beacond from /proc/<pid>/stat, dnsperf from wait4() rusage; medians over the rounds

$TABLE

- beacond memory at the end: VmRSS $VMRSS, VmHWM $VMHWM
- a sample answer and the raw dnsperf outputs: bench/results/raw-dns-$STAMP/
EOF
)

printf '%s\n' "$REPORT_TEXT"
printf '%s\n' "$REPORT_TEXT" >"$REPORT"
log "report written to $REPORT"
if [[ $BAD != 0 ]]; then
	log "FAILED: $BAD queries lost, answered with an error, or runs without a result; see $RAW"
	exit 1
fi

"""Summarise wrk runs into a Markdown table.

usage: summarize.py RAW_DIR WORKLOAD...
WORKLOAD is name:label:connections; RAW_DIR/<name>-r<k>.txt holds the wrk
output of round k, with one BENCH_RESULT line (printed by bench/lua/common.lua).
A round may instead be split over parallel wrk processes (cluster-bench.sh's
runs spread over several servers): RAW_DIR/<name>-r<k>-<part>.txt, one file
per process. Their req/s are summed; their latency percentiles are merged
from the BENCH_QUANTILES lines (see merged_percentile).
Prints the table; the last line is "ERRORS <n>" (total failed requests) and
"OKWRITES <n>" (successful writes of workloads whose name starts with
"write"), for the calling script, which strips them.
As a module (bench/lib/compare_report.py): load_runs, run_errors."""
import bisect
import glob
import os
import re
import statistics
import sys

def parse(path):
    res, quant = None, None
    with open(path) as f:
        for line in f:
            if line.startswith("BENCH_RESULT "):
                res = {k: float(v) for k, v in
                       re.findall(r"(\w+)=([0-9.]+)", line)}
            elif line.startswith("BENCH_QUANTILES "):
                quant = [(float(p), float(v)) for p, v in
                         (x.split(":") for x in line.split()[1:])]
    if res is not None:
        res["quantiles"] = quant
    return res  # None: wrk failed before done(), counted as an error below


def merged_percentile(parts, p):
    """Latency percentile p (us) of the union of the parts' requests.

    Each part (one wrk process) gives its quantiles q(p_j) on a grid p_j, so
    its CDF F(x) is at least max{p_j : q(p_j) <= x}. The merged CDF is the
    request-weighted mean of those lower bounds, and the result the smallest
    quantile value where it reaches p: exact up to one grid step (0.1 %, or
    0.01 % above p99), and never below the true percentile."""
    if any(r["quantiles"] is None for r in parts):
        return max(r["p%d_us" % p] for r in parts)  # an upper bound
    total = sum(r["requests"] for r in parts)
    if total == 0:
        return 0.0
    grids = []
    for r in parts:
        q = sorted(r["quantiles"])             # by p; values nondecreasing
        grids.append(([v for _, v in q], [pj for pj, _ in q], r["requests"]))
    for x in sorted({v for vals, _, _ in grids for v in vals}):
        f = 0.0
        for vals, ps, n in grids:
            j = bisect.bisect_right(vals, x) - 1   # last grid point <= x
            f += n * (ps[j] if j >= 0 else 0.0)
        if f / total >= p:
            return x
    return max(r["p%d_us" % p] for r in parts)


def combine(parts):
    """One round from its parallel parts (a single part: unchanged)."""
    if len(parts) == 1:
        return parts[0]
    out = {k: sum(r[k] for r in parts) for k in
           ("requests", "rps", "ok", "bad", "connect", "read", "write",
            "timeout")}
    out["p50_us"] = merged_percentile(parts, 50)
    out["p99_us"] = merged_percentile(parts, 99)
    return out


def ms(us):
    return "%.2f" % (us / 1000.0)


def load_runs(raw_dir, name):
    """The rounds of workload NAME in RAW_DIR, in round order: each the
    combined BENCH_RESULT of its parts, or None if a part failed."""
    by_round = {}
    for p in glob.glob(os.path.join(raw_dir, name + "-r*.txt")):
        m = re.match(r"(\d+)(-[^/.]+)?\.txt$",
                     os.path.basename(p)[len(name) + 2:])
        if m:
            by_round.setdefault(int(m.group(1)), []).append(p)
    runs = []
    for k in sorted(by_round):
        parsed = [parse(p) for p in sorted(by_round[k])]
        runs.append(None if None in parsed else combine(parsed))
    return runs


def run_errors(runs):
    """(errors, non-2xx or bad bodies, socket errors, failed runs)."""
    good = [r for r in runs if r is not None]
    bad = sum(int(r["bad"]) for r in good)
    sock = sum(int(r["connect"] + r["read"] + r["write"] + r["timeout"])
               for r in good)
    missing = len(runs) - len(good)
    return bad + sock + missing, bad, sock, missing


def main(raw_dir, workloads):
    rows = []
    total_errors = 0
    ok_writes = 0
    for w in workloads:
        name, label, conns = w.split(":")
        runs = load_runs(raw_dir, name)
        good = [r for r in runs if r is not None]
        errors, bad, sock, missing = run_errors(runs)
        total_errors += errors
        if name.startswith("write"):
            ok_writes += sum(int(r["ok"]) for r in good)
        if good:
            rps = [r["rps"] for r in good]
            cells = ["%.0f" % statistics.median(rps), "%.0f" % min(rps),
                     "%.0f" % max(rps),
                     ms(statistics.median(r["p50_us"] for r in good)),
                     ms(statistics.median(r["p99_us"] for r in good))]
        else:
            cells = ["-"] * 5
        err_cell = "0" if errors == 0 else "**%d** (non-200 %d, socket %d, failed runs %d)" % (
            errors, bad, sock, missing)
        rows.append([label, conns, str(len(runs))] + cells + [err_cell])

    head = ["workload", "conns", "rounds", "req/s median", "req/s min",
            "req/s max", "p50 ms (median)", "p99 ms (median)", "errors"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if i < 1 else "---:" for i in range(len(head))) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print("ERRORS %d" % total_errors)
    print("OKWRITES %d" % ok_writes)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])

"""Summarise wrk runs into a Markdown table.

usage: summarize.py RAW_DIR WORKLOAD...
WORKLOAD is name:label:connections; RAW_DIR/<name>-r<k>.txt holds the wrk
output of round k, with one BENCH_RESULT line (printed by bench/lua/common.lua).
Prints the table; the last line is "ERRORS <n>" (total failed requests) and
"OKWRITES <n>" (successful writes of workloads whose name starts with
"write"), for kv-bench.sh, which strips them."""
import glob
import os
import re
import statistics
import sys

raw_dir, workloads = sys.argv[1], sys.argv[2:]


def parse(path):
    with open(path) as f:
        for line in f:
            if line.startswith("BENCH_RESULT "):
                return {k: float(v) for k, v in
                        re.findall(r"(\w+)=([0-9.]+)", line)}
    return None  # wrk failed before done(): counted as an error below


def ms(us):
    return "%.2f" % (us / 1000.0)


rows = []
total_errors = 0
ok_writes = 0
for w in workloads:
    name, label, conns = w.split(":")
    files = sorted(glob.glob(os.path.join(raw_dir, name + "-r*.txt")),
                   key=lambda p: int(re.search(r"-r(\d+)\.txt$", p).group(1)))
    runs = [parse(p) for p in files]
    good = [r for r in runs if r is not None]
    missing = len(runs) - len(good)
    bad = sum(int(r["bad"]) for r in good)
    sock = sum(int(r["connect"] + r["read"] + r["write"] + r["timeout"])
               for r in good)
    errors = bad + sock + missing
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

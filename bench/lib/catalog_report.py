"""The tables of bench/catalog-bench.sh's report, from its raw directory.

usage: catalog_report.py RAW_DIR TABLE_FILE PIDS WORKLOAD_NAME...

TABLE_FILE holds summarize.py's table of the wrk workloads (one row per
WORKLOAD_NAME, in that order); this adds to each row the servers' CPU use
from RAW_DIR/cpu-<name>-r<k>.txt, lines
    CPU leader=n<i> wall_s=<s> n1=<%> n2=<%> n3=<%>
(percent of one core over the run, see catalog-bench.sh). Then a table of
the heartbeat workloads (names starting "hb-"): heartbeats acknowledged
(the ok= of the BENCH_RESULT lines), and the leader's counters from
RAW_DIR/metrics-<name>-r<k>.before/.after (Prometheus text); and a table of
the wake latencies from RAW_DIR/wake-r<k>.txt (WAKE_RESULT lines of
wake_latency.py).
PIDS: n1=<pid>,n2=<pid>,... of the servers (empty: not running).
Prints the Markdown, then trailer lines for the calling script, "KEY text":
REGISTERED (registrations acknowledged, workloads "reg-"), WAKE_ROUNDS
"<good> <all>", WAKE_BAD (missed + stale + spurious wakes), CRITICAL (the
critical-<when>.txt files: "CRITICAL of_prefix=<a> total=<b>"), CRITICAL_MAX
(the largest of_prefix, or "unknown"), ELECTIONS ("leader of term" lines in
RAW_DIR/n<i>.log), MEMORY (VmRSS and VmHWM of each server now)."""
import glob
import os
import re
import statistics
import sys

raw, table_file, pids, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]


def rounds(prefix, suffix):
    """{round: path} of the files RAW/<prefix><round><suffix>."""
    out = {}
    for p in glob.glob(os.path.join(raw, prefix + "*" + suffix)):
        m = re.fullmatch(re.escape(prefix) + r"(\d+)" + re.escape(suffix),
                         os.path.basename(p))
        if m:
            out[int(m.group(1))] = p
    return out


def kv_line(path, prefix):
    """key=value pairs of the first line starting with prefix, or None."""
    with open(path) as f:
        for line in f:
            if line.startswith(prefix + " "):
                return dict(re.findall(r"(\w+)=(\S+)", line))
    return None


def med(values, fmt="%.0f"):
    return fmt % statistics.median(values) if values else "-"


def spread(values, fmt="%.0f"):
    """median, min, max cells."""
    if not values:
        return ["-"] * 3
    return [fmt % statistics.median(values), fmt % min(values), fmt % max(values)]


def acked(name):
    """Per round: requests answered 200 by the wrk run(s) of a workload."""
    per = {}
    for p in glob.glob(os.path.join(raw, name + "-r*.txt")):
        m = re.match(re.escape(name) + r"-r(\d+)(-n\d+)?\.txt$", os.path.basename(p))
        r = m and kv_line(p, "BENCH_RESULT")
        if r:
            per[int(m.group(1))] = per.get(int(m.group(1)), 0) + int(r["ok"])
    return per


def metric(path, name):
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[0] == name:
                    return float(parts[1])
    except OSError:
        pass
    return None


out = []

# 1. The wrk table with the servers' CPU.
with open(table_file) as f:
    lines = [ln.rstrip("\n") for ln in f if ln.startswith("|")]
out.append(lines[0] + " leader CPU % | followers CPU % |")
out.append(lines[1] + "---:|---:|")
for name, row in zip(names, lines[2:]):
    lead, fol = [], [[], []]
    for path in rounds("cpu-%s-r" % name, ".txt").values():
        c = kv_line(path, "CPU")
        if not c:
            continue
        lead.append(float(c[c["leader"]]))
        others = sorted(k for k in c if re.fullmatch(r"n\d+", k) and k != c["leader"])
        for j, k in enumerate(others[:2]):
            fol[j].append(float(c[k]))
    out.append(row + " %s | %s / %s |" % (med(lead), med(fol[0]), med(fol[1])))

# 2. Heartbeats: acknowledged, received and written.
out += ["", "| heartbeat workload | rounds | acknowledged per round (median) | min | max "
        "| received by the leader (median) | status writes (median) | min | max "
        "| writes per acknowledged heartbeat (median) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
label = {}
with open(table_file) as f:
    rows = [ln for ln in f if ln.startswith("|")][2:]
for name, row in zip(names, rows):
    label[name] = row.split("|")[1].strip()
for name in names:
    if not name.startswith("hb-"):
        continue
    ok = acked(name)
    beats, writes, ratio = [], [], []
    for r in sorted(ok):
        pre = os.path.join(raw, "metrics-%s-r%d" % (name, r))
        d = {}
        for m in ("beacon_checks_heartbeats_total", "beacon_checks_writes_total"):
            a, b = metric(pre + ".before", m), metric(pre + ".after", m)
            d[m] = None if a is None or b is None else b - a
        if d["beacon_checks_heartbeats_total"] is not None:
            beats.append(d["beacon_checks_heartbeats_total"])
        if d["beacon_checks_writes_total"] is not None:
            writes.append(d["beacon_checks_writes_total"])
            if ok[r]:
                ratio.append(d["beacon_checks_writes_total"] / ok[r])
    out.append("| %s | %d | %s | %s | %s | %s |" % (
        label[name], len(ok), " | ".join(spread(list(ok.values()))), med(beats),
        " | ".join(spread(writes)), med(ratio, "%.3f")))

# 3. Wake latency.
wake = {r: kv_line(p, "WAKE_RESULT") for r, p in rounds("wake-r", ".txt").items()}
good = [w for w in wake.values() if w]
out += ["", "| blocking query on /v1/health/service/web | rounds | p50 ms (median) | min | max "
        "| p99 ms (median) | min | max | max ms (median) | min | max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
for who, text in (("leader", "→ leader (wake − write ack)"),
                  ("follower", "→ follower, forwarded to the leader (wake − write ack)"),
                  ("ack", "the write itself (PUT sent → 200 read)")):
    cells = [str(len(good))]
    for q in ("p50", "p99", "max"):
        v = [float(w["%s_%s_ms" % (who, q)]) for w in good if "%s_%s_ms" % (who, q) in w]
        cells += spread(v, "%.2f")
    out.append("| %s | %s |" % (text, " | ".join(cells)))
reads = [float(w["read_p50_ms"]) for w in good if "read_p50_ms" in w]
out.append("| a plain GET /v1/health/service/web on the leader (median of 10 per round) | %d | %s |%s"
           % (len(reads), " | ".join(spread(reads, "%.2f")), " |" * 6))
bad = sum(int(w[k]) for w in good for k in ("missed", "stale", "spurious"))
out.append("")
out.append("- wake rounds: " + "; ".join(
    "r%d: %s" % (r, ("flips %s, missed %s, stale %s, unarmed %s, spurious wakes %s in %s db flips"
                     % (w["flips"], w["missed"], w["stale"], w["unarmed"], w["spurious"],
                        w["control_flips"])) if w else "**failed** (no WAKE_RESULT)")
    for r, w in sorted(wake.items())))

# Critical checks after each round and at the end.
crit, crit_max = [], 0
for p in sorted(glob.glob(os.path.join(raw, "critical-*.txt")),
                key=lambda p: (p.endswith("-end.txt"), len(p), p)):
    when = os.path.basename(p)[len("critical-"):-len(".txt")]
    c = kv_line(p, "CRITICAL")
    if c is None:
        crit.append(when + " unknown")
        crit_max = "unknown"
        continue
    crit.append("%s %s (all critical checks: %s)" % (when, c["of_prefix"], c["total"]))
    if crit_max != "unknown":
        crit_max = max(crit_max, int(c["of_prefix"]))

# The servers: elections won, memory now.
elections, total, mem = [], 0, []
for item in pids.split(","):
    node, pid = item.split("=")
    try:
        with open(os.path.join(raw, node + ".log")) as f:
            won = sum("leader of term" in line for line in f)
    except OSError:
        won = 0
    elections.append("%s %d" % (node, won))
    total += won
    try:
        with open("/proc/%s/status" % pid) as f:
            st = dict(line.split(":", 1) for line in f if ":" in line)
        mem.append("%s VmRSS %s, VmHWM %s" % (node, st["VmRSS"].strip(), st["VmHWM"].strip()))
    except (OSError, KeyError):
        mem.append(node + " not running")

print("\n".join(out))
print("REGISTERED %d" % sum(sum(acked(n).values()) for n in names if n.startswith("reg-")))
print("WAKE_ROUNDS %d %d" % (len(good), len(wake)))
print("WAKE_BAD %d" % bad)
print("CRITICAL " + "; ".join(crit))
print("CRITICAL_MAX %s" % crit_max)
print("ELECTIONS %s (total %d)" % (" ".join(elections), total))
print("MEMORY " + "; ".join(mem))

"""The tables and chart data of bench/compare.sh, from its raw directory.

usage: compare_report.py RAW_DIR DNS_REPORT WORKLOAD...
WORKLOAD is name|label|connections|etcd ("etcd" if etcd ran it too, else
empty); the wrk outputs are RAW_DIR/<system>-<name>-r<k>[-n<i>].txt
(bench/lib/summarize.py reads them). DNS_REPORT: the report bench/dns-bench.sh
wrote (its raw outputs are beside it), or "" if it did not run.

Other inputs in RAW_DIR (written by compare.sh):
  startup-<system>-r<k>.txt     STARTUP_MS <ms>
  <system>-watch-r<k>.txt       WATCH_RESULT line of watch_latency.py
  <system>-<name>-r<k>.cpu      CPU ticks=<utime+stime of the 3 servers over the run> hz=.. wall_s=..
  mem.txt                       MEM <phase> <system> <server> <VmRSS kB> <VmHWM kB>
  load-<system>.txt             LOADED <keys> / LOAD_S <s>
  <system>-failover/kills.txt   <k> <server> <kill> <first ack> <via> <restart> <back>
  <system>-failover/verify.out  failover.py verify's output
  services/time.txt             REGISTER_S <s>

Prints the Markdown, then the trailer lines "ERRORS <failed requests>" and
"LOST <acknowledged writes missing after the failover runs>". Writes
RAW_DIR/chart-throughput.dat, chart-latency.dat and chart-cpu.dat for
bench/plot.gp: one row per workload, a quoted label, then median, min and
max of Beacon, then of etcd ("?" where a system did not run it)."""
import glob
import os
import re
import statistics
import sys

from summarize import load_runs, run_errors

raw, dns_report, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
SYSTEMS = ("beacon", "etcd")


def by_round(pattern):
    """{round: path} for RAW/<pattern with {k}>."""
    out = {}
    rx = re.compile(re.escape(pattern).replace(r"\{k\}", r"(\d+)") + "$")
    for p in glob.glob(os.path.join(raw, pattern.replace("{k}", "*"))):
        m = rx.search(p)
        if m:
            out[int(m.group(1))] = p
    return [out[k] for k in sorted(out)]


def kv_line(path, tag):
    """The key=value pairs of the line starting with TAG in PATH."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(tag + " "):
                    return dict(re.findall(r"(\w+)=([^\s]+)", line))
    except OSError:
        pass
    return None


def stats(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return statistics.median(v), min(v), max(v)


# ---- data ------------------------------------------------------------------

rows = []        # (metric, beacon stats, etcd stats, unit, target)
beacon_only = []  # (metric, stats, unit, target)
errors_total = 0
error_notes = []
chart_tp, chart_lat, chart_cpu = [], [], []


def chart_row(label, b, e):
    def cells(s):
        return ["?", "?", "?"] if s is None else ["%.3f" % x for x in s]
    return '"%s" %s' % (label, " ".join(cells(b) + cells(e)))


SHORT = {"write-leader": "write → leader", "write-all": "write → all 3",
         "read-leader": "read → leader", "read-local-all": "local read → all 3",
         "register-leader": "register (Beacon)", "heartbeat-own": "heartbeat (Beacon)"}

METRICS = (("rps", "req/s"), ("p50", "ms"), ("p99", "ms"), ("cpu", "µs"))
METRIC_TEXT = {"rps": "req/s", "p50": "p50 ms", "p99": "p99 ms",
               "cpu": "CPU µs per request (3 servers)"}


def target_for(name, metric):
    """The issue's target for a wrk workload's metric, or None."""
    if name in ("write-leader-c64", "write-all-c64"):
        return {"rps": (">=", 3), "p99": ("<=", 1)}.get(metric)
    if name.startswith("read-leader-") and metric == "rps":
        return (">=", 3)
    if name.startswith("read-local-all-") and metric == "rps":
        return (">=", 8)
    return None


for spec in specs:
    name, label, conns, with_etcd = spec.split("|")
    per = {}
    for sysname in SYSTEMS if with_etcd else ("beacon",):
        runs = load_runs(raw, "%s-%s" % (sysname, name))
        err = run_errors(runs)
        errors_total += err[0]
        if err[0]:
            error_notes.append("%s %s: %d (bad responses %d, socket errors %d, failed runs %d)"
                               % (sysname, name, *err))
        good = [r for r in runs if r is not None]
        cpu = []
        for r, path in zip(runs, by_round("%s-%s-r{k}.cpu" % (sysname, name))):
            c = kv_line(path, "CPU")
            if r is not None and c and r["requests"]:
                cpu.append(float(c["ticks"]) / float(c["hz"]) * 1e6 / r["requests"])
        per[sysname] = {
            "rps": stats([r["rps"] for r in good]),
            "p50": stats([r["p50_us"] / 1000 for r in good]),
            "p99": stats([r["p99_us"] / 1000 for r in good]),
            "cpu": stats(cpu),
            "n": len(runs),
        }
    title = "%s, %s conns" % (label, conns)
    short = "%s c%s" % (SHORT.get(name.rsplit("-c", 1)[0], name), conns)
    if with_etcd:
        for metric, unit in METRICS:
            rows.append(("%s: %s" % (title, METRIC_TEXT[metric]),
                         per["beacon"][metric], per["etcd"][metric], unit,
                         target_for(name, metric)))
        chart_tp.append(chart_row(short, per["beacon"]["rps"], per["etcd"]["rps"]))
        chart_lat.append(chart_row(short, per["beacon"]["p99"], per["etcd"]["p99"]))
        chart_cpu.append(chart_row(short, per["beacon"]["cpu"], per["etcd"]["cpu"]))
    else:
        for metric, unit in METRICS:
            beacon_only.append(("%s: %s" % (title, METRIC_TEXT[metric]),
                                per["beacon"][metric], unit, None))
        chart_tp.append(chart_row(short, per["beacon"]["rps"], None))
        chart_lat.append(chart_row(short, per["beacon"]["p99"], None))
        chart_cpu.append(chart_row(short, per["beacon"]["cpu"], None))

# watch latency
watch = {}
for sysname in SYSTEMS:
    res = [kv_line(p, "WATCH_RESULT") for p in by_round("%s-watch-r{k}.txt" % sysname)]
    res = [r for r in res if r]
    for r in res:
        if int(r.get("missed", 0)):
            error_notes.append("%s watch: %s writes missed by a watcher" % (sysname, r["missed"]))
            errors_total += int(r["missed"])
    watch[sysname] = {k: stats([float(r[k]) for r in res if k in r])
                      for k in ("leader_p50_ms", "leader_p99_ms",
                                "follower_p50_ms", "follower_p99_ms")}
for who, text in (("leader", "watcher on the leader"), ("follower", "watcher on a follower")):
    for p in ("p50", "p99"):
        k = "%s_%s_ms" % (who, p)
        rows.append(("watch latency (write sent → watcher has it), %s: %s ms" % (text, p),
                     watch["beacon"][k], watch["etcd"][k], "ms",
                     ("<=", 1) if p == "p99" else None))
    chart_lat.append(chart_row("watch, %s" % who, watch["beacon"]["%s_p99_ms" % who],
                               watch["etcd"]["%s_p99_ms" % who]))

# memory
mem = {}
try:
    with open(os.path.join(raw, "mem.txt")) as f:
        for line in f:
            p = line.split()
            if len(p) == 6 and p[0] == "MEM":
                mem.setdefault((p[1], p[2]), []).append((int(p[4]) / 1024, int(p[5]) / 1024))
except OSError:
    pass


def mem_stats(phase, sysname, col):
    v = mem.get((phase, sysname))
    return stats([x[col] for x in v]) if v else None


loaded = {}
for sysname in SYSTEMS:
    kv = {}
    try:
        with open(os.path.join(raw, "load-%s.txt" % sysname)) as f:
            for line in f:
                k, _, v = line.partition(" ")
                kv[k] = v.strip()
    except OSError:
        pass
    loaded[sysname] = kv
nkeys = loaded["beacon"].get("LOADED") or loaded["etcd"].get("LOADED") or "?"
rows.append(("VmRSS per server after loading %s keys (MiB)" % nkeys,
             mem_stats("loaded", "beacon", 0), mem_stats("loaded", "etcd", 0), "MiB", ("<=", 0.1)))
rows.append(("VmHWM (peak RSS) per server after loading %s keys (MiB)" % nkeys,
             mem_stats("loaded", "beacon", 1), mem_stats("loaded", "etcd", 1), "MiB", None))
rows.append(("VmRSS per server just started, empty (MiB)",
             mem_stats("start", "beacon", 0), mem_stats("start", "etcd", 0), "MiB", None))
rows.append(("VmRSS per server after the wrk rounds (MiB)",
             mem_stats("end", "beacon", 0), mem_stats("end", "etcd", 0), "MiB", None))


def load_rate(sysname):
    kv = loaded[sysname]
    try:
        return (float(kv["LOADED"]) / float(kv["LOAD_S"]),) * 3
    except (KeyError, ValueError, ZeroDivisionError):
        return None


rows.append(("loading those keys (transactions of 64 puts, 8 connections): keys/s",
             load_rate("beacon"), load_rate("etcd"), "keys/s", None))

# failover
fo, back, lost, checked, kills = {}, {}, {}, {}, {}
for sysname in SYSTEMS:
    d = os.path.join(raw, "%s-failover" % sysname)
    f_ms, b_ms = [], []
    n = 0
    try:
        with open(os.path.join(d, "kills.txt")) as f:
            for line in f:
                p = line.split()
                n += 1
                if p[3] != "-":
                    f_ms.append((float(p[3]) - float(p[2])) * 1000)
                if p[6] != "-":
                    b_ms.append((float(p[6]) - float(p[5])) * 1000)
    except OSError:
        pass
    fo[sysname], back[sysname], kills[sysname] = stats(f_ms), stats(b_ms), n
    if n and len(f_ms) < n:
        error_notes.append("%s failover: %d of %d kills without an acknowledged write within 30 s"
                           % (sysname, n - len(f_ms), n))
    v = {}
    try:
        with open(os.path.join(d, "verify.out")) as f:
            for line in f:
                k, _, rest = line.partition(" ")
                v[k] = rest.split()
    except OSError:
        pass
    checked[sysname] = int(v["CHECKED"][0]) if "CHECKED" in v else None
    lost[sysname] = (sum(int(x) for x in v["MISSING"]) if "MISSING" in v else None)
rows.append(("failover: kill -9 of the leader → first write acknowledged (ms; %s / %s kills)"
             % (kills["beacon"], kills["etcd"]), fo["beacon"], fo["etcd"], "ms", ("abs<=", 1000)))
rows.append(("failover: killed server restarted → back, serving the latest write (ms)",
             back["beacon"], back["etcd"], "ms", None))

# start-up
st = {}
for sysname in SYSTEMS:
    vals = []
    for p in by_round("startup-%s-r{k}.txt" % sysname):
        with open(p) as f:
            t = f.read().split()
        if len(t) == 2 and t[1] != "failed":
            vals.append(float(t[1]))
    st[sysname] = stats(vals)
rows.append(("start-up: first process started → first write acknowledged (ms)",
             st["beacon"], st["etcd"], "ms", None))

# Beacon only: DNS, services
dns = {}
if dns_report:
    d = os.path.join(os.path.dirname(dns_report),
                     "raw-" + os.path.basename(dns_report)[:-3])
    for q, label in (("srv", "SRV"), ("a", "A")):
        vals = []
        for p in glob.glob(os.path.join(d, "%s-r*.txt" % q)):
            with open(p) as f:
                m = re.search(r"Queries per second:\s+([\d.]+)", f.read())
            if m:
                vals.append(float(m.group(1)))
        dns[label] = stats(vals)
        beacon_only.append(("DNS %s queries/s, one server (dnsperf, bench/dns-bench.sh)" % label,
                            dns[label], "q/s", ("abs>=", 100000)))
try:
    with open(os.path.join(raw, "services", "time.txt")) as f:
        reg_s = float(f.read().split()[1])
except (OSError, IndexError, ValueError):
    reg_s = None
nsvc = sum(1 for p in glob.glob(os.path.join(raw, "services", "ids-n*.txt"))
           for _ in open(p))
beacon_only.append(("VmRSS per server with %d services registered (MiB)" % nsvc,
                    mem_stats("services", "beacon", 0), "MiB", None))
beacon_only.append(("VmHWM per server with %d services registered (MiB)" % nsvc,
                    mem_stats("services", "beacon", 1), "MiB", None))
if reg_s:
    beacon_only.append(("registering those services (3 sequential clients, one per server): services/s",
                        (nsvc / reg_s,) * 3, "/s", None))

# ---- output ----------------------------------------------------------------


def fmt(x, unit):
    if x is None:
        return "-"
    if unit in ("ms", "µs"):
        return "%.2f" % x if x < 100 else "%.0f" % x
    if unit == "MiB":
        return "%.1f" % x
    return "%.0f" % x


def verdict(target, b, e):
    """(target text, met text) for the Beacon median b and etcd median e."""
    if target is None:
        return "", ""
    kind, bound = target
    if kind == "abs<=":
        return "≤ %g" % bound, ("yes" if b <= bound else "**no**") if b is not None else "?"
    if kind == "abs>=":
        return "≥ %g" % bound, ("yes" if b >= bound else "**no**") if b is not None else "?"
    if b is None or e is None or e == 0:
        return ("≥ %g× etcd" if kind == ">=" else "≤ %g× etcd") % bound, "?"
    r = b / e
    if kind == ">=":
        return "≥ %g× etcd" % bound, "yes" if r >= bound else "**no**"
    text = "≤ etcd" if bound == 1 else "≤ %g× etcd" % bound
    return text, "yes" if r <= bound else "**no**"


missed = []
print("| metric | Beacon median | min | max | etcd median | min | max | Beacon/etcd | target | met |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
for metric, b, e, unit, target in rows:
    bm = b[0] if b else None
    em = e[0] if e else None
    ratio = "%.2f×" % (bm / em) if bm is not None and em else "-"
    t, met = verdict(target, bm, em)
    if met == "**no**":
        missed.append(metric)
    cells = [fmt(x, unit) for x in (b or (None,) * 3)] + [fmt(x, unit) for x in (e or (None,) * 3)]
    print("| %s | %s | %s | %s |" % (metric, " | ".join(cells), ratio, t + " | " + met))
print()
print("Beacon only:")
print()
print("| metric | median | min | max | target | met |")
print("|---|---:|---:|---:|---|---|")
for metric, b, unit, target in beacon_only:
    bm = b[0] if b else None
    t, met = verdict(target, bm, None)
    if met == "**no**":
        missed.append(metric)
    cells = [fmt(x, unit) for x in (b or (None,) * 3)]
    print("| %s | %s | %s | %s |" % (metric, " | ".join(cells), t, met))
print()
total_lost = sum(v for v in lost.values() if v)
print("- failover check: acknowledged writes checked on all three servers afterwards: "
      "Beacon %s, lost %s; etcd %s, lost %s (must be 0)"
      % (checked["beacon"], lost["beacon"], checked["etcd"], lost["etcd"]))
print("- errors (non-2xx or unexpected bodies, wrk socket errors and timeouts, watch writes missed): %s"
      % ("none" if not error_notes else "; ".join(error_notes)))
print("- targets missed: %s" % ("none" if not missed else "; ".join(missed)))

with open(os.path.join(raw, "chart-throughput.dat"), "w") as f:
    f.write("# workload beacon_median beacon_min beacon_max etcd_median etcd_min etcd_max (req/s)\n")
    f.write("\n".join(chart_tp) + "\n")
with open(os.path.join(raw, "chart-latency.dat"), "w") as f:
    f.write("# workload beacon_median beacon_min beacon_max etcd_median etcd_min etcd_max (p99 ms)\n")
    f.write("\n".join(chart_lat) + "\n")

with open(os.path.join(raw, "chart-cpu.dat"), "w") as f:
    f.write("# workload beacon_median beacon_min beacon_max etcd_median etcd_min etcd_max (CPU us per request)\n")
    f.write("\n".join(chart_cpu) + "\n")

print("ERRORS %d" % errors_total)
print("LOST %d" % total_lost)

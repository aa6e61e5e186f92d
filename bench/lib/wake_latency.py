"""Blocking-query wake latency (bench/catalog-bench.sh; Debian python3,
stdlib only).

usage: wake_latency.py LEADER FOLLOWER CSV [FLIPS [INTERVAL_S [CONTROL]]]
LEADER, FOLLOWER: host:port of the leader and of a follower.

Registers, through the leader (so the leader's node is their agent), the
services web-1 (Name web) and db-1 (Name db), each with a TTL check of 30 min
starting passing. Two watcher threads, each on its own keep-alive
connection, keep a blocking query open on
    GET /v1/health/service/web?index=<last X-Consul-Index>&wait=30s
one against the leader, one against the follower (default consistency: the
follower forwards it to the leader). The main thread, on a third
connection to the leader, then FLIPS times (default 200), INTERVAL_S
(default 0.05) apart:
  1. waits until both watchers have sent their query for the current index
     and the leader's beacon_http_blocking_queries gauge shows them (>= 2);
  2. PUT /v1/agent/check/warn|pass/service:web-1 (alternating, so every
     flip changes the status); "ack" = when its 200 response was read;
  3. waits for both watchers' answers: wake latency = watcher's answer read
     minus ack (negative if the watcher's answer was read first). An answer
     must carry a higher index and web-1's new status ("stale" otherwise);
     none within 5 s is "missed".
Before the flips, read_p50_ms: the median of 10 plain (non-blocking) GET
/v1/health/service/web on the leader, what answering one watcher costs.
Control: with both watchers armed on web, CONTROL (default 20) flips of
db-1's check, INTERVAL_S apart, then 0.3 s more; any web watcher answer
meanwhile is a spurious wake (must be 0). A last flip of web (to passing)
releases the watchers.

Writes one CSV row per flip and prints one line
    WAKE_RESULT flips=.. leader_p50_ms=.. leader_p99_ms=.. leader_max_ms=..
    follower_p50_ms=.. follower_p99_ms=.. follower_max_ms=.. ack_p50_ms=..
    ack_p99_ms=.. ack_max_ms=.. read_p50_ms=.. missed=.. stale=.. unarmed=..
    spurious=.. control_flips=.. db_index_moves=..
(percentiles: nearest rank). Exits 1 if any flip was missed or stale, any
wake was spurious, or a request failed."""
import http.client
import json
import math
import queue
import sys
import threading
import time

REQ_TIMEOUT = 5          # s, for every request but the blocking queries
WAIT = "30s"             # the blocking queries' wait (the server adds <= 1/16)
BLOCK_TIMEOUT = 40       # s, socket timeout of the watchers
ANSWER_TIMEOUT = 5       # s: a flip's answer later than this is "missed"
ARM_TIMEOUT = 2          # s: longest wait for the watchers to re-arm

STATUS = {"pass": "passing", "warn": "warning"}


def addr(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


class Watcher(threading.Thread):
    def __init__(self, name, server, index):
        super().__init__(daemon=True)
        self.name_ = name
        self.conn = http.client.HTTPConnection(*addr(server), timeout=BLOCK_TIMEOUT)
        self.index = index            # the index the next query blocks on
        self.armed = threading.Event()
        self.answers = queue.Queue()  # (t_read, index, web-1 status, http status)
        self.stop = False
        self.error = None

    def run(self):
        try:
            while not self.stop:
                self.conn.putrequest(
                    "GET", "/v1/health/service/web?index=%d&wait=%s" % (self.index, WAIT))
                self.conn.endheaders()
                self.armed.set()
                resp = self.conn.getresponse()
                body = resp.read()
                t = time.perf_counter()
                self.armed.clear()
                idx = int(resp.getheader("X-Consul-Index", "0"))
                st = None
                if resp.status == 200:
                    for entry in json.loads(body):
                        for c in entry.get("Checks", []):
                            if c.get("CheckID") == "service:web-1":
                                st = c.get("Status")
                self.answers.put((t, idx, st, resp.status))
                if resp.status != 200:
                    raise RuntimeError("status %d: %r" % (resp.status, body[:200]))
                # Consul's rule: an index going back starts over from 0.
                self.index = idx if idx >= self.index else 0
        except Exception as e:  # reported by the main thread
            self.error = "%s: %r" % (self.name_, e)
            self.answers.put((time.perf_counter(), -1, None, -1))


class Main:
    def __init__(self, leader):
        self.conn = http.client.HTTPConnection(*addr(leader), timeout=REQ_TIMEOUT)

    def call(self, method, path, body=None):
        self.conn.request(method, path, body=body,
                          headers={"Content-Type": "application/json"} if body else {})
        resp = self.conn.getresponse()
        data = resp.read()
        return resp, data

    def must(self, method, path, body=None):
        resp, data = self.call(method, path, body)
        if resp.status != 200:
            raise SystemExit("wake_latency: %s %s: status %d %r" %
                             (method, path, resp.status, data[:200]))
        return resp, data

    def blocking_gauge(self):
        _, data = self.must("GET", "/v1/agent/metrics?format=prometheus")
        for line in data.decode().splitlines():
            if line.startswith("beacon_http_blocking_queries "):
                return float(line.split()[1])
        return 0.0

    def index_of(self, name):
        resp, _ = self.must("GET", "/v1/health/service/" + name)
        return int(resp.getheader("X-Consul-Index", "0"))


def summary(name, v):
    """name_p50_ms=.. name_p99_ms=.. name_max_ms=.. of the latencies V (ms)."""
    return ["%s_p50_ms=%.3f" % (name, pct(v, 50)),
            "%s_p99_ms=%.3f" % (name, pct(v, 99)),
            "%s_max_ms=%.3f" % (name, max(v) if v else float("nan"))]


def write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(header + "\n")
        for r in rows:
            f.write(",".join(str(x) for x in r) + "\n")


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[max(0, math.ceil(p / 100.0 * len(v)) - 1)]


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    leader, follower, csv_path = sys.argv[1:4]
    flips = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    interval = float(sys.argv[5]) if len(sys.argv) > 5 else 0.05
    control = int(sys.argv[6]) if len(sys.argv) > 6 else 20

    m = Main(leader)
    for sid, name in (("web-1", "web"), ("db-1", "db")):
        m.must("PUT", "/v1/agent/service/register", json.dumps({
            "ID": sid, "Name": name, "Port": 80,
            "Check": {"TTL": "30m", "Status": "passing"}}))
        m.must("PUT", "/v1/agent/check/pass/service:" + sid)
    # What one answer costs the leader: a plain (non-blocking) read of the
    # watchers' query, 10 times.
    reads = []
    for _ in range(10):
        t = time.perf_counter()
        m.index_of("web")
        reads.append((time.perf_counter() - t) * 1000)
    start = m.index_of("web")
    watchers = [Watcher("leader", leader, start), Watcher("follower", follower, start)]
    for w in watchers:
        w.start()

    unarmed = 0

    def wait_armed(index):
        """Both watchers blocking on @index, and the leader holds them."""
        nonlocal unarmed
        deadline = time.monotonic() + ARM_TIMEOUT
        while time.monotonic() < deadline:
            for w in watchers:
                if w.error:
                    raise SystemExit("wake_latency: watcher failed: " + w.error)
            if all(w.armed.is_set() and w.index == index for w in watchers) \
                    and m.blocking_gauge() >= len(watchers):
                return
            time.sleep(0.002)
        unarmed += 1

    lat = {w.name_: [] for w in watchers}
    acks, rows = [], []
    missed = stale = 0
    index = start
    last = time.perf_counter() - interval
    for k in range(flips):
        verb = "warn" if k % 2 == 0 else "pass"
        wait_armed(index)
        pause = last + interval - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        t_send = time.perf_counter()
        m.must("PUT", "/v1/agent/check/%s/service:web-1" % verb)
        t_ack = time.perf_counter()
        last = t_send
        acks.append((t_ack - t_send) * 1000)
        row = [k + 1, verb, "%.3f" % acks[-1]]
        new_index = index
        for w in watchers:
            try:
                t, idx, st, code = w.answers.get(timeout=ANSWER_TIMEOUT)
            except queue.Empty:
                missed += 1
                row += ["", ""]
                continue
            if w.error:
                raise SystemExit("wake_latency: watcher failed: " + w.error)
            if code != 200 or idx <= index or st != STATUS[verb]:
                stale += 1
            lat[w.name_].append((t - t_ack) * 1000)
            row += ["%.3f" % lat[w.name_][-1], idx]
            new_index = max(new_index, idx)
        rows.append(row)
        index = new_index

    # Control: db flips must not wake the web watchers.
    wait_armed(index)
    before = [w.answers.qsize() for w in watchers]
    db_start = m.index_of("db")
    for k in range(control):
        m.must("PUT", "/v1/agent/check/%s/service:db-1" % ("warn" if k % 2 == 0 else "pass"))
        time.sleep(interval)
    time.sleep(0.3)
    spurious = sum(w.answers.qsize() - b for w, b in zip(watchers, before))
    db_moves = m.index_of("db") > db_start
    if control % 2:
        m.must("PUT", "/v1/agent/check/pass/service:db-1")

    for w in watchers:
        w.stop = True
    m.must("PUT", "/v1/agent/check/%s/service:web-1" % ("pass" if flips % 2 else "warn"))
    if flips % 2 == 0:
        m.must("PUT", "/v1/agent/check/pass/service:web-1")
    for w in watchers:
        w.join(timeout=ANSWER_TIMEOUT)

    write_csv(csv_path, "flip,verb,ack_ms,leader_wake_ms,leader_index,follower_wake_ms,follower_index", rows)
    out = ["flips=%d" % flips]
    for w in watchers:
        out += summary(w.name_, lat[w.name_])
    out += summary("ack", acks) + [
            "read_p50_ms=%.3f" % pct(reads, 50), "missed=%d" % missed, "stale=%d" % stale, "unarmed=%d" % unarmed,
            "spurious=%d" % spurious, "control_flips=%d" % control,
            "db_index_moves=%d" % db_moves]
    print("WAKE_RESULT " + " ".join(out), flush=True)
    sys.exit(1 if missed or stale or spurious or not db_moves else 0)


if __name__ == "__main__":
    main()

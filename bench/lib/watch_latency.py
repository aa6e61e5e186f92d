"""Watch latency of a key, Beacon or etcd (bench/compare.sh; Debian
python3, stdlib only).

usage: watch_latency.py API WRITER WATCH_LEADER WATCH_FOLLOWER KEY CSV EVENTS INTERVAL_S
API: beacon or etcd; the others host:port (the writer is the leader).

Two watcher threads follow KEY, one on the leader, one on a follower, each
on its own connection:
  beacon: a blocking query GET /v1/kv/KEY?index=<last X-Consul-Index>&wait=30s,
          sent again as soon as one is answered (default consistency);
  etcd:   one watch stream, POST /v3/watch {"create_request": {"key": ..}}
          on the JSON gateway (one JSON message per line).
The main thread then EVENTS times, INTERVAL_S apart, writes KEY (value
"seq=<k>" padded to 256 bytes) through the leader, after both watchers have
seen write k-1 and (Beacon) sent their next query. Latency of a watcher =
the time it has read the value of write k minus the time write k was sent
(time.perf_counter, one process); "ack" = the write's own round trip. A
write no watcher reports within 5 s is "missed" for that watcher.

Writes one CSV row per write and prints
    WATCH_RESULT events=.. leader_p50_ms=.. leader_p99_ms=.. leader_max_ms=..
    follower_p50_ms=.. follower_p99_ms=.. follower_max_ms=.. ack_p50_ms=..
    ack_p99_ms=.. ack_max_ms=.. missed=.. unarmed=..
(percentiles: nearest rank). Exits 1 if a write was missed or a request
failed. Python's GIL puts the three threads on one interpreter: a few
hundred microseconds are noise."""
import base64
import http.client
import json
import queue
import sys
import threading
import time

import kvapi
from wake_latency import addr, summary, write_csv

ANSWER_TIMEOUT = 5      # s
ARM_TIMEOUT = 2         # s


def value(seq):
    v = ("seq=%d " % seq).encode()
    return v + b"v" * (255 - len(v)) + b"\n"


def seq_of(v):
    return int(v.split(b" ", 1)[0][4:])


class Watcher(threading.Thread):
    def __init__(self, name, api, server, key):
        super().__init__(daemon=True)
        self.name_, self.api, self.key = name, api, key
        self.conn = http.client.HTTPConnection(*addr(server), timeout=40)
        self.armed = threading.Event()
        self.seen = 0                  # the latest seq seen (0: written before)
        self.answers = queue.Queue()   # (perf_counter, seq)
        self.error = None

    def got(self, raw):
        t = time.perf_counter()
        s = seq_of(raw)
        self.seen = max(self.seen, s)
        self.answers.put((t, s))

    def run(self):
        try:
            self.beacon() if self.api == "beacon" else self.etcd()
        except Exception as e:  # reported by the main thread
            self.error = "%s: %r" % (self.name_, e)
            self.answers.put((time.perf_counter(), -1))

    def beacon(self):
        index = 0
        while True:
            self.conn.putrequest("GET", "/v1/kv/%s?index=%d&wait=30s" % (self.key, index))
            self.conn.endheaders()
            if index:
                self.armed.set()
            resp = self.conn.getresponse()
            body = resp.read()
            self.armed.clear()
            if resp.status != 200:
                raise RuntimeError("status %d: %r" % (resp.status, body[:200]))
            new = int(resp.getheader("X-Consul-Index", "0"))
            if new != index:
                self.got(base64.b64decode(json.loads(body)[0]["Value"]))
            index = new if new >= index else 0

    def etcd(self):
        req = {"create_request": {"key": kvapi.b64(self.key)}}
        self.conn.request("POST", "/v3/watch", body=json.dumps(req).encode())
        resp = self.conn.getresponse()
        if resp.status != 200:
            raise RuntimeError("status %d: %r" % (resp.status, resp.read(200)))
        while True:
            line = resp.readline()
            if not line:
                raise RuntimeError("watch stream closed")
            if not line.strip():
                continue
            res = json.loads(line).get("result", {})
            if res.get("created"):
                self.armed.set()
            for ev in res.get("events", []):
                self.got(base64.b64decode(ev["kv"].get("value", "")))


def main():
    if len(sys.argv) != 9:
        raise SystemExit(__doc__)
    api_name, writer, w_leader, w_follower, key, csv_path, events, interval = sys.argv[1:]
    api, events, interval = kvapi.API[api_name], int(events), float(interval)

    conn = http.client.HTTPConnection(*addr(writer), timeout=10)
    if not kvapi.put(api, conn, key, value(0)):
        raise SystemExit("watch_latency: the first write failed")
    watchers = [Watcher("leader", api_name, w_leader, key),
                Watcher("follower", api_name, w_follower, key)]
    for w in watchers:
        w.start()

    unarmed = missed = 0
    lat = {w.name_: [] for w in watchers}
    acks, rows = [], []
    last = time.perf_counter() - interval
    for k in range(1, events + 1):
        deadline = time.monotonic() + ARM_TIMEOUT
        while not all(w.armed.is_set() and w.seen >= k - 1 for w in watchers):
            if any(w.error for w in watchers):
                raise SystemExit("watch_latency: " + "; ".join(w.error for w in watchers if w.error))
            if time.monotonic() > deadline:
                unarmed += 1
                break
            time.sleep(0.0005)
        pause = last + interval - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        t_send = time.perf_counter()
        if not kvapi.put(api, conn, key, value(k)):
            raise SystemExit("watch_latency: write %d failed" % k)
        acks.append((time.perf_counter() - t_send) * 1000)
        last = t_send
        row = [k, "%.3f" % acks[-1]]
        for w in watchers:
            got = None
            end = time.monotonic() + ANSWER_TIMEOUT
            while got is None and time.monotonic() < end:
                try:
                    t, s = w.answers.get(timeout=max(0.001, end - time.monotonic()))
                except queue.Empty:
                    break
                if s < 0:
                    raise SystemExit("watch_latency: " + w.error)
                if s == k:
                    got = t
            if got is None:
                missed += 1
                row.append("")
            else:
                lat[w.name_].append((got - t_send) * 1000)
                row.append("%.3f" % lat[w.name_][-1])
        rows.append(row)

    write_csv(csv_path, "write,ack_ms,leader_watch_ms,follower_watch_ms", rows)
    out = ["events=%d" % events]
    for w in watchers:
        out += summary(w.name_, lat[w.name_])
    out += summary("ack", acks) + ["missed=%d" % missed, "unarmed=%d" % unarmed]
    print("WATCH_RESULT " + " ".join(out), flush=True)
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()

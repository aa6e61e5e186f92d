"""Preload the read workload's keys: bench/r/0000 .. bench/r/<n-1>, 256-byte
values, over a few keep-alive connections in parallel.

usage: preload.py HOST PORT N
Exits non-zero if any PUT does not answer 200 "true"."""
import http.client
import sys
import threading

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
CONNS = 8
value = b"v" * 255 + b"\n"
failures = []


def worker(start: int) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    for i in range(start, n, CONNS):
        conn.request("PUT", "/v1/kv/bench/r/%04d" % i, body=value)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 or not body.startswith(b"true"):
            failures.append((i, resp.status, body[:100]))
    conn.close()


threads = [threading.Thread(target=worker, args=(s,)) for s in range(CONNS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if failures:
    print("preload: %d failed PUTs, first: %r" % (len(failures), failures[0]),
          file=sys.stderr)
    sys.exit(1)

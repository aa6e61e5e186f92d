"""Helpers of bench/catalog-bench.sh (stdlib only; every request times out
after 10 s).

  catalog_util.py register SERVERS N PREFIX OUTDIR
      Register services PREFIX-0000 .. PREFIX-<N-1> (Name PREFIX-00..49, a
      TTL check of 30 min, no Status: it starts critical, as in Consul),
      service i through server i mod k of SERVERS (host:port,...), so that
      server is its agent. Writes the IDs each server owns to
      OUTDIR/ids-n<j>.txt (j = 1..k, one ID per line), for
      bench/lua/heartbeat.lua. Exits 1 if a registration is not answered 200.

  catalog_util.py critical HOST:PORT PREFIX
      Prints "CRITICAL of_prefix=<a> total=<b>": the checks that
      /v1/health/state/critical lists, of services whose ID starts with
      PREFIX- and in all.

  catalog_util.py wait-services SERVERS N TIMEOUT
      Waits until every server's beacon_catalog_services gauge (its local
      catalog, /v1/agent/metrics) is at least N; prints "SERVICES <n1>
      <n2> ..."; exits 1 after TIMEOUT s."""
import http.client
import json
import os
import sys
import threading
import time

TIMEOUT = 10


def split_addr(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def register(servers, n, prefix, outdir):
    addrs = servers.split(",")
    owned = [[] for _ in addrs]
    for i in range(n):
        owned[i % len(addrs)].append("%s-%04d" % (prefix, i))
    failed = []

    def agent(k):
        conn = http.client.HTTPConnection(*split_addr(addrs[k]), timeout=TIMEOUT)
        for sid in owned[k]:
            body = json.dumps({
                "ID": sid, "Name": "%s-%02d" % (prefix, int(sid[-4:]) % 50),
                "Port": 8000 + int(sid[-4:]), "Tags": ["beat"],
                "Check": {"TTL": "30m"}})
            conn.request("PUT", "/v1/agent/service/register", body=body,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            text = resp.read()
            if resp.status != 200:
                failed.append((addrs[k], sid, resp.status, text[:100]))
        conn.close()

    threads = [threading.Thread(target=agent, args=(k,)) for k in range(len(addrs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, ids in enumerate(owned):
        with open(os.path.join(outdir, "ids-n%d.txt" % (k + 1)), "w") as f:
            f.write("".join(sid + "\n" for sid in ids))
    if failed:
        print("register: %d failed, first: %r" % (len(failed), failed[0]),
              file=sys.stderr)
        sys.exit(1)


def critical(addr, prefix):
    conn = http.client.HTTPConnection(*split_addr(addr), timeout=TIMEOUT)
    conn.request("GET", "/v1/health/state/critical")
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        print("critical: status %d: %r" % (resp.status, body[:200]),
              file=sys.stderr)
        sys.exit(1)
    checks = json.loads(body)
    mine = sum(1 for c in checks
               if (c.get("ServiceID") or "").startswith(prefix + "-"))
    print("CRITICAL of_prefix=%d total=%d" % (mine, len(checks)))


def services_gauge(addr):
    conn = http.client.HTTPConnection(*split_addr(addr), timeout=TIMEOUT)
    try:
        conn.request("GET", "/v1/agent/metrics?format=prometheus")
        for line in conn.getresponse().read().decode().splitlines():
            if line.startswith("beacon_catalog_services "):
                return int(float(line.split()[1]))
    except (OSError, http.client.HTTPException, ValueError):
        pass
    finally:
        conn.close()
    return None


def wait_services(servers, n, timeout):
    deadline = time.monotonic() + timeout
    while True:
        counts = [services_gauge(a) for a in servers.split(",")]
        done = all(c is not None and c >= n for c in counts)
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print("SERVICES " + " ".join("?" if c is None else str(c) for c in counts))
    sys.exit(0 if done else 1)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "register":
        register(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif len(sys.argv) == 4 and sys.argv[1] == "critical":
        critical(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "wait-services":
        wait_services(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        sys.exit(__doc__)

"""Beacon's and etcd's key/value HTTP APIs, side by side, for the bench
scripts (stdlib only; run with /usr/bin/python3).

As a module: API["beacon"] / API["etcd"], objects with the same methods
(put_request, put_ok, get_value, txn_put_request, fetch_prefix, ...).
Beacon speaks Consul's API (PUT /v1/kv/<key>, body the raw value, answer
`true`); etcd 3.4 its JSON gateway (POST /v3/kv/put, {"key": b64, "value":
b64}, on the client port).

As a command (SERVER is host:port; SERVERS host:port,...):

  kvapi.py put API SERVER KEY VALUE
      One write; exit 0 if acknowledged.
  kvapi.py leader API [i=]SERVER,...
      Prints the index (1-based, or the i given) of the server every listed
      server names as leader; nothing if they disagree or one knows none.
  kvapi.py first-write API SERVERS TIMEOUT
      Start-up probe: every 10 ms a write of bench/_start on a new
      connection to the next server (each in its own thread, 1 s timeout),
      until one is acknowledged; prints the earliest acknowledgement's Unix
      time. Exit 1 after TIMEOUT s.
  kvapi.py load API SERVER N CONNS OPS
      Writes N keys with 256-byte values through SERVER, OPS per
      transaction over CONNS connections: bench/r/0000 .. bench/r/0999 (the
      read workloads' keys), then bench/m/000000 .. up to N in all.
  kvapi.py synced API SERVERS TIMEOUT
      Writes a fresh sentinel key through the first server, then waits until
      every server serves it from its local state (?stale / serializable):
      each has applied everything written before. Exit 1 after TIMEOUT s."""
import base64
import http.client
import json
import os
import sys
import threading
import time

VALUE = b"v" * 255 + b"\n"       # the benchmarks' 256-byte value


def split_addr(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


def b64(x):
    if isinstance(x, str):
        x = x.encode()
    return base64.b64encode(x).decode()


def call(conn, method, path, body=None, headers=None):
    """One request on a keep-alive connection: (status, headers, body)."""
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, resp, data


class Beacon:
    name = "beacon"

    def put_request(self, key, value):
        return "PUT", "/v1/kv/" + key, value, {}

    def put_ok(self, status, data):
        return status == 200 and data.strip() == b"true"

    def txn_put_request(self, items):
        ops = [{"KV": {"Verb": "set", "Key": k, "Value": b64(v)}} for k, v in items]
        return "PUT", "/v1/txn", json.dumps(ops).encode(), {"Content-Type": "application/json"}

    def get_value(self, conn, key, local=False):
        """The value of KEY (bytes) or None; local: ?stale."""
        status, _, data = call(conn, "GET", "/v1/kv/%s%s" % (key, "?stale" if local else ""))
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError("GET %s: HTTP %d" % (key, status))
        return base64.b64decode(json.loads(data)[0]["Value"] or "")

    def fetch_prefix(self, host, port, prefix):
        """{key: value (str)} under PREFIX/, from the server's local state."""
        conn = http.client.HTTPConnection(host, port, timeout=120)
        try:
            status, _, data = call(conn, "GET", "/v1/kv/%s/?recurse&stale" % prefix)
        finally:
            conn.close()
        if status == 404:
            return {}
        if status != 200:
            raise RuntimeError("HTTP %d" % status)
        return {e["Key"]: base64.b64decode(e["Value"] or "").decode()
                for e in json.loads(data)}

    def leader_id(self, conn):
        """(this server's id, the leader's id or "")."""
        status, _, data = call(conn, "GET", "/v1/agent/self")
        if status != 200:
            raise RuntimeError("agent/self: HTTP %d" % status)
        me = json.loads(data)
        m = me["Member"]
        return "%s:%d" % (m["Addr"], m["Port"]), me["Stats"]["raft"]["leader_addr"]


class Etcd:
    name = "etcd"

    def put_request(self, key, value):
        return ("POST", "/v3/kv/put",
                json.dumps({"key": b64(key), "value": b64(value)}).encode(), {})

    def put_ok(self, status, data):
        return status == 200 and data.startswith(b'{"header"')

    def txn_put_request(self, items):
        ops = [{"request_put": {"key": b64(k), "value": b64(v)}} for k, v in items]
        return "POST", "/v3/kv/txn", json.dumps({"success": ops}).encode(), {}

    def range(self, conn, key, range_end=None, local=False):
        req = {"key": b64(key), "serializable": bool(local)}
        if range_end is not None:
            req["range_end"] = b64(range_end)
        status, _, data = call(conn, "POST", "/v3/kv/range", json.dumps(req).encode())
        if status != 200:
            raise RuntimeError("range %s: HTTP %d %r" % (key, status, data[:200]))
        return json.loads(data)

    def get_value(self, conn, key, local=False):
        kvs = self.range(conn, key, local=local).get("kvs")
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def fetch_prefix(self, host, port, prefix):
        conn = http.client.HTTPConnection(host, port, timeout=120)
        p = (prefix + "/").encode()
        end = p[:-1] + bytes([p[-1] + 1])
        try:
            r = self.range(conn, p, end, local=True)
        finally:
            conn.close()
        return {base64.b64decode(e["key"]).decode():
                base64.b64decode(e.get("value", "")).decode()
                for e in r.get("kvs", [])}

    def leader_id(self, conn):
        status, _, data = call(conn, "POST", "/v3/maintenance/status", b"{}")
        if status != 200:
            raise RuntimeError("status: HTTP %d" % status)
        st = json.loads(data)
        leader = st.get("leader", "0")
        return st["header"]["member_id"], "" if leader in ("0", 0) else leader


API = {"beacon": Beacon(), "etcd": Etcd()}


def put(api, conn, key, value):
    m, p, b, h = api.put_request(key, value)
    status, _, data = call(conn, m, p, b, h)
    return api.put_ok(status, data)


# ---- commands ---------------------------------------------------------------

def cmd_put(api, server, key, value):
    conn = http.client.HTTPConnection(*split_addr(server), timeout=5)
    return 0 if put(api, conn, key, value.encode()) else 1


def leader_index(api, servers):
    """Index of the server all name as leader, or None."""
    ids, named = {}, set()
    for k, s in enumerate(servers.split(",")):
        idx, _, addr = s.rpartition("=")
        idx = int(idx) if idx else k + 1
        try:
            conn = http.client.HTTPConnection(*split_addr(addr), timeout=1)
            me, leader = api.leader_id(conn)
            conn.close()
        except Exception:
            return None
        if not leader:
            return None
        ids[me] = idx
        named.add(leader)
    if len(named) != 1:
        return None
    return ids.get(named.pop())


def cmd_leader(api, servers):
    i = leader_index(api, servers)
    if i is not None:
        print(i)
    return 0


def cmd_first_write(api, servers, timeout):
    """Open loop: every 10 ms a new connection to the next server sends a
    write (1 s timeout), so a request stuck in a server that is not serving
    yet holds back nothing; the earliest acknowledgement wins."""
    deadline = time.monotonic() + float(timeout)
    done = threading.Event()
    result = []
    lock = threading.Lock()

    def attempt(addr):
        try:
            conn = http.client.HTTPConnection(*split_addr(addr), timeout=1)
            if put(api, conn, "bench/_start", b"1"):
                t = time.time()
                with lock:
                    result.append(t)
                done.set()
            conn.close()
        except Exception:
            pass

    addrs = servers.split(",")
    k = 0
    while not done.is_set() and time.monotonic() < deadline:
        threading.Thread(target=attempt, args=(addrs[k % len(addrs)],),
                         daemon=True).start()
        k += 1
        done.wait(0.01)
    if not result:
        return 1
    time.sleep(0.05)    # a slightly earlier answer may still be on its way
    with lock:
        print("%.6f" % min(result))
    return 0


def cmd_load(api, server, n, conns, ops):
    n, conns, ops = int(n), int(conns), int(ops)
    keys = ["bench/r/%04d" % i for i in range(min(n, 1000))]
    keys += ["bench/m/%06d" % i for i in range(len(keys), n)]
    batches = [keys[i:i + ops] for i in range(0, len(keys), ops)]
    failed = []

    def worker(k):
        conn = http.client.HTTPConnection(*split_addr(server), timeout=30)
        try:
            for b in batches[k::conns]:
                m, p, body, h = api.txn_put_request(
                    [(key, VALUE) for key in b])
                status, _, data = call(conn, m, p, body, h)
                if status != 200:
                    failed.append((status, data[:200]))
        except Exception as e:   # a dead thread must not pass as loaded
            failed.append(("exception", repr(e)))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        print("load: %d transactions failed, first: %r" % (len(failed), failed[0]),
              file=sys.stderr)
        return 1
    print("LOADED %d" % len(keys))
    return 0


def cmd_synced(api, servers, timeout):
    servers = servers.split(",")
    deadline = time.monotonic() + float(timeout)
    token = ("%.6f-%d" % (time.time(), os.getpid())).encode()
    conn = http.client.HTTPConnection(*split_addr(servers[0]), timeout=10)
    if not put(api, conn, "bench/_sync", token):
        print("synced: the sentinel write failed", file=sys.stderr)
        return 1
    pending = list(servers)
    while pending and time.monotonic() < deadline:
        for s in list(pending):
            try:
                c = http.client.HTTPConnection(*split_addr(s), timeout=5)
                if api.get_value(c, "bench/_sync", local=True) == token:
                    pending.remove(s)
                c.close()
            except Exception:
                pass
        if pending:
            time.sleep(0.05)
    if pending:
        print("synced: not caught up: %s" % ",".join(pending), file=sys.stderr)
        return 1
    return 0


def main(argv):
    cmds = {"put": (cmd_put, 3), "leader": (cmd_leader, 1),
            "first-write": (cmd_first_write, 2), "load": (cmd_load, 4),
            "synced": (cmd_synced, 2)}
    if len(argv) < 3 or argv[1] not in cmds or argv[2] not in API \
            or len(argv) - 3 != cmds[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[argv[1]][0](API[argv[2]], *argv[3:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

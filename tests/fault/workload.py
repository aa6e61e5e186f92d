"""The client side of the fault run: a recorder and the client threads.

Every client thread has at most one request in flight, sends it to a
random server (followers forward writes and non-stale reads to the
leader), and records it in the history (checkers.py describes the record
fields) with its invoke and return times on one monotonic clock, and its
outcome:

  ok       the call happened and we have its answer (for a CAS or a txn
           that rolled back: it happened and changed nothing);
  fail     it certainly did not happen: the connection was refused, or
           the server answered 4xx or "No cluster leader" (nothing was
           proposed: README "Consistency and clusters");
  unknown  anything else: a timeout, a reset connection, "500 Unknown
           outcome: ...", any other 5xx.  It may have happened, at any
           time after its invoke.

Keys and values.  Hot keys change every `epoch` seconds
(<run>/h/e<epoch>/k<i>), so each key's history stays small enough for
the linearizability search; every written value is unique
("<client>.<seq>").  Write-once keys (<run>/o/<client>/<seq>) are never
overwritten: the lost-write check looks for each of them after healing.
"""

import base64
import json
import random
import threading
import time
import urllib.parse

import requests

NO_LEADER = b"No cluster leader"
SERVICE = "fsvc"
EXT_NODE = "fault-ext"
OP_TIMEOUT = 8.0           # s: a client gives up (unknown outcome)
WAIT = "1s"                # blocking queries' ?wait=
WAIT_TIMEOUT = 1.0 + 0.25 + OP_TIMEOUT


class Recorder:
    """The history: in memory, and one JSON object per line in `path`."""

    def __init__(self, path, t0=None):
        self.t0 = time.monotonic() if t0 is None else t0
        self.lock = threading.Lock()
        self.records = []
        self.next_id = 1
        self.f = open(path, "a", buffering=1) if path else None

    def now(self):
        return time.monotonic() - self.t0

    def _write(self, rec):
        self.records.append(rec)
        if self.f is not None:
            self.f.write(json.dumps(rec, sort_keys=True) + "\n")

    def begin(self, **fields):
        with self.lock:
            rec = dict(fields, id=self.next_id)
            self.next_id += 1
        rec["invoke"] = self.now()
        return rec

    def end(self, rec, outcome, **fields):
        rec["ret"] = self.now()
        rec["outcome"] = outcome
        rec.update(fields)
        with self.lock:
            self._write(rec)
        return rec

    def event(self, **fields):
        with self.lock:
            rec = dict(fields, id=self.next_id, time=self.now())
            self.next_id += 1
            self._write(rec)
        return rec

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None


def kv_url(key, query=""):
    return "/v1/kv/" + urllib.parse.quote(key, safe="/") + (
        "?" + query if query else "")


def b64(s):
    return base64.b64encode(s.encode()).decode()


def unb64(v):
    return None if v is None else base64.b64decode(v).decode("utf-8",
                                                             "replace")


class Answer:
    __slots__ = ("status", "headers", "body", "exc")

    def __init__(self, status=0, headers=None, body=b"", exc=None):
        self.status, self.headers, self.body, self.exc = \
            status, headers or {}, body, exc

    def index(self):
        v = self.headers.get("X-Consul-Index")
        try:
            return int(v) if v is not None else None
        except ValueError:
            return None

    def json(self):
        return json.loads(self.body)

    def err(self):
        if self.exc:
            return self.exc
        return self.body[:120].decode("utf-8", "replace").strip()


def write_outcome(a, definite_statuses=()):
    """ok / fail / unknown of a write (see the module comment)."""
    if a.exc == "refused":
        return "fail"
    if a.exc is not None:
        return "unknown"
    if a.status == 200 or a.status in definite_statuses:
        return "ok"
    if a.status in (500, 503) and a.body.startswith(NO_LEADER):
        return "fail"
    if 400 <= a.status < 500 and a.status != 408:
        return "fail"
    return "unknown"


class Client(threading.Thread):
    """Base: HTTP to the servers with one keep-alive session per server,
    recording, a bounded loop."""

    def __init__(self, h, name, seed):
        super().__init__(name=name, daemon=True)
        self.h = h                  # the harness: servers, incs, stop...
        self.cname = name
        self.rng = random.Random(seed)
        self.sessions = {}
        self.seq = 0
        self.ops = 0

    def unique(self):
        self.seq += 1
        return "%s.%d" % (self.cname, self.seq)

    def pick(self):
        return self.rng.choice(self.h.servers())

    def session(self, srv):
        s = self.sessions.get(srv.name)
        if s is None:
            s = requests.Session()
            s.trust_env = False
            self.sessions[srv.name] = s
        return s

    def drop_session(self, srv):
        s = self.sessions.pop(srv.name, None)
        if s is not None:
            s.close()

    def http(self, srv, method, path, data=None, timeout=OP_TIMEOUT):
        try:
            r = self.session(srv).request(
                method, srv.url + path, data=data, timeout=timeout,
                allow_redirects=False)
            return Answer(r.status_code, r.headers, r.content)
        except requests.exceptions.ConnectTimeout:
            self.drop_session(srv)
            return Answer(exc="refused")     # no connection: nothing sent
        except requests.exceptions.ConnectionError as e:
            self.drop_session(srv)
            text = repr(e)
            if "Connection refused" in text or "NewConnectionError" in text:
                self.h.stop.wait(0.05)          # a dead server: no spin
                return Answer(exc="refused")
            return Answer(exc="connection: " + text[-120:])
        except requests.exceptions.Timeout:
            self.drop_session(srv)
            return Answer(exc="timeout")
        except requests.exceptions.RequestException as e:
            self.drop_session(srv)
            return Answer(exc="error: " + repr(e)[-120:])

    def call(self, srv, method, path, data=None, timeout=OP_TIMEOUT,
             **fields):
        """Record-and-send: returns (record, Answer); the caller ends the
        record."""
        inc = self.h.incs[srv.name]
        rec = self.h.rec.begin(proc=self.cname, server=srv.name, **fields)
        a = self.http(srv, method, path, data, timeout)
        rec["inc"] = inc if self.h.incs[srv.name] == inc else None
        rec["status"] = a.status
        return rec, a

    def run(self):
        try:
            while not self.h.stop.is_set() and self.ops < self.h.max_ops:
                self.ops += 1
                self.step()
        except Exception as e:                  # noqa: BLE001
            self.h.client_error(self.cname, e)
        finally:
            for s in self.sessions.values():
                s.close()

    def step(self):
        raise NotImplementedError


# ---- KV ---------------------------------------------------------------------


def parse_entry(a):
    """(found, value, mindex) of a single-key GET answer."""
    if a.status == 404:
        return False, None, None
    e = a.json()[0]
    return True, unb64(e.get("Value")), e["ModifyIndex"]


class KVClient(Client):
    """put, get (default, consistent, stale), CAS (?cas= and txn), txn
    sets over two keys, recursive reads (GET ?recurse and txn get-tree),
    delete, and write-once puts."""

    WEIGHTS = [("put", 18), ("get_default", 9), ("get_consistent", 14),
               ("get_stale", 8), ("cas", 14), ("txn_set", 7),
               ("tree", 7), ("delete", 3), ("once", 8)]

    def __init__(self, h, name, seed):
        super().__init__(h, name, seed)
        self.ops_names = [w[0] for w in self.WEIGHTS]
        self.weights = [w[1] for w in self.WEIGHTS]

    def step(self):
        op = self.rng.choices(self.ops_names, self.weights)[0]
        getattr(self, "do_" + op)()

    # ---- writes --------------------------------------------------------

    def do_put(self):
        key, v, srv = self.h.hot_key(self.rng), self.unique(), self.pick()
        rec, a = self.call(srv, "PUT", kv_url(key), v.encode(), f="put",
                           key=key, value=v)
        out = write_outcome(a)
        if out == "ok" and a.body.strip() != b"true":
            out = "unknown"
        self.h.rec.end(rec, out, err=a.err() if out != "ok" else "")

    def do_once(self):
        key = "%s/o/%s/%d" % (self.h.run_id, self.cname, self.seq + 1)
        v, srv = self.unique(), self.pick()
        rec, a = self.call(srv, "PUT", kv_url(key), v.encode(), f="put",
                           key=key, value=v, once=True)
        out = write_outcome(a)
        if out == "ok" and a.body.strip() != b"true":
            out = "unknown"
        self.h.rec.end(rec, out, err=a.err() if out != "ok" else "")

    def do_delete(self):
        key, srv = self.h.hot_key(self.rng), self.pick()
        rec, a = self.call(srv, "DELETE", kv_url(key), f="delete", key=key)
        out = write_outcome(a)
        self.h.rec.end(rec, out, err=a.err() if out != "ok" else "")

    def do_cas(self):
        key = self.h.hot_key(self.rng)
        mode = self.rng.choice(["default", "consistent", "stale"])
        got = self.read(key, mode)
        if got is None:
            return
        found, value, mindex, _ = got
        index = mindex if found else 0
        v, srv = self.unique(), self.pick()
        if self.rng.random() < 0.5:
            rec, a = self.call(srv, "PUT", kv_url(key, "cas=%d" % index),
                               v.encode(), f="cas", key=key, value=v,
                               cas_index=index, expect=value)
            out = write_outcome(a)
            res = None
            if out == "ok":
                body = a.body.strip()
                res = True if body == b"true" else False if \
                    body == b"false" else None
                if res is None:
                    out = "unknown"
            self.h.rec.end(rec, out, result=res,
                           err=a.err() if out != "ok" else "")
            return
        body = json.dumps([{"KV": {"Verb": "cas", "Key": key,
                                   "Value": b64(v), "Index": index}}])
        rec, a = self.call(srv, "PUT", "/v1/txn", body.encode(),
                           f="txn-cas", key=key, value=v, cas_index=index,
                           expect=value)
        out = write_outcome(a, definite_statuses=(409,))
        res, mi = None, None
        if out == "ok":
            res = a.status == 200
            if res:
                try:
                    mi = a.json()["Results"][0]["KV"]["ModifyIndex"]
                except (ValueError, KeyError, IndexError, TypeError):
                    out = "unknown"
        self.h.rec.end(rec, out, result=res, mindex=mi,
                       err=a.err() if out != "ok" else "")

    def do_txn_set(self):
        k1, k2 = self.h.hot_keys(self.rng, 2)
        v1, v2, srv = self.unique(), self.unique(), self.pick()
        body = json.dumps([{"KV": {"Verb": "set", "Key": k1,
                                   "Value": b64(v1)}},
                           {"KV": {"Verb": "set", "Key": k2,
                                   "Value": b64(v2)}}])
        rec, a = self.call(srv, "PUT", "/v1/txn", body.encode(),
                           f="txn-set", writes=[[k1, v1], [k2, v2]])
        out = write_outcome(a)
        results = None
        if out == "ok":
            try:
                rs = a.json()["Results"]
                results = [[k1, v1, rs[0]["KV"]["ModifyIndex"]],
                           [k2, v2, rs[1]["KV"]["ModifyIndex"]]]
            except (ValueError, KeyError, IndexError, TypeError):
                out = "unknown"
        self.h.rec.end(rec, out, results=results,
                       err=a.err() if out != "ok" else "")

    # ---- reads ---------------------------------------------------------

    def read(self, key, mode, srv=None, f="get", index=0):
        """One GET of `key`; returns (found, value, mindex, X-Consul-Index)
        or None."""
        srv = srv or self.pick()
        q = "" if mode == "default" else mode
        timeout = OP_TIMEOUT
        if index:
            q += ("&" if q else "") + "index=%d&wait=%s" % (index, WAIT)
            timeout = WAIT_TIMEOUT
        fields = dict(f=f, key=key, mode=mode)
        if f == "watch":
            fields["req_index"] = index
        rec, a = self.call(srv, "GET", kv_url(key, q), timeout=timeout,
                           **fields)
        if a.exc is None and a.status in (200, 404):
            try:
                found, value, mindex = parse_entry(a)
            except (ValueError, KeyError, IndexError, TypeError):
                self.h.rec.end(rec, "unknown", err="bad body %r" %
                               a.body[:100])
                return None
            self.h.rec.end(rec, "ok", found=found, value=value,
                           mindex=mindex, index=a.index())
            return found, value, mindex, a.index()
        self.h.rec.end(rec, "fail" if a.exc == "refused" else "unknown",
                       err=a.err())
        return None

    def do_get_default(self):
        self.read(self.h.hot_key(self.rng), "default")

    def do_get_consistent(self):
        self.read(self.h.hot_key(self.rng), "consistent")

    def do_get_stale(self):
        self.read(self.h.hot_key(self.rng), "stale")

    def do_tree(self):
        prefix = self.h.hot_prefix()
        mode = self.rng.choice(["default", "consistent", "consistent",
                                "stale"])
        srv = self.pick()
        q = "" if mode == "default" else mode
        if self.rng.random() < 0.5:
            rec, a = self.call(srv, "GET", kv_url(prefix, "recurse" + (
                "&" + q if q else "")), f="tree", prefix=prefix,
                mode=mode, via="kv")
            ok = a.exc is None and a.status in (200, 404)
            entries = {}
            if ok and a.status == 200:
                try:
                    for e in a.json():
                        entries[e["Key"]] = [unb64(e.get("Value")),
                                             e["ModifyIndex"]]
                except (ValueError, KeyError, TypeError):
                    ok = False
        else:
            body = json.dumps([{"KV": {"Verb": "get-tree",
                                       "Key": prefix}}])
            rec, a = self.call(srv, "PUT", "/v1/txn" + ("?" + q if q
                                                        else ""),
                               body.encode(), f="tree", prefix=prefix,
                               mode=mode, via="txn")
            ok = a.exc is None and a.status == 200
            entries = {}
            if ok:
                try:
                    for r in a.json()["Results"] or []:
                        e = r["KV"]
                        entries[e["Key"]] = [unb64(e.get("Value")),
                                             e["ModifyIndex"]]
                except (ValueError, KeyError, TypeError):
                    ok = False
        if ok:
            self.h.rec.end(rec, "ok", entries=entries, index=a.index())
        else:
            self.h.rec.end(rec, "fail" if a.exc == "refused" else
                           "unknown", err=a.err())


class KVWatcher(Client):
    """Blocking queries on hot keys.  mode "stale": stays on one server
    for a while and follows that server's index (the per-server
    monotonic check); otherwise random servers in default or consistent
    mode, following the largest index seen."""

    def __init__(self, h, name, seed, stale):
        super().__init__(h, name, seed)
        self.stale = stale
        self.srv = None
        self.left = 0
        self.key = None
        self.index = {}

    def step(self):
        key = self.h.hot_key(self.rng) if self.key is None or \
            self.rng.random() < 0.2 or not self.key.startswith(
                self.h.hot_prefix()) else self.key
        self.key = key
        if self.stale:
            if self.left <= 0:
                self.srv, self.left = self.pick(), self.rng.randint(5, 30)
            self.left -= 1
            srv, mode = self.srv, "stale"
            slot = (srv.name, self.h.incs[srv.name], key)
        else:
            srv = self.pick()
            mode = self.rng.choice(["default", "consistent"])
            slot = key
        idx = self.index.get(slot, 0)
        got = KVClient.read(self, key, mode, srv=srv, f="watch",
                            index=max(idx, 1))
        if got is not None:
            self.index[slot] = max(idx, got[3] or 0)
        else:
            self.h.stop.wait(0.05)


# ---- catalog ----------------------------------------------------------------


class ServiceClient(Client):
    """Registers unique instances of SERVICE and deregisters most of them:
    through the agent of one server with a TTL check kept alive by
    heartbeats to that server, or as an external node's service through
    /v1/catalog/register on any server."""

    def __init__(self, h, name, seed, agent):
        super().__init__(h, name, seed)
        self.agent = agent

    def step(self):
        sid = "%s-%s" % ("a" if self.agent else "c", self.unique())
        srv = self.pick()
        if self.agent:
            body = {"Name": SERVICE, "ID": sid, "Port": 1000 + self.seq,
                    "Check": {"TTL": "%ds" % self.h.ttl,
                              "Status": "passing"}}
            rec, a = self.call(srv, "PUT", "/v1/agent/service/register",
                               json.dumps(body).encode(), f="reg",
                               kind="agent", sid=sid, service=SERVICE)
        else:
            body = {"Node": EXT_NODE, "Address": "127.0.0.9",
                    "Service": {"ID": sid, "Service": SERVICE,
                                "Port": 1000 + self.seq}}
            rec, a = self.call(srv, "PUT", "/v1/catalog/register",
                               json.dumps(body).encode(), f="reg",
                               kind="catalog", sid=sid, service=SERVICE)
        out = write_outcome(a)
        self.h.rec.end(rec, out, err=a.err() if out != "ok" else "")
        if out == "fail":
            self.h.stop.wait(0.2)
            return
        # Keep it alive for a while.
        for _ in range(self.rng.randint(2, 8)):
            if self.h.stop.wait(self.rng.uniform(0.3, 0.8)):
                return
            if self.agent:
                r2, a2 = self.call(srv, "PUT", "/v1/agent/check/pass/"
                                   "service:%s" % sid, f="pass", sid=sid)
                o2 = write_outcome(a2)
                self.h.rec.end(r2, o2, err=a2.err() if o2 != "ok" else "")
        if self.rng.random() < 0.25:
            return                       # leave it registered
        if self.agent:
            rec, a = self.call(srv, "PUT", "/v1/agent/service/deregister/"
                               + sid, f="dereg", kind="agent", sid=sid)
        else:
            body = {"Node": EXT_NODE, "ServiceID": sid}
            srv = self.pick()
            rec, a = self.call(srv, "PUT", "/v1/catalog/deregister",
                               json.dumps(body).encode(), f="dereg",
                               kind="catalog", sid=sid)
        out = write_outcome(a)
        self.h.rec.end(rec, out, err=a.err() if out != "ok" else "")


class ServiceWatcher(Client):
    """Reads of SERVICE's instances: /v1/catalog/service (plain reads) and
    /v1/health/service (blocking queries), in every mode; stale ones stay
    on one server for a while (per-server monotonic check)."""

    def __init__(self, h, name, seed):
        super().__init__(h, name, seed)
        self.index = {}
        self.srv, self.left = None, 0

    def step(self):
        mode = self.rng.choice(["default", "consistent", "stale"])
        endpoint = self.rng.choice(["catalog", "health", "health"])
        if mode == "stale":
            if self.left <= 0:
                self.srv, self.left = self.pick(), self.rng.randint(5, 20)
            self.left -= 1
            srv = self.srv
            slot = (srv.name, self.h.incs[srv.name], endpoint)
        else:
            srv, slot = self.pick(), endpoint
        q = [] if mode == "default" else [mode]
        timeout = OP_TIMEOUT
        req_index = 0
        if endpoint == "health":
            req_index = max(1, self.index.get(slot, 0))
            q.append("index=%d&wait=%s" % (req_index, WAIT))
            timeout = WAIT_TIMEOUT
        path = "/v1/%s/service/%s" % (endpoint, SERVICE) + (
            "?" + "&".join(q) if q else "")
        rec, a = self.call(srv, "GET", path, timeout=timeout, f="svc-read",
                           endpoint=endpoint, service=SERVICE, mode=mode,
                           req_index=req_index)
        if a.exc is None and a.status == 200:
            try:
                items = a.json()
                if endpoint == "catalog":
                    ids = [e["ServiceID"] for e in items]
                    status = {}
                else:
                    ids = [e["Service"]["ID"] for e in items]
                    status = {}
                    for e in items:
                        for c in e.get("Checks") or []:
                            if c.get("ServiceID"):
                                status[e["Service"]["ID"]] = c["Status"]
            except (ValueError, KeyError, TypeError):
                self.h.rec.end(rec, "unknown", err="bad body %r" %
                               a.body[:100])
                return
            self.h.rec.end(rec, "ok", ids=sorted(ids), index=a.index(),
                           statuses=status)
            if a.index() is not None:
                self.index[slot] = max(self.index.get(slot, 0), a.index())
        else:
            self.h.rec.end(rec, "fail" if a.exc == "refused" else
                           "unknown", err=a.err())
            self.h.stop.wait(0.05)

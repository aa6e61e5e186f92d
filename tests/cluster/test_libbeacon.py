"""libbeacon (issue #6) against real beacond servers, through a small
driver program (tests/cluster/libbeacon_driver.c, built with the
sanitizers): the KV, service and health calls; failover to another server
when one is killed; all servers stopped -> reads answered from the disk
cache and flagged stale; restart -> watches resume and deliver what changed
while they were down; weighted picking; TTL heartbeats; and the example
program of client/examples/.

Run with Debian's interpreter:
    BEACOND=$PWD/build/san/beacond /usr/bin/python3 -m pytest -q \
        -p no:cacheprovider tests/cluster/test_libbeacon.py
The driver is $BEACON_DRIVER (default build/san/tests/cluster/
libbeacon_driver), the example $BEACON_EXAMPLE (default
build/examples/example-service).
"""

import collections
import json
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

pytest.register_assert_rewrite("cluster_util")
from cluster_util import kv_path, wait_until  # noqa: E402

pytest_plugins = ["cluster_util"]

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(os.environ.get(
    "BEACON_DRIVER",
    str(REPO / "build" / "san" / "tests" / "cluster" / "libbeacon_driver")))
EXAMPLE = Path(os.environ.get(
    "BEACON_EXAMPLE", str(REPO / "build" / "examples" / "example-service")))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:")
GRACE = 1.5


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BEACON_", "CONSUL_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    env.update(extra)
    return env


class Driver:
    """One libbeacon_driver process: call() sends a command and returns its
    JSON answer; watch events are collected in .events[id]."""

    def __init__(self, tmp_path, addrs, name="d", cache=None, **opts):
        assert DRIVER.is_file(), (
            "build the driver: make build/san/tests/cluster/libbeacon_driver")
        cmd = [str(DRIVER), "-addrs", addrs]
        if cache is not None:
            cmd += ["-cache", str(cache)]
        opts.setdefault("timeout_ms", 8000)
        opts.setdefault("backoff_min_ms", 100)
        opts.setdefault("backoff_max_ms", 1000)
        for k, v in opts.items():
            cmd += ["-" + k.replace("_", "-"), str(v)]
        self.stderr_path = tmp_path / ("%s.stderr" % name)
        self.err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err,
                                     env=clean_env())
        self.answers = queue.Queue()
        self.events = collections.defaultdict(list)
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        assert self.answers.get(timeout=10)["op"] == "ready"

    def _read(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            if msg.get("event"):
                with self.lock:
                    self.events[msg["id"]].append(msg)
            else:
                self.answers.put(msg)

    def call(self, *words, timeout=30):
        line = " ".join(urllib.parse.quote(str(w), safe="") or "%"
                        for w in words)
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        try:
            ans = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("driver: no answer to %r" % (words,))
        assert ans["op"] == words[0], (words, ans)
        return ans

    def watch_events(self, wid):
        with self.lock:
            return list(self.events[wid])

    def wait_events(self, wid, n, timeout=20):
        wait_until(lambda: len(self.watch_events(wid)) >= n, timeout,
                   "%d events of watch %s (have %r)"
                   % (n, wid, self.watch_events(wid)))
        time.sleep(GRACE)
        ev = self.watch_events(wid)
        assert len(ev) == n, ev
        return ev

    def close(self):
        """quit: stops every watch and heartbeat, frees everything; the
        process must exit 0 with no sanitizer report."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("the driver did not quit")
        self.reader.join(5)
        self.err.close()
        text = self.stderr_path.read_text()
        for m in SANITIZER_MARKERS:
            assert m not in text, text[-5000:]
        assert rc == 0, (rc, text[-3000:])


@pytest.fixture
def drivers():
    started = []
    yield started
    errors = []
    for d in started:
        try:
            d.close()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        raise AssertionError("\n".join(errors))


def values(ev):
    """{key: value} of a keyprefix watch event's body."""
    import base64
    return {e["Key"]: base64.b64decode(e["Value"] or "").decode()
            for e in json.loads(ev["body"])}


def put(srv, key, data):
    r = srv.put(kv_path(key), data=data)
    assert r.status_code == 200 and r.content == b"true", r


def addrs_of(servers):
    return ",".join(s.http_addr for s in servers)


# ---- the API -----------------------------------------------------------------


def test_kv_calls(cluster_factory, tmp_path, drivers):
    c = cluster_factory(3)
    d = Driver(tmp_path, addrs_of(c.servers))
    drivers.append(d)
    r = d.call("get", "lib/kv/a")
    assert r["rc"] == "ENOTFOUND" and r["index"] >= 1 and not r["stale"]
    assert d.call("put", "lib/kv/a", "one")["rc"] == "OK"
    r = d.call("get", "lib/kv/a")
    assert r["rc"] == "OK" and r["value"] == "one"
    assert r["index"] == r["modify_index"] and r["server"].startswith("http")
    idx = r["modify_index"]
    assert d.call("cas", "lib/kv/a", "two", idx + 5)["rc"] == "ECONFLICT"
    assert d.call("cas", "lib/kv/a", "two", idx)["rc"] == "OK"
    assert d.call("cas", "lib/kv/b", "new", 0)["rc"] == "OK"
    assert d.call("cas", "lib/kv/b", "again", 0)["rc"] == "ECONFLICT"
    assert d.call("put", "lib/kv/dir/c", "3")["rc"] == "OK"
    r = d.call("list", "lib/kv/")
    assert r["items"] == {"lib/kv/a": "two", "lib/kv/b": "new",
                          "lib/kv/dir/c": "3"}
    r = d.call("keys", "lib/kv/", "/")
    assert r["keys"] == ["lib/kv/a", "lib/kv/b", "lib/kv/dir/"]
    assert d.call("list", "lib/none/")["items"] == {}
    assert d.call("keys", "lib/none/", "")["keys"] == []
    b = d.call("get", "lib/kv/b")
    assert d.call("delcas", "lib/kv/b", b["modify_index"] + 1)["rc"] == \
        "ECONFLICT"
    assert d.call("delcas", "lib/kv/b", b["modify_index"])["rc"] == "OK"
    assert d.call("del", "lib/kv/a")["rc"] == "OK"
    assert d.call("deltree", "lib/kv/")["rc"] == "OK"
    assert d.call("list", "lib/kv/")["items"] == {}
    # Values the server refuses come back as errors, not crashes.
    r = d.call("put", "lib//bad", "x")
    assert r["rc"] == "EINVAL" and "//" in r["error"]
    r = d.call("get", "")
    assert r["rc"] == "EINVAL"


# ---- failover ---------------------------------------------------------------------


def test_failover_when_a_server_is_killed(cluster_factory, tmp_path,
                                          drivers):
    c = cluster_factory(3)
    leader = c.wait_leader()
    followers = [s for s in c.servers if s is not leader]
    # The driver starts on a follower (the first address).
    order = [followers[0], leader, followers[1]]
    d = Driver(tmp_path, addrs_of(order), backoff_min_ms=60000,
               backoff_max_ms=60000)
    drivers.append(d)
    assert d.call("put", "lib/fo/k", "1")["rc"] == "OK"
    r = d.call("get", "lib/fo/k")
    assert r["server"] == "http://" + followers[0].http_addr
    assert d.call("watch", "w", "key", "lib/fo/k", "1")["rc"] == "OK"
    d.wait_events("w", 1)

    c.kill(followers[0])                  # kill -9 the one it talks to
    t0 = time.monotonic()
    r = d.call("get", "lib/fo/k")
    assert r["rc"] == "OK" and r["value"] == "1" and not r["stale"], r
    assert r["server"] != "http://" + followers[0].http_addr
    assert time.monotonic() - t0 < 5
    assert d.call("put", "lib/fo/k", "2")["rc"] == "OK"
    ev = d.wait_events("w", 2)            # the watch moved too
    assert json.loads(ev[1]["body"])[0]["Value"] == "Mg=="

    # Now the leader: writes and reads go on through the last server once
    # the two left elect a leader... which they cannot (one of three).
    # Restart the follower first, then kill the leader.
    c.start_server(followers[0])
    c.kill(leader)
    new = c.wait_leader(exclude=[leader])
    assert new is not None
    r = d.call("put", "lib/fo/k", "3")
    assert r["rc"] == "OK", r
    r = d.call("get", "lib/fo/k")
    assert r["rc"] == "OK" and r["value"] == "3" and not r["stale"]
    ev = d.wait_events("w", 3)
    assert json.loads(ev[2]["body"])[0]["Value"] == "Mw=="
    c.start_server(leader)


def test_servers_that_failed_are_skipped_with_backoff(cluster_factory,
                                                      tmp_path, drivers):
    """A dead first address costs one failed connection, then nothing until
    its back-off ends."""
    c = cluster_factory(1)
    srv = c.servers[0]
    dead = "127.0.0.1:1"
    d = Driver(tmp_path, "%s,%s" % (dead, srv.http_addr),
               backoff_min_ms=60000, backoff_max_ms=60000)
    drivers.append(d)
    put(srv, "lib/bo/k", b"v")
    for _ in range(5):
        r = d.call("get", "lib/bo/k")
        assert r["rc"] == "OK" and r["server"] == "http://" + srv.http_addr


# ---- the cache: all servers down ---------------------------------------------------


def test_all_servers_down_then_back(cluster_factory, tmp_path, drivers):
    c = cluster_factory(3)
    cache = tmp_path / "cache"
    ld = c.wait_leader()
    put(ld, "lib/app/config/db", b"pg://a")
    put(ld, "lib/app/config/port", b"80")
    r = ld.put("/v1/agent/service/register",
               data=json.dumps({"Name": "libdb", "ID": "libdb1", "Port": 5432,
                                "Address": "10.0.0.9",
                                "Check": {"TTL": "1h",
                                          "Status": "passing"}}))
    assert r.status_code == 200, r

    d = Driver(tmp_path, addrs_of(c.servers), cache=cache, wait_ms=2000,
               timeout_ms=4000)
    drivers.append(d)
    # Fresh reads fill the cache.
    r = d.call("get", "lib/app/config/db")
    assert r["rc"] == "OK" and not r["stale"] and not r["cached"]
    assert d.call("list", "lib/app/config/")["items"] == {
        "lib/app/config/db": "pg://a", "lib/app/config/port": "80"}
    h = d.call("health", "libdb", 1)
    assert [i["id"] for i in h["instances"]] == ["libdb1"]
    assert d.call("get", "lib/app/missing")["rc"] == "ENOTFOUND"
    assert d.call("keys", "lib/app/", "/")["keys"] == ["lib/app/config/"]
    assert d.call("watch", "cfg", "keyprefix", "lib/app/config/",
                  "1")["rc"] == "OK"
    ev = d.wait_events("cfg", 1)
    assert not ev[0]["stale"]
    assert values(ev[0]) == {"lib/app/config/db": "pg://a",
                             "lib/app/config/port": "80"}
    assert any(p.name.endswith(".cache") for p in cache.iterdir())

    # Every server stops.
    for s in c.servers:
        c.stop(s)
    time.sleep(1.0)
    r = d.call("get", "lib/app/config/db")
    assert r["rc"] == "OK" and r["value"] == "pg://a", r
    assert r["stale"] and r["cached"] and r["server"] == ""
    assert r["age_ms"] >= 0
    r = d.call("list", "lib/app/config/")
    assert r["rc"] == "OK" and r["stale"] and len(r["items"]) == 2
    r = d.call("health", "libdb", 1)
    assert r["rc"] == "OK" and r["stale"]
    assert r["instances"][0]["address"] == "10.0.0.9"
    r = d.call("get", "lib/app/missing")     # a cached 404 is still a 404
    assert r["rc"] == "ENOTFOUND" and r["stale"]
    assert d.call("keys", "lib/app/", "/")["stale"]
    r = d.call("get", "lib/app/never-read")
    assert r["rc"] == "EUNAVAILABLE" and not r["stale"]
    assert d.call("put", "lib/app/x", "1")["rc"] == "EUNAVAILABLE"
    assert len(d.watch_events("cfg")) == 1  # an outage is not a change

    # An application started during the outage finds its configuration on
    # disk (its first watch event is flagged stale).
    d2 = Driver(tmp_path, addrs_of(c.servers), name="d2", cache=cache,
                wait_ms=2000, timeout_ms=4000)
    drivers.append(d2)
    r = d2.call("get", "lib/app/config/db")
    assert r["rc"] == "OK" and r["value"] == "pg://a" and r["stale"]
    assert d2.call("watch", "cfg2", "keyprefix", "lib/app/config/",
                   "1")["rc"] == "OK"
    ev2 = d2.wait_events("cfg2", 1)
    assert ev2[0]["stale"] and values(ev2[0])["lib/app/config/port"] == "80"

    # Back: the first answers may come before the watches reconnect (they
    # are in back-off); either way each delivers the change exactly once.
    for s in c.servers:
        c.start_server(s, wait=False)
    ld = c.wait_ready()
    put(ld, "lib/app/config/port", b"8080")
    for drv, wid in ((d, "cfg"), (d2, "cfg2")):
        ev = drv.wait_events(wid, 2, timeout=30)
        assert not ev[1]["stale"]
        assert values(ev[1]) == {"lib/app/config/db": "pg://a",
                                 "lib/app/config/port": "8080"}
    r = d.call("get", "lib/app/config/port")
    assert r["value"] == "8080" and not r["stale"] and not r["cached"]


def test_watch_delivers_what_changed_while_its_server_was_down(
        cluster_factory, tmp_path, drivers):
    """Deterministic form of "the change made while they were down": the
    watch knows one server only; it is stopped, the key changes through the
    others, the server comes back, the watch resumes from its index and
    delivers the change, once."""
    c = cluster_factory(3)
    only = c.servers[2]
    ld = c.wait_leader()
    put(ld, "lib/down/k", b"before")
    d = Driver(tmp_path, only.http_addr, cache=tmp_path / "cache",
               wait_ms=2000)
    drivers.append(d)
    assert d.call("watch", "w", "key", "lib/down/k", "1")["rc"] == "OK"
    d.wait_events("w", 1)
    c.stop(only)
    ld = c.wait_leader(among=[s for s in c.servers if s is not only])
    put(ld, "lib/down/k", b"during")
    put(ld, "lib/down/other", b"x")
    time.sleep(2.0)
    assert len(d.watch_events("w")) == 1  # it cannot know yet
    r = d.call("get", "lib/down/k")
    assert r["stale"] and r["value"] == "before"
    c.start_server(only)
    ev = d.wait_events("w", 2, timeout=30)
    assert json.loads(ev[1]["body"])[0]["Value"] == "ZHVyaW5n"  # "during"
    assert not ev[1]["stale"]


def test_watch_fires_once_per_change(cluster_factory, tmp_path, drivers):
    c = cluster_factory(1)
    srv = c.servers[0]
    d = Driver(tmp_path, srv.http_addr, wait_ms=500)
    drivers.append(d)
    put(srv, "lib/w/k", b"a")
    assert d.call("watch", "k", "key", "lib/w/k", "0")["rc"] == "OK"
    assert d.call("watch", "p", "keyprefix", "lib/w/", "0")["rc"] == "OK"
    assert d.call("watch", "s", "services", "", "0")["rc"] == "OK"
    time.sleep(2.0)                       # four timeouts: nothing
    assert d.watch_events("k") == [] and d.watch_events("p") == []
    put(srv, "lib/w/k", b"b")
    ev = d.wait_events("k", 1)
    assert json.loads(ev[0]["body"])[0]["Value"] == "Yg=="
    d.wait_events("p", 1)
    put(srv, "lib/w/k", b"b")             # same value: not a change
    put(srv, "lib/x/k", b"b")             # elsewhere
    time.sleep(1.0)
    d.wait_events("k", 1)
    d.wait_events("p", 1)
    srv.delete(kv_path("lib/w/k"))
    ev = d.wait_events("k", 2)
    assert ev[1]["body"] == "null"
    ev = d.wait_events("p", 2)
    assert ev[1]["body"] == "[]"
    assert d.watch_events("s") == []
    r = srv.put("/v1/agent/service/register", data='{"Name":"libw"}')
    assert r.status_code == 200
    ev = d.wait_events("s", 1)
    assert "libw" in json.loads(ev[0]["body"])
    assert d.call("unwatch", "k")["rc"] == "OK"
    put(srv, "lib/w/k", b"c")
    d.wait_events("p", 3)
    assert len(d.watch_events("k")) == 2  # stopped: never called again


# ---- services: heartbeats, health, picking -----------------------------------------


def test_heartbeat_keeps_a_ttl_check_passing(cluster_factory, tmp_path,
                                             drivers):
    c = cluster_factory(1)
    srv = c.servers[0]
    d = Driver(tmp_path, srv.http_addr)
    drivers.append(d)
    assert d.call("hbstart", "libhb", "libhb1", 7000, 1500)["rc"] == "OK"

    def passing():
        h = d.call("health", "libhb", 1)
        return [i["id"] for i in h["instances"]]
    assert passing() == ["libhb1"]
    time.sleep(4.0)                       # > 2 TTLs
    assert passing() == ["libhb1"]
    # Removed behind its back: the heartbeat registers it again.
    assert srv.put("/v1/agent/service/deregister/libhb1").status_code == 200
    wait_until(lambda: passing() == ["libhb1"], 10, "re-registration")
    assert d.call("hbstop", "libhb1", 1)["rc"] == "OK"
    assert d.call("health", "libhb", 0)["instances"] == []
    # Without heartbeats a TTL check goes critical.
    assert d.call("register", "libttl", "libttl1", 1, 1000)["rc"] == "OK"
    assert d.call("check", "service:libttl1", "pass")["rc"] == "OK"
    assert [i["id"] for i in d.call("health", "libttl", 1)["instances"]] \
        == ["libttl1"]
    wait_until(lambda: d.call("health", "libttl", 1)["instances"] == [], 10,
               "the TTL to expire")
    r = d.call("check", "nosuch", "pass")
    assert r["rc"] == "ESERVER" and "TTL" in r["error"]
    assert d.call("dereg", "libttl1")["rc"] == "OK"


def test_health_and_weighted_picks(cluster_factory, tmp_path, drivers):
    c = cluster_factory(1)
    srv = c.servers[0]
    for sid, w, status in (("a", 5, "passing"), ("b", 1, "passing"),
                           ("c", 1, "passing"), ("x", 100, "critical"),
                           ("z", 3, "warning")):
        body = {"Name": "libpick", "ID": sid, "Port": 1,
                "Weights": {"Passing": w, "Warning": 2},
                "Check": {"TTL": "1h", "Status": status}}
        r = srv.put("/v1/agent/service/register", data=json.dumps(body))
        assert r.status_code == 200, r
    d = Driver(tmp_path, srv.http_addr)
    drivers.append(d)
    h = d.call("health", "libpick", 0)
    inst = {i["id"]: i for i in h["instances"]}
    assert set(inst) == {"a", "b", "c", "x", "z"}
    assert inst["a"]["weight"] == 5 and inst["z"]["weight"] == 2
    assert inst["x"]["status"] == 2 and inst["z"]["status"] == 1
    assert sorted(i["id"] for i in d.call("health", "libpick", 1)[
        "instances"]) == ["a", "b", "c"]
    # Smooth weighted round-robin: a 5:1:1:2 cycle of 9, critical never.
    picks = d.call("pick", "libpick", "rr", 18)["picks"]
    assert "x" not in picks
    for cycle in (picks[:9], picks[9:]):
        assert collections.Counter(cycle) == {"a": 5, "z": 2, "b": 1,
                                              "c": 1}, picks
    assert picks[:3] != ["a", "a", "a"]   # interleaved, not bunched
    # The state survives fresh lookups (kept in the client).
    more = d.call("pick", "libpick", "rr", 9)["picks"]
    assert collections.Counter(more) == {"a": 5, "z": 2, "b": 1, "c": 1}
    # Random by weight: roughly proportional.
    rnd = collections.Counter(d.call("pick", "libpick", "random",
                                     900)["picks"])
    assert "x" not in rnd and sum(rnd.values()) == 900
    assert 400 <= rnd["a"] <= 600 and 50 <= rnd["b"] <= 160
    assert d.call("pick", "nosuch", "rr", 2)["picks"] == [None, None]


# ---- the example program ------------------------------------------------------------


def test_example_program(cluster_factory, tmp_path):
    assert EXAMPLE.is_file(), "build it: make build/examples/example-service"
    c = cluster_factory(3)
    ld = c.wait_leader()
    put(ld, "exapp/config/greeting", b"hello")
    out = tmp_path / "example.out"
    with open(out, "wb") as o:
        p = subprocess.Popen(
            [str(EXAMPLE), "-name", "exapp", "-port", "8080",
             "-cache-dir", str(tmp_path / "cache"), "-ttl-ms", "3000",
             "-depends", "exapp"],
            stdout=o, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=clean_env(BEACON_HTTP_ADDR=addrs_of(c.servers)))
    try:
        wait_until(lambda: "exapp/config/greeting = hello" in
                   out.read_text() and "using exapp at" in out.read_text(),
                   15, "the example's configuration and lookup")
        text = out.read_text()
        assert "registered exapp" in text
        assert "using exapp at" in text and ":8080" in text
        wait_until(lambda: [e["Service"]["ID"] for e in ld.get(
            "/v1/health/service/exapp?passing").json()] == ["exapp"], 10,
                   "the example's check to pass")
        put(ld, "exapp/config/greeting", b"bonjour")
        wait_until(lambda: "exapp/config/greeting = bonjour" in
                   out.read_text(), 15, "the change")
        assert "config changed (index" in out.read_text()
        time.sleep(4.0)                   # heart-beats beyond its TTL
        assert [e["Service"]["ID"] for e in ld.get(
            "/v1/health/service/exapp?passing").json()] == ["exapp"]
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
        assert "stopping on signal" in out.read_text()
        assert ld.get("/v1/health/service/exapp").json() == []
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)

"""Sessions, locks and ephemeral keys (issue #11; CONSUL-API.md §1, §6).

Real beacond processes; contenders for a lock are real processes (Debian's
python3) that the test kills with SIGKILL.

    BEACOND=$PWD/build/san/beacond /usr/bin/python3 -m pytest -q -s \
        -p no:cacheprovider tests/cluster/test_sessions.py
"""

import base64
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import consul
import pytest

pytest.register_assert_rewrite("cluster_util")
from cluster_util import new_session, wait_until  # noqa: E402

pytest_plugins = ["cluster_util"]

TTL = "10s"          # the smallest TTL Consul (and Beacon) accept


def create(srv, body=None, status=200):
    r = srv.put("/v1/session/create", json=body) if body is not None \
        else srv.put("/v1/session/create")
    assert r.status_code == status, (r.status_code, r.text)
    return r.json()["ID"] if status == 200 else r.text


def kv_entry(srv, key, **params):
    r = srv.get("/v1/kv/" + key, params=params)
    assert r.status_code in (200, 404), r.text
    return r.json()[0] if r.status_code == 200 else None


def acquire(srv, key, sid, value=b"x", verb="acquire"):
    r = srv.put("/v1/kv/%s?%s=%s" % (key, verb, sid), data=value)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def session_ids(srv):
    r = srv.get("/v1/session/list")
    assert r.status_code == 200, r.text
    return {s["ID"] for s in r.json()}


def wait_node_ready(srv):
    """The server's own node and serfHealth are in the catalog (sessions
    default to that check)."""
    def ok():
        r = srv.get("/v1/health/node/" + srv.name)
        return r.status_code == 200 and any(
            c["CheckID"] == "serfHealth" and c["Status"] == "passing"
            for c in r.json())
    wait_until(ok, 10, "serfHealth of " + srv.name)


# ---- the API ------------------------------------------------------------------


def test_session_api_and_locks(node):
    wait_node_ready(node)
    sid = create(node, {"Name": "api", "TTL": TTL, "LockDelay": "1s",
                        "Behavior": "release"})
    r = node.get("/v1/session/info/" + sid)
    assert r.status_code == 200 and int(r.headers["X-Consul-Index"]) >= 1
    info = r.json()
    assert len(info) == 1
    s = info[0]
    assert s["ID"] == sid and s["Name"] == "api" and s["Node"] == node.name
    assert s["TTL"] == "10s" and s["LockDelay"] == 1_000_000_000
    assert s["Behavior"] == "release" and s["NodeChecks"] == ["serfHealth"]
    assert node.get("/v1/session/info/" + sid.replace(sid[0], "0" if sid[0] != "0" else "1", 1)).json() == []
    assert sid in {x["ID"] for x in node.get("/v1/session/node/" + node.name).json()}

    # An empty body is a session with every default (python-consul).
    sid2 = create(node)
    s2 = node.get("/v1/session/info/" + sid2).json()[0]
    assert s2["LockDelay"] == 15_000_000_000 and s2["TTL"] == ""

    # acquire: true for the first session, false for the other, and the
    # holder may write again without bumping LockIndex.
    assert acquire(node, "lk", sid, b"one") is True
    assert acquire(node, "lk", sid2, b"two") is False
    e = kv_entry(node, "lk")
    assert e["Session"] == sid and e["LockIndex"] == 1
    assert base64.b64decode(e["Value"]) == b"one"
    assert acquire(node, "lk", sid, b"one again") is True
    assert kv_entry(node, "lk")["LockIndex"] == 1
    # A plain PUT keeps the lock; release by another session fails.
    assert node.put("/v1/kv/lk", data=b"plain").json() is True
    assert kv_entry(node, "lk")["Session"] == sid
    assert acquire(node, "lk", sid2, verb="release") is False
    assert acquire(node, "lk", sid, b"released", verb="release") is True
    e = kv_entry(node, "lk")
    assert "Session" not in e and e["LockIndex"] == 1
    # A voluntary release starts no lock-delay.
    assert acquire(node, "lk", sid2, b"two") is True
    assert kv_entry(node, "lk")["LockIndex"] == 2

    # Bad input: 400 and nothing changes.
    before = node.get("/v1/session/list").headers["X-Consul-Index"]
    for body in ({"TTL": "5s"}, {"TTL": "25h"}, {"Behavior": "explode"},
                 {"LockDelay": "2m"}, {"TTL": 12}, {"Checks": "serfHealth"}):
        r = node.put("/v1/session/create", json=body)
        assert r.status_code == 400, (body, r.status_code, r.text)
    r = node.put("/v1/session/create", data=b"{nope")
    assert r.status_code == 400
    r = node.put("/v1/session/create", json={"Node": "no-such-node"})
    assert r.status_code == 500 and "Missing node registration" in r.text
    r = node.put("/v1/session/create", json={"Checks": ["nocheck"]})
    assert r.status_code == 500 and "nocheck" in r.text
    assert node.get("/v1/session/list").headers["X-Consul-Index"] == before
    r = node.put("/v1/kv/lk?acquire=not-a-session", data=b"x")
    assert r.status_code == 400
    r = node.put("/v1/kv/lk?acquire=%s" % ("0" * 8 + "-0000-0000-0000-" + "0" * 12),
                 data=b"x")
    assert r.status_code == 500 and "invalid session" in r.text

    # renew: the session, or 404 with Consul's text.
    r = node.put("/v1/session/renew/" + sid)
    assert r.status_code == 200 and r.json()[0]["ID"] == sid
    # destroy: true, and the lock it held is released.
    assert node.put("/v1/session/destroy/" + sid2).json() is True
    e = kv_entry(node, "lk")
    assert "Session" not in e
    r = node.put("/v1/session/renew/" + sid2)
    assert r.status_code == 404
    assert r.text.strip() == "Session id '%s' not found" % sid2

    # txn: lock, check-session, unlock.
    ops = [{"KV": {"Verb": "lock", "Key": "tx", "Value": "dg==",
                   "Session": sid}},
           {"KV": {"Verb": "check-session", "Key": "tx", "Session": sid}}]
    r = node.put("/v1/txn", json=ops)
    assert r.status_code == 200, r.text
    assert kv_entry(node, "tx")["Session"] == sid
    r = node.put("/v1/txn", json=[{"KV": {"Verb": "check-session",
                                          "Key": "tx", "Session": sid2}}])
    assert r.status_code == 409
    r = node.put("/v1/txn", json=[{"KV": {"Verb": "unlock", "Key": "tx",
                                          "Session": sid}}])
    assert r.status_code == 200
    assert "Session" not in kv_entry(node, "tx")


def test_python_consul_sessions(node):
    wait_node_ready(node)
    c = consul.Consul(host="127.0.0.1", port=int(node.url.rsplit(":", 1)[1]))
    sid = c.session.create(name="py", ttl=10, lock_delay=0)
    assert c.kv.put("pylock", "v", acquire=sid) is True
    _, e = c.kv.get("pylock")
    assert e["Session"] == sid
    _, info = c.session.info(sid)
    assert info["Name"] == "py"
    assert c.session.renew(sid)["ID"] == sid
    assert c.session.destroy(sid) is True
    _, e = c.kv.get("pylock")
    assert "Session" not in e
    with pytest.raises(consul.NotFound):
        c.session.renew(sid)


def test_blocking_query_on_sessions(node):
    wait_node_ready(node)
    r = node.get("/v1/session/list")
    idx = int(r.headers["X-Consul-Index"])
    out = {}

    def watch():
        t0 = time.monotonic()
        rr = node.get("/v1/session/list?index=%d&wait=10s" % idx, timeout=20)
        out["dt"] = time.monotonic() - t0
        out["r"] = rr
    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.5)
    # A KV write elsewhere does not wake it; a new session does.
    assert node.put("/v1/kv/unrelated", data=b"1").json() is True
    time.sleep(0.5)
    assert t.is_alive()
    sid = create(node)
    t.join(15)
    assert out["dt"] < 5, out
    assert int(out["r"].headers["X-Consul-Index"]) > idx
    assert sid in {s["ID"] for s in out["r"].json()}


def test_behavior_delete_removes_ephemeral_keys(node):
    wait_node_ready(node)
    sid = create(node, {"Behavior": "delete", "LockDelay": "0s"})
    assert acquire(node, "eph/a", sid) is True
    assert acquire(node, "eph/b", sid) is True
    assert node.put("/v1/kv/eph/keep", data=b"k").json() is True
    assert node.put("/v1/session/destroy/" + sid).json() is True
    assert kv_entry(node, "eph/a") is None
    assert kv_entry(node, "eph/b") is None
    assert kv_entry(node, "eph/keep") is not None


def test_lock_delay_after_invalidation(node):
    wait_node_ready(node)
    a = create(node, {"LockDelay": "3s"})
    b = create(node, {"LockDelay": "0s"})
    assert acquire(node, "ld", a) is True
    assert node.put("/v1/session/destroy/" + a).json() is True
    t0 = time.monotonic()
    assert acquire(node, "ld", b) is False        # in lock-delay
    wait_until(lambda: acquire(node, "ld", b) is True, 10,
               "lock-delay to pass", interval=0.1)
    waited = time.monotonic() - t0
    print("lock-delay 3s: acquired after %.2f s" % waited)
    assert 2.0 <= waited <= 6.0, waited


def test_session_invalidated_when_its_check_fails(node):
    wait_node_ready(node)
    r = node.put("/v1/agent/service/register",
                 json={"Name": "worker", "ID": "w1", "Check": {"TTL": "2s"}})
    assert r.status_code == 200
    assert node.put("/v1/agent/check/pass/service:w1").status_code == 200
    sid = create(node, {"ServiceChecks": [{"ID": "service:w1"}],
                        "LockDelay": "0s"})
    s = node.get("/v1/session/info/" + sid).json()[0]
    assert s["ServiceChecks"] == [{"ID": "service:w1", "Namespace": ""}]
    assert acquire(node, "job", sid) is True
    # A critical check refuses new sessions ...
    # ... and, once the TTL lapses, invalidates this one.
    wait_until(lambda: sid not in session_ids(node), 15,
               "session invalidated by its critical check")
    assert "Session" not in kv_entry(node, "job")
    r = node.put("/v1/session/create",
                 json={"ServiceChecks": [{"ID": "service:w1"}]})
    assert r.status_code == 500 and "critical" in r.text


def test_ttl_expiry_bounds(node):
    """Never before the TTL, at the latest after 2 x TTL."""
    wait_node_ready(node)
    t0 = time.monotonic()
    sid = create(node, {"TTL": TTL, "LockDelay": "0s"})
    assert acquire(node, "ttl-lock", sid) is True
    wait_until(lambda: sid not in session_ids(node), 25,
               "session to expire", interval=0.1)
    gone = time.monotonic() - t0
    print("TTL 10s: session gone after %.2f s" % gone)
    assert 10.0 <= gone <= 20.5, gone
    assert "Session" not in kv_entry(node, "ttl-lock")


# ---- contenders as processes ----------------------------------------------------

CONTENDER = textwrap.dedent(r"""
    import json, sys, time, urllib.request
    url, key, name = sys.argv[1], sys.argv[2], sys.argv[3]
    def call(method, path, body=None):
        req = urllib.request.Request(url + path, method=method,
                                     data=body if body is not None else b"")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read() or b"null")
    sid = call("PUT", "/v1/session/create",
               json.dumps({"Name": name, "TTL": "10s",
                           "LockDelay": "1s"}).encode())["ID"]
    print("SESSION", sid, flush=True)
    held = False
    last_renew = time.monotonic()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if time.monotonic() - last_renew > 3:
            call("PUT", "/v1/session/renew/" + sid)
            last_renew = time.monotonic()
        if not held:
            try:
                held = call("PUT", "/v1/kv/%s?acquire=%s" % (key, sid),
                            name.encode()) is True
            except Exception:
                held = False
            if held:
                print("HOLD", time.time(), flush=True)
        time.sleep(0.2)
""")


def start_contender(srv, key, name):
    p = subprocess.Popen(
        [sys.executable, "-c", CONTENDER, srv.url, key, name],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    assert line and line[0] == "SESSION", (line, p.stderr.read())
    return p, line[1]


def test_two_contenders_one_lock(cluster_factory):
    cluster = cluster_factory(3)
    for s in cluster.servers:
        wait_node_ready(s)
    followers = [s for s in cluster.servers if s is not cluster.leader()]
    key = "service/leader"
    pa, sa = start_contender(followers[0], key, "a")
    pb, sb = start_contender(followers[1], key, "b")
    procs = {sa: pa, sb: pb}
    try:
        # Exactly one holds it, and it is one of the two.
        holder = wait_until(
            lambda: (kv_entry(followers[0], key) or {}).get("Session"),
            10, "a holder")
        assert holder in (sa, sb)
        other = sb if holder == sa else sa
        lock_index = kv_entry(followers[0], key)["LockIndex"]
        samples = 0
        t_end = time.monotonic() + 3
        while time.monotonic() < t_end:
            e = kv_entry(followers[1], key, stale="")
            assert e["Session"] == holder, e
            samples += 1
            time.sleep(0.05)
        # Kill the holder: its session expires (1.5 x TTL after its last
        # renewal), lock-delay (1s) passes, the other takes over.
        t_kill = time.monotonic()
        procs[holder].send_signal(signal.SIGKILL)
        procs[holder].wait(5)
        seen = set()

        def taken():
            e = kv_entry(followers[0], key)
            seen.add(e.get("Session"))
            assert e.get("Session") in (holder, other, None), e
            return e.get("Session") == other
        wait_until(taken, 30, "the other contender to take the lock",
                   interval=0.1)
        took = time.monotonic() - t_kill
        e = kv_entry(followers[0], key)
        assert e["LockIndex"] == lock_index + 1
        print("lock handover after kill -9 of the holder: %.2f s "
              "(TTL 10s, lock-delay 1s), %d samples with one holder"
              % (took, samples))
        assert 10.0 <= took <= 25.0, took
    finally:
        for p in (pa, pb):
            if p.poll() is None:
                p.kill()
                p.wait(5)
            p.stdout.close()
            p.stderr.close()


def test_leader_failover_invalidates_no_live_session(cluster_factory):
    cluster = cluster_factory(3)
    for s in cluster.servers:
        wait_node_ready(s)
    leader = cluster.leader()
    followers = [s for s in cluster.servers if s is not leader]
    live = [create(followers[i % 2], {"TTL": TTL, "LockDelay": "0s"})
            for i in range(20)]
    idle = create(followers[0], {"TTL": TTL, "LockDelay": "0s"})
    for i, sid in enumerate(live):
        assert acquire(followers[i % 2], "fo/%d" % i, sid) is True
    stop = threading.Event()
    renew_errors = []

    def renewer():
        s = new_session()
        try:
            while not stop.is_set():
                for i, sid in enumerate(live):
                    srv = followers[i % 2]
                    try:
                        r = s.put(srv.url + "/v1/session/renew/" + sid,
                                  timeout=3)
                        if r.status_code == 404:
                            renew_errors.append(sid)
                    except Exception:
                        pass  # the failover: retried next round
                stop.wait(2)
        finally:
            s.close()
    t = threading.Thread(target=renewer)
    t.start()
    try:
        time.sleep(1)
        t_kill = time.monotonic()
        cluster.kill(leader)
        cluster.wait_leader(among=followers)
        print("new leader after %.2f s" % (time.monotonic() - t_kill))
        # Well past the TTL: live sessions stay, the idle one goes.
        wait_until(lambda: idle not in session_ids(followers[0]), 30,
                   "the idle session to expire")
        time.sleep(3)
        ids = session_ids(followers[0])
        lost = [sid for sid in live if sid not in ids]
        print("after failover: %d of %d renewed sessions alive, idle one "
              "expired" % (len(live) - len(lost), len(live)))
        assert not lost and not renew_errors, (lost, renew_errors)
        for i, sid in enumerate(live):
            assert kv_entry(followers[0], "fo/%d" % i)["Session"] == sid
    finally:
        stop.set()
        t.join(10)


def test_kv_ttl_extension(node):
    """PUT ?ttl= (Beacon's extension): the key vanishes 1.5 x TTL after its
    last refresh, never before the TTL; a refresh is the same PUT."""
    wait_node_ready(node)
    assert node.put("/v1/kv/eph/a?ttl=5s", data=b"x").status_code == 400
    assert node.put("/v1/kv/eph/a?ttl=10s&cas=0",
                    data=b"x").status_code == 400
    t0 = time.monotonic()
    r = node.put("/v1/kv/eph/a?ttl=10s", data=b"one")
    assert r.status_code == 200 and r.json() is True, r.text
    assert node.put("/v1/kv/eph/b?ttl=10s", data=b"kept").json() is True
    sessions = node.get("/v1/session/list").json()
    assert {s["Name"] for s in sessions} == {"kv-ttl:eph/a", "kv-ttl:eph/b"}
    # Refresh b every 3 s for 20 s; a is left alone.
    deadline = time.monotonic() + 20
    a_gone = None
    while time.monotonic() < deadline:
        assert node.put("/v1/kv/eph/b?ttl=10s", data=b"kept").json() is True
        if a_gone is None and kv_entry(node, "eph/a") is None:
            a_gone = time.monotonic() - t0
        time.sleep(3)
    assert a_gone is not None and 10.0 <= a_gone <= 20.5, a_gone
    e = kv_entry(node, "eph/b")
    assert e is not None and base64.b64decode(e["Value"]) == b"kept"
    # Only one session per key, however many refreshes.
    names = [s["Name"] for s in node.get("/v1/session/list").json()]
    assert names == ["kv-ttl:eph/b"], names
    print("ttl key without refresh gone after %.1f s" % a_gone)

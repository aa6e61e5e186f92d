"""Health checks (issue #4): TTL checks through python3-consul 0.7.1, the
reaper (DeregisterCriticalServiceAfter), HTTP and TCP checks against
targets the test controls, TTL heartbeats across a leader failover, and
blocking queries on /v1/health/service that wake for their own service
only.

What the server must do: CONSUL-API.md §2, §3, §5, §10.1, §10.3, and the
decisions of issue #4:
  * each server is the agent of its own node (--node name);
  * TTL checks start critical unless Status is given; pass/warn/fail set
    Status and Output (= note); no heartbeat within the TTL -> critical,
    Output "TTL expired"; pass/warn/fail/update of an unknown or non-TTL
    check -> 500 `CheckID "<id>" does not have associated TTL`;
  * a heartbeat that changes nothing costs no Raft entry;
  * re-registering keeps the checks' status unless Status is given;
    ?replace-existing-checks drops the checks not in the new registration;
  * DeregisterCriticalServiceAfter is not clamped to 1m; removal happens
    within a second or two after the deadline.

Run with Debian's interpreter:
    BEACOND=$PWD/build/san/beacond /usr/bin/python3 -m pytest -q -s \
        -p no:cacheprovider tests/cluster/test_health_checks.py
(-s shows the measured numbers: latencies, heartbeat counts.)
"""

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import consul
import pytest
import requests

pytest.register_assert_rewrite("cluster_util", "check_targets")
from cluster_util import new_session, wait_until  # noqa: E402
from check_targets import (  # noqa: E402
    HTTPTarget, TCPTarget, agent_check, check_status, checks_by_id,
    get_json, health_service, index_of, put_ok, py_consul, q, register,
    ttl, ttl_ok, wait_self_registered)

pytest_plugins = ["cluster_util"]

SETTLE = 8.0          # s: a state change a check must show "within a few
                      # intervals" (Interval 1s) on a loaded sanitizer build
NO_TTL = 'CheckID "%s" does not have associated TTL'


def wait_status(srv, check_id, status, timeout=SETTLE):
    """Wait until the agent check has `status`; return the check."""
    def cond():
        c = agent_check(srv, check_id)
        return c if c is not None and c["Status"] == status else None
    return wait_until(cond, timeout, "check %s to be %s" % (check_id, status),
                      interval=0.05)


# ---- 1. TTL checks through python-consul, and the reaper --------------------


def test_ttl_lifecycle_python_consul(node):
    c = py_consul(node)
    wait_self_registered(node)
    assert c.agent.service.register(
        "pyweb", service_id="pyweb1", address="127.0.0.1", port=8080,
        tags=["v1", "blue"], check=consul.Check.ttl("2s")) is True

    # Critical until the first pass, so ?passing hides it.
    index, entries = c.health.service("pyweb")
    assert int(index) >= 1
    assert len(entries) == 1, entries
    e = entries[0]
    assert e["Node"]["Node"] == node.name
    assert e["Service"]["ID"] == "pyweb1"
    assert e["Service"]["Service"] == "pyweb"
    assert e["Service"]["Port"] == 8080
    assert sorted(e["Service"]["Tags"]) == ["blue", "v1"]
    chk = checks_by_id(e)
    assert set(chk) == {"serfHealth", "service:pyweb1"}, chk
    assert chk["service:pyweb1"]["Status"] == "critical", chk
    assert chk["service:pyweb1"]["Type"] == "ttl", chk
    assert chk["service:pyweb1"]["ServiceID"] == "pyweb1"
    assert chk["service:pyweb1"]["ServiceName"] == "pyweb"
    assert chk["service:pyweb1"]["Name"] == "Service 'pyweb' check"
    assert chk["serfHealth"]["Status"] == "passing", chk
    assert c.health.service("pyweb", passing=True)[1] == []

    # catalog.service and agent.services agree.
    _, cat = c.catalog.service("pyweb")
    assert [(s["Node"], s["ServiceID"], s["ServiceName"], s["ServicePort"],
             s["ServiceAddress"], sorted(s["ServiceTags"])) for s in cat] == [
        (node.name, "pyweb1", "pyweb", 8080, "127.0.0.1", ["blue", "v1"])]
    svcs = c.agent.services()
    assert svcs["pyweb1"]["Service"] == "pyweb"
    assert svcs["pyweb1"]["ID"] == "pyweb1"
    assert svcs["pyweb1"]["Port"] == 8080
    assert svcs["pyweb1"]["Address"] == "127.0.0.1"
    assert sorted(svcs["pyweb1"]["Tags"]) == ["blue", "v1"]
    assert c.agent.checks()["service:pyweb1"]["Status"] == "critical"

    # The first pass (python-consul sends GET): passing, Output = note.
    assert c.agent.check.ttl_pass("service:pyweb1", "all good") is True
    _, entries = c.health.service("pyweb", passing=True)
    assert [x["Service"]["ID"] for x in entries] == ["pyweb1"]
    chk = checks_by_id(entries[0])["service:pyweb1"]
    assert chk["Status"] == "passing" and chk["Output"] == "all good", chk
    assert c.agent.checks()["service:pyweb1"]["Status"] == "passing"

    # warn and fail (GET too) set Status and Output.
    assert c.agent.check.ttl_warn("service:pyweb1", "slow") is True
    chk = c.agent.checks()["service:pyweb1"]
    assert (chk["Status"], chk["Output"]) == ("warning", "slow")
    assert c.health.service("pyweb", passing=True)[1] == []
    assert c.agent.check.ttl_fail("service:pyweb1", "down") is True
    chk = c.agent.checks()["service:pyweb1"]
    assert (chk["Status"], chk["Output"]) == ("critical", "down")

    # Pass without a note, then let the TTL (2 s) lapse.
    t_sent = time.monotonic()
    assert c.agent.check.ttl_pass("service:pyweb1") is True
    assert c.agent.checks()["service:pyweb1"]["Status"] == "passing"
    assert len(c.health.service("pyweb", passing=True)[1]) == 1
    seen_passing = 0.0

    def expired():
        nonlocal seen_passing
        chk = c.agent.checks()["service:pyweb1"]
        if chk["Status"] == "passing":
            seen_passing = time.monotonic() - t_sent
            return None
        return chk
    chk = wait_until(expired, 10, "the 2 s TTL to lapse", interval=0.05)
    t_crit = time.monotonic() - t_sent
    assert chk["Status"] == "critical", chk
    assert chk["Output"].startswith("TTL expired"), chk
    assert t_crit >= 1.9, "TTL 2s expired after %.2f s" % t_crit
    assert seen_passing >= 1.0, (
        "passing only seen until %.2f s into a 2 s TTL" % seen_passing)
    print("\nTTL 2s: passing until >= %.2f s, critical seen at %.2f s"
          % (seen_passing, t_crit))
    assert c.health.service("pyweb", passing=True)[1] == []
    chk = checks_by_id(c.health.service("pyweb")[1][0])["service:pyweb1"]
    assert chk["Status"] == "critical" and \
        chk["Output"].startswith("TTL expired")

    # Reaper: a service whose check stays critical for 3 s is removed.
    put_ok(node, "/v1/agent/service/register", {
        "Name": "pyreap", "ID": "pyreap1", "Port": 9,
        "Check": {"TTL": "1s", "DeregisterCriticalServiceAfter": "3s"}})
    t0 = time.monotonic()
    assert c.agent.check.ttl_pass("service:pyreap1") is True
    assert len(c.health.service("pyreap", passing=True)[1]) == 1
    wait_until(lambda: c.agent.checks()["service:pyreap1"]["Status"] ==
               "critical", 10, "pyreap's 1 s TTL to lapse", interval=0.05)
    t_crit = time.monotonic() - t0

    def gone():
        return "pyreap1" not in c.agent.services()
    wait_until(gone, 15, "pyreap1 to be reaped 3 s after going critical",
               interval=0.05)
    t_gone = time.monotonic() - t0
    print("reaper: critical seen %.2f s after the pass, removed %.2f s "
          "after it (TTL 1s + DeregisterCriticalServiceAfter 3s)"
          % (t_crit, t_gone))
    # The pass was sent after t0: expiry at >= t0+1, removal at >= t0+4.
    assert t_gone >= 3.9, (
        "removed %.2f s after the pass: TTL 1s + deadline 3s is 4 s"
        % t_gone)
    assert t_gone - t_crit >= 2.0, (
        "removed %.2f s after it was seen critical; deadline 3s"
        % (t_gone - t_crit))
    assert t_gone - t_crit <= 3.0 + 4.0, (
        "removed only %.2f s after going critical" % (t_gone - t_crit))
    assert c.health.service("pyreap")[1] == []
    assert c.catalog.service("pyreap")[1] == []
    assert "service:pyreap1" not in c.agent.checks()
    assert "pyreap" not in c.catalog.services()[1]
    # pyweb1 is critical too but has no deadline: it stays.
    assert "pyweb1" in c.agent.services()
    assert len(c.catalog.service("pyweb")[1]) == 1

    # Deregister through python-consul (GET).
    assert c.agent.service.deregister("pyweb1") is True
    assert "pyweb1" not in c.agent.services()
    assert "service:pyweb1" not in c.agent.checks()
    assert c.health.service("pyweb")[1] == []


def test_reaper_counts_only_a_continuous_critical_period(node):
    """A check critical for 2 s, then passing, then critical again: the
    4 s deadline starts over, so the service is still there 3 s into the
    second critical period (a deadline counted from the first one would
    have removed it about 2 s into the second)."""
    register(node, {"Name": "flappy", "ID": "flappy1",
                    "Check": {"TTL": "60s",
                              "DeregisterCriticalServiceAfter": "4s"}})
    t0 = time.monotonic()
    assert check_status(node, "service:flappy1") == "critical"
    time.sleep(max(0.0, 2.0 - (time.monotonic() - t0)))
    ttl_ok(node, "pass", "service:flappy1")
    ttl_ok(node, "fail", "service:flappy1", "broken again")
    t1 = time.monotonic()
    time.sleep(3.0)
    _, svcs = get_json(node, "/v1/agent/services")
    assert "flappy1" in svcs, (
        "reaped within %.2f s of the second critical period, %.2f s after "
        "the first began (deadline 4s)" % (time.monotonic() - t1,
                                          time.monotonic() - t0))
    wait_until(lambda: "flappy1" not in get_json(
        node, "/v1/agent/services")[1], 10, "flappy1 to be reaped",
        interval=0.05)
    t_gone = time.monotonic() - t1
    assert t_gone >= 3.5, t_gone


# ---- TTL semantics ----------------------------------------------------------


def test_ttl_errors_and_update(node):
    register(node, {"Name": "tsvc", "ID": "tsvc1",
                    "Check": {"TTL": "30s", "Status": "passing"}})
    with TCPTarget() as tcp:
        register(node, {"Name": "tcpsvc", "ID": "tcpsvc1",
                        "Check": {"TCP": tcp.addr, "Interval": "10s"}})
        assert check_status(node, "service:tsvc1") == "passing"
        # Unknown and non-TTL checks: 500 and the exact text, for every verb
        # and both methods (python-consul uses GET).
        for cid in ("nosuch", "service:tcpsvc1"):
            for verb in ("pass", "warn", "fail"):
                for method in ("PUT", "GET"):
                    r = ttl(node, verb, cid, method=method)
                    assert r.status_code == 500, (verb, cid, method, r)
                    assert r.text.strip() == NO_TTL % cid, (verb, cid, r.text)
            r = node.put("/v1/agent/check/update/" + q(cid),
                         data=b'{"Status":"passing","Output":"x"}')
            assert r.status_code == 500, (cid, r.status_code, r.content)
            assert r.text.strip() == NO_TTL % cid, r.text
        assert check_status(node, "service:tsvc1") == "passing"

    # update: Status and Output from the body.
    put_ok(node, "/v1/agent/check/update/service:tsvc1",
           {"Status": "warning", "Output": "disk 91%"})
    c = agent_check(node, "service:tsvc1")
    assert (c["Status"], c["Output"]) == ("warning", "disk 91%")
    _, warn = get_json(node, "/v1/health/state/warning")
    assert [x["CheckID"] for x in warn] == ["service:tsvc1"]
    r = node.put("/v1/agent/check/update/service:tsvc1",
                 data=b'{"Status":"bogus","Output":"x"}')
    assert r.status_code == 400, r
    assert "Invalid check status" in r.text, r.text
    c = agent_check(node, "service:tsvc1")
    assert (c["Status"], c["Output"]) == ("warning", "disk 91%")
    # Notes with spaces and UTF-8 survive the query string.
    note = "caf\u00e9 is open & ready"
    ttl_ok(node, "pass", "service:tsvc1", note)
    c = agent_check(node, "service:tsvc1")
    assert (c["Status"], c["Output"]) == ("passing", note)
    # Expiry after a note: Output begins with "TTL expired".
    register(node, {"Name": "tsvc", "ID": "tsvc2", "Check": {"TTL": "1s"}})
    ttl_ok(node, "pass", "service:tsvc2", "last words")
    c = wait_status(node, "service:tsvc2", "critical", timeout=10)
    assert c["Output"].startswith("TTL expired"), c


def test_repeated_heartbeat_costs_no_raft_entry(node):
    register(node, {"Name": "hbsvc", "ID": "hbsvc1", "Check": {"TTL": "30s"}})
    ttl_ok(node, "pass", "service:hbsvc1", "ok")
    idx0, _ = health_service(node, "hbsvc")
    sidx0, _ = get_json(node, "/v1/health/state/any")
    for _ in range(20):
        ttl_ok(node, "pass", "service:hbsvc1", "ok")
    idx1, entries = health_service(node, "hbsvc")
    sidx1, _ = get_json(node, "/v1/health/state/any")
    assert sidx1 == sidx0, ("identical passes moved X-Consul-Index of "
                            "/v1/health/state/any from %d to %d"
                            % (sidx0, sidx1))
    assert checks_by_id(entries[0])["service:hbsvc1"]["Status"] == "passing"
    assert idx1 == idx0, ("20 identical passes moved X-Consul-Index of "
                          "/v1/health/service/hbsvc from %d to %d"
                          % (idx0, idx1))
    # A blocking query on it does not wake while identical passes go on.
    result = {}

    def watch():
        s = new_session()
        t0 = time.monotonic()
        try:
            result["r"] = s.get(node.url + "/v1/health/service/hbsvc?index=%d"
                                "&wait=1500ms" % idx0, timeout=10)
        finally:
            result["t"] = time.monotonic() - t0
            s.close()
    th = threading.Thread(target=watch, daemon=True)
    th.start()
    stop = time.monotonic() + 1.3
    while time.monotonic() < stop:
        ttl_ok(node, "pass", "service:hbsvc1", "ok")
        time.sleep(0.1)
    th.join(10)
    assert not th.is_alive()
    r = result["r"]
    assert r.status_code == 200 and index_of(r) == idx0, r
    assert result["t"] >= 1.4, (
        "blocking query woke after %.2f s on identical heartbeats"
        % result["t"])
    # A status change is a change.
    ttl_ok(node, "warn", "service:hbsvc1", "different")
    idx2, entries = health_service(node, "hbsvc")
    assert idx2 > idx0
    assert checks_by_id(entries[0])["service:hbsvc1"]["Status"] == "warning"


def test_reregister_keeps_status_and_replace_existing_checks(node):
    body = {"Name": "rr", "ID": "rr1", "Port": 1000,
            "Checks": [{"CheckID": "rr-a", "Name": "a", "TTL": "30s"},
                       {"CheckID": "rr-b", "Name": "b", "TTL": "30s"}]}
    register(node, body)
    assert check_status(node, "rr-a") == "critical"
    ttl_ok(node, "pass", "rr-a", "fine")
    ttl_ok(node, "warn", "rr-b", "meh")

    # Same registration again, new port: statuses and outputs are kept.
    body["Port"] = 1001
    register(node, body)
    _, svcs = get_json(node, "/v1/agent/services")
    assert svcs["rr1"]["Port"] == 1001
    a, b = agent_check(node, "rr-a"), agent_check(node, "rr-b")
    assert (a["Status"], a["Output"]) == ("passing", "fine"), a
    assert (b["Status"], b["Output"]) == ("warning", "meh"), b

    # An explicit Status wins.
    body["Checks"][1]["Status"] = "critical"
    register(node, body)
    assert check_status(node, "rr-a") == "passing"
    assert check_status(node, "rr-b") == "critical"

    # Without replace-existing-checks a check left out stays...
    register(node, {"Name": "rr", "ID": "rr1", "Port": 1001,
                    "Checks": [{"CheckID": "rr-a", "Name": "a",
                                "TTL": "30s"}]})
    assert check_status(node, "rr-b") == "critical"
    # ...with it, it goes; the kept one keeps its status.
    register(node, {"Name": "rr", "ID": "rr1", "Port": 1001,
                    "Checks": [{"CheckID": "rr-a", "Name": "a",
                                "TTL": "30s"}]},
             query="replace-existing-checks")
    assert agent_check(node, "rr-b") is None
    assert check_status(node, "rr-a") == "passing"
    _, entries = health_service(node, "rr")
    assert set(checks_by_id(entries[0])) == {"serfHealth", "rr-a"}
    _, checks = get_json(node, "/v1/health/checks/rr")
    assert [c["CheckID"] for c in checks] == ["rr-a"]


# ---- 2. HTTP and TCP checks -------------------------------------------------


def test_http_check_follows_target(node):
    with HTTPTarget(status=200, body=b"hello") as tgt:
        register(node, {
            "Name": "httpsvc", "ID": "httpsvc1", "Port": tgt.port,
            "Check": {"HTTP": tgt.url, "Interval": "1s", "Timeout": "1s",
                      "Header": {"X-Beacon-Test": ["yes"]}}})
        cid = "service:httpsvc1"
        c = agent_check(node, cid)
        assert c["Type"] == "http", c

        c = wait_status(node, cid, "passing")
        assert c["Output"] == "HTTP GET %s: 200 OK Output: hello" % tgt.url, c
        assert len(health_service(node, "httpsvc", "passing")[1]) == 1
        method, path, headers = tgt.requests[-1]
        assert (method, path) == ("GET", "/health")
        assert headers.get("x-beacon-test") == "yes", headers

        tgt.set(status=500, body=b"boom")
        c = wait_status(node, cid, "critical")
        assert c["Output"] == ("HTTP GET %s: 500 Internal Server Error "
                               "Output: boom" % tgt.url), c
        assert health_service(node, "httpsvc", "passing")[1] == []

        tgt.set(status=429, body=b"slow down")
        c = wait_status(node, cid, "warning")
        assert c["Output"] == ("HTTP GET %s: 429 Too Many Requests "
                               "Output: slow down" % tgt.url), c

        tgt.set(status=204, body=b"")
        c = wait_status(node, cid, "passing")
        assert c["Output"].startswith("HTTP GET %s: 204 No Content"
                                      % tgt.url), c

        # A target slower than Timeout (1s) is critical.
        tgt.set(status=200, body=b"late", delay=3.0)
        c = wait_status(node, cid, "critical", timeout=SETTLE + 3)
        assert c["Output"].startswith("HTTP GET %s: " % tgt.url), c
        tgt.set(delay=0.0)
        wait_status(node, cid, "passing", timeout=SETTLE + 3)

        # Interval 1s is respected: a few probes in 4 s, not a storm.
        h0, t0 = tgt.hit_count(), time.monotonic()
        time.sleep(4.0)
        hits, dt = tgt.hit_count() - h0, time.monotonic() - t0
        print("\nHTTP check, Interval 1s: %d probes in %.1f s" % (hits, dt))
        assert 2 <= hits <= dt + 3, "%d probes in %.1f s" % (hits, dt)

        # Deregistered: probing stops.
        put_ok(node, "/v1/agent/service/deregister/httpsvc1")
        assert agent_check(node, cid) is None
        time.sleep(1.5)
        h1 = tgt.hit_count()
        time.sleep(3.0)
        assert tgt.hit_count() - h1 == 0, "still probed after deregister"


def test_http_check_output_is_capped(node):
    with HTTPTarget(status=200, body=b"x" * 10000) as tgt:
        register(node, {"Name": "bigsvc", "Check": {
            "HTTP": tgt.url, "Interval": "1s", "OutputMaxSize": 100}})
        c = wait_status(node, "service:bigsvc", "passing")
        prefix = "HTTP GET %s: 200 OK Output: " % tgt.url
        assert c["Output"].startswith(prefix + "x" * 100), c["Output"][:300]
        assert "x" * 101 not in c["Output"], len(c["Output"])
        assert c["Output"].endswith(" ... (captured 100 of 10000 bytes)"), \
            c["Output"][-100:]


def test_tcp_check_follows_listener(node):
    c = py_consul(node)
    with TCPTarget() as tgt:
        # python-consul's lowercase keys: {"tcp": "host:port", "interval"}
        assert c.agent.service.register(
            "tcpsvc", service_id="tcpsvc1", port=tgt.port,
            check=consul.Check.tcp("127.0.0.1", tgt.port, "1s",
                                   timeout="1s")) is True
        cid = "service:tcpsvc1"
        assert agent_check(node, cid)["Type"] == "tcp"
        chk = wait_status(node, cid, "passing")
        assert chk["Output"] == "TCP connect %s: Success" % tgt.addr, chk
        assert len(c.health.service("tcpsvc", passing=True)[1]) == 1

        tgt.close()
        chk = wait_status(node, cid, "critical")
        assert tgt.addr in chk["Output"], chk
        assert "Success" not in chk["Output"], chk
        assert c.health.service("tcpsvc", passing=True)[1] == []

        tgt.open()
        chk = wait_status(node, cid, "passing")
        assert chk["Output"] == "TCP connect %s: Success" % tgt.addr, chk


# ---- 3. TTL heartbeats across a leader failover -----------------------------


HB_SERVICES = 50
HB_TTL = "10s"
HB_PERIOD = 1.0
HB_THREADS = 10
HB_BEFORE_KILL = 3.0      # s of heart-beating before the leader dies
HB_AFTER_ELECTION = 13.0  # s after the new leader: > TTL, so any timer the
                          # new leader got wrong would have fired


def test_ttl_heartbeats_survive_leader_failover(cluster_factory):
    cluster = cluster_factory(3)
    leader = cluster.leader()
    followers = [s for s in cluster.servers if s is not leader]
    svc_ids = ["hb-%02d" % i for i in range(HB_SERVICES)]
    home = {sid: followers[i % 2] for i, sid in enumerate(svc_ids)}

    with ThreadPoolExecutor(8) as pool:
        def reg(sid):
            srv = home[sid]
            s = new_session()
            try:
                r = s.put(srv.url + "/v1/agent/service/register", json={
                    "Name": "hb", "ID": sid, "Port": 20000 + int(sid[3:]),
                    "Check": {"TTL": HB_TTL}}, timeout=10)
                assert r.status_code == 200, (sid, r.status_code, r.content)
                r = s.put(srv.url + "/v1/agent/check/pass/service:" + sid,
                          timeout=10)
                assert r.status_code == 200, (sid, r.status_code, r.content)
            finally:
                s.close()
        list(pool.map(reg, svc_ids))
    # A control that does not heart-beat: proves the poller sees criticals.
    ctl = followers[0]
    put_ok(ctl, "/v1/agent/service/register",
           {"Name": "hbctl", "ID": "hbctl1", "Check": {"TTL": "2s"}})
    ttl_ok(ctl, "pass", "service:hbctl1")

    def passing_count():
        _, entries = get_json(followers[0], "/v1/health/service/hb?passing")
        return len(entries)
    wait_until(lambda: passing_count() == HB_SERVICES, 20,
               "all %d services passing" % HB_SERVICES)
    # Every service lives on the node of the server it was registered on.
    _, entries = get_json(followers[0], "/v1/catalog/service/hb")
    assert {e["ServiceID"]: e["Node"] for e in entries} == {
        sid: home[sid].name for sid in svc_ids}

    stop = threading.Event()
    lock = threading.Lock()
    stats = {"sent": 0, "ok": 0, "failed": 0, "failed_failover": 0,
             "polls": 0, "polls_ok": 0, "polls_after": 0, "max_critical": 0,
             "ctl_seen": False}
    critical_seen = set()
    last_ok = {}
    phase = {"failover": False, "elected_at": None}

    def heartbeat(chunk):
        s = new_session()
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                for sid in chunk:
                    if stop.is_set():
                        break
                    srv = home[sid]
                    try:
                        r = s.put(srv.url + "/v1/agent/check/pass/service:" +
                                  sid, timeout=3)
                        ok = r.status_code == 200
                    except requests.RequestException:
                        ok = False
                    with lock:
                        stats["sent"] += 1
                        if ok:
                            stats["ok"] += 1
                            last_ok[sid] = time.monotonic()
                        else:
                            stats["failed"] += 1
                            if phase["failover"]:
                                stats["failed_failover"] += 1
                stop.wait(max(0.0, HB_PERIOD - (time.monotonic() - t0)))
        finally:
            s.close()

    def poll():
        s = new_session()
        try:
            while not stop.is_set():
                try:
                    r = s.get(followers[0].url +
                              "/v1/health/state/critical?stale", timeout=3)
                    if r.status_code == 200:
                        crit = [c for c in r.json()
                                if c.get("ServiceName") == "hb"]
                        ctl_crit = any(c.get("ServiceID") == "hbctl1"
                                       for c in r.json())
                        with lock:
                            stats["polls_ok"] += 1
                            if phase["elected_at"] is not None:
                                stats["polls_after"] += 1
                            stats["max_critical"] = max(
                                stats["max_critical"], len(crit))
                            critical_seen.update(c["ServiceID"] for c in crit)
                            stats["ctl_seen"] |= ctl_crit
                except (requests.RequestException, ValueError):
                    pass
                with lock:
                    stats["polls"] += 1
                stop.wait(0.2)
        finally:
            s.close()

    chunks = [svc_ids[i::HB_THREADS] for i in range(HB_THREADS)]
    threads = [threading.Thread(target=heartbeat, args=(ch,), daemon=True)
               for ch in chunks] + [threading.Thread(target=poll, daemon=True)]
    for th in threads:
        th.start()
    try:
        time.sleep(HB_BEFORE_KILL)
        t_kill = time.monotonic()
        phase["failover"] = True
        cluster.kill(leader)
        new_leader = cluster.wait_leader(exclude=(leader,), timeout=30)
        t_elect = time.monotonic()
        phase["elected_at"] = t_elect
        # Heartbeats that fail after this are still "during the failover"
        # until the new leader has them going again.
        wait_until(lambda: all(last_ok.get(sid, 0) > t_elect
                               for sid in svc_ids), 15,
                   "every service to heart-beat through the new leader",
                   interval=0.1)
        phase["failover"] = False
        t_resumed = time.monotonic()
        time.sleep(max(0.0, HB_AFTER_ELECTION - (time.monotonic() - t_elect)))
        # Every service is passing, seen through each survivor (default,
        # consistent reads go to the new leader).
        for srv in followers:
            _, entries = get_json(srv, "/v1/health/service/hb?passing")
            not_passing = sorted(set(svc_ids) -
                                 {e["Service"]["ID"] for e in entries})
            assert not not_passing, (
                "not passing via %s after failover: %s" % (srv.name,
                                                           not_passing))
        _, crit = get_json(new_leader, "/v1/health/state/critical")
        crit_now = [c["ServiceID"] for c in crit if c["ServiceName"] == "hb"]
    finally:
        stop.set()
        for th in threads:
            th.join(10)

    summary = (
        "registered=%d (on %s), heartbeats sent=%d ok=%d failed=%d "
        "failed during failover=%d, critical polls=%d (ok %d, after "
        "election %d), max critical seen=%d, services ever critical=%s, "
        "election took %.2f s, heart-beats resumed %.2f s after the kill"
        % (HB_SERVICES, "+".join(f.name for f in followers), stats["sent"],
           stats["ok"], stats["failed"], stats["failed_failover"],
           stats["polls"], stats["polls_ok"], stats["polls_after"],
           stats["max_critical"], sorted(critical_seen), t_elect - t_kill,
           t_resumed - t_kill))
    print("\nfailover: " + summary)
    assert stats["polls_after"] >= 10, "the critical poll hardly worked: " + \
        summary
    assert stats["ctl_seen"], ("the non-heart-beating control never showed "
                               "as critical: " + summary)
    assert not critical_seen and not crit_now, (
        "heart-beating services went critical: %s; %s"
        % (sorted(set(critical_seen) | set(crit_now)), summary))
    assert stats["max_critical"] == 0, summary


# ---- 4. blocking queries on /v1/health/service ------------------------------


class Watcher(threading.Thread):
    """GET path once (a blocking query) in a thread; records the response
    and the monotonic time it arrived."""

    def __init__(self, srv, path, timeout=60):
        super().__init__(daemon=True)
        self.srv, self.path, self.timeout = srv, path, timeout
        self.resp = self.error = None
        self.t_start = self.t_done = None

    def run(self):
        s = new_session()
        self.t_start = time.monotonic()
        try:
            self.resp = s.get(self.srv.url + self.path, timeout=self.timeout)
        except Exception as e:          # reported by the test
            self.error = e
        finally:
            self.t_done = time.monotonic()
            s.close()

    @property
    def elapsed(self):
        return self.t_done - self.t_start


def start_watch(srv, path, settle=0.3):
    w = Watcher(srv, path)
    w.start()
    time.sleep(settle)
    assert w.is_alive(), "blocking query %s returned at once: %r %r" % (
        path, w.resp, w.error)
    return w


def test_blocking_health_service_wakes_fast_and_only_for_its_service(node):
    register(node, {"Name": "web", "ID": "web1", "Check": {"TTL": "60s"}})
    register(node, {"Name": "db", "ID": "db1", "Check": {"TTL": "60s"}})
    ttl_ok(node, "pass", "service:web1")
    ttl_ok(node, "pass", "service:db1")

    # A change of web wakes web's watcher within milliseconds.
    latencies = []
    for i, (verb, status) in enumerate([("fail", "critical"),
                                        ("pass", "passing"),
                                        ("warn", "warning"),
                                        ("pass", "passing"),
                                        ("fail", "critical")]):
        idx, _ = health_service(node, "web")
        w = start_watch(node, "/v1/health/service/web?index=%d&wait=30s"
                        % idx)
        ttl_ok(node, verb, "service:web1", "step %d" % i)
        t_ack = time.monotonic()
        w.join(15)
        assert not w.is_alive() and w.error is None, (verb, w.error)
        latency = w.t_done - t_ack
        latencies.append(latency)
        assert w.resp.status_code == 200
        assert index_of(w.resp) > idx
        chk = checks_by_id(w.resp.json()[0])["service:web1"]
        assert (chk["Status"], chk["Output"]) == (status, "step %d" % i)
        assert latency < 1.0, ("watcher woke %.3f s after the %s was acked"
                               % (latency, verb))
    print("\nweb watcher wake-up after the ack: max %.1f ms, median %.1f ms"
          % (1000 * max(latencies), 1000 * statistics.median(latencies)))

    # Changes of db do not wake web's watcher: its wait runs out.
    idx, body = health_service(node, "web")
    db_idx0, _ = health_service(node, "db")
    w = start_watch(node, "/v1/health/service/web?index=%d&wait=2s" % idx,
                    settle=0.1)
    register(node, {"Name": "db", "ID": "db2", "Check": {"TTL": "60s"}})
    ttl_ok(node, "fail", "service:db1", "db down")
    ttl_ok(node, "pass", "service:db2")
    put_ok(node, "/v1/agent/service/deregister/db2")
    ttl_ok(node, "pass", "service:db1", "db up")
    db_idx1, _ = health_service(node, "db")
    assert db_idx1 > db_idx0
    assert w.is_alive(), ("web's watcher woke %.2f s after db changes: %r"
                          % (w.elapsed, w.resp))
    w.join(10)
    assert not w.is_alive() and w.error is None, w.error
    print("web watcher during db changes returned after %.2f s (wait=2s)"
          % w.elapsed)
    assert w.resp.status_code == 200
    assert index_of(w.resp) == idx, (idx, w.resp.headers)
    assert w.resp.json() == body
    assert 1.9 <= w.elapsed <= 2.0 + 2.0 / 16 + 1.5, w.elapsed


def test_blocking_python_consul_health_service(node):
    """python-consul's watch idiom: health.service(index=..., wait=...)."""
    c = py_consul(node)
    assert c.agent.service.register("pw", service_id="pw1",
                                    check=consul.Check.ttl("60s")) is True
    index, entries = c.health.service("pw", passing=True)
    assert entries == []
    result = {}

    def watch():
        w = py_consul(node)
        result["r"] = w.health.service("pw", index=index, wait="20s",
                                       passing=True)
        result["t"] = time.monotonic()
    th = threading.Thread(target=watch, daemon=True)
    th.start()
    time.sleep(0.3)
    assert th.is_alive(), result
    assert c.agent.check.ttl_pass("service:pw1") is True
    t_ack = time.monotonic()
    th.join(15)
    assert not th.is_alive()
    new_index, entries = result["r"]
    assert int(new_index) > int(index)
    assert [e["Service"]["ID"] for e in entries] == ["pw1"]
    assert result["t"] - t_ack < 1.0

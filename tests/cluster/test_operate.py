"""Operating Beacon: the metrics endpoint (JSON and Prometheus text, parsed
strictly), the liveness and readiness endpoints (readiness flips when a
server loses its quorum and back when it returns), and SIGHUP reloading the
log level from the config file.

    BEACOND=build/san/beacond /usr/bin/python3 -m pytest -q \
        tests/cluster/test_operate.py
"""

import json
import math
import re
import signal
import time

import pytest

pytest.register_assert_rewrite("cluster_util")
from cluster_util import wait_until  # noqa: E402

pytest_plugins = ["cluster_util"]

# ---- a strict parser of Prometheus's text format (version 0.0.4) ----------

METRIC = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE_RE = re.compile(
    r"^(%s)(?:\{((?:%s)(?:,%s)*)\})? (\S+)$" % (METRIC, LABEL, LABEL))
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_prometheus(text):
    """{(name, frozenset(labels)): value}; raises AssertionError on any
    line that does not follow the format, a sample whose family was not
    declared by a TYPE line, or a histogram whose buckets are not
    cumulative or lack +Inf / _sum / _count."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    types, helps, samples = {}, set(), {}
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert re.fullmatch(METRIC, name), (n, line)
            assert name not in helps, ("second HELP", n, line)
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            assert len(parts) == 4 and parts[3] in TYPES, (n, line)
            assert parts[2] not in types, ("second TYPE", n, line)
            types[parts[2]] = parts[3]
            continue
        assert not line.startswith("#"), ("stray comment", n, line)
        m = SAMPLE_RE.match(line)
        assert m, ("not a sample line", n, line)
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        v = float(value)            # raises on a bad number
        assert not math.isnan(v), (n, line)
        family = re.sub(r"_(bucket|sum|count|total)$", "", name)
        assert name in types or family in types, (
            "sample without a TYPE", n, line)
        key = (name, frozenset(LABEL_RE.findall(labels)))
        assert key not in samples, ("duplicate series", n, line)
        samples[key] = v
    for fam, typ in types.items():
        if typ != "histogram":
            continue
        series = {}
        for (name, labels), v in samples.items():
            if name == fam + "_bucket":
                rest = frozenset(x for x in labels if x[0] != "le")
                le = dict(labels)["le"]
                series.setdefault(rest, []).append(
                    (math.inf if le == "+Inf" else float(le), v))
        for rest, buckets in series.items():
            buckets.sort()
            counts = [c for _, c in buckets]
            assert counts == sorted(counts), (fam, "not cumulative")
            assert buckets[-1][0] == math.inf, (fam, "no +Inf bucket")
            assert samples[(fam + "_count", rest)] == counts[-1], fam
            assert (fam + "_sum", rest) in samples, fam
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_prometheus_parser_rejects_bad_input():
    good = "# TYPE a counter\na_total 1\n"
    assert parse_prometheus(good)[("a_total", frozenset())] == 1
    for bad in ("a 1\n",                               # no TYPE
                "# TYPE a gauge\na 1",                 # no final newline
                "# TYPE a gauge\na{x=\"1} 2\n",        # broken label
                "# TYPE a gauge\na one\n",             # not a number
                "# TYPE a gauge\na 1\na 2\n",          # duplicate series
                "# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
                "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"):
        with pytest.raises((AssertionError, ValueError)):
            parse_prometheus(bad)


# ---- metrics on one node ----------------------------------------------------


def wait_serving(node):
    """The node fixture is ready once a leader is named; the leader serves
    a few ms later, after an entry of its own term applied."""
    wait_until(lambda: node.get("/v1/status/ready").status_code == 200, 10,
               "%s to report ready" % node.name)


def scrape(node):
    r = node.get("/v1/agent/metrics?format=prometheus")
    assert r.status_code == 200, (r.status_code, r.content[:200])
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse_prometheus(r.content.decode())


def test_prometheus_metrics_parse_and_move_with_traffic(node):
    wait_serving(node)
    before = scrape(node)
    assert value(before, "beacon_raft_state", state="leader") == 1
    assert value(before, "beacon_ready") == 1
    assert value(before, "beacon_process_resident_memory_bytes") > 1 << 20
    for i in range(25):
        assert node.put("/v1/kv/metrics/%d" % i, data=b"x" * 10).ok
    for i in range(7):
        assert node.get("/v1/kv/metrics/missing%d" % i).status_code == 404
    assert node.get("/v1/kv/metrics/0?index=abc").status_code == 400
    after = scrape(node)
    route = "/v1/kv/"

    def count(s, code):
        return value(s, "beacon_http_requests_total", route=route, code=code)

    assert count(after, "200") - count(before, "200") == 25
    assert count(after, "404") - count(before, "404") == 7
    assert count(after, "400") - count(before, "400") == 1
    assert value(after, "beacon_kv_keys") - value(before, "beacon_kv_keys") \
        == 25
    assert value(after, "beacon_kv_bytes") >= 250
    applied = value(after, "beacon_raft_apply_duration_seconds_count") - \
        value(before, "beacon_raft_apply_duration_seconds_count")
    assert applied >= 25
    assert value(after, "beacon_raft_applied_index") >= \
        value(before, "beacon_raft_applied_index") + 25
    hist = value(after, "beacon_http_request_duration_seconds_count",
                 route=route)
    assert hist >= 33


def test_metrics_json_and_bad_format(node):
    wait_serving(node)
    r = node.get("/v1/agent/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    d = json.loads(r.content)
    assert set(d) == {"Timestamp", "Gauges", "Points", "Counters", "Samples"}
    gauges = {g["Name"]: g["Value"] for g in d["Gauges"]}
    assert gauges["beacon.raft.leader"] == 1
    assert gauges["beacon.ready"] == 1
    assert node.get("/v1/agent/metrics?format=xml").status_code == 400


def test_blocking_queries_are_counted(node):
    import threading
    assert node.put("/v1/kv/bq/k", data=b"1").ok
    idx = int(node.get("/v1/kv/bq/k").headers["X-Consul-Index"])
    done = threading.Event()

    def poll():
        node.get("/v1/kv/bq/k?index=%d&wait=20s" % idx, timeout=30)
        done.set()

    t = threading.Thread(target=poll)
    t.start()
    try:
        wait_until(lambda: value(scrape(node),
                                 "beacon_http_blocking_queries") >= 1,
                   5, "the blocking query to be counted")
    finally:
        assert node.put("/v1/kv/bq/k", data=b"2").ok
        t.join(10)
    assert done.is_set()
    wait_until(lambda: value(scrape(node),
                             "beacon_http_blocking_queries") == 0,
               5, "the woken query to be gone from the gauge")


def test_live_and_ready_single_node(node):
    wait_serving(node)
    r = node.get("/v1/status/live")
    assert r.status_code == 200 and r.content == b"true"
    r = node.get("/v1/status/ready")
    assert r.status_code == 200 and json.loads(r.content) == {"Ready": True}


# ---- SIGHUP ----------------------------------------------------------------


def test_sighup_reloads_log_level_from_config_file(node_factory, tmp_path):
    conf = tmp_path / "beacon.json"
    conf.write_text(json.dumps({"log_level": "info"}))
    n = node_factory(start=False, log_level="info",
                     extra_args=["--config-file", str(conf)])
    # --log-level on the command line would win over the file: drop it.
    n.log_level = None
    orig = n.command

    def command():
        cmd = orig()
        i = cmd.index("--log-level")
        return cmd[:i] + cmd[i + 2:]
    n.command = command
    n.start()
    marker = "sighup-probe-%d" % time.time_ns()
    # Client errors are logged at debug level only.
    assert n.get("/v1/kv/%s?index=bad" % marker).status_code == 400
    time.sleep(0.2)
    assert marker not in n.log_text()
    conf.write_text(json.dumps({"log_level": "debug"}))
    n.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "SIGHUP: reloaded: log level debug" in n.log_text(),
               5, "the reload to be logged")
    assert n.get("/v1/kv/%s?index=bad" % marker).status_code == 400
    wait_until(lambda: marker in n.log_text(), 5,
               "the debug line of the bad request")
    # A broken file changes nothing and is reported.
    conf.write_text("{not json")
    n.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "configuration not reloaded" in n.log_text(), 5,
               "the refused reload to be logged")
    assert n.get("/v1/status/live").status_code == 200


# ---- readiness across quorum loss --------------------------------------------



def ready(srv):
    r = srv.get("/v1/status/ready", timeout=2)
    return r.status_code == 200


def test_readiness_flips_with_quorum(cluster_factory):
    cluster = cluster_factory(3)
    for s in cluster.servers:
        wait_until(lambda s=s: ready(s), 10, "%s to be ready" % s.name)
    survivor = cluster.followers()[0]
    others = [s for s in cluster.servers if s is not survivor]
    for s in others:
        cluster.stop(s)
    wait_until(lambda: not ready(survivor), 10,
               "%s to report not ready without a quorum" % survivor.name)
    r = survivor.get("/v1/status/ready", timeout=2)
    assert r.status_code == 503
    assert json.loads(r.content)["Ready"] is False
    assert json.loads(r.content)["Reason"]
    assert survivor.get("/v1/status/live", timeout=2).status_code == 200
    for s in others:
        cluster.start_server(s, wait=False)
    cluster.wait_ready()
    wait_until(lambda: all(ready(s) for s in cluster.servers), 15,
               "every server to be ready again")

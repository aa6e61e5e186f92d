"""The catalog and health API surface (issue #4): agent service and check
registration with every field, how it shows in /v1/agent/*, /v1/catalog/*
and /v1/health/*, field-name leniency (case, snake_case, unknown keys),
errors (and that a refused request changes nothing), external nodes
through /v1/catalog/register, maintenance mode, ?tag and ?passing filters,
index and Content-Type headers, blocking queries that wake only for what
they watch, and, on a 3-server cluster, that each server is the agent of
its own node.

Spec: CONSUL-API.md §0, §2, §3, §4, §5, §10.1, §10.3 and the decisions of
issue #4 (each server is the agent of its --node; servers are catalog
nodes with the node check "serfHealth" and instances of "consul"; unknown
service -> 200 [], unknown node -> 200 null, bad state -> 400).

Run with Debian's interpreter:
    BEACOND=$PWD/build/san/beacond /usr/bin/python3 -m pytest -q \
        -p no:cacheprovider tests/cluster/test_catalog.py
"""

import json
import threading
import time

import consul
import consul.base
import pytest

pytest.register_assert_rewrite("cluster_util", "check_targets")
from cluster_util import kv_path, new_session, wait_until  # noqa: E402
from check_targets import (  # noqa: E402
    agent_check, check_status, checks_by_id, get_json, health_service,
    index_of, put_ok, py_consul, register, ttl, ttl_ok,
    wait_self_registered)

pytest_plugins = ["cluster_util"]

NODE_ADDR = "127.0.0.1"


def ids(entries, key="ServiceID"):
    return sorted(e[key] for e in entries)


def health_ids(entries):
    return sorted(e["Service"]["ID"] for e in entries)


def by_check(checks):
    return {(c["Node"], c["CheckID"]): c for c in checks}


# ---- the full registration and every view of it -----------------------------


WEB1 = {
    "Name": "web", "ID": "web1", "Tags": ["a", "b"], "Address": "10.0.0.5",
    "Port": 8080, "Meta": {"version": "1.2", "team": "core"},
    "Weights": {"Passing": 5, "Warning": 2}, "EnableTagOverride": True,
    # Three checks: the unnamed ones are service:web1:1 and :2.
    "Check": {"TTL": "60s", "Notes": "first"},
    "Checks": [{"TTL": "60s", "Status": "warning"},
               {"CheckID": "web1-alive", "Name": "alive", "TTL": "60s",
                "Status": "passing", "Notes": "third"}],
}
WEB2 = {"Name": "web", "ID": "web2", "Tags": ["b", "c"], "Port": 8081,
        "Check": {"TTL": "60s", "Status": "passing"}}
DB = {"Name": "db", "Port": 5432}                   # no ID, no checks


def register_fixture_services(srv):
    wait_self_registered(srv)
    register(srv, WEB1)
    register(srv, WEB2)
    register(srv, DB)


def test_register_all_fields_and_every_view(node):
    n = node.name
    register_fixture_services(node)

    # /v1/agent/services: map by ID, Consul's field names.
    _, svcs = get_json(node, "/v1/agent/services")
    assert set(svcs) - {"consul"} == {"web1", "web2", "db"}, svcs
    w = svcs["web1"]
    assert w["ID"] == "web1" and w["Service"] == "web"
    assert w["Tags"] == ["a", "b"]
    assert w["Meta"] == {"version": "1.2", "team": "core"}
    assert w["Port"] == 8080 and w["Address"] == "10.0.0.5"
    assert w["Weights"] == {"Passing": 5, "Warning": 2}
    assert w["EnableTagOverride"] is True
    d = svcs["db"]
    assert (d["ID"], d["Service"], d["Port"], d["Address"]) == (
        "db", "db", 5432, "")
    assert d["Tags"] == [] and d["Meta"] == {}, d
    assert d["Weights"] == {"Passing": 1, "Warning": 1}, d
    assert d["EnableTagOverride"] is False
    assert svcs["web2"]["Address"] == ""

    # /v1/agent/service/<id>
    _, one = get_json(node, "/v1/agent/service/web1")
    for k in ("ID", "Service", "Tags", "Meta", "Port", "Address", "Weights",
              "EnableTagOverride"):
        assert one[k] == w[k], k
    r = node.get("/v1/agent/service/nosuch")
    assert r.status_code == 404, r
    assert r.text.strip() == "unknown service ID: nosuch", r.text

    # /v1/agent/checks: map by CheckID, defaults for ID and Name.
    _, checks = get_json(node, "/v1/agent/checks")
    web_checks = {k: v for k, v in checks.items() if v["ServiceName"] == "web"}
    assert set(web_checks) == {"service:web1:1", "service:web1:2",
                               "web1-alive", "service:web2"}, checks
    c1 = checks["service:web1:1"]
    assert c1["Status"] == "critical" and c1["Notes"] == "first", c1
    assert c1["Name"] == "Service 'web' check", c1
    assert c1["Type"] == "ttl" and c1["ServiceID"] == "web1"
    assert c1["Node"] == n
    assert checks["service:web1:2"]["Status"] == "warning"
    alive = checks["web1-alive"]
    assert (alive["Name"], alive["Status"], alive["Notes"]) == (
        "alive", "passing", "third")
    assert checks["service:web2"]["Status"] == "passing"
    assert isinstance(c1["ServiceTags"], list)

    # /v1/catalog/service/web: ServiceNode fields.
    r = node.get("/v1/catalog/service/web")
    assert r.status_code == 200
    cat = r.json()
    assert ids(cat) == ["web1", "web2"], cat
    sn = {e["ServiceID"]: e for e in cat}["web1"]
    assert sn["Node"] == n and sn["Address"] == NODE_ADDR
    assert sn["Datacenter"] == "dc1"
    assert sn["ServiceName"] == "web" and sn["ServiceTags"] == ["a", "b"]
    assert sn["ServiceAddress"] == "10.0.0.5" and sn["ServicePort"] == 8080
    assert sn["ServiceMeta"] == {"version": "1.2", "team": "core"}
    assert sn["ServiceWeights"] == {"Passing": 5, "Warning": 2}
    assert sn["ServiceEnableTagOverride"] is True
    assert isinstance(sn["TaggedAddresses"], (dict, type(None)))
    assert 1 <= sn["CreateIndex"] <= sn["ModifyIndex"]
    assert index_of(r) >= max(e["ModifyIndex"] for e in cat)
    sn2 = {e["ServiceID"]: e for e in cat}["web2"]
    assert sn2["ServiceAddress"] == "" and sn2["Address"] == NODE_ADDR

    # /v1/catalog/services: name -> union of tags.
    _, services = get_json(node, "/v1/catalog/services")
    assert set(services) == {"consul", "web", "db"}, services
    assert sorted(services["web"]) == ["a", "b", "c"]
    assert services["db"] == [] and services["consul"] == []

    # /v1/catalog/nodes: this server is the only node.
    _, nodes = get_json(node, "/v1/catalog/nodes")
    assert [x["Node"] for x in nodes] == [n], nodes
    nd = nodes[0]
    assert nd["Address"] == NODE_ADDR and nd["Datacenter"] == "dc1"
    assert isinstance(nd["TaggedAddresses"], (dict, type(None)))
    assert isinstance(nd["Meta"], (dict, type(None)))
    assert isinstance(nd["ID"], str)
    assert 1 <= nd["CreateIndex"] <= nd["ModifyIndex"]

    # /v1/catalog/node/<node>
    _, cn = get_json(node, "/v1/catalog/node/" + n)
    assert cn["Node"]["Node"] == n and cn["Node"]["Address"] == NODE_ADDR
    assert set(cn["Services"]) == {"web1", "web2", "db", "consul"}, cn
    s1 = cn["Services"]["web1"]
    assert (s1["ID"], s1["Service"], s1["Tags"], s1["Address"], s1["Port"],
            s1["Meta"], s1["Weights"], s1["EnableTagOverride"]) == (
        "web1", "web", ["a", "b"], "10.0.0.5", 8080,
        {"version": "1.2", "team": "core"}, {"Passing": 5, "Warning": 2},
        True)
    assert cn["Services"]["consul"]["Service"] == "consul"

    # /v1/health/service/web: Node, Service, Checks (with serfHealth).
    _, hs = health_service(node, "web")
    assert health_ids(hs) == ["web1", "web2"]
    h1 = {e["Service"]["ID"]: e for e in hs}["web1"]
    assert h1["Node"]["Node"] == n and h1["Node"]["Address"] == NODE_ADDR
    assert h1["Service"]["Service"] == "web"
    assert h1["Service"]["Tags"] == ["a", "b"]
    assert h1["Service"]["Port"] == 8080
    assert h1["Service"]["Address"] == "10.0.0.5"
    assert h1["Service"]["Meta"] == {"version": "1.2", "team": "core"}
    hc = checks_by_id(h1)
    assert set(hc) == {"serfHealth", "service:web1:1", "service:web1:2",
                       "web1-alive"}, hc
    serf = hc["serfHealth"]
    assert serf["Name"] == "Serf Health Status" and serf["Status"] == "passing"
    assert serf["ServiceID"] == "" and serf["ServiceName"] == ""
    assert serf["Node"] == n
    h2 = {e["Service"]["ID"]: e for e in hs}["web2"]
    assert set(checks_by_id(h2)) == {"serfHealth", "service:web2"}

    # ?passing in every spelling ParseBool accepts.
    for v in ("", "1", "true", "True", "t"):
        _, e = health_service(node, "web", "passing=" + v if v else "passing")
        assert health_ids(e) == ["web2"], v
    for v in ("0", "false", "F"):
        _, e = health_service(node, "web", "passing=" + v)
        assert health_ids(e) == ["web1", "web2"], v

    # /v1/health/checks/web: the service's checks, no node checks.
    _, hcs = get_json(node, "/v1/health/checks/web")
    assert sorted(c["CheckID"] for c in hcs) == [
        "service:web1:1", "service:web1:2", "service:web2", "web1-alive"]

    # /v1/health/state/<state>
    expected = {
        "any": {"serfHealth", "service:web1:1", "service:web1:2",
                "web1-alive", "service:web2"},
        "passing": {"serfHealth", "web1-alive", "service:web2"},
        "warning": {"service:web1:2"},
        "critical": {"service:web1:1"},
    }
    for state, want in expected.items():
        _, st = get_json(node, "/v1/health/state/" + state)
        assert {c["CheckID"] for c in st} == want, (state, st)
        assert all(c["Node"] == n for c in st)
    # /v1/health/node/<node>
    _, hn = get_json(node, "/v1/health/node/" + n)
    assert {c["CheckID"] for c in hn} == expected["any"]
    for c in hn:
        for k in ("Node", "CheckID", "Name", "Status", "Notes", "Output",
                  "ServiceID", "ServiceName", "ServiceTags", "Type",
                  "CreateIndex", "ModifyIndex"):
            assert k in c, (k, c)


def test_deregister_service_and_checks(node):
    c = py_consul(node)
    register_fixture_services(node)
    # Through python-consul: GET /v1/agent/service/deregister/web1
    assert c.agent.service.deregister("web1") is True
    _, svcs = get_json(node, "/v1/agent/services")
    assert "web1" not in svcs and "web2" in svcs
    _, checks = get_json(node, "/v1/agent/checks")
    assert not [k for k in checks if "web1" in k], checks
    assert ids(get_json(node, "/v1/catalog/service/web")[1]) == ["web2"]
    _, st = get_json(node, "/v1/health/state/any")
    assert not [x for x in st if x["ServiceID"] == "web1"], st
    # Unknown ID: 200, nothing changes.
    before = get_json(node, "/v1/catalog/services")
    put_ok(node, "/v1/agent/service/deregister/nosuch")
    assert get_json(node, "/v1/catalog/services") == before
    # Last instance gone: the name leaves catalog/services.
    put_ok(node, "/v1/agent/service/deregister/web2")
    _, services = get_json(node, "/v1/catalog/services")
    assert set(services) == {"consul", "db"}, services
    idx, e = health_service(node, "web")
    assert e == [] and idx >= 1


def test_check_register_and_deregister(node):
    c = py_consul(node)
    register(node, {"Name": "chk", "ID": "chk1"})
    # python-consul: {name, ttl, id, notes, serviceid}
    assert c.agent.check.register("extra", check=consul.Check.ttl("60s"),
                                  check_id="chk1-extra", notes="added later",
                                  service_id="chk1") is True
    x = agent_check(node, "chk1-extra")
    assert (x["Name"], x["Notes"], x["ServiceID"], x["ServiceName"],
            x["Type"], x["Status"]) == (
        "extra", "added later", "chk1", "chk", "ttl", "critical"), x
    # A node-level check (no ServiceID) counts for every service on the node.
    assert c.agent.check.register("node-level", check=consul.Check.ttl("60s"),
                                  check_id="nodechk") is True
    ttl_ok(node, "pass", "chk1-extra")
    _, e = health_service(node, "chk")
    assert set(checks_by_id(e[0])) == {"serfHealth", "chk1-extra", "nodechk"}
    assert health_service(node, "chk", "passing")[1] == []   # nodechk
    _, hn = get_json(node, "/v1/health/node/" + node.name)
    assert agent_check(node, "nodechk")["ServiceID"] == ""
    assert "nodechk" in {x["CheckID"] for x in hn}
    assert c.agent.check.ttl_pass("nodechk") is True
    assert len(health_service(node, "chk", "passing")[1]) == 1
    # Registering a check with an existing ID replaces it, status kept.
    put_ok(node, "/v1/agent/check/register", {
        "ID": "nodechk", "Name": "node-level renamed", "TTL": "60s"})
    x = agent_check(node, "nodechk")
    assert (x["Name"], x["Status"]) == ("node-level renamed", "passing"), x
    # Deregister, through python-consul (GET) and PUT.
    assert c.agent.check.deregister("nodechk") is True
    assert agent_check(node, "nodechk") is None
    put_ok(node, "/v1/agent/check/deregister/chk1-extra")
    assert agent_check(node, "chk1-extra") is None
    _, e = health_service(node, "chk")
    assert set(checks_by_id(e[0])) == {"serfHealth"}
    # Unknown check: 200 no-op.
    put_ok(node, "/v1/agent/check/deregister/nosuch")


# ---- field names ------------------------------------------------------------


def test_field_names_case_insensitive_snake_case_unknown_ignored(node):
    c = py_consul(node)
    register(node, {
        "name": "ci", "id": "ci1", "tAgS": ["x", "y"], "PORT": 7,
        "address": "10.9.9.9", "meta": {"k": "v"},
        "enable_tag_override": True,
        "Bogus": {"deep": [1, {"x": None}]}, "AlsoUnknown": 3.5,
        "weights": {"passing": 3, "warning": 1},
        "check": {"ttl": "60s", "status": "passing", "notes": "lc",
                  "NoSuchField": 1},
        "checks": [{"checkid": "ci1-two", "name": "two", "ttl": "60s"}],
    })
    _, svcs = get_json(node, "/v1/agent/services")
    s = svcs["ci1"]
    assert (s["Service"], s["Tags"], s["Port"], s["Address"], s["Meta"],
            s["EnableTagOverride"], s["Weights"]) == (
        "ci", ["x", "y"], 7, "10.9.9.9", {"k": "v"}, True,
        {"Passing": 3, "Warning": 1}), s
    x = agent_check(node, "service:ci1:1")
    assert x is not None, get_json(node, "/v1/agent/checks")[1]
    assert (x["Status"], x["Notes"], x["Type"]) == ("passing", "lc", "ttl")
    assert agent_check(node, "ci1-two")["Name"] == "two"

    # python-consul's own lowercase body, with "enabletagoverride".
    assert c.agent.service.register("pyci", service_id="pyci1", port=99,
                                    tags=["t"], enable_tag_override=True,
                                    check=consul.Check.ttl("60s")) is True
    s = c.agent.services()["pyci1"]
    assert (s["Service"], s["Port"], s["Tags"], s["EnableTagOverride"]) == (
        "pyci", 99, ["t"], True), s
    assert c.agent.checks()["service:pyci1"]["Status"] == "critical"

    # snake_case service_id on check/register.
    put_ok(node, "/v1/agent/check/register",
           {"name": "snake", "id": "snake1", "service_id": "ci1",
            "ttl": "60s"})
    assert agent_check(node, "snake1")["ServiceID"] == "ci1"

    # deregister_critical_service_after: the service is reaped (TTL checks
    # start critical).
    register(node, {"name": "reapme", "check": {
        "ttl": "60s", "deregister_critical_service_after": "2s"}})
    t0 = time.monotonic()
    wait_until(lambda: "reapme" not in get_json(
        node, "/v1/agent/services")[1], 12,
        "reapme to be reaped (deregister_critical_service_after 2s)",
        interval=0.05)
    assert time.monotonic() - t0 >= 1.5


# ---- errors: the exact answer, and nothing changes --------------------------


def snapshot(srv):
    out = {}
    for p in ("/v1/catalog/services", "/v1/catalog/nodes",
              "/v1/health/state/any", "/v1/catalog/node/" + srv.name):
        r = srv.get(p)
        assert r.status_code == 200, (p, r)
        out[p] = (index_of(r), r.json())
    for p in ("/v1/agent/services", "/v1/agent/checks"):
        out[p] = get_json(srv, p)[1]
    return out


J = json.dumps

# (method, path, body, status, text the body must contain or None)
ERRORS = [
    ("PUT", "/v1/agent/service/register", J({"ID": "x", "Port": 1}), 400,
     "Missing service name"),
    ("PUT", "/v1/agent/service/register", J({"Name": "x", "Check": {
        "TTL": "10s", "Status": "bogus"}}), 400, None),
    ("PUT", "/v1/agent/service/register", J({
        "Name": "x", "Address": "0.0.0.0"}), 400, "Invalid service address"),
    ("PUT", "/v1/agent/service/register", J({
        "Name": "x", "Address": "::"}), 400, "Invalid service address"),
    ("PUT", "/v1/agent/service/register", J({"Name": "x", "Check": {
        "TTL": "10s", "Interval": "10s"}}), 400, None),
    ("PUT", "/v1/agent/service/register", J({"Name": "x", "Checks": [
        {"TTL": "10s"}, {"HTTP": "http://127.0.0.1:9/"}]}), 400, None),
    ("PUT", "/v1/agent/service/register", J({"Name": "x", "Check": {
        "TTL": "soon"}}), 400, None),
    ("PUT", "/v1/agent/service/register", J({"Name": "x", "Weights": {
        "Passing": 0, "Warning": 1}}), 400, None),
    ("PUT", "/v1/agent/service/register", J({"Name": "x", "Meta": {
        "consul-reserved": "v"}}), 400, None),
    ("PUT", "/v1/agent/service/register", b'{"Name": "x", ', 400,
     "Request decode failed"),
    ("PUT", "/v1/agent/service/register", b'["Name"]', 400, None),
    ("PUT", "/v1/agent/check/register", J({
        "Name": "c", "ServiceID": "nosuch", "TTL": "10s"}), 404,
     'ServiceID "nosuch" does not exist'),
    ("PUT", "/v1/agent/check/register", J({"TTL": "10s"}), 400,
     "Missing check name"),
    ("PUT", "/v1/agent/check/register", J({
        "Name": "c", "TTL": "10s", "Status": "bogus"}), 400,
     "Bad check status"),
    ("PUT", "/v1/agent/check/register", J({"Name": "c"}), 400,
     "Invalid check"),
    ("PUT", "/v1/agent/check/register", J({
        "Name": "c", "TTL": "10s", "Interval": "5s"}), 400, "Invalid check"),
    ("PUT", "/v1/agent/check/update/service:web2", J({
        "Status": "bogus"}), 400, "Invalid check status"),
    ("PUT", "/v1/agent/service/maintenance/web1", None, 400,
     "Missing value for enable"),
    ("GET", "/v1/health/service/web?passing=bogus", None, 400,
     "Invalid value for ?passing"),
    ("GET", "/v1/health/state/bogus", None, 400, None),
    ("GET", "/v1/health/service/web?index=abc", None, 400, "Invalid index"),
    ("GET", "/v1/health/service/web?index=1&wait=30", None, 400,
     "Invalid wait time"),
]


def test_errors_change_nothing(node):
    wait_self_registered(node)
    register_fixture_services(node)
    before = snapshot(node)
    failures = []
    for method, path, body, status, text in ERRORS:
        r = node.request(method, path, data=body)
        if r.status_code != status or (text and text not in r.text):
            failures.append("%s %s %r -> %d %r (want %d %r)" % (
                method, path, body, r.status_code, r.text[:200], status,
                text))
        after = snapshot(node)
        if after != before:
            failures.append("%s %s %r changed the state" % (method, path,
                                                            body))
            before = after
    assert not failures, "\n".join(failures)


def test_catalog_register_errors_change_nothing(node):
    """Catalog writes that must be refused as a whole: no half-registered
    node."""
    wait_self_registered(node)
    before = snapshot(node)
    for body in ({"Node": "", "Address": "10.0.0.1"},
                 {"Node": "half", "Address": ""},
                 {"Node": "half", "Address": "10.0.0.1",
                  "Service": {"ID": "noname"}},
                 {"Node": "half", "Address": "10.0.0.1",
                  "Check": {"CheckID": "x", "Name": "x", "Status": "bogus"}},
                 {"Node": "half", "Address": "10.0.0.1",
                  "Check": {"CheckID": "x", "Name": "x",
                            "ServiceID": "nosuch"}}):
        r = node.put("/v1/catalog/register", data=J(body))
        # Consul: 400 for the body, 500 for what its state store refuses
        # ("Missing service registration"); Beacon may say 404 for that.
        assert r.status_code in (400, 404, 500), (body, r, r.text)
        assert r.text != "true", (body, r.text)
        assert snapshot(node) == before, body
    assert get_json(node, "/v1/catalog/node/half")[1] is None


# ---- external nodes through the catalog -------------------------------------


def test_catalog_register_external_node_python_consul(node):
    c = py_consul(node)
    wait_self_registered(node)
    assert c.catalog.datacenters() == ["dc1"]
    assert c.catalog.register(
        "ext1", "10.1.2.3",
        service={"Service": "extsvc", "ID": "ext-1", "Tags": ["x"],
                 "Port": 9000},
        check={"CheckID": "ext-check", "Name": "ext check",
               "Status": "passing", "ServiceID": "ext-1"}) is True
    idx, nodes = c.catalog.nodes()
    assert int(idx) >= 1
    by_name = {x["Node"]: x for x in nodes}
    assert set(by_name) == {node.name, "ext1"}, nodes
    assert by_name["ext1"]["Address"] == "10.1.2.3"
    _, cat = c.catalog.service("extsvc")
    assert [(e["Node"], e["Address"], e["ServiceID"], e["ServiceTags"],
             e["ServicePort"]) for e in cat] == [
        ("ext1", "10.1.2.3", "ext-1", ["x"], 9000)]
    _, hs = c.health.service("extsvc", passing=True)
    assert len(hs) == 1 and hs[0]["Node"]["Node"] == "ext1"
    chk = checks_by_id(hs[0])["ext-check"]
    assert (chk["Name"], chk["Status"], chk["ServiceID"], chk["Node"]) == (
        "ext check", "passing", "ext-1", "ext1")
    # Not this agent's: agent/services of the server does not list it.
    assert "ext-1" not in c.agent.services()
    assert "ext-check" not in c.agent.checks()

    # A node-level check on ext1 (the service stays) drops it from ?passing.
    assert c.catalog.register("ext1", "10.1.2.3", check={
        "CheckID": "ext-node", "Name": "ext node",
        "Status": "critical"}) is True
    assert ids(c.catalog.service("extsvc")[1]) == ["ext-1"]
    assert c.health.service("extsvc", passing=True)[1] == []
    _, hn = c.health.node("ext1")
    assert {x["CheckID"]: x["Status"] for x in hn} == {
        "ext-check": "passing", "ext-node": "critical"}
    _, cn = c.catalog.node("ext1")
    assert set(cn["Services"]) == {"ext-1"}
    assert cn["Node"]["Address"] == "10.1.2.3"

    # CamelCase body with a Checks list, service Meta and tagged addresses.
    put_ok(node, "/v1/catalog/register", {
        "Node": "ext2", "Address": "10.1.2.4", "Datacenter": "dc1",
        "TaggedAddresses": {"lan": "10.1.2.4", "wan": "192.0.2.4"},
        "NodeMeta": {"rack": "r1"},
        "Service": {"Service": "extsvc", "Tags": ["y"], "Port": 9001,
                    "Meta": {"m": "1"}},
        "Checks": [{"CheckID": "c1", "Name": "c1", "Status": "passing",
                    "ServiceID": "extsvc"},
                   {"CheckID": "c2", "Name": "c2", "Status": "warning"}]})
    _, cat = c.catalog.service("extsvc")
    e2 = {e["Node"]: e for e in cat}["ext2"]
    assert e2["ServiceID"] == "extsvc"          # ID defaults to the name
    assert e2["ServiceMeta"] == {"m": "1"}
    assert e2["NodeMeta"] == {"rack": "r1"}
    assert e2["TaggedAddresses"]["wan"] == "192.0.2.4"
    _, hn = c.health.node("ext2")
    assert {x["CheckID"]: x["Status"] for x in hn} == {
        "c1": "passing", "c2": "warning"}
    _, services = c.catalog.services()
    assert sorted(services["extsvc"]) == ["x", "y"]

    # Deregister a check, a service, a node.
    assert c.catalog.deregister("ext1", check_id="ext-node") is True
    assert len(c.health.service("extsvc", passing=True)[1]) == 1   # ext1
    assert c.catalog.deregister("ext1", service_id="ext-1") is True
    assert ids(c.catalog.service("extsvc")[1]) == ["extsvc"]
    assert "ext1" in {x["Node"] for x in c.catalog.nodes()[1]}
    assert c.catalog.deregister("ext1") is True
    assert "ext1" not in {x["Node"] for x in c.catalog.nodes()[1]}
    idx, data = c.catalog.node("ext1")
    assert data is None and int(idx) >= 1
    assert c.catalog.deregister("ext2") is True
    assert c.catalog.service("extsvc")[1] == []
    assert "extsvc" not in c.catalog.services()[1]
    assert [x["Node"] for x in c.catalog.nodes()[1]] == [node.name]


# ---- maintenance, filters, headers, unknowns --------------------------------


def test_service_maintenance(node):
    c = py_consul(node)
    register(node, {"Name": "mt", "ID": "mt1",
                    "Check": {"TTL": "60s", "Status": "passing"}})
    assert len(health_service(node, "mt", "passing")[1]) == 1
    assert c.agent.service.maintenance("mt1", "true", "upgrading") is True
    m = agent_check(node, "_service_maintenance:mt1")
    assert m is not None, get_json(node, "/v1/agent/checks")[1]
    assert m["Status"] == "critical" and m["ServiceID"] == "mt1", m
    assert "upgrading" in (m["Notes"] + m["Output"]), m
    assert health_service(node, "mt", "passing")[1] == []
    _, e = health_service(node, "mt")
    assert checks_by_id(e[0])["_service_maintenance:mt1"]["Status"] == \
        "critical"
    _, crit = get_json(node, "/v1/health/state/critical")
    assert "_service_maintenance:mt1" in {x["CheckID"] for x in crit}
    assert check_status(node, "service:mt1") == "passing"   # untouched
    # Disable (raw PUT): the check goes, the instance is back.
    put_ok(node, "/v1/agent/service/maintenance/mt1?enable=false")
    assert agent_check(node, "_service_maintenance:mt1") is None
    assert len(health_service(node, "mt", "passing")[1]) == 1


def test_tag_filter(node):
    c = py_consul(node)
    register_fixture_services(node)
    ttl_ok(node, "pass", "service:web1:1")
    ttl_ok(node, "pass", "service:web1:2")
    cases = [("tag=b", ["web1", "web2"]), ("tag=a", ["web1"]),
             ("tag=c", ["web2"]), ("tag=a&tag=b", ["web1"]),
             ("tag=b&tag=c", ["web2"]), ("tag=a&tag=c", []),
             ("tag=zz", [])]
    for query, want in cases:
        _, cat = get_json(node, "/v1/catalog/service/web?" + query)
        assert ids(cat) == want, ("catalog", query, cat)
        _, hs = health_service(node, "web", query)
        assert health_ids(hs) == want, ("health", query, hs)
        _, hs = health_service(node, "web", query + "&passing")
        assert health_ids(hs) == want, ("health passing", query, hs)
    assert ids(c.catalog.service("web", tag="a")[1]) == ["web1"]
    assert health_ids(c.health.service("web", tag="c")[1]) == ["web2"]


def test_index_and_content_type_headers(node):
    register_fixture_services(node)
    n = node.name
    paths = ["/v1/catalog/services", "/v1/catalog/nodes",
             "/v1/catalog/service/web", "/v1/catalog/service/nosuch",
             "/v1/catalog/node/" + n, "/v1/catalog/node/nosuch",
             "/v1/health/service/web", "/v1/health/service/nosuch",
             "/v1/health/checks/web", "/v1/health/checks/nosuch",
             "/v1/health/state/any", "/v1/health/state/passing",
             "/v1/health/state/warning", "/v1/health/state/critical",
             "/v1/health/node/" + n, "/v1/health/node/nosuch"]
    bad = []
    for p in paths:
        r = node.get(p)
        ct = r.headers.get("Content-Type", "")
        idx = r.headers.get("X-Consul-Index", "")
        if r.status_code != 200 or not ct.startswith("application/json") \
                or not idx.isdigit() or int(idx) < 1:
            bad.append("%s -> %d Content-Type=%r X-Consul-Index=%r" % (
                p, r.status_code, ct, idx))
    for p in ("/v1/agent/services", "/v1/agent/checks",
              "/v1/agent/service/web1", "/v1/catalog/datacenters"):
        r = node.get(p)
        if r.status_code != 200 or not r.headers.get(
                "Content-Type", "").startswith("application/json"):
            bad.append("%s -> %d %r" % (p, r.status_code, dict(r.headers)))
    assert not bad, "\n".join(bad)


def test_unknowns(node):
    c = py_consul(node)
    wait_self_registered(node)
    for p in ("/v1/catalog/service/nosuch", "/v1/health/service/nosuch",
              "/v1/health/checks/nosuch", "/v1/health/node/nosuch"):
        r = node.get(p)
        assert r.status_code == 200 and r.json() == [], (p, r)
        assert index_of(r) >= 1
    r = node.get("/v1/catalog/node/nosuch")
    assert r.status_code == 200 and r.content.strip() == b"null", r
    assert index_of(r) >= 1
    idx, data = c.catalog.node("nosuch")
    assert data is None and int(idx) >= 1
    idx, data = c.health.service("nosuch")
    assert data == [] and int(idx) >= 1
    idx, data = c.health.state("any")
    assert {x["CheckID"] for x in data} == {"serfHealth"}
    # (python-consul refuses an unknown state itself: raw GET.)
    r = node.get("/v1/health/state/bogus")
    assert r.status_code == 400, r
    r = node.get("/v1/catalog/datacenters")
    assert r.status_code == 200 and r.json() == ["dc1"]


# ---- blocking queries: wake for what they watch, and only for that ----------


def _flip(srv, cid, verb, note):
    return lambda: ttl_ok(srv, verb, cid, note)


def _kv(srv):
    return lambda: put_ok(srv, kv_path("blocking/unrelated"), None)


def _ext_flip(srv, status):
    return lambda: put_ok(srv, "/v1/catalog/register", {
        "Node": "ext1", "Address": "10.1.2.3",
        "Check": {"CheckID": "ext-node", "Name": "ext node",
                  "Status": status}})


def _register(srv, body):
    return lambda: register(srv, body)


def _setup_blocking(node):
    wait_self_registered(node)
    register(node, {"Name": "web", "ID": "web1", "Check": {"TTL": "120s"}})
    register(node, {"Name": "db", "ID": "db1", "Check": {"TTL": "120s"}})
    ttl_ok(node, "pass", "service:web1")
    ttl_ok(node, "pass", "service:db1")
    _ext_flip(node, "passing")()


# name -> (path, [irrelevant changes], relevant change)
BLOCKING = {
    "health-service": (
        "/v1/health/service/web",
        lambda n: [_kv(n), _flip(n, "service:db1", "fail", "x"),
                   _register(n, {"Name": "db", "ID": "db2"})],
        lambda n: _flip(n, "service:web1", "fail", "web down")),
    "catalog-service": (
        "/v1/catalog/service/web",
        lambda n: [_kv(n), _flip(n, "service:db1", "warn", "x"),
                   _register(n, {"Name": "db", "ID": "db2"})],
        lambda n: _register(n, {"Name": "web", "ID": "web2"})),
    "health-checks": (
        "/v1/health/checks/web",
        lambda n: [_kv(n), _flip(n, "service:db1", "fail", "x")],
        lambda n: _flip(n, "service:web1", "warn", "web slow")),
    "catalog-services": (
        "/v1/catalog/services",
        lambda n: [_kv(n), _flip(n, "service:db1", "fail", "x"),
                   _flip(n, "service:web1", "warn", "y")],
        lambda n: _register(n, {"Name": "cache", "Tags": ["hot"]})),
    "catalog-nodes": (
        "/v1/catalog/nodes",
        lambda n: [_kv(n), _flip(n, "service:db1", "fail", "x"),
                   _register(n, {"Name": "db", "ID": "db2"})],
        lambda n: lambda: put_ok(n, "/v1/catalog/register", {
            "Node": "ext9", "Address": "10.9.9.9"})),
    "health-state-critical": (
        "/v1/health/state/critical",
        lambda n: [_kv(n), _register(n, {"Name": "plain"})],
        lambda n: _flip(n, "service:web1", "fail", "web down")),
    "health-node": (
        "/v1/health/node/{node}",
        lambda n: [_kv(n), _ext_flip(n, "critical")],
        lambda n: _flip(n, "service:web1", "fail", "web down")),
    "catalog-node": (
        "/v1/catalog/node/{node}",
        lambda n: [_kv(n), _ext_flip(n, "critical"),
                   lambda: put_ok(n, "/v1/catalog/register", {
                       "Node": "ext1", "Address": "10.1.2.3",
                       "Service": {"Service": "extsvc"}})],
        lambda n: _register(n, {"Name": "web", "ID": "web2"})),
}


class Watch(threading.Thread):
    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.resp = self.error = self.t_done = None

    def run(self):
        s = new_session()
        self.t_start = time.monotonic()
        try:
            self.resp = s.get(self.url, timeout=60)
        except Exception as e:
            self.error = e
        finally:
            self.t_done = time.monotonic()
            s.close()


@pytest.mark.parametrize("name", sorted(BLOCKING))
def test_blocking_wakes_only_for_what_it_watches(node, name):
    path, irrelevant, relevant = BLOCKING[name]
    path = path.format(node=node.name)
    _setup_blocking(node)

    r = node.get(path)
    assert r.status_code == 200, r
    idx, body = index_of(r), r.json()
    w = Watch(node.url + path + "?index=%d&wait=2s" % idx)
    w.start()
    time.sleep(0.2)
    assert w.is_alive(), ("returned at once", w.resp, w.error)
    for change in irrelevant(node):
        change()
    assert w.is_alive(), ("woke %.2f s in on unrelated changes: %r" % (
        time.monotonic() - w.t_start, w.resp and w.resp.content[:300]))
    w.join(10)
    assert not w.is_alive() and w.error is None, w.error
    elapsed = w.t_done - w.t_start
    assert w.resp.status_code == 200
    assert index_of(w.resp) == idx, (
        "index moved from %d to %d after unrelated changes (%.2f s)"
        % (idx, index_of(w.resp), elapsed))
    assert w.resp.json() == body
    assert 1.9 <= elapsed <= 2.0 + 2.0 / 16 + 1.5, elapsed

    w = Watch(node.url + path + "?index=%d&wait=30s" % idx)
    w.start()
    time.sleep(0.3)
    assert w.is_alive(), ("returned at once", w.resp, w.error)
    relevant(node)()
    t_ack = time.monotonic()
    w.join(15)
    assert not w.is_alive() and w.error is None, w.error
    latency = w.t_done - t_ack
    print("\n%s: woke %.1f ms after the ack" % (name, 1000 * latency))
    assert w.resp.status_code == 200
    assert index_of(w.resp) > idx
    assert w.resp.json() != body
    assert latency < 1.0, "woke %.3f s after the change" % latency


# ---- 3 servers: each is the agent of its own node ---------------------------


def test_cluster_each_server_is_its_own_agent(cluster_factory):
    cluster = cluster_factory(3)
    leader = cluster.leader()
    a, b = [s for s in cluster.servers if s is not leader]
    names = sorted(s.name for s in cluster.servers)

    # Servers are nodes (with serfHealth) and instances of "consul".
    def nodes_ok():
        _, nodes = get_json(leader, "/v1/catalog/nodes")
        return sorted(x["Node"] for x in nodes) == names and nodes
    nodes = wait_until(nodes_ok, 15, "the 3 servers as catalog nodes")
    for s in cluster.servers:
        wait_self_registered(s)
    assert all(x["Address"] == NODE_ADDR for x in nodes), nodes
    for s in cluster.servers:
        _, hn = get_json(leader, "/v1/health/node/" + s.name)
        serf = {x["CheckID"]: x for x in hn}.get("serfHealth")
        assert serf and serf["Status"] == "passing", (s.name, hn)
        assert serf["Name"] == "Serf Health Status"
    _, consul_svc = get_json(leader, "/v1/catalog/service/consul")
    assert sorted(e["Node"] for e in consul_svc) == names, consul_svc

    # A registration through a lives on a's node, also when read via b.
    # (Reads of a server's agent view may trail its own write by a moment:
    # they are polled.)
    def eventually(cond, what):
        return wait_until(cond, 10, what)

    register(a, {"Name": "fw", "ID": "fw1", "Port": 1,
                 "Check": {"TTL": "60s"}})
    _, cat = get_json(b, "/v1/catalog/service/fw")
    assert [(e["Node"], e["Address"], e["ServiceID"]) for e in cat] == [
        (a.name, NODE_ADDR, "fw1")], cat
    eventually(lambda: "fw1" in get_json(a, "/v1/agent/services")[1],
               "fw1 in a's agent/services")
    eventually(lambda: "service:fw1" in get_json(a, "/v1/agent/checks")[1],
               "service:fw1 in a's agent/checks")
    for other in (leader, b):
        assert "fw1" not in get_json(other, "/v1/agent/services")[1], \
            other.name
        assert "service:fw1" not in get_json(other, "/v1/agent/checks")[1]
    r = b.get("/v1/agent/service/fw1")
    assert r.status_code == 404, r

    # TTL verbs act on the receiving server's node.
    ttl_ok(a, "pass", "service:fw1", "via a")
    eventually(lambda: health_ids(health_service(b, "fw", "passing")[1]) ==
               ["fw1"], "fw1 passing as seen via b")
    eventually(lambda: check_status(a, "service:fw1") == "passing",
               "fw1 passing in a's agent/checks")
    r = ttl(b, "fail", "service:fw1")
    assert r.status_code == 500, r
    assert r.text.strip() == 'CheckID "service:fw1" does not have ' \
        'associated TTL', r.text
    assert check_status(a, "service:fw1") == "passing"

    # Deregistering through b is a no-op for a's service.
    put_ok(b, "/v1/agent/service/deregister/fw1")
    assert ids(get_json(leader, "/v1/catalog/service/fw")[1]) == ["fw1"]

    # The same ID through b is a second instance, on b's node.
    register(b, {"Name": "fw", "ID": "fw1", "Port": 2,
                 "Check": {"TTL": "60s", "Status": "passing"}})
    _, cat = get_json(leader, "/v1/catalog/service/fw")
    assert sorted((e["Node"], e["ServicePort"]) for e in cat) == sorted(
        [(a.name, 1), (b.name, 2)]), cat
    eventually(lambda: get_json(b, "/v1/agent/services")[1].get(
        "fw1", {}).get("Port") == 2, "b's fw1 on port 2")
    assert get_json(a, "/v1/agent/services")[1]["fw1"]["Port"] == 1

    # python-consul against a follower.
    c = py_consul(b)
    assert c.agent.check.ttl_fail("service:fw1", "b down") is True
    x = eventually(lambda: (lambda x: x if x["Status"] == "critical" else
                            None)(c.agent.checks()["service:fw1"]),
                   "b's fw1 check critical")
    assert (x["Node"], x["Status"], x["Output"]) == (b.name, "critical",
                                                     "b down")
    assert check_status(a, "service:fw1") == "passing"
    _, hs = c.health.service("fw", passing=True)
    assert [e["Node"]["Node"] for e in hs] == [a.name]

    put_ok(a, "/v1/agent/service/deregister/fw1")
    _, cat = get_json(leader, "/v1/catalog/service/fw")
    assert [e["Node"] for e in cat] == [b.name], cat


def test_empty_tags_and_meta_are_accepted(node):
    """Regression: an empty Tags list was answered 500 "out of memory"."""
    r = node.put("/v1/agent/service/register",
                 json={"Name": "empty", "ID": "empty1", "Tags": [],
                       "Meta": {}, "Check": {"TTL": "10s", "Header": {}}})
    assert r.status_code == 200, r.text
    r = node.put("/v1/catalog/register",
                 json={"Node": "extnode", "Address": "10.0.0.9",
                       "NodeMeta": {}, "TaggedAddresses": {},
                       "Service": {"Service": "x", "Tags": []}})
    assert r.status_code == 200, r.text
    svc = node.get("/v1/agent/service/empty1").json()
    assert svc["Tags"] == [] and svc["Meta"] == {}

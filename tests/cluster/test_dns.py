"""The DNS interface (issue #5) against real beacond servers, with dig and
Debian's python3-dnspython: SRV/A/AAAA/ANY for services, tags, the RFC 2782
form, nodes, PTR, NXDOMAIN and NODATA with the SOA, an instance leaving DNS
when its TTL check lapses and coming back when it passes, TC and the TCP
fallback with 50 instances, EDNS0, the same answers from each of three
servers, garbage packets that never crash a server, a server cut off from
the leader that keeps answering, bursts of UDP queries from several sockets
(batched reads and writes, cached answers), forwarding to a recursor, the
alternate domain and TTLs.

Spec: CONSUL-API.md §8 and issue #5 (TC set by default, unlike Consul).
Everything talks to 127.0.0.1 only.

Run with Debian's interpreter:
    BEACOND=$PWD/build/san/beacond /usr/bin/python3 -m pytest -q \\
        -p no:cacheprovider tests/cluster/test_dns.py
"""

import random
import socket
import struct
import subprocess
import threading
import time

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

pytest.register_assert_rewrite("cluster_util", "check_targets")
from cluster_util import ClusterFactory  # noqa: E402
from check_targets import (  # noqa: E402
    register, ttl_ok, wait_self_registered)

pytest_plugins = ["cluster_util"]

HOST = "127.0.0.1"
BIG = 50


# ---- helpers ------------------------------------------------------------------


def dns_port(srv):
    return int(srv.dns_addr.rsplit(":", 1)[1])


def ask(srv, name, rdtype="A", tcp=False, edns=None, options=None,
        timeout=3, version=0):
    """One query to srv: UDP (no EDNS unless edns is a payload size) or
    TCP; returns the dns.message.Message."""
    if edns is None:
        q = dns.message.make_query(name, rdtype, use_edns=False)
    else:
        q = dns.message.make_query(name, rdtype, use_edns=0, payload=edns,
                                   options=options or [])
        if version:     # use_edns=1 would mean True, that is version 0
            q.use_edns(version, 0, edns, options=options or [])
    if tcp:
        return dns.query.tcp(q, HOST, port=dns_port(srv), timeout=timeout)
    return dns.query.udp(q, HOST, port=dns_port(srv), timeout=timeout)


def rrs(msg, section="answer", rdtype=None):
    """[(owner, type, text)] of a section, owners and names as text."""
    out = []
    for rrset in getattr(msg, section):
        t = dns.rdatatype.to_text(rrset.rdtype)
        if rdtype is not None and t != rdtype:
            continue
        for rd in rrset:
            out.append((rrset.name.to_text(), t, rd.to_text()))
    return out


def datas(msg, rdtype, section="answer"):
    return sorted(x[2] for x in rrs(msg, section, rdtype))


def assert_negative(msg, rcode, zone="consul."):
    """NXDOMAIN or NODATA: AA, no answer, the SOA alone in authority."""
    assert msg.rcode() == rcode, dns.rcode.to_text(msg.rcode())
    assert msg.flags & dns.flags.AA
    assert msg.answer == []
    auth = rrs(msg, "authority")
    assert len(auth) == 1 and auth[0][0] == zone and auth[0][1] == "SOA", auth
    mname, rname = auth[0][2].split()[:2]
    assert (mname, rname) == ("ns." + zone, "hostmaster." + zone), auth


def eventually(cond, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
            last = v
        except (dns.exception.DNSException, OSError) as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s "
                                 "(last: %r)" % (timeout, what, last))
        time.sleep(interval)


def dig(srv, *args, timeout=15):
    p = subprocess.run(["dig", "@" + HOST, "-p", str(dns_port(srv)),
                        "+time=3", "+tries=1", *args],
                       capture_output=True, text=True, timeout=timeout)
    return p.stdout


def srv_set(msg):
    """{(weight, port, target)} of the SRV answers (priority checked)."""
    out = set()
    for _, _, text in rrs(msg, "answer", "SRV"):
        prio, weight, port, target = text.split()
        assert prio == "1", text
        out.add((int(weight), int(port), target))
    return out


def hexaddr(ip):
    return "".join("%02x" % int(o) for o in ip.split("."))


# ---- the shared 3-server cluster -------------------------------------------------


WEB1 = {"Name": "web", "ID": "web1", "Port": 8080,
        "Tags": ["primary", "v1"]}
WEB2 = {"Name": "web", "ID": "web2", "Port": 8081, "Address": "10.0.0.12",
        "Tags": ["secondary"], "Weights": {"Passing": 5, "Warning": 2}}
WEB6 = {"Name": "web6", "ID": "web6", "Port": 80, "Address": "fd00::6"}


@pytest.fixture(scope="module")
def dns_cluster(tmp_path_factory):
    """Three servers with web (2 instances), web6 (IPv6) and big (50
    instances with addresses of their own), seen by every server."""
    factory = ClusterFactory(tmp_path_factory.mktemp("dns"))
    try:
        cluster = factory(3)
        for s in cluster.servers:
            wait_self_registered(s)
        a = cluster.servers[0]
        for body in (WEB1, WEB2, WEB6):
            register(a, body)
        for i in range(BIG):
            register(a, {"Name": "big", "ID": "big%d" % i,
                         "Port": 9000 + i,
                         "Address": "10.50.0.%d" % (i + 1)})
        for s in cluster.servers:
            eventually(lambda: len(datas(ask(s, "big.service.consul",
                                             tcp=True), "A")) == BIG,
                       20, "%s to see all of big" % s.name)
            eventually(lambda: len(datas(ask(s, "web.service.consul",
                                             tcp=True), "A")) == 2,
                       20, "%s to see web" % s.name)
        yield cluster
    finally:
        factory.teardown()


# ---- services -------------------------------------------------------------------


def test_service_srv_a_aaaa_any(dns_cluster):
    a = dns_cluster.servers[0]
    node = a.name
    r = ask(a, "web.service.consul", "SRV")
    assert r.rcode() == dns.rcode.NOERROR
    assert r.flags & dns.flags.AA and not r.flags & dns.flags.TC
    assert not r.flags & dns.flags.RA          # no recursor
    assert srv_set(r) == {
        (1, 8080, "%s.node.dc1.consul." % node),
        (5, 8081, "%s.addr.dc1.consul." % hexaddr("10.0.0.12"))}
    assert sorted((o, d) for o, _, d in rrs(r, "additional", "A")) == sorted([
        ("%s.node.dc1.consul." % node, "127.0.0.1"),
        ("0a00000c.addr.dc1.consul.", "10.0.0.12")])
    assert datas(ask(a, "web.service.consul"), "A") == [
        "10.0.0.12", "127.0.0.1"]
    assert datas(ask(a, "web.service.consul", "ANY"), "A") == [
        "10.0.0.12", "127.0.0.1"]
    assert datas(ask(a, "web6.service.consul", "AAAA"), "AAAA") == [
        "fd00::6"]
    r = ask(a, "web6.service.consul", "SRV")
    assert datas(r, "AAAA", "additional") == ["fd00::6"]
    # NODATA: the name exists, not the type.
    assert_negative(ask(a, "web.service.consul", "AAAA"), dns.rcode.NOERROR)
    assert_negative(ask(a, "web6.service.consul", "A"), dns.rcode.NOERROR)
    assert_negative(ask(a, "web.service.consul", "TXT"), dns.rcode.NOERROR)
    # Case does not matter; the answer keeps the question's spelling.
    r = ask(a, "WeB.SERVICE.Consul", "A")
    assert rrs(r)[0][0] == "WeB.SERVICE.Consul."
    assert len(rrs(r)) == 2
    # dig agrees.
    out = dig(a, "web.service.consul", "SRV", "+short").split("\n")
    assert sorted(x for x in out if x) == sorted([
        "1 1 8080 %s.node.dc1.consul." % node,
        "1 5 8081 0a00000c.addr.dc1.consul."])
    assert dig(a, "0a00000c.addr.dc1.consul", "+short").strip() == \
        "10.0.0.12"


def test_tags_and_rfc2782(dns_cluster):
    a = dns_cluster.servers[1]
    assert datas(ask(a, "primary.web.service.consul"), "A") == ["127.0.0.1"]
    assert datas(ask(a, "SECONDARY.web.service.dc1.consul"), "A") == [
        "10.0.0.12"]
    for name in ("_web._tcp.service.consul", "_web._tcp.service.dc1.consul",
                 "_web._tcp.consul"):
        r = ask(a, name, "SRV")
        assert {p for _, p, _ in srv_set(r)} == {8080, 8081}, name
    r = ask(a, "_web._secondary.service.consul", "SRV")
    assert {p for _, p, _ in srv_set(r)} == {8081}
    assert_negative(ask(a, "nope.web.service.consul", "SRV"),
                    dns.rcode.NXDOMAIN)
    assert_negative(ask(a, "_web._udp.service.consul", "SRV"),
                    dns.rcode.NXDOMAIN)
    assert_negative(ask(a, "web.service.dc2.consul", "SRV"),
                    dns.rcode.NXDOMAIN)


def test_nodes_and_ptr(dns_cluster):
    a, b, c = dns_cluster.servers
    for name in ("%s.node.consul", "%s.node.dc1.consul",
                 "%s.node.dc1.dc.consul"):
        r = ask(a, name % b.name)
        assert datas(r, "A") == ["127.0.0.1"], name
    assert_negative(ask(a, "%s.node.consul" % b.name, "AAAA"),
                    dns.rcode.NOERROR)
    assert_negative(ask(a, "nosuch.node.consul"), dns.rcode.NXDOMAIN)
    # All three servers live on 127.0.0.1.
    r = ask(a, "1.0.0.127.in-addr.arpa", "PTR")
    assert r.flags & dns.flags.AA
    assert datas(r, "PTR") == sorted("%s.node.dc1.consul." % s.name
                                     for s in (a, b, c))
    out = dig(a, "-x", "127.0.0.1", "+short").split()
    assert sorted(out) == datas(r, "PTR")
    assert_negative(ask(a, "9.9.9.10.in-addr.arpa", "PTR"),
                    dns.rcode.NXDOMAIN)


def test_nxdomain_nodata_soa_ns_refused(dns_cluster):
    a = dns_cluster.servers[2]
    assert_negative(ask(a, "nope.service.consul", "SRV"), dns.rcode.NXDOMAIN)
    assert_negative(ask(a, "nope.service.consul", "A", tcp=True),
                    dns.rcode.NXDOMAIN)
    assert_negative(ask(a, "x.nothing.consul"), dns.rcode.NXDOMAIN)
    # Leads to names: exists (NODATA), not NXDOMAIN (RFC 8020).
    assert_negative(ask(a, "service.consul"), dns.rcode.NOERROR)
    r = ask(a, "consul", "SOA")
    soa = rrs(r)
    assert len(soa) == 1 and soa[0][1] == "SOA", soa
    mname, rname, serial, refresh, retry, expire, minimum = \
        soa[0][2].split()
    assert (mname, rname) == ("ns.consul.", "hostmaster.consul.")
    assert abs(int(serial) - time.time()) < 60
    assert (refresh, retry, expire, minimum) == ("3600", "600", "86400", "0")
    r = ask(a, "consul", "NS", edns=1232)
    names = sorted("%s.node.dc1.consul." % s.name
                   for s in dns_cluster.servers)
    assert datas(r, "NS") == names
    assert sorted(o for o, _, _ in rrs(r, "additional", "A")) == names
    # Not ours and no recursor: REFUSED, not authoritative.
    r = ask(a, "example.com")
    assert r.rcode() == dns.rcode.REFUSED and not r.flags & dns.flags.AA
    # Zone transfers: NOTIMP.
    r = ask(a, "consul", "AXFR", tcp=True)
    assert r.rcode() == dns.rcode.NOTIMP


def test_instance_leaves_and_returns_with_its_ttl_check(dns_cluster):
    a, b, c = dns_cluster.servers
    register(b, {"Name": "blink", "ID": "blink1", "Port": 7000,
                 "Check": {"TTL": "3s"}})
    # A TTL check starts critical: not in DNS yet.
    for s in (a, b, c):
        assert_negative(eventually(
            lambda: ask(s, "blink.service.consul"), 10, "an answer"),
            dns.rcode.NXDOMAIN)
    ttl_ok(b, "pass", "service:blink1")

    def up(s):
        return datas(ask(s, "blink.service.consul"), "A") == ["127.0.0.1"]

    def down(s):
        return ask(s, "blink.service.consul").rcode() == dns.rcode.NXDOMAIN
    for s in (a, b, c):
        eventually(lambda: up(s), 10, "blink up on %s" % s.name)
    # No heartbeat: the check lapses, the instance leaves DNS everywhere.
    t0 = time.monotonic()
    for s in (a, b, c):
        eventually(lambda: down(s), 15, "blink gone from %s" % s.name)
    assert time.monotonic() - t0 < 12
    # A pass brings it back.
    ttl_ok(b, "pass", "service:blink1")
    for s in (a, b, c):
        eventually(lambda: up(s), 10, "blink back on %s" % s.name)
    # Warning: still answered, with the Warning weight.
    ttl_ok(b, "warn", "service:blink1")
    eventually(lambda: srv_set(ask(a, "blink.service.consul", "SRV")) ==
               {(1, 7000, "%s.node.dc1.consul." % b.name)}, 10,
               "blink in warning")


# ---- sizes ---------------------------------------------------------------------


def test_truncation_and_tcp_fallback_with_50_instances(dns_cluster):
    a = dns_cluster.servers[0]
    # Plain UDP: at most 3 answers (the answer limit), TC set.
    r = ask(a, "big.service.consul", "SRV")
    assert r.flags & dns.flags.TC
    n = len(rrs(r, "answer", "SRV"))
    assert 1 <= n <= 3
    assert len(r.to_wire()) <= 512
    targets = {t for _, _, t in srv_set(r)}
    assert {o for o, _, _ in rrs(r, "additional")} == targets
    r = ask(a, "big.service.consul", "A")
    assert r.flags & dns.flags.TC and 1 <= len(rrs(r)) <= 3
    # EDNS0 1232: more, still cut, within the size.
    q = dns.message.make_query("big.service.consul", "SRV", use_edns=0,
                               payload=1232)
    wire = dns.query.udp(q, HOST, port=dns_port(a), timeout=3,
                         ignore_trailing=True)
    size = len(wire.to_wire())
    assert size <= 1232 and wire.flags & dns.flags.TC
    n = len(rrs(wire, "answer", "SRV"))
    assert 3 < n < BIG
    targets = {t for _, _, t in srv_set(wire)}
    assert {o for o, _, _ in rrs(wire, "additional", "A")} == targets
    # TCP: all of them, with every address.
    r = ask(a, "big.service.consul", "SRV", tcp=True)
    assert not r.flags & dns.flags.TC
    assert len(srv_set(r)) == BIG
    assert datas(r, "A", "additional") == sorted(
        "10.50.0.%d" % (i + 1) for i in range(BIG))
    assert datas(ask(a, "big.service.consul", "A", tcp=True), "A") == \
        sorted("10.50.0.%d" % (i + 1) for i in range(BIG))
    # A resolver's fallback: dig sees TC and retries over TCP by itself.
    out = dig(a, "+noedns", "big.service.consul", "SRV")
    assert "Truncated, retrying in TCP mode" in out, out
    assert out.count("\tSRV\t") == BIG, out
    r, used_tcp = dns.query.udp_with_fallback(
        dns.message.make_query("big.service.consul", "SRV", use_edns=False),
        HOST, port=dns_port(a), timeout=3)
    assert used_tcp and len(srv_set(r)) == BIG


def test_edns0(dns_cluster):
    a = dns_cluster.servers[1]
    r = ask(a, "web.service.consul", "SRV", edns=1232)
    assert r.edns == 0 and r.payload == 4096
    r = ask(a, "web.service.consul", "A")
    assert r.edns == -1                     # none asked, none given
    # Client subnet: echoed with scope 0 (the answer is the same for all).
    ecs = dns.edns.ECSOption("192.0.2.0", 24)
    r = ask(a, "web.service.consul", "A", edns=1232, options=[ecs])
    got = [o for o in r.options if o.otype == dns.edns.ECS]
    assert len(got) == 1 and got[0].address == "192.0.2.0" and \
        got[0].srclen == 24 and got[0].scopelen == 0
    # A big EDNS size: everything fits in UDP.
    r = ask(a, "big.service.consul", "SRV", edns=4096)
    assert not r.flags & dns.flags.TC and len(srv_set(r)) == BIG
    assert len(r.to_wire()) <= 4096
    # Sizes under 512 count as 512.
    r = ask(a, "big.service.consul", "A", edns=100)
    assert 1 <= len(rrs(r)) <= 3 and r.flags & dns.flags.TC
    # EDNS version 1: BADVERS.
    r = ask(a, "web.service.consul", "A", edns=1232, version=1)
    assert r.rcode() == dns.rcode.BADVERS and r.answer == []
    # dig's defaults (EDNS 1232, a cookie): answered.
    assert "status: NOERROR" in dig(a, "web.service.consul", "SRV")


def test_every_server_gives_the_same_answers(dns_cluster):
    for name, rdtype in (("web.service.consul", "SRV"),
                         ("web.service.consul", "A"),
                         ("big.service.consul", "SRV"),
                         ("big.service.consul", "A"),
                         ("consul", "NS")):
        views = []
        for s in dns_cluster.servers:
            r = ask(s, name, rdtype, tcp=True)
            views.append((sorted(rrs(r)), sorted(rrs(r, "additional"))))
        assert views[0] == views[1] == views[2], name
        assert views[0][0], name


# ---- bad input -------------------------------------------------------------------


def query_bytes(name, qtype=1, qid=0x4242, counts=(1, 0, 0, 0), flags=0x0100):
    wire = b"".join(bytes([len(x)]) + x.encode()
                    for x in name.split(".") if x) + b"\x00"
    return struct.pack(">HHHHHH", qid, flags, *counts) + wire + \
        struct.pack(">HH", qtype, 1)


def garbage_packets():
    good = query_bytes("web.service.consul")
    hdr = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0)
    pk = [
        b"", b"\x00", b"\x00" * 11, hdr,                  # truncated
        hdr + b"\x03web", hdr + b"\x03web\x00\x00",
        hdr + b"\xc0\x0c\x00\x01\x00\x01",               # points at itself
        hdr + b"\xc0\x0e\xc0\x0c\x00\x01\x00\x01",       # a loop of two
        hdr + b"\x03abc\xc0\x0c\x00\x01\x00\x01",        # back to its start
        hdr + b"\xc0\xff\x00\x01\x00\x01",               # past the end
        hdr + b"\x3fabc\x00\x00\x01\x00\x01",            # label overruns
        hdr + b"\x40abc\x00\x00\x01\x00\x01",            # label type 0x40
        hdr + b"\x80abc\x00\x00\x01\x00\x01",            # label type 0x80
        hdr + (b"\x01a" * 130) + b"\x00\x00\x01\x00\x01",  # name over 255
        query_bytes("web.service.consul", counts=(65535, 65535, 65535,
                                                  65535)),
        query_bytes("web.service.consul", counts=(0, 0, 0, 0)),
        query_bytes("web.service.consul", counts=(2, 0, 0, 0)),
        query_bytes("web.service.consul", counts=(1, 0, 0, 3)),
        query_bytes("web.service.consul", flags=0x8100),      # a response
        query_bytes("web.service.consul", flags=0x7900),      # opcode 15
        good + b"\x00" * 5000,                                # trailing
        good[:-1], good[:20],
        # An OPT with an option overrunning its data.
        query_bytes("web.service.consul", counts=(1, 0, 0, 1)) +
        b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x08\x00\x08\x00\xff",
    ]
    rnd = random.Random(5)
    for _ in range(1500):
        pk.append(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(64))))
    for _ in range(1500):
        b = bytearray(good)
        for _ in range(rnd.randrange(1, 4)):
            b[rnd.randrange(len(b))] = rnd.getrandbits(8)
        pk.append(bytes(b[:rnd.randrange(12, len(b) + 1)]))
    return pk


def test_garbage_never_crashes_a_server(dns_cluster):
    a = dns_cluster.servers[2]
    port = dns_port(a)
    pk = garbage_packets()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(0.5)
        for i, p in enumerate(pk):
            u.sendto(p, (HOST, port))
            if i % 200 == 0:            # let it keep up; drain replies
                u.setblocking(False)
                try:
                    while u.recv(70000):
                        pass
                except (BlockingIOError, OSError):
                    pass
                u.settimeout(0.5)
                time.sleep(0.01)
    # TCP: every packet framed, on a few connections; then frames that lie
    # about their length, a zero-length frame, half a length prefix.
    for chunk in range(0, len(pk), 500):
        with socket.create_connection((HOST, port), timeout=5) as t:
            try:
                t.sendall(b"".join(struct.pack(">H", len(p)) + p
                                   for p in pk[chunk:chunk + 500]))
            except OSError:
                pass                    # closed on us: fine
    for raw in (b"\xff\xff" + b"x" * 10, b"\x00\x00", b"\x00",
                b"\x00\x05abc", b"\x10\x00" + b"\x00" * 4096):
        with socket.create_connection((HOST, port), timeout=5) as t:
            t.sendall(raw)
    # A stalled connection does not hold up the others.
    stall = socket.create_connection((HOST, port), timeout=5)
    stall.sendall(b"\x00\x30\x12")
    try:
        a.check_alive()
        assert datas(ask(a, "web.service.consul", tcp=True), "A") == [
            "10.0.0.12", "127.0.0.1"]
        assert datas(ask(a, "web.service.consul"), "A") == [
            "10.0.0.12", "127.0.0.1"]
    finally:
        stall.close()
    # Several queries on one connection, answered in order.
    with socket.create_connection((HOST, port), timeout=5) as t:
        names = ["web.service.consul", "nope.service.consul", "consul"]
        t.sendall(b"".join(struct.pack(">H", len(q)) + q for q in (
            query_bytes(n, qtype=1 if n != "consul" else 6, qid=i)
            for i, n in enumerate(names))))
        got = []
        buf = b""
        while len(got) < 3:
            data = t.recv(65536)
            assert data, "closed before three replies"
            buf += data
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack(
                    ">H", buf[:2])[0]:
                n = struct.unpack(">H", buf[:2])[0]
                got.append(dns.message.from_wire(buf[2:2 + n]))
                buf = buf[2 + n:]
        assert [m.id for m in got] == [0, 1, 2]
        assert [m.rcode() for m in got] == [
            dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.NOERROR]
    a.check_alive()


def test_udp_bursts_from_many_sockets(dns_cluster):
    """Queries in flight from several sockets at once, so that the server
    reads them in batches (recvmmsg) and answers each batch with one
    sendmmsg, mostly from its answer cache: every reply reaches the socket
    that asked, with its ID, its question as spelt and the answer that
    query alone gets."""
    a = dns_cluster.servers[1]
    port = dns_port(a)
    kinds = [("web.service.consul", 1), ("WeB.Service.CONSUL", 1),
             ("web.service.consul", 33), ("nope.service.consul", 1),
             ("%s.node.consul" % a.name, 1), ("big.service.consul", 1),
             ("consul", 2)]

    def key(m):
        """What must match, the order of shuffled answers aside."""
        return (dns.rcode.to_text(m.rcode()), bool(m.flags & dns.flags.TC),
                len(rrs(m)), sorted(rrs(m, "answer", "A")) if
                m.question[0].name.to_text().startswith("web") else None)
    want = {}
    for name, qtype in kinds:
        q = dns.message.from_wire(query_bytes(name, qtype=qtype))
        want[(name, qtype)] = key(dns.query.udp(q, HOST, port=port,
                                                timeout=3))
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
             for _ in range(8)]
    try:
        sent = []
        for rnd in range(40):
            for i, u in enumerate(socks):
                name, qtype = kinds[(rnd + i) % len(kinds)]
                qid = (i << 8) | rnd
                u.sendto(query_bytes(name, qtype=qtype, qid=qid),
                         (HOST, port))
                sent.append((i, qid, name, qtype))
        got = {}
        for i, u in enumerate(socks):
            u.settimeout(5)
            n = sum(1 for s in sent if s[0] == i)
            while len([k for k in got if k[0] == i]) < n:
                m = dns.message.from_wire(u.recv(70000))
                assert (m.id >> 8) == i, "a reply for another socket"
                assert (i, m.id) not in got, "a reply twice"
                got[(i, m.id)] = m
        for i, qid, name, qtype in sent:
            m = got[(i, qid)]
            assert m.question[0].name.to_text() == name + ".", name
            assert m.question[0].rdtype == qtype
            assert key(m) == want[(name, qtype)], (name, qtype)
    finally:
        for u in socks:
            u.close()
    a.check_alive()


def test_stalled_tcp_connection_is_closed(dns_cluster):
    """Half a frame, then silence: closed after the idle timeout (10 s),
    while other clients are served meanwhile."""
    a = dns_cluster.servers[0]
    with socket.create_connection((HOST, dns_port(a)), timeout=30) as t:
        t.sendall(b"\x00\x30\x12")
        t0 = time.monotonic()
        assert datas(ask(a, "web.service.consul", tcp=True), "A")
        assert t.recv(10) == b""
        assert 8 < time.monotonic() - t0 < 15


# ---- a server on its own ----------------------------------------------------------


def test_server_cut_off_from_the_leader_keeps_answering(cluster_factory):
    cluster = cluster_factory(3)
    for s in cluster.servers:
        wait_self_registered(s)
    leader = cluster.leader()
    register(leader, {"Name": "lone", "ID": "lone1", "Port": 5000,
                      "Address": "10.7.0.1"})
    for s in cluster.servers:
        eventually(lambda: datas(ask(s, "lone.service.consul"), "A") ==
                   ["10.7.0.1"], 10, "lone on %s" % s.name)
    keep = cluster.followers()[0]
    for s in cluster.servers:
        if s is not keep:
            cluster.stop(s)
    # Alone, it cannot have a leader: it answers from its own state.
    time.sleep(2)
    r = ask(keep, "lone.service.consul", "SRV")
    assert srv_set(r) == {(1, 5000, "0a070001.addr.dc1.consul.")}
    assert datas(ask(keep, "lone.service.consul", tcp=True), "A") == [
        "10.7.0.1"]
    assert_negative(ask(keep, "nope.service.consul"), dns.rcode.NXDOMAIN)
    assert datas(ask(keep, "%s.node.consul" % keep.name), "A") == [
        "127.0.0.1"]


# ---- options: recursor, alternate domain, TTLs -----------------------------------


class FakeRecursor:
    """A UDP DNS server on 127.0.0.1 in a thread: answers A queries for
    *.example.com with 192.0.2.1, stays silent for *.silent.test."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries = []
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping:
            try:
                data, peer = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                q = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue
            self.queries.append(q)
            name = q.question[0].name.to_text()
            if name.endswith("silent.test."):
                continue
            r = dns.message.make_response(q)
            r.answer.append(dns.rrset.from_text(
                q.question[0].name, 60, "IN", "A", "192.0.2.1"))
            self.sock.sendto(r.to_wire(), peer)

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def recursor():
    r = FakeRecursor()
    yield r
    r.close()


def test_recursor_alt_domain_and_ttls(node_factory, recursor):
    n = node_factory(extra_args=[
        "--dns-recursor", "%s:%d" % (HOST, recursor.port),
        "--dns-alt-domain", "beacon.test",
        "--dns-service-ttl", "web=10s,we*=5s,*=1s",
        "--dns-node-ttl", "30s"])
    wait_self_registered(n)
    register(n, {"Name": "web", "ID": "web1", "Port": 80})
    register(n, {"Name": "west", "ID": "west1", "Port": 80})
    register(n, {"Name": "db", "ID": "db1", "Port": 80})
    eventually(lambda: rrs(ask(n, "db.service.consul")), 10, "db")
    # Forwarded, the client's ID back in place; RA on everything.
    r = ask(n, "www.example.com")
    assert r.rcode() == dns.rcode.NOERROR
    assert datas(r, "A") == ["192.0.2.1"]
    assert recursor.queries[-1].question == r.question
    r = ask(n, "www.example.com", tcp=True)
    assert datas(r, "A") == ["192.0.2.1"]
    r = ask(n, "web.service.consul")
    assert r.flags & dns.flags.RA and r.flags & dns.flags.AA
    # A recursor that does not answer: SERVFAIL after the timeout (2 s).
    t0 = time.monotonic()
    r = ask(n, "x.silent.test", timeout=6)
    assert r.rcode() == dns.rcode.SERVFAIL
    assert 1.5 < time.monotonic() - t0 < 5
    # The alternate domain, in questions and answers alike.
    r = ask(n, "web.service.beacon.test", "SRV")
    assert srv_set(r) == {(1, 80, "%s.node.dc1.beacon.test." % n.name)}
    assert_negative(ask(n, "nope.service.beacon.test"), dns.rcode.NXDOMAIN,
                    "beacon.test.")
    # TTLs: exact, prefix, "*", nodes.
    assert {x.ttl for x in ask(n, "web.service.consul", "SRV").answer +
            ask(n, "web.service.consul", "SRV").additional} == {10}
    assert ask(n, "west.service.consul").answer[0].ttl == 5
    assert ask(n, "db.service.consul").answer[0].ttl == 1
    assert ask(n, "%s.node.consul" % n.name).answer[0].ttl == 30


def test_dns_metrics(node):
    """Queries and their outcomes are counted in /v1/agent/metrics."""
    import dns.message
    import dns.query

    port = node.dns_port
    # The leader records its "consul" instance shortly after it starts
    # serving: before that, the first name is NXDOMAIN too.
    wait_self_registered(node)
    for name in ("consul.service.consul.", "nope.service.consul."):
        q = dns.message.make_query(name, "SRV")
        dns.query.udp(q, "127.0.0.1", port=port, timeout=3)
    text = node.get("/v1/agent/metrics?format=prometheus").text
    values = dict(line.rsplit(" ", 1) for line in text.splitlines()
                  if line.startswith("beacon_dns_"))
    assert int(values['beacon_dns_queries_total{transport="udp"}']) >= 2
    assert int(values['beacon_dns_answers_total{rcode="nxdomain"}']) >= 1
    assert int(values['beacon_dns_answers_total{rcode="noerror"}']) >= 1

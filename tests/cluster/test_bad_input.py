"""Robustness of the HTTP server against bad input: malformed HTTP, lying
lengths, broken chunked bodies, slow and idle clients, thousands of blocking
queries, invalid key encodings, hostile JSON, odd methods and pipelining.

Every test checks that the server
  (a) answers the bad request with a clear 4xx (or closes that connection),
  (b) still serves other clients: a PUT/GET round trip on a fresh connection,
  (c) changed no state because of the bad request (KV index and keys), and
  (d) keeps its resident memory bounded where the input is large.

Malformed HTTP is written with raw sockets on 127.0.0.1; every wait is
bounded in time and every socket is closed.  A known misbehaviour is marked
xfail(strict=True) with its evidence, so that fixing it turns the mark red.

Run:  BEACOND=build/san/beacond /usr/bin/python3 -m pytest \
          tests/cluster/test_bad_input.py
"""

import base64
import json
import os
import random
import re
import resource
import select
import selectors
import socket
import threading
import time

import pytest
import requests

HOST = "127.0.0.1"
MAX_VALUE = 524288                 # KV value and /v1/txn body limit, bytes
RSS_SLACK_KIB = 64 * 1024          # allowed growth of VmRSS, KiB
ANSWER_TIMEOUT = 5.0               # s: a bad request must be answered/closed
HANG_TIMEOUT = 1.5                 # s: used where a hang is the known bug
RELEASE_TIMEOUT = 3.0              # s: to close what the client closed
H = b"Host: 127.0.0.1\r\n"


@pytest.fixture(autouse=True)
def small_asan_quarantine(monkeypatch):
    """ASan keeps freed memory in a 256 MiB quarantine, so under the
    sanitizer build VmRSS grows by every freed megabyte up to that size and
    says nothing about leaks.  Nodes of this module run with a 16 MiB
    quarantine, so that the RSS checks (d) mean something.  (Requested before
    `node`: autouse fixtures are set up first.)"""
    opts = os.environ.get("ASAN_OPTIONS", "")
    monkeypatch.setenv("ASAN_OPTIONS",
                       (opts + ":" if opts else "") + "quarantine_size_mb=16")


# ---- raw HTTP --------------------------------------------------------------


class Hang(AssertionError):
    pass


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # lower-case name -> value
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %r %r>" % (self.status, self.headers, self.body[:200])


def parse_response(buf, eof=False):
    """(Resp, rest) if `buf` starts with one complete response, else None.
    Raises AssertionError on a malformed response."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].split(b"\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})(?: .*)?$", lines[0])
    assert m, "malformed status line %r" % lines[0]
    status = int(m.group(1))
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        assert sep, "malformed response header %r" % line
        headers[name.strip().lower().decode("latin-1")] = \
            value.strip().decode("latin-1")
    rest = buf[end + 4:]
    if 100 <= status < 200 or status in (204, 304):
        return Resp(status, headers, b""), rest
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            nl = rest.find(b"\r\n")
            if nl < 0:
                return None
            size = int(rest[:nl].split(b";")[0], 16)
            if len(rest) < nl + 2 + size + 2:
                return None
            body += rest[nl + 2:nl + 2 + size]
            rest = rest[nl + 2 + size + 2:]
            if size == 0:
                return Resp(status, headers, body), rest
    if "content-length" in headers:
        n = int(headers["content-length"])
        if len(rest) < n:
            return None
        return Resp(status, headers, rest[:n]), rest[n:]
    if eof:
        return Resp(status, headers, rest), b""
    return None


class Raw:
    """One raw TCP connection to a node's HTTP port (a context manager)."""

    def __init__(self, node, timeout=ANSWER_TIMEOUT):
        self.sock = socket.create_connection((HOST, node.http_port),
                                             timeout=timeout)
        self.buf = b""
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def send(self, data):
        """sendall; False if the server closed or reset meanwhile."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
        self.buf += data

    def response(self, timeout=ANSWER_TIMEOUT, skip_interim=True):
        """The next response, or None if the server closed the connection
        first.  Raises Hang if it did neither within `timeout`."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                parsed = parse_response(self.buf, self.eof)
                if parsed is not None:
                    resp, self.buf = parsed
                    if skip_interim and 100 <= resp.status < 200:
                        continue
                    return resp
                if self.eof:
                    return None
                self._fill(deadline)
        except socket.timeout:
            raise Hang("server neither answered nor closed the connection "
                       "within %.1f s (buffered: %r)"
                       % (timeout, self.buf[:200]))

    def closed_within(self, timeout):
        """True if the server closes (EOF/reset) within `timeout`; data
        received meanwhile is kept in self.buf."""
        deadline = time.monotonic() + timeout
        try:
            while not self.eof:
                self._fill(deadline)
            return True
        except socket.timeout:
            return False


def exchange(node, data, timeout=ANSWER_TIMEOUT):
    """Send `data` on a fresh connection; the first response or None."""
    with Raw(node, timeout) as c:
        c.send(data)
        return c.response(timeout)


def assert_rejected(resp, allowed=()):
    """(a): a clear 4xx with a reason (or any status in `allowed`), or None
    (the connection was closed)."""
    if resp is None:
        return
    assert 400 <= resp.status < 500 or resp.status in allowed, \
        "expected a 4xx or a close, got %r" % resp
    assert resp.body.strip(), "4xx without a reason: %r" % resp


def request_bytes(method, path, body=None, headers=(), version=b"HTTP/1.1"):
    req = b"%s %s %s\r\n" % (method, path, version) + H
    for h in headers:
        req += h + b"\r\n"
    if body is not None:
        req += b"Content-Length: %d\r\n" % len(body)
    return req + b"\r\n" + (body or b"")


# ---- server state ----------------------------------------------------------


def state(node):
    """(KV index, keys): any write moves the index.  Fresh connection."""
    with requests.Session() as s:
        s.trust_env = False
        r = s.get(node.url + "/v1/kv/?keys", timeout=ANSWER_TIMEOUT)
    assert r.status_code == 200, r.text
    return int(r.headers["X-Consul-Index"]), r.json()


_probe = [0]


def assert_serving(node, max_latency=2.0):
    """(b): a PUT/GET round trip on a fresh connection, answered quickly."""
    assert node.running(), "beacond exited\n" + node.log_tail()
    _probe[0] += 1
    key = "probe/%d-%d" % (os.getpid(), _probe[0])
    value = os.urandom(8).hex().encode()
    with requests.Session() as s:
        s.trust_env = False
        t0 = time.monotonic()
        r = s.put(node.url + "/v1/kv/" + key, data=value,
                  timeout=ANSWER_TIMEOUT)
        assert r.status_code == 200 and r.content == b"true", r.text
        r = s.get(node.url + "/v1/kv/" + key + "?raw", timeout=ANSWER_TIMEOUT)
        assert r.status_code == 200 and r.content == value, r.text
        took = time.monotonic() - t0
    assert took < max_latency, "round trip took %.2f s" % took


def rss_kib(node):
    with open("/proc/%d/status" % node.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % node.pid)


def assert_rss_bounded(node, before_kib, what=""):
    after = rss_kib(node)
    assert after - before_kib < RSS_SLACK_KIB, \
        "VmRSS grew from %d to %d KiB %s" % (before_kib, after, what)


def open_fds(node):
    return len(os.listdir("/proc/%d/fd" % node.pid))


def server_sockets(node, tcp_state):
    """Sockets whose local port is the node's HTTP port, in `tcp_state`
    (hex as in /proc/net/tcp: 01 ESTABLISHED, 08 CLOSE_WAIT)."""
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if (int(fields[1].rsplit(":", 1)[1], 16) == node.http_port
                    and fields[3] == tcp_state):
                n += 1
    return n


def wait_until(cond, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


def metric(node, name):
    with requests.Session() as s:
        s.trust_env = False
        r = s.get(node.url + "/v1/agent/metrics?format=prometheus",
                  timeout=ANSWER_TIMEOUT)
    m = re.search(r"^%s (\S+)$" % re.escape(name), r.text, re.M)
    assert m, "no metric %s" % name
    return float(m.group(1))


def value_of(node, key):
    with requests.Session() as s:
        s.trust_env = False
        r = s.get(node.url + "/v1/kv/" + key + "?raw", timeout=ANSWER_TIMEOUT)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return r.content


def check_bad_request(node, data, allowed=(), timeout=ANSWER_TIMEOUT):
    """Send one bad request on a fresh connection and check (a), (b), (c)."""
    before = state(node)
    resp = exchange(node, data, timeout)
    assert_rejected(resp, allowed)
    assert state(node) == before, "the bad request changed the store"
    assert_serving(node)
    return resp


def raise_nofile(needed):
    """Raise this process's soft RLIMIT_NOFILE to `needed` if possible;
    returns the old limits (to restore) or skips the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft, hard
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip("RLIMIT_NOFILE hard limit %d < %d" % (hard, needed))
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return soft, hard


def server_nofile(node):
    with open("/proc/%d/limits" % node.pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                v = line.split()[3]
                return float("inf") if v == "unlimited" else int(v)
    return float("inf")


# ---- 1. malformed request heads ---------------------------------------------


GARBAGE = random.Random(20261122).randbytes(4096)

MALFORMED_HEADS = [
    ("garbage-binary", GARBAGE + b"\r\n\r\n"),
    ("garbage-text", b"this is not HTTP at all\r\n\r\n"),
    ("method-only", b"\r\n\r\nGET\r\n\r\n"),
    ("no-version", b"GET /v1/kv/a\r\n\r\n"),
    ("no-version-with-headers", b"GET /v1/kv/a\r\n" + H + b"\r\n"),
    ("put-no-version", b"PUT /v1/kv/a\r\n" + H +
     b"Content-Length: 1\r\n\r\nx"),
    ("empty-target", b"GET  HTTP/1.1\r\n" + H + b"\r\n"),
    ("trailing-space-after-version", b"PUT /v1/kv/a HTTP/1.1 \r\n" + H +
     b"Content-Length: 1\r\n\r\nx"),
    ("uri-64KiB", b"GET /v1/kv/" + b"a" * 65536 + b" HTTP/1.1\r\n" + H +
     b"\r\n"),
    ("uri-1MiB-put", b"PUT /v1/kv/" + b"a" * (1 << 20) + b" HTTP/1.1\r\n" + H
     + b"Content-Length: 1\r\n\r\nx"),
    ("header-100KiB", b"PUT /v1/kv/a HTTP/1.1\r\n" + H + b"X-Big: " +
     b"b" * 102400 + b"\r\nContent-Length: 1\r\n\r\nx"),
    ("headers-2000", b"PUT /v1/kv/a HTTP/1.1\r\n" + H +
     b"".join(b"X-Header-%04d: value-%04d\r\n" % (i, i) for i in range(2000))
     + b"Content-Length: 1\r\n\r\nx"),
    ("header-without-colon", b"PUT /v1/kv/a HTTP/1.1\r\n" + H +
     b"NoColonHere\r\nContent-Length: 1\r\n\r\nx"),
    ("nul-in-header-name", b"PUT /v1/kv/a HTTP/1.1\r\n" + H +
     b"X-A\x00B: 1\r\nContent-Length: 1\r\n\r\nx"),
]


@pytest.mark.parametrize("data", [d for _, d in MALFORMED_HEADS],
                         ids=[i for i, _ in MALFORMED_HEADS])
def test_malformed_request_head(node, data):
    rss0 = rss_kib(node)
    resp = check_bad_request(node, data)
    if resp is not None and resp.status in (414, 431):
        assert resp.headers.get("connection", "").lower() == "close", resp
    assert_rss_bounded(node, rss0)


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/9.9", b"HTTP/1.10",
                                     b"http/1.1", b"HTTP/1"])
def test_bad_http_version(node, version):
    # 505 (HTTP Version Not Supported) is the standard answer to a
    # well-formed but unsupported version: accepted besides 4xx.
    check_bad_request(node, b"PUT /v1/kv/v " + version + b"\r\n" + H +
                      b"Content-Length: 1\r\n\r\nx", allowed=(505,))


def test_huge_request_heads_repeated_memory_bounded(node):
    """(d): 20 requests of 1 MiB URI and 20 of 100 KiB headers."""
    rss0 = rss_kib(node)
    before = state(node)
    t0 = time.monotonic()
    for i in range(40):
        if i % 2:
            data = b"GET /v1/kv/" + b"u" * (1 << 20) + b" HTTP/1.1\r\n" + H \
                + b"\r\n"
        else:
            data = b"GET /v1/kv/a HTTP/1.1\r\n" + H + b"X-Big: " + \
                b"h" * 102400 + b"\r\n\r\n"
        assert_rejected(exchange(node, data))
        assert time.monotonic() - t0 < 30
    assert state(node) == before
    assert_serving(node)
    assert_rss_bounded(node, rss0)


TRUNCATED = [
    ("request-line", b"GET /v1/kv/a HT"),
    ("headers", b"PUT /v1/kv/a HTTP/1.1\r\n" + H + b"Content-Len"),
    ("before-blank-line", b"PUT /v1/kv/a HTTP/1.1\r\n" + H +
     b"Content-Length: 1\r\n"),
    ("body-10-of-5", b"PUT /v1/kv/a HTTP/1.1\r\n" + H +
     b"Content-Length: 10\r\n\r\nabcde"),
    ("chunked-body", b"PUT /v1/kv/a HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
]


@pytest.mark.parametrize("data", [d for _, d in TRUNCATED],
                         ids=[i for i, _ in TRUNCATED])
def test_truncated_then_close(node, data):
    """The client sends part of a request, pauses, then closes: nothing is
    written and the server closes its end too."""
    before = state(node)
    for _ in range(5):
        with Raw(node) as c:
            c.send(data)
            time.sleep(0.1)          # the server reads the data first
    assert wait_until(lambda: server_sockets(node, "08") == 0,
                      RELEASE_TIMEOUT), \
        "%d server connections left in CLOSE_WAIT" % server_sockets(node, "08")
    assert state(node) == before
    assert_serving(node)


def test_http11_without_host_rejected(node):
    check_bad_request(node, b"PUT /v1/kv/nohost HTTP/1.1\r\n"
                      b"Content-Length: 1\r\n\r\nx")


@pytest.mark.parametrize("cl", [b"4", b"50", b"1000000"])
def test_chunked_and_content_length(node, cl):
    """Transfer-Encoding: chunked with Content-Length: 400, or the chunked
    body is used (never Content-Length), and what follows is not a smuggled
    request."""
    with Raw(node) as c:
        c.send(b"PUT /v1/kv/te/both HTTP/1.1\r\n" + H +
               b"Content-Length: " + cl + b"\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\n\r\n")
        r = c.response()
        ok = r is not None and r.status == 200
        if not ok:
            assert_rejected(r, allowed=())
        # A following request on the same connection: answered or closed.
        if c.send(b"GET /v1/kv/te/both?raw HTTP/1.1\r\n" + H + b"\r\n"):
            try:
                r2 = c.response(timeout=2)
            except Hang:
                r2 = "hang"
            assert r2 is None or r2 == "hang" or r2.status in (200, 404, 400)
    stored = value_of(node, "te/both")
    assert stored in (None, b"hello"), stored
    if not ok:
        assert stored is None
    assert_serving(node)


def test_chunked_and_content_length_closes_connection(node):
    with Raw(node) as c:
        c.send(b"PUT /v1/kv/te/both HTTP/1.1\r\n" + H +
               b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\n\r\n")
        r = c.response()
        if r is not None and r.status == 200:
            assert r.headers.get("connection", "").lower() == "close", r
            assert c.closed_within(2.0), "connection kept open"


UNSUPPORTED_TE = [(b"gzip", None), (b"gzip", b"5"), (b"gzip, chunked", None),
                  (b"chunked, gzip", None), (b"identity", b"5")]


def test_unsupported_transfer_encoding(node):
    before = state(node)
    conns = []
    outcomes = {}
    try:
        for te, cl in UNSUPPORTED_TE:
            c = Raw(node)
            conns.append(c)
            c.send(b"PUT /v1/kv/te/gz HTTP/1.1\r\n" + H +
                   b"Transfer-Encoding: " + te + b"\r\n" +
                   (b"Content-Length: " + cl + b"\r\n" if cl else b"") +
                   b"\r\n5\r\nhello\r\n0\r\n\r\n")
        deadline = time.monotonic() + HANG_TIMEOUT
        for (te, cl), c in zip(UNSUPPORTED_TE, conns):
            try:
                outcomes[te, cl] = c.response(
                    timeout=max(0.05, deadline - time.monotonic()))
            except Hang:
                outcomes[te, cl] = "hang"
    finally:
        for c in conns:
            c.close()
    assert state(node) == before
    assert_serving(node)
    hung = [k for k, v in outcomes.items() if v == "hang"]
    assert not hung, "no answer and no close within %.1f s for %r" % (
        HANG_TIMEOUT, hung)
    for r in outcomes.values():
        assert_rejected(r, allowed=(501,))


# ---- 10. pipelining ---------------------------------------------------------


def op(**kv):
    """One /v1/txn KV operation."""
    return {"KV": kv}


def js(obj):
    return json.dumps(obj).encode()


def test_pipelined_gets(node):
    ops = [op(Verb="set", Key="p/%03d" % i,
              Value=base64.b64encode(b"value-%d" % i).decode())
           for i in range(100)]
    r = exchange(node, request_bytes(b"PUT", b"/v1/txn", js(ops)))
    assert r is not None and r.status == 200, r
    batch = b"".join(b"GET /v1/kv/p/%03d?raw HTTP/1.1\r\n" % i + H + b"\r\n"
                     for i in range(100))
    with Raw(node, timeout=10) as c:
        t0 = time.monotonic()
        c.send(batch)
        for i in range(100):
            r = c.response(timeout=max(0.1, 10 - (time.monotonic() - t0)))
            assert r is not None, "closed after %d responses" % i
            assert r.status == 200 and r.body == b"value-%d" % i, (i, r)
    assert_serving(node)


def test_pipelined_puts_and_gets(node):
    """50 × (PUT p/i, GET p/i) in one send: the writes suspend the
    connection while the next requests sit in its buffer."""
    batch = b""
    for i in range(50):
        batch += request_bytes(b"PUT", b"/v1/kv/pp/%02d" % i, b"w-%d" % i)
        batch += b"GET /v1/kv/pp/%02d?raw HTTP/1.1\r\n" % i + H + b"\r\n"
    with Raw(node, timeout=15) as c:
        t0 = time.monotonic()
        c.send(batch)
        for i in range(100):
            r = c.response(timeout=max(0.1, 15 - (time.monotonic() - t0)))
            assert r is not None, "closed after %d responses" % i
            want = b"true" if i % 2 == 0 else b"w-%d" % (i // 2)
            assert r.status == 200 and r.body == want, (i, r)
    assert_serving(node)


def test_pipelined_bad_request_in_the_middle(node):
    """Good, bad (400 from Beacon, connection kept), good: answered in
    order; an HTTP-level error closes the connection after its answer."""
    batch = (request_bytes(b"PUT", b"/v1/kv/pm/a", b"1") +
             request_bytes(b"PUT", b"/v1/kv/pm/%ff", b"2") +
             b"GET /v1/kv/pm/a?raw HTTP/1.1\r\n" + H + b"\r\n" +
             b"GET /v1/kv/pm/a HTTP/1.1\r\n" + H + b"Bad Header\r\n\r\n" +
             b"GET /v1/kv/pm/a?raw HTTP/1.1\r\n" + H + b"\r\n")
    with Raw(node) as c:
        c.send(batch)
        statuses = []
        for _ in range(5):
            r = c.response()
            if r is None:
                break
            statuses.append((r.status, r.body[:20]))
        assert statuses[:3] == [(200, b"true"),
                                (400, b"Key must be valid UT"),
                                (200, b"1")], statuses
        assert len(statuses) == 4 and statuses[3][0] == 400, statuses
    assert value_of(node, "pm/a") == b"1"
    assert state(node)[1] == ["pm/a"]
    assert_serving(node)

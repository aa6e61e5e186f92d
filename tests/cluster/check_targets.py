"""Helpers shared by the catalog and health-check tests.

* HTTPTarget: a small HTTP server on 127.0.0.1 (in a thread) whose answer
  the test sets: status code, body, or a delay longer than a check's
  Timeout.  It counts the requests it got and remembers their method and
  headers.
* TCPTarget: a TCP listener on 127.0.0.1 that the test opens and closes
  (same port every time).
* Thin HTTP helpers for the catalog/health endpoints that work with both
  conftest.Node (single-node fixture) and cluster_util.Server (clusters):
  both have .get(path, timeout=...) and .put(path, data=..., timeout=...).

Everything listens on and talks to 127.0.0.1 only; every thread started
here is stopped by stop()/close() (the targets are context managers too).
"""

import http.server
import json
import socket
import threading
import time
import urllib.parse

import consul

HOST = "127.0.0.1"


# ---- check targets ----------------------------------------------------------


class HTTPTarget:
    """HTTP server for HTTP checks.  Set .status (200, 500, 429...), .body
    and .delay (seconds to sleep before answering) at any time."""

    def __init__(self, status=200, body=b"ok", path="/health"):
        self.status = status
        self.body = body
        self.delay = 0.0
        self.path = path
        self.hits = 0
        self.requests = []          # (method, path, {header: value})
        self._lock = threading.Lock()
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                with target._lock:
                    target.hits += 1
                    target.requests.append(
                        (self.command, self.path,
                         {k.lower(): v for k, v in self.headers.items()}))
                    status, body, delay = (target.status, target.body,
                                           target.delay)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass            # the prober gave up (its Timeout)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server((HOST, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://%s:%d%s" % (HOST, self.port, self.path)

    def set(self, status=None, body=None, delay=None):
        with self._lock:
            if status is not None:
                self.status = status
            if body is not None:
                self.body = body
            if delay is not None:
                self.delay = delay

    def hit_count(self):
        with self._lock:
            return self.hits

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class TCPTarget:
    """A listener on 127.0.0.1:<port> that accepts and closes connections.
    close() makes connects fail (refused); open() listens again on the same
    port."""

    def __init__(self):
        self.port = None
        self.sock = None
        self.thread = None
        self._stop = threading.Event()
        self.accepted = 0
        self.open()

    def open(self):
        assert self.sock is None
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:
            try:
                s.bind((HOST, self.port or 0))
                break
            except OSError:
                if self.port is None or time.monotonic() > deadline:
                    s.close()
                    raise
                time.sleep(0.1)
        s.listen(64)
        s.settimeout(0.1)
        self.port = s.getsockname()[1]
        self.sock = s
        self._stop.clear()
        self.thread = threading.Thread(target=self._accept, args=(s,),
                                       daemon=True)
        self.thread.start()

    def _accept(self, s):
        while not self._stop.is_set():
            try:
                conn, _ = s.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self):
        if self.sock is None:
            return
        self._stop.set()
        self.thread.join(5)
        self.sock.close()
        self.sock = None

    @property
    def addr(self):
        return "%s:%d" % (HOST, self.port)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- talking to a server ----------------------------------------------------


def http_port(srv):
    """The HTTP port of a conftest.Node or a cluster_util.Server."""
    port = getattr(srv, "http_port", None)
    if port:
        return port
    return int(srv.http_addr.rsplit(":", 1)[1])


def py_consul(srv):
    """A python-consul 0.7.1 client for srv (no proxies)."""
    c = consul.Consul(host=HOST, port=http_port(srv))
    c.http.session.trust_env = False
    return c


def q(s):
    return urllib.parse.quote(s, safe="")


def index_of(r):
    """X-Consul-Index of a response as an int (fails if missing)."""
    assert "X-Consul-Index" in r.headers, (
        "no X-Consul-Index on %s: %r" % (r.url, dict(r.headers)))
    return int(r.headers["X-Consul-Index"])


def wait_self_registered(srv, timeout=15):
    """Wait until the server's own node is in the catalog with a passing
    serfHealth check and its "consul" instance (the leader records it
    shortly after it starts serving).  Needed before a test compares the
    whole catalog with an earlier snapshot of it."""
    name = srv.name

    def cond():
        r = srv.get("/v1/health/node/" + name, timeout=5)
        if r.status_code != 200:
            return None
        serf = [c for c in r.json() if c.get("CheckID") == "serfHealth"
                and c.get("Status") == "passing"]
        r = srv.get("/v1/catalog/service/consul", timeout=5)
        return serf and r.status_code == 200 and \
            name in [e.get("Node") for e in r.json()]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, (
            "%s never showed itself in the catalog" % name)
        time.sleep(0.05)


def get_json(srv, path, timeout=10, status=200):
    """GET path; require `status`; return (index or None, parsed body)."""
    r = srv.get(path, timeout=timeout)
    assert r.status_code == status, (path, r.status_code, r.content[:300])
    idx = int(r.headers["X-Consul-Index"]) if "X-Consul-Index" in \
        r.headers else None
    return idx, r.json()


def put_ok(srv, path, body=None, timeout=10):
    """PUT path with a JSON body (or none); require 200; return response."""
    data = b"" if body is None else json.dumps(body).encode()
    r = srv.put(path, data=data, timeout=timeout)
    assert r.status_code == 200, (path, body, r.status_code, r.content[:300])
    return r


def register(srv, body, query=""):
    return put_ok(srv, "/v1/agent/service/register" +
                  ("?" + query if query else ""), body)


def ttl(srv, verb, check_id, note=None, method="PUT", timeout=10):
    """pass/warn/fail a TTL check; returns the response (not checked)."""
    path = "/v1/agent/check/%s/%s" % (verb, q(check_id))
    if note is not None:
        path += "?note=" + q(note)
    if method == "GET":
        return srv.get(path, timeout=timeout)
    return srv.put(path, timeout=timeout)


def ttl_ok(srv, verb, check_id, note=None):
    r = ttl(srv, verb, check_id, note)
    assert r.status_code == 200, (verb, check_id, r.status_code,
                                  r.content[:300])
    return r


def health_service(srv, name, query=""):
    """(index, entries) of /v1/health/service/<name>."""
    return get_json(srv, "/v1/health/service/%s%s" % (
        q(name), "?" + query if query else ""))


def checks_by_id(entry):
    """{CheckID: check} of one /v1/health/service entry."""
    return {c["CheckID"]: c for c in entry["Checks"]}


def agent_check(srv, check_id):
    """The check from /v1/agent/checks, or None."""
    _, checks = get_json(srv, "/v1/agent/checks")
    return checks.get(check_id)


def check_status(srv, check_id):
    c = agent_check(srv, check_id)
    return None if c is None else c["Status"]

"""Fixtures for the cluster tests: real beacond processes on 127.0.0.1.

Run with Debian's interpreter (it has python3-consul 0.7.1, requests, pytest):

    /usr/bin/python3 -m pytest tests/cluster

The server binary is $BEACOND, by default <repo>/build/beacond.  Every node
lives in the test's own temporary directory, on ports the kernel handed out
(bind to port 0, release, retry on a clash), so two runs never collide.

A node's stderr goes to <tmp>/<node>/beacond.log; the tail of that log is
attached to the report of a failing test.  Stopping a node sends SIGTERM and
requires exit status 0 within 10 s (clean shutdown is part of the contract);
a log holding a sanitizer report fails the test too.
"""

import atexit
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
BEACOND = Path(os.environ.get("BEACOND", str(REPO / "build" / "beacond"))).resolve()

READY_TIMEOUT = 10.0      # s: until GET /v1/status/leader names a leader
READY_POLL = 0.02         # s
STOP_TIMEOUT = 10.0       # s: from SIGTERM to exit
START_ATTEMPTS = 3        # tries when a freshly chosen port is taken meanwhile
LOG_TAIL_LINES = 60

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:")
ADDR_IN_USE_MARKERS = ("address already in use", "eaddrinuse",
                       "address in use")

# Loopback only: never let a proxy from the environment see our requests
# (python-consul's requests session honours the proxy variables).
for _var in ("http_proxy", "https_proxy", "all_proxy",
             "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
    os.environ.pop(_var, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

_live_nodes = set()


@atexit.register
def _kill_leftovers():
    for node in list(_live_nodes):
        node.kill_quietly()


def free_ports(n):
    """Return n distinct free TCP ports on 127.0.0.1 (bound together, then
    released: the caller must cope with losing one of them to a race)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class NodeExited(Exception):
    pass


class RawResponse:
    """Response of Node.raw(): status, headers (case-insensitive), body."""

    def __init__(self, status, headers, body):
        self.status_code = status
        self.headers = headers
        self.content = body

    @property
    def text(self):
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)

    def __repr__(self):
        return "<RawResponse %d %r>" % (self.status_code, self.content[:200])


class Node:
    """One beacond process with its own data directory and log file."""

    def __init__(self, root, name="n1", snapshot_threshold=None,
                 log_level="debug", extra_args=()):
        self.name = name
        self.dir = Path(root) / name
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "beacond.log"
        self.snapshot_threshold = snapshot_threshold
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.http_port = None
        self.raft_port = None
        self.dns_port = None         # DNS, UDP and TCP (--dns-addr)
        self.proc = None
        self.starts = 0
        self.killed = False          # set once kill9() was used
        self.exit_codes = []         # of every stop()/kill9(), in order
        self.http = self.new_session()

    # ---- addresses -----------------------------------------------------

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.http_port

    @property
    def raft_addr(self):
        return "127.0.0.1:%d" % self.raft_port

    @property
    def dns_addr(self):
        return "127.0.0.1:%d" % self.dns_port

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def command(self):
        cmd = [str(BEACOND), "--node", self.name,
               "--data-dir", str(self.data_dir),
               "--http-addr", "127.0.0.1:%d" % self.http_port,
               "--raft-addr", self.raft_addr,
               "--dns-addr", self.dns_addr,
               "--log-level", self.log_level]
        if self.snapshot_threshold is not None:
            cmd += ["--snapshot-threshold", str(self.snapshot_threshold)]
        return cmd + self.extra_args

    # ---- life cycle ----------------------------------------------------

    def start(self):
        """Start the process and wait until it names a leader.  The first
        start picks fresh ports; later starts keep them (the raft address is
        part of the persisted configuration)."""
        assert self.proc is None, "node %s already running" % self.name
        if not BEACOND.is_file() or not os.access(BEACOND, os.X_OK):
            raise AssertionError(
                "beacond not found at %s: build it first, or set BEACOND"
                % BEACOND)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fresh_ports = self.http_port is None
        for attempt in range(1, START_ATTEMPTS + 1):
            if fresh_ports:
                self.http_port, self.raft_port, self.dns_port = \
                    free_ports(3)
            offset = self._spawn()
            try:
                self.wait_ready()
                return self
            except NodeExited as e:
                clash = self._addr_in_use_since(offset)
                if clash and attempt < START_ATTEMPTS:
                    time.sleep(0.2 if fresh_ports else 0.5)
                    continue
                raise AssertionError(
                    "beacond %s exited with status %s during start-up%s\n%s"
                    % (self.name, e, " (port clash)" if clash else "",
                       self.log_tail())) from None

    def _spawn(self):
        self.starts += 1
        self.http.close()
        self.http = self.new_session()
        with open(self.log_path, "ab") as log:
            log.write(("==== start #%d: %s\n" % (
                self.starts, " ".join(self.command()))).encode())
            offset = log.tell()
            # The server reads BEACON_* variables (config file, initial
            # cluster...): the command line alone must define the node.
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith("BEACON_")}
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
            # libraft 0.22.1's known leak (tests/lsan.supp); ours fail.
            env.setdefault("LSAN_OPTIONS",
                           "suppressions=%s:print_suppressions=0"
                           % (REPO / "tests" / "lsan.supp"))
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, env=env, cwd=str(self.dir))
        _live_nodes.add(self)
        return offset

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.proc = None
                _live_nodes.discard(self)
                raise NodeExited(rc)
            try:
                r = self.http.get(self.url + "/v1/status/leader", timeout=1)
                if r.status_code == 200:
                    leader = r.json()
                    if isinstance(leader, str) and leader and \
                            self._node_recorded():
                        return
            except (requests.RequestException, ValueError):
                pass
            if time.monotonic() > deadline:
                self.kill_quietly()
                raise AssertionError(
                    "beacond %s did not name a leader within %.0f s\n%s"
                    % (self.name, timeout, self.log_tail()))
            time.sleep(READY_POLL)

    def _node_recorded(self):
        """The leader registers this server's node in the catalog a few ms
        after it is elected; until then the agent's own node is unknown
        (a session create answers 500 "Missing node registration", as
        Consul's does before its first sync).  With ACLs on, an anonymous
        read may not see it, and a request-rate limit may refuse the read
        (429): do not wait then."""
        if "--acl-enabled" in self.extra_args:
            return True
        r = self.http.get(self.url + "/v1/catalog/node/" + self.name,
                          timeout=1)
        if r.status_code == 429:
            return True
        return r.status_code == 200 and r.json() is not None

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, then require exit status 0 within `timeout` seconds."""
        if self.proc is None:
            return
        proc = self.proc
        self.http.close()
        early = proc.poll()
        if early is not None:
            self.proc = None
            _live_nodes.discard(self)
            self.exit_codes.append(early)
            self.check_sanitizers()
            raise AssertionError(
                "beacond %s had already exited (status %d) before SIGTERM\n%s"
                % (self.name, early, self.log_tail()))
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_quietly()
            raise AssertionError(
                "beacond %s (pid %d) did not exit within %.0f s of SIGTERM\n%s"
                % (self.name, proc.pid, timeout, self.log_tail())) from None
        self.proc = None
        _live_nodes.discard(self)
        self.exit_codes.append(rc)
        self.check_sanitizers()
        assert rc == 0, (
            "beacond %s exited with status %d after SIGTERM (expected 0)\n%s"
            % (self.name, rc, self.log_tail()))

    def kill9(self):
        """SIGKILL: the process gets no chance to flush anything."""
        assert self.proc is not None, "node %s is not running" % self.name
        proc = self.proc
        self.http.close()
        proc.send_signal(signal.SIGKILL)
        proc.wait(STOP_TIMEOUT)
        self.proc = None
        _live_nodes.discard(self)
        self.killed = True
        self.exit_codes.append(proc.returncode)

    def restart(self):
        self.stop()
        return self.start()

    def kill_quietly(self):
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self.proc = None
        _live_nodes.discard(self)

    def teardown(self):
        """Fixture teardown: stop a node the test left running (requiring a
        clean exit), always kill it if that fails, then scan the log."""
        try:
            self.stop()
        finally:
            self.kill_quietly()
            self.http.close()
        self.check_sanitizers()

    # ---- logs ----------------------------------------------------------

    def log_text(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=LOG_TAIL_LINES):
        text = self.log_text().splitlines()[-lines:]
        return ("---- last %d lines of %s ----\n%s" %
                (len(text), self.log_path, "\n".join(text)))

    def _addr_in_use_since(self, offset):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace").lower()
        except FileNotFoundError:
            return False
        return any(m in text for m in ADDR_IN_USE_MARKERS)

    def check_sanitizers(self):
        text = self.log_text()
        for marker in SANITIZER_MARKERS:
            pos = text.find(marker)
            if pos >= 0:
                start = text.rfind("\n", 0, max(0, pos - 2000)) + 1
                raise AssertionError(
                    "sanitizer report in %s (%r):\n%s"
                    % (self.log_path, marker, text[start:pos + 6000]))

    # ---- HTTP helpers --------------------------------------------------

    @staticmethod
    def new_session():
        """A keep-alive requests session that ignores proxy settings."""
        s = requests.Session()
        s.trust_env = False
        return s

    def request(self, method, path, timeout=10, **kw):
        """requests call on `path` (which starts with /v1/...); redirects are
        never followed, so a 301 shows up as itself."""
        kw.setdefault("allow_redirects", False)
        return self.http.request(method, self.url + path, timeout=timeout,
                                 **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def put(self, path, data=b"", **kw):
        return self.request("PUT", path, data=data, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def raw(self, method, path, body=None, headers=None, timeout=10):
        """Send exactly `path` (no client-side normalisation) with
        http.client.  A body is sent with Content-Length; if the server
        answers before it has read the whole body (413) and the send fails,
        the response is still read."""
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port,
                                          timeout=timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            hdrs = {"Accept-Encoding": "identity"}
            if body is not None:
                hdrs["Content-Length"] = str(len(body))
            hdrs.update(headers or {})
            for k, v in hdrs.items():
                conn.putheader(k, v)
            conn.endheaders()
            if body:
                try:
                    conn.send(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            resp = conn.getresponse()
            return RawResponse(resp.status, resp.headers, resp.read())
        finally:
            conn.close()


# ---- fixtures ------------------------------------------------------------


class NodeFactory:
    """node_factory(name=..., snapshot_threshold=..., start=True) -> Node"""

    def __init__(self, root):
        self.root = Path(root)
        self.nodes = []

    def __call__(self, name=None, start=True, **kw):
        name = name or "n%d" % (len(self.nodes) + 1)
        node = Node(self.root, name=name, **kw)
        self.nodes.append(node)
        if start:
            node.start()
        return node

    def teardown(self):
        errors = []
        for node in self.nodes:
            try:
                node.teardown()
            except AssertionError as e:
                errors.append(str(e))
        if errors:
            raise AssertionError("\n\n".join(errors))


@pytest.fixture
def node_factory(tmp_path):
    factory = NodeFactory(tmp_path)
    yield factory
    factory.teardown()


@pytest.fixture
def node(node_factory):
    """A fresh single-node cluster, empty store."""
    return node_factory()


@pytest.fixture(scope="module")
def kv_node(tmp_path_factory):
    """One single-node cluster shared by a whole test module (tests use
    distinct key prefixes).  Stopped, and its exit status checked, after the
    module's last test."""
    factory = NodeFactory(tmp_path_factory.mktemp("shared"))
    node = factory("shared")
    yield node
    factory.teardown()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the log tail of every node a failing test used, and of every
    node still running (a module's shared node reached through another
    fixture)."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    nodes = sorted(_live_nodes, key=lambda n: str(n.dir))
    for value in (getattr(item, "funcargs", None) or {}).values():
        if isinstance(value, Node):
            nodes.append(value)
        elif isinstance(value, NodeFactory):
            nodes.extend(value.nodes)
    seen = set()
    for node in nodes:
        if id(node) in seen:
            continue
        seen.add(id(node))
        report.sections.append(("beacond %s log (%s)" % (node.name, report.when),
                                node.log_tail()))

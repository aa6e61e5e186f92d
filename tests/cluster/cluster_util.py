"""A multi-server Beacon cluster for the cluster tests.

`Cluster` starts N `beacond` servers (statically formed with the same
--initial-cluster), each with its own data directory and log file under a
temporary directory, on free 127.0.0.1 ports or on given addresses (the
partition tests run every server in its own network namespace).  It waits
until every server names the same leader and that leader accepts a write,
finds the leader by asking /v1/status/leader (raft address -> node), stops,
kills and restarts single servers by PID, and at teardown kills every
process it started, then fails if a log holds a sanitizer report.

Every wait is a bounded poll (POLL seconds between tries, with a deadline);
nothing sleeps for a fixed time where a condition can be waited for.

The test modules load this file as a pytest plugin too
(`pytest_plugins = ["cluster_util"]`): the report of a failing test then
carries the tail of every server log of the clusters it used.
"""

import atexit
import base64
import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.parse
import warnings
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
BEACOND = Path(os.environ.get("BEACOND",
                              str(REPO / "build" / "san" / "beacond")))
if not BEACOND.is_absolute():
    BEACOND = (Path.cwd() / BEACOND).resolve()

POLL = 0.03               # s between two tries of a condition
READY_TIMEOUT = 20.0      # s: formation (leader everywhere + a write)
STOP_TIMEOUT = 10.0       # s: from SIGTERM to exit
LOG_TAIL_LINES = 40
# libraft 0.22.1's known leak is suppressed by tests/lsan.supp; any other
# leak report fails the test like any sanitizer report.
LEAK_MARKER = "ERROR: LeakSanitizer"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:",
                     LEAK_MARKER)
LSAN_SUPP = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "..", "lsan.supp")
ADDR_IN_USE = ("address already in use", "eaddrinuse", "address in use")
READY_PREFIX = "_cluster_util/ready/"

# Never let a proxy from the environment see a request of ours.
for _var in ("http_proxy", "https_proxy", "all_proxy",
             "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
    os.environ.pop(_var, None)

_live = set()             # every Server whose process may be running
_rand = random.SystemRandom()   # independent of any seeding of `random`


@atexit.register
def _kill_leftovers():
    for srv in list(_live):
        srv.kill_quietly()


class ServerExited(Exception):
    pass


def kv_path(key, query=""):
    return "/v1/kv/" + urllib.parse.quote(key, safe="/") + (
        "?" + query if query else "")


def decode_value(entry):
    v = entry.get("Value")
    return b"" if v is None else base64.b64decode(v)


def new_session():
    s = requests.Session()
    s.trust_env = False          # no proxies, no netrc
    return s


def wait_until(cond, timeout, what, interval=POLL):
    """Call cond() every `interval` s until it returns something truthy
    (returned), at most `timeout` s; then fail with `what` and the last
    value or exception."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
            last = v
        except (requests.RequestException, ValueError, KeyError,
                OSError) as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s "
                                 "(last: %r)" % (timeout, what, last))
        time.sleep(interval)


def _port_free(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_loopback_ports(n, host="127.0.0.1"):
    """n distinct ports free on host, chosen at random below the kernel's
    ephemeral range so that neither outgoing connections nor other test
    runs binding port 0 take them between our check and the server's
    bind."""
    lo, hi = 20000, 32000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_lo = int(f.read().split()[0])
        hi = min(hi, eph_lo - 1)
    except (OSError, ValueError, IndexError):
        pass
    ports = set()
    for _ in range(2000):
        if len(ports) == n:
            break
        p = _rand.randint(lo, hi)
        if p not in ports and _port_free(host, p):
            ports.add(p)
    assert len(ports) == n, "no free ports on %s" % host
    return list(ports)


class Response:
    """What Server.ns_request() returns: status (0: no answer), body."""

    def __init__(self, status, body, error=""):
        self.status_code = status
        self.content = body
        self.error = error

    @property
    def text(self):
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)

    def __repr__(self):
        return "<Response %d %r%s>" % (self.status_code, self.content[:200],
                                       " " + self.error if self.error else "")


class Server:
    """One beacond process: fixed addresses, its own data dir and log."""

    def __init__(self, root, name, http_addr, raft_addr, initial_cluster="",
                 join="", args=(), netns=None, dns_addr=None):
        self.name = name
        self.dir = Path(root) / name
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "beacond.log"
        self.http_addr = http_addr
        self.raft_addr = raft_addr
        # DNS (UDP and TCP): a free loopback port, so that servers never
        # share the default 127.0.0.1:8600; in a network namespace the
        # default is the namespace's own.
        if dns_addr is None and netns is None:
            dns_addr = "127.0.0.1:%d" % free_loopback_ports(1)[0]
        self.dns_addr = dns_addr
        self.initial_cluster = initial_cluster
        self.join = join
        self.args = list(args)
        self.netns = netns
        self.proc = None
        self.starts = 0
        self.session = new_session()
        self.env = {}            # extra environment (test hooks)

    # ---- addresses and state ------------------------------------------

    @property
    def url(self):
        return "http://" + self.http_addr

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def running(self):
        p = self.proc            # another thread may clear it meanwhile
        return p is not None and p.poll() is None

    def command(self):
        cmd = [str(BEACOND), "--node", self.name,
               "--data-dir", str(self.data_dir),
               "--http-addr", self.http_addr,
               "--raft-addr", self.raft_addr,
               "--log-level", "debug"]
        if self.initial_cluster:
            cmd += ["--initial-cluster", self.initial_cluster]
        if self.join:
            cmd += ["--join", self.join]
        if self.dns_addr:
            cmd += ["--dns-addr", self.dns_addr]
        cmd += self.args
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        return cmd

    def __repr__(self):
        return "<Server %s %s pid=%s>" % (self.name, self.http_addr, self.pid)

    # ---- life cycle ----------------------------------------------------

    def spawn(self):
        """Start the process (same command line every time); returns the
        log offset where this run's output begins."""
        assert not self.running(), "%s already running" % self.name
        assert BEACOND.is_file() and os.access(BEACOND, os.X_OK), (
            "beacond not found at %s: `make build/san/beacond` or set "
            "BEACOND" % BEACOND)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.session.close()
        self.session = new_session()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("BEACON_")}
        env.update(self.env)
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        env.setdefault("LSAN_OPTIONS", "suppressions=%s:print_suppressions=0"
                       % os.path.abspath(LSAN_SUPP))
        with open(self.log_path, "ab") as log:
            log.write(("==== start #%d at %.3f: %s\n" % (
                self.starts, time.time(), " ".join(self.command()))).encode())
            log.flush()
            offset = log.tell()
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, env=env, cwd=str(self.dir))
        _live.add(self)
        return offset

    def check_alive(self):
        """Raise ServerExited if the process has exited."""
        if self.proc is not None:
            rc = self.proc.poll()
            if rc is not None:
                self.proc = None
                _live.discard(self)
                raise ServerExited("%s exited with status %d" %
                                   (self.name, rc))

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM; require exit status 0 within `timeout` s."""
        if self.proc is None:
            return
        proc = self.proc
        self.session.close()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_quietly()
            raise AssertionError("%s (pid %d) did not exit within %.0f s of "
                                 "SIGTERM\n%s" % (self.name, proc.pid,
                                                  timeout, self.log_tail()))
        self.proc = None
        _live.discard(self)
        self.check_sanitizers()
        assert rc == 0, ("%s exited with status %d after SIGTERM\n%s"
                         % (self.name, rc, self.log_tail()))

    def kill(self):
        """SIGKILL (kill -9) by PID."""
        assert self.proc is not None, "%s is not running" % self.name
        proc = self.proc
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT)
        self.proc = None
        _live.discard(self)
        self.session.close()

    def kill_quietly(self):
        if self.proc is not None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        _live.discard(self)

    # ---- logs ----------------------------------------------------------

    def log_text(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=LOG_TAIL_LINES):
        text = self.log_text().splitlines()[-lines:]
        return "---- last %d lines of %s ----\n%s" % (
            len(text), self.log_path, "\n".join(text))

    def log_offset(self):
        """Where the next line of the log will start."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def sanitizer_report(self):
        text = self.log_text()
        for marker in SANITIZER_MARKERS:
            pos = text.find(marker)
            if pos >= 0:
                start = text.rfind("\n", 0, max(0, pos - 1500)) + 1
                return "sanitizer report in %s (%r):\n%s" % (
                    self.log_path, marker, text[start:pos + 5000])
        return None

    def leak_summary(self):
        """The SUMMARY lines of LeakSanitizer reports in the log."""
        text = self.log_text()
        if LEAK_MARKER not in text:
            return []
        return ["%s: %s" % (self.log_path, line.strip())
                for line in text.splitlines()
                if line.startswith("SUMMARY: AddressSanitizer")
                and "leaked" in line]

    def check_sanitizers(self):
        rep = self.sanitizer_report()
        assert rep is None, rep

    # ---- HTTP ----------------------------------------------------------

    def request(self, method, path, timeout=5, session=None, **kw):
        kw.setdefault("allow_redirects", False)
        return (session or self.session).request(
            method, self.url + path, timeout=timeout, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def put(self, path, data=b"", **kw):
        return self.request("PUT", path, data=data, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def ns_request(self, method, path, data=None, timeout=3.0):
        """The same request made with curl from inside this server's network
        namespace (reaches it while it is cut off from the bridge).
        Returns Response(status, body); status 0 means no answer (timeout,
        connection refused...), with curl's message in .error."""
        assert self.netns, "%s has no network namespace" % self.name
        cmd = ["ip", "netns", "exec", self.netns, "curl", "-s", "-S",
               "--noproxy", "*", "-o", "-", "-w", "\n%{http_code}",
               "--max-time", "%.1f" % timeout, "-X", method,
               "-H", "Expect:"]
        if data is not None:
            cmd += ["--data-binary", "@-"]
        cmd.append(self.url + path)
        p = subprocess.run(cmd, input=data if data is not None else b"",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout + 10)
        out = p.stdout
        body, _, code = out.rpartition(b"\n")
        try:
            status = int(code)
        except ValueError:
            status = 0
        if p.returncode != 0:
            status = 0
        return Response(status, body,
                        p.stderr.decode("utf-8", "replace").strip())

    # ---- small queries ---------------------------------------------------

    def leader_addr(self, timeout=2):
        r = self.get("/v1/status/leader", timeout=timeout)
        r.raise_for_status()
        v = r.json()
        return v if isinstance(v, str) else ""

    def stale_index(self, key, timeout=2):
        """X-Consul-Index of a stale read of `key` on this server."""
        r = self.get(kv_path(key, "stale"), timeout=timeout)
        assert r.status_code in (200, 404), (self.name, r.status_code,
                                             r.content[:200])
        return int(r.headers["X-Consul-Index"])

    def stale_dump(self, prefix, timeout=10):
        """{key: value bytes} under prefix, from this server's own state."""
        r = self.get(kv_path(prefix, "recurse&stale"), timeout=timeout)
        assert r.status_code in (200, 404), (self.name, r.status_code,
                                             r.content[:200])
        if r.status_code == 404:
            return {}
        return {e["Key"]: decode_value(e) for e in r.json()}


class Cluster:
    """N beacond servers formed with the same --initial-cluster.

    addrs: optional list of (http_addr, raft_addr[, dns_addr]) per server
    (default: free 127.0.0.1 ports); netns: optional list of namespace
    names to run each server in; args: extra command-line arguments of
    every server."""

    def __init__(self, root, n=3, args=(), addrs=None, netns=None,
                 prefix="n"):
        self.root = Path(root)
        self.n = n
        self.args = list(args)
        self.fixed_addrs = addrs
        self.netns = netns
        self.prefix = prefix
        self.servers = []
        self.extra = []          # servers added with --join
        self.retired = []        # of a start attempt lost to a port clash
        self.errors = []         # problems found at teardown

    # ---- formation -----------------------------------------------------

    def _make_servers(self):
        if self.fixed_addrs:
            addrs = self.fixed_addrs
        else:
            ports = free_loopback_ports(3 * self.n)
            addrs = [("127.0.0.1:%d" % ports[3 * i],
                      "127.0.0.1:%d" % ports[3 * i + 1],
                      "127.0.0.1:%d" % ports[3 * i + 2])
                     for i in range(self.n)]
        names = ["%s%d" % (self.prefix, i + 1) for i in range(self.n)]
        initial = ",".join("%s=%s" % (nm, a[1]) for nm, a in
                           zip(names, addrs))
        return [Server(self.root, nm, a[0], a[1], initial_cluster=initial,
                       args=self.args,
                       netns=self.netns[i] if self.netns else None,
                       dns_addr=a[2] if len(a) > 2 else None)
                for i, (nm, a) in enumerate(zip(names, addrs))]

    def start(self, timeout=READY_TIMEOUT, recorded=True):
        """Start every server and wait until the cluster is ready.  On a
        port clash (another process took a port we picked) start again on
        other ports, at most 3 times."""
        for attempt in range(3):
            self.servers = self._make_servers()
            offsets = [s.spawn() for s in self.servers]
            try:
                self.wait_ready(timeout, recorded=recorded)
                return self
            except (AssertionError, ServerExited):
                clash = any(any(m in s.log_since(o).lower()
                                for m in ADDR_IN_USE)
                            for s, o in zip(self.servers, offsets))
                if not clash or self.fixed_addrs or attempt == 2:
                    raise
                for s in self.servers:
                    s.kill_quietly()
                self.retired += self.servers
                # Fresh directories for the next attempt.
                self.root = self.root / ("retry%d" % (attempt + 1))
        return self

    @property
    def all(self):
        return self.servers + self.extra

    def running(self):
        return [s for s in self.all if s.running()]

    def by_raft_addr(self, addr):
        for s in self.all:
            if s.raft_addr == addr:
                return s
        return None

    def by_name(self, name):
        for s in self.all:
            if s.name == name:
                return s
        raise KeyError(name)

    # ---- leader ------------------------------------------------------------

    def agreed_leader(self, among=None):
        """The server every server in `among` (default: every running one)
        names as leader right now, or None."""
        among = among if among is not None else self.running()
        seen = set()
        for s in among:
            s.check_alive()
            try:
                seen.add(s.leader_addr(timeout=1))
            except (requests.RequestException, ValueError):
                return None
        if len(seen) != 1:
            return None
        addr = seen.pop()
        leader = self.by_raft_addr(addr) if addr else None
        if leader is None or not leader.running():
            return None
        return leader

    def wait_leader(self, among=None, exclude=(), timeout=15):
        """Wait until the servers agree on a running leader not in
        `exclude`; return it."""
        def cond():
            ld = self.agreed_leader(among)
            return ld if ld is not None and ld not in exclude else None
        return wait_until(cond, timeout, "an agreed leader (among %s, not %s)"
                          % ([s.name for s in (among or self.running())],
                             [s.name for s in exclude]))

    def leader(self):
        return self.wait_leader()

    def followers(self):
        ld = self.leader()
        return [s for s in self.running() if s is not ld]

    def all_recorded(self, leader):
        """Every server of the raft configuration has recorded its name and
        HTTP address (a server does so within about a second of learning
        the leader; until then the others cannot forward to it if it leads,
        and answer "No cluster leader")."""
        r = leader.get("/v1/operator/raft/configuration", timeout=2)
        if r.status_code != 200:
            return False
        return all(sv["Node"] for sv in r.json()["Servers"])

    def wait_ready(self, timeout=READY_TIMEOUT, among=None, recorded=True):
        """Every running server names the same leader and that leader
        answers a write `true`; with `recorded`, every server in the
        configuration has also recorded its name and HTTP address (see
        all_recorded).  Returns the leader."""
        deadline = time.monotonic() + timeout
        n = [0]

        def cond():
            ld = self.agreed_leader(among)
            if ld is None:
                return None
            n[0] += 1
            r = ld.put(kv_path(READY_PREFIX + ld.name), data=b"%d" % n[0],
                       timeout=2)
            if r.status_code != 200 or r.content != b"true":
                return None
            if recorded and not self.all_recorded(ld):
                return None
            return ld

        try:
            return wait_until(cond, max(0.1, deadline - time.monotonic()),
                              "the cluster to be ready")
        except ServerExited as e:
            raise ServerExited("%s\n%s" % (e, self.log_tails()))

    # ---- single servers --------------------------------------------------

    def stop(self, srv):
        srv.stop()

    def kill(self, srv):
        srv.kill()

    def start_server(self, srv, wait=True, timeout=READY_TIMEOUT):
        """(Re)start one server with its usual command line; with wait,
        until the cluster is ready again (every running server agrees on a
        leader that accepts writes)."""
        srv.spawn()
        if wait:
            self.wait_ready(timeout)
        return srv

    def restart(self, srv, timeout=READY_TIMEOUT):
        srv.stop()
        return self.start_server(srv, timeout=timeout)

    def add_server(self, name, join, args=None):
        """A new server that joins through `join` (an HTTP address), on
        fresh loopback ports; not waited for."""
        ports = free_loopback_ports(2)
        srv = Server(self.root, name, "127.0.0.1:%d" % ports[0],
                     "127.0.0.1:%d" % ports[1], join=join,
                     args=self.args if args is None else args)
        self.extra.append(srv)
        srv.spawn()
        return srv

    # ---- data --------------------------------------------------------------

    def write_marker(self, key="_cluster_util/marker", timeout=15):
        """Write a key through the leader; return its ModifyIndex (every
        server that has applied it has applied everything before it)."""
        value = ("%.6f" % time.time()).encode()

        def cond():
            ld = self.agreed_leader()
            if ld is None:
                return None
            r = ld.put(kv_path(key), data=value, timeout=3)
            if r.status_code != 200 or r.content != b"true":
                return None
            g = ld.get(kv_path(key), timeout=3)
            if g.status_code != 200:
                return None
            e = g.json()[0]
            return e["ModifyIndex"] if decode_value(e) == value else None
        return wait_until(cond, timeout, "a marker write")

    def wait_applied(self, index, servers=None, key="_cluster_util/marker",
                     timeout=20):
        """Wait until every server's stale read of `key` has an index of at
        least `index` (it has applied the log up to there)."""
        for s in servers if servers is not None else self.running():
            wait_until(lambda: s.stale_index(key) >= index, timeout,
                       "%s to apply index %d" % (s.name, index))

    def converge(self, servers=None, timeout=20):
        """Write a marker and wait until every server applied it."""
        idx = self.write_marker()
        self.wait_applied(idx, servers, timeout=timeout)
        return idx

    # ---- teardown and logs ---------------------------------------------

    def log_tails(self, lines=LOG_TAIL_LINES):
        return "\n".join(s.log_tail(lines) for s in self.all)

    def teardown(self):
        """Stop what still runs (SIGTERM, expecting exit 0), kill anything
        left whatever happens, then scan every log for sanitizer reports.
        Raises AssertionError listing every problem."""
        errors = []
        try:
            for s in self.all:
                try:
                    s.stop()
                except AssertionError as e:
                    errors.append(str(e).split("\n")[0])
        finally:
            for s in self.all:
                s.kill_quietly()
                s.session.close()
        for s in self.all + self.retired:
            rep = s.sanitizer_report()
            if rep:
                errors.append(rep)
            for leak in s.leak_summary():
                warnings.warn("LeakSanitizer report: " + leak)
        if errors:
            raise AssertionError("cluster teardown:\n" + "\n\n".join(errors))


class ClusterFactory:
    """factory(n=3, args=()) -> a started Cluster in its own directory;
    teardown() tears every one down."""

    def __init__(self, root):
        self.root = Path(root)
        self.clusters = []

    def __call__(self, n=3, args=(), recorded=True, **kw):
        c = Cluster(self.root / ("cluster%d" % len(self.clusters)), n=n,
                    args=args, **kw)
        self.clusters.append(c)
        try:
            c.start(recorded=recorded)
        except (AssertionError, ServerExited) as e:
            raise AssertionError("cluster did not form: %s\n%s"
                                 % (e, c.log_tails())) from None
        return c

    def teardown(self):
        errors = []
        for c in self.clusters:
            try:
                c.teardown()
            except AssertionError as e:
                errors.append(str(e))
        if errors:
            raise AssertionError("\n\n".join(errors))


# ---- pytest plugin part -----------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the log tail of every server of a failing test's clusters."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    seen = set()
    for value in (getattr(item, "funcargs", None) or {}).values():
        values = list(value) if isinstance(value, (tuple, list)) else [value]
        clusters = []
        for v in values:
            clusters += [v] if isinstance(v, Cluster) else \
                list(getattr(v, "clusters", None) or [])
        for c in clusters:
            if not isinstance(c, Cluster) or id(c) in seen:
                continue
            seen.add(id(c))
            for s in c.all:
                report.sections.append(
                    ("beacond %s log (%s)" % (s.name, report.when),
                     s.log_tail()))


@pytest.fixture
def cluster_factory(tmp_path):
    """cluster_factory(n, ...) -> a started Cluster; all torn down after the
    test (servers stopped by PID, exit status and sanitizer reports
    checked)."""
    factory = ClusterFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.teardown()

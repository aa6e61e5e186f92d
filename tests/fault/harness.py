"""The fault run: three beacond servers, each in its own network namespace
(tests/cluster/netns_util.py), one of them on a small file system of its
own; client threads (workload.py) recording every call; a schedule of
faults (nemesis.py); after healing, final reads and the state of every
server; then the checkers (checkers.py) and a summary.

    run(Options(duration=600, seed=7)) -> Outcome

Everything lives in build/fault/<stamp>/: history.jsonl (every call and
every fault, one JSON object per line: `run.py --check` replays the
checkers on it), n<i>/beacond.log, summary.txt.  A failing run keeps them
(data directories excepted); a passing one is removed (unless keep=True):
its summary is printed.  The schedule of faults (which, how long) and
every client's choices follow from the seed; which server a fault hits
depends on who leads then.

Every wait is bounded; every process is stopped by PID; the namespaces,
the mount and the neighbour entries are removed even on failure.
"""

import collections
import json
import os
import random
import resource
import shutil
import signal
import statistics
import sys
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "cluster"))

import cluster_util  # noqa: E402
import checkers  # noqa: E402
import nemesis  # noqa: E402
import netns_util  # noqa: E402
import workload  # noqa: E402
from cluster_util import Cluster  # noqa: E402

HTTP_PORT, RAFT_PORT = 8500, 8300
OUT = REPO / "build" / "fault"


class Options:
    def __init__(self, duration=60.0, seed=1, nemeses=None, mix=0.3,
                 kv_clients=5, keys=3, epoch=10.0, hold=(3.0, 8.0),
                 quiet=(1.0, 3.0), keep=False, out=OUT, beacond=None,
                 election_timeout="1000ms", leader_wait="2s",
                 snapshot_threshold=1024, snapshot_trailing=256,
                 disk_mb=160, recover_timeout=60.0, ttl=5,
                 log=sys.stdout, budget=2_000_000):
        self.duration, self.seed = float(duration), int(seed)
        # None: a random schedule drawn from nemesis.SINGLE (and mixes of
        # nemesis.MIXABLE with probability `mix`); a list: exactly those,
        # in that order, once each.
        self.nemeses, self.mix = nemeses, mix
        self.kv_clients, self.keys, self.epoch = kv_clients, keys, epoch
        self.hold, self.quiet = hold, quiet
        self.keep, self.out = keep, Path(out)
        self.beacond = beacond
        self.election_timeout, self.leader_wait = election_timeout, \
            leader_wait
        self.snapshot_threshold = snapshot_threshold
        self.snapshot_trailing = snapshot_trailing
        self.disk_mb, self.recover_timeout = disk_mb, recover_timeout
        self.ttl, self.log, self.budget = ttl, log, budget


class Outcome:
    """dir, anomalies, stats (of the checkers), summary (text), kept (the
    history and logs were kept), faults (Counter of nemeses started),
    counts (Counter of (call, outcome))."""

    def __init__(self, dir, anomalies, stats, summary, kept, faults,
                 counts):
        self.dir, self.anomalies, self.stats = dir, anomalies, stats
        self.summary, self.kept = summary, kept
        self.faults, self.counts = faults, counts

    @property
    def errors(self):
        return [a for a in self.anomalies if a.error]

    @property
    def warnings(self):
        return [a for a in self.anomalies if not a.error]


class Harness:
    def __init__(self, opts):
        self.o = opts
        # The schedule (which faults, how long) follows from the seed
        # alone; the servers a fault targets depend on who leads then.
        self.sched = random.Random(opts.seed)
        self.rng = random.Random(opts.seed + 1)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.dir = opts.out / ("%s-seed%d" % (stamp, opts.seed))
        n = 0
        while self.dir.exists():
            n += 1
            self.dir = opts.out / ("%s-seed%d-%d" % (stamp, opts.seed, n))
        self.dir.mkdir(parents=True)
        self.run_id = "f%s" % "%06x" % random.SystemRandom().randrange(
            1 << 24)
        self.rec = workload.Recorder(str(self.dir / "history.jsonl"))
        self.stop = threading.Event()
        self.closing = threading.Event()
        self.plock = threading.RLock()
        self.incs = {}
        self.paused = set()
        self.disk_full = set()
        self.net = self.cluster = self.disk = None
        self.clients = []
        self.client_errors = []
        self.max_ops = int(opts.duration * 400) + 1000
        self.ttl = opts.ttl
        self.faults = collections.Counter()
        self.recoveries = []
        self.monitor = None
        self.not_ready = ""
        self.removal = []

    # ---- output ----------------------------------------------------------

    def say(self, fmt, *args):
        msg = fmt % args if args else fmt
        print("[%7.2f] %s" % (self.rec.now(), msg), file=self.o.log,
              flush=True)

    # ---- what the clients use -------------------------------------------

    def servers(self):
        return self.cluster.servers

    def hot_prefix(self):
        return "%s/h/e%d/" % (self.run_id, int(self.rec.now() //
                                               self.o.epoch))

    def hot_key(self, rng):
        return self.hot_prefix() + "k%d" % rng.randrange(self.o.keys)

    def hot_keys(self, rng, n):
        p = self.hot_prefix()
        return [p + "k%d" % i for i in rng.sample(range(self.o.keys), n)]

    def client_error(self, name, exc):
        self.client_errors.append("%s: %s" % (name, traceback.format_exc()))
        self.say("client %s crashed: %r", name, exc)

    # ---- servers ------------------------------------------------------------

    def setup(self):
        why = netns_util.can_use_namespaces()
        if why:
            raise RuntimeError("cannot run the fault suite: " + why)
        if self.o.beacond:
            cluster_util.BEACOND = Path(self.o.beacond).resolve()
        self.net = netns_util.Net(3)
        self.net.setup()
        d = random.Random(self.o.seed).randrange(3)
        self.disk = nemesis.SmallDisk(d, self.dir / ("n%d" % (d + 1)) /
                                      "data", self.dir / "disk.img",
                                      self.o.disk_mb).setup()
        addrs = [("%s:%d" % (self.net.addr(i), HTTP_PORT),
                  "%s:%d" % (self.net.addr(i), RAFT_PORT))
                 for i in range(3)]
        args = ["--leader-wait", self.o.leader_wait,
                "--raft-election-timeout", self.o.election_timeout,
                "--snapshot-threshold", str(self.o.snapshot_threshold),
                "--snapshot-trailing", str(self.o.snapshot_trailing),
                "--tombstone-ttl", "72h"]
        self.cluster = Cluster(self.dir, 3, addrs=addrs, netns=self.net.ns,
                               args=args)
        self.say("servers %s in namespaces %s; n%d's data directory is %s "
                 "(%d MiB); beacond %s", [a[0] for a in addrs],
                 self.net.ns, d + 1, self.disk.kind, self.o.disk_mb,
                 cluster_util.BEACOND)
        self.cluster.start(timeout=60)
        for s in self.cluster.servers:
            self.incs[s.name] = 1
        self.monitor = threading.Thread(target=self._monitor, daemon=True)
        self.monitor.start()

    def _monitor(self):
        """Notice servers that exit by themselves (the harness acts as
        their supervisor: they are restarted when the fault heals)."""
        while not self.closing.wait(0.1):
            with self.plock:
                for s in self.cluster.servers:
                    p = s.proc
                    if p is None or p.poll() is None:
                        continue
                    code = p.returncode
                    s.proc = None
                    cluster_util._live.discard(s)
                    self.incs[s.name] += 1
                    self.paused.discard(s.name)
                    tail = s.log_tail(30)
                    full = s.name in self.disk_full
                    self.rec.event(f="server", event="exited", name=s.name,
                                   code=code, disk_full=full, log=tail)
                    self.say("%s EXITED by itself with status %s%s", s.name,
                             code, " (its disk is full)" if full else "")

    def kill(self, srv):
        with self.plock:
            if srv.proc is None:
                return
            self.incs[srv.name] += 1
            srv.kill()
            self.paused.discard(srv.name)
            self.rec.event(f="server", event="killed", name=srv.name)

    def start(self, srv):
        with self.plock:
            if srv.running():
                return
            srv.spawn()
            self.rec.event(f="server", event="started", name=srv.name,
                           join=srv.join)

    def pause(self, srv):
        with self.plock:
            if srv.proc is not None and nemesis.pause(srv.proc.pid):
                self.paused.add(srv.name)
                self.rec.event(f="server", event="paused", name=srv.name)

    def resume(self, srv):
        with self.plock:
            if srv.name in self.paused and srv.proc is not None:
                nemesis.resume(srv.proc.pid)
                self.rec.event(f="server", event="resumed", name=srv.name)
            self.paused.discard(srv.name)

    def wipe_and_rejoin(self, srv):
        """kill -9, empty the data directory, start again with --join
        through another member (README: a server that lost its data)."""
        ld = self.leader_index()
        others = [s for s in self.cluster.servers if s is not srv]
        target = self.cluster.servers[ld] if ld is not None and \
            self.cluster.servers[ld] is not srv else self.rng.choice(others)
        self.kill(srv)
        for entry in os.listdir(srv.data_dir):
            p = srv.data_dir / entry
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        self.rec.event(f="server", event="wiped", name=srv.name)
        srv.join = target.http_addr
        self.start(srv)

    def remove_peer(self, srv):
        """DELETE /v1/operator/raft/peer?id=<srv> through another server;
        wait until the configuration no longer has it.  Bounded."""
        deadline = time.monotonic() + 15
        others = [s for s in self.cluster.servers if s is not srv]
        sess = workload.Client(self, "nemesis", 0)
        self.removal = []
        try:
            while time.monotonic() < deadline:
                via = self.rng.choice(others)
                a = sess.http(via, "DELETE",
                              "/v1/operator/raft/peer?id=" + srv.name,
                              timeout=5)
                self.removal.append("%s: %s %s" % (via.name, a.status,
                                                   a.err()[:80]))
                if a.status == 200:
                    break
                time.sleep(0.3)
            else:
                return False
            while time.monotonic() < deadline:
                via = self.rng.choice(others)
                a = sess.http(via, "GET", "/v1/operator/raft/configuration",
                              timeout=3)
                try:
                    if a.status == 200 and srv.name not in [
                            x["Node"] for x in a.json()["Servers"]]:
                        return True
                except (ValueError, KeyError, TypeError):
                    pass
                time.sleep(0.2)
            return False
        finally:
            for s in sess.sessions.values():
                s.close()

    # ---- leader and readiness ---------------------------------------------

    def _ask(self, srv, method, path, data=None, timeout=1.0):
        c = workload.Client(self, "probe", 0)
        try:
            return c.http(srv, method, path, data, timeout)
        finally:
            for s in c.sessions.values():
                s.close()

    def leader_index(self):
        """The server most reachable servers name as leader, or None."""
        votes = collections.Counter()
        for s in self.cluster.servers:
            if not s.running() or s.name in self.paused:
                continue
            a = self._ask(s, "GET", "/v1/status/leader")
            if a.status == 200:
                try:
                    addr = a.json()
                except ValueError:
                    continue
                if addr:
                    votes[addr] += 1
        if not votes:
            return None
        addr, _ = votes.most_common(1)[0]
        for i, s in enumerate(self.cluster.servers):
            if s.raft_addr == addr:
                return i
        return None

    def ready(self):
        """Every server runs and names the same leader; the leader takes
        a write and its configuration has the three servers as voters with
        their names recorded.  Returns the leader or None."""
        try:
            return self._ready()
        except (ValueError, KeyError, TypeError):
            return None

    def _ready(self):
        leaders = {}
        self.not_ready = "?"
        for s in self.cluster.servers:
            if not s.running() or s.name in self.paused:
                self.not_ready = "%s is not running" % s.name
                return None
            a = self._ask(s, "GET", "/v1/status/leader")
            if a.status != 200:
                self.not_ready = "%s: /v1/status/leader: %s %s" % (
                    s.name, a.status, a.err())
                return None
            leaders[s.name] = a.json()
        if len(set(leaders.values())) != 1 or \
                not next(iter(leaders.values())):
            self.not_ready = "leaders named: %s" % leaders
            return None
        ld = self.cluster.by_raft_addr(next(iter(leaders.values())))
        if ld is None:
            self.not_ready = "unknown leader %s" % leaders
            return None
        a = self._ask(ld, "PUT", workload.kv_url(
            "%s/m/ready" % self.run_id), b"1", timeout=3)
        if a.status != 200 or a.body.strip() != b"true":
            self.not_ready = "write through %s: %s %s" % (
                ld.name, a.status, a.err())
            return None
        a = self._ask(ld, "GET", "/v1/operator/raft/configuration",
                      timeout=3)
        if a.status != 200:
            self.not_ready = "configuration from %s: %s %s" % (
                ld.name, a.status, a.err())
            return None
        cfg = a.json()["Servers"]
        names = sorted(x["Node"] for x in cfg if x["Voter"])
        if names != sorted(s.name for s in self.cluster.servers):
            self.not_ready = "configuration: %s" % cfg
            return None
        return ld

    def diagnose(self):
        """What every server says about the cluster (for a report)."""
        out = []
        for s in self.cluster.servers:
            for path in ("/v1/status/leader", "/v1/status/peers",
                         "/v1/status/ready",
                         "/v1/operator/raft/configuration?stale"):
                a = self._ask(s, "GET", path, timeout=2)
                out.append("%s %s -> %s %s" % (
                    s.name, path, a.status,
                    a.body[:4000].decode("utf-8", "replace").strip()
                    if not a.exc else a.exc))
        return out

    def heal_all(self):
        errors = []
        try:
            self.net.heal_all()
        except RuntimeError as e:
            errors.append(str(e))
        for s in self.cluster.servers:
            self.resume(s)
        if self.disk is not None:
            self.disk.free()
        self.disk_full.clear()
        if errors:
            self.say("heal: %s", errors)

    def recover(self, after, timeout=None):
        """Restart whatever is down, wait until ready(); record how long it
        took, or that it did not happen within `timeout` s."""
        timeout = timeout or self.o.recover_timeout
        t0 = time.monotonic()
        deadline = t0 + timeout
        ld = None
        while time.monotonic() < deadline:
            for s in self.cluster.servers:
                if not s.running():
                    self.start(s)
            ld = self.ready()
            if ld is not None:
                break
            time.sleep(0.2)
        took = time.monotonic() - t0
        if ld is None:
            diag = self.diagnose()
            self.rec.event(f="server", event="no-recovery", after=after,
                           waited=took, why=self.not_ready, diag=diag)
            self.say("NOT RECOVERED %.0f s after %s: %s", took, after,
                     self.not_ready)
            for line in diag:
                self.say("  %s", line)
            for s in self.cluster.servers:
                self.say("%s", s.log_tail(15))
            return False
        self.recoveries.append(took)
        self.rec.event(f="server", event="recovered", after=after,
                       took=took, leader=ld.name)
        self.say("recovered after %.2f s, leader %s", took, ld.name)
        return True

    # ---- the run ------------------------------------------------------------

    def start_clients(self):
        seed = self.o.seed * 1000
        for i in range(self.o.kv_clients):
            self.clients.append(workload.KVClient(self, "c%d" % i,
                                                  seed + i))
        self.clients.append(workload.KVWatcher(self, "ws", seed + 100,
                                               stale=True))
        self.clients.append(workload.KVWatcher(self, "wc", seed + 101,
                                               stale=False))
        self.clients.append(workload.ServiceClient(self, "sa", seed + 200,
                                                   agent=True))
        self.clients.append(workload.ServiceClient(self, "sc", seed + 201,
                                                   agent=False))
        self.clients.append(workload.ServiceWatcher(self, "sw",
                                                    seed + 300))
        for c in self.clients:
            c.start()

    def stop_clients(self):
        self.stop.set()
        deadline = time.monotonic() + workload.WAIT_TIMEOUT + 15
        for c in self.clients:
            c.join(max(0.1, deadline - time.monotonic()))
        alive = [c.name for c in self.clients if c.is_alive()]
        if alive:
            self.client_errors.append("clients still running: %s" % alive)

    def schedule(self):
        """The nemeses to run: the given list, or a random one."""
        if self.o.nemeses is not None:
            for name in self.o.nemeses:
                yield name
            return
        while True:
            if self.sched.random() < self.o.mix:
                a, b = self.sched.sample(nemesis.MIXABLE, 2)
                if a.split("-")[0] == b.split("-")[0]:
                    continue
                yield a + "+" + b
            else:
                yield self.sched.choice(nemesis.SINGLE)

    def try_start(self, name):
        """Make and start nemesis `name`: the nemesis, or None if it cannot
        apply now (or failed: recorded, and everything healed)."""
        nem = nemesis.make(name, self, self.rng)
        try:
            if nem.start():
                return nem
        except Exception as e:              # noqa: BLE001
            self.say("nemesis %s failed to start: %r", name, e)
            self.rec.event(f="nemesis", name=name, phase="error",
                           error=traceback.format_exc())
            self.heal_all()
        return None

    def faults_phase(self, t_end):
        for name in self.schedule():
            if self.o.nemeses is None and time.monotonic() >= t_end - 2:
                break
            nem = self.try_start(name)
            # A listed nemesis must run: wait for a leader (bounded).
            for _ in range(20 if self.o.nemeses is not None else 0):
                if nem is not None:
                    break
                time.sleep(0.5)
                nem = self.try_start(name)
            if nem is None:
                self.rec.event(f="nemesis", name=name, phase="skipped")
                self.say("nemesis %s: cannot apply now", name)
                self.stop.wait(0.5)
                continue
            self.faults[nem.name] += 1
            self.rec.event(f="nemesis", name=nem.name, phase="start",
                           targets=nem.names(), detail=nem.detail)
            self.say("nemesis %s on %s %s", nem.name, nem.names(),
                     nem.detail)
            hold = self.sched.uniform(*self.o.hold)
            if self.o.nemeses is None:
                hold = min(hold, max(0.5, t_end - time.monotonic()))
            time.sleep(hold)
            try:
                nem.stop()
            except Exception as e:              # noqa: BLE001
                self.say("nemesis %s failed to stop: %r", nem.name, e)
                self.rec.event(f="nemesis", name=nem.name, phase="error",
                               error=traceback.format_exc())
            finally:
                self.heal_all()
            self.rec.event(f="nemesis", name=nem.name, phase="stop")
            self.say("healed %s after %.1f s", nem.name, hold)
            self.recover(nem.name)
            time.sleep(self.sched.uniform(*self.o.quiet))
        rest = t_end - time.monotonic()
        if rest > 0 and self.o.nemeses is None:
            time.sleep(rest)

    def final_reads(self):
        """Consistent reads of every hot key and of the service, recorded
        like any client call (retried until one succeeds, bounded)."""
        c = workload.KVClient(self, "final", 0)
        prefix = "%s/h/" % self.run_id
        for attempt in range(20):
            srv = self.cluster.servers[attempt % 3]
            rec, a = c.call(srv, "GET", workload.kv_url(
                prefix, "recurse&consistent"), f="tree", prefix=prefix,
                mode="consistent", via="kv")
            if a.exc is None and a.status in (200, 404):
                entries = {}
                for e in (a.json() if a.status == 200 else []):
                    entries[e["Key"]] = [workload.unb64(e.get("Value")),
                                         e["ModifyIndex"]]
                self.rec.end(rec, "ok", entries=entries, index=a.index())
                break
            self.rec.end(rec, "unknown", err=a.err())
            time.sleep(0.5)
        else:
            self.say("final consistent read failed 20 times")
        w = workload.ServiceWatcher(self, "final", 0)
        w.rng = random.Random(0)
        for attempt in range(20):
            srv = self.cluster.servers[attempt % 3]
            rec, a = w.call(srv, "GET", "/v1/catalog/service/%s?consistent"
                            % workload.SERVICE, f="svc-read",
                            endpoint="catalog", service=workload.SERVICE,
                            mode="consistent", req_index=0)
            if a.exc is None and a.status == 200:
                self.rec.end(rec, "ok", ids=sorted(
                    e["ServiceID"] for e in a.json()), index=a.index())
                break
            self.rec.end(rec, "unknown", err=a.err())
            time.sleep(0.5)
        for cl in (c, w):
            for s in cl.sessions.values():
                s.close()

    def dump(self, srv):
        """This server's own state (stale reads): every KV entry, the
        catalog, and the instances of the workload's service."""
        def get(path):
            a = self._ask(srv, "GET", path, timeout=10)
            if a.status == 404:
                return [], a.index()
            if a.status != 200:
                raise RuntimeError("%s %s: %s %s" % (srv.name, path,
                                                     a.status, a.err()))
            return a.json(), a.index()
        kv, kv_index = get("/v1/kv/?recurse&stale")
        kvd = {e["Key"]: [workload.unb64(e.get("Value")), e["Flags"],
                          e["CreateIndex"], e["ModifyIndex"],
                          e.get("LockIndex", 0)] for e in kv}
        nodes, _ = get("/v1/catalog/nodes?stale")
        services, _ = get("/v1/catalog/services?stale")
        per = {}
        for name in sorted(services):
            per[name], _ = get("/v1/catalog/service/%s?stale" % name)
        checks, c_index = get("/v1/health/state/any?stale")
        key = lambda e: json.dumps(e, sort_keys=True)  # noqa: E731
        catalog = {"nodes": sorted(nodes, key=key), "services": services,
                   "instances": {n: sorted(v, key=key)
                                 for n, v in per.items()},
                   "checks": sorted(checks, key=key)}
        inst = sorted(e["ServiceID"] for e in per.get(workload.SERVICE, []))
        return {"f": "dump", "server": srv.name, "kv": kvd,
                "catalog": catalog, "instances": inst,
                "kv_index": kv_index, "checks_index": c_index}

    def final_state(self):
        """Dump every server once they have all applied a common marker;
        again (bounded) while they differ: TTL expiries and probes may be
        applied between two dumps."""
        deadline = time.monotonic() + 60
        marker = "%s/m/marker" % self.run_id
        dumps = None
        while time.monotonic() < deadline:
            try:
                ld = self.ready()
                if ld is None:
                    time.sleep(0.5)
                    continue
                a = self._ask(ld, "PUT", workload.kv_url(marker),
                              b"%f" % time.time(), timeout=5)
                if a.status != 200:
                    continue
                a = self._ask(ld, "GET", workload.kv_url(marker), timeout=5)
                if a.status != 200:
                    continue
                idx = a.json()[0]["ModifyIndex"]
                for s in self.cluster.servers:
                    cluster_util.wait_until(
                        lambda: (self._ask(s, "GET", workload.kv_url(
                            marker, "stale")).index() or 0) >= idx,
                        20, "%s to apply index %d" % (s.name, idx))
                dumps = [dict(self.dump(s), caught_up=True)
                         for s in self.cluster.servers]
                hashes = {(checkers.canonical_hash(d["kv"]),
                           checkers.canonical_hash(d["catalog"]))
                          for d in dumps}
                if len(hashes) == 1:
                    break
                self.say("servers differ (yet?): %s", [
                    (d["server"], d["kv_index"], d["checks_index"])
                    for d in dumps])
            except (AssertionError, RuntimeError, ValueError, KeyError) as e:
                self.say("final state: %s", str(e)[:300])
            time.sleep(1)
        if dumps is None:
            # Never ready with a common marker: dump what each server has,
            # so that the checkers show how far apart they are.
            self.say("no common marker (%s): dumping each server as is",
                     self.not_ready)
            dumps = []
            for s in self.cluster.servers:
                try:
                    dumps.append(dict(self.dump(s), caught_up=False,
                                      why=self.not_ready))
                except (RuntimeError, ValueError, KeyError) as e:
                    self.say("dump of %s: %s", s.name, str(e)[:300])
        for d in dumps:
            self.rec.event(**d)

    def scan_logs(self):
        for s in self.cluster.all + self.cluster.retired:
            rep = s.sanitizer_report()
            if rep:
                self.rec.event(f="server", event="sanitizer", name=s.name,
                               report=rep)

    def teardown(self):
        """Stop everything, whatever state it is in."""
        errors = []
        self.stop.set()
        self.closing.set()
        if self.monitor is not None:
            self.monitor.join(5)
        if self.cluster is not None:
            for s in self.cluster.servers:
                if s.proc is not None and s.name in self.paused:
                    nemesis.resume(s.proc.pid)
            self.paused.clear()
            try:
                if self.net is not None:
                    self.net.heal_all()
            except RuntimeError as e:
                errors.append("heal: %s" % e)
            try:
                self.cluster.teardown()
            except AssertionError as e:
                # Sanitizer reports are recorded by scan_logs() already.
                parts = str(e).split("\n\n")
                parts[0] = parts[0].replace("cluster teardown:\n", "")
                errors += [p[:3000] for p in parts if p.strip() and
                           not p.startswith("sanitizer report")]
            for s in self.cluster.all:
                s.kill_quietly()
        if self.disk is not None:
            try:
                self.disk.teardown()
            except AssertionError as e:
                errors.append(str(e))
        if self.net is not None:
            try:
                self.net.teardown()
            except AssertionError as e:
                errors.append(str(e))
        return errors


def run(opts):
    """One fault run (see the module comment); returns an Outcome."""
    # A server that crashes leaves a core file in n<i>/ (its working
    # directory, kept with a failing run) when the kernel's core_pattern is
    # a plain file name; the servers inherit this limit.
    try:
        hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
    except (ValueError, OSError):
        pass
    h = Harness(opts)
    t_start = time.monotonic()
    setup_ok = False
    teardown_errors = []
    old_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:
        pass                              # not the main thread
    try:
        h.setup()
        setup_ok = True
        h.say("run %s, seed %d, %.0f s of faults; history in %s",
              h.run_id, opts.seed, opts.duration, h.dir)
        h.start_clients()
        time.sleep(min(2.0, opts.duration / 10))
        h.faults_phase(time.monotonic() + opts.duration)
        h.say("stopping the clients")
        h.stop_clients()
        h.heal_all()
        h.recover("the end of the run", timeout=max(
            120, opts.recover_timeout))
        time.sleep(opts.ttl + 1.5)            # let TTL checks settle
        h.final_reads()
        h.final_state()
        h.scan_logs()
    finally:
        try:
            teardown_errors = h.teardown()
        finally:
            for n in h.dir.glob("n*"):
                shutil.rmtree(n / "data", ignore_errors=True)
            try:
                signal.signal(signal.SIGTERM, old_term)
            except ValueError:
                pass
    for e in teardown_errors:
        h.rec.event(f="teardown", error=e)
    for e in h.client_errors:
        h.rec.event(f="client-error", error=e)
    h.rec.close()
    elapsed = time.monotonic() - t_start
    t0 = time.monotonic()
    anomalies, stats = checkers.check_all(h.rec.records, opts.budget)
    stats["check_seconds"] = time.monotonic() - t0
    if not setup_ok:
        anomalies.append(checkers.Anomaly("setup", "setup failed",
                                          "the cluster did not start"))
    for e in teardown_errors:
        anomalies.append(checkers.Anomaly("servers", "teardown", e))
    for e in h.client_errors:
        anomalies.append(checkers.Anomaly("harness", "client error", e))
    summary = summarize(h.rec.records, anomalies, stats, elapsed,
                        opts.duration if opts.nemeses is None else 0,
                        h.recoveries, h.dir, opts.seed)
    failed = any(a.error for a in anomalies)
    kept = failed or opts.keep
    finish_dir(h.dir, kept, summary)
    counts = collections.Counter((r["f"], r["outcome"])
                                 for r in h.rec.records
                                 if r.get("outcome") is not None)
    return Outcome(h.dir, anomalies, stats, summary, kept, h.faults,
                   counts)


def finish_dir(d, kept, summary):
    """Keep the history, logs and summary of a failing run (data
    directories never); nothing of a passing one (its summary is
    printed)."""
    if not kept:
        shutil.rmtree(d, ignore_errors=True)
        return
    for n in d.glob("n*"):
        if (n / "data").exists():
            shutil.rmtree(n / "data", ignore_errors=True)
    for r in d.glob("retry*"):
        shutil.rmtree(r, ignore_errors=True)
    (d / "summary.txt").write_text(summary)


def summarize(records, anomalies, stats, elapsed, duration, recoveries,
              d, seed):
    calls = [r for r in records if r.get("outcome") is not None]
    by = collections.defaultdict(collections.Counter)
    for r in calls:
        name = r["f"]
        if r.get("mode"):
            name += " " + r["mode"]
        if r.get("once"):
            name = "put once"
        by[name][r["outcome"]] += 1
    faults = collections.Counter(r["name"] for r in records
                                 if r.get("f") == "nemesis" and
                                 r.get("phase") == "start")
    skipped = sum(1 for r in records if r.get("f") == "nemesis" and
                  r.get("phase") == "skipped")
    exits = [r for r in records if r.get("f") == "server" and
             r.get("event") == "exited"]
    lines = ["fault run %s (seed %d)" % (d, seed),
             "duration: %.0f s (%s)" % (
                 elapsed, "faults phase %.0f s" % duration if duration
                 else "a fixed list of faults"),
             "operations: %d (ok %d, fail %d, unknown %d)" % (
                 len(calls), sum(c["ok"] for c in by.values()),
                 sum(c["fail"] for c in by.values()),
                 sum(c["unknown"] for c in by.values()))]
    for name in sorted(by):
        c = by[name]
        lines.append("  %-22s %6d  ok %6d  fail %5d  unknown %5d" % (
            name, sum(c.values()), c["ok"], c["fail"], c["unknown"]))
    lines.append("faults injected: %d%s" % (
        sum(faults.values()), " (%d skipped: no leader to target)" % skipped
        if skipped else ""))
    for name, n in sorted(faults.items()):
        lines.append("  %-40s %3d" % (name, n))
    if recoveries:
        lines.append("recovery after healing: median %.1f s, max %.1f s" % (
            statistics.median(recoveries), max(recoveries)))
    lin = stats.get("linearizable", {})
    lines.append("linearizability: %d keys, %d operations, %d search steps"
                 "%s; checkers took %.1f s" % (
                     lin.get("keys", 0), lin.get("ops", 0),
                     lin.get("steps", 0),
                     ", %d inconclusive" % lin["inconclusive"]
                     if lin.get("inconclusive") else "",
                     stats.get("check_seconds", 0)))
    if stats.get("hashes"):
        lines.append("final state hashes (kv/catalog): %s" % ", ".join(
            "%s %s" % kv for kv in sorted(stats["hashes"].items())))
    if exits:
        lines.append("servers that exited by themselves: %s" % ", ".join(
            "%s (status %s%s)" % (r["name"], r.get("code"),
                                  ", disk full" if r.get("disk_full")
                                  else "") for r in exits))
    errs = [a for a in anomalies if a.error]
    warns = [a for a in anomalies if not a.error]
    lines.append("anomalies: %d" % len(errs))
    kinds = collections.Counter((a["checker"], a["kind"]) for a in errs)
    for (c, k), n in sorted(kinds.items()):
        lines.append("  %-12s %-36s %d" % (c, k, n))
    for a in errs[:20]:
        lines.append("  - " + a["msg"][:1500])
    if warns:
        lines.append("warnings (allowed by the documented semantics): %d" %
                     len(warns))
        kinds = collections.Counter((a["checker"], a["kind"])
                                    for a in warns)
        for (c, k), n in sorted(kinds.items()):
            lines.append("  %-12s %-36s %d" % (c, k, n))
        for a in warns[:5]:
            lines.append("  - " + a["msg"][:600])
    return "\n".join(lines) + "\n"

"""Real network partitions of a 3-server Beacon cluster.

Each server runs in a network namespace of its own (`bcn<rand>-<i>`), with
one end of a veth pair (address 10.213.<x>.<i>/24, plus `lo`); the other end
is attached to a bridge `bcnbr<rand>` that holds 10.213.<x>.254/24 in the
root namespace, where the test client runs.  Cutting a server off = taking
its veth off the bridge (its own interface stays up); healing = putting it
back.  An isolated server is queried with curl from inside its namespace.

Needs root (CAP_NET_ADMIN); skipped otherwise.  Every namespace, veth and
the bridge are removed at teardown, after the servers were killed.  Only
10.213.<x>.* and 127.0.0.0/8 are ever contacted.
"""

import subprocess
import threading
import time

import pytest

pytest.register_assert_rewrite("cluster_util")
from cluster_util import (  # noqa: E402
    Cluster, ServerExited, kv_path, wait_until)
from netns_util import Net  # noqa: E402
from netns_util import can_use_namespaces as _can_use_namespaces  # noqa

pytest_plugins = ["cluster_util"]

HTTP_PORT = 8500
RAFT_PORT = 8300
LEADER_WAIT = 2.0          # s: --leader-wait, how long a request waits for
                           # a leader before "500 No cluster leader"
FAILOVER_WITHIN = 5.0      # s: partition to the first write acknowledged
UNKNOWN_OUTCOME = b"Unknown outcome"
NO_LEADER = b"No cluster leader"


@pytest.fixture
def net_cluster(request, tmp_path):
    """(cluster, net): 3 servers, server i in namespace net.ns[i] on
    net.addr(i), ready."""
    why = _can_use_namespaces()
    if why:
        pytest.skip(why)
    try:
        net = Net(3)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.skip("cannot use ip here: %s" % e)
    request.addfinalizer(net.teardown)          # runs last
    try:
        net.setup()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        if not net.made_ns and not net.made_links[1:]:
            pytest.skip("cannot create network namespaces here: %s" % e)
        raise
    addrs = [("%s:%d" % (net.addr(i), HTTP_PORT),
              "%s:%d" % (net.addr(i), RAFT_PORT)) for i in range(3)]
    cluster = Cluster(tmp_path, 3, addrs=addrs, netns=net.ns,
                      args=["--leader-wait", "%gs" % LEADER_WAIT])
    request.addfinalizer(cluster.teardown)      # runs before net.teardown
    try:
        cluster.start()
    except (AssertionError, ServerExited) as e:
        raise AssertionError("cluster did not form: %s\n%s"
                             % (e, cluster.log_tails())) from None
    return cluster, net


# ---- helpers ---------------------------------------------------------------


def put_until_ok(srv, key, value, timeout):
    """PUT through srv until it answers `true` (bounded); return the time
    it did."""
    def attempt():
        r = srv.put(kv_path(key), data=value, timeout=LEADER_WAIT + 2)
        return r.status_code == 200 and r.content == b"true"
    wait_until(attempt, timeout, "a write through %s" % srv.name)
    return time.monotonic()


def write_through(servers, prefix, count):
    """`count` writes round-robin through `servers`, each must answer
    true; returns {key: value}."""
    acked = {}
    for i in range(count):
        s = servers[i % len(servers)]
        key, value = "%s%03d" % (prefix, i), b"%s-%d" % (
            s.name.encode(), i)
        r = s.put(kv_path(key), data=value, timeout=5)
        assert r.status_code == 200 and r.content == b"true", (
            s.name, key, r.status_code, r.content[:200])
        acked[key] = value
    return acked


def ns_leader(srv):
    r = srv.ns_request("GET", "/v1/status/leader", timeout=2)
    return r.json() if r.status_code == 200 else None


def heal_and_converge(cluster, net, i, expected, prefix):
    """Put server i back on the bridge, wait until the whole cluster is
    ready and every server has applied everything, then check that every
    server holds every key of `expected` with its value, and that all hold
    the same data; returns the servers' dumps under prefix.

    A write forwarded by a cut-off follower just before the cut may reach
    the leader only after healing (TCP retransmits it) and land after our
    marker, so the comparison is retried (bounded) until it settles."""
    t = time.monotonic()
    net.heal(i)
    cluster.wait_ready(timeout=20)
    cluster.converge(timeout=20)
    print("healed %s: cluster ready and converged in %.2f s" % (
        cluster.servers[i].name, time.monotonic() - t))

    def same_everywhere():
        cluster.converge(timeout=20)
        dumps = {s.name: s.stale_dump(prefix) for s in cluster.servers}
        first = next(iter(dumps.values()))
        return dumps if all(d == first for d in dumps.values()) else None
    dumps = wait_until(same_everywhere, 15, "the same data on every server")
    for name, got in dumps.items():
        missing = sorted(k for k in expected if k not in got)
        wrong = sorted(k for k in expected if k in got and
                       got[k] != expected[k])
        assert not missing and not wrong, (
            "%s after healing: %d acknowledged writes missing %s, %d wrong "
            "%s" % (name, len(missing), missing[:5], len(wrong), wrong[:5]))
    return dumps


# ---- (a) a partitioned follower -----------------------------------------------


def test_partitioned_follower_acknowledges_nothing(net_cluster):
    cluster, net = net_cluster
    leader = cluster.leader()
    i = next(k for k, s in enumerate(cluster.servers) if s is not leader)
    cut = cluster.servers[i]
    other = next(s for s in cluster.servers if s not in (leader, cut))
    majority = [leader, other]
    acked = write_through(cluster.servers, "pa/before/", 9)
    cluster.converge()

    net.isolate(i)
    t0 = time.monotonic()
    answers = []                       # (key, Response) of writes to `cut`

    def write_to_cut(key, timeout=LEADER_WAIT + 3):
        r = cut.ns_request("PUT", kv_path(key), data=b"from-cut",
                           timeout=timeout)
        answers.append((key, r))
        return r

    # Right away (it may still believe in its leader, and forward: the
    # forward may hang until the client gives up), in the background...
    early = {}

    def early_requests():
        write_to_cut("pa/cut/0")
        early["consistent"] = cut.ns_request(
            "GET", kv_path("pa/before/000", "consistent"),
            timeout=LEADER_WAIT + 3)
    bg = threading.Thread(target=early_requests)
    bg.start()
    try:
        # ...while the majority keeps accepting writes...
        acked.update(write_through(majority, "pa/during/", 20))
        assert cluster.agreed_leader(among=majority) is leader
        wait_until(lambda: ns_leader(cut) == "", 10,
                   "the isolated %s to lose its leader" % cut.name)
        t_lost = time.monotonic() - t0
    finally:
        bg.join(30)
    assert not bg.is_alive()
    r = early["consistent"]
    assert r.status_code != 200, ("isolated follower served a consistent "
                                  "read: %r" % r)

    # ...and once it knows it has no leader, it says so after at most
    # --leader-wait.
    for j in (1, 2):
        t = time.monotonic()
        r = write_to_cut("pa/cut/%d" % j)
        assert r.status_code == 500 and r.content.startswith(NO_LEADER), r
        assert time.monotonic() - t < LEADER_WAIT + 1.5, "took %.1f s" % (
            time.monotonic() - t)
    t = time.monotonic()
    r = cut.ns_request("GET", kv_path("pa/before/000", "consistent"),
                       timeout=LEADER_WAIT + 3)
    assert r.status_code == 500 and r.content.startswith(NO_LEADER), r
    assert time.monotonic() - t < LEADER_WAIT + 1.5
    # Stale reads are still served at once from its own state.
    r = cut.ns_request("GET", kv_path("pa/before/000", "stale"), timeout=1)
    assert r.status_code == 200, r

    for key, r in answers:
        assert not (r.status_code == 200 and r.content.strip() == b"true"), (
            "the isolated follower acknowledged %s" % key)
    print("\nisolated follower %s: lost its leader after %.2f s; answers to "
          "writes: %s" % (cut.name, t_lost,
                          [(k, r.status_code, r.content[:20], r.error[:40])
                           for k, r in answers]))

    dumps = heal_and_converge(cluster, net, i, acked, "pa/")
    for key, r in answers:
        if r.status_code == 500 and r.content.startswith(NO_LEADER):
            assert key not in dumps[cut.name], (
                "%s was answered 'No cluster leader' but is present" % key)
    print("writes to the isolated follower present after healing: %s" % [
        k for k, _ in answers if k in dumps[cut.name]])


# ---- (b) a partitioned leader ---------------------------------------------------


def test_partitioned_leader_is_replaced_and_acknowledges_nothing(net_cluster):
    cluster, net = net_cluster
    old = cluster.leader()
    i = cluster.servers.index(old)
    majority = [s for s in cluster.servers if s is not old]
    acked = write_through(cluster.servers, "pb/before/", 9)
    cluster.converge()

    answers = []                       # (key, Response) of writes to `old`
    stop = threading.Event()

    def write_to_old():
        # Writes made directly to the old leader from inside its namespace
        # while (and after) the majority elects another leader.
        for j in range(40):
            if stop.is_set():
                break
            key = "pb/old/%02d" % j
            r = old.ns_request("PUT", kv_path(key), data=b"old-%d" % j,
                               timeout=LEADER_WAIT + 3)
            answers.append((key, r))

    early = {}

    def early_read():
        # A consistent read on the old leader needs a quorum: never 200.
        early["consistent"] = old.ns_request(
            "GET", kv_path("pb/before/000", "consistent"),
            timeout=LEADER_WAIT + 3)

    net.isolate(i)
    t0 = time.monotonic()
    threads = [threading.Thread(target=write_to_old),
               threading.Thread(target=early_read)]
    for th in threads:
        th.start()
    try:
        new = cluster.wait_leader(among=majority, exclude=[old], timeout=10)
        t_elected = time.monotonic() - t0
        t_write = put_until_ok(new, "pb/first", b"first", 10) - t0
        assert t_write < FAILOVER_WITHIN, (
            "the majority took %.1f s to accept a write" % t_write)
        acked["pb/first"] = b"first"
        acked.update(write_through(majority, "pb/during/", 20))

        # The old leader has noticed by now: no leader, no consistent read.
        wait_until(lambda: ns_leader(old) == "", 10,
                   "the old leader %s to step down" % old.name)
        t_down = time.monotonic() - t0
        r = old.ns_request("GET", kv_path("pb/before/000", "consistent"),
                           timeout=LEADER_WAIT + 3)
        assert r.status_code == 500 and r.content.startswith(NO_LEADER), r
        wait_until(lambda: len(answers) >= 3, 20,
                   "writes to the old leader")
    finally:
        stop.set()
        for th in threads:
            th.join(30)
    assert not any(th.is_alive() for th in threads)
    r = early["consistent"]
    assert r.status_code != 200, ("partitioned old leader served a "
                                  "consistent read: %r" % r)

    for key, r in answers:
        assert not (r.status_code == 200 and r.content.strip() == b"true"), (
            "the partitioned old leader acknowledged %s: %r" % (key, r))
    kinds = {}
    for _, r in answers:
        kind = ("unknown outcome" if r.content.startswith(UNKNOWN_OUTCOME)
                else "no leader" if r.content.startswith(NO_LEADER)
                else "no answer" if r.status_code == 0
                else "%d %r" % (r.status_code, r.content[:40]))
        kinds[kind] = kinds.get(kind, 0) + 1
    print("\npartitioned leader %s: new leader %s named after %.2f s, first "
          "write acknowledged after %.2f s, old leader stepped down after "
          "%.2f s; its answers to %d writes: %s" % (
              old.name, new.name, t_elected, t_write, t_down, len(answers),
              kinds))

    dumps = heal_and_converge(cluster, net, i, acked, "pb/")
    for key, r in answers:
        ambiguous = r.status_code == 0 or (
            r.status_code == 500 and r.content.startswith(UNKNOWN_OUTCOME))
        for name, got in dumps.items():
            assert key not in got or ambiguous, (
                "%s is on %s although the old leader answered %r" % (
                    key, name, r))
    present = [k for k, _ in answers if k in dumps[old.name]]
    print("writes to the old leader present after healing: %s" % present)

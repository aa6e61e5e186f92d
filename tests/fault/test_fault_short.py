"""The short fault run of `make test`: three servers in network
namespaces under a KV and catalog workload, through a partition of the
leader, a pause of the leader longer than the election timeout, a kill -9
of a follower, a kill -9 of the leader, a cut between two servers that
both still see the third, and a follower wiped and rejoining (the leader
removes and adds it again); then every checker of checkers.py.  About a
minute with the sanitizer build.

    BEACOND=$PWD/build/san/beacond /usr/bin/python3 -m pytest -q tests/fault

Needs root (network namespaces, a loop mount); skipped otherwise.  A
failing run keeps its history and server logs in build/fault/<stamp>/
(replay the checkers with tests/fault/run.py --check <that directory>).
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))

import harness  # noqa: E402
import netns_util  # noqa: E402

SEED = int(os.environ.get("SEED") or 1)
# The long run (make test-fault) draws from every fault; this one takes
# one of each kind: partitions, a pause, kill -9 of a follower and of the
# leader, and a membership change (wipe + rejoin).  The last two found
# the bugs of README.md, "Server bugs found".
# FAULT_NEMESES=a,b,... overrides the list.
NEMESES = (os.environ.get("FAULT_NEMESES") or
           "partition-leader,pause-leader,kill-follower,kill-leader,"
           "partition-bridge,wipe-follower").split(",")


def test_short_fault_run():
    why = netns_util.can_use_namespaces()
    if why:
        pytest.skip(why)
    out = harness.run(harness.Options(
        seed=SEED, nemeses=NEMESES, hold=(4.0, 5.0), quiet=(1.0, 2.0),
        epoch=8.0))
    print(out.summary)
    assert not out.errors, "%s\nhistory and logs: %s" % (out.summary,
                                                          out.dir)
    # Every fault ran, and the run exercised the checkers.
    assert sorted(out.faults) == sorted(NEMESES), out.summary
    ok = lambda f: out.counts[(f, "ok")]  # noqa: E731
    assert ok("put") + ok("txn-set") + ok("cas") + ok("txn-cas") >= 200, \
        out.summary
    assert ok("get") >= 100 and ok("watch") >= 50, out.summary
    assert ok("reg") >= 3 and ok("svc-read") >= 10, out.summary
    lin = out.stats["linearizable"]
    assert lin["keys"] >= 4 and lin["ops"] >= 500, out.summary
    assert not lin.get("inconclusive"), out.summary
    assert len(out.stats["hashes"]) == 3, out.summary
    assert len(set(out.stats["hashes"].values())) == 1, out.summary

"""Unit tests of the fault-run checkers (tests/fault/linear.py and
checkers.py) on small hand-made histories, plus a cross-check of the
linearizability search against brute force on random small histories.

    /usr/bin/python3 -m pytest -q tests/fault/test_checkers.py
"""

import itertools
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checkers  # noqa: E402
import linear  # noqa: E402
from linear import CAS, DELETE, READ, WRITE, Op  # noqa: E402


def W(v, a, b, **kw):
    return Op(WRITE, a, b, value=v, **kw)


def R(v, a, b, **kw):
    return Op(READ, a, b, value=v, **kw)


def D(a, b, **kw):
    return Op(DELETE, a, b, **kw)


def C(e, v, ok, a, b, **kw):
    return Op(CAS, a, b, value=v, expect=e, ok=ok, **kw)


def lin(ops, **kw):
    return linear.check(ops, **kw).ok


# ---- linear.check: hand-made histories --------------------------------------


def test_empty_and_sequential():
    assert lin([]) is True
    assert lin([R(None, 0, 1)]) is True
    assert lin([W("a", 0, 1), R("a", 2, 3), D(4, 5), R(None, 6, 7)]) is True


def test_read_of_initial_state_after_a_completed_write_is_not():
    assert lin([W("a", 0, 1), R(None, 2, 3)]) is False


def test_stale_read_after_a_newer_write_completed():
    # a is overwritten by b (completed at 3); a read sent at 4 sees a.
    assert lin([W("a", 0, 1), W("b", 2, 3), R("a", 4, 5)]) is False


def test_concurrent_read_may_see_either():
    ops = [W("a", 0, 1), W("b", 2, 6)]
    assert lin(ops + [R("a", 3, 4)]) is True
    assert lin(ops + [R("b", 3, 4)]) is True


def test_reads_must_agree_on_one_order():
    # Both writes overlap both reads, but the reads are sequential and see
    # b then a: a must then come after b, and the first read saw b before
    # a was written... that is fine (a after b).  Seeing a, b, a is not.
    ws = [W("a", 0, 10), W("b", 0, 10)]
    assert lin(ws + [R("b", 1, 2), R("a", 3, 4)]) is True
    assert lin(ws + [R("a", 1, 2), R("b", 3, 4), R("a", 5, 6)]) is False


def test_read_cannot_see_a_write_before_it_was_sent():
    assert lin([R("a", 0, 1), W("a", 2, 3)]) is False
    assert lin([R("a", 0, 2.5), W("a", 2, 3)]) is True


def test_calls_and_returns_at_the_same_instant_are_concurrent():
    assert lin([W("a", 0, 1), R(None, 1, 2)]) is True


def test_cas():
    assert lin([W("a", 0, 1), C("a", "b", True, 2, 3), R("b", 4, 5)]) is True
    assert lin([W("a", 0, 1), C("x", "b", True, 2, 3)]) is False
    assert lin([W("a", 0, 1), C("a", "b", False, 2, 3)]) is False
    assert lin([W("a", 0, 1), C("x", "b", False, 2, 3), R("a", 4, 5)]) \
        is True
    # cas=0 (expect absent) on a missing key
    assert lin([C(None, "a", True, 0, 1), R("a", 2, 3)]) is True
    assert lin([W("z", 0, 1), C(None, "a", True, 2, 3)]) is False
    # Two CASes from the same value cannot both succeed...
    assert lin([W("a", 0, 1), C("a", "b", True, 2, 5),
                C("a", "c", True, 2, 5)]) is False
    # ...but one may fail, whichever.
    assert lin([W("a", 0, 1), C("a", "b", True, 2, 5),
                C("a", "c", False, 2, 5)]) is True


def test_unknown_write_may_happen_late_or_never():
    # The write of b timed out; b is read much later: it happened then.
    assert lin([W("a", 0, 1), W("b", 2, None), R("a", 3, 4),
                R("b", 10, 11)]) is True
    # It may also never happen.
    assert lin([W("a", 0, 1), W("b", 2, None), R("a", 3, 4),
                R("a", 10, 11)]) is True
    # But not before it was sent.
    assert lin([W("a", 0, 1), R("b", 1.5, 1.8), W("b", 2, None)]) is False
    # And once seen, later reads cannot go back to a.
    assert lin([W("a", 0, 1), W("b", 2, None), R("b", 3, 4),
                R("a", 5, 6)]) is False


def test_unknown_cas_and_delete():
    assert lin([W("a", 0, 1), C("a", "b", None, 2, None),
                R("b", 5, 6)]) is True
    assert lin([W("a", 0, 1), C("x", "b", None, 2, None),
                R("b", 5, 6)]) is False
    assert lin([W("a", 0, 1), D(2, None), R(None, 5, 6)]) is True
    assert lin([W("a", 0, 1), D(2, None), R(None, 5, 6),
                R("a", 7, 8)]) is False


def test_invisible_unknown_write_kept_for_a_failed_cas():
    # cas(a->c) failed at [4,5]: the state was not a.  Only the unknown
    # write of b (never read) can explain that: it must not be dropped.
    ops = [W("a", 0, 1), W("b", 2, None), C("a", "c", False, 4, 5)]
    assert lin(ops) is True
    # Without it, the failed cas is impossible.
    assert lin([W("a", 0, 1), C("a", "c", False, 4, 5)]) is False


def test_budget_gives_up():
    # Many concurrent writes then reads in an impossible order.
    ops = [W("v%d" % i, 0, 100) for i in range(14)]
    ops += [R("v%d" % (i % 2), 101 + 2 * i, 102 + 2 * i) for i in range(4)]
    res = linear.check(ops, budget=50)
    assert res.ok is None


def test_failure_report_names_the_stuck_op():
    ops = [W("a", 0, 1, ref=1), W("b", 2, 3, ref=2), R("a", 4, 5, ref=3)]
    res = linear.check(ops)
    assert res.ok is False
    assert res.stuck.ref == 3
    assert res.states == ["b"]


# ---- linear.check against brute force ---------------------------------------


def brute(ops):
    """All orders of all subsets containing every required op."""
    req = [o for o in ops if o.ret is not None]
    opt = [o for o in ops if o.ret is None]
    for n in range(len(opt) + 1):
        for extra in itertools.combinations(opt, n):
            chosen = req + list(extra)
            for perm in itertools.permutations(chosen):
                ok, state, t = True, None, -1e9
                # real-time order: o1 before o2 if o1.ret < o2.invoke
                pos = {id(o): i for i, o in enumerate(perm)}
                for a in chosen:
                    for b in chosen:
                        if a.ret is not None and a.ret < b.invoke and \
                                pos[id(a)] > pos[id(b)]:
                            ok = False
                if not ok:
                    continue
                for o in perm:
                    acc, state = linear.step(state, o)
                    if not acc:
                        ok = False
                        break
                if ok:
                    return True
    return False


def random_history(rng, n):
    values = ["a", "b", "c"]
    ops = []
    for i in range(n):
        a = rng.randint(0, 12)
        b = a + rng.randint(0, 6)
        kind = rng.choice([WRITE, WRITE, READ, READ, CAS, DELETE])
        ret = None if kind != READ and rng.random() < 0.2 else b
        if kind == WRITE:
            ops.append(Op(WRITE, a, ret, value=rng.choice(values)))
        elif kind == READ:
            ops.append(Op(READ, a, b, value=rng.choice(values + [None])))
        elif kind == DELETE:
            ops.append(Op(DELETE, a, ret))
        else:
            ops.append(Op(CAS, a, ret, value=rng.choice(values),
                          expect=rng.choice(values + [None]),
                          ok=rng.random() < 0.6))
    return ops


def test_agrees_with_brute_force_on_random_histories():
    rng = random.Random(20261122)
    seen = {True: 0, False: 0}
    for _ in range(600):
        ops = random_history(rng, rng.randint(1, 6))
        # Values need not be unique here: the search must be exact for
        # any register history.  (Dropping invisible unknown writes only
        # relies on what no read returns and no CAS expects.)
        want = brute(ops)
        got = linear.check(ops).ok
        assert got == want, ops
        seen[want] += 1
    assert seen[True] > 50 and seen[False] > 50, seen


def test_sequential_runs_with_jittered_intervals_are_linearizable():
    # Take a real sequential execution, then widen each op's interval
    # around its true point: the result must stay linearizable.
    rng = random.Random(7)
    for _ in range(100):
        state, ops = None, []
        for i in range(60):
            t = float(i)
            a, b = t - rng.random() * 3, t + rng.random() * 3
            k = rng.random()
            if k < 0.35:
                v = "v%d" % i
                ops.append(W(v, a, None if rng.random() < 0.1 else b))
                state = v
            elif k < 0.45:
                ops.append(D(a, b))
                state = None
            elif k < 0.6:
                v = "v%d" % i
                e = state if rng.random() < 0.5 else "nope"
                ok = e == state
                ops.append(C(e, v, ok, a, b))
                if ok:
                    state = v
            else:
                ops.append(R(state, a, b))
        assert lin(ops) is True


# ---- checkers over records --------------------------------------------------

_ids = itertools.count(1)


def rec(f, invoke, ret, outcome="ok", **kw):
    r = dict(id=next(_ids), proc="t", f=f, invoke=invoke, ret=ret,
             outcome=outcome, server="n1", inc=1, status=200)
    r.update(kw)
    return r


def errors(anoms):
    return [a for a in anoms if a.error]


def test_kv_linearizable_with_txn_and_tree_reads():
    h = [rec("put", 0, 1, key="k/a", value="1"),
         rec("txn-set", 2, 3, writes=[["k/a", "2"], ["k/b", "3"]],
             results=[["k/a", "2", 10], ["k/b", "3", 10]]),
         rec("tree", 4, 5, prefix="k/", mode="consistent",
             entries={"k/a": ["2", 10], "k/b": ["3", 10]}),
         rec("get", 6, 7, key="k/b", mode="consistent", found=True,
             value="3", mindex=10, index=10)]
    anoms, stats = checkers.check_kv_linearizable(h)
    assert anoms == [] and stats["keys"] == 2


def test_kv_stale_consistent_read_is_an_error_default_a_warning():
    base = [rec("put", 0, 1, key="k", value="1"),
            rec("put", 2, 3, key="k", value="2")]
    bad = base + [rec("get", 4, 5, key="k", mode="consistent", found=True,
                      value="1", mindex=5, index=5)]
    anoms, _ = checkers.check_kv_linearizable(bad)
    assert [a["kind"] for a in anoms] == ["not linearizable"]
    assert anoms[0].error
    dflt = base + [rec("get", 4, 5, key="k", mode="default", found=True,
                       value="1", mindex=5, index=5)]
    anoms, _ = checkers.check_kv_linearizable(dflt)
    assert [a["kind"] for a in anoms] == ["stale default read"]
    assert not anoms[0].error
    stale = base + [rec("get", 4, 5, key="k", mode="stale", found=True,
                        value="1", mindex=5, index=5)]
    assert checkers.check_kv_linearizable(stale)[0] == []


def test_kv_failed_writes_are_left_out_and_cas_results_count():
    h = [rec("put", 0, 1, key="k", value="1"),
         rec("put", 2, 3, key="k", value="2", outcome="fail", status=500),
         rec("get", 4, 5, key="k", mode="consistent", found=True,
             value="1", mindex=5, index=5),
         rec("cas", 6, 7, key="k", value="3", expect="1", cas_index=5,
             result=False)]
    anoms, _ = checkers.check_kv_linearizable(h)
    assert [a["kind"] for a in anoms] == ["not linearizable"]


def test_values_phantom_failed_and_index_mismatch():
    h = [rec("put", 0, 1, key="k", value="1"),
         rec("put", 2, 3, key="k", value="2", outcome="fail", status=500,
             err="No cluster leader"),
         rec("get", 4, 5, key="k", mode="stale", found=True, value="2",
             mindex=7, index=7),
         rec("get", 4, 5, key="k", mode="stale", found=True, value="9",
             mindex=8, index=8),
         rec("get", 6, 7, key="k", mode="stale", found=True, value="1",
             mindex=5, index=5),
         rec("get", 6, 7, key="k", mode="stale", found=True, value="1",
             mindex=6, index=6)]
    anoms, index_of = checkers.check_values(h)
    assert sorted(a["kind"] for a in anoms) == [
        "failed write visible", "phantom value", "write applied twice"]
    assert index_of[("k", "1")][0] == 5


def test_freshness():
    h = [rec("txn-set", 0, 1, writes=[["k", "1"]], results=[["k", "1", 5]]),
         rec("put", 2, 3, key="k", value="2"),
         rec("get", 3.5, 3.6, key="k", mode="stale", found=True, value="2",
             mindex=9, index=9),
         # consistent read sent after "2" was acknowledged, index 5: stale
         rec("watch", 4, 5, key="k", mode="consistent", found=True,
             value="1", mindex=5, index=5, req_index=0),
         # default: a warning
         rec("get", 4, 5, key="k", mode="default", found=True, value="1",
             mindex=5, index=5),
         # sent before the ack: fine
         rec("get", 2.5, 5, key="k", mode="consistent", found=True,
             value="1", mindex=5, index=5)]
    _, index_of = checkers.check_values(h)
    anoms = checkers.check_freshness(h, index_of)
    assert sorted((a["kind"], a["severity"]) for a in anoms) == [
        ("stale default read", "warning"), ("stale read", "error")]


def test_freshness_against_earlier_consistent_results():
    h = [rec("get", 0, 1, key="k", mode="consistent", found=False,
             index=40),
         rec("get", 2, 3, key="k", mode="consistent", found=False,
             index=39)]
    anoms = checkers.check_freshness(h, {})
    assert [a["kind"] for a in anoms] == ["stale read"]


def test_monotonic_per_server_incarnation():
    h = [rec("watch", 0, 1, key="k", mode="stale", index=10, server="n1",
             inc=1, found=False),
         rec("watch", 2, 3, key="k", mode="stale", index=9, server="n1",
             inc=1, found=False),
         # another incarnation may start lower
         rec("watch", 4, 5, key="k", mode="stale", index=3, server="n1",
             inc=2, found=False),
         # overlapping queries may return in any order
         rec("watch", 4, 9, key="k", mode="stale", index=20, server="n2",
             inc=1, found=False),
         rec("watch", 5, 6, key="k", mode="stale", index=19, server="n2",
             inc=1, found=False),
         rec("svc-read", 0, 1, endpoint="health", service="s",
             mode="stale", index=30, server="n3", inc=1, ids=[]),
         rec("svc-read", 2, 3, endpoint="health", service="s",
             mode="stale", index=29, server="n3", inc=1, ids=[])]
    anoms = checkers.check_monotonic(h)
    assert sorted(a["refs"][1] for a in anoms) == [h[1]["id"], h[6]["id"]]


def test_catalog_set_semantics():
    reg = rec("reg", 0, 1, sid="i1", service="s", kind="catalog")
    unk = rec("reg", 0, None, sid="i2", service="s", kind="catalog",
              outcome="unknown", status=0)
    failed = rec("reg", 0, 1, sid="i3", service="s", kind="catalog",
                 outcome="fail", status=500)
    dereg = rec("dereg", 5, 6, sid="i1", kind="catalog")

    def read(a, b, ids, mode="consistent"):
        return rec("svc-read", a, b, endpoint="catalog", service="s",
                   mode=mode, ids=ids, index=1)
    ok = [reg, unk, failed, dereg, read(2, 3, ["i1"]), read(2, 3, ["i1",
          "i2"]), read(5.5, 5.8, []), read(5.5, 5.8, ["i1"]),
          read(7, 8, ["i2"])]
    assert checkers.check_catalog(ok) == []
    bad = [reg, unk, failed, dereg,
           read(2, 3, []),                   # missing i1
           read(7, 8, ["i1"]),               # deregistered
           read(7, 8, ["i1"], mode="default"),
           read(2, 3, ["i1", "i3"]),         # failed registration
           read(-2, -1, ["i2"]),             # before it was sent
           read(7, 8, ["i1"], mode="stale")]  # stale: allowed
    kinds = sorted((a["kind"], a["severity"])
                   for a in checkers.check_catalog(bad))
    assert kinds == [("acknowledged instance missing", "error"),
                     ("deregistered instance visible", "error"),
                     ("failed registration visible", "error"),
                     ("phantom instance", "error"),
                     ("stale default read", "warning")]


def test_final_lost_writes_and_convergence():
    once_ok = rec("put", 0, 1, key="o/1", value="a", once=True)
    once_fail = rec("put", 0, 1, key="o/2", value="b", once=True,
                    outcome="fail", status=500)
    once_unk = rec("put", 0, None, key="o/3", value="c", once=True,
                   outcome="unknown", status=0)
    reg = rec("reg", 0, 1, sid="i1", service="s", kind="agent")

    def dump(server, kv, inst):
        return {"f": "dump", "server": server, "kv": kv,
                "catalog": {"instances": sorted(inst)}, "instances": inst}
    good = [once_ok, once_fail, once_unk, reg,
            dump("n1", {"o/1": ["a", 0, 5, 5]}, ["i1"]),
            dump("n2", {"o/1": ["a", 0, 5, 5]}, ["i1"])]
    anoms, hashes = checkers.check_final(good)
    assert anoms == [] and len(set(hashes.values())) == 1
    bad = [once_ok, once_fail, once_unk, reg,
           dump("n1", {"o/1": ["a", 0, 5, 5], "o/2": ["b", 0, 6, 6]},
                ["i1"]),
           dump("n2", {}, [])]
    kinds = sorted(a["kind"] for a in checkers.check_final(bad)[0])
    assert kinds == ["acknowledged registration lost",
                     "acknowledged write lost", "failed write present",
                     "servers differ"]


def test_servers_exits():
    h = [{"f": "server", "event": "exited", "name": "n1", "code": 1,
          "time": 3.0, "disk_full": True},
         {"f": "server", "event": "exited", "name": "n2", "code": -6,
          "time": 4.0},
         {"f": "server", "event": "exited", "name": "n3", "code": -11,
          "time": 4.0, "disk_full": True}]
    assert [a["server"] if "server" in a else a["detail"]["server"]
            for a in checkers.check_servers(h)] == ["n2", "n3"]


def test_check_all_on_a_clean_history():
    h = [rec("put", 0, 1, key="k", value="1"),
         rec("get", 2, 3, key="k", mode="consistent", found=True,
             value="1", mindex=4, index=4),
         {"f": "dump", "server": "n1", "kv": {"k": ["1", 0, 4, 4]},
          "catalog": {}, "instances": []}]
    anoms, stats = checkers.check_all(h)
    assert anoms == []
    assert stats["linearizable"]["keys"] == 1


def test_final_server_not_caught_up_is_one_report():
    once = [rec("put", 0, 1, key="o/%d" % i, value="v%d" % i, once=True)
            for i in range(5)]
    kv = {"o/%d" % i: ["v%d" % i, 0, 5 + i, 5 + i, 0] for i in range(5)}
    dumps = [{"f": "dump", "server": "n1", "kv": kv, "catalog": {},
              "instances": [], "caught_up": False},
             {"f": "dump", "server": "n2", "kv": {}, "catalog": {},
              "instances": [], "caught_up": False, "why": "n2 has no leader"}]
    kinds = sorted(a["kind"] for a in checkers.check_final(once + dumps)[0])
    assert kinds == ["server not caught up", "servers differ"]

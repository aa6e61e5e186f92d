"""The checkers of the fault-injection run, over a recorded history.

A history is a list of records (dicts, one JSON line each in
history.jsonl; see workload.py for who writes which).  Every client call
has: id, proc, f (what it did), server (where it was sent), inc (that
server's incarnation when sent and still when answered, else None),
invoke and ret (seconds since the run started, one monotonic clock),
outcome ("ok": it happened and we saw the answer; "fail": it certainly did
not happen; "unknown": a timeout or an "Unknown outcome" error: it may or
may not have happened), status (HTTP status, 0 for none).

What Beacon guarantees, and therefore exactly what is checked
(README "Consistency and clusters", CONSUL-API.md §2):

 1. Linearizability of every key (check_kv_linearizable).  Writes (PUT,
    ?cas, DELETE, /v1/txn set and cas) and ?consistent reads (single
    keys, blocking queries, recursive reads and read-only txns) form a
    linearizable history per key.  ?stale reads are excluded (any
    server's own state).  Default-mode reads are answered by whichever
    server believes it leads, from its state, with no quorum round:
    a leader that is cut off or paused, and does not know yet that
    another was elected, can answer them from an older state (Consul's
    documented default-mode caveat; Beacon has no leader lease).  They
    are checked separately: a history that is linearizable without them
    but not with them is reported as "stale default read", not as a
    violation.
 2. Freshness of blocking queries and reads (check_freshness): a
    ?consistent result (blocking or not) never predates a write that was
    acknowledged before the query was sent: its X-Consul-Index, and the
    ModifyIndex of the entry when the key exists, are >= the ModifyIndex
    of every write to that key acknowledged before the query's invoke,
    and >= the index of every ?consistent result for the key returned
    before it.  Default mode: the same, reported as "stale default read"
    (see 1).
 3. Per-server monotonic indexes (check_monotonic): on one server
    process (an incarnation: a restart, wiped or not, begins a new one),
    ?stale results never go backwards: a query sent after another
    returned gets an X-Consul-Index at least as large, for one key, one
    prefix, or one catalog endpoint.  (Exceptions not exercised here: a
    snapshot restore through /v1/snapshot, and tombstone reaping after
    --tombstone-ttl, which can lower a prefix's index.)
 4. Every value read (any mode) was written by a call invoked before the
    read returned, and never by a call that certainly failed; one value
    of one key has one ModifyIndex everywhere (a value seen at two
    indexes was applied twice), and one index one value (check_values).
 5. The catalog behaves as a set of instances, each registered once and
    deregistered at most once (check_catalog): a ?consistent read never
    misses an instance whose registration was acknowledged before it was
    sent and whose deregistration was not sent before it returned, never
    shows one whose deregistration was acknowledged before it was sent,
    never shows one before its registration was sent or whose
    registration certainly failed.  Default mode: reported as above.
 6. Nothing acknowledged is lost (check_final): after healing, every
    server holds every write-once key that was acknowledged, with its
    value, and none that certainly failed; every instance whose
    registration was acknowledged and whose deregistration was never sent
    is in every server's catalog, and none whose deregistration was
    acknowledged.
 7. Convergence (check_final): after healing, every server's stale dump
    of the whole KV store (keys, values, flags, indexes) and of the
    catalog (nodes, services, checks) is the same.

TTL heartbeats are recorded and counted, not judged: a failover may delay
them, and a heartbeat a cut-off leader accepted is not replicated (it
writes nothing when the status does not change), so "critical" during a
fault is expected.
"""

import bisect
import collections
import json

import linear

STRICT = "consistent"
DEFAULT = "default"
STALE = "stale"


class Anomaly(dict):
    """checker, kind, severity ("error": a violated guarantee; "warning":
    allowed by the documented semantics, reported), msg, refs (record
    ids), detail."""

    def __init__(self, checker, kind, msg, refs=(), severity="error",
                 **detail):
        super().__init__(checker=checker, kind=kind, severity=severity,
                         msg=msg, refs=list(refs), detail=detail)

    @property
    def error(self):
        return self["severity"] == "error"


def _severity(mode):
    return "warning" if mode == DEFAULT else "error"


def _kind(mode, what):
    return ("stale default read" if mode == DEFAULT else what)


# ---- projecting the history onto keys ---------------------------------------


def _calls(history):
    return [r for r in history if r.get("outcome") is not None]


def is_once(rec):
    return bool(rec.get("once"))


def writes_of(rec):
    """[(key, value, kind, expect)] a record may have written: kind is
    linear.WRITE, CAS or DELETE; expect is CAS's expected value."""
    f = rec["f"]
    if f == "put":
        return [(rec["key"], rec["value"], linear.WRITE, None)]
    if f in ("cas", "txn-cas"):
        return [(rec["key"], rec["value"], linear.CAS, rec.get("expect"))]
    if f == "delete":
        return [(rec["key"], None, linear.DELETE, None)]
    if f == "txn-set":
        return [(k, v, linear.WRITE, None) for k, v in rec["writes"]]
    return []


def reads_of(rec, keys_under):
    """[(key, value or None, mindex or None)] a successful read record
    observed.  keys_under(prefix) lists the keys the history uses under a
    prefix (a recursive read says nothing about others)."""
    f = rec["f"]
    if rec.get("outcome") != "ok":
        return []
    if f in ("get", "watch"):
        return [(rec["key"], rec.get("value") if rec.get("found") else None,
                 rec.get("mindex") if rec.get("found") else None)]
    if f == "tree":
        ent = rec.get("entries") or {}
        out = []
        for k in keys_under(rec["prefix"]):
            e = ent.get(k)
            out.append((k, e[0] if e else None, e[1] if e else None))
        return out
    return []


class Keys:
    """Index of the history by key."""

    def __init__(self, history):
        self.calls = _calls(history)
        self.keys = set()
        for r in self.calls:
            for k, _, _, _ in writes_of(r):
                self.keys.add(k)
            if r["f"] in ("get", "watch"):
                self.keys.add(r["key"])
        self.sorted = sorted(self.keys)
        self._under = {}

    def under(self, prefix):
        if prefix not in self._under:
            i = bisect.bisect_left(self.sorted, prefix)
            out = []
            while i < len(self.sorted) and \
                    self.sorted[i].startswith(prefix):
                out.append(self.sorted[i])
                i += 1
            self._under[prefix] = out
        return self._under[prefix]


def kv_ops(history, modes=(STRICT, DEFAULT), keys=None):
    """{key: [linear.Op]} of the write-once-excluded keys: writes that
    happened (ok) or may have (unknown), and the successful reads in
    `modes`."""
    keys = keys or Keys(history)
    per = collections.defaultdict(list)
    for r in keys.calls:
        if is_once(r):
            continue
        out = r["outcome"]
        if out == "fail":
            continue
        ret = r["ret"] if out == "ok" else None
        for k, v, kind, expect in writes_of(r):
            if kind == linear.CAS:
                res = r.get("result") if out == "ok" else True
                per[k].append(linear.Op(kind, r["invoke"], ret, value=v,
                                        expect=expect, ok=bool(res),
                                        ref=r["id"]))
            else:
                per[k].append(linear.Op(kind, r["invoke"], ret, value=v,
                                        ref=r["id"]))
        if out == "ok" and r.get("mode") in modes:
            for k, v, _ in reads_of(r, keys.under):
                per[k].append(linear.Op(linear.READ, r["invoke"], r["ret"],
                                        value=v, ref=r["id"]))
    return per


# ---- 1. linearizability -----------------------------------------------------


def check_kv_linearizable(history, budget=2_000_000, keys=None):
    """Anomalies (see the module comment, 1) and statistics."""
    keys = keys or Keys(history)
    strict = kv_ops(history, (STRICT,), keys)
    withdef = kv_ops(history, (STRICT, DEFAULT), keys)
    anomalies, stats = [], collections.Counter()
    for key in sorted(withdef):
        res = linear.check(withdef[key], budget=budget)
        stats["keys"] += 1
        stats["ops"] += len(withdef[key])
        stats["steps"] += res.steps
        if res.ok:
            continue
        sres = linear.check(strict.get(key, []), budget=budget)
        stats["steps"] += sres.steps
        if sres.ok is False:
            anomalies.append(_not_linearizable(key, sres, STRICT))
        elif sres.ok is None:
            stats["inconclusive"] += 1
            anomalies.append(Anomaly(
                "linearizable", "inconclusive",
                "%s: the search gave up after %d steps" % (key, sres.steps),
                severity="warning", key=key))
        elif res.ok is False:
            anomalies.append(_not_linearizable(key, res, DEFAULT))
        else:
            stats["inconclusive"] += 1
    return anomalies, dict(stats)


def _not_linearizable(key, res, mode):
    stuck = res.stuck
    prefix = res.prefix[-6:]
    msg = ("%s is not linearizable%s: cannot place %r; the register could "
           "hold %s there; last placed: %s" % (
               key, " with default-mode reads" if mode == DEFAULT else "",
               stuck, sorted(map(repr, res.states)),
               ", ".join(map(repr, prefix))))
    refs = ([stuck.ref] if stuck is not None else []) + \
        [o.ref for o in prefix]
    return Anomaly("linearizable", _kind(mode, "not linearizable"), msg,
                   refs, severity=_severity(mode), key=key)


# ---- 4. values --------------------------------------------------------------


def check_values(history, keys=None):
    """Phantom values, values of failed writes, value/index mismatches."""
    keys = keys or Keys(history)
    written = {}                 # (key, value) -> (first invoke, record)
    failed = {}
    for r in keys.calls:
        for k, v, kind, _ in writes_of(r):
            if v is None:
                continue
            if r["outcome"] == "fail":
                failed[(k, v)] = r
            elif (k, v) not in written or \
                    written[(k, v)][0] > r["invoke"]:
                written[(k, v)] = (r["invoke"], r)
    anomalies = []
    index_of = {}                # (key, value) -> (mindex, record id)
    value_at = {}                # (key, mindex) -> (value, record id)
    twice = set()
    reported = set()             # failed writes already reported

    def learn(k, v, mi, rid):
        if mi is None:
            return
        old = index_of.setdefault((k, v), (mi, rid))
        if old[0] != mi and (k, v) not in twice:
            twice.add((k, v))
            # Every value is written by one call: at two indexes, that
            # call took effect twice.
            w = written.get((k, v), (None, {}))[1].get("id")
            anomalies.append(Anomaly(
                "values", "write applied twice",
                "%s=%r (written once, by #%s) seen with ModifyIndex %d "
                "(#%s) and %d (#%s)" % (k, v, w, old[0], old[1], mi, rid),
                [w, old[1], rid], key=k))
        old = value_at.setdefault((k, mi), (v, rid))
        if old[0] != v and (k, mi) not in twice:
            twice.add((k, mi))
            anomalies.append(Anomaly(
                "values", "index mismatch",
                "%s ModifyIndex %d holds %r (#%s) and %r (#%s)" % (
                    k, mi, old[0], old[1], v, rid), [old[1], rid], key=k))

    for r in keys.calls:
        if r["f"] == "txn-set" and r["outcome"] == "ok":
            for k, v, mi in r.get("results") or []:
                learn(k, v, mi, r["id"])
        if r["f"] == "txn-cas" and r["outcome"] == "ok" and r.get("result"):
            learn(r["key"], r["value"], r.get("mindex"), r["id"])
        for k, v, mi in reads_of(r, keys.under):
            if v is None:
                continue
            learn(k, v, mi, r["id"])
            if (k, v) in failed and (k, v) not in written:
                if (k, v) in reported:
                    continue
                reported.add((k, v))
                anomalies.append(Anomaly(
                    "values", "failed write visible",
                    "%s read %r (#%s), written by #%s which was answered "
                    "%s %r" % (k, v, r["id"], failed[(k, v)]["id"],
                               failed[(k, v)].get("status"),
                               failed[(k, v)].get("err", "")),
                    [r["id"], failed[(k, v)]["id"]], key=k))
            elif (k, v) not in written or written[(k, v)][0] > r["ret"]:
                anomalies.append(Anomaly(
                    "values", "phantom value",
                    "%s read %r (#%s, %s) but no call wrote it before the "
                    "read returned" % (k, v, r["id"], r.get("mode")),
                    [r["id"]], key=k))
    return anomalies, index_of


# ---- 2. freshness -----------------------------------------------------------


def check_freshness(history, index_of, keys=None):
    """See the module comment, 2."""
    keys = keys or Keys(history)
    acked = collections.defaultdict(list)     # key -> [(ret, index, id)]
    for r in keys.calls:
        if r["outcome"] != "ok" or is_once(r):
            continue
        if r["f"] in ("cas", "txn-cas") and not r.get("result"):
            continue
        for k, v, kind, _ in writes_of(r):
            if v is None:
                continue
            mi = index_of.get((k, v))
            if mi is not None:
                acked[k].append((r["ret"], mi[0], r["id"]))
    # Results of strict reads are "acknowledged" states too.
    reads = collections.defaultdict(list)      # key -> [(rec, idx, mindex)]
    for r in keys.calls:
        if r.get("mode") not in (STRICT, DEFAULT) or r["outcome"] != "ok" \
                or is_once(r):
            continue
        if r["f"] in ("get", "watch"):
            reads[r["key"]].append((r, r.get("index"),
                                    r.get("mindex") if r.get("found")
                                    else None))
        elif r["f"] == "tree":
            for k, v, mi in reads_of(r, keys.under):
                reads[k].append((r, None, mi))
    anomalies = []
    for k, rs in reads.items():
        ws = sorted(acked.get(k, []))
        wmax, best = [], (0, None)
        for ret, mi, rid in ws:
            if mi > best[0]:
                best = (mi, rid)
            wmax.append(best)
        wrets = [w[0] for w in ws]
        strict_done = sorted((r["ret"], max(x for x in (idx, mi)
                                            if x is not None), r["id"])
                             for r, idx, mi in rs
                             if r["mode"] == STRICT and
                             (idx is not None or mi is not None))
        smax, best = [], (0, None)
        for ret, ix, rid in strict_done:
            if ix > best[0]:
                best = (ix, rid)
            smax.append(best)
        srets = [s[0] for s in strict_done]
        for r, idx, mi in rs:
            mode = r["mode"]
            j = bisect.bisect_left(wrets, r["invoke"])
            floor = wmax[j - 1] if j > 0 else (0, None)
            j = bisect.bisect_left(srets, r["invoke"])
            sfloor = smax[j - 1] if j > 0 else (0, None)
            for got, what in ((idx, "X-Consul-Index"), (mi, "ModifyIndex")):
                if got is None:
                    continue
                if got < floor[0]:
                    anomalies.append(Anomaly(
                        "freshness", _kind(mode, "stale read"),
                        "%s: %s %s read (#%s, %s %d, sent at %.3f) predates "
                        "the write #%s acknowledged before it (index %d)" % (
                            k, mode, r["f"], r["id"], what, got, r["invoke"],
                            floor[1], floor[0]),
                        [r["id"], floor[1]], severity=_severity(mode),
                        key=k))
                    break
                if what == "X-Consul-Index" and got < sfloor[0]:
                    anomalies.append(Anomaly(
                        "freshness", _kind(mode, "stale read"),
                        "%s: %s %s read (#%s, index %d, sent at %.3f) is "
                        "older than the consistent read #%s that returned "
                        "before it (index %d)" % (
                            k, mode, r["f"], r["id"], got, r["invoke"],
                            sfloor[1], sfloor[0]),
                        [r["id"], sfloor[1]], severity=_severity(mode),
                        key=k))
                    break
    return anomalies


# ---- 3. per-server monotonic indexes ----------------------------------------


def _watch_target(r):
    f = r["f"]
    if f in ("get", "watch"):
        return "kv:" + r["key"]
    if f == "tree":
        return "kv-tree:" + r["prefix"]
    if f == "svc-read":
        return "%s:%s" % (r["endpoint"], r["service"])
    return None


def check_monotonic(history):
    """See the module comment, 3."""
    groups = collections.defaultdict(list)
    for r in _calls(history):
        if r.get("mode") != STALE or r["outcome"] != "ok" or \
                r.get("inc") is None or r.get("index") is None:
            continue
        t = _watch_target(r)
        if t is not None:
            groups[(r["server"], r["inc"], t)].append(r)
    anomalies = []
    for (srv, inc, target), rs in groups.items():
        by_ret = sorted(rs, key=lambda r: r["ret"])
        by_inv = sorted(rs, key=lambda r: r["invoke"])
        i, best = 0, None
        for r in by_inv:
            while i < len(by_ret) and by_ret[i]["ret"] < r["invoke"]:
                if best is None or by_ret[i]["index"] > best["index"]:
                    best = by_ret[i]
                i += 1
            if best is not None and r["index"] < best["index"]:
                anomalies.append(Anomaly(
                    "monotonic", "index went backwards",
                    "%s (incarnation %s) %s: #%s sent at %.3f got index %d "
                    "after #%s had returned index %d at %.3f" % (
                        srv, inc, target, r["id"], r["invoke"], r["index"],
                        best["id"], best["index"], best["ret"]),
                    [best["id"], r["id"]], server=srv))
    return anomalies


# ---- 5. the catalog ---------------------------------------------------------


def check_catalog(history):
    """See the module comment, 5."""
    calls = _calls(history)
    reg, dereg = {}, {}
    for r in calls:
        if r["f"] == "reg":
            reg[r["sid"]] = r
        elif r["f"] == "dereg" and r["outcome"] != "fail":
            # The first deregistration that may have happened.
            if r["sid"] not in dereg or \
                    dereg[r["sid"]]["invoke"] > r["invoke"]:
                dereg[r["sid"]] = r
    acked_dereg = {}
    for r in calls:
        if r["f"] == "dereg" and r["outcome"] == "ok":
            if r["sid"] not in acked_dereg or \
                    acked_dereg[r["sid"]]["ret"] > r["ret"]:
                acked_dereg[r["sid"]] = r
    anomalies = []
    for r in calls:
        if r["f"] != "svc-read" or r["outcome"] != "ok":
            continue
        mode = r.get("mode")
        got = set(r.get("ids") or [])
        for sid in got:
            g = reg.get(sid)
            if g is None or (g["outcome"] != "fail" and
                             g["invoke"] > r["ret"]):
                anomalies.append(Anomaly(
                    "catalog", "phantom instance",
                    "%s %s read #%s shows %s, registered by no call sent "
                    "before it returned" % (mode, r["endpoint"], r["id"],
                                            sid), [r["id"]]))
            elif g["outcome"] == "fail":
                anomalies.append(Anomaly(
                    "catalog", "failed registration visible",
                    "%s read #%s shows %s whose registration #%s was "
                    "answered %s" % (mode, r["id"], sid, g["id"],
                                     g.get("status")), [r["id"], g["id"]]))
            elif mode != STALE and sid in acked_dereg and \
                    acked_dereg[sid]["ret"] < r["invoke"]:
                # A re-registration after a deregistration never happens
                # in the workload (IDs are never reused).
                anomalies.append(Anomaly(
                    "catalog", _kind(mode, "deregistered instance visible"),
                    "%s %s read #%s (sent at %.3f) shows %s, whose "
                    "deregistration #%s was acknowledged at %.3f" % (
                        mode, r["endpoint"], r["id"], r["invoke"], sid,
                        acked_dereg[sid]["id"], acked_dereg[sid]["ret"]),
                    [r["id"], acked_dereg[sid]["id"]],
                    severity=_severity(mode)))
        if mode == STALE:
            continue
        for sid, g in reg.items():
            if sid in got or g["outcome"] != "ok" or \
                    g.get("service") != r.get("service") or \
                    g["ret"] >= r["invoke"]:
                continue
            d = dereg.get(sid)
            if d is not None and d["invoke"] <= r["ret"]:
                continue
            anomalies.append(Anomaly(
                "catalog", _kind(mode, "acknowledged instance missing"),
                "%s %s read #%s (sent at %.3f) misses %s, registered by #%s "
                "(acknowledged at %.3f) and not deregistered" % (
                    mode, r["endpoint"], r["id"], r["invoke"], sid, g["id"],
                    g["ret"]), [r["id"], g["id"]],
                severity=_severity(mode)))
    return anomalies


# ---- 6, 7. after healing ----------------------------------------------------


def canonical_hash(obj):
    import hashlib
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()
                          ).hexdigest()[:16]


def check_final(history):
    """Lost writes and convergence, from the "dump" records the harness
    writes after healing (one per server: kv {key: [value, flags,
    create, modify]}, catalog {...})."""
    dumps = [r for r in history if r.get("f") == "dump"]
    anomalies = []
    if not dumps:
        return [Anomaly("final", "no dump",
                        "the run recorded no final state")], {}
    # 7. convergence
    hashes = {d["server"]: (canonical_hash(d["kv"]),
                            canonical_hash(d["catalog"])) for d in dumps}
    if len(set(hashes.values())) > 1:
        ref = dumps[0]
        for d in dumps[1:]:
            diff = _diff(ref["kv"], d["kv"])
            cdiff = _diff(ref["catalog"], d["catalog"])
            if diff or cdiff:
                anomalies.append(Anomaly(
                    "converge", "servers differ",
                    "after healing %s and %s differ: kv %s; catalog %s" % (
                        ref["server"], d["server"], diff[:5], cdiff[:5]),
                    server=d["server"]))
    # 6. lost writes
    calls = _calls(history)
    for d in dumps:
        kv = d["kv"]
        lost, present = [], []
        for r in calls:
            if not is_once(r) or r["f"] != "put":
                continue
            got = kv.get(r["key"])
            if r["outcome"] == "ok" and (got is None or
                                         got[0] != r["value"]):
                lost.append(r)
            elif r["outcome"] == "fail" and got is not None:
                present.append(r)
        if lost and d.get("caught_up") is False:
            # The cluster never became ready with this server caught up
            # (a "no recovery" anomaly says why): one report, not one per
            # key it has not received.
            anomalies.append(Anomaly(
                "lost-write", "server not caught up",
                "%s after healing misses %d acknowledged writes (%s...), "
                "but the cluster never became ready (%s)" % (
                    d["server"], len(lost), ", ".join(
                        r["key"] for r in lost[:3]), d.get("why", "")),
                [r["id"] for r in lost[:20]], server=d["server"]))
            lost = []
        for r in lost:
            anomalies.append(Anomaly(
                "lost-write", "acknowledged write lost",
                "%s after healing: %s (written by #%s at %.3f, "
                "acknowledged) is %r" % (d["server"], r["key"], r["id"],
                                         r["invoke"],
                                         kv.get(r["key"])),
                [r["id"]], server=d["server"]))
        for r in present:
            anomalies.append(Anomaly(
                "lost-write", "failed write present",
                "%s after healing holds %s, whose write #%s was answered "
                "%s %r" % (d["server"], r["key"], r["id"], r.get("status"),
                           r.get("err", "")), [r["id"]],
                server=d["server"]))
        inst = set(d.get("instances") or [])
        reg = {r["sid"]: r for r in calls if r["f"] == "reg"}
        deregs = collections.defaultdict(list)
        for r in calls:
            if r["f"] == "dereg":
                deregs[r["sid"]].append(r)
        behind = d.get("caught_up") is False
        for sid, g in reg.items():
            ds = deregs.get(sid, [])
            if behind:
                continue             # reported above
            if g["outcome"] == "ok" and \
                    all(x["outcome"] == "fail" for x in ds) and \
                    sid not in inst:
                anomalies.append(Anomaly(
                    "lost-write", "acknowledged registration lost",
                    "%s after healing has no instance %s (registered by "
                    "#%s, never deregistered)" % (d["server"], sid,
                                                   g["id"]), [g["id"]],
                    server=d["server"]))
            if any(x["outcome"] == "ok" for x in ds) and sid in inst:
                anomalies.append(Anomaly(
                    "lost-write", "acknowledged deregistration lost",
                    "%s after healing still has %s (deregistered by #%s)"
                    % (d["server"], sid, [x["id"] for x in ds
                                          if x["outcome"] == "ok"]),
                    [g["id"]], server=d["server"]))
            if g["outcome"] == "fail" and sid in inst:
                anomalies.append(Anomaly(
                    "lost-write", "failed registration present",
                    "%s after healing has %s, whose registration #%s was "
                    "answered %s" % (d["server"], sid, g["id"],
                                     g.get("status")), [g["id"]],
                    server=d["server"]))
    return anomalies, {s: "%s/%s" % h for s, h in hashes.items()}


def _diff(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in a:
                out.append("+%s" % k)
            elif k not in b:
                out.append("-%s" % k)
            elif a[k] != b[k]:
                out.append("%s: %r != %r" % (k, a[k], b[k]))
        return out
    return [] if a == b else ["%r != %r" % (a, b)]


# ---- process health ---------------------------------------------------------


def check_servers(history):
    """A server that exited by itself is an anomaly unless its disk was
    full (Beacon exits non-zero when libraft's I/O fails, for a supervisor
    to restart it; DESIGN.md); a sanitizer report always is."""
    anomalies = []
    for r in history:
        if r.get("f") != "server":
            continue
        if r.get("event") == "exited":
            if r.get("disk_full") and (r.get("code") or 0) > 0:
                continue
            anomalies.append(Anomaly(
                "servers", "server exited",
                "%s exited by itself with status %s at %.3f%s" % (
                    r["name"], r.get("code"), r["time"],
                    " (disk full)" if r.get("disk_full") else ""),
                server=r["name"], log=r.get("log", "")))
        elif r.get("event") == "sanitizer":
            rep = r.get("report", "")
            at = min([i for i in (rep.find("==ERROR"), rep.find(
                "runtime error:")) if i >= 0] or [0])
            anomalies.append(Anomaly(
                "servers", "sanitizer report",
                "%s: %s" % (r["name"], rep[max(0, at - 20):at + 2500]),
                server=r["name"]))
        elif r.get("event") == "no-recovery":
            anomalies.append(Anomaly(
                "servers", "no recovery",
                "the cluster was not ready %.0f s after healing %s: %s" % (
                    r.get("waited", 0), r.get("after", ""),
                    r.get("why", "")),
                severity="error"))
    return anomalies


# ---- everything -------------------------------------------------------------


def check_all(history, budget=2_000_000):
    """(anomalies, stats) of every checker over `history`."""
    keys = Keys(history)
    anomalies, stats = [], {}
    lin, stats["linearizable"] = check_kv_linearizable(history, budget,
                                                       keys)
    anomalies += lin
    val, index_of = check_values(history, keys)
    anomalies += val
    anomalies += check_freshness(history, index_of, keys)
    anomalies += check_monotonic(history)
    anomalies += check_catalog(history)
    fin, stats["hashes"] = check_final(history)
    anomalies += fin
    anomalies += check_servers(history)
    return anomalies, stats


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]

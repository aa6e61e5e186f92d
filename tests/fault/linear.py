"""Linearizability of one key's history: Wing & Gong's search with Lowe's
just-in-time linearization and memoisation (G. Lowe, "Testing for
linearizability", 2017; the same algorithm as Porcupine and Knossos' "wgl").

An operation has an invoke time, a return time and a result.  The history
is linearizable when every completed operation can be given a point between
its invoke and its return such that, in the order of those points, each
result is what the sequential model gives.  An operation whose outcome is
unknown (a timeout, a "500 Unknown outcome") is *optional*: it may take
effect at any point after its invoke, or never; it has no return.

The search walks a list of call and return events in time order.  At a call
it tries to linearize that operation now (the model accepts it in the
current state); at a return whose operation is not linearized yet it
backtracks.  Every (set of linearized operations, model state) pair is
tried once: the set is an integer used as a bitset, the pair goes into a
cache.  Calls and returns at the same instant are treated as concurrent
(calls sort first), which can only make the checker more lenient.

The model here is a register with compare-and-set over unique values, which
is what the KV workload produces (see checkers.kv_ops):

    write(v)          state := v
    delete()          state := None (the key is absent)
    read() -> v       requires state == v (v None: absent)
    cas(e, v) -> True requires state == e, then state := v
    cas(e, v) -> False requires state != e

Consul's ?cas=<index> compares ModifyIndexes; with unique values each
index belongs to one value, so the workload records the value it saw with
that index as `e`.
"""

import math

WRITE, DELETE, READ, CAS = "write", "delete", "read", "cas"
INF = math.inf


class Op:
    """One operation of one key's history.

    kind: WRITE, DELETE, READ or CAS; value: written value (WRITE, CAS) or
    the value read (READ; None = absent); expect: CAS's expected value;
    ok: CAS's result (True/False); ret: None for an optional operation
    (unknown outcome: may take effect after invoke, or never); ref: the
    caller's reference (a history record id), reported back."""

    __slots__ = ("kind", "invoke", "ret", "value", "expect", "ok", "ref",
                 "idx")

    def __init__(self, kind, invoke, ret, value=None, expect=None, ok=True,
                 ref=None):
        assert kind in (WRITE, DELETE, READ, CAS), kind
        assert ret is None or ret >= invoke, (invoke, ret)
        if kind == CAS and ret is None:
            ok = True        # an unknown CAS matters only if it succeeded
        self.kind, self.invoke, self.ret = kind, invoke, ret
        self.value, self.expect, self.ok, self.ref = value, expect, ok, ref
        self.idx = -1

    @property
    def optional(self):
        return self.ret is None

    def __repr__(self):
        what = {WRITE: "write(%r)" % (self.value,),
                DELETE: "delete()",
                READ: "read()->%r" % (self.value,),
                CAS: "cas(%r,%r)->%s" % (self.expect, self.value, self.ok)}
        return "%s[%.3f,%s]%s" % (
            what[self.kind], self.invoke,
            "?" if self.ret is None else "%.3f" % self.ret,
            "" if self.ref is None else "#%s" % (self.ref,))


def step(state, op):
    """The register model: (accepted, new state)."""
    k = op.kind
    if k == WRITE:
        return True, op.value
    if k == DELETE:
        return True, None
    if k == READ:
        return state == op.value, state
    if op.ok:
        return (True, op.value) if state == op.expect else (False, state)
    return state != op.expect, state


class Result:
    """ok: True (linearizable), False (not), None (search budget spent).
    order: a linearization (list of Op) when ok; stuck: when not ok, the
    operation the deepest attempt could not linearize, with the states the
    register could be in just before it (`states`) and the operations
    linearized by then (`prefix`)."""

    def __init__(self, ok, steps, order=None, stuck=None, states=(),
                 prefix=()):
        self.ok, self.steps, self.order = ok, steps, order
        self.stuck, self.states, self.prefix = stuck, list(states), \
            list(prefix)

    def __repr__(self):
        return "<Result ok=%s steps=%d stuck=%r>" % (self.ok, self.steps,
                                                    self.stuck)


class _Entry:
    __slots__ = ("op", "call", "match", "prev", "next")

    def __init__(self, op, call):
        self.op, self.call = op, call
        self.match = self.prev = self.next = None


def _drop_invisible(ops):
    """Drop optional writes and CASes whose value nothing ever observed.

    Such an operation, if linearized, sets a value that no read returns and
    no CAS expects, so it can only help a CAS that *failed* (state != e) and
    returned after its invoke.  Without such a CAS, leaving it out changes
    nothing; this keeps the search small under long runs of timeouts."""
    seen = set()
    for op in ops:
        if op.kind == READ:
            seen.add(op.value)
        elif op.kind == CAS:
            seen.add(op.expect)
    fails = [op.ret for op in ops if op.kind == CAS and not op.ok and
             op.ret is not None]
    last_fail = max(fails) if fails else -INF
    keep = []
    for op in ops:
        if (op.ret is None and op.kind in (WRITE, CAS) and
                op.value not in seen and last_fail < op.invoke):
            continue
        keep.append(op)
    return keep


def check(ops, init=None, budget=2_000_000):
    """Decide whether `ops` (a list of Op) is linearizable from `init`.

    budget: the most search steps to take; beyond it the answer is
    Result(ok=None).  Returns a Result."""
    ops = _drop_invisible(list(ops))
    for i, op in enumerate(ops):
        op.idx = i
    events = []
    for op in ops:
        call = _Entry(op, True)
        events.append((op.invoke, 0, len(events), call))
        if op.ret is not None:
            ret = _Entry(op, False)
            call.match = ret
            events.append((op.ret, 1, len(events), ret))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    head = _Entry(None, False)
    prev = head
    for _, _, _, e in events:
        prev.next = e
        e.prev = prev
        prev = e

    def lift(e):
        e.prev.next = e.next
        if e.next is not None:
            e.next.prev = e.prev
        m = e.match
        if m is not None:
            m.prev.next = m.next
            if m.next is not None:
                m.next.prev = m.prev

    def unlift(e):
        m = e.match
        if m is not None:
            m.prev.next = m
            if m.next is not None:
                m.next.prev = m
        e.prev.next = e
        if e.next is not None:
            e.next.prev = e

    required = sum(1 for op in ops if op.ret is not None)
    state = init
    linearized = 0
    cache = set()
    stack = []                    # (call entry, state before it)
    steps = 0
    best = (-1, None, set(), [])  # (depth, stuck op, states, prefix)
    entry = head.next
    while required > 0:
        steps += 1
        if steps > budget:
            return Result(None, steps)
        assert entry is not None, "a required return was skipped"
        if entry.call:
            op = entry.op
            accepted, nstate = step(state, op)
            if accepted:
                nlin = linearized | (1 << op.idx)
                key = (nlin, nstate)
                if key not in cache:
                    cache.add(key)
                    stack.append((entry, state))
                    state, linearized = nstate, nlin
                    if op.ret is not None:
                        required -= 1
                    lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
            continue
        # The return of an operation not linearized yet: this branch
        # failed.  Remember the deepest failure for the report.
        depth = len(stack)
        if depth > best[0]:
            best = (depth, entry.op, {state}, [e.op for e, _ in stack])
        elif depth == best[0] and entry.op is best[1]:
            best[2].add(state)
        if not stack:
            return Result(False, steps, stuck=best[1], states=best[2],
                          prefix=best[3])
        top, state = stack.pop()
        linearized &= ~(1 << top.op.idx)
        if top.op.ret is not None:
            required += 1
        unlift(top)
        entry = top.next
    return Result(True, steps, order=[e.op for e, _ in stack])

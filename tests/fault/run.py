#!/usr/bin/python3
"""The long fault run (make test-fault DURATION=<s> SEED=<n>), or the
checkers replayed on a kept history.

    run.py [--duration S] [--seed N] [--nemeses a,b+c,...] [--keep]
           [--beacond PATH]
    run.py --check build/fault/<stamp>[/history.jsonl]

Prints a summary (duration, operations by type and outcome, faults
injected, anomalies) and exits 1 if any guarantee was violated; the
history and the server logs of such a run stay in build/fault/<stamp>/.
Needs root (network namespaces, a loop mount).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checkers  # noqa: E402
import harness  # noqa: E402


def check_only(path):
    if os.path.isdir(path):
        path = os.path.join(path, "history.jsonl")
    records = checkers.load(path)
    t0 = time.monotonic()
    anomalies, stats = checkers.check_all(records)
    stats["check_seconds"] = time.monotonic() - t0
    end = max([r.get("ret") or r.get("time") or 0 for r in records] + [0])
    print(harness.summarize(records, anomalies, stats, end, end, [],
                            os.path.dirname(path), -1), end="")
    return 1 if any(a.error for a in anomalies) else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float,
                    default=float(os.environ.get("DURATION") or 600))
    ap.add_argument("--seed", type=int,
                    default=int(os.environ.get("SEED") or
                                int(time.time()) % 100000))
    ap.add_argument("--nemeses", default="",
                    help="comma-separated list run once each, in order "
                    "(default: a random schedule)")
    ap.add_argument("--keep", action="store_true",
                    help="keep history and logs of a passing run too")
    ap.add_argument("--beacond", default=os.environ.get("BEACOND"))
    ap.add_argument("--check", metavar="HISTORY",
                    help="only run the checkers on a kept history")
    a = ap.parse_args()
    if a.check:
        return check_only(a.check)
    opts = harness.Options(
        duration=a.duration, seed=a.seed, keep=a.keep, beacond=a.beacond,
        nemeses=[n for n in a.nemeses.split(",") if n] or None)
    try:
        out = harness.run(opts)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print()
    print(out.summary, end="")
    if out.kept:
        print("history and logs kept in %s" % out.dir)
    return 1 if out.errors else 0


if __name__ == "__main__":
    sys.exit(main())

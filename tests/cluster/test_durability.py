"""Durability of one node across restarts, kill -9 and raft snapshots.

An acknowledged write (PUT answered 200 `true`) must survive anything,
including SIGKILL at any moment; entries come back with the same value,
flags and indexes; indexes never go backwards.
"""

import base64
import os
import random
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

LOAD_THREADS = 8
LOAD_SECONDS = 3.0
KILL_AFTER = 1.5            # s into the load
MAX_WRITES_PER_THREAD = 20000


def kv(key, query=""):
    return "/v1/kv/" + urllib.parse.quote(key, safe="/") + (
        "?" + query if query else "")


def dump(node, prefix=""):
    """(index, {key: entry}) of every entry under `prefix`."""
    r = node.get(kv(prefix, "recurse") if prefix else "/v1/kv/?recurse",
                 timeout=30)
    assert r.status_code in (200, 404), (r.status_code, r.content[:300])
    index = int(r.headers["X-Consul-Index"])
    entries = r.json() if r.status_code == 200 else []
    return index, {e["Key"]: e for e in entries}


def decode(e):
    return b"" if e["Value"] is None else base64.b64decode(e["Value"])


def put(session, node, key, value, query=""):
    r = session.put(node.url + kv(key, query), data=value, timeout=10)
    assert r.status_code == 200 and r.content == b"true", (
        key, r.status_code, r.content[:200])


def parallel_puts(node, items, threads=8):
    """PUT every (key, value, query) with a few keep-alive sessions."""
    items = list(items)

    def worker(chunk):
        s = node.new_session()
        for key, value, query in chunk:
            put(s, node, key, value, query)
        s.close()

    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(worker, items[i::threads])
                  for i in range(threads)]:
            f.result()


def snapshot_files(node):
    return sorted((Path(node.data_dir) / "raft").glob("snapshot-*"))


def test_restart_keeps_every_key(node):
    items = []
    for i in range(200):
        value = os.urandom(i % 50) if i % 3 else ("v%d" % i).encode()
        items.append(("restart/%03d" % i, value, "flags=%d" % i))
    items.append(("restart/empty", b"", ""))
    items.append(("restart/sp ace/\u00e9", b"unicode", ""))
    parallel_puts(node, items)
    s = node.new_session()
    for i in range(0, 200, 10):
        assert s.delete(node.url + kv("restart/%03d" % i)).content == b"true"
    put(s, node, "restart/001", b"overwritten", "flags=99")
    s.close()
    index, before = dump(node)
    assert len(before) == 200 - 20 + 2
    # Indexes reported for deleted keys and emptied prefixes (tombstones).
    gone = [kv("restart/000"), kv("restart/010"), kv("restart/020", "keys")]
    gone_index = {}
    for path in gone:
        r = node.get(path)
        assert r.status_code == 404, path
        gone_index[path] = int(r.headers["X-Consul-Index"])

    node.restart()
    index2, after = dump(node)
    assert after == before                     # values, flags and indexes
    assert index2 >= index
    # No index goes backwards across a restart, deleted keys' included.
    for path in gone:
        r = node.get(path)
        assert r.status_code == 404, path
        assert int(r.headers["X-Consul-Index"]) >= gone_index[path], path
    # New writes get higher indexes than anything before the restart.
    put(node.http, node, "restart/new", b"n")
    r = node.get(kv("restart/new"))
    assert r.json()[0]["CreateIndex"] > index

    node.restart()
    assert dump(node)[1] == {**before, "restart/new": r.json()[0]}


def test_kill9_loses_no_acknowledged_write(node):
    token = "%08x" % random.getrandbits(32)
    acked = [dict() for _ in range(LOAD_THREADS)]   # key -> value, per thread
    attempted = [dict() for _ in range(LOAD_THREADS)]
    errors = []
    stop = threading.Event()
    started = threading.Barrier(LOAD_THREADS + 1)

    def load(t):
        s = node.new_session()
        url = node.url
        started.wait()
        deadline = time.monotonic() + LOAD_SECONDS
        try:
            for n in range(MAX_WRITES_PER_THREAD):
                if stop.is_set() or time.monotonic() > deadline:
                    break
                key = "load/%d/%d" % (t, n)
                value = ("%s:%d:%d" % (token, t, n)).encode()
                attempted[t][key] = value
                try:
                    r = s.put(url + "/v1/kv/" + key, data=value, timeout=5)
                except requests.RequestException:
                    break                       # the server is gone
                if r.status_code == 200 and r.content == b"true":
                    acked[t][key] = value
                else:
                    errors.append((key, r.status_code, r.content[:200]))
                    break
        finally:
            s.close()

    threads = [threading.Thread(target=load, args=(t,), daemon=True)
               for t in range(LOAD_THREADS)]
    for th in threads:
        th.start()
    started.wait()
    time.sleep(KILL_AFTER)
    acked_before_kill = sum(len(a) for a in acked)
    node.kill9()
    stop.set()
    for th in threads:
        th.join(15)
    assert not any(th.is_alive() for th in threads)
    assert not errors, "writes refused before the kill: %r" % errors[:5]
    assert acked_before_kill > 0, "no write acknowledged in %.1f s" % KILL_AFTER

    node.start()
    _, stored = dump(node, "load/")
    all_acked = {k: v for a in acked for k, v in a.items()}
    all_attempted = {k: v for a in attempted for k, v in a.items()}
    lost = sorted(k for k in all_acked if k not in stored)
    wrong = sorted(k for k in all_acked
                   if k in stored and decode(stored[k]) != all_acked[k])
    print("kill -9 under load: checked %d acknowledged writes "
          "(%d attempted, %d stored after restart)"
          % (len(all_acked), len(all_attempted), len(stored)))
    assert not lost, "%d acknowledged writes lost, e.g. %r" % (
        len(lost), lost[:10])
    assert not wrong, "%d acknowledged writes changed, e.g. %r" % (
        len(wrong), wrong[:10])
    # Nothing that was never sent, and no torn values.
    unknown = sorted(k for k in stored if k not in all_attempted)
    assert not unknown, unknown[:10]
    torn = sorted(k for k in stored if decode(stored[k]) != all_attempted[k])
    assert not torn, torn[:10]
    # Unacknowledged writes per thread can only be the last one in flight.
    for t in range(LOAD_THREADS):
        extra = [k for k in stored
                 if k.startswith("load/%d/" % t) and k not in acked[t]]
        assert len(extra) <= 1, extra
    # The node works normally afterwards and shuts down cleanly.
    put(node.http, node, "load/after", b"ok")
    node.restart()
    assert dump(node, "load/after")[1]["load/after"]["Value"] == \
        base64.b64encode(b"ok").decode()


def test_snapshots_and_restarts(node_factory):
    node = node_factory(snapshot_threshold=64)
    items = [("snap/%03d" % i, ("value %d" % i).encode() * (1 + i % 5),
              "flags=%d" % (i % 7)) for i in range(500)]
    parallel_puts(node, items)
    deadline = time.monotonic() + 5
    while not snapshot_files(node) and time.monotonic() < deadline:
        time.sleep(0.05)
    files = snapshot_files(node)
    assert files, "no snapshot-* under %s/raft after 500 writes with " \
        "--snapshot-threshold 64: %s" % (
            node.data_dir, sorted(os.listdir(Path(node.data_dir) / "raft"))
            if (Path(node.data_dir) / "raft").is_dir() else "no raft dir")
    index, before = dump(node)
    assert len(before) == 500
    assert all(decode(before[k]) == v for k, v, _ in items)

    # Restart: state comes back from the snapshot plus the log tail.
    node.restart()
    index2, after = dump(node)
    assert after == before and index2 >= index

    # More writes, overwrites and deletes; restart again.
    more = [("snap/more/%03d" % i, b"m%d" % i, "") for i in range(150)]
    more += [("snap/%03d" % i, b"updated", "flags=1") for i in range(0, 500, 5)]
    parallel_puts(node, more)
    s = node.new_session()
    for i in range(1, 500, 25):
        assert s.delete(node.url + kv("snap/%03d" % i)).content == b"true"
    assert s.delete(node.url + kv("snap/more/01", "recurse")).content == \
        b"true"
    s.close()
    index3, before = dump(node)
    assert index3 > index2
    expected = {k: v for k, v, _ in items}
    expected.update({k: v for k, v, _ in more})
    for i in range(1, 500, 25):
        del expected["snap/%03d" % i]
    for i in range(10, 20):
        del expected["snap/more/%03d" % i]
    assert {k: decode(e) for k, e in before.items()} == expected

    node.restart()
    index4, after = dump(node)
    assert after == before and index4 >= index3
    assert len(snapshot_files(node)) >= 1

    # And once more with kill -9 after further writes.
    parallel_puts(node, [("snap/last/%03d" % i, b"l", "") for i in range(100)])
    index5, before = dump(node)
    node.kill9()
    node.start()
    index6, after = dump(node)
    assert after == before and index6 >= index5

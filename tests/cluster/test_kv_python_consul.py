"""The KV API through Debian's python3-consul 0.7.1, unmodified.

What the client sends and expects: CONSUL-API.md §10.1.  In short: keys are
percent-encoded except "/" and ":", flags go as recurse=1 / keys=True,
put/delete parse the body as JSON, and a 404 is turned into
(headers['X-Consul-Index'], None) -- a KeyError if the header is missing.
"""

import threading
import time

import consul
import consul.base
import pytest


@pytest.fixture(scope="module")
def c(kv_node):
    return consul.Consul(host="127.0.0.1", port=kv_node.http_port)


def test_status(c, kv_node):
    assert c.status.leader() == kv_node.raft_addr
    assert c.status.peers() == [kv_node.raft_addr]


def test_put_get_delete(c):
    assert c.kv.put("py/k", "hello") is True
    index, data = c.kv.get("py/k")
    assert data["Key"] == "py/k"
    assert data["Value"] == b"hello"
    assert data["Flags"] == 0 and data["LockIndex"] == 0
    assert int(index) == data["ModifyIndex"] >= data["CreateIndex"] >= 1
    assert c.kv.delete("py/k") is True
    index2, data = c.kv.get("py/k")
    assert data is None
    assert int(index2) > int(index)


def test_get_missing_returns_index_and_none(c):
    index, data = c.kv.get("py/never/there")
    assert data is None
    assert index.isdigit() and int(index) >= 1
    index, data = c.kv.get("py/never/", recurse=True)
    assert data is None and int(index) >= 1
    index, data = c.kv.get("py/never/", keys=True)
    assert data is None and int(index) >= 1


def test_values(c):
    assert c.kv.put("pyv/none", None) is True
    assert c.kv.get("pyv/none")[1]["Value"] is None
    assert c.kv.put("pyv/empty", "") is True
    assert c.kv.get("pyv/empty")[1]["Value"] is None
    blob = bytes(range(256))
    assert c.kv.put("pyv/bin", blob) is True
    assert c.kv.get("pyv/bin")[1]["Value"] == blob
    # A str value goes through http.client, which encodes it as Latin-1;
    # UTF-8 text is passed as bytes.
    assert c.kv.put("pyv/text", "plain text") is True
    assert c.kv.get("pyv/text")[1]["Value"] == b"plain text"
    text = "gr\u00fc\u00dfe \u2603".encode()
    assert c.kv.put("pyv/utf8", text) is True
    assert c.kv.get("pyv/utf8")[1]["Value"] == text


def test_special_keys(c):
    # python-consul quotes everything but "/" and ":".
    for key in ("pys/with space", "pys/colon:x", "pys/plus+x",
                "pys/percent%x", "pys/q?x", "pys/h#x", "pys/\u00e9t\u00e9"):
        assert c.kv.put(key, key.encode()) is True, key
        assert c.kv.get(key)[1]["Value"] == key.encode(), key
    _, keys = c.kv.get("pys/", keys=True)
    assert keys == sorted(["pys/with space", "pys/colon:x", "pys/plus+x",
                           "pys/percent%x", "pys/q?x", "pys/h#x",
                           "pys/\u00e9t\u00e9"], key=lambda k: k.encode())


def test_recurse_keys_separator(c):
    for k in ("pyr/web/bar", "pyr/web/foo", "pyr/web/subdir/a",
              "pyr/web/subdir/b", "pyr/webx"):
        assert c.kv.put(k, k.upper()) is True
    index, entries = c.kv.get("pyr/", recurse=True)
    assert [e["Key"] for e in entries] == [
        "pyr/web/bar", "pyr/web/foo", "pyr/web/subdir/a", "pyr/web/subdir/b",
        "pyr/webx"]
    assert [e["Value"] for e in entries] == [
        e["Key"].upper().encode() for e in entries]
    assert int(index) == max(e["ModifyIndex"] for e in entries)
    _, keys = c.kv.get("pyr/", keys=True)
    assert keys == [e["Key"] for e in entries]
    _, keys = c.kv.get("pyr/web/", keys=True, separator="/")
    assert keys == ["pyr/web/bar", "pyr/web/foo", "pyr/web/subdir/"]
    _, keys = c.kv.get("pyr/", keys=True, separator="/")
    assert keys == ["pyr/web/", "pyr/webx"]
    # Recursive delete.
    assert c.kv.delete("pyr/web/", recurse=True) is True
    _, keys = c.kv.get("pyr/", keys=True)
    assert keys == ["pyr/webx"]


def test_cas(c):
    assert c.kv.put("pyc/k", "one", cas=0) is True
    assert c.kv.put("pyc/k", "two", cas=0) is False
    _, data = c.kv.get("pyc/k")
    assert data["Value"] == b"one"
    m = data["ModifyIndex"]
    assert c.kv.put("pyc/k", "three", cas=m + 1000) is False
    assert c.kv.put("pyc/k", "three", cas=m) is True
    assert c.kv.put("pyc/k", "four", cas=m) is False
    _, data = c.kv.get("pyc/k")
    assert data["Value"] == b"three"
    m2 = data["ModifyIndex"]
    assert m2 > m
    # Delete with CAS: wrong index, 0 (never), right index.
    assert c.kv.delete("pyc/k", cas=m) is False
    assert c.kv.delete("pyc/k", cas=0) is False
    assert c.kv.get("pyc/k")[1]["Value"] == b"three"
    assert c.kv.delete("pyc/k", cas=m2) is True
    assert c.kv.get("pyc/k")[1] is None


def test_flags(c):
    assert c.kv.put("pyf/k", "v", flags=42) is True
    assert c.kv.get("pyf/k")[1]["Flags"] == 42
    assert c.kv.put("pyf/k", "v") is True           # flags reset to 0
    assert c.kv.get("pyf/k")[1]["Flags"] == 0
    assert c.kv.put("pyf/k", "v", flags=2**64 - 1) is True
    assert c.kv.get("pyf/k")[1]["Flags"] == 2**64 - 1
    _, entries = c.kv.get("pyf/", recurse=True)
    assert entries[0]["Flags"] == 2**64 - 1


def test_consistency_modes(c):
    assert c.kv.put("pycm/k", "v") is True
    for mode in ("consistent", "stale", "default"):
        index, data = c.kv.get("pycm/k", consistency=mode)
        assert data["Value"] == b"v", mode
        assert int(index) == data["ModifyIndex"]


def test_blocking_get_wakes_on_put(c, kv_node):
    assert c.kv.put("pyb/k", "v1") is True
    index, data = c.kv.get("pyb/k")
    result = {}

    def watch():
        w = consul.Consul(host="127.0.0.1", port=kv_node.http_port)
        t0 = time.monotonic()
        result["r"] = w.kv.get("pyb/k", index=index, wait="10s")
        result["t"] = time.monotonic() - t0

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    time.sleep(0.3)
    assert th.is_alive(), "returned without a change: %r" % (result,)
    assert c.kv.put("pyb/k", "v2") is True
    th.join(15)
    assert not th.is_alive()
    new_index, new_data = result["r"]
    assert new_data["Value"] == b"v2"
    assert int(new_index) > int(index)
    assert result["t"] < 5.0


def test_blocking_get_times_out(c):
    assert c.kv.put("pybt/k", "v") is True
    index, data = c.kv.get("pybt/k")
    t0 = time.monotonic()
    index2, data2 = c.kv.get("pybt/k", index=index, wait="1s")
    elapsed = time.monotonic() - t0
    assert 0.98 <= elapsed <= 1.0 + 1 / 16 + 0.4
    assert index2 == index and data2 == data


def test_blocking_get_on_missing_key(c, kv_node):
    index, data = c.kv.get("pybm/k")
    assert data is None
    result = {}

    def watch():
        w = consul.Consul(host="127.0.0.1", port=kv_node.http_port)
        result["r"] = w.kv.get("pybm/k", index=index, wait="10s")

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    time.sleep(0.3)
    assert th.is_alive()
    assert c.kv.put("pybm/k", "born") is True
    th.join(15)
    assert not th.is_alive()
    new_index, new_data = result["r"]
    assert new_data["Value"] == b"born"
    assert int(new_index) > int(index)


def test_blocking_recurse(c, kv_node):
    assert c.kv.put("pybr/a", "1") is True
    index, entries = c.kv.get("pybr/", recurse=True)
    result = {}

    def watch():
        w = consul.Consul(host="127.0.0.1", port=kv_node.http_port)
        result["r"] = w.kv.get("pybr/", recurse=True, index=index,
                               wait="10s")

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    time.sleep(0.3)
    assert c.kv.put("pybs/unrelated", "x") is True     # must not wake it
    time.sleep(0.3)
    assert th.is_alive()
    assert c.kv.delete("pybr/a") is True
    th.join(15)
    assert not th.is_alive()
    new_index, new_entries = result["r"]
    assert new_entries is None                          # 404 after delete
    assert int(new_index) > int(index)


def test_session_locks(c):
    # An unknown session: 500 "invalid session", which python-consul
    # raises; nothing is written.
    with pytest.raises(consul.base.ConsulException):
        c.kv.put("pyl/k", "v", acquire="8f246b77-f3e1-4f88-9b48-8ec93abf3e05")
    assert c.kv.get("pyl/k")[1] is None
    # A real one: acquire, then another session cannot take it.
    sid = c.session.create(lock_delay=0)
    other = c.session.create(lock_delay=0)
    assert c.kv.put("pyl/k", "v", acquire=sid) is True
    assert c.kv.put("pyl/k", "w", acquire=other) is False
    assert c.kv.get("pyl/k")[1]["Session"] == sid
    assert c.kv.put("pyl/k", "v", release=sid) is True
    assert c.kv.put("pyl/k", "w", acquire=other) is True
    c.session.destroy(sid)
    c.session.destroy(other)

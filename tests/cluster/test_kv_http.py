"""The KV HTTP API of one beacond node, spoken with `requests` (and with
http.client where the exact bytes of the path matter).

Reference: /work/shared/CONSUL-API.md §0 (HTTP conventions), §1 (KV), §2
(blocking queries), §6 (txn), §10.3 (client gotchas), plus Beacon's key
grammar: 1..1024 bytes of valid UTF-8 after percent-decoding, no control
characters (< 0x20, 0x7f), no leading "/", no "//"; a violation is a 400 with
a one-line plain-text reason, never a redirect, and writes nothing.

Most tests share one node (fixture kv_node) and keep to their own key prefix;
tests that need an empty store use a fresh node (fixture node).
"""

import base64
import json
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

MAX_VALUE = 524288                   # kv_max_value_size, bytes
MAX_KEY = 1024                       # Beacon's key length limit, bytes
FIELD_ORDER = ["LockIndex", "Key", "Flags", "Value", "CreateIndex",
               "ModifyIndex"]
UINT64_MAX = 2**64 - 1
JITTER_SLACK = 0.4                   # s of scheduling slack on timed waits


# ---- helpers ---------------------------------------------------------------


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def kv(key, query=""):
    """Path of `key` under /v1/kv/, percent-encoded except for "/"."""
    path = "/v1/kv/" + urllib.parse.quote(key, safe="/")
    return path + ("?" + query if query else "")


def describe(r):
    return "%s %s %r" % (r.status_code, dict(r.headers), r.content[:300])


def ctype(r):
    return (r.headers.get("Content-Type") or "").split(";")[0].strip()


def index_of(r):
    """X-Consul-Index, which must be present and >= 1 on every KV read."""
    value = r.headers.get("X-Consul-Index")
    assert value is not None and value.isdigit(), \
        "bad X-Consul-Index: " + describe(r)
    assert int(value) >= 1, "X-Consul-Index must never be 0: " + describe(r)
    return int(value)


def assert_meta(r):
    """The meta headers every blocking-capable read carries (also on 404)."""
    idx = index_of(r)
    assert r.headers.get("X-Consul-KnownLeader") == "true", describe(r)
    assert r.headers.get("X-Consul-LastContact") == "0", describe(r)
    return idx


def assert_json(r, status=200):
    assert r.status_code == status, describe(r)
    assert ctype(r) == "application/json", describe(r)
    return r.json()


def assert_bool(r, expected):
    """PUT/DELETE answer: 200, application/json, body exactly true/false."""
    assert r.status_code == 200, describe(r)
    assert ctype(r) == "application/json", describe(r)
    assert r.content == (b"true" if expected else b"false"), describe(r)


def assert_error(r, status, body=None, prefix=None):
    """A plain-text, one-line error; never a redirect."""
    assert r.status_code == status, describe(r)
    assert "Location" not in r.headers, describe(r)
    assert ctype(r) == "text/plain", describe(r)
    text = r.content.decode("utf-8")
    line = text[:-1] if text.endswith("\n") else text
    assert line and "\n" not in line, "not one line: " + describe(r)
    if body is not None:
        assert line == body, describe(r)
    if prefix is not None:
        assert line.startswith(prefix), describe(r)
    return line


def assert_404_empty(r):
    assert r.status_code == 404, describe(r)
    assert r.content == b"", describe(r)
    return assert_meta(r)


def put_ok(node, key, value=b"", query=""):
    r = node.put(kv(key, query), data=value)
    assert_bool(r, True)


def entry(node, key):
    """The stored entry of `key`, or None.  (Sent with http.client: requests
    would remove "." and ".." path segments, which are literal key text.)"""
    r = node.raw("GET", kv(key))
    if r.status_code == 404:
        return None
    body = assert_json(r)
    assert isinstance(body, list) and len(body) == 1, describe(r)
    assert body[0]["Key"] == key
    return body[0]


def value_of(node, key):
    e = entry(node, key)
    if e is None:
        return None
    return b"" if e["Value"] is None else base64.b64decode(e["Value"])


def store_state(node):
    """(KV index, all keys): any write, even of an unrelated key, moves the
    index, so an unchanged state proves that nothing was written."""
    r = node.get("/v1/kv/?keys")
    keys = assert_json(r)
    return index_of(r), keys


def timed(session, url, timeout):
    t0 = time.monotonic()
    r = session.get(url, timeout=timeout)
    return r, t0, time.monotonic()


# ---- status ----------------------------------------------------------------


def test_status_leader_and_peers(kv_node):
    r = kv_node.get("/v1/status/leader")
    assert assert_json(r) == kv_node.raft_addr
    r = kv_node.get("/v1/status/peers")
    assert assert_json(r) == [kv_node.raft_addr]


# ---- basic reads and writes -------------------------------------------------


def test_fresh_store(node):
    # Root listing of an empty store: 200 [] (not 404), with an index >= 1.
    r = node.get("/v1/kv/?keys")
    assert assert_json(r) == []
    assert_meta(r)
    # Missing key / empty prefixes: 404, empty body, meta headers present.
    assert_404_empty(node.get(kv("nope")))
    assert_404_empty(node.get(kv("nope", "raw")))
    assert_404_empty(node.get("/v1/kv/?recurse"))
    assert_404_empty(node.get(kv("nope/", "recurse")))
    assert_404_empty(node.get(kv("nope/", "keys")))


def test_delete_whole_store(node):
    for k in ("a", "b/c", "d/e/f"):
        put_ok(node, k, b"x")
    before, keys = store_state(node)
    assert keys == ["a", "b/c", "d/e/f"]
    assert_bool(node.delete("/v1/kv/?recurse"), True)
    r = node.get("/v1/kv/?keys")
    assert assert_json(r) == []
    assert index_of(r) > before          # tombstones keep the index moving
    assert_404_empty(node.get("/v1/kv/?recurse"))


def test_put_get_roundtrip(kv_node):
    r = kv_node.put(kv("rt/key"), data=b"hello")
    assert_bool(r, True)
    r = kv_node.get(kv("rt/key"))
    body = assert_json(r)
    idx = assert_meta(r)
    # Field order exactly as Consul emits it; no Session when not locked.
    pairs = json.loads(r.content, object_pairs_hook=lambda p: p)
    assert len(pairs) == 1 and [k for k, _ in pairs[0]] == FIELD_ORDER, \
        describe(r)
    e = body[0]
    assert e == {"LockIndex": 0, "Key": "rt/key", "Flags": 0,
                 "Value": b64("hello"), "CreateIndex": e["CreateIndex"],
                 "ModifyIndex": e["ModifyIndex"]}
    assert e["CreateIndex"] == e["ModifyIndex"] == idx
    # An update keeps CreateIndex and bumps ModifyIndex.
    put_ok(kv_node, "rt/key", b"world")
    e2 = entry(kv_node, "rt/key")
    assert e2["CreateIndex"] == e["CreateIndex"]
    assert e2["ModifyIndex"] > e["ModifyIndex"]
    assert e2["Value"] == b64("world")
    # Delete then re-create: a new CreateIndex.
    assert_bool(kv_node.delete(kv("rt/key")), True)
    assert entry(kv_node, "rt/key") is None
    put_ok(kv_node, "rt/key", b"again")
    e3 = entry(kv_node, "rt/key")
    assert e3["CreateIndex"] == e3["ModifyIndex"] > e2["ModifyIndex"]


@pytest.mark.parametrize("value, encoded", [
    (b"a", "YQ=="), (b"ab", "YWI="), (b"abc", "YWJj"),
    (bytes(range(256)), b64(bytes(range(256)))),
    ("h\u00e9llo \u2603\n".encode(), b64("h\u00e9llo \u2603\n")),
])
def test_value_base64_with_padding(kv_node, value, encoded):
    put_ok(kv_node, "b64/key", value)
    assert entry(kv_node, "b64/key")["Value"] == encoded


def test_empty_value_is_null(kv_node):
    r = kv_node.raw("PUT", kv("empty/nobody"))     # no body, no length
    assert_bool(r, True)
    r = kv_node.raw("PUT", kv("empty/cl0"), body=b"")    # Content-Length: 0
    assert_bool(r, True)
    for k in ("empty/nobody", "empty/cl0"):
        r = kv_node.get(kv(k))
        assert assert_json(r)[0]["Value"] is None
        assert b'"Value":null' in r.content.replace(b" ", b"")
    # Overwriting a value with an empty one nulls it too.
    put_ok(kv_node, "empty/was", b"something")
    put_ok(kv_node, "empty/was", b"")
    assert entry(kv_node, "empty/was")["Value"] is None


@pytest.mark.parametrize("content_type", [
    None, "application/json", "text/plain; charset=utf-8",
    "application/octet-stream", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
])
def test_put_body_stored_verbatim(kv_node, content_type):
    body = b'a=b&c=d {"x": 1}\r\n--xyz\r\n\x00\xff'
    headers = {"Content-Type": content_type} if content_type else {}
    r = kv_node.put(kv("verbatim/k"), data=body, headers=headers)
    assert_bool(r, True)
    assert value_of(kv_node, "verbatim/k") == body


def test_raw_mode(kv_node):
    data = bytes(range(256)) * 4
    put_ok(kv_node, "raw/bin", data)
    r = kv_node.raw("GET", kv("raw/bin", "raw"))
    assert r.status_code == 200, r
    assert r.content == data
    assert ctype(r) == "text/plain", r.headers
    assert r.headers.get("X-Content-Type-Options") == "nosniff"
    assert r.headers.get("Content-Security-Policy") == "sandbox"
    assert r.headers.get("Content-Length") == str(len(data))
    # Empty value: empty body.
    put_ok(kv_node, "raw/empty")
    r = kv_node.raw("GET", kv("raw/empty", "raw"))
    assert r.status_code == 200 and r.content == b"", r
    assert r.headers.get("Content-Length") == "0"
    # Missing key: 404.
    assert kv_node.raw("GET", kv("raw/missing", "raw")).status_code == 404
    # raw is ignored with recurse: a JSON array.
    r = kv_node.get(kv("raw/", "recurse&raw"))
    body = assert_json(r)
    assert [e["Key"] for e in body] == ["raw/bin", "raw/empty"]


def test_no_gzip_unasked(kv_node):
    put_ok(kv_node, "gz/big", b"a" * 65536)
    for path in (kv("gz/big"), kv("gz/big", "raw"), kv("gz/", "recurse")):
        r = kv_node.raw("GET", path)            # no Accept-Encoding header
        assert r.status_code == 200, r
        assert r.headers.get("Content-Encoding") is None, r.headers
    assert_bool(kv_node.delete(kv("gz/big")), True)


# ---- flags -----------------------------------------------------------------


def test_flags(kv_node):
    put_ok(kv_node, "flags/k", b"v", "flags=42")
    assert entry(kv_node, "flags/k")["Flags"] == 42
    # A PUT without flags resets them to 0.
    put_ok(kv_node, "flags/k", b"v2")
    assert entry(kv_node, "flags/k")["Flags"] == 0
    put_ok(kv_node, "flags/k", b"v3", "flags=%d" % UINT64_MAX)
    r = kv_node.get(kv("flags/k"))
    assert assert_json(r)[0]["Flags"] == UINT64_MAX
    assert b'"Flags":%d' % UINT64_MAX in r.content.replace(b" ", b"")
    # Also with recurse.
    assert assert_json(kv_node.get(kv("flags/", "recurse")))[0]["Flags"] \
        == UINT64_MAX


@pytest.mark.parametrize("flags", ["x", "-1", str(2**64), "1.5", "0x10"])
def test_flags_malformed(kv_node, flags):
    put_ok(kv_node, "flagsbad/k", b"orig", "flags=7")
    before = store_state(kv_node)
    r = kv_node.put(kv("flagsbad/k", "flags=" + flags), data=b"new")
    assert_error(r, 400)
    r = kv_node.put(kv("flagsbad/new", "flags=" + flags), data=b"new")
    assert_error(r, 400)
    assert store_state(kv_node) == before
    e = entry(kv_node, "flagsbad/k")
    assert e["Flags"] == 7 and e["Value"] == b64("orig")


# ---- CAS -------------------------------------------------------------------


def test_cas_put(kv_node):
    # cas=0: create only.
    assert_bool(kv_node.put(kv("cas/k", "cas=0"), data=b"first"), True)
    e = entry(kv_node, "cas/k")
    assert e["Value"] == b64("first")
    before = store_state(kv_node)
    assert_bool(kv_node.put(kv("cas/k", "cas=0"), data=b"second"), False)
    # cas=N with the wrong index, with N > 0 on a missing key.
    assert_bool(kv_node.put(kv("cas/k", "cas=%d" % (e["ModifyIndex"] + 1000)),
                            data=b"third"), False)
    assert_bool(kv_node.put(kv("cas/k", "cas=%d" % (e["ModifyIndex"] - 1)),
                            data=b"third"), False)
    assert_bool(kv_node.put(kv("cas/missing", "cas=%d" % e["ModifyIndex"]),
                            data=b"x"), False)
    # Failed CAS writes nothing (no index move: no spurious wake-ups).
    assert store_state(kv_node) == before
    assert entry(kv_node, "cas/k") == e
    # cas=N with the right index.
    assert_bool(kv_node.put(kv("cas/k", "cas=%d" % e["ModifyIndex"]),
                            data=b"fourth", ), True)
    e2 = entry(kv_node, "cas/k")
    assert e2["Value"] == b64("fourth")
    assert e2["ModifyIndex"] > e["ModifyIndex"]
    assert e2["CreateIndex"] == e["CreateIndex"]
    # The old index is stale now.
    assert_bool(kv_node.put(kv("cas/k", "cas=%d" % e["ModifyIndex"]),
                            data=b"fifth"), False)
    assert value_of(kv_node, "cas/k") == b"fourth"
    # cas=0 after a delete: the key is absent again (tombstones don't count).
    assert_bool(kv_node.delete(kv("cas/k")), True)
    assert_bool(kv_node.put(kv("cas/k", "cas=0"), data=b"reborn"), True)
    assert value_of(kv_node, "cas/k") == b"reborn"


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
@pytest.mark.parametrize("cas", ["x", "-1", "1.0", str(2**64)])
def test_cas_malformed(kv_node, method, cas):
    put_ok(kv_node, "casbad/k", b"orig")
    before = store_state(kv_node)
    r = kv_node.request(method, kv("casbad/k", "cas=" + cas), data=b"new")
    assert_error(r, 400)
    assert store_state(kv_node) == before


def test_delete(kv_node):
    put_ok(kv_node, "del/k", b"v")
    assert_bool(kv_node.delete(kv("del/k")), True)
    assert entry(kv_node, "del/k") is None
    # Deleting an absent key is still true.
    assert_bool(kv_node.delete(kv("del/k")), True)
    assert_bool(kv_node.delete(kv("del/never-existed")), True)


def test_delete_cas(kv_node):
    put_ok(kv_node, "delcas/k", b"v")
    e = entry(kv_node, "delcas/k")
    before = store_state(kv_node)
    assert_bool(kv_node.delete(kv("delcas/k", "cas=%d" % (e["ModifyIndex"]
                                                        + 1000))), False)
    assert_bool(kv_node.delete(kv("delcas/k", "cas=0")), False)  # 0 never
    assert store_state(kv_node) == before
    assert entry(kv_node, "delcas/k") == e
    assert_bool(kv_node.delete(kv("delcas/k", "cas=%d" % e["ModifyIndex"])),
                True)
    assert entry(kv_node, "delcas/k") is None


def test_delete_recurse_is_a_string_prefix(kv_node):
    for k in ("dr/a", "dr/a/b", "dr/ab", "dr/a/c/d", "dr/b", "drx", "dr"):
        put_ok(kv_node, k, b"v")
    assert_bool(kv_node.delete(kv("dr/a", "recurse")), True)
    r = kv_node.get(kv("dr", "keys"))
    assert assert_json(r) == ["dr", "dr/b", "drx"]
    # Without recurse only the exact key goes.
    assert_bool(kv_node.delete(kv("dr")), True)
    assert assert_json(kv_node.get(kv("dr", "keys"))) == ["dr/b", "drx"]


# ---- prefixes, sorting, keys, separator --------------------------------------


def test_recurse_sorted_and_string_prefix(kv_node):
    keys = ["ord/b", "ord/a", "ord/a/b", "ord/a-b", "ord/A", "ord/\u00e9",
            "ord/~", "ord/a0", "ord/", "ord/Z", "ord/a b", "ord/\u2603"]
    for i, k in enumerate(reversed(keys)):
        put_ok(kv_node, k, str(i).encode())
    expected = sorted(keys, key=lambda k: k.encode())    # bytewise order
    r = kv_node.get(kv("ord/", "recurse"))
    body = assert_json(r)
    assert [e["Key"] for e in body] == expected
    assert index_of(r) == max(e["ModifyIndex"] for e in body)
    assert assert_json(kv_node.get(kv("ord/", "keys"))) == expected
    # String prefix: "ord/a" matches "ord/a-b", "ord/a0", "ord/a b".
    r = kv_node.get(kv("ord/a", "recurse"))
    assert [e["Key"] for e in assert_json(r)] == \
        [k for k in expected if k.startswith("ord/a")]
    # No matches: 404 with meta headers.
    assert_404_empty(kv_node.get(kv("ord/nothing", "recurse")))


def test_prefix_is_case_sensitive_and_literal(kv_node):
    # A prefix is compared byte for byte: no case folding, and no LIKE/GLOB
    # wildcards (%, _, *, ?, [).
    keys = ["lit/Abc", "lit/abc", "lit/a_c", "lit/aXc", "lit/a%c",
            "lit/a*c", "lit/a?c", "lit/a[b]c", "lit/aBc"]
    for k in keys:
        put_ok(kv_node, k, b"v")

    def listing(prefix):
        return assert_json(kv_node.get(kv(prefix, "keys")))

    assert listing("lit/a") == sorted(k for k in keys if k.startswith("lit/a"))
    assert listing("lit/A") == ["lit/Abc"]
    assert listing("lit/a_") == ["lit/a_c"]
    assert listing("lit/a%") == ["lit/a%c"]
    assert listing("lit/a*") == ["lit/a*c"]
    assert listing("lit/a?") == ["lit/a?c"]
    assert listing("lit/a[") == ["lit/a[b]c"]
    assert_404_empty(kv_node.get(kv("lit/ABC", "recurse")))
    # Delete-tree is literal too.
    assert_bool(kv_node.delete(kv("lit/a_", "recurse")), True)
    assert_bool(kv_node.delete(kv("lit/a%", "recurse")), True)
    assert listing("lit/") == sorted(set(keys) - {"lit/a_c", "lit/a%c"})


def test_keys_and_separator(kv_node):
    for k in ("sep/web/bar", "sep/web/foo", "sep/web/subdir/a",
              "sep/web/subdir/b", "sep/webx", "sep/web/subdir/c/d"):
        put_ok(kv_node, k, b"v")

    def keys(prefix, query):
        return assert_json(kv_node.get(kv(prefix, query)))

    assert keys("sep/web/", "keys") == [
        "sep/web/bar", "sep/web/foo", "sep/web/subdir/a", "sep/web/subdir/b",
        "sep/web/subdir/c/d"]
    assert keys("sep/web/", "keys&separator=/") == [
        "sep/web/bar", "sep/web/foo", "sep/web/subdir/"]
    assert keys("sep/web/", "keys&separator=%2F") == [
        "sep/web/bar", "sep/web/foo", "sep/web/subdir/"]
    # Legacy misspelling.
    assert keys("sep/web/", "keys&seperator=/") == [
        "sep/web/bar", "sep/web/foo", "sep/web/subdir/"]
    # The cut is at the first separator *after the prefix*.
    assert keys("sep/", "keys&separator=/") == ["sep/web/", "sep/webx"]
    assert keys("sep/web", "keys&separator=/") == ["sep/web/", "sep/webx"]
    assert keys("sep/web/su", "keys&separator=/") == ["sep/web/subdir/"]
    assert keys("sep/web/subdir/", "keys&separator=/") == [
        "sep/web/subdir/a", "sep/web/subdir/b", "sep/web/subdir/c/"]
    # Another separator, several bytes long.
    for k in ("sep2/a--1", "sep2/a--2", "sep2/b", "sep2/c-d"):
        put_ok(kv_node, k, b"v")
    assert keys("sep2/", "keys&separator=--") == [
        "sep2/a--", "sep2/b", "sep2/c-d"]
    # keys on an empty non-root prefix: 404.
    assert_404_empty(kv_node.get(kv("sep/none/", "keys&separator=/")))


@pytest.mark.parametrize("flag", ["recurse", "recurse=", "recurse=1",
                                  "recurse=true", "recurse=false"])
def test_recurse_flag_by_presence(kv_node, flag):
    for k in ("pres/a", "pres/b"):
        put_ok(kv_node, k, b"v")
    body = assert_json(kv_node.get(kv("pres/", flag)))
    assert [e["Key"] for e in body] == ["pres/a", "pres/b"]


@pytest.mark.parametrize("flag", ["keys", "keys=", "keys=1", "keys=True",
                                  "keys=true"])
def test_keys_flag_by_presence(kv_node, flag):
    for k in ("presk/a", "presk/b"):
        put_ok(kv_node, k, b"v")
    assert assert_json(kv_node.get(kv("presk/", flag))) == ["presk/a",
                                                           "presk/b"]


@pytest.mark.parametrize("flag", ["raw", "raw=", "raw=1", "raw=true"])
def test_raw_flag_by_presence(kv_node, flag):
    put_ok(kv_node, "presr/a", b"raw value")
    r = kv_node.raw("GET", kv("presr/a", flag))
    assert r.status_code == 200 and r.content == b"raw value", r
    assert ctype(r) == "text/plain"


@pytest.mark.parametrize("flag", ["recurse", "recurse=", "recurse=1",
                                  "recurse=true"])
def test_delete_recurse_flag_by_presence(kv_node, flag):
    for k in ("presd/a", "presd/b"):
        put_ok(kv_node, k, b"v")
    assert_bool(kv_node.delete(kv("presd/", flag)), True)
    assert_404_empty(kv_node.get(kv("presd/", "recurse")))


# ---- X-Consul-Index -------------------------------------------------------


def test_index_headers(kv_node):
    put_ok(kv_node, "idx/p/a", b"1")
    put_ok(kv_node, "idx/p/b", b"2")
    mb = entry(kv_node, "idx/p/b")["ModifyIndex"]
    put_ok(kv_node, "idx/other", b"3")
    mo = entry(kv_node, "idx/other")["ModifyIndex"]
    assert mo > mb
    # Single key: its ModifyIndex.
    r = kv_node.get(kv("idx/p/a"))
    assert assert_meta(r) == assert_json(r)[0]["ModifyIndex"]
    # Prefix (recurse and keys): the highest ModifyIndex under the prefix,
    # not the store's.
    for q in ("recurse", "keys", "keys&separator=/"):
        assert assert_meta(kv_node.get(kv("idx/p/", q))) == mb, q
    # A missing key: the store's index (here: the last write).
    assert assert_meta(kv_node.get(kv("idx/missing"))) == mo
    # A delete under the prefix leaves a tombstone: the prefix index moves.
    assert_bool(kv_node.delete(kv("idx/p/a")), True)
    r = kv_node.get(kv("idx/p/", "recurse"))
    deleted_at = assert_meta(r)
    assert deleted_at > mo
    assert [e["Key"] for e in assert_json(r)] == ["idx/p/b"]
    # Deleting the last key: 404, but the index is the tombstone's.
    assert_bool(kv_node.delete(kv("idx/p/b")), True)
    r = kv_node.get(kv("idx/p/", "recurse"))
    assert assert_404_empty(r) > deleted_at
    r2 = kv_node.get(kv("idx/p/", "keys"))
    assert assert_404_empty(r2) == index_of(r)


# ---- key encoding and grammar ---------------------------------------------


@pytest.mark.parametrize("path, key", [
    ("enc/a%2Fb", "enc/a/b"),
    ("enc/a%2fc", "enc/a/c"),
    ("enc/with%20space", "enc/with space"),
    ("enc/a+b", "enc/a+b"),                 # "+" is literal in a path
    ("enc/pct%25", "enc/pct%"),
    ("enc/q%3Fx", "enc/q?x"),
    ("enc/h%23x", "enc/h#x"),
    ("enc/c%3Ad", "enc/c:d"),
    ("enc/c:e", "enc/c:e"),
    ("enc/amp%26eq%3D", "enc/amp&eq="),
    ("enc/%C3%A9t%C3%A9", "enc/\u00e9t\u00e9"),
    ("enc/%E2%98%83", "enc/\u2603"),
    ("enc/%F0%9F%98%80", "enc/\U0001F600"),
    ("enc/dot/./x", "enc/dot/./x"),          # no path normalisation
    ("enc/dot/../y", "enc/dot/../y"),
    ("enc/trailing/", "enc/trailing/"),
    ("enc/%41%42", "enc/AB"),
])
def test_percent_encoded_keys(kv_node, path, key):
    value = ("value of " + key).encode()
    r = kv_node.raw("PUT", "/v1/kv/" + path, body=value)
    assert_bool(r, True)
    # Readable under its canonical encoding, reported with the decoded name.
    e = entry(kv_node, key)
    assert e is not None, "%s not stored as %r" % (path, key)
    assert base64.b64decode(e["Value"]) == value
    # Readable under the encoding used to write it, too.
    r = kv_node.raw("GET", "/v1/kv/" + path)
    assert r.status_code == 200, r
    assert r.json()[0]["Key"] == key
    assert_bool(kv_node.raw("DELETE", kv(key)), True)
    assert entry(kv_node, key) is None


def test_plus_is_not_space(kv_node):
    put_ok(kv_node, "plus/a+b", b"plus")
    assert value_of(kv_node, "plus/a+b") == b"plus"
    assert kv_node.raw("GET", "/v1/kv/plus/a%2Bb").status_code == 200
    assert_404_empty(kv_node.raw("GET", "/v1/kv/plus/a%20b"))
    assert assert_json(kv_node.get(kv("plus/", "keys"))) == ["plus/a+b"]


BAD_KEYS = [
    ("leading-slash", "/bad"),
    ("leading-slash-encoded", "%2Fbad"),
    ("double-slash", "g/a//b"),
    ("double-slash-encoded", "g/a%2F%2Fb"),
    ("double-slash-mixed", "g/a/%2Fb"),
    ("trailing-double-slash", "g/a//"),
    ("nul", "g/nul%00x"),
    ("lf", "g/lf%0Ax"),
    ("cr", "g/cr%0Dx"),
    ("tab", "g/tab%09x"),
    ("esc", "g/esc%1Bx"),
    ("unit-separator", "g/us%1F"),
    ("del", "g/del%7Fx"),
    ("invalid-byte", "g/bad%FFx"),
    ("lone-continuation", "g/cont%80x"),
    ("truncated-at-end", "g/trunc%C3"),
    ("truncated-before-ascii", "g/trunc%C3x"),
    ("overlong", "g/overlong%C0%AF"),
    ("surrogate", "g/surrogate%ED%A0%80"),
    ("above-u10ffff", "g/big%F4%90%80%80"),
    ("too-long", "k" * (MAX_KEY + 1)),
    ("too-long-multibyte", "%C3%A9" * (MAX_KEY // 2) + "x"),
]


@pytest.mark.parametrize("path", [p for _, p in BAD_KEYS],
                         ids=[n for n, _ in BAD_KEYS])
def test_key_grammar_violation(kv_node, path):
    before = store_state(kv_node)
    for method, body in (("PUT", b"value"), ("GET", None), ("DELETE", None)):
        r = kv_node.raw(method, "/v1/kv/" + path, body=body)
        assert_error(r, 400)
    # With CAS and flags too: validation comes first.
    r = kv_node.raw("PUT", "/v1/kv/" + path + "?cas=0&flags=1", body=b"v")
    assert_error(r, 400)
    assert store_state(kv_node) == before


def test_key_grammar_violation_in_prefix(kv_node):
    before = store_state(kv_node)
    for path in ("g/a//?recurse", "g/a%00?keys", "%2Fg?recurse",
                 "g/%FF?keys"):
        assert_error(kv_node.raw("GET", "/v1/kv/" + path), 400)
    assert_error(kv_node.raw("DELETE", "/v1/kv/g//?recurse"), 400)
    assert store_state(kv_node) == before


def test_key_length_limit(kv_node):
    for stem in ("L", "L/\u00e9", "M/\u2603", "N/\U0001F600"):
        chars = stem[-1] * ((MAX_KEY - len(stem[:-1].encode()))
                            // len(stem[-1].encode()))
        key = stem[:-1] + chars
        key += "x" * (MAX_KEY - len(key.encode()))
        assert len(key.encode()) == MAX_KEY
        put_ok(kv_node, key, b"long")
        assert value_of(kv_node, key) == b"long"
        assert_bool(kv_node.delete(kv(key)), True)


def test_empty_key(kv_node):
    put_ok(kv_node, "ek/a", b"v")
    before = store_state(kv_node)
    assert_error(kv_node.put("/v1/kv/", data=b"v"), 400, "Missing key name")
    assert_error(kv_node.get("/v1/kv/"), 400, "Missing key name")
    assert_error(kv_node.delete("/v1/kv/"), 400, "Missing key name")
    assert_error(kv_node.put("/v1/kv/?cas=0", data=b"v"), 400,
                 "Missing key name")
    assert_error(kv_node.put("/v1/kv/?flags=3", data=b"v"), 400,
                 "Missing key name")
    assert_error(kv_node.delete("/v1/kv/?cas=1"), 400, "Missing key name")
    assert store_state(kv_node) == before
    # The empty prefix is fine for listing.
    assert "ek/a" in assert_json(kv_node.get("/v1/kv/?keys"))
    assert "ek/a" in [e["Key"] for e in
                      assert_json(kv_node.get("/v1/kv/?recurse"))]


# ---- size limits ----------------------------------------------------------


def test_value_size_limit(kv_node):
    exact = bytes((i * 7) & 0xFF for i in range(MAX_VALUE))
    r = kv_node.put(kv("big/exact"), data=exact, timeout=30)
    assert_bool(r, True)
    assert value_of(kv_node, "big/exact") == exact
    r = kv_node.raw("GET", kv("big/exact", "raw"))
    assert r.status_code == 200 and r.content == exact
    assert_bool(kv_node.delete(kv("big/exact")), True)

    before = store_state(kv_node)
    over = exact + b"!"
    r = kv_node.raw("PUT", kv("big/over"), body=over, timeout=30)
    assert_error(r, 413, prefix="Request body(%d bytes) too large, max size: "
                 "%d bytes." % (MAX_VALUE + 1, MAX_VALUE))
    r = kv_node.raw("PUT", kv("big/over2"), body=b"x" * (2 * MAX_VALUE),
                    timeout=30)
    assert_error(r, 413, prefix="Request body(%d bytes) too large, max size: "
                 "%d bytes." % (2 * MAX_VALUE, MAX_VALUE))
    assert store_state(kv_node) == before
    # The server is still fine.
    put_ok(kv_node, "big/after", b"ok")


# ---- routing and parameters -----------------------------------------------


def test_unknown_path(kv_node):
    r = kv_node.get("/v1/nonexistent")
    assert_error(r, 404, "Invalid URL path: not a recognized HTTP API "
                 "endpoint")
    for path in ("/v1/kvx/a", "/v1/status/nonexistent", "/v1/", "/v1/kv2"):
        assert kv_node.get(path).status_code == 404, path
    assert kv_node.put("/v1/nonexistent", data=b"x").status_code == 404


@pytest.mark.parametrize("method, path", [
    ("POST", "/v1/kv/wm/x"),
    ("PATCH", "/v1/kv/wm/x"),
    ("POST", "/v1/kv/?recurse"),
    ("GET", "/v1/txn"),
    ("DELETE", "/v1/txn"),
    ("PUT", "/v1/status/leader"),
    ("POST", "/v1/status/peers"),
])
def test_wrong_method(kv_node, method, path):
    before = store_state(kv_node)
    r = kv_node.request(method, path, data=b"[]" if method != "GET" else None)
    assert_error(r, 405, "method %s not allowed" % method)
    allow = r.headers.get("Allow")
    assert allow, describe(r)
    allowed = {m.strip() for m in allow.split(",")}
    assert method not in allowed
    if path.startswith("/v1/kv/"):
        assert {"GET", "PUT", "DELETE"} <= allowed, allow
    assert store_state(kv_node) == before


@pytest.mark.parametrize("query, reason", [
    ("index=abc", "Invalid index"),
    ("index=-1", "Invalid index"),
    ("index=1.5", "Invalid index"),
    ("index=%d" % 2**64, "Invalid index"),
    ("index=1&wait=30", "Invalid wait time"),
    ("index=1&wait=abc", "Invalid wait time"),
    ("index=1&wait=1x", "Invalid wait time"),
    ("wait=30", "Invalid wait time"),
    ("stale&consistent",
     "Cannot specify ?stale with ?consistent, conflicting semantics."),
])
@pytest.mark.parametrize("mode", ["", "recurse&", "keys&"])
def test_malformed_read_params(kv_node, query, reason, mode):
    put_ok(kv_node, "mp/k", b"v")
    r = kv_node.get(kv("mp/k", mode + query), timeout=5)
    assert_error(r, 400, reason)


def test_consistency_modes(kv_node):
    put_ok(kv_node, "cons/k", b"v")
    for q in ("stale", "stale=1", "consistent", "consistent=1", "leader"):
        r = kv_node.get(kv("cons/k", q))
        assert assert_json(r)[0]["Value"] == b64("v"), q
        assert_meta(r)


def test_unknown_session_changes_nothing(kv_node):
    """acquire with a session that does not exist: 500 `invalid session`
    (Consul's answer); release by a session that holds nothing: false.
    Neither changes anything."""
    sid = "8f246b77-f3e1-4f88-9b48-8ec93abf3e05"
    put_ok(kv_node, "sess/existing", b"orig")
    before = store_state(kv_node)
    r = kv_node.put(kv("sess/existing", "acquire=" + sid), data=b"new")
    assert_error(r, 500)
    assert "invalid session" in r.text
    r = kv_node.put(kv("sess/new", "acquire=" + sid), data=b"new")
    assert_error(r, 500)
    r = kv_node.put(kv("sess/existing", "release=" + sid), data=b"new")
    assert r.status_code == 200 and r.json() is False
    r = kv_node.put(kv("sess/existing", "acquire=not-a-session"), data=b"x")
    assert_error(r, 400)
    assert store_state(kv_node) == before
    assert value_of(kv_node, "sess/existing") == b"orig"


@pytest.mark.parametrize("method, query", [
    ("PUT", "cas=0&acquire=8f246b77-f3e1-ff88-5b48-8ec93abf3e05"),
    ("PUT", "cas=5&release=8f246b77-f3e1-ff88-5b48-8ec93abf3e05"),
    ("PUT", "acquire=8f246b77-f3e1-ff88-5b48-8ec93abf3e05"
            "&release=8f246b77-f3e1-ff88-5b48-8ec93abf3e05"),
    ("DELETE", "recurse&cas=5"),
])
def test_conflicting_flags(kv_node, method, query):
    put_ok(kv_node, "conf/k", b"orig")
    before = store_state(kv_node)
    r = kv_node.request(method, kv("conf/k", query), data=b"new")
    assert_error(r, 400, prefix="Conflicting flags")
    assert store_state(kv_node) == before


# ---- blocking queries -------------------------------------------------------


def test_blocking_wakes_on_write(kv_node):
    put_ok(kv_node, "bw/k", b"v1")
    m = entry(kv_node, "bw/k")["ModifyIndex"]
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(timed, kv_node.new_session(),
                          kv_node.url + kv("bw/k", "index=%d&wait=10s" % m),
                          20)
        time.sleep(0.3)
        assert not fut.done(), "returned without a change: %r" % (
            fut.result()[0].content,)
        t_write = time.monotonic()
        put_ok(kv_node, "bw/k", b"v2")
        r, t0, t1 = fut.result(timeout=20)
    body = assert_json(r)
    assert body[0]["Value"] == b64("v2")
    assert assert_meta(r) == body[0]["ModifyIndex"] > m
    assert t1 >= t_write
    assert t1 - t_write < 2.0, "woke %.2f s after the write" % (t1 - t_write)
    assert t1 - t0 < 5.0


def test_blocking_times_out(kv_node):
    put_ok(kv_node, "bt/k", b"v")
    r0 = kv_node.get(kv("bt/k"))
    m = index_of(r0)
    missing = kv_node.get(kv("bt/missing"))
    mm = index_of(missing)
    pr = kv_node.get(kv("bt/", "keys"))
    pm = index_of(pr)
    urls = [kv("bt/k", "index=%d&wait=1s" % m),
            kv("bt/missing", "index=%d&wait=1s" % mm),
            kv("bt/", "keys&index=%d&wait=1s" % pm),
            kv("bt/", "recurse&index=%d&wait=1000ms" % pm)]
    with ThreadPoolExecutor(len(urls)) as pool:
        futs = [pool.submit(timed, kv_node.new_session(), kv_node.url + u, 10)
                for u in urls]
        results = [f.result(timeout=15) for f in futs]
    for u, (r, t0, t1) in zip(urls, results):
        elapsed = t1 - t0
        # wait plus jitter in [0, wait/16), plus slack for scheduling; the
        # lower bound allows for a loop clock read a few ms before arrival.
        assert 0.98 <= elapsed <= 1.0 + 1.0 / 16 + JITTER_SLACK, \
            "%s returned after %.3f s" % (u, elapsed)
    (r1, _, _), (r2, _, _), (r3, _, _), (r4, _, _) = results
    assert r1.status_code == 200 and r1.content == r0.content
    assert index_of(r1) == m
    assert_404_empty(r2)
    assert index_of(r2) == mm
    assert r3.status_code == 200 and r3.content == pr.content
    assert index_of(r3) == pm
    assert assert_json(r4)[0]["Key"] == "bt/k" and index_of(r4) == pm


def test_blocking_ignores_unrelated_writes(kv_node):
    put_ok(kv_node, "bu/watched", b"v")
    put_ok(kv_node, "bu/pfx/a", b"v")
    m1 = index_of(kv_node.get(kv("bu/watched")))
    m2 = index_of(kv_node.get(kv("bu/pfx/", "recurse")))
    urls = [kv("bu/watched", "index=%d&wait=1s" % m1),
            kv("bu/pfx/", "recurse&index=%d&wait=1s" % m2),
            kv("bu/pfx/", "keys&index=%d&wait=1s" % m2)]
    with ThreadPoolExecutor(len(urls)) as pool:
        futs = [pool.submit(timed, kv_node.new_session(), kv_node.url + u, 10)
                for u in urls]
        time.sleep(0.2)
        # Neighbours by name: a longer key, a sibling prefix, other trees.
        for k in ("bu/watched2", "bu/watche", "bu/pfx-x", "bu/pfx", "bu/other",
                  "other/key"):
            put_ok(kv_node, k, b"noise")
        assert_bool(kv_node.delete(kv("bu/other")), True)
        assert_bool(kv_node.delete(kv("bu/pfx-", "recurse")), True)
        results = [f.result(timeout=15) for f in futs]
    for u, expected, (r, t0, t1) in zip(urls, (m1, m2, m2), results):
        assert r.status_code == 200, describe(r)
        assert index_of(r) == expected, u
        assert t1 - t0 >= 0.98, "%s woke after %.3f s" % (u, t1 - t0)


def test_blocking_prefix_woken_by_delete(kv_node):
    for k in ("bd/p/a", "bd/p/b", "bd/p/c/d"):
        put_ok(kv_node, k, b"v")
    i = index_of(kv_node.get(kv("bd/p/", "recurse")))
    session = kv_node.new_session()
    with ThreadPoolExecutor(2) as pool:
        # Plain delete of one key under the prefix.
        fut = pool.submit(timed, session, kv_node.url +
                          kv("bd/p/", "recurse&index=%d&wait=10s" % i), 20)
        fut_keys = pool.submit(timed, kv_node.new_session(), kv_node.url +
                               kv("bd/p/", "keys&index=%d&wait=10s" % i), 20)
        time.sleep(0.3)
        t_write = time.monotonic()
        assert_bool(kv_node.delete(kv("bd/p/a")), True)
        r, _, t1 = fut.result(timeout=20)
        rk, _, tk = fut_keys.result(timeout=20)
        assert max(t1, tk) - t_write < 2.0
        assert [e["Key"] for e in assert_json(r)] == ["bd/p/b", "bd/p/c/d"]
        assert assert_json(rk) == ["bd/p/b", "bd/p/c/d"]
        i2 = index_of(r)
        assert i2 > i and index_of(rk) == i2
        # Recursive delete of a sub-tree.
        fut = pool.submit(timed, session, kv_node.url +
                          kv("bd/p/", "recurse&index=%d&wait=10s" % i2), 20)
        time.sleep(0.3)
        t_write = time.monotonic()
        assert_bool(kv_node.delete(kv("bd/p/c/", "recurse")), True)
        r, _, t1 = fut.result(timeout=20)
        assert t1 - t_write < 2.0
        assert [e["Key"] for e in assert_json(r)] == ["bd/p/b"]
        i3 = index_of(r)
        assert i3 > i2
        # Deleting the last key: 404 with a higher index (tombstone).
        fut = pool.submit(timed, session, kv_node.url +
                          kv("bd/p/", "recurse&index=%d&wait=10s" % i3), 20)
        time.sleep(0.3)
        t_write = time.monotonic()
        assert_bool(kv_node.delete(kv("bd/p/b")), True)
        r, _, t1 = fut.result(timeout=20)
        assert t1 - t_write < 2.0
        assert assert_404_empty(r) > i3


def test_blocking_single_key_create_and_delete(kv_node):
    session = kv_node.new_session()
    with ThreadPoolExecutor(1) as pool:
        # Waiting on a missing key: woken by its creation.
        idx = assert_404_empty(kv_node.get(kv("bk/k")))
        fut = pool.submit(timed, session, kv_node.url +
                          kv("bk/k", "index=%d&wait=10s" % idx), 20)
        time.sleep(0.3)
        assert not fut.done()
        t_write = time.monotonic()
        put_ok(kv_node, "bk/k", b"created")
        r, _, t1 = fut.result(timeout=20)
        assert t1 - t_write < 2.0
        body = assert_json(r)
        assert body[0]["Value"] == b64("created")
        m = index_of(r)
        assert m == body[0]["ModifyIndex"] > idx
        # Waiting on an existing key: woken by its deletion, 404.
        fut = pool.submit(timed, session, kv_node.url +
                          kv("bk/k", "index=%d&wait=10s" % m), 20)
        time.sleep(0.3)
        assert not fut.done()
        t_write = time.monotonic()
        assert_bool(kv_node.delete(kv("bk/k")), True)
        r, _, t1 = fut.result(timeout=20)
        assert t1 - t_write < 2.0
        assert assert_404_empty(r) > m


def test_blocking_not_when_index_zero_or_absent(kv_node):
    put_ok(kv_node, "bz/k", b"v")
    for q in ("index=0&wait=10s", "wait=10s", "index=0"):
        t0 = time.monotonic()
        r = kv_node.get(kv("bz/k", q), timeout=15)
        assert time.monotonic() - t0 < 1.0, q
        assert assert_json(r)[0]["Value"] == b64("v")
    # An index older than the key's: answers at once.
    m = index_of(kv_node.get(kv("bz/k")))
    t0 = time.monotonic()
    r = kv_node.get(kv("bz/k", "index=%d&wait=10s" % (m - 1)), timeout=15)
    assert time.monotonic() - t0 < 1.0
    assert index_of(r) == m


@pytest.mark.parametrize("wait, seconds", [
    ("300ms", 0.3), ("0.3s", 0.3), ("300000us", 0.3), ("1m30s", None),
    ("1h", None), ("11m", None),
])
def test_blocking_wait_durations(kv_node, wait, seconds):
    """Go durations; waits above 10m are capped, not rejected."""
    put_ok(kv_node, "bdur/k", b"v")
    m = index_of(kv_node.get(kv("bdur/k")))
    if seconds is not None:
        r, t0, t1 = timed(kv_node.http, kv_node.url +
                          kv("bdur/k", "index=%d&wait=%s" % (m, wait)), 10)
        assert r.status_code == 200 and index_of(r) == m
        assert seconds - 0.02 <= t1 - t0 <= seconds * 17 / 16 + JITTER_SLACK
        return
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(timed, kv_node.new_session(), kv_node.url +
                          kv("bdur/k", "index=%d&wait=%s" % (m, wait)), 20)
        time.sleep(0.3)
        assert not fut.done(), describe(fut.result()[0])
        put_ok(kv_node, "bdur/k", b"w")
        r, _, _ = fut.result(timeout=20)
    assert r.status_code == 200 and index_of(r) > m


def test_blocking_index_ahead_of_store(kv_node):
    put_ok(kv_node, "bah/k", b"v")
    m = index_of(kv_node.get(kv("bah/k")))
    r, t0, t1 = timed(kv_node.http, kv_node.url +
                      kv("bah/k", "index=%d&wait=400ms" % (m + 100000)), 10)
    assert 0.38 <= t1 - t0 <= 0.4 * 17 / 16 + JITTER_SLACK
    assert r.status_code == 200 and index_of(r) == m


def test_blocking_many_pollers(kv_node):
    """64 idle long-polls do not stall the server, and one write wakes all."""
    n = 64
    put_ok(kv_node, "bm/k", b"v")
    m = index_of(kv_node.get(kv("bm/k")))
    url = kv_node.url + kv("bm/k", "index=%d&wait=10s" % m)
    with ThreadPoolExecutor(n) as pool:
        futs = [pool.submit(timed, kv_node.new_session(), url, 20)
                for _ in range(n)]
        time.sleep(0.5)
        assert not any(f.done() for f in futs)
        # Other requests are served while the polls wait.
        t0 = time.monotonic()
        put_ok(kv_node, "bm/other", b"x")
        assert value_of(kv_node, "bm/other") == b"x"
        assert time.monotonic() - t0 < 1.0
        assert not any(f.done() for f in futs)
        t_write = time.monotonic()
        put_ok(kv_node, "bm/k", b"w")
        results = [f.result(timeout=20) for f in futs]
    for r, _, t1 in results:
        assert assert_json(r)[0]["Value"] == b64("w")
        assert index_of(r) > m
        assert t1 - t_write < 3.0


# ---- transactions ----------------------------------------------------------


def txn(node, ops, **kw):
    return node.put("/v1/txn", data=json.dumps(ops),
                    headers={"Content-Type": "application/json"}, **kw)


def op(verb, key, value=None, **fields):
    body = {"Verb": verb, "Key": key}
    if value is not None:
        body["Value"] = b64(value)
    body.update(fields)
    return {"KV": body}


def test_txn_commit_all_verbs(kv_node):
    put_ok(kv_node, "tx/a", b"1")
    put_ok(kv_node, "tx/b", b"2")
    put_ok(kv_node, "tx/tree/x", b"x")
    put_ok(kv_node, "tx/tree/y", b"y", "flags=3")
    put_ok(kv_node, "tx/del", b"d")
    put_ok(kv_node, "tx/dcas", b"c")
    a, b = entry(kv_node, "tx/a"), entry(kv_node, "tx/b")
    tx, ty = entry(kv_node, "tx/tree/x"), entry(kv_node, "tx/tree/y")
    dcas = entry(kv_node, "tx/dcas")
    ops = [
        op("set", "tx/new", b"n", Flags=7),
        op("cas", "tx/a", b"a2", Index=a["ModifyIndex"]),
        op("get", "tx/b"),
        op("get-tree", "tx/tree/"),
        op("check-index", "tx/b", Index=b["ModifyIndex"]),
        op("check-not-exists", "tx/missing"),
        op("delete", "tx/del"),
        op("delete-tree", "tx/tree/"),
        op("delete-cas", "tx/dcas", Index=dcas["ModifyIndex"]),
    ]
    r = txn(kv_node, ops)
    body = assert_json(r)
    assert set(body) == {"Results", "Errors"}, body
    assert body["Errors"] is None
    results = body["Results"]
    assert isinstance(results, list) and len(results) == 6, results
    t = results[0]["KV"]["ModifyIndex"]
    assert t > dcas["ModifyIndex"]

    def de(key, flags, value, create, modify):
        return {"KV": {"LockIndex": 0, "Key": key, "Flags": flags,
                       "Value": value, "CreateIndex": create,
                       "ModifyIndex": modify}}

    assert results == [
        de("tx/new", 7, None, t, t),                                # set
        de("tx/a", 0, None, a["CreateIndex"], t),                   # cas
        de("tx/b", 0, b64("2"), b["CreateIndex"], b["ModifyIndex"]),  # get
        de("tx/tree/x", 0, b64("x"), tx["CreateIndex"], tx["ModifyIndex"]),
        de("tx/tree/y", 3, b64("y"), ty["CreateIndex"], ty["ModifyIndex"]),
        de("tx/b", 0, None, b["CreateIndex"], b["ModifyIndex"]),  # check-index
    ]
    # The whole transaction is one write at one index.
    r = kv_node.get(kv("tx/", "recurse"))
    assert [e["Key"] for e in assert_json(r)] == ["tx/a", "tx/b", "tx/new"]
    assert index_of(r) == t
    assert value_of(kv_node, "tx/a") == b"a2"
    assert entry(kv_node, "tx/a")["ModifyIndex"] == t
    assert entry(kv_node, "tx/new")["Flags"] == 7
    assert entry(kv_node, "tx/b") == b


ROLLBACK_CASES = {
    "cas-stale": lambda c: op("cas", "rb/c", b"z", Index=c + 1000),
    "cas-create-existing": lambda c: op("cas", "rb/c", b"z", Index=0),
    "get-missing": lambda c: op("get", "rb/missing"),
    "check-index": lambda c: op("check-index", "rb/c", Index=c + 1000),
    "check-index-missing": lambda c: op("check-index", "rb/missing", Index=c),
    "check-not-exists": lambda c: op("check-not-exists", "rb/c"),
    "delete-cas-stale": lambda c: op("delete-cas", "rb/c", Index=c + 1000),
}


@pytest.mark.parametrize("case", sorted(ROLLBACK_CASES))
def test_txn_rollback(kv_node, case):
    put_ok(kv_node, "rb/a", b"a")
    put_ok(kv_node, "rb/c", b"c")
    c = entry(kv_node, "rb/c")["ModifyIndex"]
    before = store_state(kv_node)
    a_before, c_before = entry(kv_node, "rb/a"), entry(kv_node, "rb/c")
    ops = [op("set", "rb/new", b"n"),
           op("delete", "rb/a"),
           ROLLBACK_CASES[case](c),
           op("set", "rb/c", b"overwritten"),
           op("delete-tree", "rb/")]
    r = txn(kv_node, ops)
    body = assert_json(r, 409)
    assert set(body) == {"Results", "Errors"}, body
    assert body["Results"] is None
    errors = body["Errors"]
    assert isinstance(errors, list) and len(errors) == 1, errors
    assert set(errors[0]) == {"OpIndex", "What"}, errors
    assert errors[0]["OpIndex"] == 2
    assert isinstance(errors[0]["What"], str) and errors[0]["What"]
    # All or nothing.
    assert store_state(kv_node) == before
    assert entry(kv_node, "rb/a") == a_before
    assert entry(kv_node, "rb/c") == c_before
    assert entry(kv_node, "rb/new") is None


def test_txn_op_limit(kv_node):
    ops = [op("set", "tl/%03d" % i, b"v%d" % i) for i in range(128)]
    r = txn(kv_node, ops)
    body = assert_json(r)
    assert body["Errors"] is None and len(body["Results"]) == 128
    assert [x["KV"]["Key"] for x in body["Results"]] == \
        ["tl/%03d" % i for i in range(128)]
    assert len({x["KV"]["ModifyIndex"] for x in body["Results"]}) == 1

    before = store_state(kv_node)
    ops = [op("set", "tl2/%03d" % i, b"v") for i in range(129)]
    r = txn(kv_node, ops)
    assert_error(r, 413, "Transaction contains too many operations "
                 "(129 > 128)")
    assert store_state(kv_node) == before


@pytest.mark.parametrize("body", [
    b"not json", b"[{", b'{"KV": 1}', b'[{"KV": {"Verb": "set", "Key": '
    b'"tb/k", "Value": "not base64!!"}}]', b"[1, 2]",
])
def test_txn_bad_body(kv_node, body):
    before = store_state(kv_node)
    r = kv_node.put("/v1/txn", data=body,
                    headers={"Content-Type": "application/json"})
    assert_error(r, 400, prefix="Failed to parse body")
    assert store_state(kv_node) == before


def test_txn_field_names_case_insensitive(kv_node):
    ops = [{"kv": {"verb": "set", "key": "tci/k", "value": b64("v"),
                   "flags": 9}},
           {"KV": {"VERB": "get", "KEY": "tci/k"}}]
    body = assert_json(txn(kv_node, ops))
    assert body["Errors"] is None
    assert body["Results"][1]["KV"]["Value"] == b64("v")
    assert entry(kv_node, "tci/k")["Flags"] == 9


def test_txn_key_grammar(kv_node):
    before = store_state(kv_node)
    for key in ("/lead", "a//b", "nl\nx", "k" * (MAX_KEY + 1)):
        r = txn(kv_node, [op("set", "tg/ok", b"v"), op("set", key, b"v")])
        assert r.status_code in (400, 409), describe(r)
        assert "Location" not in r.headers
    assert store_state(kv_node) == before

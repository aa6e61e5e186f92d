"""The `beacon` CLI (issue #6) against real beacond servers: every command,
its output and exit codes (0 ok, 1 not found / CAS failed / refused, 2
usage or no server), `kv edit` with a scripted $EDITOR (conflict included),
`watch` firing exactly once per change, `exec` restarting its child on a
change, export -> wipe -> import in Consul's JSON format, the token and TLS
flags (against small local stand-in servers), and failover between the
addresses given.

Spec: CONSUL-API.md §1, §9 and issue #6.

Run with Debian's interpreter:
    BEACOND=$PWD/build/san/beacond /usr/bin/python3 -m pytest -q \
        -p no:cacheprovider tests/cluster/test_cli.py
The CLI is $BEACON_CLI, by default build/san/beacon.
"""

import base64
import http.server
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.register_assert_rewrite("cluster_util")
from cluster_util import (ClusterFactory, free_loopback_ports,  # noqa: E402
                          kv_path, wait_until)

pytest_plugins = ["cluster_util"]

REPO = Path(__file__).resolve().parents[2]
CLI = Path(os.environ.get("BEACON_CLI",
                          str(REPO / "build" / "san" / "beacon"))).resolve()
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:")
GRACE = 1.5        # s: how long "nothing more happens" is watched for


def clean_env(**extra):
    """The environment of a CLI run: no BEACON_/CONSUL_ variables of ours,
    no proxies, plus @extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BEACON_", "CONSUL_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    env.update(extra)
    return env


def check_sanitizers(text):
    for m in SANITIZER_MARKERS:
        assert m not in text, "sanitizer report:\n" + text[-5000:]


class Run:
    def __init__(self, p):
        self.rc = p.returncode
        self.out = p.stdout.decode("utf-8", "replace")
        self.err = p.stderr.decode("utf-8", "replace")
        self.raw = p.stdout

    def __repr__(self):
        return "<rc=%d out=%r err=%r>" % (self.rc, self.out[:300],
                                          self.err[:300])


def run(*args, addrs=None, env=None, input=None, timeout=60):
    """beacon ARGS with --http-addr @addrs (if given) first."""
    assert CLI.is_file(), "build the CLI first: make build/san/beacon"
    cmd = [str(CLI)]
    if addrs is not None:
        cmd += ["-http-addr", addrs]
    cmd += [str(a) for a in args]
    p = subprocess.run(cmd, input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env or clean_env(),
                       timeout=timeout)
    r = Run(p)
    check_sanitizers(r.err)
    return r


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One 3-server cluster for the module (tests keep to their own key
    prefixes); torn down, exit statuses and logs checked, at the end."""
    factory = ClusterFactory(tmp_path_factory.mktemp("cli"))
    try:
        yield factory(3)
    finally:
        factory.teardown()


@pytest.fixture
def addrs(cluster):
    cluster.wait_ready()
    return ",".join(s.http_addr for s in cluster.servers if s.running())


def kv_value(srv, key):
    r = srv.get(kv_path(key))
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r
    v = r.json()[0]["Value"]
    return b"" if v is None else base64.b64decode(v)


def kv_entry(srv, key):
    r = srv.get(kv_path(key))
    assert r.status_code == 200, r
    return r.json()[0]


def put(srv, key, data, **params):
    r = srv.put(kv_path(key), data=data, params=params)
    assert r.status_code == 200 and r.content == b"true", r


# ---- usage, help, addresses ------------------------------------------------


def test_usage_and_help():
    r = run()
    assert r.rc == 2 and "Usage: beacon" in r.err
    for args in (["-h"], ["help"], ["--help"]):
        r = run(*args)
        assert r.rc == 0 and "kv get" in r.out and "watch" in r.out, r
    r = run("help", "kv", "get")
    assert r.rc == 0 and "Usage: beacon kv get" in r.out
    assert "-recurse" in r.out and "-http-addr" in r.out
    r = run("kv", "put", "-h")
    assert r.rc == 0 and "-modify-index" in r.out
    r = run("kv")
    assert r.rc == 2 and "kv get" in r.err and "watch" not in r.err
    r = run("operator", "raft")
    assert r.rc == 2 and "list-peers" in r.err
    r = run("nope")
    assert r.rc == 2 and "Unknown command: nope" in r.err
    r = run("version")
    assert r.rc == 0 and r.out.startswith("Beacon v")
    # Flag errors are usage errors, with Go's messages.
    r = run("kv", "get", "-nope", "k")
    assert r.rc == 2 and "flag provided but not defined: -nope" in r.err
    r = run("kv", "get", "-format=xml", "k")
    assert r.rc == 2 and "-format" in r.err
    r = run("kv", "get")
    assert r.rc == 2 and "Missing KEY argument" in r.err
    r = run("kv", "get", "a", "b")
    assert r.rc == 2 and "Too many arguments" in r.err
    r = run("-http-addr", "ftp://x:1", "kv", "get", "k")
    assert r.rc == 2 and "scheme" in r.err


def test_no_server_is_exit_2():
    dead = "127.0.0.1:%d" % free_loopback_ports(1)[0]
    r = run("kv", "get", "k", addrs=dead)
    assert r.rc == 2, r
    assert "no server answered" in r.err and dead in r.err
    r = run("kv", "put", "k", "v", addrs=dead)
    assert r.rc == 2, r
    r = run("members", addrs=dead)
    assert r.rc == 2, r


def test_addresses_fail_over_and_come_from_the_environment(cluster, addrs):
    srv = cluster.servers[0]
    put(srv, "cli/addr/k", b"v")
    dead = "127.0.0.1:%d" % free_loopback_ports(1)[0]
    # A dead address first: the next one answers.
    r = run("kv", "get", "cli/addr/k", addrs="%s,%s" % (dead, srv.http_addr))
    assert r.rc == 0 and r.out == "v\n", r
    # HTTP options before the command work too.
    r = run("-http-addr", srv.http_addr, "kv", "get", "cli/addr/k")
    assert r.rc == 0 and r.out == "v\n", r
    # BEACON_HTTP_ADDR, then CONSUL_HTTP_ADDR.
    r = run("kv", "get", "cli/addr/k",
            env=clean_env(BEACON_HTTP_ADDR="http://" + srv.http_addr,
                          CONSUL_HTTP_ADDR=dead))
    assert r.rc == 0 and r.out == "v\n", r
    r = run("kv", "get", "cli/addr/k",
            env=clean_env(CONSUL_HTTP_ADDR=srv.http_addr))
    assert r.rc == 0 and r.out == "v\n", r
    # The flag beats the environment.
    r = run("kv", "get", "cli/addr/k", addrs=srv.http_addr,
            env=clean_env(BEACON_HTTP_ADDR=dead))
    assert r.rc == 0, r


# ---- kv get / put / delete ---------------------------------------------------


def test_kv_put_and_get(cluster, addrs, tmp_path):
    srv = cluster.servers[1]
    r = run("kv", "put", "cli/pg/a", "hello world", addrs=addrs)
    assert r.rc == 0 and r.out == "Success! Data written to: cli/pg/a\n", r
    assert kv_value(srv, "cli/pg/a") == b"hello world"
    r = run("kv", "get", "cli/pg/a", addrs=addrs)
    assert r.rc == 0 and r.out == "hello world\n"
    # @file, stdin, and no DATA (an empty value).
    f = tmp_path / "v.bin"
    f.write_bytes(b"from\x00file\n")
    assert run("kv", "put", "cli/pg/file", "@%s" % f, addrs=addrs).rc == 0
    assert kv_value(srv, "cli/pg/file") == b"from\x00file\n"
    assert run("kv", "put", "cli/pg/stdin", "-", addrs=addrs,
               input=b"piped\n").rc == 0
    assert kv_value(srv, "cli/pg/stdin") == b"piped\n"
    assert run("kv", "put", "cli/pg/empty", addrs=addrs).rc == 0
    assert kv_value(srv, "cli/pg/empty") == b""
    r = run("kv", "get", "cli/pg/empty", addrs=addrs)
    assert r.rc == 0 and r.out == ""
    r = run("kv", "get", "cli/pg/file", addrs=addrs)
    assert r.raw == b"from\x00file\n\n"
    # -base64 both ways.
    r = run("kv", "put", "-base64", "cli/pg/b64",
            base64.b64encode(b"\xff\x00bin").decode(), addrs=addrs)
    assert r.rc == 0 and kv_value(srv, "cli/pg/b64") == b"\xff\x00bin"
    r = run("kv", "get", "-base64", "cli/pg/b64", addrs=addrs)
    assert r.out == base64.b64encode(b"\xff\x00bin").decode() + "\n"
    r = run("kv", "put", "-base64", "cli/pg/bad", "!!!", addrs=addrs)
    assert r.rc == 1 and "base 64" in r.err
    # -flags.
    assert run("kv", "put", "-flags=42", "cli/pg/f", "x", addrs=addrs).rc == 0
    assert kv_entry(srv, "cli/pg/f")["Flags"] == 42
    # Missing key: exit 1, Consul's message.
    r = run("kv", "get", "cli/pg/missing", addrs=addrs)
    assert r.rc == 1 and r.out == ""
    assert r.err == "Error! No key exists at: cli/pg/missing\n"
    # -detailed: Consul's layout.
    e = kv_entry(srv, "cli/pg/f")
    r = run("kv", "get", "-detailed", "cli/pg/f", addrs=addrs)
    assert r.rc == 0
    assert r.out == (
        "CreateIndex      %d\nFlags            42\nKey              "
        "cli/pg/f\nLockIndex        0\nModifyIndex      %d\n"
        "Session          -\nValue            x\n"
        % (e["CreateIndex"], e["ModifyIndex"]))
    # -format=json: the API's entry.
    r = run("kv", "get", "-format=json", "cli/pg/f", addrs=addrs)
    j = json.loads(r.out)
    assert j["Key"] == "cli/pg/f" and j["Flags"] == 42
    assert base64.b64decode(j["Value"]) == b"x"
    assert j["ModifyIndex"] == e["ModifyIndex"]
    r = run("kv", "put", "-format=json", "cli/pg/j", "v", addrs=addrs)
    assert json.loads(r.out) == {"Key": "cli/pg/j", "Success": True,
                                 "Operation": "put"}
    # A key the server refuses (Beacon's key grammar): exit 1.
    r = run("kv", "put", "cli//pg", "v", addrs=addrs)
    assert r.rc == 1 and "Error!" in r.err, r


def test_kv_recurse_keys_separator(cluster, addrs):
    srv = cluster.servers[0]
    for k, v in (("cli/rk/a", b"1"), ("cli/rk/b/c", b"2"),
                 ("cli/rk/b/d", b"3"), ("cli/rk/e/", b"")):
        put(srv, k, v)
    r = run("kv", "get", "-recurse", "cli/rk/", addrs=addrs)
    assert r.rc == 0
    assert r.out == "cli/rk/a:1\ncli/rk/b/c:2\ncli/rk/b/d:3\ncli/rk/e/:\n"
    r = run("kv", "get", "-keys", "cli/rk/", addrs=addrs)
    assert r.out == "cli/rk/a\ncli/rk/b/\ncli/rk/e/\n"
    r = run("kv", "get", "-keys", "-separator=", "cli/rk/", addrs=addrs)
    assert r.out == "cli/rk/a\ncli/rk/b/c\ncli/rk/b/d\ncli/rk/e/\n"
    r = run("kv", "get", "-recurse", "-detailed", "cli/rk/b", addrs=addrs)
    blocks = r.out.split("\n\n")
    assert len(blocks) == 2 and "Key              cli/rk/b/d" in blocks[1]
    r = run("kv", "get", "-recurse", "-format=json", "cli/rk/", addrs=addrs)
    assert [e["Key"] for e in json.loads(r.out)] == [
        "cli/rk/a", "cli/rk/b/c", "cli/rk/b/d", "cli/rk/e/"]
    # Nothing under a prefix is not an error (as Consul).
    r = run("kv", "get", "-recurse", "cli/rk/none/", addrs=addrs)
    assert r.rc == 0 and r.out == ""
    r = run("kv", "get", "-keys", "cli/rk/none/", addrs=addrs)
    assert r.rc == 0 and r.out == ""


def test_kv_cas(cluster, addrs):
    srv = cluster.servers[0]
    put(srv, "cli/cas/k", b"v1")
    idx = kv_entry(srv, "cli/cas/k")["ModifyIndex"]
    r = run("kv", "put", "-cas", "cli/cas/k", "v2", addrs=addrs)
    assert r.rc == 2 and "Must specify -modify-index with -cas!" in r.err
    r = run("kv", "put", "-cas", "-modify-index=%d" % (idx + 100),
            "cli/cas/k", "v2", addrs=addrs)
    assert r.rc == 1
    assert r.err == "Error! Did not write to cli/cas/k: CAS failed\n"
    assert kv_value(srv, "cli/cas/k") == b"v1"
    r = run("kv", "put", "-cas", "-modify-index", str(idx), "cli/cas/k",
            "v2", addrs=addrs)
    assert r.rc == 0 and kv_value(srv, "cli/cas/k") == b"v2"
    # -modify-index=0: create only.
    r = run("kv", "put", "-cas", "-modify-index=0", "cli/cas/k", "v3",
            addrs=addrs)
    assert r.rc == 1 and kv_value(srv, "cli/cas/k") == b"v2"
    r = run("kv", "put", "-cas", "-modify-index=0", "cli/cas/new", "n",
            addrs=addrs)
    assert r.rc == 0 and kv_value(srv, "cli/cas/new") == b"n"


def test_kv_delete(cluster, addrs):
    srv = cluster.servers[2]
    for k in ("cli/del/a", "cli/del/b/1", "cli/del/b/2", "cli/del/c"):
        put(srv, k, b"x")
    r = run("kv", "delete", "cli/del/a", addrs=addrs)
    assert r.rc == 0 and r.out == "Success! Deleted key: cli/del/a\n"
    assert kv_value(srv, "cli/del/a") is None
    # A missing key still succeeds (as Consul).
    assert run("kv", "delete", "cli/del/a", addrs=addrs).rc == 0
    r = run("kv", "delete", "-recurse", "cli/del/b/", addrs=addrs)
    assert r.out == "Success! Deleted keys with prefix: cli/del/b/\n"
    assert kv_value(srv, "cli/del/b/1") is None
    assert kv_value(srv, "cli/del/c") == b"x"
    r = run("kv", "delete", "-cas", "-recurse", "-modify-index=1", "cli/del",
            addrs=addrs)
    assert r.rc == 2 and "Cannot specify both -cas and -recurse!" in r.err
    r = run("kv", "delete", "-cas", "cli/del/c", addrs=addrs)
    assert r.rc == 2 and "-modify-index" in r.err
    idx = kv_entry(srv, "cli/del/c")["ModifyIndex"]
    r = run("kv", "delete", "-cas", "-modify-index=%d" % (idx + 7),
            "cli/del/c", addrs=addrs)
    assert r.rc == 1
    assert r.err == "Error! Did not delete key cli/del/c: CAS failed\n"
    r = run("kv", "delete", "-cas", "-modify-index=%d" % idx, "cli/del/c",
            addrs=addrs)
    assert r.rc == 0 and kv_value(srv, "cli/del/c") is None
    r = run("kv", "delete", addrs=addrs)
    assert r.rc == 2 and "Missing KEY argument" in r.err


# ---- export / import -----------------------------------------------------------


ROUND_TRIP = {
    "cli/rt/plain": (b"value", 0),
    "cli/rt/flags": (b"f", 1234567),
    "cli/rt/empty": (b"", 0),
    "cli/rt/binary": (bytes(range(256)), 9),
    "cli/rt/dir/": (b"", 0),
    "cli/rt/unicode/\u00e9t\u00e9": ("\u2603 snow".encode(), 0),
    "cli/rt/json": (b'{"a": [1, 2, "<&>"]}', 0),
    "cli/rt/spaces in key": (b"s p a c e", 0),
}


def test_export_wipe_import_round_trip(cluster, addrs, tmp_path):
    srv = cluster.servers[0]
    for k, (v, f) in ROUND_TRIP.items():
        put(srv, k, v, flags=f)
    r = run("kv", "export", "cli/rt/", addrs=addrs)
    assert r.rc == 0, r
    dump = json.loads(r.out)
    # Consul's format: [{"key", "flags", "value"(base64)}], sorted by key,
    # tab-indented.
    assert r.out.startswith('[\n\t{\n\t\t"key": "cli/rt/binary",\n'
                            '\t\t"flags": 9,\n\t\t"value": "'), r.out[:200]
    assert [e["key"] for e in dump] == sorted(ROUND_TRIP)
    for e in dump:
        assert set(e) == {"key", "flags", "value"}
        v, f = ROUND_TRIP[e["key"]]
        assert base64.b64decode(e["value"]) == v and e["flags"] == f
    f = tmp_path / "dump.json"
    f.write_text(r.out)

    # Wipe.
    r = run("kv", "delete", "-recurse", "cli/rt/", addrs=addrs)
    assert r.rc == 0
    assert run("kv", "export", "cli/rt/", addrs=addrs).out == "[]\n"

    # Import from a file, then check every value and flag.
    r = run("kv", "import", "@%s" % f, addrs=addrs)
    assert r.rc == 0, r
    assert r.out.splitlines() == ["Imported: %s" % k
                                  for k in sorted(ROUND_TRIP)]
    for k, (v, fl) in ROUND_TRIP.items():
        e = kv_entry(srv, k)
        assert (base64.b64decode(e["Value"] or "") == v
                and e["Flags"] == fl), k
    # Export again: the same document.
    assert json.loads(run("kv", "export", "cli/rt/", addrs=addrs).out) == dump

    # From stdin with -prefix.
    r = run("kv", "import", "-prefix=cli/rt2", addrs=addrs,
            input=f.read_bytes())
    assert r.rc == 0, r
    assert kv_value(srv, "cli/rt2/cli/rt/binary") == bytes(range(256))

    # A dump as Consul writes it (HTML-escaped JSON, namespace fields).
    consul_dump = ('[\n\t{\n\t\t"key": "cli/rt3/\\u003ctag\\u003e",\n'
                   '\t\t"flags": 3,\n\t\t"value": "YQ==",\n'
                   '\t\t"namespace": "default"\n\t}\n]\n')
    r = run("kv", "import", "-", addrs=addrs, input=consul_dump.encode())
    assert r.rc == 0 and r.out == "Imported: cli/rt3/<tag>\n", r
    assert kv_entry(srv, "cli/rt3/<tag>")["Flags"] == 3

    # Bad input: nothing written, exit 1.
    r = run("kv", "import", "-", addrs=addrs,
            input=b'[{"key":"cli/rt4/a","value":"YQ=="},{"value":"x"}]')
    assert r.rc == 1 and "Entry 1" in r.err
    assert kv_value(srv, "cli/rt4/a") is None
    r = run("kv", "import", "-", addrs=addrs, input=b"not json")
    assert r.rc == 1


# ---- kv edit -------------------------------------------------------------------


def editor(tmp_path, name, body):
    """An $EDITOR script: python3 with the file to edit as its last
    argument."""
    p = tmp_path / name
    p.write_text("#!%s\nimport sys, urllib.request\npath = sys.argv[-1]\n%s"
                 % (sys.executable, body))
    p.chmod(0o755)
    return str(p)


def test_kv_edit(cluster, addrs, tmp_path):
    srv = cluster.servers[0]
    tmpdir = tmp_path / "edits"
    tmpdir.mkdir()
    put(srv, "cli/edit/conf", b"port=80\n", flags=5)
    ed = editor(tmp_path, "append.py",
                "open(path, 'a').write('debug=true\\n')\n")
    env = clean_env(EDITOR=ed, TMPDIR=str(tmpdir))
    r = run("kv", "edit", "cli/edit/conf", addrs=addrs, env=env)
    assert r.rc == 0 and r.out == "Success! Data written to: cli/edit/conf\n"
    assert kv_value(srv, "cli/edit/conf") == b"port=80\ndebug=true\n"
    assert kv_entry(srv, "cli/edit/conf")["Flags"] == 5   # kept
    assert list(tmpdir.iterdir()) == []                     # cleaned up

    # $VISUAL wins over $EDITOR; an unchanged file writes nothing.
    idx = kv_entry(srv, "cli/edit/conf")["ModifyIndex"]
    r = run("kv", "edit", "cli/edit/conf", addrs=addrs,
            env=clean_env(VISUAL="true", EDITOR=ed, TMPDIR=str(tmpdir)))
    assert r.rc == 0 and "No changes" in r.out
    assert kv_entry(srv, "cli/edit/conf")["ModifyIndex"] == idx

    # The conflict: someone else writes the key while the editor is open.
    url = srv.url + kv_path("cli/edit/conf")
    ed2 = editor(tmp_path, "conflict.py",
                 "open(path, 'a').write('mine=1\\n')\n"
                 "req = urllib.request.Request(%r, data=b'theirs\\n', "
                 "method='PUT')\n"
                 "urllib.request.build_opener(urllib.request.ProxyHandler("
                 "{})).open(req).read()\n" % url)
    r = run("kv", "edit", "cli/edit/conf", addrs=addrs,
            env=clean_env(EDITOR=ed2, TMPDIR=str(tmpdir)))
    assert r.rc == 1, r
    assert "changed by someone else" in r.err and "nothing was written" in r.err
    assert kv_value(srv, "cli/edit/conf") == b"theirs\n"   # theirs stays
    kept = list(tmpdir.iterdir())
    assert len(kept) == 1 and str(kept[0]) in r.err
    assert kept[0].read_bytes() == b"port=80\ndebug=true\nmine=1\n"
    assert kept[0].name.endswith("-conf")
    kept[0].unlink()

    # A failing editor writes nothing.
    r = run("kv", "edit", "cli/edit/conf", addrs=addrs,
            env=clean_env(EDITOR="false", TMPDIR=str(tmpdir)))
    assert r.rc == 1 and "editor exited with status 1" in r.err
    assert kv_value(srv, "cli/edit/conf") == b"theirs\n"
    for p in tmpdir.iterdir():
        p.unlink()

    # A new key: created (check-and-set 0), unless left empty.
    ed3 = editor(tmp_path, "write.py", "open(path, 'w').write('new')\n")
    r = run("kv", "edit", "cli/edit/new", addrs=addrs,
            env=clean_env(EDITOR=ed3, TMPDIR=str(tmpdir)))
    assert r.rc == 0 and kv_value(srv, "cli/edit/new") == b"new"
    r = run("kv", "edit", "cli/edit/never", addrs=addrs,
            env=clean_env(EDITOR="true", TMPDIR=str(tmpdir)))
    assert r.rc == 0 and kv_value(srv, "cli/edit/never") is None
    # An editor command with arguments goes through the shell.
    r = run("kv", "edit", "cli/edit/new", addrs=addrs,
            env=clean_env(EDITOR="%s --ignored" % ed, TMPDIR=str(tmpdir)))
    assert r.rc == 0, r
    assert kv_value(srv, "cli/edit/new") == b"newdebug=true\n"


# ---- watch ----------------------------------------------------------------------


class Watch:
    """`beacon watch ... -- handler` whose handler appends one JSON line per
    run to a file: {"index": $BEACON_INDEX, "consul_index": ..., "body":
    stdin}."""

    def __init__(self, tmp_path, addrs, *args, name="w", handler=True):
        self.log = tmp_path / ("%s.log" % name)
        self.log.write_text("")
        h = tmp_path / ("%s.py" % name)
        h.write_text(
            "#!%s\nimport json, os, sys\n"
            "rec = {'index': os.environ['BEACON_INDEX'],\n"
            "       'consul_index': os.environ['CONSUL_INDEX'],\n"
            "       'body': json.loads(sys.stdin.read())}\n"
            "open(%r, 'a').write(json.dumps(rec) + '\\n')\n"
            % (sys.executable, str(self.log)))
        h.chmod(0o755)
        cmd = [str(CLI), "watch", "-http-addr", addrs] + list(args)
        if handler:
            cmd += ["--", str(h)]
        self.stdout = tmp_path / ("%s.out" % name)
        self.stderr = tmp_path / ("%s.err" % name)
        with open(self.stdout, "wb") as o, open(self.stderr, "wb") as e:
            self.proc = subprocess.Popen(cmd, stdout=o, stderr=e,
                                         stdin=subprocess.DEVNULL,
                                         env=clean_env())

    def fires(self):
        return [json.loads(line) for line in
                self.log.read_text().splitlines() if line]

    def wait_fires(self, n, timeout=15):
        wait_until(lambda: len(self.fires()) >= n, timeout,
                   "%d handler runs (have %d)" % (n, len(self.fires())))
        time.sleep(GRACE)         # and no more
        f = self.fires()
        assert len(f) == n, "expected %d runs, got %d: %r" % (n, len(f), f)
        return f

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("beacon watch did not stop on SIGTERM")
        err = self.stderr.read_text()
        check_sanitizers(err)
        assert rc == 0, (rc, err)


@pytest.fixture
def watches():
    started = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(5)


def test_watch_key_fires_exactly_once_per_change(cluster, addrs, tmp_path,
                                                 watches):
    srv = cluster.servers[0]
    put(srv, "cli/wk/k", b"v0")
    # -wait 1s: many blocking queries time out during the test.
    w = Watch(tmp_path, addrs, "-type", "key", "-key", "cli/wk/k",
              "-wait", "1s", "-fire-on-start")
    watches.append(w)
    f = w.wait_fires(1)                   # the start (opted in)
    assert base64.b64decode(f[0]["body"][0]["Value"]) == b"v0"
    assert int(f[0]["index"]) == kv_entry(srv, "cli/wk/k")["ModifyIndex"]
    assert f[0]["index"] == f[0]["consul_index"]

    put(srv, "cli/wk/k", b"v1")
    f = w.wait_fires(2)
    assert base64.b64decode(f[1]["body"][0]["Value"]) == b"v1"
    assert int(f[1]["index"]) == kv_entry(srv, "cli/wk/k")["ModifyIndex"]

    # The same value again, an unrelated key, and timeouts: nothing.
    put(srv, "cli/wk/k", b"v1")
    put(srv, "cli/wk/other", b"x")
    put(srv, "cli/wk/k2", b"x")
    time.sleep(2.5)                       # > two -wait rounds
    w.wait_fires(2)

    put(srv, "cli/wk/k", b"v2")
    f = w.wait_fires(3)
    assert base64.b64decode(f[2]["body"][0]["Value"]) == b"v2"
    # A delete is a change: the handler gets null.
    cluster.servers[1].delete(kv_path("cli/wk/k"))
    f = w.wait_fires(4)
    assert f[3]["body"] is None
    # Written through any server, seen once.
    put(cluster.servers[2], "cli/wk/k", b"v3")
    f = w.wait_fires(5)
    assert base64.b64decode(f[4]["body"][0]["Value"]) == b"v3"
    w.stop()


def test_watch_without_fire_on_start_waits_for_a_change(cluster, addrs,
                                                        tmp_path, watches):
    srv = cluster.servers[0]
    put(srv, "cli/wn/k", b"a")
    w = Watch(tmp_path, addrs, "-type", "key", "-key", "cli/wn/k",
              "-wait", "1s")
    watches.append(w)
    time.sleep(2.5)
    assert w.fires() == []
    put(srv, "cli/wn/k", b"b")
    f = w.wait_fires(1)
    assert base64.b64decode(f[0]["body"][0]["Value"]) == b"b"
    w.stop()


def test_watch_keyprefix_and_print_mode(cluster, addrs, tmp_path, watches):
    srv = cluster.servers[1]
    w = Watch(tmp_path, addrs, "-type", "keyprefix", "-prefix", "cli/wp/",
              "-wait", "1s", "-fire-on-start")
    p = Watch(tmp_path, addrs, "-type", "keyprefix", "-prefix", "cli/wp/",
              "-wait", "1s", name="print", handler=False)
    watches.extend([w, p])
    f = w.wait_fires(1)
    assert f[0]["body"] == []             # an empty prefix is []
    put(srv, "cli/wp/a", b"1")
    f = w.wait_fires(2)
    assert [e["Key"] for e in f[1]["body"]] == ["cli/wp/a"]
    put(srv, "cli/wq/outside", b"1")      # not under the prefix
    put(srv, "cli/wp/b", b"2")
    f = w.wait_fires(3)
    assert [e["Key"] for e in f[2]["body"]] == ["cli/wp/a", "cli/wp/b"]
    srv.delete(kv_path("cli/wp/", "recurse"))
    f = w.wait_fires(4)
    assert f[3]["body"] == []
    w.stop()
    # Print mode: each change is one indented JSON document on stdout.
    p.stop()
    docs = p.stdout.read_text()
    assert docs.count('"Key": "cli/wp/a"') == 2   # two changes saw a
    assert docs.startswith("[\n    {")


def test_watch_services_service_checks(cluster, addrs, tmp_path, watches):
    srv = cluster.servers[0]
    svc = tmp_path / "svc"
    svc.mkdir()
    # -fire-on-start: the first run marks each watch as started.
    ws = Watch(svc, addrs, "-type", "services", "-wait", "1s",
               "-fire-on-start", name="svcs")
    wh = Watch(svc, addrs, "-type", "service", "-service", "cliweb",
               "-passingonly", "-wait", "1s", "-fire-on-start",
               name="health")
    wc = Watch(svc, addrs, "-type", "checks", "-service", "cliweb",
               "-wait", "1s", "-fire-on-start", name="checks")
    watches.extend([ws, wh, wc])
    assert "cliweb" not in ws.wait_fires(1)[0]["body"]
    assert wh.wait_fires(1)[0]["body"] == []
    assert wc.wait_fires(1)[0]["body"] == []
    r = srv.put("/v1/agent/service/register",
                data=json.dumps({"Name": "cliweb", "ID": "cliweb1",
                                 "Port": 80, "Check": {"TTL": "60s"}}))
    assert r.status_code == 200, r
    f = ws.wait_fires(2)
    assert "cliweb" in f[1]["body"]
    c = wc.wait_fires(2)                   # the check appeared (critical)
    assert c[1]["body"][0]["Status"] == "critical"
    wh.wait_fires(1)                       # not passing yet
    assert srv.put("/v1/agent/check/pass/service:cliweb1").status_code == 200
    h = wh.wait_fires(2)
    assert [e["Service"]["ID"] for e in h[1]["body"]] == ["cliweb1"]
    c = wc.wait_fires(3)
    assert c[2]["body"][0]["Status"] == "passing"
    # A heartbeat that changes nothing fires nothing.
    assert srv.put("/v1/agent/check/pass/service:cliweb1").status_code == 200
    time.sleep(1.0)
    wh.wait_fires(2)
    wc.wait_fires(3)
    ws.wait_fires(2)
    assert srv.put("/v1/agent/service/deregister/cliweb1").status_code == 200
    ws.wait_fires(3)
    wh.wait_fires(3)
    for w in (ws, wh, wc):
        w.stop()


def test_watch_usage_errors():
    for args, msg in ((["-type", "key"], "-key"),
                      (["-type", "keyprefix"], "-prefix"),
                      (["-type", "service"], "-service"),
                      (["-type", "bogus"], "Unknown -type"),
                      ([], "Missing -type")):
        r = run("watch", *args, addrs="127.0.0.1:1")
        assert r.rc == 2 and msg in r.err, (args, r)


def test_watch_survives_a_server_failure(cluster, addrs, tmp_path,
                                         watches):
    """The server the watch talks to is stopped: it moves to another and
    still fires exactly once per change."""
    first = cluster.servers[0]
    w = Watch(tmp_path, addrs, "-type", "key", "-key", "cli/wf/k",
              "-wait", "2s", "-fire-on-start")
    watches.append(w)
    assert w.wait_fires(1)[0]["body"] is None    # started: no key yet
    put(first, "cli/wf/k", b"1")
    w.wait_fires(2)
    cluster.stop(first)
    try:
        ld = cluster.wait_leader()
        put(ld, "cli/wf/k", b"2")
        f = w.wait_fires(3, timeout=30)
        assert base64.b64decode(f[2]["body"][0]["Value"]) == b"2"
    finally:
        cluster.start_server(first)
    w.stop()


# ---- exec ------------------------------------------------------------------------


CHILD = r"""#!/bin/sh
log=%s
echo "start $$ db=$DB_URL port=$PORT keep=$KEEP" >> "$log"
trap 'echo "term $$" >> "$log"; exit 0' TERM
trap 'echo "hup $$ port=$PORT" >> "$log"' HUP
i=0
while [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
"""


class Exec:
    def __init__(self, tmp_path, addrs, *args, child=None, env=None):
        self.log = tmp_path / "child.log"
        self.log.write_text("")
        script = tmp_path / "child.sh"
        script.write_text(child or CHILD % str(self.log))
        script.chmod(0o755)
        self.stderr = tmp_path / "exec.err"
        cmd = [str(CLI), "exec", "-http-addr", addrs] + list(args) + \
            ["--", str(script)]
        with open(self.stderr, "wb") as e:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                         stderr=e, stdin=subprocess.DEVNULL,
                                         env=env or clean_env(KEEP="kept"))

    def lines(self):
        return self.log.read_text().splitlines()

    def wait_lines(self, n, timeout=15):
        wait_until(lambda: len(self.lines()) >= n, timeout,
                   "%d child log lines (have %r)" % (n, self.lines()))
        time.sleep(GRACE)
        lines = self.lines()
        assert len(lines) == n, lines
        return lines

    def finish(self, timeout=15):
        rc = self.proc.wait(timeout)
        check_sanitizers(self.stderr.read_text())
        return rc


def test_exec_restarts_child_on_change(cluster, addrs, tmp_path):
    srv = cluster.servers[0]
    put(srv, "cli/exec/db_url", b"pg://a")
    put(srv, "cli/exec/port", b"80")
    x = Exec(tmp_path, addrs, "-prefix", "cli/exec", "-wait", "1s")
    try:
        lines = x.wait_lines(1)
        assert lines[0].endswith("db=pg://a port=80 keep=kept")
        pid1 = lines[0].split()[1]
        put(srv, "cli/exec/port", b"81")
        lines = x.wait_lines(3)
        assert lines[1] == "term %s" % pid1
        assert lines[2].startswith("start ")
        assert lines[2].endswith("db=pg://a port=81 keep=kept")
        # The same value again, keys elsewhere, timeouts: no restart.
        put(srv, "cli/exec/port", b"81")
        put(srv, "cli/exe-other/port", b"1")
        time.sleep(2.5)
        x.wait_lines(3)
        # A new key is a change too.
        put(srv, "cli/exec/extra", b"1")
        x.wait_lines(5)
        # SIGTERM to exec reaches the child; exec exits with its status.
        x.proc.send_signal(signal.SIGTERM)
        assert x.finish() == 0
        assert x.lines()[-1].startswith("term ")
    finally:
        if x.proc.poll() is None:
            x.proc.kill()
            x.proc.wait(5)


def test_exec_signal_mode_and_child_exit(cluster, addrs, tmp_path):
    srv = cluster.servers[1]
    put(srv, "cli/exsig/port", b"1")
    x = Exec(tmp_path, addrs, "-prefix", "cli/exsig/", "-signal", "HUP",
             "-wait", "1s")
    try:
        lines = x.wait_lines(1)
        pid = lines[0].split()[1]
        put(srv, "cli/exsig/port", b"2")
        lines = x.wait_lines(2)
        # Signalled, not restarted: same process (its environment is the
        # old one; it re-reads its configuration itself).
        assert lines[1] == "hup %s port=1" % pid
        x.proc.send_signal(signal.SIGTERM)
        assert x.finish() == 0
    finally:
        if x.proc.poll() is None:
            x.proc.kill()
            x.proc.wait(5)
    # A child that exits by itself ends exec with its status.
    d = tmp_path / "exit"
    d.mkdir()
    x = Exec(d, addrs, "-prefix", "cli/exsig/",
             child="#!/bin/sh\nexit 7\n")
    assert x.finish() == 7
    r = run("exec", "-prefix", "p", addrs=addrs)
    assert r.rc == 2 and "Missing the command" in r.err
    r = run("exec", "--", "true", addrs=addrs)
    assert r.rc == 2 and "Missing -prefix" in r.err


# ---- catalog, health, register -------------------------------------------------


def test_register_services_health_deregister(cluster, addrs, tmp_path):
    srv = cluster.servers[0]
    a = srv.http_addr                     # the agent: this server's node
    r = run("register", "-name", "cliapi", "-id", "cliapi1", "-port", "9000",
            "-tag", "v1", "-tag", "blue", "-meta", "team=core", "-ttl",
            "30s", "-address", "10.1.2.3", addrs=a)
    assert r.rc == 0 and r.out == "Registered service: cliapi\n", r
    svc = srv.get("/v1/agent/service/cliapi1").json()
    assert svc["Port"] == 9000 and svc["Tags"] == ["v1", "blue"]
    assert svc["Meta"] == {"team": "core"} and svc["Address"] == "10.1.2.3"

    r = run("services", addrs=addrs)
    assert r.rc == 0 and "cliapi" in r.out.split() and "consul" in r.out
    r = run("services", "-tags", addrs=addrs)
    line = [x for x in r.out.splitlines() if x.startswith("cliapi ")][0]
    assert line.split() == ["cliapi", "blue,v1"] or \
        line.split() == ["cliapi", "v1,blue"]
    r = run("catalog", "services", "-format=json", addrs=addrs)
    assert "cliapi" in json.loads(r.out)

    r = run("health", "cliapi", addrs=addrs)
    assert r.rc == 0, r
    rows = [x.split() for x in r.out.splitlines()]
    assert rows[0] == ["Node", "ServiceID", "Address", "Port", "Status",
                       "Tags"]
    assert rows[1] == [srv.name, "cliapi1", "10.1.2.3", "9000", "critical",
                       "v1,blue"]
    r = run("health", "-passing", "cliapi", addrs=addrs)
    assert r.rc == 1 and "No passing instances of service: cliapi" in r.err
    r = run("check", "pass", "-note", "ok", "service:cliapi1", addrs=a)
    assert r.rc == 0 and "passing" in r.out
    r = run("health", "-passing", "cliapi", addrs=addrs)
    assert r.rc == 0 and "passing" in r.out
    r = run("health", "-format=json", "cliapi", addrs=addrs)
    j = json.loads(r.out)
    assert j[0]["Service"]["ID"] == "cliapi1"
    assert j[0]["Checks"][-1]["Output"] == "ok"
    r = run("check", "warn", "service:cliapi1", addrs=a)
    assert r.rc == 0
    assert "warning" in run("health", "cliapi", addrs=addrs).out
    r = run("check", "fail", "nosuchcheck", addrs=a)
    assert r.rc == 2 and "does not have associated TTL" in r.err  # 500

    r = run("deregister", "cliapi1", addrs=a)
    assert r.rc == 0 and r.out == "Deregistered service: cliapi1\n"
    r = run("health", "cliapi", addrs=addrs)
    assert r.rc == 1 and "No instances of service: cliapi" in r.err
    r = run("register", addrs=a)
    assert r.rc == 2 and "-name" in r.err
    r = run("register", "-name", "x", "-ttl", "1s", "-tcp", "h:1", addrs=a)
    assert r.rc == 2

    # From a file: Consul's service definition format.
    f = tmp_path / "svc.json"
    f.write_text(json.dumps({"service": {
        "name": "clifile", "id": "clifile1", "port": 7000,
        "check": {"http": "http://127.0.0.1:1/", "interval": "30s"}}}))
    r = run("register", str(f), addrs=a)
    assert r.rc == 0 and r.out == "Registered service: clifile\n", r
    chk = srv.get("/v1/agent/checks").json()["service:clifile1"]
    assert chk["Type"] == "http"
    f.write_text(json.dumps({"services": [{"Name": "clif2"},
                                          {"Name": "clif3"}]}))
    r = run("register", str(f), addrs=a)
    assert r.out == ("Registered service: clif2\n"
                     "Registered service: clif3\n")
    for sid in ("clifile1", "clif2", "clif3"):
        assert run("deregister", "-id", sid, addrs=a).rc == 0


def test_catalog_nodes_datacenters_members(cluster, addrs):
    r = run("catalog", "nodes", addrs=addrs)
    assert r.rc == 0
    rows = [x.split() for x in r.out.splitlines()]
    assert rows[0] == ["Node", "ID", "Address", "DC"]
    assert sorted(x[0] for x in rows[1:]) == ["n1", "n2", "n3"]
    r = run("catalog", "datacenters", addrs=addrs)
    assert r.rc == 0 and r.out == "dc1\n"
    r = run("members", addrs=addrs)
    assert r.rc == 0
    rows = [x.split() for x in r.out.splitlines()]
    assert rows[0] == ["Node", "Address", "Status", "Type", "Build",
                       "Protocol", "DC", "Partition", "Segment"]
    assert sorted(x[0] for x in rows[1:]) == ["n1", "n2", "n3"]
    for row in rows[1:]:
        srv = cluster.by_name(row[0])
        assert row[1] == srv.raft_addr and row[2] == "alive"
        assert row[3] == "server" and row[6] == "dc1"
    r = run("members", "-detailed", addrs=addrs)
    assert "role=consul" in r.out
    r = run("members", "-status", "fail", addrs=addrs)
    assert r.out.splitlines()[1:] == []
    r = run("members", "-format=json", addrs=addrs)
    assert len(json.loads(r.out)) == 3


def test_operator_raft_list_and_transfer(cluster, addrs):
    r = run("operator", "raft", "list-peers", addrs=addrs)
    assert r.rc == 0, r
    rows = [x.split() for x in r.out.splitlines()]
    assert rows[0] == ["Node", "ID", "Address", "State", "Voter",
                       "RaftProtocol"]
    leaders = [x for x in rows[1:] if x[3] == "leader"]
    assert len(rows) == 4 and len(leaders) == 1
    old = leaders[0][0]
    target = [x[0] for x in rows[1:] if x[0] != old][0]
    r = run("operator", "raft", "transfer-leader", "-id", target,
            addrs=addrs)
    assert r.rc == 0 and "Success! Leadership transferred to %s" % target \
        in r.out, r
    wait_until(lambda: cluster.agreed_leader() is not None and
               cluster.agreed_leader().name == target, 15, "new leader")
    cluster.wait_ready()
    r = run("operator", "raft", "list-peers", "-format=json", addrs=addrs)
    assert [s["Node"] for s in json.loads(r.out)["Servers"]
            if s["Leader"]] == [target]
    r = run("operator", "raft", "remove-peer", addrs=addrs)
    assert r.rc == 2
    r = run("operator", "raft", "remove-peer", "-id", "nosuch", addrs=addrs)
    assert r.rc == 1 and "not found" in r.err, r


def test_operator_raft_remove_peer(cluster_factory):
    c = cluster_factory(3)
    a = ",".join(s.http_addr for s in c.servers)
    victim = c.servers[2]
    c.stop(victim)
    c.wait_ready(recorded=False)
    r = run("operator", "raft", "remove-peer", "-id", victim.name, addrs=a)
    assert r.rc == 0 and r.out == 'Removed peer with id "%s"\n' % victim.name
    r = run("operator", "raft", "list-peers", addrs=a)
    assert victim.name not in r.out and len(r.out.splitlines()) == 3


# ---- snapshots -----------------------------------------------------------------


def test_snapshot_save_inspect_restore(cluster, addrs, tmp_path):
    srv = cluster.servers[0]
    put(srv, "cli/snap/k", b"before")
    f = tmp_path / "backup.snap"
    r = run("snapshot", "save", str(f), addrs=addrs)
    assert r.rc == 0, r
    idx = int(r.out.split()[-1])
    assert r.out == "Saved and verified snapshot to index %d\n" % idx
    assert f.stat().st_mode & 0o777 == 0o600
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    r = run("snapshot", "inspect", str(f))
    assert r.rc == 0
    fields = dict(line.split(None, 1) for line in r.out.splitlines())
    assert fields["Index"] == str(idx) and fields["Size"] == \
        str(f.stat().st_size) and fields["Version"] == "2"
    assert fields["ID"].split("-")[1] == str(idx)
    j = json.loads(run("snapshot", "inspect", "-format=json", str(f)).out)
    assert j["Index"] == idx

    put(srv, "cli/snap/k", b"after")
    put(srv, "cli/snap/new", b"x")
    r = run("snapshot", "restore", str(f), addrs=addrs)
    assert r.rc == 0 and r.out == "Restored snapshot\n", r
    wait_until(lambda: kv_value(srv, "cli/snap/k") == b"before", 10,
               "the restore")
    assert kv_value(srv, "cli/snap/new") is None

    # A damaged file: refused locally, nothing sent.
    bad = tmp_path / "bad.snap"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    put(srv, "cli/snap/k", b"kept")
    for cmd in (["snapshot", "inspect", str(bad)],
                ["snapshot", "restore", str(bad)]):
        r = run(*cmd, addrs=addrs)
        assert r.rc == 1 and "corrupt" in r.err, r
    bad.write_bytes(f.read_bytes()[:100])
    r = run("snapshot", "restore", str(bad), addrs=addrs)
    assert r.rc == 1 and "truncated" in r.err
    assert kv_value(srv, "cli/snap/k") == b"kept"
    r = run("snapshot", "inspect", str(tmp_path / "missing"))
    assert r.rc == 1
    cluster.wait_ready()


# ---- token and TLS flags ---------------------------------------------------------


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every GET with one KV entry; records (path, headers)."""
    seen = []

    def do_GET(self):
        Recorder.seen.append((self.path, dict(self.headers)))
        body = json.dumps([{"LockIndex": 0, "Key": "k", "Flags": 0,
                            "Value": base64.b64encode(b"secret-ok").decode(),
                            "CreateIndex": 1, "ModifyIndex": 1}]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Consul-Index", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def recorder():
    Recorder.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    t.join(5)


def test_token_flags_send_x_consul_token(recorder, tmp_path):
    a = "127.0.0.1:%d" % recorder.server_address[1]
    tf = tmp_path / "token"
    tf.write_text("from-file\n")

    def token_of(*args, env=None):
        Recorder.seen = []
        r = run(*args, "kv", "get", "k", addrs=a, env=env)
        assert r.rc == 0 and r.out == "secret-ok\n", r
        return Recorder.seen[-1][1].get("X-Consul-Token")

    assert token_of() is None
    assert token_of("-token", "t1") == "t1"
    assert token_of("-token-file", str(tf)) == "from-file"
    assert token_of(env=clean_env(BEACON_HTTP_TOKEN="t2")) == "t2"
    assert token_of(env=clean_env(CONSUL_HTTP_TOKEN="t3")) == "t3"
    assert token_of(env=clean_env(BEACON_HTTP_TOKEN_FILE=str(tf))) == \
        "from-file"
    # -token beats -token-file beats the environment.
    assert token_of("-token", "t1", "-token-file", str(tf),
                    env=clean_env(BEACON_HTTP_TOKEN="t2")) == "t1"
    assert token_of("-token-file", str(tf),
                    env=clean_env(BEACON_HTTP_TOKEN="t2")) == "from-file"
    r = run("-token-file", str(tmp_path / "none"), "kv", "get", "k", addrs=a)
    assert r.rc == 2 and "token file" in r.err
    # The token never shows in output, even on errors.
    r = run("-token", "sekrit", "kv", "get", "k",
            addrs="127.0.0.1:%d" % free_loopback_ports(1)[0])
    assert "sekrit" not in r.out + r.err


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)


@pytest.mark.skipif(shutil.which("openssl") is None,
                    reason="openssl is not installed")
def test_tls_flags(tmp_path):
    """An HTTPS stand-in that requires a client certificate, with a server
    certificate for the name beacon.test only."""
    d = tmp_path
    for name, cn, san in (("server", "beacon.test", "DNS:beacon.test"),
                          ("client", "client", "DNS:client")):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                "1", "-subj", "/CN=%s" % cn, "-addext",
                "subjectAltName=%s" % san, "-keyout", str(d / (name + ".key")),
                "-out", str(d / (name + ".pem")))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(d / "server.pem"), str(d / "server.key"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(str(d / "client.pem"))
    Recorder.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        a = "https://127.0.0.1:%d" % srv.server_address[1]
        ok = ["-ca-file", str(d / "server.pem"),
              "-client-cert", str(d / "client.pem"),
              "-client-key", str(d / "client.key"),
              "-tls-server-name", "beacon.test"]
        r = run(*ok, "kv", "get", "k", addrs=a)
        assert r.rc == 0 and r.out == "secret-ok\n", r
        # Each piece matters: no client certificate, no CA, wrong name.
        for drop in ("-client-cert", "-ca-file", "-tls-server-name"):
            i = ok.index(drop)
            args = ok[:i] + ok[i + 2:]
            if drop == "-client-cert":
                args = [x for x in args if x not in
                        ("-client-key", str(d / "client.key"))]
            r = run(*args, "kv", "get", "k", addrs=a)
            assert r.rc == 2, (drop, r)
        # The environment variables work too.
        r = run("kv", "get", "k", addrs=a, env=clean_env(
            BEACON_CACERT=str(d / "server.pem"),
            BEACON_CLIENT_CERT=str(d / "client.pem"),
            BEACON_CLIENT_KEY=str(d / "client.key"),
            BEACON_TLS_SERVER_NAME="beacon.test"))
        assert r.rc == 0, r
        # -tls-skip-verify still sends the client certificate.
        r = run("-tls-skip-verify", "-client-cert", str(d / "client.pem"),
                "-client-key", str(d / "client.key"), "kv", "get", "k",
                addrs=a)
        assert r.rc == 0, r
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def test_datacenter_and_stale_flags(cluster, addrs, recorder):
    a = "127.0.0.1:%d" % recorder.server_address[1]
    # What the CLI sends: ?dc= and ?stale (seen by the stand-in).
    Recorder.seen = []
    r = run("kv", "get", "-datacenter", "dc1", "-stale", "k", addrs=a)
    assert r.rc == 0
    assert Recorder.seen[-1][0] == "/v1/kv/k?dc=dc1&stale"
    # And the real servers accept both.
    put(cluster.servers[0], "cli/dc/k", b"v")
    r = run("kv", "get", "-datacenter", "dc1", "-stale", "cli/dc/k",
            addrs=addrs)
    assert r.rc == 0 and r.out == "v\n", r
    r = run("kv", "get", "-datacenter", "dc9", "cli/dc/k", addrs=addrs)
    assert r.rc != 0, r


# ---- against the server's ACLs and HTTPS ----------------------------------------


def test_tokens_against_server_acls(node_factory, tmp_path):
    node = node_factory(extra_args=["--acl-enabled",
                                    "--acl-default-policy", "deny"])
    a = "127.0.0.1:%d" % node.http_port
    r = run("kv", "put", "cli/acl/k", "v", addrs=a)
    assert r.rc == 1 and "Permission denied" in r.err, r
    mgmt = node.put("/v1/acl/bootstrap").json()["SecretID"]
    tf = tmp_path / "token"
    tf.write_text(mgmt + "\n")
    r = run("kv", "put", "-token", mgmt, "cli/acl/k", "v", addrs=a)
    assert r.rc == 0, r
    r = run("kv", "get", "-token-file", str(tf), "cli/acl/k", addrs=a)
    assert r.rc == 0 and r.out == "v\n", r
    r = run("kv", "get", "cli/acl/k", addrs=a,
            env=clean_env(BEACON_HTTP_TOKEN=mgmt))
    assert r.rc == 0 and r.out == "v\n", r
    r = run("kv", "get", "-token", "wrong", "cli/acl/k", addrs=a)
    assert r.rc == 1 and mgmt not in r.err + r.out


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1 and beacon.test, and a
    client certificate, all signed by the CA."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=beacon-test-ca", "-keyout", str(d / "ca.key"),
            "-out", str(d / "ca.pem"))
    for name, san in (("srv", "IP:127.0.0.1,DNS:beacon.test"),
                      ("cli", "DNS:client")):
        (d / (name + ".ext")).write_text("subjectAltName=%s\n" % san)
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj",
                "/CN=%s" % name, "-keyout", str(d / (name + ".key")),
                "-out", str(d / (name + ".csr")))
        openssl("x509", "-req", "-in", str(d / (name + ".csr")), "-CA",
                str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
                "-CAcreateserial", "-days", "1", "-extfile",
                str(d / (name + ".ext")), "-out", str(d / (name + ".pem")))


@pytest.mark.skipif(shutil.which("openssl") is None,
                    reason="openssl is not installed")
def test_tls_flags_against_an_https_server(tmp_path):
    from cluster_util import BEACOND
    make_pki(tmp_path)
    http, raft, dns = free_loopback_ports(3)
    log = open(tmp_path / "beacond.log", "wb")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BEACON_")}
    srv = subprocess.Popen(
        [str(BEACOND), "--node", "t1", "--data-dir", str(tmp_path / "data"),
         "--http-addr", "127.0.0.1:%d" % http,
         "--raft-addr", "127.0.0.1:%d" % raft,
         "--dns-addr", "127.0.0.1:%d" % dns,
         "--tls-cert", str(tmp_path / "srv.pem"),
         "--tls-key", str(tmp_path / "srv.key"),
         "--tls-ca", str(tmp_path / "ca.pem"), "--tls-verify-incoming"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
    a = "https://127.0.0.1:%d" % http
    tls = ["-ca-file", str(tmp_path / "ca.pem"),
           "-client-cert", str(tmp_path / "cli.pem"),
           "-client-key", str(tmp_path / "cli.key")]
    try:
        wait_until(lambda: run(*tls, "kv", "put", "cli/tls/k", "v",
                               addrs=a, timeout=10).rc == 0, 20,
                   "the HTTPS server to take a write")
        r = run(*tls, "kv", "get", "cli/tls/k", addrs=a)
        assert r.rc == 0 and r.out == "v\n", r
        # The name in the certificate instead of the address.
        r = run(*tls, "-tls-server-name", "beacon.test", "kv", "get",
                "cli/tls/k", addrs=a)
        assert r.rc == 0 and r.out == "v\n", r
        r = run(*tls, "-tls-server-name", "other.test", "kv", "get",
                "cli/tls/k", addrs=a)
        assert r.rc == 2, r
        # No client certificate: the server refuses (exit 1); no CA or
        # plain HTTP: no answer (exit 2).
        r = run("-ca-file", str(tmp_path / "ca.pem"), "kv", "get",
                "cli/tls/k", addrs=a)
        assert r.rc == 1 and "client certificate" in r.err, r
        assert run("-client-cert", str(tmp_path / "cli.pem"),
                   "-client-key", str(tmp_path / "cli.key"), "kv", "get",
                   "cli/tls/k", addrs=a).rc == 2
        assert run(*tls, "kv", "get", "cli/tls/k",
                   addrs="127.0.0.1:%d" % http).rc == 2
    finally:
        srv.send_signal(signal.SIGTERM)
        try:
            rc = srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait(5)
            rc = None
        log.close()
        text = (tmp_path / "beacond.log").read_text(errors="replace")
        check_sanitizers(text)
        assert rc == 0, text[-2000:]

"""The CLI's lock, session, secret, acl and keygen commands (issues #7, #11)
against real servers.

    BEACOND=$PWD/build/san/beacond /usr/bin/python3 -m pytest -q \
        -p no:cacheprovider tests/cluster/test_cli_security.py
"""

import base64
import os
import signal
import subprocess
import time

import pytest

pytest.register_assert_rewrite("cluster_util", "test_cli")
from cluster_util import wait_until  # noqa: E402
from test_cli import CLI, check_sanitizers, clean_env, run  # noqa: E402

pytest_plugins = ["cluster_util"]


def addr(node):
    return "127.0.0.1:%d" % node.http_port


def test_keygen_makes_32_random_bytes():
    a, b = run("keygen"), run("keygen")
    assert a.rc == 0 and b.rc == 0
    ka, kb = a.out.strip(), b.out.strip()
    assert len(base64.b64decode(ka, validate=True)) == 32
    assert ka != kb


def test_secret_commands(node_factory, tmp_path):
    key = run("keygen").out.strip()
    (tmp_path / "keys").write_text(key + "\n")
    node = node_factory(extra_args=["--encrypt-key-file",
                                    str(tmp_path / "keys")])
    a = addr(node)
    r = run("secret", "put", "db/password", "hunter2", addrs=a)
    assert r.rc == 0 and "Success! Secret written to: db/password" in r.out
    r = run("secret", "put", "db/user", "-", addrs=a, input=b"admin")
    assert r.rc == 0
    r = run("secret", "get", "db/password", addrs=a)
    assert r.rc == 0 and r.out == "hunter2\n"
    r = run("secret", "list", "db/", addrs=a)
    assert r.rc == 0 and r.out.split() == ["db/password", "db/user"]
    assert "hunter2" not in r.out
    r = run("secret", "get", "db/nope", addrs=a)
    assert r.rc == 1 and "No secret exists at: db/nope" in r.err
    r = run("secret", "rotate", addrs=a)
    assert r.rc == 0 and "Re-sealing 0 secrets" in r.out
    r = run("secret", "delete", "db/password", addrs=a)
    assert r.rc == 0
    assert run("secret", "get", "db/password", addrs=a).rc == 1
    # The value never reaches the data directory.
    node.stop()
    for dirpath, _, names in os.walk(node.dir):
        for n in names:
            with open(os.path.join(dirpath, n), "rb") as f:
                assert b"hunter2" not in f.read(), n


def test_acl_commands(node_factory):
    node = node_factory(extra_args=["--acl-enabled",
                                    "--acl-default-policy", "deny"])
    a = addr(node)
    r = run("acl", "bootstrap", addrs=a)
    assert r.rc == 0, r
    mgmt = [ln.split()[1] for ln in r.out.splitlines()
            if ln.startswith("SecretID:")][0]
    assert run("acl", "bootstrap", addrs=a).rc == 1
    r = run("acl", "policy", "create", "-name", "app", "-rules",
            'key_prefix "app/" { policy = "write" }', "-token", mgmt,
            addrs=a)
    assert r.rc == 0 and "Name:  app" in r.out, r
    r = run("acl", "token", "create", "-description", "app token",
            "-policy-name", "app", "-token", mgmt, addrs=a)
    assert r.rc == 0, r
    tok = [ln.split()[1] for ln in r.out.splitlines()
           if ln.startswith("SecretID:")][0]
    assert run("kv", "put", "-token", tok, "app/x", "1", addrs=a).rc == 0
    r = run("kv", "put", "-token", tok, "other", "1", addrs=a)
    assert r.rc == 1 and "Permission denied" in r.err
    assert run("kv", "put", "other", "1", addrs=a).rc == 1


def test_kv_acquire_release(node):
    a = addr(node)
    sid = node.put("/v1/session/create").json()["ID"]
    r = run("kv", "put", "-acquire", "-session", sid, "lk", "v", addrs=a)
    assert r.rc == 0 and "Success! Lock acquired on: lk" in r.out
    other = node.put("/v1/session/create").json()["ID"]
    r = run("kv", "put", "-acquire", "-session", other, "lk", "v", addrs=a)
    assert r.rc == 1 and "Did not acquire" in r.err
    r = run("kv", "put", "-release", "-session", sid, "lk", "v", addrs=a)
    assert r.rc == 0 and "Lock released" in r.out
    r = run("session", "list", addrs=a)
    assert r.rc == 0 and sid in r.out and other in r.out
    r = run("session", "destroy", other, addrs=a)
    assert r.rc == 0
    assert other not in run("session", "list", addrs=a).out


def lock_proc(a, prefix, script, ttl="10s"):
    return subprocess.Popen(
        [str(CLI), "-http-addr", a, "lock", "-ttl", ttl, prefix, "--", "sh",
         "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=clean_env())


def test_lock_runs_the_command_while_holding_the_lock(node, tmp_path):
    a = addr(node)
    marker = tmp_path / "ran"
    p = lock_proc(a, "jobs/nightly", "echo $$ > %s; exit 7" % marker)
    out, err = p.communicate(timeout=30)
    check_sanitizers(err.decode())
    assert p.returncode == 7, err
    assert marker.exists()
    # Released and its session destroyed afterwards.
    e = node.get("/v1/kv/jobs/nightly/.lock").json()[0]
    assert "Session" not in e
    assert node.get("/v1/session/list").json() == []


def test_lock_session_name_and_arguments(node, tmp_path):
    a = addr(node)
    for args in (["-ttl", "5s", "p", "--", "true"],
                 ["-ttl", "25h", "p", "--", "true"],
                 ["", "--", "true"]):
        r = run("lock", *args, addrs=a)
        assert r.rc == 2, (args, r.rc, r.err)
    # The name goes into the session's JSON as a string, quotes and all;
    # the command runs with SIGPIPE at its default (`yes` then dies of it
    # quietly instead of failing on EPIPE).
    name = 'x", "Behavior": "delete'
    done = tmp_path / "done"
    p = subprocess.Popen(
        [str(CLI), "-http-addr", a, "lock", "-name", name, "jobs/q", "--",
         "sh", "-c", "yes | head -n 1 >/dev/null; sleep 2; touch %s" % done],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
    try:
        sessions = wait_until(
            lambda: node.get("/v1/session/list").json() or None, 10,
            "the lock's session")
        assert [s["Name"] for s in sessions] == [name]
        assert sessions[0]["Behavior"] == "release"
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    check_sanitizers(err.decode())
    assert p.returncode == 0, err
    assert done.exists()
    assert b"Broken pipe" not in err, err


def test_lock_stops_the_command_when_the_lock_is_lost(node, tmp_path):
    a = addr(node)
    started = tmp_path / "started"
    ended = tmp_path / "ended"
    p = lock_proc(a, "svc/leader",
                  "touch %s; sleep 60; touch %s" % (started, ended))
    q = None
    try:
        wait_until(started.exists, 15, "the command to start")
        e = node.get("/v1/kv/svc/leader/.lock").json()[0]
        sid = e["Session"]
        # A second contender waits while the first holds the lock.
        q = lock_proc(a, "svc/leader", "echo second")
        wait_until(lambda: len(node.get("/v1/session/list").json()) == 2,
                   10, "the second contender's session")
        time.sleep(0.5)   # a few of its acquire attempts, all refused
        assert q.poll() is None, "the second contender did not wait"
        # The session is destroyed from outside: the command must stop.
        t0 = time.monotonic()
        r = run("session", "destroy", sid, addrs=a)
        assert r.rc == 0
        out, err = p.communicate(timeout=30)
        stopped = time.monotonic() - t0
        check_sanitizers(err.decode())
        assert p.returncode == 1, err
        assert b"lost the lock" in err
        assert not ended.exists(), "the command ran on without the lock"
        print("command stopped %.2f s after its session was destroyed"
              % stopped)
        assert stopped < 10
        # The waiting contender takes over once the lock-delay passed.
        out, err = q.communicate(timeout=30)
        assert q.returncode == 0 and out == b"second\n", err
    finally:
        for proc in (p, q):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(5)

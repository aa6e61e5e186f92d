"""Secrets, ACLs, HTTPS and the audit log (issue #7).

    BEACOND=$PWD/build/san/beacond /usr/bin/python3 -m pytest -q \
        -p no:cacheprovider tests/cluster/test_security.py
"""

import base64
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

pytest.register_assert_rewrite("cluster_util")
from cluster_util import wait_until  # noqa: E402
from conftest import BEACOND, free_ports  # noqa: E402

pytest_plugins = ["cluster_util"]

MARK = "s3cr3t-PLAINTEXT-marker-%d" % os.getpid()


def new_key():
    return base64.b64encode(os.urandom(32)).decode()


def keyfile(tmp_path, name, *keys):
    p = tmp_path / name
    p.write_text("# test keys\n" + "".join(k + "\n" for k in keys))
    return str(p)


def files_holding(root, needle):
    """Every file under @root whose bytes contain @needle."""
    hits = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            try:
                if needle in p.read_bytes():
                    hits.append(str(p))
            except OSError:
                pass
    return hits


# ---- secrets ------------------------------------------------------------------


def test_secrets_never_in_plaintext_at_rest(node_factory, tmp_path):
    k = keyfile(tmp_path, "keys", new_key())
    node = node_factory(snapshot_threshold=16,
                        extra_args=["--encrypt-key-file", k])
    for i in range(40):   # past the snapshot threshold: snapshots too
        r = node.put("/v1/secret/app/db-%d" % i,
                     data=("%s-%d" % (MARK, i)).encode())
        assert r.status_code == 200 and r.json() is True, r.text
    r = node.get("/v1/secret/app/db-7")
    assert r.status_code == 200, r.text
    e = r.json()[0]
    assert base64.b64decode(e["Value"]).decode() == MARK + "-7"
    assert len(e["KeyID"]) == 16 and e["Path"] == "app/db-7"
    assert int(r.headers["X-Consul-Index"]) == e["ModifyIndex"]
    # Names only in listings; no KV leak.
    r = node.get("/v1/secret/app/?keys")
    assert r.status_code == 200 and len(r.json()) == 40
    assert MARK not in r.text
    assert node.get("/v1/secret/app/?recurse").status_code == 400
    assert node.get("/v1/kv/?recurse").status_code == 404
    backup = node.get("/v1/snapshot").content
    assert len(backup) > 0 and MARK.encode() not in backup
    node.stop()
    snaps = [p for p in files_holding(node.data_dir, b"BCNSNAP2")]
    assert snaps, "no raft snapshot was taken"
    assert files_holding(node.data_dir, MARK.encode()) == []
    assert files_holding(node.dir, MARK.encode()) == []  # log included
    # After a restart everything opens again (state rebuilt from the log).
    node.start()
    r = node.get("/v1/secret/app/db-39")
    assert base64.b64decode(r.json()[0]["Value"]).decode() == MARK + "-39"


def test_secret_key_errors_and_rotation(node_factory, tmp_path):
    old, new = new_key(), new_key()
    node = node_factory(extra_args=["--encrypt-key-file",
                                    keyfile(tmp_path, "k1", old)])
    assert node.put("/v1/secret/a", data=b"one").json() is True
    assert node.put("/v1/secret/b", data=b"two").json() is True
    old_id = node.get("/v1/secret/a").json()[0]["KeyID"]
    node.stop()

    # No key: refused, clearly, and said at start-up.
    node.extra_args = []
    node.start()
    r = node.get("/v1/secret/a")
    assert r.status_code == 503 and "without an encryption key" in r.text
    assert node.put("/v1/secret/c", data=b"x").status_code == 503
    assert "no encryption key" in node.log_text()
    node.stop()

    # A wrong key: refused with the key ID, never garbage.
    node.extra_args = ["--encrypt-key-file", keyfile(tmp_path, "k2", new)]
    node.start()
    r = node.get("/v1/secret/a")
    assert r.status_code == 503 and old_id in r.text, r.text
    node.stop()

    # Both keys, the new one first: old secrets open; rotate re-seals.
    node.extra_args = ["--encrypt-key-file",
                       keyfile(tmp_path, "k3", new, old)]
    node.start()
    assert base64.b64decode(node.get("/v1/secret/a").json()[0]["Value"]) \
        == b"one"
    r = node.put("/v1/operator/secrets/rotate")
    assert r.status_code == 200 and r.json()["Resealing"] == 2, r.text
    new_id = r.json()["KeyID"]
    wait_until(lambda: node.get("/v1/operator/secrets").json()["Keys"]
               == {new_id: 2}, 10, "every secret re-sealed")
    node.stop()

    # The old key removed: everything still readable.
    node.extra_args = ["--encrypt-key-file", keyfile(tmp_path, "k4", new)]
    node.start()
    for path, want in (("a", b"one"), ("b", b"two")):
        r = node.get("/v1/secret/" + path)
        assert r.status_code == 200, r.text
        assert base64.b64decode(r.json()[0]["Value"]) == want


def test_bad_key_file_refuses_to_start(node_factory, tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("not base64 at all\n")
    node = node_factory(start=False,
                        extra_args=["--encrypt-key-file", str(bad)])
    node.http_port, node.raft_port, node.dns_port = free_ports(3)
    p = subprocess.run(node.command(), capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 2 and "base64 of 32 bytes" in p.stderr
    assert "not base64" not in p.stderr  # the key file's text stays put


# ---- ACLs ----------------------------------------------------------------------


def tok(secret):
    return {"X-Consul-Token": secret}


def make_token(node, mgmt, name, rules):
    r = node.put("/v1/acl/policy", headers=tok(mgmt),
                 json={"Name": name, "Rules": rules})
    assert r.status_code == 200, r.text
    r = node.put("/v1/acl/token", headers=tok(mgmt),
                 json={"Description": name, "Policies": [{"Name": name}]})
    assert r.status_code == 200, r.text
    return r.json()["SecretID"]


def test_acl_disabled_answers_401(node):
    r = node.put("/v1/acl/bootstrap")
    assert r.status_code == 401 and r.text.strip() == "ACL support disabled"


def test_acls_deny_by_default(node_factory, tmp_path):
    node = node_factory(extra_args=[
        "--acl-enabled", "--acl-default-policy", "deny",
        "--encrypt-key-file", keyfile(tmp_path, "k", new_key())])
    assert node.put("/v1/kv/x", data=b"1").status_code == 403
    r = node.put("/v1/acl/bootstrap")
    assert r.status_code == 200, r.text
    b = r.json()
    mgmt = b["SecretID"]
    assert b["Description"] == "Bootstrap Token (Global Management)"
    assert b["Policies"][0]["Name"] == "global-management"
    r = node.put("/v1/acl/bootstrap")
    assert r.status_code == 403
    assert r.text.startswith("Permission denied: ACL bootstrap no longer "
                             "allowed (reset index: ")
    # The management token may do everything, by any of the three ways.
    assert node.put("/v1/kv/app/a", data=b"1", headers=tok(mgmt)).json()
    assert node.put("/v1/kv/other", data=b"1",
                    headers={"Authorization": "Bearer " + mgmt}).json()
    assert node.put("/v1/kv/app/b?token=" + mgmt, data=b"1").json()
    assert node.put("/v1/secret/db/pw", data=MARK.encode(),
                    headers=tok(mgmt)).json()
    assert node.put("/v1/secret/web/key", data=b"k",
                    headers=tok(mgmt)).json()
    assert node.put("/v1/agent/service/register", headers=tok(mgmt),
                    json={"Name": "web", "ID": "web1"}).status_code == 200
    assert node.put("/v1/agent/service/register", headers=tok(mgmt),
                    json={"Name": "db", "ID": "db1"}).status_code == 200
    # Unknown token.
    r = node.get("/v1/kv/app/a", headers=tok("nope"))
    assert r.status_code == 403 and r.text.strip() == "ACL not found"

    reader = make_token(node, mgmt, "reader", """
        key_prefix "app/" { policy = "read" }
        key "app/b" { policy = "deny" }
        secret_prefix "db/" { policy = "read" }
        service_prefix "web" { policy = "read" }
        node_prefix "" { policy = "read" }
        agent_prefix "" { policy = "read" }
        operator = "read"
    """)
    writer = make_token(node, mgmt, "writer", json.dumps({
        "key_prefix": {"app/": {"policy": "write"}},
        "service_prefix": {"web": {"policy": "write"}},
        "node_prefix": {"": {"policy": "read"}},
        "session_prefix": {"": {"policy": "write"}},
        "acl": "read"}))
    # key / key_prefix: allowed, denied, the longest rule wins, lists
    # filtered.
    assert node.get("/v1/kv/app/a", headers=tok(reader)).status_code == 200
    r = node.get("/v1/kv/app/b", headers=tok(reader))
    assert r.status_code == 403 and "key:read" in r.text
    r = node.put("/v1/kv/app/a", data=b"2", headers=tok(reader))
    assert r.status_code == 403
    assert r.text.startswith("Permission denied: token with AccessorID '")
    assert "lacks permission 'key:write' on \"app/a\"" in r.text
    r = node.get("/v1/kv/?recurse", headers=tok(reader))
    assert [e["Key"] for e in r.json()] == ["app/a"]
    assert r.headers.get("X-Consul-Results-Filtered-By-ACLs") == "true"
    assert node.put("/v1/kv/app/a", data=b"3",
                    headers=tok(writer)).json() is True
    assert node.put("/v1/kv/other", data=b"3",
                    headers=tok(writer)).status_code == 403
    # secret_prefix: reading needs an explicit rule, listing is filtered.
    r = node.get("/v1/secret/db/pw", headers=tok(reader))
    assert r.status_code == 200
    assert base64.b64decode(r.json()[0]["Value"]).decode() == MARK
    assert node.get("/v1/secret/db/pw",
                    headers=tok(writer)).status_code == 403
    assert node.get("/v1/secret/web/key",
                    headers=tok(reader)).status_code == 403
    assert node.put("/v1/secret/db/pw", data=b"x",
                    headers=tok(reader)).status_code == 403
    # service_prefix: filtered catalog, register allowed or denied.
    r = node.get("/v1/catalog/services", headers=tok(reader))
    assert set(r.json()) == {"web"}, r.json()
    assert node.get("/v1/health/service/db", headers=tok(reader)).json() \
        == []
    assert node.put("/v1/agent/service/register", headers=tok(writer),
                    json={"Name": "web", "ID": "web2"}).status_code == 200
    r = node.put("/v1/agent/service/register", headers=tok(writer),
                 json={"Name": "db", "ID": "db2"})
    assert r.status_code == 403 and "service:write" in r.text
    # node_prefix: the writer reads nodes but may not register one.
    r = node.put("/v1/catalog/register", headers=tok(writer),
                 json={"Node": "ext", "Address": "10.0.0.1"})
    assert r.status_code == 403 and "node:write" in r.text
    # session_prefix.
    assert node.put("/v1/session/create",
                    headers=tok(writer)).status_code == 200
    assert node.put("/v1/session/create",
                    headers=tok(reader)).status_code == 403
    # agent, operator, acl.
    assert node.get("/v1/agent/self", headers=tok(reader)).status_code == 200
    assert node.get("/v1/agent/self", headers=tok(writer)).status_code == 403
    assert node.get("/v1/operator/raft/configuration",
                    headers=tok(reader)).status_code == 200
    assert node.get("/v1/operator/raft/configuration",
                    headers=tok(writer)).status_code == 403
    assert node.get("/v1/acl/tokens", headers=tok(writer)).status_code == 200
    assert node.get("/v1/acl/tokens", headers=tok(reader)).status_code == 403
    assert node.put("/v1/acl/token", headers=tok(writer),
                    json={}).status_code == 403
    assert node.get("/v1/snapshot", headers=tok(reader)).status_code == 403
    # A token's secret is shown once: reads show the accessor only.
    r = node.get("/v1/acl/token/self", headers=tok(reader))
    assert r.status_code == 200 and "SecretID" not in r.json()
    assert reader not in node.get("/v1/acl/tokens", headers=tok(mgmt)).text
    # Bad rules are refused.
    r = node.put("/v1/acl/policy", headers=tok(mgmt),
                 json={"Name": "bad", "Rules": 'key "x" { policy = "all" }'})
    assert r.status_code == 400 and "Failed to parse ACL rules" in r.text
    # Deleting a token revokes it.
    acc = node.get("/v1/acl/token/self", headers=tok(reader)).json()[
        "AccessorID"]
    assert node.delete("/v1/acl/token/" + acc, headers=tok(mgmt)).json()
    assert node.get("/v1/kv/app/a", headers=tok(reader)).status_code == 403
    # Nothing in the data dir holds a token's secret.
    node.stop()
    for secret in (mgmt, writer):
        assert files_holding(node.dir, secret.encode()) == []


def test_acls_default_allow(node_factory):
    node = node_factory(extra_args=["--acl-enabled"])
    assert node.put("/v1/kv/x", data=b"1").json() is True
    mgmt = node.put("/v1/acl/bootstrap").json()["SecretID"]
    ro = make_token(node, mgmt, "no-x", 'key "x" { policy = "deny" }')
    assert node.get("/v1/kv/x", headers=tok(ro)).status_code == 403
    assert node.put("/v1/kv/y", data=b"1", headers=tok(ro)).json() is True
    r = node.get("/v1/kv/y")
    assert r.headers["X-Consul-Default-ACL-Policy"] == "allow"


def test_acls_on_a_cluster_followers_forward_the_token(cluster_factory):
    # Default allow while the cluster forms (the harness writes a key to
    # see it ready); the rules below are explicit.
    cluster = cluster_factory(3, args=["--acl-enabled"])
    leader = cluster.leader()
    follower = [s for s in cluster.servers if s is not leader][0]
    r = follower.put("/v1/acl/bootstrap")
    assert r.status_code == 200, r.text
    mgmt = r.json()["SecretID"]
    no_k = make_token(follower, mgmt, "no-k", 'key "k" { policy = "deny" }')
    assert follower.put("/v1/kv/k", data=b"v",
                        headers=tok(mgmt)).json() is True
    r = follower.put("/v1/kv/k", data=b"v", headers=tok(no_k))
    assert r.status_code == 403 and "key:write" in r.text
    # A stale read is decided by the follower itself, once it has the
    # tokens and the key.
    wait_until(lambda: follower.get("/v1/kv/k?stale", headers=tok(mgmt))
               .status_code == 200, 10, "the key on the follower")
    assert follower.get("/v1/kv/k?stale", headers=tok(no_k)).status_code \
        == 403


# ---- the audit log -------------------------------------------------------------


def test_audit_log(node_factory, tmp_path):
    audit = tmp_path / "audit.jsonl"
    node = node_factory(extra_args=[
        "--audit-log", str(audit), "--acl-enabled",
        "--encrypt-key-file", keyfile(tmp_path, "k", new_key())])
    mgmt = node.put("/v1/acl/bootstrap").json()["SecretID"]
    assert node.put("/v1/kv/cfg?token=" + mgmt, data=b"value").json()
    assert node.put("/v1/secret/s1", data=MARK.encode(),
                    headers=tok(mgmt)).json()
    node.get("/v1/secret/s1", headers=tok(mgmt))
    node.get("/v1/kv/cfg", headers=tok(mgmt))      # a plain read: not audited
    node.delete("/v1/kv/cfg", headers=tok(mgmt))
    # A line is written when its request completes, just after the reply.
    wait_until(lambda: '"DELETE"' in audit.read_text(), 5,
               "the DELETE's audit line")
    text = audit.read_text()
    assert MARK not in text and mgmt not in text and "token=" not in text
    lines = [json.loads(x) for x in text.splitlines()]
    acc = node.get("/v1/acl/token/self", headers=tok(mgmt)).json()[
        "AccessorID"]
    by = [(x["method"], x["path"], x["status"]) for x in lines]
    assert ("PUT", "/v1/kv/cfg", 200) in by
    assert ("PUT", "/v1/secret/s1", 200) in by
    assert ("GET", "/v1/secret/s1", 200) in by
    assert ("DELETE", "/v1/kv/cfg", 200) in by
    assert ("GET", "/v1/kv/cfg", 200) not in by
    for x in lines:
        assert set(x) >= {"time", "accessor", "client", "method", "path",
                          "status"}
        assert x["client"] == "127.0.0.1"
    assert {x["accessor"] for x in lines if x["path"] != "/v1/acl/bootstrap"} \
        == {acc}


# ---- HTTPS ------------------------------------------------------------------------


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    d.mkdir()

    def run(*args):
        subprocess.run(args, cwd=d, check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out",
        "ca.pem", "-days", "2", "-subj", "/CN=beacon-test-ca")
    (d / "srv.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                               "extendedKeyUsage=serverAuth,clientAuth\n")
    (d / "cli.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("srv", "cli"):
        run("openssl", "req", *ec, "-keyout", name + ".key", "-out",
            name + ".csr", "-subj", "/CN=" + name)
        run("openssl", "x509", "-req", "-in", name + ".csr", "-CA", "ca.pem",
            "-CAkey", "ca.key", "-CAcreateserial", "-out", name + ".pem",
            "-days", "2", "-extfile", name + ".ext")
    return d


class TLSServer:
    """One beacond serving HTTPS only (the fixtures speak plain HTTP)."""

    def __init__(self, tmp, name, pki, peers="", verify_incoming=False):
        self.name = name
        self.http, self.raft, self.dns = free_ports(3)
        self.dir = tmp / name
        self.dir.mkdir()
        self.pki = pki
        args = [str(BEACOND), "--node", name, "--data-dir",
                str(self.dir / "data"),
                "--http-addr", "127.0.0.1:%d" % self.http,
                "--raft-addr", "127.0.0.1:%d" % self.raft,
                "--dns-addr", "127.0.0.1:%d" % self.dns,
                "--tls-cert", str(pki / "srv.pem"),
                "--tls-key", str(pki / "srv.key"),
                "--tls-ca", str(pki / "ca.pem")]
        if verify_incoming:
            args.append("--tls-verify-incoming")
        self.args = args
        self.peers = peers
        self.proc = None

    def start(self, initial=""):
        args = self.args + (["--initial-cluster", initial] if initial else [])
        self.log = open(self.dir / "log", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.http

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                assert self.proc.wait(10) == 0
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
        self.log.close()


def test_https_and_client_certificates(tmp_path):
    pki = make_pki(tmp_path / "pki")
    ca = str(pki / "ca.pem")
    cert = (str(pki / "cli.pem"), str(pki / "cli.key"))
    srv = TLSServer(tmp_path, "t1", pki, verify_incoming=True)
    srv.start()
    try:
        def up():
            try:
                return requests.get(srv.url + "/v1/status/leader",
                                    verify=ca, cert=cert,
                                    timeout=2).json() != ""
            except requests.RequestException:
                return False
        wait_until(up, 15, "the HTTPS server")
        r = requests.put(srv.url + "/v1/kv/tls", data=b"ok", verify=ca,
                         cert=cert, timeout=5)
        assert r.json() is True
        # curl, as an operator would.
        p = subprocess.run(["curl", "-sS", "--cacert", ca, "--cert", cert[0],
                            "--key", cert[1], srv.url + "/v1/kv/tls?raw"],
                           capture_output=True, text=True, timeout=10)
        assert p.stdout == "ok", p.stderr
        # No client certificate: refused.
        r = requests.get(srv.url + "/v1/kv/tls", verify=ca, timeout=5)
        assert r.status_code == 403 and "client certificate" in r.text
        # An unknown CA: the client refuses the server.
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(srv.url + "/v1/kv/tls", timeout=5)
        # Plain HTTP is off.
        with pytest.raises(requests.RequestException):
            requests.get("http://127.0.0.1:%d/v1/kv/tls" % srv.http,
                         timeout=3)
    finally:
        srv.stop()


def test_https_cluster_forwards_over_https(tmp_path):
    pki = make_pki(tmp_path / "pki")
    ca = str(pki / "ca.pem")
    cert = (str(pki / "cli.pem"), str(pki / "cli.key"))
    servers = [TLSServer(tmp_path, "n%d" % i, pki, verify_incoming=True)
               for i in (1, 2, 3)]
    initial = ",".join("%s=127.0.0.1:%d" % (s.name, s.raft) for s in servers)
    for s in servers:
        s.start(initial)
    try:
        def forwarded_write():
            for s in servers:
                try:
                    leader = requests.get(s.url + "/v1/status/leader",
                                          verify=ca, cert=cert,
                                          timeout=2).json()
                except requests.RequestException:
                    return False
                if not leader or leader.endswith(":%d" % s.raft):
                    continue
                r = requests.put(s.url + "/v1/kv/fwd", data=b"1", verify=ca,
                                 cert=cert, timeout=5)
                return r.status_code == 200 and r.json() is True
            return False
        wait_until(forwarded_write, 30, "a write through a follower")
    finally:
        for s in servers:
            s.stop()
